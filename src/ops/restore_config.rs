//! `restore-config`: a bank's missing or unreadable `state.tgz` put back from the other bank's
//! `state.tgz` or from a configuration bundle, through the engine `fix` writes with: a plan
//! computed read-only (what differs, as a unified diff of esx.conf and a member list), a dry
//! run, a backup outside the target of whatever is there (even a corrupt file), the one
//! crash-safe write (`write::commit::commit_bank`: the atomic switch when the file exists,
//! the crash-safe create when it does not), and a read-back.
//!
//! The configuration bundle is what `vim-cmd hostsvc/firmware/backup_config` and PowerCLI's
//! `Get-VMHostFirmware -BackupConfiguration` download, `configBundle-<host>.tgz`: a gzip'd tar
//! of `Manifest.txt` and `state.tgz`, where `Manifest.txt` holds `RELEASELEVEL=`, `UUID=`,
//! `KERNELOPTS=` and `USEROPTS=` lines (the project's reference, `esxi-reference.md` section 4;
//! bootbank's own bundle fixture builder, `tests/tools/mkbundle`, writes that layout with GNU
//! tar). The `state.tgz` member is copied byte for byte: nothing in it is rewritten. Members
//! other than those two are listed in the plan and not used.
//!
//! The checks are the ones ESXi's own restore makes: vSphere's `RestoreFirmwareConfiguration`
//! fails with `MismatchedBundle` "if the uuid / build number in the bundle does not match the
//! uuid / build number of the host and parameter 'force' is set to false" (vSphere Web Services
//! API, HostFirmwareSystem.RestoreFirmwareConfiguration and vim.fault.MismatchedBundle, whose
//! fields are bundleBuildNumber, bundleUuid, hostBuildNumber, hostUuid). Offline, the host's
//! build is the target bank's `boot.cfg` `build=` (what `inspect` reports), and its UUID is
//! `/system/uuid` in the esx.conf of whichever configuration on the disk can be read (the
//! target bank's first, then the other banks'); when none can be read, the plan says so and
//! the UUID is not checked. A mismatch refuses the plan unless `force`. That the Manifest's
//! `UUID=` is the same identifier as esx.conf's `/system/uuid` is this project's reading (the
//! bundle fixtures carry the same value in both); no published bundle was found to confirm
//! it, so the README lists it as a limit.

use crate::esxi::bank::{self as bootbank, Bank, BankError};
use crate::esxi::config::{Config, ConfigError, ESX_CONF};
use crate::esxi::leftover::{Leftover, Names};
use crate::esxi::nextboot::{self, Candidate};
use crate::esxi::target::{Target, TargetError};
use crate::format::archive::{ArchiveError, Tgz};
use crate::format::envelope::Encryption;
use crate::io::disk::{Disk, DiskError};
use crate::ops::fix::{self, Outcome};
use crate::write::backup::{BackupError, BackupFile};
use crate::write::commit::{self, BankWrite, CommitError, InPlaceFailure, Method, VerifyError};
use crate::write::transaction::{self, TxError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The file restored.
pub const STATE: &str = "state.tgz";
/// The bundle's members, as `backup_config` writes them.
pub const MANIFEST: &str = "Manifest.txt";

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `state.tgz` of bank N (its partition number, as `bootbank bank status` shows it).
    Bank(u32),
    /// A `configBundle-<host>.tgz`.
    Bundle(PathBuf),
}

/// What to restore, and whether a mismatched bundle is taken anyway.
#[derive(Debug, Clone)]
pub struct Request {
    /// The bank or bundle whose state.tgz is copied (`--from-bank` or `--from`).
    pub source: Source,
    /// `--force`: take a bundle whose release level or host UUID does not match (or cannot be
    /// compared); each check overridden is said in the plan's notes.
    pub force: bool,
}

/// Errors of `restore-config`; [`RestoreConfigError::during_write`] tells those raised while
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
        .problems.join("; ")
    )]
    FatDamaged {
        /// The target bank's state.tgz (`partition 5 /state.tgz`).
        location: String,
        /// Each damage found in the FAT, one sentence each.
        problems: Vec<String>,
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

impl RestoreConfigError {
    /// Whether the error happened while writing (exit 1) rather than before (exit 2).
    pub fn during_write(&self) -> bool {
        matches!(
            self,
            RestoreConfigError::Write(_) | RestoreConfigError::InPlace { .. }
        ) || matches!(self, RestoreConfigError::Commit(e) if e.during_write())
    }
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

/// What the target bank's state.tgz is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Current {
    /// No state.tgz in the bank: it is created.
    Missing,
    /// A zero-length state.tgz.
    Empty,
    /// A state.tgz that does not decode (truncated, corrupt).
    Unreadable,
    /// A state.tgz that decodes: it is replaced all the same, after the backup.
    Readable,
}

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMethod {
    /// A new directory entry (the file was missing).
    Create,
    /// The existing entry switched to the new chain.
    Replace,
    /// Nothing to write: the bank already holds these bytes.
    None,
}

/// The target bank's file as found.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentFile {
    /// Missing, empty, unreadable or readable: what the restore replaces.
    pub state: Current,
    /// Its length in bytes; None when the bank has no state.tgz.
    pub size: Option<u64>,
    /// Its sha256 (lowercase hex); None when the bank has no state.tgz.
    pub sha256: Option<String>,
    /// Why it does not decode.
    pub error: Option<String>,
}

/// Where the new state.tgz comes from.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    /// `bank` or `bundle`.
    pub kind: &'static str,
    /// The source bank's partition number; None for a bundle.
    pub partition: Option<u32>,
    /// The bundle's path as given; None for a bank.
    pub path: Option<String>,
    /// The source bank's boot.cfg build.
    pub build: Option<String>,
    /// The bundle's `RELEASELEVEL=` value (None for a bank, or when the line is missing).
    pub release_level: Option<String>,
    /// The bundle's `UUID=` value, checked against the host's `/system/uuid` (None for a
    /// bank, or when the line is missing).
    pub uuid: Option<String>,
    /// Bundle members other than Manifest.txt and state.tgz (not used).
    pub other_members: Vec<String>,
    /// Length in bytes of the state.tgz that is written.
    pub size: u64,
    /// Its sha256 (lowercase hex).
    pub sha256: String,
    /// `none`, `kdf` (7.0U2+ without TPM, decrypted offline) or `tpm` (sealed: copied as is).
    pub encryption: Encryption,
    /// `/system/uuid` in the source's esx.conf, when readable.
    pub system_uuid: Option<String>,
}

/// What a check compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Both sides read, and they agree.
    Match,
    /// Both sides read, and they differ: refused unless `--force`.
    Mismatch,
    /// One side cannot be read.
    Unknown,
}

/// One of the checks ESXi's own restore makes.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `release_level` or `host_uuid`.
    pub check: &'static str,
    /// The bundle's value (`RELEASELEVEL=` or `UUID=`); None when Manifest.txt lacks it.
    pub bundle: Option<String>,
    /// The host's value (boot.cfg `build=` or `/system/uuid`); None when it cannot be read.
    pub host: Option<String>,
    /// Where the host's value was read (`partition 5 /boot.cfg`, `partition 6 /state.tgz`).
    pub host_from: Option<String>,
    /// Whether the two agree.
    pub verdict: Verdict,
    /// A mismatch (or unknown) taken anyway with `--force`.
    pub forced: bool,
}

/// A member of state.tgz or local.tgz that differs.
#[derive(Debug, Clone, Serialize)]
pub struct MemberChange {
    /// `state.tgz` or `local.tgz`.
    pub archive: &'static str,
    /// The member's path inside that archive (`etc/vmware/esx.conf`).
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Its length in bytes now; None when added.
    pub old_size: Option<u64>,
    /// Its length in bytes after the restore; None when removed.
    pub new_size: Option<u64>,
}

/// The plan, shown before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The target as given (disk image, block device or bank partition).
    pub target: String,
    /// The bank restored (None for a lone bank partition image).
    pub partition: Option<u32>,
    /// The restored bank's UUID (`/vmfs/volumes/<uuid>` form), recorded in the backup.
    pub bank_uuid: String,
    /// The file restored, as the messages name it: `partition 5 /state.tgz` (`this partition
    /// /state.tgz` for a lone bank partition).
    pub location: String,
    /// The file's name in the bank: always `state.tgz`.
    pub file: String,
    /// The bank's boot.cfg `build=`.
    pub build: Option<String>,
    /// Created, replaced, or nothing to write.
    pub method: WriteMethod,
    /// The bank's state.tgz as found.
    pub current: CurrentFile,
    /// Where the new state.tgz comes from, and what it is.
    pub source: SourceInfo,
    /// The checks ESXi's own restore makes, for a bundle (empty for a bank source).
    pub checks: Vec<Check>,
    /// Members that differ (when the current file decodes; else every new member is added).
    pub members: Vec<MemberChange>,
    /// Unified diff of esx.conf, current -> restored (empty when either cannot be read).
    pub diff: String,
    /// Sentences for the user: checks overridden with `--force`, a build or UUID that differs,
    /// bundle members not used, a TPM-sealed source, an unknown host UUID.
    pub notes: Vec<String>,
    /// What an interrupted write left in the FAT, reclaimed first.
    pub fat_leftover: Option<String>,
    /// The bank's state.tgz as read for the plan (empty when missing): what the backup copies,
    /// and what the commit expects to find still.
    #[serde(skip)]
    pub old_bytes: Vec<u8>,
    /// The state.tgz that is written, byte for byte the source's.
    #[serde(skip)]
    pub new_bytes: Vec<u8>,
    #[serde(skip)]
    new_esx_conf: Option<Vec<u8>>,
    #[serde(skip)]
    target_path: PathBuf,
    #[serde(skip)]
    part: u32,
}

impl Plan {
    /// Whether anything would be written.
    pub fn has_changes(&self) -> bool {
        self.method != WriteMethod::None
    }
}

/// Reads the target and the source read-only, runs the checks and computes what is written.
pub fn plan(target: &Path, req: &Request) -> Result<Plan, RestoreConfigError> {
    let (mut disk, banks) = match Target::open(target)? {
        Target::Disk { disk, found, .. } => (disk, found.banks),
        Target::Archive { .. } | Target::Directory(_) => {
            return Err(RestoreConfigError::NotADisk {
                path: target.to_path_buf(),
            });
        }
    };
    let lone = banks.len() == 1 && banks[0].partition == 0;
    let next = if lone {
        Some(0)
    } else {
        let candidates: Vec<Candidate<'_>> = banks
            .iter()
            .map(|b| Candidate {
                partition: b.partition,
                boot_cfg: b.boot_cfg.as_ref().map_err(|e| e.clone()),
            })
            .collect();
        let p = nextboot::predict(&candidates);
        if p.next_boot_partition.is_none() {
            return Err(RestoreConfigError::NoNextBank { unknown: p.unknown });
        }
        p.next_boot_partition
    };
    let part = next.expect("set above");
    let bank = banks
        .iter()
        .find(|b| b.partition == part)
        .expect("predicted among banks");
    let where_ = |p: u32| {
        if lone {
            "this partition".to_string()
        } else {
            format!("partition {p}")
        }
    };
    let location = format!("{} /{STATE}", where_(part));
    let names = Names::for_file(STATE);
    if let Some(l) = Leftover::detect(&bank.files, &names) {
        return Err(RestoreConfigError::Leftover {
            location,
            state: l.describe(&names),
        });
    }
    let has = |b: &Bank, n: &str| {
        b.files
            .iter()
            .any(|f| !f.is_dir && f.name.eq_ignore_ascii_case(n))
    };
    let exists = has(bank, STATE);
    if !exists && has(bank, "local.tgz") {
        return Err(RestoreConfigError::BareLocal { location });
    }
    let fat_leftover = {
        let h = transaction::fat_health(&mut disk, bank).map_err(|source| {
            RestoreConfigError::FatUnread {
                location: location.clone(),
                source,
            }
        })?;
        if !h.is_repairable() {
            return Err(RestoreConfigError::FatDamaged {
                location,
                problems: h.damage,
            });
        }
        (!h.is_clean()).then(|| h.describe())
    };
    let build = bank
        .boot_cfg
        .as_ref()
        .ok()
        .map(|c| c.build().to_string())
        .filter(|b| !b.is_empty());

    // The file as it is.
    let old_bytes = if exists {
        bootbank::read_file(&mut disk, bank, STATE)?.unwrap_or_default()
    } else {
        Vec::new()
    };
    let old_cfg = (!old_bytes.is_empty()).then(|| Config::from_state(&old_bytes, &location));
    let current = CurrentFile {
        state: match (&old_cfg, exists) {
            (_, false) => Current::Missing,
            (None, true) => Current::Empty,
            (Some(Err(_)), true) => Current::Unreadable,
            (Some(Ok(_)), true) => Current::Readable,
        },
        size: exists.then_some(old_bytes.len() as u64),
        sha256: exists.then(|| fix::sha256_hex(&old_bytes)),
        error: match &old_cfg {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        },
    };
    let old_cfg = old_cfg.and_then(Result::ok);

    // The source.
    let mut notes = Vec::new();
    let (new_bytes, mut source) = match &req.source {
        Source::Bank(n) => {
            let src = banks.iter().find(|b| b.partition == *n).ok_or_else(|| {
                RestoreConfigError::NotABank {
                    partition: *n,
                    banks: banks.iter().map(|b| b.partition).collect(),
                }
            })?;
            if *n == part {
                return Err(RestoreConfigError::SameBank { partition: *n });
            }
            if !has(src, STATE) {
                return Err(RestoreConfigError::SourceMissing { partition: *n });
            }
            let bytes = bootbank::read_file(&mut disk, src, STATE)?.unwrap_or_default();
            let src_build = src
                .boot_cfg
                .as_ref()
                .ok()
                .map(|c| c.build().to_string())
                .filter(|b| !b.is_empty());
            if src_build != build {
                // What an upgrade does itself: the new bank starts from the old bank's state.tgz.
                notes.push(format!(
                    "partition {n} runs build {}, partition {part} build {}: ESXi converts an older build's configuration at boot, as after an upgrade (which copies the old bank's state.tgz to the new bank)",
                    src_build.as_deref().unwrap_or("?"),
                    build.as_deref().unwrap_or("?")
                ));
            }
            let info = SourceInfo {
                kind: "bank",
                partition: Some(*n),
                path: None,
                build: src_build,
                release_level: None,
                uuid: None,
                other_members: Vec::new(),
                size: bytes.len() as u64,
                sha256: fix::sha256_hex(&bytes),
                encryption: Encryption::None,
                system_uuid: None,
            };
            (bytes, info)
        }
        Source::Bundle(path) => read_bundle(path)?,
    };
    let source_label = match &req.source {
        Source::Bank(n) => format!("{} /{STATE}", where_(*n)),
        Source::Bundle(p) => format!("{} > {STATE}", p.display()),
    };
    let new_cfg = Config::from_state(&new_bytes, &source_label).map_err(|source| {
        RestoreConfigError::SourceUnreadable {
            location: source_label.clone(),
            cause: source,
        }
    })?;
    source.encryption = new_cfg.encryption;
    source.system_uuid = system_uuid(&new_cfg);
    if new_cfg.encryption == Encryption::Tpm {
        notes.push(format!(
            "{source_label} is sealed by the host's TPM (mode {}): it is copied byte for byte, but its esx.conf cannot be shown or compared; only the host it was made on can open it",
            new_cfg.encryption_mode.as_deref().unwrap_or("?")
        ));
    }

    // The host's UUID: the first configuration on the disk that can be read, target first.
    let mut host: Option<(String, String)> = old_cfg
        .as_ref()
        .and_then(system_uuid)
        .map(|u| (u, location.clone()));
    if host.is_none() {
        for b in banks.iter().filter(|b| b.partition != part) {
            if !has(b, STATE) {
                continue;
            }
            let loc = format!("{} /{STATE}", where_(b.partition));
            let Ok(Some(bytes)) = bootbank::read_file(&mut disk, b, STATE) else {
                continue;
            };
            if let Some(u) = Config::from_state(&bytes, &loc)
                .ok()
                .as_ref()
                .and_then(system_uuid)
            {
                host = Some((u, loc));
                break;
            }
        }
    }
    if host.is_none() {
        notes.push(
            "no configuration on this disk can be read (missing, corrupt or TPM-sealed), so the host's UUID (/system/uuid in esx.conf) is not known and is not checked".to_string(),
        );
    }

    let mut checks = Vec::new();
    if let Source::Bundle(_) = &req.source {
        checks.push(release_check(&source, build.as_deref(), part, req.force)?);
        checks.push(uuid_check(&source, host.as_ref(), req.force)?);
        if let (Some(m), Some(s)) = (&source.uuid, &source.system_uuid)
            && !m.eq_ignore_ascii_case(s)
        {
            notes.push(format!(
                "the bundle's Manifest.txt says UUID={m}, its own esx.conf /system/uuid = \"{s}\""
            ));
        }
        if !source.other_members.is_empty() {
            notes.push(format!(
                "the bundle also holds {}: not used",
                source.other_members.join(", ")
            ));
        }
    } else if let (Some((h, from)), Some(s)) = (&host, &source.system_uuid)
        && !h.eq_ignore_ascii_case(s)
    {
        // Both banks of one disk: another host's configuration is worth a word, not a refusal.
        notes.push(format!("the source's /system/uuid is {s}, {from} says {h}"));
    }
    for c in &checks {
        if c.forced {
            notes.push(format!(
                "--force: the {} check ({}) is overridden",
                c.check.replace('_', " "),
                match c.verdict {
                    Verdict::Mismatch => "mismatch",
                    _ => "cannot be compared",
                }
            ));
        }
    }

    let esx = |c: &Config| {
        c.local
            .as_ref()
            .and_then(|l| l.require(ESX_CONF).ok())
            .map(<[u8]>::to_vec)
    };
    let new_esx_conf = esx(&new_cfg);
    let old_esx_conf = old_cfg.as_ref().and_then(esx);
    let diff = match &new_esx_conf {
        Some(n) => fix::unified_diff(old_esx_conf.as_deref().unwrap_or_default(), n, &location),
        None => String::new(),
    };
    let members = member_changes(old_cfg.as_ref(), &new_cfg);
    let method = if exists && old_bytes == new_bytes {
        notes.push(format!("{location} already holds these bytes"));
        WriteMethod::None
    } else if exists {
        WriteMethod::Replace
    } else {
        WriteMethod::Create
    };
    if let Some(l) = &fat_leftover {
        notes.push(format!(
            "the FAT holds what an interrupted write leaves ({l}): reclaimed first"
        ));
    }
    Ok(Plan {
        target: target.display().to_string(),
        partition: (!lone).then_some(part),
        bank_uuid: bank.uuid.clone(),
        location,
        file: STATE.to_string(),
        build,
        method,
        current,
        source,
        checks,
        members,
        diff,
        notes,
        fat_leftover,
        old_bytes,
        new_bytes,
        new_esx_conf,
        target_path: target.to_path_buf(),
        part,
    })
}

/// `/system/uuid` of a decoded configuration.
fn system_uuid(cfg: &Config) -> Option<String> {
    cfg.esx_conf
        .as_ref()
        .and_then(|c| c.get("/system/uuid"))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// Reads a configuration bundle: its state.tgz (the bytes written) and Manifest.txt's values.
fn read_bundle(path: &Path) -> Result<(Vec<u8>, SourceInfo), RestoreConfigError> {
    let bytes = std::fs::read(path).map_err(|cause| RestoreConfigError::BundleIo {
        path: path.to_path_buf(),
        cause,
    })?;
    let label = format!("bundle {}", path.display());
    let outer = Tgz::parse(&bytes, &label).map_err(|cause| RestoreConfigError::NotABundle {
        path: path.to_path_buf(),
        cause,
    })?;
    let missing = |what: &'static str| RestoreConfigError::BundleIncomplete {
        path: path.to_path_buf(),
        missing: what,
        members: outer.member_names(),
    };
    let manifest = outer
        .member(MANIFEST)
        .filter(|m| m.is_file())
        .ok_or_else(|| missing(MANIFEST))?;
    let state = outer
        .member(STATE)
        .filter(|m| m.is_file())
        .ok_or_else(|| missing(STATE))?;
    let text = String::from_utf8_lossy(outer.data(manifest)).into_owned();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix(key))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let state = outer.data(state).to_vec();
    let info = SourceInfo {
        kind: "bundle",
        partition: None,
        path: Some(path.display().to_string()),
        build: None,
        release_level: field("RELEASELEVEL="),
        uuid: field("UUID="),
        other_members: outer
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|n| n != MANIFEST && n != STATE)
            .collect(),
        size: state.len() as u64,
        sha256: fix::sha256_hex(&state),
        encryption: Encryption::None,
        system_uuid: None,
    };
    Ok((state, info))
}

/// The version and build number of a `RELEASELEVEL=` value, `VMware ESXi 7.0.3 build-22348816`.
pub fn parse_release_level(s: &str) -> Option<(String, u64)> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("build-"))?;
    let build = words[at].strip_prefix("build-")?.parse().ok()?;
    let version = words[..at]
        .iter()
        .rev()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    Some((version.to_string(), build))
}

/// The version and build number of a boot.cfg `build=` value, `7.0.3-0.0.22348816`.
pub fn parse_boot_build(s: &str) -> Option<(String, u64)> {
    let (version, rest) = s.trim().split_once('-')?;
    let build = rest.rsplit('.').next()?.parse().ok()?;
    Some((version.to_string(), build))
}

fn release_check(
    source: &SourceInfo,
    bank_build: Option<&str>,
    partition: u32,
    force: bool,
) -> Result<Check, RestoreConfigError> {
    let rl = source.release_level.clone();
    let verdict = match (
        rl.as_deref().and_then(parse_release_level),
        bank_build.and_then(parse_boot_build),
    ) {
        (Some(a), Some(b)) if a == b => Verdict::Match,
        (Some(_), Some(_)) => Verdict::Mismatch,
        _ => Verdict::Unknown,
    };
    if !force {
        match verdict {
            Verdict::Match => {}
            Verdict::Mismatch => {
                return Err(RestoreConfigError::ReleaseMismatch {
                    release_level: rl.unwrap_or_default(),
                    partition,
                    bank_build: bank_build.unwrap_or_default().to_string(),
                });
            }
            Verdict::Unknown => {
                return Err(RestoreConfigError::BuildUnknown {
                    release_level: rl,
                    partition,
                    bank_build: bank_build.map(str::to_string),
                });
            }
        }
    }
    Ok(Check {
        check: "release_level",
        bundle: rl,
        host: bank_build.map(str::to_string),
        host_from: Some(format!("partition {partition} /boot.cfg")),
        verdict,
        forced: force && verdict != Verdict::Match,
    })
}

fn uuid_check(
    source: &SourceInfo,
    host: Option<&(String, String)>,
    force: bool,
) -> Result<Check, RestoreConfigError> {
    let verdict = match (&source.uuid, host) {
        (Some(b), Some((h, _))) if b.eq_ignore_ascii_case(h) => Verdict::Match,
        (Some(_), Some(_)) => Verdict::Mismatch,
        _ => Verdict::Unknown,
    };
    if !force {
        match (verdict, &source.uuid, host) {
            (Verdict::Mismatch, Some(b), Some((h, from))) => {
                return Err(RestoreConfigError::UuidMismatch {
                    bundle_uuid: b.clone(),
                    host_uuid: h.clone(),
                    host_from: from.clone(),
                });
            }
            (Verdict::Unknown, None, Some((h, _))) => {
                return Err(RestoreConfigError::UuidUnknown {
                    host_uuid: h.clone(),
                });
            }
            _ => {}
        }
    }
    Ok(Check {
        check: "host_uuid",
        bundle: source.uuid.clone(),
        host: host.map(|h| h.0.clone()),
        host_from: host.map(|h| h.1.clone()),
        verdict,
        // An unknown host UUID (nothing readable) is said in the notes, not forced.
        forced: force
            && (verdict == Verdict::Mismatch || (source.uuid.is_none() && host.is_some())),
    })
}

/// Members of state.tgz and local.tgz that the restore adds, removes or changes.
fn member_changes(old: Option<&Config>, new: &Config) -> Vec<MemberChange> {
    let mut out = Vec::new();
    let mut compare = |archive: &'static str, a: Option<&Tgz>, b: Option<&Tgz>| {
        let Some(b) = b else { return };
        for m in &b.members {
            match a.and_then(|a| a.member(&m.name).map(|o| (a, o))) {
                None => out.push(MemberChange {
                    archive,
                    name: m.name.clone(),
                    change: "added",
                    old_size: None,
                    new_size: Some(m.size),
                }),
                Some((a, o)) if a.data(o) != b.data(m) => out.push(MemberChange {
                    archive,
                    name: m.name.clone(),
                    change: "changed",
                    old_size: Some(o.size),
                    new_size: Some(m.size),
                }),
                _ => {}
            }
        }
        for o in a.map(|a| a.members.as_slice()).unwrap_or_default() {
            if b.member(&o.name).is_none() {
                out.push(MemberChange {
                    archive,
                    name: o.name.clone(),
                    change: "removed",
                    old_size: Some(o.size),
                    new_size: None,
                });
            }
        }
    };
    compare(STATE, old.map(|c| &c.state), Some(&new.state));
    compare(
        "local.tgz",
        old.and_then(|c| c.local.as_ref()),
        new.local.as_ref(),
    );
    out
}

/// The read-back check: the bytes are the source's exactly, decode, and carry its esx.conf.
fn verify(plan: &Plan, bytes: &[u8]) -> Result<(), ReadBackError> {
    if bytes != plan.new_bytes.as_slice() {
        return Err(ReadBackError::Bytes);
    }
    let cfg = Config::from_state(bytes, &plan.location).map_err(ReadBackError::Config)?;
    if let Some(want) = &plan.new_esx_conf {
        let got = cfg
            .local
            .as_ref()
            .and_then(|l| l.require(ESX_CONF).ok())
            .ok_or(ReadBackError::NoEsxConf)?;
        if got != want.as_slice() {
            return Err(ReadBackError::EsxConf);
        }
    }
    Ok(())
}

/// Carries out a plan through the one commit (`commit::commit`): the disk taken exclusively,
/// the backup outside it, the crash-safe write, the read-back.
pub fn apply(plan: &Plan, backup_dir: &Path) -> Result<Outcome, RestoreConfigError> {
    run(plan, backup_dir, None)
}

/// [`apply`] on a disk the caller opened for writing (the power-cut tests pass one whose
/// storage records every write and flush).
pub fn apply_on(plan: &Plan, backup_dir: &Path, disk: Disk) -> Result<Outcome, RestoreConfigError> {
    run(plan, backup_dir, Some(disk))
}

/// The plan's one state.tgz as the commit's change; `disk: None` lets the commit open the disk
/// itself, exclusively, before anything else.
fn run(plan: &Plan, backup_dir: &Path, disk: Option<Disk>) -> Result<Outcome, RestoreConfigError> {
    if !plan.has_changes() {
        return Ok(Outcome::default());
    }
    let names = Names::for_file(STATE);
    let check = |b: &[u8]| verify(plan, b).map_err(VerifyError::new);
    // The backup keeps whatever the bank holds (a corrupt or empty state.tgz too); a created
    // file has nothing to keep, and the commit's manifest with no entries says so.
    let (backup, method) = match plan.method {
        WriteMethod::Create => (None, Method::Create { verify: &check }),
        _ => (
            Some(BackupFile {
                partition: plan.partition,
                bank_uuid: Some(plan.bank_uuid.clone()),
                file: plan.file.clone(),
                old_bytes: &plan.old_bytes,
                new_bytes: &plan.new_bytes,
            }),
            Method::Replace { verify: &check },
        ),
    };
    let change = commit::Change {
        location: plan.location.clone(),
        backup,
        dest: commit::Dest::Bank(BankWrite {
            partition: plan.part,
            names: &names,
            old: &plan.old_bytes,
            new: &plan.new_bytes,
            method,
            recover: None,
            tidy: plan.fat_leftover.is_some(),
        }),
    };
    let changes = [change];
    let report = match disk {
        Some(disk) => commit::commit_on(&plan.target_path, backup_dir, &changes, Some(disk)),
        None => commit::commit(&plan.target_path, backup_dir, &changes),
    }
    .map_err(|e| match e {
        CommitError::Changed { .. } => RestoreConfigError::ChangedSincePlan {
            location: plan.location.clone(),
        },
        CommitError::Vanished { partition } => RestoreConfigError::PartitionVanished { partition },
        CommitError::InPlace { partition, why } => RestoreConfigError::InPlace { partition, why },
        CommitError::Tx(e) => RestoreConfigError::Write(e),
        CommitError::Bank(e) => RestoreConfigError::Bank(e),
        CommitError::Disk(e) => RestoreConfigError::Disk(e),
        CommitError::Backup(e) => RestoreConfigError::Backup(e),
        other => RestoreConfigError::Commit(other),
    })?;
    Ok(Outcome::from(report))
}

impl crate::ops::plan::WritePlan for Plan {
    type Error = RestoreConfigError;
    fn target(&self) -> &Path {
        &self.target_path
    }
    fn has_changes(&self) -> bool {
        Plan::has_changes(self)
    }
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, RestoreConfigError> {
        apply(self, backup_dir)
    }
}

impl crate::ops::plan::WriteError for RestoreConfigError {
    fn during_write(&self) -> bool {
        RestoreConfigError::during_write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_compare_by_version_and_build_number() {
        assert_eq!(
            parse_release_level("VMware ESXi 7.0.3 build-22348816"),
            Some(("7.0.3".to_string(), 22348816))
        );
        assert_eq!(
            parse_boot_build("7.0.3-0.0.22348816"),
            Some(("7.0.3".to_string(), 22348816))
        );
        assert_eq!(
            parse_boot_build("6.7.0-0.0.14320388"),
            Some(("6.7.0".to_string(), 14320388))
        );
        assert_eq!(parse_release_level("VMware ESXi"), None);
        assert_eq!(parse_boot_build("latest"), None);
    }
}
