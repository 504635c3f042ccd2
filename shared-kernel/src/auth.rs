//! JWT bearer authentication with scopes and rotatable keys.
//!
//! A token carries `sub`, `iss`, `aud`, `exp`, `nbf` and a space-separated `scope`, and
//! names its key in the `kid` header. The verifier holds a set of verification keys,
//! picks the one of the token's `kid`, and accepts only that key's algorithm, so a token
//! cannot choose how it is checked (no `none`, no HS256 made with a public key).
//!
//! The keys come from one of two places (ADR 0015):
//! - development: the HS256 secret `AUTH__JWT_SECRET`, key id [`keys::DEV_KID`] (tokens
//!   without a `kid` are accepted for that key only);
//! - Vault: the Ed25519 public keys of the newest versions of a KV v2 secret
//!   ([`key_store::VaultKeyStore`]), refreshed periodically and, at most once per
//!   [`UNKNOWN_KID_REFRESH_GAP`], when a token names a key id not known yet; when Vault
//!   does not answer, the last known keys stay in use.
//!
//! A missing or invalid token is a 401 problem; a valid token without the endpoint's
//! scope is a 403 problem; before the keys could be loaded even once, 503.

pub mod caller;
pub mod key_store;
pub mod keys;

pub use caller::Caller;

use crate::config::{CommonSettings, JwtKeys};
use crate::problem::Problem;
use crate::secrets::Secret;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::{BoxFuture, LocalBoxFuture};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, encode, Header, Validation};
use keys::{SigningKey, VerificationKey, DEV_KID};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// The least time between two refreshes caused by tokens of unknown key ids, so a
/// stream of made-up key ids cannot turn into a stream of Vault requests.
pub const UNKNOWN_KID_REFRESH_GAP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub scope: String,
    /// The program (tenant) the token is bound to; none for a platform token (ADR 0018).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
}

/// Where a verifier gets its keys when it refreshes them.
pub trait KeySource: Send + Sync {
    /// The keys to accept now, newest first.
    fn load(&self) -> BoxFuture<'_, anyhow::Result<Vec<VerificationKey>>>;
}

#[derive(Default)]
struct KeySet {
    keys: Vec<VerificationKey>,
    /// Whether the keys were loaded at least once (a static set always is).
    loaded: bool,
}

/// Checks tokens; shared with handlers through `web::Data`.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    keys: RwLock<Arc<KeySet>>,
    source: Option<Arc<dyn KeySource>>,
    /// Tokens without a `kid` are checked with the only key (development key only).
    accept_missing_kid: bool,
    /// When the last refresh for an unknown key id started; held while it runs.
    unknown_kid_refresh: tokio::sync::Mutex<Option<Instant>>,
    unknown_kid_gap: Duration,
}

impl JwtVerifier {
    /// The development verifier: one HS256 key, key id `dev` (or no key id).
    pub fn new(secret: &Secret<String>, issuer: &str, audience: &str) -> Self {
        let mut v = Self::with_keys(
            vec![VerificationKey::hs256(DEV_KID, secret)],
            issuer,
            audience,
        );
        v.accept_missing_kid = true;
        v
    }

    /// A verifier with a fixed set of keys.
    pub fn with_keys(keys: Vec<VerificationKey>, issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(Arc::new(KeySet { keys, loaded: true })),
            source: None,
            accept_missing_kid: false,
            unknown_kid_refresh: tokio::sync::Mutex::new(None),
            unknown_kid_gap: UNKNOWN_KID_REFRESH_GAP,
        }
    }

    /// A verifier whose keys come from `source`; it holds none until [`Self::refresh`].
    /// A token of an unknown key id refreshes the keys at most once per `unknown_kid_gap`.
    pub fn with_source(
        source: Arc<dyn KeySource>,
        issuer: &str,
        audience: &str,
        unknown_kid_gap: Duration,
    ) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            source: Some(source),
            accept_missing_kid: false,
            unknown_kid_refresh: tokio::sync::Mutex::new(None),
            unknown_kid_gap,
        }
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The key ids accepted now, newest first.
    pub fn kids(&self) -> Vec<String> {
        self.current().keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// Loads the keys from the source. On failure the last known keys stay, and a
    /// warning names the error (never a key or token). Returns whether it loaded.
    pub async fn refresh(&self) -> bool {
        let Some(source) = &self.source else {
            return true;
        };
        match source.load().await {
            Ok(keys) => {
                let kids: Vec<String> = keys.iter().map(|k| k.kid.clone()).collect();
                let before = self.current();
                if !before.loaded || self.kids() != kids {
                    if kids.is_empty() {
                        tracing::warn!(
                            "no token verification keys are published; every token is refused"
                        );
                    } else {
                        tracing::info!(kids = ?kids, "token verification keys loaded");
                    }
                }
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Arc::new(KeySet { keys, loaded: true });
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    kept = ?self.kids(),
                    "could not refresh the token verification keys; keeping the last known ones"
                );
                false
            }
        }
    }

    /// Refreshes the keys every `interval` for as long as the verifier lives elsewhere.
    pub fn spawn_refresh(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is now; the keys were just loaded
            loop {
                tick.tick().await;
                let Some(v) = verifier.upgrade() else { return };
                v.refresh().await;
            }
        })
    }

    /// One refresh for a token of an unknown key id, unless one ran within the gap.
    /// Concurrent callers wait for the refresh in progress instead of starting another.
    async fn refresh_for_unknown_kid(&self) {
        if self.source.is_none() {
            return;
        }
        let mut last = self.unknown_kid_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.unknown_kid_gap) {
            return;
        }
        *last = Some(Instant::now());
        self.refresh().await;
    }

    /// The key for a token's header, refreshing once for an unknown key id.
    async fn key_for(&self, header: &Header) -> Result<VerificationKey, Problem> {
        let find = |set: &KeySet| -> Option<VerificationKey> {
            match &header.kid {
                Some(kid) => set.keys.iter().find(|k| &k.kid == kid).cloned(),
                None if self.accept_missing_kid && set.keys.len() == 1 => set.keys.first().cloned(),
                None => None,
            }
        };
        if header.kid.is_none() && !self.accept_missing_kid {
            return Err(Problem::unauthenticated(
                "the token names no signing key (kid header)",
            ));
        }
        if let Some(key) = find(&self.current()) {
            return Ok(key);
        }
        self.refresh_for_unknown_kid().await;
        let set = self.current();
        if let Some(key) = find(&set) {
            return Ok(key);
        }
        if !set.loaded {
            return Err(Problem::unavailable(
                "the token signing keys are not available yet; retry later",
            ));
        }
        Err(Problem::unauthenticated(
            "the token's signing key (kid) is unknown or retired",
        ))
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, Problem> {
        // The error kind only; never the token.
        let header = decode_header(token).map_err(|e| refused(e.kind()))?;
        let key = self.key_for(&header).await?;
        if header.alg != key.alg {
            return Err(refused(&ErrorKind::InvalidAlgorithm));
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = decode::<Claims>(token, &key.key, &validation).map_err(|e| refused(e.kind()))?;
        let program = data
            .claims
            .program
            .as_deref()
            .map(crate::program::parse)
            .transpose()
            .map_err(|_| refused(&ErrorKind::InvalidClaimFormat("program".to_owned())))?;
        Ok(Caller::new(
            data.claims.sub,
            data.claims.scope.split_whitespace().map(str::to_owned),
            program,
        ))
    }
}

/// The 401 problem for a refused token, saying why in general terms.
fn refused(kind: &ErrorKind) -> Problem {
    let why = match kind {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidAudience => "the token is not meant for this audience".to_owned(),
        ErrorKind::InvalidIssuer => "the token's issuer is not trusted".to_owned(),
        ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
        ErrorKind::InvalidAlgorithm => {
            "the token's algorithm is not the one of its signing key".to_owned()
        }
        ErrorKind::MissingRequiredClaim(c) => format!("the token lacks the claim '{c}'"),
        ErrorKind::InvalidClaimFormat(c) => format!("the token's claim '{c}' is malformed"),
        _ => "the token is malformed".to_owned(),
    };
    Problem::unauthenticated(format!("invalid bearer token: {why}"))
}

/// The verifier the settings ask for, with its keys loaded (or, when Vault does not
/// answer, none yet), and the task that refreshes them from Vault.
pub async fn start_verifier(
    common: &CommonSettings,
) -> anyhow::Result<(Arc<JwtVerifier>, Option<tokio::task::JoinHandle<()>>)> {
    match &common.jwt_keys {
        JwtKeys::Secret(secret) => Ok((
            Arc::new(JwtVerifier::new(
                secret,
                &common.jwt_issuer,
                &common.jwt_audience,
            )),
            None,
        )),
        JwtKeys::Vault(v) => {
            let vault = common.vault.as_ref().ok_or_else(|| {
                anyhow::anyhow!("AUTH__VAULT_PATH needs VAULT__ADDR and VAULT__TOKEN")
            })?;
            let store = key_store::VaultKeyStore::new(vault, &v.mount, &v.path, v.accepted)?;
            let verifier = Arc::new(JwtVerifier::with_source(
                Arc::new(store),
                &common.jwt_issuer,
                &common.jwt_audience,
                UNKNOWN_KID_REFRESH_GAP.min(v.refresh),
            ));
            verifier.refresh().await;
            let task = verifier.spawn_refresh(v.refresh);
            Ok((verifier, Some(task)))
        }
    }
}

/// Mints tokens (development tooling and tests).
pub struct JwtIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
}

impl JwtIssuer {
    /// An issuer with the development HS256 key (key id `dev`).
    pub fn new(secret: &Secret<String>, issuer: &str, audience: &str) -> Self {
        Self::with_key(SigningKey::hs256(DEV_KID, secret), issuer, audience)
    }

    pub fn with_key(key: SigningKey, issuer: &str, audience: &str) -> Self {
        Self {
            key,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// The claims of a token for `subject` with `scopes`, valid from now for `ttl_secs`.
    pub fn claims(&self, subject: &str, scopes: &[&str], ttl_secs: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: subject.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            scope: scopes.join(" "),
            program: None,
        }
    }

    pub fn mint(
        &self,
        subject: &str,
        scopes: &[&str],
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(&self.claims(subject, scopes, ttl_secs))
    }

    /// A token bound to `program` (ADR 0018).
    pub fn mint_for_program(
        &self,
        subject: &str,
        scopes: &[&str],
        ttl_secs: i64,
        program: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut claims = self.claims(subject, scopes, ttl_secs);
        claims.program = Some(program.to_owned());
        self.sign(&claims)
    }

    /// Signs any claims (tests use it for expired, early or foreign tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.key.alg);
        header.kid = Some(self.key.kid.clone());
        encode(&header, claims, &self.key.key)
    }
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { caller_of(&req).await })
    }
}

/// The caller of `req`, from its bearer token, verified once per request: the rate
/// limit, the audit log and the handler all ask, and later asks get the first answer.
pub(crate) async fn caller_of(req: &HttpRequest) -> Result<Caller, Problem> {
    use actix_web::HttpMessage;
    let known = req.extensions().get::<Caller>().cloned();
    if let Some(caller) = known {
        return Ok(caller);
    }
    let (verifier, token) = bearer_token(req)?;
    let caller = verifier.verify(&token).await?;
    req.extensions_mut().insert(caller.clone());
    Ok(caller)
}

fn bearer_token(req: &HttpRequest) -> Result<(web::Data<JwtVerifier>, String), Problem> {
    let verifier = req
        .app_data::<web::Data<JwtVerifier>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("JwtVerifier is not configured");
            Problem::internal()
        })?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthenticated("an Authorization: Bearer token is required"))?;
    // The scheme is case-insensitive (RFC 9110, 11.1).
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Problem::unauthenticated("the Authorization header must be 'Bearer <token>'")
        })?;
    Ok((verifier, token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use keys::Ed25519Pem;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    fn pair() -> (JwtIssuer, JwtVerifier) {
        let secret = Secret::new("k".repeat(32));
        (
            JwtIssuer::new(&secret, "iss", "aud"),
            JwtVerifier::new(&secret, "iss", "aud"),
        )
    }

    fn status(r: Result<Caller, Problem>) -> u16 {
        r.map(|_| 200).unwrap_or_else(|p| p.status)
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    /// A key source whose keys a test changes, counting its loads.
    struct FakeSource {
        keys: Mutex<Result<Vec<VerificationKey>, String>>,
        loads: AtomicUsize,
    }

    impl FakeSource {
        fn new(keys: Vec<VerificationKey>) -> Arc<Self> {
            Arc::new(Self {
                keys: Mutex::new(Ok(keys)),
                loads: AtomicUsize::new(0),
            })
        }
        fn set(&self, keys: Result<Vec<VerificationKey>, String>) {
            *self.keys.lock().unwrap() = keys;
        }
        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
        }
    }

    impl KeySource for FakeSource {
        fn load(&self) -> BoxFuture<'_, anyhow::Result<Vec<VerificationKey>>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let keys = self.keys.lock().unwrap().clone();
            Box::pin(async move { keys.map_err(|e| anyhow::anyhow!(e)) })
        }
    }

    fn ed() -> (JwtIssuer, VerificationKey, Ed25519Pem) {
        let pem = Ed25519Pem::generate().unwrap();
        let issuer = JwtIssuer::with_key(pem.signing_key().unwrap(), "iss", "aud");
        (issuer, pem.verification_key().unwrap(), pem)
    }

    #[tokio::test]
    async fn accepts_own_tokens_and_checks_scopes() {
        let (issuer, verifier) = pair();
        let token = issuer.mint("alice", &["payments:read"], 60).unwrap();
        let caller = verifier.verify(&token).await.unwrap();
        assert_eq!(caller.subject, "alice");
        assert!(caller.require("payments:read").is_ok());
        assert_eq!(caller.require("payments:write").unwrap_err().status, 403);
    }

    #[tokio::test]
    async fn rejects_expired_foreign_and_wrong_audience_tokens() {
        let (issuer, verifier) = pair();
        let expired = issuer.mint("a", &[], -60).unwrap();
        assert_eq!(status(verifier.verify(&expired).await), 401);
        let other = JwtIssuer::new(&Secret::new("x".repeat(32)), "iss", "aud")
            .mint("a", &[], 60)
            .unwrap();
        assert_eq!(status(verifier.verify(&other).await), 401);
        let wrong_aud = JwtIssuer::new(&Secret::new("k".repeat(32)), "iss", "other")
            .mint("a", &[], 60)
            .unwrap();
        assert_eq!(status(verifier.verify(&wrong_aud).await), 401);
    }

    #[tokio::test]
    async fn the_development_key_accepts_tokens_without_kid() {
        let secret = Secret::new("k".repeat(32));
        let (_, verifier) = pair();
        let claims = JwtIssuer::new(&secret, "iss", "aud").claims("a", &[], 60);
        let token = encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .unwrap();
        assert_eq!(status(verifier.verify(&token).await), 200);
    }

    #[tokio::test]
    async fn picks_the_key_by_kid() {
        let (old, old_key, _) = ed();
        let (new, new_key, _) = ed();
        let verifier = JwtVerifier::with_keys(vec![new_key, old_key], "iss", "aud");
        for issuer in [&old, &new] {
            let token = issuer.mint("a", &[], 60).unwrap();
            assert_eq!(status(verifier.verify(&token).await), 200);
        }
        // A token signed by the new key but naming the old kid fails its signature.
        let mut claims = new.claims("a", &[], 60);
        claims.sub = "b".to_owned();
        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(old.kid().to_owned());
        let (_, _, new_pem) = ed();
        let forged = encode(&header, &claims, &new_pem.signing_key().unwrap().key).unwrap();
        let p = verifier.verify(&forged).await.unwrap_err();
        assert_eq!(p.status, 401);
        assert!(p.detail.unwrap_or_default().contains("signature"));
    }

    #[tokio::test]
    async fn refuses_unknown_and_missing_kids() {
        let (issuer, key, _) = ed();
        let (stranger, _, _) = ed();
        let verifier = JwtVerifier::with_keys(vec![key], "iss", "aud");
        let p = verifier
            .verify(&stranger.mint("a", &[], 60).unwrap())
            .await
            .unwrap_err();
        assert_eq!(p.status, 401);
        assert!(p.detail.unwrap_or_default().contains("kid"));
        // Outside development a token must name its key.
        let claims = issuer.claims("a", &[], 60);
        let no_kid = encode(
            &Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &issuer.key.key,
        )
        .unwrap();
        assert_eq!(status(verifier.verify(&no_kid).await), 401);
    }

    #[tokio::test]
    async fn refuses_algorithm_confusion() {
        let (issuer, key, pem) = ed();
        let verifier = JwtVerifier::with_keys(vec![key], "iss", "aud");
        let claims = issuer.claims("a", &ALL_SCOPES[..1], 60);
        let payload = b64(&serde_json::to_string(&claims).unwrap());
        // alg none, with and without an empty signature.
        let none = b64(&format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            issuer.kid()
        ));
        for token in [format!("{none}.{payload}."), format!("{none}.{payload}")] {
            assert_eq!(status(verifier.verify(&token).await), 401, "{token}");
        }
        // HS256 keyed with the public key (PEM text and raw bytes), naming the Ed25519 kid.
        let raw = keys::ed25519_public_key_from_pem(&pem.public_key_pem).unwrap();
        for secret in [pem.public_key_pem.as_bytes(), raw.as_slice()] {
            let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(issuer.kid().to_owned());
            let token = encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .unwrap();
            let p = verifier.verify(&token).await.unwrap_err();
            assert_eq!(p.status, 401);
            assert!(p.detail.unwrap_or_default().contains("algorithm"));
        }
        // And the development verifier refuses an EdDSA token without a kid.
        let (_, dev) = pair();
        let no_kid = encode(
            &Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &issuer.key.key,
        )
        .unwrap();
        assert_eq!(status(dev.verify(&no_kid).await), 401);
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_once_within_the_gap() {
        let (old, old_key, _) = ed();
        let (new, new_key, _) = ed();
        let (newer, newer_key, _) = ed();
        let source = FakeSource::new(vec![]);
        source.set(Err("connection refused".to_owned()));
        let gap = Duration::from_millis(300);
        let verifier = JwtVerifier::with_source(source.clone(), "iss", "aud", gap);
        // Before the keys could ever be loaded: 503, not a verdict on the token.
        assert_eq!(
            status(verifier.verify(&old.mint("a", &[], 60).unwrap()).await),
            503
        );
        source.set(Ok(vec![old_key.clone()]));
        assert!(verifier.refresh().await);
        tokio::time::sleep(gap).await;
        let loads = source.loads();
        assert_eq!(
            status(verifier.verify(&old.mint("a", &[], 60).unwrap()).await),
            200
        );
        assert_eq!(source.loads(), loads, "a known kid needs no refresh");

        // Rotation: the new kid is fetched on first sight, and the old one still works.
        source.set(Ok(vec![new_key.clone(), old_key.clone()]));
        assert_eq!(
            status(verifier.verify(&new.mint("a", &[], 60).unwrap()).await),
            200
        );
        assert_eq!(source.loads(), loads + 1);
        assert_eq!(
            status(verifier.verify(&old.mint("a", &[], 60).unwrap()).await),
            200
        );

        // Within the gap an unknown kid does not reach the source again.
        source.set(Ok(vec![newer_key, new_key]));
        let (stranger, _, _) = ed();
        for _ in 0..5 {
            assert_eq!(
                status(verifier.verify(&stranger.mint("a", &[], 60).unwrap()).await),
                401
            );
        }
        assert_eq!(
            status(verifier.verify(&newer.mint("a", &[], 60).unwrap()).await),
            401
        );
        assert_eq!(source.loads(), loads + 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            status(verifier.verify(&newer.mint("a", &[], 60).unwrap()).await),
            200
        );
        assert_eq!(source.loads(), loads + 2);
        // The old key was retired at that refresh.
        assert_eq!(
            status(verifier.verify(&old.mint("a", &[], 60).unwrap()).await),
            401
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_keys() {
        let (issuer, key, _) = ed();
        let source = FakeSource::new(vec![key]);
        let verifier =
            JwtVerifier::with_source(source.clone(), "iss", "aud", Duration::from_millis(1));
        assert!(verifier.refresh().await);
        source.set(Err("connection refused".to_owned()));
        assert!(!verifier.refresh().await);
        assert_eq!(verifier.kids(), vec![issuer.kid().to_owned()]);
        assert_eq!(
            status(verifier.verify(&issuer.mint("a", &[], 60).unwrap()).await),
            200
        );
        // Vault answering "no keys" is not a failure: every token is refused then.
        source.set(Ok(vec![]));
        assert!(verifier.refresh().await);
        assert_eq!(
            status(verifier.verify(&issuer.mint("a", &[], 60).unwrap()).await),
            401
        );
    }

    #[tokio::test]
    async fn checks_not_before_and_issuer() {
        let (issuer, key, _) = ed();
        let verifier = JwtVerifier::with_keys(vec![key], "iss", "aud");
        let mut early = issuer.claims("a", &[], 600);
        early.nbf += 60;
        let p = verifier
            .verify(&issuer.sign(&early).unwrap())
            .await
            .unwrap_err();
        assert!(p.detail.unwrap_or_default().contains("not valid yet"));
        let mut within_leeway = issuer.claims("a", &[], 600);
        within_leeway.nbf += 2;
        assert_eq!(
            status(verifier.verify(&issuer.sign(&within_leeway).unwrap()).await),
            200
        );
        let mut foreign = issuer.claims("a", &[], 600);
        foreign.iss = "elsewhere".to_owned();
        let p = verifier
            .verify(&issuer.sign(&foreign).unwrap())
            .await
            .unwrap_err();
        assert!(p.detail.unwrap_or_default().contains("issuer"));
    }

    #[tokio::test]
    async fn reads_the_program_claim_and_refuses_a_malformed_one() {
        let (issuer, verifier) = pair();
        let bound = issuer.mint_for_program("a", &[], 60, "acme").unwrap();
        let caller = verifier.verify(&bound).await.unwrap();
        assert_eq!(caller.program(), Some("acme"));
        let platform = issuer.mint("a", &[], 60).unwrap();
        assert_eq!(verifier.verify(&platform).await.unwrap().program(), None);
        for bad in ["", "ACME", "acme/../globex"] {
            let token = issuer.mint_for_program("a", &[], 60, bad).unwrap();
            let p = verifier.verify(&token).await.unwrap_err();
            assert_eq!(p.status, 401, "{bad:?}");
            assert!(p.detail.unwrap_or_default().contains("program"));
        }
    }
}
