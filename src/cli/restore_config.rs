//! `bootbank restore-config`: the plan (checks, member list, esx.conf diff), the question, and
//! the report of what was written.

use bootbank::restore_config::{self, Plan, Request, Source, Verdict, WriteMethod};
use clap::{ArgGroup, Args};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from_bank", "from"])))]
pub struct RestoreConfigArgs {
    /// Disk image, block device or bootbank partition whose next-boot bank gets a state.tgz.
    target: PathBuf,
    /// Copy the state.tgz of bank N (its partition number, as `bootbank bank status` shows it).
    #[arg(long, value_name = "N")]
    from_bank: Option<u32>,
    /// Take the state.tgz of a configuration bundle (configBundle-<host>.tgz from
    /// `vim-cmd hostsvc/firmware/backup_config` or `Get-VMHostFirmware -BackupConfiguration`).
    #[arg(long, value_name = "BUNDLE")]
    from: Option<PathBuf>,
    /// Restore a bundle whose release level or host UUID does not match this host's.
    #[arg(long)]
    force: bool,
    /// Show the plan and what differs; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask (for scripts). Without a terminal, writing requires --yes.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Where to copy the current state.tgz first (default: ./bootbank-backup-<UTC time>).
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    /// Print the plan and the outcome as JSON.
    #[arg(long)]
    json: bool,
}

fn code(e: &restore_config::RestoreConfigError) -> u8 {
    if e.during_write() { 1 } else { 2 }
}

pub fn run(a: RestoreConfigArgs) -> ExitCode {
    let req = Request {
        source: match (&a.from_bank, &a.from) {
            (Some(n), _) => Source::Bank(*n),
            (None, Some(p)) => Source::Bundle(p.clone()),
            (None, None) => unreachable!("clap requires one source"),
        },
        force: a.force,
    };
    let plan = match restore_config::plan(&a.target, &req) {
        Ok(p) => p,
        Err(e) => return super::fail(&e.to_string(), code(&e)),
    };
    if !a.json {
        // One write; a closed pipe ends quietly.
        let _ = std::io::stdout().lock().write_all(render(&plan).as_bytes());
    }
    if !plan.has_changes() || a.dry_run {
        if a.json {
            super::print_json(
                &serde_json::json!({"plan": plan, "outcome": null, "dry_run": a.dry_run}),
            );
        } else if a.dry_run && plan.has_changes() {
            println!("Dry run: nothing written.");
        } else {
            println!("Nothing to change; nothing written.");
        }
        return ExitCode::SUCCESS;
    }
    if !a.yes
        && let Err(c) = super::prompt::confirm(&format!(
            "Write {} to {}?",
            plan.location,
            a.target.display()
        ))
    {
        return c;
    }
    let backup = a
        .backup_dir
        .clone()
        .unwrap_or_else(bootbank::fix::default_backup_dir);
    match restore_config::apply(&plan, &backup) {
        Ok(outcome) => {
            if a.json {
                super::print_json(
                    &serde_json::json!({"plan": plan, "outcome": outcome, "dry_run": false}),
                );
            } else {
                super::print_outcome(&outcome, "Backup of what was there");
                println!(
                    "{} bytes written in {} writes, {} flushes",
                    outcome.stats.bytes_written, outcome.stats.write_calls, outcome.stats.flushes
                );
                match bootbank::inspect::inspect(&a.target, &Default::default()) {
                    Ok(r) => print!(
                        "Now: {}",
                        super::human::verdict(&r).trim_start_matches("VERDICT: ")
                    ),
                    Err(e) => eprintln!("bootbank: warning: reading the result again failed: {e}"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e.to_string(), code(&e)),
    }
}

/// The plan as text.
fn render(plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    _ = writeln!(out, "Plan for {}:", plan.target);
    _ = writeln!(
        out,
        "  {} (bank {}, build {}): {}",
        plan.location,
        plan.bank_uuid,
        plan.build.as_deref().unwrap_or("?"),
        match plan.current.state {
            restore_config::Current::Missing => "missing".to_string(),
            restore_config::Current::Empty => "zero-length".to_string(),
            restore_config::Current::Unreadable => format!(
                "{} bytes that do not decode ({})",
                plan.current.size.unwrap_or(0),
                plan.current.error.as_deref().unwrap_or("?")
            ),
            restore_config::Current::Readable => {
                format!("{} bytes, readable", plan.current.size.unwrap_or(0))
            }
        }
    );
    let s = &plan.source;
    _ = writeln!(
        out,
        "  from {}: state.tgz of {} bytes (sha256 {}), encryption {}",
        match (s.partition, &s.path) {
            (Some(p), _) => format!(
                "partition {p} (build {})",
                s.build.as_deref().unwrap_or("?")
            ),
            (None, Some(p)) => format!("bundle {p}"),
            _ => "?".to_string(),
        },
        s.size,
        s.sha256,
        serde_json::to_value(s.encryption)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    for c in &plan.checks {
        _ = writeln!(
            out,
            "    check {}: bundle {} / host {}{}: {}{}",
            c.check,
            c.bundle.as_deref().unwrap_or("(none)"),
            c.host.as_deref().unwrap_or("(unknown)"),
            c.host_from
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            match c.verdict {
                Verdict::Match => "match",
                Verdict::Mismatch => "MISMATCH",
                Verdict::Unknown => "cannot be compared",
            },
            if c.forced { " (--force)" } else { "" }
        );
    }
    for n in &plan.notes {
        _ = writeln!(out, "    note: {n}");
    }
    _ = writeln!(
        out,
        "    write: {}",
        match plan.method {
            WriteMethod::Create => "state.tgz created (new directory entry, one sector)",
            WriteMethod::Replace => "state.tgz replaced (entry switched, one sector)",
            WriteMethod::None => "nothing",
        }
    );
    for m in &plan.members {
        let size = |s: Option<u64>| s.map(|s| s.to_string()).unwrap_or("-".into());
        _ = writeln!(
            out,
            "    {} > {}: {} ({} -> {} bytes)",
            m.archive,
            m.name,
            m.change,
            size(m.old_size),
            size(m.new_size)
        );
    }
    for l in plan.diff.lines() {
        _ = writeln!(out, "    {l}");
    }
    out
}
