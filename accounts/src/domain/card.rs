//! Card numbers: parsed (digits, length, Luhn) or generated, and only ever shown masked.

use std::fmt;

/// A primary account number. Its `Debug` and `Display` never show the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    #[error("must be 13 to 19 digits")]
    Length,
    #[error("must contain digits only")]
    NotDigits,
    #[error("fails the Luhn check")]
    Luhn,
}

/// The BIN under which this program issues generated cards (a test range).
pub const PROGRAM_BIN: &str = "400005";

impl Pan {
    pub fn parse(raw: &str) -> Result<Self, PanError> {
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(PanError::NotDigits);
        }
        if !(13..=19).contains(&digits.len()) {
            return Err(PanError::Length);
        }
        if !luhn_valid(&digits) {
            return Err(PanError::Luhn);
        }
        Ok(Self(digits))
    }

    /// A new 16-digit number in the program's BIN with a valid check digit.
    pub fn generate(mut random_digit: impl FnMut() -> u8) -> Self {
        let mut body: String = PROGRAM_BIN.to_owned();
        while body.len() < 15 {
            body.push(char::from(b'0' + random_digit() % 10));
        }
        let check = luhn_check_digit(&body);
        body.push(char::from(b'0' + check));
        Self(body)
    }

    /// The digits, for encryption and fingerprinting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn bin(&self) -> &str {
        &self.0[..6]
    }
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
    /// `400005******5556`: BIN and last four, the rest hidden.
    pub fn masked(&self) -> String {
        format!(
            "{}{}{}",
            self.bin(),
            "*".repeat(self.0.len() - 10),
            self.last4()
        )
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

fn luhn_sum(digits: &str, double_first: bool) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            let double = (i % 2 == 0) == double_first;
            if double {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum()
}

pub fn luhn_valid(digits: &str) -> bool {
    luhn_sum(digits, false).is_multiple_of(10)
}

fn luhn_check_digit(body: &str) -> u8 {
    // The check digit is appended, so the body's last digit is doubled.
    let s = luhn_sum(body, true);
    ((10 - s % 10) % 10) as u8
}

/// Expiry month 1–12 and a year from this year to 20 years ahead, not already past.
pub fn check_expiry(
    month: i64,
    year: i64,
    today_year: i32,
    today_month: u32,
) -> Result<(u32, i32), &'static str> {
    if !(1..=12).contains(&month) {
        return Err("expiry_month must be 1 to 12");
    }
    let (ty, tm) = (i64::from(today_year), i64::from(today_month));
    if year < ty || year > ty + 20 {
        return Err("expiry_year must be between this year and 20 years ahead");
    }
    if year == ty && month < tm {
        return Err("the card would already be expired");
    }
    Ok((month as u32, year as i32))
}

/// A cardholder name as printed: trimmed, 1–26 characters, letters, spaces and . ' -
pub fn parse_cardholder_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 26 {
        return Err("must be 1 to 26 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_alphabetic() || matches!(c, ' ' | '.' | '\'' | '-'))
    {
        return Err("may contain letters, spaces and . ' - only");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_numbers_and_refuses_bad_ones() {
        assert!(Pan::parse("4000056655665556").is_ok());
        assert!(Pan::parse("4000 0566 5566 5556").is_ok());
        assert_eq!(Pan::parse("4000056655665557"), Err(PanError::Luhn));
        assert_eq!(Pan::parse("40000566"), Err(PanError::Length));
        assert_eq!(Pan::parse("4000x56655665556"), Err(PanError::NotDigits));
    }

    #[test]
    fn generated_numbers_pass_luhn_and_use_the_program_bin() {
        let mut seed = 7u8;
        for _ in 0..50 {
            let pan = Pan::generate(|| {
                seed = seed.wrapping_mul(31).wrapping_add(11);
                seed
            });
            assert!(luhn_valid(pan.expose()), "{}", pan.expose());
            assert_eq!(pan.bin(), PROGRAM_BIN);
            assert_eq!(pan.expose().len(), 16);
        }
    }

    #[test]
    fn never_prints_the_digits() {
        let pan = Pan::parse("4000056655665556").unwrap();
        assert_eq!(pan.masked(), "400005******5556");
        assert_eq!(format!("{pan:?}"), "Pan(400005******5556)");
        assert_eq!(pan.to_string(), "400005******5556");
    }

    #[test]
    fn expiry_rules() {
        assert!(check_expiry(13, 2030, 2026, 11).is_err());
        assert!(check_expiry(10, 2026, 2026, 11).is_err());
        assert!(check_expiry(11, 2026, 2026, 11).is_ok());
        assert!(check_expiry(1, 2047, 2026, 11).is_err());
    }
}
