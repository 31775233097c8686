//! The safe write path: replace one file of a bootbank so that at every instant a complete copy
//! exists, either under the name ESXi loads (`state.tgz`, `boot.cfg`) or under a name bootbank
//! recognises (`state.new`, `state.old`; `boot.new`, `boot.old`). [`Names::for_file`] gives the
//! names for any file; the examples below use state.tgz.
//!
//! The sequence, with an fsync after each step:
//!
//! 1. write the new bytes as `state.new`; read them back from the storage and verify them;
//! 2. rename `state.tgz` to `state.old`;
//! 3. rename `state.new` to `state.tgz`; read it back and compare;
//! 4. remove `state.old`.
//!
//! The FAT driver renames by deleting the old directory entry before writing the new one, so an
//! interruption inside a rename leaves the file under neither name only for the rename's own
//! file; the other file of the pair is then complete. [`Leftover`] names every state an
//! interruption can leave and what completes or undoes it.

use crate::esxi::bank::Bank;
use crate::format::fat::{FatError, FatVolume};
use crate::io::disk::{Disk, DiskError, Slice};
use serde::Serialize;

/// Errors of the write path.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("bootbank on partition {partition}: {source}")]
    Fat {
        partition: u32,
        #[source]
        source: FatError,
    },
    #[error("bootbank on partition {partition}: {source}")]
    Disk {
        partition: u32,
        #[source]
        source: DiskError,
    },
    #[error(
        "bootbank on partition {partition}: {file} read back differs from what was written ({why}); the previous configuration is still in place"
    )]
    Verify {
        partition: u32,
        file: String,
        why: String,
    },
    #[error(
        "bootbank on partition {partition}: {state}; restore the bank from a backup with `bootbank restore`"
    )]
    Ambiguous { partition: u32, state: String },
}

pub use crate::esxi::leftover::{Leftover, Names};

/// Counts of a finished write, for the user and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteStats {
    pub bytes_written: u64,
    pub write_calls: u64,
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
        move |source| TxError::Fat {
            partition: self.partition,
            source,
        }
    }

    /// Runs one step on a freshly opened volume, then closes it and syncs the disk.
    fn step<T>(
        &self,
        disk: &mut Disk,
        f: impl FnOnce(&FatVolume) -> Result<T, FatError>,
    ) -> Result<T, TxError> {
        let vol =
            FatVolume::open(Slice::new(disk, self.start, self.len)).map_err(self.fat_err())?;
        let out = f(&vol).map_err(self.fat_err())?;
        vol.close().map_err(self.fat_err())?;
        disk.sync().map_err(|source| TxError::Disk {
            partition: self.partition,
            source,
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

/// Replaces `names.current` in the bank with `new`, the safe way. `verify` checks the bytes read
/// back (decode both archive levels, compare esx.conf) before anything is renamed.
pub fn replace(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    new: &[u8],
    verify: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<WriteStats, TxError> {
    let b = Bankref::of(bank);
    let (w0, c0) = (disk.bytes_written(), disk.write_calls());
    b.step(disk, |v| v.create(&names.new, new))?;
    let back = b.read_back(disk, &names.new)?;
    let check = match &back {
        None => Err(format!("{} is missing", names.new)),
        Some(bytes) if bytes.as_slice() != new => {
            Err(format!("{} bytes read, {} written", bytes.len(), new.len()))
        }
        Some(bytes) => verify(bytes),
    };
    if let Err(why) = check {
        // Undo: the current configuration was never touched.
        let _ = b.step(disk, |v| v.remove(&names.new));
        return Err(TxError::Verify {
            partition: b.partition,
            file: names.new.clone(),
            why,
        });
    }
    b.step(disk, |v| v.rename(&names.current, &names.old))?;
    b.step(disk, |v| v.rename(&names.new, &names.current))?;
    match b.read_back(disk, &names.current)? {
        Some(bytes) if bytes == new => {}
        other => {
            return Err(TxError::Verify {
                partition: b.partition,
                file: names.current.clone(),
                why: match other {
                    None => "missing after the rename".to_string(),
                    Some(b) => format!("{} bytes read, {} written", b.len(), new.len()),
                },
            });
        }
    }
    b.step(disk, |v| v.remove(&names.old))?;
    Ok(WriteStats {
        bytes_written: disk.bytes_written() - w0,
        write_calls: disk.write_calls() - c0,
    })
}

/// Completes or undoes what an interrupted [`replace`] left. `verify` decides whether a
/// `state.new` without a `state.tgz` holds a usable configuration (it was verified before the
/// switch began, so it should).
pub fn recover(
    disk: &mut Disk,
    bank: &Bank,
    names: &Names,
    leftover: &Leftover,
    verify: &dyn Fn(&[u8]) -> Result<(), String>,
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
                    state: format!("{new} is not usable ({why}) and no usable {old} is left"),
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
                state: leftover.describe(names),
            });
        }
    })
}
