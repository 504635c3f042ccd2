//! payments' projections of accounts' events. Each applies only what is newer than
//! what it has (by the aggregate's sequence), inside the inbox's transaction.

use crate::events::{AccountSnapshot, CardIssued};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use shared_kernel::inbox;
use uuid::Uuid;

/// Applies an account snapshot; releases the hold of the posted capture, once.
/// Returns false for an event already applied.
pub fn apply_account(
    conn: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    sequence: i64,
    a: &AccountSnapshot,
) -> QueryResult<bool> {
    conn.transaction(|conn| {
        if !inbox::claim(conn, event_id, event_type)? {
            return Ok(false);
        }
        diesel::sql_query(
            "INSERT INTO account_projection (account_id, currency, credit_limit, posted_balance, status, version) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id) DO UPDATE SET currency = EXCLUDED.currency, \
               credit_limit = EXCLUDED.credit_limit, posted_balance = EXCLUDED.posted_balance, \
               status = EXCLUDED.status, version = EXCLUDED.version \
             WHERE account_projection.version < EXCLUDED.version",
        )
        .bind::<SqlUuid, _>(a.account_id)
        .bind::<Text, _>(&a.currency)
        .bind::<BigInt, _>(a.credit_limit.amount)
        .bind::<BigInt, _>(a.posted_balance.amount)
        .bind::<Text, _>(&a.status)
        .bind::<BigInt, _>(sequence)
        .execute(conn)?;
        if let Some(posting) = &a.posting {
            // The capture's amount moves from "held" to "posted" exactly once.
            diesel::sql_query(
                "WITH posted AS (UPDATE captures SET posted = true WHERE id = $1 AND NOT posted RETURNING amount) \
                 UPDATE account_projection SET held = held - (SELECT COALESCE(SUM(amount), 0) FROM posted) \
                 WHERE account_id = $2",
            )
            .bind::<SqlUuid, _>(posting.payment_id)
            .bind::<SqlUuid, _>(a.account_id)
            .execute(conn)?;
        }
        Ok(true)
    })
}

pub fn apply_card(
    conn: &mut PgConnection,
    event_id: Uuid,
    event_type: &str,
    sequence: i64,
    c: &CardIssued,
) -> QueryResult<bool> {
    conn.transaction(|conn| {
        if !inbox::claim(conn, event_id, event_type)? {
            return Ok(false);
        }
        diesel::sql_query(
            "INSERT INTO card_projection (card_id, account_id, status, version, program_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (card_id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version, \
               program_id = EXCLUDED.program_id \
             WHERE card_projection.version < EXCLUDED.version",
        )
        .bind::<SqlUuid, _>(c.card_id)
        .bind::<SqlUuid, _>(c.account_id)
        .bind::<Text, _>(&c.status)
        .bind::<BigInt, _>(sequence)
        .bind::<Text, _>(&c.program_id)
        .execute(conn)?;
        Ok(true)
    })
}

/// The projections payments keeps of other contexts' events, and what feeds each.
pub struct Projection {
    pub name: &'static str,
    pub producer: &'static str,
    pub event_types: &'static [&'static str],
    table: &'static str,
}

pub const PROJECTIONS: &[Projection] = &[
    Projection {
        name: "accounts",
        producer: "accounts",
        event_types: &[crate::events::ACCOUNT_OPENED, crate::events::BALANCE_POSTED],
        table: "account_projection",
    },
    Projection {
        name: "cards",
        producer: "accounts",
        event_types: &[crate::events::CARD_ISSUED],
        table: "card_projection",
    },
];

pub fn projection(name: &str) -> Option<&'static Projection> {
    PROJECTIONS.iter().find(|p| p.name == name)
}

/// First step of a rebuild: forgets which of the projection's events were applied and
/// what version each row is at, so the producer's replayed history applies again in
/// full. Rows stay (the account rows carry payments' own holds), and every value that
/// came from an event is overwritten by the newest snapshot of the replay.
pub fn reset(conn: &mut PgConnection, p: &Projection) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::sql_query(format!("UPDATE {} SET version = 0", p.table)).execute(conn)?;
        diesel::sql_query("DELETE FROM inbox WHERE event_type = ANY($1)")
            .bind::<diesel::sql_types::Array<Text>, _>(p.event_types)
            .execute(conn)?;
        Ok(())
    })
}
