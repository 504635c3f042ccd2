//! The rules a rendered overlay keeps.

use super::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every problem of one overlay's rendering, each naming the object.
pub fn check(objects: &[Value], overlay: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let prod = overlay.split('/').next() == Some("prod");

    for o in objects {
        check_metadata(o, &mut problems);
        match kind(o) {
            "Secret" => {
                let filled = |field: &str| o[field].as_object().is_some_and(|m| !m.is_empty());
                if filled("data") || filled("stringData") {
                    problems.push(format!(
                        "{} carries values: Secrets are created out of band, never rendered",
                        id(o)
                    ));
                }
            }
            "ConfigMap" => check_config_map(o, &mut problems),
            "NetworkPolicy" => check_network_policy(o, &mut problems),
            _ => {}
        }
        if let Some(pod) = pod_spec(o) {
            check_pod(o, pod, objects, &mut problems);
        }
    }

    for d in objects.iter().filter(|o| kind(o) == "Deployment") {
        check_companions(d, objects, prod, &mut problems);
    }

    // What the overlay deploys: an environment all three contexts, a context's own
    // overlay that context alone.
    let deployments: BTreeSet<&str> = objects
        .iter()
        .filter(|o| kind(o) == "Deployment")
        .map(name)
        .collect();
    let parts: Vec<&str> = overlay.split('/').collect();
    let expected: BTreeSet<&str> = match parts.as_slice() {
        [_env] => CONTEXTS.into_iter().collect(),
        [.., ctx] => [*ctx].into_iter().collect(),
        [] => BTreeSet::new(),
    };
    if deployments != expected {
        problems.push(format!(
            "deploys {deployments:?}, expected {expected:?} (an environment composes the three contexts; <env>/<context> deploys that context alone)"
        ));
    }
    problems
}

pub fn check_metadata(o: &Value, problems: &mut Vec<String>) {
    let cluster_scoped = matches!(
        kind(o),
        "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
    );
    if !cluster_scoped && namespace(o).is_empty() {
        problems.push(format!("{} has no namespace", id(o)));
    }
    if label(o, PART_OF) != Some("fleet-cards") {
        problems.push(format!("{} lacks the label {PART_OF}: fleet-cards", id(o)));
    }
    if kind(o) != "Namespace" {
        for key in [NAME, COMPONENT] {
            if label(o, key).is_none_or(str::is_empty) {
                problems.push(format!("{} lacks the label {key}", id(o)));
            }
        }
    }
}

pub fn check_config_map(o: &Value, problems: &mut Vec<String>) {
    let Some(data) = o["data"].as_object() else {
        return;
    };
    for (key, value) in data {
        if secret_bearing(key) {
            problems.push(format!(
                "{}: key {key} is secret-bearing: it belongs in the Secret (secretKeyRef)",
                id(o)
            ));
        }
        if value.as_str().is_some_and(has_credentials) {
            problems.push(format!("{}: key {key} holds a URL with credentials", id(o)));
        }
    }
}

pub fn check_network_policy(o: &Value, problems: &mut Vec<String>) {
    let spec = &o["spec"];
    let types = strings(&spec["policyTypes"]);
    for t in ["Ingress", "Egress"] {
        if !types.contains(&t) {
            problems.push(format!("{}: policyTypes lacks {t}", id(o)));
        }
    }
    if spec["podSelector"]["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
    {
        problems.push(format!(
            "{}: podSelector.matchLabels is empty (selects every pod of the namespace)",
            id(o)
        ));
    }
    for rule in spec["egress"].as_array().into_iter().flatten() {
        let ports = rule["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if ports.is_empty() {
            problems.push(format!("{}: an egress rule allows every port", id(o)));
        }
        for port in ports {
            if port.get("endPort").is_some() {
                problems.push(format!("{}: an egress rule opens a port range", id(o)));
            }
            match port["port"].as_i64() {
                None => problems.push(format!(
                    "{}: egress port {} is not a number (named or missing)",
                    id(o),
                    port["port"]
                )),
                Some(p) if !EGRESS_PORTS.contains(&p) => problems.push(format!(
                    "{}: egress to port {p} is not allowed (only {EGRESS_PORTS:?})",
                    id(o)
                )),
                Some(_) => {}
            }
        }
    }
    for rule in spec["ingress"].as_array().into_iter().flatten() {
        if rule["from"].as_array().is_none_or(|f| f.is_empty()) {
            problems.push(format!("{}: an ingress rule admits every source", id(o)));
        }
        if rule["ports"].as_array().is_none_or(|p| p.is_empty()) {
            problems.push(format!("{}: an ingress rule admits every port", id(o)));
        }
    }
}

/// The rules for every pod template (Deployment, Job, ...).
pub fn check_pod(o: &Value, pod: &Value, objects: &[Value], problems: &mut Vec<String>) {
    let is_deployment = kind(o) == "Deployment";
    let pod_sc = &pod["securityContext"];
    if pod["automountServiceAccountToken"] != json!(false) {
        problems.push(format!(
            "{}: automountServiceAccountToken is not false",
            id(o)
        ));
    }
    if let Some(sa) = pod["serviceAccountName"].as_str() {
        let found = objects
            .iter()
            .find(|s| kind(s) == "ServiceAccount" && name(s) == sa && namespace(s) == namespace(o));
        match found {
            None => problems.push(format!("{}: ServiceAccount {sa} is not rendered", id(o))),
            Some(s) if s["automountServiceAccountToken"] != json!(false) => problems.push(format!(
                "ServiceAccount {sa}: automountServiceAccountToken is not false"
            )),
            Some(_) => {}
        }
    }
    if pod["hostNetwork"] == json!(true) || pod["hostPID"] == json!(true) {
        problems.push(format!("{}: shares the host's network or PIDs", id(o)));
    }
    let selected = objects.iter().any(|np| {
        kind(np) == "NetworkPolicy"
            && namespace(np) == namespace(o)
            && selects(&np["spec"]["podSelector"]["matchLabels"], &pod_labels(o))
    });
    if !selected {
        problems.push(format!("{}: no NetworkPolicy selects its pods", id(o)));
    }

    for (init, c) in containers(pod) {
        let cname = c["name"].as_str().unwrap_or("?");
        let at = format!("{}: container {cname}", id(o));
        let sc = &c["securityContext"];
        for section in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                if c["resources"][section][resource].is_null() {
                    problems.push(format!("{at} has no resources.{section}.{resource}"));
                }
            }
        }
        let effective = |key: &str| {
            if sc[key].is_null() {
                &pod_sc[key]
            } else {
                &sc[key]
            }
        };
        if effective("runAsNonRoot") != &json!(true) {
            problems.push(format!(
                "{at}: runAsNonRoot is not true (neither in the container nor in the pod)"
            ));
        }
        if effective("runAsUser") == &json!(0) {
            problems.push(format!("{at}: runAsUser is 0 (root)"));
        }
        if !matches!(
            effective("seccompProfile")["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        ) {
            problems.push(format!("{at}: seccompProfile is not RuntimeDefault"));
        }
        if sc["readOnlyRootFilesystem"] != json!(true) {
            problems.push(format!("{at}: readOnlyRootFilesystem is not true"));
        }
        if sc["allowPrivilegeEscalation"] != json!(false) {
            problems.push(format!("{at}: allowPrivilegeEscalation is not false"));
        }
        if sc["privileged"] == json!(true) {
            problems.push(format!("{at}: is privileged"));
        }
        if !strings(&sc["capabilities"]["drop"]).contains(&"ALL") {
            problems.push(format!("{at}: capabilities.drop lacks ALL"));
        }
        if is_deployment && !init {
            for probe in ["livenessProbe", "readinessProbe"] {
                if c[probe].is_null() {
                    problems.push(format!("{at} has no {probe}"));
                }
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let var = e["name"].as_str().unwrap_or("?");
            if !secret_bearing(var) {
                continue;
            }
            if !e["value"].is_null() {
                problems.push(format!(
                    "{at}: {var} is secret-bearing but set in env[].value: take it from a Secret (valueFrom.secretKeyRef)"
                ));
            } else if e["valueFrom"]["secretKeyRef"].is_null() {
                problems.push(format!(
                    "{at}: {var} is secret-bearing but does not come from a secretKeyRef"
                ));
            }
        }
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(cm) = from["configMapRef"]["name"].as_str() {
                if config_map(objects, cm, namespace(o)).is_none() {
                    problems.push(format!("{at}: ConfigMap {cm} is not rendered"));
                }
            }
        }
        match c["image"].as_str() {
            None => problems.push(format!("{at} has no image")),
            Some(image) => {
                if let Some(p) = image_problem(image) {
                    problems.push(format!("{at}: image {image} {p}"));
                }
            }
        }
    }
}

/// A Deployment's Service, PodDisruptionBudget, HorizontalPodAutoscaler, NetworkPolicy and
/// migration Job.
pub fn check_companions(d: &Value, objects: &[Value], prod: bool, problems: &mut Vec<String>) {
    let at = id(d);
    let labels = pod_labels(d);
    let same_ns = |o: &&Value| namespace(o) == namespace(d);
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let pod = &d["spec"]["template"]["spec"];
    let ports: Vec<(String, i64)> = containers(pod)
        .filter(|(init, _)| !init)
        .flat_map(|(_, c)| c["ports"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["containerPort"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    let serves = |port: &Value| match port {
        Value::String(n) => ports.iter().any(|(name, _)| name == n),
        Value::Number(n) => ports.iter().any(|(_, p)| Some(*p) == n.as_i64()),
        _ => false,
    };
    if ports.is_empty() {
        problems.push(format!("{at} declares no container port"));
    }
    if prod && replicas < 2 {
        problems.push(format!(
            "{at}: {replicas} replica(s) in prod, expected 2 or more"
        ));
    }

    // Service
    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == "Service")
        .filter(same_ns)
        .filter(|o| selects(&o["spec"]["selector"], &labels))
        .collect();
    if services.is_empty() {
        problems.push(format!("{at} has no Service selecting its pods"));
    }
    for s in services {
        if !matches!(s["spec"]["type"].as_str(), None | Some("ClusterIP")) {
            problems.push(format!("{}: type is not ClusterIP", id(s)));
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            let target = if p["targetPort"].is_null() {
                &p["port"]
            } else {
                &p["targetPort"]
            };
            if !serves(target) {
                problems.push(format!(
                    "{}: targetPort {target} is no container port of {at}",
                    id(s)
                ));
            }
        }
    }

    // PodDisruptionBudget
    let pdbs: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == "PodDisruptionBudget")
        .filter(same_ns)
        .filter(|o| selects(&o["spec"]["selector"]["matchLabels"], &labels))
        .collect();
    if pdbs.is_empty() {
        problems.push(format!("{at} has no PodDisruptionBudget"));
    }
    for p in pdbs {
        if let Some(min) = p["spec"]["minAvailable"].as_i64() {
            if min >= replicas {
                problems.push(format!(
                    "{}: minAvailable {min} with {replicas} replica(s) blocks every node drain",
                    id(p)
                ));
            }
        }
        if p["spec"]["minAvailable"].is_null() && p["spec"]["maxUnavailable"].is_null() {
            problems.push(format!(
                "{}: neither minAvailable nor maxUnavailable",
                id(p)
            ));
        }
    }

    // HorizontalPodAutoscaler
    let hpas: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == "HorizontalPodAutoscaler")
        .filter(same_ns)
        .filter(|o| {
            o["spec"]["scaleTargetRef"]["kind"] == json!("Deployment")
                && o["spec"]["scaleTargetRef"]["name"] == json!(name(d))
        })
        .collect();
    if hpas.is_empty() {
        problems.push(format!("{at} has no HorizontalPodAutoscaler"));
    }
    for h in hpas {
        if h["apiVersion"] != json!("autoscaling/v2") {
            problems.push(format!("{}: apiVersion is not autoscaling/v2", id(h)));
        }
        let on_cpu = h["spec"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["resource"]["name"] == json!("cpu"));
        if !on_cpu {
            problems.push(format!("{}: does not scale on CPU", id(h)));
        }
        let min = h["spec"]["minReplicas"].as_i64().unwrap_or(1);
        let max = h["spec"]["maxReplicas"].as_i64().unwrap_or(0);
        if !(min <= replicas && replicas <= max) {
            problems.push(format!(
                "{}: replicas {replicas} of {at} is outside minReplicas {min}..maxReplicas {max}",
                id(h)
            ));
        }
        if prod && min < 2 {
            problems.push(format!(
                "{}: minReplicas {min} in prod, expected 2 or more",
                id(h)
            ));
        }
    }

    // NetworkPolicy: ingress only on the service's own ports.
    let policies: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == "NetworkPolicy")
        .filter(same_ns)
        .filter(|o| selects(&o["spec"]["podSelector"]["matchLabels"], &labels))
        .collect();
    if policies.is_empty() {
        problems.push(format!("{at} has no NetworkPolicy"));
    }
    for np in &policies {
        for rule in np["spec"]["ingress"].as_array().into_iter().flatten() {
            for p in rule["ports"].as_array().into_iter().flatten() {
                if !serves(&p["port"]) {
                    problems.push(format!(
                        "{}: ingress on port {} which {at} does not serve",
                        id(np),
                        p["port"]
                    ));
                }
            }
        }
    }

    check_vault(d, objects, &policies, problems);

    // Migration Job: `<ctx> migrate` with the same image, and the owner's URL alone.
    let ctx = label(d, NAME).unwrap_or_default();
    let jobs: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == "Job")
        .filter(same_ns)
        .filter(|o| label(o, NAME) == Some(ctx))
        .filter(|o| {
            containers(&o["spec"]["template"]["spec"]).any(|(_, c)| {
                strings(&c["command"])
                    .iter()
                    .chain(strings(&c["args"]).iter())
                    .any(|a| *a == "migrate")
            })
        })
        .collect();
    if jobs.is_empty() {
        problems.push(format!(
            "{at} has no migration Job (a Job labelled {NAME}: {ctx} running `{ctx} migrate`)"
        ));
    }
    let main = containers(pod).find(|(init, _)| !init).map(|(_, c)| c);
    for j in jobs {
        let spec = &j["spec"];
        let jpod = &spec["template"]["spec"];
        let jc = containers(jpod).find(|(init, _)| !init).map(|(_, c)| c);
        if spec["template"]["spec"]["restartPolicy"] != json!("Never") {
            problems.push(format!("{}: restartPolicy is not Never", id(j)));
        }
        for field in ["backoffLimit", "ttlSecondsAfterFinished"] {
            if spec[field].is_null() {
                problems.push(format!("{}: {field} is not set", id(j)));
            }
        }
        if let (Some(c), Some(jc)) = (main, jc) {
            if c["image"] != jc["image"] {
                problems.push(format!(
                    "{}: image {} differs from {at}'s {}",
                    id(j),
                    jc["image"],
                    c["image"]
                ));
            }
            // The Job holds the schema owner's URL and nothing else; the service never
            // holds it (ADR 0017).
            let owner = |refs: &BTreeSet<String>| -> Vec<String> {
                refs.iter()
                    .filter(|r| r.contains("__DATABASE__MIGRATION_URL="))
                    .cloned()
                    .collect()
            };
            let (service, job) = (secret_refs(c), secret_refs(jc));
            if !owner(&service).is_empty() {
                problems.push(format!(
                    "{at}: holds the schema owner's URL {:?}",
                    owner(&service)
                ));
            }
            if owner(&job).len() != 1 || job.len() != 1 {
                problems.push(format!(
                    "{}: takes other secrets than the owner's URL: {job:?}",
                    id(j)
                ));
            }
        }
        for key in ["runAsUser", "runAsNonRoot", "seccompProfile"] {
            if jpod["securityContext"][key] != pod["securityContext"][key] {
                problems.push(format!(
                    "{}: pod securityContext.{key} differs from {at}'s",
                    id(j)
                ));
            }
        }
    }
}

/// Token keys come from Vault, and Vault is reachable exactly where it is configured:
/// - no shared HS256 token key (`AUTH__JWT_SECRET`) in any container;
/// - the server verifies tokens with Vault's keys (`AUTH__VAULT_PATH`), which needs
///   `VAULT__ADDR` in its settings and `VAULT__TOKEN` from a Secret;
/// - its NetworkPolicies open egress to Vault's port if, and only if, it names Vault.
fn check_vault(d: &Value, objects: &[Value], policies: &[&Value], problems: &mut Vec<String>) {
    let at = id(d);
    let pod = &d["spec"]["template"]["spec"];
    let Some(c) = containers(pod).find(|(init, _)| !init).map(|(_, c)| c) else {
        return;
    };
    let names = setting_names(c, objects, namespace(d));
    let has = |suffix: &str| names.iter().any(|k| k.ends_with(suffix));
    if has("__AUTH__JWT_SECRET") {
        problems.push(format!(
            "{at}: AUTH__JWT_SECRET is set: tokens are verified with the keys in Vault (AUTH__VAULT_PATH), not a shared secret"
        ));
    }
    if !has("__AUTH__VAULT_PATH") {
        problems.push(format!(
            "{at}: AUTH__VAULT_PATH is not set: tokens must be verified with the keys in Vault"
        ));
    }
    let names_vault = has("__VAULT__ADDR");
    if has("__AUTH__VAULT_PATH") && !(names_vault && has("__VAULT__TOKEN")) {
        problems.push(format!(
            "{at}: AUTH__VAULT_PATH needs VAULT__ADDR and VAULT__TOKEN"
        ));
    }
    let opens_vault = policies.iter().any(|np| {
        np["spec"]["egress"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ports"].as_array().into_iter().flatten())
            .any(|p| p["port"].as_i64() == Some(VAULT_PORT))
    });
    match (names_vault, opens_vault) {
        (true, false) => problems.push(format!(
            "{at}: names Vault (VAULT__ADDR) but no NetworkPolicy allows egress to port {VAULT_PORT}"
        )),
        (false, true) => problems.push(format!(
            "{at}: a NetworkPolicy allows egress to port {VAULT_PORT} (Vault), which it does not use"
        )),
        _ => {}
    }
}
