//! `cargo xtask token [--scope S]... [--program P]`: a signed JWT on stdout, nothing
//! else; with `--program`, bound to that program (ADR 0018).
//!
//! With `FLEET__AUTH__VAULT_PATH` set it signs with the newest key in Vault (ADR 0015);
//! otherwise with the development key in `.dev/jwt-secret`.

use crate::{auth, dev};
use shared_kernel::auth::{JwtIssuer, ALL_SCOPES};
use shared_kernel::config::{Env, JwtKeys};
use shared_kernel::secrets::Secret;

pub fn print(scopes: &[String], ttl: i64, program: Option<&str>) -> anyhow::Result<()> {
    let program = program
        .map(|p| shared_kernel::program::parse(p).map_err(|e| anyhow::anyhow!("--program {e}")))
        .transpose()?;
    let env = Env::new("fleet");
    let iss = env
        .get("AUTH", "ISSUER")
        .unwrap_or_else(|| "fleet-dev".to_owned());
    let aud = env
        .get("AUTH", "AUDIENCE")
        .unwrap_or_else(|| "fleet".to_owned());
    let issuer = match JwtKeys::from_env("fleet") {
        Ok(JwtKeys::Vault(keys)) => {
            let store = auth::store(&keys.mount, &keys.path)?;
            let key = auth::runtime()?.block_on(store.newest_signing_key())?;
            JwtIssuer::with_key(key, &iss, &aud)
        }
        _ => JwtIssuer::new(&Secret::new(dev::jwt_secret()?), &iss, &aud),
    };
    let chosen: Vec<&str> = if scopes.is_empty() {
        ALL_SCOPES.to_vec()
    } else {
        scopes.iter().map(String::as_str).collect()
    };
    let token = match &program {
        Some(p) => issuer.mint_for_program("developer", &chosen, ttl, p)?,
        None => issuer.mint("developer", &chosen, ttl)?,
    };
    println!("{token}");
    Ok(())
}
