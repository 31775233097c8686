//! `audit`: lint many config bundles, state archives or disk images at once, on every core,
//! and sum up the fleet. One unreadable input is reported and skipped; the audit goes on.

use crate::ops::findings::Severity;
use crate::ops::inspect::Options;
use crate::ops::lint::{self, LintReport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The result for one input: its report, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The input file as given or found under a directory by `collect`, displayed.
    pub path: String,
    /// What `lint` found in it; `None` when it could not be read (then `error` says why).
    pub report: Option<LintReport>,
    /// Why `lint` could not read it, its error's message; `None` when `report` is set.
    pub error: Option<String>,
}

/// Totals over all inputs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// How many inputs were audited, readable or not.
    pub inputs: usize,
    /// How many of them `lint` could read.
    pub read: usize,
    /// How many readable inputs have at least one critical finding; `audit` exits 1 when any do.
    pub with_critical: usize,
    /// How many readable inputs hold an encrypted configuration (rule `config-encrypted`,
    /// whether decrypted offline or TPM-sealed).
    pub encrypted: usize,
    /// Inputs sealed by their host's TPM (lint's `tpm-recovery-key`): the hosts whose recovery
    /// key must be recorded now, since nothing offline can open them later.
    pub tpm_sealed: Vec<String>,
    /// Rule id to the number of findings with it over all inputs, sorted by rule id; the
    /// informational `passthru-device` findings are not counted.
    pub findings_by_rule: BTreeMap<String, usize>,
    /// The inputs `lint` could not read, as (path, error message), in input order.
    pub unreadable: Vec<(String, String)>,
}

/// Expands the paths given: files as they are, directories recursively (regular files only,
/// sorted, symbolic links not followed so a link loop cannot trap the walk).
pub fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            out.push(dir.to_path_buf());
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path(), out),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Lints `inputs` on `threads` threads, calling `done` (from any thread, in completion order)
/// for each finished input. Returns the entries in input order.
pub fn run(
    inputs: &[PathBuf],
    threads: usize,
    opts: &Options,
    done: &(dyn Fn(&Entry) + Sync),
) -> Vec<Entry> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Entry>>> = Mutex::new(vec![None; inputs.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = inputs.get(i) else { break };
                    let entry = match lint::lint(path, opts) {
                        Ok(r) => Entry {
                            path: path.display().to_string(),
                            report: Some(r),
                            error: None,
                        },
                        Err(e) => Entry {
                            path: path.display().to_string(),
                            report: None,
                            error: Some(e.to_string()),
                        },
                    };
                    done(&entry);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(entry);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Sums up the entries.
pub fn summarize(entries: &[Entry]) -> Summary {
    let mut s = Summary {
        inputs: entries.len(),
        ..Summary::default()
    };
    for e in entries {
        match (&e.report, &e.error) {
            (Some(r), _) => {
                s.read += 1;
                if r.has_critical() {
                    s.with_critical += 1;
                }
                if r.findings
                    .iter()
                    .any(|f| f.rule == crate::ops::findings::CONFIG_ENCRYPTED)
                {
                    s.encrypted += 1;
                }
                if r.findings.iter().any(|f| f.rule == lint::TPM_RECOVERY_KEY) {
                    s.tpm_sealed.push(e.path.clone());
                }
                for f in &r.findings {
                    if f.severity != Severity::Info
                        || f.rule != crate::ops::findings::PASSTHRU_DEVICE
                    {
                        *s.findings_by_rule.entry(f.rule.to_string()).or_default() += 1;
                    }
                }
            }
            (None, err) => s
                .unreadable
                .push((e.path.clone(), err.clone().unwrap_or_default())),
        }
    }
    s
}
