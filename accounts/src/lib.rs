//! accounts: business accounts, cards, and the double-entry ledger.

pub mod card_keys;
pub mod consumers;
pub mod domain;
pub mod events;
pub mod http;
pub mod store;

use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared_kernel::config::CommonSettings;
use shared_kernel::db::PgPool;
use shared_kernel::server::ReadyCheck;
use shared_kernel::startup::{self, Application};
use shared_kernel::vault::Transit;
use std::sync::Arc;

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
        Ok(Self {
            common: CommonSettings::from_env(CONTEXT, DEFAULT_PORT)?,
        })
    }
}

/// What handlers share.
pub struct AppState {
    pub pool: PgPool,
    pub transit: Option<Transit>,
}

/// Runs the migrations of the `accounts` schema.
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
        shared_kernel::outbox::EventTypes {
            snapshots: events::SNAPSHOTS,
            broadcasts: &[],
        },
        |pool, topology| {
            vec![(
                startup::subscription(topology, CONTEXT, "settlement", consumers::SETTLEMENT_KEYS),
                consumers::settlement_events(pool.clone()),
            )]
        },
    )
    .await?;
    let transit = match &common.vault {
        Some(v) => {
            let t = Transit::new(v)?;
            if let Err(e) = t
                .ensure_keys(&[card_keys::PAN_KEY, card_keys::FINGERPRINT_KEY])
                .await
            {
                tracing::warn!(error = %e, "Vault transit is not ready; card issuance and reveal will fail until it is");
            }
            Some(t)
        }
        None => {
            tracing::warn!("no Vault configured: card issuance and reveal are disabled");
            None
        }
    };
    let state = web::Data::new(AppState {
        pool: plumbing.pool.clone(),
        transit,
    });
    let ready: ReadyCheck = {
        let (pool, broker, state) = (
            plumbing.pool.clone(),
            plumbing.broker.clone(),
            state.clone(),
        );
        Arc::new(move || {
            let (pool, broker, state) = (pool.clone(), broker.clone(), state.clone());
            Box::pin(async move {
                let mut checks = startup::base_checks(&pool, &broker).await;
                let vault_ok = match &state.transit {
                    // Within the probe's budget: a Vault that hangs is a Vault that is down.
                    Some(t) => tokio::time::timeout(
                        std::time::Duration::from_millis(800),
                        t.ready(card_keys::PAN_KEY),
                    )
                    .await
                    .unwrap_or(false),
                    None => false,
                };
                // Only card issuance and reveal need Vault: reads and everything else go on.
                checks.push(shared_kernel::http::Check {
                    name: "vault",
                    up: vault_ok,
                    required: false,
                });
                checks
            })
        })
    };
    startup::application(&common, plumbing, ready, OPENAPI, move |cfg| {
        cfg.app_data(state.clone());
        http::routes(cfg);
    })
}
