//! The transactional outbox: events are written in the same transaction as the state
//! change, then a relay publishes them in batches with publisher confirms.
//!
//! Rows are leased (`FOR UPDATE SKIP LOCKED`, then a `leased_until` time) so several relay
//! replicas can share one outbox without publishing a row twice in the normal case; a
//! relay that dies leaves its lease to expire, and consumers' inboxes absorb the rare
//! duplicate. Messages are `mandatory`: one the broker cannot route is returned, its row
//! stays unpublished and is retried later (`attempts`, `retry_at`).
//!
//! Two ways to find new rows ([`RelayMode`]): polling the table (woken by LISTEN/NOTIFY),
//! or following a logical replication slot of the database (`cdc`). Both lease rows the
//! same way and share the publishing code, so they can run side by side. The relay also
//! prunes published rows after a retention period, keeping the newest snapshot event of
//! each subject forever ([`history`]).

mod cdc;
mod prune;
mod publish;
mod relay;
mod slots;

pub use slots::{drop_slots, drop_slots_for_database, slot_name};

use crate::amqp::Broker;
use crate::db::PgPool;
use crate::event::CloudEvent;
use crate::secrets::Secret;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Text, Uuid as SqlUuid};
use std::sync::Arc;
use std::time::Duration;

/// Writes `event` to the outbox. Call inside the transaction that changes the state.
/// An event without a `traceparent` gets the current span's, so the trace continues in
/// its consumers.
pub fn enqueue(conn: &mut PgConnection, event: &CloudEvent) -> QueryResult<()> {
    let traced;
    let event = match (&event.traceparent, crate::trace::current_traceparent()) {
        (None, Some(tp)) => {
            traced = CloudEvent {
                traceparent: Some(tp),
                ..event.clone()
            };
            &traced
        }
        _ => event,
    };
    let payload = serde_json::to_value(event)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query("INSERT INTO outbox (event_id, event_type, payload) VALUES ($1, $2, $3)")
        .bind::<SqlUuid, _>(event.id)
        .bind::<Text, _>(&event.event_type)
        .bind::<Jsonb, _>(payload)
        .execute(conn)?;
    Ok(())
}

/// The AMQP properties of an event message: CloudEvents JSON, persistent, the event id as
/// message id, and its W3C trace context also as a `traceparent` header (for consumers
/// that read headers rather than the event).
pub fn message_properties(event_id: &str, traceparent: Option<&str>) -> lapin::BasicProperties {
    let mut headers = lapin::types::FieldTable::default();
    if let Some(tp) = traceparent {
        headers.insert(
            "traceparent".into(),
            lapin::types::AMQPValue::LongString(tp.into()),
        );
    }
    lapin::BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_delivery_mode(2)
        .with_message_id(event_id.into())
        .with_headers(headers)
}

/// How the relay finds rows to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Lease the oldest unpublished rows of the table (woken by NOTIFY, and polling).
    #[default]
    Polling,
    /// Follow the inserts into the outbox through a logical replication slot
    /// (`test_decoding`); needs `wal_level = logical` and the REPLICATION attribute.
    Cdc,
}

impl std::fmt::Display for RelayMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Polling => "polling",
            Self::Cdc => "cdc",
        })
    }
}

impl std::str::FromStr for RelayMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "polling" => Ok(Self::Polling),
            "cdc" => Ok(Self::Cdc),
            other => Err(format!("unknown outbox mode {other:?}; use polling or cdc")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Exchange the events go to; the routing key is the event type.
    pub exchange: String,
    /// NOTIFY channel the outbox trigger signals (`outbox_<schema>`).
    pub notify_channel: String,
    /// The credentials of the LISTEN connection: the pool's (fixed, or Vault's current
    /// dynamic ones; the listener reconnects when they are rotated).
    pub database_url: crate::db::DbUrl,
    pub schema: String,
    pub batch_size: i32,
    /// How often the table (polling) or the slot (cdc) is read without a NOTIFY.
    pub poll_interval: Duration,
    /// How long a leased row is reserved for this relay. In cdc mode also how often the
    /// table is swept for rows the slot no longer shows (given back, or leased by a relay
    /// that died).
    pub lease: Duration,
    pub mode: RelayMode,
    /// Published rows older than this are deleted, except the newest snapshot per subject.
    pub retention: Duration,
    /// How often the relay prunes.
    pub prune_interval: Duration,
    /// Event types that are full snapshots of their subject (`payload->>'subject'`): the
    /// newest published one per subject is never pruned.
    pub snapshot_types: Vec<String>,
    /// Event types published for whoever may listen, without the `mandatory` flag: no
    /// subscriber is not an error for them. Every other type must be routable.
    pub broadcast_types: Vec<String>,
    /// Fault injection for the fault tests: abort the process after the broker confirmed
    /// a batch and before its rows are marked published. Never set in production.
    pub crash_after_publish: bool,
}

/// What a context says of its own event types, for its relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventTypes {
    /// Full snapshots of their subject (kept, newest per subject, for rebuilds).
    pub snapshots: &'static [&'static str],
    /// Published whether or not anyone subscribes.
    pub broadcasts: &'static [&'static str],
}

impl RelayConfig {
    /// The defaults for `schema`'s outbox (its NOTIFY channel, batches of 100, polling).
    pub fn new(exchange: &str, schema: &str, database_url: Secret<String>) -> Self {
        Self {
            exchange: exchange.to_owned(),
            notify_channel: format!("outbox_{schema}"),
            database_url: crate::db::DbUrl::fixed(database_url),
            schema: schema.to_owned(),
            batch_size: 100,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            mode: RelayMode::Polling,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(300),
            snapshot_types: Vec::new(),
            broadcast_types: Vec::new(),
            crash_after_publish: false,
        }
    }
}

/// Unpublished rows and the age of the oldest, for metrics and readiness.
pub fn backlog(conn: &mut PgConnection) -> QueryResult<(i64, f64)> {
    #[derive(QueryableByName)]
    struct B {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        age: f64,
    }
    let b: B = diesel::sql_query(
        "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age \
         FROM outbox WHERE published_at IS NULL",
    )
    .get_result(conn)?;
    Ok((b.n, b.age))
}

/// For each subject, its newest event among `event_types` (by outbox id), published or
/// not yet, in outbox order: the compacted history a consumer's projection can be rebuilt
/// from when those types are full snapshots (see [`RelayConfig::snapshot_types`]).
pub fn history(conn: &mut PgConnection, event_types: &[&str]) -> QueryResult<Vec<CloudEvent>> {
    #[derive(QueryableByName)]
    struct H {
        #[diesel(sql_type = Jsonb)]
        payload: serde_json::Value,
    }
    let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
    let rows: Vec<H> = diesel::sql_query(
        "SELECT payload FROM ( \
           SELECT DISTINCT ON (payload->>'subject') id, payload FROM outbox \
           WHERE event_type = ANY($1) ORDER BY payload->>'subject', id DESC) newest \
         ORDER BY id",
    )
    .bind::<Array<Text>, _>(types)
    .load(conn)?;
    rows.into_iter()
        .map(|h| {
            serde_json::from_value(h.payload)
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
        })
        .collect()
}

/// Starts the relay on the current tokio runtime, and its LISTEN thread. In cdc mode a
/// database without `wal_level = logical` is reported by the relay task (as an error,
/// retried); prefer [`start_relay`], which refuses to start instead.
pub fn spawn_relay(
    pool: PgPool,
    broker: Arc<Broker>,
    config: RelayConfig,
) -> tokio::task::JoinHandle<()> {
    relay::spawn(pool, broker, config)
}

/// Like [`spawn_relay`], but in cdc mode first checks that the database can do logical
/// decoding: `wal_level` other than `logical` is an error here, so the service does not
/// start (there is no silent fall-back to polling). A database that does not answer yet
/// is not an error: the relay checks again when it does.
pub async fn start_relay(
    pool: PgPool,
    broker: Arc<Broker>,
    config: RelayConfig,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if config.mode == RelayMode::Cdc {
        match with_conn(&pool, "reading wal_level", slots::wal_level).await {
            Ok(level) => slots::require_logical(&level)?,
            Err(e) => tracing::warn!(error = %e, "cannot check wal_level yet; the relay will"),
        }
    }
    Ok(relay::spawn(pool, broker, config))
}

/// Runs `f` on a pooled connection off the async workers; database errors keep their
/// cause (the pool's own errors become "unavailable").
async fn with_conn<T, F>(pool: &PgPool, what: &'static str, f: F) -> anyhow::Result<T>
where
    F: FnOnce(&mut PgConnection) -> QueryResult<T> + Send + 'static,
    T: Send + 'static,
{
    match crate::db::run(pool, move |conn| Ok(f(conn))).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(what)),
        Err(p) => Err(anyhow::anyhow!("{what}: {p}")),
    }
}
