//! The full reconciliation across the three contexts that ends every fault test: every
//! capture settled once and posted once, the ledger balanced, holds consistent, and no
//! message parked.

use crate::TestSystem;
use shared_kernel::amqp::parking::Parked;
use std::time::Duration;

/// How long the pipeline may take to catch up after a fault (retries wait up to 30 s).
const CATCH_UP: Duration = Duration::from_secs(120);

/// Settles everything captured so far and checks the books; `accepted` are the capture
/// ids the API answered 201 for.
pub async fn settle_and_reconcile(sys: &TestSystem, accepted: &[String]) {
    settle_and_reconcile_explaining(sys, accepted, |_| false).await;
}

/// As `settle_and_reconcile`, where `explained` says which parked messages the test
/// parked on purpose (every other parked message fails the reconciliation).
pub async fn settle_and_reconcile_explaining(
    sys: &TestSystem,
    accepted: &[String],
    explained: impl Fn(&Parked) -> bool,
) {
    let captures = sys
        .count("SELECT count(*) AS count FROM payments.captures")
        .await;
    assert!(captures > 0, "the load captured something");
    // Every accepted capture was committed.
    for id in accepted {
        let found = sys
            .count(&format!(
                "SELECT count(*) AS count FROM payments.captures WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(found, 1, "accepted capture {id} is in payments");
    }
    // Every capture reaches settlement once.
    sys.eventually("every capture to reach settlement", CATCH_UP, || async {
        let missing = sys
            .count(
                "SELECT count(*) AS count FROM payments.captures c \
                 WHERE NOT EXISTS (SELECT 1 FROM settlement.items i WHERE i.capture_id = c.id)",
            )
            .await;
        (missing == 0).then_some(())
    })
    .await;
    sys.run_settlement().await;
    // Every settled payment is posted to the ledger, and payments hears of it.
    sys.eventually("every capture to be posted", CATCH_UP, || async {
        let unposted = sys
            .count(
                "SELECT count(*) AS count FROM payments.captures c \
                 WHERE NOT EXISTS (SELECT 1 FROM accounts.ledger_entries l WHERE l.payment_id = c.id) \
                    OR NOT c.posted",
            )
            .await;
        (unposted == 0).then_some(())
    })
    .await;
    let count = |sql: &'static str| sys.count(sql);
    assert_eq!(
        count("SELECT count(*) AS count FROM settlement.items").await,
        captures
    );
    assert_eq!(
        count("SELECT count(DISTINCT payment_id) AS count FROM accounts.ledger_entries").await,
        captures,
        "each capture is posted once"
    );
    assert_eq!(
        count(
            "SELECT count(*) AS count FROM (SELECT payment_id FROM accounts.ledger_entries \
             GROUP BY payment_id HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0) u"
        )
        .await,
        0,
        "every posting balances"
    );
    assert_eq!(
        count(
            "SELECT count(*) AS count FROM settlement.batches b WHERE b.status <> 'closed' \
             OR b.gross <> (SELECT COALESCE(sum(amount), 0) FROM settlement.items i WHERE i.batch_id = b.id)"
        )
        .await,
        0,
        "every batch is closed and its gross is the sum of its items"
    );
    assert_eq!(
        count(
            "SELECT count(*) AS count FROM (SELECT (SELECT COALESCE(sum(amount), 0) FROM payments.captures) \
             - (SELECT COALESCE(sum(gross), 0) FROM settlement.batches) AS d) x WHERE d <> 0"
        )
        .await,
        0,
        "settled gross equals captured"
    );
    assert_eq!(
        count(
            "SELECT count(*) AS count FROM payments.account_projection p WHERE p.held <> \
             (SELECT COALESCE(sum(a.amount - a.captured_amount), 0) FROM payments.authorizations a \
              WHERE a.account_id = p.account_id AND a.status = 'approved')"
        )
        .await,
        0,
        "holds are exactly the uncaptured remainders once everything is posted"
    );
    for (consumer, producer) in shared_kernel::amqp::ROUTES {
        let parked = sys.parked(consumer, producer).await;
        let unexplained: Vec<&Parked> = parked.iter().filter(|p| !explained(p)).collect();
        assert!(unexplained.is_empty(), "{consumer} parked: {unexplained:?}");
    }
}
