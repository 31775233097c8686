//! Carrying a bank plan out through the one commit.

use crate::esxi::bootcfg::BootCfg;
use crate::io::disk::Disk;
use crate::write::backup::BackupFile;
use crate::write::commit::{self, VerifyError};
use std::path::Path;
use super::error::{BankOpError, BootCfgCheck};
use super::plan::{BankPlan, Method};
use super::status::where_;
use super::{boot_names, BOOT_CFG};

/// What was written: the same record as `fix` keeps.
pub use crate::ops::fix::Outcome;

/// Carries out a plan through the one commit (`commit::commit`): exclusive access, backup,
/// recovery of leftovers, the writes, read-back.
pub fn apply(plan: &BankPlan, backup_dir: &Path) -> Result<Outcome, BankOpError> {
    run(plan, backup_dir, None)
}

/// [`apply`] on a disk the caller opened for writing: the power-cut tests pass one whose
/// storage records every write and flush.
pub fn apply_on(plan: &BankPlan, backup_dir: &Path, disk: Disk) -> Result<Outcome, BankOpError> {
    run(plan, backup_dir, Some(disk))
}

/// The plan's boot.cfg files as the one commit's changes; `disk: None` lets the commit open the
/// disk itself, exclusively, before anything else.
fn run(plan: &BankPlan, backup_dir: &Path, disk: Option<Disk>) -> Result<Outcome, BankOpError> {
    if !plan.has_changes() {
        return Ok(Outcome::default());
    }
    let names = boot_names();
    let verifies: Vec<_> = plan
        .steps
        .iter()
        .map(|s| {
            let want = s.new_bytes.as_slice();
            move |b: &[u8]| -> Result<(), VerifyError> {
                BootCfg::parse(b).map_err(VerifyError::new)?;
                if b != want {
                    return Err(VerifyError::new(BootCfgCheck::Differs));
                }
                Ok(())
            }
        })
        .collect();
    let changes: Vec<commit::Change<'_>> = plan
        .steps
        .iter()
        .zip(&verifies)
        .map(|(s, verify)| commit::Change {
            location: format!("{} /{BOOT_CFG}", where_(s.partition.is_none(), s.number)),
            backup: (s.old_bytes != s.new_bytes).then(|| BackupFile {
                partition: s.partition,
                bank_uuid: Some(s.bank_uuid.clone()),
                file: s.file.clone(),
                old_bytes: &s.old_bytes,
                new_bytes: &s.new_bytes,
            }),
            dest: commit::Dest::Bank(commit::BankWrite {
                partition: s.number,
                names: &names,
                old: &s.old_bytes,
                new: &s.new_bytes,
                method: match s.method {
                    Method::InPlaceDigit => commit::Method::InPlace {
                        offset_in_file: s.offset_in_file.unwrap_or(u64::MAX),
                    },
                    Method::ReplaceFile => commit::Method::Replace { verify },
                },
                recover: s
                    .recover
                    .as_ref()
                    .map(|l| (l, &verify_parses as commit::Verify<'_>)),
                tidy: s.fat_leftover.is_some(),
            }),
        })
        .collect();
    let report = match disk {
        Some(disk) => commit::commit_on(&plan.target_path, backup_dir, &changes, Some(disk))?,
        None => commit::commit(&plan.target_path, backup_dir, &changes)?,
    };
    Ok(Outcome::from(report))
}

fn verify_parses(b: &[u8]) -> Result<(), VerifyError> {
    BootCfg::parse(b).map(|_| ()).map_err(VerifyError::new)
}

impl crate::ops::plan::WritePlan for BankPlan {
    type Error = BankOpError;
    fn target(&self) -> &Path {
        &self.target_path
    }
    fn has_changes(&self) -> bool {
        BankPlan::has_changes(self)
    }
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, BankOpError> {
        apply(self, backup_dir)
    }
}
