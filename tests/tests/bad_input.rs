//! Bad input on every endpoint gets an RFC 9457 problem with the right status, never a
//! 500; and a failed request leaves nothing half-written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{json, Value};
use tests::{Response, TestSystem};

const NO_SUCH: &str = "01900000-0000-7000-8000-000000000000";

fn problem(res: &Response, status: u16, slug: &str) {
    assert_eq!(
        res.status.as_u16(),
        status,
        "expected {status} {slug}, got {:?}",
        res.body
    );
    assert!(
        res.content_type.starts_with("application/problem+json"),
        "content type {}",
        res.content_type
    );
    assert_eq!(res.body["status"], status);
    assert_eq!(
        res.body["type"],
        format!("https://problems.fleet-cards.example/{slug}"),
        "{:?}",
        res.body
    );
    assert!(res.body["title"].is_string());
}

fn pointer(res: &Response, expected: &str) {
    let pointers: Vec<&str> = res.body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["pointer"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        pointers.contains(&expected),
        "expected pointer {expected} in {:?}",
        res.body
    );
}

async fn post_as(
    sys: &TestSystem,
    url: &str,
    scopes: &[&str],
    body: Value,
    headers: &[(&str, &str)],
) -> Response {
    sys.send(
        Method::POST,
        url,
        Some(&sys.token_with(scopes)),
        Some(body),
        headers,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_rejects_bad_input_with_problems() {
    let sys = TestSystem::start().await;
    let url = format!("{}/v1/accounts", sys.accounts);
    let good = json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": 1000, "currency": "USD"}});

    problem(
        &sys.send(Method::POST, &url, None, Some(good.clone()), &[])
            .await,
        401,
        "unauthenticated",
    );
    problem(
        &sys.send(
            Method::POST,
            &url,
            Some("not-a-jwt"),
            Some(good.clone()),
            &[],
        )
        .await,
        401,
        "unauthenticated",
    );
    problem(
        &post_as(&sys, &url, &["accounts:read"], good.clone(), &[]).await,
        403,
        "forbidden",
    );
    problem(
        &sys.send_raw(
            Method::POST,
            &url,
            Some(&sys.token()),
            "application/json",
            "{\"legal_name\": ",
            &[],
        )
        .await,
        400,
        "malformed-request",
    );
    problem(
        &sys.send_raw(
            Method::POST,
            &url,
            Some(&sys.token()),
            "text/plain",
            "hello",
            &[],
        )
        .await,
        415,
        "unsupported-media-type",
    );
    let big = format!("{{\"legal_name\": \"{}\"}}", "x".repeat(70_000));
    problem(
        &sys.send_raw(
            Method::POST,
            &url,
            Some(&sys.token()),
            "application/json",
            &big,
            &[],
        )
        .await,
        413,
        "payload-too-large",
    );

    let res = sys
        .post(
            &url,
            json!({"legal_name": "Acme", "credit_limit": {"amount": 1000, "currency": "USD"}}),
        )
        .await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/currency");
    let res = sys.post(&url, json!({"legal_name": "Acme", "currency": "XYZ", "credit_limit": {"amount": 1000, "currency": "XYZ"}})).await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/currency");
    pointer(&res, "/credit_limit/currency");
    let res = sys.post(&url, json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": 1000, "currency": "EUR"}})).await;
    pointer(&res, "/credit_limit/currency");
    let res = sys.post(&url, json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": -5, "currency": "USD"}})).await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/credit_limit/amount");
    let res = sys.post(&url, json!({"legal_name": "  ", "currency": "USD", "credit_limit": {"amount": 5, "currency": "USD"}})).await;
    pointer(&res, "/legal_name");
    let res = sys.post(&url, json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": "ten", "currency": "USD"}})).await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/credit_limit/amount");
    let res = sys.post(&url, json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": 5, "currency": "USD"}, "extra": 1})).await;
    problem(&res, 422, "validation-failed");

    problem(
        &sys.get(&format!("{url}/{NO_SUCH}")).await,
        404,
        "not-found",
    );
    problem(
        &sys.get(&format!("{url}/not-a-uuid")).await,
        404,
        "not-found",
    );
    problem(
        &sys.get(&format!("{url}/{NO_SUCH}/ledger-entries")).await,
        404,
        "not-found",
    );
    problem(
        &sys.get(&format!("{}/v1/nowhere", sys.accounts)).await,
        404,
        "not-found",
    );

    // Cards: unknown account, bad number, bad expiry, wrong scope.
    let card = json!({"cardholder_name": "Ada Driver", "pan": "4000056655665556", "expiry_month": 12, "expiry_year": 2030});
    problem(
        &sys.post(&format!("{url}/{NO_SUCH}/cards"), card.clone())
            .await,
        404,
        "not-found",
    );
    let account = sys.post(&url, good.clone()).await;
    assert_eq!(account.status, 201);
    let cards_url = format!("{url}/{}/cards", account.body["id"].as_str().unwrap());
    problem(
        &post_as(&sys, &cards_url, &["accounts:write"], card.clone(), &[]).await,
        403,
        "forbidden",
    );
    let res = sys.post(&cards_url, json!({"cardholder_name": "Ada Driver", "pan": "4000056655665557", "expiry_month": 12, "expiry_year": 2030})).await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/pan");
    let res = sys
        .post(
            &cards_url,
            json!({"cardholder_name": "Ada Driver", "expiry_month": 13, "expiry_year": 2030}),
        )
        .await;
    pointer(&res, "/expiry_month");
    let res = sys
        .post(&cards_url, json!({"expiry_month": 12, "expiry_year": 2030}))
        .await;
    pointer(&res, "/cardholder_name");
    let ledger = format!(
        "{url}/{}/ledger-entries",
        account.body["id"].as_str().unwrap()
    );
    problem(
        &sys.get(&format!("{ledger}?limit=0")).await,
        422,
        "validation-failed",
    );
    problem(
        &sys.get(&format!("{ledger}?cursor=abc")).await,
        422,
        "validation-failed",
    );
    problem(
        &sys.get(&format!("{ledger}?limit=many")).await,
        422,
        "validation-failed",
    );
    problem(
        &sys.get(&format!("{ledger}?colour=blue")).await,
        422,
        "validation-failed",
    );

    // Nothing was half-written: the one good account exists, with no card and no event
    // beyond its own `account_opened`.
    let listed = sys.get(&ledger).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["data"], json!([]));
    assert_eq!(sys.count("SELECT count(*) FROM accounts.accounts").await, 1);
    assert_eq!(sys.count("SELECT count(*) FROM accounts.cards").await, 0);
    assert_eq!(sys.count("SELECT count(*) FROM accounts.outbox").await, 1);
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_rejects_bad_input_with_problems() {
    let sys = TestSystem::start().await;
    let card_id = sys.card_known_to_payments(1_000).await;
    let spend = format!("{}/v1/cards/{card_id}/spend", sys.payments);

    let url = format!("{}/v1/authorizations", sys.payments);
    let merchant = json!({"id": "m1", "name": "Shop", "mcc": "5812", "country": "US"});
    let good = json!({"card_id": card_id, "amount": {"amount": 100, "currency": "USD"}, "merchant": merchant});
    let with = |amount: Value| json!({"card_id": card_id, "amount": amount, "merchant": merchant});

    problem(
        &sys.send(
            Method::POST,
            &url,
            None,
            Some(good.clone()),
            &[("Idempotency-Key", "k0")],
        )
        .await,
        401,
        "unauthenticated",
    );
    problem(
        &post_as(
            &sys,
            &url,
            &["payments:read"],
            good.clone(),
            &[("Idempotency-Key", "k0")],
        )
        .await,
        403,
        "forbidden",
    );
    problem(
        &sys.post(&url, good.clone()).await,
        400,
        "missing-idempotency-key",
    );
    problem(
        &sys.send_raw(
            Method::POST,
            &url,
            Some(&sys.token()),
            "application/json",
            "[1,",
            &[("Idempotency-Key", "k1")],
        )
        .await,
        400,
        "malformed-request",
    );
    let res = sys
        .post_idem(&url, "k2", with(json!({"amount": 0, "currency": "USD"})))
        .await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/amount/amount");
    let res = sys
        .post_idem(&url, "k3", with(json!({"amount": -100, "currency": "USD"})))
        .await;
    pointer(&res, "/amount/amount");
    let res = sys
        .post_idem(&url, "k4", with(json!({"amount": 100, "currency": "XXX"})))
        .await;
    pointer(&res, "/amount/currency");
    let res = sys
        .post_idem(&url, "k5", with(json!({"amount": 100, "currency": "EUR"})))
        .await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/amount/currency");
    let res = sys.post_idem(&url, "k6", json!({"card_id": card_id, "amount": {"amount": 100, "currency": "USD"}, "merchant": {"id": "m1", "name": "Shop", "mcc": "58", "country": "usa"}})).await;
    pointer(&res, "/merchant/mcc");
    pointer(&res, "/merchant/country");
    let res = sys
        .post_idem(
            &url,
            "k7",
            json!({"amount": {"amount": 100, "currency": "USD"}, "merchant": merchant}),
        )
        .await;
    pointer(&res, "/card_id");
    problem(&sys.post_idem(&url, "k8", json!({"card_id": NO_SUCH, "amount": {"amount": 100, "currency": "USD"}, "merchant": merchant})).await, 404, "not-found");

    // The same key with another body is refused; the first effect stands alone.
    let first = sys.post_idem(&url, "k9", good.clone()).await;
    assert_eq!(first.status, 201);
    problem(
        &sys.post_idem(&url, "k9", with(json!({"amount": 101, "currency": "USD"})))
            .await,
        422,
        "idempotency-key-reused",
    );

    problem(
        &sys.get(&format!("{url}/{NO_SUCH}")).await,
        404,
        "not-found",
    );
    problem(
        &sys.get(&format!("{}/v1/cards/{NO_SUCH}/spend", sys.payments))
            .await,
        404,
        "not-found",
    );

    // Captures: unknown authorization, a declined one, zero, too much.
    let cap = json!({"amount": {"amount": 50, "currency": "USD"}});
    problem(
        &sys.post_idem(&format!("{url}/{NO_SUCH}/captures"), "c1", cap.clone())
            .await,
        404,
        "not-found",
    );
    let declined = sys
        .post_idem(
            &url,
            "k10",
            with(json!({"amount": 5000, "currency": "USD"})),
        )
        .await;
    assert_eq!(declined.body["status"], "declined");
    let declined_id = declined.body["id"].as_str().unwrap();
    problem(
        &sys.post_idem(&format!("{url}/{declined_id}/captures"), "c2", cap.clone())
            .await,
        409,
        "conflict",
    );
    let approved_id = first.body["id"].as_str().unwrap();
    let caps = format!("{url}/{approved_id}/captures");
    problem(
        &sys.post_idem(
            &caps,
            "c3",
            json!({"amount": {"amount": 0, "currency": "USD"}}),
        )
        .await,
        422,
        "validation-failed",
    );
    problem(
        &sys.post_idem(
            &caps,
            "c4",
            json!({"amount": {"amount": 101, "currency": "USD"}}),
        )
        .await,
        422,
        "validation-failed",
    );
    problem(
        &sys.post(&caps, cap.clone()).await,
        400,
        "missing-idempotency-key",
    );

    // None of the refused requests held credit: only the one approval of 100 did.
    let s = sys.get(&spend).await.body;
    assert_eq!(s["open_holds"]["amount"], 100);
    assert_eq!(s["available_credit"]["amount"], 900);
    let a = sys.get(&format!("{url}/{approved_id}")).await.body;
    assert_eq!(a["captured_amount"]["amount"], 0);
    assert_eq!(
        sys.count("SELECT count(*) FROM payments.authorizations")
            .await,
        2,
        "the approval and the decline"
    );
    assert_eq!(
        sys.count("SELECT count(*) FROM payments.idempotency_keys")
            .await,
        2
    );
    assert_eq!(sys.count("SELECT count(*) FROM payments.captures").await, 0);
    assert_eq!(sys.count("SELECT count(*) FROM payments.outbox").await, 0);
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settlement_rejects_bad_input_with_problems() {
    let sys = TestSystem::start().await;
    let runs = format!("{}/v1/settlement-runs", sys.settlement);
    let batches = format!("{}/v1/settlement-batches", sys.settlement);
    problem(
        &sys.send(
            Method::POST,
            &runs,
            None,
            Some(json!({"cutoff": "2026-01-01T00:00:00Z"})),
            &[],
        )
        .await,
        401,
        "unauthenticated",
    );
    problem(
        &post_as(
            &sys,
            &runs,
            &["settlement:read"],
            json!({"cutoff": "2026-01-01T00:00:00Z"}),
            &[],
        )
        .await,
        403,
        "forbidden",
    );
    problem(
        &sys.send_raw(
            Method::POST,
            &runs,
            Some(&sys.token()),
            "application/json",
            "{",
            &[],
        )
        .await,
        400,
        "malformed-request",
    );
    let res = sys.post(&runs, json!({"cutoff": "yesterday"})).await;
    problem(&res, 422, "validation-failed");
    pointer(&res, "/cutoff");
    let res = sys.post(&runs, json!({})).await;
    pointer(&res, "/cutoff");
    problem(
        &sys.send(Method::GET, &batches, None, None, &[]).await,
        401,
        "unauthenticated",
    );
    problem(
        &sys.send(
            Method::GET,
            &batches,
            Some(&sys.token_with(&["settlement:write"])),
            None,
            &[],
        )
        .await,
        403,
        "forbidden",
    );
    problem(
        &sys.get(&format!("{batches}?limit=1000")).await,
        422,
        "validation-failed",
    );
    problem(
        &sys.get(&format!("{batches}?cursor=zzz")).await,
        422,
        "validation-failed",
    );
    problem(
        &sys.get(&format!("{batches}?colour=blue")).await,
        422,
        "validation-failed",
    );

    // A run with nothing to settle closes nothing.
    let run = sys
        .post(&runs, json!({"cutoff": "2026-01-01T00:00:00Z"}))
        .await;
    assert_eq!(run.status, 201);
    assert_eq!(run.body["batch_ids"], json!([]));
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}
