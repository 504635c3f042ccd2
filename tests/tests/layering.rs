//! Repository rules checked as ordinary tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_domain_imports_no_framework() {
    let mut offenders = Vec::new();
    for ctx in ["accounts", "payments", "settlement"] {
        let mut files = Vec::new();
        rust_files(&tests::root().join(ctx).join("src/domain"), &mut files);
        assert!(!files.is_empty(), "{ctx} has a domain module");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for framework in ["actix", "diesel", "lapin", "vaultrs"] {
                if code.contains(framework) {
                    offenders.push(format!("{} mentions {framework}", f.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "domain modules must stay framework-free:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_context_depends_on_another() {
    for ctx in ["accounts", "payments", "settlement"] {
        let manifest = std::fs::read_to_string(tests::root().join(ctx).join("Cargo.toml")).unwrap();
        for other in ["accounts", "payments", "settlement"]
            .iter()
            .filter(|o| **o != ctx)
        {
            assert!(
                !manifest.contains(&format!("\n{other}")),
                "{ctx} depends on {other}: contexts talk only through events"
            );
        }
        let mut sql = Vec::new();
        for entry in walk(&tests::root().join(ctx).join("migrations")) {
            sql.push(std::fs::read_to_string(entry).unwrap());
        }
        for other in ["accounts", "payments", "settlement"]
            .iter()
            .filter(|o| **o != ctx)
        {
            assert!(
                !sql.iter().any(|s| s.contains(&format!("{other}."))),
                "{ctx}'s migrations touch the {other} schema"
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `docs/security/pci.md` maps requirements to code and tests: every path it names exists.
#[test]
fn the_pci_mapping_names_only_files_that_exist() {
    let root = tests::root();
    let text = std::fs::read_to_string(root.join("docs/security/pci.md")).unwrap();
    let tops = [
        "tests/",
        "shared-kernel/",
        "accounts/",
        "payments/",
        "settlement/",
        "xtask/",
        "deploy/",
        "contracts/",
        "docs/",
        ".ci/",
    ];
    let named: Vec<&str> = text
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| tops.iter().any(|t| s.starts_with(t)) || *s == "deny.toml")
        .collect();
    assert!(named.len() > 20, "the mapping names its files: {named:?}");
    let missing: Vec<&&str> = named.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "pci.md names files that do not exist: {missing:?}"
    );
}
