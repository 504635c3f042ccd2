//! `cargo xtask token [--scope S]...`: a signed development JWT on stdout, nothing else.

use crate::dev;
use shared_kernel::auth::{JwtIssuer, ALL_SCOPES};
use shared_kernel::secrets::Secret;

pub fn print(scopes: &[String], ttl: i64) -> anyhow::Result<()> {
    let secret = Secret::new(dev::jwt_secret()?);
    let issuer = JwtIssuer::new(&secret, "fleet-dev", "fleet");
    let chosen: Vec<&str> = if scopes.is_empty() {
        ALL_SCOPES.to_vec()
    } else {
        scopes.iter().map(String::as_str).collect()
    };
    println!("{}", issuer.mint("developer", &chosen, ttl)?);
    Ok(())
}
