//! `restore-config`: the demo disk's bank 5 (the one that boots next) with its state.tgz deleted
//! (mtools `mdel`), truncated, corrupted or emptied, restored from bank 6 or from a config
//! bundle built with GNU tar (`tests/tools/mkbundle`: Manifest.txt + state.tgz). Oracles:
//! mtools reads the restored file back (byte-identical to the source), `fsck.fat -n` is clean,
//! GNU tar lists it, `bootbank inspect` reads its configuration, and every other byte of the
//! image (bank 6, every other file and sector outside bank 5) is unchanged. A power cut replay
//! of the create, and the real 7.0.2 host's encrypted configuration restored from a bundle.

use crate::common::{self, Scenario, TempDir, cmd, run};
use crate::crash_support::{self, BankPart};
use bootbank::disk::Disk;
use bootbank::io::record::{Journal, Recorder};
use bootbank::restore_config::{self, Request, Source};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// The demo's logical sector.
const SECTOR: u64 = 512;
/// The demo's host: `/system/uuid` of both banks' esx.conf, and bank 5's build.
const DEMO_UUID: &str = "52a4c1e6-3f0b-91d2-7c55-002590a1b2c0";
const DEMO_RELEASE: &str = "VMware ESXi 6.7.0 build-14320388";
/// The real 7.0.2 host's /system/uuid and release.
const REAL_UUID: &str = "5fb27665-83f4-b1f5-3e9f-000c29801686";
const REAL_RELEASE: &str = "VMware ESXi 7.0.2 build-17867351";

fn tools() -> bool {
    common::require_tools(&["mtools", "fsck.fat", "tar", "gzip"])
}

/// How bank 5's state.tgz is broken before the restore.
#[derive(Clone, Copy, Debug)]
enum Damage {
    Deleted,
    Truncated,
    Corrupted,
    Empty,
}

/// A copy of the demo disk with bank 5's state.tgz broken by mtools.
fn broken_demo(tmp: &TempDir, how: Damage) -> PathBuf {
    let img = tmp.join(format!("{how:?}.img"));
    fs::copy(crash_support::demo(), &img).unwrap();
    break_state(&img, how);
    img
}

fn break_state(img: &Path, how: Damage) {
    let p = common::part(img, 5);
    let state = common::read_fat_file(img, 5, "state.tgz");
    let replace = |bytes: &[u8]| {
        let f = img.with_extension("new-state");
        fs::write(&f, bytes).unwrap();
        run(cmd("mcopy")
            .arg("-o")
            .arg("-i")
            .arg(p.mtools_image(img))
            .arg(&f)
            .arg("::/state.tgz"));
    };
    match how {
        Damage::Deleted => {
            run(cmd("mdel")
                .arg("-i")
                .arg(p.mtools_image(img))
                .arg("::/state.tgz"));
        }
        Damage::Truncated => replace(&state[..state.len() / 2]),
        Damage::Corrupted => {
            let mut s = state.clone();
            for b in &mut s[20..60] {
                *b ^= 0xA5;
            }
            replace(&s)
        }
        Damage::Empty => replace(&[]),
    }
    common::fsck_banks(img);
}

/// The image's bytes outside bank `n`'s partition.
fn outside(img: &Path, n: u32) -> Vec<u8> {
    let p = common::part(img, n);
    let mut all = fs::read(img).unwrap();
    all.drain(p.offset() as usize..(p.offset() + p.len()) as usize);
    all
}

/// Sectors of bank `n` that differ between two images, per region of the FAT volume
/// (reserved incl. boot sector, FATs, root directory, data), from the boot sector's geometry.
fn changed_sectors(before: &Path, after: &Path, n: u32) -> [usize; 4] {
    let p = common::part(before, n);
    let (a, b) = (fs::read(before).unwrap(), fs::read(after).unwrap());
    let (a, b) = (
        &a[p.offset() as usize..(p.offset() + p.len()) as usize],
        &b[p.offset() as usize..(p.offset() + p.len()) as usize],
    );
    let le16 = |at: usize| u16::from_le_bytes([a[at], a[at + 1]]) as usize;
    let (sector, reserved, fats, root_entries, fat_sectors) =
        (le16(11), le16(14), a[16] as usize, le16(17), le16(22));
    let root_at = reserved + fats * fat_sectors;
    let data_at = root_at + (root_entries * 32).div_ceil(sector);
    let mut out = [0; 4];
    for (i, (x, y)) in a.chunks(sector).zip(b.chunks(sector)).enumerate() {
        if x != y {
            let region = match i {
                _ if i < reserved => 0,
                _ if i < root_at => 1,
                _ if i < data_at => 2,
                _ => 3,
            };
            out[region] += 1;
        }
    }
    out
}

/// Every root file of bank `n` but `except`, read with mtools.
fn files(img: &Path, n: u32, except: &str) -> Vec<(String, Vec<u8>)> {
    common::mdir(img, n)
        .into_iter()
        .map(|l| l.trim_start_matches("::/").to_string())
        .filter(|name| !name.eq_ignore_ascii_case(except))
        .map(|name| {
            let bytes = common::read_fat_file(img, n, &name);
            (name, bytes)
        })
        .collect()
}

/// GNU tar lists `members` in a state.tgz.
fn tar_lists(state: &[u8], tmp: &TempDir, tag: &str, members: &[&str]) {
    let f = tmp.join(format!("{tag}-state.tgz"));
    fs::write(&f, state).unwrap();
    let listing = common::run_text(cmd("tar").arg("-tzf").arg(&f));
    for m in members {
        assert!(
            listing.lines().any(|l| l.trim_start_matches("./") == *m),
            "{tag}: GNU tar does not list {m}: {listing}"
        );
    }
}

/// `bootbank inspect --json` of the image.
fn inspect(img: &Path) -> Value {
    let out = common::bootbank_ok(
        img.parent().unwrap(),
        &["inspect", common::p(img), "--json"],
    );
    serde_json::from_str(&out).unwrap()
}

/// Runs restore-config with `args`; returns (exit code, stdout, stderr).
fn restore(img: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["restore-config", common::p(img)];
    all.extend_from_slice(args);
    let o = common::bootbank(img.parent().unwrap(), &all);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The checks after a restore of bank 5 with `source`: mtools, fsck, tar, inspect, and every
/// other byte unchanged since `before`.
fn assert_restored(img: &Path, before: &Path, source: &[u8], tmp: &TempDir, tag: &str) {
    assert_eq!(
        common::read_fat_file(img, 5, "state.tgz"),
        source,
        "{tag}: mtools reads a state.tgz that is not the source's"
    );
    common::fsck_banks(img);
    tar_lists(source, tmp, tag, &["local.tgz"]);
    assert_eq!(
        outside(img, 5),
        outside(before, 5),
        "{tag}: bytes outside bank 5 changed"
    );
    assert_eq!(
        files(img, 5, "state.tgz"),
        files(before, 5, "state.tgz"),
        "{tag}: another file of bank 5 changed"
    );
    // In bank 5: the boot sector and reserved sectors untouched, one root-directory sector
    // (the entry created or switched), FAT sectors and the new chain's data.
    let [reserved, fat, root, _data] = changed_sectors(before, img, 5);
    assert_eq!(
        (reserved, root),
        (0, 1),
        "{tag}: reserved and root sectors changed"
    );
    assert!(fat > 0, "{tag}: no FAT sector changed");
    let r = inspect(img);
    let dev = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pci_address"] == crash_support::DEVICE)
        .unwrap_or_else(|| panic!("{tag}: inspect lists no {}: {r}", crash_support::DEVICE));
    // Bank 6's (healthy) configuration is the one bank 5 boots with now.
    assert_eq!(dev["owner_raw"], "vmkernel", "{tag}: {dev}");
}

#[test]
fn from_bank_restores_a_deleted_truncated_corrupt_or_empty_state_tgz() {
    if !tools() {
        return;
    }
    let tmp = TempDir::new("restore-config-bank");
    let source = common::read_fat_file(&crash_support::demo(), 6, "state.tgz");
    for how in [
        Damage::Deleted,
        Damage::Truncated,
        Damage::Corrupted,
        Damage::Empty,
    ] {
        let img = broken_demo(&tmp, how);
        let before = tmp.join(format!("{how:?}-before.img"));
        fs::copy(&img, &before).unwrap();
        let old =
            (!matches!(how, Damage::Deleted)).then(|| common::read_fat_file(&img, 5, "state.tgz"));

        // Dry run: the plan, nothing written.
        let (code, out, err) = restore(&img, &["--from-bank", "6", "--dry-run", "--json"]);
        assert_eq!(code, 0, "{how:?}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let plan = &v["plan"];
        assert_eq!(v["dry_run"], true);
        assert_eq!(plan["partition"], 5);
        assert_eq!(
            plan["method"],
            if matches!(how, Damage::Deleted) {
                "create"
            } else {
                "replace"
            },
            "{how:?}"
        );
        assert_eq!(
            plan["current"]["state"],
            match how {
                Damage::Deleted => "missing",
                Damage::Empty => "empty",
                _ => "unreadable",
            }
        );
        assert_eq!(plan["source"]["partition"], 6);
        assert_eq!(plan["source"]["size"], source.len());
        assert!(
            plan["diff"]
                .as_str()
                .unwrap()
                .contains("+/device/000:022:00.0/owner = \"vmkernel\""),
            "{how:?}: {}",
            plan["diff"]
        );
        assert_eq!(
            fs::read(&img).unwrap(),
            fs::read(&before).unwrap(),
            "dry run wrote"
        );

        let backup = tmp.join(format!("{how:?}-backup"));
        let (code, out, err) = restore(
            &img,
            &[
                "--from-bank",
                "6",
                "--yes",
                "--json",
                "--backup-dir",
                common::p(&backup),
            ],
        );
        assert_eq!(code, 0, "{how:?}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["outcome"]["written"][0], "partition 5 /state.tgz");
        assert_restored(&img, &before, &source, &tmp, &format!("{how:?}"));
        // The backup holds what was there, even a corrupt file; nothing when it was missing.
        let manifest: Value =
            serde_json::from_slice(&fs::read(backup.join("manifest.json")).unwrap()).unwrap();
        match &old {
            Some(old) => {
                assert_eq!(manifest["entries"].as_array().unwrap().len(), 1);
                assert_eq!(&fs::read(backup.join("partition5-state.tgz")).unwrap(), old);
            }
            None => assert!(manifest["entries"].as_array().unwrap().is_empty()),
        }

        // A rerun has nothing to do and writes nothing.
        let after = fs::read(&img).unwrap();
        let (code, out, err) = restore(&img, &["--from-bank", "6", "--yes"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("Nothing to change"), "{out}");
        assert_eq!(fs::read(&img).unwrap(), after);
    }
}

/// A configBundle of bank 6's state.tgz, made with GNU tar by mkbundle.
fn bundle(tmp: &TempDir, name: &str, state: &[u8], release: &str, uuid: &str) -> PathBuf {
    let s = tmp.join(format!("{name}.state.tgz"));
    fs::write(&s, state).unwrap();
    let out = tmp.join(format!("{name}.tgz"));
    common::mkbundle(&s, &out, &["--release-level", release, "--uuid", uuid]);
    assert_eq!(
        common::tar_listing(&out)
            .lines()
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect::<Vec<_>>(),
        ["Manifest.txt", "state.tgz"]
    );
    out
}

#[test]
fn from_bundle_checks_release_level_and_host_uuid_and_force_overrides() {
    if !tools() || !common::builder_available() {
        return;
    }
    let tmp = TempDir::new("restore-config-bundle");
    let source = common::read_fat_file(&crash_support::demo(), 6, "state.tgz");
    let good = bundle(&tmp, "good", &source, DEMO_RELEASE, DEMO_UUID);
    let other_build = bundle(
        &tmp,
        "build",
        &source,
        "VMware ESXi 7.0.3 build-22348816",
        DEMO_UUID,
    );
    let other_host = bundle(
        &tmp,
        "host",
        &source,
        DEMO_RELEASE,
        "11111111-2222-3333-4444-555555555555",
    );

    for (b, what) in [
        (&other_build, "MismatchedBundle"),
        (&other_host, "another host"),
    ] {
        let img = broken_demo(&tmp, Damage::Deleted);
        let before = fs::read(&img).unwrap();
        let (code, _, err) = restore(&img, &["--from", common::p(b), "--yes"]);
        assert_eq!(code, 2, "{}: {err}", b.display());
        assert!(err.contains("--force"), "{err}");
        assert!(
            err.contains(what) || err.contains("MismatchedBundle"),
            "{err}"
        );
        assert_eq!(fs::read(&img).unwrap(), before, "a refused restore wrote");
        // --force takes it, and says so.
        let (code, out, err) = restore(
            &img,
            &["--from", common::p(b), "--force", "--yes", "--json"],
        );
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let checks = v["plan"]["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .any(|c| c["verdict"] == "mismatch" && c["forced"] == true),
            "{checks:?}"
        );
        let pristine = tmp.join("pristine.img");
        fs::copy(crash_support::demo(), &pristine).unwrap();
        break_state(&pristine, Damage::Deleted);
        assert_restored(&img, &pristine, &source, &tmp, "forced");
    }

    // The matching bundle, onto a corrupt state.tgz.
    let img = broken_demo(&tmp, Damage::Corrupted);
    let before = tmp.join("corrupt-before.img");
    fs::copy(&img, &before).unwrap();
    let (code, out, err) = restore(&img, &["--from", common::p(&good), "--yes", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let checks = v["plan"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    for c in checks {
        assert_eq!(c["verdict"], "match", "{c}");
        assert_eq!(c["forced"], false);
    }
    assert_eq!(checks[0]["bundle"], DEMO_RELEASE);
    assert_eq!(checks[0]["host"], "6.7.0-0.0.14320388");
    assert_eq!(checks[1]["host"], DEMO_UUID);
    assert_eq!(checks[1]["host_from"], "partition 6 /state.tgz");
    assert_eq!(v["plan"]["source"]["kind"], "bundle");
    assert_eq!(v["plan"]["source"]["release_level"], DEMO_RELEASE);
    assert_restored(&img, &before, &source, &tmp, "bundle");

    // Bad input: typed refusals, exit 2, nothing written.
    let img = broken_demo(&tmp, Damage::Deleted);
    let before = fs::read(&img).unwrap();
    let not_bundle = tmp.join("plain.tgz");
    fs::write(&not_bundle, &source).unwrap();
    for args in [
        vec!["--from", common::p(&not_bundle), "--yes"],
        vec!["--from-bank", "5", "--yes"],
        vec!["--from-bank", "9", "--yes"],
        vec!["--from", "/nonexistent/bundle.tgz", "--yes"],
    ] {
        let (code, _, err) = restore(&img, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("bootbank: error: "), "{err}");
        assert_eq!(fs::read(&img).unwrap(), before, "{args:?} wrote");
    }
    // Both sources at once, or none: clap refuses.
    let (code, _, _) = restore(&img, &["--yes"]);
    assert_eq!(code, 2);
}

/// Every image a power cut during the create can leave: the file missing (as before) or the
/// complete new one, fsck.fat at most lost clusters; a rerun then restores it and fsck is clean.
#[test]
fn a_power_cut_during_the_create_leaves_no_file_or_the_complete_one() {
    if !tools() {
        return;
    }
    let tmp = TempDir::new("restore-config-cut");
    let pristine = broken_demo(&tmp, Damage::Deleted);
    let req = Request {
        source: Source::Bank(6),
        force: false,
    };
    replay_create(&pristine, &req, &tmp, "demo from bank 6", 512);
}

/// [`replay_create`] with the real host's encrypted state.tgz (110 KiB: a chain of hundreds of
/// clusters, so torn and reordered multi-sector writes are sampled) from a bundle.
#[test]
fn a_power_cut_during_the_create_of_the_real_hosts_state_tgz() {
    if !tools() || !common::builder_available() || !common::require_real() {
        return;
    }
    let tmp = TempDir::new("restore-config-cut-real");
    let (img, state) = real_disk_without_state(&tmp);
    let b = bundle(&tmp, "real", &state, REAL_RELEASE, REAL_UUID);
    let req = Request {
        source: Source::Bundle(b),
        force: false,
    };
    // Each state costs a decryption and two fsck runs: a fixed-seed sample per interval.
    replay_create(&img, &req, &tmp, "real host from a bundle", 128);
}

/// Records the create of `req` on `pristine` and replays its crash states (see above): every
/// one of an interval with at most `limit`, else `limit` sampled with a fixed seed.
fn replay_create(pristine: &Path, req: &Request, tmp: &TempDir, tag: &str, limit: u64) {
    let plan = restore_config::plan(pristine, req).unwrap();
    assert_eq!(plan.method, restore_config::WriteMethod::Create);
    let new = plan.new_bytes.clone();
    let base = fs::read(pristine).unwrap();
    let len = base.len() as u64;
    let (rec, events) = Recorder::new(base.clone());
    restore_config::apply_on(
        &plan,
        &tmp.join("backup-0"),
        Disk::from_storage(Box::new(rec), len, true),
    )
    .unwrap();
    let journal = Journal::new(base, &events.borrow(), SECTOR);
    assert!(journal.flushes() >= 2, "chain and entry are flushed apart");

    let bank = BankPart::of(pristine, 5);
    let img = tmp.join("cut.img");
    let scratch = tmp.join("fsck.img");
    let (mut total, mut missing, mut complete) = (0, 0, 0);
    let mut problems = Vec::new();
    for k in 0..journal.intervals() {
        let (states, cov) = journal.crash_states(k, limit, 0x5eed + k as u64);
        eprintln!(
            "interval {k}: {} sectors, {} states{}",
            cov.sectors,
            cov.tried,
            if cov.possible.is_some() {
                " (all)"
            } else {
                " (sampled)"
            }
        );
        for (i, st) in states.into_iter().enumerate() {
            total += 1;
            let mut problem = |w: String| problems.push(format!("interval {k} state {i}: {w}"));
            fs::write(&img, &st.image).unwrap();
            let listed = bank.names(&img).iter().any(|n| n == "state.tgz");
            match (listed, bank.read(&img, "state.tgz")) {
                (false, _) => missing += 1,
                (true, Some(b)) if b == new => {
                    complete += 1;
                    if let Err(e) = bootbank::inspect::inspect(&img, &Default::default()) {
                        problem(format!("inspect: {e}"));
                    }
                }
                (true, Some(b)) => problem(format!(
                    "a {}-byte state.tgz that is not the new one",
                    b.len()
                )),
                (true, None) => problem("state.tgz listed but unreadable".into()),
            }
            let cut = bank.fsck(&img, &scratch);
            if !cut.only_interrupted_write_leftovers() {
                problem(format!("fsck.fat -n after the cut: {cut}"));
            }
            let rerun = restore_config::plan(&img, req)
                .and_then(|p| restore_config::apply(&p, &tmp.join(format!("backup-{k}-{i}"))));
            if let Err(e) = rerun {
                problem(format!("rerun: {e}"));
                continue;
            }
            if bank.read(&img, "state.tgz").as_ref() != Some(&new) {
                problem("after the rerun state.tgz is not the new one".into());
            }
            let after = bank.fsck(&img, &scratch);
            if !after.is_clean() {
                problem(format!("fsck.fat -n after the rerun: {after}"));
            }
        }
    }
    eprintln!(
        "{tag}: {} flushes, {total} crash states: {missing} without state.tgz, {complete} with the complete new one",
        journal.flushes()
    );
    assert!(missing > 0 && complete > 0, "both outcomes are reached");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A demo-layout disk of the real 7.0.2 host: both banks hold its real local.tgz sealed as its
/// bootbank holds it (local.tgz.ve and the real encryption.info); bank 5's state.tgz deleted
/// (mdel). Returns the image and that state.tgz.
fn real_disk_without_state(tmp: &TempDir) -> (PathBuf, Vec<u8>) {
    // mkrealhost with no options writes the real local.tgz.decrypted byte for byte.
    let local = common::mkrealhost(tmp.path(), "local.tgz", &[]);
    assert_eq!(
        fs::read(&local).unwrap(),
        common::real_file("local.tgz.decrypted")
    );
    let state_path = tmp.join("state.tgz");
    common::real_encrypted_state(tmp.path(), &local, &state_path);
    let state = fs::read(&state_path).unwrap();
    let img = Scenario::new()
        .layout("demo")
        .bank(5, common::real_bank(3, 0, state.clone()))
        .bank(6, common::real_bank(2, 0, state.clone()))
        .build(tmp.path());
    let p = common::part(&img, 5);
    run(cmd("mdel")
        .arg("-i")
        .arg(p.mtools_image(&img))
        .arg("::/state.tgz"));
    common::fsck_banks(&img);

    (img, state)
}

/// The real 7.0.2 host: its real local.tgz sealed as its bootbank holds it (local.tgz.ve and the
/// real encryption.info), in a bundle made with GNU tar; bank 5's state.tgz deleted.
#[test]
fn real_encrypted_host_restored_from_a_bundle() {
    if !tools() || !common::builder_available() || !common::require_real() {
        return;
    }
    let tmp = TempDir::new("restore-config-real");
    let (img, state) = real_disk_without_state(&tmp);
    let before = tmp.join("before.img");
    fs::copy(&img, &before).unwrap();
    let good = bundle(&tmp, "real", &state, REAL_RELEASE, REAL_UUID);
    // Another host's bundle of the same build is refused.
    let (code, _, err) = restore(
        &img,
        &[
            "--from",
            common::p(&bundle(&tmp, "other", &state, REAL_RELEASE, DEMO_UUID)),
            "--yes",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(REAL_UUID) && err.contains(DEMO_UUID), "{err}");

    let (code, out, err) = restore(&img, &["--from", common::p(&good), "--yes", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["plan"]["method"], "create");
    assert_eq!(v["plan"]["source"]["encryption"], "kdf");
    assert_eq!(v["plan"]["source"]["system_uuid"], REAL_UUID);
    assert_eq!(v["plan"]["checks"][0]["verdict"], "match");
    assert_eq!(v["plan"]["checks"][1]["verdict"], "match");
    assert_eq!(common::read_fat_file(&img, 5, "state.tgz"), state);
    common::fsck_banks(&img);
    tar_lists(&state, &tmp, "real", &["local.tgz.ve", "encryption.info"]);
    assert_eq!(outside(&img, 5), outside(&before, 5));
    assert_eq!(files(&img, 5, "state.tgz"), files(&before, 5, "state.tgz"));
    let [reserved, _, root, _] = changed_sectors(&before, &img, 5);
    assert_eq!((reserved, root), (0, 1));
    let r = inspect(&img);
    let cfg = &r["config"];
    assert_eq!(cfg["encryption"], "kdf", "{cfg}");
    let real_conf = common::real_file("esx.conf");
    assert_eq!(
        cfg["esx_conf_lines"],
        String::from_utf8_lossy(&real_conf).lines().count(),
        "{cfg}"
    );
}
