//! Lockdown mode as a 7.0+ host keeps it: the ConfigStore's `esx/authorization/lockdown_settings`
//! record, and the DCUI access list (`esx/authorization/dcui_access`) that decides who can
//! still log in at the console.
//!
//! Evidence, all from the real 7.0.2 host's own schema store (`schema-store-1`, VIB
//! `esx-base-7.0.2_0.0.17867351-schema`):
//! - `lockdown_settings` is a single record (type object) with `mode` (string, enum `NORMAL` |
//!   `STRICT`, not required, not vital), `exception_users` (array of strings) and
//!   `removed_permissions` (vital: the permissions entering lockdown took away, the items of
//!   `esx/authorization/permissions`). Its `defaults` are `{}`: no mode. The enum has no
//!   "disabled" value, so a host that is not locked down is one whose record sets no `mode`
//!   (or that has no record at all, as the real 7.0.2 host: no lockdown row, root with an
//!   Admin permission row). vSphere's API names the same three states
//!   (`lockdownDisabled`, `lockdownNormal`, `lockdownStrict`, HostLockdownMode).
//! - `dcui_access` is a single record with `users` (array, at least one), default
//!   `{"users": ["root"]}` (the real host's DefaultConfig row says the same).
//!
//! Which value column ESXi puts `mode` in is read from the record itself, never assumed: no
//! real record with a mode is public. [`ConfigStore::clear_lockdown_mode`] takes `mode` out of
//! the column(s) that set it, through the same checks, UPDATE and row-by-row read-back as
//! every other ConfigStore edit (`edit.rs`). What it does not do: move `removed_permissions`
//! back into `esx/authorization/permissions` (hostd does that when lockdown is left through
//! the API; no evidence says how, so bootbank reports them and leaves them).

use super::edit::{ColumnChange, EditRefusal, Edited};
use super::record::{DEFAULT, Record};
use super::schema::{DCUI_ACCESS, LOCKDOWN_SETTINGS, SchemaSource};
use super::{ConfigStore, ConfigStoreError};
use serde::Serialize;
use serde_json::Value;

/// Lockdown mode as the configuration says the host boots with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lockdown {
    /// `esx/authorization/lockdown_settings`.
    pub key: String,
    /// How many records the key has (0 or 1 on a sound store).
    pub records: usize,
    /// The record's rowid, when there is exactly one.
    pub rowid: Option<i64>,
    /// The effective `mode` (`NORMAL`, `STRICT`, or whatever the record says); None: not locked
    /// down.
    pub mode: Option<String>,
    /// Where `mode` was read: the value columns that set it, or empty (no record, or a record
    /// without one: the schema gives no default).
    pub mode_columns: Vec<String>,
    /// The modes the host's schema allows.
    pub modes: Vec<String>,
    /// The users who keep their access in lockdown mode (`exception_users`; empty when the
    /// record has none).
    pub exception_users: Vec<String>,
    /// The permissions lockdown took away, kept in the record.
    pub removed_permissions: Vec<RemovedPermission>,
    /// Why the record cannot be read as ESXi reads it (see `Record::problems`), or an unknown
    /// mode.
    pub problems: Vec<String>,
    /// Which schema the record was read through: the host's own schema store, or the one
    /// bootbank carries when the host's has no entry for the key.
    pub schema: SchemaSource,
    /// Where the host's schema of the key differs from the one bootbank knows.
    pub schema_differences: Vec<String>,
    /// The record's `ModifiedTime` column as stored (the store's triggers set it on change).
    pub modified_time: Option<String>,
    /// The record's `Revision` column (the store's triggers count it up on change).
    pub revision: Option<i64>,
}

/// One item of `removed_permissions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedPermission {
    pub principal: Option<String>,
    pub is_group: Option<bool>,
    pub access_mode: Option<String>,
}

/// Who may log in at the DCUI whatever lockdown mode says (the `DCUI.Access` list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcuiAccess {
    /// The users allowed at the DCUI, in the record's order.
    pub users: Vec<String>,
    /// Read from a record (else the schema's default).
    pub from_record: bool,
    /// Why the record cannot be read as ESXi reads it, or that there is more than one.
    pub problems: Vec<String>,
}

/// What [`ConfigStore::clear_lockdown_mode`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct LockdownEdit {
    /// The whole new database.
    pub bytes: Vec<u8>,
    pub rowid: i64,
    /// The mode taken out.
    pub old_mode: String,
    pub columns: Vec<ColumnChange>,
    pub modified_time: (Option<String>, Option<String>),
    pub revision: (Option<i64>, Option<i64>),
    /// The store read from the new bytes.
    pub after: Box<ConfigStore>,
}

impl Lockdown {
    /// Whether the configuration boots locked down.
    pub fn is_on(&self) -> bool {
        self.mode.is_some()
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl ConfigStore {
    /// Lockdown mode as this store says the host boots with it: the one record merged through
    /// the host's schema, or the schema's defaults (no mode) when there is none.
    pub fn lockdown(&self) -> Lockdown {
        let schema = self.schemas.get(LOCKDOWN_SETTINGS);
        let modes = schema
            .field("mode")
            .and_then(|f| f.enum_values)
            .unwrap_or_default();
        let one = match self.lockdown_settings.as_slice() {
            [r] => Some(r),
            _ => None,
        };
        let mut problems = Vec::new();
        if self.lockdown_settings.len() > 1 {
            problems.push(format!(
                "{} records of a single-record key: which one ESXi reads is not known",
                self.lockdown_settings.len()
            ));
        }
        let merged = one
            .map(|r| r.merged.clone())
            .unwrap_or_else(|| schema.defaults());
        let mode = merged
            .get("mode")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(r) = one {
            problems.extend(r.problems.iter().cloned());
        }
        if let Some(m) = &mode
            && !modes.contains(m)
        {
            problems.push(format!("mode {m} is none of the schema's values"));
        }
        let removed_permissions = merged
            .get("removed_permissions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| RemovedPermission {
                        principal: p.get("principal").and_then(Value::as_str).map(Into::into),
                        is_group: p.get("is_group").and_then(Value::as_bool),
                        access_mode: p.get("access_mode").and_then(Value::as_str).map(Into::into),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Lockdown {
            key: LOCKDOWN_SETTINGS.to_string(),
            records: self.lockdown_settings.len(),
            rowid: one.and_then(|r| r.rowid),
            mode,
            mode_columns: one.map(|r| r.columns_setting("mode")).unwrap_or_default(),
            modes,
            exception_users: strings(merged.get("exception_users")),
            removed_permissions,
            problems,
            schema: schema.source.clone(),
            schema_differences: self
                .schemas
                .differences
                .get(&LOCKDOWN_SETTINGS)
                .cloned()
                .unwrap_or_default(),
            modified_time: one.and_then(|r| r.modified_time.clone()),
            revision: one.and_then(|r| r.revision),
        }
    }

    /// The DCUI access list the host boots with: the record's `users`, else the schema's
    /// default.
    pub fn dcui_access(&self) -> DcuiAccess {
        let schema = self.schemas.get(DCUI_ACCESS);
        match self.dcui_access.as_slice() {
            [r] => DcuiAccess {
                users: strings(r.merged.get("users")),
                from_record: r.sources.get("users").is_some_and(|s| s != DEFAULT),
                problems: r.problems.clone(),
            },
            many => DcuiAccess {
                users: strings(schema.defaults().get("users")),
                from_record: false,
                problems: if many.is_empty() {
                    Vec::new()
                } else {
                    vec![format!(
                        "{} records of a single-record key: which one ESXi reads is not known",
                        many.len()
                    )]
                },
            },
        }
    }

    /// Takes lockdown's `mode` out of the lockdown_settings record, in a private in-memory copy
    /// of the database, and returns the new database: with no mode the schema's own reading is
    /// "not locked down" (module comment). Checked as every edit is (`edit.rs`): the host's
    /// schema of the key is the one bootbank knows, the record is sound, `mode` is a non-vital
    /// enum field holding one of its values, the table's triggers are the known ones; one
    /// UPDATE of the column(s) setting it, only that member of the JSON text removed; then the
    /// whole database compared row by row, and every other record read back unchanged.
    pub fn clear_lockdown_mode(&self) -> Result<LockdownEdit, ConfigStoreError> {
        let key = LOCKDOWN_SETTINGS.to_string();
        let rec: &Record = match self.lockdown_settings.as_slice() {
            [r] => r,
            [] => {
                return Err(EditRefusal::NotSet {
                    key,
                    field: "mode".into(),
                }
                .into());
            }
            many => {
                return Err(EditRefusal::Several {
                    key,
                    count: many.len(),
                }
                .into());
            }
        };
        let rowid = rec.rowid.ok_or_else(|| {
            EditRefusal::ReadBack(format!("the {key} record has no rowid to address it by"))
        })?;
        let id = if rec.identifier.is_empty() {
            key.clone()
        } else {
            rec.identifier.clone()
        };
        self.schema_known(LOCKDOWN_SETTINGS)?;
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
        let field = self
            .schemas
            .get(LOCKDOWN_SETTINGS)
            .field("mode")
            .ok_or_else(|| refuse_schema("has no field `mode`".into()))?;
        if field.vital {
            return Err(refuse_schema("marks `mode` vital".into()).into());
        }
        let Some(old_mode) = rec.str("mode").map(str::to_string) else {
            return Err(EditRefusal::NotSet {
                key,
                field: "mode".into(),
            }
            .into());
        };
        if !field
            .enum_values
            .as_ref()
            .is_some_and(|e| e.contains(&old_mode))
        {
            return Err(refuse_schema(format!("does not allow `mode` = {old_mode}")).into());
        }
        let columns_setting = rec.columns_setting("mode");
        if columns_setting.is_empty() {
            return Err(EditRefusal::NotSet {
                key,
                field: "mode".into(),
            }
            .into());
        }
        self.check_triggers()?;
        let mut changes = Vec::new();
        for column in &columns_setting {
            changes.push(self.column_edit(rec, &id, column, "mode", None)?);
        }
        let (bytes, columns) = self.update_field(rowid, &id, "/mode", &changes)?;
        let store = ConfigStore::open(&bytes, self.schemas.clone())?;
        let got = store
            .lockdown_settings
            .iter()
            .find(|r| r.rowid == Some(rowid));
        if got.is_none_or(|r| r.merged.contains_key("mode") || !r.problems.is_empty()) {
            return Err(EditRefusal::ReadBack(format!(
                "record {id} does not read back without a mode"
            ))
            .into());
        }
        if !self.others_unchanged(&store, Edited::Lockdown(rowid)) {
            return Err(
                EditRefusal::ReadBack("other records read back differently".to_string()).into(),
            );
        }
        let got = got.expect("checked above");
        Ok(LockdownEdit {
            bytes,
            rowid,
            old_mode,
            columns,
            modified_time: (rec.modified_time.clone(), got.modified_time.clone()),
            revision: (rec.revision, got.revision),
            after: Box::new(store),
        })
    }
}
