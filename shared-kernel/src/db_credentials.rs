//! Database credentials from Vault's database secrets engine (ADR 0020).
//!
//! With `DATABASE__VAULT_ROLE` set, the service asks Vault (`GET <mount>/creds/<role>`)
//! for a user and password that Vault has just created in PostgreSQL as a member of the
//! context's runtime role, and connects with `DATABASE__URL`'s host, port and database
//! but those credentials. The lease is renewed at about two thirds of its time; when
//! Vault refuses to renew it, or caps the renewal because the lease's maximum TTL is
//! near, new credentials are fetched (a rotation): new connections use them, and the
//! pool retires the connections of the previous user before Vault revokes it. While
//! Vault does not answer, the current credentials are kept as long as they are valid,
//! and Vault is asked again with backoff.
//!
//! Neither the password nor the URL that carries it is ever logged.

use crate::config::{DatabaseVaultSettings, VaultSettings};
use crate::db::{DbUrl, PgPool};
use crate::secrets::Secret;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// The database engine of one Vault, for one role.
pub struct VaultDatabase {
    client: VaultClient,
    addr: String,
    token: Secret<String>,
    mount: String,
    role: String,
}

/// Credentials Vault issued, and their lease.
pub struct Issued {
    pub username: String,
    pub password: Secret<String>,
    pub lease_id: String,
    pub lease_duration: Duration,
    pub renewable: bool,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("username", &self.username)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

/// Why a call to Vault failed: Vault answered and refused (4xx: a lease it no longer
/// knows, a role that does not exist, a token without the right), or it did not answer
/// properly (connection refused, timeout, 5xx). The first calls for new credentials, the
/// second for patience.
#[derive(Debug, thiserror::Error)]
pub enum VaultCallError {
    #[error("Vault refused the request (status {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Vault is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    data: Option<T>,
}

#[derive(Deserialize)]
struct CredsData {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultDatabase {
    pub fn new(vault: &VaultSettings, db: &DatabaseVaultSettings) -> anyhow::Result<Self> {
        if !(vault.addr.starts_with("http://") || vault.addr.starts_with("https://")) {
            bail!("VAULT ADDR must be an http(s) URL");
        }
        check_path_segment("DATABASE__VAULT_MOUNT", &db.mount)?;
        check_path_segment("DATABASE__VAULT_ROLE", &db.role)?;
        // vaultrs' client, for its HTTP client (TLS set up like every other Vault call);
        // vaultrs has no call that returns the lease of database credentials.
        let client = VaultClient::new(
            VaultClientSettingsBuilder::default()
                .address(&vault.addr)
                .token(vault.token.expose().clone())
                .timeout(Some(Duration::from_secs(5)))
                .build()
                .context("building the Vault client settings")?,
        )
        .context("building the Vault client")?;
        Ok(Self {
            client,
            addr: vault.addr.trim_end_matches('/').to_owned(),
            token: vault.token.clone(),
            mount: db.mount.trim_matches('/').to_owned(),
            role: db.role.clone(),
        })
    }

    /// The role credentials are issued for.
    pub fn role(&self) -> &str {
        &self.role
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String, VaultCallError> {
        let url = format!("{}/v1/{path}", self.addr);
        let http = &self.client.http.http;
        let req = match method {
            "GET" => http.get(&url),
            _ => http.put(&url),
        }
        .header("X-Vault-Token", self.token.expose().as_str())
        .header("X-Vault-Request", "true");
        let req = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let res = req
            .send()
            .await
            .map_err(|e| VaultCallError::Unavailable(e.to_string()))?;
        let status = res.status().as_u16();
        let text = res
            .text()
            .await
            .map_err(|e| VaultCallError::Unavailable(e.to_string()))?;
        match status {
            200..=299 => Ok(text),
            400..=499 => Err(VaultCallError::Refused {
                status,
                message: serde_json::from_str::<Errors>(&text)
                    .map(|e| e.errors.join("; "))
                    .unwrap_or_default(),
            }),
            _ => Err(VaultCallError::Unavailable(format!("status {status}"))),
        }
    }

    /// New credentials: `GET <mount>/creds/<role>`.
    pub async fn issue(&self) -> Result<Issued, VaultCallError> {
        let text = self
            .call("GET", &format!("{}/creds/{}", self.mount, self.role), None)
            .await?;
        let env: Envelope<CredsData> = serde_json::from_str(&text)
            .map_err(|e| VaultCallError::Unavailable(format!("unexpected answer: {e}")))?;
        let data = env
            .data
            .ok_or_else(|| VaultCallError::Unavailable("an answer without credentials".into()))?;
        if env.lease_id.is_empty() || env.lease_duration == 0 {
            return Err(VaultCallError::Unavailable(
                "credentials without a lease".into(),
            ));
        }
        Ok(Issued {
            username: data.username,
            password: Secret::new(data.password),
            lease_id: env.lease_id,
            lease_duration: Duration::from_secs(env.lease_duration),
            renewable: env.renewable,
        })
    }

    /// Renews a lease by `increment`: `PUT sys/leases/renew`. Returns the time granted,
    /// which is less than `increment` when the lease's maximum TTL is near.
    pub async fn renew(
        &self,
        lease_id: &str,
        increment: Duration,
    ) -> Result<Duration, VaultCallError> {
        let text = self
            .call(
                "PUT",
                "sys/leases/renew",
                Some(serde_json::json!({"lease_id": lease_id, "increment": increment.as_secs()})),
            )
            .await?;
        let env: Envelope<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| VaultCallError::Unavailable(format!("unexpected answer: {e}")))?;
        Ok(Duration::from_secs(env.lease_duration))
    }
}

fn check_path_segment(name: &str, value: &str) -> anyhow::Result<()> {
    let ok = !value.is_empty()
        && value
            .trim_matches('/')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !value.contains("..");
    if !ok {
        bail!("{name} must be a plain Vault path");
    }
    Ok(())
}

/// `url` (a PostgreSQL URL) with `user` and `password` as its credentials, replacing any
/// it had; host, port, database and parameters stay.
pub fn url_with_credentials(url: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("DATABASE__URL is not a PostgreSQL URL");
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(format!(
        "{scheme}://{}:{}@{host}",
        percent_encode(user),
        percent_encode(password)
    ))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The lease the service holds now.
struct Held {
    username: String,
    lease_id: String,
    /// What each renewal asks for: the duration of the first grant.
    increment: Duration,
    renewable: bool,
    /// When Vault revokes it unless renewed.
    expires: Instant,
    /// When to renew it next.
    renew_at: Instant,
}

/// 1 s doubling to 30 s; back to 1 s after a success.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    fn next_delay(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        d
    }
    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// When to renew a lease granted for `granted` now: at two thirds of it.
fn renew_after(granted: Duration) -> Duration {
    (granted * 2 / 3).max(Duration::from_millis(500))
}

/// The service's dynamic credentials: the current URL every connection uses, and the
/// task that renews and rotates them.
pub struct DynamicCredentials {
    engine: VaultDatabase,
    /// `DATABASE__URL`: where to connect; its credentials are replaced.
    base: Secret<String>,
    url: DbUrl,
    context: String,
    held: Option<Held>,
    /// While nothing is held: when to ask Vault next.
    ask_at: Instant,
}

impl DynamicCredentials {
    pub fn new(
        vault: &VaultSettings,
        db: &DatabaseVaultSettings,
        base: &Secret<String>,
        context: &str,
    ) -> anyhow::Result<Self> {
        // Fail at start on a URL the credentials cannot be put into.
        url_with_credentials(base.expose(), "u", "p")?;
        Ok(Self {
            engine: VaultDatabase::new(vault, db)?,
            base: base.clone(),
            url: DbUrl::pending(),
            context: context.to_owned(),
            held: None,
            ask_at: Instant::now(),
        })
    }

    /// The URL connections use (no credentials until the first are issued).
    pub fn url(&self) -> DbUrl {
        self.url.clone()
    }

    /// Asks Vault once for the first credentials. Without them the service starts
    /// anyway, not ready, and the task asks again. Returns the lease's duration.
    pub async fn first(&mut self) -> Option<Duration> {
        match self.engine.issue().await {
            Ok(issued) => {
                let granted = issued.lease_duration;
                if let Err(e) = self.install(issued) {
                    tracing::error!(error = %e, "cannot use the database credentials from Vault");
                    return None;
                }
                Some(granted)
            }
            Err(e) => {
                tracing::warn!(error = %e, role = %self.engine.role(),
                    "no database credentials from Vault yet; will retry");
                self.ask_at = Instant::now() + Backoff::FIRST;
                None
            }
        }
    }

    fn install(&mut self, issued: Issued) -> anyhow::Result<()> {
        let url = url_with_credentials(
            self.base.expose(),
            &issued.username,
            issued.password.expose(),
        )?;
        let now = Instant::now();
        tracing::info!(
            user = %issued.username,
            lease_secs = issued.lease_duration.as_secs(),
            renewable = issued.renewable,
            "database credentials issued by Vault"
        );
        self.url.replace(Secret::new(url), issued.username.clone());
        self.record_expiry(issued.lease_duration);
        self.held = Some(Held {
            username: issued.username,
            lease_id: issued.lease_id,
            increment: issued.lease_duration,
            renewable: issued.renewable,
            expires: now + issued.lease_duration,
            renew_at: now + renew_after(issued.lease_duration),
        });
        Ok(())
    }

    fn record_expiry(&self, granted: Duration) {
        let at = chrono::Utc::now() + chrono::Duration::seconds(granted.as_secs() as i64);
        metrics::gauge!("db_credentials_expiry_timestamp_seconds", "context" => self.context.clone())
            .set(at.timestamp() as f64);
    }

    /// Renews and rotates the credentials for as long as the service runs; after a
    /// rotation, retires `pool`'s idle connections of the previous user at once and
    /// again before its lease ends.
    pub fn spawn(mut self, pool: PgPool) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = Backoff(Backoff::FIRST);
            let mut sweep_at: Option<Instant> = None;
            loop {
                let next = match &self.held {
                    None => self.ask_at,
                    Some(h) => h.renew_at,
                };
                let wake = sweep_at.map_or(next, |s| s.min(next));
                tokio::time::sleep_until(wake).await;
                if sweep_at.is_some_and(|s| s <= Instant::now()) {
                    sweep_at = None;
                    sweep(&pool).await;
                }
                if Instant::now() < next {
                    continue;
                }
                match self.step(&mut backoff).await {
                    Step::Kept => {}
                    Step::Rotated { previous_expires } => {
                        sweep(&pool).await;
                        // Connections in use during the rotation come back later: look
                        // again halfway to the end of the previous lease.
                        let now = Instant::now();
                        sweep_at = previous_expires
                            .filter(|e| *e > now)
                            .map(|e| now + (e - now) / 2);
                    }
                }
            }
        })
    }

    async fn step(&mut self, backoff: &mut Backoff) -> Step {
        let Some(held) = &self.held else {
            // No credentials: ask until Vault gives some.
            return self.rotate(backoff, None).await;
        };
        let (username, lease_id, increment, expires) = (
            held.username.clone(),
            held.lease_id.clone(),
            held.increment,
            held.expires,
        );
        if !held.renewable {
            return self.rotate(backoff, Some(expires)).await;
        }
        let now = Instant::now();
        match self.engine.renew(&lease_id, increment).await {
            Ok(granted) => {
                backoff.reset();
                self.record_expiry(granted);
                let expires = now + granted;
                if let Some(held) = self.held.as_mut() {
                    held.expires = expires;
                    held.renew_at = now + renew_after(granted);
                }
                if granted >= increment {
                    tracing::debug!(user = %username, granted_secs = granted.as_secs(),
                        "database credentials renewed");
                    return Step::Kept;
                }
                tracing::info!(user = %username, remaining_secs = granted.as_secs(),
                    "database credentials near their maximum TTL; rotating");
                self.rotate(backoff, Some(expires)).await
            }
            Err(VaultCallError::Refused { status, message }) => {
                tracing::warn!(status, reason = %message, user = %username,
                    "Vault refused to renew the database credentials; rotating");
                self.rotate(backoff, Some(expires)).await
            }
            Err(e @ VaultCallError::Unavailable(_)) => {
                let delay = backoff.next_delay();
                let valid_secs = expires.saturating_duration_since(now).as_secs();
                tracing::warn!(error = %e, user = %username, valid_secs,
                    retry_in_secs = delay.as_secs(),
                    "cannot renew the database credentials; keeping them while they are valid");
                if let Some(held) = self.held.as_mut() {
                    held.renew_at = Instant::now() + delay;
                }
                Step::Kept
            }
        }
    }

    /// Fetches new credentials and makes them current; on failure keeps the current
    /// ones (while they are valid) and schedules another attempt with backoff.
    async fn rotate(&mut self, backoff: &mut Backoff, previous_expires: Option<Instant>) -> Step {
        match self.engine.issue().await {
            Ok(issued) => match self.install(issued) {
                Ok(()) => {
                    backoff.reset();
                    Step::Rotated { previous_expires }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot use the database credentials from Vault");
                    self.retry_later(backoff);
                    Step::Kept
                }
            },
            Err(e) => {
                let valid_secs = self.held.as_ref().map_or(0, |h| {
                    h.expires
                        .saturating_duration_since(Instant::now())
                        .as_secs()
                });
                tracing::warn!(error = %e, role = %self.engine.role(), valid_secs,
                    "cannot get new database credentials from Vault; will retry");
                self.retry_later(backoff);
                Step::Kept
            }
        }
    }

    fn retry_later(&mut self, backoff: &mut Backoff) {
        let delay = backoff.next_delay();
        match self.held.as_mut() {
            // Renewal is over for this lease: from now on only new credentials help, so
            // the next attempt goes straight to a rotation.
            Some(h) => {
                h.renewable = false;
                h.renew_at = Instant::now() + delay;
            }
            None => self.ask_at = Instant::now() + delay,
        }
    }
}

enum Step {
    Kept,
    Rotated { previous_expires: Option<Instant> },
}

async fn sweep(pool: &PgPool) {
    let pool = pool.clone();
    let _ = tokio::task::spawn_blocking(move || crate::db::retire_stale(&pool)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_into_the_url_encoded() {
        assert_eq!(
            url_with_credentials(
                "postgres://payments_app@127.0.0.1:5432/fleet",
                "v-token-payments-app-x1",
                "p@ss:w/rd"
            )
            .unwrap(),
            "postgres://v-token-payments-app-x1:p%40ss%3Aw%2Frd@127.0.0.1:5432/fleet"
        );
        assert_eq!(
            url_with_credentials("postgresql://127.0.0.1/fleet?sslmode=disable", "u", "p").unwrap(),
            "postgresql://u:p@127.0.0.1/fleet?sslmode=disable"
        );
        assert!(url_with_credentials("127.0.0.1/fleet", "u", "p").is_err());
    }

    #[test]
    fn renewal_at_two_thirds_and_backoff_to_thirty_seconds() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(2400)
        );
        assert_eq!(renew_after(Duration::from_secs(6)), Duration::from_secs(4));
        assert_eq!(
            renew_after(Duration::from_millis(600)),
            Duration::from_millis(500)
        );
        let mut b = Backoff(Backoff::FIRST);
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn vault_paths_are_plain() {
        assert!(check_path_segment("x", "database").is_ok());
        assert!(check_path_segment("x", "payments-app").is_ok());
        assert!(check_path_segment("x", "").is_err());
        assert!(check_path_segment("x", "../sys").is_err());
        assert!(check_path_segment("x", "a?b").is_err());
    }
}
