//! `bootbank audit`.

use bootbank::audit::{self, Entry};
use clap::Args;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

#[derive(Args)]
pub struct AuditArgs {
    /// Config bundles, state archives, disk images, or directories holding them (searched
    /// recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// One JSON object per input and line, as `lint --json`: {"path", "findings", "warnings",
    /// "error"}; the summary goes to stderr.
    #[arg(long)]
    json: bool,
    /// Threads (default: one per core).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
}

#[derive(Serialize)]
struct Line<'a> {
    path: &'a str,
    findings: &'a [bootbank::findings::Finding],
    warnings: &'a [String],
    error: &'a Option<String>,
}

pub fn run(a: AuditArgs) -> ExitCode {
    let inputs = audit::collect(&a.paths);
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let progress = std::io::stderr().is_terminal();
    let total = inputs.len();
    let count = Mutex::new(0usize);
    let json = a.json;
    let out = Mutex::new(std::io::stdout());
    let done = |e: &Entry| {
        if json {
            let line = Line {
                path: &e.path,
                findings: e.report.as_ref().map_or(&[][..], |r| &r.findings),
                warnings: e.report.as_ref().map_or(&[][..], |r| &r.warnings),
                error: &e.error,
            };
            if let (Ok(mut o), Ok(mut text)) = (out.lock(), serde_json::to_string(&line)) {
                text.push('\n');
                let _ = o.write_all(text.as_bytes());
            }
        }
        if progress && let Ok(mut n) = count.lock() {
            *n += 1;
            eprint!("\r{} / {total} inputs", *n);
        }
    };
    let entries = audit::run(&inputs, threads, &Default::default(), &done);
    if progress {
        eprintln!();
    }
    let s = audit::summarize(&entries);
    let mut text = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        text,
        "audit: {} inputs, {} read, {} with critical findings, {} encrypted, {} unreadable",
        s.inputs,
        s.read,
        s.with_critical,
        s.encrypted,
        s.unreadable.len()
    );
    for (rule, n) in &s.findings_by_rule {
        let _ = writeln!(text, "  {rule}: {n}");
    }
    if !s.tpm_sealed.is_empty() {
        let _ = writeln!(
            text,
            "  {} sealed by their host's TPM: record each one's recovery key now, on the host (esxcli system settings encryption recovery list); without it a TPM or motherboard change leaves the host unbootable and nothing offline can open it",
            s.tpm_sealed.len()
        );
        for p in &s.tpm_sealed {
            let _ = writeln!(text, "  tpm-sealed: {p}");
        }
    }
    for (p, why) in &s.unreadable {
        let _ = writeln!(text, "  unreadable {p}: {why}");
    }
    if !json {
        for e in entries.iter().filter(|e| {
            e.report
                .as_ref()
                .is_some_and(bootbank::lint::LintReport::has_critical)
        }) {
            let _ = writeln!(text, "  critical: {}", e.path);
        }
        print!("{text}");
    } else {
        eprint!("{text}");
    }
    ExitCode::from(if s.with_critical > 0 { 1 } else { 0 })
}
