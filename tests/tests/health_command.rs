//! `<ctx> health`, the context images' health check: it succeeds when the server on
//! `HTTP__PORT` answers `/health/live`, and fails when nothing does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use tests::TestSystem;

fn health(port: u16) -> (bool, String) {
    let bin = tests::procs::bin_dir().join("payments");
    assert!(
        bin.exists(),
        "build the binaries first (cargo build --workspace --bins)"
    );
    let out = Command::new(bin)
        .arg("health")
        .env_clear()
        .env("PAYMENTS__HTTP__PORT", port.to_string())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_for_the_server_on_its_port_only() {
    let sys = TestSystem::start().await;
    let port: u16 = sys.payments.rsplit(':').next().unwrap().parse().unwrap();
    let (ok, err) = health(port);
    assert!(ok, "health failed with payments up on {port}: {err}");
    sys.shutdown().await;
    let (ok, err) = health(tests::procs::free_port());
    assert!(!ok, "health succeeded with nothing listening");
    assert!(err.contains("refused"), "{err}");
}
