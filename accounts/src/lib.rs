//! accounts: business accounts, cards, and the double-entry ledger.

pub mod consumers;
pub mod domain;
pub mod events;
pub mod http;
pub mod store;

use actix_web::dev::Server;
use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared_kernel::amqp::{consume_forever, Broker, Subscription, Topology};
use shared_kernel::auth::JwtVerifier;
use shared_kernel::config::CommonSettings;
use shared_kernel::db::{self, PgPool};
use shared_kernel::outbox::{spawn_relay, RelayConfig};
use shared_kernel::server::{serve, ReadyCheck, ServerConfig};
use shared_kernel::vault::Transit;
use std::sync::Arc;
use std::time::Duration;

pub const CONTEXT: &str = "accounts";
pub const SCHEMA: &str = "accounts";
pub const DEFAULT_PORT: u16 = 8081;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
pub const OPENAPI: &str = include_str!("../../contracts/openapi/accounts.json");

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self { common: CommonSettings::from_env(CONTEXT, DEFAULT_PORT)? })
    }
}

/// What handlers share.
pub struct AppState {
    pub pool: PgPool,
    pub transit: Option<Transit>,
}

/// A built, bound, not yet awaited accounts service.
pub struct Application {
    port: u16,
    server: Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs the migrations of the `accounts` schema.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    db::migrate(settings.common.database_url.expose(), SCHEMA, MIGRATIONS)
}

impl Application {
    /// Migrates, connects, starts the relay and the consumers, and binds the port
    /// (port 0 picks a free one). Must be called inside a tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = settings.common.clone();
        let s = settings.clone();
        tokio::task::spawn_blocking(move || migrate(&s)).await??;
        let pool = db::pool(common.database_url.expose(), SCHEMA, common.database_pool_size)?;
        let transit = match &common.vault {
            Some(v) => {
                let t = Transit::new(v)?;
                if let Err(e) = t.ensure_keys(&[http_keys::PAN_KEY, http_keys::FINGERPRINT_KEY]).await {
                    tracing::warn!(error = %e, "Vault transit is not ready; card issuance will fail until it is");
                }
                Some(t)
            }
            None => {
                tracing::warn!("no Vault configured: card issuance is disabled");
                None
            }
        };
        let broker = Broker::new(common.amqp_url.clone());
        let topology = Topology::new(&common.amqp_prefix);
        let mut tasks = vec![spawn_relay(
            pool.clone(),
            broker.clone(),
            RelayConfig {
                exchange: topology.exchange(CONTEXT),
                notify_channel: format!("outbox_{SCHEMA}"),
                database_url: common.database_url.clone(),
                schema: SCHEMA.to_owned(),
                batch_size: 100,
                poll_interval: Duration::from_millis(500),
                lease: Duration::from_secs(30),
            },
        )];
        tasks.push(tokio::spawn(consume_forever(
            broker.clone(),
            Subscription {
                queue: topology.queue(CONTEXT, "settlement"),
                exchange: topology.exchange("settlement"),
                keys: consumers::SETTLEMENT_KEYS.iter().map(|k| (*k).to_owned()).collect(),
            },
            consumers::settlement_events(pool.clone()),
        )));
        let state = web::Data::new(AppState { pool: pool.clone(), transit });
        let ready: ReadyCheck = {
            let (pool, broker, state) = (pool.clone(), broker.clone(), state.clone());
            Arc::new(move || {
                let (pool, broker, state) = (pool.clone(), broker.clone(), state.clone());
                Box::pin(async move {
                    let db_ok = tokio::task::spawn_blocking(move || db::ping(&pool)).await.unwrap_or(false);
                    let vault_ok = match &state.transit {
                        Some(t) => t.ping().await,
                        None => false,
                    };
                    vec![("database", db_ok), ("broker", broker.is_connected().await), ("vault", vault_ok)]
                })
            })
        };
        let verifier = web::Data::new(JwtVerifier::new(&common.jwt_secret, &common.jwt_issuer, &common.jwt_audience));
        let (server, port) = serve(
            ServerConfig { host: common.host.clone(), port: common.port, workers: 2, verifier, ready, openapi: OPENAPI },
            move |cfg| {
                cfg.app_data(state.clone());
                http::routes(cfg);
            },
        )?;
        tracing::info!(port, "accounts listening");
        Ok(Self { port, server, tasks })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server stops (SIGINT/SIGTERM), then stops the background tasks.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for t in self.tasks {
            t.abort();
        }
        result
    }
}

mod http_keys {
    pub use crate::http::{FINGERPRINT_KEY, PAN_KEY};
}
