//! The relay task: finds rows (polling or cdc), publishes them, measures the backlog,
//! prunes; and the thread that turns NOTIFYs into wake-ups.

use super::cdc::Follower;
use super::prune::Pruner;
use super::publish::{publish_rows, Row};
use super::{with_conn, RelayConfig, RelayMode};
use crate::amqp::Broker;
use crate::db::PgPool;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Integer};
use lapin::Channel;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// What one relay owns: its pool, its broker, its configuration and its channel.
pub(super) struct Relay {
    pub pool: PgPool,
    pub broker: Arc<Broker>,
    pub config: RelayConfig,
    pub channel: Option<Channel>,
}

/// What one step did: rows leased and published. `more` means rows are known to be
/// waiting, so the next step should follow at once.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Step {
    pub leased: usize,
    pub published: usize,
    pub more: bool,
}

/// 200 ms doubling to 5 s; back to 200 ms after a success.
pub(super) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self(Self::FIRST)
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        d
    }
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

pub(super) fn spawn(
    pool: PgPool,
    broker: Arc<Broker>,
    config: RelayConfig,
) -> tokio::task::JoinHandle<()> {
    let wake = Arc::new(Notify::new());
    spawn_listener(config.clone(), wake.clone());
    let relay = Relay {
        pool,
        broker,
        config,
        channel: None,
    };
    tokio::spawn(run(relay, wake))
}

async fn run(mut relay: Relay, wake: Arc<Notify>) {
    let mut backoff = Backoff::new();
    let mut measured = Instant::now() - BACKLOG_EVERY;
    let mut pruner = Pruner::new();
    let mut follower = Follower::new();
    loop {
        if measured.elapsed() >= BACKLOG_EVERY {
            measured = Instant::now();
            record_backlog(&relay.pool, &relay.config.exchange).await;
        }
        pruner.maybe_step(&relay).await;
        let step = match super::publish::ensure_channel(&mut relay).await {
            Err(e) => Err(e),
            Ok(()) => match relay.config.mode {
                RelayMode::Polling => poll_once(&mut relay).await,
                RelayMode::Cdc => follower.step(&mut relay).await,
            },
        };
        match step {
            Ok(s) => {
                backoff.reset();
                if s.more {
                    continue;
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if super::slots::is_fatal(&e) {
                    tracing::error!(error = %e, exchange = %relay.config.exchange, "outbox relay cannot run in cdc mode");
                } else {
                    tracing::warn!(error = %e, exchange = %relay.config.exchange,
                        retry_in_ms = delay.as_millis() as u64, "outbox relay failed; will retry");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(relay.config.poll_interval, wake.notified()).await;
    }
}

/// Leases the oldest rows nobody holds and publishes them.
pub(super) async fn poll_once(relay: &mut Relay) -> anyhow::Result<Step> {
    let started = Instant::now();
    let (batch, lease) = (relay.config.batch_size, relay.config.lease.as_secs_f64());
    let rows: Vec<Row> = with_conn(&relay.pool, "leasing outbox rows", move |conn| {
        diesel::sql_query(
            "UPDATE outbox SET leased_until = now() + make_interval(secs => $2) WHERE id IN ( \
               SELECT id FROM outbox WHERE published_at IS NULL \
                 AND (leased_until IS NULL OR leased_until < now()) \
                 AND (retry_at IS NULL OR retry_at <= now()) \
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, event_type, payload",
        )
        .bind::<Integer, _>(batch)
        .bind::<Double, _>(lease)
        .load(conn)
    })
    .await?;
    publish_leased(relay, rows, started, batch).await
}

/// Leases those of `ids` that are unpublished and not held by another relay.
pub(super) async fn lease_ids(relay: &Relay, ids: Vec<i64>) -> anyhow::Result<Vec<Row>> {
    let lease = relay.config.lease.as_secs_f64();
    with_conn(&relay.pool, "leasing outbox rows", move |conn| {
        diesel::sql_query(
            "UPDATE outbox SET leased_until = now() + make_interval(secs => $2) WHERE id IN ( \
               SELECT id FROM outbox WHERE id = ANY($1) AND published_at IS NULL \
                 AND (leased_until IS NULL OR leased_until < now()) \
                 AND (retry_at IS NULL OR retry_at <= now()) \
               FOR UPDATE SKIP LOCKED) \
             RETURNING id, event_type, payload",
        )
        .bind::<Array<BigInt>, _>(ids)
        .bind::<Double, _>(lease)
        .load(conn)
    })
    .await
}

/// Publishes leased rows in id order; `more` when a full batch was leased.
pub(super) async fn publish_leased(
    relay: &mut Relay,
    mut rows: Vec<Row>,
    started: Instant,
    batch: i32,
) -> anyhow::Result<Step> {
    if rows.is_empty() {
        return Ok(Step::default());
    }
    rows.sort_by_key(|r| r.id);
    let leased = rows.len();
    let outcome = publish_rows(relay, rows, started).await?;
    Ok(Step {
        leased,
        published: outcome.published,
        more: leased >= batch.max(1) as usize,
    })
}

/// Outbox backlog and the age of its oldest row, as gauges per exchange.
async fn record_backlog(pool: &PgPool, exchange: &str) {
    if let Ok((rows, age)) = with_conn(pool, "measuring the backlog", super::backlog).await {
        metrics::gauge!("outbox_backlog", "exchange" => exchange.to_owned()).set(rows as f64);
        metrics::gauge!("outbox_oldest_unpublished_seconds", "exchange" => exchange.to_owned())
            .set(age);
    }
}

/// A thread that holds a LISTEN connection and turns notifications into wake-ups.
/// Reconnects when the database goes away, and when the credentials are rotated; the
/// relay's poll covers the gap.
fn spawn_listener(config: RelayConfig, wake: Arc<Notify>) {
    let name = format!("outbox-listen-{}", config.schema);
    // The relay task holds the other reference: once it is gone, so is this thread.
    let orphaned = |wake: &Arc<Notify>| Arc::strong_count(wake) <= 1;
    let spawned = std::thread::Builder::new().name(name).spawn(move || loop {
        if orphaned(&wake) {
            return;
        }
        let generation = config.database_url.generation();
        let conn = config.database_url.establish().and_then(|mut c| {
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
            if broken || orphaned(&wake) {
                break;
            }
            // Rotated credentials: listen again as the new user before the old one goes.
            if config.database_url.generation() != generation {
                wake.notify_one();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the outbox listener; relying on polling");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }
}
