//! The local PostgreSQL's needs beyond a plain install: `wal_level = logical` for the
//! outbox relay's cdc mode, and no logical slots left behind by killed test runs.

use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

fn setting(conn: &mut PgConnection, name: &str) -> anyhow::Result<String> {
    let s: Setting = diesel::sql_query("SELECT current_setting($1) AS v")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .with_context(|| format!("reading {name}"))?;
    Ok(s.v)
}

fn connect() -> anyhow::Result<PgConnection> {
    PgConnection::establish(&crate::dev::admin_url()).context("connecting to PostgreSQL as admin")
}

/// Makes sure the local PostgreSQL runs with `wal_level = logical`: when it does not,
/// sets it with ALTER SYSTEM and restarts the cluster with `pg_ctlcluster`, then waits
/// until it answers with the new setting. Only for a cluster on this machine
/// (127.0.0.1/localhost:5432); any other is reported, not changed.
pub fn ensure_logical_wal() -> anyhow::Result<()> {
    let mut conn = connect()?;
    let level = setting(&mut conn, "wal_level")?;
    if level == "logical" {
        return Ok(());
    }
    let url = crate::dev::admin_url();
    let local = ["@127.0.0.1:5432/", "@localhost:5432/"]
        .iter()
        .any(|h| url.contains(h));
    if !local {
        bail!(
            "PostgreSQL has wal_level = {level}; the outbox cdc mode needs logical: \
             run ALTER SYSTEM SET wal_level = logical on it and restart it"
        );
    }
    // Debian names the cluster "<version>/<name>" (cluster_name); else version + main.
    let cluster = setting(&mut conn, "cluster_name").unwrap_or_default();
    let (version, name) = match cluster.split_once('/') {
        Some((v, n)) if !v.is_empty() && !n.is_empty() => (v.to_owned(), n.to_owned()),
        _ => {
            let num: u32 = setting(&mut conn, "server_version_num")?.parse()?;
            ((num / 10_000).to_string(), "main".to_owned())
        }
    };
    conn.batch_execute("ALTER SYSTEM SET wal_level = logical")
        .context("ALTER SYSTEM SET wal_level = logical")?;
    drop(conn);
    println!(
        "PostgreSQL had wal_level = {level}; restarting cluster {version}/{name} with logical"
    );
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, &name, "restart"])
        .status()
        .context("running pg_ctlcluster")?;
    anyhow::ensure!(
        status.success(),
        "pg_ctlcluster {version} {name} restart failed"
    );
    let started = Instant::now();
    loop {
        let level = connect().and_then(|mut c| setting(&mut c, "wal_level"));
        match level {
            Ok(l) if l == "logical" => return Ok(()),
            Ok(l) => bail!("PostgreSQL restarted but wal_level is still {l}"),
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                return Err(e.context("PostgreSQL did not come back within 60 s"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Drops the outbox slots (`outbox_*`) of the test databases (`fleet_t_*`), terminating
/// sessions that still use them. Call before dropping leftover test databases: a
/// database with a logical slot cannot be dropped, and a slot keeps WAL forever.
/// Returns how many were dropped.
pub fn drop_test_database_slots() -> anyhow::Result<usize> {
    #[derive(diesel::QueryableByName)]
    struct Db {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let mut conn = connect()?;
    let dbs: Vec<Db> = diesel::sql_query(
        "SELECT DISTINCT database::text AS name FROM pg_replication_slots \
         WHERE slot_type = 'logical' AND slot_name LIKE 'outbox\\_%' \
           AND database LIKE 'fleet\\_t\\_%'",
    )
    .load(&mut conn)
    .context("listing the test databases' slots")?;
    let mut dropped = 0;
    for db in dbs {
        dropped += shared_kernel::outbox::drop_slots_for_database(&mut conn, &db.name)
            .with_context(|| format!("dropping the outbox slots of {}", db.name))?;
    }
    Ok(dropped)
}

/// After the fault tests: whatever happened to them, the machine's PostgreSQL and
/// RabbitMQ run again (best effort, for local services only).
pub fn ensure_services_up() {
    if !crate::dev::answers("127.0.0.1:5432") {
        eprintln!("PostgreSQL is down after the fault tests: starting it");
        if let Some(version) = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
        {
            let version = version.file_name().to_string_lossy().into_owned();
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, "main", "start"])
                .status();
        }
    }
    if !crate::dev::answers("127.0.0.1:5672") {
        eprintln!("RabbitMQ is down after the fault tests: starting it");
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
    }
}
