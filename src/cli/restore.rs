//! `bootbank restore`: puts back what a write backed up, whichever command wrote it (a
//! `state.tgz` from `fix`/`config`/`passwd`, a `boot.cfg` from `bank rollback|select`), through
//! the one restore of the library ([`bootbank::restore::plan`]).

use super::fix::WriteArgs;
use bootbank::restore::{self, RestorePlan};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct RestoreArgs {
    /// The disk, partition or archive the backup was taken from.
    target: PathBuf,
    /// Backup directory printed by the command that wrote.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Restore even when the target changed since, or the bank UUID differs.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    write: WriteArgs,
}

pub fn run_restore(a: RestoreArgs) -> ExitCode {
    let w = &a.write;
    // A backup of boot.cfg files is shown, written and read back as `bank` does.
    let bank_opts = super::bank::WriteOpts {
        dry_run: w.dry_run,
        yes: w.yes,
        backup_dir: w.backup_dir.clone(),
        json: w.json,
    };
    match restore::plan(&a.target, &a.from, a.force) {
        Ok(RestorePlan::Boot(plan)) => super::bank::execute(&a.target, &bank_opts, Ok(plan)),
        Ok(RestorePlan::Config(plan)) => super::fix::execute(&a.target, w, |_| Ok(plan)),
        Err(restore::RestoreError::Bank(e)) => super::bank::execute(&a.target, &bank_opts, Err(e)),
        Err(restore::RestoreError::Fix(e)) => super::fix::execute(&a.target, w, |_| Err(e)),
    }
}
