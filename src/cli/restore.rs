//! `bootbank restore`: puts back what a write backed up, whichever command wrote it (a
//! `state.tgz` from `fix`/`config`, a `boot.cfg` from `bank rollback|select`).

use super::fix::WriteArgs;
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
    let (from, force) = (a.from.clone(), a.force);
    // A backup of boot.cfg files (from `bank rollback|select`) goes back through the bank path.
    match bootbank::bank::plan_restore(&a.target, &from, force) {
        Ok(Some(plan)) => {
            let w = &a.write;
            return super::bank::execute(
                &a.target,
                &super::bank::WriteOpts {
                    dry_run: w.dry_run,
                    yes: w.yes,
                    backup_dir: w.backup_dir.clone(),
                    json: w.json,
                },
                Ok(plan),
            );
        }
        Ok(None) => {}
        Err(e) => return super::fail(&super::error_text(&e), if e.during_write() { 1 } else { 2 }),
    }
    super::fix::execute(&a.target, &a.write, |_| {
        bootbank::fix::plan_restore(&a.target, &from, force)
    })
}
