//! Configuration shared by every context: defaults, then environment variables.
//!
//! A variable is looked up as `<CONTEXT>__<SECTION>__<KEY>` (for example
//! `PAYMENTS__DATABASE__URL`) and then as `FLEET__<SECTION>__<KEY>`, so one variable can
//! configure every context on a developer machine while a deployment sets each its own.

use crate::outbox::RelayMode;
use crate::secrets::Secret;
use anyhow::{bail, Context};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub addr: String,
    pub token: Secret<String>,
    pub transit_mount: String,
}

/// Database credentials from Vault's database secrets engine (ADR 0020):
/// `DATABASE__VAULT_ROLE` and `DATABASE__VAULT_MOUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseVaultSettings {
    /// `VAULT_ROLE`: the engine's role whose credentials the service runs on, e.g.
    /// `payments-app`.
    pub role: String,
    /// `VAULT_MOUNT`: where the engine is mounted (default `database`).
    pub mount: String,
}

impl DatabaseVaultSettings {
    fn read(env: &Env) -> Option<Self> {
        env.get("DATABASE", "VAULT_ROLE").map(|role| Self {
            role,
            mount: env
                .get("DATABASE", "VAULT_MOUNT")
                .unwrap_or_else(|| "database".to_owned()),
        })
    }
}

#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub host: String,
    pub port: u16,
    /// `DATABASE__URL`: what the service runs as (the context's runtime role). With
    /// `database_vault`, only its host, port, database and parameters are used.
    pub database_url: Secret<String>,
    /// `DATABASE__VAULT_ROLE` set: the service runs on dynamic credentials from Vault's
    /// database engine instead of `DATABASE__URL`'s (needs `VAULT__ADDR`/`VAULT__TOKEN`).
    pub database_vault: Option<DatabaseVaultSettings>,
    /// `DATABASE__MIGRATION_URL`: what migrations run as (the schema's owner role);
    /// `DATABASE__URL` when unset.
    pub migration_url: Option<Secret<String>>,
    /// `DATABASE__MIGRATE_ON_START` (default true): `serve` runs pending migrations first.
    /// Off where a separate job runs `<context> migrate` (the runtime role cannot).
    pub migrate_on_start: bool,
    pub database_pool_size: u32,
    pub amqp_url: Secret<String>,
    /// Prefix for every exchange and queue name (isolates tests and environments).
    pub amqp_prefix: String,
    /// Where the keys that verify bearer tokens come from (`AUTH__*`).
    pub jwt_keys: JwtKeys,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub vault: Option<VaultSettings>,
    /// `HTTP__MAX_IN_FLIGHT`: requests served at once; beyond, 503 with Retry-After.
    pub max_in_flight: usize,
    /// `HTTP__RATE_LIMIT_PER_SEC` / `HTTP__RATE_LIMIT_BURST`: per client; beyond, 429.
    pub rate_limit: crate::rate_limit::RateLimit,
    pub outbox: OutboxSettings,
}

/// Where the keys that verify bearer tokens come from (ADR 0015).
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// `AUTH__JWT_SECRET`: one HS256 key, key id `dev` (development).
    Secret(Secret<String>),
    /// `AUTH__VAULT_PATH` set: Ed25519 public keys from a Vault KV v2 secret.
    Vault(VaultJwtKeys),
}

/// Token verification keys in Vault (`<CONTEXT>__AUTH__*`, then `FLEET__AUTH__*`).
#[derive(Debug, Clone)]
pub struct VaultJwtKeys {
    /// `VAULT_MOUNT`: the KV v2 mount (default `secret`).
    pub mount: String,
    /// `VAULT_PATH`: the secret whose versions hold the public keys, e.g. `fleet/jwt-signing`.
    pub path: String,
    /// `ACCEPTED_KEYS`: how many of the newest live versions are accepted (default 2).
    pub accepted: usize,
    /// `KEYS_REFRESH_SECS`: how often the keys are read again (default 60).
    pub refresh: Duration,
}

impl JwtKeys {
    /// The key settings of `context` (use `"fleet"` for the shared ones only).
    pub fn from_env(context: &str) -> anyhow::Result<Self> {
        Self::read(&Env::new(context))
    }

    fn read(env: &Env) -> anyhow::Result<Self> {
        if let Some(path) = env.get("AUTH", "VAULT_PATH") {
            let accepted: usize = env.parse("AUTH", "ACCEPTED_KEYS", 2)?;
            if !(1..=10).contains(&accepted) {
                bail!(
                    "{}__AUTH__ACCEPTED_KEYS must be between 1 and 10",
                    env.context
                );
            }
            let refresh: u64 = env.parse("AUTH", "KEYS_REFRESH_SECS", 60)?;
            if refresh == 0 {
                bail!(
                    "{}__AUTH__KEYS_REFRESH_SECS must be at least 1",
                    env.context
                );
            }
            if env.get("AUTH", "JWT_SECRET").is_some() {
                tracing::warn!(
                    "AUTH__JWT_SECRET is ignored: token keys come from Vault (AUTH__VAULT_PATH)"
                );
            }
            return Ok(Self::Vault(VaultJwtKeys {
                mount: env
                    .get("AUTH", "VAULT_MOUNT")
                    .unwrap_or_else(|| "secret".to_owned()),
                path,
                accepted,
                refresh: Duration::from_secs(refresh),
            }));
        }
        let secret = env.required("AUTH", "JWT_SECRET")?;
        if secret.len() < 32 {
            bail!(
                "{}__AUTH__JWT_SECRET must be at least 32 bytes",
                env.context
            );
        }
        Ok(Self::Secret(Secret::new(secret)))
    }
}

/// How the outbox relay runs (`<CONTEXT>__OUTBOX__*`, then `FLEET__OUTBOX__*`).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `MODE`: `polling` (default) or `cdc` (logical decoding; needs `wal_level = logical`).
    pub mode: RelayMode,
    /// `BATCH_SIZE`: rows per published batch (default 100).
    pub batch_size: i32,
    /// `RETENTION_SECS`: how long published rows are kept (default 7 days).
    pub retention: Duration,
    /// `PRUNE_INTERVAL_SECS`: how often the relay prunes (default 300).
    pub prune_interval: Duration,
    /// `LEASE_SECS`: how long a relay reserves the rows it publishes (default 30); rows
    /// of a relay that died are published again after it.
    pub lease: Duration,
    /// `FAULTS__RELAY_CRASH_AFTER_PUBLISH`: fault injection for the fault tests only.
    pub crash_after_publish: bool,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            mode: RelayMode::Polling,
            batch_size: 100,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(300),
            lease: Duration::from_secs(30),
            crash_after_publish: false,
        }
    }
}

impl OutboxSettings {
    /// Reads the outbox settings of `context` (use `"fleet"` for the shared ones only).
    pub fn from_env(context: &str) -> anyhow::Result<Self> {
        Self::read(&Env::new(context))
    }

    fn read(env: &Env) -> anyhow::Result<Self> {
        let d = Self::default();
        let batch_size: i32 = env.parse("OUTBOX", "BATCH_SIZE", d.batch_size)?;
        if !(1..=10_000).contains(&batch_size) {
            bail!(
                "{}__OUTBOX__BATCH_SIZE must be between 1 and 10000",
                env.context
            );
        }
        let secs = |key: &str, default: Duration| -> anyhow::Result<Duration> {
            let n: u64 = env.parse("OUTBOX", key, default.as_secs())?;
            if n == 0 {
                bail!("{}__OUTBOX__{key} must be at least 1", env.context);
            }
            Ok(Duration::from_secs(n))
        };
        Ok(Self {
            mode: env.parse("OUTBOX", "MODE", d.mode)?,
            batch_size,
            retention: secs("RETENTION_SECS", d.retention)?,
            prune_interval: secs("PRUNE_INTERVAL_SECS", d.prune_interval)?,
            lease: secs("LEASE_SECS", d.lease)?,
            crash_after_publish: env.parse("FAULTS", "RELAY_CRASH_AFTER_PUBLISH", false)?,
        })
    }
}

/// Requests a service serves at once by default (its pool has 10 connections; more
/// would only queue).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

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
    /// The URL migrations run with.
    pub fn migration_url(&self) -> &Secret<String> {
        self.migration_url.as_ref().unwrap_or(&self.database_url)
    }

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
        let jwt_keys = JwtKeys::read(&env)?;
        let database_vault = DatabaseVaultSettings::read(&env);
        if database_vault.is_some() && vault.is_none() {
            bail!(
                "{ctx}__DATABASE__VAULT_ROLE needs {ctx}__VAULT__ADDR and {ctx}__VAULT__TOKEN",
                ctx = context.to_uppercase()
            );
        }
        if matches!(jwt_keys, JwtKeys::Vault(_)) && vault.is_none() {
            bail!(
                "{ctx}__AUTH__VAULT_PATH needs {ctx}__VAULT__ADDR and {ctx}__VAULT__TOKEN",
                ctx = context.to_uppercase()
            );
        }
        Ok(Self {
            host: env
                .get("HTTP", "HOST")
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: env.parse("HTTP", "PORT", default_port)?,
            max_in_flight: env.parse("HTTP", "MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)?,
            rate_limit: {
                let d = crate::rate_limit::RateLimit::default();
                crate::rate_limit::RateLimit {
                    per_sec: env.parse("HTTP", "RATE_LIMIT_PER_SEC", d.per_sec)?,
                    burst: env.parse("HTTP", "RATE_LIMIT_BURST", d.burst)?,
                }
            },
            database_url: Secret::new(env.required("DATABASE", "URL")?),
            database_vault,
            migration_url: env.get("DATABASE", "MIGRATION_URL").map(Secret::new),
            migrate_on_start: env.parse("DATABASE", "MIGRATE_ON_START", true)?,
            database_pool_size: env.parse("DATABASE", "POOL_SIZE", 10)?,
            amqp_url: Secret::new(
                env.get("AMQP", "URL")
                    .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            ),
            amqp_prefix: env.get("AMQP", "PREFIX").unwrap_or_default(),
            jwt_keys,
            jwt_issuer: env
                .get("AUTH", "ISSUER")
                .unwrap_or_else(|| "fleet-dev".to_owned()),
            jwt_audience: env
                .get("AUTH", "AUDIENCE")
                .unwrap_or_else(|| "fleet".to_owned()),
            vault,
            outbox: OutboxSettings::read(&env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_settings_default_and_read_the_context_first() {
        // A context name of this test's own, so no other test sees these variables.
        let d = OutboxSettings::from_env("outboxcfgtest").unwrap_or_default();
        if std::env::var_os("FLEET__OUTBOX__MODE").is_none() {
            assert_eq!(d.mode, RelayMode::Polling);
        }
        std::env::set_var("OUTBOXCFGTEST__OUTBOX__MODE", "cdc");
        std::env::set_var("OUTBOXCFGTEST__OUTBOX__RETENTION_SECS", "60");
        let s = OutboxSettings::from_env("outboxcfgtest").ok();
        assert_eq!(s.as_ref().map(|s| s.mode), Some(RelayMode::Cdc));
        assert_eq!(s.map(|s| s.retention), Some(Duration::from_secs(60)));
        std::env::set_var("OUTBOXCFGTEST__OUTBOX__MODE", "kafka");
        assert!(OutboxSettings::from_env("outboxcfgtest").is_err());
        std::env::set_var("OUTBOXCFGTEST__OUTBOX__MODE", "polling");
        std::env::set_var("OUTBOXCFGTEST__OUTBOX__PRUNE_INTERVAL_SECS", "0");
        assert!(OutboxSettings::from_env("outboxcfgtest").is_err());
    }

    #[test]
    fn database_credentials_from_vault_need_a_role_and_vault() {
        // A context name of this test's own, so no other test sees these variables.
        let env = Env::new("dbvaultcfgtest");
        if std::env::var_os("FLEET__DATABASE__VAULT_ROLE").is_none() {
            assert_eq!(DatabaseVaultSettings::read(&env), None);
        }
        std::env::set_var("DBVAULTCFGTEST__DATABASE__VAULT_ROLE", "payments-app");
        let read = DatabaseVaultSettings::read(&env).unwrap();
        assert_eq!(read.role, "payments-app");
        if std::env::var_os("FLEET__DATABASE__VAULT_MOUNT").is_none() {
            assert_eq!(read.mount, "database");
        }
        std::env::set_var("DBVAULTCFGTEST__DATABASE__VAULT_MOUNT", "db");
        assert_eq!(DatabaseVaultSettings::read(&env).unwrap().mount, "db");
        std::env::set_var(
            "DBVAULTCFGTEST__DATABASE__URL",
            "postgres://x@127.0.0.1/fleet",
        );
        std::env::set_var("DBVAULTCFGTEST__AUTH__JWT_SECRET", "k".repeat(32));
        if std::env::var_os("FLEET__VAULT__ADDR").is_none() {
            let err = CommonSettings::from_env("dbvaultcfgtest", 1).unwrap_err();
            assert!(err.to_string().contains("VAULT__ADDR"), "{err}");
        }
        std::env::set_var("DBVAULTCFGTEST__VAULT__ADDR", "http://127.0.0.1:8200");
        std::env::set_var("DBVAULTCFGTEST__VAULT__TOKEN", "t");
        let common = CommonSettings::from_env("dbvaultcfgtest", 1).unwrap();
        assert_eq!(
            common.database_vault.map(|d| d.role).as_deref(),
            Some("payments-app")
        );
    }

    #[test]
    fn jwt_keys_come_from_the_secret_or_from_vault() {
        // A context name of this test's own, so no other test sees these variables.
        std::env::set_var("JWTKEYSCFGTEST__AUTH__JWT_SECRET", "short");
        if std::env::var_os("FLEET__AUTH__VAULT_PATH").is_none() {
            assert!(JwtKeys::from_env("jwtkeyscfgtest").is_err());
            std::env::set_var("JWTKEYSCFGTEST__AUTH__JWT_SECRET", "k".repeat(32));
            assert!(matches!(
                JwtKeys::from_env("jwtkeyscfgtest"),
                Ok(JwtKeys::Secret(_))
            ));
        }
        std::env::set_var("JWTKEYSCFGTEST__AUTH__VAULT_PATH", "fleet/jwt-signing");
        std::env::set_var("JWTKEYSCFGTEST__AUTH__KEYS_REFRESH_SECS", "7");
        match JwtKeys::from_env("jwtkeyscfgtest") {
            Ok(JwtKeys::Vault(v)) => {
                assert_eq!(v.path, "fleet/jwt-signing");
                assert_eq!(v.refresh, Duration::from_secs(7));
                if std::env::var_os("FLEET__AUTH__ACCEPTED_KEYS").is_none() {
                    assert_eq!(v.accepted, 2);
                }
            }
            other => panic!("Vault keys expected, got {other:?}"),
        }
        std::env::set_var("JWTKEYSCFGTEST__AUTH__ACCEPTED_KEYS", "0");
        assert!(JwtKeys::from_env("jwtkeyscfgtest").is_err());
    }
}
