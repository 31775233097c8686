//! `fix`, `config set|unset` and `restore`: one engine that edits esx.conf in the configuration
//! of one or more banks (or in a state archive or config bundle) and writes the result back the
//! safe way.
//!
//! Edits flow back up the stack the data came down: esx.conf -> local.tgz (one member replaced,
//! the others byte-identical) -> state.tgz (likewise) -> [config bundle] -> the bank's FAT through
//! `transaction::replace`, or a file replaced by rename; [`apply`] hands the plan's files to the
//! one commit (`commit::commit_on`), which writes nothing before a backup of every file about to
//! change exists outside the target.

mod apply;
mod check;
mod devices;
mod diff;
mod error;
mod plan;
mod restore;
mod step;
mod target;

pub use apply::{apply, apply_on, write_backup};
pub use check::CheckError;
pub use diff::unified_diff;
pub use error::{FixError, SealedDevice};
pub use plan::{DeviceChoice, MemberChange, Plan, Step, StepBuilder, StepInput, StoreChange};
pub use restore::plan_restore;
pub(crate) use restore::plan_restore_of;
pub use step::member_step;
pub use target::{plan, plan_with};

use crate::esxi::esxconf::Edit;
use std::path::PathBuf;

/// Which banks to change besides the one that boots next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Banks {
    /// Only the bank that boots next.
    #[default]
    Next,
    /// The next bank and these partitions (a bank that will not boot only when named here).
    Also(Vec<u32>),
    /// Every bank that holds a configuration and is valid, so that a rollback (Shift+R) does not
    /// bring the old setting back.
    Both,
}

/// What to change.
#[derive(Debug, Clone)]
pub enum Request {
    /// Give these devices (user-typed addresses) back to the vmkernel.
    Devices(Vec<String>),
    /// Every storage adapter owned by passthru.
    AllStorage,
    /// Plain esx.conf edits (`config set|unset`).
    Edits(Vec<Edit>),
}

/// Where the output goes for archive targets.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which banks of a disk target to change; an archive target has only its own one.
    pub banks: Banks,
    /// For a state.tgz or bundle target: write here instead of in place.
    pub output: Option<PathBuf>,
}

/// What was written: the one record every write command returns.
pub use crate::ops::plan::Outcome;

/// The backup's parts, kept here under their old names.
pub use crate::write::backup::{
    BackupFile, Manifest, ManifestEntry, default_backup_dir, sha256_hex,
};

/// Replaces a file outside any bank, the way [`apply`] writes an archive target.
pub use crate::write::commit::replace_file;
