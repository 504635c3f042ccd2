//! Under concurrency: no overspend, and one idempotency key never makes two payments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use tests::TestSystem;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_authorizations_never_exceed_the_credit_limit() {
    let sys = Arc::new(TestSystem::start().await);
    let card_id = sys.card_known_to_payments(10_000).await;
    let url = format!("{}/v1/authorizations", sys.payments);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (sys, url, card_id) = (sys.clone(), url.clone(), card_id.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"card_id": card_id, "amount": {"amount": 1_000, "currency": "USD"}, "merchant": {"id": "m1", "name": "Shop", "mcc": "5812", "country": "US"}});
            sys.post_idem(&url, &format!("race-{i}"), body).await
        }));
    }
    let mut approved = 0;
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status, 201, "{:?}", res.body);
        match res.body["status"].as_str().unwrap() {
            "approved" => approved += 1,
            "declined" => assert_eq!(res.body["decline_code"], "insufficient_credit"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(approved, 10, "exactly the credit limit's worth is approved");
    let spend = sys
        .get(&format!("{}/v1/cards/{card_id}/spend", sys.payments))
        .await
        .body;
    assert_eq!(spend["open_holds"]["amount"], 10_000);
    assert_eq!(spend["available_credit"]["amount"], 0);
    Arc::into_inner(sys).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_concurrently_makes_one_payment() {
    let sys = Arc::new(TestSystem::start().await);
    let card_id = sys.card_known_to_payments(100_000).await;
    let url = format!("{}/v1/authorizations", sys.payments);
    let body = json!({"card_id": card_id, "amount": {"amount": 500, "currency": "USD"}, "merchant": {"id": "m1", "name": "Shop", "mcc": "5812", "country": "US"}});
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (sys, url, body) = (sys.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            sys.post_idem(&url, "same-key", body).await
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        let res = t.await.unwrap();
        match res.status.as_u16() {
            201 => {
                ids.insert(res.body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(
                res.body["type"],
                "https://problems.fleet-cards.example/idempotency-key-in-use"
            ),
            other => panic!("unexpected {other}: {:?}", res.body),
        }
    }
    assert_eq!(ids.len(), 1, "every success is the same authorization");
    assert_eq!(
        sys.count("SELECT count(*) FROM payments.authorizations")
            .await,
        1
    );
    let spend = sys
        .get(&format!("{}/v1/cards/{card_id}/spend", sys.payments))
        .await
        .body;
    assert_eq!(spend["open_holds"]["amount"], 500, "held once");
    Arc::into_inner(sys).unwrap().shutdown().await;
}
