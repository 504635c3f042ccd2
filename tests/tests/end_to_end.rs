//! One card payment from issuance to the ledger, across the three contexts, over
//! real PostgreSQL, RabbitMQ and OpenBao.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::Duration;
use tests::TestSystem;

const PAN: &str = "4000056655665556";
const WAIT: Duration = Duration::from_secs(30);

fn amount(v: &Value) -> i64 {
    v["amount"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_card_payment_flows_from_issuance_to_the_ledger() {
    let sys = TestSystem::start().await;
    let tap = sys.tap_events().await;

    // Every service reports ready: database, broker (and Vault for accounts) reachable.
    for base in [&sys.accounts, &sys.payments, &sys.settlement] {
        let ready = sys
            .send(
                reqwest::Method::GET,
                &format!("{base}/health/ready"),
                None,
                None,
                &[],
            )
            .await;
        assert_eq!(ready.status, 200, "{base}: {:?}", ready.body);
        let live = sys
            .send(
                reqwest::Method::GET,
                &format!("{base}/health/live"),
                None,
                None,
                &[],
            )
            .await;
        assert_eq!(live.status, 200);
    }

    // Open an account and issue a card with a known number.
    let res = sys
        .post(&format!("{}/v1/accounts", sys.accounts), json!({"legal_name": "Acme Logistics", "currency": "USD", "credit_limit": {"amount": 100_000, "currency": "USD"}}))
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["status"], "active");
    assert_eq!(
        res.body["posted_balance"],
        json!({"amount": 0, "currency": "USD"})
    );
    let account_id = res.body["id"].as_str().unwrap().to_owned();
    let res = sys
        .post(&format!("{}/v1/accounts/{account_id}/cards", sys.accounts), json!({"cardholder_name": "Ada Driver", "pan": PAN, "expiry_month": 12, "expiry_year": 2030}))
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["last4"], "5556");
    assert!(res.body.get("pan").is_none());
    let card_id = res.body["id"].as_str().unwrap().to_owned();

    // A generated card number works too, and never shows up either.
    let res = sys
        .post(
            &format!("{}/v1/accounts/{account_id}/cards", sys.accounts),
            json!({"cardholder_name": "Bo Driver", "expiry_month": 1, "expiry_year": 2031}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["last4"].as_str().unwrap().len(), 4);

    // The same number again is a conflict.
    let res = sys
        .post(&format!("{}/v1/accounts/{account_id}/cards", sys.accounts), json!({"cardholder_name": "Ada Driver", "pan": PAN, "expiry_month": 12, "expiry_year": 2030}))
        .await;
    assert_eq!(res.status, 409, "{:?}", res.body);

    // payments hears of the card through accounts' events.
    let spend_url = format!("{}/v1/cards/{card_id}/spend", sys.payments);
    let spend = sys
        .eventually("payments to know the card", WAIT, || async {
            let r = sys.get(&spend_url).await;
            (r.status == 200).then_some(r.body)
        })
        .await;
    assert_eq!(amount(&spend["available_credit"]), 100_000);
    assert_eq!(spend["account_id"], account_id.as_str());

    // Authorize; the same key and body returns the original response.
    let merchant =
        json!({"id": "m-fuel-42", "name": "Fuel Stop 42", "mcc": "5541", "country": "US"});
    let auth_body = json!({"card_id": card_id, "amount": {"amount": 12_500, "currency": "USD"}, "merchant": merchant});
    let auth_url = format!("{}/v1/authorizations", sys.payments);
    let auth = sys.post_idem(&auth_url, "auth-1", auth_body.clone()).await;
    assert_eq!(auth.status, 201, "{:?}", auth.body);
    assert_eq!(auth.body["status"], "approved");
    assert_eq!(auth.body["decline_code"], Value::Null);
    let replay = sys.post_idem(&auth_url, "auth-1", auth_body.clone()).await;
    assert_eq!(replay.status, 201);
    assert_eq!(
        replay.body, auth.body,
        "a replay returns the original response"
    );
    assert_eq!(
        replay
            .headers
            .get("Idempotent-Replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert!(
        auth.headers.get("Idempotent-Replayed").is_none(),
        "the first response is not a replay"
    );
    let auth_id = auth.body["id"].as_str().unwrap().to_owned();
    let fetched = sys.get(&format!("{auth_url}/{auth_id}")).await;
    assert_eq!(fetched.body, auth.body);

    // The hold reduces the available credit at once.
    let spend = sys.get(&spend_url).await.body;
    assert_eq!(amount(&spend["open_holds"]), 12_500);
    assert_eq!(amount(&spend["available_credit"]), 87_500);

    // More than what is left is declined, and recorded.
    let big = json!({"card_id": card_id, "amount": {"amount": 87_501, "currency": "USD"}, "merchant": merchant});
    let declined = sys.post_idem(&auth_url, "auth-2", big).await;
    assert_eq!(declined.status, 201);
    assert_eq!(declined.body["status"], "declined");
    assert_eq!(declined.body["decline_code"], "insufficient_credit");

    // Capture in two parts, up to the authorized amount.
    let cap_url = format!("{auth_url}/{auth_id}/captures");
    let c1 = sys
        .post_idem(
            &cap_url,
            "cap-1",
            json!({"amount": {"amount": 5_000, "currency": "USD"}}),
        )
        .await;
    assert_eq!(c1.status, 201, "{:?}", c1.body);
    let c2 = sys
        .post_idem(
            &cap_url,
            "cap-2",
            json!({"amount": {"amount": 7_500, "currency": "USD"}}),
        )
        .await;
    assert_eq!(c2.status, 201, "{:?}", c2.body);
    let over = sys
        .post_idem(
            &cap_url,
            "cap-3",
            json!({"amount": {"amount": 1, "currency": "USD"}}),
        )
        .await;
    assert_eq!(
        over.status, 422,
        "nothing remains to capture: {:?}",
        over.body
    );
    let captured = amount(&c1.body["amount"]) + amount(&c2.body["amount"]);

    // settlement places both captures in the merchant's open batch.
    let batches_url = format!(
        "{}/v1/settlement-batches?merchant_id=m-fuel-42",
        sys.settlement
    );
    sys.eventually("settlement to batch both captures", WAIT, || async {
        let r = sys.get(&batches_url).await;
        (r.body["data"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && d[0]["item_count"] == 2))
        .then_some(())
    })
    .await;

    // A settlement run closes it: gross = captures, net = gross - fees.
    let cutoff = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let run = sys
        .post(
            &format!("{}/v1/settlement-runs", sys.settlement),
            json!({"cutoff": cutoff}),
        )
        .await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    assert_eq!(run.body["batch_ids"].as_array().unwrap().len(), 1);
    let batch = sys.get(&batches_url).await.body["data"][0].clone();
    assert_eq!(batch["status"], "closed");
    assert_eq!(batch["id"], run.body["batch_ids"][0]);
    let (gross, fees, net) = (
        amount(&batch["gross"]),
        amount(&batch["fees"]),
        amount(&batch["net"]),
    );
    assert_eq!(gross, captured);
    // 1.50% per item, rounded half away from zero: 5000 -> 75, 7500 -> 112.5 -> 113.
    assert_eq!(fees, 75 + 113);
    assert_eq!(net, gross - fees);

    // accounts posts the ledger from settlement's events.
    let account_url = format!("{}/v1/accounts/{account_id}", sys.accounts);
    let account = sys
        .eventually("accounts to post both payments", WAIT, || async {
            let r = sys.get(&account_url).await;
            (amount(&r.body["posted_balance"]) == captured).then_some(r.body)
        })
        .await;
    assert_eq!(amount(&account["posted_balance"]), captured);
    let entries = sys.get(&format!("{account_url}/ledger-entries")).await.body;
    let entries = entries["data"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "two balanced lines per settled capture");
    let sum = |dir: &str| -> i64 {
        entries
            .iter()
            .filter(|e| e["direction"] == dir)
            .map(|e| amount(&e["amount"]))
            .sum()
    };
    assert_eq!(sum("debit"), sum("credit"), "the ledger balances");
    assert_eq!(sum("debit"), captured);

    // payments follows the ledger: available = limit - posted - open holds.
    let spend = sys
        .eventually("payments to release the posted holds", WAIT, || async {
            let r = sys.get(&spend_url).await;
            (amount(&r.body["open_holds"]) == 0).then_some(r.body)
        })
        .await;
    let limit = amount(&spend["credit_limit"]);
    assert_eq!(
        amount(&spend["available_credit"]),
        limit - captured - amount(&spend["open_holds"])
    );
    assert_eq!(amount(&spend["available_credit"]), 100_000 - 12_500);

    // Each settled capture was posted once, and announced once.
    sys.eventually("balance_posted events", WAIT, || async {
        (tap.of_type("accounts.balance_posted.v1").len() == 2).then_some(())
    })
    .await;
    assert_eq!(tap.of_type("settlement.payment_settled.v1").len(), 2);
    assert_eq!(tap.of_type("payments.payment_captured.v1").len(), 2);
    assert_eq!(tap.of_type("accounts.card_issued.v1").len(), 2);

    // The card number appears in no response, event or log line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let responses = sys.seen.lock().unwrap().join("\n");
    let events = serde_json::to_string(&tap.all()).unwrap();
    let logs = tests::logs::captured();
    assert!(!logs.is_empty(), "logs were captured");
    for (name, text) in [
        ("responses", &responses),
        ("events", &events),
        ("logs", &logs),
    ] {
        assert!(!text.contains(PAN), "the PAN leaked into {name}");
    }

    // Prometheus metrics: request RED metrics per route, the relay's work and backlog,
    // authorization decisions (labels carry routes and outcomes, never ids).
    let metrics = sys.fetch_text(&format!("{}/metrics", sys.payments)).await;
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "outbox_published_total",
        "outbox_backlog",
        "outbox_oldest_unpublished_seconds",
        "outbox_batch_seconds",
        "authorization_decisions_total",
        "consumer_messages_total",
        "consumer_handle_seconds",
        "consumer_queue_messages",
        "consumer_parked_messages",
        "consumer_event_age_seconds_bucket",
        "http_request_duration_seconds_bucket",
        "db_pool_connections",
        "db_pool_max_connections",
        "build_info",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(metrics.contains(r#"route="/v1/authorizations""#));
    assert!(!metrics.contains(&auth_id), "no ids in metric labels");

    // Every response matched the committed OpenAPI; every event its schema.
    sys.assert_exchanges_match_contracts();
    let event_problems: Vec<String> = tap
        .all()
        .iter()
        .flat_map(tests::contract::check_event)
        .collect();
    assert!(
        event_problems.is_empty(),
        "events disagree with contracts/events:\n{}",
        event_problems.join("\n")
    );
    sys.shutdown().await;
}
