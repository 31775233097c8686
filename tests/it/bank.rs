//! `bootbank bank status | rollback | select N` against ESXi-like disks built with real tools,
//! checked with outside tools: mtools (`mtype`) for boot.cfg, `fsck.fat -n` for the file
//! systems, byte comparison of whole images, and `inspect --json` for the prediction.

use crate::common;

use crate::common::{
    BankSpec, Scenario, TempDir, boot_cfg, bootbank, bootbank_ok, esxconf, healthy_bank,
    output_text, p, sha256_file, story_bank,
};
use bootbank::WriteError;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["mtype", "fsck.fat", "sha256sum"])
}

fn demo(b5: BankSpec, b6: BankSpec) -> Scenario {
    Scenario::new().layout("demo").bank(5, b5).bank(6, b6)
}

fn json(cwd: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&bootbank_ok(cwd, args)).expect("JSON output")
}

/// `bank status --json` agrees with `inspect --json` on every bank and on the next boot.
fn status_agrees_with_inspect(t: &TempDir, img: &Path) -> Value {
    let s = json(t.path(), &["bank", "status", p(img), "--json"]);
    let i = json(t.path(), &["inspect", p(img), "--json"]);
    assert_eq!(s["next_boot_partition"], i["next_boot_partition"], "{s:#}");
    assert_eq!(s["banks"], i["banks"], "banks differ from inspect");
    assert_eq!(s["will_boot"], i["will_boot"]);
    s
}

/// Every bank scenario of the fixture builder: installed pair, fresh install (empty second bank
/// with the larger `updated`), upgrading and dirty banks, a tie, a missing bootstate, a
/// non-numeric value, no valid bank, MBR, 4Kn and the 6.x layout.
#[test]
fn status_agrees_with_inspect_on_every_bank_scenario() {
    if !tools() {
        return;
    }
    let mut tie6 = BankSpec::installed("6.7.0-0.0.1", 7, 0, &esxconf("story.conf"));
    tie6.boot_cfg = tie6.boot_cfg.replace("bootstate=0\n", "");
    let mut nonnum = story_bank(9, 0);
    nonnum.boot_cfg = nonnum.boot_cfg.replace("updated=9", "updated=nine");
    let cases: Vec<(&str, Scenario, Option<u64>, Option<u64>)> = vec![
        (
            "pair",
            demo(story_bank(3, 0), healthy_bank(2, 0)),
            Some(5),
            Some(6),
        ),
        (
            "fresh",
            demo(
                healthy_bank(1, 0),
                BankSpec::boot_cfg_only(&boot_cfg("6.7.0-0.0.14320388", 2, 3)),
            ),
            Some(5),
            None,
        ),
        (
            "upgrading",
            demo(healthy_bank(4, 0), story_bank(5, 1)),
            Some(6),
            Some(5),
        ),
        (
            "dirty",
            demo(healthy_bank(4, 0), story_bank(5, 2)),
            Some(5),
            None,
        ),
        (
            "tie",
            demo(
                BankSpec::installed("6.7.0-0.0.1", 7, 0, &esxconf("healthy.conf")),
                tie6,
            ),
            Some(5),
            Some(6),
        ),
        ("nonnum", demo(nonnum, healthy_bank(3, 0)), Some(6), None),
        (
            "nobank",
            demo(
                story_bank(3, 3),
                BankSpec::boot_cfg_only("bootstate=0\nupdated=0\nbuild=\n"),
            ),
            None,
            None,
        ),
        (
            "mbr",
            demo(healthy_bank(2, 0), story_bank(1, 0)).table("mbr"),
            Some(5),
            Some(6),
        ),
        (
            "4kn",
            Scenario::new()
                .layout("min")
                .size("8G")
                .sector(4096)
                .bank(5, story_bank(2, 0))
                .bank(6, BankSpec::boot_cfg_only(&boot_cfg("8.0.2-0.0.2", 3, 3))),
            Some(5),
            None,
        ),
        (
            "six",
            Scenario::new()
                .layout("6x")
                .bank(5, healthy_bank(2, 0))
                .bank(6, story_bank(3, 0)),
            Some(6),
            Some(5),
        ),
    ];
    for (tag, scenario, next, rollback) in cases {
        let t = TempDir::new(&format!("bank-status-{tag}"));
        let img = scenario.build(t.path());
        let s = status_agrees_with_inspect(&t, &img);
        assert_eq!(s["next_boot_partition"].as_u64(), next, "{tag}: {s:#}");
        assert_eq!(s["rollback_partition"].as_u64(), rollback, "{tag}: {s:#}");
        let text = bootbank_ok(t.path(), &["bank", "status", p(&img)]);
        match next {
            Some(n) => assert!(
                text.contains(&format!("Next boot: partition {n}.")),
                "{tag}: {text}"
            ),
            None => assert!(text.contains("will not boot"), "{tag}: {text}"),
        }
    }
}

/// Status on a lone bank partition image, and refusals of what has no banks.
#[test]
fn status_of_a_partition_image_and_refusals() {
    if !tools() {
        return;
    }
    let t = TempDir::new("bank-status-kinds");
    let img = demo(story_bank(3, 0), healthy_bank(2, 0)).build(t.path());
    let part5 = t.join("p5.img");
    common::dd_partition(&img, &common::part(&img, 5), &part5);
    let s = json(t.path(), &["bank", "status", p(&part5), "--json"]);
    assert_eq!(s["kind"], "partition");
    assert_eq!(s["banks"].as_array().unwrap().len(), 1);
    assert_eq!(s["banks"][0]["valid"], true);
    assert!(s["next_boot_partition"].is_null());

    let state = t.join("state.tgz");
    common::copy_fat_file(&img, 5, "state.tgz", &state);
    let junk = t.join("junk.bin");
    std::fs::write(&junk, vec![0u8; 65536]).unwrap();
    for target in [&state, &junk, &t.path().to_path_buf()] {
        for args in [
            vec!["bank", "status", p(target)],
            vec!["bank", "rollback", p(target), "--yes"],
            vec!["bank", "select", p(target), "5", "--yes"],
        ] {
            let o = bootbank(t.path(), &args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", output_text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.lines().count(), 1, "one-line message: {err}");
        }
    }
    // A lone partition cannot be rolled back: there is no other bank on it.
    let before = sha256_file(&part5);
    let o = bootbank(t.path(), &["bank", "rollback", p(&part5), "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_eq!(sha256_file(&part5), before);
}

/// Byte offsets where two files differ.
fn diff_offsets(a: &[u8], b: &[u8]) -> Vec<usize> {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

/// SHA-256 in lower-case hex, as `sha256sum` prints it.
fn sha(b: &[u8]) -> String {
    bootbank::fix::sha256_hex(b)
}

/// Rollback on two valid banks: one digit, in place, nothing else on the disk; fsck clean;
/// inspect predicts the other bank; restore puts the original boot.cfg back.
#[test]
fn rollback_writes_one_digit_in_place_and_restore_undoes_it() {
    if !tools() {
        return;
    }
    let t = TempDir::new("bank-rollback");
    let img = demo(story_bank(3, 0), healthy_bank(2, 0)).build(t.path());
    let before = std::fs::read(&img).unwrap();
    let cfg_before = common::mtype(&img, 5, "boot.cfg");
    let cfg6_before = common::mtype(&img, 6, "boot.cfg");
    let mdir_before = mdir_full(&img, 5);

    // Dry run: nothing written, plan says in place.
    let o = bootbank_ok(t.path(), &["bank", "rollback", p(&img), "--dry-run"]);
    assert!(o.contains("one digit in place"), "{o}");
    assert!(o.contains("Dry run: nothing written."), "{o}");
    assert_eq!(sha256_file(&img), sha(&before), "dry run wrote");

    // Without a terminal and without --yes: refused, nothing written.
    let o = bootbank(t.path(), &["bank", "rollback", p(&img)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_eq!(sha256_file(&img), sha(&before));

    let backup = t.join("backup");
    let out = json(
        t.path(),
        &[
            "bank",
            "rollback",
            p(&img),
            "--yes",
            "--json",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert_eq!(
        out["plan"]["steps"][0]["method"], "in_place_digit",
        "{out:#}"
    );
    assert_eq!(out["plan"]["next_boot_partition_after"], 6);
    assert_eq!(
        out["status"]["next_boot_partition"], 6,
        "read back: {out:#}"
    );
    assert_eq!(out["outcome"]["stats"]["write_calls"], 1);
    assert_eq!(out["outcome"]["stats"]["bytes_written"], 1);

    // mtools sees boot.cfg with exactly the bootstate digit changed.
    let cfg_after = common::mtype(&img, 5, "boot.cfg");
    let d = diff_offsets(cfg_before.as_bytes(), cfg_after.as_bytes());
    assert_eq!(d.len(), 1, "{cfg_after}");
    assert_eq!(&cfg_before[d[0] - 10..=d[0]], "bootstate=0");
    assert_eq!(&cfg_after[d[0] - 10..=d[0]], "bootstate=3");
    assert_eq!(common::mtype(&img, 6, "boot.cfg"), cfg6_before);
    // Directory listing (names, sizes, times) unchanged.
    assert_eq!(mdir_full(&img, 5), mdir_before);

    // The whole image differs in one byte, inside partition 5; every region around it hashes
    // the same as before.
    let after = std::fs::read(&img).unwrap();
    let d = diff_offsets(&before, &after);
    assert_eq!(d.len(), 1, "image bytes changed: {d:?}");
    let q5 = common::part(&img, 5);
    let at = d[0] as u64;
    assert!(at > q5.offset() && at < q5.offset() + q5.len());
    assert_eq!(sha(&before[..d[0]]), sha(&after[..d[0]]));
    assert_eq!(sha(&before[d[0] + 1..]), sha(&after[d[0] + 1..]));
    assert_eq!((before[d[0]], after[d[0]]), (b'0', b'3'));

    let checked = common::fsck_fat_partitions(&img, t.path());
    assert!(checked.contains(&5) && checked.contains(&6), "{checked:?}");
    let i = json(t.path(), &["inspect", p(&img), "--json"]);
    assert_eq!(i["next_boot_partition"], 6);

    // Only one valid bank is left: a second rollback is refused, nothing written.
    let now = sha256_file(&img);
    let o = bootbank(t.path(), &["bank", "rollback", p(&img), "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no alternate hypervisor"),
        "{}",
        output_text(&o)
    );
    assert_eq!(sha256_file(&img), now);

    // The backup holds the original boot.cfg; restore puts it back (in place too).
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["entries"][0]["file"], "boot.cfg");
    assert_eq!(
        std::fs::read_to_string(backup.join("partition5-boot.cfg")).unwrap(),
        cfg_before
    );
    let o = bootbank_ok(
        t.path(),
        &[
            "restore",
            p(&img),
            "--from",
            p(&backup),
            "--yes",
            "--backup-dir",
            p(&t.join("backup2")),
        ],
    );
    assert!(o.contains("Next boot: partition 5."), "{o}");
    assert_eq!(common::mtype(&img, 5, "boot.cfg"), cfg_before);
    assert_eq!(sha256_file(&img), sha(&before), "restore is byte-exact");
}

/// With no bootstate line, the digit cannot be written in place: boot.cfg is replaced the safe
/// way, the plan says so, and the result is what the bootloader rules predict.
#[test]
fn rollback_without_bootstate_line_replaces_the_file() {
    if !tools() {
        return;
    }
    let t = TempDir::new("bank-rollback-nostate");
    let mut b5 = story_bank(3, 0);
    b5.boot_cfg = b5.boot_cfg.replace("bootstate=0\n", "");
    let img = demo(b5.clone(), healthy_bank(2, 0)).build(t.path());
    let o = bootbank_ok(
        t.path(),
        &[
            "bank",
            "rollback",
            p(&img),
            "--yes",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    assert!(o.contains("no bootstate line"), "{o}");
    assert!(o.contains("file replaced"), "{o}");
    assert_eq!(
        common::mtype(&img, 5, "boot.cfg"),
        format!("bootstate=3\n{}", b5.boot_cfg)
    );
    let names = common::mdir(&img, 5).join(" ").to_ascii_lowercase();
    assert!(
        !names.contains("boot.new") && !names.contains("boot.old"),
        "{names}"
    );
    common::fsck_fat_partitions(&img, t.path());
    let i = json(t.path(), &["inspect", p(&img), "--json"]);
    assert_eq!(i["next_boot_partition"], 6);
}

/// `mdir -i IMG@@OFF ::` of partition `n`: names, sizes, dates and times.
fn mdir_full(img: &Path, n: u32) -> String {
    let q = common::part(img, n);
    common::run_text(
        common::cmd("mdir")
            .arg("-i")
            .arg(q.mtools_image(img))
            .arg("::"),
    )
}

fn build(tag: &str, s: Scenario) -> (TempDir, PathBuf) {
    let t = TempDir::new(tag);
    let img = s.build(t.path());
    (t, img)
}

/// select N: the chosen bank boots next per inspect, with the minimal change; refusals write
/// nothing.
#[test]
fn select_makes_the_bank_boot_next_with_the_minimal_change() {
    if !tools() {
        return;
    }
    // Undo a rollback: bank 6 has the larger updated but bootstate 3: only its digit changes.
    let (t, img) = build(
        "bank-select-digit",
        demo(healthy_bank(2, 0), story_bank(3, 3)),
    );
    let before = std::fs::read(&img).unwrap();
    let out = json(
        t.path(),
        &[
            "bank",
            "select",
            p(&img),
            "6",
            "--yes",
            "--json",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    assert_eq!(
        out["plan"]["steps"][0]["method"], "in_place_digit",
        "{out:#}"
    );
    assert_eq!(out["status"]["next_boot_partition"], 6);
    let after = std::fs::read(&img).unwrap();
    assert_eq!(diff_offsets(&before, &after).len(), 1);
    let cfg6 = common::mtype(&img, 6, "boot.cfg");
    assert_eq!(common::cfg_value(&cfg6, "bootstate").as_deref(), Some("0"));
    assert_eq!(
        json(t.path(), &["inspect", p(&img), "--json"])["next_boot_partition"],
        6
    );

    // Bank 6 valid but older: its updated becomes one above bank 5's; bank 5 is untouched and
    // stays valid, so Shift+R can still go back.
    let (t, img) = build(
        "bank-select-updated",
        demo(story_bank(7, 0), healthy_bank(4, 0)),
    );
    let cfg5 = common::mtype(&img, 5, "boot.cfg");
    let old6 = common::mtype(&img, 6, "boot.cfg");
    let out = json(
        t.path(),
        &[
            "bank",
            "select",
            p(&img),
            "6",
            "--yes",
            "--json",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    assert_eq!(out["plan"]["steps"][0]["method"], "replace_file", "{out:#}");
    let new6 = common::mtype(&img, 6, "boot.cfg");
    assert_eq!(new6, old6.replace("updated=4", "updated=8"));
    assert_eq!(common::mtype(&img, 5, "boot.cfg"), cfg5);
    common::fsck_fat_partitions(&img, t.path());
    // The bootloader's rules, applied by hand to what mtools reads: 6 is valid with the
    // largest updated.
    let up = |c: &str| {
        common::cfg_value(c, "updated")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(up(&new6) > up(&cfg5));
    assert_eq!(common::cfg_value(&new6, "bootstate").as_deref(), Some("0"));
    let s = json(t.path(), &["bank", "status", p(&img), "--json"]);
    assert_eq!(s["next_boot_partition"], 6);
    assert_eq!(s["rollback_partition"], 5);
    assert_eq!(
        json(t.path(), &["inspect", p(&img), "--json"])["next_boot_partition"],
        6
    );

    // Already next: nothing to change, exit 0, nothing written.
    let h = sha256_file(&img);
    let o = bootbank_ok(t.path(), &["bank", "select", p(&img), "6", "--yes"]);
    assert!(o.contains("Nothing to change"), "{o}");
    assert_eq!(sha256_file(&img), h);
}

#[test]
fn select_refusals_write_nothing() {
    if !tools() {
        return;
    }
    let mut quick = story_bank(5, 0);
    quick.boot_cfg.push_str("quickboot=1\n");
    let cases: Vec<(&str, Scenario, &str, &str)> = vec![
        (
            "empty",
            demo(
                healthy_bank(1, 0),
                BankSpec::boot_cfg_only(&boot_cfg("6.7.0-0.0.14320388", 2, 3)),
            ),
            "6",
            "empty bank",
        ),
        (
            "nobuild",
            demo(
                healthy_bank(1, 0),
                BankSpec::boot_cfg_only("bootstate=3\nupdated=2\n"),
            ),
            "6",
            "no build=",
        ),
        ("quick", demo(healthy_bank(1, 0), quick), "6", "quickboot=1"),
        (
            "notabank",
            demo(healthy_bank(1, 0), story_bank(2, 0)),
            "7",
            "not a bootbank",
        ),
    ];
    for (tag, s, n, msg) in cases {
        let (t, img) = build(&format!("bank-select-{tag}"), s);
        let h = sha256_file(&img);
        let backup = t.join("b");
        let o = bootbank(
            t.path(),
            &[
                "bank",
                "select",
                p(&img),
                n,
                "--yes",
                "--backup-dir",
                p(&backup),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{tag}: {}", output_text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(msg), "{tag}: {err}");
        assert_eq!(err.lines().count(), 1, "{tag}: {err}");
        assert_eq!(sha256_file(&img), h, "{tag}: written");
        assert!(!backup.exists(), "{tag}: backup left behind");
    }
}

/// A target held by another writer (an image locked by another bootbank) is refused before any
/// backup is made.
#[test]
fn target_in_use_is_refused() {
    if !tools() {
        return;
    }
    let (t, img) = build("bank-busy", demo(story_bank(3, 0), healthy_bank(2, 0)));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    f.try_lock().unwrap();
    let h = sha256_file(&img);
    let backup = t.join("b");
    let o = bootbank(
        t.path(),
        &[
            "bank",
            "rollback",
            p(&img),
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use"));
    assert_eq!(sha256_file(&img), h);
    assert!(!backup.exists());
    drop(f);
}

/// What an interrupted boot.cfg replace leaves is reported by status, predicted as recovery
/// will leave it, and completed before a rollback writes.
#[test]
fn interrupted_boot_cfg_replace_is_reported_and_completed() {
    if !tools() {
        return;
    }
    // Only boot.new: the switch was interrupted between the renames.
    let mut b6 = healthy_bank(4, 0);
    let cfg6 = std::mem::take(&mut b6.boot_cfg);
    b6.payload = true;
    b6.extra_files = vec![("boot.new".into(), cfg6.clone().into_bytes())];
    let (t, img) = build("bank-leftover", demo(story_bank(3, 0), b6));
    // Status says what the bootloader does now (bank 6 has no boot.cfg, so it is skipped), as
    // inspect does, and names the leftover.
    let s = status_agrees_with_inspect(&t, &img);
    assert_eq!(s["next_boot_partition"], 5, "{s:#}");
    assert!(
        s["warnings"][0].as_str().unwrap().contains("boot.new"),
        "{s:#}"
    );
    // The write commands complete it first and plan with the completed boot.cfg: bank 6 then
    // boots next, and the rollback marks it invalid.
    let o = bootbank_ok(
        t.path(),
        &[
            "bank",
            "rollback",
            p(&img),
            "--yes",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    assert!(o.contains("Recovered: partition 6"), "{o}");
    assert_eq!(
        common::mtype(&img, 6, "boot.cfg"),
        cfg6.replace("bootstate=0", "bootstate=3")
    );
    let names = common::mdir(&img, 6).join(" ").to_ascii_lowercase();
    assert!(!names.contains("boot.new"), "{names}");
    common::fsck_fat_partitions(&img, t.path());
    assert_eq!(
        json(t.path(), &["inspect", p(&img), "--json"])["next_boot_partition"],
        5
    );
}

/// A leftover in a bank the command does not change is still completed, so the banks after the
/// write are those the plan predicted with.
#[test]
fn leftover_in_an_unchanged_bank_is_completed_too() {
    if !tools() {
        return;
    }
    let mut b6 = healthy_bank(2, 0);
    b6.extra_files = vec![(
        "boot.new".into(),
        b"bootstate=0\nbuild=x\nupdated=9\n".to_vec(),
    )];
    let (t, img) = build("bank-leftover-other", demo(story_bank(3, 0), b6));
    let cfg6 = common::mtype(&img, 6, "boot.cfg");
    let o = bootbank_ok(
        t.path(),
        &[
            "bank",
            "select",
            p(&img),
            "5",
            "--yes",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    assert!(o.contains("already boots next"), "{o}");
    assert!(o.contains("Recovered: partition 6"), "{o}");
    let names = common::mdir(&img, 6).join(" ").to_ascii_lowercase();
    assert!(!names.contains("boot.new"), "{names}");
    assert_eq!(common::mtype(&img, 6, "boot.cfg"), cfg6);
    common::fsck_fat_partitions(&img, t.path());
}

/// One restore for both kinds of backup: `ops::restore::plan` reads a `bank` backup (boot.cfg)
/// into `bank`'s plan and a `fix` backup (state.tgz) into `fix`'s, and both put the files back
/// byte for byte (read with mtools); fsck clean.
#[test]
fn one_restore_takes_either_kind_of_backup() {
    use bootbank::ops::restore::{self, RestorePlan};
    if !tools() {
        return;
    }
    let (t, img) = build("one-restore", demo(story_bank(3, 0), healthy_bank(2, 0)));
    let cfg5 = common::read_fat_file(&img, 5, "boot.cfg");
    let state5 = common::read_fat_file(&img, 5, "state.tgz");

    let fix_opts = bootbank::fix::Options::default();
    let what = bootbank::fix::Request::Devices(vec!["0000:16:00.0".into()]);
    let plan = bootbank::fix::plan(&img, &what, &fix_opts).unwrap();
    let fix_backup = t.join("fix-backup");
    bootbank::fix::apply(&plan, &fix_backup).unwrap();
    assert_ne!(common::read_fat_file(&img, 5, "state.tgz"), state5);
    let plan = bootbank::bank::plan_rollback(&img).unwrap();
    let bank_backup = t.join("bank-backup");
    bootbank::bank::apply(&plan, &bank_backup).unwrap();
    assert_ne!(common::read_fat_file(&img, 5, "boot.cfg"), cfg5);

    match restore::plan(&img, &bank_backup, false).unwrap() {
        RestorePlan::Boot(plan) => {
            assert_eq!(plan.action, "restore");
            assert_eq!(plan.next_boot_partition_after, Some(5), "{plan:?}");
            let o = bootbank::bank::apply(&plan, &t.join("undo-bank")).unwrap();
            assert_eq!(o.written, vec!["partition 5 /boot.cfg".to_string()]);
        }
        other => panic!("a boot.cfg backup planned as {other:?}"),
    }
    assert_eq!(common::read_fat_file(&img, 5, "boot.cfg"), cfg5);
    match restore::plan(&img, &fix_backup, false).unwrap() {
        RestorePlan::Config(plan) => {
            let o = bootbank::fix::apply(&plan, &t.join("undo-fix")).unwrap();
            assert_eq!(o.written, vec!["partition 5 /state.tgz".to_string()]);
        }
        other => panic!("a state.tgz backup planned as {other:?}"),
    }
    assert_eq!(common::read_fat_file(&img, 5, "state.tgz"), state5);
    assert_eq!(common::read_fat_file(&img, 5, "boot.cfg"), cfg5);
    common::fsck_fat_partitions(&img, t.path());

    // Restoring again: both already hold the backed-up files; a damaged backup is refused.
    let RestorePlan::Boot(again) = restore::plan(&img, &bank_backup, false).unwrap() else {
        panic!("boot.cfg backup");
    };
    assert!(!again.has_changes(), "{again:?}");
    std::fs::write(bank_backup.join("partition5-boot.cfg"), b"bootstate=0\n").unwrap();
    let e = restore::plan(&img, &bank_backup, false).unwrap_err();
    assert!(e.to_string().contains("the backup is damaged"), "{e}");
    assert!(!e.during_write());
}
