//! Secrets never travel on a command line: while the system runs (a context as a child
//! process, the OpenBao of the tests), no process's arguments hold the Vault token or the
//! token signing key, where `ps` would show them to every user of the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shared_kernel::config::JwtKeys;
use tests::TestSystem;

/// The command lines of every process this user can see.
fn command_lines() -> Vec<(String, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            Some((e.file_name().to_string_lossy().into_owned(), line))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_is_on_a_command_line() {
    let sys = TestSystem::start_with(&["payments"]).await;
    let vault_token = sys
        .common
        .vault
        .as_ref()
        .expect("a Vault")
        .token
        .expose()
        .clone();
    let JwtKeys::Secret(signing) = &sys.common.jwt_keys else {
        panic!("the suite signs with a configured key");
    };
    let lines = command_lines();
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.contains("payments") && l.contains("serve")),
        "payments runs as a process of its own: {} processes seen",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.contains("bao") && l.contains("server")),
        "OpenBao runs"
    );
    for (pid, line) in &lines {
        for (what, secret) in [
            ("Vault token", &vault_token),
            ("signing key", signing.expose()),
        ] {
            assert!(
                !line.contains(secret.as_str()),
                "process {pid} has the {what} in its arguments"
            );
        }
    }
    sys.shutdown().await;
}
