//! bootbank: read an ESXi boot disk offline and tell what the host will boot.
pub mod archive;
pub mod bootbank;
pub mod bootcfg;
pub mod config;
pub mod disk;
pub mod enrich;
pub mod envelope;
pub mod esxconf;
pub mod fat;
pub mod findings;
pub mod inspect;
pub mod nextboot;
pub mod partition;
pub mod pci;
pub mod pciids;
pub mod sysfs;
pub mod transaction;
