//! Change data capture: the relay follows the inserts into `<schema>.outbox` through a
//! logical replication slot (`test_decoding`, read with the SQL functions), publishes
//! those rows through the same leasing and publishing code as polling, and only then
//! advances the slot past them.
//!
//! The table is still swept with the polling query once at start (rows committed before
//! the slot existed) and then every lease period (rows given back after a failure, rows
//! leased by a relay that died): the slot shows each insert once.

use super::relay::{lease_ids, poll_once, publish_leased, Relay, Step};
use super::slots::prepare;
use super::with_conn;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use std::time::Instant;

/// Where the cdc relay stands: its slot once prepared, and when it last swept the table.
pub(super) struct Follower {
    slot: Option<String>,
    drained: bool,
    swept_at: Instant,
}

impl Follower {
    pub fn new() -> Self {
        Self {
            slot: None,
            drained: false,
            swept_at: Instant::now(),
        }
    }

    pub async fn step(&mut self, relay: &mut Relay) -> anyhow::Result<Step> {
        let slot = match &self.slot {
            Some(s) => s.clone(),
            None => {
                let schema = relay.config.schema.clone();
                let s = with_conn(&relay.pool, "preparing the outbox slot", move |c| {
                    Ok(prepare(c, &schema))
                })
                .await??;
                self.slot = Some(s.clone());
                s
            }
        };
        // The slot exists from here on, so a row committed after this sweep read the
        // table is in the slot: nothing falls between the two.
        if !self.drained || self.swept_at.elapsed() >= relay.config.lease {
            while poll_once(relay).await?.more {}
            self.drained = true;
            self.swept_at = Instant::now();
        }
        follow(relay, &slot).await
    }
}

#[derive(QueryableByName)]
struct Change {
    #[diesel(sql_type = Text)]
    lsn: String,
    #[diesel(sql_type = Text)]
    data: String,
}

/// The outbox ids inserted in the changes, and the position after the last transaction.
#[derive(Debug, Default, PartialEq)]
struct Decoded {
    ids: Vec<i64>,
    last_commit: Option<String>,
}

fn decode<'a>(changes: impl IntoIterator<Item = (&'a str, &'a str)>, schema: &str) -> Decoded {
    let insert = format!("table {schema}.outbox: INSERT: id[bigint]:");
    let mut out = Decoded::default();
    for (lsn, data) in changes {
        if let Some(rest) = data.strip_prefix(&insert) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(id) = digits.parse() {
                out.ids.push(id);
            }
        } else if data == "COMMIT" || data.starts_with("COMMIT ") {
            out.last_commit = Some(lsn.to_owned());
        }
    }
    out
}

/// Reads the next transactions from the slot, publishes their outbox inserts, and
/// advances the slot past them once every row is published or given back. A broker
/// failure leaves the slot where it was, so the same changes are read again.
async fn follow(relay: &mut Relay, slot: &str) -> anyhow::Result<Step> {
    let batch = relay.config.batch_size.max(1);
    // Changes, not rows: the slot also shows every other table of the database.
    let limit = batch.saturating_mul(20);
    let name = slot.to_owned();
    let changes: Vec<Change> = with_conn(&relay.pool, "reading the outbox slot", move |c| {
        diesel::sql_query(
            "SELECT lsn::text AS lsn, data FROM pg_logical_slot_peek_changes($1, NULL, $2, \
               'include-xids', '0', 'skip-empty-xacts', '1')",
        )
        .bind::<Text, _>(name)
        .bind::<Integer, _>(limit)
        .load(c)
    })
    .await?;
    let decoded = decode(
        changes.iter().map(|c| (c.lsn.as_str(), c.data.as_str())),
        &relay.config.schema,
    );
    let mut step = Step {
        more: changes.len() >= limit as usize,
        ..Step::default()
    };
    for chunk in decoded.ids.chunks(batch as usize) {
        let started = Instant::now();
        let rows = lease_ids(relay, chunk.to_vec()).await?;
        let s = publish_leased(relay, rows, started, batch).await?;
        step.leased += s.leased;
        step.published += s.published;
    }
    if let Some(lsn) = decoded.last_commit {
        advance(relay, slot, lsn).await;
    }
    Ok(step)
}

async fn advance(relay: &Relay, slot: &str, lsn: String) {
    let name = slot.to_owned();
    let advanced = with_conn(&relay.pool, "advancing the outbox slot", move |c| {
        // Never backwards (an error): another relay of this outbox may be ahead.
        diesel::sql_query(
            "SELECT (pg_replication_slot_advance(slot_name, $2::pg_lsn)).end_lsn::text AS v \
             FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn",
        )
        .bind::<Text, _>(name)
        .bind::<Text, _>(lsn)
        .execute(c)
    })
    .await;
    if let Err(e) = advanced {
        tracing::warn!(error = %e, slot, "could not advance the outbox slot; its changes are read again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_outbox_inserts_and_the_last_commit() {
        let changes = [
            ("0/10", "BEGIN"),
            ("0/10", "table payments.payments: INSERT: id[bigint]:4 amount[bigint]:1"),
            ("0/11", "table payments.outbox: INSERT: id[bigint]:8 event_id[uuid]:'x' payload[jsonb]:'{}'"),
            ("0/12", "table payments.outbox: UPDATE: id[bigint]:3 published_at[timestamp with time zone]:null"),
            ("0/13", "table accounts.outbox: INSERT: id[bigint]:9 event_id[uuid]:'y'"),
            ("0/14", "table payments.outbox: INSERT: id[bigint]:10 event_id[uuid]:'z'"),
            ("0/20", "COMMIT"),
            ("0/20", "BEGIN"),
            ("0/21", "table payments.outbox: INSERT: id[bigint]:11 event_id[uuid]:'w'"),
            ("0/30", "COMMIT"),
        ];
        let d = decode(changes, "payments");
        assert_eq!(d.ids, [8, 10, 11]);
        assert_eq!(d.last_commit.as_deref(), Some("0/30"));
        assert_eq!(decode([("0/1", "BEGIN")], "payments"), Decoded::default());
    }
}
