//! payments' persistence: projections, authorizations, captures, idempotency.

pub mod authorizations;
pub mod idempotency;
pub mod projection;
pub mod schema;
