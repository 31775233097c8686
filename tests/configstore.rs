//! The ConfigStore reader (`bootbank::configstore`) against databases built by
//! `tests/tools/mkconfigstore` with Python's own sqlite3 module, never with bootbank's code. What
//! bootbank reads is cross-checked with Python's sqlite3 reading the same file: an SQLite build
//! and a JSON parser independent from rusqlite and serde_json.
//!
//! Without python3 the tests print SKIPPED and pass, except under `CI=true`, where a missing
//! python3 fails them.

mod common;

use bootbank::configstore::{
    self, ConfigStore, ConfigStoreError, Disagreement, MEMBER, Ownership, PciRecord, StoredValue,
};
use bootbank::esxconf::EsxConf;
use bootbank::pci::PciAddress;
use common::TempDir;
use serde_json::{Value, json};
use std::fs;
use std::path::Path;

/// python3 is there (see `common::require_tool` for the CI rule).
fn python() -> bool {
    common::require_tool("python3")
}

fn open(bytes: &[u8]) -> ConfigStore {
    ConfigStore::open(bytes).unwrap_or_else(|e| panic!("open: {e}"))
}

fn pci(text: &str) -> PciAddress {
    PciAddress::parse_pci(text).unwrap()
}

fn by_id<'a>(records: &'a [PciRecord], id: &str) -> &'a PciRecord {
    records
        .iter()
        .find(|r| r.identifier == id)
        .unwrap_or_else(|| panic!("no record {id} in {records:#?}"))
}

fn field(column: &str, pointer: &str) -> Option<(String, String)> {
    Some((column.to_string(), pointer.to_string()))
}

/// The independent reader: Python's sqlite3 on the file, read-only, JSON parsed by Python's json.
const ORACLE: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
out = {"integrity": integrity, "records": []}
if integrity == ["ok"]:
    cols = [r[1] for r in db.execute("PRAGMA table_info(Config)")]
    vals = [c for c in cols if c in
            ("AutoConfValue", "UserValue", "VitalValue", "CachedValue", "DesiredValue")]
    q = ("SELECT rowid, Identifier, " + ", ".join(vals) + " FROM Config WHERE Component = 'esx'"
         " AND ConfigGroup = 'hardware' AND Name = 'pci_devices' ORDER BY rowid")
    for row in db.execute(q):
        values = {}
        for c, v in zip(vals, row[2:]):
            if v is None:
                continue
            try:
                values[c] = {"type": "json", "value": json.loads(v)}
            except ValueError:
                values[c] = {"type": "text", "value": v}
        out["records"].append({"rowid": row[0], "identifier": row[1], "values": values})
print(json.dumps(out))
"#;

/// What the oracle reads from `path`.
fn oracle(path: &Path) -> Value {
    let text = common::run_text(common::cmd("python3").arg("-c").arg(ORACLE).arg(path));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("oracle output {text}: {e}"))
}

/// The same shape from bootbank's records.
fn ours(records: &[PciRecord]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                json!({
                    "rowid": r.rowid,
                    "identifier": r.identifier,
                    "values": serde_json::to_value(&r.values).unwrap(),
                })
            })
            .collect(),
    )
}

#[test]
fn records_found_and_addresses_parsed() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-found");
    let bytes = common::mkconfigstore(
        dir.path(),
        "store.db",
        &[
            "--device",
            "0000:16:00.0:passthru",
            "--device",
            "0000:65:00.0:enabled=true",
            "--device",
            "0000:17:00.0:vmkernel",
            "--unclear",
            "0000:b3:00.1",
        ],
    );
    let store = open(&bytes);
    assert_eq!(store.size, bytes.len());
    assert_eq!(store.table, "Config");
    assert_eq!(store.columns.len(), 14, "{:?}", store.columns);
    assert_eq!(
        store.value_columns,
        [
            "DesiredValue",
            "UserValue",
            "CachedValue",
            "AutoConfValue",
            "VitalValue"
        ]
    );
    // Five unrelated rows (two of them `pci_devices` under another component or group) + four.
    assert_eq!(store.rows, 9);
    assert!(!store.wal_header);
    let recs = store.pci_devices();
    let ids: Vec<&str> = recs.iter().map(|r| r.identifier.as_str()).collect();
    assert_eq!(
        ids,
        [
            "0000:16:00.0",
            "0000:65:00.0",
            "0000:17:00.0",
            "0000:b3:00.1"
        ]
    );
    let addrs: Vec<PciAddress> = recs.iter().map(|r| r.address.unwrap()).collect();
    assert_eq!(
        addrs,
        [
            PciAddress::new(0, 0x16, 0, 0),
            PciAddress::new(0, 0x65, 0, 0),
            PciAddress::new(0, 0x17, 0, 0),
            PciAddress::new(0, 0xb3, 0, 1)
        ]
    );
    // Every row keeps its rowid and its other columns.
    let r = by_id(&recs, "0000:16:00.0");
    assert!(r.rowid.is_some());
    assert_eq!(r.other.get("Revision"), Some(&StoredValue::Integer(6)));
    assert_eq!(
        r.other.get("Version"),
        Some(&StoredValue::Json(json!(1.0))),
        "text that happens to be JSON is read as JSON"
    );
    assert_eq!(
        r.values.get("UserValue"),
        Some(&StoredValue::Json(
            json!({"id": "0000:16:00.0", "owner": "passthru"})
        ))
    );
    assert_eq!(
        r.values.len(),
        1,
        "NULL columns are left out: {:?}",
        r.values
    );
}

#[test]
fn ownership_recognised_per_variant() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-owner");
    let bytes = common::mkconfigstore(
        dir.path(),
        "store.db",
        &[
            "--device",
            "0000:16:00.0:passthru",
            "--device",
            "0000:17:00.0:vmkernel",
            "--device",
            "0000:65:00.0:enabled=true",
            "--device",
            "0000:66:00.0:enabled=false",
            "--record",
            "0000:67:00.0",
            "UserValue",
            r#"{"id": "0000:67:00.0", "passthrough_enabled": true}"#,
            "--record",
            "0000:68:00.0",
            "CachedValue",
            r#"{"passthru": false}"#,
            // DesiredValue wins over UserValue; the disagreeing UserValue becomes a note.
            "--device",
            "0000:69:00.0:passthru",
            "--record",
            "0000:69:00.0",
            "DesiredValue",
            r#"{"passthru_enabled": false}"#,
            // Two recognised fields in one column that agree.
            "--record",
            "0000:6a:00.0",
            "AutoConfValue",
            r#"{"owner": "passthru", "passthru": true}"#,
            // Only VitalValue holds anything.
            "--record",
            "0000:6b:00.0",
            "VitalValue",
            r#"{"owner": "vmkernel"}"#,
        ],
    );
    let recs = open(&bytes).pci_devices();
    let expect = [
        ("0000:16:00.0", Ownership::Passthru, "UserValue", "/owner"),
        ("0000:17:00.0", Ownership::Vmkernel, "UserValue", "/owner"),
        (
            "0000:65:00.0",
            Ownership::Passthru,
            "DesiredValue",
            "/passthru_enabled",
        ),
        (
            "0000:66:00.0",
            Ownership::Vmkernel,
            "DesiredValue",
            "/passthru_enabled",
        ),
        (
            "0000:67:00.0",
            Ownership::Passthru,
            "UserValue",
            "/passthrough_enabled",
        ),
        (
            "0000:68:00.0",
            Ownership::Vmkernel,
            "CachedValue",
            "/passthru",
        ),
        (
            "0000:69:00.0",
            Ownership::Vmkernel,
            "DesiredValue",
            "/passthru_enabled",
        ),
        (
            "0000:6a:00.0",
            Ownership::Passthru,
            "AutoConfValue",
            "/owner",
        ),
        ("0000:6b:00.0", Ownership::Vmkernel, "VitalValue", "/owner"),
    ];
    assert_eq!(recs.len(), expect.len());
    for (id, owner, column, pointer) in expect {
        let r = by_id(&recs, id);
        assert_eq!(r.owner, Some(owner), "{id}: {r:#?}");
        assert_eq!(r.recognised_field, field(column, pointer), "{id}");
        assert_eq!(r.effective_column.as_deref(), Some(column), "{id}");
        assert_eq!(r.unclear, None, "{id}");
        // The pointer really leads to the field in that column.
        let v = r.values[column].json().unwrap().pointer(pointer).unwrap();
        assert!(v.is_string() || v.is_boolean(), "{id}: {v}");
    }
    let r = by_id(&recs, "0000:69:00.0");
    assert_eq!(r.recognised.len(), 2, "{r:#?}");
    assert_eq!(r.recognised[1].column, "UserValue");
    assert_eq!(r.recognised[1].owner, Ownership::Passthru);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("UserValue/owner says passthru")),
        "{:?}",
        r.notes
    );
    assert_eq!(by_id(&recs, "0000:6a:00.0").recognised.len(), 2);
    assert!(by_id(&recs, "0000:16:00.0").notes.is_empty());
}

#[test]
fn unclear_records_are_reported_never_guessed() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-unclear");
    let rec = |id: &'static str, col: &'static str, v: &'static str| ["--record", id, col, v];
    let mut args: Vec<&str> = vec!["--unclear", "0000:20:00.0"];
    for r in [
        rec("0000:21:00.0", "UserValue", r#"{"owner": "maybe"}"#),
        rec("0000:22:00.0", "UserValue", r#"{"passthru": "true"}"#),
        rec("0000:23:00.0", "UserValue", "passthru"),
        rec(
            "0000:24:00.0",
            "UserValue",
            r#"{"config": {"owner": "passthru"}}"#,
        ),
        rec("0000:25:00.0", "UserValue", r#"{"passthruEnabled": true}"#),
        rec(
            "0000:26:00.0",
            "UserValue",
            r#"{"owner": "passthru", "passthru_enabled": false}"#,
        ),
        // The effective value says nothing recognisable, a lower column does: still unclear.
        rec("0000:27:00.0", "DesiredValue", r#"{"foo": 1}"#),
        rec("0000:27:00.0", "UserValue", r#"{"owner": "passthru"}"#),
        rec("0000:28:00.0", "UserValue", r#"["passthru"]"#),
        rec("pcidev0", "UserValue", r#"{"owner": "passthru"}"#),
    ] {
        args.extend(r);
    }
    let recs = open(&common::mkconfigstore(dir.path(), "store.db", &args)).pci_devices();
    assert_eq!(recs.len(), 10);
    for r in &recs {
        if r.identifier == "pcidev0" {
            continue;
        }
        assert_eq!(r.owner, None, "{r:#?}");
        assert_eq!(r.recognised_field, None, "{}", r.identifier);
        assert!(r.unclear.is_some(), "{}", r.identifier);
    }
    let why = |id: &str| by_id(&recs, id).unclear.clone().unwrap();
    assert!(
        why("0000:20:00.0").contains("fields foo"),
        "{}",
        why("0000:20:00.0")
    );
    assert!(why("0000:21:00.0").contains("`owner` is \"maybe\""));
    assert!(why("0000:22:00.0").contains("`passthru` is \"true\""));
    assert!(why("0000:23:00.0").contains("not JSON"));
    assert!(why("0000:24:00.0").contains("fields config"));
    assert!(why("0000:25:00.0").contains("fields passthruEnabled"));
    assert!(why("0000:26:00.0").contains("disagree"));
    assert!(
        why("0000:27:00.0").contains("UserValue/owner says passthru"),
        "{}",
        why("0000:27:00.0")
    );
    assert!(why("0000:28:00.0").contains("not an object"));
    // A clear owner under an identifier that is no address cannot be matched to a device.
    let odd = by_id(&recs, "pcidev0");
    assert_eq!(odd.owner, Some(Ownership::Passthru));
    assert_eq!(odd.address, None);

    let listed = configstore::unclear(&recs);
    assert_eq!(listed.len(), 10);
    assert!(
        listed
            .iter()
            .any(|u| u.identifier == "pcidev0" && u.reason.contains("not a hex PCI address"))
    );
    // Unclear records are not disagreements, even against an esx.conf passing them through.
    let conf = EsxConf::parse(b"/device/000:032:00.0/owner = \"passthru\"\n").unwrap();
    assert_eq!(
        configstore::disagreements(&conf.devices(), &recs),
        Vec::<Disagreement>::new()
    );
}

#[test]
fn disagreements_with_esx_conf() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-disagree");
    // story.conf: 000:022:00.0 (0000:16:00.0) passthru, 000:023:00.0 (0000:17:00.0) vmkernel,
    // 000:000:31.2 (0000:00:1f.2) vmkernel; plus a second passthru device with no record.
    let mut text = common::esxconf("story.conf");
    text.push_str("/device/000:100:00.0/owner = \"passthru\"\n");
    let conf = EsxConf::parse(text.as_bytes()).unwrap();
    let bytes = common::mkconfigstore(
        dir.path(),
        "store.db",
        &[
            "--device",
            "0000:16:00.0:vmkernel",
            "--device",
            "0000:17:00.0:enabled=true",
            "--device",
            "0000:00:1f.2:vmkernel",
            "--device",
            "0000:02:00.0:enabled=false",
            "--device",
            "0000:65:00.0:passthru",
            "--device",
            "0000:66:00.0:vmkernel",
            "--unclear",
            "0000:02:00.1",
        ],
    );
    let recs = open(&bytes).pci_devices();
    let found = configstore::disagreements(&conf.devices(), &recs);
    assert_eq!(
        found,
        vec![
            Disagreement::Owner {
                address: pci("0000:16:00.0"),
                esx_address: "000:022:00.0".into(),
                esx_owner: Some("passthru".into()),
                identifier: "0000:16:00.0".into(),
                store_owner: Ownership::Vmkernel,
                field: ("UserValue".into(), "/owner".into()),
            },
            Disagreement::Owner {
                address: pci("0000:17:00.0"),
                esx_address: "000:023:00.0".into(),
                esx_owner: Some("vmkernel".into()),
                identifier: "0000:17:00.0".into(),
                store_owner: Ownership::Passthru,
                field: ("DesiredValue".into(), "/passthru_enabled".into()),
            },
            // 100 decimal is bus 0x64.
            Disagreement::OnlyInEsxConf {
                address: pci("0000:64:00.0"),
                esx_address: "000:100:00.0".into(),
            },
            Disagreement::OnlyInStore {
                address: pci("0000:65:00.0"),
                identifier: "0000:65:00.0".into(),
                field: ("UserValue".into(), "/owner".into()),
            },
        ]
    );
    // Both address forms in the words for the user.
    let line = found[0].to_string();
    assert!(
        line.contains("0000:16:00.0") && line.contains("000:022:00.0"),
        "{line}"
    );
    let only = found
        .iter()
        .find(|d| matches!(d, Disagreement::OnlyInStore { .. }))
        .unwrap()
        .to_string();
    assert!(
        only.contains("0000:65:00.0") && only.contains("000:101:00.0"),
        "{only}"
    );
    // The unclear record is listed apart.
    let listed = configstore::unclear(&recs);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, Some(pci("0000:02:00.1")));

    // Once esx.conf is repaired and the store agrees, nothing is left.
    let healthy = EsxConf::parse(common::esxconf("healthy.conf").as_bytes()).unwrap();
    let agree = common::mkconfigstore(
        dir.path(),
        "agree.db",
        &[
            "--device",
            "0000:16:00.0:vmkernel",
            "--device",
            "0000:17:00.0:enabled=false",
        ],
    );
    assert_eq!(
        configstore::disagreements(&healthy.devices(), &open(&agree).pci_devices()),
        Vec::<Disagreement>::new()
    );
}

#[test]
fn damaged_databases_give_typed_errors() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-corrupt");
    let corrupt = common::mkconfigstore(
        dir.path(),
        "corrupt.db",
        &[
            "--device",
            "0000:16:00.0:passthru",
            "--device",
            "0000:17:00.0:vmkernel",
            "--corrupt",
        ],
    );
    match ConfigStore::open(&corrupt) {
        Err(ConfigStoreError::Integrity { messages }) => {
            assert!(
                messages.iter().any(|m| m.contains("missing from index")),
                "{messages:?}"
            );
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
    // The oracle agrees the file is damaged.
    let o = oracle(&dir.join("corrupt.db"));
    assert_ne!(o["integrity"], json!(["ok"]), "{o}");

    let garbage = common::mkconfigstore(
        dir.path(),
        "garbage.db",
        &["--device", "0000:16:00.0:passthru", "--garbage"],
    );
    assert!(
        matches!(
            ConfigStore::open(&garbage),
            Err(ConfigStoreError::NotDatabase { .. })
        ),
        "{:?}",
        ConfigStore::open(&garbage)
    );
    assert!(matches!(
        ConfigStore::open(&[]),
        Err(ConfigStoreError::Empty)
    ));
    assert!(matches!(
        ConfigStore::open(b"not a database at all"),
        Err(ConfigStoreError::NotDatabase { .. })
    ));

    // A database cut short: whatever SQLite says, a typed error and no panic.
    let good = common::mkconfigstore(
        dir.path(),
        "good.db",
        &["--device", "0000:16:00.0:passthru"],
    );
    for cut in [100, 512, good.len() / 2, good.len() - 1] {
        let e = ConfigStore::open(&good[..cut]).expect_err("truncated database");
        assert!(
            matches!(
                e,
                ConfigStoreError::Integrity { .. }
                    | ConfigStoreError::NotDatabase { .. }
                    | ConfigStoreError::NoConfigTable { .. }
            ),
            "cut at {cut}: {e:?}"
        );
    }
    // A page in the middle overwritten with zeros.
    let mut zeroed = good.clone();
    let page = 4096.min(zeroed.len() / 2);
    zeroed[page..page * 2].fill(0);
    let e = ConfigStore::open(&zeroed).expect_err("zeroed page");
    assert!(
        matches!(
            e,
            ConfigStoreError::Integrity { .. } | ConfigStoreError::NoConfigTable { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn schema_is_read_liberally() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-schema");
    let dev = ["--device", "0000:16:00.0:passthru"];

    let minimal = open(&common::mkconfigstore(
        dir.path(),
        "min.db",
        &[&dev[..], &["--schema", "minimal"]].concat(),
    ));
    assert_eq!(minimal.value_columns, ["DesiredValue", "UserValue"]);
    assert_eq!(
        minimal.pci_devices()[0].owner,
        Some(Ownership::Passthru),
        "{minimal:#?}"
    );

    let extra = open(&common::mkconfigstore(
        dir.path(),
        "extra.db",
        &[&dev[..], &["--schema", "extra"]].concat(),
    ));
    let r = &extra.pci_devices()[0];
    assert_eq!(r.owner, Some(Ownership::Passthru));
    assert_eq!(
        r.other.get("Origin"),
        Some(&StoredValue::Text("mkconfigstore".into()))
    );

    match ConfigStore::open(&common::mkconfigstore(
        dir.path(),
        "novalue.db",
        &[&dev[..], &["--schema", "no-value"]].concat(),
    )) {
        Err(ConfigStoreError::NoValueColumn { present }) => {
            assert!(present.contains(&"ModifiedTime".to_string()))
        }
        other => panic!("{other:?}"),
    }
    match ConfigStore::open(&common::mkconfigstore(
        dir.path(),
        "noid.db",
        &[&dev[..], &["--schema", "no-identifier"]].concat(),
    )) {
        Err(ConfigStoreError::MissingColumns { missing, present }) => {
            assert_eq!(missing, ["Identifier"]);
            assert!(present.contains(&"UserValue".to_string()));
        }
        other => panic!("{other:?}"),
    }
    match ConfigStore::open(&common::mkconfigstore(
        dir.path(),
        "notable.db",
        &[&dev[..], &["--schema", "no-table"]].concat(),
    )) {
        Err(e @ ConfigStoreError::NoConfigTable { .. }) => {
            assert!(e.to_string().contains("Settings"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Last written in WAL mode: the copy is still readable, and the flag is reported.
    let wal = common::mkconfigstore(
        dir.path(),
        "wal.db",
        &[&dev[..], &["--journal", "wal"]].concat(),
    );
    assert_eq!(&wal[18..20], &[2, 2]);
    let store = open(&wal);
    assert!(store.wal_header);
    assert_eq!(store.pci_devices()[0].owner, Some(Ownership::Passthru));
    assert_eq!(
        &wal[18..20],
        &[2, 2],
        "the caller's bytes keep their header"
    );
}

#[test]
fn original_bytes_untouched() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-untouched");
    let path = dir.join("store.db");
    let bytes = common::mkconfigstore(
        dir.path(),
        "store.db",
        &[
            "--device",
            "0000:16:00.0:passthru",
            "--unclear",
            "0000:17:00.0",
        ],
    );
    let before = bytes.clone();
    let meta = fs::metadata(&path).unwrap();
    let first = open(&bytes);
    let second = open(&bytes);
    assert_eq!(bytes, before, "the bytes handed in are unchanged");
    assert_eq!(first, second, "reading twice gives the same result");
    assert_eq!(fs::read(&path).unwrap(), before, "the file is unchanged");
    assert_eq!(
        fs::metadata(&path).unwrap().modified().unwrap(),
        meta.modified().unwrap()
    );
    // Nothing but the fixture was left next to it (no -journal, -wal, -shm, temp copies).
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["store.db"]);
}

#[test]
fn values_match_python_sqlite3() {
    if !python() {
        return;
    }
    let dir = TempDir::new("cs-oracle");
    let path = dir.join("store.db");
    let bytes = common::mkconfigstore(
        dir.path(),
        "store.db",
        &[
            "--device",
            "0000:16:00.0:passthru",
            "--device",
            "0000:65:00.0:enabled=true",
            "--unclear",
            "0000:17:00.0",
            "--record",
            "0000:16:00.0",
            "CachedValue",
            r#"{"owner": "vmkernel", "nested": {"a": [1, 2.5, null, "é"]}}"#,
            "--record",
            "0000:18:00.0",
            "AutoConfValue",
            "not json at all",
            "--record",
            "0000:19:00.0",
            "VitalValue",
            "[1, 2, 3]",
            "--record",
            "0000:1a:00.0",
            "UserValue",
            "\"a JSON string\"",
        ],
    );
    let store = open(&bytes);
    let o = oracle(&path);
    assert_eq!(o["integrity"], json!(["ok"]));
    assert_eq!(ours(&store.pci_devices()), o["records"], "oracle: {o}");
    assert_eq!(store.pci_devices().len(), 6);
}

#[test]
fn found_in_local_tgz() {
    if !python() || !common::require_tools(&["tar", "gzip"]) {
        return;
    }
    let dir = TempDir::new("cs-local");
    let db = common::mkconfigstore(
        dir.path(),
        "store.db",
        &["--device", "0000:16:00.0:passthru"],
    );
    let root = dir.join("root");
    common::write_tree(
        &root,
        &[
            (
                "etc/vmware/esx.conf".to_string(),
                common::esxconf("story.conf").into_bytes(),
            ),
            (MEMBER.to_string(), db.clone()),
        ],
    );
    let local = dir.join("local.tgz");
    common::run(
        common::cmd("tar")
            .arg("-czf")
            .arg(&local)
            .arg("-C")
            .arg(&root)
            .arg("etc")
            .arg("var"),
    );
    let tgz = bootbank::archive::Tgz::parse(&fs::read(&local).unwrap(), "local.tgz").unwrap();
    let store = ConfigStore::from_local(&tgz)
        .unwrap()
        .expect("a ConfigStore");
    assert_eq!(store.size, db.len());
    let recs = store.pci_devices();
    assert_eq!(recs[0].owner, Some(Ownership::Passthru));
    // esx.conf agrees with the store in the story (both say passthru for 0000:16:00.0).
    let conf = EsxConf::parse(tgz.require("etc/vmware/esx.conf").unwrap()).unwrap();
    assert!(configstore::disagreements(&conf.devices(), &recs).is_empty());

    // A host before 7.0 has no ConfigStore.
    let old = dir.join("old.tgz");
    common::run(
        common::cmd("tar")
            .arg("-czf")
            .arg(&old)
            .arg("-C")
            .arg(&root)
            .arg("etc"),
    );
    let tgz = bootbank::archive::Tgz::parse(&fs::read(&old).unwrap(), "local.tgz").unwrap();
    assert!(ConfigStore::from_local(&tgz).unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// The writer (`fix`)

/// Only the value token of the recognised field changes, whatever the spacing around it; a WAL
/// header stays a WAL header; the result opens and passes integrity_check.
#[test]
fn set_owner_replaces_only_the_value_token() {
    if !python() {
        return;
    }
    let d = TempDir::new("cs-set-owner");
    let text = r#"{ "id" :"0000:16:00.0",  "owner"  :   "passthru" , "x": {"owner": "passthru"}}"#;
    let db = common::mkconfigstore(
        d.path(),
        "wal.db",
        &[
            "--record",
            "0000:16:00.0",
            "UserValue",
            text,
            "--journal",
            "wal",
        ],
    );
    let mut s = open(&db);
    let r = by_id(&s.pci_devices(), "0000:16:00.0").clone();
    assert_eq!(r.owner, Some(Ownership::Passthru));
    let e = s
        .set_owner(r.rowid.unwrap(), "UserValue", "/owner", Ownership::Vmkernel)
        .unwrap();
    assert!(!e.reserialised);
    assert_eq!(e.old_text, text);
    assert_eq!(
        e.new_text,
        r#"{ "id" :"0000:16:00.0",  "owner"  :   "vmkernel" , "x": {"owner": "passthru"}}"#
    );
    assert_eq!(&e.bytes[18..20], &db[18..20], "WAL header bytes kept");
    let again = open(&e.bytes);
    assert!(again.wal_header);
    assert_eq!(
        by_id(&again.pci_devices(), "0000:16:00.0").owner,
        Some(Ownership::Vmkernel)
    );
    assert_eq!(s, again);
}

/// Unclear records, and a field that is not the recognised one, are refused with nothing
/// changed.
#[test]
fn set_owner_refuses_unclear_and_unrecognised_fields() {
    if !python() {
        return;
    }
    let d = TempDir::new("cs-set-owner-refuse");
    let db = common::mkconfigstore(
        d.path(),
        "s.db",
        &[
            "--unclear",
            "0000:02:00.0",
            "--device",
            "0000:16:00.0:vmkernel",
        ],
    );
    let mut s = open(&db);
    let before = s.clone();
    let recs = s.pci_devices();
    let unclear = by_id(&recs, "0000:02:00.0");
    let e = s.set_owner(
        unclear.rowid.unwrap(),
        "UserValue",
        "/foo",
        Ownership::Vmkernel,
    );
    assert!(matches!(e, Err(ConfigStoreError::Refused(_))), "{e:?}");
    let vmk = by_id(&recs, "0000:16:00.0");
    let e = s.set_owner(
        vmk.rowid.unwrap(),
        "UserValue",
        "/owner",
        Ownership::Vmkernel,
    );
    assert!(matches!(e, Err(ConfigStoreError::Refused(_))), "{e:?}");
    assert_eq!(s, before);
}
