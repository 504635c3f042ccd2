//! Bearer tokens over HTTP, with signing keys in an OpenBao of the test's own: every
//! refusal is a problem with the right status (401: no token, malformed header, expired,
//! not yet valid, wrong audience, wrong issuer, bad signature, unknown key id, the
//! development key, algorithm confusion; 403: wrong scope); after a key rotation in
//! Vault the old and the new key id are both accepted without a restart; a retired
//! (deleted or destroyed) version is refused after the next refresh; and with Vault gone
//! the last known keys stay in use. payments runs as a child process configured only
//! through its environment, settlement in this process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use reqwest::Method;
use serde_json::Value;
use shared_kernel::auth::key_store::VaultKeyStore;
use shared_kernel::auth::keys::Ed25519Pem;
use shared_kernel::auth::{Claims, JwtIssuer};
use shared_kernel::config::{JwtKeys, VaultJwtKeys, VaultSettings};
use shared_kernel::secrets::Secret;
use std::time::Duration;
use tests::infra::OwnVault;
use tests::{TestSystem, JWT_AUDIENCE, JWT_ISSUER};

const MOUNT: &str = "secret";
const PATH: &str = "fleet/jwt-signing";
const PROBLEMS: &str = "https://problems.fleet-cards.example/";
/// Long enough for a child process to start and for a few refreshes of its keys.
const WAIT: Duration = Duration::from_secs(30);

/// A GET to each service that a token with every scope may make.
fn endpoints(sys: &TestSystem) -> [(String, &'static str); 2] {
    [
        (
            format!("{}/v1/cards/{}/spend", sys.payments, uuid::Uuid::now_v7()),
            "payments:read",
        ),
        (
            format!(
                "{}/v1/settlement-batches?merchant_id=m-auth",
                sys.settlement
            ),
            "settlement:read",
        ),
    ]
}

/// Whether the services let `token` through (payments: 404 for the unknown card,
/// settlement: 200), as opposed to refusing it with 401.
/// Whether both services answer 401 to `token`.
async fn refused_by_both(sys: &TestSystem, token: &str) -> bool {
    for (url, _) in endpoints(sys) {
        let r = sys.send(Method::GET, &url, Some(token), None, &[]).await;
        if r.status != 401 {
            return false;
        }
    }
    true
}

async fn accepted(sys: &TestSystem, token: &str) -> bool {
    let mut all = true;
    for (url, _) in endpoints(sys) {
        let r = sys.send(Method::GET, &url, Some(token), None, &[]).await;
        assert!(
            [200, 401, 404].contains(&r.status.as_u16()),
            "{url}: {} {:?}",
            r.status,
            r.body
        );
        all &= r.status != 401;
    }
    all
}

/// Sends `token` (or no Authorization header, or `header` as the whole header) to each
/// service and expects a problem of `status` whose detail mentions `why`.
async fn expect_refused(
    sys: &TestSystem,
    what: &str,
    token: Option<&str>,
    header: Option<&str>,
    status: u16,
    why: &str,
) {
    for (url, _) in endpoints(sys) {
        let headers: Vec<(&str, &str)> = header.map(|h| ("Authorization", h)).into_iter().collect();
        let r = sys.send(Method::GET, &url, token, None, &headers).await;
        assert_eq!(r.status.as_u16(), status, "{what} at {url}: {:?}", r.body);
        assert_eq!(
            r.content_type, "application/problem+json",
            "{what} at {url}"
        );
        let slug = if status == 403 {
            "forbidden"
        } else {
            "unauthenticated"
        };
        assert_eq!(
            r.body["type"],
            format!("{PROBLEMS}{slug}"),
            "{what} at {url}"
        );
        assert_eq!(r.body["status"], status, "{what} at {url}");
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(why),
            "{what} at {url}: detail {detail:?} should mention {why:?}"
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public secret's current version as Vault stores it.
async fn stored_version(vault: &OwnVault) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/{MOUNT}/data/{PATH}", vault.addr))
        .header("X-Vault-Token", &vault.token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["data"]["data"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_checked_and_signing_keys_rotate_through_vault() {
    let mut vault = OwnVault::start().await;
    let settings = VaultSettings {
        addr: vault.addr.clone(),
        token: Secret::new(vault.token.clone()),
        transit_mount: "transit".to_owned(),
    };
    let store = VaultKeyStore::new(&settings, MOUNT, PATH, 2).unwrap();
    let first = store.rotate().await.unwrap();
    assert_eq!(first.version, 1);
    // The secret the services read holds the public key only.
    let stored = stored_version(&vault).await;
    assert_eq!(stored["kid"], first.kid.as_str());
    assert_eq!(stored["alg"], "EdDSA");
    let public_pem = stored["public_key_pem"].as_str().unwrap().to_owned();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(
        !stored.to_string().contains("PRIVATE"),
        "no private key in the services' secret"
    );

    let keys = JwtKeys::Vault(VaultJwtKeys {
        mount: MOUNT.to_owned(),
        path: PATH.to_owned(),
        accepted: 2,
        refresh: Duration::from_secs(1),
    });
    let sys = TestSystem::start_with_keys(&["payments"], &vault.addr, &vault.token, keys).await;
    let issuer = |key| JwtIssuer::with_key(key, JWT_ISSUER, JWT_AUDIENCE);
    let one = issuer(store.newest_signing_key().await.unwrap());
    assert_eq!(one.kid(), first.kid);
    let all = shared_kernel::auth::ALL_SCOPES;
    let token_one = one.mint("auth-test", all, 600).unwrap();
    assert!(
        accepted(&sys, &token_one).await,
        "the Vault key is accepted"
    );

    // 401 for every kind of bad token, 403 for a missing scope.
    expect_refused(&sys, "no token", None, None, 401, "Authorization").await;
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token x.y.z"] {
        expect_refused(&sys, header, None, Some(header), 401, "Bearer").await;
    }
    // The scheme is case-insensitive; this token is not a JWT.
    expect_refused(&sys, "bearer", None, Some("bearer x.y"), 401, "malformed").await;
    expect_refused(&sys, "not a JWT", Some("not-a.jwt"), None, 401, "malformed").await;
    let now = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut Claims)| {
        let mut c = one.claims("auth-test", all, 600);
        change(&mut c);
        one.sign(&c).unwrap()
    };
    let expired = with(&|c| {
        c.nbf = now - 120;
        c.exp = now - 60;
    });
    expect_refused(&sys, "expired", Some(&expired), None, 401, "expired").await;
    let early = with(&|c| c.nbf = now + 60);
    expect_refused(
        &sys,
        "not yet valid",
        Some(&early),
        None,
        401,
        "not valid yet",
    )
    .await;
    let elsewhere = with(&|c| c.aud = "another-audience".to_owned());
    expect_refused(
        &sys,
        "wrong audience",
        Some(&elsewhere),
        None,
        401,
        "audience",
    )
    .await;
    let foreign = with(&|c| c.iss = "someone-else".to_owned());
    expect_refused(&sys, "wrong issuer", Some(&foreign), None, 401, "issuer").await;

    // A key that is not in Vault, once under the live kid and once under its own.
    let stranger = Ed25519Pem::generate().unwrap();
    let mut forged_key = stranger.signing_key().unwrap();
    forged_key.kid = first.kid.clone();
    let forged = issuer(forged_key).mint("auth-test", all, 600).unwrap();
    expect_refused(&sys, "bad signature", Some(&forged), None, 401, "signature").await;
    let (head, rest) = token_one.split_once('.').unwrap();
    let signature = rest.rsplit_once('.').unwrap().1;
    let mut widened = one.claims("someone-else", all, 600);
    widened.sub = "admin".to_owned();
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(&serde_json::to_vec(&widened).unwrap())
    );
    expect_refused(
        &sys,
        "tampered claims",
        Some(&tampered),
        None,
        401,
        "signature",
    )
    .await;
    let unknown = issuer(stranger.signing_key().unwrap())
        .mint("auth-test", all, 600)
        .unwrap();
    expect_refused(&sys, "unknown kid", Some(&unknown), None, 401, "kid").await;
    expect_refused(
        &sys,
        "development key",
        Some(&sys.token()),
        None,
        401,
        "kid",
    )
    .await;

    // Algorithm confusion: HS256 keyed with the public key, and alg none.
    let claims = b64(&serde_json::to_vec(&one.claims("auth-test", all, 600)).unwrap());
    let hs = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(first.kid.clone());
        encode(
            &h,
            &one.claims("auth-test", all, 600),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap()
    };
    expect_refused(
        &sys,
        "HS256 with the public key",
        Some(&hs),
        None,
        401,
        "algorithm",
    )
    .await;
    let none_header =
        b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, first.kid).as_bytes());
    let none = format!("{none_header}.{claims}.");
    expect_refused(&sys, "alg none", Some(&none), None, 401, "malformed").await;

    for (url, scope) in endpoints(&sys) {
        let other: Vec<&str> = all.iter().copied().filter(|s| *s != scope).collect();
        let narrow = one.mint("auth-test", &other, 600).unwrap();
        let r = sys.send(Method::GET, &url, Some(&narrow), None, &[]).await;
        assert_eq!(r.status, 403, "{url}: {:?}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
        assert_eq!(r.body["type"], format!("{PROBLEMS}forbidden"));
        assert!(r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(scope));
    }

    // Rotation: the new key id is accepted without a restart, and the old one still is.
    let second = store.rotate().await.unwrap();
    assert_eq!(second.version, 2);
    let two = issuer(store.newest_signing_key().await.unwrap());
    assert_eq!(two.kid(), second.kid);
    let token_two = two.mint("auth-test", all, 600).unwrap();
    sys.eventually("the new key to be accepted", WAIT, || async {
        accepted(&sys, &token_two).await.then_some(())
    })
    .await;
    assert!(
        accepted(&sys, &token_one).await,
        "the old key is still accepted"
    );

    // Retiring version 1 (deleted): its tokens are refused after the next refresh.
    assert_eq!(store.retire(1, false).await.unwrap(), first.kid);
    sys.eventually("the retired key to be refused", WAIT, || async {
        refused_by_both(&sys, &token_one).await.then_some(())
    })
    .await;
    expect_refused(&sys, "retired kid", Some(&token_one), None, 401, "kid").await;
    assert!(accepted(&sys, &token_two).await);

    // Another rotation, then version 2 destroyed for good: only version 3 is left.
    let third = store.rotate().await.unwrap();
    let three = issuer(store.newest_signing_key().await.unwrap());
    assert_eq!(three.kid(), third.kid);
    let token_three = three.mint("auth-test", all, 600).unwrap();
    sys.eventually("the third key to be accepted", WAIT, || async {
        accepted(&sys, &token_three).await.then_some(())
    })
    .await;
    assert!(
        accepted(&sys, &token_two).await,
        "versions 3 and 2 are accepted"
    );
    store.retire(2, true).await.unwrap();
    sys.eventually("the destroyed key to be refused", WAIT, || async {
        refused_by_both(&sys, &token_two).await.then_some(())
    })
    .await;
    assert!(accepted(&sys, &token_three).await);

    // Vault gone: each service warns at its next refresh and keeps the keys it knew.
    vault.stop();
    let warning = "could not refresh the token verification keys";
    sys.eventually(
        "both services to notice that Vault is gone",
        WAIT,
        || async {
            (tests::logs::captured().contains(warning)
                && sys.process_log("payments").contains(warning))
            .then_some(())
        },
    )
    .await;
    assert!(
        accepted(&sys, &token_three).await,
        "the last known key still works"
    );
    expect_refused(
        &sys,
        "retired kid, Vault gone",
        Some(&token_two),
        None,
        401,
        "kid",
    )
    .await;

    // Neither the Vault token nor any bearer token reached a log line.
    let logs = format!("{}{}", tests::logs::captured(), sys.process_log("payments"));
    for (what, secret) in [
        ("the Vault token", vault.token.as_str()),
        ("a bearer token", token_one.as_str()),
        ("a bearer token", token_three.as_str()),
        ("a forged token", forged.as_str()),
    ] {
        assert!(!logs.contains(secret), "{what} was logged");
    }
    assert!(!logs.contains("PRIVATE KEY"), "a private key was logged");

    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}
