//! Publishing leased rows: one batch of mandatory messages, the broker's confirms for
//! all of them, then the rows marked published or given back for a later retry.

use super::relay::Relay;
use super::with_conn;
use crate::amqp::{declare_exchange, Broker};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Text};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation};
use std::collections::HashSet;
use std::time::Instant;
use tracing::Instrument;

/// An outbox row leased for publishing.
#[derive(QueryableByName, Debug)]
pub(super) struct Row {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
}

/// What became of a batch whose messages all reached the broker.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Outcome {
    pub published: usize,
    pub unroutable: usize,
    pub nacked: usize,
}

/// Why a message was not published, as the `reason` label of the failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Unroutable,
    Nacked,
    Broker,
}

impl Failure {
    fn label(self) -> &'static str {
        match self {
            Self::Unroutable => "unroutable",
            Self::Nacked => "nacked",
            Self::Broker => "broker",
        }
    }
}

fn count_failures(exchange: &str, reason: Failure, n: usize) {
    if n > 0 {
        metrics::counter!("outbox_publish_failures_total",
            "exchange" => exchange.to_owned(), "reason" => reason.label())
        .increment(n as u64);
    }
}

/// Opens the relay's confirm channel when it has none, before any row is leased, so a
/// broker that is away costs no lease and no give-back. Each failure counts once.
pub(super) async fn ensure_channel(relay: &mut Relay) -> anyhow::Result<()> {
    if relay
        .channel
        .as_ref()
        .is_some_and(|c| c.status().connected())
    {
        return Ok(());
    }
    relay.channel = None;
    let channel = open_channel(&relay.broker, &relay.config.exchange)
        .await
        .inspect_err(|_| count_failures(&relay.config.exchange, Failure::Broker, 1))?;
    relay.channel = Some(channel);
    Ok(())
}

async fn open_channel(broker: &Broker, exchange: &str) -> anyhow::Result<Channel> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_exchange(&channel, exchange).await?;
    Ok(channel)
}

/// Publishes `rows` (leased by this relay) and records the result in the outbox.
/// `started` is when the batch was leased (for `outbox_batch_seconds`).
///
/// A broker or channel error gives every row back at once and is returned as an error
/// (the caller backs off and reconnects). A message the broker returns as unroutable or
/// nacks is counted, and its row is given back with a retry delay; the rest of the batch
/// is marked published.
pub(super) async fn publish_rows(
    relay: &mut Relay,
    rows: Vec<Row>,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let span = tracing::info_span!("outbox.publish_batch", exchange = %relay.config.exchange, rows = rows.len());
    let sent = send_and_confirm(relay, &rows).instrument(span).await;
    let (returned, nacked) = match sent {
        Ok(v) if relay.config.crash_after_publish => {
            tracing::error!(
                rows = rows.len(),
                returned = v.0.len(),
                "fault injection: the relay dies between publishing and marking"
            );
            std::process::abort();
        }
        Ok(v) => v,
        Err(e) => {
            count_failures(&relay.config.exchange, Failure::Broker, rows.len());
            relay.channel = None;
            // Give the rows back at once rather than when the lease runs out, so a
            // broker that returns is caught up with without waiting for the lease.
            release(relay, ids).await;
            return Err(e);
        }
    };
    let mut acked = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    let mut outcome = Outcome::default();
    for row in &rows {
        if nacked.contains(&row.id) {
            outcome.nacked += 1;
            failed.push(row.id);
        } else if returned.contains(event_id(row)) {
            outcome.unroutable += 1;
            failed.push(row.id);
        } else {
            acked.push(row.id);
        }
    }
    let exchange = relay.config.exchange.clone();
    count_failures(&exchange, Failure::Unroutable, outcome.unroutable);
    count_failures(&exchange, Failure::Nacked, outcome.nacked);
    if !failed.is_empty() {
        tracing::warn!(exchange = %exchange, unroutable = outcome.unroutable, nacked = outcome.nacked,
            "broker did not take some outbox rows; they stay unpublished and are retried");
    }
    outcome.published = acked.len();
    with_conn(
        &relay.pool,
        "recording the published outbox rows",
        move |conn| {
            conn.transaction(|conn| {
                diesel::sql_query(
                    "UPDATE outbox SET published_at = now(), leased_until = NULL \
                 WHERE id = ANY($1) AND published_at IS NULL",
                )
                .bind::<Array<BigInt>, _>(acked)
                .execute(conn)?;
                // Back off per row (1 s doubling to 60 s) so a row nobody can route neither
                // spins the relay nor keeps the rows behind it waiting.
                diesel::sql_query(
                    "UPDATE outbox SET leased_until = NULL, attempts = attempts + 1, \
                   retry_at = now() + make_interval(secs => least(60, 2 ^ least(attempts, 6))) \
                 WHERE id = ANY($1) AND published_at IS NULL",
                )
                .bind::<Array<BigInt>, _>(failed)
                .execute(conn)
            })
        },
    )
    .await?;
    metrics::counter!("outbox_published_total", "exchange" => exchange.clone())
        .increment(outcome.published as u64);
    metrics::histogram!("outbox_batch_seconds", "exchange" => exchange)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(published = outcome.published, "outbox batch published");
    Ok(outcome)
}

fn event_id(row: &Row) -> &str {
    row.payload["id"].as_str().unwrap_or_default()
}

/// Publishes every row as a mandatory message, then awaits all the confirms. Returns the
/// event ids the broker returned as unroutable and the outbox ids it nacked.
///
/// lapin hands a returned message to whichever confirm completes next (with multiple
/// acks, not necessarily its own), so returned messages are matched by `message_id`.
async fn send_and_confirm(
    relay: &mut Relay,
    rows: &[Row],
) -> anyhow::Result<(HashSet<String>, HashSet<i64>)> {
    let exchange = relay.config.exchange.clone();
    let ch = match relay.channel.take() {
        Some(ch) if ch.status().connected() => ch,
        _ => open_channel(&relay.broker, &exchange).await?,
    };
    relay.channel = Some(ch.clone());
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let body = serde_json::to_vec(&row.payload)?;
        let props = super::message_properties(event_id(row), row.payload["traceparent"].as_str());
        let confirm = ch
            .basic_publish(
                exchange.as_str().into(),
                row.event_type.as_str().into(),
                BasicPublishOptions {
                    mandatory: !relay.config.broadcast_types.contains(&row.event_type),
                    ..Default::default()
                },
                &body,
                props,
            )
            .await?;
        pending.push((row.id, confirm));
    }
    let mut returned = HashSet::new();
    let mut nacked = HashSet::new();
    for (id, confirm) in pending {
        let message = match crate::amqp::bounded("confirming a published event", confirm).await? {
            Confirmation::Ack(message) => message,
            Confirmation::Nack(message) => {
                nacked.insert(id);
                message
            }
            Confirmation::NotRequested => None,
        };
        if let Some(m) = message {
            if let Some(mid) = m.delivery.properties.message_id() {
                returned.insert(mid.as_str().to_owned());
            }
        }
    }
    Ok((returned, nacked))
}

/// Clears the lease of rows that were not published, without counting an attempt.
pub(super) async fn release(relay: &Relay, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let released = with_conn(&relay.pool, "releasing outbox leases", move |conn| {
        diesel::sql_query(
            "UPDATE outbox SET leased_until = NULL WHERE id = ANY($1) AND published_at IS NULL",
        )
        .bind::<Array<BigInt>, _>(ids)
        .execute(conn)
    })
    .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "could not release outbox leases; they expire by themselves");
    }
}
