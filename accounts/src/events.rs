//! Events accounts publishes and consumes (schemas in `contracts/asyncapi.yaml`).

use crate::store::cards::CardRow;
use crate::store::AccountRow;
use serde::{Deserialize, Serialize};
use shared_kernel::event::CloudEvent;
use uuid::Uuid;

pub const SOURCE: &str = "/accounts";
pub const ACCOUNT_OPENED: &str = "accounts.account_opened.v1";
pub const CARD_ISSUED: &str = "accounts.card_issued.v1";
pub const BALANCE_POSTED: &str = "accounts.balance_posted.v1";
/// Each of these is a full snapshot of its subject (the account, the card): the newest
/// per subject is kept in the outbox for good, so projections can be rebuilt from it.
pub const SNAPSHOTS: &[&str] = &[ACCOUNT_OPENED, BALANCE_POSTED, CARD_ISSUED];
/// Consumed from settlement.
pub const PAYMENT_SETTLED: &str = "settlement.payment_settled.v1";

/// Money as it travels in events: `{"amount", "currency"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MoneyData {
    pub amount: i64,
    pub currency: String,
}

/// The posting that moved the balance, in `balance_posted`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Posted {
    pub payment_id: Uuid,
    pub amount: MoneyData,
}

/// Account events carry the account's state after the change, so a projection can
/// apply the newest one it has seen and ignore older ones by `sequence`.
pub fn account_snapshot(
    event_type: &str,
    a: &AccountRow,
    posted_balance: i64,
    posted: Option<Posted>,
) -> CloudEvent {
    let mut data = serde_json::json!({
        "account_id": a.id,
        "currency": a.currency,
        "credit_limit": {"amount": a.credit_limit, "currency": a.currency},
        "posted_balance": {"amount": posted_balance, "currency": a.currency},
        "status": a.status,
        "program_id": a.program_id,
    });
    if let Some(p) = posted {
        data["posting"] = serde_json::json!(p);
    }
    CloudEvent::new(SOURCE, event_type, a.id, a.version, data)
}

/// `program_id` is the card's account's program.
pub fn card_issued(c: &CardRow, program_id: &str) -> CloudEvent {
    let data = serde_json::json!({
        "program_id": program_id,
        "card_id": c.id,
        "account_id": c.account_id,
        "last4": c.last4,
        "expiry_month": c.expiry_month,
        "expiry_year": c.expiry_year,
        "status": c.status,
    });
    CloudEvent::new(SOURCE, CARD_ISSUED, c.id, 1, data)
}

/// What accounts needs of `settlement.payment_settled.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettled {
    pub capture_id: Uuid,
    pub account_id: Uuid,
    pub amount: MoneyData,
}
