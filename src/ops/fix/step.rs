//! Building one configuration's step: the new esx.conf, ConfigStore and members, sealed back up
//! through local.tgz and state.tgz.

use super::devices::{device_edits, resolve_devices};
use super::diff::unified_diff;
use super::error::SealedDevice;
use super::{FixError, MemberChange, Plan, Request, Step, StepInput, StoreChange};
use crate::esxi::config::{Config, ConfigError, ESX_CONF};
use crate::esxi::configstore::{self, ConfigStore, ConfigStoreError, Ownership};
use crate::esxi::devices::HostDevice;
use crate::esxi::esxconf;
use crate::esxi::pci::PciAddress;
use crate::format::archive::{self, Tgz};
use crate::format::envelope::Encryption;
use crate::ops::inspect;

/// Computes one step: the new esx.conf, local.tgz and state.tgz (and whatever `wrap` puts
/// around the state archive).
pub(super) fn build_step(
    state_bytes: &[u8],
    location: &str,
    build: Option<(String, &'static str)>,
    what: &Request,
    resolved: &mut Option<Vec<PciAddress>>,
    plan: &mut Plan,
    wrap: impl Fn(Vec<u8>) -> Result<Vec<u8>, FixError>,
) -> Result<Step, FixError> {
    let cfg = Config::from_state_for_edit(state_bytes, location)?;
    match cfg.encryption {
        Encryption::None | Encryption::Kdf => {}
        Encryption::Tpm => {
            // esx.conf cannot be read, so a typed address is taken as lspci hex (as esxcli wants
            // it) unless it says `esx:`. Without esx.conf an unprefixed address cannot be checked
            // against its keys: when the decimal (esx.conf) and hex (lspci) readings name
            // different devices, both are returned, and the CLI prints a command for each.
            let devices = match what {
                Request::Devices(typed) => typed.iter().map(|t| SealedDevice::read(t)).collect(),
                _ => Vec::new(),
            };
            return Err(FixError::TpmSealed {
                location: location.to_string(),
                mode: cfg.encryption_mode.clone().unwrap_or_else(|| "?".into()),
                devices,
            });
        }
    }
    let conf = cfg.esx_conf.as_ref().expect("plain configs have esx.conf");
    let local = cfg.local.as_ref().expect("plain configs have local.tgz");
    let old_conf = local.require(ESX_CONF)?;
    let mut notes = Vec::new();
    let mut store_changes = Vec::new();
    let mut new_store = None;
    let edits = match what {
        Request::Edits(e) => e.clone(),
        Request::AllStorage | Request::Devices(_) => {
            let store = match ConfigStore::from_local(local) {
                Ok(s) => s,
                Err(source) => {
                    // Unreadable: on a build that reads esx.conf it does not matter; anywhere
                    // else it may hold the very setting to fix, so nothing is written.
                    let (obeyed, _) = inspect::devices_of(Some(conf), None, build.clone());
                    if obeyed.store != Some(crate::esxi::devices::Store::EsxConf) {
                        return Err(FixError::Store {
                            location: location.to_string(),
                            cause: source,
                        });
                    }
                    notes.push(format!(
                        "the ConfigStore (local.tgz > {}) cannot be read ({source}); {}, so it is left unchanged",
                        configstore::MEMBER,
                        obeyed.why
                    ));
                    None
                }
            };
            let (_, devices) = inspect::devices_of(Some(conf), store.as_ref(), build);
            let wanted =
                resolve_devices(conf, &devices, what, resolved, plan, &mut notes, location)?;
            let (edits, store_given_back) = device_edits(&devices, &wanted, &mut notes);
            if let Some(store) = &store {
                new_store = store_edits(store, &devices, &store_given_back, &mut store_changes)
                    .map_err(|cause| FixError::Store {
                        location: location.to_string(),
                        cause,
                    })?;
            }
            edits
        }
    };
    let (new_conf, changes) =
        esxconf::apply(old_conf, &edits).map_err(|source| FixError::EsxConf {
            where_: format!("{location} > local.tgz > {ESX_CONF}"),
            cause: source,
        })?;
    let diff = unified_diff(old_conf, &new_conf, location);
    let new_bytes = if changes.is_empty() && new_store.is_none() {
        state_bytes.to_vec()
    } else {
        let (mut tar, mut hunks) = match (&new_store, changes.is_empty()) {
            (Some(db), true) => local.replace_member_hunks(configstore::MEMBER, db)?,
            _ => local.replace_member_hunks(ESX_CONF, &new_conf)?,
        };
        if let (Some(db), false) = (&new_store, changes.is_empty()) {
            tar = local
                .with_tar(tar)?
                .replace_member(configstore::MEMBER, db)?;
            // Changes in two places of a rewritten tar: compress it whole (rare).
            hunks.clear();
        }
        let hunks = (!hunks.is_empty()).then_some(hunks.as_slice());
        let new_state = rewrap_local(&cfg, local, state_bytes, &tar, hunks, &mut notes)?;
        wrap(new_state)?
    };
    Ok(Step {
        location: location.to_string(),
        partition: None,
        bank_uuid: None,
        file: String::new(),
        changes,
        diff,
        notes,
        store_changes,
        member_changes: Vec::new(),
        old_bytes: state_bytes.to_vec(),
        new_bytes,
        new_esx_conf: new_conf,
        new_store,
        leftover: None,
        fat_leftover: None,
        names: None,
    })
}

/// A step that replaces members of local.tgz other than esx.conf (for `passwd`): `members`
/// are (path in local.tgz, new bytes, what changes in words), applied to the configuration
/// `cfg` decoded from `input.state` with `Config::from_state_for_edit`. Every other member
/// of local.tgz and of state.tgz keeps its bytes and headers; an encrypted (mode NONE)
/// configuration is sealed again with the same key and a fresh IV, as `fix` does. The
/// read-back check requires each member to decode to exactly these bytes and esx.conf to be
/// unchanged.
pub fn member_step(
    input: &StepInput<'_>,
    cfg: &Config,
    members: Vec<(String, Vec<u8>, Vec<String>)>,
    mut notes: Vec<String>,
) -> Result<Step, FixError> {
    let location = input.location;
    if cfg.encryption == Encryption::Tpm {
        return Err(FixError::TpmSealed {
            location: location.to_string(),
            mode: cfg.encryption_mode.clone().unwrap_or_else(|| "?".into()),
            devices: Vec::new(),
        });
    }
    let local = cfg.local.as_ref().ok_or_else(|| FixError::NoLocalTgz {
        location: location.to_string(),
    })?;
    let old_conf = local.require(ESX_CONF)?.to_vec();
    let new_bytes = if members.is_empty() {
        input.state.to_vec()
    } else {
        let (mut tar, mut hunks) = local.replace_member_hunks(&members[0].0, &members[0].1)?;
        for (name, bytes, _) in &members[1..] {
            tar = local.with_tar(tar)?.replace_member(name, bytes)?;
            // Changes in two places of a rewritten tar: compress it whole.
            hunks.clear();
        }
        let hunks = (!hunks.is_empty()).then_some(hunks.as_slice());
        let new_state = rewrap_local(cfg, local, input.state, &tar, hunks, &mut notes)?;
        (input.wrap)(new_state)?
    };
    Ok(Step {
        location: location.to_string(),
        partition: None,
        bank_uuid: None,
        file: String::new(),
        changes: Vec::new(),
        diff: String::new(),
        notes,
        store_changes: Vec::new(),
        member_changes: members
            .into_iter()
            .map(|(member, bytes, what)| MemberChange {
                member,
                what,
                bytes,
            })
            .collect(),
        old_bytes: input.state.to_vec(),
        new_bytes,
        new_esx_conf: old_conf,
        new_store: None,
        leftover: None,
        fat_leftover: None,
        names: None,
    })
}

/// The ConfigStore side of giving devices back to the vmkernel: every pci_devices record of
/// `given_back` whose owner is OWNER_PASSTHRU is set to OWNER_VMKERNEL, one after the other in
/// the same copy of the database. Any record that cannot be changed (schema that differs,
/// record that breaks its schema, unknown triggers...) fails the whole fix before anything is
/// written. Returns the new database when anything changed.
fn store_edits(
    store: &ConfigStore,
    devices: &[HostDevice],
    given_back: &[PciAddress],
    out: &mut Vec<StoreChange>,
) -> Result<Option<Vec<u8>>, ConfigStoreError> {
    let mut current = store.clone();
    let mut bytes = None;
    for addr in given_back {
        let Some(rec) = current.pci_device(*addr).cloned() else {
            continue;
        };
        let rowid = rec.record.rowid.ok_or_else(|| {
            configstore::EditRefusal::ReadBack(format!(
                "record {} has no rowid to address it by",
                rec.identifier
            ))
        })?;
        let e = current.set_owner(rowid, Ownership::Vmkernel)?;
        let d = devices.iter().find(|d| d.address == *addr);
        out.push(StoreChange {
            member: configstore::MEMBER.to_string(),
            key: configstore::schema::PCI_DEVICES.to_string(),
            identifier: e.identifier.clone(),
            rowid,
            pci_address: addr.to_pci_string(),
            esx_address: d
                .map(|d| d.esx_address.clone())
                .unwrap_or_else(|| addr.to_esx_string()),
            bus_address: format!("p{}", addr.to_pci_string()),
            old_owner: rec.owner_raw.clone().unwrap_or_default(),
            new_owner: Ownership::Vmkernel.store_value().to_string(),
            columns: e.columns.clone(),
            modified_time_before: e.modified_time.0.clone(),
            modified_time_after: e.modified_time.1.clone(),
            revision_before: e.revision.0,
            revision_after: e.revision.1,
        });
        bytes = Some(e.bytes);
        current = *e.after;
    }
    Ok(bytes)
}

/// The new state archive around an edited local.tgz tar: local.tgz recompressed only around the
/// change (`hunks`), then put back where it came from: the state itself (a bare local.tgz),
/// sealed again in its envelope (same header, attributes and key, a fresh IV; a note says so),
/// or spliced into state.tgz as its `local.tgz` member.
fn rewrap_local(
    cfg: &Config,
    local: &Tgz,
    state_bytes: &[u8],
    tar: &[u8],
    hunks: Option<&[crate::format::deflate::Hunk]>,
    notes: &mut Vec<String>,
) -> Result<Vec<u8>, FixError> {
    let bare = std::ptr::eq(local, &cfg.state) || cfg.state.member(ESX_CONF).is_some();
    let local_gz = if bare {
        state_bytes
    } else if cfg.sealed.is_some() {
        &[][..]
    } else {
        cfg.state.require("local.tgz")?
    };
    let new_local = archive::reseal(local_gz, local, tar, hunks);
    Ok(if bare {
        new_local
    } else if let Some(sealed) = &cfg.sealed {
        let iv = crate::format::envelope::fresh_iv().map_err(ConfigError::from)?;
        let ve = sealed
            .envelope
            .seal(&new_local, &sealed.key.key, iv)
            .map_err(ConfigError::from)?;
        notes.push(format!(
            "the configuration is encrypted (mode {}): the changed local.tgz is sealed again with the same key (id {}) and a fresh IV; encryption.info is not changed. Re-encrypted configurations have not yet been booted on a real host",
            cfg.encryption_mode.as_deref().unwrap_or("?"),
            sealed.key.key_id
        ));
        archive::seal(
            &cfg.state.replace_member("local.tgz.ve", &ve)?,
            &cfg.state.gzip,
        )
    } else {
        let (tar, hunks) = cfg.state.replace_member_hunks("local.tgz", &new_local)?;
        archive::reseal(state_bytes, &cfg.state, &tar, Some(&hunks))
    })
}
