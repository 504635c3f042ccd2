//! The running services serve exactly the committed OpenAPI documents, and the problem
//! registry lists exactly the problem types the code can emit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use shared_kernel::problem::{PROBLEM_BASE, PROBLEM_TYPES};
use std::collections::BTreeSet;
use tests::TestSystem;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_serves_exactly_its_committed_openapi_document() {
    let sys = TestSystem::start().await;
    for (base, file) in [
        (&sys.accounts, "contracts/openapi/accounts.json"),
        (&sys.payments, "contracts/openapi/payments.json"),
        (&sys.settlement, "contracts/openapi/settlement.json"),
    ] {
        let served = sys.fetch_text(&format!("{base}/openapi.json")).await;
        let committed = std::fs::read_to_string(tests::root().join(file)).unwrap();
        assert_eq!(served, committed, "{base} does not serve {file}");
        let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");

        // Swagger UI for that document, served from the bundle in the binary.
        let page = sys.http.get(format!("{base}/docs/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("swagger-ui"));
        let init = sys
            .http
            .get(format!("{base}/docs/swagger-initializer.js"))
            .send()
            .await
            .unwrap();
        assert!(
            init.text().await.unwrap().contains("/openapi.json"),
            "{base}: Swagger UI points at the served document"
        );
    }
    sys.shutdown().await;
}

#[test]
fn the_problem_registry_and_the_code_agree() {
    let registry =
        std::fs::read_to_string(tests::root().join("contracts/problems/README.md")).unwrap();
    let documented: BTreeSet<&str> = registry
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect();
    let in_code: BTreeSet<&str> = PROBLEM_TYPES.iter().map(|(slug, _, _)| *slug).collect();
    assert_eq!(documented, in_code, "contracts/problems/README.md must list exactly the types in shared_kernel::problem::PROBLEM_TYPES");
    for (slug, title, status) in PROBLEM_TYPES {
        let section = registry
            .split(&format!("## {slug}\n"))
            .nth(1)
            .unwrap()
            .split("\n## ")
            .next()
            .unwrap();
        assert!(
            section.contains(&format!("{PROBLEM_BASE}{slug}")),
            "{slug}: URI missing"
        );
        assert!(section.contains(title), "{slug}: title {title:?} missing");
        assert!(
            section.contains(&status.to_string()),
            "{slug}: status {status} missing"
        );
    }
}

#[test]
fn every_event_type_the_code_publishes_or_consumes_has_a_schema() {
    for event_type in [
        accounts::events::ACCOUNT_OPENED,
        accounts::events::CARD_ISSUED,
        accounts::events::BALANCE_POSTED,
        payments::events::PAYMENT_CAPTURED,
        settlement::events::PAYMENT_CAPTURED_V2,
        settlement::events::PAYMENT_SETTLED,
        settlement::events::BATCH_CLOSED,
    ] {
        let path = tests::root().join(format!("contracts/events/{event_type}.schema.json"));
        assert!(path.exists(), "{} is missing", path.display());
        let asyncapi =
            std::fs::read_to_string(tests::root().join("contracts/asyncapi.yaml")).unwrap();
        assert!(
            asyncapi.contains(event_type),
            "contracts/asyncapi.yaml does not mention {event_type}"
        );
    }
}

/// The consumer-driven side: what each consumer reads from an event is required by
/// the producer's schema, so a producer cannot drop it without failing here.
#[test]
fn consumers_only_rely_on_fields_the_producers_promise() {
    let needs: &[(&str, &[&str])] = &[
        (
            accounts::events::PAYMENT_SETTLED,
            &["capture_id", "account_id", "amount"],
        ),
        (
            payments::events::ACCOUNT_OPENED,
            &[
                "account_id",
                "currency",
                "credit_limit",
                "posted_balance",
                "status",
            ],
        ),
        (
            payments::events::BALANCE_POSTED,
            &[
                "account_id",
                "currency",
                "credit_limit",
                "posted_balance",
                "status",
                "posting",
            ],
        ),
        (
            payments::events::CARD_ISSUED,
            &["card_id", "account_id", "status"],
        ),
        (
            settlement::events::PAYMENT_CAPTURED,
            &[
                "capture_id",
                "authorization_id",
                "account_id",
                "merchant",
                "amount",
                "captured_at",
            ],
        ),
        (
            settlement::events::PAYMENT_CAPTURED_V2,
            &[
                "capture_id",
                "authorization_id",
                "account_id",
                "merchant",
                "captured_amount",
                "captured_at",
            ],
        ),
    ];
    for (event_type, fields) in needs {
        let schema = tests::contract::load(&format!("contracts/events/{event_type}.schema.json"));
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for f in *fields {
            assert!(
                required.contains(f),
                "{event_type}: consumers need '{f}', but the producer's schema does not require it"
            );
        }
    }
}

/// Every example in the OpenAPI documents is valid against the schema beside it, so the
/// examples teach what the service really accepts and answers.
#[test]
fn every_openapi_example_matches_its_schema() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for ctx in ["accounts", "payments", "settlement"] {
        let doc = tests::contract::load(&format!("contracts/openapi/{ctx}.json"));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let mut media: Vec<(String, &serde_json::Value)> = Vec::new();
                if let Some(content) = op["requestBody"]["content"].as_object() {
                    media.extend(
                        content
                            .values()
                            .map(|m| (format!("{method} {path} request"), m)),
                    );
                }
                for (status, response) in op["responses"].as_object().into_iter().flatten() {
                    if let Some(content) = response["content"].as_object() {
                        media.extend(
                            content
                                .values()
                                .map(|m| (format!("{method} {path} {status}"), m)),
                        );
                    }
                }
                for (at, m) in media {
                    let Some(example) = m.get("example") else {
                        continue;
                    };
                    let mut root = m["schema"].clone();
                    root["components"] = doc["components"].clone();
                    let validator = jsonschema::validator_for(&root).unwrap();
                    checked += 1;
                    problems.extend(
                        validator
                            .iter_errors(example)
                            .map(|e| format!("{ctx}: {at}: {e}")),
                    );
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} examples found");
    assert!(
        problems.is_empty(),
        "examples disagree with their schemas:\n{}",
        problems.join("\n")
    );
}
