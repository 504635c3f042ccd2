//! RFC 9457 problem details, the only error shape the HTTP surfaces return.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Base of every problem `type` URI; the registry in `contracts/problems/` lists them.
pub const PROBLEM_BASE: &str = "https://problems.fleet-cards.example/";

/// Every problem type the code can emit: (slug, title, status).
pub const PROBLEM_TYPES: &[(&str, &str, u16)] = &[
    ("malformed-request", "Malformed request", 400),
    (
        "missing-idempotency-key",
        "Idempotency-Key header required",
        400,
    ),
    ("unauthenticated", "Authentication required", 401),
    ("forbidden", "Insufficient scope", 403),
    ("not-found", "Resource not found", 404),
    ("method-not-allowed", "Method not allowed", 405),
    ("conflict", "Conflict with current state", 409),
    ("idempotency-key-in-use", "Idempotency key in use", 409),
    ("validation-failed", "Validation failed", 422),
    (
        "idempotency-key-reused",
        "Idempotency key reused with a different request",
        422,
    ),
    ("payload-too-large", "Payload too large", 413),
    ("rate-limited", "Too many requests", 429),
    ("unsupported-media-type", "Unsupported media type", 415),
    ("service-unavailable", "Service unavailable", 503),
    ("internal-error", "Internal error", 500),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the offending field, e.g. `/amount/currency`.
    pub pointer: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem of a registered type. An unknown slug becomes `internal-error`, so the
    /// response is always one the registry documents.
    pub fn of(slug: &str, detail: impl Into<String>) -> Self {
        let (slug, title, status) = PROBLEM_TYPES
            .iter()
            .find(|(s, _, _)| *s == slug)
            .copied()
            .unwrap_or(("internal-error", "Internal error", 500));
        Self {
            problem_type: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_owned(),
            status,
            detail: Some(detail.into()),
            instance: None,
            errors: Vec::new(),
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::of("malformed-request", detail)
    }
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::of("unauthenticated", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::of("forbidden", detail)
    }
    pub fn not_found(what: &str) -> Self {
        Self::of("not-found", format!("{what} not found"))
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::of("conflict", detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::of("service-unavailable", detail)
    }
    /// An internal failure. The detail given is logged by the caller, never returned.
    pub fn internal() -> Self {
        Self::of(
            "internal-error",
            "an internal error occurred; it has been logged",
        )
    }
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut p = Self::of("validation-failed", "the request body failed validation");
        p.errors = errors;
        p
    }
    pub fn field(pointer: &str, detail: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            pointer: pointer.to_owned(),
            detail: detail.into(),
        }])
    }

    /// This problem as it may leave the process: `detail`, `instance` and each field
    /// error masked by [`crate::redact::apply`] (they can echo a request's path or input).
    pub fn redacted(&self) -> Self {
        let mask = |s: &str| crate::redact::apply(s).into_owned();
        Self {
            problem_type: self.problem_type.clone(),
            title: self.title.clone(),
            status: self.status,
            detail: self.detail.as_deref().map(mask),
            instance: self.instance.as_deref().map(mask),
            errors: self
                .errors
                .iter()
                .map(|e| FieldError {
                    pointer: mask(&e.pointer),
                    detail: mask(&e.detail),
                })
                .collect(),
        }
    }

    pub fn slug(&self) -> &str {
        self.problem_type
            .strip_prefix(PROBLEM_BASE)
            .unwrap_or(&self.problem_type)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.title, self.status)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self.redacted())
    }
}

/// Collects field errors while parsing a request body.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, pointer: &str, detail: impl Into<String>) {
        self.0.push(FieldError {
            pointer: pointer.to_owned(),
            detail: detail.into(),
        });
    }
    /// Records the error of `result` at `pointer`, returning its value when it is Ok.
    pub fn check<T, E: fmt::Display>(&mut self, pointer: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(pointer, e.to_string());
                None
            }
        }
    }
    pub fn into_result(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_of_registered_type_carries_its_status() {
        let p = Problem::not_found("account");
        assert_eq!(p.status, 404);
        assert_eq!(p.slug(), "not-found");
        assert_eq!(p.problem_type, format!("{PROBLEM_BASE}not-found"));
    }

    #[test]
    fn unknown_slug_falls_back_to_internal_error() {
        assert_eq!(Problem::of("no-such-thing", "x").status, 500);
    }

    #[test]
    fn responses_never_echo_a_card_number_or_a_token() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let mut p = Problem::field(
            "/merchant/4000056655665556",
            "unknown card 4000056655665556",
        );
        p.detail = Some(format!("invalid query string: unknown field `{jwt}`"));
        p.instance = Some("/v1/cards/4000056655665556".to_owned());
        let res = p.error_response();
        let body =
            actix_web::body::MessageBody::try_into_bytes(res.into_body()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("4000056655665556") && !text.contains(jwt),
            "{text}"
        );
        assert!(text.contains("/v1/cards/400005******5556"), "{text}");
        assert!(text.contains("unknown card 400005******5556"), "{text}");
    }

    #[test]
    fn validation_problem_lists_pointers() {
        let p = Problem::field("/amount/currency", "unknown currency");
        let v = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][0]["pointer"], "/amount/currency");
    }
}
