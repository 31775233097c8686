//! The report `inspect` prints (`--json` is its serialisation: a contract for scripts).

use crate::esxi::config::MemberSummary;
use crate::esxi::configstore::ConfigStore;
use crate::esxi::configstore::DeviceName;
use crate::esxi::configstore::PciDeviceRecord;
use crate::esxi::configstore::SchemaSource;
use crate::esxi::devices::HostDevice;
use crate::esxi::devices::Obeyed;
use crate::format::envelope::Encryption;
use crate::format::fat::FileInfo;
use crate::format::partition::Table;
use crate::ops::findings::Finding;
use serde::Serialize;

/// What the target turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Disk,
    Partition,
    Directory,
    StateArchive,
    ConfigBundle,
    LocalArchive,
}

/// One bank as reported.
#[derive(Debug, Clone, Serialize)]
pub struct BankReport {
    /// Partition number (null for a lone partition image or a directory).
    pub partition: Option<u32>,
    pub uuid: Option<String>,
    pub build: Option<String>,
    pub updated: Option<i64>,
    /// `bootstate` as written (a missing line reads as 0; see `bootstate_written`).
    pub bootstate: Option<i64>,
    pub bootstate_written: bool,
    /// `bootstate` after the transition the bootloader applies at boot.
    pub bootstate_at_boot: Option<i64>,
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
    pub boots_next: bool,
    /// `updated` as the bootloader compares it: unsigned 32-bit (`-1` is 4294967295); null when
    /// boot.cfg does not parse or the firmware decides (a number beyond 32 bits).
    pub updated_at_boot: Option<u64>,
    /// Why the bootloader leaves this bank out altogether, or never looks at it, in words; null
    /// when it counts the bank (valid or not).
    pub skipped_reason: Option<String>,
    /// What the bootloader reads differently from what boot.cfg seems to say (a key written by
    /// prefix, a key hidden by a space before `=`, an unsigned `updated`, ...).
    pub notes: Vec<String>,
    /// `system` (kernel and payloads present) or `empty`.
    pub contents: &'static str,
    pub state_archive: Option<FileInfo>,
    pub boot_cfg_error: Option<String>,
}

/// The configuration that was read.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Where it came from, e.g. `partition 5 /state.tgz`.
    pub source: String,
    pub encryption: Encryption,
    pub encryption_mode: Option<String>,
    /// Key id of an encrypted configuration decrypted offline.
    pub key_id: Option<String>,
    /// Members of state.tgz.
    pub state_members: Vec<MemberSummary>,
    /// Members of local.tgz (empty when encrypted).
    pub local_members: Vec<MemberSummary>,
    pub esx_conf_lines: Option<usize>,
    /// Host name from `/adv/Misc/HostName`, when present.
    pub hostname: Option<String>,
    /// Which store ESXi reads device ownership from on this build (None when sealed by a TPM).
    pub device_ownership: Option<Obeyed>,
}

/// A config bundle's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub release_level: Option<String>,
    pub uuid: Option<String>,
}

/// The ConfigStore (7.0+): its device records, merged as ESXi merges them, and the schemas
/// they were read with.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStoreReport {
    /// Rows of the `Config` table, all keys.
    pub rows: u64,
    pub schema: SchemaReport,
    /// `esx/hardware/pci_devices` records, in table order.
    pub pci_devices: Vec<PciDeviceRecord>,
    /// `esx/system/device_data` records (vmkernel device names), in table order.
    pub device_names: Vec<DeviceName>,
}

/// Where the ConfigStore's schemas came from and how they compare with bootbank's.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaReport {
    /// local.tgz holds the host's schema store.
    pub host_store: bool,
    /// The VIB ids of the schemas read (the build that wrote them).
    pub vib_ids: Vec<String>,
    /// Per key bootbank reads: where its schema was read.
    pub sources: std::collections::BTreeMap<String, SchemaSource>,
    /// Per key: where the host's schema differs from the one bootbank knows.
    pub differences: std::collections::BTreeMap<String, Vec<String>>,
}

impl SchemaReport {
    pub(super) fn new(store: &ConfigStore) -> SchemaReport {
        let s = &store.schemas;
        SchemaReport {
            host_store: s.host_store,
            vib_ids: s.vib_ids.clone(),
            sources: s
                .schemas
                .iter()
                .map(|x| (x.key.to_string(), x.source.clone()))
                .collect(),
            differences: s
                .differences
                .iter()
                .map(|(k, d)| (k.to_string(), d.clone()))
                .collect(),
        }
    }
}

/// A device as reported: what the configuration says (both stores), plus what the rescue
/// system's sysfs says.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    #[serde(flatten)]
    pub conf: HostDevice,
    pub sysfs: Option<crate::host::sysfs::SysfsDevice>,
}

/// Everything `inspect` found. Serialised as the documented `--json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub kind: TargetKind,
    pub partition_table: Option<Table>,
    pub banks: Vec<BankReport>,
    pub next_boot_partition: Option<u32>,
    /// Whether any bank will boot (false: "this host will not boot"; null when that cannot be
    /// told, see `next_boot_unknown`).
    pub will_boot: Option<bool>,
    /// Why the next boot cannot be predicted from the disk alone (the bootloader release or the
    /// firmware decides); null when it can.
    pub next_boot_unknown: Option<String>,
    /// The surprising parts of the prediction, in words: skipped banks and why, keys the
    /// bootloader reads differently, ties, what is unknown.
    pub explanation: Vec<String>,
    pub config: Option<ConfigReport>,
    pub bundle: Option<BundleReport>,
    pub devices: Vec<DeviceReport>,
    /// The ConfigStore database (7.0+), when local.tgz holds one.
    pub configstore: Option<ConfigStoreReport>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    /// Bytes read from the disk or image (0 for archives and directories).
    pub bytes_read: u64,
    /// Where sysfs enrichment came from, when used.
    pub sysfs_root: Option<String>,
    /// pci.ids source used for names.
    pub pci_ids: Option<String>,
}
