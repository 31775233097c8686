//! Pure formats, each read and written byte-faithfully: partition tables, FAT, deflate and gzip,
//! tar, the encrypted envelope, pci.ids. Nothing here knows what ESXi means by them.

pub mod archive;
pub mod deflate;
pub mod envelope;
pub mod fat;
pub mod partition;
pub mod pciids;
pub mod verdict;
