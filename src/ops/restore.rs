//! `restore`: puts back what a write backed up, whichever command wrote it. The backup is read
//! and checked once (`crate::write::backup::read`: the manifest, every file against its
//! checksum), and each file is checked against the target the same way
//! (`crate::write::backup::compare`: the bank it was taken from, the file either as the write
//! left it or already restored). The plan is then `fix`'s for configuration files (a
//! `state.tgz`, a bare `local.tgz`, an archive) and `bank`'s for boot.cfg files (so that it
//! predicts the next boot with them); both are written by the one commit
//! (`crate::write::commit::commit`), with a backup of their own.

use crate::ops::bank::{self, BankOpError, BankPlan};
use crate::ops::fix::{self, FixError, Plan};
use crate::ops::plan::{Outcome, WriteError, WritePlan};
use crate::write::backup;
use serde::Serialize;
use std::path::Path;

/// What a restore will write, in the form of the command whose backup it puts back; it
/// serializes as that command's plan.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RestorePlan {
    /// Configuration files (from `fix`, `config`, `passwd`, or an earlier restore of them).
    Config(Plan),
    /// boot.cfg files (from `bank rollback|select`, or an earlier restore of them).
    Boot(BankPlan),
}

/// Errors of a restore; each says whether anything was written.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup could not be read or checked (whatever its kind), or a backup of
    /// configuration files could not be put back; `FixError::during_write` tells whether
    /// anything was written.
    #[error(transparent)]
    Fix(#[from] FixError),
    /// A backup of boot.cfg files could not be put back; `BankOpError::during_write` tells
    /// whether anything was written.
    #[error(transparent)]
    Bank(#[from] BankOpError),
}

/// Plans putting back the backup in `from` onto `target`; `force` restores even when the file
/// changed since the backup's write, or the bank UUID differs.
pub fn plan(target: &Path, from: &Path, force: bool) -> Result<RestorePlan, RestoreError> {
    let b = backup::read(from).map_err(FixError::from)?;
    Ok(if b.is_boot_cfg() {
        RestorePlan::Boot(bank::plan_restore_of(target, &b, force)?)
    } else {
        RestorePlan::Config(fix::plan_restore_of(target, &b, force)?)
    })
}

impl WritePlan for RestorePlan {
    type Error = RestoreError;
    fn target(&self) -> &Path {
        match self {
            RestorePlan::Config(p) => p.target(),
            RestorePlan::Boot(p) => p.target(),
        }
    }
    fn has_changes(&self) -> bool {
        match self {
            RestorePlan::Config(p) => p.has_changes(),
            RestorePlan::Boot(p) => p.has_changes(),
        }
    }
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, RestoreError> {
        Ok(match self {
            RestorePlan::Config(p) => fix::apply(p, backup_dir)?,
            RestorePlan::Boot(p) => bank::apply(p, backup_dir)?,
        })
    }
}

/// Exit 1 for these, 2 for every other error (nothing was written).
impl WriteError for RestoreError {
    fn during_write(&self) -> bool {
        match self {
            RestoreError::Fix(e) => e.during_write(),
            RestoreError::Bank(e) => e.during_write(),
        }
    }
}
