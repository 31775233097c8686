//! The ConfigStore reader and editor (`bootbank::configstore`) against the real ESXi 7.0.2
//! host's database and schema store (`../shared/real/`, read at test time, never copied), with
//! rows added by Python's own sqlite3 (`tests/tools/mkrealhost`), and against damaged databases
//! built by `tests/tools/mkconfigstore`. What bootbank reads and writes is checked with Python's
//! sqlite3 reading the same files (`tests/tools/configstore-rows`): an SQLite build and a JSON
//! parser independent from rusqlite and serde_json.
//!
//! Without python3 or the real data the tests print SKIPPED and pass, except under `CI=true`,
//! where either missing fails them.

use crate::common;

use crate::common::TempDir;
use bootbank::archive::Tgz;
use bootbank::configstore::schema::{self, DEVICE_DATA, PCI_DEVICES};
use bootbank::configstore::{
    ConfigStore, ConfigStoreError, EditRefusal, Key, Ownership, PciDeviceRecord, Record, Schemas,
    StoredValue,
};
use bootbank::pci::PciAddress;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const STORE: &str = "var/lib/vmware/configstore/backup/current-store-1";

/// python3 is there (see `common::require_tool` for the CI rule).
fn python() -> bool {
    common::require_tool("python3")
}

trait OpenBuiltIn {
    fn open_built_in(bytes: &[u8]) -> Result<ConfigStore, ConfigStoreError>;
}

impl OpenBuiltIn for ConfigStore {
    fn open_built_in(bytes: &[u8]) -> Result<ConfigStore, ConfigStoreError> {
        ConfigStore::open(bytes, Schemas::built_in())
    }
}

fn open(bytes: &[u8]) -> ConfigStore {
    ConfigStore::open_built_in(bytes).unwrap_or_else(|e| panic!("open: {e}"))
}

fn pci(text: &str) -> PciAddress {
    PciAddress::parse_pci(text).unwrap()
}

/// The ConfigStore of a local.tgz, read through its own schema store (as inspect does).
fn store_of(local: &Path) -> ConfigStore {
    let bytes = fs::read(local).unwrap();
    let tgz = Tgz::parse(&bytes, "local.tgz").unwrap();
    ConfigStore::from_local(&tgz)
        .unwrap_or_else(|e| panic!("from_local: {e}"))
        .expect("local.tgz holds a ConfigStore")
}

/// GNU tar takes the database out of a local.tgz.
fn extract_store(local: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("extracted");
    common::untar(local, &out);
    out.join(STORE)
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

/// The same shape from bootbank's records.
fn ours(records: &[PciDeviceRecord]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                json!({
                    "rowid": r.record.rowid,
                    "identifier": r.identifier,
                    "values": serde_json::to_value(&r.record.columns).unwrap(),
                })
            })
            .collect(),
    )
}

/// What the oracle reads from `path`.
fn oracle(path: &Path) -> Value {
    let text = common::run_text(common::cmd("python3").arg("-c").arg(ORACLE).arg(path));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("oracle output {text}: {e}"))
}

/// The built-in schemas (data/configstore-schemas.json) are the real host's, read here by
/// Python's sqlite3; bootbank's own reading of the real schema store finds no difference.
#[test]
fn built_in_schemas_match_the_real_schema_store() {
    if !common::require_real() {
        return;
    }
    let real = common::real_dir().join("schema-store-1");
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
out = {}
for c, g, n in [("esx", "hardware", "pci_devices"), ("esx", "system", "device_data"), ("esx", "authentication", "user_accounts"), ("esx", "authorization", "lockdown_settings"), ("esx", "authorization", "dcui_access")]:
    (v,) = db.execute("SELECT Value FROM ConfigSchema WHERE Component=? AND ConfigGroup=? AND Name=?", (c, g, n)).fetchone()
    out[c + "/" + g + "/" + n] = json.loads(v)
print(json.dumps(out))
"#;
    let py: Value = serde_json::from_str(&common::run_text(
        common::cmd("python3").arg("-c").arg(script).arg(&real),
    ))
    .unwrap();
    for key in schema::KNOWN {
        assert_eq!(
            schema::built_in(key).value,
            py[key.to_string()],
            "built-in {key} differs from the real schema store"
        );
    }
    let s = Schemas::from_store(&fs::read(&real).unwrap()).unwrap();
    assert!(s.host_store);
    assert!(s.differences.is_empty(), "{:?}", s.differences);
    assert_eq!(s.esx_base_build().as_deref(), Some("7.0.2-0.0.17867351"));
    assert!(matches!(
        s.get(PCI_DEVICES).source,
        bootbank::configstore::SchemaSource::Host { .. }
    ));
}

/// The merge rule (value columns merged field by field, instance id repeated except a
/// store-specific one, vital fields only in VitalValue, schema defaults for the rest) holds for
/// every one of the real host's 102 records that has a schema, each read through its own schema.
#[test]
fn every_real_record_merges_cleanly_through_its_own_schema() {
    if !common::require_real() {
        return;
    }
    let d = common::real_dir();
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
sch = sqlite3.connect("file:" + sys.argv[2] + "?mode=ro", uri=True)
cols = ["AutoConfValue", "UserValue", "VitalValue", "CachedValue", "DesiredValue"]
out = []
for row in db.execute("SELECT rowid, Component, ConfigGroup, Name, Identifier, " + ", ".join(cols) + " FROM Config ORDER BY rowid"):
    s = sch.execute("SELECT Value FROM ConfigSchema WHERE Component=? AND ConfigGroup=? AND Name=?", row[1:4]).fetchone()
    out.append({"rowid": row[0], "key": "/".join(row[1:4]), "identifier": row[4],
                "schema": json.loads(s[0]) if s else None,
                "columns": {c: v for c, v in zip(cols, row[5:]) if v is not None}})
print(json.dumps(out))
"#;
    let rows: Vec<Value> = serde_json::from_str(&common::run_text(
        common::cmd("python3")
            .arg("-c")
            .arg(script)
            .arg(d.join("current-store-1"))
            .arg(d.join("schema-store-1")),
    ))
    .unwrap();
    assert_eq!(rows.len(), 102, "the real host's Config table");
    let mut merged = 0;
    for row in &rows {
        let Some(value) = row["schema"].as_object() else {
            continue;
        };
        let key_text = row["key"].as_str().unwrap();
        let parts: Vec<&'static str> = key_text
            .split('/')
            .map(|p| &*Box::leak(p.to_string().into_boxed_str()))
            .collect();
        let key = Key {
            component: parts[0],
            group: parts[1],
            name: parts[2],
        };
        let schema = schema::Schema {
            key,
            source: bootbank::configstore::SchemaSource::Host { vib_id: None },
            value: Value::Object(value.clone()),
        };
        let columns = row["columns"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(c, t)| {
                let t = t.as_str().unwrap();
                (
                    c.clone(),
                    StoredValue::Json(
                        serde_json::from_str(t).unwrap_or_else(|e| panic!("{key_text} {c}: {e}")),
                    ),
                )
            })
            .collect();
        let r = Record::merge(
            row["identifier"].as_str().unwrap().to_string(),
            row["rowid"].as_i64(),
            columns,
            &BTreeMap::new(),
            &schema,
        );
        assert!(
            r.problems.is_empty(),
            "{key_text} {}: {:?}",
            r.identifier,
            r.problems
        );
        if key_text == "esx/network/vmknics" {
            // vmk0 as section 7 of the reference describes it: user settings, vital MAC and
            // cached DHCP lease merged into one record.
            assert_eq!(r.str("port_group"), Some("Management Network"));
            assert_eq!(r.sources["port_group"], "UserValue");
            assert_eq!(r.str("mac"), Some("00:0c:29:80:16:86"));
            assert_eq!(r.sources["mac"], "VitalValue");
            assert_eq!(r.str("dhcp_server"), Some("10.199.5.1"));
            assert_eq!(r.sources["dhcp_server"], "CachedValue");
        }
        merged += 1;
    }
    assert!(merged >= 80, "only {merged} records had a schema");
}

/// The real host's own store, as it is: no pci_devices record, eight device names, of which the
/// `m01000b00`-style addresses are shown as written and never read as a PCI address.
#[test]
fn the_real_store_names_its_devices() {
    if !common::require_real() {
        return;
    }
    let d = common::real_dir();
    let store = ConfigStore::open(
        &common::real_file("current-store-1"),
        Schemas::from_store(&common::real_file("schema-store-1")).unwrap(),
    )
    .unwrap();
    assert!(store.pci_devices.is_empty());
    assert_eq!(store.device_names.len(), 8);
    assert!(store.device_names.iter().all(|n| n.problems.is_empty()));
    let vmhba1: Vec<_> = store.names_of(pci("0000:00:07.1"));
    assert_eq!(
        vmhba1.len(),
        3,
        "the pci row and two logical rows: {vmhba1:?}"
    );
    assert!(vmhba1.iter().all(|n| n.alias.as_deref() != Some("vmnic0")));
    let odd = store
        .device_names
        .iter()
        .find(|n| n.bus_address.as_deref() == Some("m01000b00"))
        .unwrap();
    assert_eq!(odd.alias.as_deref(), Some("vmnic0"));
    assert_eq!(odd.address, None);
    // The triggers the edit relies on are the real host's.
    let names: Vec<&str> = store.triggers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["updateModifiedTime", "updateRevision"]);
    let _ = d;
}

/// A passthrough row added by Python's sqlite3 to the real store, read through the real
/// schema store: merged owner OWNER_PASSTHRU from UserValue, name vmhba2 from device_data.
#[test]
fn a_passthrough_row_in_the_real_store_is_read() {
    if !common::require_real() {
        return;
    }
    let dir = TempDir::new("cs-real-read");
    let local = common::mkrealhost(
        dir.path(),
        "local.tgz",
        &["--passthru", "0000:16:00.0=vmhba2"],
    );
    let store = store_of(&local);
    assert!(store.schemas.host_store);
    assert_eq!(store.pci_devices.len(), 1);
    let r = &store.pci_devices[0];
    assert_eq!(r.address, Some(pci("0000:16:00.0")));
    assert_eq!(r.owner, Some(Ownership::Passthru));
    assert_eq!(r.owner_raw.as_deref(), Some("OWNER_PASSTHRU"));
    assert_eq!(r.owner_columns, ["UserValue"]);
    assert!(r.record.problems.is_empty(), "{:?}", r.record.problems);
    assert_eq!(r.record.sources["dl_bus_address"], "VitalValue");
    let names = store.names_of(pci("0000:16:00.0"));
    assert!(
        names
            .iter()
            .any(|n| n.alias.as_deref() == Some("vmhba2") && n.bus_type.as_deref() == Some("pci"))
    );
    // A vmkernel row states its owner too; a row with no owner gets the schema default.
    let local = common::mkrealhost(
        dir.path(),
        "local2.tgz",
        &[
            "--vmkernel",
            "0000:17:00.0",
            "--row",
            r#"{"component":"esx","group":"hardware","name":"pci_devices","identifier":"0000:18:00.0","VitalValue":{"sbdf":"0000:18:00.0","dl_bus_address":"p0000:18:00.0"}}"#,
        ],
    );
    let store = store_of(&local);
    let get = |a: &str| store.pci_device(pci(a)).unwrap();
    assert_eq!(get("0000:17:00.0").owner, Some(Ownership::Vmkernel));
    assert_eq!(
        get("0000:18:00.0").owner_raw.as_deref(),
        Some("OWNER_VMKERNEL")
    );
    assert!(get("0000:18:00.0").owner_columns.is_empty(), "the default");
}

/// `set_owner` with SQLite's own UPDATE: Python's sqlite3 reads both databases row by row, and
/// only the edited row differs, in it only UserValue, ModifiedTime and Revision (the triggers'
/// work); every other row and table is identical; integrity_check is ok.
#[test]
fn set_owner_changes_one_field_of_one_row() {
    if !common::require_real() {
        return;
    }
    let dir = TempDir::new("cs-real-edit");
    let local = common::mkrealhost(
        dir.path(),
        "local.tgz",
        &["--passthru", "0000:16:00.0=vmhba2"],
    );
    let store = store_of(&local);
    let old_db = extract_store(&local, dir.path());
    let rowid = store.pci_devices[0].record.rowid.unwrap();
    let e = store.set_owner(rowid, Ownership::Vmkernel).unwrap();
    let new_db = dir.join("new.db");
    fs::write(&new_db, &e.bytes).unwrap();
    assert_eq!(e.columns.len(), 1);
    assert_eq!(e.columns[0].column, "UserValue");
    assert_eq!(
        e.columns[0].new_text,
        e.columns[0]
            .old_text
            .replace("OWNER_PASSTHRU", "OWNER_VMKERNEL"),
        "only the value token changes"
    );

    let before = common::configstore_rows(&old_db);
    let after = common::configstore_rows(&new_db);
    assert_eq!(before.len(), after.len());
    let mut changed = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == a {
            continue;
        }
        changed += 1;
        assert_eq!(b["table"], "Config", "{b}\n{a}");
        assert_eq!(b["rowid"], json!(rowid));
        let (br, ar) = (b["row"].as_object().unwrap(), a["row"].as_object().unwrap());
        let differ: Vec<&String> = br.keys().filter(|k| br[*k] != ar[*k]).collect();
        assert_eq!(
            differ,
            ["ModifiedTime", "Revision", "UserValue"],
            "{b}\n{a}"
        );
        assert_eq!(
            ar["Revision"].as_i64(),
            br["Revision"].as_i64().map(|r| r + 1),
            "updateRevision ran"
        );
        assert_ne!(
            ar["ModifiedTime"], br["ModifiedTime"],
            "updateModifiedTime ran"
        );
        let v: Value = serde_json::from_str(ar["UserValue"].as_str().unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"sbdf": "0000:16:00.0", "owner": "OWNER_VMKERNEL"})
        );
    }
    assert_eq!(changed, 1, "exactly one row differs");
    assert_eq!(
        after.last().unwrap()["integrity_check"],
        json!(["ok"]),
        "Python's sqlite3 finds the new database sound"
    );
    assert_eq!(e.revision.1, e.revision.0.map(|r| r + 1));
    assert_eq!(e.after.pci_devices[0].owner, Some(Ownership::Vmkernel));
    // The store refuses to set what is already set.
    assert!(matches!(
        e.after.set_owner(rowid, Ownership::Vmkernel),
        Err(ConfigStoreError::Refused(EditRefusal::AlreadySet { .. }))
    ));
}

/// A schema that differs from the one bootbank knows is reported and every edit refused.
#[test]
fn a_schema_that_differs_refuses_the_edit() {
    if !common::require_real() {
        return;
    }
    let dir = TempDir::new("cs-real-schema");
    let local = common::mkrealhost(
        dir.path(),
        "local.tgz",
        &[
            "--passthru",
            "0000:16:00.0=vmhba2",
            "--schema-set",
            "esx/hardware/pci_devices",
            "/items/properties/owner/enum/-",
            "\"OWNER_SRIOV\"",
        ],
    );
    let store = store_of(&local);
    let d = &store.schemas.differences[&PCI_DEVICES];
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("/items/properties/owner/enum"), "{d:?}");
    assert!(!store.schemas.differences.contains_key(&DEVICE_DATA));
    // Still read with the host's schema: the record says passthrough.
    assert_eq!(store.pci_devices[0].owner, Some(Ownership::Passthru));
    let rowid = store.pci_devices[0].record.rowid.unwrap();
    match store.set_owner(rowid, Ownership::Vmkernel) {
        Err(ConfigStoreError::Refused(EditRefusal::SchemaDiffers { key, differences })) => {
            assert_eq!(key, "esx/hardware/pci_devices");
            assert_eq!(&differences, d);
        }
        other => panic!("{other:?}"),
    }
    // No schema store at all: the built-in copy.
    let local = common::mkrealhost(
        dir.path(),
        "noschema.tgz",
        &["--passthru", "0000:16:00.0=vmhba2", "--no-schema-store"],
    );
    let store = store_of(&local);
    assert!(!store.schemas.host_store);
    assert!(store.schemas.differences.is_empty());
    assert_eq!(store.pci_devices[0].owner, Some(Ownership::Passthru));
    assert!(store.set_owner(rowid, Ownership::Vmkernel).is_ok());
}

/// Records that cannot be read as ESXi reads them are reported and never changed: columns that
/// disagree, values and fields the schema does not allow, an instance id that is not the row's,
/// an owner that only a column bootbank does not edit holds.
#[test]
fn unreadable_records_are_refused() {
    if !common::require_real() {
        return;
    }
    let dir = TempDir::new("cs-real-odd");
    let row = |id: &str, cols: &str| {
        format!(
            r#"{{"component":"esx","group":"hardware","name":"pci_devices","identifier":"{id}",{cols}}}"#
        )
    };
    let vital = |id: &str| format!(r#""VitalValue":{{"sbdf":"{id}","dl_bus_address":"p{id}"}}"#);
    let rows = [
        row(
            "0000:16:00.0",
            &format!(
                r#"{},"UserValue":{{"sbdf":"0000:16:00.0","owner":"OWNER_PASSTHRU"}},"DesiredValue":{{"sbdf":"0000:16:00.0","owner":"OWNER_VMKERNEL"}}"#,
                vital("0000:16:00.0")
            ),
        ),
        row(
            "0000:17:00.0",
            &format!(
                r#"{},"UserValue":{{"sbdf":"0000:17:00.0","owner":"passthru"}}"#,
                vital("0000:17:00.0")
            ),
        ),
        row(
            "0000:18:00.0",
            &format!(
                r#"{},"UserValue":{{"sbdf":"0000:18:00.0","owner":"OWNER_PASSTHRU","colour":"red"}}"#,
                vital("0000:18:00.0")
            ),
        ),
        row(
            "0000:19:00.0",
            &format!(
                r#"{},"UserValue":{{"sbdf":"0000:19:00.1","owner":"OWNER_PASSTHRU"}}"#,
                vital("0000:19:00.0")
            ),
        ),
    ];
    let mut args: Vec<&str> = Vec::new();
    for r in &rows {
        args.extend(["--row", r]);
    }
    let local = common::mkrealhost(dir.path(), "local.tgz", &args);
    let store = store_of(&local);
    let get = |a: &str| store.pci_device(pci(a)).unwrap();
    let conflict = get("0000:16:00.0");
    assert_eq!(conflict.owner_raw, None, "which column wins is not known");
    assert_eq!(conflict.owner_columns, ["UserValue", "DesiredValue"]);
    let words = get("0000:17:00.0");
    assert_eq!(words.owner, None, "esx.conf's word is not the store's");
    assert!(words.record.problems[0].contains("not one of the schema's values"));
    assert!(get("0000:18:00.0").record.problems[0].contains("`colour`"));
    assert!(get("0000:19:00.0").record.problems[0].contains("instance id"));
    for a in [
        "0000:16:00.0",
        "0000:17:00.0",
        "0000:18:00.0",
        "0000:19:00.0",
    ] {
        let rowid = get(a).record.rowid.unwrap();
        assert!(
            matches!(
                store.set_owner(rowid, Ownership::Vmkernel),
                Err(ConfigStoreError::Refused(
                    EditRefusal::RecordProblems { .. }
                ))
            ),
            "{a}"
        );
    }
}

/// A trigger bootbank does not know would run on the UPDATE: refused before it runs.
#[test]
fn an_unknown_trigger_refuses_the_edit() {
    if !common::require_real() {
        return;
    }
    let dir = TempDir::new("cs-real-trigger");
    let local = common::mkrealhost(
        dir.path(),
        "local.tgz",
        &["--passthru", "0000:16:00.0=vmhba2"],
    );
    let db = extract_store(&local, dir.path());
    common::run(common::cmd("python3").arg("-c").arg(
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute(\"CREATE TRIGGER wipe AFTER UPDATE ON Config BEGIN DELETE FROM KVTable; END\")\nc.commit()",
    ).arg(&db));
    let store = ConfigStore::open(
        &fs::read(&db).unwrap(),
        Schemas::from_store(&common::real_file("schema-store-1")).unwrap(),
    )
    .unwrap();
    let rowid = store.pci_devices[0].record.rowid.unwrap();
    match store.set_owner(rowid, Ownership::Vmkernel) {
        Err(ConfigStoreError::Refused(EditRefusal::UnknownTriggers { names })) => {
            assert_eq!(names, ["wipe"])
        }
        other => panic!("{other:?}"),
    }
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
    match ConfigStore::open(&corrupt, Schemas::built_in()) {
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
            ConfigStore::open(&garbage, Schemas::built_in()),
            Err(ConfigStoreError::NotDatabase { .. })
        ),
        "{:?}",
        ConfigStore::open(&garbage, Schemas::built_in())
    );
    assert!(matches!(
        ConfigStore::open(&[], Schemas::built_in()),
        Err(ConfigStoreError::Empty)
    ));
    assert!(matches!(
        ConfigStore::open(b"not a database at all", Schemas::built_in()),
        Err(ConfigStoreError::NotDatabase { .. })
    ));

    // A database cut short: whatever SQLite says, a typed error and no panic.
    let good = common::mkconfigstore(
        dir.path(),
        "good.db",
        &["--device", "0000:16:00.0:passthru"],
    );
    for cut in [100, 512, good.len() / 2, good.len() - 1] {
        let e =
            ConfigStore::open(&good[..cut], Schemas::built_in()).expect_err("truncated database");
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
    let e = ConfigStore::open(&zeroed, Schemas::built_in()).expect_err("zeroed page");
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
    assert_eq!(minimal.value_columns, ["UserValue", "DesiredValue"]);
    assert_eq!(minimal.pci_devices.len(), 1, "{minimal:#?}");

    let extra = open(&common::mkconfigstore(
        dir.path(),
        "extra.db",
        &[&dev[..], &["--schema", "extra"]].concat(),
    ));
    assert_eq!(extra.pci_devices.len(), 1);
    assert!(
        extra.columns.iter().any(|c| c == "Origin"),
        "{:?}",
        extra.columns
    );

    match ConfigStore::open_built_in(&common::mkconfigstore(
        dir.path(),
        "novalue.db",
        &[&dev[..], &["--schema", "no-value"]].concat(),
    )) {
        Err(ConfigStoreError::NoValueColumn { present }) => {
            assert!(present.contains(&"ModifiedTime".to_string()))
        }
        other => panic!("{other:?}"),
    }
    match ConfigStore::open_built_in(&common::mkconfigstore(
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
    match ConfigStore::open_built_in(&common::mkconfigstore(
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
    assert_eq!(store.pci_devices.len(), 1);
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
    assert_eq!(ours(&store.pci_devices), o["records"], "oracle: {o}");
    assert_eq!(store.pci_devices.len(), 6);
}
