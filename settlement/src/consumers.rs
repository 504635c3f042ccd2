//! settlement's consumers: payments' captures go into merchant batches.

use crate::domain::fees::FeeSchedule;
use crate::events::{self, PaymentCaptured};
use crate::store::{apply_captured, ApplyError};
use shared_kernel::amqp::{Handler, HandlerError};
use shared_kernel::db::PgPool;
use std::sync::Arc;

pub const PAYMENTS_KEYS: &[&str] = &[events::PAYMENT_CAPTURED, events::PAYMENT_CAPTURED_V2];

pub fn payments_events(pool: PgPool, fees: FeeSchedule) -> Handler {
    Arc::new(move |event| {
        let Some(captured) = events::captured(event) else {
            return Ok(());
        };
        let captured: PaymentCaptured = captured
            .map_err(|e| HandlerError::Permanent(format!("bad {} data: {e}", event.event_type)))?;
        let mut conn = pool
            .get()
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        match apply_captured(&mut conn, event.id, &event.event_type, &captured, &fees) {
            Ok(applied) => {
                tracing::info!(event_id = %event.id, event_type = %event.event_type, applied, "captured payment handled");
                Ok(())
            }
            Err(ApplyError::Invalid(reason)) => Err(HandlerError::Permanent(reason)),
            Err(ApplyError::Db(e)) => Err(HandlerError::Transient(e.to_string())),
        }
    })
}
