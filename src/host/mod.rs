//! The rescue system bootbank runs on, read-only: its sysfs (PCI devices, drivers, disks).

pub mod netdev;
pub mod sysfs;
