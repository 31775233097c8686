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
    /// A partitioned disk (image, block device or flat VMDK): banks found through its table.
    Disk,
    /// A lone bank partition image (or device) with no table: `partition_table` and
    /// `next_boot_partition` are null, the one bank's `partition` too.
    Partition,
    /// A directory holding a copied or mounted bank (boot.cfg and/or state.tgz).
    Directory,
    /// A state.tgz given on its own (holding local.tgz or local.tgz.ve).
    StateArchive,
    /// A config bundle (`configBundle-<host>.tgz`, as `vim-cmd hostsvc/firmware/backup_config`
    /// downloads it): `Manifest.txt` and state.tgz; its manifest is in `bundle`.
    ConfigBundle,
    /// A local.tgz given on its own (holding esx.conf directly).
    LocalArchive,
}

/// One bank as reported.
#[derive(Debug, Clone, Serialize)]
pub struct BankReport {
    /// Partition number (null for a lone partition image or a directory).
    pub partition: Option<u32>,
    /// The bank UUID from its second sector, as in `/vmfs/volumes/<uuid>`; null for a
    /// directory, which has no such sector.
    pub uuid: Option<String>,
    /// boot.cfg's `build` (empty when the line is missing); null when boot.cfg is unreadable.
    pub build: Option<String>,
    /// boot.cfg's `updated` as written (missing reads as 0), the counter the bootloader
    /// compares between banks; null when boot.cfg is unreadable.
    pub updated: Option<i64>,
    /// `bootstate` as written (a missing line reads as 0; see `bootstate_written`).
    pub bootstate: Option<i64>,
    /// Whether boot.cfg has a `bootstate` line at all.
    pub bootstate_written: bool,
    /// `bootstate` after the transition the bootloader applies at boot.
    pub bootstate_at_boot: Option<i64>,
    /// Whether the bootloader accepts this bank: boot.cfg parses, `build` is set, `updated` is
    /// not 0 and `bootstate_at_boot` is not 3; false also for a skipped bank.
    pub valid: bool,
    /// Why the bank is not valid, in words; empty when valid.
    pub invalid_reasons: Vec<String>,
    /// This is the bank the host boots next; false for every bank when that is unknown (see
    /// `next_boot_unknown`) and for a lone partition image.
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
    /// The configuration archive in the bank's FAT root (`state.tgz`, or a bare `local.tgz` on
    /// old embedded builds, or after an interrupted write the file recovery would put in
    /// place): name, size, FAT time; null when the bank holds none.
    pub state_archive: Option<FileInfo>,
    /// Why boot.cfg could not be read or parsed; null when it was.
    pub boot_cfg_error: Option<String>,
}

/// The configuration that was read.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Where it came from, e.g. `partition 5 /state.tgz`.
    pub source: String,
    /// Whether local.tgz is encrypted (`local.tgz.ve`), and whether bootbank could open it.
    pub encryption: Encryption,
    /// `mode` from encryption.info, when encrypted; null for a plain local.tgz.
    pub encryption_mode: Option<String>,
    /// Key id of an encrypted configuration decrypted offline.
    pub key_id: Option<String>,
    /// Members of state.tgz.
    pub state_members: Vec<MemberSummary>,
    /// Members of local.tgz (empty when sealed by a TPM).
    pub local_members: Vec<MemberSummary>,
    /// Number of `key = "value"` lines in esx.conf; null when it cannot be read (sealed by a
    /// TPM).
    pub esx_conf_lines: Option<usize>,
    /// Host name from `/adv/Misc/HostName`, when present.
    pub hostname: Option<String>,
    /// Which store ESXi reads device ownership from on this build (None when sealed by a TPM).
    pub device_ownership: Option<Obeyed>,
}

/// A config bundle's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    /// `RELEASELEVEL=` of `Manifest.txt`, the build of the host the bundle was taken from
    /// (`restore-config` compares it with the target's build); null when the line is missing.
    pub release_level: Option<String>,
    /// `UUID=` of `Manifest.txt`, the host's UUID (`restore-config` compares it with esx.conf's
    /// `/system/uuid`); null when the line is missing.
    pub uuid: Option<String>,
}

/// The ConfigStore (7.0+): its device records, merged as ESXi merges them, and the schemas
/// they were read with.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStoreReport {
    /// Rows of the `Config` table, all keys.
    pub rows: u64,
    /// Which schemas the records were read with: the host's own or bootbank's built-in ones.
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
    /// What esx.conf and the ConfigStore say about the device (its fields are flattened into
    /// this object in JSON).
    #[serde(flatten)]
    pub conf: HostDevice,
    /// The card at this address in the rescue system's sysfs; null when no sysfs was read (no
    /// `--sysfs` and not a block device, or the tree could not be opened) or it has no readable
    /// function at this address.
    pub sysfs: Option<crate::host::sysfs::SysfsDevice>,
}

/// Everything `inspect` found. Serialised as the documented `--json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The target path as given.
    pub target: String,
    /// What the target turned out to be, told by content.
    pub kind: TargetKind,
    /// The disk's partition table; null for anything but a `disk`.
    pub partition_table: Option<Table>,
    /// One per bank found, in partition order (one for a lone partition or a directory with a
    /// boot.cfg, none for an archive).
    pub banks: Vec<BankReport>,
    /// Partition number of the bank that boots next; null when none will, when that is unknown
    /// (see `next_boot_unknown`), or for a lone partition.
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
    /// The configuration of the bank that boots next (with none bootable, of the newest bank
    /// that has one) or of the archive; null when there is none.
    pub config: Option<ConfigReport>,
    /// The manifest of a config bundle; null for other targets or when it has no Manifest.txt.
    pub bundle: Option<BundleReport>,
    /// One per PCI function the configuration names, from esx.conf and the ConfigStore; empty
    /// when the configuration is sealed by a TPM or there is none.
    pub devices: Vec<DeviceReport>,
    /// The ConfigStore database (7.0+), when local.tgz holds one.
    pub configstore: Option<ConfigStoreReport>,
    /// What will go wrong or needs a look, most severe first.
    pub findings: Vec<Finding>,
    /// What got in the way of reading, not a verdict on the host: a damaged primary GPT header,
    /// a ConfigStore, rollback configuration, FAT allocation or sysfs tree that could not be read.
    pub warnings: Vec<String>,
    /// Bytes read from the disk or image (0 for archives and directories).
    pub bytes_read: u64,
    /// Where sysfs enrichment came from, when used.
    pub sysfs_root: Option<String>,
    /// pci.ids source used for names.
    pub pci_ids: Option<String>,
}
