//! Nothing sensitive leaks (ADR 0019). The three contexts run as child processes, as
//! deployed, exporting their spans over OTLP/HTTP to a receiver in this test. The test
//! drives the whole API with a known card number and a known token (issuance, reveal,
//! authorizations, captures, settlement, the ledger, the audit log) and sends requests
//! that put the card number, the token and a CVV in URL paths, query strings, JSON
//! bodies of invalid requests, an unknown header, the User-Agent and the Authorization
//! header. Then it scans every log line, every exported span (names, attributes, events),
//! every response body and header and every published event for the card number in any
//! of its forms, the tokens, the secrets the services hold, the CVV, and any Luhn-valid
//! run of 13 to 19 digits: none may be found. The reveal response's body is the one
//! place the card number may appear.
//!
//! Then the proof that the scan is real and that redaction is what keeps the leaks out:
//! payments restarted with `PAYMENTS__LOG__REDACTION=off` (honoured by debug builds
//! only) and sent the same requests writes the card number and the token into its logs
//! and its spans, and the same scan finds them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tests::otlp::OtlpSink;
use tests::{Response, TestSystem};

/// The card issued with a known number (a Visa test number).
const PAN: &str = "4000056655665556";
const MASKED: &str = "400005******5556";
/// No field takes a CVV; clients still send one.
const CVV: &str = "9731";
const WAIT: Duration = Duration::from_secs(30);

/// The card number in every form a client may write it.
fn pan_forms() -> Vec<String> {
    let groups = ["4000", "0566", "5566", "5556"];
    vec![
        PAN.to_owned(),
        groups.join(" "),
        groups.join("-"),
        groups.join("+"),
        groups.join("%20"),
        base64_of(PAN),
    ]
}

/// What must never be found outside the reveal response.
struct Needles {
    exact: Vec<(String, &'static str)>,
}

impl Needles {
    fn new(sys: &TestSystem, tokens: &[&str]) -> Self {
        let mut exact: Vec<(String, &'static str)> = pan_forms()
            .into_iter()
            .map(|p| (p, "the card number"))
            .collect();
        for token in tokens {
            exact.push(((*token).to_owned(), "a bearer token"));
            // Its signature alone: a token cut short is still a leak.
            let signature = token.rsplit('.').next().unwrap();
            exact.push((signature.to_owned(), "a bearer token's signature"));
        }
        if let shared_kernel::config::JwtKeys::Secret(secret) = &sys.common.jwt_keys {
            exact.push((secret.expose().clone(), "the token signing secret"));
        }
        if let Some(vault) = &sys.common.vault {
            exact.push((vault.token.expose().clone(), "the Vault token"));
        }
        Self { exact }
    }

    /// Every finding in `text`: (what, where in the text).
    fn scan(&self, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (needle, what) in &self.exact {
            if let Some(at) = text.find(needle.as_str()) {
                found.push(format!("{what} at {}", context(text, at)));
            }
        }
        let lower = text.to_ascii_lowercase();
        for (at, _) in lower.match_indices("cvv") {
            let after = &text[at + 3..(at + 12).min(text.len())];
            if after.contains(CVV) {
                found.push(format!("the CVV at {}", context(text, at)));
            }
        }
        for (at, digits) in card_like_numbers(text) {
            found.push(format!(
                "a Luhn-valid number {digits} at {}",
                context(text, at)
            ));
        }
        found
    }
}

fn context(text: &str, at: usize) -> String {
    let start = (0..=at.saturating_sub(80))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let end = (at + 80..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    format!("…{}…", &text[start..end])
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match (i % 2 == 1, d * 2) {
                (true, d2) if d2 > 9 => d2 - 9,
                (true, d2) => d2,
                (false, _) => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card-like numbers, found independently of the code under test: a run of 13 to 19
/// digits standing alone (no letter or digit touching it), or the usual printed
/// groupings (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) joined by one space or dash, that
/// passes the Luhn check.
fn card_like_numbers(text: &str) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let alnum = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && alnum(i - 1)) {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if (13..=19).contains(&run) && !alnum(i + run) && luhn(&text[i..i + run]) {
            found.push((i, text[i..i + run].to_owned()));
        }
        for layout in [&[4, 4, 4, 4][..], &[4, 4, 4, 4, 3], &[4, 6, 5], &[4, 6, 4]] {
            for sep in [b' ', b'-'] {
                let mut at = i;
                let mut digits = String::new();
                let fits = layout.iter().enumerate().all(|(k, &n)| {
                    if k > 0 {
                        if bytes.get(at) != Some(&sep) {
                            return false;
                        }
                        at += 1;
                    }
                    let group = bytes[at.min(bytes.len())..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    if group != n {
                        return false;
                    }
                    digits.push_str(&text[at..at + n]);
                    at += n;
                    true
                });
                if fits && !alnum(at) && luhn(&digits) {
                    found.push((i, digits));
                }
            }
        }
        i += run;
    }
    found
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Requests that carry the card number, the token and a CVV where a client might put
/// them, to every service. None of them may succeed in storing anything.
async fn leaky_requests(sys: &TestSystem, token: &str, account: &str, card: &str) {
    let reveal = sys.token_with(&["cards:reveal"]);
    let spaced = "4000%200566%205566%205556";
    let send = |method: Method, url: String, auth: Option<String>, body: Option<Value>| {
        let headers = [
            ("X-Card-Number", PAN),
            ("X-Debug-Token", token),
            ("User-Agent", "fleet-client/1.0 (card 4000056655665556)"),
        ];
        async move {
            let res = sys
                .send(method, &url, auth.as_deref(), body, &headers)
                .await;
            assert!(
                res.status.is_client_error() || res.status.is_success(),
                "{url}: {} {:?}",
                res.status,
                res.body
            );
            res
        }
    };
    let t = || Some(token.to_owned());
    let (a, p, s) = (&sys.accounts, &sys.payments, &sys.settlement);

    // In the path.
    for url in [
        format!("{a}/v1/accounts/{PAN}"),
        format!("{a}/v1/accounts/{spaced}"),
        format!("{a}/v1/accounts/{token}"),
        format!("{p}/v1/cards/{PAN}/spend"),
        format!("{p}/v1/cards/{spaced}/spend"),
        format!("{p}/v1/authorizations/{token}"),
        format!("{s}/v1/settlement-batches/{PAN}"),
        format!("{s}/v1/{token}"),
    ] {
        let res = send(Method::GET, url, t(), None).await;
        assert_eq!(res.status, 404);
    }
    let res = send(
        Method::POST,
        format!("{a}/v1/cards/{PAN}/reveal"),
        Some(reveal.clone()),
        None,
    )
    .await;
    assert_eq!(res.status, 404);
    let res = send(
        Method::POST,
        format!("{a}/v1/accounts/{PAN}/cards"),
        t(),
        Some(json!({"cardholder_name": "Ada Driver", "pan": PAN, "expiry_month": 12, "expiry_year": 2030})),
    )
    .await;
    assert_eq!(res.status, 404);

    // In the query string: as a value, as an unknown parameter's name (echoed by the
    // problem's detail), with a Bearer prefix, as an access_token, and a CVV.
    for base in [a, p, s] {
        for query in [
            format!("limit={PAN}"),
            format!("{PAN}=1"),
            format!("{spaced}=1"),
            format!("cursor={PAN}&pan={PAN}"),
            format!("access_token={token}"),
            format!("q=Bearer+{token}"),
            format!("cvv={CVV}"),
        ] {
            send(
                Method::GET,
                format!("{base}/v1/audit-events?{query}"),
                t(),
                None,
            )
            .await;
        }
    }
    send(
        Method::GET,
        format!("{a}/v1/accounts/{account}?pan={PAN}&token={token}"),
        t(),
        None,
    )
    .await;
    send(
        Method::GET,
        format!("{p}/v1/cards/{card}/spend?pan={PAN}"),
        t(),
        None,
    )
    .await;
    send(
        Method::GET,
        format!("{s}/v1/settlement-batches?merchant_id={PAN}"),
        t(),
        None,
    )
    .await;

    // In the body of invalid requests, and in free text a valid request would store.
    let limit = json!({"amount": 1000, "currency": "USD"});
    for body in [
        json!({"legal_name": "Acme", "currency": "USD", "credit_limit": limit, "pan": PAN, "cvv": CVV, "token": token}),
        json!({"legal_name": format!("Acme {PAN}"), "currency": "USD", "credit_limit": limit}),
        json!({"legal_name": format!("Acme 4000 0566 5566 5556"), "currency": "USD", "credit_limit": limit}),
        json!({"legal_name": PAN.parse::<u64>().unwrap(), "currency": "USD", "credit_limit": limit}),
    ] {
        let res = send(Method::POST, format!("{a}/v1/accounts"), t(), Some(body)).await;
        assert_eq!(res.status, 422, "{:?}", res.body);
    }
    for body in [
        json!({"cardholder_name": "Ada Driver", "pan": PAN, "cvv": CVV, "expiry_month": 13, "expiry_year": 2030}),
        json!({"cardholder_name": "Ada Driver", "pan": PAN.parse::<u64>().unwrap(), "expiry_month": 12, "expiry_year": 2030}),
        json!({"cardholder_name": PAN, "expiry_month": 12, "expiry_year": 2030}),
    ] {
        let res = send(
            Method::POST,
            format!("{a}/v1/accounts/{account}/cards"),
            t(),
            Some(body),
        )
        .await;
        assert_eq!(res.status, 422, "{:?}", res.body);
    }
    let merchant = json!({"id": "m-leak", "name": "Fuel", "mcc": "5541", "country": "US"});
    let amount = json!({"amount": 100, "currency": "USD"});
    for body in [
        json!({"card_id": PAN, "amount": amount, "merchant": merchant}),
        json!({"card_id": card, "amount": amount, "merchant": merchant, "pan": PAN, "cvv": CVV}),
        json!({"card_id": card, "amount": amount, "merchant": {"id": PAN, "name": "Fuel", "mcc": "5541", "country": "US"}}),
        json!({"card_id": card, "amount": amount, "merchant": {"id": "m-leak", "name": format!("Fuel 4000-0566-5566-5556"), "mcc": "5541", "country": "US"}}),
    ] {
        let res = sys
            .send(
                Method::POST,
                &format!("{p}/v1/authorizations"),
                Some(token),
                Some(body),
                &[("Idempotency-Key", &uuid::Uuid::new_v4().to_string())],
            )
            .await;
        assert_eq!(res.status, 422, "{:?}", res.body);
    }
    let res = send(
        Method::POST,
        format!("{s}/v1/settlement-runs"),
        t(),
        Some(json!({"cutoff": PAN, "token": token})),
    )
    .await;
    assert_eq!(res.status, 422, "{:?}", res.body);
    for base in [a, p, s] {
        let res = sys
            .send_raw(
                Method::POST,
                &format!("{base}/v1/accounts"),
                Some(token),
                "application/json",
                &format!("{{\"pan\": \"{PAN}\", \"token\": \"{token}\""),
                &[],
            )
            .await;
        assert!(res.status.is_client_error(), "{:?}", res.body);
    }

    // In the Authorization header: a card number as credentials, the token mangled.
    for auth in [
        format!("Basic {PAN}"),
        format!("Bearer {PAN}"),
        format!("Bearer {token}x"),
        format!("Token {token}"),
    ] {
        for base in [a, p, s] {
            let res = sys
                .send(
                    Method::POST,
                    &format!("{base}/v1/settlement-runs"),
                    None,
                    Some(json!({})),
                    &[("Authorization", &auth)],
                )
                .await;
            assert!(res.status.is_client_error(), "{:?}", res.body);
        }
    }
}

/// The exchanges' bodies and headers, but the body of the granted reveal.
fn responses(sys: &TestSystem) -> Vec<(String, String)> {
    sys.exchanges
        .lock()
        .unwrap()
        .iter()
        .flat_map(|e| {
            let what = format!("{} {} -> {}", e.method, e.url, e.status);
            let mut out: Vec<(String, String)> = e
                .headers
                .iter()
                .map(|(k, v)| (format!("{what} header"), format!("{k}: {v}")))
                .collect();
            if !(e.url.ends_with("/reveal") && e.status == 200) {
                out.push((format!("{what} body"), e.body.to_string()));
            }
            out
        })
        .collect()
}

fn assert_clean(needles: &Needles, sources: &[(String, String)]) {
    let mut leaks = Vec::new();
    for (name, text) in sources {
        for finding in needles.scan(text) {
            leaks.push(format!("{name}: {finding}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leak(s):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Sends one request to each service and waits until their spans are exported (each
/// process exports its spans in order, so the earlier ones are there too).
async fn sync_spans(sys: &TestSystem, otlp: &OtlpSink) {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    for base in [&sys.accounts, &sys.payments, &sys.settlement] {
        sys.fetch_text(&format!("{base}/health/live?sync={marker}"))
            .await;
    }
    let target = format!("/health/live?sync={marker}");
    sys.eventually("the spans to be exported", WAIT, || async {
        let services: std::collections::HashSet<String> = otlp
            .spans()
            .into_iter()
            .filter(|s| s.attribute("http.target") == Some(target.as_str()))
            .map(|s| s.service)
            .collect();
        (services.len() == 3).then_some(())
    })
    .await;
}

fn ok(res: Response, status: u16) -> Value {
    assert_eq!(res.status, status, "{:?}", res.body);
    res.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_sensitive_leaks_and_redaction_is_what_keeps_it_out() {
    let otlp = OtlpSink::start().await;
    let sys = TestSystem::start_with_env(
        &["accounts", "payments", "settlement"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let tap = sys.tap_events().await;
    let token = sys.token();
    let reveal_token = sys.token_with(&["cards:reveal"]);
    let needles = Needles::new(&sys, &[&token, &reveal_token]);
    let (a, p, s) = (&sys.accounts, &sys.payments, &sys.settlement);

    // The whole API, used as intended, with the known card number.
    for base in [a, p, s] {
        ok(sys.get(&format!("{base}/health/ready")).await, 200);
    }
    let account = ok(
        sys.post(
            &format!("{a}/v1/accounts"),
            json!({"legal_name": "Leak Test Haulage", "currency": "USD",
                   "credit_limit": {"amount": 100_000, "currency": "USD"}}),
        )
        .await,
        201,
    );
    let account = account["id"].as_str().unwrap().to_owned();
    let card = ok(
        sys.post(
            &format!("{a}/v1/accounts/{account}/cards"),
            json!({"cardholder_name": "Ada Driver", "pan": "4000 0566 5566 5556",
                   "expiry_month": 12, "expiry_year": 2030}),
        )
        .await,
        201,
    );
    assert_eq!(card["last4"], "5556");
    let card = card["id"].as_str().unwrap().to_owned();
    ok(
        sys.post(
            &format!("{a}/v1/accounts/{account}/cards"),
            json!({"cardholder_name": "Bo Driver", "expiry_month": 1, "expiry_year": 2031}),
        )
        .await,
        201,
    );
    // The same number again: a conflict that does not say which number.
    ok(
        sys.post(
            &format!("{a}/v1/accounts/{account}/cards"),
            json!({"cardholder_name": "Ada Driver", "pan": PAN, "expiry_month": 12, "expiry_year": 2030}),
        )
        .await,
        409,
    );
    // The one place the number may appear.
    let revealed = ok(
        sys.send(
            Method::POST,
            &format!("{a}/v1/cards/{card}/reveal"),
            Some(&reveal_token),
            None,
            &[],
        )
        .await,
        200,
    );
    assert_eq!(revealed["pan"], PAN);
    ok(
        sys.send(
            Method::POST,
            &format!("{a}/v1/cards/{card}/reveal"),
            Some(&token),
            None,
            &[],
        )
        .await,
        403,
    );
    let spend = format!("{p}/v1/cards/{card}/spend");
    sys.eventually("payments to know the card", WAIT, || async {
        (sys.get(&spend).await.status == 200).then_some(())
    })
    .await;
    let capture = sys.authorize_and_capture(&card, 4_200, "m-leak").await;
    let authorization = capture["authorization_id"].as_str().unwrap();
    ok(
        sys.get(&format!("{p}/v1/authorizations/{authorization}"))
            .await,
        200,
    );
    let capture_id = capture["id"].as_str().unwrap().to_owned();
    sys.eventually("the capture in settlement", WAIT, || async {
        let n = sys
            .count(&format!(
                "SELECT count(*) AS count FROM settlement.items WHERE capture_id = '{capture_id}'"
            ))
            .await;
        (n == 1).then_some(())
    })
    .await;
    sys.run_settlement().await;
    ok(sys.get(&format!("{s}/v1/settlement-batches")).await, 200);
    sys.eventually("the ledger posting", WAIT, || async {
        let r = sys.get(&format!("{a}/v1/accounts/{account}")).await;
        (r.body["posted_balance"]["amount"] == 4_200).then_some(())
    })
    .await;
    ok(
        sys.get(&format!("{a}/v1/accounts/{account}/ledger-entries"))
            .await,
        200,
    );
    sys.eventually("balance_posted", WAIT, || async {
        (!tap.of_type("accounts.balance_posted.v1").is_empty()).then_some(())
    })
    .await;

    // Everything a client might do wrong with the number and the token.
    leaky_requests(&sys, &token, &account, &card).await;

    // The audit log (read here, checked after the scan).
    let audit = ok(
        sys.get(&format!("{a}/v1/audit-events?limit=100")).await,
        200,
    );
    for base in [p, s] {
        ok(sys.get(&format!("{base}/v1/audit-events")).await, 200);
    }

    // Wait until the spans of the requests so far are exported.
    sync_spans(&sys, &otlp).await;

    // The scan.
    let mut sources: Vec<(String, String)> = Vec::new();
    for ctx in ["accounts", "payments", "settlement"] {
        let log = sys.process_log(ctx);
        assert!(log.lines().count() > 10, "{ctx} logged: {log}");
        for (n, line) in log.lines().enumerate() {
            sources.push((format!("{ctx} log line {}", n + 1), line.to_owned()));
        }
    }
    let spans = otlp.spans();
    assert!(spans.len() > 50, "spans were exported: {}", spans.len());
    for span in &spans {
        sources.push((format!("{} span {}", span.service, span.name), span.text()));
    }
    for (n, body) in otlp.raw().iter().enumerate() {
        // The export as sent (protobuf, strings as they are).
        sources.push((
            format!("OTLP export {n}"),
            String::from_utf8_lossy(body).into_owned(),
        ));
    }
    sources.extend(responses(&sys));
    let events = tap.all();
    assert!(events.len() >= 6, "events were published: {}", events.len());
    for e in &events {
        sources.push((format!("event {}", e["type"]), e.to_string()));
    }
    assert_clean(&needles, &sources);

    // And the scan is not blind: masked forms are there, where the leaks were.
    assert!(
        otlp.spans().iter().any(|span| span.service == "payments"
            && span.attribute("http.target") == Some(&format!("/v1/cards/{MASKED}/spend"))),
        "the leaky path's span is exported, masked"
    );
    let resources: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["resource"].as_str())
        .collect();
    assert!(
        resources.contains(&format!("/v1/cards/{MASKED}/reveal").as_str()),
        "{resources:?}"
    );
    let logs: String = ["accounts", "payments", "settlement"]
        .map(|c| sys.process_log(c))
        .join("\n");
    assert!(
        logs.contains(&format!("/v1/cards/{MASKED}/spend")),
        "the leaky path is logged, masked"
    );
    assert!(
        logs.contains("[REDACTED-JWT]"),
        "the token is logged, masked"
    );
    assert!(
        logs.contains("card number revealed"),
        "the reveal is logged"
    );
    assert!(
        !needles.scan(&revealed.to_string()).is_empty(),
        "the scan finds the number in the reveal response"
    );
    sys.assert_exchanges_match_contracts();

    // The proof: payments with redaction off leaks through the same requests, and the
    // same scan finds it. A release build ignores the switch.
    let before = sys.process_log("payments").len();
    sys.restart("payments", &[("PAYMENTS__LOG__REDACTION", "off")])
        .await;
    leaky_requests(&sys, &token, &account, &card).await;
    let unredacted_span = || {
        otlp.spans()
            .into_iter()
            .any(|s| s.service == "payments" && s.text().contains(PAN))
    };
    sync_spans(&sys, &otlp).await;
    if cfg!(debug_assertions) {
        assert!(unredacted_span(), "payments' spans carry the card number");
        let log = sys.process_log("payments");
        let after = log.get(before..).unwrap_or(&log);
        assert!(after.contains("LOG REDACTION IS OFF"), "{after}");
        let findings = needles.scan(after).join("\n");
        assert!(
            findings.contains("the card number at") && findings.contains(PAN),
            "with redaction off the card number is in payments' logs:\n{findings}"
        );
        assert!(
            findings.contains("a bearer token at"),
            "with redaction off the token is in payments' logs:\n{findings}"
        );
        assert!(
            findings.contains(&format!("a Luhn-valid number {PAN}")),
            "{findings}"
        );
        let span_findings: Vec<String> = otlp
            .spans()
            .iter()
            .filter(|s| s.service == "payments")
            .flat_map(|s| needles.scan(&s.text()))
            .collect();
        assert!(
            span_findings.iter().any(|f| f.contains("the card number")),
            "with redaction off the card number is in payments' spans"
        );
    } else {
        let log = sys.process_log("payments");
        let after = log.get(before..).unwrap_or(&log);
        assert!(after.contains("is ignored"), "{after}");
        assert!(needles.scan(after).is_empty(), "a release build redacts");
        assert!(!unredacted_span());
    }
    // The other contexts, still redacting, are still clean.
    let mut others = Vec::new();
    for ctx in ["accounts", "settlement"] {
        others.push((ctx.to_owned(), sys.process_log(ctx)));
    }
    assert_clean(&needles, &others);

    sys.shutdown().await;
    otlp.stop().await;
}

#[test]
fn the_scanner_finds_card_numbers_and_leaves_ids_alone() {
    let found = |t: &str| {
        card_like_numbers(t)
            .into_iter()
            .map(|(_, d)| d)
            .collect::<Vec<_>>()
    };
    assert_eq!(found(&format!("x {PAN} y")), [PAN]);
    assert_eq!(found("4000 0566 5566 5556"), [PAN]);
    assert_eq!(found("4000-0566-5566-5556,"), [PAN]);
    assert_eq!(found("3782 822463 10005"), ["378282246310005"]);
    assert_eq!(found("\"4111111111111111\""), ["4111111111111111"]);
    for clean in [
        MASKED,
        "4000056655665557",
        "0196c1b2-7f3a-7000-8000-123456789012",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "2026-05-01T12:34:56.123456789Z",
        "12345678901234567890123",
    ] {
        assert!(found(clean).is_empty(), "{clean}");
    }
    let needles = Needles {
        exact: vec![(PAN.to_owned(), "the card number")],
    };
    assert!(needles.scan("cvv=9731").len() == 1);
    assert!(needles.scan("\"cvv\": \"9731\"").len() == 1);
    assert!(needles.scan("cvv=[REDACTED]").is_empty());
}
