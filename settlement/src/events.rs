//! Events settlement publishes and consumes (schemas in `contracts/asyncapi.yaml`).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared_kernel::event::CloudEvent;
use uuid::Uuid;

pub const SOURCE: &str = "/settlement";
pub const PAYMENT_SETTLED: &str = "settlement.payment_settled.v1";
pub const BATCH_CLOSED: &str = "settlement.batch_closed.v1";
/// Consumed from payments: v1 (what payments publishes today) and v2, its successor.
pub const PAYMENT_CAPTURED: &str = "payments.payment_captured.v1";
pub const PAYMENT_CAPTURED_V2: &str = "payments.payment_captured.v2";

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
    pub category_code: String,
}

/// What settlement needs of a captured payment, in the v2 shape.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentCaptured {
    pub capture_id: Uuid,
    pub authorization_id: Uuid,
    pub account_id: Uuid,
    pub merchant: MerchantData,
    pub captured_amount: MoneyData,
    pub captured_at: DateTime<Utc>,
}

/// Reads a captured payment of either version: v1 data is upcast to v2 first.
/// `None` when the event is of another type.
pub fn captured(event: &CloudEvent) -> Option<Result<PaymentCaptured, serde_json::Error>> {
    match event.event_type.as_str() {
        PAYMENT_CAPTURED_V2 => Some(event.data_as()),
        PAYMENT_CAPTURED => Some(serde_json::from_value(upcast_v1(event.data.clone()))),
        _ => None,
    }
}

/// v1 → v2: `amount` became `captured_amount`, `merchant.mcc` became
/// `merchant.category_code`; everything else is unchanged.
pub fn upcast_v1(mut data: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = data.as_object_mut() {
        if let Some(amount) = obj.remove("amount") {
            obj.insert("captured_amount".to_owned(), amount);
        }
        if let Some(merchant) = obj.get_mut("merchant").and_then(|m| m.as_object_mut()) {
            if let Some(mcc) = merchant.remove("mcc") {
                merchant.insert("category_code".to_owned(), mcc);
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_v1_capture_reads_as_its_v2_equivalent() {
        let v1 = json!({"capture_id": "0190a0f4-0000-7000-8000-000000000001",
            "authorization_id": "0190a0f4-0000-7000-8000-000000000002", "card_id": "0190a0f4-0000-7000-8000-000000000003",
            "account_id": "0190a0f4-0000-7000-8000-000000000004",
            "merchant": {"id": "m-1", "name": "Fuel", "mcc": "5541", "country": "US"},
            "amount": {"amount": 1250, "currency": "USD"}, "captured_at": "2026-11-27T10:00:00Z"});
        let v2 = json!({"capture_id": "0190a0f4-0000-7000-8000-000000000001",
            "authorization_id": "0190a0f4-0000-7000-8000-000000000002", "card_id": "0190a0f4-0000-7000-8000-000000000003",
            "account_id": "0190a0f4-0000-7000-8000-000000000004",
            "merchant": {"id": "m-1", "name": "Fuel", "category_code": "5541", "country": "US"},
            "captured_amount": {"amount": 1250, "currency": "USD"}, "captured_at": "2026-11-27T10:00:00Z"});
        assert_eq!(upcast_v1(v1.clone()), v2);
        let e1 = CloudEvent::new(SOURCE, PAYMENT_CAPTURED, "a", 2, v1);
        let e2 = CloudEvent::new(SOURCE, PAYMENT_CAPTURED_V2, "a", 2, v2);
        let (a, b) = (
            captured(&e1).unwrap().unwrap(),
            captured(&e2).unwrap().unwrap(),
        );
        assert_eq!(a.captured_amount.amount, 1250);
        assert_eq!(
            (a.merchant.category_code, a.capture_id),
            (b.merchant.category_code, b.capture_id)
        );
        assert!(captured(&CloudEvent::new(SOURCE, PAYMENT_SETTLED, "a", 1, json!({}))).is_none());
    }
}
