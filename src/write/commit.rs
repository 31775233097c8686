//! The one commit every write goes through, whatever command planned it (`fix`, `config`,
//! `passwd`, `restore`, `bank rollback|select`): [`commit`] takes a list of [`Change`]s, the
//! plan's every new byte computed beforehand, and
//!
//! 1. takes the disk exclusively ([`Disk::open_rw`]) before anything else, so that a target in
//!    use leaves no backup behind either;
//! 2. writes the backup outside the target ([`backup::write`]: a copy of every file that
//!    changes, a manifest with checksums, fsynced);
//! 3. for each file of a bank ([`commit_bank`]): finds the bank again on the disk opened for
//!    writing, completes or undoes an interrupted write of an earlier version, reclaims the FAT's
//!    leftovers, checks that the file still holds the bytes the plan read, writes (the atomic
//!    replacement of [`crate::format::fat::replace`], or one byte in place as the bootloader
//!    rewrites `bootstate`) and verifies what it reads back;
//! 4. for a file outside a bank (an archive target, or `--output`): writes a sibling, syncs,
//!    verifies and renames it over ([`replace_file`]);
//! 5. reports what it completed, wrote and counted ([`Report`]).
//!
//! The callers keep what differs between them: building the plan and the checks that decide
//! whether the bytes read back are the intended configuration ([`Verify`]).

use crate::esxi::bank::{self, Bank, BankError};
use crate::esxi::leftover::{Leftover, Names};
use crate::format::fat::{FatError, FatVolume};
use crate::io::disk::{Disk, DiskError, Slice};
use crate::write::backup::{self, BackupError, BackupFile};
use crate::write::transaction::{self, TxError, WriteStats};
use std::path::{Path, PathBuf};

pub use crate::format::verdict::{Verify, VerifyError};


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

/// Where a [`Change`] is written.
pub enum Dest<'a> {
    /// A file of a bank on the disk.
    Bank(BankWrite<'a>),
    /// A file outside any bank: an archive target, or the `--output` of one.
    HostFile {
        /// The file the plan read (the target), and the bytes it read there.
        read: &'a Path,
        old: &'a [u8],
        /// Where the new bytes go (the target itself, or `--output`).
        path: PathBuf,
        new: &'a [u8],
        verify: Verify<'a>,
    },
}

/// One file of a plan, handed to [`commit`].
pub struct Change<'a> {
    /// The file in the report's words: `partition 5 /state.tgz`, `state.tgz`.
    pub location: String,
    /// What the backup keeps of it; `None` when the change only settles leftovers or creates a
    /// file the bank did not have.
    pub backup: Option<BackupFile<'a>>,
    pub dest: Dest<'a>,
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

/// What [`commit`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Where the backup went; `None` when no file changed (only leftovers were settled).
    pub backup_dir: Option<PathBuf>,
    /// The locations written, in order.
    pub written: Vec<String>,
    /// What was completed, undone or reclaimed first, each prefixed with its location.
    pub recovered: Vec<String>,
    pub stats: WriteStats,
}

/// Why a one-byte write in place failed.
#[derive(Debug, thiserror::Error)]
pub enum InPlaceFailure {
    #[error("byte {at} cannot be overwritten in place ({old} bytes before, {new} after)")]
    NotOneByte { at: u64, old: usize, new: usize },
    /// The cause is in the message.
    #[error("{0}")]
    Fat(FatError),
    #[error("{0}")]
    Disk(DiskError),
    #[error("{0}")]
    Bank(BankError),
    #[error(
        "{file} read back differs from what was written ({read} bytes read, {expected} expected)"
    )]
    ReadBack {
        file: String,
        read: usize,
        expected: usize,
    },
}

/// Errors of the commit; [`CommitError::during_write`] tells those after the first byte
/// written to the target.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("partition {partition} vanished")]
    Vanished { partition: u32 },
    /// The file no longer holds the bytes the plan read. Nothing written to it.
    #[error(
        "partition {partition} /{file}: changed since the plan was made; nothing written there, run again"
    )]
    Changed { partition: u32, file: String },
    /// The in-place write could not be located, made or verified.
    #[error(
        "write failed: partition {partition}: {why}; put the file back with `bootbank restore` from the backup"
    )]
    InPlace { partition: u32, why: InPlaceFailure },
    /// The cause is in the message.
    #[error("write failed: {0}")]
    Tx(TxError),
    /// What an interrupted earlier write left cannot be completed or undone safely
    /// (`TxError::Ambiguous`): refused before writing anything to the file.
    #[error("{0}; nothing was written there")]
    Unsettled(TxError),
    /// A later file of the plan failed after earlier ones were written and verified: those stay
    /// written (each is complete), the failed one is as its own error says.
    #[error("{cause} (already written and verified: {})", .written.join(", "))]
    Partial {
        written: Vec<String>,
        cause: Box<CommitError>,
    },
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The target file no longer holds the bytes the plan read. Nothing written.
    #[error(
        "{}: changed since the plan was made; nothing written, run again",
        .path.display()
    )]
    FileChanged { path: PathBuf },
    /// A file written beside an archive target did not read back as written; it was removed and
    /// the target is unchanged.
    #[error("{}: read back differs", .path.display())]
    HostFileDiffers { path: PathBuf },
    /// A file written beside an archive target did not verify; it was removed and the target is
    /// unchanged. The cause is in the message.
    #[error("{}: {why}", .path.display())]
    HostFileRejected { path: PathBuf, why: VerifyError },
    #[error("{}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

impl From<TxError> for CommitError {
    fn from(e: TxError) -> CommitError {
        CommitError::Tx(e)
    }
}

impl CommitError {
    /// Whether the error happened while writing to the target (exit 1) rather than before
    /// (exit 2).
    pub fn during_write(&self) -> bool {
        matches!(
            self,
            CommitError::Tx(_) | CommitError::InPlace { .. } | CommitError::Partial { .. }
        )
    }
}

/// Carries out `changes` on `target`: the disk opened exclusively first when a change is in a
/// bank, then [`commit_on`].
pub fn commit(
    target: &Path,
    backup_dir: &Path,
    changes: &[Change<'_>],
) -> Result<Report, CommitError> {
    if changes.is_empty() {
        return Ok(Report::default());
    }
    let in_bank = changes.iter().any(|c| matches!(c.dest, Dest::Bank(_)));
    let disk = if in_bank {
        Some(Disk::open_rw(target)?)
    } else {
        None
    };
    commit_on(target, backup_dir, changes, disk)
}

/// [`commit`] on a disk the caller opened for writing (`None` when no change is in a bank):
/// the power-cut tests pass one whose storage records every write and flush.
pub fn commit_on(
    target: &Path,
    backup_dir: &Path,
    changes: &[Change<'_>],
    mut disk: Option<Disk>,
) -> Result<Report, CommitError> {
    let mut report = Report::default();
    if changes.is_empty() {
        return Ok(report);
    }
    let files: Vec<BackupFile<'_>> = changes.iter().filter_map(|c| c.backup.clone()).collect();
    // A file created where there was none has nothing to keep, but the backup still records
    // the write: its manifest without that file says the bank had none (what `restore` reads).
    let creates = changes.iter().any(|c| {
        matches!(
            &c.dest,
            Dest::Bank(BankWrite {
                method: Method::Create { .. },
                ..
            })
        )
    });
    if !files.is_empty() || creates {
        backup::write(target, backup_dir, &files)?;
        report.backup_dir = Some(backup_dir.to_path_buf());
    }
    let mut head = None;
    for c in changes {
        commit_one(c, &mut disk, &mut head, &mut report).map_err(|cause| {
            if report.written.is_empty() {
                cause
            } else {
                CommitError::Partial {
                    written: report.written.clone(),
                    cause: Box::new(cause),
                }
            }
        })?;
    }
    Ok(report)
}

/// One change of [`commit_on`], its counts and messages added to `report`.
fn commit_one(
    c: &Change<'_>,
    disk: &mut Option<Disk>,
    head: &mut Option<Vec<u8>>,
    report: &mut Report,
) -> Result<(), CommitError> {
    match &c.dest {
        Dest::Bank(w) => {
            let disk = disk.as_mut().ok_or(CommitError::Vanished {
                partition: w.partition,
            })?;
            let head = match head {
                Some(h) => h,
                None => head.insert(disk.head(crate::esxi::target::HEAD)?),
            };
            let done = commit_bank(disk, head, w)?;
            report.recovered.extend(
                done.recovered
                    .into_iter()
                    .map(|m| format!("{}: {m}", c.location)),
            );
            report.stats.add(&done.stats);
            if done.written {
                report.written.push(c.location.clone());
            }
        }
        Dest::HostFile {
            read,
            old,
            path,
            new,
            verify,
        } => {
            let now = std::fs::read(read).map_err(|cause| CommitError::Io {
                path: read.to_path_buf(),
                cause,
            })?;
            if now != *old {
                return Err(CommitError::FileChanged {
                    path: read.to_path_buf(),
                });
            }
            replace_file(path, new, *verify)?;
            report.stats.bytes_written += new.len() as u64;
            report.written.push(path.display().to_string());
        }
    }
    Ok(())
}

/// Carries out one [`BankWrite`] on `disk` (opened for writing; `head` is its first bytes, to
/// find the banks again).
pub fn commit_bank(
    disk: &mut Disk,
    head: &[u8],
    w: &BankWrite<'_>,
) -> Result<Committed, CommitError> {
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
        let settled = transaction::recover(disk, &bank, w.names, leftover, verify);
        out.recovered.push(settled.map_err(|e| match e {
            TxError::Ambiguous { .. } => CommitError::Unsettled(e),
            e => CommitError::Tx(e),
        })?);
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
                file: w.names.current.clone(),
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
fn in_place(disk: &mut Disk, bank: &Bank, w: &BankWrite<'_>, at: u64) -> Result<(), CommitError> {
    let fail = |why: InPlaceFailure| CommitError::InPlace {
        partition: w.partition,
        why,
    };
    let i = at as usize;
    if i >= w.old.len() || w.old.len() != w.new.len() {
        return Err(fail(InPlaceFailure::NotOneByte {
            at,
            old: w.old.len(),
            new: w.new.len(),
        }));
    }
    let (old, new) = (w.old[i], w.new[i]);
    let (abs, found) = {
        let vol = FatVolume::open(Slice::new(disk, bank.byte_start, bank.byte_len))
            .map_err(|e| fail(InPlaceFailure::Fat(e)))?;
        vol.locate(&w.names.current, at)
            .map_err(|e| fail(InPlaceFailure::Fat(e)))?
    };
    if found != old {
        return Err(CommitError::Changed {
            partition: w.partition,
            file: w.names.current.clone(),
        });
    }
    disk.write_at(abs, &[new])
        .map_err(|e| fail(InPlaceFailure::Disk(e)))?;
    disk.sync().map_err(|e| fail(InPlaceFailure::Disk(e)))?;
    disk.drop_cache();
    let back = bank::read_file(disk, bank, &w.names.current)
        .map_err(|e| fail(InPlaceFailure::Bank(e)))?
        .unwrap_or_default();
    if back != w.new {
        return Err(fail(InPlaceFailure::ReadBack {
            file: w.names.current.clone(),
            read: back.len(),
            expected: w.new.len(),
        }));
    }
    Ok(())
}

/// Replaces a file outside any bank by writing a temporary sibling (private, synced), reading
/// it back and verifying it, then renaming it over and syncing the directory. On a failed check
/// the sibling is removed and the file is unchanged.
pub fn replace_file(path: &Path, bytes: &[u8], verify: Verify<'_>) -> Result<(), CommitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| CommitError::Io { path, cause }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.bootbank-new"));
    crate::write::private::write_file(&tmp, bytes).map_err(io(&tmp))?;
    let back = std::fs::read(&tmp).map_err(io(&tmp))?;
    if back != bytes {
        let _ = std::fs::remove_file(&tmp);
        return Err(CommitError::HostFileDiffers { path: tmp });
    }
    if let Err(why) = verify(&back) {
        let _ = std::fs::remove_file(&tmp);
        return Err(CommitError::HostFileRejected { path: tmp, why });
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("not the intended bytes")]
    struct Wrong;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bootbank-commit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ok(b: &[u8]) -> Result<(), VerifyError> {
        if b == b"new" {
            Ok(())
        } else {
            Err(VerifyError::new(Wrong))
        }
    }

    fn no(_: &[u8]) -> Result<(), VerifyError> {
        Err(VerifyError::new(Wrong))
    }

    fn host<'a>(target: &'a Path, old: &'a [u8], new: &'a [u8], verify: Verify<'a>) -> Change<'a> {
        Change {
            location: "state.tgz".into(),
            backup: Some(BackupFile {
                partition: None,
                bank_uuid: None,
                file: "state.tgz".into(),
                old_bytes: old,
                new_bytes: new,
            }),
            dest: Dest::HostFile {
                read: target,
                old,
                path: target.to_path_buf(),
                new,
                verify,
            },
        }
    }

    #[test]
    fn a_host_file_is_backed_up_checked_and_replaced_or_left_alone() {
        let d = dir("host");
        let target = d.join("state.tgz");
        std::fs::write(&target, b"old").unwrap();
        let change = |old: &'static [u8], new: &'static [u8], verify: Verify<'static>| {
            host(&target, old, new, verify)
        };
        // The plan read other bytes: refused before the write, the file as it was.
        let e = commit(&target, &d.join("b0"), &[change(b"older", b"new", &ok)]).unwrap_err();
        assert!(matches!(e, CommitError::FileChanged { .. }), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        // A check that refuses: the sibling removed, the file as it was, not during the write.
        let e = commit(&target, &d.join("b1"), &[change(b"old", b"new", &no)]).unwrap_err();
        assert!(matches!(e, CommitError::HostFileRejected { .. }), "{e}");
        assert!(!e.during_write());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert!(!d.join(".state.tgz.bootbank-new").exists());
        // The write: backup with the old bytes and their checksums, then the new file.
        let r = commit(&target, &d.join("b2"), &[change(b"old", b"new", &ok)]).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(r.written, vec![target.display().to_string()]);
        assert_eq!(r.stats.bytes_written, 3);
        let b = backup::read(&d.join("b2")).unwrap();
        assert_eq!(b.files, vec![b"old".to_vec()]);
        assert_eq!(
            b.manifest.entries[0].sha256_after,
            backup::sha256_hex(b"new")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
