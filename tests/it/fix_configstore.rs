//! `bootbank inspect`, `lint` and `fix` on ESXi 7.0U2+ configurations as real hosts write them:
//! the real 7.0.2 host's local.tgz (`../shared/real/`, read at test time) with a storage adapter
//! set to passthrough the way 7.0U2 and later store it (an `esx/hardware/pci_devices` row with
//! owner OWNER_PASSTHRU in UserValue and an `esx/system/device_data` row naming it vmhba2),
//! added by Python's sqlite3 (`tests/tools/mkrealhost`); esx.conf has no `/device/` line. Plain
//! (state.tgz > local.tgz) and encrypted (state.tgz > local.tgz.ve + the real encryption.info,
//! mode NONE) banks, on disks built with mkfs.fat and mtools.
//!
//! Oracles nobody here wrote: mtools takes state.tgz off the fixed disk, GNU tar lists and
//! extracts both archive levels, the independent decryptor (dissect.hypervisor) opens every
//! envelope bootbank wrote, and Python's sqlite3 reads the database row by row: only the device's
//! row differs, in it only UserValue, ModifiedTime and Revision (the store's own triggers), and
//! `PRAGMA integrity_check` says ok. Every other local.tgz member keeps its bytes and header.
//!
//! Also: a 6.x host upgraded to 7.0U2 with a stale `/device/` line, and a configuration whose
//! schema differs from what bootbank knows (reported, refused, nothing written).

use crate::common;

use crate::common::{
    REAL_BUILD, Scenario, TempDir, bootbank, bootbank_ok, cmd, copy_sparse, output_text, p, run,
    tar_entries, untar,
};
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};

const STORE: &str = "var/lib/vmware/configstore/backup/current-store-1";
const ESX_CONF: &str = "etc/vmware/esx.conf";
const RAID: &str = "0000:16:00.0";

fn tools() -> bool {
    common::builder_available()
        && common::require_tools(&["python3", "mcopy", "tar", "gzip", "cmp"])
        && common::require_real()
}

/// A demo-layout disk whose banks 5 and 6 hold `state` (bank 5 boots next).
fn disk(dir: &Path, state: &[u8]) -> PathBuf {
    let img = Scenario::new()
        .layout("demo")
        .bank(5, common::real_bank(3, 0, state.to_vec()))
        .bank(6, common::real_bank(2, 0, state.to_vec()))
        .build(dir);
    common::fsck_banks(&img);
    img
}

/// A 7.0U2 state.tgz from the real host: plain (local.tgz inside) or encrypted.
fn real_state(dir: &Path, encrypted: bool, args: &[&str]) -> Vec<u8> {
    let local = common::mkrealhost(dir, "local.tgz", args);
    let state = dir.join("state.tgz");
    if encrypted {
        common::real_encrypted_state(dir, &local, &state);
    } else {
        run(cmd("bash")
            .arg("-c")
            .arg("tar -C \"$(dirname \"$1\")\" --format=gnu --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -cf - local.tgz | gzip -n > \"$2\"")
            .arg("tar")
            .arg(&local)
            .arg(&state));
    }
    fs::read(&state).unwrap()
}

/// Bank `n`'s state.tgz taken off the disk with mtools, its local.tgz out of it with GNU tar
/// (decrypted by the independent decryptor when encrypted), extracted into `into/local`.
/// Returns the path of local.tgz.
pub(super) fn extract_local(img: &Path, n: u32, into: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).unwrap();
    let state = into.join("state.tgz");
    common::copy_fat_file(img, n, "state.tgz", &state);
    run(cmd("tar").arg("-xzf").arg(&state).arg("-C").arg(into));
    let local = into.join("local.tgz");
    if !local.exists() {
        let ve = into.join("local.tgz.ve");
        assert!(
            ve.exists(),
            "state.tgz holds neither local.tgz nor local.tgz.ve"
        );
        let py = common::oracle_python().expect("the independent decryptor");
        let o = run(cmd(py)
            .arg(common::tool("oracle-decrypt"))
            .arg(into.join("encryption.info"))
            .arg(&ve)
            .arg(&local));
        assert!(o.status.success(), "the independent decryptor refused it");
    }
    untar(&local, &into.join("local"));
    local
}

fn inspect_json(cwd: &Path, img: &Path) -> Value {
    let out = bootbank_ok(cwd, &["inspect", "--json", p(img)]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect --json: {e}\n{out}"))
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

/// The story on a real 7.0.2 configuration, plain and encrypted: seen, linted, fixed with the
/// store's own UPDATE, checked by outside tools.
#[test]
fn passthrough_in_the_configstore_is_seen_and_fixed() {
    if !tools() {
        return;
    }
    for encrypted in [false, true] {
        let t = TempDir::new(if encrypted { "cs-real-enc" } else { "cs-real" });
        let state = real_state(t.path(), encrypted, &["--passthru", "0000:16:00.0=vmhba2"]);
        let pristine = disk(&t.join("build"), &state);
        let img = t.join("disk.img");
        copy_sparse(&pristine, &img);

        // inspect: the critical finding, from the ConfigStore, with a fix in hex form.
        let v = inspect_json(t.path(), &img);
        assert!(has(&v, "critical", "passthru-storage-adapter"), "{v}");
        let f = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == "passthru-storage-adapter")
            .unwrap();
        assert_eq!(f["device"], RAID);
        assert!(
            f["fix"].as_str().unwrap().contains("--device 0000:16:00.0"),
            "{f}"
        );
        let o = &v["config"]["device_ownership"];
        assert_eq!(o["store"], "configstore", "{o}");
        assert_eq!(o["build"], REAL_BUILD);
        let dev = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["pci_address"] == RAID)
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(dev["owner"], "passthru");
        assert_eq!(dev["owner_raw"], "OWNER_PASSTHRU");
        assert_eq!(dev["owner_source"], "configstore");
        assert_eq!(dev["sources"], json!(["configstore"]));
        assert_eq!(dev["vmkname"], "vmhba2");
        assert_eq!(dev["esx_address"], "000:022:00.0");
        assert_eq!(
            dev["esx_conf"],
            Value::Null,
            "esx.conf has no /device/ line"
        );
        assert_eq!(v["config"]["esx_conf_lines"], 206, "the real esx.conf");
        // Each device appears once.
        let addrs: Vec<&Value> = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["pci_address"])
            .collect();
        let mut uniq = addrs.clone();
        uniq.dedup();
        assert_eq!(addrs, uniq);

        // lint: exit 1 on the critical finding.
        let o = bootbank(t.path(), &["lint", p(&img)]);
        assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));

        // The dry run shows the row before and after in every address form, writes nothing.
        let before = fs::read(&img).unwrap();
        let out = bootbank_ok(
            t.path(),
            &["fix", p(&img), "--device", "p0000:16:00.0", "--dry-run"],
        );
        for want in [
            "lspci 0000:16:00.0 = esx.conf 000:022:00.0 = ConfigStore p0000:16:00.0",
            "esx/hardware/pci_devices record 0000:16:00.0",
            "owner OWNER_PASSTHRU -> OWNER_VMKERNEL",
            r#"UserValue before: {"sbdf":"0000:16:00.0","owner":"OWNER_PASSTHRU"}"#,
            r#"UserValue after:  {"sbdf":"0000:16:00.0","owner":"OWNER_VMKERNEL"}"#,
            "set by the store's own triggers",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(fs::read(&img).unwrap() == before, "--dry-run wrote");

        // The fix, naming the device in esx.conf's decimal form.
        let out = bootbank_ok(
            t.path(),
            &[
                "fix",
                p(&img),
                "--device",
                "000:022:00.0",
                "--both-banks",
                "--yes",
                "--backup-dir",
                p(&t.join("backup")),
            ],
        );
        assert!(out.contains("Written and verified"), "{out}");
        assert!(out.contains("no critical findings"), "{out}");
        common::fsck_banks(&img);

        for bank in [5, 6] {
            let a = extract_local(&pristine, bank, &t.join(format!("before{bank}")));
            let b = extract_local(&img, bank, &t.join(format!("after{bank}")));
            // GNU tar: same members, order and metadata; only the store's content differs.
            let (la, lb) = (tar_entries(&a), tar_entries(&b));
            assert_eq!(la.len(), 36);
            assert_eq!(la.len(), lb.len());
            for (x, y) in la.iter().zip(&lb) {
                assert_eq!(
                    (&x.mode, &x.owner, &x.mtime, &x.name, &x.size),
                    (&y.mode, &y.owner, &y.mtime, &y.name, &y.size),
                    "header of {}",
                    x.name
                );
                let (ba, bb) = (
                    fs::read(t.join(format!("before{bank}/local")).join(&x.name)).unwrap(),
                    fs::read(t.join(format!("after{bank}/local")).join(&x.name)).unwrap(),
                );
                assert_eq!(ba == bb, x.name != STORE, "member {}", x.name);
            }
            // Python's sqlite3, row by row.
            let rows =
                |d: &str| common::configstore_rows(&t.join(format!("{d}{bank}/local")).join(STORE));
            let (old, new) = (rows("before"), rows("after"));
            assert_eq!(old.len(), new.len());
            let changed: Vec<(&Value, &Value)> =
                old.iter().zip(&new).filter(|(a, b)| a != b).collect();
            assert_eq!(changed.len(), 1, "exactly one row differs");
            let (a, b) = changed[0];
            assert_eq!(a["table"], "Config");
            assert_eq!(a["row"]["Identifier"], RAID);
            assert_eq!(a["row"]["Name"], "pci_devices");
            let (ar, br) = (a["row"].as_object().unwrap(), b["row"].as_object().unwrap());
            let differ: Vec<&String> = ar.keys().filter(|k| ar[*k] != br[*k]).collect();
            assert_eq!(differ, ["ModifiedTime", "Revision", "UserValue"]);
            assert_eq!(
                br["Revision"].as_i64(),
                ar["Revision"].as_i64().map(|r| r + 1)
            );
            assert_eq!(
                br["UserValue"],
                json!(r#"{"sbdf":"0000:16:00.0","owner":"OWNER_VMKERNEL"}"#)
            );
            assert_eq!(new.last().unwrap()["integrity_check"], json!(["ok"]));
            // esx.conf is untouched: ESXi 7.0U2 does not read device lines from it.
            assert!(
                fs::read(t.join(format!("before{bank}/local")).join(ESX_CONF)).unwrap()
                    == fs::read(t.join(format!("after{bank}/local")).join(ESX_CONF)).unwrap()
            );
        }
        let v = inspect_json(t.path(), &img);
        assert!(!has(&v, "critical", "passthru-storage-adapter"), "{v}");
        // Undo puts both banks back byte for byte.
        let out = bootbank_ok(
            t.path(),
            &["restore", p(&img), "--from", p(&t.join("backup")), "--yes"],
        );
        assert!(out.contains("Written and verified"), "{out}");
        for bank in [5, 6] {
            assert!(
                common::read_fat_file(&img, bank, "state.tgz")
                    == common::read_fat_file(&pristine, bank, "state.tgz"),
                "bank {bank} restored"
            );
        }
    }
}

/// `--all-storage` finds the adapter through device_data; a passthrough NIC-like device without
/// a vmhba name is left alone.
#[test]
fn all_storage_finds_adapters_through_device_data() {
    if !tools() {
        return;
    }
    let t = TempDir::new("cs-real-all");
    let state = real_state(
        t.path(),
        false,
        &[
            "--passthru",
            "0000:16:00.0=vmhba2",
            "--passthru",
            "0000:3b:00.0=vmnic4",
        ],
    );
    let img = disk(&t.join("build"), &state);
    let v = inspect_json(t.path(), &img);
    assert!(has(&v, "critical", "passthru-storage-adapter"), "{v}");
    assert!(has(&v, "info", "passthru-device"), "{v}");
    let out = bootbank_ok(t.path(), &["fix", p(&img), "--all-storage", "--dry-run"]);
    assert!(out.contains("record 0000:16:00.0"), "{out}");
    assert!(!out.contains("record 0000:3b:00.0"), "{out}");
    // A device neither store knows: refused, naming what is set to passthrough in every form.
    let before = fs::read(&img).unwrap();
    let o = bootbank(
        t.path(),
        &["fix", p(&img), "--device", "0000:99:00.0", "--yes"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(
        text.contains("has no such device in esx.conf or the ConfigStore")
            && text.contains(
                "0000:16:00.0 (esx.conf 000:022:00.0, ConfigStore p0000:16:00.0) (vmhba2)"
            ),
        "{text}"
    );
    let o = bootbank(t.path(), &["fix", p(&img), "--device", "raid", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("--device raid: "),
        "{}",
        output_text(&o)
    );
    assert!(fs::read(&img).unwrap() == before, "nothing written");
}

/// A 6.x host upgraded to 7.0U2 that still carries `/device/` lines in esx.conf: ESXi 7.0U2
/// obeys the ConfigStore. A stale passthru line alone is a warning (the stores disagree), not
/// the critical finding; with the ConfigStore saying passthrough too, it is critical, and the fix
/// changes both.
#[test]
fn stale_esx_conf_lines_after_an_upgrade() {
    if !tools() {
        return;
    }
    let stale = [
        "--esxconf-line",
        "/device/000:022:00.0/owner = \"passthru\"",
        "--esxconf-line",
        "/device/000:022:00.0/vmkname = \"vmhba2\"",
    ];
    // Only esx.conf says passthru.
    let t = TempDir::new("cs-real-stale");
    let mut args = stale.to_vec();
    args.extend(["--alias", "0000:16:00.0=vmhba2"]);
    let img = disk(&t.join("build"), &real_state(t.path(), false, &args));
    let v = inspect_json(t.path(), &img);
    assert!(!has(&v, "critical", "passthru-storage-adapter"), "{v}");
    assert!(has(&v, "warning", "configstore-disagrees"), "{v}");
    let dev = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pci_address"] == RAID)
        .unwrap();
    assert_eq!(dev["owner"], "vmkernel", "the ConfigStore's default: {dev}");
    assert_eq!(dev["owner_source"], "configstore");
    assert_eq!(dev["sources"], json!(["esx.conf", "configstore"]));
    assert_eq!(dev["esx_conf"]["owner"], "passthru");
    let o = bootbank(t.path(), &["lint", p(&img)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "warnings only: {}",
        output_text(&o)
    );

    // Both say passthru: critical, and the fix changes the line and the row.
    let t = TempDir::new("cs-real-stale2");
    let mut args = stale.to_vec();
    args.extend(["--passthru", "0000:16:00.0=vmhba2"]);
    let pristine = disk(&t.join("build"), &real_state(t.path(), false, &args));
    let img = t.join("disk.img");
    copy_sparse(&pristine, &img);
    let v = inspect_json(t.path(), &img);
    assert!(has(&v, "critical", "passthru-storage-adapter"), "{v}");
    assert!(!has(&v, "warning", "configstore-disagrees"), "{v}");
    let out = bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            RAID,
            "--yes",
            "--backup-dir",
            p(&t.join("backup")),
        ],
    );
    assert!(out.contains("Written and verified"), "{out}");
    extract_local(&pristine, 5, &t.join("before"));
    extract_local(&img, 5, &t.join("after"));
    let diff = cmd("diff")
        .arg(t.join("before/local").join(ESX_CONF))
        .arg(t.join("after/local").join(ESX_CONF))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&diff.stdout)
            .lines()
            .filter(|l| l.starts_with(['<', '>']))
            .collect::<Vec<_>>(),
        [
            "< /device/000:022:00.0/owner = \"passthru\"",
            "> /device/000:022:00.0/owner = \"vmkernel\""
        ]
    );
    let rows = common::configstore_rows(&t.join("after/local").join(STORE));
    assert!(rows.iter().any(|r| r["row"]["Identifier"] == RAID
        && r["row"]["UserValue"] == json!(r#"{"sbdf":"0000:16:00.0","owner":"OWNER_VMKERNEL"}"#)));
}

/// A host whose schema of `esx/hardware/pci_devices` differs from what bootbank knows: the
/// finding is raised from the host's own schema, the difference reported, the fix refused with
/// exit 2, nothing written.
#[test]
fn a_schema_that_differs_is_reported_and_refused() {
    if !tools() {
        return;
    }
    let t = TempDir::new("cs-real-schema");
    let state = real_state(
        t.path(),
        false,
        &[
            "--passthru",
            "0000:16:00.0=vmhba2",
            "--schema-set",
            "esx/hardware/pci_devices",
            "/items/properties/owner/enum/-",
            "\"OWNER_SRIOV\"",
        ],
    );
    let img = disk(&t.join("build"), &state);
    let v = inspect_json(t.path(), &img);
    assert!(has(&v, "critical", "passthru-storage-adapter"), "{v}");
    assert!(has(&v, "warning", "configstore-schema-differs"), "{v}");
    assert!(
        v["configstore"]["schema"]["differences"]["esx/hardware/pci_devices"][0]
            .as_str()
            .unwrap()
            .contains("/items/properties/owner/enum")
    );
    let before = fs::read(&img).unwrap();
    let o = bootbank(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            RAID,
            "--yes",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(
        text.contains("differs from the one bootbank knows"),
        "{text}"
    );
    assert!(text.contains("nothing was written"), "{text}");
    assert!(fs::read(&img).unwrap() == before, "nothing written");
    assert!(!t.join("b").exists(), "no backup either");
}

/// Builds the 7.0U2+ cases of bench/inspect and bench/audit from the real 7.0.2 host's
/// configuration (its 94 KB local.tgz with the passthrough row added by Python's sqlite3),
/// encrypted, in `$BOOTBANK_BENCH_DIR`:
/// - `real-enc.img`: a 16 GiB 7.x layout image (4 GiB banks), both banks holding that
///   configuration sealed under the real encryption.info's key;
/// - with `BOOTBANK_AUDIT_N` set, `fleet-real/`: that many config bundles (RELEASELEVEL 7.0.2),
///   every 10th host with the passthrough row, each with its own encryption.info.
///
/// Run by the benches, not by `cargo test`.
#[test]
#[ignore]
fn make_real_bench_fixture() {
    let Some(out) = std::env::var_os("BOOTBANK_BENCH_DIR").map(PathBuf::from) else {
        panic!("set BOOTBANK_BENCH_DIR");
    };
    assert!(
        tools(),
        "the fixture builder's tools or the real data are missing"
    );
    fs::create_dir_all(&out).unwrap();
    let t = TempDir::new("real-bench");
    let bad = common::mkrealhost(t.path(), "bad.tgz", &["--passthru", "0000:16:00.0=vmhba2"]);
    let good = common::mkrealhost(t.path(), "good.tgz", &["--alias", "0000:16:00.0=vmhba2"]);
    let state = t.join("state.tgz");
    common::real_encrypted_state(t.path(), &bad, &state);
    let state = fs::read(&state).unwrap();
    let img = Scenario::new()
        .layout("7x")
        .size("16G")
        .bank(5, common::real_bank(3, 0, state.clone()))
        .bank(6, common::real_bank(2, 0, state))
        .build(&t.join("img"));
    fs::rename(&img, out.join("real-enc.img")).unwrap();
    let Some(n) = std::env::var("BOOTBANK_AUDIT_N")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    let fleet = out.join("fleet-real");
    fs::create_dir_all(&fleet).unwrap();
    for i in 1..=n {
        let local = if i % 10 == 0 { &bad } else { &good };
        common::encrypted_bundle(
            t.path(),
            &fs::read(local).unwrap(),
            &common::fleet_enc_data(i),
            &fleet.join(format!("configBundle-real{i:05}.tgz")),
            &[
                "--release-level",
                "VMware ESXi 7.0.2 build-17867351",
                "--uuid",
                &format!("5f3a2b1c-0000-0000-0000-{i:012}"),
            ],
        );
    }
}

/// The PBKDF2 floor of bench/inspect and bench/audit: `BOOTBANK_FLOOR_N` key derivations (the
/// fleet hosts' own, default 1) with bootbank's key derivation alone, split over
/// `BOOTBANK_FLOOR_J` threads (default: the cores); prints `floor_ms N J MS`.
#[test]
#[ignore]
fn pbkdf2_floor() {
    let n: usize = std::env::var("BOOTBANK_FLOOR_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let j: usize = std::env::var("BOOTBANK_FLOOR_J")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let data: Vec<bootbank::envelope::ConfigEncData> = (1..=n)
        .map(|i| bootbank::envelope::ConfigEncData::parse(&common::fleet_enc_data(i)).unwrap())
        .collect();
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for chunk in data.chunks(n.div_ceil(j).max(1)) {
            s.spawn(move || {
                for d in chunk {
                    std::hint::black_box(d.derive_key());
                }
            });
        }
    });
    println!("floor_ms {n} {j} {:.1}", t.elapsed().as_secs_f64() * 1000.0);
}

/// `audit` over config bundles of 7.0U2 hosts made from the real host's configuration (one of
/// them encrypted): the host whose ConfigStore passes vmhba2 through is counted, the others not.
#[test]
fn audit_counts_7_0u2_hosts_by_their_configstore() {
    if !tools() {
        return;
    }
    let t = TempDir::new("cs-real-audit");
    let fleet = t.join("fleet");
    fs::create_dir_all(&fleet).unwrap();
    let hosts: [(&str, bool, &[&str]); 3] = [
        ("esx1", false, &["--alias", "0000:16:00.0=vmhba2"]),
        ("esx2", true, &["--passthru", "0000:16:00.0=vmhba2"]),
        ("esx3", false, &["--vmkernel", "0000:16:00.0=vmhba2"]),
    ];
    for (name, encrypted, args) in hosts {
        let d = t.join(name);
        fs::create_dir_all(&d).unwrap();
        let state = d.join("state-for-bundle.tgz");
        fs::write(&state, real_state(&d, encrypted, args)).unwrap();
        common::mkbundle(
            &state,
            &fleet.join(format!("configBundle-{name}.tgz")),
            &["--release-level", "VMware ESXi 7.0.2 build-17867351"],
        );
    }
    let o = bootbank(t.path(), &["audit", "--json", p(&fleet)]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let critical = l["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "passthru-storage-adapter");
        let path = l["path"].as_str().unwrap();
        assert_eq!(critical, path.ends_with("esx2.tgz"), "{l}");
    }
}
