//! PostgreSQL access: an r2d2 pool bound to one context's schema, embedded
//! migrations with a history per schema, and running blocking work off the async workers.

use crate::problem::Problem;
use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::Connection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

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

/// A pool whose connections use `schema` as their search path. Connections are made
/// lazily, so a service starts (and reports not-ready) while the database is away.
pub fn pool(url: &str, schema: &str, max_size: u32) -> anyhow::Result<PgPool> {
    pool_with_idle(url, schema, max_size, 1)
}

/// A pool for a short-lived command: it opens a connection only when asked, so none is
/// being opened in the background when the process exits (which can crash libpq's TLS
/// clean-up at exit).
pub fn command_pool(url: &str, schema: &str, max_size: u32) -> anyhow::Result<PgPool> {
    pool_with_idle(url, schema, max_size, 0)
}

fn pool_with_idle(url: &str, schema: &str, max_size: u32, idle: u32) -> anyhow::Result<PgPool> {
    check_schema_name(schema)?;
    let manager = ConnectionManager::<PgConnection>::new(url);
    Ok(Pool::builder()
        .max_size(max_size)
        .min_idle(Some(idle))
        .connection_timeout(Duration::from_secs(3))
        .connection_customizer(Box::new(SearchPath(schema.to_owned())))
        .build_unchecked(manager))
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
