//! Configuration shared by every context: defaults, then environment variables.
//!
//! A variable is looked up as `<CONTEXT>__<SECTION>__<KEY>` (for example
//! `PAYMENTS__DATABASE__URL`) and then as `FLEET__<SECTION>__<KEY>`, so one variable can
//! configure every context on a developer machine while a deployment sets each its own.

use crate::secrets::Secret;
use anyhow::{bail, Context};

#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub addr: String,
    pub token: Secret<String>,
    pub transit_mount: String,
}

#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub host: String,
    pub port: u16,
    pub database_url: Secret<String>,
    pub database_pool_size: u32,
    pub amqp_url: Secret<String>,
    /// Prefix for every exchange and queue name (isolates tests and environments).
    pub amqp_prefix: String,
    pub jwt_secret: Secret<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub vault: Option<VaultSettings>,
}

/// Reads layered environment variables for one context.
pub struct Env {
    context: String,
}

impl Env {
    pub fn new(context: &str) -> Self {
        Self {
            context: context.to_uppercase(),
        }
    }

    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        let own = format!("{}__{}__{}", self.context, section, key);
        let shared = format!("FLEET__{section}__{key}");
        std::env::var(own)
            .ok()
            .or_else(|| std::env::var(shared).ok())
            .filter(|v| !v.is_empty())
    }

    pub fn parse<T: std::str::FromStr>(
        &self,
        section: &str,
        key: &str,
        default: T,
    ) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(section, key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid {}__{section}__{key}: {e}", self.context)),
        }
    }

    pub fn required(&self, section: &str, key: &str) -> anyhow::Result<String> {
        self.get(section, key).with_context(|| {
            format!(
                "{}__{section}__{key} (or FLEET__{section}__{key}) must be set",
                self.context
            )
        })
    }
}

impl CommonSettings {
    pub fn from_env(context: &str, default_port: u16) -> anyhow::Result<Self> {
        let env = Env::new(context);
        let vault = match env.get("VAULT", "ADDR") {
            None => None,
            Some(addr) => Some(VaultSettings {
                addr,
                token: Secret::new(env.required("VAULT", "TOKEN")?),
                transit_mount: env
                    .get("VAULT", "TRANSIT_MOUNT")
                    .unwrap_or_else(|| "transit".to_owned()),
            }),
        };
        let jwt_secret = env.required("AUTH", "JWT_SECRET")?;
        if jwt_secret.len() < 32 {
            bail!(
                "{}__AUTH__JWT_SECRET must be at least 32 bytes",
                context.to_uppercase()
            );
        }
        Ok(Self {
            host: env
                .get("HTTP", "HOST")
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: env.parse("HTTP", "PORT", default_port)?,
            database_url: Secret::new(env.required("DATABASE", "URL")?),
            database_pool_size: env.parse("DATABASE", "POOL_SIZE", 10)?,
            amqp_url: Secret::new(
                env.get("AMQP", "URL")
                    .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            ),
            amqp_prefix: env.get("AMQP", "PREFIX").unwrap_or_default(),
            jwt_secret: Secret::new(jwt_secret),
            jwt_issuer: env
                .get("AUTH", "ISSUER")
                .unwrap_or_else(|| "fleet-dev".to_owned()),
            jwt_audience: env
                .get("AUTH", "AUDIENCE")
                .unwrap_or_else(|| "fleet".to_owned()),
            vault,
        })
    }
}
