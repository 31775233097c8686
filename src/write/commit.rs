//! The one sequence every change to a bank's file goes through, whatever command planned it
//! (`fix`, `config`, `restore`, `bank rollback|select|restore`): find the bank again on the disk
//! opened for writing, complete or undo an interrupted write of an earlier version, reclaim
//! the FAT's leftovers, check that the file still holds the bytes the plan read, write (the
//! atomic replacement, or one byte in place), verify, and count.
//!
//! The callers keep what differs between them: building the plan, the backup (taken before the
//! first call), and the words of their errors.

use crate::esxi::bank::{self, Bank, BankError};
use crate::esxi::leftover::{Leftover, Names};
use crate::format::fat::FatVolume;
use crate::io::disk::{Disk, DiskError, Slice};
use crate::write::transaction::{self, TxError, WriteStats};

/// Whether the bytes of a file, read back, are what was meant to be written.
pub type Verify<'a> = &'a dyn Fn(&[u8]) -> Result<(), String>;

/// How the file changes.
pub enum Method<'a> {
    /// The whole file replaced the atomic way; `verify` checks the bytes read back before the
    /// switch.
    Replace { verify: Verify<'a> },
    /// One byte overwritten in place at this offset of the file, as the bootloader rewrites the
    /// `bootstate` digit: a one-byte write lies in one sector, and the directory entry (size,
    /// time) is untouched.
    InPlace { offset_in_file: u64 },
    /// A file the bank does not have (`old` empty) created the crash-safe way
    /// ([`transaction::create`]): the bank has no such file or the complete new one at every
    /// instant. Refused, nothing written, when the file exists after all.
    Create { verify: Verify<'a> },
}

/// One file of one bank to change.
pub struct BankWrite<'a> {
    pub partition: u32,
    pub names: &'a Names,
    /// The bytes the plan read (empty when the bank had no such file) and the new ones.
    pub old: &'a [u8],
    pub new: &'a [u8],
    pub method: Method<'a>,
    /// An interrupted write of an earlier version to settle first, and what decides whether a
    /// leftover file holds a usable copy.
    pub recover: Option<(&'a Leftover, Verify<'a>)>,
    /// Reclaim the FAT's leftovers even when `old == new` (a rerun after an interruption).
    pub tidy: bool,
}

/// What [`commit_bank`] did.
#[derive(Debug, Default)]
pub struct Committed {
    /// What was completed, undone or reclaimed first, in words.
    pub recovered: Vec<String>,
    /// Whether the file was written (false when `old == new`).
    pub written: bool,
    pub stats: WriteStats,
}

/// Errors of the commit sequence; the callers word them for their command.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("partition {partition} vanished")]
    Vanished { partition: u32 },
    /// The file no longer holds the bytes the plan read. Nothing written to it.
    #[error("partition {partition}: the file changed since the plan was made")]
    Changed { partition: u32 },
    /// The in-place write could not be located, made or verified.
    #[error("partition {partition}: {why}")]
    InPlace { partition: u32, why: String },
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// Carries out one [`BankWrite`] on `disk` (opened for writing; `head` is its first bytes, to
/// find the banks again).
pub fn commit_bank(disk: &mut Disk, head: &[u8], w: &BankWrite) -> Result<Committed, CommitError> {
    let (w0, c0, f0) = (disk.bytes_written(), disk.write_calls(), disk.sync_calls());
    let mut out = Committed::default();
    let find = |disk: &mut Disk| -> Result<Bank, CommitError> {
        crate::esxi::target::find_banks(disk, head)
            .map_err(|_| CommitError::Vanished {
                partition: w.partition,
            })?
            .banks
            .into_iter()
            .find(|b| b.partition == w.partition)
            .ok_or(CommitError::Vanished {
                partition: w.partition,
            })
    };
    let mut bank = find(disk)?;
    if let Some((leftover, verify)) = w.recover {
        out.recovered.push(transaction::recover(
            disk, &bank, w.names, leftover, verify,
        )?);
        bank = find(disk)?;
    }
    let changes = w.old != w.new;
    // A replacement reclaims the FAT's leftovers itself (in `transaction::replace`, sharing its
    // scan); a one-byte write, or a rerun with nothing to change, tidies here.
    let one_byte = matches!(w.method, Method::InPlace { .. });
    let tidy_here = if changes { one_byte } else { w.tidy };
    if tidy_here && let Some(msg) = transaction::tidy(disk, &bank)? {
        out.recovered.push(msg);
    }
    if changes {
        let current = bank::read_file(disk, &bank, &w.names.current)?.unwrap_or_default();
        if current != w.old {
            return Err(CommitError::Changed {
                partition: w.partition,
            });
        }
        match w.method {
            Method::Replace { verify } => {
                let (_, tidied) = transaction::replace(disk, &bank, w.names, w.new, verify)?;
                out.recovered.extend(tidied);
            }
            Method::InPlace { offset_in_file } => in_place(disk, &bank, w, offset_in_file)?,
            Method::Create { verify } => {
                let (_, tidied) = transaction::create(disk, &bank, w.names, w.new, verify)?;
                out.recovered.extend(tidied);
            }
        }
        out.written = true;
    }
    out.stats = WriteStats {
        bytes_written: disk.bytes_written() - w0,
        write_calls: disk.write_calls() - c0,
        flushes: disk.sync_calls() - f0,
    };
    Ok(out)
}

/// The one-byte write: the disk offset comes from the FAT driver following the file's chain
/// (`FatVolume::locate`), never from offsets computed here.
fn in_place(disk: &mut Disk, bank: &Bank, w: &BankWrite, at: u64) -> Result<(), CommitError> {
    let fail = |why: String| CommitError::InPlace {
        partition: w.partition,
        why,
    };
    let i = at as usize;
    if i >= w.old.len() || w.old.len() != w.new.len() {
        return Err(fail(format!(
            "byte {at} cannot be overwritten in place ({} bytes before, {} after)",
            w.old.len(),
            w.new.len()
        )));
    }
    let (old, new) = (w.old[i], w.new[i]);
    let (abs, found) = {
        let vol = FatVolume::open(Slice::new(disk, bank.byte_start, bank.byte_len))
            .map_err(|e| fail(e.to_string()))?;
        vol.locate(&w.names.current, at)
            .map_err(|e| fail(e.to_string()))?
    };
    if found != old {
        return Err(CommitError::Changed {
            partition: w.partition,
        });
    }
    disk.write_at(abs, &[new])
        .map_err(|e| fail(e.to_string()))?;
    disk.sync().map_err(|e| fail(e.to_string()))?;
    disk.drop_cache();
    let back = bank::read_file(disk, bank, &w.names.current)
        .map_err(|e| fail(e.to_string()))?
        .unwrap_or_default();
    if back != w.new {
        return Err(fail(format!(
            "{} read back differs from what was written ({} bytes read, {} expected)",
            w.names.current,
            back.len(),
            w.new.len()
        )));
    }
    Ok(())
}
