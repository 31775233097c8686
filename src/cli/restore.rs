//! `bootbank restore`: puts back what a write backed up, whichever command wrote it (a
//! `state.tgz` from `fix`/`config`/`passwd`, a `boot.cfg` from `bank rollback|select`), through
//! the one restore of the library ([`bootbank::restore::plan`]).

use super::fix::WriteArgs;
use super::write::execute;
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
    // Each kind of backup is shown, written and read back as the command that made it does.
    match restore::plan(&a.target, &a.from, a.force) {
        Ok(RestorePlan::Boot(plan)) => execute(&a.target, &w.flags(), Ok(plan)),
        Ok(RestorePlan::Config(plan)) => {
            super::fix::execute(&a.target, w, |o| Ok(plan.with_output(o.output.clone())))
        }
        Err(restore::RestoreError::Bank(e)) => {
            execute::<bootbank::bank::BankPlan>(&a.target, &w.flags(), Err(e))
        }
        Err(restore::RestoreError::Fix(e)) => super::fix::execute(&a.target, w, |_| Err(e)),
    }
}
