//! Findings: what will go wrong at the next boot, with a stable rule id and what to do about it.

use crate::envelope::Encryption;
use crate::esxconf::Device;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
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
    pub severity: Severity,
    pub rule: &'static str,
    /// The device concerned, lspci form, when there is one.
    pub device: Option<String>,
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
/// Rule: esx.conf and the ConfigStore (7.0+) disagree about passing a device through.
pub const CONFIGSTORE_DISAGREES: &str = "configstore-disagrees";
/// Rule: a ConfigStore PCI record whose passthrough setting is not in a field bootbank knows.
pub const CONFIGSTORE_UNCLEAR: &str = "configstore-unclear";
/// Rule: the configuration is encrypted (7.0U2+).
pub const CONFIG_ENCRYPTED: &str = "config-encrypted";

/// Findings about PCI devices in esx.conf. `where_` names the configuration, for messages;
/// `target` is the path to put in the suggested `bootbank fix` command.
pub fn device_findings(devices: &[Device], where_: &str, target: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in devices.iter().filter(|d| d.is_passthru()) {
        let vmk = d.vmkname.as_deref().unwrap_or("no vmkname");
        if d.is_storage() {
            out.push(Finding {
                severity: Severity::Critical,
                rule: PASSTHRU_STORAGE,
                device: Some(d.pci_address.clone()),
                message: format!(
                    "storage adapter {vmk} at {} (esx.conf /device/{}) is set to passthrough: at the next boot ESXi hands it to VMs and loses every disk behind it, usually its own boot disk and datastores",
                    d.pci_address, d.esx_address
                ),
                fix: Some(format!(
                    "bootbank fix {} --device {} --both-banks   (sets /device/{}/owner from \"passthru\" to \"vmkernel\" in {where_})",
                    shell_quote(target),
                    d.pci_address,
                    d.esx_address
                )),
            });
        } else {
            out.push(Finding {
                severity: Severity::Info,
                rule: PASSTHRU_DEVICE,
                device: Some(d.pci_address.clone()),
                message: format!(
                    "device {} ({vmk}, esx.conf /device/{}) is set to passthrough",
                    d.pci_address, d.esx_address
                ),
                fix: None,
            });
        }
    }
    out
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
                "configuration is sealed by the host's TPM (encryption.info mode {mode}): no offline tool can decrypt it; back up the encryption recovery key now"
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
