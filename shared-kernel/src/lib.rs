//! What every bounded context agrees on, and the plumbing they all use.
//!
//! Business rules of one context never live here.

pub mod amqp;
pub mod audit;
pub mod auth;
pub mod config;
pub mod db;
pub mod db_credentials;
pub mod event;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod limits;
pub mod money;
pub mod outbox;
pub mod problem;
pub mod program;
pub mod rate_limit;
pub mod redact;
pub mod replay;
pub mod roles;
pub mod secrets;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod trace;
pub mod vault;

pub use money::{Currency, Money, MoneyError};
pub use problem::Problem;
