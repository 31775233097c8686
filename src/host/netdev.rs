//! The network interfaces the rescue system's kernel sees: name, MAC address and the PCI
//! function behind each, from sysfs `class/net/<name>/address` and the `device` link.
//!
//! Read to tell whether the NICs a configuration's vSwitches use as uplinks are still in the
//! machine (a swapped card keeps ESXi's configuration pointing at a MAC that is gone). Like
//! [`crate::host::sysfs`], every read is tolerant: an interface without a readable address or
//! without a device link (loopback, bridges, tunnels) is left out or listed without a PCI
//! address; the root may be `/sys` or a captured copy.

use crate::esxi::pci::PciAddress;
use serde::Serialize;
use std::fs;
use std::path::Path;

/// One network interface with hardware behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresentNic {
    /// The kernel's name (`eth0`, `enp11s0`).
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// lspci form of the PCI function behind it, when its `device` link names one.
    pub pci_address: Option<String>,
}

/// Every interface of `root/class/net` with a MAC address and a `device` link, sorted by name.
pub fn present_nics(root: &Path) -> Vec<PresentNic> {
    let Ok(dir) = fs::read_dir(root.join("class/net")) else {
        return Vec::new();
    };
    let mut out: Vec<PresentNic> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let base = root.join("class/net").join(&name);
            // Only the link's last component is used, so an absolute or dangling link is
            // harmless; an interface without one is virtual.
            let device = fs::read_link(base.join("device")).ok()?;
            let mac = fs::read_to_string(base.join("address")).ok()?;
            let mac = mac.trim().to_ascii_lowercase();
            if mac.len() != 17 || mac == "00:00:00:00:00:00" {
                return None;
            }
            let pci_address = device
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| PciAddress::parse_pci(n).ok())
                .map(|a| a.to_pci_string());
            Some(PresentNic {
                name,
                mac,
                pci_address,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
