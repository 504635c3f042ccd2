//! The audit log's HTTP side: a middleware that records every state-changing request
//! once its response is known, and `GET /v1/audit-events` (scope `audit:read`; platform
//! tokens only, since the log holds every program's records).

use super::{store, Entry, Record};
use crate::auth::Caller;
use crate::db::{self, PgPool};
use crate::http::page_limit;
use crate::problem::Problem;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use serde::{Deserialize, Serialize};

/// The log a server writes to: its context's own schema.
pub struct AuditLog {
    pub pool: PgPool,
}

/// Who made a request that had no valid token.
pub const ANONYMOUS: &str = "anonymous";

/// Records each `/v1/` request other than GET, HEAD and OPTIONS, whatever its outcome,
/// before its response leaves. A failure to record is logged and counted
/// (`audit_write_failures_total`); the response, whose effect is already committed,
/// is sent unchanged.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let log = req.app_data::<web::Data<AuditLog>>().cloned();
    let (Some(log), false, true) = (log, reads, req.path().starts_with("/v1/")) else {
        return next.call(req).await;
    };
    let at = chrono::Utc::now();
    let (subject, program) = match crate::auth::caller_of(req.request()).await {
        Ok(c) => {
            let program = c.program().map(str::to_owned);
            (c.subject, program)
        }
        Err(_) => (ANONYMOUS.to_owned(), None),
    };
    let source = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let request_id = req
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .map(ToString::to_string)
        .unwrap_or_default();
    let method = req.method().to_string();
    let resource = crate::redact::apply(req.path()).into_owned();
    let res = next.call(req).await;
    let (status, pattern) = match &res {
        Ok(r) => (r.status().as_u16(), r.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
    };
    let entry = Entry {
        at,
        subject,
        program,
        action: format!("{method} {}", pattern.unwrap_or_else(|| resource.clone())),
        resource,
        status,
        request_id,
        source,
    };
    if let Err(p) = db::run_named(&log.pool, "audit.append", move |conn| {
        store::append(conn, entry).map_err(db::db_problem)
    })
    .await
    {
        metrics::counter!("audit_write_failures_total").increment(1);
        tracing::error!(
            status = p.status,
            "the audit record of a request could not be written"
        );
    }
    res
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Page {
    data: Vec<Record>,
    next_cursor: Option<String>,
}

/// `GET /v1/audit-events?limit=&cursor=`: the log, oldest first.
pub async fn list(
    caller: Caller,
    log: web::Data<AuditLog>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    caller.require("audit:read")?;
    // The log holds every program's records.
    caller.require_platform()?;
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let after = match &query.cursor {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Problem::field("/cursor", "not a cursor this API issued"))?,
    };
    let data = db::run_named(&log.pool, "audit.page", move |conn| {
        store::page(conn, after, limit).map_err(db::db_problem)
    })
    .await?;
    let next_cursor = (data.len() as i64 == limit)
        .then(|| data.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}
