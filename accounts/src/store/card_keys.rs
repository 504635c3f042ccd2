//! The stored card ciphertexts, as key rotation sees them (ADR 0014): counts per key
//! version, the rows not yet on the newest version, and their replacement by a re-wrapped
//! ciphertext. Only ciphertexts pass through here, never a card number.

use super::schema::cards;
use crate::domain::card_keys::VersionCounts;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use uuid::Uuid;

#[derive(QueryableByName)]
struct VersionCount {
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// How many stored card ciphertexts are on each transit key version.
pub fn ciphertext_versions(conn: &mut PgConnection) -> QueryResult<VersionCounts> {
    let rows: Vec<VersionCount> = diesel::sql_query(
        "SELECT substring(pan_ciphertext from '^vault:v([0-9]+):') AS version, count(*) AS count \
         FROM cards GROUP BY 1",
    )
    .load(conn)?;
    let mut counts = VersionCounts::new();
    for r in rows {
        let version = r.version.and_then(|v| v.parse::<u64>().ok());
        *counts.entry(version).or_default() += r.count;
    }
    Ok(counts)
}

/// Up to `limit` cards, in id order after `after`, whose ciphertext is not on key version
/// `latest`: (card id, ciphertext).
pub fn not_on_version(
    conn: &mut PgConnection,
    latest: u64,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<(Uuid, String)>> {
    let mut query = cards::table
        .select((cards::id, cards::pan_ciphertext))
        .filter(cards::pan_ciphertext.not_like(format!("vault:v{latest}:%")))
        .order(cards::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(cards::id.gt(after));
    }
    query.load(conn)
}

/// Replaces each card's ciphertext `(id, old, new)` in one transaction, only where it is
/// still `old`; returns how many rows changed.
pub fn replace_ciphertexts(
    conn: &mut PgConnection,
    changes: &[(Uuid, String, String)],
) -> QueryResult<usize> {
    conn.transaction(|conn| {
        let mut changed = 0;
        for (id, old, new) in changes {
            changed += diesel::update(
                cards::table
                    .filter(cards::id.eq(id))
                    .filter(cards::pan_ciphertext.eq(old)),
            )
            .set(cards::pan_ciphertext.eq(new))
            .execute(conn)?;
        }
        Ok(changed)
    })
}
