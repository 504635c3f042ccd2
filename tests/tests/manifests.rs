//! The Kubernetes manifests under deploy/k8s: every overlay renders with `kubectl kustomize`,
//! and what it renders keeps the deployment rules: sized, hardened and probed containers,
//! secrets only from Secrets created out of band, pinned images, and each service with its
//! Service, disruption budget, autoscaler, network policy and migration Job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use tests::k8s::*;

#[test]
fn every_overlay_renders_and_keeps_the_deployment_rules() {
    let overlays = overlays();
    let mut problems = Vec::new();
    for dir in &overlays {
        let rel = relative(dir);
        let objects = render(dir);
        problems.extend(
            check(&objects, &rel)
                .into_iter()
                .map(|p| format!("{rel}: {p}")),
        );
    }
    assert!(
        problems.is_empty(),
        "the rendered manifests break {} rule(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn each_environment_deploys_the_three_contexts_together_or_one_alone() {
    let overlays: Vec<String> = overlays().iter().map(|d| relative(d)).collect();
    for env in ["dev", "prod"] {
        assert!(
            overlays.iter().any(|o| o == env),
            "deploy/k8s/overlays/{env} composing the three contexts is missing (found {overlays:?})"
        );
        for ctx in CONTEXTS {
            let own = format!("{env}/{ctx}");
            assert!(
                overlays.contains(&own),
                "deploy/k8s/overlays/{own} is missing: each team deploys its context alone (found {overlays:?})"
            );
        }
    }
}

/// The checks themselves fail on broken manifests: each mutation of a good rendering is
/// reported, naming the object.
#[test]
fn the_rules_catch_broken_manifests() {
    let dir = tests::root().join("deploy/k8s/overlays/prod");
    let good = render(&dir);
    assert_eq!(
        check(&good, "prod"),
        Vec::<String>::new(),
        "prod renders clean"
    );

    type Mutation = fn(&mut Vec<Value>);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "a dropped memory limit",
            |o| {
                let c = container_mut(o, "Deployment", "payments");
                c["resources"]["limits"].as_object_mut().unwrap().remove("memory");
            },
            "Deployment fleet-cards/payments: container payments has no resources.limits.memory",
        ),
        (
            "a writable root filesystem in the Job",
            |o| {
                let c = container_mut(o, "Job", "settlement-migrate");
                c["securityContext"]["readOnlyRootFilesystem"] = json!(false);
            },
            "Job fleet-cards/settlement-migrate: container migrate: readOnlyRootFilesystem is not true",
        ),
        (
            "runAsNonRoot off in the container",
            |o| {
                let c = container_mut(o, "Deployment", "accounts");
                c["securityContext"]["runAsNonRoot"] = json!(false);
            },
            "Deployment fleet-cards/accounts: container accounts: runAsNonRoot is not true",
        ),
        (
            "privilege escalation allowed",
            |o| {
                let c = container_mut(o, "Deployment", "accounts");
                c["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allowPrivilegeEscalation");
            },
            "Deployment fleet-cards/accounts: container accounts: allowPrivilegeEscalation is not false",
        ),
        (
            "the schema owner's URL in the service",
            |o| {
                let c = container_mut(o, "Deployment", "payments");
                c["env"].as_array_mut().unwrap().push(json!({
                    "name": "PAYMENTS__DATABASE__MIGRATION_URL",
                    "valueFrom": {"secretKeyRef": {"name": "payments-secrets", "key": "migration-database-url"}}
                }));
            },
            "Deployment fleet-cards/payments: holds the schema owner's URL",
        ),
        (
            "no readiness probe",
            |o| {
                let c = container_mut(o, "Deployment", "settlement");
                c.as_object_mut().unwrap().remove("readinessProbe");
            },
            "Deployment fleet-cards/settlement: container settlement has no readinessProbe",
        ),
        (
            "a database URL in plain text",
            |o| {
                let c = container_mut(o, "Deployment", "payments");
                c["env"].as_array_mut().unwrap().push(json!({
                    "name": "PAYMENTS__DATABASE__URL",
                    "value": "postgres://payments:hunter2@db:5432/fleet"
                }));
            },
            "Deployment fleet-cards/payments: container payments: PAYMENTS__DATABASE__URL is secret-bearing but set in env[].value",
        ),
        (
            "a token in the ConfigMap",
            |o| {
                let cm = find_mut(o, "ConfigMap", "accounts-config");
                cm["data"]["ACCOUNTS__VAULT__TOKEN"] = json!("s.dev-root");
            },
            "key ACCOUNTS__VAULT__TOKEN is secret-bearing",
        ),
        (
            "a Secret with data",
            |o| {
                o.push(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "payments-secrets", "namespace": "fleet-cards",
                                 "labels": {NAME: "payments", PART_OF: "fleet-cards", COMPONENT: "shared"}},
                    "data": {"jwt-secret": "c2VjcmV0"}
                }));
            },
            "Secret fleet-cards/payments-secrets carries values",
        ),
        (
            "an image tagged latest",
            |o| {
                let c = container_mut(o, "Job", "payments-migrate");
                c["image"] = json!("fleet/payments:latest");
            },
            "Job fleet-cards/payments-migrate: container migrate: image fleet/payments:latest is tagged latest",
        ),
        (
            "an untagged image",
            |o| {
                let c = container_mut(o, "Deployment", "settlement");
                c["image"] = json!("registry.local:5000/fleet/settlement");
            },
            "Deployment fleet-cards/settlement: container settlement: image registry.local:5000/fleet/settlement has no tag",
        ),
        (
            "a missing PodDisruptionBudget",
            |o| o.retain(|v| !(kind(v) == "PodDisruptionBudget" && name(v) == "settlement")),
            "Deployment fleet-cards/settlement has no PodDisruptionBudget",
        ),
        (
            "a missing migration Job",
            |o| o.retain(|v| !(kind(v) == "Job" && name(v) == "accounts-migrate")),
            "Deployment fleet-cards/accounts has no migration Job",
        ),
        (
            "a server reaching Vault without using it",
            |o| {
                let cm = find_mut(o, "ConfigMap", "settlement-config");
                cm["data"].as_object_mut().unwrap().remove("SETTLEMENT__VAULT__ADDR");
            },
            "Deployment fleet-cards/settlement: a NetworkPolicy allows egress to port 8200 (Vault), which it does not use",
        ),
        (
            "a server naming Vault it cannot reach",
            |o| {
                let np = find_mut(o, "NetworkPolicy", "payments");
                np["spec"]["egress"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|r| r["ports"][0]["port"] != json!(8200));
            },
            "Deployment fleet-cards/payments: names Vault (VAULT__ADDR) but no NetworkPolicy allows egress to port 8200",
        ),
        (
            "a shared token key",
            |o| {
                let c = container_mut(o, "Deployment", "payments");
                c["env"].as_array_mut().unwrap().push(json!({"name": "PAYMENTS__AUTH__JWT_SECRET",
                    "valueFrom": {"secretKeyRef": {"name": "payments-secrets", "key": "jwt-secret"}}}));
            },
            "Deployment fleet-cards/payments: AUTH__JWT_SECRET is set",
        ),
        (
            "token keys from Vault without a Vault token",
            |o| {
                let c = container_mut(o, "Deployment", "accounts");
                c["env"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|e| e["name"] != json!("ACCOUNTS__VAULT__TOKEN"));
            },
            "Deployment fleet-cards/accounts: AUTH__VAULT_PATH needs VAULT__ADDR and VAULT__TOKEN",
        ),
        (
            "a migration Job holding a service secret",
            |o| {
                let c = container_mut(o, "Job", "settlement-migrate");
                c["env"].as_array_mut().unwrap().push(json!({"name": "SETTLEMENT__AMQP__URL",
                    "valueFrom": {"secretKeyRef": {"name": "settlement-secrets", "key": "amqp-url"}}}));
            },
            "Job fleet-cards/settlement-migrate: takes other secrets than the owner's URL",
        ),
        (
            "egress to another port",
            |o| {
                let np = find_mut(o, "NetworkPolicy", "accounts");
                np["spec"]["egress"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"ports": [{"protocol": "TCP", "port": 443}]}));
            },
            "NetworkPolicy fleet-cards/accounts: egress to port 443 is not allowed",
        ),
        (
            "one replica in prod",
            |o| {
                find_mut(o, "Deployment", "payments")["spec"]["replicas"] = json!(1);
            },
            "Deployment fleet-cards/payments: 1 replica(s) in prod",
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut objects = good.clone();
        mutate(&mut objects);
        let problems = check(&objects, "prod");
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what} is not caught: expected a problem with {expected:?}, got:\n{}",
            problems.join("\n")
        );
    }
}

fn find_mut<'a>(objects: &'a mut [Value], kind_: &str, prefix: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| kind(o) == kind_ && name(o).starts_with(prefix))
        .unwrap_or_else(|| panic!("no {kind_} {prefix}* rendered"))
}

fn container_mut<'a>(objects: &'a mut [Value], kind_: &str, name_: &str) -> &'a mut Value {
    let o = objects
        .iter_mut()
        .find(|o| kind(o) == kind_ && name(o) == name_)
        .unwrap_or_else(|| panic!("no {kind_} {name_} rendered"));
    &mut o["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_helpers_read_images_and_urls_right() {
    assert_eq!(image_problem("fleet/payments:0.1.0"), None);
    assert_eq!(image_problem("registry:5000/fleet/payments:1"), None);
    assert_eq!(image_problem("fleet/payments@sha256:abc"), None);
    assert_eq!(
        image_problem("registry:5000/fleet/payments"),
        Some("has no tag")
    );
    assert_eq!(image_problem("fleet/payments"), Some("has no tag"));
    assert_eq!(
        image_problem("fleet/payments:latest"),
        Some("is tagged latest")
    );
    assert!(has_credentials("postgres://u:p@db:5432/fleet"));
    assert!(has_credentials("amqp://guest:guest@127.0.0.1:5672/%2f"));
    assert!(!has_credentials("https://vault.vault.svc:8200"));
    assert!(!has_credentials("fleet-dev"));
    for secret in [
        "PAYMENTS__DATABASE__URL",
        "ACCOUNTS__VAULT__TOKEN",
        "SETTLEMENT__AUTH__JWT_SECRET",
        "X__AMQP__URL",
        "PGPASSWORD",
        "API_KEY",
    ] {
        assert!(secret_bearing(secret), "{secret} is secret-bearing");
    }
    for plain in ["PAYMENTS__HTTP__PORT", "ACCOUNTS__VAULT__ADDR", "RUST_LOG"] {
        assert!(!secret_bearing(plain), "{plain} is not secret-bearing");
    }
}
