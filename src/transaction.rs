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

use crate::bootbank::Bank;
use crate::disk::{Disk, DiskError, Slice};
use crate::fat::{FatError, FatVolume, FileInfo};
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

/// The names used around one configuration file, e.g. `state.tgz`, `state.new`, `state.old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub current: String,
    pub new: String,
    pub old: String,
}

impl Names {
    /// Names for a file such as `state.tgz` (or a bare `local.tgz`).
    pub fn for_file(file: &str) -> Names {
        let stem = file.split('.').next().unwrap_or(file).to_ascii_lowercase();
        Names {
            current: file.to_ascii_lowercase(),
            new: format!("{stem}.new"),
            old: format!("{stem}.old"),
        }
    }
}

impl Names {
    /// What the host does while `current` is missing, for messages.
    pub fn while_missing(&self) -> &'static str {
        if self.current == "boot.cfg" {
            "the bootloader skips this bank"
        } else {
            "ESXi would boot with defaults"
        }
    }
}

/// What an interrupted write left behind, and which file holds the configuration that will be in
/// place once it is completed or undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leftover {
    /// `state.new` beside `state.tgz`: interrupted before the switch; undo removes `state.new`.
    NewBesideCurrent,
    /// Only `state.new`: interrupted while `state.tgz` was being renamed; completing renames
    /// `state.new` to `state.tgz`.
    OnlyNew,
    /// `state.new` and `state.old`, no `state.tgz`: interrupted between the two renames;
    /// completing renames `state.new` and removes `state.old`.
    NewAndOld,
    /// Only `state.old`: interrupted while `state.new` was being renamed; undo renames
    /// `state.old` back.
    OnlyOld,
    /// `state.old` beside `state.tgz`: the switch is done; completing removes `state.old`.
    OldBesideCurrent,
    /// All three names: not a state bootbank leaves; nothing is done automatically.
    All,
}

impl Leftover {
    /// Detects leftovers from a root directory listing.
    pub fn detect(files: &[FileInfo], names: &Names) -> Option<Leftover> {
        let has = |n: &str| {
            files
                .iter()
                .any(|f| !f.is_dir && f.name.eq_ignore_ascii_case(n))
        };
        match (has(&names.current), has(&names.new), has(&names.old)) {
            (true, false, false) | (false, false, false) => None,
            (true, true, false) => Some(Leftover::NewBesideCurrent),
            (false, true, false) => Some(Leftover::OnlyNew),
            (false, true, true) => Some(Leftover::NewAndOld),
            (false, false, true) => Some(Leftover::OnlyOld),
            (true, false, true) => Some(Leftover::OldBesideCurrent),
            (true, true, true) => Some(Leftover::All),
        }
    }

    /// The file whose content will be the configuration after recovery.
    pub fn effective<'a>(&self, names: &'a Names) -> &'a str {
        match self {
            Leftover::OnlyNew | Leftover::NewAndOld => &names.new,
            Leftover::OnlyOld => &names.old,
            _ => &names.current,
        }
    }

    /// One sentence for the user.
    pub fn describe(&self, names: &Names) -> String {
        let Names { current, new, old } = names;
        match self {
            Leftover::NewBesideCurrent => format!(
                "an interrupted bootbank write left {new} beside {current}; {current} is still the configuration in place"
            ),
            Leftover::OnlyNew => format!(
                "an interrupted bootbank write left the new {current} as {new} and no {current}: {} until it is completed",
                names.while_missing()
            ),
            Leftover::NewAndOld => format!(
                "an interrupted bootbank write left {new} and {old} but no {current}: {} until it is completed",
                names.while_missing()
            ),
            Leftover::OnlyOld => format!(
                "an interrupted bootbank write left the previous {current} as {old} and no {current}: {} until it is undone",
                names.while_missing()
            ),
            Leftover::OldBesideCurrent => {
                format!("a bootbank write finished but left {old} beside {current}")
            }
            Leftover::All => {
                format!("{current}, {new} and {old} all exist: not a state bootbank leaves")
            }
        }
    }
}

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
