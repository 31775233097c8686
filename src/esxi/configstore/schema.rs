//! The host's own ConfigStore schemas (reference section 7): which field is a record's instance
//! id, each field's type, enum values and vital flag, and the defaults for what no value column
//! sets.
//!
//! A 7.0+ local.tgz carries the schemas beside the database, in
//! `etc/vmware/schemastore/schema-store-1` (an SQLite database, table `ConfigSchema`, one JSON
//! schema per key in `Value`). bootbank reads a record through the schema of the host that wrote
//! it, and checks every edit against it. A configuration without a schema store is read through a
//! built-in copy of the few schemas bootbank needs (`data/configstore-schemas.json`, taken from
//! ESXi 7.0.2; a test compares it with the real host's store). When the host's schema for a key
//! bootbank edits differs from the built-in one, the difference is reported and edits of that
//! key are refused: bootbank knows what the fields it changes mean only for the schema it knows.

use super::{ConfigStoreError, quote, sql_err};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

/// Path of the schema store inside local.tgz.
pub const MEMBER: &str = "etc/vmware/schemastore/schema-store-1";

/// A ConfigStore key: component, group and name, e.g. `esx/hardware/pci_devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub component: &'static str,
    pub group: &'static str,
    pub name: &'static str,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.component, self.group, self.name)
    }
}

/// Device ownership (passthrough or vmkernel), one row per PCI function, instance id `sbdf`.
pub const PCI_DEVICES: Key = Key {
    component: "esx",
    group: "hardware",
    name: "pci_devices",
};

/// vmkernel device names (`vmhba2`) by bus address, one row per device, instance id
/// `cs_generated_id`.
pub const DEVICE_DATA: Key = Key {
    component: "esx",
    group: "system",
    name: "device_data",
};

/// Local accounts (`passwd`), one row per user, instance id `name`. Its 7.0.2 schema lists
/// `name`, `uid` (vital), `password_hash` (`$6$` pattern, not vital), `last_password_change`
/// (vital) and `description`; the real 7.0.2 host has no row of it.
pub const USER_ACCOUNTS: Key = Key {
    component: "esx",
    group: "authentication",
    name: "user_accounts",
};

/// Lockdown mode (`lockdown`), a single record. Its 7.0.2 schema lists `mode` (enum `NORMAL`,
/// `STRICT`; not required, no default: a host with no mode is not locked down),
/// `exception_users` (array of strings) and `removed_permissions` (vital: the permissions
/// lockdown took away); the real 7.0.2 host has no row of it.
pub const LOCKDOWN_SETTINGS: Key = Key {
    component: "esx",
    group: "authorization",
    name: "lockdown_settings",
};

/// Who may log in at the DCUI whatever lockdown says (the `DCUI.Access` advanced option), a
/// single record: `users` (at least one), schema default `["root"]`.
pub const DCUI_ACCESS: Key = Key {
    component: "esx",
    group: "authorization",
    name: "dcui_access",
};

/// The keys bootbank reads, in the order it reports them.
pub const KNOWN: [Key; 5] = [
    PCI_DEVICES,
    DEVICE_DATA,
    USER_ACCOUNTS,
    LOCKDOWN_SETTINGS,
    DCUI_ACCESS,
];

/// Where a schema was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SchemaSource {
    /// The host's own schema store; `vib_id` is the VIB that installed the schema, e.g.
    /// `esx-base-7.0.2_0.0.17867351-schema`.
    Host { vib_id: Option<String> },
    /// bootbank's built-in copy (the configuration has no schema store, or it lacks the key).
    BuiltIn { vib_id: String },
}

impl fmt::Display for SchemaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaSource::Host { vib_id } => write!(
                f,
                "the host's schema store ({MEMBER}{})",
                vib_id
                    .as_deref()
                    .map(|v| format!(", {v}"))
                    .unwrap_or_default()
            ),
            SchemaSource::BuiltIn { vib_id } => {
                write!(f, "bootbank's built-in copy of the {vib_id} schema")
            }
        }
    }
}

/// One key's JSON schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub key: Key,
    pub source: SchemaSource,
    /// The schema exactly as stored (parsed).
    pub value: Value,
}

/// What the schema says about one field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The schema's type word: `string`, `ID`, `long`, `boolean`, `object`, `array`...
    pub ty: Option<String>,
    /// Allowed values, when the schema lists them.
    pub enum_values: Option<Vec<String>>,
    /// Vital fields come from the hardware and sit in `VitalValue`; bootbank never edits them.
    pub vital: bool,
    /// The field that names the record (its value is the row's Identifier).
    pub instance_id: bool,
    /// An instance id that only this store knows (`cs_generated_id`): kept in the Identifier
    /// column, not repeated in the value columns (seen on the real 7.0.2 host).
    pub store_specific: bool,
}

impl Schema {
    /// `array` keys hold one record per instance; others are a single record.
    pub fn is_array(&self) -> bool {
        self.value.get("type").and_then(Value::as_str) == Some("array")
    }

    /// The object schema of one record: `items` for an array key, the schema itself otherwise.
    fn record_schema(&self) -> &Value {
        if self.is_array() {
            self.value.get("items").unwrap_or(&Value::Null)
        } else {
            &self.value
        }
    }

    /// The instance-id field's name (`sbdf`, `cs_generated_id`), when the key has one.
    pub fn instance_id(&self) -> Option<&str> {
        self.value.get("instanceId").and_then(Value::as_str)
    }

    /// `configVersion`, which ESXi writes into each row's Version column.
    pub fn config_version(&self) -> Option<&str> {
        self.value.get("configVersion").and_then(Value::as_str)
    }

    /// Whether fields the schema does not list are allowed (JSON Schema's default is yes).
    pub fn additional_properties(&self) -> bool {
        self.record_schema()
            .get("additionalProperties")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The fields the schema lists, by name.
    pub fn fields(&self) -> BTreeMap<String, Field> {
        let rec = self.record_schema();
        let all_vital = flag(&self.value, "vital") || flag(rec, "vital");
        rec.get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, p)| {
                        let field = Field {
                            name: name.clone(),
                            ty: p.get("type").and_then(Value::as_str).map(str::to_string),
                            enum_values: p.get("enum").and_then(Value::as_array).map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            }),
                            vital: all_vital || flag(p, "vital"),
                            instance_id: flag(p, "instanceId"),
                            store_specific: flag(p, "storeSpecific"),
                        };
                        (name.clone(), field)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One field, when the schema lists it.
    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields().remove(name)
    }

    /// The defaults of one record: `defaults.<name>`, as every 7.0.2 schema writes them, for
    /// arrays and single records alike (`{"pci_devices": {"owner": "OWNER_VMKERNEL"}}`,
    /// `{"keyboard": {"layout": "US Default"}}`).
    pub fn defaults(&self) -> Map<String, Value> {
        self.value
            .get("defaults")
            .and_then(|d| d.get(self.key.name))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Where this schema differs from `other`, as JSON pointers with both values; empty when
    /// they are the same.
    pub fn differences(&self, other: &Schema) -> Vec<String> {
        let mut out = Vec::new();
        diff_json("", &self.value, &other.value, &mut out);
        out
    }
}

fn flag(v: &Value, name: &str) -> bool {
    v.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Differences between two JSON values, by pointer: `/items/properties/owner/enum: [...] here,
/// [...] there`.
fn diff_json(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff_json(&path, v, w, out),
                    (Some(v), None) => {
                        out.push(format!("{path}: {v} (bootbank knows no such entry)"))
                    }
                    (None, Some(w)) => out.push(format!("{path}: missing (bootbank knows {w})")),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(format!(
            "{}: {a} (bootbank knows {b})",
            if at.is_empty() { "/" } else { at }
        )),
        _ => {}
    }
}

/// The built-in schemas (data/configstore-schemas.json), parsed once.
pub fn built_in(key: Key) -> Schema {
    static DOC: OnceLock<Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../../../data/configstore-schemas.json"))
            .expect("data/configstore-schemas.json is JSON")
    });
    let vib_id = doc["vib_id"].as_str().unwrap_or("?").to_string();
    let value = doc["schemas"]
        .get(key.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("data/configstore-schemas.json has no schema for {key}"));
    Schema {
        key,
        source: SchemaSource::BuiltIn { vib_id },
        value,
    }
}

/// The schemas bootbank reads a configuration with, and how they compare with the built-in ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Schemas {
    /// One schema per key of [`KNOWN`], in that order.
    pub schemas: Vec<Schema>,
    /// Whether the configuration had a schema store at all.
    pub host_store: bool,
    /// The VIB ids of the host's schemas bootbank read, e.g.
    /// `esx-base-7.0.2_0.0.17867351-schema`: the build of the host that wrote them.
    pub vib_ids: Vec<String>,
    /// Per key: where the host's schema differs from the one bootbank knows (empty: the same).
    /// A key the host's store lacks is listed as one difference.
    pub differences: BTreeMap<Key, Vec<String>>,
}

impl Schemas {
    /// The built-in schemas, for a configuration without a schema store.
    pub fn built_in() -> Schemas {
        Schemas {
            schemas: KNOWN.iter().map(|k| built_in(*k)).collect(),
            host_store: false,
            vib_ids: Vec::new(),
            differences: BTreeMap::new(),
        }
    }

    /// Reads the host's schemas for the [`KNOWN`] keys from a schema store database, checked
    /// and opened like the ConfigStore itself (a private in-memory copy, read-only, after
    /// `PRAGMA integrity_check`). A key the store lacks is read with the built-in schema and
    /// listed in [`Schemas::differences`].
    ///
    /// Results are kept for the run by the store's exact bytes: every host of one build carries
    /// the same schema store, so an audit of a fleet reads each build's once.
    pub fn from_store(db_bytes: &[u8]) -> Result<Schemas, ConfigStoreError> {
        if let Some(s) = Self::seen(db_bytes) {
            return Ok(s);
        }
        let schemas = Self::read_store(db_bytes)?;
        if let Ok(mut seen) = SEEN.lock() {
            // A few builds at most in one fleet; keep the memory bounded all the same.
            if seen.len() >= 8 {
                seen.remove(0);
            }
            seen.push((db_bytes.to_vec(), schemas.clone()));
        }
        Ok(schemas)
    }

    /// The schemas already read from exactly these schema store bytes in this run.
    pub(crate) fn seen(db_bytes: &[u8]) -> Option<Schemas> {
        let seen = SEEN.lock().ok()?;
        seen.iter()
            .find(|(b, _)| b.as_slice() == db_bytes)
            .map(|(_, s)| s.clone())
    }

    fn read_store(db_bytes: &[u8]) -> Result<Schemas, ConfigStoreError> {
        let conn = open_copy(db_bytes)?;
        let table = "ConfigSchema";
        let has_table: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
                [table],
                |r| r.get(0),
            )
            .map_err(sql_err("schema store: list tables"))?;
        if has_table == 0 {
            return Err(ConfigStoreError::SchemaStore {
                message: format!("{MEMBER} has no table {table}"),
            });
        }
        let mut vib_ids: Vec<String> = Vec::new();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT VibId, Value FROM {} WHERE Component = ?1 AND ConfigGroup = ?2 AND Name = ?3",
                quote(table)
            ))
            .map_err(sql_err("schema store: prepare"))?;
        let mut schemas = Vec::new();
        let mut differences = BTreeMap::new();
        for key in KNOWN {
            let row: Option<(Option<String>, Option<String>)> = stmt
                .query_map([key.component, key.group, key.name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(sql_err("schema store: read a schema"))?
                .into_iter()
                .next();
            let known = built_in(key);
            let schema = match row {
                Some((vib_id, Some(text))) => {
                    vib_ids.extend(vib_id.clone());
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| ConfigStoreError::SchemaStore {
                            message: format!("the schema of {key} is not JSON: {e}"),
                        })?;
                    Schema {
                        key,
                        source: SchemaSource::Host { vib_id },
                        value,
                    }
                }
                _ => {
                    differences.insert(
                        key,
                        vec![format!(
                            "the host's schema store has no schema for {key}; read with {}",
                            known.source
                        )],
                    );
                    schemas.push(known);
                    continue;
                }
            };
            let d = schema.differences(&known);
            if !d.is_empty() {
                differences.insert(key, d);
            }
            schemas.push(schema);
        }
        vib_ids.sort();
        vib_ids.dedup();
        Ok(Schemas {
            schemas,
            host_store: true,
            vib_ids,
            differences,
        })
    }

    /// The schema of one of the [`KNOWN`] keys.
    pub fn get(&self, key: Key) -> &Schema {
        self.schemas
            .iter()
            .find(|s| s.key == key)
            .expect("every known key has a schema")
    }

    /// The build of the host that wrote the schema store, from its `esx-base` VIB id
    /// (`esx-base-7.0.2_0.0.17867351-schema` -> `7.0.2-0.0.17867351`).
    pub fn esx_base_build(&self) -> Option<String> {
        self.vib_ids.iter().find_map(|v| {
            let rest = v.strip_prefix("esx-base-")?;
            let rest = rest.strip_suffix("-schema").unwrap_or(rest);
            Some(rest.replacen('_', "-", 1))
        })
    }
}

/// Schemas read in this run, by the exact bytes of their schema store.
static SEEN: std::sync::Mutex<Vec<(Vec<u8>, Schemas)>> = std::sync::Mutex::new(Vec::new());

/// A private, read-only in-memory copy of the schema store.
///
/// Unlike the ConfigStore it is not checked with `PRAGMA integrity_check`: bootbank reads two
/// rows of it through the primary-key index, so SQLite meets only the pages on that path and
/// reports any damage there as an error; a schema damaged into other JSON differs from the
/// built-in copy and refuses every edit. A full check would read all 434 KB of the real store on
/// every run, a millisecond of inspect's budget on a 7.0U2 host.
fn open_copy(db_bytes: &[u8]) -> Result<Connection, ConfigStoreError> {
    if db_bytes.len() < 100 || &db_bytes[..16] != super::SQLITE_MAGIC {
        return Err(ConfigStoreError::SchemaStore {
            message: format!(
                "{MEMBER} is not an SQLite database ({} bytes, first bytes {:02x?})",
                db_bytes.len(),
                &db_bytes[..db_bytes.len().min(16)]
            ),
        });
    }
    super::private_copy(db_bytes, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_pci_devices_schema_reads_as_the_reference_says() {
        let s = built_in(PCI_DEVICES);
        assert!(s.is_array());
        assert_eq!(s.instance_id(), Some("sbdf"));
        assert!(!s.additional_properties());
        let owner = s.field("owner").unwrap();
        assert!(!owner.vital);
        assert_eq!(
            owner.enum_values.as_deref(),
            Some(&["OWNER_PASSTHRU".to_string(), "OWNER_VMKERNEL".to_string()][..])
        );
        assert!(s.field("dl_bus_address").unwrap().vital);
        let sbdf = s.field("sbdf").unwrap();
        assert!(sbdf.instance_id && !sbdf.store_specific);
        assert_eq!(
            s.defaults().get("owner").and_then(Value::as_str),
            Some("OWNER_VMKERNEL")
        );
    }

    #[test]
    fn built_in_device_data_is_vital_with_a_store_specific_id() {
        let s = built_in(DEVICE_DATA);
        assert_eq!(s.instance_id(), Some("cs_generated_id"));
        let fields = s.fields();
        assert!(
            fields.values().all(|f| f.vital),
            "items are vital as a whole"
        );
        assert!(fields["cs_generated_id"].store_specific);
        assert!(s.defaults().is_empty());
    }

    #[test]
    fn differences_name_the_pointer_and_both_values() {
        let a = built_in(PCI_DEVICES);
        let mut b = a.clone();
        b.value["items"]["properties"]["owner"]["enum"] =
            serde_json::json!(["OWNER_PASSTHRU", "OWNER_VMKERNEL", "OWNER_OTHER"]);
        b.value["new"] = serde_json::json!(1);
        let d = b.differences(&a);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("/items/properties/owner/enum: "), "{d:?}");
        assert!(d[1].starts_with("/new: 1"), "{d:?}");
        assert!(a.differences(&a.clone()).is_empty());
    }
}
