//! `network`: the management network of the configuration the host boots next, as ESXi will
//! bring it up, and the changes admins make offline when a host cannot be reached (a static
//! address, DHCP, the management port group's VLAN), through `fix`'s engine
//! ([`fix::plan_with`], [`fix::member_step`]): the same banks, plan, dry run, backup, crash-safe
//! write and read-back as `fix` and `passwd`.
//!
//! Where the network is read and changed follows the store the build obeys, decided as for
//! devices (`Obeyed`): the ConfigStore from 7.0U2 on
//! (`crate::esxi::configstore::network`), esx.conf before. esx.conf's network lines are shown
//! but never changed: no published line names the vmknic (`vmk0`) of a `child[NNNN]`, so
//! bootbank cannot tell which lines to change ([`NetworkError::EsxConfBuild`]).
//!
//! With a sysfs tree (`--sysfs`, or `/sys` when the target is a block device of this machine)
//! the uplinks' MACs are matched with the NICs present: a management vSwitch whose uplinks are
//! all gone (the NIC-swap case) is a critical finding.

use crate::esxi::config::Config;
use crate::esxi::configstore::network::{Ipv4Setting, NetworkRecords, NetworkRefusal};
use crate::esxi::configstore::{self, ConfigStore, ConfigStoreError, schema};
use crate::esxi::devices::{Obeyed, Store};
use crate::esxi::network::{self, HostNetwork};
use crate::format::envelope::Encryption;
use crate::host::netdev::{self, PresentNic};
use crate::ops::findings::{Finding, Severity};
use crate::ops::fix::{self, FixError, Options, Plan, StepInput};
use crate::ops::inspect::{self, InspectError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Rule: every uplink of the vSwitch carrying the management vmknic is missing from this
/// machine (matched by MAC): after a NIC swap ESXi comes up without a management network.
pub const MANAGEMENT_UPLINK_MISSING: &str = "management-uplink-missing";
/// Rule: some, not all, uplinks of the management vSwitch are missing from this machine.
pub const MANAGEMENT_UPLINK_PARTLY_MISSING: &str = "management-uplink-partly-missing";

/// Why `network` could not show or change the network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The target could not be read as an ESXi boot medium (see `InspectError`). Nothing was
    /// written.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// `fix`'s engine failed; `show` and `precheck` never return this (`plan` returns its
    /// `FixError` directly).
    #[error(transparent)]
    Fix(#[from] FixError),
    /// The bank that boots next (or the archive) holds no configuration, or one without
    /// esx.conf to fall back on. Nothing was written.
    #[error("{location}: no configuration found")]
    NoConfig {
        /// Where the configuration was looked for: `partition 5 /state.tgz`, or the target.
        location: String,
    },
    /// local.tgz is encrypted with a key sealed by the host's TPM: the network can be neither
    /// read nor changed offline. Nothing was written.
    #[error(
        "{location}: the configuration is sealed by the host's TPM; no offline tool can read it"
    )]
    TpmSealed {
        /// Where the configuration was read: `partition 5 /state.tgz`.
        location: String,
    },
    /// The ConfigStore in local.tgz, or its network records, cannot be read. Nothing was
    /// written.
    #[error("{location} > local.tgz: ConfigStore: {cause}")]
    Store {
        /// Where the configuration was read: `partition 5 /state.tgz`.
        location: String,
        /// What was wrong with the database or its records.
        cause: ConfigStoreError,
    },
    /// The build reads its network from esx.conf (before 7.0U2), whose vmknic lines bootbank
    /// cannot tie to a vmknic name: shown, never changed. Nothing was written.
    #[error(
        "{location}: {} reads its network from esx.conf, and no published esx.conf line ties /net/vmkernelnic/child[NNNN] to a vmknic name, so bootbank does not change it; nothing was written",
        .build.as_deref().map(|b| format!("build {b}")).unwrap_or_else(|| "this configuration".into())
    )]
    EsxConfBuild {
        /// Where the configuration was read: `partition 5 /state.tgz`.
        location: String,
        /// The build the store was decided by (from boot.cfg, Manifest.txt or the schema
        /// store); None when no build is known.
        build: Option<String>,
    },
    /// The change names a vmknic the configuration does not have. Nothing was written.
    #[error("{location}: no vmknic {vmk} (vmknics: {})", .known.join(", "))]
    NoVmknic {
        /// Where the configuration was read: `partition 5 /state.tgz`.
        location: String,
        /// The vmknic asked for (`vmk0`).
        vmk: String,
        /// The vmknics the configuration has, to pick from.
        known: Vec<String>,
    },
}

/// How an uplink of the management vSwitch compares with the NICs present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UplinkPresence {
    /// The uplink's name in the configuration (`vmnic0`).
    pub uplink: String,
    /// Its MAC as the configuration records it; None when it records none, and then the uplink
    /// is left out of the missing-uplink findings.
    pub mac: Option<String>,
    /// The PCI address the configuration gives it.
    pub pci_address: Option<String>,
    /// The interface of this machine with that MAC.
    pub present_as: Option<PresentNic>,
}

/// What `network` shows.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkReport {
    /// The target path as given.
    pub target: String,
    /// Where the configuration was read: `partition 5 /state.tgz`.
    pub location: String,
    /// Which store the build obeys (as for devices).
    pub obeyed: Option<Obeyed>,
    /// The vmknics, vSwitches, port groups and NICs as ESXi will bring them up, read from that
    /// store.
    pub network: HostNetwork,
    /// The sysfs tree the NICs present were read from, when one was used.
    pub sysfs_root: Option<String>,
    /// The network interfaces of this machine with hardware behind them (`class/net` of the
    /// sysfs tree); None without a sysfs tree.
    pub present_nics: Option<Vec<PresentNic>>,
    /// The management vSwitch's uplinks matched with the NICs present (with a sysfs tree).
    pub uplinks: Vec<UplinkPresence>,
    /// `management-uplink-missing` (critical: every uplink with a MAC is gone, the NIC-swap
    /// case) or `management-uplink-partly-missing` (warning); empty without a sysfs tree.
    pub findings: Vec<Finding>,
}

impl NetworkReport {
    /// Whether a finding is critical, i.e. ESXi will come up without a management network; the
    /// CLI then exits with 1.
    pub fn has_critical(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Critical)
    }
}

/// Options of `network` (show).
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// The sysfs tree of the machine the disk is in (default: `/sys` for a block device).
    pub sysfs: Option<PathBuf>,
}

/// The network of the configuration the host boots next (or the archive's).
pub fn show(target: &Path, opts: &ShowOptions) -> Result<NetworkReport, NetworkError> {
    let (report, configs) = inspect::inspect_with_config(target, &inspect::Options::default())?;
    let location = report
        .config
        .as_ref()
        .map(|c| c.source.clone())
        .unwrap_or_else(|| target.display().to_string());
    let cfg = configs.next.ok_or_else(|| NetworkError::NoConfig {
        location: location.clone(),
    })?;
    let obeyed = report
        .config
        .as_ref()
        .and_then(|c| c.device_ownership.clone());
    let network = host_network(&cfg, obeyed.as_ref(), &location)?;
    let root = opts.sysfs.clone().or_else(|| {
        std::fs::metadata(target)
            .ok()
            .filter(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_block_device()
            })
            .map(|_| PathBuf::from("/sys"))
    });
    let mut out = NetworkReport {
        target: target.display().to_string(),
        location,
        obeyed,
        sysfs_root: root.as_ref().map(|r| r.display().to_string()),
        present_nics: None,
        uplinks: Vec::new(),
        findings: Vec::new(),
        network,
    };
    if let Some(root) = root {
        let present = netdev::present_nics(&root);
        match_uplinks(&mut out, &present);
        out.present_nics = Some(present);
    }
    Ok(out)
}

/// The network of a decoded configuration, from the store its build obeys.
pub fn host_network(
    cfg: &Config,
    obeyed: Option<&Obeyed>,
    location: &str,
) -> Result<HostNetwork, NetworkError> {
    if cfg.encryption == Encryption::Tpm {
        return Err(NetworkError::TpmSealed {
            location: location.to_string(),
        });
    }
    let store_err = |cause| NetworkError::Store {
        location: location.to_string(),
        cause,
    };
    let from_conf = || {
        cfg.esx_conf
            .as_ref()
            .map(network::from_esx_conf)
            .ok_or_else(|| NetworkError::NoConfig {
                location: location.to_string(),
            })
    };
    if obeyed.and_then(|o| o.store) == Some(Store::EsxConf) {
        return from_conf();
    }
    let Some(local) = cfg.local.as_ref() else {
        return from_conf();
    };
    match ConfigStore::from_local(local).map_err(store_err)? {
        Some(store) => {
            let net = network_records(&store, local).map_err(store_err)?;
            if net.vmknics.is_empty() && obeyed.and_then(|o| o.store).is_none() {
                return from_conf();
            }
            Ok(network::from_store(&net, &store, cfg.esx_conf.as_ref()))
        }
        None => from_conf(),
    }
}

fn network_records(
    store: &ConfigStore,
    local: &crate::format::archive::Tgz,
) -> Result<NetworkRecords, ConfigStoreError> {
    let schemas = local
        .member(schema::MEMBER)
        .filter(|m| m.is_file())
        .map(|m| local.data(m));
    store.network_records(schemas)
}

/// Matches the management vSwitch's uplinks with the NICs present, by MAC.
fn match_uplinks(out: &mut NetworkReport, present: &[PresentNic]) {
    let uplinks: Vec<UplinkPresence> = out
        .network
        .management_switch_uplinks()
        .into_iter()
        .map(|n| UplinkPresence {
            uplink: n.name.clone(),
            mac: n.mac.clone(),
            pci_address: n.pci_address.clone(),
            present_as: n.mac.as_ref().and_then(|m| {
                present
                    .iter()
                    .find(|p| p.mac.eq_ignore_ascii_case(m))
                    .cloned()
            }),
        })
        .collect();
    let with_mac: Vec<&UplinkPresence> = uplinks.iter().filter(|u| u.mac.is_some()).collect();
    let missing: Vec<&UplinkPresence> = with_mac
        .iter()
        .copied()
        .filter(|u| u.present_as.is_none())
        .collect();
    let vmk = out.network.management.clone().unwrap_or_default();
    let here = present
        .iter()
        .map(|p| format!("{} {}", p.name, p.mac))
        .collect::<Vec<_>>()
        .join(", ");
    let describe = |u: &UplinkPresence| {
        format!(
            "{} (MAC {}{})",
            u.uplink,
            u.mac.as_deref().unwrap_or("?"),
            u.pci_address
                .as_deref()
                .map(|a| format!(", PCI {a}"))
                .unwrap_or_default()
        )
    };
    if !missing.is_empty() {
        let all = missing.len() == with_mac.len();
        out.findings.push(Finding {
            severity: if all {
                Severity::Critical
            } else {
                Severity::Warning
            },
            rule: if all {
                MANAGEMENT_UPLINK_MISSING
            } else {
                MANAGEMENT_UPLINK_PARTLY_MISSING
            },
            device: missing[0].pci_address.clone(),
            message: format!(
                "{} of the vSwitch carrying management ({vmk}) {} not in this machine: no NIC here has {} (NICs here: {}){}",
                missing.iter().map(|u| describe(u)).collect::<Vec<_>>().join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                if missing.len() == 1 { "its MAC" } else { "their MACs" },
                if here.is_empty() { "none".to_string() } else { here },
                if all {
                    "; ESXi will come up without a management network (the NIC-swap case)"
                } else {
                    ""
                }
            ),
            fix: Some(
                "put the original NIC back, or on the host's console (DCUI: Configure Management Network > Network Adapters) select the new NIC for management".to_string(),
            ),
        });
    }
    out.uplinks = uplinks;
}

/// A change `network` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkChange {
    /// Set the IPv4 address of a vmknic (`--ip ADDR/LEN --gateway GW`, or `--dhcp`).
    Ipv4 {
        /// The vmknic, as the configuration names it (`vmk0`).
        vmk: String,
        /// DHCP, or a static address, mask and default gateway.
        setting: Ipv4Setting,
    },
    /// Set the VLAN of the standard-vSwitch port group a vmknic is connected to (`--vlan`).
    Vlan {
        /// The vmknic, as the configuration names it (`vmk0`).
        vmk: String,
        /// The VLAN id, 0 (untagged) to 4095; the CLI refuses more, the host's schema decides
        /// the range allowed.
        vlan: u16,
    },
}

impl NetworkChange {
    fn vmk(&self) -> &str {
        match self {
            NetworkChange::Ipv4 { vmk, .. } | NetworkChange::Vlan { vmk, .. } => vmk,
        }
    }
}

/// Checks, read-only, that the configuration the host boots next keeps its network where
/// bootbank can change it (the ConfigStore) and has the vmknic; the plan then checks every
/// chosen bank again.
pub fn precheck(target: &Path, change: &NetworkChange) -> Result<(), NetworkError> {
    let (report, configs) = inspect::inspect_with_config(target, &inspect::Options::default())?;
    let location = report
        .config
        .as_ref()
        .map(|c| c.source.clone())
        .unwrap_or_else(|| target.display().to_string());
    let Some(cfg) = configs.next else {
        return Err(NetworkError::NoConfig { location });
    };
    if cfg.encryption == Encryption::Tpm {
        return Err(NetworkError::TpmSealed { location });
    }
    let obeyed = report
        .config
        .as_ref()
        .and_then(|c| c.device_ownership.clone());
    let net = host_network(&cfg, obeyed.as_ref(), &location)?;
    if net.source == Store::EsxConf {
        return Err(NetworkError::EsxConfBuild {
            location,
            build: obeyed.and_then(|o| o.build),
        });
    }
    if !net.vmknics.iter().any(|v| v.device == change.vmk()) {
        return Err(NetworkError::NoVmknic {
            location,
            vmk: change.vmk().to_string(),
            known: net.vmknics.iter().map(|v| v.device.clone()).collect(),
        });
    }
    Ok(())
}

/// Builds the plan of `change` in the banks `opts` chooses (or in the archive target).
pub fn plan(target: &Path, change: &NetworkChange, opts: &Options) -> Result<Plan, FixError> {
    fix::plan_with(target, opts, true, &mut |input, _plan| step(input, change))
}

fn step(input: &StepInput<'_>, change: &NetworkChange) -> Result<fix::Step, FixError> {
    let location = input.location;
    let cfg = Config::from_state_for_edit(input.state, location)?;
    if cfg.encryption == Encryption::Tpm {
        return fix::member_step(input, &cfg, Vec::new(), Vec::new());
    }
    let store_err = |cause| FixError::Store {
        location: location.to_string(),
        cause,
    };
    let local = cfg.local.as_ref().ok_or_else(|| FixError::NoLocalTgz {
        location: location.to_string(),
    })?;
    let Some(store) = ConfigStore::from_local(local).map_err(store_err)? else {
        return Err(store_err(
            NetworkRefusal::NoRecord {
                key: configstore::network::VMKNICS.to_string(),
                identifier: format!("{} (this configuration has no ConfigStore)", change.vmk()),
            }
            .into(),
        ));
    };
    let obeyed = Obeyed::decide(&[
        (
            input.build.as_ref().map(|(b, _)| b.clone()),
            input.build.as_ref().map(|(_, f)| *f).unwrap_or("boot.cfg"),
        ),
        (store.schemas.esx_base_build(), "schema store"),
    ]);
    if obeyed.store == Some(Store::EsxConf) {
        return Err(store_err(
            NetworkRefusal::NoRecord {
                key: configstore::network::VMKNICS.to_string(),
                identifier: format!(
                    "{} read by {} (it reads its network from esx.conf, which bootbank does not change)",
                    change.vmk(),
                    obeyed.build.as_deref().unwrap_or("this build")
                ),
            }
            .into(),
        ));
    }
    let net = network_records(&store, local).map_err(store_err)?;
    let edit = match change {
        NetworkChange::Ipv4 { vmk, setting } => store.set_vmknic_ipv4(&net, vmk, setting),
        NetworkChange::Vlan { vmk, vlan } => store.set_port_group_vlan(&net, vmk, *vlan),
    };
    let mut notes = Vec::new();
    let edit = match edit {
        Ok(e) => e,
        Err(ConfigStoreError::Network(NetworkRefusal::AlreadySet { .. })) => {
            notes.push(format!(
                "{location}: {} already reads so; nothing to change",
                change.vmk()
            ));
            return fix::member_step(input, &cfg, Vec::new(), notes);
        }
        Err(e) => return Err(store_err(e)),
    };
    let words: Vec<String> = edit
        .rows
        .iter()
        .map(|r| {
            format!(
                "{} record {} (rowid {}), {}: {}; ModifiedTime {} -> {}, Revision {} -> {} (set by the store's own triggers); {}; no other row or column changes",
                r.key,
                r.identifier,
                r.rowid,
                r.column,
                r.fields.join(", "),
                r.modified_time.0.as_deref().unwrap_or("NULL"),
                r.modified_time.1.as_deref().unwrap_or("NULL"),
                r.revision.0.map(|x| x.to_string()).unwrap_or("NULL".into()),
                r.revision.1.map(|x| x.to_string()).unwrap_or("NULL".into()),
                if r.reserialised {
                    "the column's JSON text was re-serialised (keys sorted), its other fields unchanged"
                } else {
                    "only the changed fields' bytes of the column's JSON text change"
                },
            )
        })
        .collect();
    if let (NetworkChange::Ipv4 { .. }, Some(conf)) = (change, cfg.esx_conf.as_ref())
        && let Some(addr) = conf.get(network::MANAGEMENT_ADDR)
    {
        notes.push(format!(
            "esx.conf {} = \"{addr}\" is left as it is: 7.0U2 and later keep the address in the ConfigStore, and whether they still read that line is not known",
            network::MANAGEMENT_ADDR
        ));
    }
    if let NetworkChange::Ipv4 {
        setting:
            Ipv4Setting::Static {
                address,
                netmask,
                gateway,
            },
        ..
    } = change
    {
        let (a, m, g) = (
            u32::from(*address),
            u32::from(*netmask),
            u32::from(*gateway),
        );
        if a & m != g & m {
            notes.push(format!(
                "the gateway {gateway} is not in {address}'s subnet ({}/{}): written as asked, but the host will not reach it unless a route says how",
                std::net::Ipv4Addr::from(a & m),
                m.leading_ones()
            ));
        }
    }
    if let NetworkChange::Vlan { vmk, vlan } = change
        && let Some(pg) = net
            .vmknics
            .iter()
            .find(|r| r.identifier == *vmk)
            .and_then(|r| r.str("port_group"))
    {
        let others: Vec<&str> = net
            .vmknics
            .iter()
            .filter(|r| r.identifier != *vmk && r.str("port_group") == Some(pg))
            .map(|r| r.identifier.as_str())
            .collect();
        notes.push(format!(
            "VLAN {vlan} applies to the whole port group \"{pg}\": every VM and vmknic on it{}; the physical switch port must carry VLAN {vlan}",
            if others.is_empty() {
                String::new()
            } else {
                format!(" (also {})", others.join(", "))
            }
        ));
    }
    if let NetworkChange::Ipv4 {
        vmk,
        setting: Ipv4Setting::Static { .. },
    } = change
    {
        let dns_dhcp = net
            .vmknics
            .iter()
            .find(|r| r.identifier == *vmk)
            .and_then(|r| r.merged.get("ip"))
            .and_then(|ip| ip.get("dhcp_dns"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        if dns_dhcp {
            notes.push(format!(
                "{vmk}'s ip.dhcp_dns (DNS servers from DHCP) is left as it is: with a static address the host may have no DNS servers until they are set on the host (esxcli network ip dns server add)"
            ));
        }
    }
    fix::member_step(
        input,
        &cfg,
        vec![(configstore::MEMBER.to_string(), edit.bytes, words)],
        notes,
    )
}
