//! What stops the fix engine, and the devices a TPM-sealed configuration's error names.

use crate::esxi::bank::BankError;
use crate::esxi::config::ConfigError;
use crate::esxi::configstore::{self, ConfigStoreError};
use crate::esxi::esxconf::EsxConfError;
use crate::esxi::pci::{PciAddress, Reading};
use crate::esxi::target::TargetError;
use crate::format::archive::ArchiveError;
use crate::io::disk::DiskError;
use crate::ops::inspect::InspectError;
use crate::write::backup::BackupError;
use crate::write::commit::CommitError;
use crate::write::transaction::TxError;
use std::path::PathBuf;

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
        crate::format::fat::damage_list(.problems)
    )]
    FatDamaged {
        /// The configuration in that bank: `partition 5 /state.tgz`, ...
        location: String,
        /// What is wrong with the FAT, one item per problem.
        problems: Vec<crate::format::fat::Damage>,
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
    pub(super) fn read(typed: &str) -> SealedDevice {
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

/// Exit 1 for these, 2 for every other error (nothing was written).
impl crate::ops::plan::WriteError for FixError {
    fn during_write(&self) -> bool {
        matches!(self, FixError::Commit(e) if e.during_write())
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
