//! Reading a target's banks once, and the next-boot prediction `bank status` shows.

use crate::esxi::bank::{Bank, BootCfgUnread};
use crate::esxi::bootcfg::BootCfg;
use crate::esxi::nextboot::Candidate;
use crate::esxi::target::TargetError;
use crate::esxi::{bank as bootbank, nextboot};
use crate::ops::inspect::{self, BankReport, TargetKind};
use crate::write::transaction::{self, Leftover, TxError};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use super::boot_names;
use super::error::{BankOpError, NoBanksIn};

/// The banks and the next-boot prediction, by the same engine as `inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The target as given.
    pub target: String,
    /// `disk` or `partition` (a lone bank partition image).
    pub kind: TargetKind,
    /// Every bank, as `inspect` reports it.
    pub banks: Vec<BankReport>,
    /// The bank that boots next; null when it cannot be told or for a lone partition.
    pub next_boot_partition: Option<u32>,
    /// Whether a bank boots; null when that cannot be told (see `next_boot_unknown`).
    pub will_boot: Option<bool>,
    /// Why the next boot cannot be predicted from the disk alone; null when it can.
    pub next_boot_unknown: Option<String>,
    /// The surprising parts of the prediction, in words (as `inspect`).
    pub explanation: Vec<String>,
    /// The bank Shift+R (or `bank rollback`) would boot instead; null when there is none
    /// ("No alternate hypervisor to roll back to") or for a lone partition.
    pub rollback_partition: Option<u32>,
    /// What Shift+R at boot would do, in words (null for a lone partition or when no bank
    /// boots).
    pub rollback_explanation: Option<String>,
    /// Leftovers of an interrupted boot.cfg write and partition table warnings.
    pub warnings: Vec<String>,
}

/// One bank as read. `bank.boot_cfg` is what the bootloader reads now (status predicts with
/// it, like inspect); `effective` and `bytes` are boot.cfg as it will be once an interrupted
/// replace is completed or undone, which the write commands do first and plan with.
pub(super) struct Read {
    pub(super) bank: Bank,
    pub(super) effective: Result<BootCfg, BootCfgUnread>,
    /// The effective boot.cfg bytes (empty when there is none).
    pub(super) bytes: Vec<u8>,
    pub(super) leftover: Option<Leftover>,
    /// The bank's FAT, or why it could not be checked (a write then refuses).
    pub(super) fat: Result<crate::format::fat::Health, Arc<TxError>>,
}

pub(super) struct Target {
    pub(super) lone: bool,
    pub(super) banks: Vec<Read>,
    pub(super) warnings: Vec<String>,
}

/// Opens a target read-only and reads every bank's boot.cfg; refuses anything that is not a disk
/// or bank partition (archives and directories have no banks to choose between).
pub(super) fn open(target: &Path) -> Result<Target, BankOpError> {
    let no_banks = |what| BankOpError::NoBanks {
        target: target.to_path_buf(),
        what,
    };
    let (mut disk, found) = match crate::esxi::target::Target::open(target) {
        Ok(crate::esxi::target::Target::Disk { disk, found, .. }) => (disk, found),
        Ok(crate::esxi::target::Target::Directory(_)) => {
            return Err(no_banks(NoBanksIn::Directory));
        }
        Ok(crate::esxi::target::Target::Archive { .. })
        | Err(TargetError::ArchiveInVmdk { .. }) => {
            return Err(no_banks(NoBanksIn::Archive));
        }
        Err(TargetError::Unrecognised { .. } | TargetError::Empty { .. }) => {
            return Err(no_banks(NoBanksIn::Unrecognised));
        }
        Err(e) => return Err(e.into()),
    };
    let lone = found.table.is_none();
    let mut warnings: Vec<String> = found
        .table
        .as_ref()
        .map(|t| t.warnings.clone())
        .unwrap_or_default();
    let names = boot_names();
    let mut banks = Vec::new();
    for bank in found.banks {
        let leftover = Leftover::detect(&bank.files, &names);
        let file = leftover
            .as_ref()
            .map(|l| l.effective(&names).to_string())
            .unwrap_or_else(|| names.current.clone());
        let bytes = bootbank::read_file(&mut disk, &bank, &file)?.unwrap_or_default();
        let effective = match &leftover {
            None => bank.boot_cfg.clone(),
            Some(l) => {
                warnings.push(format!(
                    "{}: {}; `bank rollback`, `bank select` and `restore` complete or undo it first",
                    where_(lone, bank.partition),
                    l.describe(&names)
                ));
                if bytes.is_empty() {
                    Err(BootCfgUnread::Missing { file: file.clone() })
                } else {
                    BootCfg::parse(&bytes).map_err(BootCfgUnread::from)
                }
            }
        };
        let fat = transaction::fat_health(&mut disk, &bank).map_err(Arc::new);
        banks.push(Read {
            bank,
            effective,
            bytes,
            leftover,
            fat,
        });
    }
    Ok(Target {
        lone,
        banks,
        warnings,
    })
}

pub(super) fn where_(lone: bool, p: u32) -> String {
    if lone {
        "this partition".to_string()
    } else {
        format!("partition {p}")
    }
}

/// Which boot.cfg of a bank to predict with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// What the bootloader reads now.
    Now,
    /// After interrupted writes are completed or undone.
    Effective,
}

fn cfg_of(r: &Read, view: View) -> &Result<BootCfg, BootCfgUnread> {
    match view {
        View::Now => &r.bank.boot_cfg,
        View::Effective => &r.effective,
    }
}

/// Predicts with boot.cfg of some banks replaced.
fn predict_view(banks: &[Read], view: View, replaced: &[(u32, &BootCfg)]) -> nextboot::Prediction {
    let candidates: Vec<Candidate<'_>> = banks
        .iter()
        .map(|r| Candidate {
            partition: r.bank.partition,
            boot_cfg: match replaced.iter().find(|(p, _)| *p == r.bank.partition) {
                Some((_, c)) => Ok(*c),
                None => cfg_of(r, view).as_ref().map_err(|e| e.clone()),
            },
        })
        .collect();
    nextboot::predict(&candidates)
}

/// Predicts for planning (the effective boot.cfg files).
pub(super) fn predict(banks: &[Read], replaced: &[(u32, &BootCfg)]) -> nextboot::Prediction {
    predict_view(banks, View::Effective, replaced)
}

/// What Shift+R at boot would do (`nextboot::shift_r`).
fn shift_r_view(banks: &[Read], view: View) -> nextboot::ShiftR {
    let candidates: Vec<Candidate<'_>> = banks
        .iter()
        .map(|r| Candidate {
            partition: r.bank.partition,
            boot_cfg: cfg_of(r, view).as_ref().map_err(|e| e.clone()),
        })
        .collect();
    nextboot::shift_r(&candidates)
}

/// `bank status`.
pub fn status(target: &Path) -> Result<Status, BankOpError> {
    let t = open(target)?;
    Ok(status_of(target, &t))
}

fn status_of(target: &Path, t: &Target) -> Status {
    let prediction = predict_view(&t.banks, View::Now, &[]);
    let shift_r = (!t.lone && prediction.next_boot_partition.is_some())
        .then(|| shift_r_view(&t.banks, View::Now));
    let banks = prediction
        .banks
        .iter()
        .filter_map(|v| {
            t.banks
                .iter()
                .find(|r| r.bank.partition == v.partition)
                .map(|r| inspect::bank_report(&r.bank, v, t.lone))
        })
        .collect();
    Status {
        target: target.display().to_string(),
        kind: if t.lone {
            TargetKind::Partition
        } else {
            TargetKind::Disk
        },
        banks,
        next_boot_partition: if t.lone {
            None
        } else {
            prediction.next_boot_partition
        },
        will_boot: prediction.will_boot(),
        next_boot_unknown: prediction.unknown.clone(),
        explanation: prediction.explanation.clone(),
        rollback_partition: shift_r
            .as_ref()
            .and_then(|r| r.boots)
            .filter(|&p| Some(p) != prediction.next_boot_partition),
        rollback_explanation: shift_r.map(|r| r.explanation),
        warnings: t.warnings.clone(),
    }
}
