//! Checks recorded HTTP exchanges against the committed OpenAPI documents, and event
//! data against the committed event schemas.

use serde_json::{json, Value};

/// One request and its response, as the test client saw them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub content_type: String,
    /// The response's headers (name, value).
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

pub fn load(path: &str) -> Value {
    let full = crate::root().join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", full.display()))
}

fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}')) || a == b)
}

/// Problems found with `exchange` against `doc` (the document of the service it hit).
pub fn check(doc: &Value, ex: &Exchange) -> Vec<String> {
    let path = ex
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let at = format!("{} {} -> {}", ex.method, path, ex.status);
    let Some((_, item)) = doc["paths"]
        .as_object()
        .and_then(|p| p.iter().find(|(t, _)| template_matches(t, path)))
    else {
        // A route outside the contract must still answer with a 404 problem.
        let problem =
            json!({"$ref": "#/components/schemas/Problem", "components": doc["components"]});
        let valid = jsonschema::validator_for(&problem).is_ok_and(|v| v.is_valid(&ex.body));
        if ex.status == 404 && valid && ex.content_type.starts_with("application/problem+json") {
            return vec![];
        }
        return vec![format!("{at}: no path in the contract")];
    };
    let Some(op) = item.get(ex.method.to_lowercase()) else {
        // A method outside the contract must answer 405 with a problem.
        if ex.status == 405 && ex.content_type.starts_with("application/problem+json") {
            return vec![];
        }
        return vec![format!("{at}: method not in the contract")];
    };
    let Some(response) = op["responses"].get(ex.status.to_string()) else {
        return vec![format!("{at}: status not in the contract")];
    };
    let media = ex.content_type.split(';').next().unwrap_or("").trim();
    let Some(content) = response.get("content") else {
        return vec![];
    };
    let Some(schema) = content.get(media).and_then(|c| c.get("schema")) else {
        return vec![format!("{at}: content type {media:?} not in the contract")];
    };
    let mut root = schema.clone();
    if let Some(obj) = root.as_object_mut() {
        obj.insert("components".to_owned(), doc["components"].clone());
    } else {
        root = json!({"allOf": [schema], "components": doc["components"]});
    }
    let validator = match jsonschema::validator_for(&root) {
        Ok(v) => v,
        Err(e) => return vec![format!("{at}: contract schema does not compile: {e}")],
    };
    validator
        .iter_errors(&ex.body)
        .map(|e| format!("{at}: {} at {}", e, e.instance_path))
        .collect()
}

/// Problems with an event's `data` against `contracts/events/<type>.schema.json`.
pub fn check_event(event: &Value) -> Vec<String> {
    let Some(event_type) = event["type"].as_str() else {
        return vec!["an event without a type".to_owned()];
    };
    let path = crate::root().join(format!("contracts/events/{event_type}.schema.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return vec![format!("{event_type}: no schema in contracts/events/")];
    };
    let schema: Value = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => return vec![format!("{event_type}: schema does not parse: {e}")],
    };
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => return vec![format!("{event_type}: schema does not compile: {e}")],
    };
    let mut out: Vec<String> = validator
        .iter_errors(&event["data"])
        .map(|e| format!("{event_type}: {e} at {}", e.instance_path))
        .collect();
    for attr in [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "sequence",
    ] {
        if event.get(attr).is_none() {
            out.push(format!(
                "{event_type}: missing CloudEvents attribute {attr}"
            ));
        }
    }
    out
}
