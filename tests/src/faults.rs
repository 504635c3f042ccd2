//! Faults injected into the services the suite runs against: the machine's own, or the
//! run's containers (`FLEET_TEST_INFRA=containers`). The fault tests run one at a time, in
//! their own phase of `cargo xtask test`, since they disturb every client.

use std::process::Command;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} cannot run ({e}): the fault tests need the local services")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stopped service, started again by `restore` or, should the test fail first, when
/// dropped: a failing fault test never leaves the machine's broker or database down.
#[must_use = "the service is started again when this is dropped"]
pub struct Stopped {
    start: Option<fn()>,
}

impl Stopped {
    pub fn restore(mut self) {
        if let Some(start) = self.start.take() {
            start();
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // The test is failing already: start the service again without a second panic
        // (which would abort the process and leave it down).
        if let Some(start) = self.start.take() {
            for _ in 0..3 {
                if std::panic::catch_unwind(start).is_ok() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// The variable `cargo xtask test` sets for its fault phase.
pub const FAULT_PHASE: &str = "FLEET_FAULT_TESTS";

/// Refuses to run outside the fault phase: these tests stop the broker and the database
/// every other test shares, so they must run alone (`cargo xtask test --faults`).
pub fn require_fault_phase() {
    assert!(
        std::env::var_os(FAULT_PHASE).is_some(),
        "fault tests stop this machine's RabbitMQ and PostgreSQL: run them alone with \
         `cargo xtask test --faults` (or set {FAULT_PHASE}=1 and nothing else running)"
    );
}

/// The variable naming the container engine's CLI (`podman` or `docker`).
pub const ENGINE_VAR: &str = "FLEET_TEST_ENGINE";

/// The engine's CLI and the id of the run's container `var` names, in container mode.
fn container(var: &str) -> Option<(String, String)> {
    if !crate::infra::in_containers() {
        return None;
    }
    let id = std::env::var(var).unwrap_or_else(|_| panic!("{var} is set in container mode"));
    let cli = std::env::var(ENGINE_VAR).unwrap_or_else(|_| "podman".to_owned());
    Some((cli, id))
}

/// `rabbitmqctl args`, on the machine or in the run's RabbitMQ container.
fn rabbitmqctl(args: &[&str]) {
    match container("FLEET_TEST_RABBITMQ_CONTAINER") {
        Some((cli, id)) => {
            let all = [&["exec", id.as_str(), "rabbitmqctl"][..], args].concat();
            run(&cli, &all);
        }
        None => run("rabbitmqctl", args),
    }
}

/// Stops the RabbitMQ application (the node stays up, every connection drops).
pub fn broker_stop() -> Stopped {
    rabbitmqctl(&["-q", "stop_app"]);
    Stopped {
        start: Some(broker_start),
    }
}

/// Starts the RabbitMQ application again and waits until it serves.
pub fn broker_start() {
    rabbitmqctl(&["-q", "start_app"]);
    rabbitmqctl(&["-q", "await_startup"]);
}

/// The local PostgreSQL cluster's version directory (e.g. "15").
fn cluster() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a local PostgreSQL cluster under /etc/postgresql")
}

/// Stops PostgreSQL (fast shutdown: sessions are cut).
pub fn postgres_stop() -> Stopped {
    if let Some((cli, id)) = container("FLEET_TEST_POSTGRES_CONTAINER") {
        // SIGINT is PostgreSQL's fast shutdown; the container ends with the server.
        run(&cli, &["kill", "--signal", "SIGINT", &id]);
        run(&cli, &["wait", &id]);
        return Stopped {
            start: Some(postgres_start),
        };
    }
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            &cluster(),
            "main",
            "stop",
            "-m",
            "fast",
        ],
    );
    Stopped {
        start: Some(postgres_start),
    }
}

/// Starts PostgreSQL and waits until it accepts connections.
pub fn postgres_start() {
    if let Some((cli, id)) = container("FLEET_TEST_POSTGRES_CONTAINER") {
        // Started again, the container keeps its fixed host port.
        run(&cli, &["start", &id]);
        await_postgres();
        return;
    }
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &cluster(), "main", "start"],
    );
    run("pg_isready", &["-h", "127.0.0.1", "-p", "5432", "-t", "60"]);
}

/// Waits (up to a minute) until the suite's PostgreSQL accepts a connection.
fn await_postgres() {
    use diesel::Connection;
    let url = std::env::var("FLEET_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let started = std::time::Instant::now();
    while diesel::PgConnection::establish(&url).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "PostgreSQL did not accept connections within a minute of its start"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
