//! The HTTP server every context runs: the same middleware, health, metrics, contract
//! and error handling, with the context's own routes.

use crate::auth::JwtVerifier;
use crate::http::{
    live, metrics_endpoint, not_found, path_config, query_config, ready_response, request_metrics,
    MAX_BODY_BYTES,
};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Readiness checks of a context: `[("database", true), ("broker", false), ...]`.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Vec<crate::http::Check>> + Send + Sync>;

pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub verifier: web::Data<JwtVerifier>,
    pub ready: ReadyCheck,
    /// The committed OpenAPI document, served at `/openapi.json`.
    pub openapi: &'static str,
    /// Requests served at once; beyond, 503 (`HTTP__MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Requests per client (`HTTP__RATE_LIMIT_*`); beyond, 429.
    pub rate_limit: crate::rate_limit::RateLimit,
    /// The context's audit log (its own schema).
    pub audit: web::Data<crate::audit::http::AuditLog>,
}

/// Swagger UI for the served document, from the bundle compiled into the binary
/// (no CDN, so it works offline).
async fn docs(tail: web::Path<String>) -> HttpResponse {
    let config = std::sync::Arc::new(utoipa_swagger_ui::Config::from("/openapi.json"));
    match utoipa_swagger_ui::serve(&tail, config) {
        Ok(Some(file)) => {
            let mut res = HttpResponse::Ok();
            res.content_type(file.content_type);
            res.insert_header(("Content-Security-Policy", crate::limits::DOCS_CSP));
            if file.gzpipped {
                res.insert_header(("Content-Encoding", "gzip"));
            }
            res.body(file.bytes.to_vec())
        }
        Ok(None) => crate::http::not_found().await,
        Err(e) => {
            tracing::error!(error = %e, "Swagger UI file failed");
            actix_web::ResponseError::error_response(&crate::problem::Problem::internal())
        }
    }
}

async fn ready(check: web::Data<ReadyCheck>) -> HttpResponse {
    ready_response(&(check.get_ref())().await)
}

/// Binds and returns the server (not yet running) and the port it got.
pub fn serve<F>(config: ServerConfig, routes: F) -> std::io::Result<(Server, u16)>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let ServerConfig {
        host,
        port,
        workers,
        verifier,
        ready: check,
        openapi,
        max_in_flight,
        rate_limit,
        audit,
    } = config;
    let limiter = web::Data::new(crate::rate_limit::ClientLimiter::new(rate_limit));
    let in_flight = web::Data::new(crate::limits::InFlight::new(max_in_flight));
    let check = web::Data::new(check);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .app_data(check.clone())
            .app_data(query_config())
            .app_data(path_config())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(in_flight.clone())
            .app_data(limiter.clone())
            .app_data(audit.clone())
            // Innermost: a request refused by the limits below is not written anywhere.
            .wrap(from_fn(crate::audit::http::record))
            .wrap(from_fn(crate::rate_limit::limit_rate))
            .wrap(from_fn(crate::limits::shed_load))
            .wrap(crate::limits::security_headers())
            .wrap(from_fn(request_metrics))
            // One span per request, continuing the caller's W3C `traceparent`.
            .wrap(tracing_actix_web::TracingLogger::default())
            .route("/health/live", web::get().to(live))
            .route("/health/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics_endpoint))
            .route("/v1/audit-events", web::get().to(crate::audit::http::list))
            .route(
                "/openapi.json",
                web::get().to(move || async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(openapi)
                }),
            )
            .route(
                "/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header(("Location", "/docs/"))
                        .finish()
                }),
            )
            .route("/docs/{tail:.*}", web::get().to(docs))
            .configure(routes.clone())
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .shutdown_timeout(10)
    .bind((host.as_str(), port))?;
    let port = server.addrs().first().map(|a| a.port()).unwrap_or(port);
    Ok((server.run(), port))
}
