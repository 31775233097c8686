//! `bootbank restore-config`: the plan (checks, member list, esx.conf diff), the question, and
//! the report of what was written.

use super::write::{Flags, ReadBack, Shown};
use bootbank::Outcome;
use bootbank::restore_config::{self, Plan, Request, Source, Verdict, WriteMethod};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};
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

pub fn run(a: RestoreConfigArgs) -> ExitCode {
    let req = Request {
        source: match (&a.from_bank, &a.from) {
            (Some(n), _) => Source::Bank(*n),
            (None, Some(p)) => Source::Bundle(p.clone()),
            (None, None) => unreachable!("clap requires one source"),
        },
        force: a.force,
    };
    let flags = Flags {
        dry_run: a.dry_run,
        yes: a.yes,
        backup_dir: a.backup_dir.clone(),
        json: a.json,
    };
    super::write::execute(&a.target, &flags, restore_config::plan(&a.target, &req))
}

impl Shown for Plan {
    const BACKUP: &'static str = "Backup of what was there";
    fn render(&self) -> String {
        render(self)
    }
    fn question(&self, target: &Path) -> String {
        format!("Write {} to {}?", self.location, target.display())
    }
    /// A replaced state.tgz is in the backup and `restore` puts it back; a created one had
    /// nothing before it, and `restore` of that backup has nothing to put back.
    fn undoable(&self) -> bool {
        self.method == WriteMethod::Replace
    }
    fn read_back(&self, target: &Path, _: &mut Outcome, json: bool) -> ReadBack {
        if json {
            return ReadBack::default();
        }
        super::write::verdict_now(target, &Default::default())
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
