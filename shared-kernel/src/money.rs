//! Money: integer minor units and an ISO 4217 currency. No floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 currency this program accepts, with its number of minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Currency {
    Usd,
    Eur,
    Gbp,
    Cad,
    Chf,
    Jpy,
}

impl Currency {
    pub const ALL: [Currency; 6] = [
        Currency::Usd,
        Currency::Eur,
        Currency::Gbp,
        Currency::Cad,
        Currency::Chf,
        Currency::Jpy,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Cad => "CAD",
            Currency::Chf => "CHF",
            Currency::Jpy => "JPY",
        }
    }

    /// Digits after the decimal point (ISO 4217 "minor unit").
    pub fn minor_units(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            _ => 2,
        }
    }

    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown or unsupported currency '{0}'")]
    UnknownCurrency(String),
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflow")]
    Overflow,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not be negative")]
    Negative,
}

/// An amount of money in minor units (cents for USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// A strictly positive amount, as every payment amount must be.
    pub fn positive(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= 0 {
            return Err(MoneyError::NotPositive);
        }
        Ok(Self::new(amount, currency))
    }

    /// A zero or positive amount, as a credit limit must be.
    pub fn non_negative(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Self::new(amount, currency))
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// `basis_points / 10_000` of this amount, rounded half away from zero to the
    /// minor unit. Integer arithmetic only (i128 intermediate, no overflow for i64 inputs).
    pub fn percentage_bp(self, basis_points: u32) -> Money {
        let product = i128::from(self.amount) * i128::from(basis_points);
        let quotient = product / 10_000;
        let remainder = product % 10_000;
        let rounded = if remainder.abs() * 2 >= 10_000 {
            quotient + product.signum()
        } else {
            quotient
        };
        // |amount * bp / 10_000| <= |amount| when bp <= 10_000; callers pass fee rates.
        let amount =
            i64::try_from(rounded).unwrap_or(if rounded > 0 { i64::MAX } else { i64::MIN });
        Money::new(amount, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_currencies_only() {
        assert_eq!(Currency::parse("USD"), Ok(Currency::Usd));
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert_eq!(Currency::Jpy.minor_units(), 0);
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_overflow() {
        let usd = Money::new(100, Currency::Usd);
        let eur = Money::new(100, Currency::Eur);
        assert_eq!(
            usd.checked_add(eur),
            Err(MoneyError::CurrencyMismatch(Currency::Usd, Currency::Eur))
        );
        assert_eq!(
            usd.checked_sub(Money::new(30, Currency::Usd)),
            Ok(Money::new(70, Currency::Usd))
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::Usd).checked_add(usd),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn positive_and_non_negative_constructors() {
        assert_eq!(
            Money::positive(0, Currency::Usd),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            Money::positive(-5, Currency::Usd),
            Err(MoneyError::NotPositive)
        );
        assert!(Money::non_negative(0, Currency::Usd).is_ok());
        assert_eq!(
            Money::non_negative(-1, Currency::Usd),
            Err(MoneyError::Negative)
        );
    }

    #[test]
    fn percentage_rounds_half_away_from_zero() {
        // 1.50% of 1000 = 15 exactly
        assert_eq!(
            Money::new(1000, Currency::Usd).percentage_bp(150).amount,
            15
        );
        // 1.50% of 1234 = 18.51 -> 19
        assert_eq!(
            Money::new(1234, Currency::Usd).percentage_bp(150).amount,
            19
        );
        // 1.50% of 1233 = 18.495 -> 18
        assert_eq!(
            Money::new(1233, Currency::Usd).percentage_bp(150).amount,
            18
        );
        // 1.50% of 100 = 1.5 -> 2 (half away from zero)
        assert_eq!(Money::new(100, Currency::Usd).percentage_bp(150).amount, 2);
        assert_eq!(
            Money::new(-100, Currency::Usd).percentage_bp(150).amount,
            -2
        );
    }

    #[test]
    fn serializes_as_amount_and_code() {
        let json = serde_json::to_value(Money::new(1250, Currency::Usd)).unwrap_or_default();
        assert_eq!(json, serde_json::json!({"amount": 1250, "currency": "USD"}));
    }
}
