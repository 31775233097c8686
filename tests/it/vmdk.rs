//! VMware virtual disks as targets, with fixtures made by `qemu-img` (which nobody here wrote):
//!
//! - a monolithicFlat descriptor + flat extent converted from the demo image reads exactly like
//!   the raw image (same JSON report apart from the target name);
//! - `fix`, `config set` and `restore` on it write the flat extent only (the descriptor stays
//!   byte-identical) and `qemu-img convert` back to raw gives an image that mtools, fsck.fat and
//!   bootbank read as fixed, with the same state.tgz as the same fix made on the raw image;
//! - a lock held on the flat file (flock) refuses the write, nothing changes;
//! - ESXi's own `createType="vmfs"` / `VMFS` extent form, and a descriptor of two extents (the
//!   second at a non-zero offset) split inside bank 5 with `dd`, read and write the same; a
//!   32 GiB disk converted to `twoGbMaxExtentFlat` (16 extents) reads the same as the raw one;
//! - sparse VMDK (monolithicSparse, streamOptimized, twoGbMaxExtentSparse) and qcow2: exit 2, one
//!   line naming the conversion command; so does `fix`, and nothing is written.

use crate::common;

use crate::common::{
    Scenario, TempDir, bootbank, bootbank_ok, cmd, copy_sparse, output_text, p, run, sha256_file,
    story_bank,
};
use std::fs;
use std::path::{Path, PathBuf};

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["qemu-img", "flock", "sha256sum", "dd"])
}

fn demo_image() -> PathBuf {
    common::manifest_dir().join("examples").join("demo.img")
}

/// `qemu-img convert -f raw -O vmdk -o subformat=SUB RAW OUT`.
fn to_vmdk(raw: &Path, out: &Path, subformat: &str) {
    run(cmd("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vmdk", "-o"])
        .arg(format!("subformat={subformat}"))
        .arg(raw)
        .arg(out));
}

/// `qemu-img convert -O raw VMDK OUT`: what the virtual disk holds, read by qemu.
fn to_raw(vmdk: &Path, out: &Path) {
    run(cmd("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(vmdk)
        .arg(out));
}

/// The inspect JSON without the fields that name the target or count bytes.
fn report(dir: &Path, target: &Path) -> serde_json::Value {
    let out = bootbank_ok(dir, &["inspect", "--json", p(target)]);
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("target");
    o.remove("bytes_read");
    // Finding texts quote the command line with the target name.
    let text = serde_json::to_string(&v)
        .unwrap()
        .replace(p(target), "TARGET");
    serde_json::from_str(&text).unwrap()
}

fn owner(dir: &Path, target: &Path) -> String {
    bootbank_ok(
        dir,
        &["config", "get", p(target), "/device/000:022:00.0/owner"],
    )
    .trim()
    .to_string()
}

/// A working copy of the demo image and its monolithicFlat conversion in `t/name`.
fn demo_pair(t: &TempDir, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = t.join(name);
    fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("disk.img");
    copy_sparse(&demo_image(), &raw);
    let vmdk = dir.join("disk.vmdk");
    to_vmdk(&raw, &vmdk, "monolithicFlat");
    let flat = dir.join("disk-flat.vmdk");
    assert!(flat.is_file(), "qemu-img made no disk-flat.vmdk");
    (dir, raw, vmdk)
}

#[test]
fn flat_vmdk_reads_like_the_raw_image() {
    if !tools() {
        return;
    }
    let t = TempDir::new("vmdk-read");
    let (dir, raw, vmdk) = demo_pair(&t, "demo");
    let text = fs::read_to_string(&vmdk).unwrap();
    assert!(text.contains("createType=\"monolithicFlat\""), "{text}");
    assert_eq!(report(&dir, &vmdk), report(&dir, &raw));
    let human = bootbank_ok(&dir, &["inspect", p(&vmdk)]);
    assert!(human.contains("the host boots partition 5"), "{human}");
    assert!(human.contains("critical problem"), "{human}");
    assert_eq!(owner(&dir, &vmdk), "passthru");
    // extract reads through the descriptor too: the same esx.conf mtools finds on the raw image
    let out = dir.join("extracted");
    bootbank_ok(&dir, &["extract", p(&vmdk), "--to", p(&out)]);
    let state = dir.join("state.tgz");
    fs::write(&state, common::read_fat_file(&raw, 5, "state.tgz")).unwrap();
    assert_eq!(
        fs::read(out.join("state/local.tgz")).unwrap(),
        common::tar_member(&state, "local.tgz")
    );
    assert!(
        fs::read_to_string(out.join("local/etc/vmware/esx.conf"))
            .unwrap()
            .contains("/device/000:022:00.0/owner = \"passthru\"")
    );
    // a relative descriptor path resolves the extent next to the descriptor, not the cwd
    let o = bootbank(&t.join("."), &["inspect", "--json", "demo/disk.vmdk"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
}

#[test]
fn fix_config_and_restore_write_the_flat_extent() {
    if !tools() {
        return;
    }
    let t = TempDir::new("vmdk-write");
    let (dir, raw, vmdk) = demo_pair(&t, "demo");
    let flat = dir.join("disk-flat.vmdk");
    let descriptor_before = fs::read(&vmdk).unwrap();
    let flat_before = sha256_file(&flat);

    let fix = |target: &Path, backup: &Path| {
        bootbank_ok(
            &dir,
            &[
                "fix",
                p(target),
                "--device",
                "0000:16:00.0",
                "--yes",
                "--backup-dir",
                p(backup),
            ],
        )
    };
    let out = fix(&vmdk, &dir.join("backup-vmdk"));
    assert!(
        out.contains("Written and verified: partition 5 /state.tgz"),
        "{out}"
    );
    assert_eq!(
        fs::read(&vmdk).unwrap(),
        descriptor_before,
        "descriptor changed"
    );
    assert_ne!(sha256_file(&flat), flat_before, "flat extent not written");
    assert_eq!(owner(&dir, &vmdk), "vmkernel");

    // qemu reads the virtual disk back; mtools, fsck.fat and bootbank agree it is fixed, and its
    // state.tgz is the one the same fix writes on the raw image
    let back = dir.join("back.img");
    to_raw(&vmdk, &back);
    common::fsck_banks(&back);
    assert_eq!(owner(&dir, &back), "vmkernel");
    fix(&raw, &dir.join("backup-raw"));
    assert_eq!(
        common::read_fat_file(&back, 5, "state.tgz"),
        common::read_fat_file(&raw, 5, "state.tgz"),
        "the fix wrote a different state.tgz through the VMDK"
    );

    // config set and get on the descriptor
    bootbank_ok(
        &dir,
        &[
            "config",
            "set",
            p(&vmdk),
            "/adv/Misc/HostName",
            "nested01",
            "--yes",
            "--backup-dir",
            p(&dir.join("backup-set")),
        ],
    );
    let host = bootbank_ok(&dir, &["config", "get", p(&vmdk), "/adv/Misc/HostName"]);
    assert_eq!(host.trim(), "nested01");

    // restore both, newest first: back to passthru, the extent's state.tgz as it was
    for b in ["backup-set", "backup-vmdk"] {
        bootbank_ok(
            &dir,
            &[
                "restore",
                p(&vmdk),
                "--from",
                p(&dir.join(b)),
                "--yes",
                "--backup-dir",
                p(&dir.join(format!("{b}-undo"))),
            ],
        );
    }
    assert_eq!(owner(&dir, &vmdk), "passthru");
    to_raw(&vmdk, &back);
    assert_eq!(
        common::read_fat_file(&back, 5, "state.tgz"),
        common::read_fat_file(&demo_image(), 5, "state.tgz")
    );
    assert_eq!(fs::read(&vmdk).unwrap(), descriptor_before);
}

#[test]
fn a_lock_on_the_flat_extent_refuses_the_write() {
    if !tools() {
        return;
    }
    let t = TempDir::new("vmdk-lock");
    let (dir, _raw, vmdk) = demo_pair(&t, "demo");
    let flat = dir.join("disk-flat.vmdk");
    let want = sha256_file(&flat);
    let holder = common::HeldLock::hold(&flat);
    let backup = dir.join("backup");
    let o = bootbank(
        &dir,
        &[
            "fix",
            p(&vmdk),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    holder.release();
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use"), "{}", output_text(&o));
    assert!(err.contains("disk-flat.vmdk"), "{}", output_text(&o));
    assert_eq!(sha256_file(&flat), want, "a locked flat extent was written");
    assert!(!backup.exists(), "a refused write left a backup");
}

/// ESXi writes `createType="vmfs"` and `VMFS` extents; and a descriptor may list several
/// extents, each at an offset in its file.
#[test]
fn vmfs_form_and_two_extents_split_inside_a_bank() {
    if !tools() {
        return;
    }
    let t = TempDir::new("vmdk-forms");
    let (dir, raw, vmdk) = demo_pair(&t, "demo");
    let text = fs::read_to_string(&vmdk)
        .unwrap()
        .replace("createType=\"monolithicFlat\"", "createType=\"vmfs\"")
        .replace(" FLAT \"disk-flat.vmdk\"", " VMFS \"disk-flat.vmdk\"");
    assert!(text.contains("VMFS \"disk-flat.vmdk\" 0"), "{text}");
    fs::write(&vmdk, &text).unwrap();
    assert_eq!(report(&dir, &vmdk), report(&dir, &raw));

    // split the demo inside bank 5 (one sector past its start: the bank magic sector straddles
    // nothing, but the FAT and every file read crosses the boundary) into two files; the second
    // extent starts 3 sectors into its file after a 3-sector junk prefix
    let bank5 = common::part(&raw, 5);
    let cut = bank5.offset() / 512 + 7;
    let total = fs::metadata(&raw).unwrap().len() / 512;
    let a = dir.join("part-a.bin");
    let b = dir.join("part-b.bin");
    run(cmd("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", a.display()))
        .args(["bs=512", "status=none"])
        .arg(format!("count={cut}")));
    fs::write(&b, vec![0xA5u8; 3 * 512]).unwrap();
    run(cmd("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", b.display()))
        .args(["bs=512", "seek=3", "conv=notrunc", "status=none"])
        .arg(format!("skip={cut}")));
    let two = dir.join("two.vmdk");
    let text = text.replace(
        &format!("RW {total} VMFS \"disk-flat.vmdk\" 0"),
        &format!(
            "RW {cut} FLAT \"part-a.bin\" 0\nRW {} FLAT \"part-b.bin\" 3",
            total - cut
        ),
    );
    assert!(text.contains("part-b.bin"), "{text}");
    fs::write(&two, &text).unwrap();
    // qemu-img agrees the two-extent disk is the demo
    let check = dir.join("two-check.img");
    to_raw(&two, &check);
    assert_eq!(sha256_file(&check), sha256_file(&raw));
    assert_eq!(report(&dir, &two), report(&dir, &raw));

    bootbank_ok(
        &dir,
        &[
            "fix",
            p(&two),
            "--device",
            "0000:16:00.0",
            "--both-banks",
            "--yes",
            "--backup-dir",
            p(&dir.join("backup")),
        ],
    );
    let junk = common::read_bytes(&b, 0, 3 * 512);
    assert!(
        junk.iter().all(|&x| x == 0xA5),
        "bytes before the offset changed"
    );
    to_raw(&two, &check);
    common::fsck_banks(&check);
    assert_eq!(owner(&dir, &check), "vmkernel");
    assert_eq!(owner(&dir, &two), "vmkernel");
}

/// qemu-img's twoGbMaxExtentFlat: a 32 GiB disk in 16 extent files.
#[test]
fn two_gb_extents_from_qemu_img() {
    if !tools() {
        return;
    }
    let t = TempDir::new("vmdk-2gb");
    let raw = Scenario::new().bank(5, story_bank(3, 0)).build(t.path());
    let vmdk = t.join("big.vmdk");
    to_vmdk(&raw, &vmdk, "twoGbMaxExtentFlat");
    let text = fs::read_to_string(&vmdk).unwrap();
    let extents = text.lines().filter(|l| l.starts_with("RW ")).count();
    assert!(extents >= 16, "{text}");
    assert_eq!(report(t.path(), &vmdk), report(t.path(), &raw));
    assert_eq!(owner(t.path(), &vmdk), "passthru");
    // a missing extent file is named, exit 2
    fs::remove_file(t.join("big-f016.vmdk")).unwrap();
    let o = bootbank(t.path(), &["inspect", p(&vmdk)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("big-f016.vmdk"),
        "{}",
        output_text(&o)
    );
}

/// Exit 2 with one line that names the conversion command; `fix` writes nothing.
fn assert_needs_conversion(dir: &Path, target: &Path, what: &str) {
    let before = sha256_file(target);
    for args in [
        vec!["inspect", p(target)],
        vec!["fix", p(target), "--device", "0000:16:00.0", "--yes"],
        vec!["config", "get", p(target), "/adv/Misc/HostName"],
    ] {
        let o = bootbank(dir, &args);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", output_text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{what}: {}", output_text(&o));
        assert!(err.contains(what), "{what}: {}", output_text(&o));
        assert!(
            err.contains(&format!("qemu-img convert -O raw {}", p(target))),
            "{what}: {}",
            output_text(&o)
        );
        assert!(!err.contains("panicked"), "{}", output_text(&o));
    }
    assert_eq!(sha256_file(target), before);
}

#[test]
fn sparse_vmdk_and_qcow2_name_the_conversion() {
    if !tools() {
        return;
    }
    let t = TempDir::new("vmdk-sparse");
    let raw = t.join("disk.img");
    copy_sparse(&demo_image(), &raw);
    for sub in ["monolithicSparse", "streamOptimized"] {
        let out = t.join(format!("{sub}.vmdk"));
        to_vmdk(&raw, &out, sub);
        assert_needs_conversion(t.path(), &out, "sparse VMDK");
    }
    let split = t.join("split.vmdk");
    to_vmdk(&raw, &split, "twoGbMaxExtentSparse");
    assert_needs_conversion(t.path(), &split, "twoGbMaxExtentSparse");
    let q = t.join("nested.qcow2");
    run(cmd("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&q));
    assert_needs_conversion(t.path(), &q, "qcow2");
    // the suggested command works and gives a readable image
    let o = bootbank(t.path(), &["inspect", p(&q)]);
    let err = String::from_utf8_lossy(&o.stderr);
    let command = err.split('`').nth(1).unwrap().to_string();
    let status = cmd("bash")
        .arg("-c")
        .arg(&command)
        .current_dir(t.path())
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let converted = t.join("nested.img");
    assert_eq!(owner(t.path(), &converted), "passthru");
}

#[test]
fn broken_descriptors_are_one_line_errors() {
    let t = TempDir::new("vmdk-bad");
    let cases = [
        ("RW 16 FLAT \"missing-flat.vmdk\" 0\n", "missing-flat.vmdk"),
        ("RW lots FLAT \"x\" 0\n", "line 3"),
        ("RW 16 ZERO\n", "ZERO"),
        ("NOACCESS 16 FLAT \"x\" 0\n", "NOACCESS"),
        ("", "no extent line"),
    ];
    for (i, (extent, want)) in cases.iter().enumerate() {
        let d = t.join(format!("bad{i}.vmdk"));
        fs::write(
            &d,
            format!("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n{extent}"),
        )
        .unwrap();
        let o = bootbank(t.path(), &["inspect", p(&d)]);
        assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{}", output_text(&o));
        assert!(err.contains("vmdk: "), "{}", output_text(&o));
        assert!(err.contains(want), "{want}: {}", output_text(&o));
    }
    // a flat extent shorter than the descriptor says: named with both sizes
    fs::write(t.join("short-flat.vmdk"), vec![0u8; 4096]).unwrap();
    let d = t.join("short.vmdk");
    fs::write(
        &d,
        "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 16 FLAT \"short-flat.vmdk\" 0\n",
    )
    .unwrap();
    let o = bootbank(t.path(), &["inspect", p(&d)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds 4096 bytes"), "{}", output_text(&o));
    assert!(err.contains("says 8192"), "{}", output_text(&o));
}
