//! The ConfigStore changes bootbank makes, each one field of one record, with SQLite's own
//! `UPDATE`, so that the store's triggers maintain `ModifiedTime` and `Revision` as they do when
//! ESXi edits a record:
//! - [`ConfigStore::set_owner`]: a device's `owner` from `OWNER_PASSTHRU` to `OWNER_VMKERNEL`
//!   (`fix`);
//! - [`ConfigStore::set_password_hash`]: a user's `password_hash` (`passwd`), only where the
//!   record already holds one;
//! - [`ConfigStore::clear_lockdown_mode`] (in `lockdown.rs`, through the same checks and
//!   UPDATE): lockdown's `mode` taken out of the column that sets it (`lockdown --disable`).
//!
//! Before anything changes, the edit is checked against the host's schema: the host's schema
//! of the key is the one bootbank knows, the record merges cleanly and obeys it, the field
//! exists, is not vital, and the new value is one the schema allows. After the UPDATE, the whole
//! database is compared row by row with the original: only that row may differ, and in it only
//! the column(s) holding the field, `ModifiedTime` and `Revision`.

use super::json_span::{remove_member, replace_token};
use super::schema::{Key, PCI_DEVICES, USER_ACCOUNTS};
use super::{
    ConfigStore, ConfigStoreError, Ownership, PciDeviceRecord, StoredValue, integrity_check,
    private_copy, quote, sql_err,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, MAIN_DB};
use std::collections::BTreeMap;

/// The triggers of the real 7.0.2 host's `Config` table, whitespace collapsed. An UPDATE runs
/// the table's triggers; bootbank runs only these, whose effect it knows.
const KNOWN_TRIGGERS: [(&str, &str); 2] = [
    (
        "updateModifiedTime",
        "CREATE TRIGGER updateModifiedTime AFTER UPDATE ON Config BEGIN UPDATE Config SET ModifiedTime=(datetime(CURRENT_TIMESTAMP)) WHERE Name=NEW.Name and Component=NEW.Component and ConfigGroup=New.ConfigGroup and Identifier=NEW.Identifier; END",
    ),
    (
        "updateRevision",
        "CREATE TRIGGER updateRevision AFTER UPDATE OF AutoConfValue,UserValue,VitalValue,CachedValue ON Config BEGIN UPDATE Config SET Revision=OLD.Revision + 1 WHERE Name=NEW.Name and Component=NEW.Component and ConfigGroup=New.ConfigGroup and Identifier=NEW.Identifier; END",
    ),
];

/// Columns the triggers maintain: they may change in the edited row.
const TRIGGER_COLUMNS: [&str; 2] = ["ModifiedTime", "Revision"];

/// Why [`ConfigStore::set_owner`] changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditRefusal {
    #[error("no {key} record with rowid {rowid}")]
    NoRecord { key: String, rowid: i64 },
    /// The record exists but no value column sets the field: where ESXi keeps it for this
    /// record is not known, so bootbank adds nothing.
    #[error(
        "record {identifier} of {key} has no `{field}` in any value column: bootbank does not add fields ESXi has not written"
    )]
    NoField {
        key: String,
        identifier: String,
        field: String,
    },
    #[error(
        "the host's schema of {key} differs from the one bootbank knows, so bootbank cannot tell what its change would mean: {}",
        .differences.join("; ")
    )]
    SchemaDiffers {
        key: String,
        differences: Vec<String>,
    },
    #[error("record {identifier} cannot be read as ESXi reads it: {}", .problems.join("; "))]
    RecordProblems {
        identifier: String,
        problems: Vec<String>,
    },
    #[error("the schema of {key} {why}")]
    Schema { key: String, why: String },
    #[error("record {identifier} already has owner {value}")]
    AlreadySet { identifier: String, value: String },
    #[error("record {identifier}: `owner` sits in {column}, where bootbank does not edit it")]
    Column { identifier: String, column: String },
    #[error("record {identifier}: {column} is stored as {kind}, not text")]
    NotText {
        identifier: String,
        column: String,
        kind: String,
    },
    #[error(
        "table `Config` has triggers bootbank does not know ({}): an UPDATE would run them",
        .names.join(", ")
    )]
    UnknownTriggers { names: Vec<String> },
    /// The field is set by no value column (only the schema's default, or nothing).
    #[error("{key} sets no `{field}`: nothing to take out")]
    NotSet { key: String, field: String },
    /// A single-record key with several records: which one ESXi reads is not known.
    #[error("{key} has {count} records where ESXi keeps one: which one it reads is not known")]
    Several { key: String, count: usize },
    #[error("the UPDATE changed {0} rows, not 1")]
    RowCount(usize),
    #[error("after the UPDATE {0}")]
    ReadBack(String),
}

/// What [`ConfigStore::set_owner`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerEdit {
    /// The whole new database.
    pub bytes: Vec<u8>,
    pub identifier: String,
    pub rowid: i64,
    /// Per changed value column: its JSON text before and after.
    pub columns: Vec<ColumnChange>,
    /// The trigger-maintained columns before and after.
    pub modified_time: (Option<String>, Option<String>),
    pub revision: (Option<i64>, Option<i64>),
    /// The store read from the new bytes.
    pub after: Box<ConfigStore>,
}

/// What [`ConfigStore::set_password_hash`] changed. Holds no hash text: the plan shows which
/// columns changed, never their values.
#[derive(Debug, Clone, PartialEq)]
pub struct HashEdit {
    /// The whole new database.
    pub bytes: Vec<u8>,
    pub identifier: String,
    pub rowid: i64,
    /// The value columns whose `password_hash` changed.
    pub columns: Vec<String>,
    /// Whether a column's JSON text had to be re-serialised (key order and spacing may differ).
    pub reserialised: bool,
    pub modified_time: (Option<String>, Option<String>),
    pub revision: (Option<i64>, Option<i64>),
    /// The store read from the new bytes.
    pub after: Box<ConfigStore>,
}

/// One value column's text before and after an edit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnChange {
    pub column: String,
    pub old_text: String,
    pub new_text: String,
    /// The text was re-serialised (key order and spacing may differ) because the value token
    /// could not be replaced in place.
    pub reserialised: bool,
}

fn collapse(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ConfigStore {
    /// Sets the `owner` of the pci_devices record in row `rowid` to `new`, in a private
    /// in-memory copy of the database, and returns the new database (see the module comment for
    /// every check made before and after). Every value column that sets `owner` gets the new
    /// value, in one UPDATE; only the value token changes in each column's JSON text.
    pub fn set_owner(&self, rowid: i64, new: Ownership) -> Result<OwnerEdit, ConfigStoreError> {
        let key = PCI_DEVICES.to_string();
        let rec: &PciDeviceRecord = self
            .pci_devices
            .iter()
            .find(|r| r.record.rowid == Some(rowid))
            .ok_or_else(|| EditRefusal::NoRecord {
                key: key.clone(),
                rowid,
            })?;
        let id = rec.identifier.clone();
        self.schema_known(PCI_DEVICES)?;
        if !rec.record.problems.is_empty() {
            return Err(EditRefusal::RecordProblems {
                identifier: id,
                problems: rec.record.problems.clone(),
            }
            .into());
        }
        let schema = self.schemas.get(PCI_DEVICES);
        let refuse_schema = |why: String| EditRefusal::Schema {
            key: key.clone(),
            why,
        };
        let field = schema
            .field("owner")
            .ok_or_else(|| refuse_schema("has no field `owner`".into()))?;
        if field.vital {
            return Err(refuse_schema("marks `owner` vital".into()).into());
        }
        let value = new.store_value();
        if !field
            .enum_values
            .as_ref()
            .is_some_and(|e| e.iter().any(|v| v == value))
        {
            return Err(refuse_schema(format!("does not allow `owner` = {value}")).into());
        }
        if rec.owner_raw.as_deref() == Some(value) {
            return Err(EditRefusal::AlreadySet {
                identifier: id,
                value: value.to_string(),
            }
            .into());
        }
        if rec.owner_columns.is_empty() {
            // Only the schema default sets it, and the default is not `new`: nothing bootbank
            // knows how to change.
            return Err(refuse_schema(format!(
                "gives `owner` the default {}, and no column of record {id} sets it",
                rec.owner_raw.as_deref().unwrap_or("?")
            ))
            .into());
        }
        self.check_triggers()?;
        let mut changes = Vec::new();
        for column in &rec.owner_columns {
            changes.push(self.column_edit(&rec.record, &id, column, "owner", Some(value))?);
        }
        let (bytes, columns) = self.update_field(rowid, &id, "/owner", &changes)?;
        let store = ConfigStore::open(&bytes, self.schemas.clone())?;
        let got = store
            .pci_devices
            .iter()
            .find(|r| r.record.rowid == Some(rowid));
        if got.and_then(|r| r.owner) != Some(new)
            || got.is_some_and(|r| !r.record.problems.is_empty())
        {
            return Err(EditRefusal::ReadBack(format!(
                "record {id} does not read back as {value}"
            ))
            .into());
        }
        if !self.others_unchanged(&store, Edited::PciDevice(rowid)) {
            return Err(
                EditRefusal::ReadBack("other records read back differently".to_string()).into(),
            );
        }
        let got = got.expect("checked above");
        Ok(OwnerEdit {
            bytes,
            identifier: id,
            rowid,
            columns,
            modified_time: (
                rec.record.modified_time.clone(),
                got.record.modified_time.clone(),
            ),
            revision: (rec.record.revision, got.record.revision),
            after: Box::new(store),
        })
    }

    /// Whether every record bootbank reads, other than the edited one, reads back from `after`
    /// exactly as from `self`.
    pub(super) fn others_unchanged(&self, after: &ConfigStore, edited: Edited) -> bool {
        fn except<T: Clone + PartialEq>(
            v: &[T],
            rowid: Option<i64>,
            id: impl Fn(&T) -> Option<i64>,
        ) -> Vec<T> {
            v.iter()
                .filter(|r| rowid.is_none() || id(r) != rowid)
                .cloned()
                .collect()
        }
        let (pci, user, lockdown) = match edited {
            Edited::PciDevice(r) => (Some(r), None, None),
            Edited::UserAccount(r) => (None, Some(r), None),
            Edited::Lockdown(r) => (None, None, Some(r)),
        };
        let pci_id = |r: &PciDeviceRecord| r.record.rowid;
        let user_id = |r: &super::UserAccount| r.record.rowid;
        let rec_id = |r: &super::Record| r.rowid;
        except(&after.pci_devices, pci, pci_id) == except(&self.pci_devices, pci, pci_id)
            && except(&after.user_accounts, user, user_id)
                == except(&self.user_accounts, user, user_id)
            && except(&after.lockdown_settings, lockdown, rec_id)
                == except(&self.lockdown_settings, lockdown, rec_id)
            && after.dcui_access == self.dcui_access
            && after.device_names == self.device_names
    }

    /// Refuses a table whose triggers are not the two bootbank knows: an UPDATE runs them all.
    pub(super) fn check_triggers(&self) -> Result<(), ConfigStoreError> {
        let unknown: Vec<String> = self
            .triggers
            .iter()
            .filter(|t| {
                !KNOWN_TRIGGERS
                    .iter()
                    .any(|(n, sql)| *n == t.name && collapse(sql) == collapse(&t.sql))
            })
            .map(|t| t.name.clone())
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(EditRefusal::UnknownTriggers { names: unknown }.into())
        }
    }

    /// The new JSON object of one value column that sets `field` (never VitalValue): the old
    /// value of the field and the whole object wanted (`value` None: the field taken out).
    pub(super) fn column_edit(
        &self,
        record: &super::Record,
        id: &str,
        column: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<(String, serde_json::Value, serde_json::Value), ConfigStoreError> {
        if column == "VitalValue" {
            return Err(EditRefusal::Column {
                identifier: id.to_string(),
                column: column.to_string(),
            }
            .into());
        }
        let Some(StoredValue::Json(old_json)) = record.columns.get(column) else {
            return Err(EditRefusal::NotText {
                identifier: id.to_string(),
                column: column.to_string(),
                kind: "something other than JSON text".into(),
            }
            .into());
        };
        let old_value = old_json.get(field).cloned().unwrap_or_default();
        let mut want = old_json.clone();
        match value {
            Some(v) => want[field] = serde_json::Value::String(v.to_string()),
            None => {
                if let Some(obj) = want.as_object_mut() {
                    obj.remove(field);
                }
            }
        }
        Ok((column.to_string(), old_value, want))
    }

    /// Sets one top-level field (`pointer`, e.g. `/owner`) in the given value columns of row
    /// `rowid` with one UPDATE on a private copy (or takes it out, where the object wanted has
    /// no such field), runs the integrity check and the row-by-row comparison, and returns the
    /// new database bytes (WAL flags as the original had them) and each column's text before
    /// and after.
    pub(super) fn update_field(
        &self,
        rowid: i64,
        id: &str,
        pointer: &str,
        changes: &[(String, serde_json::Value, serde_json::Value)],
    ) -> Result<(Vec<u8>, Vec<ColumnChange>), ConfigStoreError> {
        let field = pointer.trim_start_matches('/');
        let mut conn = private_copy(&self.image, true)?;
        let before = dump(&conn)?;
        let table = quote(&self.table);
        let mut columns = Vec::new();
        for (column, old_value, want) in changes {
            let col = quote(column);
            let (kind, old_text): (String, Option<String>) = conn
                .query_row(
                    &format!(
                        "SELECT typeof({col}), CAST({col} AS TEXT) FROM {table} WHERE rowid = ?1"
                    ),
                    [rowid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql_err("read the record"))?;
            let old_text = match (kind.as_str(), old_text) {
                ("text", Some(t)) => t,
                _ => {
                    return Err(EditRefusal::NotText {
                        identifier: id.to_string(),
                        column: column.clone(),
                        kind,
                    }
                    .into());
                }
            };
            let edited = match want.get(field) {
                Some(new_value) => replace_token(&old_text, pointer, old_value, new_value, want),
                None => remove_member(&old_text, field, want),
            };
            let (new_text, reserialised) = match edited {
                Some(t) => (t, false),
                None => (want.to_string(), true),
            };
            columns.push(ColumnChange {
                column: column.clone(),
                old_text,
                new_text,
                reserialised,
            });
        }
        let set = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", quote(&c.column), i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&rowid];
        params.extend(columns.iter().map(|c| &c.new_text as &dyn rusqlite::ToSql));
        let n = conn
            .execute(
                &format!("UPDATE {table} SET {set} WHERE rowid = ?1"),
                params.as_slice(),
            )
            .map_err(sql_err("update the record"))?;
        if n != 1 {
            return Err(EditRefusal::RowCount(n).into());
        }
        integrity_check(&conn, super::SQLITE_MAGIC)?;
        let after = dump(&conn)?;
        let allowed: Vec<&str> = columns
            .iter()
            .map(|c| c.column.as_str())
            .chain(TRIGGER_COLUMNS)
            .collect();
        only_row_changed(&before, &after, &self.table, rowid, &allowed)
            .map_err(|e| EditRefusal::ReadBack(e.to_string()))?;

        let mut bytes = conn
            .serialize(MAIN_DB)
            .map_err(sql_err("serialize the database"))?
            .to_vec();
        if self.wal_header && bytes.len() > 19 {
            bytes[18] = self.image[18];
            bytes[19] = self.image[19];
        }
        Ok((bytes, columns))
    }

    /// Refuses an edit of `key` when the host's schema of it differs from the one bootbank knows.
    pub(super) fn schema_known(&self, key: Key) -> Result<(), ConfigStoreError> {
        match self.schemas.differences.get(&key) {
            Some(d) => Err(EditRefusal::SchemaDiffers {
                key: key.to_string(),
                differences: d.clone(),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Sets the `password_hash` of the user_accounts record in row `rowid` to `hash` (a `$6$`
    /// hash in ESXi's form, [`crate::esxi::shadow::is_esxi_hash`]), in every value column that
    /// already sets it, with the checks of the module comment. A record without a
    /// `password_hash` is refused: bootbank never adds a field ESXi has not written there.
    ///
    /// Evidence: the host's own 7.0.2 schema of `esx/authentication/user_accounts` lists
    /// `password_hash` (type string, not vital, pattern `^[$][6][$][a-zA-Z0-9/.]+[$][a-zA-Z0-9/.]+[$]?`).
    /// No real record with a hash is public (the real 7.0.2 host has no row): which column ESXi
    /// puts it in is read from the record itself, never assumed.
    pub fn set_password_hash(&self, rowid: i64, hash: &str) -> Result<HashEdit, ConfigStoreError> {
        let key = USER_ACCOUNTS.to_string();
        let rec = self
            .user_accounts
            .iter()
            .find(|r| r.record.rowid == Some(rowid))
            .ok_or_else(|| EditRefusal::NoRecord {
                key: key.clone(),
                rowid,
            })?;
        let id = rec.identifier.clone();
        self.schema_known(USER_ACCOUNTS)?;
        if !rec.problems.is_empty() {
            return Err(EditRefusal::RecordProblems {
                identifier: id,
                problems: rec.problems.clone(),
            }
            .into());
        }
        let refuse_schema = |why: String| EditRefusal::Schema {
            key: key.clone(),
            why,
        };
        let schema = self.schemas.get(USER_ACCOUNTS);
        let field = schema
            .field("password_hash")
            .ok_or_else(|| refuse_schema("has no field `password_hash`".into()))?;
        if field.vital {
            return Err(refuse_schema("marks `password_hash` vital".into()).into());
        }
        if field.ty.as_deref() != Some("string") {
            return Err(refuse_schema(format!(
                "gives `password_hash` the type {}",
                field.ty.as_deref().unwrap_or("none")
            ))
            .into());
        }
        // The schema equals the built-in one (checked above), whose pattern is the `$6$` form
        // that is_esxi_hash checks (a narrower form: 1-16 salt characters, 86 digest ones).
        if !crate::esxi::shadow::is_esxi_hash(hash) {
            return Err(refuse_schema("does not allow this `password_hash`".into()).into());
        }
        if rec.hash_columns.is_empty() {
            return Err(EditRefusal::NoField {
                key,
                identifier: id,
                field: "password_hash".into(),
            }
            .into());
        }
        self.check_triggers()?;
        let mut changes = Vec::new();
        for column in &rec.hash_columns {
            changes.push(self.column_edit(
                &rec.record,
                &id,
                column,
                "password_hash",
                Some(hash),
            )?);
        }
        let (bytes, columns) = self.update_field(rowid, &id, "/password_hash", &changes)?;
        let store = ConfigStore::open(&bytes, self.schemas.clone())?;
        let got = store
            .user_accounts
            .iter()
            .find(|r| r.record.rowid == Some(rowid));
        if got.and_then(|r| r.record.str("password_hash")) != Some(hash)
            || got.is_some_and(|r| !r.problems.is_empty())
        {
            return Err(EditRefusal::ReadBack(format!(
                "record {id} does not read back with the new password_hash"
            ))
            .into());
        }
        if !self.others_unchanged(&store, Edited::UserAccount(rowid)) {
            return Err(
                EditRefusal::ReadBack("other records read back differently".to_string()).into(),
            );
        }
        let got = got.expect("checked above");
        Ok(HashEdit {
            bytes,
            identifier: id,
            rowid,
            reserialised: columns.iter().any(|c| c.reserialised),
            columns: columns.into_iter().map(|c| c.column).collect(),
            modified_time: (
                rec.record.modified_time.clone(),
                got.record.modified_time.clone(),
            ),
            revision: (rec.record.revision, got.record.revision),
            after: Box::new(store),
        })
    }
}

/// The record an edit changed: its table and rowid.
#[derive(Clone, Copy)]
pub(super) enum Edited {
    PciDevice(i64),
    UserAccount(i64),
    Lockdown(i64),
}

/// Every row of every table (by rowid) and every schema entry, for the before/after comparison.
pub(super) type Dump = BTreeMap<(String, i64), Vec<(String, SqlValue)>>;

pub(super) fn dump(conn: &Connection) -> Result<Dump, ConfigStoreError> {
    let mut out = Dump::new();
    let objects: Vec<(String, String, String, Option<String>)> = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql_err("list the schema"))?;
    for (i, (ty, name, tbl, sql)) in objects.iter().enumerate() {
        out.insert(
            ("sqlite_schema".to_string(), i as i64),
            vec![
                ("type".into(), SqlValue::Text(ty.clone())),
                ("name".into(), SqlValue::Text(name.clone())),
                ("tbl_name".into(), SqlValue::Text(tbl.clone())),
                (
                    "sql".into(),
                    sql.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null),
                ),
            ],
        );
    }
    for (ty, name, _, _) in &objects {
        if ty != "table" || name.starts_with("sqlite_") {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("SELECT rowid, * FROM {}", quote(name)))
            .map_err(sql_err("read a table"))?;
        let cols: Vec<String> = stmt.column_names().skip(1).map(|c| c.to_string()).collect();
        let rows = stmt
            .query_map([], |r| {
                let rowid: i64 = r.get(0)?;
                let mut v = Vec::with_capacity(cols.len());
                for (i, c) in cols.iter().enumerate() {
                    v.push((c.clone(), r.get::<_, SqlValue>(i + 1)?));
                }
                Ok((rowid, v))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err("read a table"))?;
        for (rowid, v) in rows {
            out.insert((name.clone(), rowid), v);
        }
    }
    Ok(out)
}

/// What changed in the database beyond what an edit asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unasked {
    #[error("column {0} of the edited row changed, which bootbank did not ask for")]
    Column(String),
    #[error("row {rowid} of table {table} changed, which bootbank did not ask for")]
    Row { table: String, rowid: i64 },
}

/// Ok when `after` equals `before` except in row `rowid` of `table`, and there only in the
/// `allowed` columns.
pub(super) fn only_row_changed(
    before: &Dump,
    after: &Dump,
    table: &str,
    rowid: i64,
    allowed: &[&str],
) -> Result<(), Unasked> {
    let keys: Vec<&(String, i64)> = before.keys().chain(after.keys()).collect();
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        if b == a {
            continue;
        }
        let target = k.0 == table && k.1 == rowid;
        match (b, a) {
            (Some(b), Some(a)) if target => {
                for ((cb, vb), (ca, va)) in b.iter().zip(a) {
                    if cb != ca || (vb != va && !allowed.iter().any(|x| x.eq_ignore_ascii_case(cb)))
                    {
                        return Err(Unasked::Column(cb.clone()));
                    }
                }
            }
            _ => {
                return Err(Unasked::Row {
                    table: k.0.clone(),
                    rowid: k.1,
                });
            }
        }
    }
    Ok(())
}
