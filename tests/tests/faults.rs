//! Fault injection under a steady load of authorizations and captures. Each test ends
//! with a full reconciliation across the three contexts. They disturb the machine's
//! broker and database, so `cargo xtask test` runs them one at a time, after the rest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shared_kernel::event::CloudEvent;
use std::time::Duration;
use tests::{faults, load, reconcile, TestSystem};

const WORKERS: usize = 4;

/// Two cards with room for any load, known to payments.
async fn cards(sys: &TestSystem) -> Vec<String> {
    let mut cards = Vec::new();
    for _ in 0..2 {
        cards.push(sys.card_known_to_payments(1_000_000_000).await);
    }
    cards
}

async fn steady(load: &load::Load, secs: u64) -> u64 {
    let before = load.accepted();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    load.accepted() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_authorizations_go_on_and_everything_catches_up() {
    faults::require_fault_phase();
    let sys = TestSystem::start().await;
    let cards = cards(&sys).await;
    let load = load::start(&sys.payments, &sys.token(), &cards, WORKERS);
    assert!(steady(&load, 3).await > 0, "the load runs");

    let broker = faults::broker_stop();
    let during = steady(&load, 8).await;
    // payments stays ready for the API, says the broker is down, and its outbox backlog
    // shows in the metrics.
    let ready = sys.get(&format!("{}/health/ready", sys.payments)).await;
    let exchange = format!("{}payments.events", sys.prefix);
    let backlog = sys
        .eventually(
            "the backlog gauge to grow",
            Duration::from_secs(10),
            || async {
                let metrics = sys.fetch_text(&format!("{}/metrics", sys.payments)).await;
                let labels = [("exchange", exchange.as_str())];
                let n = tests::metric_value(&metrics, "outbox_backlog", &labels);
                (n > 0.0).then_some(n)
            },
        )
        .await;
    broker.restore();
    assert!(
        during > 0,
        "captures were accepted while the broker was away"
    );
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    assert_eq!(ready.body["checks"]["broker"], "down");
    assert!(backlog > 0.0);

    assert!(steady(&load, 5).await > 0);
    let tally = load.stop().await;
    assert!(
        tally.failures.is_empty(),
        "the broker is not on the request path: {:?}",
        tally.failures
    );
    reconcile::settle_and_reconcile(&sys, &tally.captures).await;
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_work_loses_and_doubles_nothing() {
    faults::require_fault_phase();
    let sys = TestSystem::start_with(&["settlement"]).await;
    let cards = cards(&sys).await;
    let load = load::start(&sys.payments, &sys.token(), &cards, WORKERS);
    assert!(steady(&load, 3).await > 0);

    sys.kill("settlement"); // SIGKILL while captures stream in
    assert!(
        steady(&load, 3).await > 0,
        "payments does not need settlement"
    );
    sys.restart("settlement", &[]).await;
    assert!(steady(&load, 3).await > 0);
    sys.kill("settlement");
    sys.restart("settlement", &[]).await;

    let tally = load.stop().await;
    assert!(tally.failures.is_empty(), "{:?}", tally.failures);
    reconcile::settle_and_reconcile(&sys, &tally.captures).await;
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_fails_fast_with_503_and_recovers_by_itself() {
    faults::require_fault_phase();
    let sys = TestSystem::start().await;
    let cards = cards(&sys).await;
    let load = load::start(&sys.payments, &sys.token(), &cards, WORKERS);
    assert!(steady(&load, 3).await > 0);

    let database = faults::postgres_stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    database.restore();
    // The same processes serve again, without a restart.
    sys.eventually(
        "authorizations to succeed again",
        Duration::from_secs(60),
        || async {
            let before = load.accepted();
            tokio::time::sleep(Duration::from_millis(500)).await;
            (load.accepted() > before).then_some(())
        },
    )
    .await;

    let tally = load.stop().await;
    assert!(
        tally.failures.get("503").copied().unwrap_or(0) > 0,
        "the outage was seen as 503s: {:?}",
        tally.failures
    );
    assert!(
        tally.unexpected_failures(false).is_empty(),
        "only 503 problems during the outage (no 500, no hang): {:?}",
        tally.failures
    );
    assert_eq!(tally.not_problems, 0, "every failure is a problem document");
    reconcile::settle_and_reconcile(&sys, &tally.captures).await;
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_parked_under_load_and_the_queues_keep_flowing() {
    faults::require_fault_phase();
    let sys = TestSystem::start().await;
    let cards = cards(&sys).await;
    let load = load::start(&sys.payments, &sys.token(), &cards, WORKERS);
    assert!(steady(&load, 2).await > 0);

    let captured = "payments.payment_captured.v1";
    sys.publish_raw("payments", captured, b"{\"truncated").await;
    let bad = CloudEvent::new("/payments", captured, "x", 1, json!({"amount": "lots"}));
    sys.publish_raw("payments", captured, &serde_json::to_vec(&bad).unwrap())
        .await;
    assert!(steady(&load, 3).await > 0);

    let tally = load.stop().await;
    assert!(tally.failures.is_empty(), "{:?}", tally.failures);
    let bad_id = bad.id.to_string();
    reconcile::settle_and_reconcile_explaining(&sys, &tally.captures, |p| {
        p.reason.starts_with("not a CloudEvent") || p.event_id.as_deref() == Some(bad_id.as_str())
    })
    .await;
    let parked = sys.parked("settlement", "payments").await;
    assert_eq!(
        parked.len(),
        2,
        "both poison messages are parked: {parked:?}"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_between_publishing_and_marking_duplicates_events_not_effects() {
    faults::require_fault_phase();
    let sys = TestSystem::start_with(&["payments"]).await;
    let tap = sys.tap_events().await;
    let cards = cards(&sys).await;
    let load = load::start(&sys.payments, &sys.token(), &cards, WORKERS);
    assert!(steady(&load, 2).await > 0);

    // The relay dies after the broker confirmed a batch and before the rows are marked:
    // they are still leased, then published again by the next relay.
    let lease = ("PAYMENTS__OUTBOX__LEASE_SECS", "2");
    sys.restart_nowait(
        "payments",
        &[
            ("PAYMENTS__FAULTS__RELAY_CRASH_AFTER_PUBLISH", "true"),
            lease,
        ],
    );
    sys.eventually("the relay to crash", Duration::from_secs(60), || async {
        sys.exited("payments").then_some(())
    })
    .await;
    sys.restart("payments", &[lease]).await;
    assert!(steady(&load, 3).await > 0, "payments serves again");

    let tally = load.stop().await;
    assert!(
        tally.unexpected_failures(true).is_empty(),
        "only unreachable while payments was down: {:?}",
        tally.failures
    );
    reconcile::settle_and_reconcile(&sys, &tally.captures).await;
    let captured = tap.of_type("payments.payment_captured.v1");
    let mut ids: Vec<&str> = captured.iter().filter_map(|e| e["id"].as_str()).collect();
    let published = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert!(
        published > ids.len(),
        "some events reached the consumers twice ({published} deliveries of {} events)",
        ids.len()
    );
    sys.shutdown().await;
}
