//! The outbox's logical replication slot: checking the server can decode, naming and
//! creating the slot, and dropping the slots of a database at tear-down.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::time::Duration;

/// A configuration that cannot work (not a passing failure): reported as an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct CdcUnavailable(String);

pub(super) fn is_fatal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<CdcUnavailable>())
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    v: String,
}

pub(super) fn wal_level(conn: &mut PgConnection) -> QueryResult<String> {
    let r: Value =
        diesel::sql_query("SELECT current_setting('wal_level') AS v").get_result(conn)?;
    Ok(r.v)
}

pub(super) fn require_logical(level: &str) -> anyhow::Result<()> {
    if level == "logical" {
        return Ok(());
    }
    Err(CdcUnavailable(format!(
        "outbox mode cdc needs PostgreSQL with wal_level = logical, but it is {level}: \
         run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL, or set the outbox mode to polling"
    ))
    .into())
}

/// The name of `schema`'s outbox slot in the connected database:
/// `outbox_<schema>_<12 hex digits of md5(database/schema)>`, at most 63 characters, so
/// the many databases of a test cluster never share one.
pub fn slot_name(conn: &mut PgConnection, schema: &str) -> QueryResult<String> {
    let r: Value = diesel::sql_query("SELECT left(md5(current_database() || '/' || $1), 12) AS v")
        .bind::<Text, _>(schema)
        .get_result(conn)?;
    Ok(slot_name_from(schema, &r.v))
}

fn slot_name_from(schema: &str, hash: &str) -> String {
    let room = 63 - "outbox_".len() - 1 - hash.len();
    let short: String = schema.chars().take(room).collect();
    format!("outbox_{short}_{hash}")
}

/// Checks `wal_level`, then creates the slot when it is missing. Returns its name.
pub(super) fn prepare(conn: &mut PgConnection, schema: &str) -> anyhow::Result<String> {
    require_logical(&wal_level(conn)?)?;
    let slot = slot_name(conn, schema)?;
    #[derive(QueryableByName)]
    struct Existing {
        #[diesel(sql_type = Text)]
        plugin: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ours: bool,
    }
    let existing: Vec<Existing> = diesel::sql_query(
        "SELECT coalesce(plugin::text, '') AS plugin, database = current_database() AS ours \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind::<Text, _>(&slot)
    .load(conn)?;
    match existing.first() {
        Some(e) if e.ours && e.plugin == "test_decoding" => return Ok(slot),
        Some(_) => {
            return Err(CdcUnavailable(format!(
                "replication slot {slot} exists but is not a test_decoding slot of this database"
            ))
            .into())
        }
        None => {}
    }
    let created = diesel::sql_query(
        "SELECT slot_name::text AS v FROM pg_create_logical_replication_slot($1, 'test_decoding')",
    )
    .bind::<Text, _>(&slot)
    .execute(conn);
    match created {
        Ok(_) => {
            tracing::info!(slot = %slot, "created the outbox replication slot");
            Ok(slot)
        }
        // Another relay of this outbox created it meanwhile.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(slot)
        }
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("superuser or replication role") =>
        {
            Err(CdcUnavailable(format!(
                "outbox mode cdc needs a database role with REPLICATION: {}",
                info.message()
            ))
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops the outbox slots of the connected database (see [`drop_slots_for_database`]).
pub fn drop_slots(conn: &mut PgConnection) -> QueryResult<usize> {
    let r: Value = diesel::sql_query("SELECT current_database()::text AS v").get_result(conn)?;
    drop_slots_for_database(conn, &r.v)
}

/// Drops the outbox slots (`outbox_*`) of `database`; a slot blocks `DROP DATABASE` and
/// keeps WAL forever. For tear-down: the sessions still using a slot are terminated.
/// Works from a connection to any database of the cluster (as a superuser or a role with
/// REPLICATION that may signal those sessions). Returns how many were dropped.
pub fn drop_slots_for_database(conn: &mut PgConnection, database: &str) -> QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Slot {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        active: bool,
    }
    let mut dropped = 0;
    for attempt in 0.. {
        let slots: Vec<Slot> = diesel::sql_query(
            "SELECT slot_name::text AS name, active FROM pg_replication_slots \
             WHERE database = $1 AND slot_type = 'logical' AND slot_name LIKE 'outbox\\_%'",
        )
        .bind::<Text, _>(database)
        .load(conn)?;
        if slots.is_empty() {
            break;
        }
        for s in &slots {
            if s.active {
                diesel::sql_query(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                     WHERE slot_name = $1 AND active_pid <> pg_backend_pid()",
                )
                .bind::<Text, _>(&s.name)
                .execute(conn)?;
                continue;
            }
            let gone = diesel::sql_query("SELECT 1 FROM pg_drop_replication_slot($1)")
                .bind::<Text, _>(&s.name)
                .execute(conn);
            match gone {
                Ok(_) => dropped += 1,
                // It became active meanwhile: the next round terminates its session.
                Err(e) if attempt >= 50 => return Err(e),
                Err(_) => {}
            }
        }
        if attempt >= 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_fit_in_63_characters_and_keep_the_hash() {
        assert_eq!(
            slot_name_from("payments", "0123456789ab"),
            "outbox_payments_0123456789ab"
        );
        let long = slot_name_from(&"s".repeat(63), "0123456789ab");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("_0123456789ab"));
    }

    #[test]
    fn cdc_refuses_a_database_without_logical_wal() {
        let e = require_logical("replica")
            .err()
            .map(|e| (is_fatal(&e), e.to_string()));
        assert!(matches!(e, Some((true, ref m)) if m.contains("wal_level = logical")));
        assert!(require_logical("logical").is_ok());
    }
}
