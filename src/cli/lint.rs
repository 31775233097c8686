//! `bootbank lint`.

use bootbank::lint::LintReport;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct LintArgs {
    /// Disk images, block devices, partition images, state.tgz files, config bundles or bank
    /// directories.
    #[arg(required = true)]
    targets: Vec<PathBuf>,
    /// One JSON object per target and line: {"path", "findings", "warnings", "error"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hardware: super::inspect::SysfsArgs,
}

/// One line of `--json` output; `audit` writes the same.
#[derive(Serialize)]
struct Line<'a> {
    path: String,
    findings: &'a [bootbank::findings::Finding],
    warnings: &'a [String],
    error: Option<String>,
}

pub fn run(a: LintArgs) -> ExitCode {
    let opts = a.hardware.options();
    let (mut critical, mut unusable) = (false, false);
    let mut stdout = std::io::stdout().lock();
    for t in &a.targets {
        let result = bootbank::lint::lint(t, &opts);
        let text = match &result {
            Ok(r) => {
                critical |= r.has_critical();
                if a.json {
                    json_line(&Line {
                        path: r.path.clone(),
                        findings: &r.findings,
                        warnings: &r.warnings,
                        error: None,
                    })
                } else {
                    human(r)
                }
            }
            Err(e) => {
                unusable = true;
                if a.json {
                    json_line(&Line {
                        path: t.display().to_string(),
                        findings: &[],
                        warnings: &[],
                        error: Some(e.to_string()),
                    })
                } else {
                    eprintln!("bootbank: error: {e}");
                    String::new()
                }
            }
        };
        if stdout.write_all(text.as_bytes()).is_err() {
            break;
        }
    }
    ExitCode::from(if unusable {
        2
    } else if critical {
        1
    } else {
        0
    })
}

fn json_line(l: &Line<'_>) -> String {
    let mut s = serde_json::to_string(l)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise: {e}\"}}"));
    s.push('\n');
    s
}

fn human(r: &LintReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let n = |sev| r.findings.iter().filter(|f| f.severity == sev).count();
    let _ = writeln!(
        s,
        "{}: {} critical, {} warning, {} info",
        r.path,
        n(bootbank::findings::Severity::Critical),
        n(bootbank::findings::Severity::Warning),
        n(bootbank::findings::Severity::Info)
    );
    for f in &r.findings {
        let label = super::style::severity(f.severity, &format!("{:<8}", f.severity.as_str()));
        let _ = writeln!(s, "  {label} {}: {}", f.rule, f.message);
        if let Some(fix) = &f.fix {
            let _ = writeln!(s, "           fix: {fix}");
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "  note: {w}");
    }
    s
}
