//! `fix`, `config set|unset` and `restore`: one engine that edits esx.conf in the configuration
//! of one or more banks (or in a state archive or config bundle) and writes the result back the
//! safe way.
//!
//! Edits flow back up the stack the data came down: esx.conf -> local.tgz (one member replaced,
//! the others byte-identical) -> state.tgz (likewise) -> [config bundle] -> the bank's FAT through
//! `transaction::replace`, or a file replaced by rename; [`apply`] hands the plan's files to the
//! one commit (`commit::commit_on`), which writes nothing before a backup of every file about to
//! change exists outside the target.

use crate::esxi::bank::{self as bootbank, Bank, BankError};
use crate::esxi::config::{Config, ConfigError, ESX_CONF};
use crate::esxi::configstore::{self, ColumnChange, ConfigStore, ConfigStoreError, Ownership};
use crate::esxi::devices::HostDevice;
use crate::esxi::esxconf::{self, Change, Edit, EsxConf, EsxConfError};
use crate::esxi::nextboot::{self, Candidate};
use crate::esxi::pci::{PciAddress, Reading};
use crate::esxi::target::{Target, TargetError};
use crate::format::archive::{self, ArchiveError, Tgz};
use crate::format::envelope::Encryption;
use crate::io::disk::{Disk, DiskError};
use crate::ops::inspect::{self, InspectError, TargetKind};
use crate::write::backup::{BackupError, Standing};
use crate::write::commit::{self, CommitError, VerifyError};
use crate::write::transaction::{self, Names, TxError};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;

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

/// Errors of the fix engine; each says whether anything was written. A wrapper that adds its
/// own words carries the cause in its message, not also as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum FixError {
    /// The target could not be read as `inspect` reads it; nothing written.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The target could not be opened as a disk, bootbank partition, state.tgz or config
    /// bundle (missing, empty, unrecognised); nothing written.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The backup could not be written or read back (restore); nothing written to the target.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The commit refused or failed; `CommitError::during_write` says whether after the first
    /// byte written.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The disk or partition could not be read while planning (I/O error, truncated image);
    /// nothing written.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A bank's FAT or a file in it could not be read while planning; nothing written.
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The configuration (state.tgz, its encrypted local.tgz.ve, local.tgz, esx.conf) could not
    /// be decoded for editing, or sealed again after it; nothing written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An archive level (config bundle, state.tgz, local.tgz) is corrupt, lacks a member the
    /// edit needs, or could not be rebuilt with the new member; nothing written.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// esx.conf refused the edits (not text, a bad key or value, `set` of a missing key without
    /// `--create`); nothing written.
    #[error("{where_}: {cause}")]
    EsxConf {
        /// The esx.conf concerned: `partition 5 /state.tgz > local.tgz > etc/vmware/esx.conf`.
        where_: String,
        /// What esx.conf's editor refused.
        cause: EsxConfError,
    },
    /// `--device TEXT` is not an address in any form bootbank reads.
    #[error("--device {typed}: {cause}")]
    BadAddress {
        /// The `--device` argument as the user typed it.
        typed: String,
        /// Why no address form reads it.
        cause: crate::esxi::pci::AddressError,
    },
    /// `--device TEXT` read as `address`, which neither esx.conf nor the ConfigStore of
    /// `location` knows; `passthru` lists the devices set to passthrough there, every form.
    #[error(
        "--device {typed}: read as {} {address} (esx.conf form {}, ConfigStore form p{address}), but {location} has no such device in esx.conf or the ConfigStore; devices set to passthrough: {}",
        match .reading {
            Reading::Esx => "ESXi decimal address, lspci",
            Reading::Pci => "lspci address",
            Reading::Bus => "ConfigStore bus address, lspci",
        },
        .address.to_esx_string(),
        if .passthru.is_empty() { "none".to_string() } else { .passthru.join(", ") }
    )]
    NoSuchDevice {
        /// The `--device` argument as the user typed it.
        typed: String,
        /// Which address form it was read in (decimal esx.conf, lspci hex, ConfigStore bus).
        reading: Reading,
        /// The address it was read as.
        address: PciAddress,
        /// The configuration searched: `partition 5 /state.tgz`, `state.tgz`, ...
        location: String,
        /// The devices set to passthrough in either store, each in every address form and
        /// with its vmkname: what the user may have meant.
        passthru: Vec<String>,
    },
    /// The ConfigStore holds a change the fix needs, and it cannot be made. Nothing is written.
    #[error(
        "{location} > local.tgz > {}: {cause}; nothing was written",
        configstore::MEMBER
    )]
    Store {
        /// The configuration whose ConfigStore it is: `partition 5 /state.tgz`, ...
        location: String,
        /// Why the store could not be read or the record changed (schema that differs, record
        /// that breaks its schema, triggers bootbank does not know, ...).
        cause: ConfigStoreError,
    },
    /// A directory (a mounted or copied bank) is not a target that can be changed in place.
    #[error(
        "{}: a directory (a mounted or copied bank) cannot be {} in place; give the disk, the partition or the {}",
        .path.display(),
        if *.restore { "restored" } else { "fixed" },
        if *.restore { "archive" } else { "state.tgz" }
    )]
    DirectoryTarget {
        /// The directory given as the target.
        path: PathBuf,
        /// The command was `restore` (the message then suggests the archive, not state.tgz).
        restore: bool,
    },
    /// No bank boots next, so the one to change must be named; `unknown` says why the next boot
    /// cannot be predicted, when that is the reason.
    #[error(
        "{}: name the bank to change with --bank N",
        .unknown.as_deref().unwrap_or("no bank is valid (this host will not boot)")
    )]
    NoNextBank {
        /// Why the next boot cannot be predicted (from the banks' boot.cfg); `None` when no
        /// bank is valid at all.
        unknown: Option<String>,
    },
    /// `--bank N` names a partition that is not a bootbank.
    #[error(
        "--bank {partition}: partition {partition} is not a bootbank (banks: {})",
        .banks.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    NotABank {
        /// The partition number given with `--bank`.
        partition: u32,
        /// The partition numbers of the disk's bootbanks, for the message.
        banks: Vec<u32>,
    },
    /// `--both-banks` with no valid bank.
    #[error("no bank is valid: name the banks to change with --bank N")]
    NoValidBank,
    /// The bank to fix holds no configuration archive.
    #[error("{location} holds no state.tgz: nothing to fix there")]
    NoStateArchive {
        /// The bank: `partition 5`, or `this partition` for a lone partition target.
        location: String,
    },
    /// `restore`: the backup holds a file of a bank on a partition where the target has no
    /// bootbank; nothing written.
    #[error("the target has no bootbank on partition {partition}")]
    NoBankForBackup {
        /// The partition number the backup's manifest gives for the file (0: a lone partition).
        partition: u32,
    },
    /// `restore` of a boot.cfg backup (from `bank`) asked of the configuration engine:
    /// [`crate::ops::restore::plan`] plans both kinds.
    #[error("{}: a backup of boot.cfg files (from `bootbank bank`), not of a configuration", .dir.display())]
    BootCfgBackup {
        /// The backup directory given to restore from.
        dir: PathBuf,
    },
    /// The configuration is sealed by the host's TPM: no offline tool can change it. What still
    /// works is done on the host, for `devices` (empty: the user named none).
    #[error(
        "{location}: the configuration is sealed by the host's TPM (mode {mode}): no offline tool can change it, nothing was written"
    )]
    TpmSealed {
        /// The configuration that is sealed: `partition 5 /state.tgz`, ...
        location: String,
        /// The encryption mode encryption.info gives (`?` when it gives none).
        mode: String,
        /// The devices named with `--device`, read as far as can be without esx.conf, for the
        /// esxcli commands the CLI suggests running on the host.
        devices: Vec<SealedDevice>,
    },
    /// The bank's FAT is damaged in a way an interrupted write does not leave. Nothing written.
    #[error(
        "{location}: the FAT is damaged ({}); bootbank will not write to it, nothing was written: back the partition up and repair it with `fsck.fat`",
        .problems.join("; ")
    )]
    FatDamaged {
        /// The configuration in that bank: `partition 5 /state.tgz`, ...
        location: String,
        /// What is wrong with the FAT, one item per problem, in words.
        problems: Vec<String>,
    },
    /// The bank's FAT could not be checked before the plan. Nothing written.
    #[error("{location}: the FAT's allocation cannot be checked ({cause}), nothing was written")]
    FatUnread {
        /// The configuration in that bank: `partition 5 /state.tgz`, ...
        location: String,
        /// Why the FAT could not be read.
        cause: TxError,
    },
    /// `passwd` on a configuration sealed by the host's TPM; the CLI adds the on-host way.
    #[error(
        "{location}: the configuration is sealed by the host's TPM (mode {mode}): no offline tool can change {user}'s password, nothing was written"
    )]
    TpmSealedAccount {
        /// The configuration that is sealed: `partition 5 /state.tgz`, ...
        location: String,
        /// The encryption mode encryption.info gives (`?` when it gives none).
        mode: String,
        /// The account whose password was to change (`root`).
        user: String,
    },
    /// local.tgz (inside the envelope, when encrypted) cannot be read for an edit.
    #[error("{location}: local.tgz cannot be read")]
    NoLocalTgz {
        /// The configuration whose local.tgz it is: `partition 5 /state.tgz`, ...
        location: String,
    },
    /// `etc/shadow` is missing: where the host keeps its passwords is not known.
    #[error(
        "{location} > local.tgz has no {file} (members: {members}): where this host keeps its passwords is not known; nothing was written"
    )]
    NoShadow {
        /// The configuration searched: `partition 5 /state.tgz`, ...
        location: String,
        /// The member looked for, `etc/shadow`.
        file: String,
        /// local.tgz's members, comma-separated (`none` when empty), so the user sees what is.
        members: String,
    },
    /// The password, or the user's `etc/shadow` line, is one bootbank will not write.
    #[error("{}{reason}; nothing was written", .location.as_ref().map(|l| format!("{l} > local.tgz > ")).unwrap_or_default())]
    Shadow {
        /// The configuration whose etc/shadow was refused; `None` when the password itself was
        /// refused, before any configuration was read.
        location: Option<String>,
        /// What is wrong with the password or the shadow line.
        reason: crate::esxi::shadow::ShadowError,
    },
    /// Several ConfigStore user_accounts records carry the user's name.
    #[error(
        "{location} > local.tgz > {member}: {count} esx/authentication/user_accounts records are named {user}: which one ESXi reads is not known; nothing was written"
    )]
    AmbiguousAccount {
        /// The configuration concerned: `partition 5 /state.tgz`, ...
        location: String,
        /// The ConfigStore database's member in local.tgz.
        member: String,
        /// The account name the records share.
        user: String,
        /// How many records carry it (2 or more).
        count: usize,
    },
    /// `lockdown --disable` refused (where the mode lives is not known, or sealed by a TPM).
    #[error(transparent)]
    Lockdown(#[from] crate::ops::lockdown::LockdownRefusal),
}

impl FixError {
    /// Whether the error happened while writing (exit 1) rather than before (exit 2).
    pub fn during_write(&self) -> bool {
        matches!(self, FixError::Commit(e) if e.during_write())
    }
}

/// A device the user named for a configuration sealed by the host's TPM, read as well as can be
/// without its esx.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedDevice {
    /// One reading: the address esxcli wants (hex).
    Known(PciAddress),
    /// An unprefixed text whose decimal (esx.conf) and hex (lspci) readings name different
    /// devices.
    Ambiguous {
        /// The address as the user typed it.
        typed: String,
        /// The device it names read as esx.conf's decimal form.
        esx: PciAddress,
        /// The device it names read as lspci's hex form.
        pci: PciAddress,
    },
    /// Not an address bootbank can read; passed on as typed.
    Unread(String),
}

impl SealedDevice {
    fn read(typed: &str) -> SealedDevice {
        let t = typed.trim();
        let prefixed = t
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("esx:") || p.eq_ignore_ascii_case("pci:"));
        match (
            prefixed,
            PciAddress::parse_esx(t).ok(),
            PciAddress::parse_pci(t).ok(),
        ) {
            (false, Some(esx), _) if crate::esxi::pci::esx_only_shape(t) => {
                SealedDevice::Known(esx)
            }
            (false, Some(esx), Some(pci)) if esx != pci => SealedDevice::Ambiguous {
                typed: typed.to_string(),
                esx,
                pci,
            },
            // Only the decimal reading is an address (slot 31 is no hex slot): it is meant.
            (false, Some(esx), None) => SealedDevice::Known(esx),
            _ => match PciAddress::parse_user(typed, |_| false) {
                Ok((a, _)) => SealedDevice::Known(a),
                Err(_) => SealedDevice::Unread(typed.to_string()),
            },
        }
    }
}

/// One configuration to change.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `partition 5 /state.tgz`, `state.tgz`, `bundle > state.tgz`...
    pub location: String,
    /// The bank's partition number on the disk; `None` for a lone partition or an archive.
    pub partition: Option<u32>,
    /// The bank's UUID (`/vmfs/volumes/<uuid>` form), recorded in the backup so that a restore
    /// finds the same bank again; `None` for an archive target.
    pub bank_uuid: Option<String>,
    /// Name of the file that is replaced (in the bank, or the target file itself).
    pub file: String,
    /// The esx.conf keys that change, with their line and old and new values; empty when only
    /// the ConfigStore or another member of local.tgz changes.
    pub changes: Vec<Change>,
    /// Unified diff of esx.conf.
    pub diff: String,
    /// Notes for the user (device already vmkernel, leftover to recover first...).
    pub notes: Vec<String>,
    /// Changes to the ConfigStore database in the same local.tgz.
    pub store_changes: Vec<StoreChange>,
    /// What an interrupted write left in the bank's FAT, reclaimed before anything else (also
    /// when the configuration needs no change: a rerun after an interruption leaves it clean).
    pub fat_leftover: Option<String>,
    /// Other members of local.tgz replaced by another command through this engine (`passwd`):
    /// what changed in words, and the new bytes the read-back check requires.
    pub member_changes: Vec<MemberChange>,
    /// The file as it is now (state.tgz, or the whole archive target): what the backup keeps.
    #[serde(skip)]
    pub old_bytes: Vec<u8>,
    /// The file's new content, written in its place; equal to `old_bytes` when nothing changes.
    #[serde(skip)]
    pub new_bytes: Vec<u8>,
    /// The esx.conf the written file must decode to in the read-back check (the current one
    /// when esx.conf does not change).
    #[serde(skip)]
    pub new_esx_conf: Vec<u8>,
    /// The new ConfigStore database, when it changes, for the read-back check.
    #[serde(skip)]
    new_store: Option<Vec<u8>>,
    #[serde(skip)]
    leftover: Option<transaction::Leftover>,
    #[serde(skip)]
    names: Option<Names>,
}

/// One member of local.tgz that a step replaces besides esx.conf (see [`member_step`]).
#[derive(Debug, Clone, Serialize)]
pub struct MemberChange {
    /// The member's path in local.tgz (`etc/shadow`).
    pub member: String,
    /// What changes, in words for the plan (never a secret: `root's password hash: changed`).
    pub what: Vec<String>,
    /// The member's new content.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// What a command gives [`plan_with`]'s step builder for one configuration.
pub struct StepInput<'a> {
    /// The state.tgz (or bare local.tgz) as it is now.
    pub state: &'a [u8],
    /// `partition 5 /state.tgz`, `state.tgz`, `bundle > state.tgz`.
    pub location: &'a str,
    /// The build the configuration runs, and where that was read (`boot.cfg`, `Manifest.txt`).
    pub build: Option<(String, &'static str)>,
    /// Puts a new state.tgz where it belongs (into the config bundle; as is otherwise).
    pub wrap: &'a dyn Fn(Vec<u8>) -> Result<Vec<u8>, FixError>,
}

/// Builds the step of one configuration (see [`plan_with`]).
pub type StepBuilder<'b> = dyn FnMut(&StepInput<'_>, &mut Plan) -> Result<Step, FixError> + 'b;

/// One ConfigStore record changed by `fix` (see `ConfigStore::set_owner`): the row before and
/// after, for the plan.
#[derive(Debug, Clone, Serialize)]
pub struct StoreChange {
    /// The database's member in local.tgz.
    pub member: String,
    /// `esx/hardware/pci_devices`.
    pub key: String,
    /// The record's Identifier (the device's `sbdf` instance id), as stored.
    pub identifier: String,
    /// The record's rowid in the database, by which the edit addresses it.
    pub rowid: i64,
    /// The device in lspci's hex form, `0000:16:00.0`.
    pub pci_address: String,
    /// The device in esx.conf's decimal form, `000:022:00.0`.
    pub esx_address: String,
    /// The device in the ConfigStore's bus-address form, `p0000:16:00.0`.
    pub bus_address: String,
    /// The owner before, as the store writes it (`OWNER_PASSTHRU`).
    pub old_owner: String,
    /// The owner after, as the store writes it (`OWNER_VMKERNEL`); the read-back check
    /// requires the record to read back with it.
    pub new_owner: String,
    /// Each value column that holds `owner`: its JSON text before and after.
    pub columns: Vec<ColumnChange>,
    /// The record's ModifiedTime before the edit (`None`: NULL).
    pub modified_time_before: Option<String>,
    /// The record's ModifiedTime after, set by the store's own triggers as when ESXi edits it.
    pub modified_time_after: Option<String>,
    /// The record's Revision before the edit (`None`: NULL).
    pub revision_before: Option<i64>,
    /// The record's Revision after, set by the store's own triggers.
    pub revision_after: Option<i64>,
}

/// The whole plan, shown before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The target as given, displayed.
    pub target: String,
    /// What the target turned out to be: disk, lone partition, state.tgz, config bundle...
    pub kind: TargetKind,
    /// One step per configuration to change (per chosen bank, or the archive's one), in the
    /// order they are written.
    pub steps: Vec<Step>,
    /// Devices the user named, as understood: both address forms.
    pub devices: Vec<DeviceChoice>,
    #[serde(skip)]
    target_path: PathBuf,
    /// Where an archive target's new bytes go instead of in place (`--output`); a disk's banks
    /// are always written in place.
    #[serde(skip)]
    output: Option<PathBuf>,
}

/// A device the user named, and how its address was read.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceChoice {
    /// The `--device` argument as the user typed it.
    pub typed: String,
    /// Which address form it was read in, so the plan can say which device was meant.
    pub read_as: Reading,
    /// The device in lspci's hex form, `0000:16:00.0`.
    pub pci_address: String,
    /// esx.conf's decimal form (as written there when esx.conf has the device).
    pub esx_address: Option<String>,
    /// The ConfigStore's bus-address form, `p0000:16:00.0`.
    pub bus_address: String,
    /// The device's vmkernel name (`vmhba0`, `vmnic1`), when the configuration gives one.
    pub vmkname: Option<String>,
    /// The owner ESXi will apply (`passthru`, `vmkernel`); `None` when no store gives one or
    /// the configuration has no such device.
    pub owner: Option<String>,
    /// Which store that owner was read from: esx.conf or the ConfigStore.
    pub owner_source: Option<crate::esxi::devices::Store>,
}

impl Step {
    /// Whether this step changes the configuration (esx.conf or the ConfigStore).
    pub fn changes_anything(&self) -> bool {
        !self.changes.is_empty()
            || !self.store_changes.is_empty()
            || !self.member_changes.is_empty()
    }

    /// The new ConfigStore and what changed in it, for the read-back check.
    fn store_check(&self) -> Option<(&[u8], &[StoreChange])> {
        self.new_store
            .as_deref()
            .map(|db| (db, self.store_changes.as_slice()))
    }
}

impl Plan {
    /// A plan with no step yet, for a disk until the target says otherwise.
    fn empty(target: &Path) -> Plan {
        Plan {
            target: target.display().to_string(),
            kind: TargetKind::Disk,
            steps: Vec::new(),
            devices: Vec::new(),
            target_path: target.to_path_buf(),
            output: None,
        }
    }

    /// The same plan writing an archive target's new bytes to `output` instead of in place
    /// (`None`: in place); set by [`plan`] from [`Options::output`], and by `restore`'s caller.
    pub fn with_output(self, output: Option<PathBuf>) -> Plan {
        Plan { output, ..self }
    }

    /// Whether anything would be written.
    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.changes_anything() || s.leftover.is_some() || s.fat_leftover.is_some())
    }
    /// Where an archive target's new bytes go (`None`: in place, and always for a disk).
    pub fn output(&self) -> Option<&Path> {
        self.output.as_deref()
    }
}

/// Where the output goes for archive targets.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which banks of a disk target to change; an archive target has only its own one.
    pub banks: Banks,
    /// For a state.tgz or bundle target: write here instead of in place.
    pub output: Option<PathBuf>,
}

/// Builds the plan: reads the target read-only and computes every new byte.
pub fn plan(target: &Path, what: &Request, opts: &Options) -> Result<Plan, FixError> {
    let mut resolved = None;
    let needs_state = matches!(what, Request::Devices(_) | Request::AllStorage);
    plan_with(target, opts, needs_state, &mut |i, plan| {
        build_step(
            i.state,
            i.location,
            i.build.clone(),
            what,
            &mut resolved,
            plan,
            i.wrap,
        )
    })
}

/// [`plan`] with the step of each configuration made by `build`: the banks are chosen as `fix`
/// chooses them (`opts`), each bank's state.tgz (or the archive target) is handed to `build`,
/// and the steps it returns go through the same backup, write and read-back as `fix`'s.
/// `needs_state`: a chosen bank without a state.tgz is an error (else it is skipped).
pub fn plan_with(
    target: &Path,
    opts: &Options,
    needs_state: bool,
    build: &mut StepBuilder<'_>,
) -> Result<Plan, FixError> {
    let mut plan = Plan::empty(target).with_output(opts.output.clone());
    match Target::open(target)? {
        Target::Directory(_) => {
            return Err(FixError::DirectoryTarget {
                path: target.to_path_buf(),
                restore: false,
            });
        }
        Target::Archive { bytes, .. } => plan_archive(&bytes, &mut plan, build)?,
        Target::Disk {
            mut disk, found, ..
        } => plan_disk(&mut disk, &found.banks, needs_state, opts, &mut plan, build)?,
    }
    Ok(plan)
}

fn plan_disk(
    disk: &mut Disk,
    banks: &[Bank],
    needs_state: bool,
    opts: &Options,
    plan: &mut Plan,
    build_step: &mut StepBuilder<'_>,
) -> Result<(), FixError> {
    let lone = banks.len() == 1 && banks[0].partition == 0;
    plan.kind = if lone {
        TargetKind::Partition
    } else {
        TargetKind::Disk
    };
    let candidates: Vec<Candidate<'_>> = banks
        .iter()
        .map(|b| Candidate {
            partition: b.partition,
            boot_cfg: b.boot_cfg.as_ref().map_err(|e| e.clone()),
        })
        .collect();
    let prediction = nextboot::predict(&candidates);
    let next = if lone {
        Some(0)
    } else {
        prediction.next_boot_partition
    };
    let mut chosen: Vec<u32> = Vec::new();
    match (&opts.banks, next) {
        (Banks::Next, Some(p)) => chosen.push(p),
        (Banks::Next, None) => {
            return Err(FixError::NoNextBank {
                unknown: prediction.unknown.clone(),
            });
        }
        (Banks::Also(list), next) => {
            chosen.extend(next);
            for p in list {
                if !banks.iter().any(|b| b.partition == *p) {
                    return Err(FixError::NotABank {
                        partition: *p,
                        banks: banks.iter().map(|b| b.partition).collect(),
                    });
                }
                if !chosen.contains(p) {
                    chosen.push(*p);
                }
            }
        }
        (Banks::Both, next) => {
            chosen.extend(next);
            for v in prediction.banks.iter().filter(|v| v.valid) {
                if !chosen.contains(&v.partition) {
                    chosen.push(v.partition);
                }
            }
            if chosen.is_empty() {
                return Err(FixError::NoValidBank);
            }
        }
    }
    for p in chosen {
        let bank = banks
            .iter()
            .find(|b| b.partition == p)
            .expect("chosen among banks");
        let where_ = if lone {
            "this partition".to_string()
        } else {
            format!("partition {p}")
        };
        let Some(cf) = bank.config_file() else {
            if needs_state && plan.steps.is_empty() {
                return Err(FixError::NoStateArchive { location: where_ });
            }
            continue;
        };
        let file = cf.effective.name.to_ascii_lowercase();
        let old_bytes = bootbank::read_file(disk, bank, &cf.effective.name)?.unwrap_or_default();
        let location = format!("{where_} /{file}");
        let build = bank
            .boot_cfg
            .as_ref()
            .ok()
            .map(|c| (c.build().to_string(), "boot.cfg"));
        let input = StepInput {
            state: &old_bytes,
            location: &location,
            build,
            wrap: &Ok,
        };
        let mut step = build_step(&input, plan)?;
        step.partition = (!lone).then_some(p);
        step.bank_uuid = Some(bank.uuid.clone());
        step.file = cf.names.current.clone();
        if let Some(l) = &cf.leftover {
            step.notes.insert(
                0,
                format!("{}; it is completed or undone first", l.describe(&cf.names)),
            );
        }
        step.fat_leftover = fat_leftover(disk, bank, &location)?;
        if let Some(what) = &step.fat_leftover {
            step.notes.push(format!(
                "the FAT holds what an interrupted write leaves ({what}): reclaimed first"
            ));
        }
        step.leftover = cf.leftover.clone();
        step.names = Some(cf.names.clone());
        plan.steps.push(step);
    }
    Ok(())
}

/// What an interrupted write left in the bank's FAT, in words (`None` when clean): the write
/// reclaims it first. A FAT damaged in any other way refuses the plan, nothing written.
fn fat_leftover(disk: &mut Disk, bank: &Bank, location: &str) -> Result<Option<String>, FixError> {
    let health = transaction::fat_health(disk, bank).map_err(|cause| FixError::FatUnread {
        location: location.to_string(),
        cause,
    })?;
    if !health.is_repairable() {
        return Err(FixError::FatDamaged {
            location: location.to_string(),
            problems: health.damage,
        });
    }
    Ok((!health.is_clean()).then(|| health.describe()))
}

fn plan_archive(
    bytes: &[u8],
    plan: &mut Plan,
    build_step: &mut StepBuilder<'_>,
) -> Result<(), FixError> {
    let file = plan
        .target_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outer = Tgz::parse_for_edit(bytes, &format!("archive {file}"))?;
    if outer.member("state.tgz").is_some() {
        plan.kind = TargetKind::ConfigBundle;
        let inner = outer.require("state.tgz")?.to_vec();
        let build = outer.member("Manifest.txt").and_then(|m| {
            String::from_utf8_lossy(outer.data(m))
                .lines()
                .find_map(|l| {
                    l.strip_prefix("RELEASELEVEL=")
                        .map(|v| v.trim().to_string())
                })
                .map(|b| (b, "Manifest.txt"))
        });
        let wrap = |state: Vec<u8>| -> Result<Vec<u8>, FixError> {
            let (tar, hunks) = outer.replace_member_hunks("state.tgz", &state)?;
            Ok(archive::reseal(bytes, &outer, &tar, Some(&hunks)))
        };
        let input = StepInput {
            state: &inner,
            location: "bundle > state.tgz",
            build,
            wrap: &wrap,
        };
        let mut step = build_step(&input, plan)?;
        step.old_bytes = bytes.to_vec();
        step.file = file;
        plan.steps.push(step);
        return Ok(());
    }
    plan.kind = if outer.member(ESX_CONF).is_some() {
        TargetKind::LocalArchive
    } else {
        TargetKind::StateArchive
    };
    let input = StepInput {
        state: bytes,
        location: &file,
        build: None,
        wrap: &Ok,
    };
    let mut step = build_step(&input, plan)?;
    step.file = file;
    plan.steps.push(step);
    Ok(())
}

/// Computes one step: the new esx.conf, local.tgz and state.tgz (and whatever `wrap` puts
/// around the state archive).
fn build_step(
    state_bytes: &[u8],
    location: &str,
    build: Option<(String, &'static str)>,
    what: &Request,
    resolved: &mut Option<Vec<PciAddress>>,
    plan: &mut Plan,
    wrap: impl Fn(Vec<u8>) -> Result<Vec<u8>, FixError>,
) -> Result<Step, FixError> {
    let cfg = Config::from_state_for_edit(state_bytes, location)?;
    match cfg.encryption {
        Encryption::None | Encryption::Kdf => {}
        Encryption::Tpm => {
            // esx.conf cannot be read, so a typed address is taken as lspci hex (as esxcli wants
            // it) unless it says `esx:`. Without esx.conf an unprefixed address cannot be checked
            // against its keys: when the decimal (esx.conf) and hex (lspci) readings name
            // different devices, both are returned, and the CLI prints a command for each.
            let devices = match what {
                Request::Devices(typed) => typed.iter().map(|t| SealedDevice::read(t)).collect(),
                _ => Vec::new(),
            };
            return Err(FixError::TpmSealed {
                location: location.to_string(),
                mode: cfg.encryption_mode.clone().unwrap_or_else(|| "?".into()),
                devices,
            });
        }
    }
    let conf = cfg.esx_conf.as_ref().expect("plain configs have esx.conf");
    let local = cfg.local.as_ref().expect("plain configs have local.tgz");
    let old_conf = local.require(ESX_CONF)?;
    let mut notes = Vec::new();
    let mut store_changes = Vec::new();
    let mut new_store = None;
    let edits = match what {
        Request::Edits(e) => e.clone(),
        Request::AllStorage | Request::Devices(_) => {
            let store = match ConfigStore::from_local(local) {
                Ok(s) => s,
                Err(source) => {
                    // Unreadable: on a build that reads esx.conf it does not matter; anywhere
                    // else it may hold the very setting to fix, so nothing is written.
                    let (obeyed, _) = inspect::devices_of(Some(conf), None, build.clone());
                    if obeyed.store != Some(crate::esxi::devices::Store::EsxConf) {
                        return Err(FixError::Store {
                            location: location.to_string(),
                            cause: source,
                        });
                    }
                    notes.push(format!(
                        "the ConfigStore (local.tgz > {}) cannot be read ({source}); {}, so it is left unchanged",
                        configstore::MEMBER,
                        obeyed.why
                    ));
                    None
                }
            };
            let (_, devices) = inspect::devices_of(Some(conf), store.as_ref(), build);
            let wanted =
                resolve_devices(conf, &devices, what, resolved, plan, &mut notes, location)?;
            let (edits, store_given_back) = device_edits(&devices, &wanted, &mut notes);
            if let Some(store) = &store {
                new_store = store_edits(store, &devices, &store_given_back, &mut store_changes)
                    .map_err(|cause| FixError::Store {
                        location: location.to_string(),
                        cause,
                    })?;
            }
            edits
        }
    };
    let (new_conf, changes) =
        esxconf::apply(old_conf, &edits).map_err(|source| FixError::EsxConf {
            where_: format!("{location} > local.tgz > {ESX_CONF}"),
            cause: source,
        })?;
    let diff = unified_diff(old_conf, &new_conf, location);
    let new_bytes = if changes.is_empty() && new_store.is_none() {
        state_bytes.to_vec()
    } else {
        let (mut tar, mut hunks) = match (&new_store, changes.is_empty()) {
            (Some(db), true) => local.replace_member_hunks(configstore::MEMBER, db)?,
            _ => local.replace_member_hunks(ESX_CONF, &new_conf)?,
        };
        if let (Some(db), false) = (&new_store, changes.is_empty()) {
            tar = local
                .with_tar(tar)?
                .replace_member(configstore::MEMBER, db)?;
            // Changes in two places of a rewritten tar: compress it whole (rare).
            hunks.clear();
        }
        let hunks = (!hunks.is_empty()).then_some(hunks.as_slice());
        let new_state = rewrap_local(&cfg, local, state_bytes, &tar, hunks, &mut notes)?;
        wrap(new_state)?
    };
    Ok(Step {
        location: location.to_string(),
        partition: None,
        bank_uuid: None,
        file: String::new(),
        changes,
        diff,
        notes,
        store_changes,
        member_changes: Vec::new(),
        old_bytes: state_bytes.to_vec(),
        new_bytes,
        new_esx_conf: new_conf,
        new_store,
        leftover: None,
        fat_leftover: None,
        names: None,
    })
}

/// A step that replaces members of local.tgz other than esx.conf (for `passwd`): `members`
/// are (path in local.tgz, new bytes, what changes in words), applied to the configuration
/// `cfg` decoded from `input.state` with `Config::from_state_for_edit`. Every other member
/// of local.tgz and of state.tgz keeps its bytes and headers; an encrypted (mode NONE)
/// configuration is sealed again with the same key and a fresh IV, as `fix` does. The
/// read-back check requires each member to decode to exactly these bytes and esx.conf to be
/// unchanged.
pub fn member_step(
    input: &StepInput<'_>,
    cfg: &Config,
    members: Vec<(String, Vec<u8>, Vec<String>)>,
    mut notes: Vec<String>,
) -> Result<Step, FixError> {
    let location = input.location;
    if cfg.encryption == Encryption::Tpm {
        return Err(FixError::TpmSealed {
            location: location.to_string(),
            mode: cfg.encryption_mode.clone().unwrap_or_else(|| "?".into()),
            devices: Vec::new(),
        });
    }
    let local = cfg.local.as_ref().ok_or_else(|| FixError::NoLocalTgz {
        location: location.to_string(),
    })?;
    let old_conf = local.require(ESX_CONF)?.to_vec();
    let new_bytes = if members.is_empty() {
        input.state.to_vec()
    } else {
        let (mut tar, mut hunks) = local.replace_member_hunks(&members[0].0, &members[0].1)?;
        for (name, bytes, _) in &members[1..] {
            tar = local.with_tar(tar)?.replace_member(name, bytes)?;
            // Changes in two places of a rewritten tar: compress it whole.
            hunks.clear();
        }
        let hunks = (!hunks.is_empty()).then_some(hunks.as_slice());
        let new_state = rewrap_local(cfg, local, input.state, &tar, hunks, &mut notes)?;
        (input.wrap)(new_state)?
    };
    Ok(Step {
        location: location.to_string(),
        partition: None,
        bank_uuid: None,
        file: String::new(),
        changes: Vec::new(),
        diff: String::new(),
        notes,
        store_changes: Vec::new(),
        member_changes: members
            .into_iter()
            .map(|(member, bytes, what)| MemberChange {
                member,
                what,
                bytes,
            })
            .collect(),
        old_bytes: input.state.to_vec(),
        new_bytes,
        new_esx_conf: old_conf,
        new_store: None,
        leftover: None,
        fat_leftover: None,
        names: None,
    })
}

/// The ConfigStore side of giving devices back to the vmkernel: every pci_devices record of
/// `given_back` whose owner is OWNER_PASSTHRU is set to OWNER_VMKERNEL, one after the other in
/// the same copy of the database. Any record that cannot be changed (schema that differs,
/// record that breaks its schema, unknown triggers...) fails the whole fix before anything is
/// written. Returns the new database when anything changed.
fn store_edits(
    store: &ConfigStore,
    devices: &[HostDevice],
    given_back: &[PciAddress],
    out: &mut Vec<StoreChange>,
) -> Result<Option<Vec<u8>>, ConfigStoreError> {
    let mut current = store.clone();
    let mut bytes = None;
    for addr in given_back {
        let Some(rec) = current.pci_device(*addr).cloned() else {
            continue;
        };
        let rowid = rec.record.rowid.ok_or_else(|| {
            configstore::EditRefusal::ReadBack(format!(
                "record {} has no rowid to address it by",
                rec.identifier
            ))
        })?;
        let e = current.set_owner(rowid, Ownership::Vmkernel)?;
        let d = devices.iter().find(|d| d.address == *addr);
        out.push(StoreChange {
            member: configstore::MEMBER.to_string(),
            key: configstore::schema::PCI_DEVICES.to_string(),
            identifier: e.identifier.clone(),
            rowid,
            pci_address: addr.to_pci_string(),
            esx_address: d
                .map(|d| d.esx_address.clone())
                .unwrap_or_else(|| addr.to_esx_string()),
            bus_address: format!("p{}", addr.to_pci_string()),
            old_owner: rec.owner_raw.clone().unwrap_or_default(),
            new_owner: Ownership::Vmkernel.store_value().to_string(),
            columns: e.columns.clone(),
            modified_time_before: e.modified_time.0.clone(),
            modified_time_after: e.modified_time.1.clone(),
            revision_before: e.revision.0,
            revision_after: e.revision.1,
        });
        bytes = Some(e.bytes);
        current = *e.after;
    }
    Ok(bytes)
}

/// The devices the user named (or every storage adapter in passthrough), resolved once against
/// the configuration of the first bank chosen and then matched by value in every bank.
fn resolve_devices(
    conf: &EsxConf,
    devices: &[HostDevice],
    what: &Request,
    resolved: &mut Option<Vec<PciAddress>>,
    plan: &mut Plan,
    notes: &mut Vec<String>,
    location: &str,
) -> Result<Vec<PciAddress>, FixError> {
    if let Some(r) = resolved.as_ref() {
        return Ok(r.clone());
    }
    let v: Vec<PciAddress> = match what {
        Request::AllStorage => {
            let v: Vec<PciAddress> = devices
                .iter()
                .filter(|d| d.is_storage() && d.any_store_passthru())
                .map(|d| d.address)
                .collect();
            if v.is_empty() {
                notes.push("no storage adapter is set to passthrough".to_string());
            }
            v
        }
        Request::Devices(typed) => {
            let mut v = Vec::new();
            for t in typed {
                let (addr, reading) = PciAddress::parse_user(t, |s| conf.has_device_text(s))
                    .map_err(|cause| FixError::BadAddress {
                        typed: t.clone(),
                        cause,
                    })?;
                let d = devices.iter().find(|d| d.address == addr);
                plan.devices.push(DeviceChoice {
                    typed: t.clone(),
                    read_as: reading,
                    pci_address: addr.to_pci_string(),
                    esx_address: Some(
                        d.map(|d| d.esx_address.clone())
                            .unwrap_or_else(|| addr.to_esx_string()),
                    ),
                    bus_address: format!("p{}", addr.to_pci_string()),
                    vmkname: d.and_then(|d| d.vmkname.clone()),
                    owner: d.and_then(|d| d.owner.map(|o| o.to_string())),
                    owner_source: d.and_then(|d| d.owner_source),
                });
                if d.is_none() {
                    return Err(FixError::NoSuchDevice {
                        typed: t.clone(),
                        reading,
                        address: addr,
                        location: location.to_string(),
                        passthru: passthru_list(devices),
                    });
                }
                v.push(addr);
            }
            v
        }
        Request::Edits(_) => Vec::new(),
    };
    *resolved = Some(v.clone());
    Ok(v)
}

/// The esx.conf edits that give `wanted` back to the vmkernel, and the devices whose ConfigStore
/// record must change too. Both stores are changed wherever they say passthrough, whichever one
/// the build obeys: a stale line left saying passthrough would mislead the next reader.
fn device_edits(
    devices: &[HostDevice],
    wanted: &[PciAddress],
    notes: &mut Vec<String>,
) -> (Vec<Edit>, Vec<PciAddress>) {
    let mut edits = Vec::new();
    let mut store = Vec::new();
    for addr in wanted {
        let Some(d) = devices.iter().find(|d| d.address == *addr) else {
            notes.push(format!("{addr}: not in this configuration; left alone"));
            continue;
        };
        let vmk = d.vmkname.as_deref().unwrap_or("no vmkname");
        let mut any = false;
        if d.esx_owner() == Some(Ownership::Passthru) {
            edits.push(Edit::Set {
                key: format!("/device/{}/owner", d.esx_address),
                value: "vmkernel".to_string(),
                create: false,
            });
            any = true;
        }
        if d.store_owner() == Some(Ownership::Passthru) {
            store.push(*addr);
            any = true;
        }
        if !any {
            let mut said = Vec::new();
            if let Some(o) = d.esx_conf.as_ref().and_then(|e| e.owner.as_deref()) {
                said.push(format!("esx.conf \"{o}\""));
            }
            if let Some(s) = &d.configstore {
                said.push(format!(
                    "ConfigStore {} ({})",
                    s.owner_raw.as_deref().unwrap_or("not known"),
                    s.owner_from.join(", ")
                ));
            }
            if said.is_empty() {
                notes.push(format!(
                    "{} ({vmk}) has no owner in esx.conf or the ConfigStore; bootbank never adds one",
                    d.all_forms()
                ));
            } else {
                notes.push(format!(
                    "{} ({vmk}) is not set to passthrough ({}): nothing to change",
                    d.all_forms(),
                    said.join(", ")
                ));
            }
        }
    }
    (edits, store)
}

/// The devices set to passthrough in either store, each in every address form.
fn passthru_list(devices: &[HostDevice]) -> Vec<String> {
    devices
        .iter()
        .filter(|d| d.any_store_passthru())
        .map(|d| {
            format!(
                "{} ({})",
                d.all_forms(),
                d.vmkname.as_deref().unwrap_or("no vmkname")
            )
        })
        .collect()
}

/// A unified diff of two esx.conf texts.
pub fn unified_diff(old: &[u8], new: &[u8], location: &str) -> String {
    let (a, b) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    similar::TextDiff::from_lines(a.as_ref(), b.as_ref())
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("a/{location} > {ESX_CONF}"),
            &format!("b/{location} > {ESX_CONF}"),
        )
        .to_string()
}

/// What was written: the one record every write command returns.
pub use crate::ops::plan::Outcome;

/// The backup's parts, kept here under their old names.
pub use crate::write::backup::{
    BackupFile, Manifest, ManifestEntry, default_backup_dir, sha256_hex,
};

/// The backup files of a plan: every file whose configuration changes.
fn backup_files(plan: &Plan) -> Vec<BackupFile<'_>> {
    plan.steps
        .iter()
        .filter(|s| s.changes_anything())
        .map(|s| backup_file(s))
        .collect()
}

fn backup_file(s: &Step) -> BackupFile<'_> {
    BackupFile {
        partition: s.partition,
        bank_uuid: s.bank_uuid.clone(),
        file: s.file.clone(),
        old_bytes: &s.old_bytes,
        new_bytes: &s.new_bytes,
    }
}

/// Writes the backup of a plan (copies of every file about to change and a manifest), fsynced:
/// what [`apply`] does first, for a caller that wants the backup alone.
pub fn write_backup(plan: &Plan, dir: &Path) -> Result<(), FixError> {
    Ok(crate::write::backup::write(
        &plan.target_path,
        dir,
        &backup_files(plan),
    )?)
}

/// Why bytes read back are not the configuration a step meant to write. [`apply`]'s read-back
/// check returns it inside the commit's error; the commit then leaves the previous file in place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The file read back is not byte for byte the new file the check decoded.
    #[error("the bytes read back are not the ones checked")]
    NotTheCheckedBytes,
    /// The thread decoding the new file ended without a verdict (it panicked).
    #[error("the check stopped unexpectedly")]
    Stopped,
    /// No verdict was recorded for the step.
    #[error("not checked")]
    NotChecked,
    /// The new configuration decodes without a local.tgz.
    #[error("no local.tgz")]
    NoLocal,
    /// The step changes the ConfigStore, but the new local.tgz decodes without one.
    #[error("no ConfigStore")]
    NoStore,
    /// A part of the new configuration decodes to other bytes than the step computed.
    #[error("{what} differs from the intended one")]
    Differs {
        /// The part: `esx.conf`, a member's path in local.tgz, `the ConfigStore database`.
        what: String,
    },
    /// A ConfigStore record the step changed does not read back with its new owner.
    #[error("ConfigStore record {identifier} does not read back as {owner}")]
    Record {
        /// The record's Identifier, as stored.
        identifier: String,
        /// The owner it should have, as the store writes it (`OWNER_VMKERNEL`).
        owner: String,
    },
    /// The bytes do not decode; the decoder's own error.
    #[error(transparent)]
    Decode(Arc<dyn std::error::Error + Send + Sync>),
}

impl CheckError {
    fn decode(e: impl std::error::Error + Send + Sync + 'static) -> CheckError {
        CheckError::Decode(Arc::new(e))
    }
}

/// Checks that bytes decode to a configuration whose esx.conf is `want` and, when the step
/// changes the ConfigStore, whose database is the intended one and reads back with every changed
/// record owned by the vmkernel. Hands back what it decoded.
fn check_bytes(
    bytes: &[u8],
    location: &str,
    want: &[u8],
    bundle: bool,
    store: Option<(&[u8], &[StoreChange])>,
    members: &[MemberChange],
) -> Result<inspect::Decoded, CheckError> {
    let state = if bundle {
        let outer = Tgz::parse(bytes, location).map_err(CheckError::decode)?;
        outer
            .require("state.tgz")
            .map_err(CheckError::decode)?
            .to_vec()
    } else {
        bytes.to_vec()
    };
    let cfg = Config::from_state(&state, location).map_err(CheckError::decode)?;
    let config = check_config(cfg, want, store, members)?;
    Ok(inspect::Decoded {
        bytes: state,
        config,
    })
}

/// The read-back check of one step, started on another thread before the backup is written:
/// decoding both archive levels is CPU work that overlaps the backup's and the new file's fsyncs.
/// The write path reads the new file back and requires it to be exactly the bytes checked here
/// (so what is on the storage is what decoded correctly) before [`Prechecked::verify`] waits for
/// this check and passes its verdict on.
struct Prechecked<'scope, 'a> {
    new: &'a [u8],
    job: Cell<Option<ScopedJoinHandle<'scope, Result<inspect::Decoded, CheckError>>>>,
    verdict: RefCell<Option<Result<(), CheckError>>>,
    decoded: &'a RefCell<Vec<inspect::Decoded>>,
}

impl<'scope, 'a: 'scope> Prechecked<'scope, 'a> {
    fn start(
        s: &'scope std::thread::Scope<'scope, '_>,
        step: &'a Step,
        bundle: bool,
        decoded: &'a RefCell<Vec<inspect::Decoded>>,
    ) -> Self {
        let job = s.spawn(move || {
            check_bytes(
                &step.new_bytes,
                &step.location,
                &step.new_esx_conf,
                bundle,
                step.store_check(),
                &step.member_changes,
            )
        });
        Prechecked {
            new: &step.new_bytes,
            job: Cell::new(Some(job)),
            verdict: RefCell::new(None),
            decoded,
        }
    }

    fn verify(&self, read_back: &[u8]) -> Result<(), CheckError> {
        if read_back != self.new {
            return Err(CheckError::NotTheCheckedBytes);
        }
        if let Some(job) = self.job.take() {
            let verdict = job
                .join()
                .unwrap_or(Err(CheckError::Stopped))
                .map(|d| self.decoded.borrow_mut().push(d));
            *self.verdict.borrow_mut() = Some(verdict);
        }
        self.verdict
            .borrow()
            .clone()
            .unwrap_or(Err(CheckError::NotChecked))
    }
}

/// The checks of [`check_bytes`] on a decoded configuration, which it hands back when they pass.
fn check_config(
    cfg: Config,
    want: &[u8],
    store: Option<(&[u8], &[StoreChange])>,
    members: &[MemberChange],
) -> Result<Config, CheckError> {
    {
        let local = cfg.local.as_ref().ok_or(CheckError::NoLocal)?;
        let got = local.require(ESX_CONF).map_err(CheckError::decode)?;
        if got != want {
            return Err(CheckError::Differs {
                what: "esx.conf".to_string(),
            });
        }
        for m in members {
            if local.require(&m.member).map_err(CheckError::decode)? != m.bytes.as_slice() {
                return Err(CheckError::Differs {
                    what: m.member.clone(),
                });
            }
        }
        if let Some((db, changed)) = store {
            let got = local
                .require(configstore::MEMBER)
                .map_err(CheckError::decode)?;
            if got != db {
                return Err(CheckError::Differs {
                    what: "the ConfigStore database".to_string(),
                });
            }
            let s = ConfigStore::from_local(local)
                .map_err(CheckError::decode)?
                .ok_or(CheckError::NoStore)?;
            for c in changed {
                let r = s
                    .pci_devices
                    .iter()
                    .find(|r| r.record.rowid == Some(c.rowid));
                if r.and_then(|r| r.owner_raw.as_deref()) != Some(c.new_owner.as_str()) {
                    return Err(CheckError::Record {
                        identifier: c.identifier.clone(),
                        owner: c.new_owner.clone(),
                    });
                }
            }
        }
    }
    Ok(cfg)
}

/// The new state archive around an edited local.tgz tar: local.tgz recompressed only around the
/// change (`hunks`), then put back where it came from: the state itself (a bare local.tgz),
/// sealed again in its envelope (same header, attributes and key, a fresh IV; a note says so),
/// or spliced into state.tgz as its `local.tgz` member.
fn rewrap_local(
    cfg: &Config,
    local: &Tgz,
    state_bytes: &[u8],
    tar: &[u8],
    hunks: Option<&[crate::format::deflate::Hunk]>,
    notes: &mut Vec<String>,
) -> Result<Vec<u8>, FixError> {
    let bare = std::ptr::eq(local, &cfg.state) || cfg.state.member(ESX_CONF).is_some();
    let local_gz = if bare {
        state_bytes
    } else if cfg.sealed.is_some() {
        &[][..]
    } else {
        cfg.state.require("local.tgz")?
    };
    let new_local = archive::reseal(local_gz, local, tar, hunks);
    Ok(if bare {
        new_local
    } else if let Some(sealed) = &cfg.sealed {
        let iv = crate::format::envelope::fresh_iv().map_err(ConfigError::from)?;
        let ve = sealed
            .envelope
            .seal(&new_local, &sealed.key.key, iv)
            .map_err(ConfigError::from)?;
        notes.push(format!(
            "the configuration is encrypted (mode {}): the changed local.tgz is sealed again with the same key (id {}) and a fresh IV; encryption.info is not changed. Re-encrypted configurations have not yet been booted on a real host",
            cfg.encryption_mode.as_deref().unwrap_or("?"),
            sealed.key.key_id
        ));
        archive::seal(
            &cfg.state.replace_member("local.tgz.ve", &ve)?,
            &cfg.state.gzip,
        )
    } else {
        let (tar, hunks) = cfg.state.replace_member_hunks("local.tgz", &new_local)?;
        archive::reseal(state_bytes, &cfg.state, &tar, Some(&hunks))
    })
}

/// Carries out a plan through the one commit (`commit::commit`): exclusive access, backup,
/// recovery of leftovers, safe writes, read-back checks.
pub fn apply(plan: &Plan, backup_dir: &Path) -> Result<Outcome, FixError> {
    apply_on(plan, backup_dir, None)
}

/// [`apply`] on a disk the caller opened for writing (`None`: the commit opens the disk of a
/// disk or partition target itself, exclusively, before anything else): the power-cut tests
/// pass one whose storage records every write and flush.
pub fn apply_on(
    plan: &Plan,
    backup_dir: &Path,
    disk: Option<Disk>,
) -> Result<Outcome, FixError> {
    if !plan.has_changes() {
        return Ok(Outcome::default());
    }
    let decoded = RefCell::new(Vec::new());
    let bundle = plan.kind == TargetKind::ConfigBundle;
    let on_disk = matches!(plan.kind, TargetKind::Disk | TargetKind::Partition);
    let report = std::thread::scope(|s| -> Result<commit::Report, FixError> {
        // The read-back checks start now, on another thread: decoding both archive levels
        // overlaps the backup's and the new file's fsyncs.
        let checks: Vec<Option<Prechecked<'_, '_>>> = plan
            .steps
            .iter()
            .map(|step| {
                step.changes_anything()
                    .then(|| Prechecked::start(s, step, bundle, &decoded))
            })
            .collect();
        let verifies: Vec<_> = checks
            .iter()
            .map(|check| {
                move |b: &[u8]| -> Result<(), VerifyError> {
                    match check {
                        Some(c) => c.verify(b).map_err(VerifyError::new),
                        None => verify_any(b),
                    }
                }
            })
            .collect();
        let mut changes = Vec::new();
        for ((step, check), verify) in plan.steps.iter().zip(&checks).zip(&verifies) {
            let backup = check.is_some().then(|| backup_file(step));
            let dest = if on_disk {
                commit::Dest::Bank(commit::BankWrite {
                    partition: step.partition.unwrap_or(0),
                    names: step.names.as_ref().expect("disk steps have names"),
                    old: &step.old_bytes,
                    // A step without changes only settles leftovers.
                    new: if check.is_some() {
                        &step.new_bytes
                    } else {
                        &step.old_bytes
                    },
                    method: commit::Method::Replace { verify },
                    recover: step
                        .leftover
                        .as_ref()
                        .map(|l| (l, &verify_any as commit::Verify<'_>)),
                    tidy: step.fat_leftover.is_some(),
                })
            } else if check.is_some() {
                // An archive's only step; written in place or to `--output`.
                commit::Dest::HostFile {
                    read: &plan.target_path,
                    old: &step.old_bytes,
                    path: plan
                        .output
                        .clone()
                        .unwrap_or_else(|| plan.target_path.clone()),
                    new: &step.new_bytes,
                    verify,
                }
            } else {
                continue;
            };
            changes.push(commit::Change {
                location: step.location.clone(),
                backup,
                dest,
            });
        }
        Ok(match disk {
            Some(disk) => commit::commit_on(&plan.target_path, backup_dir, &changes, Some(disk))?,
            None => commit::commit(&plan.target_path, backup_dir, &changes)?,
        })
    })?;
    Ok(Outcome {
        decoded: decoded.into_inner(),
        ..Outcome::from(report)
    })
}

/// Plans putting back the configuration files of a backup made by [`apply`] (the one
/// `restore`, [`crate::ops::restore::plan`], takes either kind of backup).
pub fn plan_restore(target: &Path, from: &Path, force: bool) -> Result<Plan, FixError> {
    let backup = crate::write::backup::read(from)?;
    if backup.is_boot_cfg() {
        return Err(FixError::BootCfgBackup {
            dir: from.to_path_buf(),
        });
    }
    plan_restore_of(target, &backup, force)
}

/// The restore plan of a backup of configuration files, read and checked by
/// [`crate::write::backup::read`]: each file becomes a step whose new bytes are the backed-up
/// copy, written through the same commit (with its own backup).
pub(crate) fn plan_restore_of(
    target: &Path,
    backup: &crate::write::backup::Backup,
    force: bool,
) -> Result<Plan, FixError> {
    let mut plan = Plan::empty(target);
    let (mut disk, banks, archive_bytes) = match Target::open(target)? {
        Target::Archive { bytes, .. } => (None, Vec::new(), Some(bytes)),
        Target::Disk { disk, found, .. } => (Some(disk), found.banks, None),
        Target::Directory(_) => {
            return Err(FixError::DirectoryTarget {
                path: target.to_path_buf(),
                restore: true,
            });
        }
    };
    let is_archive = archive_bytes.is_some();
    for (e, backup) in backup.manifest.entries.iter().zip(&backup.files) {
        let backup = backup.clone();
        let mut fat_leftover = None;
        let (current, location, names, leftover, uuid) = if is_archive {
            plan.kind = TargetKind::StateArchive;
            (
                archive_bytes.clone().unwrap_or_default(),
                e.file.clone(),
                None,
                None,
                None,
            )
        } else {
            let p = e.partition.unwrap_or(0);
            let bank = banks
                .iter()
                .find(|b| b.partition == p)
                .ok_or_else(|| FixError::NoBankForBackup { partition: p })?;
            let cf = bank.config_file();
            let disk = disk.as_mut().expect("a disk target has its disk open");
            let bytes = match &cf {
                Some(c) => bootbank::read_file(disk, bank, &c.effective.name)?.unwrap_or_default(),
                None => Vec::new(),
            };
            let location = format!("partition {p} /{}", e.file);
            fat_leftover = self::fat_leftover(disk, bank, &location)?;
            plan.kind = if e.partition.is_none() {
                TargetKind::Partition
            } else {
                TargetKind::Disk
            };
            (
                bytes,
                match e.partition {
                    Some(p) => format!("partition {p} /{}", e.file),
                    None => format!("this partition /{}", e.file),
                },
                Some(
                    cf.as_ref()
                        .map(|c| c.names.clone())
                        .unwrap_or_else(|| Names::for_file(&e.file)),
                ),
                cf.and_then(|c| c.leftover),
                Some(bank.uuid.clone()),
            )
        };
        let bank = match (&uuid, e.partition) {
            (Some(u), p) => Some((p.unwrap_or(0), u.as_str())),
            (None, _) => None,
        };
        let restored = crate::write::backup::compare(e, bank, &current, &location, force)?
            == Standing::Restored;
        let mut notes = Vec::new();
        if restored {
            notes.push("already holds the backed-up configuration".to_string());
        }
        let bundle = plan.kind == TargetKind::StateArchive
            && Tgz::parse(&backup, "backup")
                .map(|t| t.member("state.tgz").is_some())
                .unwrap_or(false);
        if bundle {
            plan.kind = TargetKind::ConfigBundle;
        }
        let esx = |bytes: &[u8]| -> Result<Vec<u8>, FixError> {
            let state = if bundle {
                Tgz::parse(bytes, &location)?.require("state.tgz")?.to_vec()
            } else {
                bytes.to_vec()
            };
            let cfg = Config::from_state(&state, &location)?;
            Ok(cfg
                .local
                .as_ref()
                .map(|l| l.require(ESX_CONF).map(<[u8]>::to_vec))
                .transpose()?
                .unwrap_or_default())
        };
        let new_conf = esx(&backup)?;
        let old_conf = if current.is_empty() {
            Vec::new()
        } else {
            esx(&current).unwrap_or_default()
        };
        let changes = if restored {
            Vec::new()
        } else {
            conf_changes(&old_conf, &new_conf)
        };
        plan.steps.push(Step {
            location: location.clone(),
            partition: e.partition,
            bank_uuid: uuid,
            file: e.file.clone(),
            diff: unified_diff(&old_conf, &new_conf, &location),
            changes: if restored {
                changes
            } else if changes.is_empty() {
                // Same esx.conf, other members differ: still a change to write.
                vec![Change {
                    key: "(other members of local.tgz)".into(),
                    line: 0,
                    old: None,
                    new: None,
                }]
            } else {
                changes
            },
            notes,
            store_changes: Vec::new(),
            member_changes: Vec::new(),
            old_bytes: current,
            new_bytes: backup,
            new_esx_conf: new_conf,
            new_store: None,
            leftover,
            fat_leftover,
            names,
        });
    }
    Ok(plan)
}

/// Key-level differences between two esx.conf texts, for a restore plan.
fn conf_changes(old: &[u8], new: &[u8]) -> Vec<Change> {
    let (a, b) = (
        EsxConf::parse(old).unwrap_or_default(),
        EsxConf::parse(new).unwrap_or_default(),
    );
    let mut out = Vec::new();
    for e in &a.entries {
        let nv = b.get(&e.key);
        if nv != Some(e.value.as_str()) {
            out.push(Change {
                key: e.key.clone(),
                line: e.line,
                old: Some(e.value.clone()),
                new: nv.map(str::to_string),
            });
        }
    }
    for e in &b.entries {
        if a.get(&e.key).is_none() {
            out.push(Change {
                key: e.key.clone(),
                line: e.line,
                old: None,
                new: Some(e.value.clone()),
            });
        }
    }
    out
}

/// Any configuration that decodes is usable for completing an interrupted write.
fn verify_any(bytes: &[u8]) -> Result<(), VerifyError> {
    Config::from_state(bytes, "state.new")
        .map(|_| ())
        .map_err(VerifyError::new)
}

/// Replaces a file outside any bank, the way [`apply`] writes an archive target.
pub use crate::write::commit::replace_file;

impl crate::ops::plan::WritePlan for Plan {
    type Error = FixError;
    fn target(&self) -> &Path {
        &self.target_path
    }
    fn has_changes(&self) -> bool {
        Plan::has_changes(self)
    }
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, FixError> {
        apply(self, backup_dir)
    }
}

impl crate::ops::plan::WriteError for FixError {
    fn during_write(&self) -> bool {
        FixError::during_write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_devices_are_read_without_esx_conf() {
        let a = |s| PciAddress::parse_pci(s).unwrap();
        // Hex digits leave one reading; `0000:16:00.0` would be decimal bus 16 as well.
        assert_eq!(
            SealedDevice::read("0000:1a:00.0"),
            SealedDevice::Known(a("0000:1a:00.0"))
        );
        assert!(matches!(
            SealedDevice::read("0000:16:00.0"),
            SealedDevice::Ambiguous { .. }
        ));
        // 00:16.0: decimal slot 16 is 0x10, hex slot 0x16: two devices, both offered.
        assert_eq!(
            SealedDevice::read("00:16.0"),
            SealedDevice::Ambiguous {
                typed: "00:16.0".into(),
                esx: a("0000:00:10.0"),
                pci: a("0000:00:16.0"),
            }
        );
        // Slot 31 can only be decimal (hex 0x31 is beyond the last slot).
        assert_eq!(
            SealedDevice::read("00:31.2"),
            SealedDevice::Known(a("0000:00:1f.2"))
        );
        // A prefix decides; a shape only esx.conf writes is decimal.
        assert_eq!(
            SealedDevice::read("pci:00:16.0"),
            SealedDevice::Known(a("0000:00:16.0"))
        );
        assert_eq!(
            SealedDevice::read("000:022:00.0"),
            SealedDevice::Known(a("0000:16:00.0"))
        );
        assert_eq!(
            SealedDevice::read("raid card"),
            SealedDevice::Unread("raid card".into())
        );
    }
}
