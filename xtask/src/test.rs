//! `cargo xtask test`: every test, against real PostgreSQL, RabbitMQ and OpenBao.

use crate::dev;
use std::process::Command;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
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
    let mut args: Vec<String> = if nextest {
        ["nextest", "run", "--workspace", "--no-fail-fast"]
            .map(String::from)
            .to_vec()
    } else {
        ["test", "--workspace", "--no-fail-fast"]
            .map(String::from)
            .to_vec()
    };
    args.extend(extra.iter().cloned());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(&args).current_dir(dev::root());
    if let Some(v) = &vault {
        cmd.env("VAULT_ADDR", &v.addr).env("VAULT_TOKEN", &v.token);
    }
    let status = cmd.status()?;
    drop(vault);
    anyhow::ensure!(status.success(), "tests failed");
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
