//! `bootbank lint`: rules, exit codes and the JSON lines, on disks made by the fixture builder
//! and the hand-made sysfs tree of the story host (tests/fixtures/sysfs/story-host).

use crate::common;

use crate::common::{BankSpec, Scenario, TempDir, esxconf};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn story() -> String {
    esxconf("story.conf")
}

fn healthy() -> String {
    esxconf("healthy.conf")
}

fn build(s: Scenario, tag: &str) -> Option<(TempDir, PathBuf)> {
    if !common::builder_available() {
        return None;
    }
    let dir = TempDir::new(tag);
    let img = s.build(dir.path());
    Some((dir, img))
}

fn lint(args: &[&str], targets: &[&Path]) -> Output {
    let mut c = common::cmd(env!("CARGO_BIN_EXE_bootbank"));
    c.arg("lint").args(args).args(targets);
    c.output().expect("run bootbank lint")
}

/// The JSON lines of `lint --json`, one per target.
fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn rules(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(v: &Value, severity: &str, rule: &str) -> bool {
    rules(v).contains(&(severity.to_string(), rule.to_string()))
}

#[test]
fn story_disk_is_critical_and_the_banks_disagree() {
    let s = Scenario::new()
        .layout("demo")
        .bank(5, BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &story()))
        .bank(
            6,
            BankSpec::installed("6.7.0-0.0.13981272", 2, 0, &healthy()),
        );
    let Some((_d, img)) = build(s, "lint-story") else {
        return;
    };
    let o = lint(&["--json"], &[&img]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v = &lines(&o)[0];
    assert_eq!(v["error"], Value::Null);
    assert!(has(v, "critical", "passthru-storage-adapter"), "{v}");
    assert!(has(v, "warning", "banks-disagree-passthru"), "{v}");
    assert!(has(v, "info", "rollback-older-build"), "{v}");
    assert!(!has(v, "info", "no-rollback-bank"), "{v}");
    // Most severe first.
    assert_eq!(rules(v)[0].0, "critical");

    // After fixing both banks nothing critical is left and the banks agree.
    let dir = TempDir::new("lint-story-fixed");
    let fixed = dir.join("fixed.img");
    std::fs::copy(&img, &fixed).unwrap();
    let f = common::cmd(env!("CARGO_BIN_EXE_bootbank"))
        .args(["fix"])
        .arg(&fixed)
        .args(["--all-storage", "--both-banks", "--yes", "--backup-dir"])
        .arg(dir.join("bk"))
        .output()
        .unwrap();
    assert!(f.status.success(), "{f:?}");
    let o = lint(&["--json"], &[&fixed]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = &lines(&o)[0];
    assert!(!has(v, "critical", "passthru-storage-adapter"), "{v}");
    assert!(!has(v, "warning", "banks-disagree-passthru"), "{v}");

    // Human output names the rules and the fix.
    let o = lint(&[], &[&img]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("critical passthru-storage-adapter"), "{text}");
    assert!(text.contains("fix: bootbank fix"), "{text}");
}

#[test]
fn fresh_install_has_no_bank_to_roll_back_to() {
    let s = Scenario::new()
        .layout("demo")
        .bank(
            5,
            BankSpec::installed("8.0.2-0.0.22380479", 1, 0, &healthy()),
        )
        .bank(6, BankSpec::boot_cfg_only(&common::boot_cfg("", 2, 3)));
    let Some((_d, img)) = build(s, "lint-fresh") else {
        return;
    };
    let o = lint(&["--json"], &[&img]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = &lines(&o)[0];
    assert!(has(v, "info", "no-rollback-bank"), "{v}");
    assert!(!has(v, "info", "rollback-older-build"), "{v}");
}

#[test]
fn passthru_map_entries_for_storage_controllers_are_flagged() {
    // 8086:8d02 is the C610 AHCI controller (a SATA controller); 10de:ffff every NVIDIA device.
    let map = b"# vendor device resetMethod fptShareable\n10de ffff bridge false\n8086 8d02 d3d0 default\n".to_vec();
    let mut bank = BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &healthy());
    bank.local_files
        .push(("etc/vmware/passthru.map".into(), map));
    let s = Scenario::new().layout("demo").bank(5, bank).bank(
        6,
        BankSpec::installed("6.7.0-0.0.13981272", 2, 0, &healthy()),
    );
    let Some((_d, img)) = build(s, "lint-map") else {
        return;
    };
    // By name from pci.ids, and by class from the story host's sysfs.
    for args in [
        vec!["--json"],
        vec![
            "--json",
            "--sysfs",
            common::fixture_path("sysfs/story-host").to_str().unwrap(),
        ],
    ] {
        let o = lint(&args, &[&img]);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let v = &lines(&o)[0];
        let hits: Vec<&Value> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "passthru-map-storage")
            .collect();
        assert_eq!(hits.len(), 1, "{args:?}: {v}");
        assert_eq!(hits[0]["severity"], "warning");
        let msg = hits[0]["message"].as_str().unwrap();
        assert!(msg.contains("line 3") && msg.contains("8086 8d02"), "{msg}");
    }
}

#[test]
fn passthrough_of_the_bridge_above_the_boot_disk_is_critical() {
    // The story host's root port 0000:00:03.0 (esx.conf 000:000:03.0) carries the RAID
    // controller that holds sda, the disk being inspected.
    let conf = healthy().replace(
        "/device/000:000:03.0/owner = \"vmkernel\"",
        "/device/000:000:03.0/owner = \"passthru\"",
    );
    assert!(conf.contains("/device/000:000:03.0/owner = \"passthru\""));
    let s = Scenario::new()
        .layout("demo")
        .bank(5, BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &conf))
        .bank(6, BankSpec::installed("6.7.0-0.0.13981272", 2, 0, &conf));
    let Some((_d, img)) = build(s, "lint-bridge") else {
        return;
    };
    let sysfs = common::fixture_path("sysfs/story-host");
    let o = lint(
        &[
            "--json",
            "--sysfs",
            sysfs.to_str().unwrap(),
            "--disk",
            "sda",
        ],
        &[&img],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v = &lines(&o)[0];
    assert!(has(v, "critical", "passthru-takes-disk"), "{v}");
    assert!(has(v, "warning", "passthru-bridge"), "{v}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "passthru-takes-disk")
        .unwrap();
    assert_eq!(f["device"], "0000:00:03.0");
    assert!(f["message"].as_str().unwrap().contains("sda"), "{f}");
    // Without sysfs the bridge is just a passthru device: nothing critical.
    let o = lint(&["--json"], &[&img]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

#[test]
fn several_targets_one_line_each_and_unreadable_ones_exit_2() {
    let dir = TempDir::new("lint-many");
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"not a disk at all").unwrap();
    let demo = common::manifest_dir().join("examples/demo.img");
    let o = lint(&["--json"], &[&demo, &junk]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let v = lines(&o);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["path"], demo.display().to_string());
    assert_eq!(v[0]["error"], Value::Null);
    assert!(has(&v[0], "critical", "passthru-storage-adapter"));
    assert_eq!(v[1]["findings"], Value::Array(vec![]));
    assert!(
        v[1]["error"]
            .as_str()
            .unwrap()
            .contains("not an ESXi boot disk")
    );
    // A missing target is a usage-level failure too, with a one-line message.
    let o = lint(&[], &[&dir.join("missing.img")]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
}
