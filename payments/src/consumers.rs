//! payments' consumers: accounts' events feed the spend projection.

use crate::events::{self, AccountSnapshot, CardIssued};
use crate::store::projection;
use shared_kernel::amqp::{Handler, HandlerError};
use shared_kernel::db::PgPool;
use std::sync::Arc;

pub const ACCOUNTS_KEYS: &[&str] = &[
    events::ACCOUNT_OPENED,
    events::BALANCE_POSTED,
    events::CARD_ISSUED,
];

pub fn accounts_events(pool: PgPool) -> Handler {
    Arc::new(move |event| {
        let bad = |e: serde_json::Error| {
            HandlerError::Permanent(format!("bad {} data: {e}", event.event_type))
        };
        let mut conn = pool
            .get()
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let applied = match event.event_type.as_str() {
            events::ACCOUNT_OPENED | events::BALANCE_POSTED => {
                let a: AccountSnapshot = event.data_as().map_err(bad)?;
                projection::apply_account(
                    &mut conn,
                    event.id,
                    &event.event_type,
                    event.sequence,
                    &a,
                )
            }
            events::CARD_ISSUED => {
                let c: CardIssued = event.data_as().map_err(bad)?;
                projection::apply_card(&mut conn, event.id, &event.event_type, event.sequence, &c)
            }
            _ => return Ok(()),
        }
        .map_err(|e| HandlerError::Transient(e.to_string()))?;
        tracing::info!(event_id = %event.id, event_type = %event.event_type, applied, "accounts event handled");
        Ok(())
    })
}
