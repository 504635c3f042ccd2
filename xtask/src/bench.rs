//! `cargo xtask bench`: the event pipeline benchmark (end-to-end latency under load, and
//! the outbox relay's throughput), in polling and in cdc mode side by side. Builds and
//! runs `tests/src/bin/pipeline_bench.rs` in release mode, with a development OpenBao
//! when no Vault is configured. Not part of `cargo xtask test`; it asserts no timings.

use crate::dev;
use anyhow::{bail, Context};
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::process::Command;

pub fn run(seconds: u64, events: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        seconds > 0 && events > 0,
        "--seconds and --events must be at least 1"
    );
    require_logical_wal()?;
    let vault = match (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
        (Ok(_), Ok(_)) => None,
        _ => Some(dev::DevVault::start(dev::free_port()?)?),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "tests",
        "--bin",
        "pipeline_bench",
        "--",
    ])
    .args(["--seconds", &seconds.to_string()])
    .args(["--events", &events.to_string()])
    .current_dir(dev::root())
    // The harness finds the local services itself; these pin it to this machine's.
    .env("FLEET_TEST_DATABASE_URL", dev::admin_url());
    if let Some(v) = &vault {
        cmd.env("VAULT_ADDR", &v.addr).env("VAULT_TOKEN", &v.token);
    }
    let status = cmd.status().context("running the pipeline benchmark")?;
    drop(vault);
    if !status.success() {
        bail!("the pipeline benchmark failed ({status})");
    }
    Ok(())
}

/// The cdc half needs `wal_level = logical`. Unlike `cargo xtask test`, a benchmark does
/// not restart PostgreSQL to get it: it says so and stops.
fn require_logical_wal() -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let mut conn =
        PgConnection::establish(&dev::admin_url()).context("connecting to PostgreSQL as admin")?;
    let level: Setting = diesel::sql_query("SELECT current_setting('wal_level') AS v")
        .get_result(&mut conn)
        .context("reading wal_level")?;
    if level.v != "logical" {
        bail!(
            "PostgreSQL has wal_level = {}; the cdc relay needs logical \
             (`cargo xtask test` sets it, or ALTER SYSTEM SET wal_level = logical and restart)",
            level.v
        );
    }
    Ok(())
}
