//! payments' HTTP surface, `/v1`.

use crate::domain::merchant::Merchant;
use crate::store::authorizations::{self as auths, AuthorizeCommand};
use crate::store::idempotency::{IdempotencyKey, Stored};
use crate::AppState;
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use shared_kernel::auth::Caller;
use shared_kernel::db;
use shared_kernel::http::{idempotency_key, resource, Body, MoneyIn};
use shared_kernel::problem::Violations;
use shared_kernel::Problem;
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .service(resource("/cards/{card_id}/spend", "GET").route(web::get().to(spend)))
            .service(resource("/authorizations", "POST").route(web::post().to(authorize)))
            .service(
                resource("/authorizations/{id}", "GET").route(web::get().to(get_authorization)),
            )
            .service(
                resource("/authorizations/{id}/captures", "POST").route(web::post().to(capture)),
            ),
    );
}

/// The stored response; a replay says so with `Idempotent-Replayed: true`.
fn created(stored: Stored) -> HttpResponse {
    let mut res =
        HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED));
    if stored.replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    res.json(stored.body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    card_id: Uuid,
    amount: MoneyIn,
    merchant: Merchant,
}

async fn authorize(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<serde_json::Value>,
) -> Result<HttpResponse, Problem> {
    caller.require("payments:write")?;
    let key = idempotency_key(&req)?;
    let parsed: AuthorizeBody = shared_kernel::http::parse_value(&body.0)?;
    let mut v = Violations::new();
    let amount = parsed.amount.parse("/amount", true, &mut v);
    for (pointer, msg) in parsed.merchant.problems() {
        v.add(&format!("/merchant{pointer}"), msg);
    }
    v.into_result()?;
    let amount = amount.ok_or_else(Problem::internal)?;
    let cmd = AuthorizeCommand {
        bound: caller.program().map(str::to_owned),
        card_id: parsed.card_id,
        amount,
        merchant: parsed.merchant,
    };
    let key = IdempotencyKey::new(&caller.subject, "POST /v1/authorizations", &key, &body.0);
    let stored = db::run_named(&state.pool, "authorize", move |conn| {
        auths::authorize(conn, &key, &cmd)
    })
    .await?;
    tracing::info!(
        authorization_id = stored.body["id"].as_str().unwrap_or_default(),
        status = stored.body["status"].as_str().unwrap_or_default(),
        decline_code = stored.body["decline_code"].as_str(),
        replayed = stored.replayed,
        "authorization answered"
    );
    Ok(created(stored))
}

async fn get_authorization(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    caller.require("payments:read")?;
    let id = id.into_inner();
    let bound = caller.program().map(str::to_owned);
    let out = db::run_named(&state.pool, "find_authorization", move |conn| {
        auths::find(conn, id, bound.as_deref())
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    amount: MoneyIn,
}

async fn capture(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<serde_json::Value>,
) -> Result<HttpResponse, Problem> {
    caller.require("payments:write")?;
    let key = idempotency_key(&req)?;
    let id = id.into_inner();
    let parsed: CaptureBody = shared_kernel::http::parse_value(&body.0)?;
    let mut v = Violations::new();
    let amount = parsed.amount.parse("/amount", true, &mut v);
    v.into_result()?;
    let amount = amount.ok_or_else(Problem::internal)?;
    let operation = format!("POST /v1/authorizations/{id}/captures");
    let key = IdempotencyKey::new(&caller.subject, &operation, &key, &body.0);
    let bound = caller.program().map(str::to_owned);
    let stored = db::run_named(&state.pool, "capture", move |conn| {
        auths::capture(conn, &key, id, amount, bound.as_deref())
    })
    .await?;
    Ok(created(stored))
}

async fn spend(
    caller: Caller,
    state: web::Data<AppState>,
    card_id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    caller.require("payments:read")?;
    let card_id = card_id.into_inner();
    let bound = caller.program().map(str::to_owned);
    let out = db::run_named(&state.pool, "spend", move |conn| {
        auths::spend(conn, card_id, bound.as_deref())
    })
    .await?;
    Ok(HttpResponse::Ok().json(out))
}
