//! The audit log: every state-changing request is recorded with who, what, when, the
//! outcome, the request id and the source; the log is append-only, readable page by page
//! with `audit:read`, and `cargo xtask audit verify` finds any record altered, deleted or
//! inserted behind the services' back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use tests::TestSystem;

/// Runs the built `xtask audit verify <context>` against the test's database.
fn verify(sys: &TestSystem, context: &str) -> (bool, String) {
    let out = Command::new(tests::procs::bin_dir().join("xtask"))
        .args([
            "audit",
            "verify",
            context,
            "--database-url",
            &sys.database.url,
        ])
        .output()
        .expect("xtask is built (cargo build --workspace --bins)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `sql` as the database's superuser, with triggers off (as an intruder with
/// full access to the database would).
async fn tamper(sys: &TestSystem, sql: &str) {
    sys.exec(&format!(
        "SET session_replication_role = replica; {sql}; SET session_replication_role = origin"
    ))
    .await;
}

/// Every record of a context's log, through the API, following the cursors.
async fn all_records(sys: &TestSystem, base: &str) -> Vec<Value> {
    let token = sys.token_with(&["audit:read"]);
    let (mut out, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let url = match &cursor {
            None => format!("{base}/v1/audit-events?limit=2"),
            Some(c) => format!("{base}/v1/audit-events?limit=2&cursor={c}"),
        };
        let page = sys.send(Method::GET, &url, Some(&token), None, &[]).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        out.extend(page.body["data"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_changes_are_recorded_in_a_chain_that_shows_tampering() {
    let sys = TestSystem::start().await;
    let accounts = format!("{}/v1/accounts", sys.accounts);
    let open = json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": 1000, "currency": "USD"}});
    // A refusal without a token, one without the scope, an invalid body, a success.
    let anonymous = sys
        .send(Method::POST, &accounts, None, Some(open.clone()), &[])
        .await;
    assert_eq!(anonymous.status, 401);
    let unscoped = sys
        .send(
            Method::POST,
            &accounts,
            Some(&sys.token_with(&["accounts:read"])),
            Some(open.clone()),
            &[],
        )
        .await;
    assert_eq!(unscoped.status, 403);
    assert_eq!(
        sys.post(&accounts, json!({"legal_name": 7})).await.status,
        422
    );
    let created = sys.post(&accounts, open.clone()).await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    // Reads are not state changes.
    assert_eq!(sys.get(&format!("{accounts}/{id}")).await.status, 200);
    // A payment, so payments and settlement have records too.
    let card = sys.card_known_to_payments(10_000).await;
    sys.authorize_and_capture(&card, 400, "m-audit").await;
    sys.run_settlement().await;
    sys.run_settlement().await;

    let records = all_records(&sys, &sys.accounts).await;
    let summary: Vec<(String, String, i64, String)> = records
        .iter()
        .take(4)
        .map(|r| {
            (
                r["subject"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["status"].as_i64().unwrap(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let post = "POST /v1/accounts".to_owned();
    assert_eq!(
        summary,
        vec![
            ("anonymous".into(), "refused".into(), 401, post.clone()),
            ("test-client".into(), "refused".into(), 403, post.clone()),
            ("test-client".into(), "refused".into(), 422, post.clone()),
            ("test-client".into(), "succeeded".into(), 201, post),
        ]
    );
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=records.len() as i64).collect::<Vec<_>>());
    assert!(
        !records
            .iter()
            .any(|r| r["action"].as_str().unwrap().starts_with("GET ")),
        "reads are not recorded"
    );
    let first = &records[0];
    assert_eq!(first["source"], "127.0.0.1");
    assert_eq!(first["resource"], "/v1/accounts");
    assert!(!first["request_id"].as_str().unwrap().is_empty());
    assert_eq!(first["prev_hash"], shared_kernel::audit::GENESIS);
    assert_eq!(records[1]["prev_hash"], first["hash"]);
    // The issue of a card names its route, with the account's id in the resource.
    let card = records
        .iter()
        .find(|r| r["action"] == "POST /v1/accounts/{id}/cards")
        .expect("the card issuance is recorded");
    let resource = card["resource"].as_str().unwrap();
    assert!(
        resource.starts_with("/v1/accounts/0") && resource.ends_with("/cards"),
        "{resource}"
    );
    for ctx_url in [&sys.payments, &sys.settlement] {
        assert!(
            !all_records(&sys, ctx_url).await.is_empty(),
            "{ctx_url} keeps a log"
        );
    }
    // The log needs its own scope.
    let denied = sys
        .send(
            Method::GET,
            &format!("{}/v1/audit-events", sys.accounts),
            Some(&sys.token_with(&["accounts:read"])),
            None,
            &[],
        )
        .await;
    assert_eq!(denied.status, 403);

    // Append-only, even for the table's owner and a superuser with triggers on.
    for sql in [
        "UPDATE accounts.audit_events SET subject = 'x' WHERE seq = 1",
        "DELETE FROM accounts.audit_events WHERE seq = 1",
        "TRUNCATE accounts.audit_events",
    ] {
        let url = sys.database.url.clone();
        let refused = tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            use diesel::Connection;
            let mut conn = diesel::PgConnection::establish(&url).unwrap();
            conn.batch_execute(sql).unwrap_err().to_string()
        })
        .await
        .unwrap();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }

    // A clean chain verifies in every context.
    for ctx in ["accounts", "payments", "settlement"] {
        let (ok, out) = verify(&sys, ctx);
        assert!(ok && out.contains("chain intact"), "{ctx}: {out}");
    }

    // Altered: accounts' second record now blames someone else.
    tamper(
        &sys,
        "UPDATE accounts.audit_events SET subject = 'mallory' WHERE seq = 2",
    )
    .await;
    let (ok, out) = verify(&sys, "accounts");
    assert!(!ok && out.contains("record 2 was altered"), "{out}");

    // Deleted: payments' first record is gone.
    tamper(&sys, "DELETE FROM payments.audit_events WHERE seq = 1").await;
    let (ok, out) = verify(&sys, "payments");
    assert!(
        !ok && out.contains("record 2 does not follow record 0"),
        "{out}"
    );

    // Inserted: a well-formed record slotted in after settlement's first, the later ones
    // renumbered to make room.
    let head: String = sys
        .text("SELECT hash AS value FROM settlement.audit_events WHERE seq = 1")
        .await;
    let forged = shared_kernel::audit::Record::chain(
        shared_kernel::audit::Entry {
            at: chrono::Utc::now(),
            subject: "mallory".into(),
            program: None,
            action: "POST /v1/settlement-runs".into(),
            resource: "/v1/settlement-runs".into(),
            status: 201,
            request_id: "forged".into(),
            source: "10.6.6.6".into(),
        },
        2,
        &head,
    );
    tamper(
        &sys,
        &format!(
            "UPDATE settlement.audit_events SET seq = -seq WHERE seq >= 2;
             UPDATE settlement.audit_events SET seq = 1 - seq WHERE seq < 0;
             INSERT INTO settlement.audit_events
               (seq, at, subject, program, action, resource, outcome, status, request_id, source, prev_hash, hash)
             VALUES (2, '{}', 'mallory', NULL, '{}', '{}', 'succeeded', 201, 'forged', '10.6.6.6', '{}', '{}')",
            forged.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            forged.action,
            forged.resource,
            forged.prev_hash,
            forged.hash
        ),
    )
    .await;
    let (ok, out) = verify(&sys, "settlement");
    assert!(!ok && out.contains("record 3 was altered"), "{out}");
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}
