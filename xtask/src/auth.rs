//! `cargo xtask auth rotate-key | retire-key`: the token signing keys in Vault (ADR 0015).
//!
//! The keys live in the KV v2 secret `FLEET__AUTH__VAULT_MOUNT` (default `secret`) /
//! `FLEET__AUTH__VAULT_PATH` (default `fleet/jwt-signing`), in the Vault named by
//! `FLEET__VAULT__ADDR`/`FLEET__VAULT__TOKEN` or `VAULT_ADDR`/`VAULT_TOKEN`.

use anyhow::Context;
use shared_kernel::auth::key_store::VaultKeyStore;
use shared_kernel::config::{Env, VaultSettings};
use shared_kernel::secrets::Secret;

pub const DEFAULT_PATH: &str = "fleet/jwt-signing";

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The Vault of the development settings (`FLEET__VAULT__*`, else `VAULT_ADDR`/`VAULT_TOKEN`).
fn vault() -> anyhow::Result<VaultSettings> {
    let env = Env::new("fleet");
    let var = |section_key: (&str, &str), plain: &str| {
        env.get(section_key.0, section_key.1)
            .or_else(|| std::env::var(plain).ok().filter(|v| !v.is_empty()))
    };
    let addr = var(("VAULT", "ADDR"), "VAULT_ADDR")
        .context("set FLEET__VAULT__ADDR (or VAULT_ADDR) to the Vault that holds the token keys")?;
    let token = var(("VAULT", "TOKEN"), "VAULT_TOKEN")
        .context("set FLEET__VAULT__TOKEN (or VAULT_TOKEN)")?;
    Ok(VaultSettings {
        addr,
        token: Secret::new(token),
        transit_mount: "transit".to_owned(),
    })
}

pub fn store(mount: &str, path: &str) -> anyhow::Result<VaultKeyStore> {
    VaultKeyStore::new(&vault()?, mount, path, 1)
}

/// The mount and path of the development settings, or their defaults.
fn location() -> (String, String) {
    let env = Env::new("fleet");
    (
        env.get("AUTH", "VAULT_MOUNT")
            .unwrap_or_else(|| "secret".to_owned()),
        env.get("AUTH", "VAULT_PATH")
            .unwrap_or_else(|| DEFAULT_PATH.to_owned()),
    )
}

/// Writes a new key as the newest version; prints `{"kid":..,"version":..}`.
pub fn rotate_key() -> anyhow::Result<()> {
    let (mount, path) = location();
    let rotated = runtime()?.block_on(store(&mount, &path)?.rotate())?;
    println!("{}", serde_json::to_string(&rotated)?);
    eprintln!(
        "new signing key {} is version {} of {mount}/{path}; services accept it at once \
         (unknown key ids refresh their keys) and keep accepting the previous one",
        rotated.kid, rotated.version
    );
    Ok(())
}

/// Deletes (or destroys) one version, so services stop accepting its key.
pub fn retire_key(version: u64, destroy: bool) -> anyhow::Result<()> {
    let (mount, path) = location();
    let kid = runtime()?.block_on(store(&mount, &path)?.retire(version, destroy))?;
    eprintln!(
        "retired key {kid} (version {version} of {mount}/{path}); services refuse it after \
         their next refresh (FLEET__AUTH__KEYS_REFRESH_SECS)"
    );
    Ok(())
}

/// Writes a first key when the secret has none (for `cargo xtask up`).
pub fn ensure_key(mount: &str, path: &str) -> anyhow::Result<()> {
    let store = store(mount, path)?;
    runtime()?.block_on(async {
        if store.verification_keys().await?.is_empty() {
            let rotated = store.rotate().await?;
            eprintln!(
                "wrote the first token signing key {} to {mount}/{path}",
                rotated.kid
            );
        }
        Ok(())
    })
}
