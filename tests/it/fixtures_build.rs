//! Proves the test-fixture builder (tests/tools + tests/it/common): every layout builds,
//! passes fsck.fat, has the expected partition table, bank magic, files and archives.
//! Every check here uses third-party tools (sfdisk, fdisk, sgdisk, mtools, dosfstools,
//! dd, od, tar), never the bootbank library.
//!
//! Slowest: `layout_6x_gpt` and `layout_7x_2t_sparse` (about 1-2 s each: fsck-banks
//! copies every FAT partition, up to 4 GiB of holes, out of the image).

use crate::common::*;
use std::fs;
use std::path::Path;
use std::time::Instant;

const EFI: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
const VMFS: &str = "AA31E02A-400F-11DB-9590-000C2911D1B8";
const DIAG: &str = "9D275380-40AD-11DB-BF97-000C2911D1B8";
const VMFSL: &str = "4EB2EA39-7855-4790-A79E-FAE495E21F8D";

const MAGIC: &[u8; 16] = b"VMWARE FAT16    ";
const UUID5_ESX: &str = "bce53c44-7c409452-6d9c-54f415677c86";
const UUID6_ESX: &str = "6250e3f8-944fc3bd-ee94-ccd1286a4e05";

const BUILD_NEW: &str = "6.7.0-0.0.14320388";
const BUILD_OLD: &str = "6.7.0-0.0.13981272";

/// (num, first LBA, last LBA, type) for every partition, sorted by number.
fn table(img: &Path) -> Vec<(u32, u64, u64, String)> {
    let mut t: Vec<_> = partitions(img)
        .into_iter()
        .map(|p| (p.num, p.start, p.end(), p.type_id.clone()))
        .collect();
    t.sort();
    t
}

fn row(num: u32, first: u64, last: u64, ty: &str) -> (u32, u64, u64, String) {
    (num, first, last, ty.to_string())
}

/// A two-bank scenario: bank 5 installed (story config), bank 6 an older valid build.
fn two_banks(layout: &str) -> Scenario {
    Scenario::new()
        .layout(layout)
        .bank(
            5,
            BankSpec::installed(BUILD_NEW, 3, 0, &esxconf("story.conf")),
        )
        .bank(
            6,
            BankSpec::installed(BUILD_OLD, 2, 0, &esxconf("healthy.conf")),
        )
}

/// The checks every built image gets: fsck-banks, boot.cfg text via mtype, state.tgz
/// via mcopy + tar -tzvf, esx.conf inside local.tgz, and the second-sector magic.
fn check_banks(img: &Path, dir: &Path) -> String {
    let report = fsck_banks(img);
    assert!(report.contains("partition 5: bank"), "{report}");
    assert!(report.contains("partition 6: bank"), "{report}");

    assert_eq!(mtype(img, 5, "boot.cfg"), boot_cfg(BUILD_NEW, 3, 0));
    assert_eq!(mtype(img, 6, "boot.cfg"), boot_cfg(BUILD_OLD, 2, 0));
    let names = mdir(img, 5);
    for f in [
        "::/boot.cfg",
        "::/b.b00",
        "::/k.b00",
        "::/s.v00",
        "::/state.tgz",
        "::/imgdb.tgz",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} missing in {names:?}");
    }

    for (n, conf) in [(5, "story.conf"), (6, "healthy.conf")] {
        let state = dir.join(format!("state{n}.tgz"));
        fs::write(&state, read_fat_file(img, n, "state.tgz")).unwrap();
        let listing = tar_listing(&state);
        assert!(listing.contains(" local.tgz"), "{listing}");
        assert_eq!(listing.lines().count(), 1, "{listing}");
        let local = dir.join(format!("local{n}.tgz"));
        fs::write(&local, tar_member(&state, "local.tgz")).unwrap();
        let inner = tar_listing(&local);
        assert!(
            inner.contains("0/0") && inner.contains(" etc/vmware/esx.conf"),
            "{inner}"
        );
        assert_eq!(
            String::from_utf8(tar_member(&local, "etc/vmware/esx.conf")).unwrap(),
            esxconf(conf)
        );
    }

    let h5 = second_sector_head(img, 5);
    assert_eq!(&h5[..16], MAGIC);
    assert_eq!(esx_uuid(&h5[16..]), UUID5_ESX);
    let h6 = second_sector_head(img, 6);
    assert_eq!(&h6[..16], MAGIC);
    assert_eq!(esx_uuid(&h6[16..]), UUID6_ESX);
    report
}

fn sgdisk_print(img: &Path) -> Option<String> {
    if !require_tool("sgdisk") {
        return None;
    }
    let v = run_text(cmd("sgdisk").arg("-v").arg(img));
    assert!(v.contains("No problems found"), "{v}");
    Some(run_text(cmd("sgdisk").arg("-p").arg(img)))
}

#[test]
fn layout_6x_gpt() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-6x");
    let img = two_banks("6x").build(t.path());
    assert_eq!(fs::metadata(&img).unwrap().len(), 16 << 30);
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 8191, EFI),
            row(2, 7086080, 15472639, DATA),
            row(3, 15472640, 33554398, VMFS),
            row(5, 8224, 520191, DATA),
            row(6, 520224, 1032191, DATA),
            row(7, 1032224, 1257471, DIAG),
            row(8, 1257504, 1843199, DATA),
            row(9, 1843200, 7086079, DIAG),
        ]
    );
    let dump = run_text(cmd("sfdisk").arg("--dump").arg(&img));
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains(
            "start=        8224, size=      511968, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        ),
        "{dump}"
    );
    if let Some(p) = sgdisk_print(&img) {
        assert!(p.contains("   5            8224          520191"), "{p}");
        assert!(p.contains("   3        15472640        33554398"), "{p}");
    }
    let report = check_banks(&img, t.path());
    // locker (8) and scratch (2) are FAT16 with the magic but no boot.cfg
    assert!(report.contains("partition 8: bank"), "{report}");
    assert!(report.contains("partition 2: bank"), "{report}");
    assert!(mdir(&img, 8).is_empty());
}

#[test]
fn layout_6x_small_media() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-6x-small");
    let img = two_banks("6x").size("1G").build(t.path());
    let nums: Vec<u32> = table(&img).iter().map(|r| r.0).collect();
    assert_eq!(nums, vec![1, 5, 6, 7, 8]);
    fsck_banks(&img);
}

#[test]
fn layout_7x_16g() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-7x");
    let img = two_banks("7x").size("16G").build(t.path());
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 204863, EFI),
            row(5, 208896, 8595455, DATA),
            row(6, 8597504, 16984063, DATA),
            row(7, 16986112, 33554398, VMFSL),
        ]
    );
    if let Some(p) = sgdisk_print(&img) {
        assert!(p.contains("   6         8597504        16984063"), "{p}");
    }
    let report = check_banks(&img, t.path());
    // 4 GiB FAT16 bank with 64 KiB clusters: 65515 clusters = 4293591040 bytes, exactly
    // what live hosts report for the bank
    assert!(report.contains("/65515 clusters"), "{report}");
    let p5 = part(&img, 5);
    let info = run_text(cmd("minfo").arg("-i").arg(p5.mtools_image(&img)).arg("::"));
    assert!(info.contains("cluster size: 128 sectors"), "{info}");
    assert!(info.contains("reserved (boot) sectors: 2"), "{info}");
    assert!(info.contains("hidden sectors: 208896"), "{info}");
    let empty = Scenario::new()
        .size("16G")
        .name("empty.img")
        .build(t.path());
    let free = run_text(
        cmd("mdir")
            .arg("-i")
            .arg(part(&empty, 6).mtools_image(&empty))
            .arg("::"),
    );
    assert!(free.contains("4 293 591 040 bytes free"), "{free}");
}

/// Slow-ish: fsck-banks reads two 4 GiB banks (mostly holes) out of a 2 TiB image.
#[test]
fn layout_7x_2t_sparse() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-7x-2t");
    let started = Instant::now();
    let img = two_banks("7x").size("2T").build(t.path());
    let built = started.elapsed();
    assert_eq!(fs::metadata(&img).unwrap().len(), 2u64 << 40);
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 204863, EFI),
            row(5, 208896, 8595455, DATA),
            row(6, 8597504, 16984063, DATA),
            row(7, 16986112, 268435455, VMFSL),
            row(8, 268437504, 4294967262, VMFS),
        ]
    );
    let used = disk_usage(&img);
    let du = run_text(cmd("du").arg("-B1").arg(&img));
    let du: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        used < 100 << 20 && du < 100 << 20,
        "2 TiB image uses {du} bytes of real disk"
    );
    check_banks(&img, t.path());
    eprintln!(
        "2 TiB image: built in {built:?}, {du} bytes on disk, total {:?}",
        started.elapsed()
    );
}

#[test]
fn layout_min() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-min");
    let img = two_banks("min").build(t.path());
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 204863, EFI),
            row(5, 208896, 2306047, DATA),
            row(6, 2308096, 4405247, DATA),
            row(7, 4407296, 20971486, VMFSL),
        ]
    );
    let report = check_banks(&img, t.path());
    // 1 GiB bank: 32763 clusters of 32 KiB = 1073577984 bytes, as on live hosts
    assert!(report.contains("/32763 clusters"), "{report}");
}

#[test]
fn layout_min_over_142gb_has_vmfs() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-min-150g");
    // the published 150 GiB host: 314572800 sectors
    let img = Scenario::new().layout("min").size("150G").build(t.path());
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 204863, EFI),
            row(5, 208896, 2306047, DATA),
            row(6, 2308096, 4405247, DATA),
            row(7, 4407296, 20971486, VMFSL),
            row(8, 20973535, 314572766, VMFS),
        ]
    );
}

#[test]
fn mbr_extended_logical_banks() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-mbr");
    let img = two_banks("6x").table("mbr").build(t.path());
    let dump = run_text(cmd("sfdisk").arg("--dump").arg(&img));
    assert!(dump.contains("label: dos"), "{dump}");
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 8191, "4"),
            row(2, 7086080, 15472639, "6"),
            row(3, 15472640, 33554431, "fb"),
            row(4, 8192, 1843199, "5"),
            row(5, 8224, 520191, "6"),
            row(6, 520224, 1032191, "6"),
            row(7, 1032224, 1257471, "fc"),
            row(8, 1257504, 1843199, "6"),
        ]
    );
    let verify = run_text(cmd("sfdisk").arg("--verify").arg(&img));
    assert!(verify.contains("No errors detected"), "{verify}");
    check_banks(&img, t.path());

    // FAT16 LBA (0x0e) banks on the demo layout
    let img = two_banks("demo")
        .table("mbr")
        .arg("--mbr-bank-type")
        .arg("0e")
        .name("e.img")
        .build(t.path());
    let types: Vec<(u32, String)> = table(&img).into_iter().map(|r| (r.0, r.3)).collect();
    assert!(
        types.contains(&(5, "e".into())) && types.contains(&(6, "e".into())),
        "{types:?}"
    );
    assert!(types.contains(&(4, "5".into())), "{types:?}");
    check_banks(&img, t.path());
}

#[test]
fn sector_4096_gpt() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-4kn");
    let img = two_banks("7x").size("16G").sector(4096).build(t.path());
    // byte offsets equal the 512-byte layout's: LBAs divided by 8
    assert_eq!(
        table(&img),
        vec![
            row(1, 8, 25607, EFI),
            row(5, 26112, 1074431, DATA),
            row(6, 1074688, 2123007, DATA),
            row(7, 2123264, 4194298, VMFSL),
        ]
    );
    assert!(
        partitions(&img)
            .iter()
            .all(|p| p.sector_size == 4096 && p.label == "gpt")
    );
    let l = run_text(cmd("fdisk").args(["-b", "4096", "-l"]).arg(&img));
    assert!(
        l.contains("Sector size (logical/physical): 4096 bytes"),
        "{l}"
    );
    assert!(l.contains("Disklabel type: gpt"), "{l}");
    // GPT header at LBA 1 = byte 4096, nothing at byte 512
    assert_eq!(read_bytes(&img, 4096, 8), b"EFI PART");
    assert_ne!(read_bytes(&img, 512, 8), b"EFI PART");
    // magic in the second 4096-byte sector of the bank
    let off = 26112u64 * 4096 + 4096;
    assert_eq!(read_bytes(&img, off, 16), MAGIC);
    assert_eq!(read_bytes(&img, 26112 * 4096 + 512, 16), vec![0u8; 16]);
    let info = run_text(
        cmd("minfo")
            .arg("-i")
            .arg(part(&img, 5).mtools_image(&img))
            .arg("::"),
    );
    assert!(info.contains("sector size: 4096 bytes"), "{info}");
    assert!(info.contains("cluster size: 16 sectors"), "{info}");
    check_banks(&img, t.path());
}

#[test]
fn layout_demo() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-demo");
    let img = two_banks("demo").build(t.path());
    assert_eq!(fs::metadata(&img).unwrap().len(), 8 << 20);
    assert_eq!(
        table(&img),
        vec![
            row(1, 64, 2047, EFI),
            row(5, 2080, 8191, DATA),
            row(6, 8224, 14335, DATA),
            row(7, 14368, 16350, VMFSL),
        ]
    );
    let info = run_text(
        cmd("minfo")
            .arg("-i")
            .arg(part(&img, 5).mtools_image(&img))
            .arg("::"),
    );
    assert!(
        info.contains("cluster size: 1 sectors") && info.contains("disk type=\"FAT16   \""),
        "{info}"
    );
    check_banks(&img, t.path());
}

#[test]
fn no_magic_custom_uuid_and_fresh_second_bank() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-magic");
    // right after a fresh install: bank 6 holds only boot.cfg, updated = 5's + 1, bootstate 3
    let fresh = "bootstate=3\nbuild=\nupdated=2\n".to_string();
    let img = Scenario::new()
        .layout("demo")
        .bank(
            5,
            BankSpec::installed(BUILD_NEW, 1, 0, &esxconf("healthy.conf")),
        )
        .bank(6, BankSpec::boot_cfg_only(&fresh))
        .uuid(5, "00112233445566778899aabbccddeeff")
        .no_magic(6)
        .build(t.path());
    fsck_banks(&img);
    let h5 = second_sector_head(&img, 5);
    assert_eq!(&h5[..16], MAGIC);
    assert_eq!(esx_uuid(&h5[16..]), "33221100-77665544-9988-aabbccddeeff");
    assert_eq!(second_sector_head(&img, 6), vec![0u8; 32]);
    assert_eq!(mdir(&img, 6), vec!["::/boot.cfg".to_string()]);
    assert_eq!(mtype(&img, 6, "boot.cfg"), fresh);

    // esx: form round-trips
    let img = Scenario::new()
        .layout("demo")
        .name("b.img")
        .uuid(6, "esx:5f3c0e2a-1b2c3d4e-5f60-0025909a0006")
        .build(t.path());
    assert_eq!(
        esx_uuid(&second_sector_head(&img, 6)[16..]),
        "5f3c0e2a-1b2c3d4e-5f60-0025909a0006"
    );
    // no files at all is still a clean FAT
    fsck_banks(&img);
}

#[test]
fn encrypted_state_and_variants() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-enc");
    let root = t.join("root");
    write_tree(
        &root,
        &[(
            "etc/vmware/esx.conf".into(),
            esxconf("story.conf").into_bytes(),
        )],
    );
    for mode in ["NONE", "TPM"] {
        let out = t.join(format!("state-{mode}.tgz"));
        mkstate(&root, &out, Some(mode));
        let listing = tar_listing(&out);
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(names, vec!["local.tgz.ve", "encryption.info"], "{listing}");
        let info = String::from_utf8(tar_member(&out, "encryption.info")).unwrap();
        assert_eq!(
            info,
            format!(
                ".encoding = \"UTF-8\"\nincludeKeyCache = \"FALSE\"\nmode = \"{mode}\"\nConfigEncData = \"keyId=fmLOxWrvTX6Di8rjLu/SUQ%3d%3d:data1=Uz8MFZfqTbWN2jIHbFPhag%3d%3d:data2=IDcZE41aR+uxDv7Iz8zJSA%3d%3d:version=1\"\n"
            )
        );
        let ve = tar_member(&out, "local.tgz.ve");
        assert_eq!(ve.len() % 4096, 0);
        assert!(ve.starts_with(b"DataTransformEnvelope"));
        assert_eq!(&ve[504..512], &[0x00, 0x0e, 0, 0, 2, 0, 0, 0]);
        assert!(ve[ve.len() - 4096..].starts_with(b"DataTransformAeadFooter"));
    }

    // bare local.tgz, multi-member gzip, and an encrypted bank in an image
    let bare = t.join("local.tgz");
    mkstate_args(&root, &bare, &["--local-only"]);
    assert!(tar_listing(&bare).contains(" etc/vmware/esx.conf"));
    let multi = t.join("multi.tgz");
    mkstate_args(&root, &multi, &["--multimember"]);
    let bytes = fs::read(&multi).unwrap();
    let members = bytes
        .windows(3)
        .filter(|w| w == &[0x1f, 0x8b, 0x08])
        .count();
    assert!(members >= 2, "expected two gzip members");
    run(cmd("gzip").arg("-t").arg(&multi));
    let local = t.join("multi-local.tgz");
    fs::write(&local, tar_member(&multi, "local.tgz")).unwrap();
    assert!(tar_listing(&local).contains(" etc/vmware/esx.conf"));

    let mut spec = BankSpec::installed("8.0.2-0.0.22380479", 4, 0, &esxconf("story.conf"));
    spec.encrypted = Some("NONE");
    let img = Scenario::new().layout("demo").bank(5, spec).build(t.path());
    fsck_banks(&img);
    assert!(mtype(&img, 5, "boot.cfg").contains("--- esxiodpt.tgz --- state.tgz\n"));
    let st = t.join("img-state.tgz");
    fs::write(&st, read_fat_file(&img, 5, "state.tgz")).unwrap();
    assert!(tar_listing(&st).contains(" encryption.info"));
}

#[test]
fn config_bundle() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-bundle");
    let root = t.join("root");
    write_tree(
        &root,
        &[(
            "etc/vmware/esx.conf".into(),
            esxconf("story.conf").into_bytes(),
        )],
    );
    let state = t.join("state.tgz");
    mkstate(&root, &state, None);
    let bundle = t.join("configBundle-esx01.tgz");
    mkbundle(
        &state,
        &bundle,
        &["--uuid", "52a4c1e6-3f0b-91d2-7c55-002590a1b2c0"],
    );
    let listing = tar_listing(&bundle);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(names, vec!["Manifest.txt", "state.tgz"]);
    let manifest = String::from_utf8(tar_member(&bundle, "Manifest.txt")).unwrap();
    assert_eq!(
        manifest,
        "RELEASELEVEL=VMware ESXi 7.0.3 build-22348816\nUUID=52a4c1e6-3f0b-91d2-7c55-002590a1b2c0\nKERNELOPTS=\nUSEROPTS=\n"
    );
    assert_eq!(tar_member(&bundle, "state.tgz"), fs::read(&state).unwrap());
}

#[test]
fn builds_are_reproducible() {
    if !builder_available() {
        return;
    }
    let t = TempDir::new("fx-repro");
    let a = two_banks("demo").name("a.img").build(t.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = two_banks("demo").name("b.img").build(t.path());
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "demo images differ"
    );
}

#[test]
fn make_demo_matches_committed_image() {
    if !builder_available() {
        return;
    }
    let committed = manifest_dir().join("examples/demo.img");
    let t = TempDir::new("fx-make-demo");
    let out = t.join("demo.img");
    run(cmd("bash")
        .arg(manifest_dir().join("examples/make-demo.sh"))
        .arg(&out));
    fsck_banks(&out);
    let cfg5 = mtype(&out, 5, "boot.cfg");
    assert_eq!(cfg_value(&cfg5, "updated").as_deref(), Some("3"));
    assert_eq!(cfg_value(&cfg5, "bootstate").as_deref(), Some("0"));
    let cfg6 = mtype(&out, 6, "boot.cfg");
    assert_eq!(cfg_value(&cfg6, "updated").as_deref(), Some("2"));
    if committed.exists() {
        assert!(
            fs::read(&committed).unwrap() == fs::read(&out).unwrap(),
            "examples/demo.img differs from what examples/make-demo.sh builds; rerun it"
        );
    } else {
        eprintln!(
            "examples/demo.img not present; built one at {}",
            out.display()
        );
    }
}

#[test]
fn esxconf_fixtures() {
    let story = esxconf("story.conf");
    let healthy = esxconf("healthy.conf");
    let diff: Vec<(&str, &str)> = story
        .lines()
        .zip(healthy.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        diff,
        vec![(
            "/device/000:022:00.0/owner = \"passthru\"",
            "/device/000:022:00.0/owner = \"vmkernel\""
        )]
    );
    assert_eq!(story.lines().count(), healthy.lines().count());
    for text in [&story, &healthy] {
        let keys: Vec<&str> = text
            .lines()
            .map(|l| l.split(" = ").next().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "keys not sorted");
        assert!(text.ends_with('\n') && !text.contains('\r'));
    }
    for line in [
        "/adv/Misc/HostName = \"esx01\"",
        "/device/000:022:00.0/vmkname = \"vmhba2\"",
        "/device/000:002:00.0/owner = \"vmkernel\"",
        "/device/000:002:00.0/vmkname = \"vmnic0\"",
    ] {
        assert!(story.lines().any(|l| l == line), "{line}");
    }
    assert!(story.lines().any(|l| l.starts_with("/system/uuid = \"")));
    let sample = esxconf("sample-4.0.conf");
    assert!(sample.contains("/device/000:31.2/vmkname = \"vmhba0\"\n"));
    assert_eq!(
        sample
            .lines()
            .filter(|l| l.ends_with("\"passthru\""))
            .count(),
        3
    );
}

#[test]
fn require_tool_reports_missing_tools() {
    assert!(require_tool("sh"));
    if !in_ci() {
        assert!(!require_tool("bootbank-no-such-tool"));
    } else {
        let r = std::panic::catch_unwind(|| require_tool("bootbank-no-such-tool"));
        assert!(r.is_err(), "require_tool must panic under CI=true");
    }
}
