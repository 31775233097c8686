//! What goes wrong: restore-config's errors, and the read-back check's reasons for refusing the
//! bytes it reads back.

use crate::esxi::bank::BankError;
use crate::esxi::config::ConfigError;
use crate::esxi::target::TargetError;
use crate::format::archive::ArchiveError;
use crate::io::disk::DiskError;
use crate::write::backup::BackupError;
use crate::write::commit::{CommitError, InPlaceFailure};
use crate::write::transaction::TxError;
use std::path::PathBuf;

/// Errors of `restore-config`; [`during_write`](crate::ops::plan::WriteError::during_write) tells those raised while
/// writing (exit 1) from refusals before anything was written (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RestoreConfigError {
    /// The target cannot be opened or is none of the kinds bootbank reads. Nothing was written.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A bank's FAT or files could not be read, while planning or in the commit; the cause is
    /// in the message. Counted as before the write (exit 2).
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The disk could not be opened for writing, or read; the cause is in the message. Counted
    /// as before the write (exit 2).
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// An archive or a directory: there is no bank to put a state.tgz into.
    #[error(
        "{}: not a disk or bootbank partition; restore-config writes a bank's state.tgz (to change an archive, use fix or config)",
        .path.display()
    )]
    NotADisk {
        /// The target as given.
        path: PathBuf,
    },
    /// No bank of the disk is predicted to boot next (none valid, or the prediction cannot be
    /// made), so there is no bank to restore. Nothing was written.
    #[error(
        "{}: restore-config writes the bank that boots next, and none does",
        .unknown.as_deref().unwrap_or("no bank is valid (this host will not boot)")
    )]
    NoNextBank {
        /// Why the next boot cannot be predicted, as the prediction says it; None when no bank
        /// is valid at all.
        unknown: Option<String>,
    },
    #[error(
        "--from-bank {partition}: partition {partition} is not a bootbank (banks: {})",
        .banks.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    /// `--from-bank` names a partition that is not one of the disk's banks. Nothing was written.
    NotABank {
        /// The partition number given to `--from-bank`.
        partition: u32,
        /// The partition numbers of the banks the disk has.
        banks: Vec<u32>,
    },
    /// The source is the bank being restored.
    #[error("--from-bank {partition}: that is the bank being restored (the one that boots next)")]
    SameBank {
        /// The partition number given to `--from-bank`, which boots next.
        partition: u32,
    },
    /// The source bank has no state.tgz. Nothing was written.
    #[error("--from-bank {partition}: partition {partition} has no state.tgz to restore from")]
    SourceMissing {
        /// The partition number given to `--from-bank`.
        partition: u32,
    },
    /// The source does not decode to a configuration: it is not written anywhere.
    #[error("{location}: not a usable configuration: {cause}; nothing was written")]
    SourceUnreadable {
        /// The source's state.tgz (`partition 6 /state.tgz`, `<bundle> > state.tgz`).
        location: String,
        /// Why the configuration reader rejected it.
        cause: ConfigError,
    },
    /// The bundle file cannot be read. Nothing was written.
    #[error("{}: {cause}", .path.display())]
    BundleIo {
        /// The bundle as given to `--from`.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The bundle file is not a gzip'd tar. Nothing was written.
    #[error("{}: not a configuration bundle: {cause}", .path.display())]
    NotABundle {
        /// The bundle as given to `--from`.
        path: PathBuf,
        /// What the gzip or tar reader rejected.
        cause: ArchiveError,
    },
    /// A bundle without `Manifest.txt` or `state.tgz`.
    #[error(
        "{}: not a configuration bundle: no {missing} (members: {members})",
        .path.display()
    )]
    BundleIncomplete {
        /// The bundle as given to `--from`.
        path: PathBuf,
        /// The member not found as a file: `Manifest.txt` or `state.tgz`.
        missing: &'static str,
        /// The members the bundle does hold, comma-separated, to tell what was given instead.
        members: String,
    },
    /// The bundle's release level is not the target bank's build (`--force` takes it anyway).
    #[error(
        "the bundle is for {release_level}, but partition {partition} boots build {bank_build}: ESXi's own restore refuses a bundle of another build (MismatchedBundle); --force to restore anyway"
    )]
    ReleaseMismatch {
        /// The bundle's `RELEASELEVEL=` (`VMware ESXi 7.0.3 build-22348816`).
        release_level: String,
        /// The bank that boots next, which would be restored.
        partition: u32,
        /// That bank's boot.cfg `build=` (`7.0.3-0.0.22348816`).
        bank_build: String,
    },
    /// The release level or the bank's build cannot be read, so they cannot be compared.
    #[error(
        "cannot compare the bundle's release level ({}) with partition {partition}'s build ({}); --force to restore anyway",
        .release_level.as_deref().unwrap_or("no RELEASELEVEL= line"),
        .bank_build.as_deref().unwrap_or("no build= in boot.cfg")
    )]
    BuildUnknown {
        /// The bundle's `RELEASELEVEL=`, None when Manifest.txt has no such line (it may also
        /// be present but without a version and `build-N`).
        release_level: Option<String>,
        /// The bank that boots next, which would be restored.
        partition: u32,
        /// That bank's boot.cfg `build=`, None when boot.cfg has none (or does not parse).
        bank_build: Option<String>,
    },
    /// The bundle was made on another host (`--force` takes it anyway).
    #[error(
        "the bundle was made on host {bundle_uuid}, but this host is {host_uuid} (/system/uuid in {host_from}): ESXi's own restore refuses another host's bundle (MismatchedBundle); --force to restore anyway"
    )]
    UuidMismatch {
        /// The bundle's Manifest.txt `UUID=`.
        bundle_uuid: String,
        /// `/system/uuid` of the host's esx.conf.
        host_uuid: String,
        /// The configuration it was read from (`partition 5 /state.tgz`).
        host_from: String,
    },
    /// The bundle has no `UUID=` line while the host's UUID is known.
    #[error(
        "the bundle's Manifest.txt has no UUID= line, so it cannot be checked against this host ({host_uuid}); --force to restore anyway"
    )]
    UuidUnknown {
        /// `/system/uuid` of the host's esx.conf.
        host_uuid: String,
    },
    /// Renamed files an earlier bootbank version's interrupted write left: `fix` or `restore`
    /// settles them first.
    #[error(
        "{location}: {state}; settle it first (bootbank fix or bootbank restore completes or undoes it), nothing was written"
    )]
    Leftover {
        /// The target bank's state.tgz (`partition 5 /state.tgz`).
        location: String,
        /// What the renamed files are and what they mean, in one sentence.
        state: String,
    },
    /// A bank that loads a bare local.tgz (older embedded builds), not state.tgz.
    #[error("{location}: the bank keeps a bare local.tgz, not state.tgz; nothing was written")]
    BareLocal {
        /// The target bank's state.tgz (`partition 5 /state.tgz`), which is missing.
        location: String,
    },
    /// The target bank's FAT is damaged beyond the leftovers of an interrupted write, so it is
    /// not written to. Nothing was written.
    #[error(
        "{location}: the FAT is damaged ({}); bootbank will not write to it, nothing was written: back the partition up and repair it with `fsck.fat`",
        crate::format::fat::damage_list(.problems)
    )]
    FatDamaged {
        /// The target bank's state.tgz (`partition 5 /state.tgz`).
        location: String,
        /// Each damage found in the FAT.
        problems: Vec<crate::format::fat::Damage>,
    },
    /// The target bank's FAT could not be read to check its allocation. Nothing was written.
    #[error("{location}: the FAT's allocation cannot be checked, nothing was written")]
    FatUnread {
        /// The target bank's state.tgz (`partition 5 /state.tgz`).
        location: String,
        /// Why the FAT could not be read.
        #[source]
        source: TxError,
    },
    /// The backup could not be written (nothing was written to the target).
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The one commit refused before writing (see `CommitError`).
    #[error(transparent)]
    Commit(CommitError),
    /// The bank's state.tgz no longer holds the bytes the plan read (something else wrote it
    /// in between). Nothing was written; a new plan sees the file as it is.
    #[error("{location}: the file changed since the plan was made; run again")]
    ChangedSincePlan {
        /// The target bank's state.tgz (`partition 5 /state.tgz`).
        location: String,
    },
    /// The commit, reading the disk's banks again, no longer finds the planned one (the disk
    /// changed since the plan). Nothing was written to the target.
    #[error("partition {partition} vanished")]
    PartitionVanished {
        /// The partition the plan was for.
        partition: u32,
    },
    /// The crash-safe write through the FAT failed (the read-back check, [`ReadBackError`],
    /// refused the new bytes, or the FAT layer or the disk failed); the cause is in the
    /// message. Counted as during the write (exit 1); the backup was made first.
    #[error("write failed: {0}")]
    Write(TxError),
    /// A one-byte write in place failed (never planned by restore-config; kept for the commit's
    /// every outcome).
    #[error("write failed: partition {partition}: {why}")]
    InPlace {
        /// The partition written.
        partition: u32,
        /// What failed.
        why: InPlaceFailure,
    },
}

/// Why the state.tgz read back is not the source's.
///
/// The check runs on the new file read back before the bank switches to it: any of these fails
/// the write (`RestoreConfigError::Write`) and the bank keeps what it had.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackError {
    /// The bytes read back differ from the source's state.tgz.
    #[error("the bytes read back are not the source's")]
    Bytes,
    /// The bytes read back do not decode as a configuration; the cause is in the message.
    #[error("{0}")]
    Config(ConfigError),
    /// The source carries an esx.conf but the file read back has none in its local.tgz.
    #[error("no esx.conf")]
    NoEsxConf,
    /// The esx.conf read back is not byte for byte the source's.
    #[error("esx.conf differs from the source's")]
    EsxConf,
}
/// Exit 1 for these, 2 for every other error (nothing was written).
impl crate::ops::plan::WriteError for RestoreConfigError {
    fn during_write(&self) -> bool {
        matches!(
            self,
            RestoreConfigError::Write(_) | RestoreConfigError::InPlace { .. }
        ) || matches!(self, RestoreConfigError::Commit(e) if e.during_write())
    }
}
