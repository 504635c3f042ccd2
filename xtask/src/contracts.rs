//! `cargo xtask contracts check [--against REF]`: fails on a breaking change to the
//! OpenAPI or AsyncAPI contracts since REF; `cargo xtask contracts selftest` proves the
//! check flags breaking edits and passes additive ones.
//!
//! The diff is Optic's (npm `@useoptic/optic`, pinned in `tools/contract-diff/`), with
//! AsyncAPI messages projected onto responses so the same rules judge events.

use crate::dev;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The contracts compared, with the kind of diff each needs.
const CONTRACTS: [(&str, &str); 4] = [
    ("openapi", "contracts/openapi/accounts.json"),
    ("openapi", "contracts/openapi/payments.json"),
    ("openapi", "contracts/openapi/settlement.json"),
    ("asyncapi", "contracts/asyncapi.yaml"),
];

fn tool_dir() -> PathBuf {
    dev::root().join("tools/contract-diff")
}

/// Installs the pinned diff tool (`npm ci`) when it is missing.
fn ensure_tool() -> anyhow::Result<()> {
    if tool_dir().join("node_modules/.bin/optic").exists() {
        return Ok(());
    }
    eprintln!("installing the contract diff tool (npm ci in tools/contract-diff) ...");
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(tool_dir())
        .status()
        .context("running npm (Node.js 20 or newer is needed)")?
        .success();
    if !ok {
        bail!("npm ci failed in tools/contract-diff");
    }
    Ok(())
}

/// 0: no breaking change; 1: breaking; anything else: the tool failed.
fn diff(kind: &str, old: &Path, new: &Path) -> anyhow::Result<(i32, String)> {
    let out = Command::new("bash")
        .arg(tool_dir().join("contract-diff.sh"))
        .args([kind, &old.display().to_string(), &new.display().to_string()])
        .env("OPTIC_TELEMETRY_LEVEL", "off")
        .output()
        .context("running contract-diff.sh")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code().unwrap_or(2), text))
}

fn scratch() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fleet-contracts-{}", dev::random_hex(6)?));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn check(against: &str) -> anyhow::Result<()> {
    ensure_tool()?;
    let dir = scratch()?;
    let mut breaking = Vec::new();
    for (kind, path) in CONTRACTS {
        let old = Command::new("git")
            .args(["show", &format!("{against}:{path}")])
            .current_dir(dev::root())
            .output()?;
        if !old.status.success() {
            println!("{path}: not in {against}; nothing to compare");
            continue;
        }
        let file = dir.join(Path::new(path).file_name().unwrap_or_default());
        std::fs::write(&file, &old.stdout)?;
        let (code, text) = diff(kind, &file, &dev::root().join(path))?;
        match code {
            0 => println!("{path}: compatible with {against}"),
            1 => {
                println!("{path}: BREAKING against {against}\n{text}");
                breaking.push(path);
            }
            _ => bail!("the contract diff failed for {path}:\n{text}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !breaking.is_empty() {
        bail!(
            "breaking contract changes in {}: make the change additive, or publish it as a new \
             version (/v2 or a new event type version) as docs/adr/0007-api-versioning.md says",
            breaking.join(", ")
        );
    }
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// The AsyncAPI document as JSON (which is YAML too), through the tool's own YAML parser.
fn asyncapi_json() -> anyhow::Result<Value> {
    let out = Command::new("node")
        .args(["--input-type=module", "-e"])
        .arg(
            "import fs from 'node:fs'; import yaml from 'js-yaml'; \
             process.stdout.write(JSON.stringify(yaml.load(fs.readFileSync(process.argv[1], 'utf8'))));",
        )
        .arg(dev::root().join("contracts/asyncapi.yaml"))
        .current_dir(tool_dir())
        .output()?;
    if !out.status.success() {
        bail!(
            "reading contracts/asyncapi.yaml: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn edit(mut doc: Value, pointer: &str, f: impl FnOnce(&mut Value)) -> anyhow::Result<Value> {
    f(doc
        .pointer_mut(pointer)
        .with_context(|| format!("no {pointer} in the contract"))?);
    Ok(doc)
}

fn remove_required(v: &mut Value, field: &str) {
    if let Some(props) = v["properties"].as_object_mut() {
        props.remove(field);
    }
    if let Some(req) = v["required"].as_array_mut() {
        req.retain(|r| r != field);
    }
}

/// (kind, name, before, after, expected exit code)
type Fixture = (&'static str, &'static str, Value, Value, i32);

/// Edits of the real contracts, each with the verdict the check must give.
fn fixtures() -> anyhow::Result<Vec<Fixture>> {
    let api = read_json(&dev::root().join("contracts/openapi/payments.json"))?;
    let auth = "/components/schemas/Authorization";
    let req = "/components/schemas/CreateAuthorizationRequest";
    let events = asyncapi_json()?;
    let card = "/components/schemas/CardIssued";
    Ok(vec![
        (
            "openapi",
            "remove a response field",
            api.clone(),
            edit(api.clone(), auth, |s| remove_required(s, "captured_amount"))?,
            1,
        ),
        (
            "openapi",
            "add a required request field",
            api.clone(),
            edit(api.clone(), req, |s| {
                s["properties"]["channel"] = json!({"type": "string"});
                if let Some(r) = s["required"].as_array_mut() {
                    r.push(json!("channel"));
                }
            })?,
            1,
        ),
        (
            "openapi",
            "remove a response enum value",
            api.clone(),
            edit(
                api.clone(),
                &format!("{auth}/properties/status/enum"),
                |e| {
                    if let Some(a) = e.as_array_mut() {
                        a.retain(|v| v != "declined");
                    }
                },
            )?,
            1,
        ),
        (
            "openapi",
            "narrow a response field's type",
            api.clone(),
            edit(
                api.clone(),
                &format!("{auth}/properties/decline_code"),
                |p| {
                    p["type"] = json!("string");
                    if let Some(a) = p["enum"].as_array_mut() {
                        a.retain(|v| !v.is_null());
                    }
                },
            )?,
            1,
        ),
        (
            "openapi",
            "add an optional response field",
            api.clone(),
            edit(api.clone(), auth, |s| {
                s["properties"]["network_reference"] = json!({"type": "string"});
            })?,
            0,
        ),
        (
            "openapi",
            "add an endpoint",
            api.clone(),
            edit(api.clone(), "/paths", |p| {
                p["/v1/authorizations/{id}/notes"] = json!({"get": {"operationId": "listNotes", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "notes", "content": {"application/json": {"schema": {"type": "object"}}}}}}});
            })?,
            0,
        ),
        (
            "asyncapi",
            "remove an event field",
            events.clone(),
            edit(events.clone(), card, |s| remove_required(s, "last4"))?,
            1,
        ),
        (
            "asyncapi",
            "add an optional event field",
            events.clone(),
            edit(events.clone(), card, |s| {
                s["properties"]["brand"] = json!({"type": "string"});
            })?,
            0,
        ),
    ])
}

pub fn selftest() -> anyhow::Result<()> {
    ensure_tool()?;
    let dir = scratch()?;
    let mut wrong = Vec::new();
    for (i, (kind, name, base, edited, want)) in fixtures()?.into_iter().enumerate() {
        let (old, new) = (
            dir.join(format!("{i}-old.json")),
            dir.join(format!("{i}-new.json")),
        );
        std::fs::write(&old, serde_json::to_vec_pretty(&base)?)?;
        std::fs::write(&new, serde_json::to_vec_pretty(&edited)?)?;
        let (code, text) = diff(kind, &old, &new)?;
        let verdict = match code {
            0 => "compatible",
            1 => "breaking",
            _ => "tool error",
        };
        println!("contracts selftest: {kind:8} {name:34} -> {verdict}");
        if code != want {
            wrong.push(format!(
                "{kind}: {name}: expected exit {want}, got {code}\n{text}"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !wrong.is_empty() {
        bail!("the contract check misjudged:\n{}", wrong.join("\n"));
    }
    Ok(())
}
