//! Programs (tenants), ADR 0018: a token bound to one program neither sees nor changes
//! another program's accounts, cards or payments. Each refusal is answered exactly as
//! an unknown id is (404, same problem), so ids do not leak, and writes nothing.
//! Operations that span every program refuse bound tokens (403), and the audit log
//! records the program of each request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{json, Value};
use shared_kernel::auth::ALL_SCOPES;
use std::time::Duration;
use tests::{Response, TestSystem};

const UNKNOWN: &str = "0192f000-0000-7000-8000-000000000000";

fn scopes() -> Vec<&'static str> {
    let mut all = ALL_SCOPES.to_vec();
    all.push("cards:reveal");
    all
}

async fn call(
    sys: &TestSystem,
    token: &str,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Response {
    let key = uuid::Uuid::new_v4().to_string();
    sys.send(method, url, Some(token), body, &[("Idempotency-Key", &key)])
        .await
}

/// What one program owns: an account, its card, an authorization and its capture.
struct Owned {
    account: String,
    card: String,
    authorization: String,
}

async fn open_account(sys: &TestSystem, token: &str, program: Option<&str>) -> Response {
    let mut body = json!({"legal_name": "Acme Freight", "currency": "USD",
        "credit_limit": {"amount": 500_000, "currency": "USD"}});
    if let Some(p) = program {
        body["program_id"] = json!(p);
    }
    call(
        sys,
        token,
        Method::POST,
        &format!("{}/v1/accounts", sys.accounts),
        Some(body),
    )
    .await
}

async fn set_up(sys: &TestSystem, token: &str) -> Owned {
    let account = open_account(sys, token, None).await;
    assert_eq!(account.status, 201, "{:?}", account.body);
    let account = account.body["id"].as_str().unwrap().to_owned();
    let card = call(
        sys,
        token,
        Method::POST,
        &format!("{}/v1/accounts/{account}/cards", sys.accounts),
        Some(json!({"cardholder_name": "Ada Driver", "expiry_month": 12, "expiry_year": 2030})),
    )
    .await;
    assert_eq!(card.status, 201, "{:?}", card.body);
    let card = card.body["id"].as_str().unwrap().to_owned();
    let spend = format!("{}/v1/cards/{card}/spend", sys.payments);
    sys.eventually(
        "payments to know the card",
        Duration::from_secs(30),
        || async {
            let res = call(sys, token, Method::GET, &spend, None).await;
            (res.status == 200).then_some(())
        },
    )
    .await;
    let auth = call(
        sys,
        token,
        Method::POST,
        &format!("{}/v1/authorizations", sys.payments),
        Some(authorization(&card)),
    )
    .await;
    assert_eq!(auth.status, 201, "{:?}", auth.body);
    assert_eq!(auth.body["status"], "approved", "{:?}", auth.body);
    let authorization = auth.body["id"].as_str().unwrap().to_owned();
    let cap = call(
        sys,
        token,
        Method::POST,
        &format!(
            "{}/v1/authorizations/{authorization}/captures",
            sys.payments
        ),
        Some(capture()),
    )
    .await;
    assert_eq!(cap.status, 201, "{:?}", cap.body);
    Owned {
        account,
        card,
        authorization,
    }
}

fn authorization(card: &str) -> Value {
    json!({"card_id": card, "amount": {"amount": 1_000, "currency": "USD"},
        "merchant": {"id": "m-1", "name": "Fuel", "mcc": "5541", "country": "US"}})
}

fn capture() -> Value {
    json!({"amount": {"amount": 500, "currency": "USD"}})
}

/// Every request on one resource, for a resource id: (name, method, url, body).
fn requests(
    sys: &TestSystem,
    account: &str,
    card: &str,
    auth: &str,
) -> Vec<(&'static str, Method, String, Option<Value>)> {
    let (a, p) = (&sys.accounts, &sys.payments);
    vec![
        (
            "read the account",
            Method::GET,
            format!("{a}/v1/accounts/{account}"),
            None,
        ),
        (
            "read the ledger",
            Method::GET,
            format!("{a}/v1/accounts/{account}/ledger-entries"),
            None,
        ),
        (
            "issue a card",
            Method::POST,
            format!("{a}/v1/accounts/{account}/cards"),
            Some(
                json!({"cardholder_name": "Eve Intruder", "expiry_month": 12, "expiry_year": 2030}),
            ),
        ),
        (
            "reveal the card",
            Method::POST,
            format!("{a}/v1/cards/{card}/reveal"),
            None,
        ),
        (
            "read the card's spend",
            Method::GET,
            format!("{p}/v1/cards/{card}/spend"),
            None,
        ),
        (
            "authorize on the card",
            Method::POST,
            format!("{p}/v1/authorizations"),
            Some(authorization(card)),
        ),
        (
            "read the authorization",
            Method::GET,
            format!("{p}/v1/authorizations/{auth}"),
            None,
        ),
        (
            "capture the authorization",
            Method::POST,
            format!("{p}/v1/authorizations/{auth}/captures"),
            Some(capture()),
        ),
    ]
}

async fn rows(sys: &TestSystem) -> [i64; 4] {
    [
        sys.count("SELECT count(*) AS count FROM accounts.cards")
            .await,
        sys.count("SELECT count(*) AS count FROM payments.authorizations")
            .await,
        sys.count("SELECT count(*) AS count FROM payments.captures")
            .await,
        sys.count("SELECT count(*) AS count FROM payments.outbox")
            .await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_programs_resources_are_answered_as_unknown_and_left_unchanged() {
    let sys = TestSystem::start().await;
    let acme = sys.program_token("acme", &scopes());
    let globex = sys.program_token("globex", &scopes());
    let platform = sys.token_with(&scopes());

    let owned = set_up(&sys, &acme).await;
    let account = call(
        &sys,
        &acme,
        Method::GET,
        &format!("{}/v1/accounts/{}", sys.accounts, owned.account),
        None,
    )
    .await;
    assert_eq!(account.status, 200);
    assert_eq!(
        account.body["program_id"], "acme",
        "a bound token opens accounts in its program"
    );
    let before = rows(&sys).await;

    let theirs = requests(&sys, &owned.account, &owned.card, &owned.authorization);
    let unknown = requests(&sys, UNKNOWN, UNKNOWN, UNKNOWN);
    for ((what, method, url, body), (_, _, unknown_url, _)) in theirs.into_iter().zip(unknown) {
        let refused = call(&sys, &globex, method.clone(), &url, body.clone()).await;
        let absent = call(&sys, &globex, method.clone(), &unknown_url, body.clone()).await;
        assert_eq!(
            refused.status, 404,
            "globex could {what}: {:?}",
            refused.body
        );
        assert_eq!(
            absent.status, 404,
            "{what} of an unknown id: {:?}",
            absent.body
        );
        for field in ["type", "title", "status"] {
            assert_eq!(
                refused.body[field], absent.body[field],
                "{what}: {field} tells the two apart"
            );
        }
        // The owner and a platform token still reach it (the refusal is the program's).
        if method == Method::GET {
            for token in [&acme, &platform] {
                let res = call(&sys, token, Method::GET, &url, None).await;
                assert_eq!(res.status, 200, "{what}: {:?}", res.body);
            }
        }
    }
    assert_eq!(
        rows(&sys).await,
        before,
        "a refused request wrote something"
    );

    // A bound token cannot open an account in another program; a platform token can.
    let count = "SELECT count(*) AS count FROM accounts.accounts";
    let accounts_before = sys.count(count).await;
    let res = open_account(&sys, &acme, Some("globex")).await;
    assert_eq!(res.status, 403, "{:?}", res.body);
    assert_eq!(sys.count(count).await, accounts_before);
    let res = open_account(&sys, &acme, Some("acme")).await;
    assert_eq!(
        (res.status.as_u16(), res.body["program_id"].clone()),
        (201, json!("acme"))
    );
    let res = open_account(&sys, &platform, Some("globex")).await;
    assert_eq!(
        (res.status.as_u16(), res.body["program_id"].clone()),
        (201, json!("globex"))
    );
    let res = open_account(&sys, &platform, None).await;
    assert_eq!(
        (res.status.as_u16(), res.body["program_id"].clone()),
        (201, json!("default"))
    );
    let res = open_account(&sys, &platform, Some("Not A Slug")).await;
    assert_eq!(res.status, 422, "{:?}", res.body);
    assert_eq!(
        res.body["errors"][0]["pointer"], "/program_id",
        "{:?}",
        res.body
    );

    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_across_programs_refuse_bound_tokens_and_the_audit_log_records_the_program() {
    let sys = TestSystem::start().await;
    let acme = sys.program_token("acme", &scopes());
    let platform = sys.token_with(&scopes());
    let cutoff = json!({"cutoff": chrono::Utc::now().to_rfc3339()});
    let spanning = [
        (
            Method::POST,
            format!("{}/v1/settlement-runs", sys.settlement),
            Some(cutoff),
        ),
        (
            Method::GET,
            format!("{}/v1/settlement-batches", sys.settlement),
            None,
        ),
        (
            Method::GET,
            format!("{}/v1/audit-events", sys.accounts),
            None,
        ),
        (
            Method::GET,
            format!("{}/v1/audit-events", sys.payments),
            None,
        ),
        (
            Method::GET,
            format!("{}/v1/audit-events", sys.settlement),
            None,
        ),
    ];
    let runs = "SELECT count(*) AS count FROM settlement.audit_events WHERE status = 201";
    for (method, url, body) in &spanning {
        let res = call(&sys, &acme, method.clone(), url, body.clone()).await;
        assert_eq!(res.status, 403, "{method} {url}: {:?}", res.body);
        let res = call(&sys, &platform, method.clone(), url, body.clone()).await;
        assert!(res.status.is_success(), "{method} {url}: {:?}", res.body);
    }
    assert_eq!(
        sys.count(runs).await,
        1,
        "only the platform's settlement run happened"
    );

    // Each audit record carries the program of the token that made the request.
    let opened = open_account(&sys, &acme, None).await;
    assert_eq!(opened.status, 201);
    let refused = open_account(&sys, &acme, Some("globex")).await;
    assert_eq!(refused.status, 403);
    let by_platform = open_account(&sys, &platform, None).await;
    assert_eq!(by_platform.status, 201);
    let log = call(
        &sys,
        &platform,
        Method::GET,
        &format!("{}/v1/audit-events", sys.accounts),
        None,
    )
    .await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let records: Vec<(Value, Value, Value)> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "POST /v1/accounts")
        .map(|r| {
            (
                r["subject"].clone(),
                r["program"].clone(),
                r["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        records,
        vec![
            (json!("acme-client"), json!("acme"), json!(201)),
            (json!("acme-client"), json!("acme"), json!(403)),
            (json!("test-client"), Value::Null, json!(201)),
        ]
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_program_claims_are_refused_and_cards_of_old_events_are_the_default_programs() {
    let sys = TestSystem::start().await;
    for bad in ["ACME", "acme/../globex", "", "-acme"] {
        let token = sys.program_token(bad, &scopes());
        let res = call(
            &sys,
            &token,
            Method::GET,
            &format!("{}/v1/accounts/{UNKNOWN}", sys.accounts),
            None,
        )
        .await;
        assert_eq!(res.status, 401, "program {bad:?}: {:?}", res.body);
    }

    // An account of the default program, and a card_issued event from before programs
    // (no program_id): payments files the card under the default program.
    let platform = sys.token_with(&scopes());
    let account = open_account(&sys, &platform, None).await;
    assert_eq!(account.status, 201);
    let account = account.body["id"].as_str().unwrap().to_owned();
    let card = uuid::Uuid::now_v7();
    let event = shared_kernel::event::CloudEvent::new(
        "/accounts",
        accounts::events::CARD_ISSUED,
        card,
        1,
        json!({"card_id": card, "account_id": account, "last4": "5556",
            "expiry_month": 12, "expiry_year": 2030, "status": "active"}),
    );
    sys.publish_raw(
        "accounts",
        accounts::events::CARD_ISSUED,
        &serde_json::to_vec(&event).unwrap(),
    )
    .await;
    let spend = format!("{}/v1/cards/{card}/spend", sys.payments);
    let default = sys.program_token("default", &scopes());
    sys.eventually(
        "payments to file the card",
        Duration::from_secs(30),
        || async {
            let res = call(&sys, &default, Method::GET, &spend, None).await;
            (res.status == 200).then_some(())
        },
    )
    .await;
    let acme = sys.program_token("acme", &scopes());
    assert_eq!(
        call(&sys, &acme, Method::GET, &spend, None).await.status,
        404
    );
    assert_eq!(
        call(&sys, &platform, Method::GET, &spend, None)
            .await
            .status,
        200
    );
    sys.shutdown().await;
}
