//! `cargo xtask db migrate|reset` on the development database.

use crate::dev;
use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use std::process::Command;

pub fn admin(sql: &str) -> anyhow::Result<()> {
    admin_at(&dev::admin_url(), sql)
}

/// Runs `sql` as the superuser of `admin_url`.
pub fn admin_at(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn =
        diesel::PgConnection::establish(admin_url).context("connecting to PostgreSQL as admin")?;
    conn.batch_execute(sql)
        .with_context(|| format!("running: {sql}"))
}

/// Creates the development database when it does not exist.
pub fn ensure_database() -> anyhow::Result<()> {
    let mut conn = diesel::PgConnection::establish(&dev::admin_url())
        .context("connecting to PostgreSQL as admin")?;
    let exists = conn.batch_execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{}') THEN RAISE EXCEPTION 'missing'; END IF; END $$",
        dev::DEV_DATABASE
    ));
    if exists.is_err() {
        admin(&format!("CREATE DATABASE {}", dev::DEV_DATABASE))?;
    }
    Ok(())
}

/// Gives each context its owner and runtime roles in the development database (ADR 0017),
/// then runs each context's own `migrate` command as its owner, as a deployment's
/// migration job would.
pub fn migrate() -> anyhow::Result<()> {
    ensure_database()?;
    let mut conn = diesel::PgConnection::establish(&dev::dev_database_url())
        .context("connecting to the development database as admin")?;
    let cdc = std::env::var("FLEET__OUTBOX__MODE").is_ok_and(|m| m == "cdc");
    for ctx in dev::CONTEXTS {
        shared_kernel::roles::provision(&mut conn, ctx, cdc)?;
    }
    let bin = dev::build_services()?;
    for ctx in dev::CONTEXTS {
        let env = dev::database_env(ctx)?;
        let status = Command::new(bin.join(ctx))
            .arg("migrate")
            .envs(env)
            .status()
            .with_context(|| format!("running {ctx} migrate"))?;
        anyhow::ensure!(status.success(), "{ctx} migrations failed");
        println!("migrated schema {ctx}");
    }
    Ok(())
}

pub fn reset() -> anyhow::Result<()> {
    admin(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        dev::DEV_DATABASE
    ))?;
    migrate()
}
