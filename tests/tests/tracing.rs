//! One trace follows a payment across the three contexts: the authorization and capture
//! requests (W3C `traceparent` from the caller), the event to settlement, the settlement
//! run's settling of that payment, the posting in accounts, and payments hearing of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use opentelemetry_sdk::trace::SpanData;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tests::TestSystem;

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The consume span of `event_type` in this trace.
fn consume<'a>(spans: &'a [SpanData], event_type: &str) -> Option<&'a SpanData> {
    spans
        .iter()
        .find(|s| s.name == "consume" && attr(s, "event_type").as_deref() == Some(event_type))
}

/// Whether `ancestor` is `span`'s parent, grandparent, ….
fn descends(spans: &[SpanData], span: &SpanData, ancestor: &SpanData) -> bool {
    let by_id: HashMap<_, _> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let mut parent = span.parent_span_id;
    while let Some(p) = by_id.get(&parent) {
        if p.span_context.span_id() == ancestor.span_context.span_id() {
            return true;
        }
        parent = p.parent_span_id;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_follows_a_payment_across_http_and_amqp() {
    let sys = TestSystem::start().await;
    let card_id = sys.card_known_to_payments(100_000).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let token = sys.token();
    let send = |url: String, key: &'static str, body: serde_json::Value| {
        let (sys, token, tp) = (&sys, token.clone(), traceparent.clone());
        async move {
            let headers = [("Idempotency-Key", key), ("traceparent", tp.as_str())];
            sys.send(Method::POST, &url, Some(&token), Some(body), &headers)
                .await
        }
    };
    let auth = send(
        format!("{}/v1/authorizations", sys.payments),
        "t-auth",
        json!({"card_id": card_id, "amount": {"amount": 4_200, "currency": "USD"},
               "merchant": {"id": "m-trace", "name": "Fuel", "mcc": "5541", "country": "US"}}),
    )
    .await;
    assert_eq!(auth.status, 201, "{:?}", auth.body);
    let auth_id = auth.body["id"].as_str().unwrap();
    let cap = send(
        format!("{}/v1/authorizations/{auth_id}/captures", sys.payments),
        "t-cap",
        json!({"amount": {"amount": 4_200, "currency": "USD"}}),
    )
    .await;
    assert_eq!(cap.status, 201, "{:?}", cap.body);
    let capture_id = cap.body["id"].as_str().unwrap().to_owned();
    sys.eventually("the capture in settlement", Duration::from_secs(30), || async {
        let n = sys
            .count(&format!("SELECT count(*) AS count FROM settlement.items WHERE capture_id = '{capture_id}'"))
            .await;
        (n == 1).then_some(())
    })
    .await;
    // The run is a request of its own (its own trace); it settles this payment in the
    // payment's trace.
    sys.run_settlement().await;

    let spans = sys
        .eventually(
            "the whole chain of spans",
            Duration::from_secs(30),
            || async {
                let spans = tests::logs::spans_of_trace(&trace_id);
                let done = consume(&spans, "accounts.balance_posted.v1").is_some();
                done.then_some(spans)
            },
        )
        .await;
    let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
    let requests: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attr(s, "http.route").is_some())
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "the authorization and capture requests: {names:?}"
    );
    let capture_request = requests
        .iter()
        .find(|s| attr(s, "http.route").is_some_and(|r| r.contains("captures")))
        .expect("the capture request's span");
    let in_settlement = consume(&spans, "payments.payment_captured.v1").expect("settlement's span");
    let settled = spans
        .iter()
        .find(|s| s.name == "settle_payment")
        .expect("the run's span for it");
    let in_accounts = consume(&spans, "settlement.payment_settled.v1").expect("accounts' span");
    let back_in_payments = consume(&spans, "accounts.balance_posted.v1").expect("payments' span");
    assert!(
        descends(&spans, in_settlement, capture_request),
        "settlement ← capture: {names:?}"
    );
    assert!(
        descends(&spans, settled, in_settlement),
        "settle ← settlement consume: {names:?}"
    );
    assert!(
        descends(&spans, in_accounts, settled),
        "accounts ← settle: {names:?}"
    );
    assert!(
        descends(&spans, back_in_payments, in_accounts),
        "payments ← accounts: {names:?}"
    );
    // Log lines written while handling a message carry the trace id, as a request's do.
    let logs = tests::logs::captured();
    let traced = format!("\"trace_id\":\"{trace_id}\"");
    assert!(
        logs.lines()
            .any(|l| l.contains("captured payment handled") && l.contains(&traced)),
        "settlement's log line carries the trace id"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("\"request_id\"") && l.contains(&traced)),
        "request log lines carry the trace id and the request id"
    );
    // The relay's batches are spans too (traces of their own).
    let all = tests::logs::spans_exporter().get_finished_spans().unwrap();
    assert!(all.iter().any(|s| s.name == "outbox.publish_batch"));
    sys.shutdown().await;
}
