//! The ConfigStore's network records (7.0U2 and later) and the changes `bootbank network` makes
//! in them, each through SQLite's own `UPDATE` of one row's `UserValue`, so that the store's
//! triggers maintain `ModifiedTime` and `Revision` as when ESXi edits the record.
//!
//! The four keys, their fields and enum values are read from the host's own schema store, never
//! assumed; the real 7.0.2 host (`esx-base-7.0.2_0.0.17867351-schema`) defines them so:
//! - `esx/network/vmknics` (instance id `device`): `ip` {`dhcp` boolean, `ipv4_address` string,
//!   `ipv4_subnet_mask` string, ...}, `port_group`, `port_connection_type` (`VSS_PORT_GROUP`,
//!   `VDS`, `OPAQUE_NETWORK`), `net_stack_instance_key`, `enabled_services.management`, `mac`
//!   (vital), `ip_route_default_gateway`;
//! - `esx/network/net_stacks` (instance id `key`): `routing_config` {`source` enum `DHCP` |
//!   `MANUAL`, `ipv4_default_gateway` string};
//! - `esx/network/nics` (instance id `name`): `mac` (vital), `virtual_mac` (vital);
//! - `esx/network_vss/switches` (instance id `name`): `bridge.nics`, `port_groups` (instance id
//!   `name`, `vlan_id` long 0..4095), `policy.nic_teaming.active_nics`/`standby_nics`.
//!
//! Where ESXi keeps each value is read from the real host's records: vmk0 (DHCP) holds `ip` in
//! UserValue with `dhcp: true` and no address; its default gateway sits in the net stack's
//! `routing_config` (`{"source":"DHCP","ipv4_default_gateway":"10.199.5.1"}`), not in the
//! vmknic's `ip_route_default_gateway`; vSwitch0's port groups and their `vlan_id` are in
//! UserValue. A static address therefore goes into the vmknic's UserValue `ip` (`dhcp: false`,
//! `ipv4_address`, `ipv4_subnet_mask`, the fields the host's schema lists) and the gateway into
//! the net stack's `routing_config` (`source: MANUAL`, the schema's other enum value).
//!
//! Before anything changes: the host's schema must list every field written, with the type of
//! the value, not vital, not cached, and the enum value or range; the record must merge cleanly;
//! no other value column may set the field. After each UPDATE the whole database is compared row
//! by row with the state before it (only that row, and there only UserValue, ModifiedTime and
//! Revision may differ), and the new database is read back.

use super::edit::{dump, only_row_changed};
use super::record::Record;
use super::schema::{Key, Schema, SchemaSource};
use super::{
    ConfigStore, ConfigStoreError, StoredValue, integrity_check, private_copy, quote, read_rows,
    sql_err,
};
use rusqlite::MAIN_DB;
use serde::Serialize;
use serde_json::{Map, Value};
use std::net::Ipv4Addr;

/// vmkernel network interfaces, instance id `device`.
pub const VMKNICS: Key = Key {
    component: "esx",
    group: "network",
    name: "vmknics",
};
/// TCP/IP stacks and their routing, instance id `key`.
pub const NET_STACKS: Key = Key {
    component: "esx",
    group: "network",
    name: "net_stacks",
};
/// Physical NICs (uplinks), instance id `name`.
pub const NICS: Key = Key {
    component: "esx",
    group: "network",
    name: "nics",
};
/// Standard vSwitches with their port groups, instance id `name`.
pub const VSS_SWITCHES: Key = Key {
    component: "esx",
    group: "network_vss",
    name: "switches",
};
/// The keys `bootbank network` reads.
pub const NETWORK_KEYS: [Key; 4] = [VMKNICS, NET_STACKS, NICS, VSS_SWITCHES];

/// The column every network edit writes: where the real host keeps what the user set.
const USER_VALUE: &str = "UserValue";

/// The network records of a ConfigStore, merged through the host's own schemas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkRecords {
    /// Per key: where its schema came from; None when the host's schema store lacks it (or the
    /// configuration has none): records are then shown as stored and never changed.
    #[serde(skip)]
    pub schemas: Vec<(Key, Option<Schema>)>,
    pub vmknics: Vec<Record>,
    pub net_stacks: Vec<Record>,
    pub nics: Vec<Record>,
    pub switches: Vec<Record>,
}

impl NetworkRecords {
    /// The host's schema of one of the [`NETWORK_KEYS`].
    pub fn schema(&self, key: Key) -> Option<&Schema> {
        self.schemas
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, s)| s.as_ref())
    }

    /// The records of one key.
    pub fn records(&self, key: Key) -> &[Record] {
        match key.name {
            "vmknics" => &self.vmknics,
            "net_stacks" => &self.net_stacks,
            "nics" => &self.nics,
            _ => &self.switches,
        }
    }
}

/// Why a network edit changed nothing. Facts only: the CLI writes the words around them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    /// Without the host's own schema of the key, bootbank cannot tell which fields exist.
    #[error(
        "the host's schema store has no schema for {key}: bootbank writes only fields the host's schema lists"
    )]
    NoHostSchema { key: String },
    #[error("the host's schema of {key} {why} (field {path})")]
    SchemaField {
        key: String,
        path: String,
        why: String,
    },
    #[error("{key} has no record {identifier}")]
    NoRecord { key: String, identifier: String },
    #[error("{key} has {count} records {identifier}")]
    Ambiguous {
        key: String,
        identifier: String,
        count: usize,
    },
    #[error("{key} record {identifier} cannot be read as ESXi reads it: {}", .problems.join("; "))]
    RecordProblems {
        key: String,
        identifier: String,
        problems: Vec<String>,
    },
    #[error("{key} record {identifier} has no UserValue JSON object to change")]
    NoUserValue { key: String, identifier: String },
    #[error(
        "{key} record {identifier}: {path} is set in {column}, where bootbank does not edit it"
    )]
    FieldElsewhere {
        key: String,
        identifier: String,
        path: String,
        column: String,
    },
    #[error("vmknic {vmknic} is connected as {connection}, not to a standard vSwitch port group")]
    NotStandardSwitch { vmknic: String, connection: String },
    #[error("no standard vSwitch has the port group \"{port_group}\" of vmknic {vmknic}")]
    NoPortGroup { vmknic: String, port_group: String },
    #[error("vmknic {vmknic} names no {what}")]
    Unnamed { vmknic: String, what: String },
    #[error("{key} record {identifier} already reads so: nothing to change")]
    AlreadySet { key: String, identifier: String },
    #[error("after the UPDATE {0}")]
    ReadBack(String),
}

/// The IPv4 setting of a vmknic asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv4Setting {
    /// Address from DHCP: the vmknic's `ip.dhcp` becomes true and its `ipv4_address` and
    /// `ipv4_subnet_mask` are dropped; the net stack's `routing_config.source` becomes `DHCP`
    /// (its `ipv4_default_gateway` is left as it is).
    Dhcp,
    /// A fixed address: `ip.dhcp` false in the vmknic's UserValue, the gateway in its net
    /// stack's `routing_config` with `source` `MANUAL`.
    Static {
        /// The vmknic's address, written as `ip.ipv4_address`.
        address: Ipv4Addr,
        /// Its subnet mask in dotted form (`255.255.255.0`; `bootbank::mask_of` turns
        /// a prefix length into one), written as `ip.ipv4_subnet_mask`.
        netmask: Ipv4Addr,
        /// The default gateway, written as `routing_config.ipv4_default_gateway` of the net stack
        /// the vmknic belongs to, so it applies to every vmknic on that stack.
        gateway: Ipv4Addr,
    },
}

/// One row a network edit changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowChange {
    /// `esx/network/vmknics`.
    pub key: String,
    pub identifier: String,
    pub rowid: i64,
    /// Always `UserValue`.
    pub column: String,
    /// Each field changed, in words: `ip.dhcp: true -> false`.
    pub fields: Vec<String>,
    pub old_text: String,
    pub new_text: String,
    /// Whether the new text had to be written anew by serde_json (keys sorted) rather than
    /// edited in place, every unchanged byte kept (`json_span::retext`).
    pub reserialised: bool,
    pub modified_time: (Option<String>, Option<String>),
    pub revision: (Option<i64>, Option<i64>),
}

/// What a network edit changed.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkEdit {
    /// The whole new database.
    pub bytes: Vec<u8>,
    pub rows: Vec<RowChange>,
    /// The network records read from the new bytes.
    pub after: NetworkRecords,
}

/// One planned row change: the record, its new UserValue object, the fields in words.
struct Planned<'a> {
    key: Key,
    record: &'a Record,
    new_user: Value,
    fields: Vec<String>,
}

impl ConfigStore {
    /// Reads the [`NETWORK_KEYS`] records, each merged through the host's schema of it from
    /// `schema_store` (the bytes of `etc/vmware/schemastore/schema-store-1`); without a schema
    /// store, or for a key it lacks, the records are merged through an empty schema (as stored,
    /// no defaults) and [`NetworkRecords::schema`] is None.
    pub fn network_records(
        &self,
        schema_store: Option<&[u8]>,
    ) -> Result<NetworkRecords, ConfigStoreError> {
        let mut schemas = Vec::new();
        for key in NETWORK_KEYS {
            let s = match schema_store {
                Some(bytes) => host_schema(bytes, key)?,
                None => None,
            };
            schemas.push((key, s));
        }
        self.network_records_with(&NetworkRecords {
            schemas,
            vmknics: Vec::new(),
            net_stacks: Vec::new(),
            nics: Vec::new(),
            switches: Vec::new(),
        })
    }

    /// Sets the IPv4 configuration of vmknic `vmk`: DHCP, or a static address, mask and
    /// default gateway (see the module comment for where each goes and why).
    pub fn set_vmknic_ipv4(
        &self,
        net: &NetworkRecords,
        vmk: &str,
        setting: &Ipv4Setting,
    ) -> Result<NetworkEdit, ConfigStoreError> {
        let vmknic = one(net, VMKNICS, vmk)?;
        let schema = host_schema_of(net, VMKNICS)?;
        let (dhcp, address, mask) = match setting {
            Ipv4Setting::Dhcp => (true, None, None),
            Ipv4Setting::Static {
                address, netmask, ..
            } => (false, Some(address.to_string()), Some(netmask.to_string())),
        };
        check_field(schema, &["ip", "dhcp"], &Value::Bool(dhcp))?;
        let mut vmk_user = user_object(VMKNICS, vmknic)?;
        let mut fields = Vec::new();
        {
            let ip = vmk_user
                .as_object_mut()
                .expect("user_object is an object")
                .entry("ip")
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(ip) = ip.as_object_mut() else {
                return Err(NetworkRefusal::SchemaField {
                    key: VMKNICS.to_string(),
                    path: "ip".into(),
                    why: "gives `ip` a value that is not an object in this record".into(),
                }
                .into());
            };
            set(ip, "dhcp", Value::Bool(dhcp), "ip.", &mut fields);
            for (name, v) in [("ipv4_address", address), ("ipv4_subnet_mask", mask)] {
                match v {
                    Some(v) => {
                        let v = Value::String(v);
                        check_field(schema, &["ip", name], &v)?;
                        set(ip, name, v, "ip.", &mut fields);
                    }
                    // The real DHCP record has neither field: going back to DHCP drops them.
                    None => {
                        if let Some(old) = ip.remove(name) {
                            fields.push(format!("ip.{name}: {old} -> (removed)"));
                        }
                    }
                }
            }
        }
        for path in [
            ["ip", "dhcp"],
            ["ip", "ipv4_address"],
            ["ip", "ipv4_subnet_mask"],
        ] {
            only_in_user_value(VMKNICS, vmknic, &path)?;
        }
        let mut planned = vec![Planned {
            key: VMKNICS,
            record: vmknic,
            new_user: vmk_user,
            fields,
        }];

        // The default gateway of the vmknic's net stack.
        let stack_key =
            vmknic
                .str("net_stack_instance_key")
                .ok_or_else(|| NetworkRefusal::Unnamed {
                    vmknic: vmk.to_string(),
                    what: "net stack (net_stack_instance_key)".into(),
                })?;
        let stack = one(net, NET_STACKS, stack_key)?;
        let stack_schema = host_schema_of(net, NET_STACKS)?;
        let (source, gateway) = match setting {
            Ipv4Setting::Dhcp => ("DHCP", None),
            Ipv4Setting::Static { gateway, .. } => ("MANUAL", Some(gateway.to_string())),
        };
        check_field(
            stack_schema,
            &["routing_config", "source"],
            &Value::String(source.into()),
        )?;
        let mut stack_user = user_object(NET_STACKS, stack)?;
        let mut fields = Vec::new();
        {
            let rc = stack_user
                .as_object_mut()
                .expect("user_object is an object")
                .entry("routing_config")
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(rc) = rc.as_object_mut() else {
                return Err(NetworkRefusal::SchemaField {
                    key: NET_STACKS.to_string(),
                    path: "routing_config".into(),
                    why: "gives `routing_config` a value that is not an object in this record"
                        .into(),
                }
                .into());
            };
            set(
                rc,
                "source",
                Value::String(source.into()),
                "routing_config.",
                &mut fields,
            );
            if let Some(g) = gateway {
                let g = Value::String(g);
                check_field(
                    stack_schema,
                    &["routing_config", "ipv4_default_gateway"],
                    &g,
                )?;
                set(
                    rc,
                    "ipv4_default_gateway",
                    g,
                    "routing_config.",
                    &mut fields,
                );
            }
        }
        for path in [
            ["routing_config", "source"],
            ["routing_config", "ipv4_default_gateway"],
        ] {
            only_in_user_value(NET_STACKS, stack, &path)?;
        }
        if !fields.is_empty() {
            planned.push(Planned {
                key: NET_STACKS,
                record: stack,
                new_user: stack_user,
                fields,
            });
        }
        self.apply_rows(net, planned)
    }

    /// Sets the VLAN of the standard-switch port group vmknic `vmk` is connected to.
    pub fn set_port_group_vlan(
        &self,
        net: &NetworkRecords,
        vmk: &str,
        vlan: u16,
    ) -> Result<NetworkEdit, ConfigStoreError> {
        let vmknic = one(net, VMKNICS, vmk)?;
        host_schema_of(net, VMKNICS)?;
        let connection = vmknic.str("port_connection_type").unwrap_or("?");
        if connection != "VSS_PORT_GROUP" {
            return Err(NetworkRefusal::NotStandardSwitch {
                vmknic: vmk.to_string(),
                connection: connection.to_string(),
            }
            .into());
        }
        let pg = vmknic
            .str("port_group")
            .ok_or_else(|| NetworkRefusal::Unnamed {
                vmknic: vmk.to_string(),
                what: "port group".into(),
            })?;
        let schema = host_schema_of(net, VSS_SWITCHES)?;
        let value = Value::from(vlan);
        check_field(schema, &["port_groups", "vlan_id"], &value)?;
        let holders: Vec<&Record> = net
            .switches
            .iter()
            .filter(|s| port_group_item(&s.merged, pg).is_some())
            .collect();
        let switch = match holders.as_slice() {
            [one] => *one,
            [] => {
                return Err(NetworkRefusal::NoPortGroup {
                    vmknic: vmk.to_string(),
                    port_group: pg.to_string(),
                }
                .into());
            }
            many => {
                return Err(NetworkRefusal::Ambiguous {
                    key: VSS_SWITCHES.to_string(),
                    identifier: format!("holding port group {pg}"),
                    count: many.len(),
                }
                .into());
            }
        };
        check_record(VSS_SWITCHES, switch)?;
        // No column but UserValue may set this port group's vlan_id.
        for (col, v) in &switch.columns {
            if col == USER_VALUE {
                continue;
            }
            if let Some(item) = v
                .json()
                .and_then(Value::as_object)
                .and_then(|j| port_group_item(j, pg))
                && item.get("vlan_id").is_some()
            {
                return Err(NetworkRefusal::FieldElsewhere {
                    key: VSS_SWITCHES.to_string(),
                    identifier: switch.identifier.clone(),
                    path: format!("port_groups[{pg}].vlan_id"),
                    column: col.clone(),
                }
                .into());
            }
        }
        let mut user = user_object(VSS_SWITCHES, switch)?;
        let item = user
            .get_mut("port_groups")
            .and_then(Value::as_array_mut)
            .and_then(|a| {
                a.iter_mut()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(pg))
            })
            .and_then(Value::as_object_mut)
            .ok_or_else(|| NetworkRefusal::FieldElsewhere {
                key: VSS_SWITCHES.to_string(),
                identifier: switch.identifier.clone(),
                path: format!("port_groups[{pg}]"),
                column: "a column other than UserValue".into(),
            })?;
        let mut fields = Vec::new();
        set(
            item,
            "vlan_id",
            value,
            &format!("port_groups[{pg}]."),
            &mut fields,
        );
        self.apply_rows(
            net,
            vec![Planned {
                key: VSS_SWITCHES,
                record: switch,
                new_user: user,
                fields,
            }],
        )
    }

    /// Writes each planned row's new UserValue with one UPDATE on a private copy, checking the
    /// whole database row by row after each, then reads the result back.
    fn apply_rows(
        &self,
        net: &NetworkRecords,
        planned: Vec<Planned<'_>>,
    ) -> Result<NetworkEdit, ConfigStoreError> {
        let planned: Vec<Planned<'_>> = planned
            .into_iter()
            .filter(|p| !p.fields.is_empty())
            .collect();
        if planned.is_empty() {
            return Err(NetworkRefusal::AlreadySet {
                key: VMKNICS.to_string(),
                identifier: "(every record asked for)".into(),
            }
            .into());
        }
        self.check_triggers()?;
        let mut conn = private_copy(&self.image, true)?;
        let table = quote(&self.table);
        let col = quote(USER_VALUE);
        let mut prev = dump(&conn)?;
        let mut rows = Vec::new();
        for p in &planned {
            let rowid = p.record.rowid.ok_or_else(|| NetworkRefusal::NoRecord {
                key: p.key.to_string(),
                identifier: format!("{} (no rowid)", p.record.identifier),
            })?;
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
                    return Err(NetworkRefusal::NoUserValue {
                        key: p.key.to_string(),
                        identifier: p.record.identifier.clone(),
                    }
                    .into());
                }
            };
            // Only the bytes of the changed fields change (key order, spacing and every other
            // field as ESXi wrote them); a text that cannot be edited so is written anew by
            // serde_json (keys sorted), and the plan says so.
            let (new_text, reserialised) = match super::json_span::retext(&old_text, &p.new_user) {
                Some(t) => (t, false),
                None => (p.new_user.to_string(), true),
            };
            let n = conn
                .execute(
                    &format!("UPDATE {table} SET {col} = ?2 WHERE rowid = ?1"),
                    rusqlite::params![rowid, new_text],
                )
                .map_err(sql_err("update the record"))?;
            if n != 1 {
                return Err(
                    NetworkRefusal::ReadBack(format!("the UPDATE changed {n} rows")).into(),
                );
            }
            let now = dump(&conn)?;
            only_row_changed(
                &prev,
                &now,
                &self.table,
                rowid,
                &[USER_VALUE, "ModifiedTime", "Revision"],
            )
            .map_err(|e| NetworkRefusal::ReadBack(e.to_string()))?;
            prev = now;
            rows.push(RowChange {
                key: p.key.to_string(),
                identifier: p.record.identifier.clone(),
                rowid,
                column: USER_VALUE.to_string(),
                fields: p.fields.clone(),
                old_text,
                new_text,
                reserialised,
                modified_time: (p.record.modified_time.clone(), None),
                revision: (p.record.revision, None),
            });
        }
        integrity_check(&conn, super::SQLITE_MAGIC)?;
        let mut bytes = conn
            .serialize(MAIN_DB)
            .map_err(sql_err("serialize the database"))?
            .to_vec();
        if self.wal_header && bytes.len() > 19 {
            bytes[18] = self.image[18];
            bytes[19] = self.image[19];
        }
        // Read back: the records bootbank reads elsewhere are unchanged, each edited record
        // reads back with its new UserValue and no problem, every other network record as before.
        let store = ConfigStore::open(&bytes, self.schemas.clone())?;
        if store.pci_devices != self.pci_devices
            || store.device_names != self.device_names
            || store.user_accounts != self.user_accounts
        {
            return Err(NetworkRefusal::ReadBack(
                "device or account records read back differently".into(),
            )
            .into());
        }
        let after = store.network_records_with(net)?;
        for key in NETWORK_KEYS {
            let (b, a) = (net.records(key), after.records(key));
            if b.len() != a.len() {
                return Err(
                    NetworkRefusal::ReadBack(format!("{key} has another row count")).into(),
                );
            }
            for (rb, ra) in b.iter().zip(a) {
                match planned
                    .iter()
                    .find(|p| p.key == key && p.record.rowid == rb.rowid)
                {
                    None if rb != ra => {
                        return Err(NetworkRefusal::ReadBack(format!(
                            "{key} record {} reads back differently",
                            rb.identifier
                        ))
                        .into());
                    }
                    None => {}
                    Some(p) => {
                        if ra.columns.get(USER_VALUE).and_then(StoredValue::json)
                            != Some(&p.new_user)
                            || !ra.problems.is_empty()
                        {
                            return Err(NetworkRefusal::ReadBack(format!(
                                "{key} record {} does not read back as written",
                                rb.identifier
                            ))
                            .into());
                        }
                        if let Some(r) = rows.iter_mut().find(|r| Some(r.rowid) == ra.rowid) {
                            r.modified_time.1 = ra.modified_time.clone();
                            r.revision.1 = ra.revision;
                        }
                    }
                }
            }
        }
        Ok(NetworkEdit { bytes, rows, after })
    }

    /// [`ConfigStore::network_records`] with the schemas of `like`.
    fn network_records_with(
        &self,
        like: &NetworkRecords,
    ) -> Result<NetworkRecords, ConfigStoreError> {
        let conn = private_copy(&self.image, false)?;
        let read = |key: Key| -> Result<Vec<Record>, ConfigStoreError> {
            let schema = like.schema(key).cloned().unwrap_or(Schema {
                key,
                source: SchemaSource::Host { vib_id: None },
                value: Value::Object(Map::new()),
            });
            Ok(
                read_rows(&conn, &self.table, &self.columns, &self.value_columns, key)?
                    .into_iter()
                    .map(|(ident, rowid, values, other)| {
                        Record::merge(ident, rowid, values, &other, &schema)
                    })
                    .collect(),
            )
        };
        Ok(NetworkRecords {
            schemas: like.schemas.clone(),
            vmknics: read(VMKNICS)?,
            net_stacks: read(NET_STACKS)?,
            nics: read(NICS)?,
            switches: read(VSS_SWITCHES)?,
        })
    }
}

/// The port group item named `pg` of a switch value (merged or one column's).
pub fn port_group_item<'a>(switch: &'a Map<String, Value>, pg: &str) -> Option<&'a Value> {
    switch
        .get("port_groups")?
        .as_array()?
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some(pg))
}

/// Sets `name` in `obj` to `v`, noting the change in words when it is one.
fn set(obj: &mut Map<String, Value>, name: &str, v: Value, prefix: &str, out: &mut Vec<String>) {
    let old = obj.get(name).cloned();
    if old.as_ref() == Some(&v) {
        return;
    }
    out.push(format!(
        "{prefix}{name}: {} -> {v}",
        old.map(|o| o.to_string())
            .unwrap_or_else(|| "(not set)".into())
    ));
    obj.insert(name.to_string(), v);
}

/// The single record of `key` whose Identifier is `id`, sound.
fn one<'a>(net: &'a NetworkRecords, key: Key, id: &str) -> Result<&'a Record, ConfigStoreError> {
    let hits: Vec<&Record> = net
        .records(key)
        .iter()
        .filter(|r| r.identifier == id)
        .collect();
    let r = match hits.as_slice() {
        [one] => *one,
        [] => {
            return Err(NetworkRefusal::NoRecord {
                key: key.to_string(),
                identifier: id.to_string(),
            }
            .into());
        }
        many => {
            return Err(NetworkRefusal::Ambiguous {
                key: key.to_string(),
                identifier: id.to_string(),
                count: many.len(),
            }
            .into());
        }
    };
    check_record(key, r)?;
    Ok(r)
}

fn check_record(key: Key, r: &Record) -> Result<(), ConfigStoreError> {
    if r.problems.is_empty() {
        Ok(())
    } else {
        Err(NetworkRefusal::RecordProblems {
            key: key.to_string(),
            identifier: r.identifier.clone(),
            problems: r.problems.clone(),
        }
        .into())
    }
}

fn host_schema_of(net: &NetworkRecords, key: Key) -> Result<&Schema, ConfigStoreError> {
    net.schema(key).ok_or_else(|| {
        NetworkRefusal::NoHostSchema {
            key: key.to_string(),
        }
        .into()
    })
}

/// The record's UserValue object, to be changed.
fn user_object(key: Key, r: &Record) -> Result<Value, ConfigStoreError> {
    match r.columns.get(USER_VALUE).and_then(StoredValue::json) {
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        _ => Err(NetworkRefusal::NoUserValue {
            key: key.to_string(),
            identifier: r.identifier.clone(),
        }
        .into()),
    }
}

/// Refuses when a value column other than UserValue sets the field at `path`.
fn only_in_user_value(key: Key, r: &Record, path: &[&str]) -> Result<(), ConfigStoreError> {
    for (col, v) in &r.columns {
        if col == USER_VALUE {
            continue;
        }
        let mut at = v.json();
        for p in path {
            at = at.and_then(|x| x.get(p));
        }
        if at.is_some() {
            return Err(NetworkRefusal::FieldElsewhere {
                key: key.to_string(),
                identifier: r.identifier.clone(),
                path: path.join("."),
                column: col.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// The schema node of a field path: through `items` of array keys and array fields, then
/// `properties` at each level.
pub fn field_node<'a>(schema: &'a Schema, path: &[&str]) -> Option<&'a Value> {
    let mut node = &schema.value;
    for p in path {
        if node.get("type").and_then(Value::as_str) == Some("array") {
            node = node.get("items")?;
        }
        node = node.get("properties")?.get(p)?;
    }
    Some(node)
}

/// Checks that the host's schema lists `path`, not vital, not cached, with the type of `v`, its
/// enum value or range.
fn check_field(schema: &Schema, path: &[&str], v: &Value) -> Result<(), ConfigStoreError> {
    let refuse = |why: String| NetworkRefusal::SchemaField {
        key: schema.key.to_string(),
        path: path.join("."),
        why,
    };
    let node = field_node(schema, path).ok_or_else(|| refuse("has no such field".into()))?;
    let flag = |n: &str| node.get(n).and_then(Value::as_bool).unwrap_or(false);
    if flag("vital") {
        return Err(refuse("marks it vital (hardware-owned)".into()).into());
    }
    if flag("cached") {
        return Err(refuse("marks it cached (runtime state)".into()).into());
    }
    let ty = node.get("type").and_then(Value::as_str).unwrap_or("?");
    let ok = match ty {
        "string" | "ID" => v.is_string(),
        "boolean" => v.is_boolean(),
        "long" | "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    };
    if !ok {
        return Err(refuse(format!("gives it the type {ty}, not the one of {v}")).into());
    }
    if let Some(allowed) = node.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        return Err(refuse(format!("does not allow {v}")).into());
    }
    if let Some(n) = v.as_i64() {
        let lo = node.get("minimum").and_then(Value::as_i64);
        let hi = node.get("maximum").and_then(Value::as_i64);
        if lo.is_some_and(|lo| n < lo) || hi.is_some_and(|hi| n > hi) {
            return Err(refuse(format!(
                "allows {}..{}, not {n}",
                lo.map(|x| x.to_string()).unwrap_or_default(),
                hi.map(|x| x.to_string()).unwrap_or_default()
            ))
            .into());
        }
    }
    Ok(())
}

/// The host's schema of `key` from a schema store (table `ConfigSchema`), or None when it has
/// no such row.
fn host_schema(bytes: &[u8], key: Key) -> Result<Option<Schema>, ConfigStoreError> {
    if bytes.len() < 100 || &bytes[..16] != super::SQLITE_MAGIC {
        return Err(ConfigStoreError::SchemaStore {
            message: format!(
                "{} is not an SQLite database ({} bytes)",
                super::schema::MEMBER,
                bytes.len()
            ),
        });
    }
    let conn = private_copy(bytes, false)?;
    let rows: Vec<(Option<String>, Option<String>)> = conn
        .prepare(
            "SELECT VibId, Value FROM ConfigSchema WHERE Component = ?1 AND ConfigGroup = ?2 AND Name = ?3",
        )
        .and_then(|mut s| {
            s.query_map([key.component, key.group, key.name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql_err("schema store: read a network schema"))?;
    let Some((vib_id, Some(text))) = rows.into_iter().next() else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| ConfigStoreError::SchemaStore {
        message: format!("the schema of {key} is not JSON: {e}"),
    })?;
    Ok(Some(Schema {
        key,
        source: SchemaSource::Host { vib_id },
        value,
    }))
}
