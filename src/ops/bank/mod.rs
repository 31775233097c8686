//! `bank status | rollback | select N`: which bank boots next, and changing that offline the way
//! the bootloader and VMware's documented manual method do.
//!
//! - **rollback** is Shift+R done offline: the bank that boots next gets `bootstate=3`, nothing
//!   else changes, and the bootloader's selection then picks the other valid bank.
//! - **select N** changes only bank N: `bootstate=0` when its state would not be valid at boot,
//!   and `updated` one above every other valid bank's when it would not win otherwise (what the
//!   installer writes for a new image). The other banks stay valid, so Shift+R can still go back
//!   to them. The alternative the manual mentions, `bootstate=3` on the other bank, is exactly
//!   `rollback`, and it throws the fallback away.
//!
//! How a change reaches the disk: when the only difference is the one `bootstate` digit, that
//! byte is overwritten in place inside boot.cfg's existing cluster, as the bootloader itself
//! does; the FAT driver says which disk byte holds it (`crate::format::fat::FatVolume::locate`), the directory
//! entry (size, time) is not touched, and a one-byte write cannot be torn (a sector is written
//! whole). Anything else (a missing or multi-digit `bootstate`; a new `updated`, which generally
//! changes the file's length and which the bootloader never rewrites) replaces boot.cfg the safe
//! way of `fix` (`transaction::replace`: a new chain written and verified, then the directory
//! entry switched to it in one sector write). Both go through the one commit
//! (`commit::commit`): the disk taken exclusively, boot.cfg backed up with a sha256 manifest
//! first (undone by `bootbank restore`), synced, and read back.

mod apply;
mod edit;
mod error;
mod plan;
mod planner;
mod status;

pub use apply::*;
pub use edit::*;
pub use error::*;
pub use plan::*;
pub use planner::*;
pub use status::*;

use crate::write::transaction::Names;


/// The file every change here touches.
pub const BOOT_CFG: &str = "boot.cfg";

/// `boot.cfg`, `boot.new`, `boot.old`: the names of the safe replace.
pub fn boot_names() -> Names {
    Names::for_file(BOOT_CFG)
}
