//! The transactional outbox: events are written in the same transaction as the state
//! change, then a relay publishes them in batches with publisher confirms.
//!
//! Rows are leased (`FOR UPDATE SKIP LOCKED`, then a `leased_until` time) so several relay
//! replicas can share one outbox without publishing a row twice in the normal case; a
//! relay that dies leaves its lease to expire, and consumers' inboxes absorb the rare
//! duplicate. The relay wakes on LISTEN/NOTIFY and also polls.

use crate::amqp::{declare_exchange, Broker};
use crate::db::PgPool;
use crate::event::CloudEvent;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Text, Uuid as SqlUuid};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Writes `event` to the outbox. Call inside the transaction that changes the state.
pub fn enqueue(conn: &mut PgConnection, event: &CloudEvent) -> QueryResult<()> {
    let payload = serde_json::to_value(event)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query("INSERT INTO outbox (event_id, event_type, payload) VALUES ($1, $2, $3)")
        .bind::<SqlUuid, _>(event.id)
        .bind::<Text, _>(&event.event_type)
        .bind::<Jsonb, _>(payload)
        .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Exchange the events go to; the routing key is the event type.
    pub exchange: String,
    /// NOTIFY channel the outbox trigger signals (`outbox_<schema>`).
    pub notify_channel: String,
    pub database_url: crate::secrets::Secret<String>,
    pub schema: String,
    pub batch_size: i32,
    pub poll_interval: Duration,
    pub lease: Duration,
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

/// Starts the relay on the current tokio runtime, and its LISTEN thread.
pub fn spawn_relay(
    pool: PgPool,
    broker: Arc<Broker>,
    config: RelayConfig,
) -> tokio::task::JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    spawn_listener(config.clone(), wake.clone());
    tokio::spawn(run_relay(pool, broker, config, wake))
}

/// A thread that holds a LISTEN connection and turns notifications into wake-ups.
/// Reconnects when the database goes away; the relay's poll covers the gap.
fn spawn_listener(config: RelayConfig, wake: Arc<Notify>) {
    let spawned = std::thread::Builder::new().name(format!("outbox-listen-{}", config.schema)).spawn(move || loop {
        let conn = PgConnection::establish(config.database_url.expose()).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {}", config.notify_channel))
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(c)
        });
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "outbox listener cannot connect; relying on polling");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            let mut woke = false;
            let mut broken = false;
            for n in conn.notifications_iter() {
                match n {
                    Ok(_) => woke = true,
                    Err(_) => broken = true,
                }
            }
            if woke {
                wake.notify_one();
            }
            if broken {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the outbox listener; relying on polling");
    }
}

async fn run_relay(pool: PgPool, broker: Arc<Broker>, config: RelayConfig, wake: Arc<Notify>) {
    let mut channel: Option<Channel> = None;
    let mut measured = Instant::now() - Duration::from_secs(60);
    loop {
        if measured.elapsed() >= Duration::from_secs(5) {
            measured = Instant::now();
            record_backlog(&pool, &config.exchange).await;
        }
        match relay_once(&pool, &broker, &config, &mut channel).await {
            Ok(n) if n as i32 >= config.batch_size => continue, // more waiting: go on at once
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, exchange = %config.exchange, "outbox relay failed; will retry");
                channel = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let _ = tokio::time::timeout(config.poll_interval, wake.notified()).await;
    }
}

/// Outbox backlog and the age of its oldest row, as gauges per exchange.
async fn record_backlog(pool: &PgPool, exchange: &str) {
    let measured = crate::db::run(pool, |conn| backlog(conn).map_err(crate::db::db_problem)).await;
    if let Ok((rows, age)) = measured {
        metrics::gauge!("outbox_backlog", "exchange" => exchange.to_owned()).set(rows as f64);
        metrics::gauge!("outbox_oldest_unpublished_seconds", "exchange" => exchange.to_owned())
            .set(age);
    }
}

async fn open_channel(broker: &Broker, exchange: &str) -> anyhow::Result<Channel> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_exchange(&channel, exchange).await?;
    Ok(channel)
}

/// Leases a batch, publishes it, waits for the confirms, marks the acked rows published.
async fn relay_once(
    pool: &PgPool,
    broker: &Broker,
    config: &RelayConfig,
    channel: &mut Option<Channel>,
) -> anyhow::Result<usize> {
    let (batch, lease_secs) = (config.batch_size, config.lease.as_secs_f64());
    let rows: Vec<Row> = crate::db::run(pool, move |conn| {
        diesel::sql_query(
            "UPDATE outbox SET leased_until = now() + make_interval(secs => $2) WHERE id IN ( \
               SELECT id FROM outbox WHERE published_at IS NULL \
                 AND (leased_until IS NULL OR leased_until < now()) \
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, event_type, payload",
        )
        .bind::<Integer, _>(batch)
        .bind::<diesel::sql_types::Double, _>(lease_secs)
        .load(conn)
        .map_err(crate::db::db_problem)
    })
    .await
    .map_err(|p| anyhow::anyhow!("leasing outbox rows: {p}"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut rows = rows;
    rows.sort_by_key(|r| r.id);
    let leased: Vec<i64> = rows.iter().map(|r| r.id).collect();
    match publish_batch(pool, broker, config, channel, &rows).await {
        Ok(()) => Ok(rows.len()),
        Err(e) => {
            // Give the rows back at once rather than when the lease runs out, so a
            // broker that returns is caught up with without waiting for the lease.
            release(pool, leased).await;
            Err(e)
        }
    }
}

/// Clears the lease of rows that were not published.
async fn release(pool: &PgPool, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let released = crate::db::run(pool, move |conn| {
        diesel::sql_query(
            "UPDATE outbox SET leased_until = NULL WHERE id = ANY($1) AND published_at IS NULL",
        )
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
        .map_err(crate::db::db_problem)
    })
    .await;
    if let Err(p) = released {
        tracing::warn!(problem = %p, "could not release outbox leases; they expire by themselves");
    }
}

async fn publish_batch(
    pool: &PgPool,
    broker: &Broker,
    config: &RelayConfig,
    channel: &mut Option<Channel>,
    rows: &[Row],
) -> anyhow::Result<()> {
    if channel.as_ref().is_none_or(|c| !c.status().connected()) {
        *channel = Some(open_channel(broker, &config.exchange).await?);
    }
    let ch = channel
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no channel"))?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let body = serde_json::to_vec(&row.payload)?;
        let props = BasicProperties::default()
            .with_content_type("application/cloudevents+json".into())
            .with_delivery_mode(2)
            .with_message_id(row.payload["id"].as_str().unwrap_or_default().into());
        let confirm = ch
            .basic_publish(
                config.exchange.as_str().into(),
                row.event_type.as_str().into(),
                BasicPublishOptions {
                    mandatory: false,
                    ..Default::default()
                },
                &body,
                props,
            )
            .await?;
        pending.push((row.id, confirm));
    }
    let mut acked = Vec::with_capacity(pending.len());
    let mut nacked = Vec::new();
    for (id, confirm) in pending {
        match confirm.await? {
            Confirmation::Ack(_) | Confirmation::NotRequested => acked.push(id),
            Confirmation::Nack(_) => {
                tracing::warn!(outbox_id = id, "broker nacked; row stays unpublished");
                nacked.push(id);
            }
        }
    }
    release(pool, nacked).await;
    let n = acked.len();
    crate::db::run(pool, move |conn| {
        diesel::sql_query(
            "UPDATE outbox SET published_at = now(), leased_until = NULL WHERE id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(acked)
        .execute(conn)
        .map_err(crate::db::db_problem)
    })
    .await
    .map_err(|p| anyhow::anyhow!("marking outbox rows published: {p}"))?;
    metrics::counter!("outbox_published_total", "exchange" => config.exchange.clone())
        .increment(n as u64);
    metrics::histogram!("outbox_batch_seconds").record(started.elapsed().as_secs_f64());
    tracing::debug!(published = n, "outbox batch published");
    Ok(())
}
