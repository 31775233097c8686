//! Device-address resolution: what the user typed, read against the configuration's devices,
//! and the edits that give them back to the vmkernel.

use super::{DeviceChoice, FixError, Plan, Request};
use crate::esxi::configstore::Ownership;
use crate::esxi::devices::HostDevice;
use crate::esxi::esxconf::{Edit, EsxConf};
use crate::esxi::pci::PciAddress;

/// The devices the user named (or every storage adapter in passthrough), resolved once against
/// the configuration of the first bank chosen and then matched by value in every bank.
pub(super) fn resolve_devices(
    conf: &EsxConf,
    devices: &[HostDevice],
    what: &Request,
    resolved: &mut Option<Vec<PciAddress>>,
    plan: &mut Plan,
    notes: &mut Vec<String>,
    location: &str,
) -> Result<Vec<PciAddress>, FixError> {
    if let Some(r) = resolved.as_ref() {
        return Ok(r.clone());
    }
    let v: Vec<PciAddress> = match what {
        Request::AllStorage => {
            let v: Vec<PciAddress> = devices
                .iter()
                .filter(|d| d.is_storage() && d.any_store_passthru())
                .map(|d| d.address)
                .collect();
            if v.is_empty() {
                notes.push("no storage adapter is set to passthrough".to_string());
            }
            v
        }
        Request::Devices(typed) => {
            let mut v = Vec::new();
            for t in typed {
                let (addr, reading) = PciAddress::parse_user(t, |s| conf.has_device_text(s))
                    .map_err(|cause| FixError::BadAddress {
                        typed: t.clone(),
                        cause,
                    })?;
                let d = devices.iter().find(|d| d.address == addr);
                plan.devices.push(DeviceChoice {
                    typed: t.clone(),
                    read_as: reading,
                    pci_address: addr.to_pci_string(),
                    esx_address: Some(
                        d.map(|d| d.esx_address.clone())
                            .unwrap_or_else(|| addr.to_esx_string()),
                    ),
                    bus_address: format!("p{}", addr.to_pci_string()),
                    vmkname: d.and_then(|d| d.vmkname.clone()),
                    owner: d.and_then(|d| d.owner.map(|o| o.to_string())),
                    owner_source: d.and_then(|d| d.owner_source),
                });
                if d.is_none() {
                    return Err(FixError::NoSuchDevice {
                        typed: t.clone(),
                        reading,
                        address: addr,
                        location: location.to_string(),
                        passthru: passthru_list(devices),
                    });
                }
                v.push(addr);
            }
            v
        }
        Request::Edits(_) => Vec::new(),
    };
    *resolved = Some(v.clone());
    Ok(v)
}

/// The esx.conf edits that give `wanted` back to the vmkernel, and the devices whose ConfigStore
/// record must change too. Both stores are changed wherever they say passthrough, whichever one
/// the build obeys: a stale line left saying passthrough would mislead the next reader.
pub(super) fn device_edits(
    devices: &[HostDevice],
    wanted: &[PciAddress],
    notes: &mut Vec<String>,
) -> (Vec<Edit>, Vec<PciAddress>) {
    let mut edits = Vec::new();
    let mut store = Vec::new();
    for addr in wanted {
        let Some(d) = devices.iter().find(|d| d.address == *addr) else {
            notes.push(format!("{addr}: not in this configuration; left alone"));
            continue;
        };
        let vmk = d.vmkname.as_deref().unwrap_or("no vmkname");
        let mut any = false;
        if d.esx_owner() == Some(Ownership::Passthru) {
            edits.push(Edit::Set {
                key: format!("/device/{}/owner", d.esx_address),
                value: "vmkernel".to_string(),
                create: false,
            });
            any = true;
        }
        if d.store_owner() == Some(Ownership::Passthru) {
            store.push(*addr);
            any = true;
        }
        if !any {
            let mut said = Vec::new();
            if let Some(o) = d.esx_conf.as_ref().and_then(|e| e.owner.as_deref()) {
                said.push(format!("esx.conf \"{o}\""));
            }
            if let Some(s) = &d.configstore {
                said.push(format!(
                    "ConfigStore {} ({})",
                    s.owner_raw.as_deref().unwrap_or("not known"),
                    s.owner_from.join(", ")
                ));
            }
            if said.is_empty() {
                notes.push(format!(
                    "{} ({vmk}) has no owner in esx.conf or the ConfigStore; bootbank never adds one",
                    d.all_forms()
                ));
            } else {
                notes.push(format!(
                    "{} ({vmk}) is not set to passthrough ({}): nothing to change",
                    d.all_forms(),
                    said.join(", ")
                ));
            }
        }
    }
    (edits, store)
}

/// The devices set to passthrough in either store, each in every address form.
fn passthru_list(devices: &[HostDevice]) -> Vec<String> {
    devices
        .iter()
        .filter(|d| d.any_store_passthru())
        .map(|d| {
            format!(
                "{} ({})",
                d.all_forms(),
                d.vmkname.as_deref().unwrap_or("no vmkname")
            )
        })
        .collect()
}
