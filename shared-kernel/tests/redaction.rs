//! The telemetry a context binary installs masks card numbers, tokens and secrets in
//! every log line, and a panic is logged redacted rather than printed in clear.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

const PAN: &str = "4000056655665556";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0LWNsaWVudCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn logs_and_panics_are_redacted() {
    let out = Capture::default();
    let writer = out.clone();
    shared_kernel::telemetry::init_with("accounts", move || writer.clone());
    let span = tracing::info_span!("HTTP request", http.target = %format!("/v1/cards/{PAN}"));
    span.in_scope(|| {
        tracing::info!(pan = PAN, "card {PAN} seen");
        tracing::warn!(header = %format!("Authorization: Bearer {JWT}"), "odd header");
        tracing::error!(pan = 4_000_056_655_665_556_u64, "a card number as a number");
        tracing::info!(
            url = "postgres://fleet:hunter2-secret@db/fleet",
            "connecting"
        );
    });
    let panicked = std::thread::Builder::new()
        .name("worker".to_owned())
        .spawn(|| panic!("cannot charge card {PAN}"))
        .unwrap()
        .join();
    assert!(panicked.is_err());

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    for secret in [PAN, JWT, "hunter2-secret"] {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"].as_str() == Some(message))
            .unwrap_or_else(|| panic!("no line {message:?} in\n{text}"))
    };
    let seen = find("card 400005******5556 seen");
    assert_eq!(seen["fields"]["pan"], "400005******5556");
    assert_eq!(seen["span"]["http.target"], "/v1/cards/400005******5556");
    assert_eq!(
        find("odd header")["fields"]["header"],
        "Authorization: [REDACTED]"
    );
    assert_eq!(
        find("a card number as a number")["fields"]["pan"],
        "400005******5556"
    );
    assert_eq!(
        find("connecting")["fields"]["url"],
        "postgres://fleet:[REDACTED]@db/fleet"
    );
    let panic = find("panic");
    assert_eq!(panic["level"], "ERROR");
    assert_eq!(panic["fields"]["thread"], "worker");
    let message = panic["fields"]["panic"].as_str().unwrap();
    assert!(
        message.starts_with("panicked at shared-kernel/tests/redaction.rs:")
            && message.ends_with("cannot charge card 400005******5556"),
        "{message}"
    );
}
