//! accounts' HTTP surface, `/v1`.

mod accounts;
mod cards;

pub use cards::{FINGERPRINT_KEY, PAN_KEY};

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/accounts", web::post().to(accounts::open))
            .route("/accounts/{id}", web::get().to(accounts::get))
            .route(
                "/accounts/{id}/ledger-entries",
                web::get().to(accounts::ledger_entries),
            )
            .route("/accounts/{id}/cards", web::post().to(cards::issue)),
    );
}
