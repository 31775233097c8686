//! `inspect` against ESXi-like disks built with real tools (sfdisk/fdisk, mkfs.fat, mtools,
//! GNU tar and gzip): every bank scenario of the bootloader's selection rules, every layout and
//! table kind, and every kind of target. The builder's output is checked with fsck.fat first.

use crate::common;

use crate::common::{BankSpec, Scenario, TempDir, boot_cfg, esxconf};
use bootbank::inspect::{Options, Report, TargetKind, inspect};
use std::path::Path;

fn story() -> String {
    esxconf("story.conf")
}
fn healthy() -> String {
    esxconf("healthy.conf")
}

fn build(s: Scenario, tag: &str) -> Option<(TempDir, std::path::PathBuf)> {
    if !common::builder_available() {
        return None;
    }
    let dir = TempDir::new(tag);
    let img = s.build(dir.path());
    common::fsck_banks(&img);
    Some((dir, img))
}

fn run(img: &Path) -> Report {
    inspect(img, &Options::default()).unwrap_or_else(|e| panic!("inspect {}: {e}", img.display()))
}

fn bank(r: &Report, p: u32) -> &bootbank::inspect::BankReport {
    r.banks
        .iter()
        .find(|b| b.partition == Some(p))
        .unwrap_or_else(|| panic!("no bank {p} in {:?}", r.banks))
}

fn demo(b5: BankSpec, b6: BankSpec) -> Scenario {
    Scenario::new().layout("demo").bank(5, b5).bank(6, b6)
}

#[test]
fn story_on_7x_layout_with_4gib_banks() {
    let s = Scenario::new()
        .layout("7x")
        .size("16G")
        .bank(5, BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &story()))
        .bank(
            6,
            BankSpec::installed("6.7.0-0.0.13644319", 2, 0, &healthy()),
        );
    let Some((_d, img)) = build(s, "story7x") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.kind, TargetKind::Disk);
    assert_eq!(r.next_boot_partition, Some(5));
    assert_eq!(bank(&r, 5).build.as_deref(), Some("6.7.0-0.0.14320388"));
    assert_eq!(bank(&r, 5).contents, "system");
    assert_eq!(
        bank(&r, 5).uuid.as_deref(),
        Some("bce53c44-7c409452-6d9c-54f415677c86"),
        "default UUID of the builder, ESXi format"
    );
    // The uuid bootbank prints agrees with the one read by dd | od.
    assert_eq!(
        bank(&r, 6).uuid.as_deref().unwrap(),
        common::esx_uuid(&common::second_sector_head(&img, 6)[16..32])
    );
    let dev = r
        .devices
        .iter()
        .find(|d| d.conf.pci_address == "0000:16:00.0")
        .expect("story device");
    assert_eq!(dev.conf.esx_address, "000:022:00.0");
    assert_eq!(dev.conf.owner_raw.as_deref(), Some("passthru"));
    assert_eq!(
        dev.conf.owner,
        Some(bootbank::configstore::Ownership::Passthru)
    );
    assert_eq!(dev.conf.vmkname.as_deref(), Some("vmhba2"));
    let crit: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == bootbank::findings::Severity::Critical)
        .collect();
    assert_eq!(crit.len(), 1, "{crit:?}");
    assert_eq!(crit[0].rule, "passthru-storage-adapter");
    assert_eq!(crit[0].device.as_deref(), Some("0000:16:00.0"));
    let cfg = r.config.as_ref().unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("esx01"));
    assert!(
        cfg.local_members
            .iter()
            .any(|m| m.name == "etc/vmware/esx.conf")
    );
    // local.tgz members agree with GNU tar's listing of the same archive, read with mtools.
    let state = common::read_fat_file(&img, 5, "state.tgz");
    let d = TempDir::new("story7x-state");
    std::fs::write(d.join("state.tgz"), &state).unwrap();
    let local = common::tar_member(&d.join("state.tgz"), "local.tgz");
    std::fs::write(d.join("local.tgz"), &local).unwrap();
    let listing = common::tar_listing(&d.join("local.tgz"));
    for m in &cfg.local_members {
        assert!(listing.contains(&m.name), "{} not in\n{listing}", m.name);
    }
    assert_eq!(listing.lines().count(), cfg.local_members.len());
    assert!(r.bytes_read < 4 << 20, "read {} bytes", r.bytes_read);
}

#[test]
fn bytes_read_do_not_grow_with_disk_size() {
    let mk = |size: &str| {
        Scenario::new()
            .layout("7x")
            .size(size)
            .bank(5, BankSpec::installed("8.0.2-0.0.22380479", 5, 0, &story()))
            .bank(
                6,
                BankSpec::installed("8.0.1-0.0.21495797", 4, 0, &healthy()),
            )
    };
    let Some((_a, small)) = build(mk("16G"), "size16g") else {
        return;
    };
    let Some((_b, huge)) = build(mk("2T"), "size2t") else {
        return;
    };
    let (rs, rh) = (run(&small), run(&huge));
    assert_eq!(rs.next_boot_partition, Some(5));
    assert_eq!(rh.next_boot_partition, Some(5));
    assert_eq!(rs.bytes_read, rh.bytes_read);
    assert!(rh.bytes_read < 4 << 20, "read {} bytes", rh.bytes_read);
}

#[test]
fn fresh_install_empty_bank_with_larger_updated_does_not_boot() {
    let s = demo(
        BankSpec::installed("6.7.0-0.0.14320388", 1, 0, &healthy()),
        BankSpec::boot_cfg_only(&boot_cfg("6.7.0-0.0.14320388", 2, 3)),
    );
    let Some((_d, img)) = build(s, "fresh") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(5));
    let b6 = bank(&r, 6);
    assert!(!b6.valid);
    assert_eq!(b6.contents, "empty");
    assert_eq!(b6.bootstate_at_boot, Some(3));
    assert!(b6.state_archive.is_none());
    assert!(
        r.findings
            .iter()
            .all(|f| f.severity != bootbank::findings::Severity::Critical)
    );
}

#[test]
fn upgrading_bank_boots_once_then_falls_back() {
    let up = demo(
        BankSpec::installed("6.7.0-0.0.1", 4, 0, &healthy()),
        BankSpec::installed("8.0.2-0.0.2", 5, 1, &story()),
    );
    let Some((_d, img)) = build(up, "upgrading") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(6));
    assert_eq!(bank(&r, 6).bootstate, Some(1));
    assert_eq!(bank(&r, 6).bootstate_at_boot, Some(2));

    let dirty = demo(
        BankSpec::installed("6.7.0-0.0.1", 4, 0, &healthy()),
        BankSpec::installed("8.0.2-0.0.2", 5, 2, &story()),
    );
    let Some((_e, img)) = build(dirty, "dirty") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(5));
    assert!(!bank(&r, 6).valid);
    // The configuration shown is the one that boots: the healthy one.
    assert!(
        r.findings
            .iter()
            .all(|f| f.rule != "passthru-storage-adapter")
    );
}

#[test]
fn tie_and_missing_bootstate() {
    let mut b6 = BankSpec::installed("6.7.0-0.0.1", 7, 0, &story());
    b6.boot_cfg = b6.boot_cfg.replace("bootstate=0\n", "");
    let s = demo(BankSpec::installed("6.7.0-0.0.1", 7, 0, &healthy()), b6);
    let Some((_d, img)) = build(s, "tie") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(5), "tie: lower partition");
    assert!(bank(&r, 6).valid, "missing bootstate means 0");
    assert!(!bank(&r, 6).bootstate_written);
}

#[test]
fn non_numeric_integer_skips_the_bank() {
    let mut b5 = BankSpec::installed("8.0.2-0.0.2", 9, 0, &story());
    b5.boot_cfg = b5.boot_cfg.replace("updated=9", "updated=nine");
    let s = demo(b5, BankSpec::installed("6.7.0-0.0.1", 3, 0, &healthy()));
    let Some((_d, img)) = build(s, "nonnum") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(6));
    let b5 = bank(&r, 5);
    assert!(!b5.valid);
    assert!(
        b5.boot_cfg_error
            .as_deref()
            .unwrap()
            .contains("not a number")
    );
}

#[test]
fn no_valid_bank_means_the_host_will_not_boot() {
    let s = demo(
        BankSpec::installed("6.7.0-0.0.1", 3, 3, &story()),
        BankSpec::boot_cfg_only("bootstate=0\nupdated=0\nbuild=\n"),
    );
    let Some((_d, img)) = build(s, "nobank") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, None);
    assert_eq!(r.will_boot, Some(false));
    assert!(r.findings.iter().any(|f| f.rule == "no-bootable-bank"));
    // The newest configuration is still shown so the user sees the settings.
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "passthru-storage-adapter")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootbank"))
        .arg("inspect")
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("this host will not boot"), "{text}");
}

#[test]
fn layout_6x_with_250mib_banks() {
    let s = Scenario::new()
        .layout("6x")
        .bank(5, BankSpec::installed("6.0.0-3620759", 2, 0, &healthy()))
        .bank(6, BankSpec::installed("6.0.0-3620759", 3, 0, &story()));
    let Some((_d, img)) = build(s, "six") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(6));
    let t = r.partition_table.as_ref().unwrap();
    let p5 = t.partitions.iter().find(|p| p.number == 5).unwrap();
    assert_eq!((p5.first_lba, p5.last_lba), (8224, 520191));
    // Locker (8) and scratch (2) carry the magic in this layout but no boot.cfg.
    for b in &r.banks {
        if b.partition != Some(5) && b.partition != Some(6) {
            assert!(!b.valid);
        }
    }
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "passthru-storage-adapter")
    );
}

#[test]
fn mbr_with_logical_banks() {
    let s = demo(
        BankSpec::installed("4.1.0-260247", 2, 0, &esxconf("sample-4.0.conf")),
        BankSpec::installed("4.1.0-260247", 1, 0, &healthy()),
    )
    .table("mbr");
    let Some((_d, img)) = build(s, "mbr") else {
        return;
    };
    let r = run(&img);
    assert_eq!(
        r.partition_table.as_ref().unwrap().scheme,
        bootbank::partition::Scheme::Mbr
    );
    assert_eq!(r.next_boot_partition, Some(5));
    // 000:31.2 in esx.conf is lspci 00:1f.2 (decimal addresses).
    assert!(
        r.devices
            .iter()
            .any(|d| d.conf.esx_address == "000:31.2" && d.conf.pci_address == "0000:00:1f.2")
    );
}

#[test]
fn gpt_with_4096_byte_sectors() {
    let s = Scenario::new()
        .layout("min")
        .size("8G")
        .sector(4096)
        .bank(5, BankSpec::installed("8.0.2-0.0.2", 2, 0, &story()))
        .bank(6, BankSpec::boot_cfg_only(&boot_cfg("8.0.2-0.0.2", 3, 3)));
    let Some((_d, img)) = build(s, "4kn") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.partition_table.as_ref().unwrap().sector_size, 4096);
    assert_eq!(r.next_boot_partition, Some(5));
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "passthru-storage-adapter")
    );
}

#[test]
fn damaged_primary_gpt_falls_back_to_backup_with_a_warning() {
    let s = demo(
        BankSpec::installed("6.7.0-0.0.1", 3, 0, &story()),
        BankSpec::installed("6.7.0-0.0.1", 2, 0, &healthy()),
    );
    let Some((_d, img)) = build(s, "backupgpt") else {
        return;
    };
    // Damage the primary header's CRC field (LBA 1, bytes 16..20) like a stray write would.
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(512 + 16)).unwrap();
    f.write_all(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    drop(f);
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(5));
    assert!(
        r.warnings.iter().any(|w| w.contains("backup")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn every_target_kind_reads_the_same_configuration() {
    let s = demo(
        BankSpec::installed("6.7.0-0.0.1", 3, 0, &story()),
        BankSpec::installed("6.7.0-0.0.1", 2, 0, &healthy()),
    );
    let Some((d, img)) = build(s, "kinds") else {
        return;
    };
    let devices = |r: &Report| {
        r.devices
            .iter()
            .map(|d| (d.conf.pci_address.clone(), d.conf.owner))
            .collect::<Vec<_>>()
    };
    let disk = run(&img);
    // The state.tgz, copied out with mtools.
    let state = d.join("state.tgz");
    common::copy_fat_file(&img, 5, "state.tgz", &state);
    let r = run(&state);
    assert_eq!(r.kind, TargetKind::StateArchive);
    assert_eq!(devices(&r), devices(&disk));
    // A config bundle made of it.
    let bundle = d.join("configBundle-esx01.tgz");
    common::mkbundle(&state, &bundle, &[]);
    let r = run(&bundle);
    assert_eq!(r.kind, TargetKind::ConfigBundle);
    assert!(r.bundle.as_ref().unwrap().release_level.is_some());
    assert_eq!(devices(&r), devices(&disk));
    // The bank partition alone, cut out with dd.
    let p = common::part(&img, 5);
    let part = d.join("bank5.img");
    common::dd_partition(&img, &p, &part);
    let r = run(&part);
    assert_eq!(r.kind, TargetKind::Partition);
    assert_eq!(r.banks.len(), 1);
    assert_eq!(devices(&r), devices(&disk));
    // The bank copied to a directory with mcopy.
    let dir = d.join("bank5");
    std::fs::create_dir(&dir).unwrap();
    common::run(
        common::cmd("mcopy")
            .arg("-s")
            .arg("-n")
            .arg("-i")
            .arg(p.mtools_image(&img))
            .arg("::/*")
            .arg(&dir),
    );
    let r = run(&dir);
    assert_eq!(r.kind, TargetKind::Directory);
    assert_eq!(r.banks[0].build.as_deref(), Some("6.7.0-0.0.1"));
    assert_eq!(devices(&r), devices(&disk));
}

#[test]
fn multimember_gzip_and_bare_local_tgz() {
    let mut b5 = BankSpec::installed("6.7.0-0.0.1", 3, 0, &story());
    b5.multimember = true;
    let mut b6 = BankSpec::installed("6.7.0-0.0.1", 4, 3, &healthy());
    b6.bare_local_tgz = true;
    let Some((_d, img)) = build(demo(b5, b6), "multi") else {
        return;
    };
    let r = run(&img);
    assert_eq!(r.next_boot_partition, Some(5));
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "passthru-storage-adapter")
    );
    assert_eq!(
        bank(&r, 6)
            .state_archive
            .as_ref()
            .unwrap()
            .name
            .to_ascii_lowercase(),
        "local.tgz"
    );
}

#[test]
fn encrypted_configurations_are_decrypted_or_said_sealed() {
    for (mode, want) in [("NONE", "kdf"), ("TPM", "tpm")] {
        let mut b5 = BankSpec::installed("8.0.2-0.0.2", 3, 0, &story());
        b5.encrypted = Some(mode);
        let Some((_d, img)) = build(
            demo(b5, BankSpec::boot_cfg_only(&boot_cfg("8.0.2-0.0.2", 4, 3))),
            "enc",
        ) else {
            return;
        };
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootbank"))
            .args(["inspect", "--json"])
            .arg(&img)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["config"]["encryption"], want);
        let critical = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "passthru-storage-adapter");
        if mode == "NONE" {
            // Decrypted offline: the story's device is seen through the envelope.
            assert_eq!(
                v["config"]["key_id"],
                "7e62cec5-6aef-4d7e-838b-cae32eefd251"
            );
            assert!(critical, "{}", String::from_utf8_lossy(&out.stdout));
        } else {
            assert_eq!(v["devices"].as_array().unwrap().len(), 0);
            assert!(!critical);
        }
        assert!(
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["rule"] == "config-encrypted")
        );
    }
}

#[test]
fn json_contract_fields() {
    let s = demo(
        BankSpec::installed("6.7.0-0.0.1", 3, 0, &story()),
        BankSpec::installed("6.7.0-0.0.1", 2, 0, &healthy()),
    );
    let Some((_d, img)) = build(s, "json") else {
        return;
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootbank"))
        .args(["inspect", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "partition",
        "updated",
        "bootstate",
        "build",
        "valid",
        "boots_next",
    ] {
        assert!(v["banks"][0].get(key).is_some(), "banks[].{key}");
    }
    assert_eq!(v["next_boot_partition"], 5);
    assert_eq!(v["config"]["encryption"], "none");
    let dev = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["esx_address"] == "000:022:00.0")
        .unwrap();
    assert_eq!(dev["pci_address"], "0000:16:00.0");
    assert_eq!(dev["owner"], "passthru");
    assert_eq!(dev["vmkname"], "vmhba2");
    let f = &v["findings"][0];
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["rule"], "passthru-storage-adapter");
    assert_eq!(f["device"], "0000:16:00.0");
    assert!(f["message"].as_str().unwrap().contains("vmhba2"));
}

#[test]
fn sysfs_enrichment_marks_the_inspected_disk() {
    let s = demo(
        BankSpec::installed("6.7.0-0.0.1", 3, 0, &story()),
        BankSpec::installed("6.7.0-0.0.1", 2, 0, &healthy()),
    );
    let Some((_d, img)) = build(s, "sysfs") else {
        return;
    };
    let opts = Options {
        sysfs: Some(common::fixture_path("sysfs/story-host")),
        disk_name: Some("sda".into()),
        ..Options::default()
    };
    let r = inspect(&img, &opts).unwrap();
    let dev = r
        .devices
        .iter()
        .find(|d| d.conf.pci_address == "0000:16:00.0")
        .unwrap();
    let x = dev.sysfs.as_ref().expect("story host has 0000:16:00.0");
    assert_eq!(x.driver.as_deref(), Some("megaraid_sas"));
    assert!(x.vendor_name.is_some());
    assert!(x.disks.iter().any(|d| d.name == "sda" && d.inspected));
}

/// A block device of this machine: the demo image attached read-only to a loop device. Skips
/// (even under CI) when loop devices cannot be attached, which is a property of the machine, not
/// a missing tool.
#[test]
fn block_device_is_read_and_enriched_from_live_sysfs() {
    if !common::require_tool("losetup") {
        return;
    }
    let d = TempDir::new("loop");
    let img = d.join("demo.img");
    std::fs::copy(common::manifest_dir().join("examples/demo.img"), &img).unwrap();
    let before = std::fs::read(&img).unwrap();
    let out = common::cmd("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&img)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "SKIPPED: cannot attach a loop device here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let result = inspect(Path::new(&dev), &Options::default());
    let _ = common::cmd("losetup").arg("-d").arg(&dev).status();
    let r = result.unwrap_or_else(|e| panic!("inspect {dev}: {e}"));
    assert_eq!(r.kind, TargetKind::Disk);
    assert_eq!(r.next_boot_partition, Some(5));
    assert_eq!(r.sysfs_root.as_deref(), Some("/sys"));
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "passthru-storage-adapter")
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
}

/// A ConfigStore whose records break their schema (mkconfigstore writes esx.conf's words,
/// `"owner": "passthru"`, which the real schema does not allow, and a record with no owner field
/// at all): each is reported as unclear and never read as passthrough or vmkernel. The database
/// is built with Python's sqlite3 (tests/tools/mkconfigstore), not with bootbank.
#[test]
fn configstore_records_that_break_their_schema_are_reported() {
    if !common::require_tool("python3") {
        return;
    }
    let d = TempDir::new("cs-inspect");
    let db = d.join("store.db");
    common::run(
        common::cmd("python3")
            .arg(common::tool("mkconfigstore"))
            .arg(&db)
            .args([
                "--device",
                "0000:16:00.0:passthru",
                "--unclear",
                "0000:02:00.0",
            ]),
    );
    let mut b5 = BankSpec::installed("6.7.0-0.0.1", 3, 0, &healthy());
    b5.local_files.push((
        "var/lib/vmware/configstore/backup/current-store-1".to_string(),
        std::fs::read(&db).unwrap(),
    ));
    let Some((_e, img)) = build(
        demo(b5, BankSpec::installed("6.7.0-0.0.1", 2, 0, &healthy())),
        "cs",
    ) else {
        return;
    };
    let r = run(&img);
    let cs = r
        .configstore
        .as_ref()
        .expect("the store is found in local.tgz");
    assert_eq!(cs.pci_devices.len(), 2, "{:?}", cs.pci_devices);
    // esx.conf's word is not one of the schema's values: no owner is read from it.
    let words = cs
        .pci_devices
        .iter()
        .find(|p| p.identifier == "0000:16:00.0")
        .unwrap();
    assert_eq!(words.owner, None, "{words:?}");
    assert!(!words.record.problems.is_empty());
    for dev in ["0000:16:00.0", "0000:02:00.0"] {
        assert!(
            r.findings
                .iter()
                .any(|f| f.rule == "configstore-unclear" && f.device.as_deref() == Some(dev)),
            "{dev}: {:?}",
            r.findings
        );
    }
    assert!(
        !r.findings
            .iter()
            .any(|f| f.severity == bootbank::findings::Severity::Critical),
        "{:?}",
        r.findings
    );
}

/// `fix` hands inspect the configuration it decoded from the file it wrote, to print the new
/// verdict without decoding it twice. Inspect must take it only for a byte-identical file, never
/// for one that merely has the same length.
#[test]
fn a_decoded_configuration_is_taken_only_for_identical_bytes() {
    if !common::require_tools(&["mcopy", "sfdisk"]) {
        return;
    }
    let img = common::manifest_dir().join("examples/demo.img");
    let (report, configs) =
        bootbank::inspect::inspect_with_config(&img, &Options::default()).unwrap();
    assert!(!report.devices.is_empty());
    let p = report.next_boot_partition.unwrap();
    let bytes = common::read_fat_file(&img, p, "state.tgz");
    // A stand-in that shows when it is used: the same archive without its esx.conf.
    let mut stand_in = configs.next.unwrap();
    stand_in.esx_conf = None;
    let with = |key: Vec<u8>| {
        let opts = Options {
            decoded: vec![bootbank::inspect::Decoded {
                bytes: key,
                config: stand_in.clone(),
            }],
            ..Default::default()
        };
        inspect(&img, &opts).unwrap()
    };
    assert!(
        with(bytes.clone()).devices.is_empty(),
        "identical bytes: the decoding is taken"
    );
    let mut other = bytes;
    let last = other.len() - 1;
    other[last] ^= 1;
    assert_eq!(
        with(other).devices.len(),
        report.devices.len(),
        "one byte differs: the file is decoded"
    );
}
