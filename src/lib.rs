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

pub mod esxi;
pub mod format;
pub mod host;
pub mod io;
pub mod ops;
pub mod write;

// The paths of the flat layout before the layers, kept so that programs (and the tests) written
// against them still build.
pub use esxi::bank as bootbank;
pub use esxi::{bootcfg, config, configstore, devices, esxconf, nextboot, pci, shadow};
pub use format::{archive, deflate, envelope, fat, partition, pciids};
pub use host::sysfs;
pub use io::{disk, vmdk};
pub use ops::{
    audit, bank, extract, findings, fix, inspect, lint, lockdown, network, passwd, rescue, restore,
    restore_config,
};
pub use write::transaction;
