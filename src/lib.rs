//! bootbank: read an ESXi boot disk offline and tell what the host will boot.
//!
//! The modules follow the layers data flows down and edits flow back up (see ARCHITECTURE.md):
//! `ops` (the commands) uses `write`, `esxi` and `host`; those use `format`, which uses `io`.
//! `tests/layers.rs` enforces the rule.

pub mod esxi;
pub mod format;
pub mod host;
pub mod io;
pub mod ops;
pub mod write;

// The paths of the flat layout before the layers, kept so that programs (and the tests) written
// against them still build.
pub use esxi::bank as bootbank;
pub use esxi::{bootcfg, config, configstore, devices, esxconf, nextboot, pci};
pub use format::{archive, deflate, envelope, fat, partition, pciids};
pub use host::sysfs;
pub use io::{disk, vmdk};
pub use ops::{audit, bank, extract, findings, fix, inspect, lint};
pub use write::transaction;
