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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esxi::devices::Store;
    use crate::esxi::pci::Reading;
    use std::path::Path;

    /// esx.conf of a 6.x host, written by hand: an HBA in passthrough under the old `BBB:SS.F`
    /// key form (bus 022 decimal is lspci's 0x16), a NIC the vmkernel owns, a device with a name
    /// and no owner.
    const CONF: &str = "/adv/Misc/HostName = \"esx01\"\n\
        /device/022:00.0/owner = \"passthru\"\n\
        /device/022:00.0/vmkname = \"vmhba2\"\n\
        /device/000:003:00.0/owner = \"vmkernel\"\n\
        /device/000:003:00.0/vmkname = \"vmnic0\"\n\
        /device/000:000:31.2/vmkname = \"vmhba0\"\n";

    const WHERE: &str = "partition 5 /state.tgz";

    fn conf() -> EsxConf {
        EsxConf::parse(CONF.as_bytes()).unwrap()
    }

    fn devices(conf: &EsxConf) -> Vec<HostDevice> {
        crate::ops::inspect::devices_of(Some(conf), None, None).1
    }

    /// `resolve_devices` for one `--device` list against [`CONF`], on a fresh plan.
    fn resolve(typed: &[&str]) -> (Result<Vec<PciAddress>, FixError>, Plan, Vec<String>) {
        let conf = conf();
        let mut plan = Plan::empty(Path::new("disk.img"));
        let mut notes = Vec::new();
        let what = Request::Devices(typed.iter().map(|t| t.to_string()).collect());
        let r = resolve_devices(
            &conf,
            &devices(&conf),
            &what,
            &mut None,
            &mut plan,
            &mut notes,
            WHERE,
        );
        (r, plan, notes)
    }

    #[test]
    fn every_address_form_names_the_same_device() {
        let hba = PciAddress::new(0, 0x16, 0, 0);
        for (typed, reading) in [
            // lspci hex: no esx.conf key is written so, hence hex.
            ("0000:16:00.0", Reading::Pci),
            ("16:00.0", Reading::Pci),
            // esx.conf decimal, both as written in the key and in today's canonical shape.
            ("022:00.0", Reading::Esx),
            ("000:022:00.0", Reading::Esx),
            ("esx:022:00.0", Reading::Esx),
            // The ConfigStore's bus address.
            ("p0000:16:00.0", Reading::Bus),
        ] {
            let (r, plan, notes) = resolve(&[typed]);
            assert_eq!(r.unwrap(), vec![hba], "{typed}");
            assert!(notes.is_empty(), "{typed}: {notes:?}");
            let [c] = plan.devices.as_slice() else {
                panic!("{typed}: {:?}", plan.devices)
            };
            assert_eq!(c.typed, typed);
            assert_eq!(c.read_as, reading, "{typed}");
            assert_eq!(c.pci_address, "0000:16:00.0");
            // The form esx.conf writes, not one regenerated from the value.
            assert_eq!(c.esx_address.as_deref(), Some("022:00.0"));
            assert_eq!(c.bus_address, "p0000:16:00.0");
            assert_eq!(c.vmkname.as_deref(), Some("vmhba2"));
            assert_eq!(c.owner.as_deref(), Some("passthru"));
            assert_eq!(c.owner_source, Some(Store::EsxConf));
        }
    }

    #[test]
    fn a_key_written_so_makes_an_unprefixed_address_decimal() {
        // ESXi 4's `SSSS:BB:DD.F` keys are decimal: bus 16 is lspci's 0x10, not 0x16.
        let conf = EsxConf::parse(b"/device/0000:16:00.0/owner = \"passthru\"\n").unwrap();
        let what = Request::Devices(vec!["0000:16:00.0".into(), "pci:0000:10:00.0".into()]);
        let mut plan = Plan::empty(Path::new("disk.img"));
        let r = resolve_devices(
            &conf,
            &devices(&conf),
            &what,
            &mut None,
            &mut plan,
            &mut Vec::new(),
            WHERE,
        );
        let dev = PciAddress::new(0, 0x10, 0, 0);
        assert_eq!(r.unwrap(), vec![dev, dev]);
        assert_eq!(plan.devices[0].read_as, Reading::Esx);
        assert_eq!(plan.devices[1].read_as, Reading::Pci);
        assert_eq!(plan.devices[0].pci_address, "0000:10:00.0");
    }

    #[test]
    fn an_unknown_device_is_an_error_naming_what_was_typed() {
        let (r, plan, _) = resolve(&["0000:16:00.0", "0000:42:00.0"]);
        let e = r.unwrap_err();
        match &e {
            FixError::NoSuchDevice {
                typed,
                reading,
                address,
                location,
                passthru,
            } => {
                assert_eq!(typed, "0000:42:00.0");
                assert_eq!(*reading, Reading::Pci);
                assert_eq!(*address, PciAddress::new(0, 0x42, 0, 0));
                assert_eq!(location, WHERE);
                assert_eq!(
                    passthru,
                    &vec!["0000:16:00.0 (esx.conf 022:00.0) (vmhba2)".to_string()]
                );
            }
            other => panic!("{other:?}"),
        }
        // 0x42 is decimal 66.
        assert_eq!(
            e.to_string(),
            "--device 0000:42:00.0: read as lspci address 0000:42:00.0 (esx.conf form \
             000:066:00.0, ConfigStore form p0000:42:00.0), but partition 5 /state.tgz has no \
             such device in esx.conf or the ConfigStore; devices set to passthrough: \
             0000:16:00.0 (esx.conf 022:00.0) (vmhba2)"
        );
        // The plan still says how each was read, the unknown one included.
        assert_eq!(plan.devices.len(), 2);
        assert_eq!(plan.devices[1].vmkname, None);
        assert_eq!(plan.devices[1].owner, None);
    }

    #[test]
    fn an_unreadable_address_is_an_error_naming_what_was_typed() {
        let (r, plan, _) = resolve(&["raid card"]);
        match r.unwrap_err() {
            FixError::BadAddress { typed, .. } => assert_eq!(typed, "raid card"),
            other => panic!("{other:?}"),
        }
        assert!(plan.devices.is_empty());
    }

    #[test]
    fn devices_are_resolved_once_for_every_bank() {
        // The first bank writes the key `0000:16:00.0` (ESXi 4, decimal: lspci's 0x10).
        let first = EsxConf::parse(b"/device/0000:16:00.0/owner = \"passthru\"\n").unwrap();
        let mut resolved = None;
        let mut plan = Plan::empty(Path::new("disk.img"));
        let what = Request::Devices(vec!["0000:16:00.0".into()]);
        let meant = PciAddress::new(0, 0x10, 0, 0);
        let r = resolve_devices(
            &first,
            &devices(&first),
            &what,
            &mut resolved,
            &mut plan,
            &mut Vec::new(),
            WHERE,
        );
        assert_eq!(r.unwrap(), vec![meant]);
        // In the other bank no key is written so, and the text alone would read as hex 0x16,
        // its vmhba2: the device meant is still the one the first bank resolved.
        let other = conf();
        let r = resolve_devices(
            &other,
            &devices(&other),
            &what,
            &mut resolved,
            &mut plan,
            &mut Vec::new(),
            "partition 6 /state.tgz",
        );
        assert_eq!(r.unwrap(), vec![meant]);
        assert_eq!(plan.devices.len(), 1);
    }

    #[test]
    fn all_storage_takes_the_adapters_in_passthrough_only() {
        let conf = conf();
        let mut notes = Vec::new();
        let r = resolve_devices(
            &conf,
            &devices(&conf),
            &Request::AllStorage,
            &mut None,
            &mut Plan::empty(Path::new("disk.img")),
            &mut notes,
            WHERE,
        );
        // vmhba0 has no owner, vmnic0 is no storage adapter.
        assert_eq!(r.unwrap(), vec![PciAddress::new(0, 0x16, 0, 0)]);
        assert!(notes.is_empty(), "{notes:?}");

        let conf = EsxConf::parse(b"/device/000:003:00.0/owner = \"passthru\"\n").unwrap();
        let r = resolve_devices(
            &conf,
            &devices(&conf),
            &Request::AllStorage,
            &mut None,
            &mut Plan::empty(Path::new("disk.img")),
            &mut notes,
            WHERE,
        );
        assert_eq!(r.unwrap(), Vec::new());
        assert_eq!(notes, ["no storage adapter is set to passthrough"]);
    }

    #[test]
    fn device_edits_set_the_owner_under_the_key_as_written() {
        let conf = conf();
        let wanted = [
            PciAddress::new(0, 0x16, 0, 0),
            PciAddress::new(0, 3, 0, 0),
            PciAddress::new(0, 0, 31, 2),
            PciAddress::new(0, 0x42, 0, 0),
        ];
        let mut notes = Vec::new();
        let (edits, store) = device_edits(&devices(&conf), &wanted, &mut notes);
        assert_eq!(
            edits,
            vec![Edit::Set {
                key: "/device/022:00.0/owner".into(),
                value: "vmkernel".into(),
                create: false,
            }]
        );
        // No ConfigStore in this configuration: nothing to change there.
        assert!(store.is_empty());
        assert_eq!(
            notes,
            [
                "0000:03:00.0 (esx.conf 000:003:00.0) (vmnic0) is not set to passthrough \
                 (esx.conf \"vmkernel\"): nothing to change",
                "0000:00:1f.2 (esx.conf 000:000:31.2) (vmhba0) has no owner in esx.conf or the \
                 ConfigStore; bootbank never adds one",
                "0000:42:00.0: not in this configuration; left alone",
            ]
        );
    }

    #[test]
    fn the_passthrough_list_gives_every_form_and_the_vmkname() {
        let conf = EsxConf::parse(
            b"/device/000:003:00.0/owner = \"passthru\"\n/device/022:00.0/owner = \"passthru\"\n\
              /device/022:00.0/vmkname = \"vmhba2\"\n/device/000:004:00.0/owner = \"vmkernel\"\n",
        )
        .unwrap();
        assert_eq!(
            passthru_list(&devices(&conf)),
            [
                "0000:03:00.0 (esx.conf 000:003:00.0) (no vmkname)",
                "0000:16:00.0 (esx.conf 022:00.0) (vmhba2)",
            ]
        );
    }
}
