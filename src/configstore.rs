//! The ConfigStore database of ESXi 7.0 and later (reference section 7): read, and the one change
//! `fix` makes ([`ConfigStore::set_owner`]).
//!
//! Since 7.0 part of the host's configuration lives in an SQLite database that the backup puts
//! into local.tgz (`var/lib/vmware/configstore/backup/current-store-1`). On 8.x the PCI
//! passthrough state is reported there too, under component `esx`, group `hardware`, name
//! `pci_devices`, one row per device whose identifier is the lspci-style hex address. A host
//! whose esx.conf says `vmkernel` while the store still says passthrough (or the other way round)
//! may not boot the way the user expects, so `inspect` shows both views and where they disagree.
//!
//! The JSON field that holds a device's owner is not publicly documented. This module therefore
//! reports everything a record holds, and states an owner only when the record says so in a field
//! whose meaning is plain ([`RECOGNISED_FIELDS`]); any other record is reported as unclear, never
//! guessed at. [`ConfigStore::set_owner`] changes exactly the field named in
//! [`PciRecord::recognised_field`], in a private in-memory copy, and returns the new database.
//!
//! **Opening.** The database is never opened in place: [`ConfigStore::open`] copies the bytes into
//! memory that SQLite owns (`sqlite3_deserialize`, rusqlite's `serialize` feature) and opens that
//! copy read-only. A private in-memory copy needs no writable temporary directory on a rescue
//! system, leaves no copy of the host's configuration behind on disk, cannot be touched by another
//! process between our write and SQLite's open, and is what a later writer will want anyway: it
//! can change the copy and serialize it back into local.tgz without a file round trip. The copy
//! is then checked with `PRAGMA integrity_check` before anything is read.

use crate::archive::Tgz;
use crate::esxconf::Device;
use crate::pci::PciAddress;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, MAIN_DB};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Path of the ConfigStore database inside local.tgz (reference sections 4 and 7).
pub const MEMBER: &str = "var/lib/vmware/configstore/backup/current-store-1";

/// The 16 bytes every SQLite 3 database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Columns without which no record can be found or named. Everything else is optional: the
/// reference lists 14 columns, but a reader that refused a store written by another ESXi build
/// with one column more or less would help nobody.
pub const REQUIRED_COLUMNS: [&str; 4] = ["Component", "ConfigGroup", "Name", "Identifier"];

/// The value columns, in the order in which they decide a record's effective value.
///
/// **Assumption** (nothing public documents it): the desired state wins over what the user set,
/// which wins over the cached copy, the automatic configuration and the vital defaults. The first
/// of these that is not SQL NULL is the effective value; every column is still kept and shown,
/// and a column that disagrees with the effective one is noted on the record.
pub const VALUE_PRECEDENCE: [&str; 5] = [
    "DesiredValue",
    "UserValue",
    "CachedValue",
    "AutoConfValue",
    "VitalValue",
];

/// Top-level JSON fields whose meaning is plain enough to state an owner from: a string `owner`
/// of `"passthru"` or `"vmkernel"` (esx.conf's own words), or a boolean whose name says
/// passthrough is enabled. Nothing else is recognised, however suggestive (nested fields, other
/// spellings, strings that read like booleans): their meaning would be a guess.
pub const RECOGNISED_FIELDS: [&str; 4] = [
    "owner",
    "passthru_enabled",
    "passthrough_enabled",
    "passthru",
];

const COMPONENT: &str = "esx";
const GROUP: &str = "hardware";
const PCI_DEVICES: &str = "pci_devices";

/// Who a device belongs to, in esx.conf's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Handed to virtual machines (DirectPath I/O).
    Passthru,
    /// Claimed by ESXi itself.
    Vmkernel,
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ownership::Passthru => "passthru",
            Ownership::Vmkernel => "vmkernel",
        })
    }
}

/// One non-NULL cell of the `Config` table, as stored. SQL NULL cells are left out of the maps
/// that hold these, so "absent" and "NULL" read the same.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum StoredValue {
    /// TEXT that parses as JSON (the reference says the value columns hold JSON).
    Json(serde_json::Value),
    /// TEXT that is not JSON: shown as is, never interpreted.
    Text(String),
    Integer(i64),
    Real(f64),
    /// A BLOB. Not decoded even when it holds JSON text: a writer could not know whether to
    /// write it back as text or blob, so such a record stays unclear.
    Blob(Vec<u8>),
}

impl StoredValue {
    fn from_ref(v: ValueRef<'_>) -> Option<StoredValue> {
        Some(match v {
            ValueRef::Null => return None,
            ValueRef::Integer(i) => StoredValue::Integer(i),
            ValueRef::Real(r) => StoredValue::Real(r),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t).into_owned();
                match serde_json::from_str(&text) {
                    Ok(json) => StoredValue::Json(json),
                    Err(_) => StoredValue::Text(text),
                }
            }
            ValueRef::Blob(b) => StoredValue::Blob(b.to_vec()),
        })
    }

    /// The JSON value, when this cell holds JSON text.
    pub fn json(&self) -> Option<&serde_json::Value> {
        match self {
            StoredValue::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// A field of a value column that states the owner plainly (see [`RECOGNISED_FIELDS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecognisedField {
    /// Value column, e.g. `UserValue`.
    pub column: String,
    /// JSON pointer (RFC 6901) to the field inside that column's JSON, e.g. `/owner`.
    pub pointer: String,
    /// What the field says.
    pub owner: Ownership,
}

/// One `esx` / `hardware` / `pci_devices` row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PciRecord {
    /// The row's Identifier, as stored.
    pub identifier: String,
    /// The identifier read as a hex SBDF address (`0000:65:00.0`); None when it is not one.
    #[serde(serialize_with = "ser_address")]
    pub address: Option<PciAddress>,
    /// SQLite's rowid, so a writer updates exactly this row (None for a WITHOUT ROWID table).
    pub rowid: Option<i64>,
    /// Every non-NULL value column (`UserValue`, `DesiredValue`, ...), by column name.
    pub values: BTreeMap<String, StoredValue>,
    /// Every other non-NULL column except the four key columns (`ModifiedTime`, `Revision`,
    /// unknown extra columns, ...), shown to the user as they are.
    pub other: BTreeMap<String, StoredValue>,
    /// The value column that decides the owner ([`VALUE_PRECEDENCE`]); None when all are NULL.
    pub effective_column: Option<String>,
    /// The owner, only when the effective value states it in a recognised field and all its
    /// recognised fields agree. None means unclear: see `unclear`.
    pub owner: Option<Ownership>,
    /// (column, JSON pointer) of the field that states `owner`: what a writer would change.
    pub recognised_field: Option<(String, String)>,
    /// Every recognised field in every value column, the effective one first.
    pub recognised: Vec<RecognisedField>,
    /// Why `owner` is None, in words for the user.
    pub unclear: Option<String>,
    /// Other things worth telling: columns that disagree with the effective value, an `id`
    /// field that names another address than the identifier.
    pub notes: Vec<String>,
}

fn ser_address<S: Serializer>(a: &Option<PciAddress>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.serialize_some(&a.to_pci_string()),
        None => s.serialize_none(),
    }
}

fn ser_pci<S: Serializer>(a: &PciAddress, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&a.to_pci_string())
}

/// Why a ConfigStore database cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigStoreError {
    #[error("ConfigStore database is empty (0 bytes)")]
    Empty,
    #[error("ConfigStore: not an SQLite database (first bytes {magic:02x?}): {message}")]
    NotDatabase { magic: Vec<u8>, message: String },
    /// `PRAGMA integrity_check` did not answer `ok`, or SQLite refused to read the file while
    /// checking it. `messages` are SQLite's own words.
    #[error("ConfigStore database fails PRAGMA integrity_check: {}", .messages.join("; "))]
    Integrity { messages: Vec<String> },
    #[error("ConfigStore database has no table `Config` (tables: {tables})")]
    NoConfigTable { tables: String },
    #[error(
        "ConfigStore table `Config` lacks column(s) {} (columns: {})",
        .missing.join(", "),
        .present.join(", ")
    )]
    MissingColumns {
        missing: Vec<String>,
        present: Vec<String>,
    },
    #[error(
        "ConfigStore table `Config` has no value column (expected one of {}; columns: {})",
        VALUE_PRECEDENCE.join(", "),
        .present.join(", ")
    )]
    NoValueColumn { present: Vec<String> },
    /// [`ConfigStore::set_owner`] refused: the record is not what the change expects.
    #[error("ConfigStore: not changed: {0}")]
    Refused(String),
    #[error("ConfigStore: {context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
}

fn sql_err(context: &str) -> impl FnOnce(rusqlite::Error) -> ConfigStoreError + '_ {
    move |source| ConfigStoreError::Sqlite {
        context: context.to_string(),
        source,
    }
}

/// A checked, read-only view of a ConfigStore database.
///
/// Holds what was read, not the SQLite connection: everything is read during [`ConfigStore::open`]
/// so that a database SQLite cannot read fails there, with a typed error, instead of in a
/// later accessor; and the result is plain data that can be cloned, sent between threads and
/// kept next to the rest of a bank's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigStore {
    /// Size of the database in bytes.
    pub size: usize,
    /// The table's name as stored (SQLite names are case-insensitive: `Config`, `config`).
    pub table: String,
    /// All columns of the table, in table order.
    pub columns: Vec<String>,
    /// The value columns present, in [`VALUE_PRECEDENCE`] order.
    pub value_columns: Vec<String>,
    /// Rows in the table, all components.
    pub rows: u64,
    /// The header said WAL mode (bytes 18-19 = 2). Our copy is read as a rollback-journal
    /// database, since a backup file has no `-wal` beside it and an in-memory copy cannot use
    /// one; the original bytes are not changed.
    pub wal_header: bool,
    records: Vec<PciRecord>,
    /// The database bytes as given to [`ConfigStore::open`], for [`ConfigStore::set_owner`].
    image: Vec<u8>,
}

impl ConfigStore {
    /// Checks and reads a ConfigStore database held in memory. `db_bytes` are only read: SQLite
    /// works on a private copy.
    pub fn open(db_bytes: &[u8]) -> Result<ConfigStore, ConfigStoreError> {
        if db_bytes.is_empty() {
            return Err(ConfigStoreError::Empty);
        }
        let magic = db_bytes[..db_bytes.len().min(16)].to_vec();
        if db_bytes.len() < 100 || magic != SQLITE_MAGIC {
            return Err(ConfigStoreError::NotDatabase {
                magic,
                message: format!(
                    "a database starts with \"SQLite format 3\\0\" and a 100-byte header ({} bytes)",
                    db_bytes.len()
                ),
            });
        }
        // WAL mode (file format bytes 18 and 19 = 2) needs shared memory, which SQLite's
        // in-memory databases lack: such a copy cannot be read at all. Clear the flag in our
        // copy only; a backup is always complete without its -wal file.
        let wal_header = db_bytes[18] == 2 || db_bytes[19] == 2;
        let patched;
        let image: &[u8] = if wal_header {
            let mut v = db_bytes.to_vec();
            v[18] = 1;
            v[19] = 1;
            patched = v;
            &patched
        } else {
            db_bytes
        };

        let mut conn = Connection::open_in_memory().map_err(sql_err("open in memory"))?;
        harden(&conn)?;
        // Copies the image into memory SQLite allocates and frees: never the caller's bytes.
        conn.deserialize_read_exact(MAIN_DB, image, image.len(), true)
            .map_err(sql_err("load a copy of the database"))?;

        integrity_check(&conn, &magic)?;

        let table = find_table(&conn)?;
        let columns = table_columns(&conn, &table)?;
        let find = |want: &str| columns.iter().find(|c| c.eq_ignore_ascii_case(want));
        let missing: Vec<String> = REQUIRED_COLUMNS
            .iter()
            .filter(|c| find(c).is_none())
            .map(|c| c.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ConfigStoreError::MissingColumns {
                missing,
                present: columns.clone(),
            });
        }
        let value_columns: Vec<String> = VALUE_PRECEDENCE
            .iter()
            .filter_map(|c| find(c).cloned())
            .collect();
        if value_columns.is_empty() {
            return Err(ConfigStoreError::NoValueColumn {
                present: columns.clone(),
            });
        }
        let rows: u64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote(&table)),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sql_err("count rows"))?
            .try_into()
            .unwrap_or(0);
        let records = read_pci_devices(&conn, &table, &columns, &value_columns)?;
        Ok(ConfigStore {
            size: db_bytes.len(),
            table,
            columns,
            value_columns,
            rows,
            wal_header,
            records,
            image: db_bytes.to_vec(),
        })
    }

    /// The ConfigStore database of a decoded local.tgz: Ok(None) when the archive has none (hosts
    /// before 7.0), an error when it has one that cannot be read.
    pub fn from_local(local: &Tgz) -> Result<Option<ConfigStore>, ConfigStoreError> {
        match local.member(MEMBER) {
            Some(m) if m.is_file() => Self::open(local.data(m)).map(Some),
            _ => Ok(None),
        }
    }

    /// The `esx` / `hardware` / `pci_devices` records, in table order.
    pub fn pci_devices(&self) -> Vec<PciRecord> {
        self.records.clone()
    }

    /// Sets the owner stated by the recognised field `pointer` of value column `column` of the
    /// `pci_devices` row `rowid` to `new`, in a private in-memory copy of the database, and
    /// returns the new database bytes.
    ///
    /// Only that one cell changes, and in it only the field's value: `"passthru"` <->
    /// `"vmkernel"` for `owner`, `true` <-> `false` for the boolean fields. The value token is
    /// replaced in the stored JSON text so every other byte of the text stays as it was; when
    /// the text cannot be scanned that way it is re-serialised (and [`OwnerEdit::reserialised`]
    /// says so). Triggers are disabled for the update, which must change exactly one row; the
    /// result must pass `PRAGMA integrity_check` and read back (through [`ConfigStore::open`])
    /// with the record now stating `new` in the same field, every other record unchanged. On
    /// success `self` becomes the store read from the new bytes.
    ///
    /// Refused ([`ConfigStoreError::Refused`]) when the field is not the record's
    /// [`PciRecord::recognised_field`], the record already says `new`, or the cell is not TEXT.
    pub fn set_owner(
        &mut self,
        rowid: i64,
        column: &str,
        pointer: &str,
        new: Ownership,
    ) -> Result<OwnerEdit, ConfigStoreError> {
        let refuse = |why: String| ConfigStoreError::Refused(why);
        let rec = self
            .records
            .iter()
            .find(|r| r.rowid == Some(rowid))
            .ok_or_else(|| refuse(format!("no pci_devices record with rowid {rowid}")))?
            .clone();
        let field = (column.to_string(), pointer.to_string());
        if rec.recognised_field.as_ref() != Some(&field) || rec.owner.is_none() {
            return Err(refuse(format!(
                "record {}: {column}{pointer} is not the field that states its owner",
                rec.identifier
            )));
        }
        if rec.owner == Some(new) {
            return Err(refuse(format!(
                "record {} already says {new}",
                rec.identifier
            )));
        }
        let Some(StoredValue::Json(old_json)) = rec.values.get(column) else {
            return Err(refuse(format!(
                "record {}: {column} does not hold JSON text",
                rec.identifier
            )));
        };
        let old_value = old_json
            .pointer(pointer)
            .ok_or_else(|| refuse(format!("record {}: no {pointer}", rec.identifier)))?
            .clone();
        let new_value = match &old_value {
            serde_json::Value::String(_) => serde_json::Value::String(new.to_string()),
            serde_json::Value::Bool(_) => serde_json::Value::Bool(new == Ownership::Passthru),
            other => {
                return Err(refuse(format!(
                    "record {}: {column}{pointer} is {other}",
                    rec.identifier
                )));
            }
        };
        let mut want_json = old_json.clone();
        *want_json.pointer_mut(pointer).expect("read above") = new_value.clone();

        let mut image = self.image.clone();
        if self.wal_header {
            image[18] = 1;
            image[19] = 1;
        }
        let mut conn = Connection::open_in_memory().map_err(sql_err("open in memory"))?;
        {
            use rusqlite::config::DbConfig;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
                .map_err(sql_err("enable defensive mode"))?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
                .map_err(sql_err("distrust the schema"))?;
            // A trigger on the table would change rows besides the one named.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
                .map_err(sql_err("disable triggers"))?;
        }
        conn.deserialize_read_exact(MAIN_DB, image.as_slice(), image.len(), false)
            .map_err(sql_err("load a copy of the database"))?;
        let col = quote(column);
        let table = quote(&self.table);
        let (kind, old_text): (String, Option<String>) = conn
            .query_row(
                &format!("SELECT typeof({col}), CAST({col} AS TEXT) FROM {table} WHERE rowid = ?1"),
                [rowid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql_err("read the record"))?;
        let old_text = match (kind.as_str(), old_text) {
            ("text", Some(t)) => t,
            _ => {
                return Err(refuse(format!(
                    "record {}: {column} is stored as {kind}, not text",
                    rec.identifier
                )));
            }
        };
        let (new_text, reserialised) =
            match replace_token(&old_text, pointer, &old_value, &new_value, &want_json) {
                Some(t) => (t, false),
                None => (want_json.to_string(), true),
            };
        let n = conn
            .execute(
                &format!("UPDATE {table} SET {col} = ?1 WHERE rowid = ?2"),
                rusqlite::params![new_text, rowid],
            )
            .map_err(sql_err("update the record"))?;
        if n != 1 {
            return Err(refuse(format!("the update changed {n} rows, not 1")));
        }
        integrity_check(&conn, SQLITE_MAGIC)?;
        let mut bytes = conn
            .serialize(MAIN_DB)
            .map_err(sql_err("serialize the database"))?
            .to_vec();
        if self.wal_header && bytes.len() > 19 {
            bytes[18] = self.image[18];
            bytes[19] = self.image[19];
        }
        let after = ConfigStore::open(&bytes)?;
        let check = |r: &PciRecord| r.rowid == Some(rowid);
        let got = after.records.iter().find(|r| check(r));
        if got.map(|r| (r.owner, r.recognised_field.clone())) != Some((Some(new), Some(field))) {
            return Err(refuse(format!(
                "record {} does not read back as {new}",
                rec.identifier
            )));
        }
        let others = |s: &ConfigStore| -> Vec<PciRecord> {
            s.records.iter().filter(|r| !check(r)).cloned().collect()
        };
        if others(&after) != others(self) || after.rows != self.rows {
            return Err(refuse(
                "other records read back differently after the update".to_string(),
            ));
        }
        *self = after;
        Ok(OwnerEdit {
            bytes,
            identifier: rec.identifier,
            rowid,
            column: column.to_string(),
            pointer: pointer.to_string(),
            old_text,
            new_text,
            reserialised,
        })
    }
}

/// What [`ConfigStore::set_owner`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerEdit {
    /// The whole new database.
    pub bytes: Vec<u8>,
    pub identifier: String,
    pub rowid: i64,
    pub column: String,
    pub pointer: String,
    /// The cell's JSON text before and after.
    pub old_text: String,
    pub new_text: String,
    /// The text was re-serialised (keys may be reordered, spacing changed) because the value
    /// token could not be replaced in place.
    pub reserialised: bool,
}

/// `text` with the value of the top-level field named by `pointer` (a one-level JSON pointer)
/// replaced by `new`, every other byte kept; None when the text cannot be scanned that way or
/// the result would not parse to `want`.
fn replace_token(
    text: &str,
    pointer: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    want: &serde_json::Value,
) -> Option<String> {
    let name = pointer.strip_prefix('/')?;
    if name.contains('/') {
        return None;
    }
    let name = name.replace("~1", "/").replace("~0", "~");
    let (start, end) = top_level_value_span(text.as_bytes(), &name)?;
    let token: serde_json::Value = serde_json::from_str(&text[start..end]).ok()?;
    if token != *old {
        return None;
    }
    let out = format!("{}{}{}", &text[..start], new, &text[end..]);
    let parsed: serde_json::Value = serde_json::from_str(&out).ok()?;
    (parsed == *want).then_some(out)
}

/// Byte span of the value of the last top-level field `name` of the JSON object in `b`.
fn top_level_value_span(b: &[u8], name: &str) -> Option<(usize, usize)> {
    let ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    let string_end = |i: usize| -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let mut j = i + 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => return Some(j + 1),
                _ => j += 1,
            }
        }
        None
    };
    let value_end = |i: usize| -> Option<usize> {
        match b.get(i)? {
            b'"' => string_end(i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = string_end(j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                None
            }
            _ => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                {
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let kend = string_end(i)?;
        let key: String = serde_json::from_slice(&b[i..kend]).ok()?;
        i = ws(kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let vstart = ws(i + 1);
        let vend = value_end(vstart)?;
        if key == name {
            found = Some((vstart, vend));
        }
        i = ws(vend);
        match b.get(i)? {
            b',' => i = ws(i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    found
}

/// Limits what a hostile or damaged database can make SQLite do while we read it: no functions
/// with side effects called from its schema (views, triggers, defaults), no writes of any kind.
fn harden(conn: &Connection) -> Result<(), ConfigStoreError> {
    use rusqlite::config::DbConfig;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(sql_err("enable defensive mode"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(sql_err("distrust the schema"))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sql_err("make the connection query-only"))?;
    Ok(())
}

/// Runs `PRAGMA integrity_check`; anything but a single `ok` is an error carrying SQLite's
/// messages. A database SQLite cannot even start checking fails here too.
fn integrity_check(conn: &Connection, magic: &[u8]) -> Result<(), ConfigStoreError> {
    let refused = |e: rusqlite::Error| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            ConfigStoreError::NotDatabase {
                magic: magic.to_vec(),
                message: e.to_string(),
            }
        } else {
            ConfigStoreError::Integrity {
                messages: vec![e.to_string()],
            }
        }
    };
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(refused)?;
    let messages: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(refused)?;
    if messages.len() == 1 && messages[0] == "ok" {
        Ok(())
    } else {
        Err(ConfigStoreError::Integrity { messages })
    }
}

/// The name of the `Config` table as stored (matched case-insensitively, as SQLite does).
fn find_table(conn: &Connection) -> Result<String, ConfigStoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name",
        )
        .map_err(sql_err("list tables"))?;
    let all: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql_err("list tables"))?;
    // A view named Config is not the table ESXi writes: refuse it rather than run its query.
    if let Some((name, _)) = all
        .iter()
        .find(|(n, t)| t == "table" && n.eq_ignore_ascii_case("Config"))
    {
        return Ok(name.clone());
    }
    let tables: Vec<String> = all
        .iter()
        .map(|(n, t)| {
            if t == "view" {
                format!("{n} (view)")
            } else {
                n.clone()
            }
        })
        .collect();
    Err(ConfigStoreError::NoConfigTable {
        tables: if tables.is_empty() {
            "none".to_string()
        } else {
            tables.join(", ")
        },
    })
}

fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, ConfigStoreError> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .map_err(sql_err("list columns"))?;
    stmt.query_map([table], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(sql_err("list columns"))
}

/// An SQL identifier in double quotes, embedded quotes doubled: column names come from the
/// database itself and are never trusted as SQL.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn read_pci_devices(
    conn: &Connection,
    table: &str,
    columns: &[String],
    value_columns: &[String],
) -> Result<Vec<PciRecord>, ConfigStoreError> {
    let col = |want: &str| {
        columns
            .iter()
            .find(|c| c.eq_ignore_ascii_case(want))
            .cloned()
            .unwrap_or_else(|| want.to_string())
    };
    let list = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let filter = format!(
        "FROM {} WHERE {} = ?1 AND {} = ?2 AND {} = ?3",
        quote(table),
        quote(&col("Component")),
        quote(&col("ConfigGroup")),
        quote(&col("Name")),
    );
    // A WITHOUT ROWID table has no rowid: read it without one rather than fail.
    let with_rowid = format!("SELECT rowid, {list} {filter} ORDER BY rowid");
    let without = format!("SELECT NULL, {list} {filter}");
    let mut stmt = match conn.prepare(&with_rowid) {
        Ok(s) => s,
        Err(_) => conn
            .prepare(&without)
            .map_err(sql_err("select pci_devices"))?,
    };
    let identifier = col("Identifier");
    let key_columns: Vec<String> = REQUIRED_COLUMNS.iter().map(|c| col(c)).collect();
    let rows = stmt
        .query_map([COMPONENT, GROUP, PCI_DEVICES], |r| {
            let rowid: Option<i64> = r.get(0)?;
            let mut ident = String::new();
            let mut values = BTreeMap::new();
            let mut other = BTreeMap::new();
            for (i, name) in columns.iter().enumerate() {
                let v = r.get_ref(i + 1)?;
                if *name == identifier {
                    ident = match v {
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        ValueRef::Integer(n) => n.to_string(),
                        ValueRef::Real(f) => f.to_string(),
                        ValueRef::Null => String::new(),
                    };
                    continue;
                }
                if key_columns.contains(name) {
                    continue;
                }
                let Some(sv) = StoredValue::from_ref(v) else {
                    continue;
                };
                if value_columns.contains(name) {
                    values.insert(name.clone(), sv);
                } else {
                    other.insert(name.clone(), sv);
                }
            }
            Ok((rowid, ident, values, other))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err("read pci_devices"))?;
    Ok(rows
        .into_iter()
        .map(|(rowid, ident, values, other)| record(rowid, ident, values, other, value_columns))
        .collect())
}

/// What one value column says about the owner: the recognised fields, and the recognised
/// names whose value is not of the expected kind (which make the column unclear).
fn recognise(column: &str, value: &StoredValue) -> (Vec<RecognisedField>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let Some(serde_json::Value::Object(map)) = value.json() else {
        return (found, problems);
    };
    for name in RECOGNISED_FIELDS {
        let Some(v) = map.get(name) else { continue };
        let owner = match (name, v) {
            ("owner", serde_json::Value::String(s)) if s == "passthru" => Some(Ownership::Passthru),
            ("owner", serde_json::Value::String(s)) if s == "vmkernel" => Some(Ownership::Vmkernel),
            ("owner", _) => None,
            (_, serde_json::Value::Bool(true)) => Some(Ownership::Passthru),
            (_, serde_json::Value::Bool(false)) => Some(Ownership::Vmkernel),
            _ => None,
        };
        match owner {
            Some(owner) => found.push(RecognisedField {
                column: column.to_string(),
                pointer: pointer(name),
                owner,
            }),
            None => problems.push(format!(
                "{column}: field `{name}` is {v}, not {}",
                if name == "owner" {
                    "\"passthru\" or \"vmkernel\""
                } else {
                    "true or false"
                }
            )),
        }
    }
    (found, problems)
}

/// RFC 6901 pointer to a top-level field.
fn pointer(field: &str) -> String {
    format!("/{}", field.replace('~', "~0").replace('/', "~1"))
}

fn describe(value: &StoredValue) -> String {
    match value {
        StoredValue::Json(serde_json::Value::Object(m)) if m.is_empty() => {
            "an empty JSON object".to_string()
        }
        StoredValue::Json(serde_json::Value::Object(m)) => format!(
            "JSON with fields {}",
            m.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ),
        StoredValue::Json(v) => format!("JSON {v}, not an object"),
        StoredValue::Text(_) => "text that is not JSON".to_string(),
        StoredValue::Integer(n) => format!("the integer {n}"),
        StoredValue::Real(r) => format!("the number {r}"),
        StoredValue::Blob(b) => format!("a {}-byte blob", b.len()),
    }
}

fn record(
    rowid: Option<i64>,
    identifier: String,
    values: BTreeMap<String, StoredValue>,
    other: BTreeMap<String, StoredValue>,
    value_columns: &[String],
) -> PciRecord {
    let mut notes = Vec::new();
    let address = match PciAddress::parse_pci(identifier.trim()) {
        Ok(a) => Some(a),
        Err(e) => {
            notes.push(format!("identifier is not a hex PCI address: {e}"));
            None
        }
    };
    let effective_column = value_columns
        .iter()
        .find(|c| values.contains_key(*c))
        .cloned();

    // Recognised fields of every column, the effective column first.
    let mut recognised = Vec::new();
    let mut effective_problems = Vec::new();
    for c in effective_column.iter().chain(
        value_columns
            .iter()
            .filter(|c| Some(*c) != effective_column.as_ref()),
    ) {
        let Some(v) = values.get(c) else { continue };
        let (found, problems) = recognise(c, v);
        if Some(c) == effective_column.as_ref() {
            effective_problems = problems;
        }
        recognised.extend(found);
        if let Some(serde_json::Value::Object(m)) = v.json()
            && let (Some(serde_json::Value::String(id)), Some(a)) = (m.get("id"), address)
            && PciAddress::parse_pci(id.trim()).is_ok_and(|b| b != a)
        {
            notes.push(format!(
                "{c}: field `id` is {id}, another device than the identifier {identifier}"
            ));
        }
    }

    let in_effective: Vec<&RecognisedField> = recognised
        .iter()
        .filter(|f| Some(&f.column) == effective_column.as_ref())
        .collect();
    let mut owner = None;
    let mut recognised_field = None;
    let unclear = match &effective_column {
        None => Some("every value column is NULL".to_string()),
        Some(_) if !effective_problems.is_empty() => Some(effective_problems.join("; ")),
        Some(c) if in_effective.is_empty() => {
            let mut why = format!(
                "{c} (the effective value) holds {} and no field bootbank recognises ({})",
                describe(&values[c]),
                RECOGNISED_FIELDS.join(", ")
            );
            let elsewhere: Vec<String> = recognised
                .iter()
                .map(|f| format!("{}{} says {}", f.column, f.pointer, f.owner))
                .collect();
            if !elsewhere.is_empty() {
                why.push_str(&format!("; other columns: {}", elsewhere.join(", ")));
            }
            Some(why)
        }
        Some(c)
            if in_effective
                .iter()
                .any(|f| f.owner != in_effective[0].owner) =>
        {
            Some(format!(
                "{c}: recognised fields disagree ({})",
                in_effective
                    .iter()
                    .map(|f| format!("{} says {}", f.pointer, f.owner))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        Some(c) => {
            owner = Some(in_effective[0].owner);
            recognised_field = Some((c.clone(), in_effective[0].pointer.clone()));
            None
        }
    };
    if let Some(o) = owner {
        for f in recognised.iter().filter(|f| f.owner != o) {
            notes.push(format!(
                "{}{} says {}, but the effective {} says {o}",
                f.column,
                f.pointer,
                f.owner,
                effective_column.as_deref().unwrap_or("value")
            ));
        }
    }
    PciRecord {
        identifier,
        address,
        rowid,
        values,
        other,
        effective_column,
        owner,
        recognised_field,
        recognised,
        unclear,
        notes,
    }
}

/// Where esx.conf and the ConfigStore disagree about passing a device through. Devices are
/// matched by address value (esx.conf's decimal keys against the store's hex identifiers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disagreement {
    /// Both know the device; one says passthru and the other does not.
    Owner {
        #[serde(serialize_with = "ser_pci")]
        address: PciAddress,
        /// The address as written in esx.conf's keys (decimal).
        esx_address: String,
        /// esx.conf's owner value; None when the device has no owner line.
        esx_owner: Option<String>,
        identifier: String,
        store_owner: Ownership,
        /// (column, JSON pointer) of the store's field.
        field: (String, String),
    },
    /// esx.conf passes the device through; the store has no record of it.
    OnlyInEsxConf {
        #[serde(serialize_with = "ser_pci")]
        address: PciAddress,
        esx_address: String,
    },
    /// The store passes through a device that esx.conf does not list.
    OnlyInStore {
        #[serde(serialize_with = "ser_pci")]
        address: PciAddress,
        identifier: String,
        field: (String, String),
    },
}

impl Disagreement {
    pub fn address(&self) -> PciAddress {
        match self {
            Disagreement::Owner { address, .. }
            | Disagreement::OnlyInEsxConf { address, .. }
            | Disagreement::OnlyInStore { address, .. } => *address,
        }
    }
}

impl fmt::Display for Disagreement {
    /// One line for the user, with both address forms so the device is unmistakable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::Owner {
                address,
                esx_address,
                esx_owner,
                store_owner,
                field,
                ..
            } => write!(
                f,
                "{address} (esx.conf {esx_address}): esx.conf owner is {}, ConfigStore {}{} says {store_owner}",
                esx_owner
                    .as_deref()
                    .map(|o| format!("\"{o}\""))
                    .unwrap_or_else(|| "not set".to_string()),
                field.0,
                field.1
            ),
            Disagreement::OnlyInEsxConf {
                address,
                esx_address,
            } => write!(
                f,
                "{address} (esx.conf {esx_address}): esx.conf says passthru, ConfigStore has no record of it"
            ),
            Disagreement::OnlyInStore { address, field, .. } => write!(
                f,
                "{address} (esx.conf {}): ConfigStore {}{} says passthru, esx.conf does not list the device",
                address.to_esx_string(),
                field.0,
                field.1
            ),
        }
    }
}

/// Where esx.conf's devices and the store's records disagree about passthrough, in address
/// order. Records whose owner is unclear are not compared (see [`unclear`]): an unclear record
/// neither confirms nor contradicts esx.conf. A vmkernel record for a device esx.conf does not
/// list is no disagreement: both leave the device to ESXi.
pub fn disagreements(devices: &[Device], records: &[PciRecord]) -> Vec<Disagreement> {
    let mut out = Vec::new();
    for d in devices {
        let same: Vec<&PciRecord> = records
            .iter()
            .filter(|r| r.address == Some(d.address))
            .collect();
        if same.is_empty() && d.is_passthru() {
            out.push(Disagreement::OnlyInEsxConf {
                address: d.address,
                esx_address: d.esx_address.clone(),
            });
        }
        for r in same {
            let (Some(o), Some(field)) = (r.owner, &r.recognised_field) else {
                continue;
            };
            if (o == Ownership::Passthru) != d.is_passthru() {
                out.push(Disagreement::Owner {
                    address: d.address,
                    esx_address: d.esx_address.clone(),
                    esx_owner: d.owner.clone(),
                    identifier: r.identifier.clone(),
                    store_owner: o,
                    field: field.clone(),
                });
            }
        }
    }
    for r in records {
        if let (Some(a), Some(Ownership::Passthru), Some(field)) =
            (r.address, r.owner, &r.recognised_field)
            && !devices.iter().any(|d| d.address == a)
        {
            out.push(Disagreement::OnlyInStore {
                address: a,
                identifier: r.identifier.clone(),
                field: field.clone(),
            });
        }
    }
    out.sort_by_key(|d| d.address());
    out
}

/// A record that cannot be compared with esx.conf, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unclear {
    pub identifier: String,
    #[serde(serialize_with = "ser_address")]
    pub address: Option<PciAddress>,
    pub reason: String,
}

/// The records whose owner is unclear or whose identifier is not an address, in table order:
/// reported as such, never counted as agreeing or disagreeing.
pub fn unclear(records: &[PciRecord]) -> Vec<Unclear> {
    records
        .iter()
        .filter_map(|r| {
            let no_address = || {
                format!(
                    "identifier `{}` is not a hex PCI address, so the record cannot be matched to a device",
                    r.identifier
                )
            };
            let reason = match (&r.unclear, r.address) {
                (Some(why), Some(_)) => why.clone(),
                (Some(why), None) => format!("{}; {why}", no_address()),
                (None, None) => no_address(),
                (None, Some(_)) => return None,
            };
            Some(Unclear {
                identifier: r.identifier.clone(),
                address: r.address,
                reason,
            })
        })
        .collect()
}
