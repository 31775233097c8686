//! The write: a plan's backup files and its steps handed to the one commit.

use super::check::{Prechecked, verify_any};
use super::{BackupFile, FixError, Outcome, Plan, Step};
use crate::ops::inspect::TargetKind;
use crate::io::disk::Disk;
use crate::write::commit;
use crate::write::commit::VerifyError;
use std::cell::RefCell;
use std::path::Path;

/// The backup files of a plan: every file whose configuration changes.
fn backup_files(plan: &Plan) -> Vec<BackupFile<'_>> {
    plan.steps
        .iter()
        .filter(|s| s.changes_anything())
        .map(|s| backup_file(s))
        .collect()
}

fn backup_file(s: &Step) -> BackupFile<'_> {
    BackupFile {
        partition: s.partition,
        bank_uuid: s.bank_uuid.clone(),
        file: s.file.clone(),
        old_bytes: &s.old_bytes,
        new_bytes: &s.new_bytes,
    }
}

/// Writes the backup of a plan (copies of every file about to change and a manifest), fsynced:
/// what [`apply`] does first, for a caller that wants the backup alone.
pub fn write_backup(plan: &Plan, dir: &Path) -> Result<(), FixError> {
    Ok(crate::write::backup::write(
        &plan.target_path,
        dir,
        &backup_files(plan),
    )?)
}

/// Carries out a plan through the one commit (`commit::commit`): exclusive access, backup,
/// recovery of leftovers, safe writes, read-back checks.
pub fn apply(plan: &Plan, backup_dir: &Path) -> Result<Outcome, FixError> {
    apply_on(plan, backup_dir, None)
}

/// [`apply`] on a disk the caller opened for writing (`None`: the commit opens the disk of a
/// disk or partition target itself, exclusively, before anything else): the power-cut tests
/// pass one whose storage records every write and flush.
pub fn apply_on(
    plan: &Plan,
    backup_dir: &Path,
    disk: Option<Disk>,
) -> Result<Outcome, FixError> {
    if !plan.has_changes() {
        return Ok(Outcome::default());
    }
    let decoded = RefCell::new(Vec::new());
    let bundle = plan.kind == TargetKind::ConfigBundle;
    let on_disk = matches!(plan.kind, TargetKind::Disk | TargetKind::Partition);
    let report = std::thread::scope(|s| -> Result<commit::Report, FixError> {
        // The read-back checks start now, on another thread: decoding both archive levels
        // overlaps the backup's and the new file's fsyncs.
        let checks: Vec<Option<Prechecked<'_, '_>>> = plan
            .steps
            .iter()
            .map(|step| {
                step.changes_anything()
                    .then(|| Prechecked::start(s, step, bundle, &decoded))
            })
            .collect();
        let verifies: Vec<_> = checks
            .iter()
            .map(|check| {
                move |b: &[u8]| -> Result<(), VerifyError> {
                    match check {
                        Some(c) => c.verify(b).map_err(VerifyError::new),
                        None => verify_any(b),
                    }
                }
            })
            .collect();
        let mut changes = Vec::new();
        for ((step, check), verify) in plan.steps.iter().zip(&checks).zip(&verifies) {
            let backup = check.is_some().then(|| backup_file(step));
            let dest = if on_disk {
                commit::Dest::Bank(commit::BankWrite {
                    partition: step.partition.unwrap_or(0),
                    names: step.names.as_ref().expect("disk steps have names"),
                    old: &step.old_bytes,
                    // A step without changes only settles leftovers.
                    new: if check.is_some() {
                        &step.new_bytes
                    } else {
                        &step.old_bytes
                    },
                    method: commit::Method::Replace { verify },
                    recover: step
                        .leftover
                        .as_ref()
                        .map(|l| (l, &verify_any as commit::Verify<'_>)),
                    tidy: step.fat_leftover.is_some(),
                })
            } else if check.is_some() {
                // An archive's only step; written in place or to `--output`.
                commit::Dest::HostFile {
                    read: &plan.target_path,
                    old: &step.old_bytes,
                    path: plan
                        .output
                        .clone()
                        .unwrap_or_else(|| plan.target_path.clone()),
                    new: &step.new_bytes,
                    verify,
                }
            } else {
                continue;
            };
            changes.push(commit::Change {
                location: step.location.clone(),
                backup,
                dest,
            });
        }
        Ok(match disk {
            Some(disk) => commit::commit_on(&plan.target_path, backup_dir, &changes, Some(disk))?,
            None => commit::commit(&plan.target_path, backup_dir, &changes)?,
        })
    })?;
    Ok(Outcome {
        decoded: decoded.into_inner(),
        ..Outcome::from(report)
    })
}

impl crate::ops::plan::WritePlan for Plan {
    type Error = FixError;
    fn target(&self) -> &Path {
        &self.target_path
    }
    fn has_changes(&self) -> bool {
        Plan::has_changes(self)
    }
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, FixError> {
        apply(self, backup_dir)
    }
}
