//! `bootbank fix` and the ConfigStore database in local.tgz (issue 4), end to end through the
//! binary, with oracles nobody here wrote: the store is built with Python's sqlite3 module
//! (`tests/tools/mkconfigstore`), taken out of the fixed disk with mtools and GNU tar, and read
//! back with Python's sqlite3 (never rusqlite): the record's owner field is vmkernel, every other
//! row and column is as it was, and `PRAGMA integrity_check` says ok. GNU tar lists local.tgz's
//! members with the same metadata, and every member but esx.conf and the store extracts
//! byte-identical.

mod common;

use common::{
    Scenario, TempDir, bootbank, bootbank_ok, cmd, copy_sparse, healthy_bank, mkconfigstore, p,
    run, story_bank, tar_entries, untar,
};
use std::fs;
use std::path::{Path, PathBuf};

const STORE: &str = "var/lib/vmware/configstore/backup/current-store-1";
const ESX_CONF: &str = "etc/vmware/esx.conf";

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["python3", "mcopy", "tar"])
}

/// A demo-layout disk whose bank 5 has the story esx.conf (000:022:00.0 passthru) and `store`
/// in its local.tgz.
fn disk_with_store(dir: &Path, store: Vec<u8>) -> PathBuf {
    let mut b5 = story_bank(3, 0);
    b5.local_files.push((STORE.to_string(), store));
    let b6 = healthy_bank(2, 0);
    let img = Scenario::new()
        .layout("demo")
        .bank(5, b5)
        .bank(6, b6)
        .build(dir);
    common::fsck_banks(&img);
    img
}

/// Extracts bank 5's state.tgz (mtools) and its local.tgz (GNU tar) into `into`; returns the
/// path of local.tgz.
fn extract_local(img: &Path, into: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).unwrap();
    let state = into.join("state.tgz");
    common::copy_fat_file(img, 5, "state.tgz", &state);
    run(cmd("tar").arg("-xzf").arg(&state).arg("-C").arg(into));
    let local = into.join("local.tgz");
    assert!(local.exists(), "no local.tgz in state.tgz");
    untar(&local, &into.join("local"));
    local
}

/// Python's sqlite3 reading a database: integrity_check, and every row of Config with its rowid
/// and every column as (typeof, value), as JSON.
fn py_dump(db: &Path) -> serde_json::Value {
    let script = r#"
import json, sqlite3, sys
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
ic = [r[0] for r in con.execute("PRAGMA integrity_check")]
cur = con.execute("SELECT rowid, * FROM Config ORDER BY rowid")
names = [d[0] for d in cur.description]
rows = []
for r in cur.fetchall():
    rows.append({n: [type(v).__name__, v if not isinstance(v, bytes) else v.hex()] for n, v in zip(names, r)})
print(json.dumps({"integrity": ic, "rows": rows}))
"#;
    let o = run(cmd("python3").arg("-c").arg(script).arg(db));
    serde_json::from_slice(&o.stdout).expect("python output is JSON")
}

fn findings(img: &Path, cwd: &Path) -> Vec<String> {
    let o = bootbank(cwd, &["inspect", p(img), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect --json: {e}: {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    v["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| f["rule"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn fix_sets_the_store_record_to_vmkernel_and_nothing_else() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixcs");
    let store = mkconfigstore(
        t.path(),
        "store.db",
        &[
            "--device",
            "0000:16:00.0:passthru",
            "--unclear",
            "0000:02:00.0",
        ],
    );
    let pristine = disk_with_store(&t.join("build"), store);
    // before: esx.conf and the store agree (both passthru); after: both vmkernel
    assert!(!findings(&pristine, t.path()).contains(&"configstore-disagrees".to_string()));
    let img = t.join("disk.img");
    copy_sparse(&pristine, &img);

    // --dry-run shows the planned store change and writes nothing
    let before = fs::read(&img).unwrap();
    let out = bootbank_ok(
        t.path(),
        &["fix", p(&img), "--device", "0000:16:00.0", "--dry-run"],
    );
    assert!(
        out.contains(&format!(
            "ConfigStore (local.tgz > {STORE}) record 0000:16:00.0"
        )) && out.contains("UserValue/owner passthru -> vmkernel"),
        "{out}"
    );
    assert!(fs::read(&img).unwrap() == before, "--dry-run wrote");
    eprintln!("--dry-run plan:\n{out}");

    let backup = t.join("backup");
    let out = bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert!(
        out.contains("UserValue/owner passthru -> vmkernel"),
        "{out}"
    );
    assert!(out.contains("Written and verified"), "{out}");

    let a = extract_local(&pristine, &t.join("before"));
    let b = extract_local(&img, &t.join("after"));
    // GNU tar: same members, order and metadata; sizes equal except the two changed members
    let (la, lb) = (tar_entries(&a), tar_entries(&b));
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(
            (&x.mode, &x.owner, &x.mtime, &x.name),
            (&y.mode, &y.owner, &y.mtime, &y.name),
            "metadata of {}",
            x.name
        );
        if x.name != ESX_CONF && x.name != STORE {
            assert_eq!(x.size, y.size, "size of {}", x.name);
        }
    }
    for name in la
        .iter()
        .filter(|e| e.mode.starts_with('-'))
        .map(|e| &e.name)
    {
        let (x, y) = (
            fs::read(t.join("before/local").join(name)).unwrap(),
            fs::read(t.join("after/local").join(name)).unwrap(),
        );
        if name == ESX_CONF || name == STORE {
            assert!(x != y, "{name} did not change");
        } else {
            assert!(x == y, "member {name} differs");
        }
    }
    let conf = fs::read_to_string(t.join("after/local").join(ESX_CONF)).unwrap();
    assert!(conf.contains("/device/000:022:00.0/owner = \"vmkernel\""));

    // Python's sqlite3 reads the new store
    let old = py_dump(&t.join("before/local").join(STORE));
    let new = py_dump(&t.join("after/local").join(STORE));
    assert_eq!(new["integrity"], serde_json::json!(["ok"]), "{new}");
    let (ro, rn) = (
        old["rows"].as_array().unwrap(),
        new["rows"].as_array().unwrap(),
    );
    assert_eq!(ro.len(), rn.len());
    let mut changed = 0;
    for (x, y) in ro.iter().zip(rn) {
        let target = x["Component"][1] == "esx"
            && x["ConfigGroup"][1] == "hardware"
            && x["Name"][1] == "pci_devices"
            && x["Identifier"][1] == "0000:16:00.0";
        if !target {
            assert_eq!(x, y, "an unrelated row changed");
            continue;
        }
        changed += 1;
        for (k, v) in x.as_object().unwrap() {
            if k != "UserValue" {
                assert_eq!(v, &y[k], "column {k} of the fixed record changed");
            }
        }
        let (ot, nt) = (
            x["UserValue"][1].as_str().unwrap(),
            y["UserValue"][1].as_str().unwrap(),
        );
        assert_eq!(y["UserValue"][0], "str");
        // only the value token changed
        assert_eq!(nt, ot.replace("\"passthru\"", "\"vmkernel\""));
        let j: serde_json::Value = serde_json::from_str(nt).unwrap();
        assert_eq!(j["owner"], "vmkernel");
    }
    assert_eq!(changed, 1);

    let f = findings(&img, t.path());
    assert!(!f.contains(&"configstore-disagrees".to_string()), "{f:?}");
}

#[test]
fn unclear_record_is_left_byte_identical_and_the_plan_says_so() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixcs-unclear");
    let store = mkconfigstore(t.path(), "store.db", &["--unclear", "0000:16:00.0"]);
    let pristine = disk_with_store(&t.join("build"), store.clone());
    let img = t.join("disk.img");
    copy_sparse(&pristine, &img);
    let backup = t.join("backup");
    let out = bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert!(
        out.contains("ConfigStore record 0000:16:00.0 for 0000:16:00.0 is unclear")
            && out.contains("left unchanged"),
        "{out}"
    );
    assert!(!out.contains("-> vmkernel\n      -"), "{out}");
    extract_local(&img, &t.join("after"));
    let got = fs::read(t.join("after/local").join(STORE)).unwrap();
    assert!(got == store, "the unclear store changed");
    let conf = fs::read_to_string(t.join("after/local").join(ESX_CONF)).unwrap();
    assert!(conf.contains("/device/000:022:00.0/owner = \"vmkernel\""));
}

#[test]
fn boolean_field_is_set_to_false() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixcs-bool");
    let store = mkconfigstore(
        t.path(),
        "store.db",
        &["--device", "0000:16:00.0:enabled=true"],
    );
    let pristine = disk_with_store(&t.join("build"), store);
    let img = t.join("disk.img");
    copy_sparse(&pristine, &img);
    let out = bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&t.join("backup")),
        ],
    );
    assert!(
        out.contains("DesiredValue/passthru_enabled passthru -> vmkernel"),
        "{out}"
    );
    extract_local(&pristine, &t.join("before"));
    extract_local(&img, &t.join("after"));
    let old = py_dump(&t.join("before/local").join(STORE));
    let new = py_dump(&t.join("after/local").join(STORE));
    assert_eq!(new["integrity"], serde_json::json!(["ok"]));
    let row = |d: &serde_json::Value| {
        d["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Component"][1] == "esx" && r["Identifier"][1] == "0000:16:00.0")
            .unwrap()["DesiredValue"][1]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        row(&new),
        row(&old).replace("\"passthru_enabled\": true", "\"passthru_enabled\": false")
    );
    assert!(!findings(&img, t.path()).contains(&"configstore-disagrees".to_string()));
}
