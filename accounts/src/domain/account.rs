use shared_kernel::{Currency, Money};

/// A request to open an account, already parsed.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub legal_name: String,
    pub currency: Currency,
    pub credit_limit: Money,
    /// The program (tenant) the account belongs to.
    pub program_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Suspended,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }
}

/// A legal name: trimmed, 1–200 characters, no control characters, no card number.
pub fn parse_legal_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err("must be 1 to 200 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    // Free text is echoed in responses and events: a card number never gets in.
    if shared_kernel::redact::contains_card_number(name) {
        return Err("must not contain a card number");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_names_never_carry_a_card_number() {
        assert_eq!(
            parse_legal_name(" Acme 24/7 Ltd ").unwrap(),
            "Acme 24/7 Ltd"
        );
        assert_eq!(
            parse_legal_name("Acme 4000056655665556"),
            Err("must not contain a card number")
        );
    }
}
