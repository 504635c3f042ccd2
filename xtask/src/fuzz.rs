//! Fuzzing from the contracts: schemathesis against each context's binary, started on
//! free ports against a fresh database, with a token carrying every scope (the default
//! ones and `cards:reveal`).

use crate::dev;
use anyhow::{bail, Context};
use shared_kernel::auth::{JwtIssuer, ALL_SCOPES};
use shared_kernel::secrets::Secret;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned schemathesis release, installed into `.tools/venv`.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Test cases per operation and phase: bounded, so the run stays within a minute or two.
const MAX_EXAMPLES: &str = "30";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance";

fn schemathesis() -> anyhow::Result<PathBuf> {
    let st = dev::root().join(".tools/venv/bin/st");
    if !st.exists() {
        dev::bao()?; // makes the venv
        let ok = Command::new(dev::root().join(".tools/venv/bin/pip"))
            .args(["install", "--quiet", SCHEMATHESIS])
            .status()?
            .success();
        if !ok || !st.exists() {
            bail!("could not install {SCHEMATHESIS} into .tools/venv");
        }
    }
    Ok(st)
}

struct Service {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let ok = Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{port}/health/ready"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("the service on port {port} did not become ready")
}

/// Generated requests from schemathesis' summary line (`N generated, …`).
fn generated(log: &str) -> Option<u64> {
    log.lines().find_map(|l| {
        l.trim()
            .split_once(" generated")
            .and_then(|(n, _)| n.trim().parse().ok())
    })
}

pub fn run(infra: &crate::infra::Services) -> anyhow::Result<()> {
    let st = schemathesis()?;
    let bin = dev::build_services()?;
    let suffix = dev::random_hex(16)?;
    let database = format!("fleet_t_fuzz{suffix}");
    let prefix = format!("t{suffix}.");
    crate::db::admin_at(&infra.admin_url, &format!("CREATE DATABASE {database}"))?;
    let admin = infra.admin_url.clone();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin);
    let secret = dev::random_hex(32)?;
    let logs = bin.join("fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let result = (|| -> anyhow::Result<Vec<(&'static str, u64)>> {
        let mut services = Vec::new();
        for name in dev::CONTEXTS {
            let port = dev::free_port()?;
            let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
            let child = Command::new(bin.join(name))
                .arg("serve")
                .env("FLEET__DATABASE__URL", format!("{base}/{database}"))
                .env("FLEET__AUTH__JWT_SECRET", &secret)
                .env("FLEET__VAULT__ADDR", &infra.vault_addr)
                .env("FLEET__VAULT__TOKEN", &infra.vault_token)
                .env("FLEET__AMQP__URL", &infra.amqp_url)
                .env("FLEET__AMQP__PREFIX", &prefix)
                .env("FLEET__HTTP__PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            services.push(Service { name, port, child });
        }
        for s in &services {
            wait_ready(s.port).with_context(|| {
                format!(
                    "{} (log: {})",
                    s.name,
                    logs.join(format!("{}.log", s.name)).display()
                )
            })?;
        }
        // Every default scope, plus `cards:reveal` (not a default one), so card reveal is
        // fuzzed past its scope check: unknown ids (404) and, through the issueCard link,
        // cards just issued (200).
        let scopes: Vec<&str> = ALL_SCOPES.iter().copied().chain(["cards:reveal"]).collect();
        let token = JwtIssuer::new(&Secret::new(secret.clone()), "fleet-dev", "fleet").mint(
            "schemathesis",
            &scopes,
            3600,
        )?;
        let mut counts = Vec::new();
        for s in &services {
            counts.push((s.name, fuzz_one(&st, s, &token, &logs)?));
        }
        Ok(counts)
    })();
    let _ = crate::db::admin_at(
        &infra.admin_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
    delete_broker_names(&infra.amqp_url, &prefix);
    let counts = result?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = counts
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!(
        "schemathesis: {total} generated requests ({}), no failures",
        parts.join(", ")
    );
    Ok(())
}

fn fuzz_one(st: &Path, s: &Service, token: &str, logs: &Path) -> anyhow::Result<u64> {
    let out = Command::new(st)
        .args(["run", &format!("http://127.0.0.1:{}/openapi.json", s.port)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            CHECKS,
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "1",
        ])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--output-sanitize",
            "true",
        ])
        .current_dir(logs)
        .output()
        .context("running schemathesis")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::fs::write(logs.join(format!("{}.schemathesis.log", s.name)), &text)?;
    if !out.status.success() {
        println!("{text}");
        bail!("schemathesis found failures in {} (log above)", s.name);
    }
    generated(&text).with_context(|| format!("no summary in schemathesis' output for {}", s.name))
}

/// Removes the queues and exchanges the fuzzed services declared under `prefix`.
fn delete_broker_names(url: &str, prefix: &str) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(shared_kernel::amqp::delete_all(url, prefix));
}
