//! accounts' HTTP surface, `/v1`.

mod accounts;
mod cards;
mod reveal;

use actix_web::web;
use shared_kernel::http::resource;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .service(resource("/accounts", "POST").route(web::post().to(accounts::open)))
            .service(resource("/accounts/{id}", "GET").route(web::get().to(accounts::get)))
            .service(
                resource("/accounts/{id}/ledger-entries", "GET")
                    .route(web::get().to(accounts::ledger_entries)),
            )
            .service(resource("/accounts/{id}/cards", "POST").route(web::post().to(cards::issue)))
            .service(resource("/cards/{id}/reveal", "POST").route(web::post().to(reveal::reveal))),
    );
}
