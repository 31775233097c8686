//! bootbank: read an ESXi boot disk offline and tell what the host will boot.
//!
//! ```
//! use bootbank::inspect::{Options, inspect};
//! use std::path::Path;
//!
//! // The demo disk: a 6.7 host whose next-boot bank hands its RAID controller to passthrough.
//! let disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.img");
//! let report = inspect(&disk, &Options::default())?;
//! assert_eq!(report.next_boot_partition, Some(5));
//! let critical: Vec<_> = report
//!     .findings
//!     .iter()
//!     .filter(|f| f.rule == "passthru-storage-adapter")
//!     .collect();
//! assert_eq!(critical[0].device.as_deref(), Some("0000:16:00.0"));
//! # Ok::<(), bootbank::inspect::InspectError>(())
//! ```
//!
//! The modules follow the layers data flows down and edits flow back up (see ARCHITECTURE.md):
//! `ops` (the commands) uses `write`, `esxi` and `host`; those use `format`, which uses `io`.
//! `tests/it/layers.rs` enforces the rule.

#![cfg_attr(not(feature = "internals"), deny(missing_docs))]

// The layers are private: another program uses the front door below. The `internals` feature
// (off by default; bootbank's own tests, fuzz targets and benchmarks turn it on) makes them public
// with no promise of stability, and lifts `missing_docs`, which applies to the front door.
macro_rules! layers {
    ($($name:ident),*) => {$(
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    )*};
}
layers!(esxi, format, host, io, ops, write);

// The commands as library functions, each with its options, plan and report types.
pub use ops::{
    audit, bank, extract, findings, fix, inspect, lint, lockdown, network, passwd, rescue, restore,
    restore_config,
};

// What every writing command's plan offers its caller, and the record of a write.
pub use ops::plan::{Outcome, WriteError, WritePlan};

// The values the reports and plans carry, from the layers below.
pub use esxi::configstore::Ownership;
pub use esxi::configstore::lockdown::{DcuiAccess, Lockdown};
pub use esxi::configstore::network::Ipv4Setting;
pub use esxi::esxconf::Edit;
pub use esxi::network::mask_of;
pub use esxi::pci::{PciAddress, Reading};
pub use esxi::shadow::check_password;
pub use esxi::target::{Target, TargetError};
pub use format::envelope::Encryption;
pub use format::partition::Scheme;
pub use host::sysfs::{Sysfs, SysfsDevice, SysfsError};

// The paths of the flat layout before the layers, kept for bootbank's own tests.
#[cfg(feature = "internals")]
pub use esxi::bank as bootbank;
#[cfg(feature = "internals")]
pub use esxi::{bootcfg, config, configstore, devices, esxconf, nextboot, pci, shadow};
#[cfg(feature = "internals")]
pub use format::{archive, deflate, envelope, fat, partition, pciids};
#[cfg(feature = "internals")]
pub use host::sysfs;
#[cfg(feature = "internals")]
pub use io::{disk, vmdk};
#[cfg(feature = "internals")]
pub use write::transaction;
