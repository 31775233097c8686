//! The bytes: a disk image, block device or flat VMDK read and written through a block cache,
//! and the exclusive open that writing needs. Knows nothing of partitions or ESXi.

pub mod disk;
// Test support (the power-cut replays), compiled for bootbank's own tests only.
#[cfg(feature = "internals")]
pub mod record;
pub mod vmdk;
