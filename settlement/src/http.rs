//! settlement's HTTP surface, `/v1`.

use crate::store::{self, BatchRow};
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_kernel::auth::Caller;
use shared_kernel::db;
use shared_kernel::http::{page_limit, resource, Body, Page};
use shared_kernel::{Currency, Money, Problem};
use uuid::Uuid;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .service(resource("/settlement-runs", "POST").route(web::post().to(run)))
            .service(resource("/settlement-batches", "GET").route(web::get().to(batches))),
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    cutoff: String,
}

#[derive(Debug, Serialize)]
struct RunOut {
    id: Uuid,
    cutoff: chrono::DateTime<chrono::Utc>,
    batch_ids: Vec<Uuid>,
}

async fn run(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<RunBody>,
) -> Result<HttpResponse, Problem> {
    caller.require("settlement:write")?;
    // Batches are per merchant and span every program (ADR 0018).
    caller.require_platform()?;
    let cutoff = chrono::DateTime::parse_from_rfc3339(&body.0.cutoff)
        .map_err(|_| Problem::field("/cutoff", "must be an RFC 3339 date-time"))?
        .with_timezone(&chrono::Utc);
    let run = db::run_named(&state.pool, "run_settlement", move |conn| {
        store::run_settlement(conn, cutoff)
    })
    .await?;
    tracing::info!(run_id = %run.id, batches = run.batch_ids.len(), subject = %caller.subject, "settlement run");
    Ok(HttpResponse::Created().json(RunOut {
        id: run.id,
        cutoff: run.cutoff,
        batch_ids: run.batch_ids,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchQuery {
    merchant_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct BatchOut {
    id: Uuid,
    merchant_id: String,
    status: String,
    gross: Money,
    fees: Money,
    net: Money,
    item_count: i32,
}

fn batch_out(b: BatchRow) -> Result<BatchOut, Problem> {
    let c = Currency::parse(&b.currency).map_err(|_| Problem::internal())?;
    Ok(BatchOut {
        id: b.id,
        merchant_id: b.merchant_id,
        status: b.status,
        gross: Money::new(b.gross, c),
        fees: Money::new(b.fees, c),
        net: Money::new(b.net, c),
        item_count: b.item_count,
    })
}

async fn batches(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<BatchQuery>,
) -> Result<HttpResponse, Problem> {
    caller.require("settlement:read")?;
    caller.require_platform()?;
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let after = match &query.cursor {
        None => None,
        Some(c) => Some(
            Uuid::parse_str(c)
                .map_err(|_| Problem::field("/cursor", "not a cursor this API issued"))?,
        ),
    };
    let merchant = query.merchant_id;
    let rows = db::run(&state.pool, move |conn| {
        Ok(store::list_batches(conn, merchant, after, limit)?)
    })
    .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|b| b.id.to_string()))
        .flatten();
    let data = rows
        .into_iter()
        .map(batch_out)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}
