//! Every problem type the code can emit is produced by at least one real request here,
//! and each arrives as an RFC 9457 problem with its registered status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::json;
use shared_kernel::problem::{PROBLEM_BASE, PROBLEM_TYPES};
use std::collections::BTreeSet;
use std::sync::mpsc;
use tests::TestSystem;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_registered_problem_type_is_produced_by_some_request() {
    let sys = TestSystem::start().await;
    let token = sys.token();
    let card_id = sys.card_known_to_payments(1_000).await;
    let auths = format!("{}/v1/authorizations", sys.payments);
    let good = json!({"card_id": card_id, "amount": {"amount": 100, "currency": "USD"}, "merchant": {"id": "m1", "name": "Shop", "mcc": "5812", "country": "US"}});

    // 400, 401, 403, 404, 405, 413, 415, 422 from ordinary bad requests.
    sys.send_raw(
        Method::POST,
        &format!("{}/v1/accounts", sys.accounts),
        Some(&token),
        "application/json",
        "{",
        &[],
    )
    .await;
    sys.post(&auths, good.clone()).await; // no Idempotency-Key
    sys.send(
        Method::GET,
        &format!("{}/v1/cards/{card_id}/spend", sys.payments),
        None,
        None,
        &[],
    )
    .await;
    sys.send(
        Method::GET,
        &format!("{}/v1/settlement-batches", sys.settlement),
        Some(&sys.token_with(&[])),
        None,
        &[],
    )
    .await;
    sys.get(&format!("{auths}/01900000-0000-7000-8000-000000000000"))
        .await;
    let res = sys
        .send(
            Method::DELETE,
            &format!("{}/v1/accounts", sys.accounts),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(res.status, 405);
    sys.send_raw(
        Method::POST,
        &format!("{}/v1/accounts", sys.accounts),
        Some(&token),
        "application/json",
        &"x".repeat(70_000),
        &[],
    )
    .await;
    sys.send_raw(
        Method::POST,
        &format!("{}/v1/accounts", sys.accounts),
        Some(&token),
        "text/csv",
        "a,b",
        &[],
    )
    .await;
    sys.post(
        &format!("{}/v1/settlement-runs", sys.settlement),
        json!({"cutoff": "soon"}),
    )
    .await;

    // 422 reuse and 409 conflict through the API.
    sys.post_idem(&auths, "k1", good.clone()).await;
    sys.post_idem(&auths, "k1", json!({"card_id": card_id, "amount": {"amount": 101, "currency": "USD"}, "merchant": good["merchant"]})).await;
    let declined = sys.post_idem(&auths, "k2", json!({"card_id": card_id, "amount": {"amount": 5_000, "currency": "USD"}, "merchant": good["merchant"]})).await;
    let declined_id = declined.body["id"].as_str().unwrap();
    sys.post_idem(
        &format!("{auths}/{declined_id}/captures"),
        "c1",
        json!({"amount": {"amount": 1, "currency": "USD"}}),
    )
    .await;

    // 409 idempotency-key-in-use: another transaction holds the key's lock.
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let url = sys.database.url.clone();
    let holder = std::thread::spawn(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        conn.batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('test-client' || chr(31) || 'POST /v1/authorizations' || chr(31) || 'held', 0))",
        )
        .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.batch_execute("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    let res = sys.post_idem(&auths, "held", good.clone()).await;
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(res.status, 409, "{:?}", res.body);
    let after = sys.post_idem(&auths, "held", good.clone()).await;
    assert_eq!(after.status, 201, "the key works once it is free");

    // 503: card issuance when the key service does not answer.
    let mut common = sys.common.clone();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    if let Some(v) = common.vault.as_mut() {
        v.addr = format!("http://127.0.0.1:{closed_port}");
    }
    common.amqp_prefix = format!("{}novault.", sys.prefix);
    // It also allows a client two requests at once and one a second, for the 429 below.
    common.rate_limit = shared_kernel::rate_limit::RateLimit {
        per_sec: 1,
        burst: 2,
    };
    let no_vault = accounts::build(accounts::Settings { common })
        .await
        .unwrap();
    let no_vault_url = format!("http://127.0.0.1:{}", no_vault.port());
    let handle = no_vault.handle();
    let running = tokio::spawn(no_vault.run_until_stopped());
    let account = sys.post(&format!("{no_vault_url}/v1/accounts"), json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": 1, "currency": "USD"}})).await;
    let account_id = account.body["id"].as_str().unwrap();
    let res = sys
        .post(
            &format!("{no_vault_url}/v1/accounts/{account_id}/cards"),
            json!({"cardholder_name": "Ada Driver", "expiry_month": 12, "expiry_year": 2030}),
        )
        .await;
    assert_eq!(res.status, 503, "{:?}", res.body);
    // 429: the same client, beyond its burst, within the second.
    let mut limited = None;
    for _ in 0..10 {
        let res = sys
            .get(&format!("{no_vault_url}/v1/accounts/{account_id}"))
            .await;
        if res.status == 429 {
            limited = Some(res);
            break;
        }
    }
    let limited = limited.expect("a client beyond its burst is refused");
    assert!(limited.headers.contains_key("retry-after"));
    handle.stop(true).await;
    // Once it has returned, its consumer is stopped and cannot declare its queue again.
    running.await.unwrap().unwrap();
    tests::infra::delete_broker_names(&sys.amqp_url, &format!("{}novault.", sys.prefix)).await;

    // 500: a row the code cannot read is an internal-error problem, not a bare 500.
    sys.exec(&format!(
        "UPDATE accounts.accounts SET currency = 'XXX' WHERE id = '{account_id}'"
    ))
    .await;
    let res = sys
        .get(&format!("{}/v1/accounts/{account_id}", sys.accounts))
        .await;
    assert_eq!(res.status, 500);
    assert!(
        !res.body.to_string().contains("XXX"),
        "internal details stay in the logs"
    );

    // Every registered type was seen, each with its registered status and title.
    let exchanges = sys.exchanges.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    for ex in exchanges
        .iter()
        .filter(|e| e.content_type.starts_with("application/problem+json"))
    {
        let slug = ex.body["type"]
            .as_str()
            .unwrap()
            .strip_prefix(PROBLEM_BASE)
            .unwrap()
            .to_owned();
        let (_, title, status) = PROBLEM_TYPES
            .iter()
            .find(|(s, _, _)| *s == slug)
            .unwrap_or_else(|| panic!("unregistered type {slug}"));
        assert_eq!(ex.status, *status, "{slug}");
        assert_eq!(ex.body["status"], *status, "{slug}");
        assert_eq!(ex.body["title"], *title, "{slug}");
        seen.insert(slug);
    }
    let registered: BTreeSet<String> = PROBLEM_TYPES
        .iter()
        .map(|(s, _, _)| (*s).to_owned())
        .collect();
    let missing: Vec<&String> = registered.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "no request in this test produced: {missing:?}"
    );
    sys.shutdown().await;
}
