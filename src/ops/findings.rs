//! Findings: what will go wrong at the next boot, with a stable rule id and what to do about it.

use crate::esxi::configstore::{ConfigStore, Ownership};
use crate::esxi::devices::{HostDevice, Obeyed, Store};
use crate::format::envelope::Encryption;
use serde::Serialize;

/// How bad a finding is. Ordered most severe first, so sorting findings puts criticals on top;
/// serialized in lowercase (`"critical"`), the form `--json` output and scripts match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The host will not boot as the admin expects (e.g. it loses its boot disk); `lint` and
    /// `audit` exit 1 when any finding is critical.
    Critical,
    /// Something to look at before the next boot; does not change the exit code.
    Warning,
    /// Shown for completeness (e.g. a non-storage passthru device, an encrypted configuration).
    Info,
}

impl Severity {
    /// The lowercase name, as in the JSON output: `critical`, `warning` or `info`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One finding. `rule` ids are stable: scripts may match on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is; criticals decide the exit code of `lint` and `audit`.
    pub severity: Severity,
    /// The stable rule id: a constant here, in `lint` or in `network` (`passthru-device`, ...).
    pub rule: &'static str,
    /// The device concerned, lspci form, when there is one.
    pub device: Option<String>,
    /// One line for the admin: what was found, where it was read (file, line, ConfigStore row)
    /// and what ESXi will do with it at the next boot.
    pub message: String,
    /// What to do, in words or as a command.
    pub fix: Option<String>,
}

/// Rule: a storage adapter handed to passthrough. This is the story's mistake: ESXi loses the
/// disks behind it, usually its own boot disk and datastores.
pub const PASSTHRU_STORAGE: &str = "passthru-storage-adapter";
/// Rule: a non-storage device in passthrough, listed so the user sees every passthru device.
pub const PASSTHRU_DEVICE: &str = "passthru-device";
/// Rule: no bank is valid, the host will not boot.
pub const NO_BOOTABLE_BANK: &str = "no-bootable-bank";
/// Rule: the bank that boots next has no configuration archive.
pub const NO_CONFIGURATION: &str = "no-configuration";
/// Rule: an interrupted bootbank write left temporary files; `fix` completes or undoes it.
pub const INTERRUPTED_WRITE: &str = "interrupted-write";
/// Rule: the bank's FAT holds what an interrupted write leaves (clusters no file uses, FAT copies
/// that differ on them, the dirty bit); harmless to ESXi, reclaimed by bootbank's next write.
pub const FAT_LEFTOVER: &str = "fat-leftover";
/// Rule: the bank's FAT is damaged in a way an interrupted write does not leave; bootbank will
/// not write to it until `fsck.fat` has repaired it.
pub const FAT_DAMAGED: &str = "fat-damaged";
/// Rule: esx.conf and the ConfigStore (7.0+) disagree about passing a device through.
pub const CONFIGSTORE_DISAGREES: &str = "configstore-disagrees";
/// Rule: a ConfigStore pci_devices record that cannot be read as ESXi reads it (columns that
/// disagree, a value or field its schema does not allow).
pub const CONFIGSTORE_UNCLEAR: &str = "configstore-unclear";
/// Rule: the configuration is encrypted (7.0U2+).
pub const CONFIG_ENCRYPTED: &str = "config-encrypted";

/// Rule: the host's ConfigStore schema for a key bootbank edits differs from the one it knows.
pub const CONFIGSTORE_SCHEMA: &str = "configstore-schema-differs";

/// The fix command line for devices, naming each in the hex form the host's tools use.
fn fix_command(target: &str, d: &HostDevice) -> String {
    let mut what = Vec::new();
    if let Some(s) = &d.configstore
        && d.store_owner() == Some(Ownership::Passthru)
    {
        what.push(format!(
            "sets owner from OWNER_PASSTHRU to OWNER_VMKERNEL in ConfigStore esx/hardware/pci_devices {}",
            s.identifier.as_deref().unwrap_or(&d.pci_address)
        ));
    }
    if d.esx_owner() == Some(Ownership::Passthru) {
        what.push(format!(
            "sets /device/{}/owner from \"passthru\" to \"vmkernel\" in esx.conf",
            d.esx_address
        ));
    }
    format!(
        "bootbank fix {} --device {} --both-banks   ({})",
        shell_quote(target),
        d.pci_address,
        what.join("; ")
    )
}

/// Where a device's owner was read and what it says, for messages:
/// `esx.conf /device/000:022:00.0/owner = "passthru"` or
/// `ConfigStore esx/hardware/pci_devices 0000:16:00.0: owner OWNER_PASSTHRU in UserValue`.
fn owner_place(d: &HostDevice) -> String {
    let raw = d.owner_raw.as_deref().unwrap_or("?");
    match d.owner_source {
        Some(Store::EsxConf) => format!("esx.conf /device/{}/owner = \"{raw}\"", d.esx_address),
        Some(Store::ConfigStore) => {
            let s = d.configstore.as_ref();
            match s.and_then(|s| s.identifier.as_deref()) {
                Some(id) => format!(
                    "ConfigStore esx/hardware/pci_devices {id}: owner {raw} in {}",
                    s.map(|s| s.owner_from.join(", ")).unwrap_or_default()
                ),
                None => format!("ConfigStore: no pci_devices record, so the default owner {raw}"),
            }
        }
        None => "no store says".to_string(),
    }
}

/// Findings about a configuration's PCI devices: storage adapters and other devices whose
/// effective owner is passthrough, and devices the two stores disagree about. `obeyed` says
/// which store the build reads; `target` is the path to put in the suggested `bootbank fix`.
pub fn device_findings(devices: &[HostDevice], obeyed: &Obeyed, target: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in devices {
        let vmk = d.vmkname.as_deref().unwrap_or("no vmkname");
        if d.is_passthru() && d.is_storage() {
            out.push(Finding {
                severity: Severity::Critical,
                rule: PASSTHRU_STORAGE,
                device: Some(d.pci_address.clone()),
                message: format!(
                    "storage adapter {vmk} at {} is set to passthrough ({}): at the next boot ESXi hands it to VMs and loses every disk behind it, usually its own boot disk and datastores",
                    d.all_forms(),
                    owner_place(d),
                ),
                fix: Some(fix_command(target, d)),
            });
        } else if d.is_passthru() {
            out.push(Finding {
                severity: Severity::Info,
                rule: PASSTHRU_DEVICE,
                device: Some(d.pci_address.clone()),
                message: format!(
                    "device {vmk} at {} is set to passthrough ({})",
                    d.all_forms(),
                    owner_place(d)
                ),
                fix: None,
            });
        }
        if d.stores_disagree() {
            let e = d.esx_conf.as_ref().expect("disagreeing devices have both");
            let s = d
                .configstore
                .as_ref()
                .expect("disagreeing devices have both");
            let obeys = match obeyed.store {
                Some(st) => format!("ESXi obeys the {st} ({})", obeyed.why),
                None => format!("which one ESXi obeys is not known ({})", obeyed.why),
            };
            out.push(Finding {
                severity: Severity::Warning,
                rule: CONFIGSTORE_DISAGREES,
                device: Some(d.pci_address.clone()),
                message: format!(
                    "esx.conf and the ConfigStore disagree about {}: esx.conf line {} says \"{}\", the ConfigStore says {} ({}); {obeys}",
                    d.all_forms(),
                    e.owner_line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                    e.owner.as_deref().unwrap_or("?"),
                    s.owner_raw.as_deref().unwrap_or("?"),
                    match &s.identifier {
                        Some(id) => format!("record {id}, {}", s.owner_from.join(", ")),
                        None => "no pci_devices record: the schema default".to_string(),
                    }
                ),
                fix: d.any_store_passthru().then(|| fix_command(target, d)),
            });
        }
        if let Some(s) = &d.configstore
            && (!s.problems.is_empty() || (s.identifier.is_some() && d.store_owner().is_none()))
        {
            out.push(Finding {
                severity: Severity::Warning,
                rule: CONFIGSTORE_UNCLEAR,
                device: Some(d.pci_address.clone()),
                message: format!(
                    "ConfigStore record esx/hardware/pci_devices {} cannot be read as ESXi reads it (owner {}): {}; bootbank will not change it",
                    s.identifier.as_deref().unwrap_or("?"),
                    s.owner_raw.as_deref().unwrap_or("not known"),
                    if s.problems.is_empty() {
                        "its owner is none of the schema's values".to_string()
                    } else {
                        s.problems.join("; ")
                    }
                ),
                fix: None,
            });
        }
    }
    out
}

/// Findings about the ConfigStore as a whole: a schema that differs from what bootbank knows.
pub fn schema_findings(store: &ConfigStore) -> Vec<Finding> {
    store
        .schemas
        .differences
        .iter()
        .map(|(key, d)| Finding {
            severity: Severity::Warning,
            rule: CONFIGSTORE_SCHEMA,
            device: None,
            message: format!(
                "the host's ConfigStore schema of {key} differs from the one bootbank knows ({}): {}; its records are read with the host's schema, and bootbank refuses to change them",
                store.schemas.get(*key).source,
                d.join("; ")
            ),
            fix: None,
        })
        .collect()
}

/// Finding for an encrypted configuration. `key_id` is set when it was decrypted offline.
pub fn encryption_finding(
    enc: Encryption,
    mode: Option<&str>,
    key_id: Option<&str>,
) -> Option<Finding> {
    let mode = mode.unwrap_or("?");
    match enc {
        Encryption::None => None,
        Encryption::Kdf => Some(Finding {
            severity: Severity::Info,
            rule: CONFIG_ENCRYPTED,
            device: None,
            message: format!(
                "configuration is encrypted (encryption.info mode {mode}, no TPM): decrypted offline with the key derived from encryption.info (key id {})",
                key_id.unwrap_or("?")
            ),
            fix: None,
        }),
        Encryption::Tpm => Some(Finding {
            severity: Severity::Info,
            rule: CONFIG_ENCRYPTED,
            device: None,
            message: format!(
                "configuration is sealed by the host's TPM (encryption.info mode {mode}): no offline tool can decrypt it (lint's tpm-recovery-key says what to record now)"
            ),
            fix: Some(
                "on the host: esxcli hardware pci pcipassthru set -d <SSSS:BB:DD.F> -e false -a, then /sbin/auto-backup.sh; or boot with the encryption recovery key; or restore a config bundle".to_string(),
            ),
        }),
    }
}

/// Orders findings most severe first, keeping the rules' own order within a severity.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by_key(|f| f.severity);
}

/// Quotes a path for a command line the user can paste.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
