//! bootbank: read an ESXi boot disk offline and tell what the host will boot.
pub mod pci;
