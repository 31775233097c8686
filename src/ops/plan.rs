//! What every writing command's plan is to its caller. `fix` (and `config`, `passwd`,
//! `network`, `lockdown`), `bank rollback|select`, `restore` and `restore-config` each plan
//! differently, and their plans carry what their users need to judge them (esx.conf diffs and
//! ConfigStore rows; boot.cfg keys and the next-boot prediction; the bundle's checks), so each
//! keeps its own plan type. What a caller does with any of them is the same, and is this trait:
//! show it (every plan serializes to the JSON `--json` prints), see whether it changes anything,
//! and carry it out through the one commit (`crate::write::commit::commit`), which takes the
//! disk exclusively, backs up, recovers, writes, verifies and reports an [`Outcome`].

use crate::ops::inspect;
use crate::write::commit;
use crate::write::transaction::WriteStats;
use serde::Serialize;
use std::path::Path;

/// A plan made by one of the writing commands: everything it will write, computed from a
/// read-only look at the target, shown before anything is written.
pub trait WritePlan: Serialize {
    /// Why the write did not happen or did not complete.
    type Error: WriteError;
    /// The target the plan was made for, as the user gave it.
    fn target(&self) -> &Path;
    /// Whether anything would be written (a change, or an interrupted write's leftovers to
    /// settle); a plan without changes applies as a no-op.
    fn has_changes(&self) -> bool;
    /// Carries the plan out: a backup of every changed file into `backup_dir` (outside the
    /// target) first, then the crash-safe writes and their read-back.
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, Self::Error>;
}

/// An error of a write: the caller's exit status depends on whether the target may have been
/// touched.
pub trait WriteError: std::error::Error + 'static {
    /// Whether the error happened while writing to the target (the backup says how to undo
    /// it), rather than before anything was written.
    fn during_write(&self) -> bool;
}

/// What a write did, whichever command planned it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Where the backup of every changed file went, for `bootbank restore --from`; `None` when
    /// no file changed (nothing at all, or only leftovers of an interrupted write settled).
    pub backup_dir: Option<String>,
    /// The locations written (`partition 5 /state.tgz`, ...), in order.
    pub written: Vec<String>,
    /// What an interrupted earlier write left and was completed, undone or reclaimed first,
    /// each prefixed with its location.
    pub recovered: Vec<String>,
    /// Bytes written, write calls and fsyncs over the whole write.
    pub stats: WriteStats,
    /// The configurations the read-back checks decoded from what was written: an `inspect` of
    /// the result that reads the same bytes again need not decode them again.
    #[serde(skip)]
    pub decoded: Vec<inspect::Decoded>,
}

impl From<commit::Report> for Outcome {
    fn from(r: commit::Report) -> Outcome {
        Outcome {
            backup_dir: r.backup_dir.map(|d| d.display().to_string()),
            written: r.written,
            recovered: r.recovered,
            stats: r.stats,
            decoded: Vec::new(),
        }
    }
}
