//! The plan's types: what the target bank holds, where the new state.tgz comes from, the checks
//! made, and what the write would change, all serialised as `--json` prints them.

use crate::format::envelope::Encryption;
use serde::Serialize;
use std::path::PathBuf;

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
    pub(super) new_esx_conf: Option<Vec<u8>>,
    #[serde(skip)]
    pub(super) target_path: PathBuf,
    #[serde(skip)]
    pub(super) part: u32,
}

impl Plan {
    /// Whether anything would be written.
    pub fn has_changes(&self) -> bool {
        self.method != WriteMethod::None
    }
}
