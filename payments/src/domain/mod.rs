//! payments' domain: pure rules. No actix, diesel or lapin here.

pub mod authorization;
pub mod merchant;
