//! Pruning: published rows older than the retention period are deleted in small batches,
//! except the newest published snapshot event of each subject, so the outbox stays a
//! compacted history (see [`super::history`]).
//!
//! A run walks the published rows in `(published_at, id)` order from a cursor, so the
//! snapshots it keeps are read once per run, not once per batch.

use super::relay::Relay;
use super::with_conn;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Integer, Nullable, Text, Timestamptz};
use std::time::{Duration, Instant};

/// Rows looked at per statement.
const BATCH: i32 = 1000;
/// Time one relay iteration may spend pruning before it publishes again.
const BUDGET: Duration = Duration::from_millis(250);

pub(super) struct Pruner {
    next_run: Instant,
    /// `Some` while a run is under way: where it has got to (`None` inside = the start).
    run: Option<Option<(DateTime<Utc>, i64)>>,
}

#[derive(QueryableByName)]
struct StepResult {
    #[diesel(sql_type = BigInt)]
    scanned: i64,
    #[diesel(sql_type = BigInt)]
    deleted: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_id: Option<i64>,
}

impl Pruner {
    /// The first run starts at once.
    pub fn new() -> Self {
        Self {
            next_run: Instant::now(),
            run: None,
        }
    }

    /// Deletes a few batches when a run is due or under way, within a small time budget.
    pub async fn maybe_step(&mut self, relay: &Relay) {
        if self.run.is_none() {
            if Instant::now() < self.next_run {
                return;
            }
            self.run = Some(None);
        }
        let started = Instant::now();
        while let Some(cursor) = self.run {
            match step(relay, cursor).await {
                Ok(r) => {
                    metrics::counter!("outbox_pruned_total", "exchange" => relay.config.exchange.clone())
                        .increment(r.deleted.max(0) as u64);
                    match (r.scanned < i64::from(BATCH), r.last_at, r.last_id) {
                        (false, Some(at), Some(id)) => self.run = Some(Some((at, id))),
                        _ => self.finish(relay),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, exchange = %relay.config.exchange, "outbox pruning failed; next run later");
                    self.finish(relay);
                }
            }
            if started.elapsed() >= BUDGET {
                break;
            }
        }
    }

    fn finish(&mut self, relay: &Relay) {
        self.run = None;
        self.next_run = Instant::now() + relay.config.prune_interval;
    }
}

/// One statement: looks at the next `BATCH` old published rows after `cursor` and deletes
/// those that are not the newest published snapshot of their subject.
async fn step(relay: &Relay, cursor: Option<(DateTime<Utc>, i64)>) -> anyhow::Result<StepResult> {
    let retention = relay.config.retention.as_secs_f64();
    let types = relay.config.snapshot_types.clone();
    with_conn(&relay.pool, "pruning the outbox", move |conn| {
        let after = if cursor.is_some() {
            "AND (published_at, id) > ($4, $5)"
        } else {
            "AND $4::timestamptz IS NULL AND $5::bigint IS NULL"
        };
        let sql = format!(
            "WITH scanned AS ( \
               SELECT id, published_at, event_type, payload->>'subject' AS subject FROM outbox \
               WHERE published_at IS NOT NULL \
                 AND published_at < now() - make_interval(secs => $1) {after} \
               ORDER BY published_at, id LIMIT $2 \
             ), deleted AS ( \
               DELETE FROM outbox o USING scanned s WHERE o.id = s.id AND ( \
                 NOT (s.event_type = ANY($3)) OR EXISTS ( \
                   SELECT 1 FROM outbox n WHERE n.event_type = ANY($3) \
                     AND n.published_at IS NOT NULL \
                     AND n.payload->>'subject' = s.subject AND n.id > s.id)) \
               RETURNING o.id \
             ) \
             SELECT (SELECT count(*) FROM scanned) AS scanned, \
                    (SELECT count(*) FROM deleted) AS deleted, \
                    last.published_at AS last_at, last.id AS last_id \
             FROM (SELECT 1) AS one LEFT JOIN LATERAL ( \
               SELECT published_at, id FROM scanned ORDER BY published_at DESC, id DESC LIMIT 1 \
             ) AS last ON true"
        );
        let (at, id) = match cursor {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        diesel::sql_query(sql)
            .bind::<Double, _>(retention)
            .bind::<Integer, _>(BATCH)
            .bind::<Array<Text>, _>(types)
            .bind::<Nullable<Timestamptz>, _>(at)
            .bind::<Nullable<BigInt>, _>(id)
            .get_result(conn)
    })
    .await
}
