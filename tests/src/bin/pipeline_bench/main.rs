//! The event pipeline benchmark that `cargo xtask bench` runs (in release mode): the
//! outbox relay in polling and in cdc mode, side by side.
//!
//! 1. End-to-end latency under a steady load of authorizations and captures, with a
//!    settlement run every 250 ms: capture committed → posted in the ledger, and capture
//!    committed → item in settlement, computed in SQL from the database's timestamps.
//!    The run ends with the full reconciliation, so the numbers come from a correct run.
//! 2. Relay throughput: one relay alone on a fresh database publishes N events inserted
//!    in transactions of 1,000 rows, with batches of 100 and of 500.
//!
//! Prints a markdown table on stdout (progress goes to stderr). Nothing is asserted about
//! timings; a measurement that fails is reported in the table and makes the exit status 1.
//! Talks only to PostgreSQL, RabbitMQ and Vault on 127.0.0.1, and removes its databases,
//! replication slots, queues and exchanges.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod latency;
mod report;
mod throughput;

use diesel::sql_types::{Array, BigInt, Double, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::{Connection, PgConnection, RunQueryDsl};
use futures_util::FutureExt;
use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use latency::*;
use report::*;
use serde_json::json;
use shared_kernel::amqp::{declare_exchange, Broker, Topology};
use shared_kernel::event::CloudEvent;
use shared_kernel::outbox::{slot_name, spawn_relay, RelayConfig, RelayMode};
use shared_kernel::secrets::Secret;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::infra::{Infra, TestDatabase};
use tests::TestSystem;
use throughput::*;

pub(crate) const MODES: [RelayMode; 2] = [RelayMode::Polling, RelayMode::Cdc];
pub(crate) const BATCH_SIZES: [i32; 2] = [100, 500];
pub(crate) const LOAD_WORKERS: usize = 4;
pub(crate) const SETTLEMENT_EVERY: Duration = Duration::from_millis(250);
/// Rows per inserting transaction in the throughput measurement.
pub(crate) const INSERT_TX_ROWS: usize = 1_000;
pub(crate) const CATCH_UP: Duration = Duration::from_secs(180);

pub(crate) struct Args {
    pub(crate) seconds: u64,
    pub(crate) events: usize,
}

pub(crate) fn args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 20,
        events: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("{flag}: not a positive number: {value}");
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse().map_err(bad)?,
            "--events" => a.events = value.parse().map_err(bad)?,
            other => {
                return Err(format!(
                    "unknown argument {other}; use --seconds N --events N"
                ))
            }
        }
    }
    if a.seconds == 0 || a.events == 0 {
        return Err("--seconds and --events must be at least 1".to_owned());
    }
    Ok(a)
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pipeline_bench: {e}");
            std::process::exit(2);
        }
    };
    // Warnings only, on stderr: the test harness's in-memory debug log would grow for
    // the whole run and cost CPU in the middle of the measurement.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,lapin=error".to_owned()),
        ))
        .with_writer(std::io::stderr)
        .try_init();
    if let Err(e) = local_only() {
        eprintln!("pipeline_bench: {e}");
        std::process::exit(2);
    }

    let mut e2e = Vec::new();
    for mode in MODES {
        eprintln!(
            "[bench] end-to-end, relay mode {mode}, load for {} s ...",
            args.seconds
        );
        e2e.push(end_to_end(mode, args.seconds).await);
    }
    let mut relay = Vec::new();
    for batch in BATCH_SIZES {
        for mode in MODES {
            eprintln!(
                "[bench] relay throughput, mode {mode}, batch {batch}, {} events ...",
                args.events
            );
            relay.push(throughput(mode, batch, args.events).await);
        }
    }

    print_report(&args, &e2e, &relay);
    let failed = e2e.iter().any(|r| r.is_err()) || relay.iter().any(|r| r.is_err());
    if failed {
        std::process::exit(1);
    }
}

/// Sets the harness's PostgreSQL and RabbitMQ to the local defaults when not given (so
/// it never falls back to containers), and refuses anything not on 127.0.0.1.
pub(crate) fn local_only() -> Result<(), String> {
    let defaults = [
        (
            "FLEET_TEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        (
            "FLEET_TEST_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
    ];
    for (var, default) in defaults {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, default);
        }
    }
    for var in [
        "FLEET_TEST_DATABASE_URL",
        "FLEET_TEST_AMQP_URL",
        "VAULT_ADDR",
    ] {
        let Ok(url) = std::env::var(var) else {
            continue;
        };
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&url)
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .rsplit('@')
            .next()
            .unwrap_or("")
            .rsplit_once(':')
            .map(|(h, _)| h.to_owned())
            .unwrap_or_default();
        if host != "127.0.0.1" && host != "localhost" {
            return Err(format!(
                "{var} is not on 127.0.0.1; the benchmark runs locally only"
            ));
        }
    }
    Ok(())
}

pub(crate) fn set_mode(mode: RelayMode) {
    std::env::set_var("FLEET__OUTBOX__MODE", mode.to_string());
}

/// Percentiles in milliseconds, from SQL.
#[derive(diesel::QueryableByName, Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub(crate) p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub(crate) p99: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub(crate) max: Option<f64>,
}

/// `sql` yields one column `ms`; returns its count, p50, p99 and max.
pub(crate) async fn stats(url: &str, sql: &str) -> Stats {
    let query = format!(
        "WITH d AS ({sql}) SELECT count(*) AS n, \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, \
           percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, \
           max(ms) AS max FROM d"
    );
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        diesel::sql_query(query)
            .get_result::<Stats>(&mut conn)
            .unwrap()
    })
    .await
    .unwrap()
}

/// The panic message of a failed measurement.
pub(crate) fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}
