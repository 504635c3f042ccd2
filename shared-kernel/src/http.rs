//! HTTP plumbing every context mounts: strict JSON bodies that fail as problems,
//! health endpoints, Prometheus metrics, request metrics, and list pagination.

use crate::problem::Problem;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Instant;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body. Malformed JSON is a 400 problem; JSON of the wrong shape is a
/// 422 problem whose `errors[].pointer` names the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json_type {
                return Err(Problem::of(
                    "unsupported-media-type",
                    "the body must be application/json",
                ));
            }
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    Problem::of(
                        "payload-too-large",
                        format!("the body must be at most {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    Problem::malformed("the body could not be read")
                }
            })?;
            parse_json(&bytes).map(Body)
        })
    }
}

/// Parses JSON, turning serde's error into the right problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    crate::limits::check_depth(bytes)?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(shape_problem)
}

/// Reads an already parsed JSON value as `T`, with the same problems as `parse_json`.
pub fn parse_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(shape_problem)
}

/// A syntax error is 400; a value of the wrong shape is 422 with the field's pointer.
fn shape_problem(e: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return Problem::malformed(format!("the body is not valid JSON: {inner}"));
    }
    let mut pointer = json_pointer(&e.path().to_string());
    let message = inner.to_string();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        pointer = format!("{}/{field}", pointer.trim_end_matches('/'));
    }
    let detail = redact_digit_runs(message.split(" at line ").next().unwrap_or(&message));
    Problem::field(&pointer, detail)
}

/// serde echoes offending values in its messages; a long digit run may be a card
/// number, so it never reaches a problem's detail.
pub fn redact_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn json_pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return String::new();
    }
    path.split('.')
        .map(|seg| seg.trim_start_matches('[').trim_end_matches(']'))
        .fold(String::new(), |acc, seg| format!("{acc}/{seg}"))
}

/// The `Idempotency-Key` header: required, 1–255 visible ASCII characters.
pub fn idempotency_key(req: &HttpRequest) -> Result<String, Problem> {
    let value = req.headers().get("Idempotency-Key").ok_or_else(|| {
        Problem::of(
            "missing-idempotency-key",
            "this operation needs an Idempotency-Key header",
        )
    })?;
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > 255 {
        return Err(Problem::of(
            "missing-idempotency-key",
            "the Idempotency-Key must be 1 to 255 visible characters",
        ));
    }
    Ok(key.to_owned())
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A page of a list: `{"data": [...], "next_cursor": "..." | null}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A validated limit (1–100, default 50).
pub fn page_limit(limit: Option<i64>) -> Result<i64, Problem> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(Problem::of(
            "validation-failed",
            "limit must be between 1 and 100",
        )),
    }
}

/// Query strings that fail to parse are problems too.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        Problem::of("validation-failed", format!("invalid query string: {e}")).into()
    })
}

/// Path segments that fail to parse (a malformed id) name nothing that exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| Problem::not_found("resource").into())
}

/// A resource whose other methods answer 405 with an `Allow` header, as a problem.
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let p = Problem::of(
            "method-not-allowed",
            format!("this resource allows {allow}"),
        );
        let mut res = actix_web::ResponseError::error_response(&p);
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
            res.headers_mut().insert(actix_web::http::header::ALLOW, v);
        }
        res
    }))
}

/// Any route that does not exist.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&Problem::not_found("route"))
}

/// Latency buckets in seconds, shared by every histogram; 0.25 s and 30 s are SLO
/// thresholds (`deploy/observability/slos.md`).
pub const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Histograms, not summaries: SLO rules compute ratios from the buckets.
        let builder = PrometheusBuilder::new();
        let recorder = match builder.set_buckets(BUCKETS) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "invalid histogram buckets; using summaries");
                PrometheusBuilder::new()
            }
        }
        .build_recorder();
        let handle = recorder.handle();
        // One recorder per process; in a test process that runs several contexts the first wins.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Installs the process's metrics recorder (idempotent).
pub fn init_metrics() {
    prometheus();
}

pub async fn metrics_endpoint() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus().render())
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "up"}))
}

/// One dependency as readiness sees it.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub up: bool,
    /// Whether the API cannot serve without it. The broker is not required (the outbox
    /// absorbs events while it is away), nor is Vault (only card issuance needs it).
    pub required: bool,
}

/// Readiness: 200 while every required dependency is up, with the state of each one
/// (an optional one that is down shows as "down"); a 503 problem otherwise.
pub fn ready_response(checks: &[Check]) -> HttpResponse {
    let body: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|c| {
            let state = if c.up { "up" } else { "down" };
            (c.name.to_owned(), serde_json::Value::from(state))
        })
        .collect();
    if checks.iter().all(|c| c.up || !c.required) {
        HttpResponse::Ok().json(serde_json::json!({"status": "up", "checks": body}))
    } else {
        let mut p = Problem::unavailable("a dependency is down");
        p.detail = Some(format!("checks: {}", serde_json::Value::Object(body)));
        actix_web::ResponseError::error_response(&p)
    }
}

/// Records RED metrics per route pattern (never per id) and status class.
pub async fn request_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.call(req).await?;
    let class = format!("{}xx", res.status().as_u16() / 100);
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status_class" => class)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        currency: String,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        amount: Inner,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_pointer() {
        let p = parse_json::<Outer>(b"{not json").unwrap_err();
        assert_eq!(p.status, 400);
        let p = parse_json::<Outer>(br#"{"amount": {}}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].pointer, "/amount/currency");
        let p = parse_json::<Outer>(br#"{"amount": {"currency": 5}}"#).unwrap_err();
        assert_eq!(p.errors[0].pointer, "/amount/currency");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Card {
        pan: String,
    }

    #[test]
    fn shape_errors_never_echo_a_card_number() {
        let p = parse_json::<Card>(br#"{"pan": 4000056655665556}"#).unwrap_err();
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("4000056655665556"), "{text}");
        assert!(text.contains("[redacted]"));
        assert_eq!(redact_digit_runs("amount 12345 ok"), "amount 12345 ok");
    }

    #[test]
    fn parsed_values_give_the_same_problems_as_bytes() {
        let value = serde_json::json!({"amount": {"currency": 5}});
        let p = parse_value::<Outer>(&value).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].pointer, "/amount/currency");
        let p = parse_value::<Outer>(&serde_json::json!({"amount": {}})).unwrap_err();
        assert_eq!(p.errors[0].pointer, "/amount/currency");
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(page_limit(None).unwrap(), 50);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(101)).is_err());
    }
}

/// Money as a request carries it, before parsing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyIn {
    pub amount: i64,
    pub currency: String,
}

impl MoneyIn {
    /// Parses into `Money`, recording problems at `pointer`; `positive` refuses zero.
    pub fn parse(
        &self,
        pointer: &str,
        positive: bool,
        v: &mut crate::problem::Violations,
    ) -> Option<crate::Money> {
        let currency = v.check(
            &format!("{pointer}/currency"),
            crate::Currency::parse(&self.currency),
        )?;
        let money = if positive {
            crate::Money::positive(self.amount, currency)
        } else {
            crate::Money::non_negative(self.amount, currency)
        };
        v.check(&format!("{pointer}/amount"), money)
    }
}
