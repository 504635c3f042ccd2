//! The contexts as their container images (ADR 0021), deployed the way a cluster runs
//! them: on a container network of one test's own, beside PostgreSQL, RabbitMQ and
//! OpenBao containers, each context configured only through its environment, its schema
//! migrated by a container of its own running `<ctx> migrate`, and every port published
//! on 127.0.0.1 only.
//!
//! Everything started here carries the label `org.fleet-cards.run=<run>` and the network
//! is named `fleet-<run>-<8 hex>`, so that what a killed run leaves behind can be found
//! and removed. The containers are removed when dropped, the network after them.

use crate::containers::{self, on_loopback, run_id, RUN_LABEL};
use serde_json::Value;
use shared_kernel::config::{CommonSettings, JwtKeys, OutboxSettings, VaultSettings};
use shared_kernel::secrets::Secret;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use testcontainers::bollard::models::{ContainerInspectResponse, NetworkCreateRequest};
use testcontainers::bollard::query_parameters::{InspectContainerOptions, WaitContainerOptions};
use testcontainers::bollard::Docker;
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

/// Where the token verification keys live in Vault, as in the Kubernetes manifests.
pub const TOKEN_KEYS_PATH: &str = "fleet/jwt-signing";
pub const ISSUER: &str = "fleet-deploy-test";
pub const AUDIENCE: &str = "fleet";
/// The contexts and the port each listens on inside its container.
pub const CONTEXTS: [(&str, u16); 3] =
    [("accounts", 8081), ("payments", 8082), ("settlement", 8083)];

pub type Container = ContainerAsync<GenericImage>;

/// Fails (never skips) when no container engine is configured: a deployment test that
/// quietly passes without containers proves nothing.
pub fn require_engine() {
    assert!(
        std::env::var("DOCKER_HOST").is_ok_and(|h| !h.is_empty()),
        "DOCKER_HOST is unset: this test needs a container engine; run it through \
         `cargo xtask test`, or `cargo xtask engine run -- cargo nextest run -p tests --test deployment`, \
         which start one"
    );
}

fn docker() -> Docker {
    Docker::connect_with_defaults().expect("a client of the container engine (DOCKER_HOST)")
}

/// A container network of one test's own, removed when dropped. Declare it before the
/// containers on it, so that they are dropped (removed) first.
pub struct Network {
    pub name: String,
    pub run: String,
}

impl Network {
    pub async fn create() -> Self {
        let (run, name) = (run_id(), crate::containers::network_name());
        docker()
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                labels: Some(HashMap::from([(RUN_LABEL.to_owned(), run.clone())])),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("creating network {name}: {e}"));
        Self { name, run }
    }

    /// `image` as the container `<network>-<role>` on this network, with the run's label.
    pub fn container(
        &self,
        image: impl Into<ContainerRequest<GenericImage>>,
        role: &str,
    ) -> ContainerRequest<GenericImage> {
        image
            .into()
            .with_network(&self.name)
            .with_container_name(format!("{}-{role}", self.name))
            .with_label(RUN_LABEL, &self.run)
    }

    /// The address of `container` on this network. An address rather than the container's
    /// name: podman resolves names only on networks with DNS (netavark with aardvark-dns),
    /// which a CNI set-up lacks, while an address works on every engine.
    pub async fn address(&self, container: &Container) -> String {
        inspect(container)
            .await
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|n| n.get(&self.name).cloned())
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "container {} has no address on {}",
                    container.id(),
                    self.name
                )
            })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Drop cannot await, and may run on the test's runtime: a thread with a runtime
        // of its own removes the network.
        let name = self.name.clone();
        let removed = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let docker = Docker::connect_with_defaults().map_err(|e| e.to_string())?;
                docker
                    .remove_network(&name)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(removed, Ok(Ok(()))) {
            eprintln!("could not remove network {}: {removed:?}", self.name);
        }
    }
}

/// What the engine says of a running `container`.
async fn inspect(container: &Container) -> ContainerInspectResponse {
    docker()
        .inspect_container(container.id(), None::<InspectContainerOptions>)
        .await
        .unwrap_or_else(|e| panic!("inspecting container {}: {e}", container.id()))
}

/// The host addresses every published port of `container` is bound to.
pub async fn published_on(container: &Container) -> Vec<String> {
    inspect(container)
        .await
        .network_settings
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_values()
        .flatten()
        .flatten()
        .map(|b| b.host_ip.unwrap_or_default())
        .collect()
}

/// The last lines `container` wrote (its logs are redacted by the binary, ADR 0019).
pub async fn log_tail(container: &Container) -> String {
    let mut text =
        String::from_utf8_lossy(&container.stdout_to_vec().await.unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(
        &container.stderr_to_vec().await.unwrap_or_default(),
    ));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// PostgreSQL, RabbitMQ and OpenBao on the network.
pub struct Infra {
    pub postgres: Container,
    pub rabbitmq: Container,
    pub openbao: Container,
    /// Superuser URL of the `postgres` database through the published port (the test's).
    pub postgres_admin_url: String,
    /// OpenBao through its published port (the test's), and its root token.
    pub vault: VaultSettings,
    /// The addresses the contexts reach each server at, on the network.
    pub postgres_host: String,
    pub rabbitmq_host: String,
    pub openbao_host: String,
}

impl Infra {
    pub async fn start(net: &Network) -> Self {
        let token = uuid::Uuid::new_v4().to_string();
        let postgres = on_loopback(
            net.container(containers::postgres(), "postgres"),
            &[(0, 5432)],
        );
        let rabbitmq = on_loopback(
            net.container(containers::rabbitmq(), "rabbitmq"),
            &[(0, 5672)],
        );
        let openbao = on_loopback(
            net.container(containers::openbao(&token), "openbao"),
            &[(0, 8200)],
        );
        let (postgres, rabbitmq, openbao) =
            tokio::join!(postgres.start(), rabbitmq.start(), openbao.start());
        let postgres = postgres.unwrap_or_else(|e| panic!("PostgreSQL container: {e}"));
        let rabbitmq = rabbitmq.unwrap_or_else(|e| panic!("RabbitMQ container: {e}"));
        let openbao = openbao.unwrap_or_else(|e| panic!("OpenBao container: {e}"));
        let vault = VaultSettings {
            addr: format!("http://127.0.0.1:{}", host_port(&openbao, 8200).await),
            token: Secret::new(token),
            transit_mount: "transit".to_owned(),
        };
        let health = format!("{}/v1/sys/health", vault.addr);
        crate::eventually("OpenBao to answer", Duration::from_secs(30), || async {
            let r = reqwest::get(&health).await;
            r.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
        Self {
            postgres_admin_url: format!(
                "postgres://postgres@127.0.0.1:{}/postgres",
                host_port(&postgres, 5432).await
            ),
            vault,
            postgres_host: net.address(&postgres).await,
            rabbitmq_host: net.address(&rabbitmq).await,
            openbao_host: net.address(&openbao).await,
            postgres,
            rabbitmq,
            openbao,
        }
    }

    /// Creates the database `name` and every context's owner and runtime roles in it, as
    /// a database administrator does once (ADR 0017). Returns its URL on the network, as
    /// the superuser (`shared_kernel::roles::url_as` swaps the role).
    pub async fn provision(&self, name: &str, replication: bool) -> String {
        crate::exec_at(&self.postgres_admin_url, &format!("CREATE DATABASE {name}")).await;
        let url = self.test_url(name);
        tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            let mut conn = diesel::PgConnection::establish(&url).expect("a superuser connection");
            for (schema, _) in CONTEXTS {
                shared_kernel::roles::provision(&mut conn, schema, replication)
                    .expect("roles provisioned");
            }
        })
        .await
        .expect("provisioning task");
        format!("postgres://postgres@{}:5432/{name}", self.postgres_host)
    }

    /// The database `name` through the published port, as the superuser (the test's
    /// view, for counting).
    pub fn test_url(&self, name: &str) -> String {
        let (server, _) = self
            .postgres_admin_url
            .rsplit_once('/')
            .expect("a URL with a database");
        format!("{server}/{name}")
    }

    /// Every context's settings for this deployment: the runtime role of `db_url`'s
    /// database, the broker, and Vault (transit for card data, and the token keys at
    /// [`TOKEN_KEYS_PATH`]), each as the network reaches it.
    pub fn settings(&self, db_url: &str, outbox: OutboxSettings) -> CommonSettings {
        CommonSettings {
            host: "0.0.0.0".to_owned(),
            port: 0,
            database_url: Secret::new(db_url.to_owned()),
            database_vault: None,
            // The migration job holds the owner's URL; the service runs without it.
            migration_url: None,
            migrate_on_start: false,
            database_pool_size: 5,
            amqp_url: Secret::new(format!(
                "amqp://guest:guest@{}:5672/%2f",
                self.rabbitmq_host
            )),
            amqp_prefix: String::new(),
            jwt_keys: JwtKeys::Vault(shared_kernel::config::VaultJwtKeys {
                mount: "secret".to_owned(),
                path: TOKEN_KEYS_PATH.to_owned(),
                accepted: 2,
                refresh: Duration::from_secs(60),
            }),
            jwt_issuer: ISSUER.to_owned(),
            jwt_audience: AUDIENCE.to_owned(),
            vault: Some(VaultSettings {
                addr: format!("http://{}:8200", self.openbao_host),
                token: self.vault.token.clone(),
                transit_mount: "transit".to_owned(),
            }),
            max_in_flight: shared_kernel::config::DEFAULT_MAX_IN_FLIGHT,
            rate_limit: Default::default(),
            outbox,
        }
    }
}

/// The host port `container`'s `port` is published on.
pub async fn host_port(container: &Container, port: u16) -> u16 {
    container
        .get_host_port_ipv4(port)
        .await
        .unwrap_or_else(|e| panic!("port {port} of {}: {e}", container.id()))
}

/// The single text column `value` of every row `sql` returns at `url`.
pub async fn texts(url: &str, sql: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let (url, sql) = (url.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut conn = diesel::PgConnection::establish(&url).expect("a connection");
        diesel::sql_query(sql)
            .load::<Text>(&mut conn)
            .expect("a query")
            .into_iter()
            .map(|t| t.value)
            .collect()
    })
    .await
    .expect("SQL task")
}

fn image_of(context: &str) -> GenericImage {
    GenericImage::new(format!("localhost/fleet-{context}"), "dev".to_owned())
}

/// `<context> migrate` in a container of its own, as a Kubernetes Job runs it: the schema
/// owner's URL is its only setting. Fails the test unless it exits 0.
///
/// Through the engine's API rather than testcontainers, whose start inspects the
/// container: podman 4 reports a container whose process has just exited in a state
/// (`stopped`) Docker's API does not have and its client cannot read, and a job whose
/// migrations are already applied exits at once.
pub async fn migrate(net: &Network, context: &str, owner_url: &str) {
    use testcontainers::bollard::models::{ContainerCreateBody, HostConfig};
    use testcontainers::bollard::query_parameters::{
        CreateContainerOptions, RemoveContainerOptions,
    };
    let docker = docker();
    let job = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(format!("{}-{context}-migrate", net.name)),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(format!("localhost/fleet-{context}:dev")),
                cmd: Some(vec!["migrate".to_owned()]),
                env: Some(vec![format!(
                    "{}__DATABASE__MIGRATION_URL={owner_url}",
                    context.to_uppercase()
                )]),
                labels: Some(HashMap::from([(RUN_LABEL.to_owned(), net.run.clone())])),
                host_config: Some(HostConfig {
                    network_mode: Some(net.name.clone()),
                    readonly_rootfs: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{context} migrate: creating its container: {e}"))
        .id;
    let ran = docker.start_container(&job, None).await;
    let code = match ran {
        Ok(()) => exit_code_of(&docker, &job).await,
        Err(e) => panic!("{context} migrate: starting its container: {e}"),
    };
    let log = if code == 0 {
        String::new()
    } else {
        job_log(&docker, &job).await
    };
    let removed = docker
        .remove_container(
            &job,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(code, 0, "{context} migrate exited with {code}:\n{log}");
    removed.unwrap_or_else(|e| panic!("{context} migrate: removing its container: {e}"));
}

/// The last lines a job container wrote.
async fn job_log(docker: &Docker, id: &str) -> String {
    use futures_util::StreamExt;
    use testcontainers::bollard::query_parameters::LogsOptions;
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: "30".to_owned(),
        ..Default::default()
    };
    let chunks: Vec<_> = docker.logs(id, Some(options)).collect().await;
    chunks
        .into_iter()
        .filter_map(Result::ok)
        .map(|c| c.to_string())
        .collect()
}

/// Waits until `container` is not running and returns its exit code. Through the wait
/// endpoint rather than an inspection, which podman's `stopped` state breaks.
pub async fn exit_code(container: &Container) -> i64 {
    exit_code_of(&docker(), container.id()).await
}

async fn exit_code_of(docker: &Docker, id: &str) -> i64 {
    use futures_util::StreamExt;
    let mut wait = docker.wait_container(id, None::<WaitContainerOptions>);
    match wait.next().await {
        Some(Ok(exited)) => exited.status_code,
        Some(Err(testcontainers::bollard::errors::Error::DockerContainerWaitError {
            code,
            ..
        })) => code,
        other => panic!("waiting for container {id}: {other:?}"),
    }
}

/// One context's container serving on a port published on 127.0.0.1.
pub struct Service {
    pub url: String,
    pub container: Container,
}

/// Starts `context` as the container `<network>-<role>`, configured by `settings` (in
/// its environment only), and waits until it is ready.
pub async fn serve(net: &Network, context: &str, role: &str, settings: &CommonSettings) -> Service {
    let port = CONTEXTS
        .iter()
        .find(|(c, _)| *c == context)
        .map(|(_, p)| *p)
        .expect("a context");
    let mut env = crate::procs::env_of(context, settings, port);
    env.push((
        format!("{}__DATABASE__MIGRATE_ON_START", context.to_uppercase()),
        "false".to_owned(),
    ));
    let mut request = on_loopback(
        net.container(image_of(context).with_exposed_port(port.tcp()), role),
        &[(0, port)],
    )
    .with_readonly_rootfs(true);
    for (k, v) in env {
        request = request.with_env_var(k, v);
    }
    let container = request
        .start()
        .await
        .unwrap_or_else(|e| panic!("{role} container: {e}"));
    let service = Service {
        url: format!("http://127.0.0.1:{}", host_port(&container, port).await),
        container,
    };
    service.wait_ready(role).await;
    service
}

impl Service {
    /// Waits until `/health/ready` answers 200; fails with the container's log when it
    /// does not within a minute, or when the container exits.
    pub async fn wait_ready(&self, role: &str) {
        let url = format!("{}/health/ready", self.url);
        let started = Instant::now();
        loop {
            let ready = reqwest::get(&url).await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            let exited = self.container.exit_code().await.ok().flatten();
            if exited.is_some() || started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "{role} is not ready (exit code {exited:?}):\n{}",
                    log_tail(&self.container).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A client of the services with one bearer token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    pub fn new(token: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client");
        Self { http, token }
    }

    /// GET with the token; the status (0 when there was no answer) and the JSON body.
    pub async fn get(&self, url: &str) -> (u16, Value) {
        Self::answer(self.http.get(url).bearer_auth(&self.token).send().await).await
    }

    /// POST of `body` with the token and, when given, an `Idempotency-Key`.
    pub async fn post(&self, url: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(url).bearer_auth(&self.token).json(&body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        Self::answer(req.send().await).await
    }

    async fn answer(sent: reqwest::Result<reqwest::Response>) -> (u16, Value) {
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            // The error names the URL, never the token.
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// Every item of a paged collection (`data`, `next_cursor`) at `url`.
    pub async fn all_pages(&self, url: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page = reqwest::Url::parse(url).expect("a URL");
            page.query_pairs_mut().append_pair("limit", "100");
            if let Some(c) = &cursor {
                page.query_pairs_mut().append_pair("cursor", c);
            }
            let (status, body) = self.get(page.as_str()).await;
            assert_eq!(status, 200, "GET {url}: {body}");
            items.extend(body["data"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
    }
}
