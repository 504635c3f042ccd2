//! The three context images deployed on one container network beside PostgreSQL,
//! RabbitMQ and OpenBao containers (ADR 0021): each schema migrated first by its image's
//! `migrate` (a Kubernetes Job's way), each service configured only through its
//! environment and reached only through a port published on 127.0.0.1. One payment goes
//! from card issuance to the ledger; then settlement is replaced by a new container (a
//! rolling restart: the new one ready before the old one is stopped with SIGTERM) while
//! payments keep being captured, and every capture is settled and posted exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use shared_kernel::auth::key_store::VaultKeyStore;
use shared_kernel::auth::{JwtIssuer, ALL_SCOPES};
use shared_kernel::config::OutboxSettings;
use shared_kernel::outbox::RelayMode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tests::deploy::{self, Api, Infra, Network, Service, CONTEXTS};

const WAIT: Duration = Duration::from_secs(60);
const LIMIT: i64 = 10_000_000;

/// Authorizes `amount` cents at `merchant` and captures all of it; the capture's id, or
/// what went wrong (status and problem type, never a token).
async fn pay(
    api: &Api,
    payments: &str,
    card: &str,
    amount: i64,
    merchant: &str,
) -> Result<String, String> {
    let key = uuid::Uuid::new_v4();
    let (status, auth) = api
        .post(
            &format!("{payments}/v1/authorizations"),
            Some(&format!("a-{key}")),
            json!({"card_id": card, "amount": {"amount": amount, "currency": "USD"},
                "merchant": {"id": merchant, "name": "Fuel", "mcc": "5541", "country": "US"}}),
        )
        .await;
    if status != 201 || auth["status"] != "approved" {
        return Err(format!("authorization: {status} {}", auth["type"]));
    }
    let id = auth["id"].as_str().unwrap_or_default();
    let (status, capture) = api
        .post(
            &format!("{payments}/v1/authorizations/{id}/captures"),
            Some(&format!("c-{key}")),
            json!({"amount": {"amount": amount, "currency": "USD"}}),
        )
        .await;
    match capture["id"].as_str() {
        Some(id) if status == 201 => Ok(id.to_owned()),
        _ => Err(format!("capture: {status} {}", capture["type"])),
    }
}

/// The captures a load made (id, amount), and what failed.
type Outcome = (Vec<(String, i64)>, Vec<String>);

/// Payments made one after another (each a little more than the last) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Outcome>,
}

impl Load {
    fn start(api: Api, payments: String, card: String, merchant: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let (stopped, counter) = (stop.clone(), made.clone());
        let task = tokio::spawn(async move {
            let (mut captures, mut failures) = (Vec::new(), Vec::new());
            while !stopped.load(Ordering::SeqCst) && captures.len() < 1_000 {
                let amount = 100 + captures.len() as i64;
                match pay(&api, &payments, &card, amount, merchant).await {
                    Ok(id) => {
                        captures.push((id, amount));
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (captures, failures)
        });
        Self { stop, made, task }
    }

    /// Waits until `n` more payments were captured than now.
    async fn more(&self, n: usize) {
        let target = self.made.load(Ordering::SeqCst) + n;
        tests::eventually("payments to keep flowing", WAIT, || async {
            (self.made.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await;
    }

    async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the load task")
    }
}

/// The batches of `merchant`, and the sum of their item counts.
async fn batches(api: &Api, settlement: &str, merchant: &str) -> (Vec<Value>, i64) {
    let batches = api
        .all_pages(&format!(
            "{settlement}/v1/settlement-batches?merchant_id={merchant}"
        ))
        .await;
    let items = batches
        .iter()
        .map(|b| b["item_count"].as_i64().unwrap())
        .sum();
    (batches, items)
}

/// Waits until settlement has filed `n` captures of `merchant` (and never more).
async fn filed(api: &Api, settlement: &str, merchant: &str, n: i64) {
    tests::eventually("settlement to file every capture", WAIT, || async {
        let (_, items) = batches(api, settlement, merchant).await;
        assert!(
            items <= n,
            "{merchant}: {items} items filed for {n} captures"
        );
        (items == n).then_some(())
    })
    .await;
}

async fn run_settlement(api: &Api, settlement: &str) {
    let cutoff = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let (status, body) = api
        .post(
            &format!("{settlement}/v1/settlement-runs"),
            None,
            json!({ "cutoff": cutoff }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Waits until the ledger of `account` holds both lines of each of `n` payments; returns
/// the entries.
async fn ledger(api: &Api, accounts: &str, account: &str, n: usize) -> Vec<Value> {
    let url = format!("{accounts}/v1/accounts/{account}/ledger-entries");
    tests::eventually("accounts to post every settled payment", WAIT, || async {
        let entries = api.all_pages(&url).await;
        assert!(
            entries.len() <= 2 * n,
            "{} entries for {n} payments",
            entries.len()
        );
        (entries.len() == 2 * n).then_some(entries)
    })
    .await
}

/// Waits until payments has released every hold of `card` (each posting heard of).
async fn holds_released(api: &Api, payments: &str, card: &str) -> Value {
    let url = format!("{payments}/v1/cards/{card}/spend");
    tests::eventually("payments to release every hold", WAIT, || async {
        let (status, spend) = api.get(&url).await;
        (status == 200 && spend["open_holds"]["amount"] == 0).then_some(spend)
    })
    .await
}

/// Every port of `container` is published on 127.0.0.1, and only there.
async fn loopback_only(container: &deploy::Container) {
    let on = deploy::published_on(container).await;
    assert!(
        !on.is_empty() && on.iter().all(|ip| ip == "127.0.0.1"),
        "{}: ports published on {on:?}, not on 127.0.0.1 only",
        container.id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_images_deploy_and_settlement_rolls_without_losing_or_repeating_a_payment() {
    deploy::require_engine();
    // Dropped last: the containers below are removed before it, even when a check fails.
    let network = Network::create().await;
    let infra = Infra::start(&network).await;

    // What an operator does once: the database and its roles, the token signing key in
    // Vault (Ed25519; the services read only its public half, as in deploy/k8s).
    let outbox = OutboxSettings::from_env("fleet").expect("valid FLEET__OUTBOX__* settings");
    let db = infra
        .provision("fleet", outbox.mode == RelayMode::Cdc)
        .await;
    let store = VaultKeyStore::new(&infra.vault, "secret", deploy::TOKEN_KEYS_PATH, 2).unwrap();
    store.rotate().await.expect("a token key in Vault");
    let issuer = JwtIssuer::with_key(
        store.newest_signing_key().await.unwrap(),
        deploy::ISSUER,
        deploy::AUDIENCE,
    );
    let api = Api::new(issuer.mint("deployment-test", ALL_SCOPES, 900).unwrap());

    // Migrations as their own step, each as its schema's owner, before any service starts.
    let test_db = infra.test_url("fleet");
    for (context, _) in CONTEXTS {
        let owner = shared_kernel::roles::url_as(&db, &format!("{context}_owner")).unwrap();
        deploy::migrate(&network, context, &owner).await;
        let applied = deploy::texts(
            &test_db,
            &format!("SELECT count(*)::text AS value FROM {context}.__diesel_schema_migrations"),
        )
        .await;
        let on_disk = std::fs::read_dir(tests::root().join(context).join("migrations"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("up.sql").exists())
            .count();
        assert_eq!(
            applied,
            [on_disk.to_string()],
            "{context} migrations applied"
        );
    }

    // The services, each as its runtime role (which could not have migrated).
    let settings = |context| {
        infra.settings(
            &shared_kernel::roles::url_as(&db, &format!("{context}_app")).unwrap(),
            outbox.clone(),
        )
    };
    let [for_accounts, for_payments, for_settlement] = CONTEXTS.map(|(c, _)| settings(c));
    let (accounts, payments, settlement) = tokio::join!(
        deploy::serve(&network, "accounts", "accounts", &for_accounts),
        deploy::serve(&network, "payments", "payments", &for_payments),
        deploy::serve(&network, "settlement", "settlement-1", &for_settlement),
    );
    for c in [&infra.postgres, &infra.rabbitmq, &infra.openbao]
        .into_iter()
        .chain([&accounts, &payments, &settlement].map(|s: &Service| &s.container))
    {
        loopback_only(c).await;
    }
    let (accounts_url, payments_url) = (accounts.url.clone(), payments.url.clone());

    // One payment from card issuance to the ledger, through the published ports.
    let (status, account) = api
        .post(
            &format!("{accounts_url}/v1/accounts"),
            None,
            json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": LIMIT, "currency": "USD"}}),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    let account = account["id"].as_str().unwrap().to_owned();
    let (status, card) = api
        .post(
            &format!("{accounts_url}/v1/accounts/{account}/cards"),
            None,
            json!({"cardholder_name": "Ada Driver", "expiry_month": 12, "expiry_year": 2030}),
        )
        .await;
    assert_eq!(
        status, 201,
        "card issuance (Vault transit): {}",
        card["type"]
    );
    let card = card["id"].as_str().unwrap().to_owned();
    let spend = format!("{payments_url}/v1/cards/{card}/spend");
    tests::eventually("payments to know the card", WAIT, || async {
        (api.get(&spend).await.0 == 200).then_some(())
    })
    .await;
    let first = pay(&api, &payments_url, &card, 12_500, "m-fuel-42")
        .await
        .unwrap();
    filed(&api, &settlement.url, "m-fuel-42", 1).await;
    run_settlement(&api, &settlement.url).await;
    let entries = ledger(&api, &accounts_url, &account, 1).await;
    assert!(entries.iter().all(|e| e["payment_id"] == first.as_str()));
    holds_released(&api, &payments_url, &card).await;

    // The rolling restart of settlement while payments keep being captured: the new
    // container is ready before the old one gets SIGTERM, as with maxUnavailable 0.
    let load = Load::start(api.clone(), payments_url.clone(), card.clone(), "m-rolling");
    load.more(10).await;
    let settlement_2 = deploy::serve(&network, "settlement", "settlement-2", &for_settlement).await;
    loopback_only(&settlement_2.container).await;
    load.more(10).await;
    settlement
        .container
        .stop_with_timeout(Some(30))
        .await
        .expect("the old settlement stopped");
    let code = deploy::exit_code(&settlement.container).await;
    assert_eq!(
        code,
        0,
        "the old settlement did not stop gracefully on SIGTERM:\n{}",
        deploy::log_tail(&settlement.container).await
    );
    settlement
        .container
        .rm()
        .await
        .expect("the old settlement removed");
    load.more(10).await;
    let (captures, failures) = load.stop().await;
    eprintln!(
        "{} payments captured while settlement was replaced",
        captures.len()
    );
    assert!(
        failures.is_empty(),
        "payments failed during the restart: {failures:?}"
    );

    // Nothing lost, nothing applied twice: settlement files and settles each capture
    // once, accounts posts each once, and the totals agree.
    let n = captures.len();
    let total: i64 = captures.iter().map(|(_, a)| a).sum();
    filed(&api, &settlement_2.url, "m-rolling", n as i64).await;
    run_settlement(&api, &settlement_2.url).await;
    let (closed, items) = batches(&api, &settlement_2.url, "m-rolling").await;
    assert_eq!(items, n as i64);
    assert!(closed.iter().all(|b| b["status"] == "closed"), "{closed:?}");
    let gross: i64 = closed
        .iter()
        .map(|b| b["gross"]["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(gross, total, "settled gross equals what was captured");

    let mut expected: BTreeMap<String, i64> = captures.into_iter().collect();
    expected.insert(first, 12_500);
    assert_eq!(expected.len(), n + 1, "the API answered a capture id twice");
    let filed_ids = deploy::texts(
        &test_db,
        "SELECT capture_id::text AS value FROM settlement.items",
    )
    .await;
    assert_eq!(filed_ids.len(), expected.len(), "settlement items");
    assert!(
        filed_ids.iter().all(|id| expected.contains_key(id)),
        "settlement filed a capture nobody made"
    );

    let entries = ledger(&api, &accounts_url, &account, expected.len()).await;
    let mut posted: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in &entries {
        let side = posted
            .entry(e["payment_id"].as_str().unwrap().to_owned())
            .or_default();
        let amount = e["amount"]["amount"].as_i64().unwrap();
        match (e["direction"].as_str(), e["ledger_account"].as_str()) {
            (Some("debit"), Some("card_receivable")) => side.0 += amount,
            (Some("credit"), Some("merchant_settlement_payable")) => side.1 += amount,
            other => panic!("unexpected ledger line {other:?}"),
        }
    }
    let wanted: BTreeMap<String, (i64, i64)> = expected
        .iter()
        .map(|(id, a)| (id.clone(), (*a, *a)))
        .collect();
    assert_eq!(
        posted, wanted,
        "each capture posted once, debit and credit balanced"
    );
    let (_, account_now) = api
        .get(&format!("{accounts_url}/v1/accounts/{account}"))
        .await;
    assert_eq!(
        account_now["posted_balance"]["amount"].as_i64(),
        Some(total + 12_500)
    );
    let spend = holds_released(&api, &payments_url, &card).await;
    assert_eq!(
        spend["available_credit"]["amount"].as_i64(),
        Some(LIMIT - total - 12_500)
    );
}
