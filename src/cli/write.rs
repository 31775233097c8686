//! The one flow of every command that writes (`fix`, `config set|unset`, `passwd`, `network`,
//! `lockdown`, `bank rollback|select`, `restore`, `restore-config`): the plan shown (as text, or
//! as JSON with `--json`), nothing written on `--dry-run` or when nothing would change, the
//! question unless `--yes`, the write through the plan's [`WritePlan::apply`], then what was
//! written and the target read back. Each command says only how its plan and its read-back look
//! ([`Shown`]), so the steps and their order are the same for all of them.

use bootbank::{Outcome, WriteError, WritePlan};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The flags every writing command has, whatever its own help calls them.
pub struct Flags {
    pub dry_run: bool,
    pub yes: bool,
    pub backup_dir: Option<PathBuf>,
    pub json: bool,
}

/// The target read again after a write, to say what the host will do now.
#[derive(Default)]
pub struct ReadBack {
    /// For `--json`: the value under [`Shown::READ_BACK_KEY`].
    pub json: Option<serde_json::Value>,
    /// For people: printed after the write's report.
    pub text: String,
    /// Reading it failed (the write itself was verified): a warning, not an error.
    pub failed: Option<String>,
}

/// How one command's plan and results look; the flow is [`execute`]'s.
pub trait Shown: WritePlan {
    /// What the backup holds, as the line before its path says it.
    const BACKUP: &'static str;
    /// The JSON key the read-back goes under (null until something is written); `None`: the
    /// JSON has no read-back.
    const READ_BACK_KEY: Option<&'static str> = None;
    /// The plan as text.
    fn render(&self) -> String;
    /// The question asked before writing.
    fn question(&self, target: &Path) -> String {
        format!("Write these changes to {}?", target.display())
    }
    /// Whether `bootbank restore` of this write's backup undoes it (said after the write).
    fn undoable(&self) -> bool {
        true
    }
    /// An error's line, with what still works where the library says it cannot.
    fn message(e: &Self::Error) -> String {
        super::error_text(e)
    }
    /// Reads the target again after the write.
    fn read_back(&self, target: &Path, outcome: &mut Outcome, json: bool) -> ReadBack;
}

/// The exit status of a failed plan or write: 1 when the target may have been touched (the
/// backup says how to undo it), 2 when nothing was written.
pub fn code(e: &impl WriteError) -> u8 {
    if e.during_write() { 1 } else { 2 }
}

/// Shows the plan, asks, writes, reports and reads the target back.
pub fn execute<P: Shown>(target: &Path, f: &Flags, plan: Result<P, P::Error>) -> ExitCode {
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return super::fail(&P::message(&e), code(&e)),
    };
    let json = |outcome: Option<&Outcome>, dry_run: bool, read_back: Option<serde_json::Value>| {
        let mut v = serde_json::json!({"plan": &plan, "outcome": outcome, "dry_run": dry_run});
        if let Some(key) = P::READ_BACK_KEY {
            v[key] = read_back.unwrap_or(serde_json::Value::Null);
        }
        super::print_json(&v);
    };
    if !f.json {
        // One write; a closed pipe ends quietly.
        let _ = std::io::stdout().lock().write_all(plan.render().as_bytes());
    }
    if !plan.has_changes() || f.dry_run {
        if f.json {
            json(None, f.dry_run, None);
        } else if !plan.has_changes() {
            println!("Nothing to change; nothing written.");
        } else {
            println!("Dry run: nothing written.");
        }
        return ExitCode::SUCCESS;
    }
    if !f.yes
        && let Err(c) = super::prompt::confirm(&plan.question(target))
    {
        return c;
    }
    let backup = f
        .backup_dir
        .clone()
        .unwrap_or_else(bootbank::fix::default_backup_dir);
    let mut outcome = match plan.apply(&backup) {
        Ok(o) => o,
        Err(e) => return super::fail(&P::message(&e), code(&e)),
    };
    let again = plan.read_back(target, &mut outcome, f.json);
    if f.json {
        json(Some(&outcome), false, again.json);
    } else {
        super::print_outcome(&outcome, P::BACKUP);
        print!(
            "{} bytes written in {} writes, {} flushes",
            outcome.stats.bytes_written, outcome.stats.write_calls, outcome.stats.flushes
        );
        match &outcome.backup_dir {
            Some(b) if plan.undoable() => println!(
                "; undo with: bootbank restore {} --from {b}",
                target.display()
            ),
            _ => println!(),
        }
        print!("{}", again.text);
    }
    if let Some(e) = again.failed {
        eprintln!("bootbank: warning: reading the result again failed: {e}");
    }
    ExitCode::SUCCESS
}

/// "Now: " and the verdict of `inspect` on `path`, read again from scratch (fix, restore-config).
pub fn verdict_now(path: &Path, options: &bootbank::inspect::Options) -> ReadBack {
    match bootbank::inspect::inspect(path, options) {
        Ok(r) => ReadBack {
            text: format!(
                "Now: {}",
                super::human::verdict(&r).trim_start_matches("VERDICT: ")
            ),
            ..Default::default()
        },
        Err(e) => ReadBack {
            failed: Some(super::error_text(&e)),
            ..Default::default()
        },
    }
}
