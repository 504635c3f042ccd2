//! settlement's domain: pure rules. No actix, diesel or lapin here.

pub mod fees;
