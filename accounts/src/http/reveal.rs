//! `POST /v1/cards/{id}/reveal`: the card's full number, decrypted by Vault for this
//! response only (ADR 0014). The number is never logged, traced, stored in the clear or
//! put in an event or a problem; everything here other than the body shows the card id.

use crate::card_keys::PAN_KEY;
use crate::domain::card::Pan;
use crate::store::cards::find_card;
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use shared_kernel::auth::Caller;
use shared_kernel::db::{self, db_problem};
use shared_kernel::vault;
use shared_kernel::Problem;
use uuid::Uuid;

/// The scope reveal needs. Development tokens do not carry it unless asked for.
pub const REVEAL_SCOPE: &str = "cards:reveal";

/// The response body. No `Debug`: it holds the full card number.
#[derive(Serialize)]
struct RevealedCard<'a> {
    id: Uuid,
    account_id: Uuid,
    pan: &'a str,
    pan_masked: String,
    last4: &'a str,
    expiry_month: i32,
    expiry_year: i32,
}

pub async fn reveal(
    caller: Caller,
    state: web::Data<AppState>,
    card_id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    caller.require(REVEAL_SCOPE)?;
    let id = card_id.into_inner();
    let bound = caller.program().map(str::to_owned);
    let card = db::run_named(&state.pool, "find_card", move |conn| {
        find_card(conn, id, bound.as_deref()).map_err(db_problem)
    })
    .await?
    .ok_or_else(|| Problem::not_found("card"))?;
    let transit = state
        .transit
        .as_ref()
        .ok_or_else(|| Problem::unavailable("card reveal needs Vault, which is not configured"))?;
    let plaintext = transit
        .decrypt(PAN_KEY, &card.pan_ciphertext)
        .await
        .map_err(|e| {
            if vault::refused(&e) {
                // Vault answered but will not decrypt it (e.g. its key version is retired).
                tracing::error!(card_id = %id, error = %e, "Vault refused to decrypt a stored card number");
                Problem::internal()
            } else {
                tracing::error!(error = %e, "Vault transit call failed");
                Problem::unavailable("card reveal is unavailable: the key service does not answer")
            }
        })?;
    let pan = std::str::from_utf8(plaintext.expose())
        .ok()
        .and_then(|digits| Pan::parse(digits).ok())
        .ok_or_else(|| {
            tracing::error!(card_id = %id, "a stored card number did not decrypt to a valid number");
            Problem::internal()
        })?;
    drop(plaintext);
    tracing::info!(card_id = %id, subject = %caller.subject, "card number revealed");
    Ok(HttpResponse::Ok().json(RevealedCard {
        id: card.id,
        account_id: card.account_id,
        pan: pan.expose(),
        pan_masked: pan.masked(),
        last4: &card.last4,
        expiry_month: card.expiry_month,
        expiry_year: card.expiry_year,
    }))
}
