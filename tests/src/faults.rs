//! Faults injected into the machine's own services (the fault tests run one at a time,
//! in their own phase of `cargo xtask test`, since they disturb every client).

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

/// Stops the RabbitMQ application (the node stays up, every connection drops).
pub fn broker_stop() -> Stopped {
    run("rabbitmqctl", &["-q", "stop_app"]);
    Stopped {
        start: Some(broker_start),
    }
}

/// Starts the RabbitMQ application again and waits until it serves.
pub fn broker_start() {
    run("rabbitmqctl", &["-q", "start_app"]);
    run("rabbitmqctl", &["-q", "await_startup"]);
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

/// Stops the local PostgreSQL cluster (fast shutdown: sessions are cut).
pub fn postgres_stop() -> Stopped {
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

/// Starts the local PostgreSQL cluster and waits until it accepts connections.
pub fn postgres_start() {
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &cluster(), "main", "start"],
    );
    run("pg_isready", &["-h", "127.0.0.1", "-p", "5432", "-t", "60"]);
}
