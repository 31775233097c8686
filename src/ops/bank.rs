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

use crate::esxi::bank::{self as bootbank, Bank, BankError, BootCfgUnread};
use crate::esxi::bootcfg::{BootCfg, BootCfgError, StateUnwritable};
use crate::esxi::nextboot::{self, Candidate};
use crate::esxi::target::TargetError;
use crate::io::disk::{Disk, DiskError};
use crate::ops::inspect::{self, BankReport, InspectError, TargetKind};
use crate::write::backup::{self, Backup, BackupError, BackupFile, Standing};
use crate::write::commit::{self, CommitError, VerifyError};
use crate::write::transaction::{self, Leftover, Names, TxError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file every change here touches.
pub const BOOT_CFG: &str = "boot.cfg";

/// `boot.cfg`, `boot.new`, `boot.old`: the names of the safe replace.
pub fn boot_names() -> Names {
    Names::for_file(BOOT_CFG)
}

/// Errors of the bank commands. Everything but [`BankOpError::during_write`] happens before
/// anything is written.
#[derive(Debug, thiserror::Error)]
pub enum BankOpError {
    /// Reading the banks and the prediction failed (see [`InspectError`]).
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The target could not be opened or is not a boot disk (see [`TargetError`]).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Opening the disk for writing, or reading it, failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A bank partition could not be read (the disk under it, or its FAT).
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The target holds no bootbanks at all.
    #[error(
        "{}: {what}, which holds no bootbanks; give the disk image, block device or bank partition",
        .target.display()
    )]
    NoBanks {
        /// The target given.
        target: PathBuf,
        /// What it is instead.
        what: NoBanksIn,
    },
    /// `rollback` or `select` on a lone bank partition: there is no other bank to choose.
    #[error(
        "{}: a lone bank partition holds one bank; give the whole disk to choose between banks",
        .target.display()
    )]
    LonePartition {
        /// The target given.
        target: PathBuf,
    },
    /// `rollback` when no bank is valid: nothing boots now, so nothing to roll back from.
    #[error(
        "no bank is valid, so none boots now and there is nothing to roll back from; use `bootbank bank select N`"
    )]
    NothingBoots,
    /// `others`: every other bank with the reasons it is not valid.
    #[error(
        "no alternate hypervisor to roll back to: partition {current} boots next and no other bank is valid ({})",
        invalid_banks(.others)
    )]
    NoAlternate {
        /// The partition that boots next.
        current: u32,
        /// Every other bank's partition with the reasons it is not valid.
        others: Vec<(u32, Vec<String>)>,
    },
    /// The next boot cannot be predicted from the disk alone (e.g. the firmware decides), so
    /// bootbank will not change banks.
    #[error("{why}; bootbank changes banks only when it can predict the bootloader's choice")]
    Unknown {
        /// Why it cannot be predicted, in the prediction's words.
        why: String,
    },
    /// The boot.cfg bootbank would write would not be read by the bootloader as intended.
    #[error(
        "partition {partition}: bootbank would not write a boot.cfg that the bootloader reads as intended: {why}; nothing written"
    )]
    Unwritable {
        /// The bank's partition number.
        partition: u32,
        /// What would be read otherwise.
        why: UnwritableReason,
    },
    /// `select N` names a partition that is not one of the disk's banks.
    #[error(
        "partition {partition} is not a bootbank on this disk (banks: {})",
        .banks.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    NoSuchBank {
        /// The partition asked for.
        partition: u32,
        /// The disk's bank partitions.
        banks: Vec<u32>,
    },
    /// `select N` on a bank that cannot be made to boot next.
    #[error("partition {partition} cannot be made to boot: {why}")]
    CannotBoot {
        /// The partition asked for.
        partition: u32,
        /// Why not.
        why: NotBootable,
    },
    /// An interrupted boot.cfg write left files whose state cannot be resolved safely.
    #[error(
        "partition {partition}: {}; it cannot be completed or undone automatically: look at the bank's files (e.g. with mdir) and restore boot.cfg from a backup",
        .leftover.describe(&boot_names())
    )]
    Leftover {
        /// The bank's partition number.
        partition: u32,
        /// Which of boot.cfg, boot.new and boot.old are there.
        leftover: Leftover,
    },
    /// The bank's FAT is damaged in a way an interrupted write does not leave.
    #[error(
        "partition {partition}: the FAT is damaged ({}); bootbank will not write to it, nothing was written: back the partition up and repair it with `fsck.fat`",
        .problems.join("; ")
    )]
    FatDamaged {
        /// The bank's partition number.
        partition: u32,
        /// What the FAT check found, in words.
        problems: Vec<String>,
    },
    /// The bank's FAT could not be checked before the plan. Nothing written.
    #[error(
        "partition {partition}: the FAT's allocation cannot be checked ({cause}), nothing was written"
    )]
    FatUnread {
        /// The bank's partition number.
        partition: u32,
        /// What stopped the check.
        cause: Arc<TxError>,
    },
    /// A backed-up boot.cfg that does not parse. Nothing written.
    #[error("backup {}: {cause}", .path.display())]
    BadBackup {
        /// The backup file.
        path: PathBuf,
        /// Why it does not parse.
        cause: BootCfgError,
    },
    /// The backup could not be read back, or does not fit the disk; nothing written.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The commit refused or failed; `CommitError::during_write` says whether after the first
    /// byte written.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl BankOpError {
    /// Whether the error happened while writing (exit 1) rather than before (exit 2).
    pub fn during_write(&self) -> bool {
        matches!(self, BankOpError::Commit(e) if e.during_write())
    }
}

/// What a target without bootbanks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoBanksIn {
    /// A directory: a copy has no bootloader to choose between banks.
    #[error("a directory (a copied or mounted bank)")]
    Directory,
    /// A state.tgz, local.tgz or config bundle.
    #[error("an archive (state.tgz or config bundle)")]
    Archive,
    /// Neither a partition table nor a bank's magic.
    #[error("not an ESXi boot disk or bank partition (no partition table, no bank magic)")]
    Unrecognised,
}

/// Why bootbank will not write a boot.cfg: the bootloader would read it otherwise than intended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwritableReason {
    /// The edited boot.cfg does not parse.
    #[error(transparent)]
    Parse(#[from] BootCfgError),
    /// A key bootbank changes (`updated`, `bootstate`) would read as another number.
    #[error("the bootloader would read {key}={read} instead of {want}")]
    ReadsOtherwise {
        /// The key changed.
        key: String,
        /// What the bootloader would read, as text.
        read: String,
        /// The value meant.
        want: i64,
    },
    /// A key bootbank does not change would read differently after the edit.
    #[error("{key} would read `{read}` instead of `{was}`")]
    OtherKeyChanges {
        /// The key.
        key: String,
        /// What it would read after the edit.
        read: String,
        /// What it reads now.
        was: String,
    },
    /// `build` would read differently after the edit.
    #[error("build would read differently")]
    BuildReadsDifferently,
    /// The edit would leave a line with a space before `=`.
    #[error("a line would have a space before `=`, which hides its key from the bootloader")]
    HidesKey,
    /// `why`: what `BootCfg::state_writable` found wrong with the `bootstate` line.
    #[error(
        "{}{why}; bootbank writes only a boot.cfg whose bootstate the bootloader can update itself (at an upgrade's first boot, and on Shift+R): make `bootstate=` the first line of this boot.cfg by hand first",
        if *.after_change { "after the change, " } else { "" }
    )]
    StateNotWritable {
        /// Whether it is the edited boot.cfg (true) or the one on disk (false).
        after_change: bool,
        /// What is wrong with the `bootstate` line.
        why: StateUnwritable,
    },
}

/// Why `bank select` cannot make a bank boot next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotBootable {
    /// Its boot.cfg cannot be read from the FAT.
    #[error(transparent)]
    Unread(#[from] BootCfgUnread),
    /// Its boot.cfg does not parse.
    #[error(transparent)]
    Parse(#[from] BootCfgError),
    /// A later `build=` line empties the build.
    #[error(
        "its boot.cfg empties build= after a build= line, and what the UEFI bootloader then reads as the build is unknown"
    )]
    BuildCleared,
    /// boot.cfg has no `build=` line.
    #[error(
        "its boot.cfg has no build= line (an empty bank, e.g. the second bank after a fresh install)"
    )]
    NoBuild,
    /// The bank holds no kernel or modules.
    #[error("it holds no kernel or payload modules (b.b00, *.v00): an empty bank")]
    NoSystem,
    /// A quick boot image (the value of `quickboot` given).
    #[error("quickboot={0} (a quick boot image; bootbank does not change quickboot)")]
    QuickBoot(String),
    /// The other bank's `updated` is beyond what bootbank writes.
    #[error(
        "partition {partition} has updated={text}, which the bootloader reads as {read}: bootbank writes updated only up to 2147483647, which every firmware reads the same, and that does not beat it; roll partition {partition} back instead (`bootbank bank rollback`)"
    )]
    UpdatedBeyondReach {
        /// The other bank's partition number.
        partition: u32,
        /// Its `updated` as written.
        text: String,
        /// What the bootloader reads it as (unsigned 32-bit).
        read: u32,
    },
    /// The prediction's reasons the bank would still not be valid.
    #[error("{}", .0.join(", "))]
    Invalid(Vec<String>),
    /// Even after the change the prediction picks another bank.
    #[error("the bootloader would still pick another bank")]
    StillAnother,
}

fn invalid_banks(others: &[(u32, Vec<String>)]) -> String {
    if others.is_empty() {
        return "it is the only bank".to_string();
    }
    others
        .iter()
        .map(|(p, why)| format!("partition {p}: {}", why.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a boot.cfg read back is not the one meant to be written.
#[derive(Debug, thiserror::Error)]
pub enum BootCfgCheck {
    /// It does not parse.
    #[error(transparent)]
    Parse(#[from] BootCfgError),
    /// It parses but is not the intended bytes.
    #[error("boot.cfg differs from the intended one")]
    Differs,
}

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
struct Read {
    bank: Bank,
    effective: Result<BootCfg, BootCfgUnread>,
    /// The effective boot.cfg bytes (empty when there is none).
    bytes: Vec<u8>,
    leftover: Option<Leftover>,
    /// The bank's FAT, or why it could not be checked (a write then refuses).
    fat: Result<crate::format::fat::Health, Arc<TxError>>,
}

struct Target {
    lone: bool,
    banks: Vec<Read>,
    warnings: Vec<String>,
}

/// Opens a target read-only and reads every bank's boot.cfg; refuses anything that is not a disk
/// or bank partition (archives and directories have no banks to choose between).
fn open(target: &Path) -> Result<Target, BankOpError> {
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

fn where_(lone: bool, p: u32) -> String {
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
fn predict(banks: &[Read], replaced: &[(u32, &BootCfg)]) -> nextboot::Prediction {
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
    number: u32,
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
    target_path: PathBuf,
}

impl BankPlan {
    /// Whether anything would be written.
    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.old_bytes != s.new_bytes || s.recover.is_some() || s.fat_leftover.is_some())
    }
}

/// boot.cfg with the integer `key` set to `value`, every other byte kept. An existing value is
/// replaced where it stands (the line that wins, as the bootloader reads it, whatever prefix of
/// the key it is written with); a missing `bootstate` is added as the first line (where ESXi
/// writes it, and where the bootloader can update it), any other missing key last. A new line
/// is always `key=value`, never with a space before `=` (which would hide the key). Whether the
/// result reads as intended is [`check_written`]'s to say.
pub fn set_int(bytes: &[u8], cfg: &BootCfg, key: &str, value: i64) -> Vec<u8> {
    let text = value.to_string();
    match cfg.get(key) {
        Some(v) => {
            // The value's bytes in the file, from its first to its last (none when empty).
            let end = v.offset + v.len;
            let mut out = bytes[..v.offset].to_vec();
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&bytes[end..]);
            out
        }
        None => {
            let eol: &[u8] = if bytes.windows(2).any(|w| w == b"\r\n") {
                b"\r\n"
            } else {
                b"\n"
            };
            let line = [format!("{key}={text}").as_bytes(), eol].concat();
            if key == "bootstate" {
                [line, bytes.to_vec()].concat()
            } else {
                let mut out = bytes.to_vec();
                if !out.is_empty() && !out.ends_with(b"\n") {
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(&line);
                out
            }
        }
    }
}

/// Refuses a boot.cfg the bootloader would not read as intended. `want`: the numbers it must
/// read for the keys that change; every other selection key must read as before; no line may
/// be hidden by a space before `=` that was not already; and the bank's `bootstate` must be one
/// the bootloader can update itself at boot and on Shift+R (`BootCfg::state_writable`: the
/// first `bootstate` line, within the first 512 bytes, a digit 0-3, the line the parser
/// reads), so that an edit never moves it beyond byte 512.
pub fn check_written(
    partition: u32,
    old: &BootCfg,
    new_bytes: &[u8],
    want: &[(&str, i64)],
) -> Result<BootCfg, BankOpError> {
    let cannot = |why: UnwritableReason| BankOpError::Unwritable { partition, why };
    let new = BootCfg::parse(new_bytes).map_err(|e| cannot(e.into()))?;
    for (key, value) in want {
        if new.number(key) != i128::from(*value) {
            return Err(cannot(UnwritableReason::ReadsOtherwise {
                key: key.to_string(),
                read: new.text(key).to_string(),
                want: *value,
            }));
        }
    }
    for key in ["build", "updated", "bootstate", "quickboot"] {
        let same = old.text(key) == new.text(key) && old.number(key) == new.number(key);
        if want.iter().all(|(k, _)| *k != key) && !same {
            return Err(cannot(UnwritableReason::OtherKeyChanges {
                key: key.to_string(),
                read: new.text(key).to_string(),
                was: old.text(key).to_string(),
            }));
        }
    }
    if old.build_cleared() != new.build_cleared() {
        return Err(cannot(UnwritableReason::BuildReadsDifferently));
    }
    if new.hidden().len() > old.hidden().len() {
        return Err(cannot(UnwritableReason::HidesKey));
    }
    if let Err(why) = new.state_writable() {
        return Err(cannot(UnwritableReason::StateNotWritable {
            after_change: old.state_writable().is_ok(),
            why,
        }));
    }
    Ok(new)
}

/// The way `new` can reach the disk: in place when it differs from `old` only in the single
/// `bootstate` digit (written as one digit), else a file replace.
fn method_for(old: &[u8], new: &[u8]) -> (Method, Option<u64>) {
    let Ok(cfg) = BootCfg::parse(old) else {
        return (Method::ReplaceFile, None);
    };
    let Some(v) = cfg.get("bootstate") else {
        return (Method::ReplaceFile, None);
    };
    let one_digit = |b: &[u8]| b.len() == 1 && b[0].is_ascii_digit();
    if old.len() == new.len()
        && one_digit(v.text.as_bytes())
        && one_digit(&new[v.offset..v.offset + 1])
        && old
            .iter()
            .zip(new)
            .enumerate()
            .all(|(i, (a, b))| a == b || i == v.offset)
    {
        (Method::InPlaceDigit, Some(v.offset as u64))
    } else {
        (Method::ReplaceFile, None)
    }
}

fn key_changes(old: &BootCfg, new: &BootCfg) -> Vec<KeyChange> {
    ["bootstate", "updated"]
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (old.get(k).map(|v| v.text.clone()), new.get(k)?.text.clone());
            (a.as_deref() != Some(b.as_str())).then(|| KeyChange {
                key: k.to_string(),
                old: a,
                new: b,
            })
        })
        .collect()
}

fn step(lone: bool, r: &Read, new_bytes: Vec<u8>) -> Result<BankStep, BankOpError> {
    if r.leftover == Some(Leftover::All) {
        return Err(BankOpError::Leftover {
            partition: r.bank.partition,
            leftover: Leftover::All,
        });
    }
    let changed = r.bytes != new_bytes;
    // A bank whose FAT is damaged beyond an interrupted write's leftovers is not written to:
    // refused with the plan, as `fix` refuses it, so that nothing at all is written.
    if changed {
        match &r.fat {
            Err(e) => {
                return Err(BankOpError::FatUnread {
                    partition: r.bank.partition,
                    cause: e.clone(),
                });
            }
            Ok(h) if !h.is_repairable() => {
                return Err(BankOpError::FatDamaged {
                    partition: r.bank.partition,
                    problems: h.damage.clone(),
                });
            }
            Ok(_) => {}
        }
    }
    let (method, offset) = if changed {
        method_for(&r.bytes, &new_bytes)
    } else {
        (Method::ReplaceFile, None)
    };
    let old = r.effective.as_ref().ok();
    let new = if changed {
        Some(
            BootCfg::parse(&new_bytes).map_err(|e| BankOpError::CannotBoot {
                partition: r.bank.partition,
                why: e.into(),
            })?,
        )
    } else {
        None
    };
    let changes = match (old, &new) {
        (Some(o), Some(n)) => key_changes(o, n),
        _ => Vec::new(),
    };
    let mut notes = Vec::new();
    if let Some(l) = &r.leftover {
        notes.push(format!(
            "{}; it is completed or undone first",
            l.describe(&boot_names())
        ));
    }
    if let Some(h) = r
        .fat
        .as_ref()
        .ok()
        .filter(|h| !h.is_clean() && h.is_repairable())
    {
        notes.push(format!(
            "the FAT holds what an interrupted write leaves ({}): reclaimed first",
            h.describe()
        ));
    }
    const SAFE: &str = "boot.cfg is replaced the safe way (a new copy written in free clusters and read back, then the directory entry switched to it in one sector write)";
    let bootstate_only = !changes.is_empty() && changes.iter().all(|c| c.key == "bootstate");
    match (method, changed) {
        (_, false) => {}
        (Method::InPlaceDigit, true) => notes.push(format!(
            "the bootstate digit (byte {} of boot.cfg) is overwritten in place, as the bootloader does: one byte, file size and time unchanged",
            offset.unwrap_or(0)
        )),
        (Method::ReplaceFile, true) => notes.push(match old.map(|c| c.get("bootstate")) {
            Some(None) if bootstate_only => format!(
                "boot.cfg has no bootstate line, so one digit cannot be overwritten in place: {SAFE}"
            ),
            Some(Some(v)) if bootstate_only && v.text.len() != 1 => format!(
                "bootstate is not written as one digit ({}), so it cannot be overwritten in place: {SAFE}",
                v.text
            ),
            _ => format!("the change alters boot.cfg's length: {SAFE}"),
        }),
    }
    Ok(BankStep {
        partition: (!lone).then_some(r.bank.partition),
        bank_uuid: r.bank.uuid.clone(),
        file: BOOT_CFG.to_string(),
        method,
        offset_in_file: offset,
        changes,
        notes,
        recover: r.leftover.clone(),
        fat_leftover: r
            .fat
            .as_ref()
            .ok()
            .filter(|h| !h.is_clean() && h.is_repairable())
            .map(|h| h.describe()),
        old_bytes: r.bytes.clone(),
        new_bytes,
        number: r.bank.partition,
    })
}

/// Refuses a leftover no recovery can settle, and puts first a recovery-only step for every bank
/// with a leftover that the plan does not otherwise change, so that the banks are after the write
/// what the plan predicted with.
fn add_recoveries(t: &Target, plan: &mut BankPlan) -> Result<(), BankOpError> {
    let mut first = Vec::new();
    let tidy = |r: &&Read| {
        r.fat
            .as_ref()
            .is_ok_and(|h| !h.is_clean() && h.is_repairable())
    };
    for r in t.banks.iter().filter(|r| r.leftover.is_some() || tidy(r)) {
        if !plan.steps.iter().any(|s| s.number == r.bank.partition) {
            first.push(step(t.lone, r, r.bytes.clone())?);
        }
    }
    first.append(&mut plan.steps);
    plan.steps = first;
    Ok(())
}

fn banks_list(t: &Target) -> Vec<u32> {
    t.banks.iter().map(|r| r.bank.partition).collect()
}

/// Plans `bank rollback`: what Shift+R does.
pub fn plan_rollback(target: &Path) -> Result<BankPlan, BankOpError> {
    let t = open(target)?;
    if t.lone {
        return Err(BankOpError::LonePartition {
            target: target.to_path_buf(),
        });
    }
    let before = predict(&t.banks, &[]);
    if let Some(why) = &before.unknown {
        return Err(BankOpError::Unknown { why: why.clone() });
    }
    let next = before
        .next_boot_partition
        .ok_or(BankOpError::NothingBoots)?;
    let r = t
        .banks
        .iter()
        .find(|r| r.bank.partition == next)
        .expect("the next bank is one of the banks");
    let cfg = r
        .effective
        .as_ref()
        .map_err(|_| BankOpError::NothingBoots)?;
    let new_bytes = set_int(&r.bytes, cfg, "bootstate", 3);
    let new_cfg = check_written(next, cfg, &new_bytes, &[("bootstate", 3)])?;
    let after = predict(&t.banks, &[(next, &new_cfg)]);
    let Some(to) = after.next_boot_partition else {
        return Err(BankOpError::NoAlternate {
            current: next,
            others: before
                .banks
                .iter()
                .filter(|v| v.partition != next)
                .map(|v| (v.partition, v.invalid_reasons.clone()))
                .collect(),
        });
    };
    let step = step(false, r, new_bytes)?;
    let mut plan = BankPlan {
        target: target.display().to_string(),
        action: "rollback",
        selected_partition: None,
        next_boot_partition_before: Some(next),
        next_boot_partition_after: Some(to),
        explanation: format!(
            "partition {next} boots next; as Shift+R does, its bootstate becomes 3 (invalid), so the bootloader picks partition {to}, the other valid bank. Rollback brings back that bank's image and its own (older) state.tgz. Nothing else changes; `bootbank bank select {next}` or `bootbank restore` undoes it"
        ),
        steps: vec![step],
        target_path: target.to_path_buf(),
    };
    add_recoveries(&t, &mut plan)?;
    Ok(plan)
}

/// Plans `bank select N`: bank N boots next, changing only bank N.
pub fn plan_select(target: &Path, n: u32) -> Result<BankPlan, BankOpError> {
    let t = open(target)?;
    if t.lone {
        return Err(BankOpError::LonePartition {
            target: target.to_path_buf(),
        });
    }
    let Some(r) = t.banks.iter().find(|r| r.bank.partition == n) else {
        return Err(BankOpError::NoSuchBank {
            partition: n,
            banks: banks_list(&t),
        });
    };
    let cannot = |why: NotBootable| BankOpError::CannotBoot { partition: n, why };
    let cfg = r.effective.as_ref().map_err(|e| cannot(e.clone().into()))?;
    if cfg.build_cleared() {
        return Err(cannot(NotBootable::BuildCleared));
    }
    if cfg.build().is_empty() {
        return Err(cannot(NotBootable::NoBuild));
    }
    if !r.bank.has_system {
        return Err(cannot(NotBootable::NoSystem));
    }
    if cfg.number("quickboot") != 0 {
        return Err(cannot(NotBootable::QuickBoot(
            cfg.text("quickboot").to_string(),
        )));
    }
    let before = predict(&t.banks, &[]);
    let mut plan = BankPlan {
        target: target.display().to_string(),
        action: "select",
        selected_partition: Some(n),
        next_boot_partition_before: before.next_boot_partition,
        next_boot_partition_after: before.next_boot_partition,
        steps: Vec::new(),
        explanation: String::new(),
        target_path: target.to_path_buf(),
    };
    if before.next_boot_partition == Some(n) {
        plan.explanation = format!("partition {n} already boots next: nothing to change");
        add_recoveries(&t, &mut plan)?;
        return Ok(plan);
    }
    let mut bytes = r.bytes.clone();
    let mut why = Vec::new();
    let mut want: Vec<(&str, i64)> = Vec::new();
    let state = cfg.bootstate();
    if !matches!(nextboot::transition(state), 0 | 2) {
        bytes = set_int(&bytes, cfg, "bootstate", 0);
        want.push(("bootstate", 0));
        why.push(format!(
            "its bootstate {state} ({}) would make the bootloader skip it, so it becomes 0 (valid)",
            nextboot::bootstate_meaning(state)
        ));
    }
    let cur = BootCfg::parse(&bytes).map_err(|e| cannot(e.into()))?;
    if predict(&t.banks, &[(n, &cur)]).next_boot_partition != Some(n) {
        // The largest `updated` of the other valid banks, as the bootloader compares it
        // (unsigned; the larger reading when the firmware decides).
        let top = before
            .banks
            .iter()
            .filter(|v| v.valid && v.partition != n)
            .filter_map(|v| t.banks.iter().find(|r| r.bank.partition == v.partition))
            .filter_map(|r| {
                let c = r.effective.as_ref().ok()?;
                let u = c.number("updated");
                let read = [nextboot::Firmware::Uefi, nextboot::Firmware::Bios]
                    .map(|fw| nextboot::atoi(u, fw) as u32);
                Some((
                    read[0].max(read[1]),
                    r.bank.partition,
                    c.text("updated").to_string(),
                ))
            })
            .max();
        let (top, top_part, top_text) = top.unwrap_or((0, 0, String::new()));
        if top >= i32::MAX as u32 {
            return Err(cannot(NotBootable::UpdatedBeyondReach {
                partition: top_part,
                text: top_text,
                read: top,
            }));
        }
        let new_updated = i64::from(top) + 1;
        bytes = set_int(&bytes, &cur, "updated", new_updated);
        want.push(("updated", new_updated));
        why.push(format!(
            "its updated={} does not beat the other valid banks' (largest {top}), so it becomes {new_updated}, one above, as the installer numbers a new image",
            cur.text("updated")
        ));
    }
    let cur = BootCfg::parse(&bytes).map_err(|e| cannot(e.into()))?;
    if !cur.has_bootstate()
        && cur.state_site() == (crate::esxi::bootcfg::StateSite::Missing { beyond: None })
    {
        // Without a bootstate line the bootloader could not mark the bank on Shift+R: give it
        // the line a missing one means, first in the file where the bootloader can update it.
        bytes = set_int(&bytes, &cur, "bootstate", 0);
        want.push(("bootstate", 0));
        why.push(
            "it has no bootstate line, which the bootloader needs to mark it on Shift+R, so `bootstate=0` (what a missing line means) becomes its first line".to_string(),
        );
    }
    let new_cfg = check_written(n, cfg, &bytes, &want)?;
    let after = predict(&t.banks, &[(n, &new_cfg)]);
    if let Some(u) = &after.unknown {
        return Err(BankOpError::Unknown { why: u.clone() });
    }
    if after.next_boot_partition != Some(n) {
        let v = after.banks.iter().find(|v| v.partition == n);
        return Err(cannot(
            match v.map(|v| v.invalid_reasons.clone()).unwrap_or_default() {
                reasons if reasons.is_empty() => NotBootable::StillAnother,
                reasons => NotBootable::Invalid(reasons),
            },
        ));
    }
    plan.next_boot_partition_after = Some(n);
    plan.explanation = format!(
        "partition {n} is made to boot next by changing only its own boot.cfg: {}. The other banks are not touched and stay valid, so Shift+R can still go back to them",
        why.join("; ")
    );
    plan.steps.push(step(false, r, bytes)?);
    add_recoveries(&t, &mut plan)?;
    Ok(plan)
}

/// Plans putting back boot.cfg files from a backup written by `bank rollback|select`, read
/// and checked by [`backup::read`] (the one `restore`, [`crate::ops::restore::plan`], hands
/// it here when every file of the backup is a boot.cfg).
pub(crate) fn plan_restore_of(
    target: &Path,
    from: &Backup,
    force: bool,
) -> Result<BankPlan, BankOpError> {
    let manifest = &from.manifest;
    let t = open(target)?;
    let mut plan = BankPlan {
        target: target.display().to_string(),
        action: "restore",
        selected_partition: None,
        next_boot_partition_before: predict(&t.banks, &[]).next_boot_partition,
        next_boot_partition_after: None,
        steps: Vec::new(),
        explanation: format!(
            "boot.cfg put back from {} (taken {} by {})",
            from.dir.display(),
            manifest.created,
            manifest.tool
        ),
        target_path: target.to_path_buf(),
    };
    let mut restored: Vec<(u32, BootCfg)> = Vec::new();
    for (e, backup) in manifest.entries.iter().zip(&from.files) {
        let p = e.partition.unwrap_or(0);
        let r = t
            .banks
            .iter()
            .find(|r| r.bank.partition == p)
            .ok_or_else(|| BankOpError::NoSuchBank {
                partition: p,
                banks: banks_list(&t),
            })?;
        let location = format!("{} /{BOOT_CFG}", where_(t.lone, p));
        let standing = backup::compare(e, Some((p, &r.bank.uuid)), &r.bytes, &location, force)?;
        let cfg = BootCfg::parse(backup).map_err(|cause| BankOpError::BadBackup {
            path: from.dir.join(&e.backup),
            cause,
        })?;
        let mut s = step(t.lone, r, backup.clone())?;
        if standing == Standing::Restored {
            s.notes
                .push("already holds the backed-up boot.cfg".to_string());
        }
        restored.push((p, cfg));
        plan.steps.push(s);
    }
    let refs: Vec<(u32, &BootCfg)> = restored.iter().map(|(p, c)| (*p, c)).collect();
    plan.next_boot_partition_after = predict(&t.banks, &refs).next_boot_partition;
    add_recoveries(&t, &mut plan)?;
    Ok(plan)
}

/// Plans putting back boot.cfg files from a backup written by `bank rollback|select`. `Ok(None)`
/// when the backup is not one of boot.cfg files (or has no readable manifest): `fix`'s restore
/// handles it. [`crate::ops::restore::plan`] takes either kind.
pub fn plan_restore(
    target: &Path,
    from: &Path,
    force: bool,
) -> Result<Option<BankPlan>, BankOpError> {
    match backup::read(from) {
        Ok(b) if b.is_boot_cfg() => plan_restore_of(target, &b, force).map(Some),
        Ok(_) | Err(BackupError::NotAManifest { .. } | BackupError::Io { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

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

impl crate::ops::plan::WriteError for BankOpError {
    fn during_write(&self) -> bool {
        BankOpError::during_write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(b: &[u8]) -> BootCfg {
        BootCfg::parse(b).unwrap()
    }

    #[test]
    fn set_int_replaces_the_winning_value_only() {
        let b = b"bootstate=0\ntitle=x\nupdated=9\nupdated=12\nupdated = 7\n";
        let out = set_int(b, &cfg(b), "updated", 13);
        assert_eq!(
            out, b"bootstate=0\ntitle=x\nupdated=9\nupdated=13\nupdated = 7\n",
            "the last line the bootloader reads; `updated = 7` is hidden from it"
        );
        let out = set_int(b, &cfg(b), "bootstate", 3);
        assert_eq!(
            out,
            b"bootstate=3\ntitle=x\nupdated=9\nupdated=12\nupdated = 7\n"
        );
        // A key written by prefix keeps its spelling; an empty value gets the digits.
        let b = b"bo=1\nup=\n";
        assert_eq!(set_int(b, &cfg(b), "updated", 4), b"bo=1\nup=4\n");
        assert_eq!(set_int(b, &cfg(b), "bootstate", 0), b"bo=0\nup=\n");
    }

    #[test]
    fn set_int_adds_missing_keys() {
        let b = b"build=1\nupdated=2";
        assert_eq!(
            set_int(b, &cfg(b), "bootstate", 3),
            b"bootstate=3\nbuild=1\nupdated=2"
        );
        let b = b"build=1\r\nbootstate=0\r\n";
        assert_eq!(
            set_int(b, &cfg(b), "updated", 4),
            b"build=1\r\nbootstate=0\r\nupdated=4\r\n"
        );
    }

    #[test]
    fn method_is_in_place_only_for_one_digit() {
        let b = b"bootstate=0\nupdated=2\nbuild=x\n";
        assert_eq!(
            method_for(b, &set_int(b, &cfg(b), "bootstate", 3)),
            (Method::InPlaceDigit, Some(10))
        );
        assert_eq!(
            method_for(b, &set_int(b, &cfg(b), "updated", 3)).0,
            Method::ReplaceFile
        );
        let two = b"bootstate=00\nupdated=2\nbuild=x\n";
        assert_eq!(
            method_for(two, &set_int(two, &cfg(two), "bootstate", 3)).0,
            Method::ReplaceFile
        );
        let none = b"updated=2\nbuild=x\n";
        assert_eq!(
            method_for(none, &set_int(none, &cfg(none), "bootstate", 3)).0,
            Method::ReplaceFile
        );
    }
}
