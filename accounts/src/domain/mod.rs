//! accounts' domain: pure types and rules. No actix, diesel or lapin here.

pub mod account;
pub mod card;
pub mod card_keys;
pub mod ledger;
