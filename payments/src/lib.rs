//! payments: authorizations, holds and captures, decided in real time from local
//! projections of accounts' events.

pub mod consumers;
pub mod domain;
pub mod events;
pub mod http;
pub mod store;

use actix_web::dev::Server;
use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared_kernel::auth::JwtVerifier;
use shared_kernel::config::CommonSettings;
use shared_kernel::db::{self, PgPool};
use shared_kernel::server::{serve, ReadyCheck, ServerConfig};
use shared_kernel::startup;
use std::sync::Arc;

pub const CONTEXT: &str = "payments";
pub const SCHEMA: &str = "payments";
pub const DEFAULT_PORT: u16 = 8082;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
pub const OPENAPI: &str = include_str!("../../contracts/openapi/payments.json");

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: CommonSettings::from_env(CONTEXT, DEFAULT_PORT)?,
        })
    }
}

pub struct AppState {
    pub pool: PgPool,
}

pub struct Application {
    port: u16,
    server: Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs the migrations of the `payments` schema.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    db::migrate(settings.common.database_url.expose(), SCHEMA, MIGRATIONS)
}

impl Application {
    /// Migrates, connects, starts the relay and the consumers, and binds the port
    /// (port 0 picks a free one). Must be called inside a tokio runtime.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = settings.common;
        let plumbing = startup::start(&common, CONTEXT, SCHEMA, MIGRATIONS, |pool, topology| {
            vec![(
                startup::subscription(topology, CONTEXT, "accounts", consumers::ACCOUNTS_KEYS),
                consumers::accounts_events(pool.clone()),
            )]
        })
        .await?;
        let state = web::Data::new(AppState {
            pool: plumbing.pool.clone(),
        });
        let ready: ReadyCheck = {
            let (pool, broker) = (plumbing.pool.clone(), plumbing.broker.clone());
            Arc::new(move || {
                let (pool, broker) = (pool.clone(), broker.clone());
                Box::pin(async move { startup::base_checks(&pool, &broker).await })
            })
        };
        let verifier = web::Data::new(JwtVerifier::new(
            &common.jwt_secret,
            &common.jwt_issuer,
            &common.jwt_audience,
        ));
        let (server, port) = serve(
            ServerConfig {
                host: common.host.clone(),
                port: common.port,
                workers: 2,
                verifier,
                ready,
                openapi: OPENAPI,
            },
            move |cfg| {
                cfg.app_data(state.clone());
                http::routes(cfg);
            },
        )?;
        tracing::info!(port, "payments listening");
        Ok(Self {
            port,
            server,
            tasks: plumbing.tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (in-flight requests finish) from elsewhere.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
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
