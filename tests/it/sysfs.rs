//! Sysfs enrichment against fixture trees (concrete expected values) and against this machine's
//! own `/sys`, with `lspci` as the oracle.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use bootbank::pci::PciAddress;
use bootbank::pciids::PciIds;
use bootbank::sysfs::{BlockDisk, Sysfs, SysfsDevice, SysfsDisk, SysfsError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

fn capture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/capture-sysfs")
}

fn a(s: &str) -> PciAddress {
    PciAddress::parse_pci(s).unwrap()
}

/// A scratch directory removed on drop (no tempfile dependency needed for this much).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bootbank-sysfs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Copies a fixture tree (symlinks as symlinks) into `dst`.
fn copy_tree(src: &Path, dst: &Path) {
    run(Command::new("cp").arg("-a").arg(src).arg(dst));
}

fn capture(root: &Path, out: &Path) -> String {
    let o = run(Command::new("bash")
        .arg(capture_script())
        .arg(root)
        .arg(out));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn story() -> Sysfs {
    Sysfs::open(&fixture("story-host")).unwrap()
}

fn disk(name: &str, controller: &str, via_bridge: bool, inspected: bool) -> SysfsDisk {
    SysfsDisk {
        name: name.to_string(),
        controller: a(controller),
        via_bridge,
        inspected,
        mounted: false,
    }
}

/// Names in the two databases the tool may use; the fixtures' names are long-stable entries.
fn databases() -> Vec<PciIds> {
    vec![PciIds::load(), PciIds::builtin()]
}

#[test]
fn story_host_raid_controller() {
    let sys = story();
    assert!(!sys.is_live());
    for ids in databases() {
        let d = sys.device(a("0000:16:00.0"), &ids).unwrap();
        assert_eq!(d.address, a("16:00.0"));
        assert_eq!(
            (d.vendor_id, d.device_id, d.class),
            (0x1000, 0x005d, 0x010400)
        );
        assert_eq!(
            (d.subsystem_vendor, d.subsystem_device),
            (Some(0x1000), Some(0x9361))
        );
        assert_eq!(
            d.vendor_name.as_deref(),
            Some("Broadcom / LSI"),
            "{}",
            ids.source()
        );
        assert_eq!(
            d.device_name.as_deref(),
            Some("MegaRAID SAS-3 3108 [Invader]")
        );
        assert_eq!(d.class_name.as_deref(), Some("RAID bus controller"));
        assert_eq!(d.driver.as_deref(), Some("megaraid_sas"));
        assert!(!d.is_bridge);
        assert_eq!(d.upstream, vec![a("00:03.0")]);
        assert_eq!(d.disks, vec![disk("sda", "16:00.0", false, false)]);
    }
}

#[test]
fn story_host_root_port_carries_the_boot_disk() {
    let sys = story();
    for ids in databases() {
        let d = sys.device(a("0000:00:03.0"), &ids).unwrap();
        assert_eq!(
            (d.vendor_id, d.device_id, d.class),
            (0x8086, 0x2f08, 0x060400)
        );
        assert_eq!(d.vendor_name.as_deref(), Some("Intel Corporation"));
        assert_eq!(
            d.device_name.as_deref(),
            Some("Xeon E7 v3/Xeon E5 v3/Core i7 PCI Express Root Port 3")
        );
        assert_eq!(d.class_name.as_deref(), Some("PCI bridge"));
        assert_eq!(d.driver.as_deref(), Some("pcieport"));
        assert!(d.is_bridge);
        assert!(d.upstream.is_empty());
        assert_eq!(d.disks, vec![disk("sda", "16:00.0", true, false)]);
    }
}

#[test]
fn story_host_other_devices() {
    let sys = story();
    let ids = PciIds::load();
    for nic in ["02:00.0", "02:00.1"] {
        let d = sys.device(a(nic), &ids).unwrap();
        assert_eq!(
            (d.vendor_id, d.device_id, d.class),
            (0x8086, 0x1521, 0x020000)
        );
        assert_eq!(
            d.device_name.as_deref(),
            Some("I350 Gigabit Network Connection")
        );
        assert_eq!(d.class_name.as_deref(), Some("Ethernet controller"));
        assert_eq!(d.driver.as_deref(), Some("igb"));
        assert_eq!(d.upstream, vec![a("00:01.0")]);
        assert!(d.disks.is_empty() && !d.is_bridge);
    }
    let port1 = sys.device(a("00:01.0"), &ids).unwrap();
    assert!(port1.is_bridge && port1.disks.is_empty());

    let sata = sys.device(a("00:1f.2"), &ids).unwrap();
    assert_eq!(
        (sata.vendor_id, sata.device_id, sata.class),
        (0x8086, 0x8d02, 0x010601)
    );
    assert_eq!(
        sata.device_name.as_deref(),
        Some("C610/X99 series chipset 6-Port SATA Controller [AHCI mode]")
    );
    assert_eq!(sata.class_name.as_deref(), Some("SATA controller"));
    assert_eq!(sata.driver.as_deref(), Some("ahci"));
    assert!(sata.upstream.is_empty());
    assert_eq!(sata.disks, vec![disk("sdb", "00:1f.2", false, false)]);

    let usb = sys.device(a("00:14.0"), &ids).unwrap();
    assert_eq!(usb.class, 0x0c0330);
    assert_eq!(usb.class_name.as_deref(), Some("USB controller"));
    assert_eq!(usb.driver.as_deref(), Some("xhci_hcd"));
    assert_eq!(usb.disks, vec![disk("sdc", "00:14.0", false, false)]);

    let host = sys.device(a("00:00.0"), &ids).unwrap();
    assert_eq!(host.class_name.as_deref(), Some("Host bridge"));
    assert_eq!(host.driver, None);
    assert!(!host.is_bridge && host.disks.is_empty());

    // esx.conf may name devices this machine does not have.
    assert!(sys.device(a("00:1c.0"), &ids).is_none());
    assert!(sys.device(a("0001:16:00.0"), &ids).is_none());

    assert_eq!(
        sys.pci_addresses(),
        [
            "00:00.0", "00:01.0", "00:03.0", "00:14.0", "00:1f.2", "02:00.0", "02:00.1", "16:00.0"
        ]
        .map(a)
        .to_vec()
    );
    assert_eq!(sys.devices(&ids).len(), 8);
}

#[test]
fn story_host_disks_and_partitions() {
    let sys = story();
    let names: Vec<String> = sys.disks().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["loop0", "sda", "sdb", "sdc"]);

    let sda = sys.disk_by_name("sda").unwrap();
    assert_eq!(sda.pci_path, vec![a("00:03.0"), a("16:00.0")]);
    assert_eq!(sda.controller(), Some(a("16:00.0")));
    assert_eq!(sys.disk_by_name("sda5"), Some(sda.clone()));
    assert_eq!(
        sys.disk_by_name("loop0"),
        Some(BlockDisk {
            name: "loop0".into(),
            pci_path: vec![]
        })
    );
    assert_eq!(sys.disk_by_name("loop0").unwrap().controller(), None);
    for missing in ["sda4", "sdd", "", "..", "../sda", "block/sda"] {
        assert_eq!(sys.disk_by_name(missing), None, "{missing:?}");
    }

    for ((major, minor), want) in [
        ((8, 0), Some("sda")),
        ((8, 1), Some("sda")),
        ((8, 5), Some("sda")),
        ((8, 9), Some("sda")),
        ((8, 16), Some("sdb")),
        ((8, 17), Some("sdb")),
        ((8, 33), Some("sdc")),
        ((7, 0), Some("loop0")),
        ((8, 4), None),
        ((253, 0), None),
    ] {
        assert_eq!(
            sys.disk_of_block_device(major, minor).as_deref(),
            want,
            "{major}:{minor}"
        );
    }
}

#[test]
fn inspected_disk_is_marked_under_controller_and_bridge() {
    let mut sys = story();
    let ids = PciIds::builtin();
    assert_eq!(sys.inspected(), None);
    sys.set_inspected("sda5");
    assert_eq!(sys.inspected(), Some("sda"));
    assert_eq!(
        sys.device(a("16:00.0"), &ids).unwrap().disks,
        vec![disk("sda", "16:00.0", false, true)]
    );
    assert_eq!(
        sys.device(a("00:03.0"), &ids).unwrap().disks,
        vec![disk("sda", "16:00.0", true, true)]
    );
    assert_eq!(
        sys.device(a("00:1f.2"), &ids).unwrap().disks,
        vec![disk("sdb", "00:1f.2", false, false)]
    );
    sys.set_inspected("sdb");
    assert!(!sys.device(a("16:00.0"), &ids).unwrap().disks[0].inspected);
    assert!(sys.device(a("00:1f.2"), &ids).unwrap().disks[0].inspected);
}

#[test]
fn devices_serialize_in_lspci_notation() {
    let mut sys = story();
    sys.set_inspected("sda");
    let d = sys.device(a("16:00.0"), &PciIds::builtin()).unwrap();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["address"], "0000:16:00.0");
    assert_eq!(v["vendor_id"], "1000");
    assert_eq!(v["device_id"], "005d");
    assert_eq!(v["class"], "010400");
    assert_eq!(v["subsystem_device"], "9361");
    assert_eq!(v["upstream"], serde_json::json!(["0000:00:03.0"]));
    assert_eq!(v["driver"], "megaraid_sas");
    assert_eq!(v["is_bridge"], false);
    assert_eq!(
        v["disks"],
        serde_json::json!([{
            "name": "sda", "controller": "0000:16:00.0", "via_bridge": false,
            "inspected": true, "mounted": false
        }])
    );
}

#[test]
fn open_rejects_what_is_not_sysfs() {
    assert!(matches!(
        Sysfs::open(Path::new("/nonexistent/sys")),
        Err(SysfsError::Io { .. })
    ));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    assert!(matches!(
        Sysfs::open(&manifest),
        Err(SysfsError::NotADirectory { .. })
    ));
    // The fixtures' parent holds trees, but is none itself.
    let err = Sysfs::open(&fixture("")).unwrap_err();
    assert!(matches!(err, SysfsError::NotSysfs { .. }), "{err}");
    // A sparse tree is fine: everything missing reads as None.
    let s = Scratch::new("sparse");
    std::fs::create_dir_all(s.0.join("block")).unwrap();
    let sys = Sysfs::open(&s.0).unwrap();
    assert!(sys.pci_addresses().is_empty() && sys.disks().is_empty());
    assert!(sys.device(a("00:00.0"), &PciIds::builtin()).is_none());
    assert_eq!(sys.disk_of_block_device(8, 0), None);
}

/// Collects everything the reader reports, for comparing two trees.
fn snapshot(root: &Path) -> (Vec<SysfsDevice>, Vec<BlockDisk>, Vec<Option<String>>) {
    let mut sys = Sysfs::open(root).unwrap();
    let disks = sys.disks();
    if let Some(d) = disks.iter().find(|d| !d.pci_path.is_empty()) {
        sys.set_inspected(&d.name);
    }
    let ids = PciIds::builtin();
    let mut devices = sys.devices(&ids);
    for d in &mut devices {
        for k in &mut d.disks {
            k.mounted = false;
        }
    }
    let numbers = [(7, 0), (8, 0), (8, 5), (8, 17), (8, 33), (254, 0), (253, 0)]
        .iter()
        .map(|&(ma, mi)| sys.disk_of_block_device(ma, mi))
        .collect();
    (devices, disks, numbers)
}

#[test]
fn reading_does_not_need_empty_directories() {
    // git keeps no empty directories, so a fresh checkout of a fixture lacks e.g. the target
    // directories of virtual disks' links. Reading must give the same answers without them.
    for name in ["story-host", "this-vm"] {
        let s = Scratch::new("noempty");
        let copy = s.0.join(name);
        copy_tree(&fixture(name), &copy);
        run(Command::new("find")
            .arg(&copy)
            .args(["-type", "d", "-empty", "-delete"]));
        assert!(!copy.join("devices/virtual/block/loop0").exists());
        assert_eq!(snapshot(&copy), snapshot(&fixture(name)), "{name}");
    }
}

#[test]
fn links_never_leave_the_root() {
    let s = Scratch::new("escape");
    let root = s.0.join("root");
    copy_tree(&fixture("story-host"), &root);
    // A valid-looking device outside the root, reached by a climbing link and an absolute one.
    let outside = s.0.join("outside/0000:00:1c.0");
    std::fs::create_dir_all(&outside).unwrap();
    for (f, v) in [
        ("vendor", "0x8086"),
        ("device", "0x8d10"),
        ("class", "0x060400"),
    ] {
        std::fs::write(outside.join(f), format!("{v}\n")).unwrap();
    }
    let link = |target: &Path, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    link(
        Path::new("../../../../outside/0000:00:1c.0"),
        "bus/pci/devices/0000:00:1c.0",
    );
    link(&outside, "bus/pci/devices/0000:00:1c.1");
    // A device whose vendor file points outside.
    let nic1 = "devices/pci0000:00/0000:00:01.0/0000:02:00.1/vendor";
    std::fs::remove_file(root.join(nic1)).unwrap();
    link(&outside.join("vendor"), nic1);
    // Disks behind climbing, absolute and looping links.
    link(Path::new("../../outside/sdx"), "block/sdx");
    link(Path::new("/sys/block/sdy"), "block/sdy");
    link(Path::new("sdz"), "block/sdz");
    link(Path::new("../../../outside"), "dev/block/8:48");

    let sys = Sysfs::open(&root).unwrap();
    let ids = PciIds::builtin();
    assert!(sys.device(a("00:1c.0"), &ids).is_none());
    assert!(sys.device(a("00:1c.1"), &ids).is_none());
    assert!(sys.device(a("02:00.1"), &ids).is_none());
    assert!(sys.device(a("02:00.0"), &ids).is_some());
    let names: Vec<String> = sys.disks().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["loop0", "sda", "sdb", "sdc"]);
    assert_eq!(sys.disk_of_block_device(8, 48), None);

    // The capture script skips such links instead of copying what they point at.
    let out = s.0.join("captured");
    let warnings = capture(&root, &out);
    assert!(warnings.contains("0000:00:1c.1"), "{warnings}");
    assert!(warnings.contains("block/sdy"), "{warnings}");
    assert!(
        !s.0.join("outside")
            .join("0000:00:1c.0")
            .join("driver")
            .exists()
    );
    let copied = Sysfs::open(&out).unwrap();
    assert!(copied.device(a("00:1c.1"), &ids).is_none());
    assert!(copied.device(a("16:00.0"), &ids).is_some());
    // Nothing was created next to the output directory.
    let mut beside: Vec<_> = std::fs::read_dir(&s.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, ["captured", "outside", "root"]);
}

#[test]
fn capture_script_keeps_what_the_reader_reads() {
    let s = Scratch::new("capture");
    let out = s.0.join("story");
    let warnings = capture(&fixture("story-host"), &out);
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(snapshot(&out), snapshot(&fixture("story-host")));
    // Links stay relative, as in sysfs.
    let target = std::fs::read_link(out.join("block/sda")).unwrap();
    assert!(target.starts_with("../devices/pci0000:00"), "{target:?}");
}

#[test]
fn this_vm_capture() {
    let sys = Sysfs::open(&fixture("this-vm")).unwrap();
    let ids = PciIds::builtin();
    assert_eq!(sys.pci_addresses().len(), 6);
    let blk = sys.device(a("00:02.0"), &ids).unwrap();
    assert_eq!(
        (blk.vendor_id, blk.device_id, blk.class),
        (0x1af4, 0x1042, 0x018000)
    );
    assert_eq!(blk.vendor_name.as_deref(), Some("Red Hat, Inc."));
    assert_eq!(blk.class_name.as_deref(), Some("Mass storage controller"));
    assert_eq!(blk.driver.as_deref(), Some("virtio-pci"));
    assert_eq!(blk.disks, vec![disk("vda", "00:02.0", false, false)]);
    let host = sys.device(a("00:00.0"), &ids).unwrap();
    assert_eq!(
        (host.vendor_id, host.device_id, host.class),
        (0x8086, 0x0d57, 0x060000)
    );
    assert_eq!(host.driver, None);
    let balloon = sys.device(a("00:01.0"), &ids).unwrap();
    assert_eq!(balloon.class, 0xffff00);
    assert_eq!(balloon.class_name.as_deref(), Some("Unassigned class"));
    assert_eq!(sys.disk_of_block_device(254, 0).as_deref(), Some("vda"));
    assert_eq!(sys.disk_of_block_device(7, 3).as_deref(), Some("loop3"));
    let names: Vec<String> = sys.disks().into_iter().map(|d| d.name).collect();
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"zram0".to_string()));
}

// ---- this machine's own /sys, checked against lspci ----

/// lspci's view of one function from `lspci -D -n -k`.
#[derive(Debug)]
struct Lspci {
    address: PciAddress,
    class16: u16,
    vendor: u16,
    device: u16,
    driver: Option<String>,
}

fn parse_lspci_nk(text: &str) -> Vec<Lspci> {
    let mut out: Vec<Lspci> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            if let Some(drv) = rest.strip_prefix("Kernel driver in use: ") {
                out.last_mut().unwrap().driver = Some(drv.trim().to_string());
            }
            continue;
        }
        // 0000:00:02.0 0180: 1af4:1042 (rev 01)
        let mut f = line.split_whitespace();
        let (Some(addr), Some(class), Some(ids)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (v, d) = ids.split_once(':').unwrap();
        out.push(Lspci {
            address: a(addr),
            class16: u16::from_str_radix(class.trim_end_matches(':'), 16).unwrap(),
            vendor: u16::from_str_radix(v, 16).unwrap(),
            device: u16::from_str_radix(d, 16).unwrap(),
            driver: None,
        });
    }
    out
}

/// Runs lspci, or says why the test cannot: under CI a missing lspci fails the test.
fn lspci(args: &[&str]) -> Option<String> {
    match Command::new("lspci").args(args).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => panic!(
            "lspci {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("lspci is required under CI=true (install pciutils): {e}");
            }
            eprintln!("SKIPPED: lspci not available ({e}); install pciutils to run this test");
            None
        }
    }
}

fn live_sysfs() -> Option<Sysfs> {
    if !Path::new("/sys/bus/pci/devices").is_dir() {
        eprintln!("SKIPPED: /sys/bus/pci/devices missing (no PCI in this environment)");
        return None;
    }
    let sys = Sysfs::open(Path::new("/sys")).unwrap();
    assert!(sys.is_live());
    Some(sys)
}

#[test]
fn live_sys_matches_lspci_ids_and_drivers() {
    let Some(sys) = live_sysfs() else { return };
    let Some(text) = lspci(&["-D", "-n", "-k"]) else {
        return;
    };
    let oracle = parse_lspci_nk(&text);
    assert!(!oracle.is_empty(), "lspci listed nothing:\n{text}");
    let ids = PciIds::load();
    let ours: Vec<PciAddress> = sys.pci_addresses();
    let theirs: Vec<PciAddress> = oracle.iter().map(|l| l.address).collect();
    assert_eq!(ours, theirs);
    for l in &oracle {
        let d = sys
            .device(l.address, &ids)
            .unwrap_or_else(|| panic!("{} unreadable", l.address));
        assert_eq!(d.vendor_id, l.vendor, "{}", l.address);
        assert_eq!(d.device_id, l.device, "{}", l.address);
        assert_eq!((d.class >> 8) as u16, l.class16, "{}", l.address);
        assert_eq!(d.driver, l.driver, "{}", l.address);
    }
}

/// Splits an `lspci -mm` line into its quoted and bare fields.
fn mm_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap();
            out.push(r[..end].to_string());
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    out
}

#[test]
fn live_names_match_lspci_with_the_same_database() {
    let Some(sys) = live_sysfs() else { return };
    let ids = PciIds::load();
    let Some(path) = ids.source().strip_prefix("system:") else {
        eprintln!("SKIPPED: no system pci.ids, names come from the built-in database");
        return;
    };
    let Some(text) = lspci(&["-D", "-mm", "-i", path]) else {
        return;
    };
    let mut compared = 0;
    for line in text.lines() {
        let f = mm_fields(line);
        let d = sys.device(a(&f[0]), &ids).unwrap();
        // lspci prints "Vendor 1234"/"Device 1234" for unknown ids and appends the code when
        // only the class (not the subclass) is known; compare wherever we have a name.
        if let Some(c) = &d.class_name {
            let alt = format!("{c} [{:04x}]", d.class >> 8);
            assert!(f[1] == *c || f[1] == alt, "{}: {:?} vs {c:?}", f[0], f[1]);
            compared += 1;
        }
        if let Some(v) = &d.vendor_name {
            assert_eq!(&f[2], v, "{}", f[0]);
            compared += 1;
        }
        if let Some(n) = &d.device_name {
            assert_eq!(&f[3], n, "{}", f[0]);
            compared += 1;
        }
    }
    assert!(compared > 0);
}

/// The disks under /sys/block whose resolved path crosses PCI functions, found independently
/// of the reader with `canonicalize`.
fn live_pci_disks() -> Vec<(String, Vec<PciAddress>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let Ok(real) = std::fs::canonicalize(e.path()) else {
            continue;
        };
        let chain: Vec<PciAddress> = real
            .iter()
            .filter_map(|c| c.to_str())
            .filter(|c| c.len() == 12 && c.as_bytes()[4] == b':' && c.as_bytes()[10] == b'.')
            .filter_map(|c| PciAddress::parse_pci(c).ok())
            .collect();
        if !chain.is_empty() {
            out.push((name, chain));
        }
    }
    out
}

#[test]
fn live_disks_hang_off_the_right_devices() {
    let Some(sys) = live_sysfs() else { return };
    let ids = PciIds::builtin();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let disks = live_pci_disks();
    if disks.is_empty() {
        eprintln!("no disk on a PCI path in /sys/block; nothing to compare");
    }
    for (name, chain) in &disks {
        let controller = *chain.last().unwrap();
        for addr in chain {
            let d = sys.device(*addr, &ids).unwrap();
            let k = d
                .disks
                .iter()
                .find(|k| &k.name == name)
                .unwrap_or_else(|| panic!("{name} missing under {addr}: {:?}", d.disks));
            assert_eq!(k.controller, controller, "{name}");
            assert_eq!(k.via_bridge, *addr != controller, "{name} under {addr}");
        }
        assert_eq!(sys.disk_by_name(name).unwrap().pci_path, *chain);
        // Mounted directly from the disk or one of its partitions: must be reported.
        let directly_mounted = mounts.lines().any(|l| {
            let src = l.split_whitespace().next().unwrap_or("");
            src.strip_prefix("/dev/").is_some_and(|dev| {
                dev == name || Path::new("/sys/block").join(name).join(dev).is_dir()
            })
        });
        if directly_mounted {
            let d = sys.device(controller, &ids).unwrap();
            assert!(
                d.disks.iter().any(|k| &k.name == name && k.mounted),
                "{name}"
            );
        }
    }
    // Devices with no disk on their path report none.
    for addr in sys.pci_addresses() {
        let on_path = disks.iter().filter(|(_, c)| c.contains(&addr)).count();
        assert_eq!(
            sys.device(addr, &ids).unwrap().disks.len(),
            on_path,
            "{addr}"
        );
    }
}

#[test]
fn live_capture_reads_like_live_sys() {
    let Some(_) = live_sysfs() else { return };
    let s = Scratch::new("live");
    let out = s.0.join("cap");
    capture(Path::new("/sys"), &out);
    assert_eq!(snapshot(&out), snapshot(Path::new("/sys")));
}
