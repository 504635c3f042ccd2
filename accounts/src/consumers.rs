//! accounts' consumers: settlement's `payment_settled` posts the ledger.

use crate::events::{self, PaymentSettled};
use crate::store::ledger::{post_settled_payment, PostError};
use shared_kernel::amqp::{Handler, HandlerError};
use shared_kernel::db::PgPool;
use std::sync::Arc;

pub const SETTLEMENT_KEYS: &[&str] = &[events::PAYMENT_SETTLED];

pub fn settlement_events(pool: PgPool) -> Handler {
    Arc::new(move |event| {
        if event.event_type != events::PAYMENT_SETTLED {
            return Ok(()); // not ours to act on
        }
        let settled: PaymentSettled = event
            .data_as()
            .map_err(|e| HandlerError::Permanent(format!("bad payment_settled data: {e}")))?;
        let mut conn = pool
            .get()
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        match post_settled_payment(&mut conn, event.id, &settled) {
            Ok(applied) => {
                tracing::info!(event_id = %event.id, applied, "payment_settled handled");
                Ok(())
            }
            Err(PostError::Invalid(reason)) => Err(HandlerError::Permanent(reason)),
            Err(PostError::UnknownAccount(id)) => {
                Err(HandlerError::Permanent(format!("unknown account {id}")))
            }
            Err(PostError::Db(e)) => Err(HandlerError::Transient(e.to_string())),
        }
    })
}
