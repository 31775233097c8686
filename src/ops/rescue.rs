//! `rescue`: the library half of the command a rescue system runs at boot. It finds every ESXi
//! boot disk among this machine's block devices, judges each one as `lint` does with this
//! machine's hardware (so that "the controller of this very disk is set to passthrough" is
//! said in those words), and plans the fix of every critical finding.
//!
//! Nothing here writes: the plan is `ops::fix::plan`'s, and writing stays with
//! `ops::fix::apply`, called by the command after the user said yes (or the unattended mode
//! asked for it), so the rescue path has exactly the safety of `bootbank fix`.

use crate::format::pciids::PciIds;
use crate::host::sysfs::{Sysfs, SysfsDevice, SysfsError};
use crate::ops::findings::{Finding, Severity};
use crate::ops::fix::{self, Banks, FixError, Options as FixOptions, Plan, Request};
use crate::ops::inspect::{self, Report};
use crate::ops::lint::{self, LintReport, PASSTHRU_TAKES_DISK};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// Where to look for disks: the sysfs tree that lists them and the directory of their device
/// files. A rescue system uses `/sys` and `/dev`; tests use a captured tree and image files.
#[derive(Debug, Clone)]
pub struct Where {
    /// Root of the sysfs tree (`/sys`): its `class/block` (or `block`) lists the disks and
    /// their size and model, and the PCI devices they hang behind.
    pub sysfs: PathBuf,
    /// Directory of the device files (`/dev`): a disk sysfs lists is read as `<dev>/<name>`.
    /// Not used for the disks the caller names itself.
    pub dev: PathBuf,
}

impl Default for Where {
    fn default() -> Self {
        Where {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// One ESXi boot disk found, with everything the verdict shows.
#[derive(Debug, Clone, Serialize)]
pub struct EsxDisk {
    /// Kernel name (`sda`, `nvme0n1`).
    pub name: String,
    /// The file it was read through (`/dev/sda`).
    pub device: String,
    /// Size in bytes, from sysfs (None when unreadable).
    pub size_bytes: Option<u64>,
    /// Vendor and model as the disk reports them (`QEMU HARDDISK`), when sysfs has them.
    pub model: Option<String>,
    /// The storage controller the disk hangs behind, named from sysfs and pci.ids.
    pub controller: Option<SysfsDevice>,
    /// Bridges between the root complex and the controller, nearest last.
    pub bridges: Vec<SysfsDevice>,
    /// `lint`'s findings (inspect's plus the hardware rules), most severe first.
    pub findings: Vec<Finding>,
    /// What inspect could not read on this disk (a bank's configuration, the ConfigStore in
    /// local.tgz), one sentence each; shown after the findings, never a finding themselves.
    pub warnings: Vec<String>,
    /// Devices (lspci form) whose passthrough setting takes this very disk away from ESXi:
    /// its controller or a bridge above it.
    pub takes_boot_disk: Vec<String>,
    /// Devices (lspci form) named by critical findings: what the fix gives back to the vmkernel.
    pub critical_devices: Vec<String>,
    /// Critical findings no device fix can repair (e.g. no bootable bank).
    pub critical_other: Vec<String>,
    /// inspect's report (banks, devices, configuration).
    #[serde(skip)]
    pub report: Report,
}

impl EsxDisk {
    /// inspect's report with lint's findings in place of its own, so that the usual verdict
    /// lines include what only the hardware tells (the boot disk's own controller).
    pub fn verdict_report(&self) -> Report {
        let mut r = self.report.clone();
        r.findings = self.findings.clone();
        r
    }

    /// True when something critical is found.
    pub fn has_critical(&self) -> bool {
        !self.critical_devices.is_empty() || !self.critical_other.is_empty()
    }
}

/// A block device that is not an ESXi boot disk (or could not be read), with why: shown so that
/// the user knows every disk was looked at.
#[derive(Debug, Clone, Serialize)]
pub struct OtherDisk {
    /// Kernel name (`sdb`); for a device file sysfs does not know, the path as given.
    pub name: String,
    /// The file it was read through (`/dev/sdb`, or the path as given).
    pub device: String,
    /// Size in bytes, from sysfs (None when unreadable).
    pub size_bytes: Option<u64>,
    /// Vendor and model as the disk reports them, when sysfs has them.
    pub model: Option<String>,
    /// Why it is not an ESXi boot disk: why it could not be read as one (the error's message),
    /// or the kind of target it holds instead (a lone bank partition, an archive).
    pub reason: String,
}

/// Every disk looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Scan {
    /// The ESXi boot disks, in the order sysfs lists them (or the caller named them); empty
    /// when none was found, which the command reports as exit 2.
    pub esxi: Vec<EsxDisk>,
    /// Every other disk read, with why it is not one. RAM, loop, optical, floppy, nbd and zram
    /// devices are skipped unread when scanning all disks and are not listed.
    pub other: Vec<OtherDisk>,
    /// The sysfs tree read (`Where::sysfs`), for the JSON report.
    pub sysfs_root: String,
    /// Which PCI ID database named the devices: `system:<path>` (the one `lspci` uses) or
    /// `built-in`.
    pub pci_ids: String,
}

/// Kernel names that are never an ESXi boot disk and that are slow or pointless to read: RAM
/// and loop devices, optical drives (the rescue media itself), floppies, compressed swap.
fn never_esxi(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd", "nbd"]
        .iter()
        .any(|p| name.starts_with(p) && name[p.len()..].chars().all(|c| c.is_ascii_digit()))
}

/// Finds the ESXi boot disks. `only` limits the search to these device files (each named as the
/// user typed it); empty means every whole disk sysfs lists.
pub fn scan(at: &Where, only: &[PathBuf]) -> Result<Scan, SysfsError> {
    let sysfs = Sysfs::open(&at.sysfs)?;
    let ids = PciIds::load();
    let mut wanted: Vec<(String, PathBuf)> = Vec::new();
    if only.is_empty() {
        for d in sysfs.disks() {
            if !never_esxi(&d.name) {
                wanted.push((d.name.clone(), at.dev.join(&d.name)));
            }
        }
    } else {
        for p in only {
            let name = sysfs
                .disk_of_device_file(p)
                .or_else(|| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| sysfs.disk_by_name(n))
                        .map(|d| d.name)
                })
                .unwrap_or_else(|| p.display().to_string());
            wanted.push((name, p.clone()));
        }
    }
    let mut out = Scan {
        esxi: Vec::new(),
        other: Vec::new(),
        sysfs_root: at.sysfs.display().to_string(),
        pci_ids: ids.source().to_string(),
    };
    for (name, device) in wanted {
        let size_bytes = read_attr(&at.sysfs, &name, "size")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|sectors| sectors * 512);
        let model = disk_model(&at.sysfs, &name);
        let opts = inspect::Options {
            sysfs: Some(at.sysfs.clone()),
            disk_name: Some(name.clone()),
            ..Default::default()
        };
        match lint::lint_with_report(&device, &opts) {
            Ok((l, report)) if report.kind == inspect::TargetKind::Disk => {
                out.esxi.push(judge(
                    &sysfs, &ids, name, &device, size_bytes, model, l, report,
                ));
            }
            Ok((_, report)) => out.other.push(OtherDisk {
                name,
                device: device.display().to_string(),
                size_bytes,
                model,
                reason: format!("holds a lone {:?}, not a boot disk", report.kind),
            }),
            Err(e) => out.other.push(OtherDisk {
                name,
                device: device.display().to_string(),
                size_bytes,
                model,
                reason: e.to_string(),
            }),
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)] // one call site; the parts of one disk, read once
fn judge(
    sysfs: &Sysfs,
    ids: &PciIds,
    name: String,
    device: &Path,
    size_bytes: Option<u64>,
    model: Option<String>,
    l: LintReport,
    report: Report,
) -> EsxDisk {
    let (controller, bridges) = match sysfs.disk_by_name(&name) {
        Some(d) => {
            let mut chain: Vec<SysfsDevice> = d
                .pci_path
                .iter()
                .filter_map(|a| sysfs.device(*a, ids))
                .collect();
            let c = chain.pop();
            (c, chain)
        }
        None => (None, Vec::new()),
    };
    let mut takes_boot_disk = Vec::new();
    let mut critical_devices = Vec::new();
    let mut critical_other = Vec::new();
    for f in l
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Critical)
    {
        match &f.device {
            Some(d) => {
                if f.rule == PASSTHRU_TAKES_DISK && !takes_boot_disk.contains(d) {
                    takes_boot_disk.push(d.clone());
                }
                if !critical_devices.contains(d) {
                    critical_devices.push(d.clone());
                }
            }
            None => critical_other.push(f.message.clone()),
        }
    }
    EsxDisk {
        name,
        device: device.display().to_string(),
        size_bytes,
        model,
        controller,
        bridges,
        findings: l.findings,
        warnings: l.warnings,
        takes_boot_disk,
        critical_devices,
        critical_other,
        report,
    }
}

/// The plan that gives every device of a critical finding back to the vmkernel, in every valid
/// bank (so that a rollback with Shift+R does not bring the mistake back). None when no
/// critical finding names a device.
pub fn plan_fix(disk: &EsxDisk) -> Result<Option<Plan>, FixError> {
    if disk.critical_devices.is_empty() {
        return Ok(None);
    }
    let opts = FixOptions {
        banks: Banks::Both,
        output: None,
    };
    let request = Request::Devices(
        disk.critical_devices
            .iter()
            .map(|d| format!("pci:{d}"))
            .collect(),
    );
    let plan = fix::plan(Path::new(&disk.device), &request, &opts)?;
    Ok(Some(plan))
}

/// Where the backup goes when the user names none: a rescue system booted from read-only media
/// often has no writable disk but the patient, so the default is RAM (`/run`, a tmpfs on every
/// Linux rescue system), in a directory named after the time; elsewhere the working directory,
/// as `fix` does.
pub fn default_backup_dir() -> PathBuf {
    let name = fix::default_backup_dir();
    let run = Path::new("/run");
    if is_volatile(run) && writable(run) {
        run.join(name)
    } else {
        name
    }
}

/// True when `path` lies on a RAM file system (tmpfs, ramfs), whose contents a power-off loses:
/// the user must be told, and how to keep them.
pub fn is_volatile(path: &Path) -> bool {
    let probe = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let Ok(st) = rustix::fs::statfs(probe) else {
        return false;
    };
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 but narrower elsewhere
    let t = st.f_type as i64;
    t == TMPFS_MAGIC || t == RAMFS_MAGIC
}

fn writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

fn read_attr(root: &Path, disk: &str, attr: &str) -> Option<String> {
    let t = fs::read_to_string(root.join("class/block").join(disk).join(attr))
        .or_else(|_| fs::read_to_string(root.join("block").join(disk).join(attr)))
        .ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn disk_model(root: &Path, disk: &str) -> Option<String> {
    let vendor = read_attr(root, disk, "device/vendor");
    let model = read_attr(root, disk, "device/model");
    match (vendor, model) {
        (Some(v), Some(m)) => Some(format!("{v} {m}")),
        (None, Some(m)) => Some(m),
        (Some(v), None) => Some(v),
        (None, None) => None,
    }
}
