//! Events settlement publishes and consumes (schemas in `contracts/asyncapi.yaml`).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared_kernel::event::CloudEvent;
use uuid::Uuid;

pub const SOURCE: &str = "/settlement";
pub const PAYMENT_SETTLED: &str = "settlement.payment_settled.v1";
pub const BATCH_CLOSED: &str = "settlement.batch_closed.v1";
/// Consumed from payments.
pub const PAYMENT_CAPTURED: &str = "payments.payment_captured.v1";

/// Settlement's events are about aggregates that change once (sequence 1).
pub fn event(event_type: &str, subject: Uuid, data: serde_json::Value) -> CloudEvent {
    CloudEvent::new(SOURCE, event_type, subject, 1, data)
}

#[derive(Debug, Clone, Deserialize)]
pub struct MoneyData {
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MerchantData {
    pub id: String,
    pub mcc: String,
}

/// What settlement needs of `payments.payment_captured.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentCaptured {
    pub capture_id: Uuid,
    pub authorization_id: Uuid,
    pub account_id: Uuid,
    pub merchant: MerchantData,
    pub amount: MoneyData,
    pub captured_at: DateTime<Utc>,
}
