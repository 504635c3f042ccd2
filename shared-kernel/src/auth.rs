//! JWT bearer authentication with scopes.
//!
//! Tokens are HS256-signed with a key from configuration, carry `iss`, `aud`, `exp`,
//! `nbf` and a space-separated `scope`. A missing or invalid token is a 401 problem; a
//! valid token without the endpoint's scope is a 403 problem.

use crate::problem::Problem;
use crate::secrets::Secret;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};

/// Every scope an endpoint of this program can ask for.
pub const ALL_SCOPES: &[&str] = &[
    "accounts:read",
    "accounts:write",
    "audit:read",
    "cards:write",
    "payments:read",
    "payments:write",
    "settlement:read",
    "settlement:write",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub scope: String,
}

/// Checks tokens; shared with handlers through `web::Data`.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(secret: &Secret<String>, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Caller, Problem> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            // The error kind only; never the token.
            Problem::unauthenticated(format!("invalid bearer token: {:?}", e.kind()))
        })?;
        Ok(Caller {
            subject: data.claims.sub,
            scopes: data
                .claims
                .scope
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// Mints tokens (development tooling and tests).
pub struct JwtIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl JwtIssuer {
    pub fn new(secret: &Secret<String>, issuer: &str, audience: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn mint(
        &self,
        subject: &str,
        scopes: &[&str],
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            scope: scopes.join(" "),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.key)
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    scopes: Vec<String>,
}

impl Caller {
    /// 403 problem unless the token carries `scope`.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this operation needs the scope '{scope}'"
            )))
        }
    }
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// The caller of `req`, from its bearer token.
pub(crate) fn authenticate(req: &HttpRequest) -> Result<Caller, Problem> {
    let verifier = req.app_data::<web::Data<JwtVerifier>>().ok_or_else(|| {
        tracing::error!("JwtVerifier is not configured");
        Problem::internal()
    })?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthenticated("an Authorization: Bearer token is required"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Problem::unauthenticated("the Authorization header must be 'Bearer <token>'")
        })?;
    verifier.verify(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (JwtIssuer, JwtVerifier) {
        let secret = Secret::new("k".repeat(32));
        (
            JwtIssuer::new(&secret, "iss", "aud"),
            JwtVerifier::new(&secret, "iss", "aud"),
        )
    }

    #[test]
    fn accepts_own_tokens_and_checks_scopes() {
        let (issuer, verifier) = pair();
        let token = issuer.mint("alice", &["payments:read"], 60).unwrap();
        let caller = verifier.verify(&token).unwrap();
        assert_eq!(caller.subject, "alice");
        assert!(caller.require("payments:read").is_ok());
        assert_eq!(caller.require("payments:write").unwrap_err().status, 403);
    }

    #[test]
    fn rejects_expired_foreign_and_wrong_audience_tokens() {
        let (issuer, verifier) = pair();
        let expired = issuer.mint("a", &[], -60).unwrap();
        assert_eq!(verifier.verify(&expired).unwrap_err().status, 401);
        let other = JwtIssuer::new(&Secret::new("x".repeat(32)), "iss", "aud")
            .mint("a", &[], 60)
            .unwrap();
        assert_eq!(verifier.verify(&other).unwrap_err().status, 401);
        let wrong_aud = JwtIssuer::new(&Secret::new("k".repeat(32)), "iss", "other")
            .mint("a", &[], 60)
            .unwrap();
        assert_eq!(verifier.verify(&wrong_aud).unwrap_err().status, 401);
    }
}
