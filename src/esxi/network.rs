//! The management network of a configuration as ESXi will bring it up: the vmkernel interfaces
//! (address, mask, gateway, DHCP, port group, VLAN, vSwitch, uplinks), the physical NICs with
//! their MACs and PCI addresses, and which vmknic carries management.
//!
//! 7.0U2 and later read it from the ConfigStore ([`crate::esxi::configstore::network`]); which
//! store a build obeys is decided as for devices ([`crate::esxi::devices::Obeyed`]). Releases
//! before read esx.conf; of its keys bootbank reads only those published evidence shows ESXi
//! writing (cited at [`from_esx_conf`]), and shows every other `/net/` line as written.

use crate::esxi::configstore::ConfigStore;
use crate::esxi::configstore::network::{NetworkRecords, port_group_item};
use crate::esxi::devices::Store;
use crate::esxi::esxconf::EsxConf;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// esx.conf's advanced option naming the management vmknic (`vmk0` on the real 7.0.2 host).
pub const MANAGEMENT_IFACE: &str = "/adv/Net/ManagementIface";
/// esx.conf's advanced option holding the management address (`10.199.5.140` on the real host).
pub const MANAGEMENT_ADDR: &str = "/adv/Net/ManagementAddr";

/// The network of one configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostNetwork {
    /// The store the vmknics, switches and NICs were read from.
    pub source: Store,
    /// The vmknic that carries management: the one whose `enabled_services.management` is set
    /// (ConfigStore), else esx.conf's `/adv/Net/ManagementIface`.
    pub management: Option<String>,
    /// How `management` was decided, in words.
    pub management_from: Vec<String>,
    /// esx.conf's `/adv/Net/ManagementIface` and `/adv/Net/ManagementAddr`, as written.
    pub management_iface_option: Option<String>,
    pub management_addr_option: Option<String>,
    pub vmknics: Vec<Vmknic>,
    pub switches: Vec<VSwitch>,
    pub nics: Vec<Nic>,
    /// What could not be read as ESXi reads it.
    pub problems: Vec<String>,
}

/// One vmkernel network interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vmknic {
    /// `vmk0` (ConfigStore); esx.conf names its children only by index (`child[0000]`).
    pub device: String,
    pub enabled: Option<bool>,
    pub management: bool,
    pub dhcp: Option<bool>,
    pub address: Option<String>,
    pub netmask: Option<String>,
    /// The netmask's prefix length, when it is a contiguous mask.
    pub prefix_len: Option<u8>,
    /// The IPv4 default gateway this vmknic's traffic uses, and where it was read.
    pub gateway: Option<String>,
    pub gateway_from: Option<String>,
    /// The DHCP server of the last lease (runtime state the host cached), when on DHCP.
    pub dhcp_server: Option<String>,
    pub mac: Option<String>,
    pub net_stack: Option<String>,
    /// `VSS_PORT_GROUP`, `VDS`, `OPAQUE_NETWORK`.
    pub connection: Option<String>,
    pub port_group: Option<String>,
    pub vlan: Option<i64>,
    pub vswitch: Option<String>,
    /// The uplinks the port group uses: its teaming's active then standby NICs, else the
    /// switch's, else the switch's bridge NICs.
    pub uplinks: Vec<String>,
    /// The services enabled on it (`management`, `vmotion`...).
    pub services: Vec<String>,
}

/// One standard vSwitch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VSwitch {
    pub name: String,
    /// The physical NICs bridged to it.
    pub uplinks: Vec<String>,
    pub port_groups: Vec<PortGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortGroup {
    pub name: String,
    pub vlan: Option<i64>,
    pub active: Vec<String>,
    pub standby: Vec<String>,
}

/// One physical NIC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Nic {
    /// `vmnic0`; for esx.conf the child it is read from.
    pub name: String,
    pub mac: Option<String>,
    pub virtual_mac: Option<String>,
    /// lspci form, from the ConfigStore's device_data (alias -> bus address).
    pub pci_address: Option<String>,
    pub bus_address: Option<String>,
}

impl HostNetwork {
    /// The management vmknic.
    pub fn management_vmknic(&self) -> Option<&Vmknic> {
        let m = self.management.as_deref()?;
        self.vmknics.iter().find(|v| v.device == m)
    }

    /// The uplinks of the vSwitch that carries the management vmknic (every NIC bridged to it,
    /// not only the port group's active ones: any of them can carry management on failover).
    pub fn management_switch_uplinks(&self) -> Vec<&Nic> {
        let Some(v) = self.management_vmknic() else {
            return Vec::new();
        };
        let mut names: Vec<&str> = v.uplinks.iter().map(String::as_str).collect();
        if let Some(sw) = v
            .vswitch
            .as_deref()
            .and_then(|s| self.switches.iter().find(|x| x.name == s))
        {
            names.extend(sw.uplinks.iter().map(String::as_str));
        }
        names.sort();
        names.dedup();
        self.nics
            .iter()
            .filter(|n| names.contains(&n.name.as_str()))
            .collect()
    }

    /// The uplinks of the management vmknic's port group.
    pub fn management_uplinks(&self) -> Vec<&Nic> {
        let Some(v) = self.management_vmknic() else {
            return Vec::new();
        };
        self.nics
            .iter()
            .filter(|n| v.uplinks.contains(&n.name))
            .collect()
    }
}

/// The prefix length of a contiguous IPv4 mask.
pub fn prefix_len(mask: &str) -> Option<u8> {
    let m: Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The mask of a prefix length.
pub fn mask_of(len: u8) -> Option<Ipv4Addr> {
    (len <= 32).then(|| Ipv4Addr::from(u32::MAX.checked_shl(32 - len as u32).unwrap_or(0)))
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The network as the ConfigStore holds it (7.0U2 and later).
pub fn from_store(
    net: &NetworkRecords,
    store: &ConfigStore,
    conf: Option<&EsxConf>,
) -> HostNetwork {
    let mut problems = Vec::new();
    for key in crate::esxi::configstore::network::NETWORK_KEYS {
        if net.schema(key).is_none() {
            problems.push(format!(
                "the host's schema store has no schema for {key}: its records are shown as stored, without defaults"
            ));
        }
        for r in net.records(key) {
            for p in &r.problems {
                problems.push(format!("{key} record {}: {p}", r.identifier));
            }
        }
    }
    let switches: Vec<VSwitch> = net
        .switches
        .iter()
        .map(|s| {
            let m = &s.merged;
            VSwitch {
                name: s.identifier.clone(),
                uplinks: strs(m.get("bridge").and_then(|b| b.get("nics"))),
                port_groups: m
                    .get("port_groups")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|pg| {
                        let team = pg.get("policy").and_then(|p| p.get("nic_teaming"));
                        PortGroup {
                            name: pg
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            vlan: pg.get("vlan_id").and_then(Value::as_i64),
                            active: strs(team.and_then(|t| t.get("active_nics"))),
                            standby: strs(team.and_then(|t| t.get("standby_nics"))),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let nics = net
        .nics
        .iter()
        .map(|n| {
            let name = n.identifier.clone();
            // The function's own record (bus_type `pci`) first, then logical ones.
            let named = |d: &&crate::esxi::configstore::DeviceName| {
                d.alias.as_deref() == Some(name.as_str())
            };
            let dev = store
                .device_names
                .iter()
                .filter(named)
                .find(|d| d.bus_type.as_deref() == Some("pci"))
                .or_else(|| store.device_names.iter().find(named));
            Nic {
                mac: n.str("mac").map(str::to_string),
                virtual_mac: n.str("virtual_mac").map(str::to_string),
                pci_address: dev.and_then(|d| d.address).map(|a| a.to_pci_string()),
                bus_address: dev.and_then(|d| d.bus_address.clone()),
                name,
            }
        })
        .collect();
    let option = |k: &str| conf.and_then(|c| c.get(k)).map(str::to_string);
    let iface_opt = option(MANAGEMENT_IFACE);
    let mut vmknics: Vec<Vmknic> = net
        .vmknics
        .iter()
        .map(|r| {
            let m = &r.merged;
            let ip = m.get("ip");
            let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let netmask = s(ip.and_then(|i| i.get("ipv4_subnet_mask")));
            let port_group = r.str("port_group").map(str::to_string);
            let sw = port_group.as_deref().and_then(|pg| {
                net.switches
                    .iter()
                    .find(|s| port_group_item(&s.merged, pg).is_some())
            });
            let pg_item = sw.and_then(|s| port_group_item(&s.merged, port_group.as_deref()?));
            let team_of = |v: Option<&Value>| {
                let t = v
                    .and_then(|x| x.get("policy"))
                    .and_then(|p| p.get("nic_teaming"));
                let mut u = strs(t.and_then(|t| t.get("active_nics")));
                u.extend(strs(t.and_then(|t| t.get("standby_nics"))));
                u
            };
            let mut uplinks = team_of(pg_item);
            if uplinks.is_empty() {
                let swv = sw.map(|s| Value::Object(s.merged.clone()));
                uplinks = team_of(swv.as_ref());
            }
            if uplinks.is_empty() {
                uplinks = strs(
                    sw.and_then(|s| s.merged.get("bridge"))
                        .and_then(|b| b.get("nics")),
                );
            }
            let stack = r.str("net_stack_instance_key").map(str::to_string);
            let own_gw = r.str("ip_route_default_gateway").map(str::to_string);
            let stack_rec = stack
                .as_deref()
                .and_then(|k| net.net_stacks.iter().find(|s| s.identifier == k));
            let rc = stack_rec.and_then(|s| s.merged.get("routing_config"));
            let (gateway, gateway_from) = match (own_gw, rc) {
                (Some(g), _) => (
                    Some(g),
                    Some("the vmknic's ip_route_default_gateway".into()),
                ),
                (None, Some(rc)) => (
                    s(rc.get("ipv4_default_gateway")),
                    Some(format!(
                        "net stack {}'s routing_config (source {})",
                        stack.as_deref().unwrap_or("?"),
                        rc.get("source").and_then(Value::as_str).unwrap_or("?")
                    )),
                ),
                _ => (None, None),
            };
            let services = m
                .get("enabled_services")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| v.as_bool() == Some(true))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            Vmknic {
                device: r.identifier.clone(),
                enabled: m.get("enabled").and_then(Value::as_bool),
                management: false,
                dhcp: ip.and_then(|i| i.get("dhcp")).and_then(Value::as_bool),
                address: s(ip.and_then(|i| i.get("ipv4_address"))),
                prefix_len: netmask.as_deref().and_then(prefix_len),
                netmask,
                gateway,
                gateway_from,
                dhcp_server: r.str("dhcp_server").map(str::to_string),
                mac: r.str("mac").map(str::to_string),
                net_stack: stack,
                connection: r.str("port_connection_type").map(str::to_string),
                vlan: pg_item
                    .and_then(|p| p.get("vlan_id"))
                    .and_then(Value::as_i64),
                vswitch: sw.map(|s| s.identifier.clone()),
                port_group,
                uplinks,
                services,
            }
        })
        .collect();
    let mut management_from = Vec::new();
    let by_service: Vec<String> = vmknics
        .iter()
        .filter(|v| v.services.iter().any(|s| s == "management"))
        .map(|v| v.device.clone())
        .collect();
    if !by_service.is_empty() {
        management_from.push(format!(
            "ConfigStore enabled_services.management is set on {}",
            by_service.join(", ")
        ));
    }
    if let Some(i) = &iface_opt {
        management_from.push(format!("esx.conf {MANAGEMENT_IFACE} = \"{i}\""));
    }
    let management = by_service.first().cloned().or_else(|| iface_opt.clone());
    if let (Some(i), Some(s)) = (&iface_opt, by_service.first())
        && i != s
    {
        problems.push(format!(
            "esx.conf {MANAGEMENT_IFACE} names {i} but the ConfigStore enables management on {s}"
        ));
    }
    for v in &mut vmknics {
        v.management = management.as_deref() == Some(v.device.as_str());
    }
    HostNetwork {
        source: Store::ConfigStore,
        management,
        management_from,
        management_iface_option: iface_opt,
        management_addr_option: option(MANAGEMENT_ADDR),
        vmknics,
        switches,
        nics,
        problems,
    }
}

/// Splits `/net/<family>/child[NNNN]/<rest>` keys into children by index.
fn children<'a>(conf: &'a EsxConf, family: &str) -> BTreeMap<String, BTreeMap<String, &'a str>> {
    let prefix = format!("/net/{family}/");
    let mut out: BTreeMap<String, BTreeMap<String, &str>> = BTreeMap::new();
    for e in &conf.entries {
        let Some(rest) = e.key.strip_prefix(&prefix) else {
            continue;
        };
        let Some((child, field)) = rest.split_once('/') else {
            continue;
        };
        if child.starts_with("child[") && child.ends_with(']') {
            out.entry(child.to_string())
                .or_default()
                .insert(field.to_string(), e.value.as_str());
        }
    }
    out
}

/// The network as esx.conf holds it (releases before 7.0U2). Only keys with published evidence
/// of ESXi writing them are interpreted:
/// - `/net/vmkernelnic/child[NNNN]/mac`, `/net/pnic/child[NNNN]/mac`, `/net/pnic/child[NNNN]/
///   virtualMac`, `/net/vswitch/child[NNNN]/uplinks/child[NNNN]/pnic`: the OVHcloud guide to
///   repairing an ESXi install from rescue mode after a hardware change (repository ovh/docs:
///   it edits these lines of esx.conf taken out of state.tgz/local.tgz), and an earlier
///   `sysprep.sh` of rgl/esxi-vagrant, which lists the three MAC lines as ESXi stores them;
/// - `/net/vmkernelnic/child[NNNN]/dhcp`, `ipv4address`, `ipv4netmask`,
///   `/net/routes/kernel/gateway`, `/net/vswitch/child[NNNN]/portgroup/child[NNNN]/vlanId`: a
///   provisioning script that edits exactly these existing lines of a host's esx.conf (fetched
///   with `vifs --get /host/esx.conf`);
/// - `/net/vswitch/child[NNNN]/name`, `portgroup/child[NNNN]/name`, `portgroup/child[NNNN]/
///   teamPolicy/uplinks[NNNN]/pnic`: a 2012 esx.conf excerpt of a 5.x host (K. Elatov, VCAP5-DCA
///   objective 2.4).
///
/// No published line names a vmknic's device (`vmk0`) or port group, nor a pnic's name, so the
/// children are named by index and a vmknic's switch is not told.
pub fn from_esx_conf(conf: &EsxConf) -> HostNetwork {
    let vmk = children(conf, "vmkernelnic");
    let pnic = children(conf, "pnic");
    let vsw = children(conf, "vswitch");
    let gateway = conf.get("/net/routes/kernel/gateway").map(str::to_string);
    let iface = conf.get(MANAGEMENT_IFACE).map(str::to_string);
    let vmknics = vmk
        .iter()
        .map(|(child, f)| {
            let netmask = f.get("ipv4netmask").map(|s| s.to_string());
            Vmknic {
                device: child.clone(),
                enabled: None,
                management: false,
                dhcp: f.get("dhcp").and_then(|d| d.parse().ok()),
                address: f.get("ipv4address").map(|s| s.to_string()),
                prefix_len: netmask.as_deref().and_then(prefix_len),
                netmask,
                gateway: gateway.clone(),
                gateway_from: gateway
                    .as_ref()
                    .map(|_| "esx.conf /net/routes/kernel/gateway".to_string()),
                dhcp_server: None,
                mac: f.get("mac").map(|s| s.to_string()),
                net_stack: None,
                connection: None,
                port_group: None,
                vlan: None,
                vswitch: None,
                uplinks: Vec::new(),
                services: Vec::new(),
            }
        })
        .collect();
    let switches = vsw
        .iter()
        .map(|(child, f)| {
            let mut uplinks: Vec<String> = f
                .iter()
                .filter(|(k, _)| k.starts_with("uplinks/child[") && k.ends_with("]/pnic"))
                .map(|(_, v)| v.to_string())
                .collect();
            uplinks.dedup();
            let mut pgs: BTreeMap<&str, PortGroup> = BTreeMap::new();
            for (k, v) in f {
                let Some(rest) = k.strip_prefix("portgroup/") else {
                    continue;
                };
                let Some((pc, field)) = rest.split_once('/') else {
                    continue;
                };
                let pg = pgs.entry(pc).or_insert_with(|| PortGroup {
                    name: String::new(),
                    vlan: None,
                    active: Vec::new(),
                    standby: Vec::new(),
                });
                match field {
                    "name" => pg.name = v.to_string(),
                    "vlanId" => pg.vlan = v.parse().ok(),
                    f if f.starts_with("teamPolicy/uplinks[") && f.ends_with("]/pnic") => {
                        pg.active.push(v.to_string())
                    }
                    _ => {}
                }
            }
            VSwitch {
                name: f
                    .get("name")
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| child.clone()),
                uplinks,
                port_groups: pgs.into_values().collect(),
            }
        })
        .collect();
    let nics = pnic
        .iter()
        .map(|(child, f)| Nic {
            name: child.clone(),
            mac: f.get("mac").map(|s| s.to_string()),
            virtual_mac: f.get("virtualMac").map(|s| s.to_string()),
            pci_address: None,
            bus_address: None,
        })
        .collect();
    HostNetwork {
        source: Store::EsxConf,
        management_from: iface
            .iter()
            .map(|i| format!("esx.conf {MANAGEMENT_IFACE} = \"{i}\""))
            .collect(),
        management: iface.clone(),
        management_iface_option: iface,
        management_addr_option: conf.get(MANAGEMENT_ADDR).map(str::to_string),
        vmknics,
        switches,
        nics,
        problems: vec![
            "esx.conf names vmknics and pnics only by index (no published line maps child[NNNN] to vmk0 or vmnic0), so the management vmknic's switch and uplinks are not told".to_string(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_prefixes() {
        assert_eq!(prefix_len("255.255.255.0"), Some(24));
        assert_eq!(prefix_len("255.255.254.0"), Some(23));
        assert_eq!(prefix_len("0.0.0.0"), Some(0));
        assert_eq!(prefix_len("255.255.255.255"), Some(32));
        assert_eq!(prefix_len("255.0.255.0"), None);
        assert_eq!(mask_of(24), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(mask_of(0), Some(Ipv4Addr::new(0, 0, 0, 0)));
        assert_eq!(mask_of(33), None);
    }

    #[test]
    fn esx_conf_keys_with_evidence() {
        let text = b"/adv/Net/ManagementIface = \"vmk0\"\n/net/pnic/child[0000]/mac = \"00:0c:29:aa:bb:cc\"\n/net/pnic/child[0000]/virtualMac = \"00:50:56:aa:bb:cc\"\n/net/routes/kernel/gateway = \"192.168.1.1\"\n/net/vmkernelnic/child[0000]/dhcp = \"false\"\n/net/vmkernelnic/child[0000]/ipv4address = \"192.168.1.20\"\n/net/vmkernelnic/child[0000]/ipv4netmask = \"255.255.255.0\"\n/net/vmkernelnic/child[0000]/mac = \"00:0c:29:aa:bb:cc\"\n/net/vswitch/child[0000]/name = \"vSwitch0\"\n/net/vswitch/child[0000]/portgroup/child[0000]/name = \"Management Network\"\n/net/vswitch/child[0000]/portgroup/child[0000]/vlanId = \"496\"\n/net/vswitch/child[0000]/uplinks/child[0000]/pnic = \"vmnic0\"\n";
        let conf = EsxConf::parse(text).unwrap();
        let n = from_esx_conf(&conf);
        assert_eq!(n.management.as_deref(), Some("vmk0"));
        let v = &n.vmknics[0];
        assert_eq!(
            (
                v.dhcp,
                v.address.as_deref(),
                v.prefix_len,
                v.gateway.as_deref()
            ),
            (
                Some(false),
                Some("192.168.1.20"),
                Some(24),
                Some("192.168.1.1")
            )
        );
        assert_eq!(n.switches[0].name, "vSwitch0");
        assert_eq!(n.switches[0].uplinks, ["vmnic0"]);
        assert_eq!(n.switches[0].port_groups[0].vlan, Some(496));
        assert_eq!(n.nics[0].mac.as_deref(), Some("00:0c:29:aa:bb:cc"));
    }
}
