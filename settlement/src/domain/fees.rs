//! The fee schedule: a rate in basis points per item, by merchant category code.
//!
//! Rounding: each item's fee is its amount × rate / 10 000, rounded half away from zero
//! to the minor unit; a batch's fees are the sum of its items' fees, and its net is
//! gross − fees. So a batch's numbers never depend on the order of its items.

use shared_kernel::Money;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedule {
    pub default_bp: u32,
    pub by_mcc: HashMap<String, u32>,
}

impl Default for FeeSchedule {
    /// 1.50% of each item.
    fn default() -> Self {
        Self {
            default_bp: 150,
            by_mcc: HashMap::new(),
        }
    }
}

impl FeeSchedule {
    /// Parses `"5541:100,5812:200"` (MCC:basis points) as the per-MCC overrides.
    pub fn parse_overrides(default_bp: u32, raw: &str) -> Result<Self, String> {
        let mut by_mcc = HashMap::new();
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (mcc, bp) = pair
                .split_once(':')
                .ok_or_else(|| format!("'{pair}' is not MCC:basis_points"))?;
            let bp: u32 = bp
                .trim()
                .parse()
                .map_err(|_| format!("'{pair}' has no valid basis points"))?;
            if mcc.len() != 4 || !mcc.chars().all(|c| c.is_ascii_digit()) || bp > 10_000 {
                return Err(format!("'{pair}' is out of range"));
            }
            by_mcc.insert(mcc.to_owned(), bp);
        }
        if default_bp > 10_000 {
            return Err("the default rate must be at most 10000 basis points".to_owned());
        }
        Ok(Self { default_bp, by_mcc })
    }

    pub fn fee(&self, amount: Money, mcc: &str) -> Money {
        let bp = self.by_mcc.get(mcc).copied().unwrap_or(self.default_bp);
        amount.percentage_bp(bp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_kernel::Currency;

    #[test]
    fn default_is_one_and_a_half_percent_rounded_half_away_from_zero() {
        let s = FeeSchedule::default();
        assert_eq!(s.fee(Money::new(10_000, Currency::Usd), "5812").amount, 150);
        assert_eq!(s.fee(Money::new(100, Currency::Usd), "5812").amount, 2);
        assert_eq!(s.fee(Money::new(33, Currency::Usd), "5812").amount, 0);
    }

    #[test]
    fn overrides_by_mcc() {
        let s = FeeSchedule::parse_overrides(150, "5541:100, 5812:250").unwrap();
        assert_eq!(s.fee(Money::new(10_000, Currency::Usd), "5541").amount, 100);
        assert_eq!(s.fee(Money::new(10_000, Currency::Usd), "5812").amount, 250);
        assert_eq!(s.fee(Money::new(10_000, Currency::Usd), "4111").amount, 150);
        assert!(FeeSchedule::parse_overrides(150, "55:1").is_err());
        assert!(FeeSchedule::parse_overrides(150, "5541").is_err());
    }
}
