//! The plan a bank command shows: each boot.cfg, how it is written, the keys that change.

use crate::write::transaction::Leftover;
use serde::Serialize;
use std::path::PathBuf;

/// How a step reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// One `bootstate` digit overwritten inside boot.cfg's cluster, as the bootloader does.
    InPlaceDigit,
    /// boot.cfg replaced the safe way: a new chain written and verified, then the directory entry
    /// switched to it.
    ReplaceFile,
}

/// One boot.cfg key that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// The boot.cfg key, e.g. `updated` or `bootstate`.
    pub key: String,
    /// The value before (null when the key was not written).
    pub old: Option<String>,
    /// The value after, as written.
    pub new: String,
}

/// The change to one bank's boot.cfg.
#[derive(Debug, Clone, Serialize)]
pub struct BankStep {
    /// Partition number (null for a lone partition image).
    pub partition: Option<u32>,
    /// The bank's UUID (as in `/vmfs/volumes/<uuid>`).
    pub bank_uuid: String,
    /// The file changed (`boot.cfg`).
    pub file: String,
    /// How it is written: one digit in place, or a new file switched in.
    pub method: Method,
    /// For [`Method::InPlaceDigit`]: the digit's byte offset inside boot.cfg.
    pub offset_in_file: Option<u64>,
    /// The keys that change.
    pub changes: Vec<KeyChange>,
    /// What the user should know about this step, in words.
    pub notes: Vec<String>,
    /// An interrupted boot.cfg write that is completed or undone first.
    pub recover: Option<Leftover>,
    /// What an interrupted write left in the bank's FAT, reclaimed first.
    pub fat_leftover: Option<String>,
    /// boot.cfg as read (the commit checks it is still there before writing).
    #[serde(skip)]
    pub old_bytes: Vec<u8>,
    /// boot.cfg as it will be written.
    #[serde(skip)]
    pub new_bytes: Vec<u8>,
    #[serde(skip)]
    pub(super) number: u32,
}

/// What a bank command will do, shown before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct BankPlan {
    /// The target as given.
    pub target: String,
    /// `rollback`, `select` or `restore`.
    pub action: &'static str,
    /// The bank `select` makes boot next.
    pub selected_partition: Option<u32>,
    /// The bank that boots next as the disk is now.
    pub next_boot_partition_before: Option<u32>,
    /// The prediction for the boot.cfg files this plan writes.
    pub next_boot_partition_after: Option<u32>,
    /// One step per boot.cfg written.
    pub steps: Vec<BankStep>,
    /// Why these changes, in words.
    pub explanation: String,
    #[serde(skip)]
    pub(super) target_path: PathBuf,
}

impl BankPlan {
    /// Whether anything would be written.
    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.old_bytes != s.new_bytes || s.recover.is_some() || s.fat_leftover.is_some())
    }
}
