//! Dynamic database credentials (ADR 0020): payments, a child process, runs on users that
//! Vault's database engine creates as members of `payments_app`, renews their leases and
//! rotates them when the maximum TTL is near. Authorizations and captures are answered
//! across the rotations, every accepted one is committed, the captures reach settlement
//! (the outbox relay and its LISTEN connection follow the rotations), and Vault drops the
//! users whose leases ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tests::infra::{DropRolesOnExit, OwnVault};
use tests::{reconcile, TestSystem};

/// Short leases, so rotations happen within the test: renewed at 4 s, capped at 12 s.
const DEFAULT_TTL: Duration = Duration::from_secs(6);
const MAX_TTL: Duration = Duration::from_secs(12);
/// More than twice the maximum TTL: at least two rotations happen meanwhile.
const DRIVE: Duration = Duration::from_secs(27);
const WORKERS: usize = 3;

/// The users of this database's client sessions other than the sampler's own.
const SESSIONS: &str =
    "SELECT coalesce(string_agg(DISTINCT coalesce(usename, '?'), ','), '') AS value \
     FROM pg_stat_activity WHERE datname = current_database() \
       AND backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// The user of payments' outbox LISTEN connection (its last statement is the LISTEN).
const LISTENER: &str =
    "SELECT coalesce(string_agg(DISTINCT coalesce(usename, '?'), ','), '') AS value \
     FROM pg_stat_activity WHERE datname = current_database() \
       AND query = 'LISTEN outbox_payments'";

/// How long the LISTEN connection may lag behind a rotation: well under the third of a
/// lease (4 s here) that the previous user stays valid.
const LISTENER_LAG: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Outcome {
    authorized: usize,
    captures: Vec<String>,
    /// Every answer that was not a 201, with its body.
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_serves_across_credential_rotations_on_vault_made_users() {
    let vault = OwnVault::start().await;
    let sys = TestSystem::start_with(&["payments"]).await;
    let role = vault
        .configure_database(&sys.database, "payments", DEFAULT_TTL, MAX_TTL)
        .await;
    sys.restart(
        "payments",
        &[
            ("PAYMENTS__DATABASE__VAULT_ROLE", role.as_str()),
            ("PAYMENTS__VAULT__ADDR", vault.addr.as_str()),
            ("PAYMENTS__VAULT__TOKEN", vault.token.as_str()),
            // The load is one client; the test is about credentials, not rate limits.
            ("PAYMENTS__HTTP__RATE_LIMIT_PER_SEC", "100000"),
            ("PAYMENTS__HTTP__RATE_LIMIT_BURST", "100000"),
        ],
    )
    .await;
    let ready = format!("{}/health/ready", sys.payments);
    sys.eventually(
        "payments to be ready on Vault's credentials",
        Duration::from_secs(30),
        || async { (sys.get(&ready).await.status == 200).then_some(()) },
    )
    .await;
    // The sessions of the process before the restart (as payments_app) end.
    sys.eventually(
        "the killed process's sessions to end",
        Duration::from_secs(20),
        || async {
            let users = sys.text(SESSIONS).await;
            (!users.split(',').any(|u| u == "payments_app")).then_some(())
        },
    )
    .await;
    let card = sys.card_known_to_payments(100_000_000).await;

    let seen: Mutex<Vec<(Duration, BTreeSet<String>)>> = Mutex::new(Vec::new());
    let listening: Mutex<Vec<(Duration, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let deadline = started + DRIVE;
    let sample = async {
        while Instant::now() < deadline {
            let users: BTreeSet<String> = sys
                .text(SESSIONS)
                .await
                .split(',')
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            let listener = sys.text(LISTENER).await;
            seen.lock().unwrap().push((started.elapsed(), users));
            listening
                .lock()
                .unwrap()
                .push((started.elapsed(), listener));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let sys_ref = &sys;
    let drive = |worker: usize| {
        let (card, sys) = (card.clone(), sys_ref);
        async move {
            let mut out = Outcome::default();
            let mut i = 0usize;
            while Instant::now() < deadline {
                i += 1;
                let key = format!("dbcreds-{worker}-{i}-{}", uuid::Uuid::new_v4());
                let auth = sys
                    .post_idem(
                        &format!("{}/v1/authorizations", sys.payments),
                        &format!("a-{key}"),
                        json!({"card_id": card, "amount": {"amount": 100, "currency": "USD"},
                            "merchant": {"id": format!("m-dbcreds-{worker}"), "name": "Fuel",
                                "mcc": "5541", "country": "US"}}),
                    )
                    .await;
                if auth.status != 201 || auth.body["status"] != "approved" {
                    out.failures.push(format!(
                        "authorization at {:?}: {} {}",
                        started.elapsed(),
                        auth.status,
                        auth.body
                    ));
                    continue;
                }
                out.authorized += 1;
                if !i.is_multiple_of(4) {
                    continue;
                }
                let id = auth.body["id"].as_str().unwrap();
                let cap = sys
                    .post_idem(
                        &format!("{}/v1/authorizations/{id}/captures", sys.payments),
                        &format!("c-{key}"),
                        json!({"amount": {"amount": 100, "currency": "USD"}}),
                    )
                    .await;
                if cap.status == 201 {
                    out.captures
                        .push(cap.body["id"].as_str().unwrap().to_owned());
                } else {
                    out.failures.push(format!(
                        "capture at {:?}: {} {}",
                        started.elapsed(),
                        cap.status,
                        cap.body
                    ));
                }
            }
            out
        }
    };
    let (outcomes, ()) = tokio::join!(
        futures_util::future::join_all((0..WORKERS).map(drive)),
        sample
    );

    let failures: Vec<&String> = outcomes.iter().flat_map(|o| &o.failures).collect();
    let authorized: usize = outcomes.iter().map(|o| o.authorized).sum();
    let captures: Vec<String> = outcomes.iter().flat_map(|o| o.captures.clone()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests were not answered 201 across the rotations:\n{}",
        failures.len(),
        authorized + failures.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(authorized > 0 && !captures.is_empty());

    // Who payments ran as: only Vault's users, never the runtime role itself.
    let samples = seen.into_inner().unwrap();
    let expected_others = ["accounts_app", "settlement_app", "postgres"];
    let mut dynamic: Vec<String> = Vec::new();
    for (at, users) in &samples {
        for u in users {
            assert_ne!(
                u, "payments_app",
                "payments connected as payments_app at {at:?}"
            );
            if u.starts_with("v-") {
                if !dynamic.contains(u) {
                    dynamic.push(u.clone());
                }
            } else {
                assert!(
                    expected_others.contains(&u.as_str()),
                    "an unexpected user {u:?} at {at:?}"
                );
            }
        }
    }
    let first_seen = |u: &str| {
        samples
            .iter()
            .find(|(_, users)| users.contains(u))
            .map(|(at, _)| *at)
    };
    let timeline: Vec<String> = dynamic
        .iter()
        .map(|u| format!("{u} (first seen at {:?})", first_seen(u).unwrap()))
        .collect();
    eprintln!(
        "{authorized} authorizations and {} captures answered 201 in {DRIVE:?}; {} samples; \
         dynamic users: {timeline:#?}",
        captures.len(),
        samples.len()
    );
    assert!(
        dynamic.len() >= 2,
        "at least one rotation within {DRIVE:?} (max TTL {MAX_TTL:?}): {timeline:?}"
    );
    // The outbox's LISTEN connection follows each rotation (it is not in the pool).
    let mut listened = BTreeSet::new();
    for (at, listener) in listening.into_inner().unwrap() {
        if listener.is_empty() {
            continue;
        }
        let newest_settled = dynamic
            .iter()
            .rfind(|u| first_seen(u).is_some_and(|f| f + LISTENER_LAG <= at));
        let allowed = |u: &str| {
            Some(u) == newest_settled.map(String::as_str)
                || first_seen(u).is_some_and(|f| f + LISTENER_LAG > at)
        };
        for user in listener.split(',') {
            assert!(
                allowed(user),
                "at {at:?} the LISTEN connection was still {user:?}; users: {timeline:?}"
            );
            if listened.insert(user.to_owned()) {
                eprintln!("LISTEN connection as {user} seen first at {at:?}");
            }
        }
    }
    assert!(
        listened.len() >= 2,
        "the LISTEN connection moved to new users: {listened:?}"
    );

    // Each of them is a member of the runtime role, so it has exactly its rights.
    let newest = dynamic.last().unwrap();
    let member = sys
        .count(&format!(
            "SELECT count(*) AS count FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid \
             WHERE r.rolname = '{newest}' AND g.rolname = 'payments_app' \
               AND NOT r.rolsuper AND NOT r.rolcreaterole AND NOT r.rolcreatedb"
        ))
        .await;
    assert_eq!(member, 1, "{newest} is a plain member of payments_app");

    // Every authorization answered 201 is committed, and no other.
    let committed = sys
        .count(&format!(
            "SELECT count(*) AS count FROM payments.authorizations WHERE card_id = '{card}'"
        ))
        .await;
    assert_eq!(
        committed, authorized as i64,
        "committed rows equal the 201s"
    );

    // Vault drops the users whose leases ended (the first was rotated out long ago).
    let first = dynamic[0].clone();
    sys.eventually(
        "Vault to drop the first dynamic user",
        MAX_TTL + Duration::from_secs(10),
        || async {
            let left = sys
                .count(&format!(
                    "SELECT count(*) AS count FROM pg_roles WHERE rolname = '{first}'"
                ))
                .await;
            (left == 0).then_some(())
        },
    )
    .await;

    // The process said what it did, and never printed a URL with the credentials.
    let log = sys.process_log("payments");
    assert!(
        log.contains("database credentials issued by Vault"),
        "{log}"
    );
    assert!(
        log.contains("near their maximum TTL; rotating"),
        "a rotation is logged"
    );
    assert!(
        !log.contains("://v-"),
        "no URL with dynamic credentials in the log"
    );

    // The captures made across the rotations went through the outbox to settlement.
    reconcile::settle_and_reconcile(&sys, &captures).await;

    // Revoked, every user is gone (roles belong to the cluster: none is left behind).
    sys.kill("payments");
    vault.revoke_database_leases().await;
    let left = sys
        .count(&format!(
            "SELECT count(*) AS count FROM pg_roles WHERE rolname IN ('{}')",
            dynamic.join("','")
        ))
        .await;
    assert_eq!(left, 0, "revoked users are dropped");
    sys.shutdown().await;
}

/// Vault away at renewal time: payments keeps the credentials it has (they are valid
/// until their lease ends), says so, and asks again with backoff; requests go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_vault_down_at_renewal_payments_keeps_its_credentials() {
    let mut vault = OwnVault::start().await;
    let sys = TestSystem::start_with(&["payments"]).await;
    let role = vault
        .configure_database(&sys.database, "payments", DEFAULT_TTL, MAX_TTL)
        .await;
    sys.restart(
        "payments",
        &[
            ("PAYMENTS__DATABASE__VAULT_ROLE", role.as_str()),
            ("PAYMENTS__VAULT__ADDR", vault.addr.as_str()),
            ("PAYMENTS__VAULT__TOKEN", vault.token.as_str()),
        ],
    )
    .await;
    let ready = format!("{}/health/ready", sys.payments);
    sys.eventually(
        "payments to be ready on Vault's credentials",
        Duration::from_secs(30),
        || async { (sys.get(&ready).await.status == 200).then_some(()) },
    )
    .await;
    // Vault cannot drop the user once it is stopped: the test does.
    let cleanup = DropRolesOnExit::new().await;
    let user = sys
        .eventually(
            "payments's dynamic user",
            Duration::from_secs(10),
            || async {
                let users = sys.text(SESSIONS).await;
                users
                    .split(',')
                    .find(|u| u.starts_with("v-"))
                    .map(str::to_owned)
            },
        )
        .await;
    cleanup.add(&user);
    vault.stop();
    let card = sys.card_known_to_payments(1_000_000).await;

    // The renewal (at two thirds of the 6 s lease) fails; requests before and after it
    // are served with the credentials in hand.
    let warned = "cannot renew the database credentials; keeping them while they are valid";
    let mut served = 0;
    let mut warned_at = None;
    let started = Instant::now();
    while warned_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(1)) {
        assert!(
            started.elapsed() < DEFAULT_TTL + Duration::from_secs(20),
            "payments never reported the failed renewal"
        );
        let auth = sys
            .post_idem(
                &format!("{}/v1/authorizations", sys.payments),
                &uuid::Uuid::new_v4().to_string(),
                json!({"card_id": card, "amount": {"amount": 100, "currency": "USD"},
                    "merchant": {"id": "m-dbcreds", "name": "Fuel", "mcc": "5541", "country": "US"}}),
            )
            .await;
        assert_eq!(auth.status, 201, "{:?}", auth.body);
        served += 1;
        if warned_at.is_none() && sys.process_log("payments").contains(warned) {
            warned_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = sys.process_log("payments");
    assert_eq!(
        log.matches("database credentials issued by Vault").count(),
        1,
        "no new credentials without Vault"
    );
    let ready = sys.get(&ready).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    eprintln!("{served} authorizations served with Vault down");
    sys.shutdown().await;
}
