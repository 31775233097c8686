//! The PCI devices of a configuration as the host will see them: esx.conf's `/device/` lines
//! (up to 7.0U1) and the ConfigStore's `pci_devices` and `device_data` records (7.0U2 and
//! later), one entry per device, with where its ownership was read and which store ESXi obeys
//! on that build.
//!
//! From 7.0U2 on, esx.conf holds no `/device/` lines: the upgrade moves ownership and names into
//! the ConfigStore (reference section 6; the real 7.0.2 host has 206 esx.conf lines and not one
//! `/device/` line, and its UpgradeStatus table lists `libupgradehardwareconfig.so` and
//! `libupgradedevicedata.so`). A 6.x host upgraded since may still carry stale lines, which that
//! build no longer reads.

use crate::esxi::configstore::{ConfigStore, DeviceName, Ownership, PciDeviceRecord, schema};
use crate::esxi::esxconf::{self, EsxConf};
use crate::esxi::pci::PciAddress;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// Where a device's ownership (or name) was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Store {
    #[serde(rename = "esx.conf")]
    EsxConf,
    #[serde(rename = "configstore")]
    ConfigStore,
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::EsxConf => "esx.conf",
            Store::ConfigStore => "ConfigStore",
        })
    }
}

/// The first ESXi release that keeps device ownership in the ConfigStore (7.0 Update 2).
pub const CONFIGSTORE_SINCE: (u32, u32, u32) = (7, 0, 2);

/// Which store ESXi reads device ownership from, and why bootbank thinks so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Obeyed {
    /// None when the build is unknown: both stores are then reported, and a device is taken as
    /// passed through when either says so.
    pub store: Option<Store>,
    /// The build that decided it, e.g. `7.0.2-0.0.17867351`.
    pub build: Option<String>,
    /// Where the build was read: `boot.cfg`, `Manifest.txt`, `schema store`.
    pub build_from: Option<String>,
    /// In words, for the report.
    pub why: String,
}

/// Reads `major.minor.update` from the start of the first word that has one: `7.0.2-0.0.178`,
/// `VMware ESXi 7.0.3 build-22348816`.
pub fn version(build: &str) -> Option<(u32, u32, u32)> {
    build.split_whitespace().find_map(|w| {
        let mut it = w.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    })
}

impl Obeyed {
    /// Decides from the first known build of `builds` (value, where it was read), in order.
    pub fn decide(builds: &[(Option<String>, &str)]) -> Obeyed {
        for (b, from) in builds {
            let Some(b) = b.as_deref().filter(|b| !b.trim().is_empty()) else {
                continue;
            };
            let Some(v) = version(b) else {
                continue;
            };
            let store = if v >= CONFIGSTORE_SINCE {
                Store::ConfigStore
            } else {
                Store::EsxConf
            };
            let why = match store {
                Store::ConfigStore => format!(
                    "build {b} ({from}): 7.0U2 and later read device ownership from the ConfigStore; esx.conf /device/ lines are no longer read"
                ),
                Store::EsxConf => format!(
                    "build {b} ({from}): releases before 7.0U2 read device ownership from esx.conf"
                ),
            };
            return Obeyed {
                store: Some(store),
                build: Some(b.to_string()),
                build_from: Some(from.to_string()),
                why,
            };
        }
        Obeyed {
            store: None,
            build: None,
            build_from: None,
            why: "the build is not known (no boot.cfg, manifest or schema store names it): both stores are read, and a device is counted as passed through when either says so".to_string(),
        }
    }
}

/// esx.conf's view of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EsxConfView {
    /// The address exactly as written in the keys (decimal).
    pub esx_address: String,
    /// The owner value as written.
    pub owner: Option<String>,
    /// 1-based line of the owner setting.
    pub owner_line: Option<usize>,
    pub vmkname: Option<String>,
}

/// The ConfigStore's view of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreView {
    /// The pci_devices record's Identifier; None when the device has no such record.
    pub identifier: Option<String>,
    pub rowid: Option<i64>,
    /// The merged owner as stored (`OWNER_PASSTHRU`), or the schema's default when there is no
    /// record; None when the record's columns disagree.
    pub owner_raw: Option<String>,
    /// Where the owner comes from: the value column(s) that set it, or `default`.
    pub owner_from: Vec<String>,
    /// Why the record cannot be read as ESXi reads it (empty for a sound one).
    pub problems: Vec<String>,
    /// The device_data names of this function (its own, then logical devices on it).
    pub names: Vec<DeviceName>,
}

/// One PCI device of a configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostDevice {
    /// lspci/esxcli form, lower-case hex: `0000:16:00.0`.
    pub pci_address: String,
    /// esx.conf's decimal form: as written in esx.conf when it has the device, else the
    /// canonical `SSS:BBB:DD.F`.
    pub esx_address: String,
    /// The ConfigStore's bus-address form: `p0000:16:00.0`.
    pub bus_address: String,
    #[serde(skip)]
    pub address: PciAddress,
    /// The owner ESXi will apply: `passthru` or `vmkernel`; None when it cannot be told.
    pub owner: Option<Ownership>,
    /// That owner as its store writes it (`passthru`, `OWNER_PASSTHRU`).
    pub owner_raw: Option<String>,
    /// The store `owner` was taken from.
    pub owner_source: Option<Store>,
    /// 1-based esx.conf line of the owner setting, when esx.conf has one.
    pub owner_line: Option<usize>,
    /// The vmkernel name (`vmhba2`), from the store ESXi obeys when it names the device.
    pub vmkname: Option<String>,
    pub vmkname_source: Option<Store>,
    /// Where ownership was read: `esx.conf`, `configstore`, or both.
    pub sources: Vec<Store>,
    pub esx_conf: Option<EsxConfView>,
    pub configstore: Option<StoreView>,
}

impl HostDevice {
    /// A storage adapter: ESXi names those `vmhbaN` (in either store).
    pub fn is_storage(&self) -> bool {
        let vmhba = |n: &str| n.starts_with("vmhba");
        self.vmkname.as_deref().is_some_and(vmhba)
            || self
                .esx_conf
                .as_ref()
                .and_then(|e| e.vmkname.as_deref())
                .is_some_and(vmhba)
            || self
                .configstore
                .as_ref()
                .is_some_and(|s| s.names.iter().any(DeviceName::is_storage))
    }

    pub fn is_passthru(&self) -> bool {
        self.owner == Some(Ownership::Passthru)
    }

    /// esx.conf's owner, read.
    pub fn esx_owner(&self) -> Option<Ownership> {
        self.esx_conf
            .as_ref()
            .and_then(|e| e.owner.as_deref())
            .and_then(Ownership::from_esx_conf)
    }

    /// The ConfigStore's owner, read.
    pub fn store_owner(&self) -> Option<Ownership> {
        self.configstore
            .as_ref()
            .and_then(|s| s.owner_raw.as_deref())
            .and_then(Ownership::from_store)
    }

    /// Either store sets the device to passthrough, whichever the build obeys: what `fix`
    /// changes (a stale line left saying passthrough would mislead the next reader).
    pub fn any_store_passthru(&self) -> bool {
        self.esx_owner() == Some(Ownership::Passthru)
            || self.store_owner() == Some(Ownership::Passthru)
    }

    /// Both stores state an owner and they differ.
    pub fn stores_disagree(&self) -> bool {
        matches!((self.esx_owner(), self.store_owner()), (Some(a), Some(b)) if a != b)
    }

    /// The address in the forms that mean something for this configuration, for messages:
    /// `0000:16:00.0 (esx.conf 000:022:00.0, ConfigStore p0000:16:00.0)`; the ConfigStore form
    /// only when the ConfigStore knows the device.
    pub fn all_forms(&self) -> String {
        match &self.configstore {
            Some(_) => format!(
                "{} (esx.conf {}, ConfigStore {})",
                self.pci_address, self.esx_address, self.bus_address
            ),
            None => format!("{} (esx.conf {})", self.pci_address, self.esx_address),
        }
    }
}

/// The devices of a configuration, one per PCI function, in address order.
pub fn host_devices(
    conf: Option<&EsxConf>,
    store: Option<&ConfigStore>,
    obeyed: &Obeyed,
) -> Vec<HostDevice> {
    let esx: Vec<esxconf::Device> = conf.map(EsxConf::devices).unwrap_or_default();
    let mut addresses: BTreeSet<PciAddress> = esx.iter().map(|d| d.address).collect();
    if let Some(s) = store {
        addresses.extend(s.pci_devices.iter().filter_map(|r| r.address));
        addresses.extend(s.device_names.iter().filter_map(|n| n.address));
    }
    addresses
        .into_iter()
        .map(|a| device(a, esx.iter().find(|d| d.address == a), store, obeyed))
        .collect()
}

fn device(
    address: PciAddress,
    esx: Option<&esxconf::Device>,
    store: Option<&ConfigStore>,
    obeyed: &Obeyed,
) -> HostDevice {
    let esx_conf = esx.map(|d| EsxConfView {
        esx_address: d.esx_address.clone(),
        owner: d.owner.clone(),
        owner_line: d.owner_line,
        vmkname: d.vmkname.clone(),
    });
    let configstore = store.and_then(|s| {
        let rec: Option<&PciDeviceRecord> = s.pci_device(address);
        let mut names: Vec<DeviceName> = s.names_of(address).into_iter().cloned().collect();
        // The function's own name first, then logical devices on it.
        names.sort_by_key(|n| n.bus_type.as_deref() != Some("pci"));
        if rec.is_none() && names.is_empty() && obeyed.store != Some(Store::ConfigStore) {
            return None;
        }
        let default = s.schemas.get(schema::PCI_DEVICES).defaults();
        let default_owner = default
            .get("owner")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Some(match rec {
            Some(r) => StoreView {
                identifier: Some(r.identifier.clone()),
                rowid: r.record.rowid,
                owner_raw: r.owner_raw.clone(),
                owner_from: if r.owner_columns.is_empty() && r.owner_raw.is_some() {
                    vec![crate::esxi::configstore::record::DEFAULT.to_string()]
                } else {
                    r.owner_columns.clone()
                },
                problems: r.record.problems.clone(),
                names,
            },
            None => StoreView {
                identifier: None,
                rowid: None,
                owner_raw: default_owner,
                owner_from: vec![crate::esxi::configstore::record::DEFAULT.to_string()],
                problems: Vec::new(),
                names,
            },
        })
    });
    let esx_owner = esx_conf
        .as_ref()
        .and_then(|e| e.owner.as_deref())
        .and_then(Ownership::from_esx_conf);
    let store_owner = configstore
        .as_ref()
        .and_then(|s| s.owner_raw.as_deref())
        .and_then(Ownership::from_store);
    let from_esx = (
        esx_owner,
        esx_conf.as_ref().and_then(|e| e.owner.clone()),
        Some(Store::EsxConf),
    );
    let from_store = (
        store_owner,
        configstore.as_ref().and_then(|s| s.owner_raw.clone()),
        Some(Store::ConfigStore),
    );
    let has_esx = esx_conf.as_ref().is_some_and(|e| e.owner.is_some());
    // The obeyed store decides; when it says nothing of the device (no ConfigStore in this
    // configuration, or no owner line in esx.conf), the other store's word is taken as when the
    // build is unknown: passthrough when either says so.
    let (owner, owner_raw, owner_source) = match obeyed.store {
        Some(Store::ConfigStore) if configstore.is_some() => from_store,
        Some(Store::EsxConf) if has_esx => from_esx,
        _ if esx_owner == Some(Ownership::Passthru) => from_esx,
        _ if store_owner == Some(Ownership::Passthru) => from_store,
        _ if has_esx => from_esx,
        _ if configstore.is_some() => from_store,
        _ => (None, None, None),
    };
    let store_name = configstore
        .as_ref()
        .and_then(|s| s.names.iter().find_map(|n| n.alias.clone()));
    let esx_name = esx_conf.as_ref().and_then(|e| e.vmkname.clone());
    let (vmkname, vmkname_source) = match (obeyed.store, store_name, esx_name) {
        (Some(Store::EsxConf), _, Some(e)) => (Some(e), Some(Store::EsxConf)),
        (_, Some(s), _) => (Some(s), Some(Store::ConfigStore)),
        (_, None, Some(e)) => (Some(e), Some(Store::EsxConf)),
        (_, None, None) => (None, None),
    };
    let mut sources = Vec::new();
    if has_esx {
        sources.push(Store::EsxConf);
    }
    if configstore.is_some() {
        sources.push(Store::ConfigStore);
    }
    HostDevice {
        pci_address: address.to_pci_string(),
        esx_address: esx_conf
            .as_ref()
            .map(|e| e.esx_address.clone())
            .unwrap_or_else(|| address.to_esx_string()),
        bus_address: format!("p{}", address.to_pci_string()),
        address,
        owner,
        owner_raw,
        owner_source,
        owner_line: esx_conf.as_ref().and_then(|e| e.owner_line),
        vmkname,
        vmkname_source,
        sources,
        esx_conf,
        configstore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_every_place_a_build_is_written() {
        assert_eq!(version("7.0.2-0.0.17867351"), Some((7, 0, 2)));
        assert_eq!(version("8.0.2-0.0.22380479"), Some((8, 0, 2)));
        assert_eq!(version("VMware ESXi 7.0.3 build-22348816"), Some((7, 0, 3)));
        assert_eq!(version("6.7.0-8169922"), Some((6, 7, 0)));
        assert_eq!(version("4.1.0-260247"), Some((4, 1, 0)));
        assert_eq!(version(""), None);
        assert_eq!(version("7.0"), None);
    }

    #[test]
    fn the_first_known_build_decides() {
        let o = Obeyed::decide(&[
            (None, "boot.cfg"),
            (Some("7.0.2-0.0.1".into()), "schema store"),
        ]);
        assert_eq!(o.store, Some(Store::ConfigStore));
        assert_eq!(o.build_from.as_deref(), Some("schema store"));
        let o = Obeyed::decide(&[(Some("7.0.1-0.0.1".into()), "boot.cfg")]);
        assert_eq!(o.store, Some(Store::EsxConf));
        let o = Obeyed::decide(&[(Some("8.0.3-0.0.1".into()), "boot.cfg")]);
        assert_eq!(o.store, Some(Store::ConfigStore));
        assert_eq!(Obeyed::decide(&[]).store, None);
    }
}
