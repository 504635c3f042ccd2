//! Contexts as child processes of the test, for faults an in-process service cannot
//! suffer: SIGKILL in the middle of its work, a crash between two steps, a restart.
//! Each is its release binary from the build (`cargo build --bins`), configured only
//! through its environment, like a deployment.

use shared_kernel::config::{CommonSettings, JwtKeys};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace's binaries (next to this test's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("deps/");
    if deps.ends_with("deps") {
        deps.parent().expect("the profile directory").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The environment that configures `context` like `common` does in-process.
pub fn env_of(context: &str, common: &CommonSettings, port: u16) -> Vec<(String, String)> {
    let ctx = context.to_uppercase();
    let mut env = vec![
        (format!("{ctx}__HTTP__HOST"), common.host.clone()),
        (format!("{ctx}__HTTP__PORT"), port.to_string()),
        (
            format!("{ctx}__DATABASE__URL"),
            common.database_url.expose().clone(),
        ),
        (
            format!("{ctx}__DATABASE__POOL_SIZE"),
            common.database_pool_size.to_string(),
        ),
        (
            format!("{ctx}__AMQP__URL"),
            common.amqp_url.expose().clone(),
        ),
        (format!("{ctx}__AMQP__PREFIX"), common.amqp_prefix.clone()),
        (format!("{ctx}__AUTH__ISSUER"), common.jwt_issuer.clone()),
        (
            format!("{ctx}__AUTH__AUDIENCE"),
            common.jwt_audience.clone(),
        ),
        ("RUST_LOG".to_owned(), "info".to_owned()),
        (
            format!("{ctx}__OUTBOX__MODE"),
            common.outbox.mode.to_string(),
        ),
        (
            format!("{ctx}__OUTBOX__LEASE_SECS"),
            common.outbox.lease.as_secs().to_string(),
        ),
    ];
    match &common.jwt_keys {
        JwtKeys::Secret(secret) => {
            env.push((format!("{ctx}__AUTH__JWT_SECRET"), secret.expose().clone()));
        }
        JwtKeys::Vault(keys) => {
            env.push((format!("{ctx}__AUTH__VAULT_MOUNT"), keys.mount.clone()));
            env.push((format!("{ctx}__AUTH__VAULT_PATH"), keys.path.clone()));
            env.push((
                format!("{ctx}__AUTH__ACCEPTED_KEYS"),
                keys.accepted.to_string(),
            ));
            env.push((
                format!("{ctx}__AUTH__KEYS_REFRESH_SECS"),
                keys.refresh.as_secs().to_string(),
            ));
        }
    }
    if let Some(url) = &common.migration_url {
        env.push((
            format!("{ctx}__DATABASE__MIGRATION_URL"),
            url.expose().clone(),
        ));
    }
    if let Some(d) = &common.database_vault {
        env.push((format!("{ctx}__DATABASE__VAULT_ROLE"), d.role.clone()));
        env.push((format!("{ctx}__DATABASE__VAULT_MOUNT"), d.mount.clone()));
    }
    if let Some(v) = &common.vault {
        env.push((format!("{ctx}__VAULT__ADDR"), v.addr.clone()));
        env.push((format!("{ctx}__VAULT__TOKEN"), v.token.expose().clone()));
        env.push((
            format!("{ctx}__VAULT__TRANSIT_MOUNT"),
            v.transit_mount.clone(),
        ));
    }
    env
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One context running as a child process; killed when dropped.
pub struct ContextProcess {
    pub context: String,
    pub port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl ContextProcess {
    /// Starts `context` with `env` (plus `extra`, e.g. a fault to inject).
    pub fn spawn(context: &str, env: Vec<(String, String)>, port: u16) -> Self {
        let log = std::env::temp_dir().join(format!("fleet-{context}-{port}.log"));
        // A file left by an earlier test on the same port is not this process's log.
        let _ = std::fs::remove_file(&log);
        let mut p = Self {
            context: context.to_owned(),
            port,
            env,
            child: None,
            log,
        };
        p.start(&[]);
        p
    }

    /// (Re)starts the process on the same port, with `extra` variables this time only.
    pub fn start(&mut self, extra: &[(&str, &str)]) {
        let bin = bin_dir().join(&self.context);
        assert!(
            bin.exists(),
            "{} is missing: build the binaries first (cargo build --bins)",
            bin.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("a log file");
        let child = Command::new(bin)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("the context starts");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the process has written to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no clean-up, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (at most a minute) for the process to exit by itself.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Whether the process has exited by itself (e.g. an injected crash).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Waits until the process answers on its liveness endpoint.
    pub async fn wait_live(&self, http: &reqwest::Client) {
        let url = format!("{}/health/live", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not come up; see {}",
                self.context,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ContextProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
