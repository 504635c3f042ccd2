use serde::{Deserialize, Serialize};

/// The merchant of a card payment, as the network reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub mcc: String,
    pub country: String,
}

impl Merchant {
    /// Field problems as (pointer suffix, message).
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let len_ok = |s: &str, max: usize| {
            !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
        };
        if !len_ok(&self.id, 64) {
            out.push(("/id", "must be 1 to 64 characters"));
        }
        if !len_ok(&self.name, 100) {
            out.push(("/name", "must be 1 to 100 characters"));
        }
        if !(self.mcc.len() == 4 && self.mcc.chars().all(|c| c.is_ascii_digit())) {
            out.push(("/mcc", "must be a 4-digit merchant category code"));
        }
        if !(self.country.len() == 2 && self.country.chars().all(|c| c.is_ascii_uppercase())) {
            out.push(("/country", "must be an ISO 3166-1 alpha-2 code"));
        }
        out
    }
}
