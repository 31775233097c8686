//! `bootbank network`: show the management network, or change a vmknic's IPv4 setting or its
//! port group's VLAN through `fix`'s plan, question and write.

use bootbank::Ipv4Setting;
use bootbank::network::{NetworkChange, NetworkReport, ShowOptions};
use clap::Args;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct NetworkArgs {
    /// Disk image, block device, bootbank partition, state.tgz or config bundle.
    target: PathBuf,
    /// Match the uplinks' MACs with the NICs of this sysfs tree (default: /sys when TARGET is
    /// a block device of this machine).
    #[arg(long, value_name = "DIR")]
    sysfs: Option<PathBuf>,
    /// The vmknic to change.
    #[arg(long, value_name = "NAME", default_value = "vmk0")]
    vmk: String,
    /// Give the vmknic this static address, e.g. 192.168.1.20/24 (needs --gateway).
    #[arg(long, value_name = "ADDR/LEN", requires = "gateway", conflicts_with_all = ["dhcp", "vlan"])]
    ip: Option<String>,
    /// The IPv4 default gateway of the vmknic's TCP/IP stack, with --ip.
    #[arg(long, value_name = "GW", requires = "ip")]
    gateway: Option<Ipv4Addr>,
    /// Put the vmknic back on DHCP.
    #[arg(long, conflicts_with = "vlan")]
    dhcp: bool,
    /// Set the VLAN (0-4095, 0 = untagged) of the port group the vmknic is connected to.
    #[arg(long, value_name = "N")]
    vlan: Option<u16>,
    #[command(flatten)]
    write: super::fix::WriteArgs,
}

/// The change asked for, or None to show.
fn change(a: &NetworkArgs) -> Result<Option<NetworkChange>, String> {
    let vmk = a.vmk.clone();
    if let Some(ip) = &a.ip {
        let (addr, len) = ip
            .split_once('/')
            .ok_or_else(|| format!("--ip {ip}: give ADDR/LEN, e.g. 192.168.1.20/24"))?;
        let address: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("--ip {ip}: {addr} is not an IPv4 address"))?;
        let netmask = len
            .parse::<u8>()
            .ok()
            .filter(|l| (1..=32).contains(l))
            .and_then(bootbank::mask_of)
            .ok_or_else(|| format!("--ip {ip}: the prefix length must be 1 to 32"))?;
        let gateway = a.gateway.ok_or("--ip needs --gateway")?;
        return Ok(Some(NetworkChange::Ipv4 {
            vmk,
            setting: Ipv4Setting::Static {
                address,
                netmask,
                gateway,
            },
        }));
    }
    if a.dhcp {
        return Ok(Some(NetworkChange::Ipv4 {
            vmk,
            setting: Ipv4Setting::Dhcp,
        }));
    }
    if let Some(vlan) = a.vlan {
        if vlan > 4095 {
            return Err(format!("--vlan {vlan}: a VLAN id is 0 to 4095"));
        }
        return Ok(Some(NetworkChange::Vlan { vmk, vlan }));
    }
    Ok(None)
}

pub fn run(a: NetworkArgs) -> ExitCode {
    let change = match change(&a) {
        Ok(c) => c,
        Err(msg) => return super::fail(&msg, 2),
    };
    let Some(change) = change else {
        return show(&a);
    };
    if let Err(e) = bootbank::network::precheck(&a.target, &change) {
        let msg = match &e {
            bootbank::network::NetworkError::TpmSealed { .. } => format!(
                "{e}; nothing was written. What still works: on the host's console (DCUI: F2, Configure Management Network: IPv4 Configuration, VLAN), or `esxcli network ip interface ipv4 set -i {} -t static -I ADDR -N MASK -g GW` / `esxcli network vswitch standard portgroup set -p \"PORT GROUP\" -v VLAN` while a session is open, then /sbin/auto-backup.sh; or boot with the encryption recovery key",
                a.vmk
            ),
            _ => e.to_string(),
        };
        return super::fail(&msg, 2);
    }
    super::fix::execute(&a.target, &a.write, |o| {
        bootbank::network::plan(&a.target, &change, o)
    })
}

fn show(a: &NetworkArgs) -> ExitCode {
    let opts = ShowOptions {
        sysfs: a.sysfs.clone(),
    };
    let report = match bootbank::network::show(&a.target, &opts) {
        Ok(r) => r,
        Err(e) => return super::fail(&e.to_string(), 2),
    };
    if a.write.json {
        super::print_json(&report);
    } else {
        print(&report);
    }
    if report.has_critical() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "-".into())
}

/// The human form, written in one piece (a closed pipe ends quietly, as `print_json`).
fn print(r: &NetworkReport) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut out = String::new();
    let n = &r.network;
    _ = writeln!(
        out,
        "{}: network of {}, read from {}",
        r.target, r.location, n.source
    );
    if let Some(o) = &r.obeyed {
        _ = writeln!(out, "  the store, decided as for devices: {}", o.why);
    }
    _ = writeln!(
        out,
        "Management: {} ({})",
        opt(&n.management),
        if n.management_from.is_empty() {
            "nothing names it".to_string()
        } else {
            n.management_from.join("; ")
        }
    );
    for v in &n.vmknics {
        let addr = match (v.dhcp, &v.address) {
            (Some(true), _) => format!(
                "DHCP{}",
                v.dhcp_server
                    .as_ref()
                    .map(|s| format!(" (last lease from {s})"))
                    .unwrap_or_default()
            ),
            (_, Some(a)) => format!("{a}/{} (mask {})", opt(&v.prefix_len), opt(&v.netmask)),
            _ => "no IPv4 address".to_string(),
        };
        _ = writeln!(
            out,
            "{}{}: {addr}, gateway {}{}",
            v.device,
            if v.management { " [management]" } else { "" },
            opt(&v.gateway),
            v.gateway_from
                .as_ref()
                .map(|g| format!(" ({g})"))
                .unwrap_or_default()
        );
        _ = writeln!(
            out,
            "  port group {}, VLAN {}, vSwitch {}, uplinks {}, MAC {}, net stack {}",
            opt(&v.port_group),
            opt(&v.vlan),
            opt(&v.vswitch),
            if v.uplinks.is_empty() {
                "-".to_string()
            } else {
                v.uplinks.join(", ")
            },
            opt(&v.mac),
            opt(&v.net_stack)
        );
    }
    for s in &n.switches {
        _ = writeln!(out, "{}: uplinks {}", s.name, s.uplinks.join(", "));
        for pg in &s.port_groups {
            _ = writeln!(out, "  port group {}: VLAN {}", pg.name, opt(&pg.vlan));
        }
    }
    for nic in &n.nics {
        _ = writeln!(
            out,
            "{}: MAC {}, PCI {}{}",
            nic.name,
            opt(&nic.mac),
            opt(&nic.pci_address),
            nic.bus_address
                .as_ref()
                .map(|b| format!(" (ConfigStore {b})"))
                .unwrap_or_default()
        );
    }
    if let Some(root) = &r.sysfs_root {
        _ = writeln!(out, "NICs present ({root}):");
        for p in r.present_nics.iter().flatten() {
            _ = writeln!(
                out,
                "  {} MAC {} PCI {}",
                p.name,
                p.mac,
                opt(&p.pci_address)
            );
        }
        for u in &r.uplinks {
            match &u.present_as {
                Some(p) => {
                    _ = writeln!(
                        out,
                        "  uplink {} (MAC {}): present as {}",
                        u.uplink,
                        opt(&u.mac),
                        p.name
                    )
                }
                None => {
                    _ = writeln!(
                        out,
                        "  uplink {} (MAC {}): not in this machine",
                        u.uplink,
                        opt(&u.mac)
                    )
                }
            }
        }
    }
    for p in &n.problems {
        _ = writeln!(out, "note: {p}");
    }
    for f in &r.findings {
        _ = writeln!(out, "{:?} [{}]: {}", f.severity, f.rule, f.message);
        if let Some(fix) = &f.fix {
            _ = writeln!(out, "  fix: {fix}");
        }
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}
