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
        // Free text goes into responses, events and settlement batches: a card number
        // never gets in.
        let card = shared_kernel::redact::contains_card_number;
        if !len_ok(&self.id, 64) {
            out.push(("/id", "must be 1 to 64 characters"));
        } else if card(&self.id) {
            out.push(("/id", "must not contain a card number"));
        }
        if !len_ok(&self.name, 100) {
            out.push(("/name", "must be 1 to 100 characters"));
        } else if card(&self.name) {
            out.push(("/name", "must not contain a card number"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(id: &str, name: &str) -> Merchant {
        Merchant {
            id: id.to_owned(),
            name: name.to_owned(),
            mcc: "5541".to_owned(),
            country: "US".to_owned(),
        }
    }

    #[test]
    fn free_text_never_carries_a_card_number() {
        assert!(merchant("m-1", "Fuel Stop 42").problems().is_empty());
        assert!(merchant("4000056655665557", "Order 123456789")
            .problems()
            .is_empty());
        assert_eq!(
            merchant("m-4000056655665556", "Fuel 4000 0566 5566 5556").problems(),
            vec![
                ("/id", "must not contain a card number"),
                ("/name", "must not contain a card number")
            ]
        );
    }
}
