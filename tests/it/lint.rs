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

/// The findings of one rule in a `lint --json` line.
fn of_rule<'a>(v: &'a Value, rule: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

fn story_sysfs() -> String {
    common::fixture_path("sysfs/story-host")
        .to_str()
        .unwrap()
        .to_string()
}

/// A card swap: esx.conf still names 0000:02:00.0 `vmhba5` and passes it through, but the
/// story host's sysfs has an I350 NIC there; 0000:17:00.0 (`vmhba3`, passthrough) holds no
/// device at all; 0000:16:00.0 (`vmhba2`, passthrough) still holds the MegaRAID controller, so
/// it is not stale. Without sysfs the rule cannot tell and says nothing.
#[test]
fn a_swapped_card_leaves_a_stale_storage_alias() {
    let conf = healthy()
        .replace(
            "/device/000:002:00.0/owner = \"vmkernel\"\n/device/000:002:00.0/vmkname = \"vmnic0\"",
            "/device/000:002:00.0/owner = \"passthru\"\n/device/000:002:00.0/vmkname = \"vmhba5\"",
        )
        .replace(
            "/device/000:023:00.0/owner = \"vmkernel\"",
            "/device/000:023:00.0/owner = \"passthru\"",
        )
        .replace(
            "/device/000:022:00.0/owner = \"vmkernel\"",
            "/device/000:022:00.0/owner = \"passthru\"",
        );
    assert_eq!(conf.matches("\"passthru\"").count(), 3);
    let s = Scenario::new()
        .layout("demo")
        .bank(5, BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &conf));
    let Some((_d, img)) = build(s, "lint-stale") else {
        return;
    };
    let o = lint(&["--json", "--sysfs", &story_sysfs()], &[&img]);
    let v = &lines(&o)[0];
    let hits = of_rule(v, "passthru-stale-storage-alias");
    let mut devices: Vec<&str> = hits.iter().map(|f| f["device"].as_str().unwrap()).collect();
    devices.sort();
    assert_eq!(devices, ["0000:02:00.0", "0000:17:00.0"], "{v}");
    for f in &hits {
        assert_eq!(f["severity"], "warning");
        let m = f["message"].as_str().unwrap();
        if f["device"] == "0000:02:00.0" {
            assert!(
                m.contains("vmhba5") && m.contains("Ethernet controller"),
                "{m}"
            );
            assert!(m.contains("8086:1521"), "{m}");
        } else {
            assert!(m.contains("vmhba3") && m.contains("no PCI device"), "{m}");
        }
    }
    let o = lint(&["--json"], &[&img]);
    assert!(of_rule(&lines(&o)[0], "passthru-stale-storage-alias").is_empty());
}

/// The same on 7.0U2+, where the alias is the ConfigStore's device_data and the passthrough a
/// pci_devices row: the real 7.0.2 host with a row for 0000:02:00.0 named vmhba7 (added with
/// mkrealhost), against the story host's sysfs (a NIC at that address).
#[test]
fn a_stale_configstore_alias_is_seen_too() {
    if !common::builder_available()
        || !common::require_tools(&["python3"])
        || !common::require_real()
        || common::oracle_python().is_none()
    {
        return;
    }
    let t = TempDir::new("lint-stale-cs");
    let local = common::mkrealhost(
        t.path(),
        "local.tgz",
        &["--passthru", "0000:02:00.0=vmhba7"],
    );
    let state = t.join("state.tgz");
    common::real_encrypted_state(t.path(), &local, &state);
    let img = Scenario::new()
        .layout("demo")
        .bank(5, common::real_bank(3, 0, std::fs::read(&state).unwrap()))
        .build(t.path());
    let o = lint(&["--json", "--sysfs", &story_sysfs()], &[&img]);
    let v = &lines(&o)[0];
    let hits = of_rule(v, "passthru-stale-storage-alias");
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["device"], "0000:02:00.0");
    let m = hits[0]["message"].as_str().unwrap();
    assert!(
        m.contains("vmhba7") && m.contains("Ethernet controller"),
        "{m}"
    );
}

/// A root port in passthrough with the MegaRAID controller behind it (story host topology) is
/// critical even when no disk is marked as inspected; the root port above the NICs only is not.
#[test]
fn a_bridge_with_a_storage_controller_behind_it_is_critical() {
    let conf = healthy()
        .replace(
            "/device/000:000:03.0/owner = \"vmkernel\"",
            "/device/000:000:03.0/owner = \"passthru\"",
        )
        .replace(
            "/device/000:000:01.0/owner = \"vmkernel\"",
            "/device/000:000:01.0/owner = \"passthru\"",
        );
    let s = Scenario::new()
        .layout("demo")
        .bank(5, BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &conf));
    let Some((_d, img)) = build(s, "lint-bridge-storage") else {
        return;
    };
    let o = lint(&["--json", "--sysfs", &story_sysfs()], &[&img]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v = &lines(&o)[0];
    let hits = of_rule(v, "passthru-bridge-storage");
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["severity"], "critical");
    assert_eq!(hits[0]["device"], "0000:00:03.0");
    let m = hits[0]["message"].as_str().unwrap();
    assert!(m.contains("0000:16:00.0") && m.contains("with sda"), "{m}");
    // Both bridges still get the general warning.
    assert_eq!(of_rule(v, "passthru-bridge").len(), 2, "{v}");
    let o = lint(&["--json"], &[&img]);
    assert!(of_rule(&lines(&o)[0], "passthru-bridge-storage").is_empty());
}

/// passthru.map lines matched against sysfs: the C610 AHCI line (8086 8d02) is flagged as the
/// boot disk's controller when sdb is the disk inspected, not when sda is; a MegaRAID line
/// (1000 005d) when sda is.
#[test]
fn a_passthru_map_line_for_the_boot_disk_controller_is_flagged() {
    let map = b"8086 8d02 d3d0 default\n1000 005d d3d0 false\n".to_vec();
    let mut bank = BankSpec::installed("6.7.0-0.0.14320388", 3, 0, &healthy());
    bank.local_files
        .push(("etc/vmware/passthru.map".into(), map));
    let s = Scenario::new().layout("demo").bank(5, bank);
    let Some((_d, img)) = build(s, "lint-map-boot") else {
        return;
    };
    for (disk, want) in [("sdb", "0000:00:1f.2"), ("sda", "0000:16:00.0")] {
        let o = lint(
            &["--json", "--sysfs", &story_sysfs(), "--disk", disk],
            &[&img],
        );
        let v = &lines(&o)[0];
        let hits = of_rule(v, "passthru-map-boot-controller");
        assert_eq!(hits.len(), 1, "{disk}: {v}");
        assert_eq!(hits[0]["device"], want, "{disk}");
        assert_eq!(hits[0]["severity"], "warning");
        let m = hits[0]["message"].as_str().unwrap();
        assert!(m.contains(disk), "{m}");
    }
    let o = lint(&["--json"], &[&img]);
    assert!(of_rule(&lines(&o)[0], "passthru-map-boot-controller").is_empty());
}

/// A TPM-sealed configuration: `tpm-recovery-key` says to record the recovery key now, with
/// VMware's command; config-encrypted stays, without repeating it.
#[test]
fn a_tpm_sealed_host_is_told_to_record_its_recovery_key() {
    let mut b5 = common::healthy_bank(3, 0);
    b5.encrypted = Some("TPM");
    let s = Scenario::new().layout("demo").bank(5, b5);
    let Some((_d, img)) = build(s, "lint-tpm") else {
        return;
    };
    let o = lint(&["--json"], &[&img]);
    let v = &lines(&o)[0];
    let hits = of_rule(v, "tpm-recovery-key");
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["severity"], "warning");
    assert!(
        hits[0]["fix"]
            .as_str()
            .unwrap()
            .contains("esxcli system settings encryption recovery list"),
        "{v}"
    );
    let enc = of_rule(v, "config-encrypted");
    assert_eq!(enc.len(), 1, "{v}");
    assert!(
        !enc[0]["message"]
            .as_str()
            .unwrap()
            .contains("recovery key now")
    );
    // A mode NONE configuration has no such finding.
    let mut b5 = common::healthy_bank(3, 0);
    b5.encrypted = Some("NONE");
    let Some((_d2, img2)) = build(Scenario::new().layout("demo").bank(5, b5), "lint-none") else {
        return;
    };
    let o = lint(&["--json"], &[&img2]);
    assert!(of_rule(&lines(&o)[0], "tpm-recovery-key").is_empty());
}
