//! The ConfigStore database of ESXi 7.0 and later (reference section 7), read as ESXi reads it,
//! and the one change `fix` makes in it ([`ConfigStore::set_owner`]).
//!
//! From 7.0U2 on, device ownership lives here and no longer in esx.conf: an `esx/hardware/
//! pci_devices` record per device that is not left at the default, whose merged value has
//! `owner` = `OWNER_PASSTHRU` or `OWNER_VMKERNEL` (default `OWNER_VMKERNEL`), and an
//! `esx/system/device_data` record per device name (`vmhba2` at bus address `p0000:16:00.0`).
//! Records are merged from their value columns through the host's own schema ([`schema`],
//! [`record`]).
//!
//! **Opening.** The database is never opened in place: [`ConfigStore::open`] copies the bytes into
//! memory that SQLite owns (`sqlite3_deserialize`, rusqlite's `serialize` feature) and opens that
//! copy read-only. A private in-memory copy needs no writable temporary directory on a rescue
//! system, leaves no copy of the host's configuration behind on disk, cannot be touched by another
//! process between our write and SQLite's open, and is what an edit wants anyway: it changes a
//! second copy and serialises it back into local.tgz without a file round trip. The copy is
//! checked with `PRAGMA integrity_check` before anything is read.

mod edit;
mod json_span;
pub mod lockdown;
pub mod network;
pub mod record;
pub mod schema;

pub use edit::{ColumnChange, EditRefusal};
#[cfg(feature = "internals")]
pub use edit::{HashEdit, OwnerEdit};
pub use record::Record;
pub use schema::{Key, SchemaSource, Schemas};

use crate::esxi::pci::PciAddress;
use crate::format::archive::Tgz;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, MAIN_DB};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Path of the ConfigStore database inside local.tgz (reference sections 4 and 7).
pub const MEMBER: &str = "var/lib/vmware/configstore/backup/current-store-1";

/// The 16 bytes every SQLite 3 database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Columns without which no record can be found or named.
pub const REQUIRED_COLUMNS: [&str; 4] = ["Component", "ConfigGroup", "Name", "Identifier"];

/// Who a device belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Handed to virtual machines (DirectPath I/O).
    Passthru,
    /// Claimed by ESXi itself.
    Vmkernel,
}

impl Ownership {
    /// esx.conf's words: `passthru`, `vmkernel`.
    pub fn from_esx_conf(value: &str) -> Option<Ownership> {
        match value {
            "passthru" => Some(Ownership::Passthru),
            "vmkernel" => Some(Ownership::Vmkernel),
            _ => None,
        }
    }

    /// The ConfigStore's enum values (schema of `esx/hardware/pci_devices`).
    pub fn from_store(value: &str) -> Option<Ownership> {
        match value {
            "OWNER_PASSTHRU" => Some(Ownership::Passthru),
            "OWNER_VMKERNEL" => Some(Ownership::Vmkernel),
            _ => None,
        }
    }

    /// The value the ConfigStore writes for this owner.
    pub fn store_value(self) -> &'static str {
        match self {
            Ownership::Passthru => "OWNER_PASSTHRU",
            Ownership::Vmkernel => "OWNER_VMKERNEL",
        }
    }
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
    /// TEXT that parses as JSON (the value columns hold JSON).
    Json(serde_json::Value),
    /// TEXT that is not JSON: shown as is, never interpreted.
    Text(String),
    Integer(i64),
    Real(f64),
    /// A BLOB. Not decoded even when it holds JSON text: a writer could not know whether to
    /// write it back as text or blob, so such a record is reported, not read.
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

/// One `esx/hardware/pci_devices` record: who owns one PCI function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PciDeviceRecord {
    /// The row's Identifier (the `sbdf` instance id), as stored.
    pub identifier: String,
    /// The identifier read as a hex SBDF address; None when it is not one.
    #[serde(serialize_with = "ser_address")]
    pub address: Option<PciAddress>,
    /// The merged `owner` exactly as stored (`OWNER_PASSTHRU`); None when the value columns
    /// disagree on it.
    pub owner_raw: Option<String>,
    /// `owner_raw` in esx.conf's words; None when it is none of the schema's two values.
    pub owner: Option<Ownership>,
    /// The value columns that set `owner` (empty: the schema's default applies).
    pub owner_columns: Vec<String>,
    /// The whole record.
    pub record: Record,
}

/// One `esx/system/device_data` record: the vmkernel name of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceName {
    pub identifier: String,
    /// `vmhba2`, `vmnic0`.
    pub alias: Option<String>,
    /// `pci` or `logical`.
    pub bus_type: Option<String>,
    /// As written: `p0000:16:00.0`, `pci#p0000:00:07.1#0`, or forms not understood such as
    /// `m01000b00` (shown as written, never guessed at).
    pub bus_address: Option<String>,
    /// The PCI function `bus_address` names, when it is one of the understood forms: `p` + hex
    /// SBDF, or a logical device `pci#p<SBDF>#N` on that function.
    #[serde(serialize_with = "ser_address")]
    pub address: Option<PciAddress>,
    /// Why the record cannot be read as ESXi reads it.
    pub problems: Vec<String>,
}

impl DeviceName {
    /// A storage adapter: ESXi names those `vmhbaN`.
    pub fn is_storage(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| a.starts_with("vmhba"))
    }
}

/// One `esx/authentication/user_accounts` record: a local account as the ConfigStore keeps it.
/// Serialised without its values: a record may hold a password hash, which bootbank never shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserAccount {
    /// The row's Identifier (the `name` instance id), as stored.
    pub identifier: String,
    /// The value columns that set `password_hash` (empty: the record holds no hash).
    pub hash_columns: Vec<String>,
    /// Why the record cannot be read as ESXi reads it.
    pub problems: Vec<String>,
    /// The whole record (holds the hash: never printed).
    #[serde(skip)]
    pub record: Record,
}

/// Reads a device_data bus address: `p` + hex `SSSS:BB:DD.F`, or `pci#p<SBDF>#N` for a logical
/// device on a PCI function. Every other form is None.
pub fn parse_bus_address(text: &str) -> Option<PciAddress> {
    let sbdf = |s: &str| {
        let hex = s.strip_prefix('p')?;
        (hex.len() == 12).then(|| PciAddress::parse_pci(hex).ok())?
    };
    match text.split('#').collect::<Vec<_>>().as_slice() {
        [one] => sbdf(one),
        ["pci", inner, n] if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => sbdf(inner),
        _ => None,
    }
}

fn ser_address<S: Serializer>(a: &Option<PciAddress>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.serialize_some(&a.to_pci_string()),
        None => s.serialize_none(),
    }
}

/// Why a ConfigStore database cannot be read or changed.
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
        record::VALUE_COLUMNS.join(", "),
        .present.join(", ")
    )]
    NoValueColumn { present: Vec<String> },
    /// The schema store beside the database cannot be read.
    #[error("ConfigStore schema store: {message}")]
    SchemaStore { message: String },
    /// [`ConfigStore::set_owner`] refused: the record or the store is not what the change
    /// expects. Nothing was changed.
    #[error("ConfigStore: not changed: {0}")]
    Refused(EditRefusal),
    /// A `bootbank network` change refused; nothing was changed.
    #[error("ConfigStore: not changed: {0}")]
    Network(network::NetworkRefusal),
    #[error("ConfigStore: {context}: {cause}")]
    Sqlite {
        context: &'static str,
        cause: rusqlite::Error,
    },
}

// By hand rather than `#[from]`: the message holds the refusal, so it is not also `source()`.
impl From<EditRefusal> for ConfigStoreError {
    fn from(e: EditRefusal) -> Self {
        ConfigStoreError::Refused(e)
    }
}

impl From<network::NetworkRefusal> for ConfigStoreError {
    fn from(e: network::NetworkRefusal) -> Self {
        ConfigStoreError::Network(e)
    }
}

fn sql_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> ConfigStoreError {
    move |cause| ConfigStoreError::Sqlite {
        context,
        cause,
    }
}

/// A trigger on the `Config` table, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub name: String,
    pub sql: String,
}

/// A checked, read-only view of a ConfigStore database, its records merged through the host's
/// schemas.
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
    /// The value columns present, in table order.
    pub value_columns: Vec<String>,
    /// Rows in the table, all components.
    pub rows: u64,
    /// The header said WAL mode (bytes 18-19 = 2). Our copy is read as a rollback-journal
    /// database, since a backup file has no `-wal` beside it and an in-memory copy cannot use
    /// one; the original bytes are not changed.
    pub wal_header: bool,
    /// The schemas the records were read with.
    pub schemas: Schemas,
    /// The triggers on the table (the real host has `updateModifiedTime` and `updateRevision`).
    pub triggers: Vec<Trigger>,
    /// The `esx/hardware/pci_devices` records, in table order.
    pub pci_devices: Vec<PciDeviceRecord>,
    /// The `esx/system/device_data` records, in table order.
    pub device_names: Vec<DeviceName>,
    /// The `esx/authentication/user_accounts` records, in table order (none on the real 7.0.2
    /// host).
    pub user_accounts: Vec<UserAccount>,
    /// The `esx/authorization/lockdown_settings` records (a single-record key: none or one; the
    /// real 7.0.2 host has none), read by [`ConfigStore::lockdown`].
    pub lockdown_settings: Vec<Record>,
    /// The `esx/authorization/dcui_access` records (none or one; none on the real 7.0.2 host).
    pub dcui_access: Vec<Record>,
    /// The database bytes as given to [`ConfigStore::open`], for [`ConfigStore::set_owner`].
    image: Vec<u8>,
}

/// `bytes` with the WAL flags (header bytes 18 and 19) set back to rollback-journal mode.
///
/// WAL mode needs shared memory, which SQLite's in-memory databases lack: such a copy cannot be
/// read at all. Only our copy changes; a backup is always complete without its -wal file.
fn without_wal_flag(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.len() > 19 && (bytes[18] == 2 || bytes[19] == 2) {
        let mut v = bytes.to_vec();
        v[18] = 1;
        v[19] = 1;
        std::borrow::Cow::Owned(v)
    } else {
        std::borrow::Cow::Borrowed(bytes)
    }
}

impl ConfigStore {
    /// Checks and reads a ConfigStore database held in memory, merging its records through
    /// `schemas`. `db_bytes` are only read: SQLite works on a private copy.
    pub fn open(db_bytes: &[u8], schemas: Schemas) -> Result<ConfigStore, ConfigStoreError> {
        Self::open_with(db_bytes, SchemaJob::Ready(schemas))
    }

    /// [`ConfigStore::open`], with the schemas either given or read from a schema store on a
    /// second thread while this one checks and reads the database: the two are independent until
    /// the records are merged, and on a 7.0U2 host each takes most of a millisecond.
    fn open_with(db_bytes: &[u8], job: SchemaJob<'_>) -> Result<ConfigStore, ConfigStoreError> {
        std::thread::scope(|s| {
            let pending = match job {
                SchemaJob::Ready(schemas) => Err(schemas),
                SchemaJob::Store(bytes) => match Schemas::seen(bytes) {
                    Some(schemas) => Err(schemas),
                    None => Ok(s.spawn(move || Schemas::from_store(bytes))),
                },
            };
            let raw = Self::read_raw(db_bytes);
            let schemas = match pending {
                Err(schemas) => schemas,
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
            };
            Ok(raw?.merge(schemas))
        })
    }

    /// Everything of the database that does not need the schemas: checks, table, columns,
    /// triggers and the rows of the [`schema::KNOWN`] keys as stored.
    fn read_raw(db_bytes: &[u8]) -> Result<RawStore, ConfigStoreError> {
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
        let wal_header = db_bytes[18] == 2 || db_bytes[19] == 2;
        let conn = private_copy(db_bytes, false)?;
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
        let value_columns: Vec<String> = columns
            .iter()
            .filter(|c| {
                record::VALUE_COLUMNS
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(c))
            })
            .cloned()
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
        let triggers = table_triggers(&conn, &table)?;
        let read = |key: Key| read_rows(&conn, &table, &columns, &value_columns, key);
        Ok(RawStore {
            pci_devices: read(schema::PCI_DEVICES)?,
            device_names: read(schema::DEVICE_DATA)?,
            user_accounts: read(schema::USER_ACCOUNTS)?,
            lockdown_settings: read(schema::LOCKDOWN_SETTINGS)?,
            dcui_access: read(schema::DCUI_ACCESS)?,
            store: ConfigStore {
                size: db_bytes.len(),
                table,
                columns,
                value_columns,
                rows,
                wal_header,
                schemas: Schemas::built_in(),
                triggers,
                pci_devices: Vec::new(),
                device_names: Vec::new(),
                user_accounts: Vec::new(),
                lockdown_settings: Vec::new(),
                dcui_access: Vec::new(),
                image: db_bytes.to_vec(),
            },
        })
    }

    /// The ConfigStore of a decoded local.tgz, read through the host's own schema store beside
    /// it (or the built-in schemas when there is none): Ok(None) when the archive has no
    /// database (hosts before 7.0), an error when it has one that cannot be read.
    pub fn from_local(local: &Tgz) -> Result<Option<ConfigStore>, ConfigStoreError> {
        let Some(m) = local.member(MEMBER).filter(|m| m.is_file()) else {
            return Ok(None);
        };
        let job = match local.member(schema::MEMBER).filter(|m| m.is_file()) {
            Some(s) => SchemaJob::Store(local.data(s)),
            None => SchemaJob::Ready(Schemas::built_in()),
        };
        Self::open_with(local.data(m), job).map(Some)
    }

    /// The pci_devices record of a device, matched by address value.
    pub fn pci_device(&self, address: PciAddress) -> Option<&PciDeviceRecord> {
        self.pci_devices.iter().find(|r| r.address == Some(address))
    }

    /// The user_accounts record of a user, matched by its Identifier (the `name` instance id).
    pub fn user_account(&self, name: &str) -> Vec<&UserAccount> {
        self.user_accounts
            .iter()
            .filter(|u| u.identifier == name)
            .collect()
    }

    /// The device_data names of a PCI function (its own and those of logical devices on it).
    pub fn names_of(&self, address: PciAddress) -> Vec<&DeviceName> {
        self.device_names
            .iter()
            .filter(|n| n.address == Some(address))
            .collect()
    }
}

/// The schemas a store is opened with: given, or to be read from schema store bytes.
enum SchemaJob<'a> {
    Ready(Schemas),
    Store(&'a [u8]),
}

/// One stored row of a known key, before merging: identifier, rowid, value columns, others.
type RawRow = (
    String,
    Option<i64>,
    BTreeMap<String, StoredValue>,
    BTreeMap<String, StoredValue>,
);

/// A database read up to the merge.
struct RawStore {
    store: ConfigStore,
    pci_devices: Vec<RawRow>,
    device_names: Vec<RawRow>,
    user_accounts: Vec<RawRow>,
    lockdown_settings: Vec<RawRow>,
    dcui_access: Vec<RawRow>,
}

impl RawStore {
    fn merge(self, schemas: Schemas) -> ConfigStore {
        let merge = |rows: Vec<RawRow>, key: Key| -> Vec<Record> {
            let schema = schemas.get(key);
            rows.into_iter()
                .map(|(ident, rowid, values, other)| {
                    Record::merge(ident, rowid, values, &other, schema)
                })
                .collect()
        };
        let pci_devices = merge(self.pci_devices, schema::PCI_DEVICES)
            .into_iter()
            .map(pci_device)
            .collect();
        let device_names = merge(self.device_names, schema::DEVICE_DATA)
            .into_iter()
            .map(device_name)
            .collect();
        let user_accounts = merge(self.user_accounts, schema::USER_ACCOUNTS)
            .into_iter()
            .map(user_account)
            .collect();
        let lockdown_settings = merge(self.lockdown_settings, schema::LOCKDOWN_SETTINGS);
        let dcui_access = merge(self.dcui_access, schema::DCUI_ACCESS);
        ConfigStore {
            schemas,
            pci_devices,
            device_names,
            user_accounts,
            lockdown_settings,
            dcui_access,
            ..self.store
        }
    }
}

fn pci_device(record: Record) -> PciDeviceRecord {
    let owner_raw = record.str("owner").map(str::to_string);
    PciDeviceRecord {
        address: PciAddress::parse_pci(record.identifier.trim()).ok(),
        identifier: record.identifier.clone(),
        owner: owner_raw.as_deref().and_then(Ownership::from_store),
        owner_raw,
        owner_columns: record.columns_setting("owner"),
        record,
    }
}

fn user_account(record: Record) -> UserAccount {
    UserAccount {
        identifier: record.identifier.clone(),
        hash_columns: record.columns_setting("password_hash"),
        problems: record.problems.clone(),
        record,
    }
}

fn device_name(record: Record) -> DeviceName {
    let s = |f: &str| record.str(f).map(str::to_string);
    let bus_address = s("bus_address");
    DeviceName {
        identifier: record.identifier.clone(),
        alias: s("alias"),
        bus_type: s("bus_type"),
        address: bus_address.as_deref().and_then(parse_bus_address),
        bus_address,
        problems: record.problems.clone(),
    }
}

/// A private in-memory copy of a database, its WAL flags cleared ([`without_wal_flag`]): the
/// bytes go into memory SQLite allocates and frees, never the caller's. A hostile or damaged
/// database can make SQLite call no function with side effects from its schema (views,
/// triggers, defaults); read-only copies accept no writes of any kind, a `writable` one (for
/// [`ConfigStore::set_owner`]) takes the one UPDATE.
fn private_copy(bytes: &[u8], writable: bool) -> Result<Connection, ConfigStoreError> {
    use rusqlite::config::DbConfig;
    let image = without_wal_flag(bytes);
    let mut conn = Connection::open_in_memory().map_err(sql_err("open in memory"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(sql_err("enable defensive mode"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(sql_err("distrust the schema"))?;
    if !writable {
        conn.pragma_update(None, "query_only", true)
            .map_err(sql_err("make the connection query-only"))?;
    }
    conn.deserialize_read_exact(MAIN_DB, &image[..], image.len(), !writable)
        .map_err(sql_err("load a copy of the database"))?;
    Ok(conn)
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

fn table_triggers(conn: &Connection, table: &str) -> Result<Vec<Trigger>, ConfigStoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE ORDER BY name",
        )
        .map_err(sql_err("list triggers"))?;
    stmt.query_map([table], |r| {
        Ok(Trigger {
            name: r.get(0)?,
            sql: r.get(1)?,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(sql_err("list triggers"))
}

/// An SQL identifier in double quotes, embedded quotes doubled: column names come from the
/// database itself and are never trusted as SQL.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The rows of one key as stored, in rowid order.
fn read_rows(
    conn: &Connection,
    table: &str,
    columns: &[String],
    value_columns: &[String],
    key: Key,
) -> Result<Vec<RawRow>, ConfigStoreError> {
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
        Err(_) => conn.prepare(&without).map_err(sql_err("select records"))?,
    };
    let identifier = col("Identifier");
    let key_columns: Vec<String> = REQUIRED_COLUMNS.iter().map(|c| col(c)).collect();
    let rows = stmt
        .query_map([key.component, key.group, key.name], |r| {
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
            Ok((ident, rowid, values, other))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err("read records"))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_addresses_in_understood_forms_only() {
        let a = PciAddress::parse_pci("0000:16:00.0").unwrap();
        assert_eq!(parse_bus_address("p0000:16:00.0"), Some(a));
        assert_eq!(parse_bus_address("pci#p0000:16:00.0#1"), Some(a));
        for odd in [
            "m01000b00",
            "m01000300",
            "pci#m01000b00#0",
            "p16:00.0",
            "0000:16:00.0",
            "logical#logical#swdevroot#com.vmware.iscsi_vmk0#0",
            "pci#p0000:16:00.0#",
        ] {
            assert_eq!(parse_bus_address(odd), None, "{odd}");
        }
    }

    #[test]
    fn owner_words_both_ways() {
        for o in [Ownership::Passthru, Ownership::Vmkernel] {
            assert_eq!(Ownership::from_store(o.store_value()), Some(o));
            assert_eq!(Ownership::from_esx_conf(&o.to_string()), Some(o));
        }
        assert_eq!(Ownership::from_store("passthru"), None);
        assert_eq!(Ownership::from_esx_conf("OWNER_PASSTHRU"), None);
    }
}
