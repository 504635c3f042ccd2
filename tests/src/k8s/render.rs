//! `kubectl kustomize` of every overlay.

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every directory under deploy/k8s/overlays with a kustomization file, sorted.
pub fn overlays() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let names = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
        if names.iter().any(|n| dir.join(n).is_file()) {
            out.push(dir.to_path_buf());
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            }
        }
    }
    let root = crate::root().join("deploy/k8s/overlays");
    assert!(root.is_dir(), "{} is missing", root.display());
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.sort();
    assert!(!out.is_empty(), "no overlay under {}", root.display());
    out
}

/// The overlay's path below deploy/k8s/overlays, e.g. `prod/payments`.
pub fn relative(dir: &Path) -> String {
    let root = crate::root().join("deploy/k8s/overlays");
    dir.strip_prefix(&root)
        .unwrap()
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

pub fn render(dir: &Path) -> Vec<Value> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not on the PATH: install kubectl (Debian: kubernetes-client) to render {}",
            dir.display()
        ),
        Err(e) => panic!("running kubectl kustomize {}: {e}", dir.display()),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("kubectl kustomize {}: bad YAML: {e}", dir.display()))
        })
        .filter(|v| !v.is_null())
        .collect();
    assert!(!objects.is_empty(), "{} renders nothing", dir.display());
    objects
}
