//! Test harness for cross-context tests: finds real infrastructure, starts the three
//! contexts in-process against an isolated database and isolated broker names, and
//! offers an HTTP client that records every response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod containers;
pub mod contract;
pub mod deploy;
pub mod faults;
pub mod infra;
pub mod k8s;
pub mod load;
pub mod logs;
pub mod otlp;
pub mod procs;
pub mod reconcile;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared_kernel::auth::{JwtIssuer, ALL_SCOPES};
use shared_kernel::config::{CommonSettings, JwtKeys, VaultSettings};
use shared_kernel::secrets::Secret;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const JWT_ISSUER: &str = "fleet-test";
pub const JWT_AUDIENCE: &str = "fleet";

/// The sum of the samples of `name` whose labels include all of `labels`, in a
/// Prometheus text exposition (0 when there is none).
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The three contexts running against one isolated database and broker namespace.
pub struct TestSystem {
    pub accounts: String,
    pub payments: String,
    pub settlement: String,
    pub issuer: JwtIssuer,
    pub prefix: String,
    pub amqp_url: String,
    pub database: infra::TestDatabase,
    /// The settings the three contexts were started with.
    pub common: CommonSettings,
    pub http: reqwest::Client,
    /// Every response body this client saw (for leak scans).
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Every exchange this client made (for contract checks).
    pub exchanges: Arc<Mutex<Vec<contract::Exchange>>>,
    handles: Vec<actix_web::dev::ServerHandle>,
    /// The contexts running as child processes, by name.
    procs: Mutex<std::collections::HashMap<String, procs::ContextProcess>>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub content_type: String,
}

impl TestSystem {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts the system with the contexts named in `processes` as child processes
    /// (which a test can kill and restart) and the others in this process.
    pub async fn start_with(processes: &[&str]) -> Self {
        Self::start_custom(processes, None, None, &[]).await
    }

    /// [`Self::start_with`], with `env` added to the environment of every child process
    /// (on each of its starts).
    pub async fn start_with_env(processes: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_custom(processes, None, None, env).await
    }

    /// Starts the system with this Vault (address, token) instead of the shared one.
    pub async fn start_with_vault(addr: &str, token: &str) -> Self {
        Self::start_custom(&[], Some((addr.to_owned(), token.to_owned())), None, &[]).await
    }

    /// Starts the system with this Vault and these token keys (e.g. keys from Vault),
    /// with the contexts named in `processes` as child processes. `self.issuer` still
    /// signs with the development key, which such a system does not accept.
    pub async fn start_with_keys(
        processes: &[&str],
        addr: &str,
        token: &str,
        keys: JwtKeys,
    ) -> Self {
        Self::start_custom(
            processes,
            Some((addr.to_owned(), token.to_owned())),
            Some(keys),
            &[],
        )
        .await
    }

    async fn start_custom(
        processes: &[&str],
        vault: Option<(String, String)>,
        keys: Option<JwtKeys>,
        env: &[(&str, &str)],
    ) -> Self {
        logs::install();
        let infra = infra::Infra::get().await;
        let vault = vault.or_else(|| infra.vault.clone());
        let database = infra::TestDatabase::create(&infra.postgres_admin_url).await;
        let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        let secret = Secret::new(format!(
            "test-{}-{}",
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4()
        ));
        let common = CommonSettings {
            host: "127.0.0.1".to_owned(),
            port: 0,
            database_url: Secret::new(database.url.clone()),
            database_vault: None,
            migration_url: None,
            migrate_on_start: true,
            database_pool_size: 5,
            amqp_url: Secret::new(infra.amqp_url.clone()),
            amqp_prefix: prefix.clone(),
            jwt_keys: keys.unwrap_or_else(|| JwtKeys::Secret(secret.clone())),
            jwt_issuer: JWT_ISSUER.to_owned(),
            jwt_audience: JWT_AUDIENCE.to_owned(),
            vault: vault.as_ref().map(|(addr, token)| VaultSettings {
                addr: addr.clone(),
                token: Secret::new(token.clone()),
                transit_mount: "transit".to_owned(),
            }),
            max_in_flight: shared_kernel::config::DEFAULT_MAX_IN_FLIGHT,
            rate_limit: Default::default(),
            // FLEET__OUTBOX__MODE=cdc runs the whole suite's relays in cdc mode.
            outbox: shared_kernel::config::OutboxSettings::from_env("fleet")
                .expect("valid FLEET__OUTBOX__* settings"),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let mut handles = Vec::new();
        let mut procs = std::collections::HashMap::new();
        let mut urls = Vec::new();
        for ctx in ["accounts", "payments", "settlement"] {
            // Each context migrates as its schema's owner and runs as its runtime role.
            let common = database.settings_for(ctx, &common);
            if processes.contains(&ctx) {
                let port = procs::free_port();
                let mut vars = procs::env_of(ctx, &common, port);
                vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
                let p = procs::ContextProcess::spawn(ctx, vars, port);
                p.wait_live(&http).await;
                urls.push(p.url());
                procs.insert(ctx.to_owned(), p);
                continue;
            }
            let app = match ctx {
                "accounts" => {
                    accounts::build(accounts::Settings {
                        common: common.clone(),
                    })
                    .await
                }
                "payments" => {
                    payments::build(payments::Settings {
                        common: common.clone(),
                    })
                    .await
                }
                _ => {
                    settlement::build(settlement::Settings {
                        common: common.clone(),
                        fees: settlement::domain::fees::FeeSchedule::default(),
                    })
                    .await
                }
            }
            .unwrap_or_else(|e| panic!("{ctx} starts: {e:#}"));
            urls.push(format!("http://127.0.0.1:{}", app.port()));
            handles.push(app.handle());
            tokio::spawn(app.run_until_stopped());
        }
        let (accounts, payments, settlement) = (urls[0].clone(), urls[1].clone(), urls[2].clone());
        Self {
            accounts,
            payments,
            settlement,
            issuer: JwtIssuer::new(&secret, JWT_ISSUER, JWT_AUDIENCE),
            prefix,
            amqp_url: infra.amqp_url.clone(),
            database,
            common,
            http,
            procs: Mutex::new(procs),
            seen: Arc::new(Mutex::new(Vec::new())),
            exchanges: Arc::new(Mutex::new(Vec::new())),
            handles,
        }
    }

    /// A token with every scope.
    pub fn token(&self) -> String {
        self.token_with(ALL_SCOPES)
    }

    pub fn token_with(&self, scopes: &[&str]) -> String {
        self.issuer.mint("test-client", scopes, 600).unwrap()
    }

    /// A token bound to `program` (ADR 0018) with `scopes`.
    pub fn program_token(&self, program: &str, scopes: &[&str]) -> String {
        self.issuer
            .mint_for_program(&format!("{program}-client"), scopes, 600, program)
            .unwrap()
    }

    /// Sends a request; `token` None sends no Authorization header.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    /// Sends a raw body with a content type.
    pub async fn send_raw(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self
            .http
            .request(method, url)
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Response {
        let req = req.build().expect("a valid request");
        let (method, url) = (req.method().to_string(), req.url().to_string());
        let res = self.http.execute(req).await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = res.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.exchanges.lock().unwrap().push(contract::Exchange {
            method,
            url,
            status: status.as_u16(),
            content_type: content_type.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        });
        Response {
            status,
            headers,
            body,
            content_type,
        }
    }

    /// Every exchange so far agrees with the committed OpenAPI document of the
    /// service it hit: path, method, status, media type and body schema.
    pub fn assert_exchanges_match_contracts(&self) {
        let docs = [
            (&self.accounts, "contracts/openapi/accounts.json"),
            (&self.payments, "contracts/openapi/payments.json"),
            (&self.settlement, "contracts/openapi/settlement.json"),
        ]
        .map(|(base, file)| (base, file, contract::load(file)));
        let exchanges = self.exchanges.lock().unwrap().clone();
        assert!(!exchanges.is_empty(), "no exchanges recorded");
        let mut problems = Vec::new();
        for ex in &exchanges {
            match docs
                .iter()
                .find(|(base, _, _)| ex.url.starts_with(base.as_str()))
            {
                Some((_, file, doc)) => problems.extend(
                    contract::check(doc, ex)
                        .into_iter()
                        .map(|p| format!("{file}: {p}")),
                ),
                None => problems.push(format!("{} {}: not one of the services", ex.method, ex.url)),
            }
        }
        assert!(
            problems.is_empty(),
            "responses disagree with the committed contracts:\n{}\n\
             Either change the code back, or change the contract with it (the file named above) \
             and run `cargo xtask contracts check --against origin/main` to prove the change is additive.",
            problems.join("\n")
        );
    }

    pub async fn get(&self, url: &str) -> Response {
        self.send(Method::GET, url, Some(&self.token()), None, &[])
            .await
    }

    pub async fn post(&self, url: &str, body: Value) -> Response {
        self.send(Method::POST, url, Some(&self.token()), Some(body), &[])
            .await
    }

    pub async fn post_idem(&self, url: &str, key: &str, body: Value) -> Response {
        self.send(
            Method::POST,
            url,
            Some(&self.token()),
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    /// Polls `probe` until it returns Some, failing the test after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        eventually(what, timeout, probe).await
    }

    /// Opens a USD account with `limit`, issues it a card, and waits until payments
    /// has heard of both; returns the card id.
    pub async fn card_known_to_payments(&self, limit: i64) -> String {
        let account = self
            .post(
                &format!("{}/v1/accounts", self.accounts),
                serde_json::json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": limit, "currency": "USD"}}),
            )
            .await;
        assert_eq!(account.status, 201, "{:?}", account.body);
        let account_id = account.body["id"].as_str().unwrap().to_owned();
        let card = self
            .post(
                &format!("{}/v1/accounts/{account_id}/cards", self.accounts),
                serde_json::json!({"cardholder_name": "Ada Driver", "expiry_month": 12, "expiry_year": 2030}),
            )
            .await;
        assert_eq!(card.status, 201, "{:?}", card.body);
        let card_id = card.body["id"].as_str().unwrap().to_owned();
        let spend = format!("{}/v1/cards/{card_id}/spend", self.payments);
        self.eventually(
            "payments to know the card",
            Duration::from_secs(30),
            || async { (self.get(&spend).await.status == 200).then_some(()) },
        )
        .await;
        card_id
    }

    /// Authorizes `amount` cents (USD) on `card_id` at merchant `merchant_id` and captures
    /// all of it; returns the capture.
    pub async fn authorize_and_capture(
        &self,
        card_id: &str,
        amount: i64,
        merchant_id: &str,
    ) -> Value {
        let key = uuid::Uuid::new_v4().to_string();
        let auth = self
            .post_idem(
                &format!("{}/v1/authorizations", self.payments),
                &format!("a-{key}"),
                serde_json::json!({"card_id": card_id, "amount": {"amount": amount, "currency": "USD"},
                    "merchant": {"id": merchant_id, "name": "Fuel", "mcc": "5541", "country": "US"}}),
            )
            .await;
        assert_eq!(auth.status, 201, "{:?}", auth.body);
        assert_eq!(auth.body["status"], "approved", "{:?}", auth.body);
        let auth_id = auth.body["id"].as_str().unwrap();
        let cap = self
            .post_idem(
                &format!("{}/v1/authorizations/{auth_id}/captures", self.payments),
                &format!("c-{key}"),
                serde_json::json!({"amount": {"amount": amount, "currency": "USD"}}),
            )
            .await;
        assert_eq!(cap.status, 201, "{:?}", cap.body);
        cap.body
    }

    /// Runs settlement with a cutoff just ahead of now; returns the run.
    pub async fn run_settlement(&self) -> Value {
        let cutoff = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        let run = self
            .post(
                &format!("{}/v1/settlement-runs", self.settlement),
                serde_json::json!({ "cutoff": cutoff }),
            )
            .await;
        assert_eq!(run.status, 201, "{:?}", run.body);
        run.body
    }

    /// Runs SQL on this test's database (to set up states the API cannot reach).
    pub async fn exec(&self, sql: &str) {
        exec_at(&self.database.url, sql).await;
    }

    /// The body of a GET to `url` as text, unrecorded (for documents such as /metrics).
    pub async fn fetch_text(&self, url: &str) -> String {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs a query whose single row has a single text column `value`.
    pub async fn text(&self, sql: &str) -> String {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let (url, sql) = (self.database.url.clone(), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut conn = diesel::PgConnection::establish(&url).unwrap();
            diesel::sql_query(sql)
                .get_result::<Text>(&mut conn)
                .unwrap()
                .value
        })
        .await
        .unwrap()
    }

    /// Runs a `SELECT count(*) ...` on this test's database.
    pub async fn count(&self, sql: &str) -> i64 {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let (url, sql) = (self.database.url.clone(), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut conn = diesel::PgConnection::establish(&url).unwrap();
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .unwrap()
                .count
        })
        .await
        .unwrap()
    }

    /// Publishes raw bytes to `producer`'s exchange, as a broken or hostile producer
    /// would, and waits for the broker's confirm.
    pub async fn publish_raw(&self, producer: &str, routing_key: &str, body: &[u8]) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let conn =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let exchange = shared_kernel::amqp::Topology::new(&self.prefix).exchange(producer);
        let confirm = ch
            .basic_publish(
                exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            matches!(confirm, lapin::Confirmation::Ack(None)),
            "the broker routed the message: {confirm:?}"
        );
        let _ = conn.close(200, "published".into()).await;
    }

    /// The parked messages of `consumer`'s queue of `producer`'s events.
    pub async fn parked(
        &self,
        consumer: &str,
        producer: &str,
    ) -> Vec<shared_kernel::amqp::parking::Parked> {
        let broker = shared_kernel::amqp::Broker::new(Secret::new(self.amqp_url.clone()));
        let queue = shared_kernel::amqp::Topology::new(&self.prefix).queue(consumer, producer);
        shared_kernel::amqp::parking::list(&broker, &queue, 1000)
            .await
            .unwrap()
    }

    /// The log of the child process of `context` so far.
    pub fn process_log(&self, context: &str) -> String {
        self.procs
            .lock()
            .unwrap()
            .get(context)
            .expect("a child process")
            .log_text()
    }

    /// SIGKILLs the child process of `context`.
    pub fn kill(&self, context: &str) {
        self.procs
            .lock()
            .unwrap()
            .get_mut(context)
            .expect("a child process")
            .kill();
    }

    /// Starts the child process of `context` again (on its port), with `extra`
    /// environment variables this time only, and waits until it is live.
    pub async fn restart(&self, context: &str, extra: &[(&str, &str)]) {
        let url = self.restart_nowait(context, extra);
        self.eventually(
            &format!("{context} to be live again"),
            Duration::from_secs(60),
            || async {
                let r = self.http.get(format!("{url}/health/live")).send().await;
                r.is_ok_and(|r| r.status().is_success()).then_some(())
            },
        )
        .await;
    }

    /// Starts the child process of `context` again and returns its URL at once.
    pub fn restart_nowait(&self, context: &str, extra: &[(&str, &str)]) -> String {
        let mut procs = self.procs.lock().unwrap();
        let p = procs.get_mut(context).expect("a child process");
        p.kill();
        p.start(extra);
        p.url()
    }

    /// Sends SIGTERM to the child process of `context` and returns how it exited (None
    /// when it did not within a minute and had to be killed).
    pub async fn terminate(&self, context: &str) -> Option<std::process::ExitStatus> {
        let mut p = self
            .procs
            .lock()
            .unwrap()
            .remove(context)
            .expect("a child process");
        let (status, p) = tokio::task::spawn_blocking(move || (p.terminate(), p))
            .await
            .unwrap();
        self.procs.lock().unwrap().insert(context.to_owned(), p);
        status
    }

    /// Whether the child process of `context` has exited by itself.
    pub fn exited(&self, context: &str) -> bool {
        self.procs
            .lock()
            .unwrap()
            .get_mut(context)
            .expect("a child process")
            .exited()
    }

    /// Stops the services, removes this test's queues and exchanges and its database.
    pub async fn shutdown(self) {
        for h in &self.handles {
            h.stop(true).await;
        }
        for (_, mut p) in self.procs.lock().unwrap().drain() {
            p.kill();
        }
        infra::delete_broker_names(&self.amqp_url, &self.prefix).await;
        self.database.drop_now().await;
    }
}

/// Receives a copy of every event the three contexts publish (an exclusive queue
/// bound with `#` to each context's exchange).
pub struct EventTap {
    pub events: Arc<Mutex<Vec<Value>>>,
    _conn: lapin::Connection,
}

impl TestSystem {
    pub async fn tap_events(&self) -> EventTap {
        use futures_util::StreamExt;
        use lapin::options::{
            BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions,
        };
        use lapin::types::FieldTable;
        let conn =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let queue = format!("{}tap", self.prefix);
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        let topology = shared_kernel::amqp::Topology::new(&self.prefix);
        for ctx in ["accounts", "payments", "settlement"] {
            let exchange = topology.exchange(ctx);
            shared_kernel::amqp::declare_exchange(&ch, &exchange)
                .await
                .unwrap();
            ch.queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "tap".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if let Ok(v) = serde_json::from_slice::<Value>(&d.data) {
                    sink.lock().unwrap().push(v);
                }
                let _ = d.ack(BasicAckOptions::default()).await;
            }
        });
        EventTap {
            events,
            _conn: conn,
        }
    }
}

impl EventTap {
    pub fn of_type(&self, event_type: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == event_type)
            .cloned()
            .collect()
    }
    pub fn all(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

/// Runs `sql` (no result) at `url`.
pub async fn exec_at(url: &str, sql: &str) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let (url, sql) = (url.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&url).expect("a connection");
        conn.batch_execute(&sql).expect("a statement");
    })
    .await
    .expect("SQL task");
}

/// Polls `probe` until it returns Some, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The workspace's root directory.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
