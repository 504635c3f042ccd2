//! Graceful degradation without Vault: authorizations and captures go on (nothing on
//! their path calls Vault), card issuance fails with a clear problem, and accounts stays
//! ready for everything else. (Without the broker or the database: tests/tests/faults.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tests::infra::OwnVault;
use tests::{reconcile, TestSystem};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_vault_down_payments_go_on_and_card_issuance_fails_clearly() {
    let mut vault = OwnVault::start().await;
    let sys = TestSystem::start_with_vault(&vault.addr, &vault.token).await;
    let card = sys.card_known_to_payments(100_000).await;
    let account_id = sys
        .get(&format!("{}/v1/cards/{card}/spend", sys.payments))
        .await
        .body["account_id"]
        .as_str()
        .unwrap()
        .to_owned();

    vault.stop();

    let capture = sys.authorize_and_capture(&card, 1_000, "m-vault").await;
    let issued = sys
        .post(
            &format!("{}/v1/accounts/{account_id}/cards", sys.accounts),
            json!({"cardholder_name": "Ada Driver", "expiry_month": 12, "expiry_year": 2030}),
        )
        .await;
    assert_eq!(issued.status, 503, "{:?}", issued.body);
    assert_eq!(issued.content_type, "application/problem+json");
    assert_eq!(
        issued.body["type"],
        "https://problems.fleet-cards.example/service-unavailable"
    );
    let detail = issued.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("card issuance"),
        "a clear problem: {detail}"
    );

    let ready = sys.get(&format!("{}/health/ready", sys.accounts)).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    assert_eq!(ready.body["checks"]["vault"], "down");
    assert_eq!(ready.body["checks"]["database"], "up");
    let account = sys
        .get(&format!("{}/v1/accounts/{account_id}", sys.accounts))
        .await;
    assert_eq!(
        account.status, 200,
        "reads need no Vault: {:?}",
        account.body
    );

    reconcile::settle_and_reconcile(&sys, &[capture["id"].as_str().unwrap().to_owned()]).await;
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}
