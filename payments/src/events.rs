//! Events payments publishes and consumes (schemas in `contracts/asyncapi.yaml`).

use crate::store::authorizations::{AuthorizationRow, CaptureOut};
use serde::Deserialize;
use shared_kernel::event::CloudEvent;
use uuid::Uuid;

pub const SOURCE: &str = "/payments";
pub const PAYMENT_CAPTURED: &str = "payments.payment_captured.v1";
/// Consumed from accounts.
pub const ACCOUNT_OPENED: &str = "accounts.account_opened.v1";
pub const BALANCE_POSTED: &str = "accounts.balance_posted.v1";
pub const CARD_ISSUED: &str = "accounts.card_issued.v1";

pub fn payment_captured(
    auth: &AuthorizationRow,
    capture: &CaptureOut,
    sequence: i64,
) -> CloudEvent {
    let data = serde_json::json!({
        "capture_id": capture.id,
        "authorization_id": auth.id,
        "card_id": auth.card_id,
        "account_id": auth.account_id,
        "merchant": auth.merchant,
        "amount": capture.amount,
        "captured_at": capture.created_at,
    });
    CloudEvent::new(SOURCE, PAYMENT_CAPTURED, auth.id, sequence, data)
}

#[derive(Debug, Clone, Deserialize)]
pub struct MoneyData {
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Posting {
    pub payment_id: Uuid,
    pub amount: MoneyData,
}

/// What payments needs of accounts' account events.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountSnapshot {
    pub account_id: Uuid,
    pub currency: String,
    pub credit_limit: MoneyData,
    pub posted_balance: MoneyData,
    pub status: String,
    #[serde(default)]
    pub posting: Option<Posting>,
}

/// What payments needs of `accounts.card_issued.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct CardIssued {
    pub card_id: Uuid,
    pub account_id: Uuid,
    pub status: String,
    /// Absent from events of before programs: those cards are the default program's.
    #[serde(default = "default_program")]
    pub program_id: String,
}

fn default_program() -> String {
    shared_kernel::program::DEFAULT.to_owned()
}
