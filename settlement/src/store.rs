//! settlement's persistence: placing captures in batches, settlement runs, listing.

use crate::domain::fees::FeeSchedule;
use crate::events::{self, PaymentCaptured};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use shared_kernel::ids::BatchId;
use shared_kernel::{inbox, outbox, Currency, Money, Problem};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the event is invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Locks (creating it if needed) the open batch of a merchant and currency. A run may
/// close that batch between the insert (which found it) and the lock (which then finds
/// no open batch): then a new one is opened, and the loop locks that one.
fn open_batch(conn: &mut PgConnection, merchant_id: &str, currency: &str) -> QueryResult<Uuid> {
    for _ in 0..3 {
        diesel::sql_query(
            "INSERT INTO batches (id, merchant_id, currency) VALUES ($1, $2, $3) \
             ON CONFLICT (merchant_id, currency) WHERE status = 'open' DO NOTHING",
        )
        .bind::<SqlUuid, _>(BatchId::new().0)
        .bind::<Text, _>(merchant_id)
        .bind::<Text, _>(currency)
        .execute(conn)?;
        let row: Option<IdRow> = diesel::sql_query(
            "SELECT id FROM batches WHERE merchant_id = $1 AND currency = $2 AND status = 'open' FOR UPDATE",
        )
        .bind::<Text, _>(merchant_id)
        .bind::<Text, _>(currency)
        .get_result(conn)
        .optional()?;
        if let Some(row) = row {
            return Ok(row.id);
        }
    }
    Err(diesel::result::Error::NotFound)
}

/// Places a captured payment in its merchant's open batch, once.
pub fn apply_captured(
    conn: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    c: &PaymentCaptured,
    fees: &FeeSchedule,
) -> Result<bool, ApplyError> {
    let currency = Currency::parse(&c.captured_amount.currency)
        .map_err(|e| ApplyError::Invalid(e.to_string()))?;
    let amount = Money::positive(c.captured_amount.amount, currency)
        .map_err(|e| ApplyError::Invalid(e.to_string()))?;
    let fee = fees.fee(amount, &c.merchant.category_code);
    conn.transaction(|conn| {
        if !inbox::claim(conn, event_id, event_type)? {
            return Ok(false);
        }
        let batch_id = open_batch(conn, &c.merchant.id, currency.code())?;
        let inserted = diesel::sql_query(
            "INSERT INTO items (capture_id, authorization_id, account_id, merchant_id, mcc, batch_id, amount, fee, currency, captured_at, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (capture_id) DO NOTHING",
        )
        .bind::<SqlUuid, _>(c.capture_id)
        .bind::<SqlUuid, _>(c.authorization_id)
        .bind::<SqlUuid, _>(c.account_id)
        .bind::<Text, _>(&c.merchant.id)
        .bind::<Text, _>(&c.merchant.category_code)
        .bind::<SqlUuid, _>(batch_id)
        .bind::<BigInt, _>(amount.amount)
        .bind::<BigInt, _>(fee.amount)
        .bind::<Text, _>(currency.code())
        .bind::<Timestamptz, _>(c.captured_at)
        .bind::<Nullable<Text>, _>(shared_kernel::trace::current_traceparent())
        .execute(conn)?;
        if inserted == 1 {
            diesel::sql_query(
                "UPDATE batches SET gross = gross + $2, fees = fees + $3, net = net + $2 - $3, item_count = item_count + 1 WHERE id = $1",
            )
            .bind::<SqlUuid, _>(batch_id)
            .bind::<BigInt, _>(amount.amount)
            .bind::<BigInt, _>(fee.amount)
            .execute(conn)?;
        }
        Ok(inserted == 1)
    })
}

#[derive(Debug, Clone, QueryableByName, serde::Serialize)]
pub struct BatchRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub merchant_id: String,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub gross: i64,
    #[diesel(sql_type = BigInt)]
    pub fees: i64,
    #[diesel(sql_type = BigInt)]
    pub net: i64,
    #[diesel(sql_type = Integer)]
    pub item_count: i32,
}

const BATCH_COLUMNS: &str = "id, merchant_id, currency, status, gross, fees, net, item_count";

#[derive(QueryableByName)]
struct ItemRow {
    #[diesel(sql_type = SqlUuid)]
    capture_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    authorization_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    account_id: Uuid,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = BigInt)]
    fee: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
}

pub struct Run {
    pub id: Uuid,
    pub cutoff: DateTime<Utc>,
    pub batch_ids: Vec<Uuid>,
}

/// Closes every open batch that holds captures made before `cutoff`. Captures at or
/// after the cutoff move to a new open batch. Totals are recomputed from the items;
/// `payment_settled` per item and `batch_closed` per batch go to the outbox.
pub fn run_settlement(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> Result<Run, Problem> {
    conn.transaction(|conn| {
        let run_id = Uuid::now_v7();
        let open: Vec<BatchRow> = diesel::sql_query(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE status = 'open' AND EXISTS \
             (SELECT 1 FROM items WHERE items.batch_id = batches.id AND items.captured_at < $1) ORDER BY id FOR UPDATE"
        ))
        .bind::<Timestamptz, _>(cutoff)
        .load(conn)?;
        let mut closed_ids = Vec::with_capacity(open.len());
        for batch in open {
            let closed: BatchRow = diesel::sql_query(format!(
                "UPDATE batches SET status = 'closed', closed_at = now(), run_id = $2 WHERE id = $1 RETURNING {BATCH_COLUMNS}"
            ))
            .bind::<SqlUuid, _>(batch.id)
            .bind::<SqlUuid, _>(run_id)
            .get_result(conn)?;
            let late: i64 = diesel::sql_query("SELECT count(*) AS n FROM items WHERE batch_id = $1 AND captured_at >= $2")
                .bind::<SqlUuid, _>(batch.id)
                .bind::<Timestamptz, _>(cutoff)
                .get_result::<Count>(conn)?
                .n;
            if late > 0 {
                let next = open_batch(conn, &batch.merchant_id, &batch.currency)?;
                diesel::sql_query("UPDATE items SET batch_id = $1 WHERE batch_id = $2 AND captured_at >= $3")
                    .bind::<SqlUuid, _>(next)
                    .bind::<SqlUuid, _>(batch.id)
                    .bind::<Timestamptz, _>(cutoff)
                    .execute(conn)?;
                recompute(conn, next)?;
            }
            let closed = if late > 0 { recompute(conn, closed.id)? } else { closed };
            let items: Vec<ItemRow> = diesel::sql_query(
                "SELECT capture_id, authorization_id, account_id, amount, fee, currency, traceparent FROM items WHERE batch_id = $1 ORDER BY capture_id",
            )
            .bind::<SqlUuid, _>(closed.id)
            .load(conn)?;
            let now = Utc::now();
            for item in &items {
                let data = serde_json::json!({
                    "capture_id": item.capture_id,
                    "authorization_id": item.authorization_id,
                    "account_id": item.account_id,
                    "merchant_id": closed.merchant_id,
                    "batch_id": closed.id,
                    "amount": {"amount": item.amount, "currency": item.currency},
                    "fee": {"amount": item.fee, "currency": item.currency},
                    "settled_at": now,
                });
                // Each payment's trace goes on from its capture, linked to this run.
                let span = tracing::info_span!("settle_payment", capture_id = %item.capture_id);
                shared_kernel::trace::continue_from(&span, item.traceparent.as_deref());
                span.follows_from(tracing::Span::current());
                span.in_scope(|| {
                    outbox::enqueue(conn, &events::event(events::PAYMENT_SETTLED, item.capture_id, data))
                })?;
            }
            let c = &closed.currency;
            let data = serde_json::json!({
                "batch_id": closed.id,
                "merchant_id": closed.merchant_id,
                "gross": {"amount": closed.gross, "currency": c},
                "fees": {"amount": closed.fees, "currency": c},
                "net": {"amount": closed.net, "currency": c},
                "item_count": closed.item_count,
                "closed_at": now,
            });
            outbox::enqueue(conn, &events::event(events::BATCH_CLOSED, closed.id, data))?;
            closed_ids.push(closed.id);
        }
        diesel::sql_query("INSERT INTO runs (id, cutoff, batch_ids) VALUES ($1, $2, $3)")
            .bind::<SqlUuid, _>(run_id)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<Array<SqlUuid>, _>(&closed_ids)
            .execute(conn)?;
        Ok(Run { id: run_id, cutoff, batch_ids: closed_ids })
    })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn recompute(conn: &mut PgConnection, batch_id: Uuid) -> QueryResult<BatchRow> {
    diesel::sql_query(format!(
        "UPDATE batches SET gross = t.gross, fees = t.fees, net = t.gross - t.fees, item_count = t.n \
         FROM (SELECT COALESCE(SUM(amount), 0)::bigint AS gross, COALESCE(SUM(fee), 0)::bigint AS fees, count(*)::int AS n \
               FROM items WHERE batch_id = $1) t \
         WHERE id = $1 RETURNING {BATCH_COLUMNS}"
    ))
    .bind::<SqlUuid, _>(batch_id)
    .get_result(conn)
}

/// Batches in id order (oldest first), optionally of one merchant, after a cursor.
pub fn list_batches(
    conn: &mut PgConnection,
    merchant_id: Option<String>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<BatchRow>> {
    diesel::sql_query(format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE ($1::text IS NULL OR merchant_id = $1) \
         AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind::<Nullable<Text>, _>(merchant_id)
    .bind::<Nullable<SqlUuid>, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
}
