//! Idempotency keys, persisted in the same transaction as the effect.
//!
//! Same key, same request: the stored response again. Same key, different request: a
//! 422 problem. Same key while the first request is still running: a 409 problem
//! (a transaction-scoped advisory lock on the key), never a second effect.

use super::schema::idempotency_keys as ik;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use sha2::{Digest, Sha256};
use shared_kernel::Problem;

pub struct IdempotencyKey {
    pub subject: String,
    pub operation: String,
    pub key: String,
    pub request_hash: String,
}

impl IdempotencyKey {
    pub fn new(subject: &str, operation: &str, key: &str, request: &serde_json::Value) -> Self {
        let hash = Sha256::digest(request.to_string().as_bytes());
        Self {
            subject: subject.to_owned(),
            operation: operation.to_owned(),
            key: key.to_owned(),
            request_hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// A stored response to replay.
pub struct Stored {
    pub status: u16,
    pub body: serde_json::Value,
    /// True when this is the response stored for an earlier request with the same key.
    pub replayed: bool,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Call first inside the transaction: `Some` is a response to replay as it is.
pub fn begin(conn: &mut PgConnection, k: &IdempotencyKey) -> Result<Option<Stored>, Problem> {
    let lock: Locked = diesel::sql_query(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2 || chr(31) || $3, 0)) AS locked",
    )
    .bind::<Text, _>(&k.subject)
    .bind::<Text, _>(&k.operation)
    .bind::<Text, _>(&k.key)
    .get_result(conn)?;
    if !lock.locked {
        return Err(Problem::of(
            "idempotency-key-in-use",
            "a request with this Idempotency-Key is in progress; retry later",
        ));
    }
    let found: Option<(String, i32, serde_json::Value)> = ik::table
        .find((&k.subject, &k.operation, &k.key))
        .select((ik::request_hash, ik::status_code, ik::response))
        .first(conn)
        .optional()?;
    match found {
        None => Ok(None),
        Some((hash, status, body)) if hash == k.request_hash => Ok(Some(Stored {
            replayed: true,
            status: u16::try_from(status).unwrap_or(200),
            body,
        })),
        Some(_) => Err(Problem::of(
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )),
    }
}

/// Call last inside the transaction: stores the response for replays.
pub fn finish(
    conn: &mut PgConnection,
    k: &IdempotencyKey,
    status: u16,
    body: &serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(ik::table)
        .values((
            ik::subject.eq(&k.subject),
            ik::operation.eq(&k.operation),
            ik::key.eq(&k.key),
            ik::request_hash.eq(&k.request_hash),
            ik::status_code.eq(i32::from(status)),
            ik::response.eq(body),
        ))
        .execute(conn)?;
    Ok(())
}
