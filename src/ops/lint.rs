//! `lint`: the checks an administrator runs before and after every change, on one host or on a
//! fleet's config bundles. Everything `inspect` finds, plus rules that need more than the
//! next-boot bank's esx.conf: the hardware seen through sysfs, `etc/vmware/passthru.map`, the
//! other bank's configuration and build.

use crate::esxi::config::Config;
use crate::esxi::pci::PciAddress;
use crate::format::pciids::PciIds;
use crate::ops::findings::{self, Finding, Severity};
use crate::ops::inspect::{self, InspectError, Options, Report, TargetKind};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// Rule: a device in passthrough holds the inspected disk or a disk mounted on this system,
/// itself or through a bridge above it.
pub const PASSTHRU_TAKES_DISK: &str = "passthru-takes-disk";
/// Rule: a PCI bridge set to passthrough: every device behind it goes with it.
pub const PASSTHRU_BRIDGE: &str = "passthru-bridge";
/// Rule: passthru.map makes a storage or USB controller passthrough-capable.
pub const PASSTHRU_MAP_STORAGE: &str = "passthru-map-storage";
/// Rule: a NIC in passthrough is an uplink of the vSwitch that carries the management vmknic:
/// ESXi loses the NIC, and with it (when it was the only one) the management network.
pub const PASSTHRU_MANAGEMENT_UPLINK: &str = "passthru-management-uplink";
/// Rule: the bank that boots next and the other bank pass different devices through.
pub const BANKS_DISAGREE: &str = "banks-disagree-passthru";
/// Rule: there is no other valid bank to roll back to.
pub const NO_ROLLBACK: &str = "no-rollback-bank";
/// Rule: the other bank holds an older build (and its older configuration).
pub const ROLLBACK_OLDER: &str = "rollback-older-build";
/// Rule: a passthrough row (ConfigStore pci_devices) or line (esx.conf) for an address the
/// configuration names a storage adapter (`vmhbaN`), where this machine now has another kind of
/// device, or none: a card swap left the alias and the passthrough setting behind.
pub const PASSTHRU_STALE_ALIAS: &str = "passthru-stale-storage-alias";
/// Rule: a PCI bridge set to passthrough with a storage controller behind it (sysfs topology):
/// the controller goes to passthrough with the bridge, and ESXi loses the disks on it.
pub const PASSTHRU_BRIDGE_STORAGE: &str = "passthru-bridge-storage";
/// Rule: passthru.map makes the controller of the inspected disk (or of a disk mounted here)
/// passthrough-capable: the one wrong tick of the story is then offered for ESXi's own disk.
pub const PASSTHRU_MAP_BOOT_CONTROLLER: &str = "passthru-map-boot-controller";
/// Rule: the configuration is sealed by the host's TPM: without its recovery key, a TPM or
/// motherboard change makes the host unbootable, and no offline tool can help.
pub const TPM_RECOVERY_KEY: &str = "tpm-recovery-key";

/// What `lint` reports for one target: the findings, most severe first.
#[derive(Debug, Clone, Serialize)]
pub struct LintReport {
    /// The target as given (disk image, state archive or config bundle), displayed.
    pub path: String,
    /// `inspect`'s findings and lint's own rules, sorted most severe first.
    pub findings: Vec<Finding>,
    /// `inspect`'s warnings: parts of the target that could not be read (a ConfigStore, the
    /// other bank's configuration) and so were not checked; not findings about the host.
    pub warnings: Vec<String>,
}

impl LintReport {
    /// Whether any finding is critical: the `lint` command then exits 1.
    pub fn has_critical(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Critical)
    }
}

/// Lints one target (the same kinds `inspect` reads).
pub fn lint(target: &Path, opts: &Options) -> Result<LintReport, InspectError> {
    lint_with_report(target, opts).map(|(l, _)| l)
}

/// [`lint`], also handing back inspect's report it was made from, for callers that show the
/// verdict and the hardware as well (`rescue`), without reading the disk twice.
pub fn lint_with_report(
    target: &Path,
    opts: &Options,
) -> Result<(LintReport, Report), InspectError> {
    let opts = Options {
        rollback_config: true,
        ..opts.clone()
    };
    let (report, configs) = inspect::inspect_with_config(target, &opts)?;
    let config = configs.next;
    let mut out = LintReport {
        path: target.display().to_string(),
        findings: report.findings.clone(),
        warnings: report.warnings.clone(),
    };
    sysfs_rules(&report, &mut out.findings);
    stale_alias_rule(&report, &mut out.findings);
    bridge_storage_rule(&report, &opts, &mut out.findings);
    tpm_recovery_rule(&report, &mut out.findings);
    if let Some(cfg) = &config {
        map_rules(cfg, &report, &mut out.findings);
        map_boot_controller_rule(cfg, &report, &opts, &mut out.findings);
        management_uplink_rule(cfg, &report, &mut out.findings);
    }
    if report.kind == TargetKind::Disk {
        bank_rules(
            &report,
            config.as_ref(),
            configs.rollback.as_ref(),
            &mut out,
        );
    }
    findings::sort(&mut out.findings);
    Ok((out, report))
}

/// Rules that need the rescue system's view of the hardware.
fn sysfs_rules(report: &Report, out: &mut Vec<Finding>) {
    for d in report.devices.iter().filter(|d| d.conf.is_passthru()) {
        let Some(s) = &d.sysfs else { continue };
        let addr = &d.conf.pci_address;
        for disk in s.disks.iter().filter(|k| k.inspected || k.mounted) {
            let what = if disk.inspected {
                "the disk being inspected"
            } else {
                "a disk mounted on this system"
            };
            let how = if disk.via_bridge {
                format!(
                    "it is a bridge above {}, the controller of {}",
                    disk.controller, disk.name
                )
            } else {
                format!("it is the controller of {}", disk.name)
            };
            out.push(Finding {
                severity: Severity::Critical,
                rule: PASSTHRU_TAKES_DISK,
                device: Some(addr.clone()),
                message: format!(
                    "device {addr} (esx.conf /device/{}) is set to passthrough and holds {what} ({}): {how}; ESXi loses that disk at the next boot",
                    d.conf.esx_address, disk.name
                ),
                fix: Some(format!(
                    "bootbank fix {} --device {addr} --both-banks",
                    report.target
                )),
            });
        }
        if s.is_bridge {
            out.push(Finding {
                severity: Severity::Warning,
                rule: PASSTHRU_BRIDGE,
                device: Some(addr.clone()),
                message: format!(
                    "PCI bridge {addr} (esx.conf /device/{}) is set to passthrough: every device behind it is passed through with it ({} disk(s) behind it here)",
                    d.conf.esx_address,
                    s.disks.len()
                ),
                fix: Some(format!(
                    "pass the devices behind it through instead; to undo: bootbank fix {} --device {addr}",
                    report.target
                )),
            });
        }
    }
}

/// Whether a 24-bit PCI class code is a mass storage controller (class 0x01).
fn is_storage_class(class: u32) -> bool {
    class >> 16 == 0x01
}

/// "an Ethernet controller (8086:1521 Intel Corporation I350 ..., class 020000)".
fn describe_sysfs(s: &crate::host::sysfs::SysfsDevice) -> String {
    format!(
        "{} ({:04x}:{:04x} {} {}, class {:06x})",
        s.class_name.as_deref().unwrap_or("device"),
        s.vendor_id,
        s.device_id,
        s.vendor_name.as_deref().unwrap_or("unknown vendor"),
        s.device_name.as_deref().unwrap_or("unknown device"),
        s.class
    )
}

/// [`PASSTHRU_STALE_ALIAS`]: only with sysfs (the hardware now in the machine). The storage
/// alias is the configuration's own (esx.conf `vmkname`, ConfigStore device_data `alias`), so
/// inspect's critical passthru-storage-adapter still fires for the address: this finding says
/// the hardware disagrees, and leaves the verdict to the user.
fn stale_alias_rule(report: &Report, out: &mut Vec<Finding>) {
    if report.sysfs_root.is_none() {
        return;
    }
    for d in report
        .devices
        .iter()
        .filter(|d| d.conf.is_passthru() && d.conf.is_storage())
    {
        let now = match &d.sysfs {
            Some(s) if is_storage_class(s.class) => continue,
            Some(s) => format!("a {}", describe_sysfs(s)),
            None => "no PCI device".to_string(),
        };
        let c = &d.conf;
        let alias = c
            .vmkname
            .clone()
            .or_else(|| {
                c.configstore
                    .as_ref()
                    .and_then(|s| s.names.iter().find(|n| n.is_storage()))
                    .and_then(|n| n.alias.clone())
            })
            .unwrap_or_else(|| "a storage adapter".to_string());
        out.push(Finding {
            severity: Severity::Warning,
            rule: PASSTHRU_STALE_ALIAS,
            device: Some(c.pci_address.clone()),
            message: format!(
                "the configuration sets {} to passthrough and names it {alias}, a storage adapter, but this machine has {now} at that address: the card was probably swapped, and the alias and the passthrough setting are left from the old one. At the next boot ESXi applies the passthrough to whatever sits at the address now; the passthru-storage-adapter finding for this address describes the old card",
                c.all_forms()
            ),
            fix: Some(format!(
                "if no VM is meant to get the device now at {}: bootbank fix {} --device {} (else keep it, and let the host rename its adapters)",
                c.pci_address, report.target, c.pci_address
            )),
        });
    }
}

/// Every PCI function of the sysfs tree the report was enriched with, the inspected disk marked
/// as enrichment marked it (empty without a tree).
fn sysfs_devices(report: &Report, opts: &Options) -> Vec<crate::host::sysfs::SysfsDevice> {
    let Some(root) = &report.sysfs_root else {
        return Vec::new();
    };
    let target = Path::new(&report.target);
    match inspect::enrich::open_marked(Path::new(root), opts.disk_name.as_deref(), Some(target)) {
        Ok(s) => s.devices(&PciIds::load()),
        Err(_) => Vec::new(),
    }
}

/// [`PASSTHRU_BRIDGE_STORAGE`]: a bridge in passthrough, and the storage controllers sysfs shows
/// below it (whatever disks they hold: passthru-takes-disk names the inspected one).
fn bridge_storage_rule(report: &Report, opts: &Options, out: &mut Vec<Finding>) {
    let bridges: Vec<_> = report
        .devices
        .iter()
        .filter(|d| d.conf.is_passthru() && d.sysfs.as_ref().is_some_and(|s| s.is_bridge))
        .collect();
    if bridges.is_empty() {
        return;
    }
    let all = sysfs_devices(report, opts);
    for b in bridges {
        let behind: Vec<&crate::host::sysfs::SysfsDevice> = all
            .iter()
            .filter(|s| s.upstream.contains(&b.conf.address) && is_storage_class(s.class))
            .collect();
        if behind.is_empty() {
            continue;
        }
        let list: Vec<String> = behind
            .iter()
            .map(|s| {
                let disks: Vec<&str> = s.disks.iter().map(|k| k.name.as_str()).collect();
                format!(
                    "{} {}{}",
                    s.address,
                    describe_sysfs(s),
                    if disks.is_empty() {
                        String::new()
                    } else {
                        format!(" with {}", disks.join(", "))
                    }
                )
            })
            .collect();
        out.push(Finding {
            severity: Severity::Critical,
            rule: PASSTHRU_BRIDGE_STORAGE,
            device: Some(b.conf.pci_address.clone()),
            message: format!(
                "PCI bridge {} is set to passthrough, and {} storage controller(s) sit behind it: {}. ESXi passes every device behind a bridge through with it, so at the next boot it loses those controllers and every disk on them",
                b.conf.all_forms(),
                behind.len(),
                list.join("; ")
            ),
            fix: Some(format!(
                "bootbank fix {} --device {} --both-banks, then pass through only the device a VM needs",
                report.target, b.conf.pci_address
            )),
        });
    }
}

/// [`TPM_RECOVERY_KEY`]: the TPM-sealed configuration's one way back. The command and the boot
/// option are VMware's own ("List the Contents of the Secure ESXi Configuration Recovery Key",
/// "Recover the Secure ESXi Configuration", vSphere Security 7.0/8.0).
fn tpm_recovery_rule(report: &Report, out: &mut Vec<Finding>) {
    let Some(c) = &report.config else { return };
    if c.encryption != crate::format::envelope::Encryption::Tpm {
        return;
    }
    out.push(Finding {
        severity: Severity::Warning,
        rule: TPM_RECOVERY_KEY,
        device: None,
        message: format!(
            "{}: the configuration is sealed by this host's TPM (encryption.info mode {}): after a TPM failure, a cleared TPM or a motherboard swap the host boots only with its recovery key, and no offline tool (bootbank included) can read or repair it. Record the recovery key now, while the host runs",
            c.source,
            c.encryption_mode.as_deref().unwrap_or("?")
        ),
        fix: Some(
            "on the host: esxcli system settings encryption recovery list, and store the Recovery ID and Key off the host; to recover later, boot with Shift+O and add encryptionRecoveryKey=<key>, then /sbin/auto-backup.sh".to_string(),
        ),
    });
}

/// One line of `etc/vmware/passthru.map`: `vendor device resetMethod fptShareable` (hex ids;
/// `ffff` as device means every device of the vendor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// The 1-based line number in passthru.map, for messages.
    pub line: usize,
    /// The PCI vendor id (first column).
    pub vendor: u16,
    /// The PCI device id (second column); `0xffff` means every device of `vendor`.
    pub device: u16,
    /// The reset method as written (third column: `d3d0`, `bridge`, ...); empty when missing. The
    /// fourth column, fptShareable, is not kept.
    pub reset: String,
}

/// Parses passthru.map, skipping comments, blank and malformed lines.
pub fn parse_passthru_map(text: &str) -> Vec<MapEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split('#').next().unwrap_or("").trim();
            let mut f = l.split_whitespace();
            let vendor = u16::from_str_radix(f.next()?, 16).ok()?;
            let device = u16::from_str_radix(f.next()?, 16).ok()?;
            let reset = f.next().unwrap_or("").to_string();
            Some(MapEntry {
                line: i + 1,
                vendor,
                device,
                reset,
            })
        })
        .collect()
}

/// Whether a controller is a storage or USB one: by its class when sysfs knows the device, else
/// by words in its pci.ids name (the map holds only ids).
fn storage_or_usb(class: Option<u32>, name: Option<&str>) -> bool {
    if let Some(c) = class {
        return c >> 16 == 0x01 || c >> 8 == 0x0c03;
    }
    let Some(n) = name else { return false };
    let n = n.to_ascii_lowercase();
    [
        "sata", "ahci", "raid", "sas", "nvme", "scsi", "storage", "usb", "xhci", "ehci", "fibre",
        "hba", "ide ",
    ]
    .iter()
    .any(|w| n.contains(w))
}

fn map_rules(cfg: &Config, report: &Report, out: &mut Vec<Finding>) {
    let Some(local) = &cfg.local else { return };
    let Some(m) = local.member("etc/vmware/passthru.map") else {
        return;
    };
    let text = String::from_utf8_lossy(local.data(m));
    let entries = parse_passthru_map(&text);
    if entries.is_empty() {
        return;
    }
    let ids = PciIds::load();
    for e in entries {
        // Devices of this machine with these ids, when sysfs enrichment ran.
        let seen = report
            .devices
            .iter()
            .filter_map(|d| d.sysfs.as_ref())
            .find(|s| s.vendor_id == e.vendor && (e.device == 0xffff || s.device_id == e.device));
        let name = if e.device == 0xffff {
            None
        } else {
            ids.device_name(e.vendor, e.device)
        };
        if !storage_or_usb(seen.map(|s| s.class), name.as_deref()) {
            continue;
        }
        let vendor = ids
            .vendor_name(e.vendor)
            .unwrap_or_else(|| "unknown vendor".to_string());
        out.push(Finding {
            severity: Severity::Warning,
            rule: PASSTHRU_MAP_STORAGE,
            device: seen.map(|s| s.address.to_string()),
            message: format!(
                "etc/vmware/passthru.map line {}: {:04x} {:04x} {} makes {} {} passthrough-capable: one wrong tick in the DirectPath dialog then hands a storage or USB controller to a VM",
                e.line,
                e.vendor,
                e.device,
                e.reset,
                vendor,
                name.as_deref().unwrap_or("(every device of this vendor)")
            ),
            fix: Some(
                "remove the line on the host unless a VM really needs this controller".to_string(),
            ),
        });
    }
}

/// [`PASSTHRU_MAP_BOOT_CONTROLLER`]: a passthru.map line whose ids match, in sysfs, a storage
/// controller that holds (or sits above) the inspected disk or a disk mounted here. Every
/// function sysfs shows is matched, not only those the configuration lists (a 7.0U2+ esx.conf
/// lists none). The line format, `vendor device resetMethod fptShareable` in hex with `ffff`
/// for every device of the vendor, is that of the file ESXi ships (reference section 6).
fn map_boot_controller_rule(cfg: &Config, report: &Report, opts: &Options, out: &mut Vec<Finding>) {
    let Some(local) = &cfg.local else { return };
    let Some(m) = local.member("etc/vmware/passthru.map") else {
        return;
    };
    let entries = parse_passthru_map(&String::from_utf8_lossy(local.data(m)));
    if entries.is_empty() {
        return;
    }
    let all = sysfs_devices(report, opts);
    for e in &entries {
        for s in all.iter().filter(|s| {
            s.vendor_id == e.vendor
                && (e.device == 0xffff || s.device_id == e.device)
                && is_storage_class(s.class)
        }) {
            let held: Vec<&str> = s
                .disks
                .iter()
                .filter(|k| k.inspected || k.mounted)
                .map(|k| k.name.as_str())
                .collect();
            if held.is_empty() {
                continue;
            }
            out.push(Finding {
                severity: Severity::Warning,
                rule: PASSTHRU_MAP_BOOT_CONTROLLER,
                device: Some(s.address.to_string()),
                message: format!(
                    "etc/vmware/passthru.map line {}: {:04x} {:04x} {} makes {} {} passthrough-capable, and that controller holds {} (the disk being inspected or one mounted here): the DirectPath dialog then offers ESXi's own disk controller",
                    e.line,
                    e.vendor,
                    e.device,
                    e.reset,
                    s.address,
                    describe_sysfs(s),
                    held.join(", ")
                ),
                fix: Some(format!(
                    "remove line {} from /etc/vmware/passthru.map on the host (then /sbin/auto-backup.sh), unless a VM needs this very controller",
                    e.line
                )),
            });
        }
    }
}

/// [`PASSTHRU_MANAGEMENT_UPLINK`]: a passed-through device that is, by its vmkernel name
/// (`vmnic0`) or its PCI address, an uplink of the management vmknic's vSwitch. Read from the
/// store the build obeys (`ops::network`); esx.conf names vmknics only by index, so on builds
/// before 7.0U2 the management vSwitch, and this rule, are not told.
fn management_uplink_rule(cfg: &Config, report: &Report, out: &mut Vec<Finding>) {
    let obeyed = report
        .config
        .as_ref()
        .and_then(|c| c.device_ownership.as_ref());
    let Ok(net) = crate::ops::network::host_network(cfg, obeyed, &report.target) else {
        return;
    };
    let Some(vmk) = net.management_vmknic() else {
        return;
    };
    let vswitch = vmk.vswitch.clone().unwrap_or_else(|| "?".to_string());
    let mut names: Vec<String> = vmk.uplinks.clone();
    if let Some(sw) = net
        .switches
        .iter()
        .find(|s| Some(&s.name) == vmk.vswitch.as_ref())
    {
        names.extend(sw.uplinks.iter().cloned());
    }
    names.sort();
    names.dedup();
    for d in report.devices.iter().filter(|d| d.conf.is_passthru()) {
        let by_pci = net.nics.iter().find(|n| {
            names.contains(&n.name) && n.pci_address.as_deref() == Some(d.conf.pci_address.as_str())
        });
        let name = match (d.conf.vmkname.as_deref(), by_pci) {
            (Some(n), _) if names.iter().any(|x| x == n) => n.to_string(),
            (_, Some(n)) => n.name.clone(),
            _ => continue,
        };
        let addr = &d.conf.pci_address;
        out.push(Finding {
            severity: Severity::Critical,
            rule: PASSTHRU_MANAGEMENT_UPLINK,
            device: Some(addr.clone()),
            message: format!(
                "device {} is set to passthrough and is {name}, an uplink of {vswitch}, the vSwitch carrying the management vmknic {}: ESXi will not use it at the next boot{}",
                d.conf.all_forms(),
                vmk.device,
                if names.len() == 1 {
                    ", and it is the switch's only uplink: the host comes up without a management network"
                } else {
                    ""
                }
            ),
            fix: Some(format!(
                "bootbank fix {} --device {addr} --both-banks",
                report.target
            )),
        });
    }
}

/// Devices a configuration passes through, read where its build reads them (esx.conf or the
/// ConfigStore); `build` is the bank's boot.cfg build.
fn passthru_set(cfg: &Config, build: Option<&str>) -> Option<BTreeSet<PciAddress>> {
    let conf = cfg.esx_conf.as_ref()?;
    let store = cfg.local.as_ref().and_then(|l| {
        crate::esxi::configstore::ConfigStore::from_local(l)
            .ok()
            .flatten()
    });
    let (_, devices) = inspect::devices_of(
        Some(conf),
        store.as_ref(),
        build.map(|b| (b.to_string(), "boot.cfg")),
    );
    Some(
        devices
            .into_iter()
            .filter(|d| d.is_passthru())
            .map(|d| d.address)
            .collect(),
    )
}

fn bank_rules(
    report: &Report,
    next_cfg: Option<&Config>,
    other_cfg: Option<&Config>,
    out: &mut LintReport,
) {
    let Some(next) = report.banks.iter().find(|b| b.boots_next) else {
        return;
    };
    let others: Vec<_> = report
        .banks
        .iter()
        .filter(|b| b.valid && !b.boots_next)
        .collect();
    let Some(other) = others.first() else {
        out.findings.push(Finding {
            severity: Severity::Info,
            rule: NO_ROLLBACK,
            device: None,
            message: format!(
                "no other valid bank: a rollback (Shift+R) has nothing to go back to; partition {} is the only bootable image",
                next.partition.unwrap_or(0)
            ),
            fix: None,
        });
        return;
    };
    let (p_next, p_other) = (next.partition.unwrap_or(0), other.partition.unwrap_or(0));
    if other.updated < next.updated {
        out.findings.push(Finding {
            severity: Severity::Info,
            rule: ROLLBACK_OLDER,
            device: None,
            message: format!(
                "a rollback boots partition {p_other}: build {} (updated {}), older than partition {p_next}'s {} (updated {}), with that bank's own, older configuration",
                other.build.as_deref().unwrap_or("?"),
                other.updated.unwrap_or(0),
                next.build.as_deref().unwrap_or("?"),
                next.updated.unwrap_or(0)
            ),
            fix: None,
        });
    }
    if let (Some(a), Some(b)) = (
        // The next bank's devices are the report's own (read once, by inspect); a sealed
        // configuration has none to compare.
        next_cfg.filter(|c| c.esx_conf.is_some()).map(|_| {
            report
                .devices
                .iter()
                .filter(|d| d.conf.is_passthru())
                .map(|d| d.conf.address)
                .collect::<BTreeSet<PciAddress>>()
        }),
        other_cfg.and_then(|c| passthru_set(c, other.build.as_deref())),
    ) && a != b
    {
        let list = |s: Vec<&PciAddress>| {
            if s.is_empty() {
                "none".to_string()
            } else {
                s.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        out.findings.push(Finding {
            severity: Severity::Warning,
            rule: BANKS_DISAGREE,
            device: None,
            message: format!(
                "the banks pass different devices through: only partition {p_next} (boots next): {}; only partition {p_other} (a rollback): {}. A rollback (Shift+R) changes what ESXi keeps",
                list(a.difference(&b).collect()),
                list(b.difference(&a).collect())
            ),
            fix: Some(format!(
                "bootbank fix {} --all-storage --both-banks, or decide which bank is right",
                report.target
            )),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthru_map_lines_are_read() {
        let m = parse_passthru_map(
            "# NVIDIA\n10de  ffff  bridge  false\n\n8086 1d02 d3d0 default # Intel SATA\nbad line\n",
        );
        assert_eq!(
            m,
            vec![
                MapEntry {
                    line: 2,
                    vendor: 0x10de,
                    device: 0xffff,
                    reset: "bridge".into()
                },
                MapEntry {
                    line: 4,
                    vendor: 0x8086,
                    device: 0x1d02,
                    reset: "d3d0".into()
                },
            ]
        );
    }

    #[test]
    fn storage_and_usb_controllers_are_recognised() {
        assert!(storage_or_usb(Some(0x010601), None));
        assert!(storage_or_usb(Some(0x0c0330), None));
        assert!(!storage_or_usb(Some(0x030000), Some("SATA (wrong name)")));
        assert!(storage_or_usb(
            None,
            Some("C600/X79 series chipset 6-Port SATA AHCI Controller")
        ));
        assert!(!storage_or_usb(None, Some("GK104GL [GRID K2]")));
        assert!(!storage_or_usb(None, None));
    }
}
