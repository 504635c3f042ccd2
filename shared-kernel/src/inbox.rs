//! The inbox: an idempotent consumer records each event id in the same transaction as
//! the event's effect, so a redelivered event changes nothing.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use uuid::Uuid;

/// Claims `event_id` for this context. `Ok(true)` when it is new and the effect must be
/// applied; `Ok(false)` when it was already handled. Call inside the effect's transaction.
pub fn claim(conn: &mut PgConnection, event_id: Uuid, event_type: &str) -> QueryResult<bool> {
    let inserted = diesel::sql_query(
        "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind::<SqlUuid, _>(event_id)
    .bind::<Text, _>(event_type)
    .execute(conn)?;
    Ok(inserted == 1)
}
