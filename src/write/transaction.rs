//! The safe write path: replace one file of a bootbank (`state.tgz`, `boot.cfg`) so that at
//! every instant the name ESXi loads holds a complete copy, the old one or the new one, even
//! when the machine loses power and unflushed writes are lost in any order.
//!
//! [`replace`] first reclaims what an interrupted write left in the bank's FAT (lost clusters,
//! FAT copies that differ on them, the dirty bit: [`crate::format::fat::Health`]) and refuses a
//! FAT damaged in any other way. Then [`crate::format::fat::replace`] writes the new file in
//! three flushed phases: the new chain in free clusters nothing references, verified after
//! reading it back; the existing directory entry switched to it with one sector write; the old
//! chain freed. The file is never absent, renamed or duplicated.
//!
//! Earlier versions of bootbank renamed instead (`state.new`, `state.tgz` -> `state.old`, ...).
//! [`Leftover`] still names every state such an interrupted write leaves, and [`recover`]
//! completes or undoes it, then tidies the FAT the same way.

use crate::esxi::bank::Bank;
use crate::format::fat::{self, FatError, FatVolume, Health};
use crate::format::verdict::Verify;
use crate::io::disk::{Disk, DiskError, Slice};
use serde::Serialize;

/// Errors of the write path. Each carries its cause in its message (never also as `source()`,
/// so that printing the chain does not say it twice).
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("bootbank on partition {partition}: {cause}")]
    Fat { partition: u32, cause: FatError },
    #[error("bootbank on partition {partition}: {cause}")]
    Disk { partition: u32, cause: DiskError },
    #[error(
        "bootbank on partition {partition}: {file} read back differs from what was written ({why}); the previous configuration is still in place"
    )]
    Verify {
        partition: u32,
        file: String,
        why: fat::Rejected,
    },
    /// What an interrupted write left cannot be settled safely either way; nothing was changed.
    #[error(
        "bootbank on partition {partition}: {state}; restore the bank from a backup with `bootbank restore`"
    )]
    Ambiguous { partition: u32, state: Unsettled },
}

/// Why an interrupted write's leftovers are neither completed nor undone.
#[derive(Debug, thiserror::Error)]
pub enum Unsettled {
    /// The new file does not pass the caller's check and there is no usable previous one.
    #[error("{new} is not usable ({why}) and no usable {old} is left")]
    NewUnusable {
        new: String,
        old: String,
        why: crate::format::verdict::VerifyError,
    },
    /// The file, its new and its previous copy all exist: a state no bootbank version leaves,
    /// so which one is meant cannot be told.
    #[error("{}", .leftover.describe(.names))]
    All { leftover: Leftover, names: Names },
}

pub use crate::esxi::leftover::{Leftover, Names};

/// Counts of a finished write, for the user and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    pub bytes_written: u64,
    pub write_calls: u64,
    /// fsync calls.
    pub flushes: u64,
}

impl WriteStats {
    /// Adds another write's counts.
    pub fn add(&mut self, other: &WriteStats) {
        self.bytes_written += other.bytes_written;
        self.write_calls += other.write_calls;
        self.flushes += other.flushes;
    }
}

struct Bankref {
    partition: u32,
    start: u64,
    len: u64,
}

impl Bankref {
    fn of(bank: &Bank) -> Bankref {
        Bankref {
            partition: bank.partition,
            start: bank.byte_start,
            len: bank.byte_len,
        }
    }

    fn fat_err(&self) -> impl Fn(FatError) -> TxError + '_ {
        move |cause| TxError::Fat {
            partition: self.partition,
            cause,
        }
    }

    /// Runs one step on a freshly opened volume, then closes it and syncs the disk.
    fn step<T>(
        &self,
        disk: &mut Disk,
        f: impl FnOnce(&FatVolume<'_>) -> Result<T, FatError>,
    ) -> Result<T, TxError> {
        let vol =
            FatVolume::open(Slice::new(disk, self.start, self.len)).map_err(self.fat_err())?;
        let out = f(&vol).map_err(self.fat_err())?;
        vol.close().map_err(self.fat_err())?;
        disk.sync().map_err(|cause| TxError::Disk {
            partition: self.partition,
            cause,
        })?;
        Ok(out)
    }

    /// Reads a file back from the storage, not from the cache.
    fn read_back(&self, disk: &mut Disk, name: &str) -> Result<Option<Vec<u8>>, TxError> {
        disk.drop_cache();
        let vol =
            FatVolume::open(Slice::new(disk, self.start, self.len)).map_err(self.fat_err())?;
        vol.read(name).map_err(self.fat_err())
    }
}

/// The state of the bank's FAT, read for the plan: clean, only leftovers of an interrupted write
/// (which [`replace`] and [`recover`] reclaim first), or damaged (every write refused).
pub fn fat_health(disk: &mut Disk, bank: &Bank) -> Result<Health, TxError> {
    let b = Bankref::of(bank);
    let layout = fat::raw::Layout::read(disk, b.start, b.len).map_err(b.fat_err())?;
    Health::check(disk, &layout).map_err(b.fat_err())
}

/// Reclaims what an interrupted write left in the bank's FAT (see [`Health::repair`]); says
/// what it did, or `None` when the FAT was clean. Refuses, writing nothing, on other damage.
pub fn tidy(disk: &mut Disk, bank: &Bank) -> Result<Option<String>, TxError> {
    let b = Bankref::of(bank);
    disk.drop_cache();
    let layout = fat::raw::Layout::read(disk, b.start, b.len).map_err(b.fat_err())?;
    let health = Health::check(disk, &layout).map_err(b.fat_err())?;
    if health.is_clean() {
        return Ok(None);
    }
    let (found, _) = Health::repair(disk, &layout).map_err(b.fat_err())?;
    disk.drop_cache();
    Ok(Some(format!(
        "repaired what an interrupted write left in the FAT: {}",
        found.describe()
    )))
}

/// Replaces `names.current` in the bank with `new`, the safe way (see the module
/// documentation). `verify` checks the bytes read back (decode both archive levels, compare
/// esx.conf) before the directory entry is switched. Returns the counts and, when the FAT had
/// leftovers of an interrupted write, what was repaired first.
pub fn replace(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    new: &[u8],
    verify: Verify<'_>,
) -> Result<(WriteStats, Option<String>), TxError> {
    through_fat(disk, bank, names, new, verify, fat::replace)
}

/// Creates `names.current`, which the bank does not have, with `new`: the chain first where
/// nothing looks, then the new directory entry in one sector write ([`fat::create`]), so that
/// the bank has either no such file (as before) or the complete new one at every instant.
/// Leftovers of an interrupted write are reclaimed first, as in [`replace`].
pub fn create(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    new: &[u8],
    verify: Verify<'_>,
) -> Result<(WriteStats, Option<String>), TxError> {
    through_fat(disk, bank, names, new, verify, fat::create)
}

/// The signature of [`fat::replace`] and [`fat::create`].
type FatWrite = fn(
    &mut Disk,
    u64,
    u64,
    &str,
    &[u8],
    Verify<'_>,
) -> Result<fat::Switched, FatError>;

/// Runs one of the FAT layer's crash-safe writes on `bank`, counting what it wrote and saying
/// what it repaired first.
fn through_fat(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    new: &[u8],
    verify: Verify<'_>,
    write: FatWrite,
) -> Result<(WriteStats, Option<String>), TxError> {
    let b = Bankref::of(bank);
    let (w0, c0, f0) = (disk.bytes_written(), disk.write_calls(), disk.sync_calls());
    let st = write(disk, b.start, b.len, &names.current, new, verify).map_err(|e| match e {
        FatError::Verify { file, why, .. } => TxError::Verify {
            partition: b.partition,
            file,
            why,
        },
        cause => TxError::Fat {
            partition: b.partition,
            cause,
        },
    })?;
    Ok((
        WriteStats {
            bytes_written: disk.bytes_written() - w0,
            write_calls: disk.write_calls() - c0,
            flushes: disk.sync_calls() - f0,
        },
        st.repaired.map(|h| {
            format!(
                "repaired what an interrupted write left in the FAT: {}",
                h.describe()
            )
        }),
    ))
}

/// Completes or undoes what an interrupted write of an earlier bootbank version left (renamed
/// files), then reclaims what it left in the FAT ([`tidy`]). `verify` decides whether a
/// `state.new` without a `state.tgz` holds a usable configuration (it was verified before the
/// switch began, so it should).
pub fn recover(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    leftover: &Leftover,
    verify: Verify<'_>,
) -> Result<String, TxError> {
    let msg = recover_names(disk, bank, names, leftover, verify)?;
    Ok(match tidy(disk, bank)? {
        Some(tidied) => format!("{msg}; {tidied}"),
        None => msg,
    })
}

fn recover_names(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    leftover: &Leftover,
    verify: Verify<'_>,
) -> Result<String, TxError> {
    let b = Bankref::of(bank);
    let Names { current, new, old } = names;
    Ok(match leftover {
        Leftover::NewBesideCurrent => {
            b.step(disk, |v| v.remove(new))?;
            format!("removed the unfinished {new}; {current} is unchanged")
        }
        Leftover::OnlyNew | Leftover::NewAndOld => {
            let bytes = b.read_back(disk, new)?.unwrap_or_default();
            if let Err(why) = verify(&bytes) {
                let old_ok = *leftover == Leftover::NewAndOld
                    && b.read_back(disk, old)?.is_some_and(|o| verify(&o).is_ok());
                if old_ok {
                    b.step(disk, |v| v.rename(old, current))?;
                    b.step(disk, |v| v.remove(new))?;
                    return Ok(format!(
                        "{new} is not usable ({why}); put the previous configuration back from {old}"
                    ));
                }
                return Err(TxError::Ambiguous {
                    partition: b.partition,
                    state: Unsettled::NewUnusable {
                        new: new.clone(),
                        old: old.clone(),
                        why,
                    },
                });
            }
            b.step(disk, |v| v.rename(new, current))?;
            if *leftover == Leftover::NewAndOld {
                b.step(disk, |v| v.remove(old))?;
            }
            format!("completed the interrupted write: {new} is now {current}")
        }
        Leftover::OnlyOld => {
            b.step(disk, |v| v.rename(old, current))?;
            format!("undid the interrupted write: {old} is {current} again")
        }
        Leftover::OldBesideCurrent => {
            b.step(disk, |v| v.remove(old))?;
            format!("removed {old} left by a finished write")
        }
        Leftover::All => {
            return Err(TxError::Ambiguous {
                partition: b.partition,
                state: Unsettled::All {
                    leftover: leftover.clone(),
                    names: names.clone(),
                },
            });
        }
    })
}
