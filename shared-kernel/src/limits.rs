//! Abuse and overload limits every service applies: security headers on every response,
//! a bound on JSON nesting, and a bound on requests in flight (503 instead of collapse).

use crate::problem::Problem;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Deepest nesting of arrays and objects a request body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// The deepest nesting of `[`/`{` in `bytes`, outside strings. A cheap scan before the
/// parser, so a hostile body is refused without being parsed.
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses a body nested deeper than [`MAX_JSON_DEPTH`] with a 400 problem.
pub fn check_depth(bytes: &[u8]) -> Result<(), Problem> {
    if json_depth(bytes) > MAX_JSON_DEPTH {
        return Err(Problem::malformed(format!(
            "the body is nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    Ok(())
}

/// Headers on every response: no sniffing, no framing, no caching of payment data, no
/// referrer, HSTS for when TLS terminates in front, and a CSP that allows nothing (the
/// Swagger UI at /docs sets its own).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Cache-Control", "no-store"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Strict-Transport-Security",
            "max-age=31536000; includeSubDomains",
        ))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
}

/// The CSP of the Swagger UI pages (its own scripts and styles only).
pub const DOCS_CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// The requests a service serves at once; beyond, it answers 503 at once.
#[derive(Clone)]
pub struct InFlight(pub Arc<Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.max(1))))
    }
}

/// Sheds load: a request beyond the bound gets a 503 problem with `Retry-After` instead
/// of waiting in a queue that grows until everything times out. Health and metrics
/// are never shed.
pub async fn shed_load(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path();
    if path.starts_with("/health/") || path == "/metrics" {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let permit = req
        .app_data::<web::Data<InFlight>>()
        .and_then(|f| f.0.clone().try_acquire_owned().ok());
    let Some(permit) = permit else {
        metrics::counter!("http_requests_shed_total").increment(1);
        let problem = Problem::unavailable("the service is at capacity; retry shortly");
        let mut res = actix_web::ResponseError::error_response(&problem);
        res.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("1"),
        );
        return Ok(req.into_response(res).map_into_right_body());
    };
    let res = next.call(req).await;
    drop(permit);
    Ok(res?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings_only() {
        assert_eq!(json_depth(br#"{"a": 1}"#), 1);
        assert_eq!(json_depth(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(json_depth(br#"{"a": "[[[[{{{{\"]]"}"#), 1);
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(json_depth(deep.as_bytes()), 40);
        assert!(check_depth(deep.as_bytes()).is_err());
        assert!(check_depth(br#"{"card_id": "x"}"#).is_ok());
    }
}
