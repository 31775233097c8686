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
//!
//! A file a job: `planner` reads the target and the source and makes the [`Plan`] (whose types
//! are in `plan`); `bundle` reads a configuration bundle and makes ESXi's checks of it;
//! `members` compares the archives' members; `apply` writes the plan through the one commit and
//! checks what it reads back; `error` holds the errors.

mod apply;
mod bundle;
mod error;
mod members;
mod plan;
mod planner;
#[cfg(test)]
mod testutil;

pub use apply::{apply, apply_on};
pub use bundle::{parse_boot_build, parse_release_level};
pub use error::{ReadBackError, RestoreConfigError};
pub use plan::{Check, Current, CurrentFile, MemberChange, Plan, SourceInfo, Verdict, WriteMethod};
pub use planner::plan;
use std::path::PathBuf;

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
