//! The plan's types: what is shown before anything is written, and what the write needs of it.

use super::FixError;
use crate::esxi::configstore::ColumnChange;
use crate::esxi::esxconf::Change;
use crate::esxi::pci::Reading;
use crate::ops::inspect::TargetKind;
use crate::write::transaction::{self, Names};
use serde::Serialize;
use std::path::{Path, PathBuf};

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
    pub(super) new_store: Option<Vec<u8>>,
    #[serde(skip)]
    pub(super) leftover: Option<transaction::Leftover>,
    #[serde(skip)]
    pub(super) names: Option<Names>,
}

/// One member of local.tgz that a step replaces besides esx.conf (see [`member_step`]).
///
/// [`member_step`]: super::member_step
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
///
/// [`plan_with`]: super::plan_with
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
///
/// [`plan_with`]: super::plan_with
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
    pub(super) target_path: PathBuf,
    /// Where an archive target's new bytes go instead of in place (`--output`); a disk's banks
    /// are always written in place.
    #[serde(skip)]
    pub(super) output: Option<PathBuf>,
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
    pub(super) fn store_check(&self) -> Option<(&[u8], &[StoreChange])> {
        self.new_store
            .as_deref()
            .map(|db| (db, self.store_changes.as_slice()))
    }
}

impl Plan {
    /// A plan with no step yet, for a disk until the target says otherwise.
    pub(super) fn empty(target: &Path) -> Plan {
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
    ///
    /// [`plan`]: super::plan
    /// [`Options::output`]: super::Options::output
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
