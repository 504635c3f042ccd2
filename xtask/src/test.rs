//! `cargo xtask test`: every test, against real PostgreSQL, RabbitMQ and OpenBao: fresh
//! containers from the local images when a container engine is available, else the
//! machine's own services; `--infra containers|local` forces one (ADRs 0021 and 0022).

use crate::dev;
use crate::engine::Engine;
use crate::infra::Services;
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Infra {
    Containers,
    Local,
}

pub fn run(infra: Option<Infra>, extra: &[String]) -> anyhow::Result<()> {
    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    anyhow::ensure!(
        nextest,
        "cargo-nextest is needed (cargo install cargo-nextest --locked)"
    );
    let engine = match infra {
        Some(Infra::Local) => None,
        Some(Infra::Containers) => Some(Engine::require()?),
        None => Engine::start()?,
    };
    // The fault tests run the contexts' binaries as child processes; `test_infra` starts
    // the containers.
    dev::cargo(&["build", "--workspace", "--bins", "--quiet"])?;
    let Some(engine) = engine else {
        eprintln!("--- infrastructure: this machine's PostgreSQL and RabbitMQ");
        // The outbox tests run both relay modes; cdc needs logical decoding.
        crate::pg::ensure_logical_wal()?;
        clean_leftovers();
        return phases(&Services::local()?, extra);
    };
    eprintln!("--- infrastructure: containers ({})", engine.cli);
    // The deployment test runs the context images: they must be this build's.
    crate::images::build_all(&engine, false)?;
    let run = dev::random_hex(6)?;
    let mut reaper = engine.reaper(&run)?;
    // The containers are removed when the services are dropped, before the reaper checks.
    let result = Services::containers(&engine, &run).and_then(|services| phases(&services, extra));
    let reaped = reaper.reap();
    result?;
    reaped
}

/// The nextest `-E` filters among `extra`, and the other arguments.
fn split_filters(extra: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut filters, mut rest) = (Vec::new(), Vec::new());
    let mut args = extra.iter();
    while let Some(a) = args.next() {
        if a == "-E" || a == "--filterset" || a == "--filter-expr" {
            filters.extend(args.next().cloned());
        } else if let Some(f) = a
            .strip_prefix("--filterset=")
            .or_else(|| a.strip_prefix("--filter-expr="))
            .or_else(|| a.strip_prefix("-E="))
        {
            filters.push(f.to_owned());
        } else {
            rest.push(a.clone());
        }
    }
    (filters, rest)
}

/// `base`, narrowed to what the caller's filters select (nextest would run the union).
fn filter(base: &str, user: &[String]) -> String {
    if user.is_empty() {
        base.to_owned()
    } else {
        let any: Vec<String> = user.iter().map(|f| format!("({f})")).collect();
        format!("({base}) & ({})", any.join(" | "))
    }
}

fn phases(services: &Services, extra: &[String]) -> anyhow::Result<()> {
    // Fuzz each context from its contract first, so the test runner's summary closes the output.
    if std::env::var_os("FLEET_SKIP_FUZZ").is_none() && extra.is_empty() {
        crate::fuzz::run(services)?;
    }
    let (faults_only, skip_faults) = (
        extra.iter().any(|a| a == "--faults"),
        extra.iter().any(|a| a == "--no-faults"),
    );
    let extra: Vec<String> = extra
        .iter()
        .filter(|a| *a != "--faults" && *a != "--no-faults")
        .cloned()
        .collect();
    let (user_filters, rest) = split_filters(&extra);
    // (what, nextest arguments, outbox relay mode)
    let mut phases: Vec<(&str, Vec<String>, &str)> = Vec::new();
    let chosen = std::env::var("FLEET__OUTBOX__MODE").unwrap_or_else(|_| "polling".to_owned());
    let mode = chosen.as_str();
    let with = |args: &[&str], base: &str| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        v.push("-E".to_owned());
        v.push(filter(base, &user_filters));
        v.extend(rest.iter().cloned());
        v
    };
    // The deployment test runs the context images, so it needs the engine.
    let suite = if services.in_containers() {
        "not binary(faults)"
    } else {
        "not binary(faults) & not binary(deployment)"
    };
    if !faults_only {
        let args = ["run", "--workspace", "--no-fail-fast"];
        phases.push(("the suite", with(&args, suite), mode));
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
        ];
        phases.push(("the fault tests", with(&one, "binary(faults)"), mode));
        if mode != "cdc" {
            phases.push((
                "the fault and end-to-end tests with the cdc relay",
                with(&one, "binary(faults) | binary(end_to_end)"),
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
            .envs(services.env.iter().map(|(k, v)| (k, v)))
            .env("FLEET__OUTBOX__MODE", mode)
            .current_dir(dev::root());
        if what != "the suite" {
            cmd.env("FLEET_FAULT_TESTS", "1");
        }
        failed |= !cmd.status()?.success();
        if what != "the suite" && !services.in_containers() {
            crate::pg::ensure_services_up();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_filters_narrow_each_phase() {
        let extra: Vec<String> = [
            "-E",
            "binary(end_to_end)",
            "--no-capture",
            "--filterset=test(x)",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (filters, rest) = split_filters(&extra);
        assert_eq!(filters, ["binary(end_to_end)", "test(x)"]);
        assert_eq!(rest, ["--no-capture"]);
        assert_eq!(
            filter("not binary(faults)", &filters),
            "(not binary(faults)) & ((binary(end_to_end)) | (test(x)))"
        );
        assert_eq!(filter("binary(faults)", &[]), "binary(faults)");
    }
}
