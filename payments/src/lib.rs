//! payments: authorizations, holds and captures, decided in real time from local
//! projections of accounts' events.

pub mod consumers;
pub mod domain;
pub mod events;
pub mod http;
pub mod store;

use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared_kernel::config::CommonSettings;
use shared_kernel::db::PgPool;
use shared_kernel::startup::{self, Application};

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

/// Runs the migrations of the `payments` schema.
/// `<ctx> migrate` (see [`startup::migrate_from_env`]).
pub fn migrate() -> anyhow::Result<()> {
    startup::migrate_from_env(CONTEXT, SCHEMA, MIGRATIONS)
}

/// Migrates, connects, starts the relay and the consumers, and binds the port
/// (port 0 picks a free one). Must be called inside a tokio runtime.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let common = settings.common;
    let plumbing = startup::start(
        &common,
        CONTEXT,
        SCHEMA,
        MIGRATIONS,
        shared_kernel::outbox::EventTypes::default(),
        |pool, topology| {
            vec![(
                startup::subscription(topology, CONTEXT, "accounts", consumers::ACCOUNTS_KEYS),
                consumers::accounts_events(pool.clone()),
            )]
        },
    )
    .await?;
    let state = web::Data::new(AppState {
        pool: plumbing.pool.clone(),
    });
    let ready = startup::base_ready(&plumbing);
    startup::application(&common, plumbing, ready, OPENAPI, move |cfg| {
        cfg.app_data(state.clone());
        http::routes(cfg);
    })
}
