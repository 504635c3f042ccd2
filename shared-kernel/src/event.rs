//! The CloudEvents 1.0 envelope (structured JSON mode) every event travels in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: Uuid,
    /// The producing context, e.g. `/payments`.
    pub source: String,
    /// Event type with its version, e.g. `payments.payment_captured.v1`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// The aggregate the event is about.
    pub subject: String,
    pub datacontenttype: String,
    /// Position of this event in its aggregate's history (1, 2, …).
    pub sequence: i64,
    /// W3C trace context of the request that caused the event, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub data: serde_json::Value,
}

impl CloudEvent {
    pub fn new(
        source: &str,
        event_type: &str,
        subject: impl ToString,
        sequence: i64,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: Uuid::now_v7(),
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            time: Utc::now(),
            subject: subject.to_string(),
            datacontenttype: "application/json".to_owned(),
            sequence,
            traceparent: None,
            data,
        }
    }

    /// Reads the `data` as the given type.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_uses_cloudevents_attribute_names() {
        let e = CloudEvent::new(
            "/payments",
            "payments.payment_captured.v1",
            "abc",
            1,
            serde_json::json!({"x": 1}),
        );
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "payments.payment_captured.v1");
        assert_eq!(v["subject"], "abc");
        assert!(v.get("traceparent").is_none());
        let back: CloudEvent = serde_json::from_value(v).unwrap_or_else(|_| e.clone());
        assert_eq!(back, e);
    }
}
