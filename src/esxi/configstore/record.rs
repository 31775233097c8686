//! One ConfigStore record read as ESXi reads it: the merge of its value columns, with the
//! schema's defaults for what no column sets (reference section 7).
//!
//! The real 7.0.2 host splits every record over its value columns, each a JSON object: vital
//! fields in `VitalValue`, what the user set in `UserValue`, runtime state in `CachedValue`
//! (vmk0: `device`, `ip`, `port_group` in UserValue, `mac` in VitalValue, the DHCP lease in
//! CachedValue). Each column repeats the instance-id field, except a store-specific one
//! (`cs_generated_id`), which lives in the Identifier column only. No public source says which
//! column wins when two of them set the same field differently; such a record is reported as
//! conflicting and its field is not given a value, never guessed at.

use super::StoredValue;
use super::schema::Schema;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Where a merged field's value came from.
pub const DEFAULT: &str = "default";

/// The value columns in the order the table declares them on the real host. The order only
/// decides the order of reporting: a field set by two columns to different values is a conflict
/// whatever the order.
pub const VALUE_COLUMNS: [&str; 5] = [
    "AutoConfValue",
    "UserValue",
    "VitalValue",
    "CachedValue",
    "DesiredValue",
];

/// One row of the `Config` table, merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The row's Identifier, as stored (the instance id; empty for a single-record key).
    pub identifier: String,
    /// SQLite's rowid, so that an edit updates exactly this row.
    pub rowid: Option<i64>,
    /// Every non-NULL value column, as stored.
    pub columns: BTreeMap<String, StoredValue>,
    /// `ModifiedTime` and `Revision`, which the store's triggers maintain.
    pub modified_time: Option<String>,
    pub revision: Option<i64>,
    /// The `Version` column (the schema's `configVersion` when ESXi wrote the row).
    pub version: Option<String>,
    /// The effective record: every column's fields, then the schema's defaults.
    pub merged: Map<String, Value>,
    /// Per merged field: the column that set it, or [`DEFAULT`].
    pub sources: BTreeMap<String, String>,
    /// Per field set by more than one column: every column that sets it.
    pub set_in: BTreeMap<String, Vec<String>>,
    /// Why the record cannot be read as ESXi reads it, or breaks its schema: a column that is
    /// not a JSON object, columns that disagree on a field, an instance id that is not the
    /// Identifier, a field or value the schema does not allow. Empty for a sound record.
    pub problems: Vec<String>,
}

impl Record {
    /// Merges a row's value columns through `schema`.
    pub fn merge(
        identifier: String,
        rowid: Option<i64>,
        columns: BTreeMap<String, StoredValue>,
        other: &BTreeMap<String, StoredValue>,
        schema: &Schema,
    ) -> Record {
        let mut problems = Vec::new();
        let mut merged = Map::new();
        let mut sources = BTreeMap::new();
        let mut set_in: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut conflicts: Vec<String> = Vec::new();
        let fields = schema.fields();
        let id_field = schema.instance_id();
        let id_store_specific = id_field
            .and_then(|f| fields.get(f))
            .is_some_and(|f| f.store_specific);
        let ordered = VALUE_COLUMNS.iter().map(|c| c.to_string()).chain(
            columns
                .keys()
                .filter(|c| !VALUE_COLUMNS.contains(&c.as_str()))
                .cloned(),
        );
        for col in ordered {
            let Some(stored) = columns.get(&col) else {
                continue;
            };
            let Some(Value::Object(obj)) = stored.json() else {
                problems.push(format!("{col} is {}, not a JSON object", describe(stored)));
                continue;
            };
            if let Some(id) = id_field {
                match obj.get(id) {
                    Some(Value::String(v)) if *v == identifier => {}
                    Some(v) => problems.push(format!(
                        "{col}: instance id `{id}` is {v}, but the row's Identifier is \"{identifier}\""
                    )),
                    None if id_store_specific => {}
                    None => problems.push(format!(
                        "{col} does not repeat the instance id `{id}` (every column of the real 7.0.2 host does)"
                    )),
                }
            }
            for (name, v) in obj {
                if Some(name.as_str()) == id_field {
                    merged.entry(name.clone()).or_insert_with(|| v.clone());
                    continue;
                }
                set_in.entry(name.clone()).or_default().push(col.clone());
                let node = fields_schema(schema).and_then(|p| p.get(name));
                match merged.get_mut(name) {
                    None => {
                        merged.insert(name.clone(), v.clone());
                        sources.insert(name.clone(), col.clone());
                    }
                    Some(prev) => {
                        let prev_col = sources.get(name).cloned().unwrap_or_default();
                        let mut clash = Vec::new();
                        let winner = deep_merge(prev, v, node, &prev_col, &col, name, &mut clash);
                        if winner {
                            sources.insert(name.clone(), col.clone());
                        }
                        if !clash.is_empty() {
                            problems.extend(clash);
                            conflicts.push(name.clone());
                        }
                    }
                }
                if let Some(f) = fields.get(name) {
                    let in_vital = col == "VitalValue";
                    let scalar = !(v.is_object() || v.is_array());
                    if f.vital && !in_vital {
                        problems.push(format!(
                            "{col}: field `{name}` is vital in the schema, so it belongs in VitalValue"
                        ));
                    } else if !f.vital && in_vital && scalar {
                        problems.push(format!(
                            "VitalValue: field `{name}` is not vital in the schema"
                        ));
                    }
                }
            }
        }
        for name in &conflicts {
            merged.remove(name);
            sources.remove(name);
        }
        set_in.retain(|_, cols| cols.len() > 1);
        if id_store_specific && let Some(id) = id_field {
            merged
                .entry(id.to_string())
                .or_insert_with(|| Value::String(identifier.clone()));
        }
        for (name, v) in schema.defaults() {
            if conflicts.contains(&name) {
                continue;
            }
            let node = fields_schema(schema).and_then(|p| p.get(&name));
            let array = node.and_then(|n| n.get("type")).and_then(Value::as_str) == Some("array");
            match merged.get_mut(&name) {
                // An object default of an array field is each item's default (7.0.2's iSCSI
                // `targets: {"port": 3260}`), not a value: no items, nothing to fill.
                None if array && v.is_object() => {}
                None => {
                    merged.insert(name.clone(), v);
                    sources.insert(name, DEFAULT.to_string());
                }
                Some(have) => fill_defaults(have, &v, array),
            }
        }
        problems.extend(schema_problems(&merged, schema));
        let text = |name: &str| match other.get(name) {
            Some(StoredValue::Text(t)) => Some(t.clone()),
            Some(StoredValue::Json(v)) => Some(v.to_string()),
            Some(StoredValue::Integer(n)) => Some(n.to_string()),
            _ => None,
        };
        Record {
            identifier,
            rowid,
            modified_time: text("ModifiedTime"),
            revision: match other.get("Revision") {
                Some(StoredValue::Integer(n)) => Some(*n),
                _ => None,
            },
            version: text("Version"),
            columns,
            merged,
            sources,
            set_in,
            problems,
        }
    }

    /// A merged string field.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.merged.get(name).and_then(Value::as_str)
    }

    /// The value columns that set `name` (none when only the default does).
    pub fn columns_setting(&self, name: &str) -> Vec<String> {
        match self.set_in.get(name) {
            Some(cols) => cols.clone(),
            None => match self.sources.get(name) {
                Some(c) if c != DEFAULT => vec![c.clone()],
                _ => Vec::new(),
            },
        }
    }
}

/// The record's field schemas (`items.properties` of an array key, `properties` otherwise).
fn fields_schema(schema: &Schema) -> Option<&Map<String, Value>> {
    let rec = if schema.is_array() {
        schema.value.get("items")?
    } else {
        &schema.value
    };
    rec.get("properties")?.as_object()
}

/// Which of two value columns wins where both set one scalar differently: Some(true) when
/// `later` does. The only pair with evidence is UserValue over AutoConfValue: AutoConfValue is
/// what ESXi configures by itself, UserValue what the user set, and the real 7.0.2 host has one
/// record holding both (firewall rule set `trusted-infrastructure-kmxa`: AutoConfValue
/// `enabled: true`, UserValue `enabled: false`, a rule set the user turned off). Not verified on
/// a running host; every other pair is unknown.
fn wins(later: &str, earlier: &str) -> Option<bool> {
    match (later, earlier) {
        ("UserValue", "AutoConfValue") => Some(true),
        ("AutoConfValue", "UserValue") => Some(false),
        _ => None,
    }
}

/// Merges `src` (from column `src_col`) into `dst` (so far from `dst_col`) as the real host's
/// records are split: objects field by field (vSwitch0's `policy` has its user settings in
/// UserValue and `nic_teaming.override_max_active` in VitalValue), arrays whose schema names an
/// `instanceId` item by item (its `port_groups`, by `name`), equal values as one. A scalar set
/// differently is decided by [`wins`], or else reported in `clash`. Returns whether `src_col`'s
/// value replaced `dst` as a whole.
fn deep_merge(
    dst: &mut Value,
    src: &Value,
    node: Option<&Value>,
    dst_col: &str,
    src_col: &str,
    path: &str,
    clash: &mut Vec<String>,
) -> bool {
    if dst == src {
        return false;
    }
    match (&mut *dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            let props = node.and_then(|n| n.get("properties"));
            for (k, v) in s {
                match d.get_mut(k) {
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                    Some(dv) => {
                        deep_merge(
                            dv,
                            v,
                            props.and_then(|p| p.get(k)),
                            dst_col,
                            src_col,
                            &format!("{path}.{k}"),
                            clash,
                        );
                    }
                }
            }
            false
        }
        (Value::Array(d), Value::Array(s))
            if node
                .and_then(|n| n.get("instanceId"))
                .is_some_and(Value::is_string) =>
        {
            let id = node
                .and_then(|n| n.get("instanceId"))
                .and_then(Value::as_str);
            let items = node.and_then(|n| n.get("items"));
            for v in s {
                let key = id.and_then(|id| v.get(id));
                match d
                    .iter_mut()
                    .find(|x| key.is_some() && id.and_then(|id| x.get(id)) == key)
                {
                    Some(dv) => {
                        deep_merge(dv, v, items, dst_col, src_col, path, clash);
                    }
                    None => d.push(v.clone()),
                }
            }
            false
        }
        _ => match wins(src_col, dst_col) {
            Some(true) => {
                *dst = src.clone();
                true
            }
            Some(false) => false,
            None => {
                clash.push(format!(
                    "field `{path}` is {dst} in {dst_col} but {src} in {src_col}: which column wins is not known, so the field has no value"
                ));
                false
            }
        },
    }
}

/// Fills what `have` lacks from `default`, field by field; for an array, in each item.
fn fill_defaults(have: &mut Value, default: &Value, array: bool) {
    match (have, default) {
        (Value::Array(items), Value::Object(_)) if array => {
            for item in items {
                fill_defaults(item, default, false);
            }
        }
        (Value::Object(h), Value::Object(d)) => {
            for (k, v) in d {
                match h.get_mut(k) {
                    None => {
                        h.insert(k.clone(), v.clone());
                    }
                    Some(x) => fill_defaults(x, v, x.is_array()),
                }
            }
        }
        _ => {}
    }
}

/// Where a merged record breaks its schema: fields it does not list (when it allows no others),
/// values of the wrong type or outside the enum, required fields missing.
fn schema_problems(merged: &Map<String, Value>, schema: &Schema) -> Vec<String> {
    let fields = schema.fields();
    let mut out = Vec::new();
    for (name, v) in merged {
        let Some(f) = fields.get(name) else {
            if !schema.additional_properties() {
                out.push(format!(
                    "field `{name}` is not in the schema of {} ({})",
                    schema.key, schema.source
                ));
            }
            continue;
        };
        let type_ok = match f.ty.as_deref() {
            Some("string" | "ID") => v.is_string(),
            Some("long" | "integer") => v.is_i64() || v.is_u64(),
            Some("boolean") => v.is_boolean(),
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            _ => true,
        };
        if !type_ok {
            out.push(format!(
                "field `{name}` is {v}, not of the schema's type {}",
                f.ty.as_deref().unwrap_or("?")
            ));
        }
        if let (Some(allowed), Some(s)) = (&f.enum_values, v.as_str())
            && !allowed.iter().any(|a| a == s)
        {
            out.push(format!(
                "field `{name}` is \"{s}\", not one of the schema's values ({})",
                allowed.join(", ")
            ));
        }
    }
    let required = if schema.is_array() {
        schema.value.pointer("/items/required")
    } else {
        schema.value.get("required")
    };
    for r in required
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !merged.contains_key(r) {
            out.push(format!("required field `{r}` is not set"));
        }
    }
    out
}

fn describe(value: &StoredValue) -> String {
    match value {
        StoredValue::Json(v) => format!("JSON {v}"),
        StoredValue::Text(_) => "text that is not JSON".to_string(),
        StoredValue::Integer(n) => format!("the integer {n}"),
        StoredValue::Real(r) => format!("the number {r}"),
        StoredValue::Blob(b) => format!("a {}-byte blob", b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{DEVICE_DATA, PCI_DEVICES, built_in};
    use super::*;

    fn cols(pairs: &[(&str, &str)]) -> BTreeMap<String, StoredValue> {
        pairs
            .iter()
            .map(|(c, t)| {
                (
                    c.to_string(),
                    StoredValue::Json(serde_json::from_str(t).unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn columns_merge_and_defaults_fill_the_rest() {
        let r = Record::merge(
            "0000:16:00.0".into(),
            Some(7),
            cols(&[
                (
                    "VitalValue",
                    r#"{"sbdf":"0000:16:00.0","dl_bus_address":"p0000:16:00.0"}"#,
                ),
                (
                    "UserValue",
                    r#"{"sbdf":"0000:16:00.0","owner":"OWNER_PASSTHRU"}"#,
                ),
            ]),
            &BTreeMap::new(),
            &built_in(PCI_DEVICES),
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.str("owner"), Some("OWNER_PASSTHRU"));
        assert_eq!(r.sources["owner"], "UserValue");
        assert_eq!(r.sources["dl_bus_address"], "VitalValue");
        // Without UserValue the default applies.
        let d = Record::merge(
            "0000:16:00.0".into(),
            None,
            cols(&[(
                "VitalValue",
                r#"{"sbdf":"0000:16:00.0","dl_bus_address":"x"}"#,
            )]),
            &BTreeMap::new(),
            &built_in(PCI_DEVICES),
        );
        assert_eq!(d.str("owner"), Some("OWNER_VMKERNEL"));
        assert_eq!(d.sources["owner"], DEFAULT);
        assert!(d.columns_setting("owner").is_empty());
    }

    #[test]
    fn disagreeing_columns_leave_the_field_without_a_value() {
        let r = Record::merge(
            "0000:16:00.0".into(),
            None,
            cols(&[
                (
                    "VitalValue",
                    r#"{"sbdf":"0000:16:00.0","dl_bus_address":"x"}"#,
                ),
                (
                    "UserValue",
                    r#"{"sbdf":"0000:16:00.0","owner":"OWNER_PASSTHRU"}"#,
                ),
                (
                    "DesiredValue",
                    r#"{"sbdf":"0000:16:00.0","owner":"OWNER_VMKERNEL"}"#,
                ),
            ]),
            &BTreeMap::new(),
            &built_in(PCI_DEVICES),
        );
        assert_eq!(r.str("owner"), None, "neither the columns nor the default");
        assert_eq!(r.columns_setting("owner"), ["UserValue", "DesiredValue"]);
        assert!(r.problems[0].contains("which column wins is not known"));
    }

    /// The rules the real 7.0.2 host's records show (see `deep_merge` and `wins`).
    #[test]
    fn deep_merge_rules_from_the_real_host() {
        // Objects field by field, arrays of records by their instanceId.
        let node = serde_json::json!({
            "type": "array", "instanceId": "name",
            "items": {"type": "object", "properties": {"name": {"type": "string"},
                      "policy": {"type": "object"}}}
        });
        let mut user = serde_json::json!([{"name": "Management Network", "vlan_id": 0,
            "policy": {"nic_teaming": {"active_nics": ["vmnic0"]}}}, {"name": "VM Network"}]);
        let vital = serde_json::json!([{"name": "Management Network",
            "policy": {"nic_teaming": {"override_max_active": true}}}]);
        let mut clash = Vec::new();
        deep_merge(
            &mut user,
            &vital,
            Some(&node),
            "UserValue",
            "VitalValue",
            "port_groups",
            &mut clash,
        );
        assert!(clash.is_empty(), "{clash:?}");
        assert_eq!(
            user[0]["policy"]["nic_teaming"],
            serde_json::json!({"active_nics": ["vmnic0"], "override_max_active": true})
        );
        assert_eq!(user.as_array().unwrap().len(), 2);
        // UserValue over AutoConfValue, whichever comes first; any other pair is a clash.
        for (a, ac, b, bc, want) in [
            (true, "AutoConfValue", false, "UserValue", Some(false)),
            (false, "UserValue", true, "AutoConfValue", Some(false)),
            (false, "UserValue", true, "DesiredValue", None),
        ] {
            let mut v = serde_json::json!(a);
            let mut clash = Vec::new();
            deep_merge(
                &mut v,
                &serde_json::json!(b),
                None,
                ac,
                bc,
                "enabled",
                &mut clash,
            );
            match want {
                Some(w) => assert_eq!((v, clash.len()), (serde_json::json!(w), 0)),
                None => assert_eq!(clash.len(), 1),
            }
        }
    }

    #[test]
    fn item_defaults_fill_each_item() {
        let mut have =
            serde_json::json!([{"address": "10.0.0.1"}, {"address": "10.0.0.2", "port": 3261}]);
        fill_defaults(&mut have, &serde_json::json!({"port": 3260}), true);
        assert_eq!(
            have,
            serde_json::json!([{"address": "10.0.0.1", "port": 3260}, {"address": "10.0.0.2", "port": 3261}])
        );
    }

    #[test]
    fn schema_breaches_are_problems() {
        let r = Record::merge(
            "0000:16:00.0".into(),
            None,
            cols(&[
                (
                    "VitalValue",
                    r#"{"sbdf":"0000:16:00.1","dl_bus_address":"x"}"#,
                ),
                (
                    "UserValue",
                    r#"{"sbdf":"0000:16:00.0","owner":"passthru","colour":1}"#,
                ),
            ]),
            &BTreeMap::new(),
            &built_in(PCI_DEVICES),
        );
        let all = r.problems.join("\n");
        assert!(all.contains("instance id `sbdf`"), "{all}");
        assert!(all.contains("not one of the schema's values"), "{all}");
        assert!(all.contains("`colour` is not in the schema"), "{all}");
    }

    #[test]
    fn store_specific_ids_are_not_repeated() {
        let r = Record::merge(
            "52 a8 1c 96 98 ba 5a f8-18 4f 73 14 8d 33 d1 55".into(),
            None,
            cols(&[(
                "VitalValue",
                r#"{"alias":"vmhba1","alias_pending":false,"bus_type":"pci","bus_address":"p0000:00:07.1"}"#,
            )]),
            &BTreeMap::new(),
            &built_in(DEVICE_DATA),
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.str("alias"), Some("vmhba1"));
    }
}
