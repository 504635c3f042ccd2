//! The container engine (ADR 0021): Docker when its API answers (`DOCKER_HOST`, else the
//! default socket); otherwise podman, whose Docker-compatible API service xtask starts on a
//! private socket for the duration of one command and stops with it, even when xtask is
//! killed (a watchdog ends the service once xtask's process is gone).
//! `cargo xtask engine setup` installs and configures podman on a Debian machine.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// What `engine setup` writes (recipes §7): runc, not crun, which this kind of VM refuses
/// (no CAP_SYS_RESOURCE, hybrid cgroups); capped ulimits; cgroupfs; events to a file.
const CONTAINERS_CONF: &str = "[containers]
default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
";
const CONTAINERS_CONF_PATH: &str = "/etc/containers/containers.conf";

/// A container engine ready for this command: its CLI and its Docker API address.
pub struct Engine {
    /// `docker` or `podman`.
    pub cli: &'static str,
    /// The Docker API, as `DOCKER_HOST` spells it.
    pub docker_host: String,
    /// The podman API service this command started, stopped on drop.
    service: Option<Child>,
    socket_dir: Option<PathBuf>,
}

impl Engine {
    /// Docker if its API answers, else podman (with its API service started here);
    /// `None` when neither is installed.
    pub fn start() -> anyhow::Result<Option<Self>> {
        let docker_host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("unix://{DOCKER_SOCKET}"));
        if ping(&docker_host) && on_path("docker") {
            return Ok(Some(Self {
                cli: "docker",
                docker_host,
                service: None,
                socket_dir: None,
            }));
        }
        if !on_path("podman") {
            return Ok(None);
        }
        let dir = std::env::temp_dir().join(format!("fleet-podman-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("podman.sock");
        let host = format!("unix://{}", socket.display());
        // The watchdog ends the service when this process is gone, however it ended.
        let script = format!(
            "podman system service --time=0 {host} & S=$!; \
             while kill -0 {xtask} 2>/dev/null && kill -0 $S 2>/dev/null; do sleep 0.5; done; \
             kill $S 2>/dev/null; wait $S 2>/dev/null",
            xtask = std::process::id()
        );
        let service = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting podman system service")?;
        let engine = Self {
            cli: "podman",
            docker_host: host,
            service: Some(service),
            socket_dir: Some(dir),
        };
        let started = Instant::now();
        while !ping(&engine.docker_host) {
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "podman's API service did not answer on {}",
                    engine.docker_host
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Some(engine))
    }

    /// The engine, or an error saying how to get one.
    pub fn require() -> anyhow::Result<Self> {
        Self::start()?.context(
            "no container engine: neither Docker's API answers nor podman is installed \
             (run `cargo xtask engine setup`)",
        )
    }

    /// A command of the engine's CLI.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(self.cli);
        if self.cli == "docker" {
            c.env("DOCKER_HOST", &self.docker_host);
        }
        c
    }

    /// Runs `args` as a command with `DOCKER_HOST` pointing at this engine; returns its
    /// exit code.
    pub fn run(&self, args: &[String]) -> anyhow::Result<i32> {
        let (program, rest) = args.split_first().context("a command to run")?;
        let status = Command::new(program)
            .args(rest)
            .env("DOCKER_HOST", &self.docker_host)
            // testcontainers' reaper container needs a privileged Docker; podman runs
            // without it, and the tests remove their containers themselves.
            .env("TESTCONTAINERS_RYUK_DISABLED", "true")
            .status()
            .with_context(|| format!("running {program}"))?;
        Ok(status.code().unwrap_or(1))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut service) = self.service.take() {
            // Ends the service and its watchdog shell, and waits (ten seconds at most,
            // then kills it) until the service is gone: nothing outlives the command.
            let pattern = format!("podman system service --time=0 {}", self.docker_host);
            let signal = |sig: &str| {
                Command::new("pkill")
                    .args([sig, "-f", &pattern])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            signal("-TERM");
            let started = Instant::now();
            while signal("-0") && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            signal("-KILL");
            let _ = service.kill();
            let _ = service.wait();
        }
        if let Some(dir) = self.socket_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The label every container of a test run carries (`tests::containers::RUN_LABEL`).
pub const RUN_LABEL: &str = "org.fleet-cards.run";

/// Removes every container labelled with one run's id, and every network named after it
/// (`fleet-<run>-…`): when dropped, and, through a watchdog, once this process is gone
/// however it ended (a kill included).
pub struct Reaper<'a> {
    engine: &'a Engine,
    run: String,
    watchdog: Option<Child>,
}

impl Engine {
    pub fn reaper(&self, run: &str) -> anyhow::Result<Reaper<'_>> {
        anyhow::ensure!(
            !run.is_empty() && run.chars().all(|c| c.is_ascii_alphanumeric()),
            "a run id is letters and digits"
        );
        // Tests a killed xtask leaves running may still start containers for a while: the
        // watchdog removes what it finds every 2 s, for at least 10 s and until a pass
        // finds nothing (a minute at most).
        let (containers, networks) = listing(self.cli, run);
        let script = format!(
            "while kill -0 {xtask} 2>/dev/null; do sleep 1; done; \
             for pass in $(seq 1 30); do \
               found=$({containers})$({networks}); \
               [ -z \"$found\" ] && [ \"$pass\" -gt 5 ] && break; \
               {reap}; sleep 2; \
             done",
            xtask = std::process::id(),
            reap = reap_script(self.cli, run)
        );
        let watchdog = self
            .shell(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the container watchdog")?;
        Ok(Reaper {
            engine: self,
            run: run.to_owned(),
            watchdog: Some(watchdog),
        })
    }

    /// `sh -c script`, its engine CLI reaching this engine.
    fn shell(&self, script: &str) -> Command {
        let mut sh = Command::new("sh");
        sh.args(["-c", script]);
        if self.cli == "docker" {
            sh.env("DOCKER_HOST", &self.docker_host);
        }
        sh
    }
}

/// Shell commands listing a run's containers and its networks (one id per line).
fn listing(cli: &str, run: &str) -> (String, String) {
    (
        format!("{cli} ps -aq --filter label={RUN_LABEL}={run}"),
        format!("{cli} network ls -q --filter name=fleet-{run}-"),
    )
}

/// Shell commands that remove a run's containers, then its networks.
fn reap_script(cli: &str, run: &str) -> String {
    let (containers, networks) = listing(cli, run);
    format!(
        "ids=$({containers}); [ -z \"$ids\" ] || {cli} rm -f $ids >/dev/null 2>&1; \
         nets=$({networks}); [ -z \"$nets\" ] || {cli} network rm $nets >/dev/null 2>&1; true"
    )
}

impl Reaper<'_> {
    /// Removes what is left now and says what could not be removed.
    pub fn reap(&mut self) -> anyhow::Result<()> {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let before = self.left()?;
        if !before.is_empty() {
            println!(
                "removing {} container(s) and network(s) the run left behind",
                before.len()
            );
        }
        self.engine
            .shell(&reap_script(self.engine.cli, &self.run))
            .status()
            .context("removing the run's containers")?;
        let left = self.left()?;
        anyhow::ensure!(left.is_empty(), "left behind after the run: {left:?}");
        Ok(())
    }

    /// Containers and networks of this run that still exist.
    pub fn left(&self) -> anyhow::Result<Vec<String>> {
        let (containers, networks) = listing(self.engine.cli, &self.run);
        let out = self
            .engine
            .shell(&format!("set -e; {containers}; {networks}"))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "listing the run's containers failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            if let Err(e) = self.reap() {
                eprintln!("{e:#}");
            }
        }
    }
}

/// Whether a Docker API answers `/_ping` at `host` (`unix://path` or `tcp://host:port`).
pub fn ping(host: &str) -> bool {
    let limit = Some(Duration::from_secs(2));
    let answer = if let Some(path) = host.strip_prefix("unix://") {
        std::os::unix::net::UnixStream::connect(Path::new(path))
            .ok()
            .filter(|s| s.set_read_timeout(limit).is_ok())
            .and_then(ask_ping)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        addr.parse::<std::net::SocketAddr>()
            .ok()
            .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
            .filter(|s| s.set_read_timeout(limit).is_ok())
            .and_then(ask_ping)
    } else {
        None
    };
    answer.is_some_and(|a| a.starts_with("HTTP/1.") && a.contains(" 200 "))
}

/// Sends `GET /_ping` on an open connection; the whole answer.
fn ask_ping(mut stream: impl Read + Write) -> Option<String> {
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// `cargo xtask engine setup`: podman, runc and debootstrap from Debian, and the
/// configuration this kind of machine needs. Idempotent.
pub fn setup() -> anyhow::Result<()> {
    // Each package is named after the program it installs.
    let missing: Vec<&str> = ["podman", "runc", "debootstrap"]
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if !missing.is_empty() {
        println!("installing {}", missing.join(" "));
        let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
        anyhow::ensure!(update.success(), "apt-get update failed");
        let install = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        anyhow::ensure!(install.success(), "apt-get install {missing:?} failed");
    }
    let current = std::fs::read_to_string(CONTAINERS_CONF_PATH).unwrap_or_default();
    if current != CONTAINERS_CONF {
        std::fs::create_dir_all("/etc/containers")?;
        std::fs::write(CONTAINERS_CONF_PATH, CONTAINERS_CONF)
            .with_context(|| format!("writing {CONTAINERS_CONF_PATH}"))?;
        println!("wrote {CONTAINERS_CONF_PATH}");
    }
    let out = Command::new("podman")
        .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        .output()
        .context("running podman info")?;
    anyhow::ensure!(
        out.status.success(),
        "podman info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "podman ready (runtime {})",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}

/// Whether `program` is a file in a directory of the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_reads_a_docker_api_answer_over_a_unix_socket() {
        let dir = std::env::temp_dir().join(format!("fleet-ping-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\n\r\nOK", "HTTP/1.1 500 Error\r\n\r\n"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(answer.as_bytes()).unwrap();
            }
        });
        let host = format!("unix://{}", path.display());
        assert!(ping(&host));
        assert!(!ping(&host));
        server.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(!ping(&host), "nothing listens any more");
        assert!(!ping("tcp://127.0.0.1:1"));
        assert!(!ping("ssh://nowhere"));
    }
}
