//! Rendering the Kubernetes manifests under `deploy/k8s` and checking the rules every
//! rendered overlay keeps (`tests/tests/manifests.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod render;
mod rules;

pub use render::*;
pub use rules::*;

use serde_json::Value;
use std::collections::BTreeSet;

pub const CONTEXTS: [&str; 3] = ["accounts", "payments", "settlement"];
/// DNS, PostgreSQL, RabbitMQ, Vault.
pub const EGRESS_PORTS: [i64; 4] = [53, 5432, 5672, 8200];
pub const VAULT_PORT: i64 = 8200;
pub const NAME: &str = "app.kubernetes.io/name";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const COMPONENT: &str = "app.kubernetes.io/component";

pub fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn label<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o["metadata"]["labels"][key].as_str()
}

/// `Kind namespace/name`, the way every problem names its object.
pub fn id(o: &Value) -> String {
    match namespace(o) {
        "" => format!("{} {}", kind(o), name(o)),
        ns => format!("{} {ns}/{}", kind(o), name(o)),
    }
}

pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

pub fn pod_spec(o: &Value) -> Option<&Value> {
    let spec = match kind(o) {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &o["spec"]["template"]["spec"]
        }
        "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "Pod" => &o["spec"],
        _ => return None,
    };
    Some(spec)
}

pub fn pod_labels(o: &Value) -> Value {
    match kind(o) {
        "CronJob" => o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"].clone(),
        "Pod" => o["metadata"]["labels"].clone(),
        _ => o["spec"]["template"]["metadata"]["labels"].clone(),
    }
}

/// Containers and init containers, each with whether it is an init container.
pub fn containers(pod: &Value) -> impl Iterator<Item = (bool, &Value)> {
    let regular = pod["containers"].as_array().into_iter().flatten();
    let init = pod["initContainers"].as_array().into_iter().flatten();
    init.map(|c| (true, c)).chain(regular.map(|c| (false, c)))
}

/// A non-empty selector whose every label the pod carries.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The variable names a container reads from Secrets, with the Secret and key.
pub fn secret_refs(c: &Value) -> BTreeSet<String> {
    let mut refs: BTreeSet<String> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| !e["valueFrom"]["secretKeyRef"].is_null())
        .map(|e| {
            let r = &e["valueFrom"]["secretKeyRef"];
            format!(
                "{}={}/{}",
                e["name"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default()
            )
        })
        .collect();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        if let Some(s) = from["secretRef"]["name"].as_str() {
            refs.insert(format!(
                "{}*={s}",
                from["prefix"].as_str().unwrap_or_default()
            ));
        }
    }
    refs
}

/// The ConfigMap `name` rendered in namespace `ns`.
pub fn config_map<'a>(objects: &'a [Value], cm: &str, ns: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|m| kind(m) == "ConfigMap" && name(m) == cm && namespace(m) == ns)
}

/// The names of the settings a container reads: its `env` and the keys of the ConfigMaps
/// it takes whole (`envFrom`).
pub fn setting_names(c: &Value, objects: &[Value], ns: &str) -> Vec<String> {
    let env = c["env"].as_array().into_iter().flatten();
    let mut names: Vec<String> = env
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let data = from["configMapRef"]["name"]
            .as_str()
            .and_then(|cm| config_map(objects, cm, ns))
            .and_then(|m| m["data"].as_object());
        names.extend(data.into_iter().flatten().map(|(k, _)| k.clone()));
    }
    names
}

/// Names that carry a credential: they must come from a Secret.
pub fn secret_bearing(var: &str) -> bool {
    let v = var.to_uppercase();
    ["SECRET", "TOKEN", "PASSWORD", "KEY"]
        .iter()
        .any(|w| v.contains(w))
        || v.ends_with("DATABASE__URL")
        || v.ends_with("AMQP__URL")
}

/// `scheme://user:password@host...`
pub fn has_credentials(value: &str) -> bool {
    value.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority
            .split_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// Why an image reference is not pinned, if it is not.
pub fn image_problem(image: &str) -> Option<&'static str> {
    if image.contains("@sha256:") {
        return None;
    }
    // A registry port (host:5000/...) is not a tag: look only after the last '/'.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None | Some((_, "")) => Some("has no tag"),
        Some((_, "latest")) => Some("is tagged latest"),
        Some(_) => None,
    }
}
