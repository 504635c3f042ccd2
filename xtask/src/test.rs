//! `cargo xtask test`: every test, against real PostgreSQL, RabbitMQ and OpenBao.

use crate::dev;
use std::process::Command;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    let vault = match (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
        (Ok(_), Ok(_)) => None,
        _ => Some(dev::DevVault::start(dev::free_port()?)?),
    };
    let nextest = Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success());
    let mut args: Vec<String> = if nextest {
        ["nextest", "run", "--workspace", "--no-fail-fast"].map(String::from).to_vec()
    } else {
        ["test", "--workspace", "--no-fail-fast"].map(String::from).to_vec()
    };
    args.extend(extra.iter().cloned());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(&args).current_dir(dev::root());
    if let Some(v) = &vault {
        cmd.env("VAULT_ADDR", &v.addr).env("VAULT_TOKEN", &v.token);
    }
    let status = cmd.status()?;
    drop(vault);
    anyhow::ensure!(status.success(), "tests failed");
    Ok(())
}
