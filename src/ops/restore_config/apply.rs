//! The write: the plan's one state.tgz handed to the one commit, and the read-back check the
//! commit runs on the new file before the bank switches to it.

use super::{Plan, ReadBackError, RestoreConfigError, STATE, WriteMethod};
use crate::esxi::config::{Config, ESX_CONF};
use crate::esxi::leftover::Names;
use crate::io::disk::Disk;
use crate::ops::fix::Outcome;
use crate::write::backup::BackupFile;
use crate::write::commit::{self, BankWrite, CommitError, Method, VerifyError};
use std::path::Path;

/// The read-back check: the bytes are the source's exactly, decode, and carry its esx.conf.
fn verify(plan: &Plan, bytes: &[u8]) -> Result<(), ReadBackError> {
    if bytes != plan.new_bytes.as_slice() {
        return Err(ReadBackError::Bytes);
    }
    let cfg = Config::from_state(bytes, &plan.location).map_err(ReadBackError::Config)?;
    if let Some(want) = &plan.new_esx_conf {
        let got = cfg
            .local
            .as_ref()
            .and_then(|l| l.require(ESX_CONF).ok())
            .ok_or(ReadBackError::NoEsxConf)?;
        if got != want.as_slice() {
            return Err(ReadBackError::EsxConf);
        }
    }
    Ok(())
}

/// Carries out a plan through the one commit (`commit::commit`): the disk taken exclusively,
/// the backup outside it, the crash-safe write, the read-back.
pub fn apply(plan: &Plan, backup_dir: &Path) -> Result<Outcome, RestoreConfigError> {
    run(plan, backup_dir, None)
}

/// [`apply`] on a disk the caller opened for writing (the power-cut tests pass one whose
/// storage records every write and flush).
pub fn apply_on(plan: &Plan, backup_dir: &Path, disk: Disk) -> Result<Outcome, RestoreConfigError> {
    run(plan, backup_dir, Some(disk))
}

/// The plan's one state.tgz as the commit's change; `disk: None` lets the commit open the disk
/// itself, exclusively, before anything else.
fn run(plan: &Plan, backup_dir: &Path, disk: Option<Disk>) -> Result<Outcome, RestoreConfigError> {
    if !plan.has_changes() {
        return Ok(Outcome::default());
    }
    let names = Names::for_file(STATE);
    let check = |b: &[u8]| verify(plan, b).map_err(VerifyError::new);
    // The backup keeps whatever the bank holds (a corrupt or empty state.tgz too); a created
    // file has nothing to keep, and the commit's manifest with no entries says so.
    let (backup, method) = match plan.method {
        WriteMethod::Create => (None, Method::Create { verify: &check }),
        _ => (
            Some(BackupFile {
                partition: plan.partition,
                bank_uuid: Some(plan.bank_uuid.clone()),
                file: plan.file.clone(),
                old_bytes: &plan.old_bytes,
                new_bytes: &plan.new_bytes,
            }),
            Method::Replace { verify: &check },
        ),
    };
    let change = commit::Change {
        location: plan.location.clone(),
        backup,
        dest: commit::Dest::Bank(BankWrite {
            partition: plan.part,
            names: &names,
            old: &plan.old_bytes,
            new: &plan.new_bytes,
            method,
            recover: None,
            tidy: plan.fat_leftover.is_some(),
        }),
    };
    let changes = [change];
    let report = match disk {
        Some(disk) => commit::commit_on(&plan.target_path, backup_dir, &changes, Some(disk)),
        None => commit::commit(&plan.target_path, backup_dir, &changes),
    }
    .map_err(|e| match e {
        CommitError::Changed { .. } => RestoreConfigError::ChangedSincePlan {
            location: plan.location.clone(),
        },
        CommitError::Vanished { partition } => RestoreConfigError::PartitionVanished { partition },
        CommitError::InPlace { partition, why } => RestoreConfigError::InPlace { partition, why },
        CommitError::Tx(e) => RestoreConfigError::Write(e),
        CommitError::Bank(e) => RestoreConfigError::Bank(e),
        CommitError::Disk(e) => RestoreConfigError::Disk(e),
        CommitError::Backup(e) => RestoreConfigError::Backup(e),
        other => RestoreConfigError::Commit(other),
    })?;
    Ok(Outcome::from(report))
}

impl crate::ops::plan::WritePlan for Plan {
    type Error = RestoreConfigError;
    fn target(&self) -> &Path {
        &self.target_path
    }
    fn has_changes(&self) -> bool {
        Plan::has_changes(self)
    }
    fn apply(&self, backup_dir: &Path) -> Result<Outcome, RestoreConfigError> {
        apply(self, backup_dir)
    }
}
