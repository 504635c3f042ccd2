//! settlement's consumers: payments' captures go into merchant batches.

use crate::domain::fees::FeeSchedule;
use crate::events::{self, PaymentCaptured};
use crate::store::{apply_captured, ApplyError};
use shared_kernel::amqp::{Handler, HandlerError};
use shared_kernel::db::PgPool;
use std::sync::Arc;

pub const PAYMENTS_KEYS: &[&str] = &[events::PAYMENT_CAPTURED];

pub fn payments_events(pool: PgPool, fees: FeeSchedule) -> Handler {
    Arc::new(move |event| {
        if event.event_type != events::PAYMENT_CAPTURED {
            return Ok(());
        }
        let captured: PaymentCaptured = event
            .data_as()
            .map_err(|e| HandlerError::Permanent(format!("bad payment_captured data: {e}")))?;
        let mut conn = pool
            .get()
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        match apply_captured(&mut conn, event.id, &captured, &fees) {
            Ok(applied) => {
                tracing::info!(event_id = %event.id, applied, "payment_captured handled");
                Ok(())
            }
            Err(ApplyError::Invalid(reason)) => Err(HandlerError::Permanent(reason)),
            Err(ApplyError::Db(e)) => Err(HandlerError::Transient(e.to_string())),
        }
    })
}
