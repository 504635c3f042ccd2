//! The authorization decision.

/// Why an authorization was declined (machine-readable, stable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineCode {
    CardNotActive,
    AccountNotActive,
    InsufficientCredit,
}

impl DeclineCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineCode::CardNotActive => "card_not_active",
            DeclineCode::AccountNotActive => "account_not_active",
            DeclineCode::InsufficientCredit => "insufficient_credit",
        }
    }
}

/// What the decision looks at, all in the account's currency minor units.
#[derive(Debug, Clone, Copy)]
pub struct SpendPosition {
    pub credit_limit: i64,
    pub posted_balance: i64,
    pub held: i64,
}

impl SpendPosition {
    /// Credit limit − posted balance − open holds (may be negative after a limit cut).
    pub fn available(&self) -> i64 {
        self.credit_limit
            .saturating_sub(self.posted_balance)
            .saturating_sub(self.held)
    }
}

/// Approve when card and account are active and the amount fits the available credit.
pub fn decide(
    card_active: bool,
    account_active: bool,
    position: SpendPosition,
    amount: i64,
) -> Result<(), DeclineCode> {
    if !card_active {
        return Err(DeclineCode::CardNotActive);
    }
    if !account_active {
        return Err(DeclineCode::AccountNotActive);
    }
    if amount > position.available() {
        return Err(DeclineCode::InsufficientCredit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POS: SpendPosition = SpendPosition {
        credit_limit: 10_000,
        posted_balance: 3_000,
        held: 2_000,
    };

    #[test]
    fn available_is_limit_minus_posted_minus_held() {
        assert_eq!(POS.available(), 5_000);
    }

    #[test]
    fn approves_up_to_the_available_credit_exactly() {
        assert_eq!(decide(true, true, POS, 5_000), Ok(()));
        assert_eq!(
            decide(true, true, POS, 5_001),
            Err(DeclineCode::InsufficientCredit)
        );
    }

    #[test]
    fn inactive_card_or_account_declines_first() {
        assert_eq!(decide(false, true, POS, 1), Err(DeclineCode::CardNotActive));
        assert_eq!(
            decide(true, false, POS, 1),
            Err(DeclineCode::AccountNotActive)
        );
    }
}
