//! `cargo xtask up`: migrations, then the three services against the local
//! PostgreSQL and RabbitMQ, and a development OpenBao when no Vault is configured.
//! Ctrl-C stops everything it started.

use crate::{db, dev};
use anyhow::Context;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn run() -> anyhow::Result<()> {
    anyhow::ensure!(
        dev::answers("127.0.0.1:5432") || std::env::var("FLEET_ADMIN_DATABASE_URL").is_ok(),
        "PostgreSQL does not answer on 127.0.0.1:5432"
    );
    anyhow::ensure!(
        dev::answers("127.0.0.1:5672") || std::env::var("FLEET__AMQP__URL").is_ok(),
        "RabbitMQ does not answer on 127.0.0.1:5672"
    );
    let (dev_vault, vault_addr, vault_token) =
        match (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) {
            (Ok(addr), Ok(token)) => (None, addr, token),
            _ => {
                let port = if dev::answers("127.0.0.1:8200") {
                    dev::free_port()?
                } else {
                    8200
                };
                let v = dev::DevVault::start(port)?;
                let (a, t) = (v.addr.clone(), v.token.clone());
                (Some(v), a, t)
            }
        };
    if let Ok(shared_kernel::config::JwtKeys::Vault(keys)) =
        shared_kernel::config::JwtKeys::from_env("fleet")
    {
        anyhow::ensure!(
            dev_vault.is_none(),
            "FLEET__AUTH__VAULT_PATH needs VAULT_ADDR and VAULT_TOKEN, so that `cargo xtask token` \
             reaches the same Vault as the services"
        );
        crate::auth::ensure_key(&keys.mount, &keys.path)?;
    }
    // While this runs, `cargo xtask keys` finds the development OpenBao through `.dev/vault`.
    let _vault_file = match &dev_vault {
        Some(_) => Some(dev::remember_dev_vault(&vault_addr, &vault_token)?),
        None => None,
    };
    db::migrate()?;
    let bin = dev::build_services()?;
    let secret = dev::jwt_secret()?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for ctx in dev::CONTEXTS {
        let child = Command::new(bin.join(ctx))
            .arg("serve")
            .envs(dev::database_env(ctx)?)
            .env("FLEET__AUTH__JWT_SECRET", &secret)
            .env("FLEET__VAULT__ADDR", &vault_addr)
            .env("FLEET__VAULT__TOKEN", &vault_token)
            .spawn()
            .with_context(|| format!("starting {ctx}"))?;
        children.push((ctx.to_owned(), child));
    }
    println!();
    println!("  accounts    http://127.0.0.1:8081  (GET /health/ready, /openapi.json)");
    println!("  payments    http://127.0.0.1:8082");
    println!("  settlement  http://127.0.0.1:8083");
    println!("  OpenBao     {vault_addr}");
    println!("  token:      TOKEN=$(cargo xtask token)");
    println!("  Ctrl-C stops everything.");
    println!();
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    loop {
        if interrupted.load(Ordering::SeqCst) {
            eprintln!("stopping the services");
            for (_, c) in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Ok(()); // the development OpenBao stops when `dev_vault` drops
        }
        let mut stopped = None;
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                stopped = Some(format!("{name} exited with {status}"));
            }
        }
        if let Some(reason) = stopped {
            eprintln!("{reason}; stopping the others");
            for (_, c) in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            anyhow::bail!(reason);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
