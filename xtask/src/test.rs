//! `cargo xtask test`: every test, against real PostgreSQL, RabbitMQ and OpenBao.

use crate::dev;
use std::process::Command;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    // The outbox tests run both relay modes; cdc needs logical decoding.
    crate::pg::ensure_logical_wal()?;
    clean_leftovers();
    let vault = match (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
        (Ok(_), Ok(_)) => None,
        _ => Some(dev::DevVault::start(dev::free_port()?)?),
    };
    // Fuzz each context from its contract first, so the test runner's summary closes the output.
    let (addr, token) = match &vault {
        Some(v) => (v.addr.clone(), v.token.clone()),
        None => (std::env::var("VAULT_ADDR")?, std::env::var("VAULT_TOKEN")?),
    };
    if std::env::var_os("FLEET_SKIP_FUZZ").is_none() && extra.is_empty() {
        crate::fuzz::run(&addr, &token)?;
    }
    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    anyhow::ensure!(
        nextest,
        "cargo-nextest is needed (cargo install cargo-nextest --locked)"
    );
    // The fault tests run the contexts' binaries as child processes.
    dev::cargo(&["build", "--workspace", "--bins", "--quiet"])?;
    let (faults_only, skip_faults) = (
        extra.iter().any(|a| a == "--faults"),
        extra.iter().any(|a| a == "--no-faults"),
    );
    let extra: Vec<String> = extra
        .iter()
        .filter(|a| *a != "--faults" && *a != "--no-faults")
        .cloned()
        .collect();
    // (what, nextest arguments, outbox relay mode)
    let mut phases: Vec<(&str, Vec<String>, &str)> = Vec::new();
    let chosen = std::env::var("FLEET__OUTBOX__MODE").unwrap_or_else(|_| "polling".to_owned());
    let mode = chosen.as_str();
    let with_extra = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.extend(extra.iter().cloned());
        v
    };
    if !faults_only {
        let args = [
            "run",
            "--workspace",
            "--no-fail-fast",
            "-E",
            "not binary(faults)",
        ];
        phases.push(("the suite", with_extra(&args), mode));
    }
    if !skip_faults && (faults_only || extra.is_empty()) {
        // They stop the broker and restart the database: one at a time, alone; and once
        // more, with the end-to-end test, with the cdc relay.
        // --workspace, as above, so the features (and the build) are the same.
        let one = [
            "run",
            "--workspace",
            "--no-fail-fast",
            "--test-threads",
            "1",
            "-E",
        ];
        let faults = [&one[..], &["binary(faults)"]].concat();
        phases.push(("the fault tests", with_extra(&faults), mode));
        let cdc = [&one[..], &["binary(faults) | binary(end_to_end)"]].concat();
        if mode != "cdc" {
            phases.push((
                "the fault and end-to-end tests with the cdc relay",
                with_extra(&cdc),
                "cdc",
            ));
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut failed = false;
    for (what, args, mode) in phases {
        eprintln!("--- {what}");
        let mut cmd = Command::new(&cargo);
        cmd.arg("nextest")
            .args(&args)
            .env("FLEET__OUTBOX__MODE", mode)
            .current_dir(dev::root());
        if what != "the suite" {
            cmd.env("FLEET_FAULT_TESTS", "1");
        }
        if let Some(v) = &vault {
            cmd.env("VAULT_ADDR", &v.addr).env("VAULT_TOKEN", &v.token);
        }
        failed |= !cmd.status()?.success();
        if what != "the suite" {
            crate::pg::ensure_services_up();
        }
    }
    drop(vault);
    anyhow::ensure!(!failed, "tests failed");
    Ok(())
}

/// Best effort: databases and queues left by test runs that were killed.
fn clean_leftovers() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    if let Ok(mut conn) = diesel::PgConnection::establish(&dev::admin_url()) {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        if let Err(e) = crate::pg::drop_test_database_slots() {
            eprintln!("could not drop the replication slots of old test databases: {e:#}");
        }
        // DROP DATABASE cannot run inside a function or transaction: one statement each.
        let names: Vec<Name> =
            diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'fleet\\_t\\_%'")
                .load(&mut conn)
                .unwrap_or_default();
        for n in names {
            let plain = n
                .datname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if plain {
                let _ = conn.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    n.datname
                ));
            }
        }
    }
    let listed = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name"])
        .output();
    if let Ok(out) = listed {
        for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            let is_test = name.len() > 34
                && name.starts_with('t')
                && name[1..33].chars().all(|c| c.is_ascii_hexdigit())
                && &name[33..34] == ".";
            if is_test {
                let _ = Command::new("rabbitmqctl")
                    .args(["delete_queue", "-q", name])
                    .output();
            }
        }
    }
}
