//! What `cargo xtask test` runs the tests against (ADR 0021): fresh containers from the
//! local images, or the machine's own services. Either way the tests learn where things
//! are from the environment this hands to every test process.

use crate::dev;
use crate::engine::Engine;
use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the containers may take to start (images already built).
const STARTUP: Duration = Duration::from_secs(240);
/// How long `test_infra` may take to remove them once released.
const REMOVAL: Duration = Duration::from_secs(90);

/// Where the tests find PostgreSQL, RabbitMQ and OpenBao.
pub struct Services {
    pub admin_url: String,
    pub amqp_url: String,
    pub vault_addr: String,
    pub vault_token: String,
    /// Variables every test process gets.
    pub env: Vec<(String, String)>,
    /// Keeps the services alive: the container process or the development OpenBao.
    keep: Keep,
}

/// What is held only to be dropped at the end of the run.
enum Keep {
    Containers(#[allow(dead_code)] InfraProcess),
    Local(#[allow(dead_code)] Option<dev::DevVault>),
}

impl Services {
    /// The machine's own PostgreSQL and RabbitMQ, and `VAULT_ADDR`/`VAULT_TOKEN` or an
    /// OpenBao development server of this run.
    pub fn local() -> anyhow::Result<Self> {
        let vault = match (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
            (Ok(_), Ok(_)) => None,
            _ => Some(dev::DevVault::start(dev::free_port()?)?),
        };
        let (vault_addr, vault_token) = match &vault {
            Some(v) => (v.addr.clone(), v.token.clone()),
            None => (std::env::var("VAULT_ADDR")?, std::env::var("VAULT_TOKEN")?),
        };
        let amqp_url = dev::LOCAL_AMQP_URL.to_owned();
        Ok(Self {
            admin_url: dev::admin_url(),
            env: vec![
                ("FLEET_TEST_INFRA".to_owned(), "local".to_owned()),
                ("VAULT_ADDR".to_owned(), vault_addr.clone()),
                ("VAULT_TOKEN".to_owned(), vault_token.clone()),
            ],
            amqp_url,
            vault_addr,
            vault_token,
            keep: Keep::Local(vault),
        })
    }

    /// Fresh containers for this run, started by the `test_infra` binary (built with the
    /// workspace's binaries) through testcontainers on `engine`.
    pub fn containers(engine: &Engine, run: &str) -> anyhow::Result<Self> {
        let bin = dev::target_dir().join("debug/test_infra");
        let mut child = Command::new(&bin)
            .env("DOCKER_HOST", &engine.docker_host)
            .env("TESTCONTAINERS_RYUK_DISABLED", "true")
            .env("FLEET_TEST_RUN_ID", run)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("test_infra's output")?;
        let process = InfraProcess { child: Some(child) };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut env = vec![
            ("FLEET_TEST_INFRA".to_owned(), "containers".to_owned()),
            ("FLEET_TEST_ENGINE".to_owned(), engine.cli.to_owned()),
            ("FLEET_TEST_RUN_ID".to_owned(), run.to_owned()),
            ("DOCKER_HOST".to_owned(), engine.docker_host.clone()),
            ("TESTCONTAINERS_RYUK_DISABLED".to_owned(), "true".to_owned()),
        ];
        loop {
            let left = STARTUP.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(line) if line == "ready" => break,
                Ok(line) => match line.split_once('=') {
                    Some((k, v)) => env.push((k.to_owned(), v.to_owned())),
                    None => bail!("test_infra printed {line:?}"),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the test containers were not ready within {STARTUP:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("test_infra ended before its containers were ready")
                }
            }
        }
        let get = |name: &str| -> anyhow::Result<String> {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .with_context(|| format!("test_infra did not say {name}"))
        };
        Ok(Self {
            admin_url: get("FLEET_TEST_DATABASE_URL")?,
            amqp_url: get("FLEET_TEST_AMQP_URL")?,
            vault_addr: get("VAULT_ADDR")?,
            vault_token: get("VAULT_TOKEN")?,
            env,
            keep: Keep::Containers(process),
        })
    }

    pub fn in_containers(&self) -> bool {
        matches!(self.keep, Keep::Containers(_))
    }
}

/// The `test_infra` process: closing its standard input releases the containers, which it
/// then removes.
struct InfraProcess {
    child: Option<Child>,
}

impl Drop for InfraProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < REMOVAL {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("test_infra did not end within {REMOVAL:?}: killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}
