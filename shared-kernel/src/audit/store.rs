//! The `audit_events` table of a context's schema: appends under a lock that orders the
//! chain, and reads in chain order.

use super::{Entry, Record, GENESIS};
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel::{Connection, QueryableByName, RunQueryDsl};

/// Serializes appends within one schema's audit log (any constant unique to the log).
const APPEND_LOCK: &str = "audit_events append";

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Nullable<Text>)]
    program: Option<String>,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Text)]
    resource: String,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Integer)]
    status: i32,
    #[diesel(sql_type = Text)]
    request_id: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    prev_hash: String,
    #[diesel(sql_type = Text)]
    hash: String,
}

impl From<Row> for Record {
    fn from(r: Row) -> Self {
        Record {
            seq: r.seq,
            at: r.at,
            subject: r.subject,
            program: r.program,
            action: r.action,
            resource: r.resource,
            outcome: r.outcome,
            status: r.status,
            request_id: r.request_id,
            source: r.source,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

const COLUMNS: &str = "seq, at, subject, program, action, resource, outcome, status, request_id, source, prev_hash, hash";

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    hash: String,
}

/// Appends `entry` after the newest record, in one transaction holding the log's lock.
pub fn append(conn: &mut PgConnection, entry: Entry) -> diesel::QueryResult<Record> {
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(APPEND_LOCK)
            .execute(conn)?;
        let head: Option<Head> =
            diesel::sql_query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .get_result(conn)
                .map(Some)
                .or_else(|e| match e {
                    diesel::result::Error::NotFound => Ok(None),
                    e => Err(e),
                })?;
        let (seq, prev) = head.map_or((1, GENESIS.to_owned()), |h| (h.seq + 1, h.hash));
        let r = Record::chain(entry, seq, &prev);
        diesel::sql_query(format!(
            "INSERT INTO audit_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind::<BigInt, _>(r.seq)
        .bind::<Timestamptz, _>(r.at)
        .bind::<Text, _>(&r.subject)
        .bind::<Nullable<Text>, _>(&r.program)
        .bind::<Text, _>(&r.action)
        .bind::<Text, _>(&r.resource)
        .bind::<Text, _>(&r.outcome)
        .bind::<Integer, _>(r.status)
        .bind::<Text, _>(&r.request_id)
        .bind::<Text, _>(&r.source)
        .bind::<Text, _>(&r.prev_hash)
        .bind::<Text, _>(&r.hash)
        .execute(conn)?;
        Ok(r)
    })
}

/// Up to `limit` records after `after` (a `seq`), oldest first.
pub fn page(conn: &mut PgConnection, after: i64, limit: i64) -> diesel::QueryResult<Vec<Record>> {
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)?;
    Ok(rows.into_iter().map(Record::from).collect())
}

/// Every record of the log in `schema`, in chain order (for verification).
pub fn all(conn: &mut PgConnection, schema: &str) -> anyhow::Result<Vec<Record>> {
    crate::db::check_schema_name(schema)?;
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM {schema}.audit_events ORDER BY seq"
    ))
    .load(conn)?;
    Ok(rows.into_iter().map(Record::from).collect())
}
