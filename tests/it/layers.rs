//! The dependency rule between the library's layers (ARCHITECTURE.md), read from the `crate::`
//! paths of every source file: `ops` (the commands) may use `write`, `esxi`, `host`, `format` and
//! `io`; `write` and `host` may use `esxi`, `format` and `io`; `esxi` may use `format` and `io`;
//! `format` only `io`; `io` nothing. So no layer reaches up, and no two top-level modules import
//! each other. The binary's `cli/` sits above them all and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: [(&str, &[&str]); 6] = [
    ("io", &[]),
    ("format", &["io"]),
    ("esxi", &["format", "io"]),
    ("host", &["esxi", "format", "io"]),
    ("write", &["esxi", "format", "io"]),
    ("ops", &["write", "esxi", "host", "format", "io"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file names through `crate::...` (comments included: a doc link up
/// the stack is as much a dependency for a reader).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn layers_only_reach_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.into_iter().collect();
    // Every library source file lives in one of the layers.
    for e in fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            assert!(
                allowed.contains_key(name.as_str()) || name == "cli",
                "src/{name}/ is not a layer"
            );
        } else {
            assert!(
                ["lib.rs", "main.rs"].contains(&name.as_str()),
                "src/{name} sits outside the layers"
            );
        }
    }
    let mut checked = 0;
    let mut broken = Vec::new();
    for (layer, may) in LAYERS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer}/ is empty");
        for f in files {
            let text = fs::read_to_string(&f).unwrap();
            for r in crate_refs(&text) {
                if r != layer && !may.contains(&r.as_str()) {
                    broken.push(format!(
                        "{} uses crate::{r}, but {layer} may use only {may:?}",
                        f.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(
        broken.is_empty(),
        "layer rule broken:\n{}",
        broken.join("\n")
    );
    assert!(checked > 25, "only {checked} files checked");
}

/// The rule itself has no cycle: each layer may use only layers listed before it.
#[test]
fn the_rule_is_acyclic() {
    for (i, (layer, may)) in LAYERS.iter().enumerate() {
        for m in *may {
            let j = LAYERS.iter().position(|(l, _)| l == m).unwrap();
            assert!(j < i, "{layer} may use {m}, which comes after it");
        }
    }
}
