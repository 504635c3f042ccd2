//! The double-entry rules of a posting.

use shared_kernel::Money;

pub const CARD_RECEIVABLE: &str = "card_receivable";
pub const MERCHANT_SETTLEMENT_PAYABLE: &str = "merchant_settlement_payable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Debit,
    Credit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "debit",
            Direction::Credit => "credit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub ledger_account: &'static str,
    pub direction: Direction,
    pub amount: Money,
}

/// A settled card payment: the account owes more (debit its receivable), and the
/// program owes the merchant (credit the settlement payable).
pub fn settled_payment(amount: Money) -> Vec<Line> {
    vec![
        Line {
            ledger_account: CARD_RECEIVABLE,
            direction: Direction::Debit,
            amount,
        },
        Line {
            ledger_account: MERCHANT_SETTLEMENT_PAYABLE,
            direction: Direction::Credit,
            amount,
        },
    ]
}

/// Debits equal credits.
pub fn is_balanced(lines: &[Line]) -> bool {
    let sum = |d: Direction| -> i128 {
        lines
            .iter()
            .filter(|l| l.direction == d)
            .map(|l| i128::from(l.amount.amount))
            .sum()
    };
    sum(Direction::Debit) == sum(Direction::Credit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_kernel::Currency;

    #[test]
    fn a_settled_payment_posts_balanced_lines() {
        let lines = settled_payment(Money::new(1250, Currency::Usd));
        assert_eq!(lines.len(), 2);
        assert!(is_balanced(&lines));
        assert!(!is_balanced(&lines[..1]));
    }
}
