//! What ESXi means by those bytes: a bootbank and its boot.cfg, which bank boots next, the
//! configuration stack (state.tgz, envelope, local.tgz), esx.conf, the ConfigStore, PCI
//! addresses in ESXi's forms, and the devices a configuration describes.

pub mod bank;
pub mod bootcfg;
pub mod config;
pub mod configstore;
pub mod devices;
pub mod esxconf;
pub mod leftover;
pub mod network;
pub mod nextboot;
pub mod pci;
pub mod shadow;
pub mod target;
