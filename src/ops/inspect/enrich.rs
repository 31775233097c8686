//! Joins esx.conf's devices with what the rescue system's kernel sees in sysfs, so the user can
//! match the address ESXi saw to the card in the machine and to the disks behind it.
//!
//! Enrichment never fails an inspection: a sysfs tree that cannot be read becomes a warning.

use super::Report;
use crate::format::pciids::PciIds;
use crate::host::sysfs::Sysfs;
use std::path::Path;

/// Fills `sysfs` on every device of the report. `disk_name` marks the inspected disk in the
/// tree; without it, a block-device target is looked up through the live `/sys`.
pub fn enrich(report: &mut Report, root: &Path, disk_name: Option<&str>, target: Option<&Path>) {
    let sysfs = match open_marked(root, disk_name, target) {
        Ok(s) => s,
        Err(e) => {
            report
                .warnings
                .push(format!("sysfs enrichment skipped: {e}"));
            return;
        }
    };
    let ids = PciIds::load();
    report.sysfs_root = Some(root.display().to_string());
    report.pci_ids = Some(ids.source().to_string());
    for d in &mut report.devices {
        d.sysfs = sysfs.device(d.conf.address, &ids);
    }
}

/// The sysfs tree at `root` with the inspected disk marked: `disk_name`, else (in the live
/// tree only) the disk of the block-device `target`. Also for lint's rules that look at every
/// PCI function, not only those the configuration lists.
pub fn open_marked(
    root: &Path,
    disk_name: Option<&str>,
    target: Option<&Path>,
) -> Result<Sysfs, crate::host::sysfs::SysfsError> {
    let mut sysfs = Sysfs::open(root)?;
    let inspected = disk_name.map(str::to_string).or_else(|| {
        // Device numbers of a /dev node only mean something in the live tree.
        sysfs
            .is_live()
            .then(|| target.and_then(|t| sysfs.disk_of_device_file(t)))
            .flatten()
    });
    if let Some(name) = &inspected {
        sysfs.set_inspected(name);
    }
    Ok(sysfs)
}
