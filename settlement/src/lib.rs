//! settlement: merchant batches of captured payments, fees and net amounts.

pub mod consumers;
pub mod domain;
pub mod events;
pub mod http;
pub mod store;

use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use domain::fees::FeeSchedule;
use shared_kernel::config::CommonSettings;
use shared_kernel::db::PgPool;
use shared_kernel::startup::{self, Application};

pub const CONTEXT: &str = "settlement";
pub const SCHEMA: &str = "settlement";
pub const DEFAULT_PORT: u16 = 8083;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
pub const OPENAPI: &str = include_str!("../../contracts/openapi/settlement.json");

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub fees: FeeSchedule,
}

impl Settings {
    /// Adds `SETTLEMENT__FEES__DEFAULT_BP` (default 150 = 1.50%) and
    /// `SETTLEMENT__FEES__MCC_BP` (`"5541:100,5812:200"`) to the common settings.
    pub fn from_env() -> anyhow::Result<Self> {
        let env = shared_kernel::config::Env::new(CONTEXT);
        let default_bp = env.parse("FEES", "DEFAULT_BP", 150u32)?;
        let fees = FeeSchedule::parse_overrides(
            default_bp,
            &env.get("FEES", "MCC_BP").unwrap_or_default(),
        )
        .map_err(|e| anyhow::anyhow!("invalid SETTLEMENT__FEES__MCC_BP: {e}"))?;
        Ok(Self {
            common: CommonSettings::from_env(CONTEXT, DEFAULT_PORT)?,
            fees,
        })
    }
}

pub struct AppState {
    pub pool: PgPool,
}

/// Runs the migrations of the `settlement` schema.
/// `<ctx> migrate` (see [`startup::migrate_from_env`]).
pub fn migrate() -> anyhow::Result<()> {
    startup::migrate_from_env(CONTEXT, SCHEMA, MIGRATIONS)
}

/// Migrates, connects, starts the relay and the consumers, and binds the port
/// (port 0 picks a free one). Must be called inside a tokio runtime.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let (common, fees) = (settings.common, settings.fees);
    let plumbing = startup::start(
        &common,
        CONTEXT,
        SCHEMA,
        MIGRATIONS,
        shared_kernel::outbox::EventTypes {
            snapshots: &[],
            broadcasts: &[events::BATCH_CLOSED],
        },
        |pool, topology| {
            vec![(
                startup::subscription(topology, CONTEXT, "payments", consumers::PAYMENTS_KEYS),
                consumers::payments_events(pool.clone(), fees),
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
