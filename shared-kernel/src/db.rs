//! PostgreSQL access: an r2d2 pool bound to one context's schema, whose connections
//! use the current credentials (fixed, or Vault's dynamic ones: ADR 0020), embedded
//! migrations with a history per schema, and running blocking work off the async workers.

use crate::problem::Problem;
use crate::secrets::Secret;
use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, ConnectionError, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub type PgPool = Pool<Manager>;

/// The URL a service connects with: fixed (from configuration), or the credentials
/// Vault's database engine issued most recently, replaced at each rotation. Every clone
/// sees the same current value. Never printed.
#[derive(Clone)]
pub struct DbUrl(Arc<DbUrlInner>);

struct DbUrlInner {
    current: RwLock<Option<Current>>,
    /// Bumped at each replacement, so long-lived connections know to reconnect.
    generation: AtomicU64,
}

#[derive(Clone)]
struct Current {
    url: Secret<String>,
    /// The dynamic user the URL names; None for a fixed URL.
    user: Option<String>,
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUrl")
            .field("dynamic_user", &self.dynamic_user())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl From<Secret<String>> for DbUrl {
    fn from(url: Secret<String>) -> Self {
        Self::fixed(url)
    }
}

impl DbUrl {
    /// A URL that never changes (development, or credentials managed outside).
    pub fn fixed(url: Secret<String>) -> Self {
        Self::with(Some(Current { url, user: None }))
    }

    /// No credentials yet: connections fail until [`DbUrl::replace`] is first called.
    pub fn pending() -> Self {
        Self::with(None)
    }

    fn with(current: Option<Current>) -> Self {
        Self(Arc::new(DbUrlInner {
            current: RwLock::new(current),
            generation: AtomicU64::new(0),
        }))
    }

    fn read(&self) -> Option<Current> {
        match self.0.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The URL connections are made with now, if there is one.
    pub fn current(&self) -> Option<Secret<String>> {
        self.read().map(|c| c.url)
    }

    /// The dynamic user connections must be made as now; None for a fixed URL.
    pub fn dynamic_user(&self) -> Option<String> {
        self.read().and_then(|c| c.user)
    }

    /// How many times the credentials were replaced.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::SeqCst)
    }

    /// New credentials (a dynamic `user` and the URL that carries its password): new
    /// connections use them, and connections of other users are retired.
    pub fn replace(&self, url: Secret<String>, user: String) {
        let next = Some(Current {
            url,
            user: Some(user),
        });
        match self.0.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.0.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Opens a connection with the current credentials.
    pub fn establish(&self) -> Result<PgConnection, ConnectionError> {
        match self.current() {
            Some(url) => PgConnection::establish(url.expose()),
            None => Err(ConnectionError::BadConnection(
                "no database credentials from Vault yet".to_owned(),
            )),
        }
    }
}

/// Why the manager refuses a connection made with rotated credentials.
const RETIRED: &str = "connection made with rotated credentials; retired";

/// Logs the pool's errors as r2d2 does (at error level), except the retirement of a
/// connection made with rotated credentials, which is routine.
#[derive(Debug)]
struct PoolErrors;

impl r2d2::HandleError<diesel::r2d2::Error> for PoolErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        match &error {
            diesel::r2d2::Error::ConnectionError(ConnectionError::BadConnection(m))
                if m == RETIRED =>
            {
                tracing::debug!("{RETIRED}");
            }
            _ => tracing::error!(error = %error, "database pool"),
        }
    }
}

/// The pool's connection manager: each new connection uses the current URL, and a
/// connection made as a dynamic user that is no longer the current one is retired when
/// it is next checked out (ADR 0020).
#[derive(Debug, Clone)]
pub struct Manager {
    url: DbUrl,
}

impl Manager {
    pub fn new(url: DbUrl) -> Self {
        Self { url }
    }
}

impl ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConnection, Self::Error> {
        self.url
            .establish()
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Self::Error> {
        let Some(user) = self.url.dynamic_user() else {
            return conn.ping().map_err(diesel::r2d2::Error::QueryError);
        };
        // One round trip, like the ping it replaces, that also says who we are.
        let session_user: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
            "session_user::text",
        ))
        .get_result(conn)
        .map_err(diesel::r2d2::Error::QueryError)?;
        if session_user == user {
            Ok(())
        } else {
            Err(diesel::r2d2::Error::ConnectionError(
                ConnectionError::BadConnection(RETIRED.to_owned()),
            ))
        }
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Checks out every idle connection once, so those of rotated credentials are dropped
/// now rather than at their next use (r2d2 validates on checkout), then gives the
/// others back. Blocking; returns how many connections were idle and still current.
pub fn retire_stale(pool: &PgPool) -> usize {
    let mut held = Vec::new();
    for _ in 0..pool.max_size() {
        match pool.try_get() {
            Some(c) => held.push(c),
            None => break,
        }
    }
    held.len()
}

/// Every connection of a context's pool sees only its own schema first.
#[derive(Debug, Clone)]
struct SearchPath(String);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SearchPath {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!("SET search_path TO {}", self.0))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

pub(crate) fn check_schema_name(schema: &str) -> anyhow::Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        bail!("invalid schema name {schema:?}");
    }
    Ok(())
}

/// A pool on a fixed URL whose connections use `schema` as their search path.
/// Connections are made lazily, so a service starts (and reports not-ready) while the
/// database is away.
pub fn pool(url: &str, schema: &str, max_size: u32) -> anyhow::Result<PgPool> {
    build(
        &DbUrl::fixed(Secret::new(url.to_owned())),
        schema,
        max_size,
        None,
        1,
    )
}

/// A pool for a short-lived command: it opens a connection only when asked, so none is
/// being opened in the background when the process exits (which can crash libpq's TLS
/// clean-up at exit).
pub fn command_pool(url: &str, schema: &str, max_size: u32) -> anyhow::Result<PgPool> {
    build(
        &DbUrl::fixed(Secret::new(url.to_owned())),
        schema,
        max_size,
        None,
        0,
    )
}

/// A pool on `url`, fixed or dynamic, whose connections use `schema` as their search
/// path. `max_lifetime` (r2d2's default, 30 minutes, when None) closes connections
/// older than it; r2d2 looks for them every 30 seconds.
pub fn pool_with(
    url: &DbUrl,
    schema: &str,
    max_size: u32,
    max_lifetime: Option<Duration>,
) -> anyhow::Result<PgPool> {
    build(url, schema, max_size, max_lifetime, 1)
}

fn build(
    url: &DbUrl,
    schema: &str,
    max_size: u32,
    max_lifetime: Option<Duration>,
    idle: u32,
) -> anyhow::Result<PgPool> {
    check_schema_name(schema)?;
    let mut builder = Pool::builder()
        .max_size(max_size)
        .min_idle(Some(idle))
        .connection_timeout(Duration::from_secs(3))
        .connection_customizer(Box::new(SearchPath(schema.to_owned())))
        .error_handler(Box::new(PoolErrors));
    if let Some(lifetime) = max_lifetime.filter(|l| !l.is_zero()) {
        builder = builder.max_lifetime(Some(lifetime));
    }
    Ok(builder.build_unchecked(Manager::new(url.clone())))
}

/// Publishes the pool's connections in use and idle, and its size, as gauges.
pub fn record_pool_metrics(pool: &PgPool, context: &str) {
    let state = pool.state();
    let in_use = state.connections.saturating_sub(state.idle_connections);
    let gauge = |state: &'static str, n: u32| {
        metrics::gauge!("db_pool_connections", "context" => context.to_owned(), "state" => state)
            .set(f64::from(n));
    };
    gauge("in_use", in_use);
    gauge("idle", state.idle_connections);
    metrics::gauge!("db_pool_max_connections", "context" => context.to_owned())
        .set(f64::from(pool.max_size()));
}

/// Creates the schema when missing and runs the pending migrations inside it; the
/// migration history table (`__diesel_schema_migrations`) lands in that schema too.
pub fn migrate(url: &str, schema: &str, migrations: EmbeddedMigrations) -> anyhow::Result<()> {
    check_schema_name(schema)?;
    let mut conn =
        PgConnection::establish(url).context("connecting to PostgreSQL for migrations")?;
    // An owner role without CREATE on the database finds its schema made for it.
    conn.batch_execute(&format!(
        "DO $$ BEGIN IF to_regnamespace('{schema}') IS NULL THEN CREATE SCHEMA {schema}; END IF; END $$; \
         SET search_path TO {schema}"
    ))
    .context("preparing the schema")?;
    conn.run_pending_migrations(migrations)
        .map_err(|e| anyhow::anyhow!("migrations of schema {schema} failed: {e}"))?;
    Ok(())
}

/// Runs `f` with a pooled connection on the blocking thread pool.
/// No connection within the pool's timeout is a 503 problem, not a hang.
pub async fn run<F, T>(pool: &PgPool, f: F) -> Result<T, Problem>
where
    F: FnOnce(&mut PgConnection) -> Result<T, Problem> + Send + 'static,
    T: Send + 'static,
{
    run_named(pool, "query", f).await
}

/// [`run`], in a `db` span named after the operation (never its parameters), a child of
/// the caller's span, so the trace shows each transaction.
pub async fn run_named<F, T>(pool: &PgPool, operation: &'static str, f: F) -> Result<T, Problem>
where
    F: FnOnce(&mut PgConnection) -> Result<T, Problem> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    let span = tracing::info_span!("db", db.system = "postgresql", db.operation = operation);
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let mut conn = pool.get().map_err(|e| {
            tracing::warn!(error = %e, "no database connection");
            Problem::unavailable("the database is unavailable; retry later")
        })?;
        f(&mut conn)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "blocking task failed");
        Problem::internal()
    })?
}

/// Maps a diesel error to a problem, logging the cause (never its parameters).
pub fn db_problem(e: diesel::result::Error) -> Problem {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::NotFound => Problem::not_found("resource"),
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
            Problem::conflict("a concurrent change interfered; retry the request")
        }
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
            Problem::unavailable("the database connection was lost; retry later")
        }
        other => {
            tracing::error!(error = %other, "database error");
            Problem::internal()
        }
    }
}

impl From<diesel::result::Error> for Problem {
    fn from(e: diesel::result::Error) -> Self {
        db_problem(e)
    }
}

/// Whether the database answers (readiness).
pub fn ping(pool: &PgPool) -> bool {
    match pool.get() {
        Ok(mut conn) => conn.batch_execute("SELECT 1").is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("payments").is_ok());
        assert!(check_schema_name("t_123").is_ok());
        assert!(check_schema_name("payments; drop table x").is_err());
        assert!(check_schema_name("Payments").is_err());
        assert!(check_schema_name("").is_err());
    }
}
