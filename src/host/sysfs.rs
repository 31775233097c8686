//! What the rescue system's kernel knows about a PCI device, read from sysfs.
//!
//! esx.conf names devices only by address (see `pci`). To tell the user which card that is, and
//! above all whether the disk being repaired hangs off it (the story's MegaRAID controller handed
//! to passthrough), we read the device's ids, driver and bridge chain from `/sys`, and find the
//! disks below it by resolving the `block/` links.
//!
//! The root may be the live `/sys` or a copy captured with `tests/tools/capture-sysfs`. Symlinks
//! are resolved by hand, relative to the link's own directory inside the root: a link that would
//! leave the root, or an absolute link, is treated as missing. Every read is tolerant: a missing
//! file or link yields `None`, never an error, because sysfs layouts differ between kernels.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use crate::esxi::pci::PciAddress;
use crate::format::pciids::PciIds;

/// Why a directory cannot be used as a sysfs root.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// The root cannot be examined at all (missing, no permission).
    #[error("cannot open sysfs root {}: {cause}", path.display())]
    Io {
        /// The root as given (`--sysfs`, or `/sys`).
        path: PathBuf,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// The root is a file or device, e.g. a disk given where the sysfs tree was expected.
    #[error("sysfs root {} is not a directory", path.display())]
    NotADirectory {
        /// The root as given.
        path: PathBuf,
    },
    /// A directory without any of the parts we read: most likely the wrong directory.
    #[error(
        "{} does not look like sysfs: none of bus/pci/devices, devices, block, class/block, dev/block is a directory",
        path.display()
    )]
    NotSysfs {
        /// The root as given.
        path: PathBuf,
    },
}

/// A disk found below a PCI device, as the user needs it to decide whether that device may be
/// given to passthrough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysfsDisk {
    /// Kernel name of the whole disk (`sda`, `nvme0n1`).
    pub name: String,
    /// The PCI function nearest to the disk, i.e. its storage controller.
    #[serde(serialize_with = "ser::addr")]
    pub controller: PciAddress,
    /// True when the device listed is a bridge above `controller` rather than the controller
    /// itself: passing the bridge through takes the disk away as well.
    pub via_bridge: bool,
    /// True for the disk being inspected (see [`Sysfs::set_inspected`]).
    pub inspected: bool,
    /// True when the disk or one of its partitions is mounted on this system. Only known when
    /// the root is the live `/sys`; always false for a captured tree.
    pub mounted: bool,
}

/// One PCI function as the rescue system's kernel sees it, with names and the disks below it.
///
/// Serialized ids are lower-case hex strings without `0x` (`"1000"`, class `"010400"`), the way
/// `lspci -n` prints them, and addresses are in lspci form (`"0000:16:00.0"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysfsDevice {
    /// The function's address, as esx.conf's address was matched to it.
    #[serde(serialize_with = "ser::addr")]
    pub address: PciAddress,
    /// Vendor id as the kernel read it from the card (`1000` is Broadcom/LSI), to check
    /// against what the user expects.
    #[serde(serialize_with = "ser::hex4")]
    pub vendor_id: u16,
    /// Device id, the chip within the vendor's range; the pair is what `lspci -n` prints.
    #[serde(serialize_with = "ser::hex4")]
    pub device_id: u16,
    /// 24-bit class code: class, subclass, programming interface.
    #[serde(serialize_with = "ser::hex6")]
    pub class: u32,
    /// Board maker's vendor id: tells apart two identical chips on different cards. None if
    /// the kernel does not show it (no `subsystem_vendor` file, or unreadable).
    #[serde(serialize_with = "ser::opt_hex4")]
    pub subsystem_vendor: Option<u16>,
    /// Board maker's own id for the card, with `subsystem_vendor`. None if unreadable.
    #[serde(serialize_with = "ser::opt_hex4")]
    pub subsystem_device: Option<u16>,
    /// Vendor name from the pci.ids database; None when it does not know `vendor_id`.
    pub vendor_name: Option<String>,
    /// Device name from the pci.ids database; None when it does not know the vendor and device
    /// id pair.
    pub device_name: Option<String>,
    /// Name of the subclass (`RAID bus controller`), or of the class when the subclass is not
    /// listed, from the pci.ids database; None when it knows neither.
    pub class_name: Option<String>,
    /// Name of the bound kernel driver (`megaraid_sas`), None when no driver is bound.
    pub driver: Option<String>,
    /// PCI-to-PCI bridge (class 0x0604xx, or 0x0609xx semi-transparent): ESXi passes every
    /// device behind a bridge through with it.
    pub is_bridge: bool,
    /// The PCI functions above this one, from the root complex down to its nearest parent.
    #[serde(serialize_with = "ser::addrs")]
    pub upstream: Vec<PciAddress>,
    /// Disks whose controller is this device or lies behind it.
    pub disks: Vec<SysfsDisk>,
}

/// A whole disk and the PCI functions on its sysfs path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDisk {
    /// Kernel name of the whole disk.
    pub name: String,
    /// PCI functions on the disk's device path, from the root complex down to the controller;
    /// empty for virtual disks (loop, zram, dm).
    #[serde(serialize_with = "ser::addrs")]
    pub pci_path: Vec<PciAddress>,
}

impl BlockDisk {
    /// The storage controller: the PCI function nearest to the disk.
    pub fn controller(&self) -> Option<PciAddress> {
        self.pci_path.last().copied()
    }
}

/// A whole disk with its resolved path, kept to map partitions and dev numbers back to it.
#[derive(Debug)]
struct DiskEntry {
    disk: BlockDisk,
    path: PathBuf,
}

/// A sysfs tree, live or captured.
///
/// The disk list and mount table are read once, on first use, and then kept: a run of the tool
/// looks at a machine whose disks do not change meanwhile.
#[derive(Debug)]
pub struct Sysfs {
    root: PathBuf,
    live: bool,
    inspected: Option<String>,
    disks: OnceLock<Vec<DiskEntry>>,
    mounted: OnceLock<BTreeSet<String>>,
}

/// Most symlinks followed while resolving one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;

impl Sysfs {
    /// Opens `root` (`/sys` or a captured copy). Fails only when `root` is not a directory that
    /// looks like sysfs; everything read later is tolerant of missing parts.
    pub fn open(root: &Path) -> Result<Sysfs, SysfsError> {
        let meta = fs::metadata(root).map_err(|cause| SysfsError::Io {
            path: root.to_path_buf(),
            cause,
        })?;
        if !meta.is_dir() {
            return Err(SysfsError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let markers = [
            "bus/pci/devices",
            "devices",
            "block",
            "class/block",
            "dev/block",
        ];
        if !markers.iter().any(|m| root.join(m).is_dir()) {
            return Err(SysfsError::NotSysfs {
                path: root.to_path_buf(),
            });
        }
        let live = fs::canonicalize(root).is_ok_and(|p| p == Path::new("/sys"));
        Ok(Sysfs {
            root: root.to_path_buf(),
            live,
            inspected: None,
            disks: OnceLock::new(),
            mounted: OnceLock::new(),
        })
    }

    /// The directory this tree was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is the running kernel's `/sys`, so that mount state and device files
    /// in `/dev` refer to the same disks.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Marks the disk being inspected, so that the device listing can point at it. A partition
    /// name (`sda5`) marks its whole disk; an unknown name is kept as given.
    pub fn set_inspected(&mut self, disk: &str) {
        let name = self
            .disk_by_name(disk)
            .map(|d| d.name)
            .unwrap_or_else(|| disk.to_string());
        self.inspected = Some(name);
    }

    /// The whole-disk name set by [`Sysfs::set_inspected`].
    pub fn inspected(&self) -> Option<&str> {
        self.inspected.as_deref()
    }

    /// Every PCI function listed in `bus/pci/devices`, sorted.
    pub fn pci_addresses(&self) -> Vec<PciAddress> {
        let mut out: Vec<PciAddress> = read_dir_names(&self.root.join("bus/pci/devices"))
            .iter()
            .filter_map(|n| n.to_str().and_then(parse_sysfs_address))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every PCI function with its names and disks, sorted by address.
    pub fn devices(&self, ids: &PciIds) -> Vec<SysfsDevice> {
        self.pci_addresses()
            .into_iter()
            .filter_map(|a| self.device(a, ids))
            .collect()
    }

    /// The device at `addr`, or None when this tree has no such function or its vendor, device
    /// or class id cannot be read.
    pub fn device(&self, addr: PciAddress, ids: &PciIds) -> Option<SysfsDevice> {
        let resolved = self.resolve(&Path::new("bus/pci/devices").join(addr.to_string()))?;
        let dir = self.root.join(&resolved);
        if !dir.is_dir() {
            return None;
        }
        let attr = |name: &str| -> Option<u32> {
            let file = self.resolve(&resolved.join(name))?;
            let text = fs::read_to_string(self.root.join(file)).ok()?;
            let t = text.trim();
            let hex = t
                .strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .unwrap_or(t);
            u32::from_str_radix(hex, 16).ok()
        };
        let id16 = |name: &str| attr(name).and_then(|v| u16::try_from(v).ok());
        let vendor_id = id16("vendor")?;
        let device_id = id16("device")?;
        let class = attr("class")? & 0x00ff_ffff;
        // Only the link's last component is used, so an absolute or dangling link is harmless.
        let driver = fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));

        let chain = pci_components(&resolved);
        let upstream = match chain.iter().rposition(|a| *a == addr) {
            Some(i) => chain[..i].to_vec(),
            None => chain,
        };

        let mounted = self.mounted();
        let disks = self
            .disk_entries()
            .iter()
            .filter(|e| e.disk.pci_path.contains(&addr))
            .filter_map(|e| {
                let controller = e.disk.controller()?;
                Some(SysfsDisk {
                    name: e.disk.name.clone(),
                    controller,
                    via_bridge: controller != addr,
                    inspected: self.inspected.as_deref() == Some(e.disk.name.as_str()),
                    mounted: mounted.contains(&e.disk.name),
                })
            })
            .collect();

        let class_code = class >> 8;
        Some(SysfsDevice {
            address: addr,
            vendor_id,
            device_id,
            class,
            subsystem_vendor: id16("subsystem_vendor"),
            subsystem_device: id16("subsystem_device"),
            vendor_name: ids.vendor_name(vendor_id),
            device_name: ids.device_name(vendor_id, device_id),
            class_name: ids.class_name(class),
            driver,
            is_bridge: class_code == 0x0604 || class_code == 0x0609,
            upstream,
            disks,
        })
    }

    /// Every whole disk in `block/` and `class/block/` with its PCI path, sorted by name.
    pub fn disks(&self) -> Vec<BlockDisk> {
        self.disk_entries().iter().map(|e| e.disk.clone()).collect()
    }

    /// The whole disk called `name`, or the disk holding partition `name` (`sda5` gives `sda`).
    pub fn disk_by_name(&self, name: &str) -> Option<BlockDisk> {
        if !is_plain_name(name) {
            return None;
        }
        let entries = self.disk_entries();
        if let Some(e) = entries.iter().find(|e| e.disk.name == name) {
            return Some(e.disk.clone());
        }
        let path = self.resolve(&Path::new("class/block").join(name))?;
        let parent = path.parent()?;
        entries
            .iter()
            .find(|e| e.path == parent)
            .map(|e| e.disk.clone())
    }

    /// The whole-disk name for a block device number (`8:5` gives `sda`), via `dev/block`.
    /// This is how the disk behind an opened `/dev` node or image mount is found.
    pub fn disk_of_block_device(&self, major: u32, minor: u32) -> Option<String> {
        let path = self.resolve(&Path::new("dev/block").join(format!("{major}:{minor}")))?;
        let entries = self.disk_entries();
        if let Some(e) = entries.iter().find(|e| e.path == path) {
            return Some(e.disk.name.clone());
        }
        if let Some(e) = entries
            .iter()
            .find(|e| Some(e.path.as_path()) == path.parent())
        {
            return Some(e.disk.name.clone());
        }
        // Not listed in block/: decide from the layout, a partition sits inside its disk.
        let here = path.file_name()?;
        if self.root.join(&path).join("partition").is_file() {
            return path
                .parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
        }
        Some(here.to_string_lossy().into_owned())
    }

    /// The whole-disk name for a block device file such as `/dev/sda1`, from its device number.
    /// Meaningful only for the live `/sys` (see [`Sysfs::is_live`]); None for other files.
    pub fn disk_of_device_file(&self, path: &Path) -> Option<String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = fs::metadata(path).ok()?;
        if !meta.file_type().is_block_device() {
            return None;
        }
        let (major, minor) = split_dev(meta.rdev());
        self.disk_of_block_device(major, minor)
    }

    fn disk_entries(&self) -> &[DiskEntry] {
        self.disks.get_or_init(|| self.scan_disks())
    }

    fn scan_disks(&self) -> Vec<DiskEntry> {
        let mut whole: BTreeMap<String, PathBuf> = BTreeMap::new();
        for name in read_dir_names(&self.root.join("block")) {
            let Some(name) = name.to_str().filter(|n| is_plain_name(n)) else {
                continue;
            };
            if let Some(p) = self.resolve(&Path::new("block").join(name)) {
                whole.insert(name.to_string(), p);
            }
        }
        // class/block lists partitions too: a partition's directory sits inside its disk's.
        let mut class: BTreeMap<String, PathBuf> = BTreeMap::new();
        for name in read_dir_names(&self.root.join("class/block")) {
            let Some(name) = name.to_str().filter(|n| is_plain_name(n)) else {
                continue;
            };
            if let Some(p) = self.resolve(&Path::new("class/block").join(name)) {
                class.insert(name.to_string(), p);
            }
        }
        let dirs: BTreeSet<&Path> = whole
            .values()
            .chain(class.values())
            .map(PathBuf::as_path)
            .collect();
        let more: Vec<(String, PathBuf)> = class
            .iter()
            .filter(|(name, path)| {
                !whole.contains_key(*name)
                    && !path.parent().is_some_and(|p| dirs.contains(p))
                    && !self.root.join(path).join("partition").is_file()
            })
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        whole.extend(more);
        whole
            .into_iter()
            .map(|(name, path)| DiskEntry {
                disk: BlockDisk {
                    name,
                    pci_path: pci_components(&path),
                },
                path,
            })
            .collect()
    }

    /// Names of whole disks with a mounted filesystem on them, directly or through a dm/md
    /// device; read from `/proc/self/mounts` for the live `/sys` only.
    fn mounted(&self) -> &BTreeSet<String> {
        self.mounted.get_or_init(|| {
            let mut out = BTreeSet::new();
            if !self.live {
                return out;
            }
            let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
                return out;
            };
            for line in mounts.lines() {
                let Some(src) = line.split_whitespace().next() else {
                    continue;
                };
                // Mount sources escape blanks as octal (`\040`); device paths never have them.
                if !src.starts_with("/dev/") {
                    continue;
                }
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                match fs::metadata(src) {
                    Ok(meta) if meta.file_type().is_block_device() => {
                        let (major, minor) = split_dev(meta.rdev());
                        self.collect_backing_disks(major, minor, &mut out);
                    }
                    Ok(_) => {}
                    // No such node here (a container's /dev): go by the kernel name.
                    Err(_) => {
                        if let Some(d) = self.disk_by_name(&src["/dev/".len()..]) {
                            out.insert(d.name);
                        }
                    }
                }
            }
            out
        })
    }

    /// Adds the whole disks under block device `major:minor`, following dm/md `slaves` links.
    fn collect_backing_disks(&self, major: u32, minor: u32, out: &mut BTreeSet<String>) {
        let Some(path) = self.resolve(&Path::new("dev/block").join(format!("{major}:{minor}")))
        else {
            return;
        };
        let mut queue = vec![(path, 0usize)];
        while let Some((path, depth)) = queue.pop() {
            let slaves = read_dir_names(&self.root.join(&path).join("slaves"));
            if slaves.is_empty() || depth >= 8 {
                if let Some(name) = self.disk_of_resolved(&path) {
                    out.insert(name);
                }
                continue;
            }
            for s in slaves {
                if let Some(p) = self.resolve(&path.join("slaves").join(&s)) {
                    queue.push((p, depth + 1));
                }
            }
        }
    }

    fn disk_of_resolved(&self, path: &Path) -> Option<String> {
        self.disk_entries()
            .iter()
            .find(|e| e.path == path || Some(e.path.as_path()) == path.parent())
            .map(|e| e.disk.name.clone())
    }

    /// Resolves `rel` (relative to the root) with every symlink followed inside the root.
    /// Returns the path relative to the root, or None if a component of `rel` itself does not
    /// exist, a link is absolute, would climb out of the root, or links loop. Components that
    /// come from a link target may be missing and are kept as written: a captured tree checked
    /// out from git has lost its empty directories, and only the names on the path matter.
    fn resolve(&self, rel: &Path) -> Option<PathBuf> {
        // (component, came from a link target)
        let mut pending: VecDeque<(OsString, bool)> = VecDeque::new();
        push_components(&mut pending, rel, false)?;
        let mut done = PathBuf::new();
        let mut links = 0;
        while let Some((part, from_link)) = pending.pop_front() {
            if part == OsStr::new("..") {
                if !done.pop() {
                    return None;
                }
                continue;
            }
            let candidate = self.root.join(&done).join(&part);
            let meta = fs::symlink_metadata(&candidate);
            if meta.is_err() && !from_link {
                return None;
            }
            if !meta.is_ok_and(|m| m.file_type().is_symlink()) {
                done.push(&part);
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = fs::read_link(&candidate).ok()?;
            let mut parts = VecDeque::new();
            push_components(&mut parts, &target, true)?;
            while let Some(p) = parts.pop_back() {
                pending.push_front(p);
            }
        }
        Some(done)
    }
}

/// Appends `path`'s components, `..` kept as a component; None for an absolute path.
fn push_components(
    out: &mut VecDeque<(OsString, bool)>,
    path: &Path,
    from_link: bool,
) -> Option<()> {
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push_back((n.to_os_string(), from_link)),
            Component::CurDir => {}
            Component::ParentDir => out.push_back((OsString::from(".."), from_link)),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(())
}

/// Lists a directory's entry names; an unreadable or missing directory lists nothing.
fn read_dir_names(dir: &Path) -> Vec<OsString> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect()
}

/// A single path component that cannot walk elsewhere.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The PCI functions named by the components of a sysfs device path, in path order.
fn pci_components(path: &Path) -> Vec<PciAddress> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str().and_then(parse_sysfs_address),
            _ => None,
        })
        .collect()
}

/// Parses a sysfs PCI function name, `SSSS:BB:DD.F` exactly; other sysfs names (`pci0000:00`,
/// SCSI `0:2:0:0`, USB `2-1:1.0`) and domains beyond 16 bits (Intel VMD) are not functions.
fn parse_sysfs_address(name: &str) -> Option<PciAddress> {
    let b = name.as_bytes();
    let shape = b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11]
            .iter()
            .all(|&i| b[i].is_ascii_hexdigit());
    if !shape {
        return None;
    }
    PciAddress::parse_pci(name).ok()
}

/// Splits a Linux `dev_t` into major and minor numbers (glibc's encoding).
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major as u32, minor as u32)
}

mod ser {
    use super::PciAddress;
    use serde::Serializer;
    use serde::ser::SerializeSeq;

    pub fn addr<S: Serializer>(a: &PciAddress, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub fn addrs<S: Serializer>(v: &[PciAddress], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for a in v {
            seq.serialize_element(&a.to_string())?;
        }
        seq.end()
    }

    pub fn hex4<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:04x}"))
    }

    pub fn opt_hex4<S: Serializer>(v: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => hex4(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn hex6<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:06x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_addresses_are_exact() {
        assert_eq!(
            parse_sysfs_address("0000:16:00.0"),
            Some(PciAddress::new(0, 0x16, 0, 0))
        );
        assert_eq!(
            parse_sysfs_address("0000:00:1f.2"),
            Some(PciAddress::new(0, 0, 0x1f, 2))
        );
        for n in [
            "pci0000:00",
            "0:2:0:0",
            "2-1:1.0",
            "16:00.0",
            "10000:e0:17.0",
            "0000:00:20.0",
            "0000:00:1f.8",
        ] {
            assert_eq!(parse_sysfs_address(n), None, "{n}");
        }
    }

    #[test]
    fn pci_path_skips_non_pci_components() {
        let p = Path::new(
            "devices/pci0000:00/0000:00:03.0/0000:16:00.0/host0/target0:2:0/0:2:0:0/block/sda",
        );
        assert_eq!(
            pci_components(p),
            vec![PciAddress::new(0, 0, 3, 0), PciAddress::new(0, 0x16, 0, 0)]
        );
    }

    #[test]
    fn dev_numbers_split_like_glibc() {
        assert_eq!(split_dev(0x0801), (8, 1));
        assert_eq!(split_dev(0x10300), (259, 0));
        // major 259, minor 300: minor's high bits live above bit 20.
        let dev = (259u64 << 8) | (300 & 0xff) | ((300u64 & !0xff) << 12);
        assert_eq!(split_dev(dev), (259, 300));
    }
}
