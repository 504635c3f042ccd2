//! What every context starts before serving: migrations, the pool, the broker
//! connection, the outbox relay and the consumers.

use crate::amqp::{consume_forever, declare_queue, Broker, Handler, Subscription, Topology};
use crate::config::CommonSettings;
use crate::db::{self, PgPool};
use crate::outbox::{start_relay, EventTypes, RelayConfig};
use diesel_migrations::EmbeddedMigrations;
use std::sync::Arc;
use std::time::Duration;

pub struct Plumbing {
    pub pool: PgPool,
    pub broker: Arc<Broker>,
    /// Checks bearer tokens with the keys the settings name (refreshed in `tasks`).
    pub verifier: Arc<crate::auth::JwtVerifier>,
    /// The relay and the metrics watchers: aborted at shutdown.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The consumers: told to stop at shutdown, and waited for.
    pub consumers: Vec<tokio::task::JoinHandle<()>>,
    pub stop: tokio::sync::watch::Sender<bool>,
}

/// How long a stopping service waits for its consumers to finish the message in hand.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Migrates `schema` (unless `DATABASE__MIGRATE_ON_START` is off), then starts the relay of `context`'s outbox and the consumers
/// that `subscribe` returns. Must be called inside a tokio runtime.
pub async fn start(
    common: &CommonSettings,
    context: &str,
    schema: &'static str,
    migrations: EmbeddedMigrations,
    events: EventTypes,
    subscribe: impl FnOnce(&PgPool, &Topology) -> Vec<(Subscription, Handler)>,
) -> anyhow::Result<Plumbing> {
    if common.migrate_on_start {
        let url = common.migration_url().clone();
        tokio::task::spawn_blocking(move || db::migrate(url.expose(), schema, migrations))
            .await??;
    }
    // The credentials: DATABASE__URL's own (development), or Vault's dynamic ones,
    // renewed and rotated by a task of their own (ADR 0020).
    let (url, credentials, max_lifetime) = match (&common.database_vault, &common.vault) {
        (None, _) => (db::DbUrl::fixed(common.database_url.clone()), None, None),
        (Some(_), None) => anyhow::bail!("DATABASE__VAULT_ROLE needs VAULT__ADDR and VAULT__TOKEN"),
        (Some(dbv), Some(vault)) => {
            let mut credentials = crate::db_credentials::DynamicCredentials::new(
                vault,
                dbv,
                &common.database_url,
                context,
            )?;
            let lease = credentials.first().await;
            // A backstop behind the rotation's own retirement of old connections.
            let max_lifetime = lease.map(|l| (l / 2).max(Duration::from_secs(1)));
            (credentials.url(), Some(credentials), max_lifetime)
        }
    };
    let pool = db::pool_with(&url, schema, common.database_pool_size, max_lifetime)?;
    let broker = Broker::new(common.amqp_url.clone());
    let topology = Topology::new(&common.amqp_prefix);
    let owned = |types: &[&str]| types.iter().map(|t| (*t).to_owned()).collect();
    let relay = start_relay(
        pool.clone(),
        broker.clone(),
        RelayConfig {
            exchange: topology.exchange(context),
            notify_channel: format!("outbox_{schema}"),
            database_url: url.clone(),
            schema: schema.to_owned(),
            batch_size: common.outbox.batch_size,
            poll_interval: Duration::from_millis(500),
            lease: common.outbox.lease,
            mode: common.outbox.mode,
            retention: common.outbox.retention,
            prune_interval: common.outbox.prune_interval,
            snapshot_types: owned(events.snapshots),
            broadcast_types: owned(events.broadcasts),
            crash_after_publish: common.outbox.crash_after_publish,
        },
    )
    .await?;
    metrics::gauge!("build_info", "context" => context.to_owned(), "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    let watched = (pool.clone(), context.to_owned());
    let pool_metrics = tokio::spawn(async move {
        loop {
            db::record_pool_metrics(&watched.0, &watched.1);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let (verifier, key_refresh) = crate::auth::start_verifier(common).await?;
    let mut tasks = vec![relay, pool_metrics];
    tasks.extend(key_refresh);
    tasks.extend(credentials.map(|c| c.spawn(pool.clone())));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut consumers = Vec::new();
    let subscriptions = subscribe(&pool, &topology);
    // Declare the queues before serving, so no event published from now on is
    // unroutable for lack of them. A broker that is down now is retried by the consumers.
    if let Err(e) = declare_all(&broker, &subscriptions).await {
        tracing::warn!(error = %e, "could not declare the queues at start-up; consumers will retry");
    }
    for (sub, handler) in subscriptions {
        consumers.push(tokio::spawn(consume_forever(
            broker.clone(),
            sub,
            handler,
            stop_rx.clone(),
        )));
    }
    Ok(Plumbing {
        pool,
        broker,
        verifier,
        tasks,
        consumers,
        stop,
    })
}

async fn declare_all(
    broker: &Broker,
    subscriptions: &[(Subscription, Handler)],
) -> anyhow::Result<()> {
    for (sub, _) in subscriptions {
        let keys: Vec<&str> = sub.keys.iter().map(String::as_str).collect();
        declare_queue(broker, &sub.queue, &sub.exchange, &keys).await?;
    }
    Ok(())
}

/// Readiness of what every context depends on: the database (required) and the broker
/// (reported; the outbox holds events while it is away).
pub async fn base_checks(pool: &PgPool, broker: &Broker) -> Vec<crate::http::Check> {
    let p = pool.clone();
    let db_ok = tokio::task::spawn_blocking(move || db::ping(&p))
        .await
        .unwrap_or(false);
    vec![
        crate::http::Check {
            name: "database",
            up: db_ok,
            required: true,
        },
        crate::http::Check {
            name: "broker",
            up: broker.is_connected(),
            required: false,
        },
    ]
}

/// Attempts a transiently failing message gets before it is parked: with the retry
/// delays (1 s, 5 s, 30 s, 30 s) a dependency may be away for over a minute first.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Subscription of `consumer` to `producer`'s events with these routing keys.
pub fn subscription(
    topology: &Topology,
    consumer: &str,
    producer: &str,
    keys: &[&str],
) -> Subscription {
    Subscription {
        queue: topology.queue(consumer, producer),
        exchange: topology.exchange(producer),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        max_attempts: DEFAULT_MAX_ATTEMPTS,
    }
}

/// A built, bound, not yet awaited context service.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Application {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (in-flight requests finish) from elsewhere.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (SIGINT/SIGTERM: no new connections, in-flight
    /// requests finish), then lets each consumer finish the message in hand (within
    /// [`DRAIN`]) and stops the relay; the unpublished rows wait in the outbox.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("stopping: draining the consumers");
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(DRAIN, async {
            for c in self.consumers {
                let _ = c.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "consumers did not stop within the drain bound; their messages will be redelivered"
            );
        }
        for t in self.tasks {
            t.abort();
        }
        result
    }
}

/// Readiness from the database and the broker only (see [`base_checks`]).
pub fn base_ready(plumbing: &Plumbing) -> crate::server::ReadyCheck {
    let (pool, broker) = (plumbing.pool.clone(), plumbing.broker.clone());
    Arc::new(move || {
        let (pool, broker) = (pool.clone(), broker.clone());
        Box::pin(async move { base_checks(&pool, &broker).await })
    })
}

/// Binds the context's server with the shared middleware and endpoints.
pub fn application<F>(
    common: &CommonSettings,
    plumbing: Plumbing,
    ready: crate::server::ReadyCheck,
    openapi: &'static str,
    routes: F,
) -> anyhow::Result<Application>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
{
    let verifier = actix_web::web::Data::from(plumbing.verifier.clone());
    let config = crate::server::ServerConfig {
        host: common.host.clone(),
        port: common.port,
        workers: 2,
        verifier,
        ready,
        openapi,
        max_in_flight: common.max_in_flight,
        rate_limit: common.rate_limit,
        audit: actix_web::web::Data::new(crate::audit::http::AuditLog {
            pool: plumbing.pool.clone(),
        }),
    };
    let (server, port) = crate::server::serve(config, routes)?;
    Ok(Application {
        port,
        server,
        tasks: plumbing.tasks,
        consumers: plumbing.consumers,
        stop: plumbing.stop,
    })
}

/// `<ctx> migrate`: runs `schema`'s migrations and nothing else, with the one setting it
/// needs, `DATABASE__MIGRATION_URL` (else `DATABASE__URL`). A migration Job then holds
/// the owner's URL and no other secret of the service (no token key, no broker URL).
pub fn migrate_from_env(
    context: &str,
    schema: &str,
    migrations: EmbeddedMigrations,
) -> anyhow::Result<()> {
    let env = crate::config::Env::new(context);
    let url = match env.get("DATABASE", "MIGRATION_URL") {
        Some(url) => url,
        None => env.required("DATABASE", "URL")?,
    };
    db::migrate(&url, schema, migrations)
}

/// `<ctx> health`: succeeds when the server on this host's `HTTP__PORT` answers
/// `/health/live` with 200 (a container image's health check, with no HTTP client in it).
fn health(context: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let port: u16 = crate::config::Env::new(context)
        .required("HTTP", "PORT")?
        .parse()
        .map_err(|e| anyhow::anyhow!("HTTP__PORT: {e}"))?;
    let limit = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.write_all(b"GET /health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    anyhow::ensure!(status == "200", "/health/live answered {status}");
    Ok(())
}

/// The `main` of every context binary: `<ctx> [serve|migrate|health]`. Settings are read for
/// `serve` only; `migrate` reads its own one ([`migrate_from_env`]).
pub fn main<S>(
    context: &str,
    load: fn() -> anyhow::Result<S>,
    migrate: fn() -> anyhow::Result<()>,
    build: fn(S) -> futures_util::future::LocalBoxFuture<'static, anyhow::Result<Application>>,
) -> anyhow::Result<()> {
    crate::telemetry::init(context);
    crate::http::init_metrics();
    let run = || -> anyhow::Result<()> {
        match std::env::args().nth(1).as_deref() {
            Some("migrate") => migrate(),
            Some("health") => health(context),
            None | Some("serve") => actix_web::rt::System::new().block_on(async move {
                let app = build(load()?).await?;
                tracing::info!(context, port = app.port(), "listening");
                app.run_until_stopped().await?;
                crate::telemetry::flush();
                Ok(())
            }),
            Some(other) => {
                anyhow::bail!("unknown command {other:?}; use 'serve', 'migrate' or 'health'")
            }
        }
    };
    // The error `main` returns is printed on stderr, past the log writer: redacted here
    // (a database URL with its password, a token in a setting).
    run().map_err(|e| anyhow::anyhow!(crate::redact::apply(&format!("{e:#}")).into_owned()))
}
