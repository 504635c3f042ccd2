//! Abuse and overload limits: security headers on every response, a bound on JSON
//! nesting, and load shedding with 503 and Retry-After instead of collapse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::json;
use tests::TestSystem;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_response_carries_the_security_headers() {
    let sys = TestSystem::start().await;
    let token = sys.token();
    let accounts = format!("{}/v1/accounts", sys.accounts);
    let created = sys
        .post(&accounts, json!({"legal_name": "Acme", "currency": "USD", "credit_limit": {"amount": 1000, "currency": "USD"}}))
        .await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap();
    let responses = [
        sys.get(&format!("{accounts}/{id}")).await,
        sys.send(Method::GET, &format!("{accounts}/{id}"), None, None, &[])
            .await,
        sys.send(
            Method::GET,
            &format!("{}/nowhere", sys.payments),
            Some(&token),
            None,
            &[],
        )
        .await,
        sys.send(
            Method::GET,
            &format!("{}/health/live", sys.settlement),
            None,
            None,
            &[],
        )
        .await,
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, vec![200, 401, 404, 200]);
    for r in &responses {
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ] {
            let got = r.headers.get(name).and_then(|v| v.to_str().ok());
            assert_eq!(got, Some(value), "{name} on a {} response", r.status);
        }
        assert!(r.headers.contains_key("strict-transport-security"));
    }
    // The Swagger UI may load its own scripts, and nothing else.
    let docs = sys
        .http
        .get(format!("{}/docs/", sys.accounts))
        .send()
        .await
        .unwrap();
    let csp = docs
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_nested_too_deeply_is_refused_unparsed() {
    let sys = TestSystem::start().await;
    let url = format!("{}/v1/accounts", sys.accounts);
    let nested = |n: usize| format!("{{\"legal_name\": {}1{}}}", "[".repeat(n), "]".repeat(n));
    let deep = sys
        .send_raw(
            Method::POST,
            &url,
            Some(&sys.token()),
            "application/json",
            &nested(40),
            &[],
        )
        .await;
    assert_eq!(deep.status, 400, "{:?}", deep.body);
    assert_eq!(
        deep.body["type"],
        "https://problems.fleet-cards.example/malformed-request"
    );
    assert!(deep.body["detail"]
        .as_str()
        .unwrap()
        .contains("nested deeper than 32"));
    // Within the bound it is parsed, and judged on its shape.
    let shallow = sys
        .send_raw(
            Method::POST,
            &url,
            Some(&sys.token()),
            "application/json",
            &nested(3),
            &[],
        )
        .await;
    assert_eq!(shallow.status, 422, "{:?}", shallow.body);
    assert_eq!(
        sys.count("SELECT count(*) AS count FROM accounts.accounts")
            .await,
        0
    );
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_its_capacity_a_service_sheds_load_with_503_and_recovers() {
    let sys = TestSystem::start_with(&["payments"]).await;
    let card = sys.card_known_to_payments(1_000_000_000).await;
    sys.restart("payments", &[("PAYMENTS__HTTP__MAX_IN_FLIGHT", "2")])
        .await;
    let url = format!("{}/v1/authorizations", sys.payments);
    let body = json!({"card_id": card, "amount": {"amount": 100, "currency": "USD"},
        "merchant": {"id": "m-1", "name": "Fuel", "mcc": "5541", "country": "US"}});
    let burst = (0..60).map(|i| {
        let (sys, url, body) = (&sys, url.clone(), body.clone());
        async move {
            let key = format!("burst-{i}");
            sys.send(
                Method::POST,
                &url,
                Some(&sys.token()),
                Some(body),
                &[("Idempotency-Key", &key)],
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(burst).await;
    let shed: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    let served = answers.iter().filter(|r| r.status == 201).count();
    assert!(!shed.is_empty(), "some requests were shed");
    assert!(served > 0, "some requests were served");
    assert_eq!(
        shed.len() + served,
        answers.len(),
        "nothing but 201 and 503"
    );
    for r in &shed {
        assert_eq!(r.content_type, "application/problem+json");
        assert_eq!(
            r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
    // Shed requests changed nothing; served ones are all there; the service recovers.
    let n = sys
        .count("SELECT count(*) AS count FROM payments.authorizations")
        .await;
    assert_eq!(n, served as i64);
    let after = sys.post_idem(&url, "after-the-burst", body).await;
    assert_eq!(after.status, 201, "{:?}", after.body);
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_beyond_its_rate_gets_429_with_retry_after_and_others_go_on() {
    let sys = TestSystem::start_with(&["payments"]).await;
    let card = sys.card_known_to_payments(1_000).await;
    sys.restart(
        "payments",
        &[
            ("PAYMENTS__HTTP__RATE_LIMIT_PER_SEC", "1"),
            ("PAYMENTS__HTTP__RATE_LIMIT_BURST", "5"),
        ],
    )
    .await;
    let url = format!("{}/v1/cards/{card}/spend", sys.payments);
    let alice = sys
        .issuer
        .mint("alice", shared_kernel::auth::ALL_SCOPES, 300)
        .unwrap();
    let bob = sys
        .issuer
        .mint("bob", shared_kernel::auth::ALL_SCOPES, 300)
        .unwrap();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let r = sys.send(Method::GET, &url, Some(&alice), None, &[]).await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            refused.get_or_insert(r);
        }
    }
    // The burst is served; what follows within the same second or two is refused.
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let refused = refused.unwrap();
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(
        refused.body["type"],
        "https://problems.fleet-cards.example/rate-limited"
    );
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another client has a budget of its own.
    let r = sys.send(Method::GET, &url, Some(&bob), None, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Requests without a token count against their address, and are limited too.
    let anonymous: Vec<u16> = futures_util::future::join_all(
        (0..8).map(|_| sys.send(Method::GET, &url, None, None, &[])),
    )
    .await
    .iter()
    .map(|r| r.status.as_u16())
    .collect();
    assert!(
        anonymous.contains(&401) && anonymous.contains(&429),
        "{anonymous:?}"
    );
    // Health is never limited; after the advised wait, alice is served again.
    let live = sys
        .send(
            Method::GET,
            &format!("{}/health/live", sys.payments),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(live.status, 200);
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let again = sys.send(Method::GET, &url, Some(&alice), None, &[]).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}
