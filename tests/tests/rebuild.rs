//! A projection rebuilt from its producer's retained history ends identical to the live
//! one, through the operator's command (`cargo xtask projections rebuild`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tests::TestSystem;

const ACCOUNTS: &str = "SELECT COALESCE(json_agg(p ORDER BY account_id)::text, '[]') AS value FROM payments.account_projection p";
const CARDS: &str = "SELECT COALESCE(json_agg(p ORDER BY card_id)::text, '[]') AS value FROM payments.card_projection p";

fn rebuild(sys: &TestSystem, projection: &str) {
    let xtask = tests::procs::bin_dir().join("xtask");
    assert!(
        xtask.exists(),
        "build the binaries first (cargo build --bins)"
    );
    let out = std::process::Command::new(xtask)
        .args(["projections", "rebuild", "payments", projection])
        .env("FLEET__DATABASE__URL", &sys.database.url)
        .env("FLEET__AMQP__URL", &sys.amqp_url)
        .env("FLEET__AMQP__PREFIX", &sys.prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuilt_projection_is_identical_to_the_live_one() {
    let sys = TestSystem::start().await;
    // Two accounts with a card each; one spends, is settled and posted (its snapshot
    // changes after it opened), the other one never does.
    let spender = sys.card_known_to_payments(50_000).await;
    sys.card_known_to_payments(70_000).await;
    let cap = sys.authorize_and_capture(&spender, 2_500, "m-r").await;
    tests::reconcile::settle_and_reconcile(&sys, &[cap["id"].as_str().unwrap().to_owned()]).await;
    let live = (sys.text(ACCOUNTS).await, sys.text(CARDS).await);
    assert!(live.0.contains("\"posted_balance\":2500"), "{}", live.0);

    // Damage both projections: a card lost, an account's limits and balance wrong.
    sys.exec("DELETE FROM payments.card_projection WHERE card_id = (SELECT card_id FROM payments.card_projection ORDER BY card_id LIMIT 1)")
        .await;
    sys.exec("UPDATE payments.account_projection SET credit_limit = 1, posted_balance = 999, status = 'closed'")
        .await;
    assert_ne!((sys.text(ACCOUNTS).await, sys.text(CARDS).await), live);

    rebuild(&sys, "accounts");
    rebuild(&sys, "cards");
    sys.eventually(
        "the rebuilt projections to match",
        Duration::from_secs(30),
        || async {
            let now = (sys.text(ACCOUNTS).await, sys.text(CARDS).await);
            (now == live).then_some(())
        },
    )
    .await;
    // The replay released no hold twice, and left nothing parked.
    tests::reconcile::settle_and_reconcile(&sys, &[]).await;
    sys.shutdown().await;
}
