//! Lifecycle: a SIGTERM stops a context gracefully (no new connections, in-flight
//! requests finished, consumers drained, exit 0) and loses no accepted request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tests::{load, reconcile, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigterm_during_a_load_of_authorizations_loses_no_accepted_request() {
    let sys = TestSystem::start_with(&["payments"]).await;
    let card = sys.card_known_to_payments(1_000_000_000).await;
    let load = load::start(&sys.payments, &sys.token(), &[card], 6);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(load.accepted() > 0, "the load runs");

    let status = sys.terminate("payments").await;
    assert!(
        status.is_some_and(|s| s.success()),
        "payments exits 0 on SIGTERM within the bound: {status:?}"
    );
    let stopped_at = load.accepted();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        load.accepted(),
        stopped_at,
        "nothing is accepted once stopped"
    );
    sys.restart("payments", &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let tally = load.stop().await;
    assert!(
        tally.unexpected_failures(true).is_empty(),
        "requests either succeeded or found payments gone: {:?}",
        tally.failures
    );
    assert!(
        tally.failures.contains_key("unreachable"),
        "{:?}",
        tally.failures
    );
    // Every authorization answered 201 was committed; every accepted capture reconciles.
    for id in &tally.authorizations {
        let n = sys
            .count(&format!(
                "SELECT count(*) AS count FROM payments.authorizations WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(n, 1, "accepted authorization {id} is in payments");
    }
    reconcile::settle_and_reconcile(&sys, &tally.captures).await;
    sys.shutdown().await;
}
