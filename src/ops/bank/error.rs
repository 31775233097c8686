//! What stops a bank command, and the words of each refusal.

use crate::esxi::bank::{BankError, BootCfgUnread};
use crate::esxi::bootcfg::{BootCfgError, StateUnwritable};
use crate::esxi::target::TargetError;
use crate::io::disk::DiskError;
use crate::ops::inspect::InspectError;
use crate::write::backup::BackupError;
use crate::write::commit::CommitError;
use crate::write::transaction::{Leftover, TxError};
use std::path::PathBuf;
use std::sync::Arc;
use super::boot_names;

/// Errors of the bank commands. Everything but [`during_write`](crate::ops::plan::WriteError::during_write) happens before
/// anything is written.
#[derive(Debug, thiserror::Error)]
pub enum BankOpError {
    /// Reading the banks and the prediction failed (see [`InspectError`]).
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The target could not be opened or is not a boot disk (see [`TargetError`]).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Opening the disk for writing, or reading it, failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A bank partition could not be read (the disk under it, or its FAT).
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The target holds no bootbanks at all.
    #[error(
        "{}: {what}, which holds no bootbanks; give the disk image, block device or bank partition",
        .target.display()
    )]
    NoBanks {
        /// The target given.
        target: PathBuf,
        /// What it is instead.
        what: NoBanksIn,
    },
    /// `rollback` or `select` on a lone bank partition: there is no other bank to choose.
    #[error(
        "{}: a lone bank partition holds one bank; give the whole disk to choose between banks",
        .target.display()
    )]
    LonePartition {
        /// The target given.
        target: PathBuf,
    },
    /// `rollback` when no bank is valid: nothing boots now, so nothing to roll back from.
    #[error(
        "no bank is valid, so none boots now and there is nothing to roll back from; use `bootbank bank select N`"
    )]
    NothingBoots,
    /// `others`: every other bank with the reasons it is not valid.
    #[error(
        "no alternate hypervisor to roll back to: partition {current} boots next and no other bank is valid ({})",
        invalid_banks(.others)
    )]
    NoAlternate {
        /// The partition that boots next.
        current: u32,
        /// Every other bank's partition with the reasons it is not valid.
        others: Vec<(u32, Vec<String>)>,
    },
    /// The next boot cannot be predicted from the disk alone (e.g. the firmware decides), so
    /// bootbank will not change banks.
    #[error("{why}; bootbank changes banks only when it can predict the bootloader's choice")]
    Unknown {
        /// Why it cannot be predicted, in the prediction's words.
        why: String,
    },
    /// The boot.cfg bootbank would write would not be read by the bootloader as intended.
    #[error(
        "partition {partition}: bootbank would not write a boot.cfg that the bootloader reads as intended: {why}; nothing written"
    )]
    Unwritable {
        /// The bank's partition number.
        partition: u32,
        /// What would be read otherwise.
        why: UnwritableReason,
    },
    /// `select N` names a partition that is not one of the disk's banks.
    #[error(
        "partition {partition} is not a bootbank on this disk (banks: {})",
        .banks.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    NoSuchBank {
        /// The partition asked for.
        partition: u32,
        /// The disk's bank partitions.
        banks: Vec<u32>,
    },
    /// `select N` on a bank that cannot be made to boot next.
    #[error("partition {partition} cannot be made to boot: {why}")]
    CannotBoot {
        /// The partition asked for.
        partition: u32,
        /// Why not.
        why: NotBootable,
    },
    /// An interrupted boot.cfg write left files whose state cannot be resolved safely.
    #[error(
        "partition {partition}: {}; it cannot be completed or undone automatically: look at the bank's files (e.g. with mdir) and restore boot.cfg from a backup",
        .leftover.describe(&boot_names())
    )]
    Leftover {
        /// The bank's partition number.
        partition: u32,
        /// Which of boot.cfg, boot.new and boot.old are there.
        leftover: Leftover,
    },
    /// The bank's FAT is damaged in a way an interrupted write does not leave.
    #[error(
        "partition {partition}: the FAT is damaged ({}); bootbank will not write to it, nothing was written: back the partition up and repair it with `fsck.fat`",
        crate::format::fat::damage_list(.problems)
    )]
    FatDamaged {
        /// The bank's partition number.
        partition: u32,
        /// What the FAT check found.
        problems: Vec<crate::format::fat::Damage>,
    },
    /// The bank's FAT could not be checked before the plan. Nothing written.
    #[error(
        "partition {partition}: the FAT's allocation cannot be checked ({cause}), nothing was written"
    )]
    FatUnread {
        /// The bank's partition number.
        partition: u32,
        /// What stopped the check.
        cause: Arc<TxError>,
    },
    /// A backed-up boot.cfg that does not parse. Nothing written.
    #[error("backup {}: {cause}", .path.display())]
    BadBackup {
        /// The backup file.
        path: PathBuf,
        /// Why it does not parse.
        cause: BootCfgError,
    },
    /// The backup could not be read back, or does not fit the disk; nothing written.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The commit refused or failed; `CommitError::during_write` says whether after the first
    /// byte written.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// What a target without bootbanks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoBanksIn {
    /// A directory: a copy has no bootloader to choose between banks.
    #[error("a directory (a copied or mounted bank)")]
    Directory,
    /// A state.tgz, local.tgz or config bundle.
    #[error("an archive (state.tgz or config bundle)")]
    Archive,
    /// Neither a partition table nor a bank's magic.
    #[error("not an ESXi boot disk or bank partition (no partition table, no bank magic)")]
    Unrecognised,
}

/// Why bootbank will not write a boot.cfg: the bootloader would read it otherwise than intended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwritableReason {
    /// The edited boot.cfg does not parse.
    #[error(transparent)]
    Parse(#[from] BootCfgError),
    /// A key bootbank changes (`updated`, `bootstate`) would read as another number.
    #[error("the bootloader would read {key}={read} instead of {want}")]
    ReadsOtherwise {
        /// The key changed.
        key: String,
        /// What the bootloader would read, as text.
        read: String,
        /// The value meant.
        want: i64,
    },
    /// A key bootbank does not change would read differently after the edit.
    #[error("{key} would read `{read}` instead of `{was}`")]
    OtherKeyChanges {
        /// The key.
        key: String,
        /// What it would read after the edit.
        read: String,
        /// What it reads now.
        was: String,
    },
    /// `build` would read differently after the edit.
    #[error("build would read differently")]
    BuildReadsDifferently,
    /// The edit would leave a line with a space before `=`.
    #[error("a line would have a space before `=`, which hides its key from the bootloader")]
    HidesKey,
    /// `why`: what `BootCfg::state_writable` found wrong with the `bootstate` line.
    #[error(
        "{}{why}; bootbank writes only a boot.cfg whose bootstate the bootloader can update itself (at an upgrade's first boot, and on Shift+R): make `bootstate=` the first line of this boot.cfg by hand first",
        if *.after_change { "after the change, " } else { "" }
    )]
    StateNotWritable {
        /// Whether it is the edited boot.cfg (true) or the one on disk (false).
        after_change: bool,
        /// What is wrong with the `bootstate` line.
        why: StateUnwritable,
    },
}

/// Why `bank select` cannot make a bank boot next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotBootable {
    /// Its boot.cfg cannot be read from the FAT.
    #[error(transparent)]
    Unread(#[from] BootCfgUnread),
    /// Its boot.cfg does not parse.
    #[error(transparent)]
    Parse(#[from] BootCfgError),
    /// A later `build=` line empties the build.
    #[error(
        "its boot.cfg empties build= after a build= line, and what the UEFI bootloader then reads as the build is unknown"
    )]
    BuildCleared,
    /// boot.cfg has no `build=` line.
    #[error(
        "its boot.cfg has no build= line (an empty bank, e.g. the second bank after a fresh install)"
    )]
    NoBuild,
    /// The bank holds no kernel or modules.
    #[error("it holds no kernel or payload modules (b.b00, *.v00): an empty bank")]
    NoSystem,
    /// A quick boot image (the value of `quickboot` given).
    #[error("quickboot={0} (a quick boot image; bootbank does not change quickboot)")]
    QuickBoot(String),
    /// The other bank's `updated` is beyond what bootbank writes.
    #[error(
        "partition {partition} has updated={text}, which the bootloader reads as {read}: bootbank writes updated only up to 2147483647, which every firmware reads the same, and that does not beat it; roll partition {partition} back instead (`bootbank bank rollback`)"
    )]
    UpdatedBeyondReach {
        /// The other bank's partition number.
        partition: u32,
        /// Its `updated` as written.
        text: String,
        /// What the bootloader reads it as (unsigned 32-bit).
        read: u32,
    },
    /// The prediction's reasons the bank would still not be valid.
    #[error("{}", .0.join(", "))]
    Invalid(Vec<String>),
    /// Even after the change the prediction picks another bank.
    #[error("the bootloader would still pick another bank")]
    StillAnother,
}

fn invalid_banks(others: &[(u32, Vec<String>)]) -> String {
    if others.is_empty() {
        return "it is the only bank".to_string();
    }
    others
        .iter()
        .map(|(p, why)| format!("partition {p}: {}", why.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a boot.cfg read back is not the one meant to be written.
#[derive(Debug, thiserror::Error)]
pub enum BootCfgCheck {
    /// It does not parse.
    #[error(transparent)]
    Parse(#[from] BootCfgError),
    /// It parses but is not the intended bytes.
    #[error("boot.cfg differs from the intended one")]
    Differs,
}

/// Exit 1 for these, 2 for every other error (nothing was written).
impl crate::ops::plan::WriteError for BankOpError {
    fn during_write(&self) -> bool {
        matches!(self, BankOpError::Commit(e) if e.during_write())
    }
}
