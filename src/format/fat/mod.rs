//! The FAT volume layer: a bootbank partition read without mounting, through the `fatfs` crate.
//!
//! FAT16 banks of 4 GiB use 64 KiB clusters; `fatfs` handles them. The volume is opened over a
//! read-only [`Slice`]: a write attempt by the driver fails instead of
//! reaching the disk.

mod check;
mod create;
pub mod raw;
mod switch;

pub use check::{Damage, Health, damage_list};
pub use create::create;
pub use switch::{Switched, replace};
#[cfg(feature = "internals")]
pub use switch::fat_time;

use crate::format::verdict::VerifyError;
use crate::io::disk::{ReadTrace, Slice};
use serde::Serialize;
use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;

/// A file in the volume's root directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    /// Modification time as FAT stores it (local time of the writer, no zone), ISO 8601.
    pub modified: String,
    pub is_dir: bool,
}

/// Errors of the FAT layer.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("FAT volume at byte {offset}: not a FAT file system: {detail}")]
    NotFat { offset: u64, detail: String },
    #[error("FAT volume at byte {offset}: cannot read `{file}`: {detail}")]
    Read {
        offset: u64,
        file: String,
        detail: String,
    },
    #[error("FAT volume at byte {offset}: cannot write `{file}`: {detail}")]
    Write {
        offset: u64,
        file: String,
        detail: String,
    },
    /// A FAT bootbank does not write (FAT32) or a name it does not handle.
    #[error("FAT volume at byte {offset}: {detail}; nothing was written")]
    Unsupported { offset: u64, detail: String },
    /// Damage an interrupted bootbank write does not leave: `fsck.fat` is the tool for it.
    #[error(
        "FAT volume at byte {offset}: {}; bootbank repairs only what an interrupted write leaves, so nothing was written: check the partition with `fsck.fat` first",
        damage_list(.problems)
    )]
    Damaged { offset: u64, problems: Vec<Damage> },
    /// The repair of an interrupted write's leftovers did not leave the volume clean.
    #[error(
        "FAT volume at byte {offset}: {} after the repair of an interrupted write's leftovers; nothing was written: check the partition with `fsck.fat` first",
        .health.describe()
    )]
    Unrepaired { offset: u64, health: Health },
    /// The new file did not read back as written, before or after the switch; the old one is
    /// in place.
    #[error(
        "FAT volume at byte {offset}: new `{file}` failed verification ({why}); the previous file is still in place"
    )]
    Verify {
        offset: u64,
        file: String,
        why: Rejected,
    },
    #[error(
        "FAT volume at byte {offset}: `{file}` is {size} bytes, more than bootbank will read ({limit})"
    )]
    TooLarge {
        offset: u64,
        file: String,
        size: u64,
        limit: u64,
    },
}

/// Why a new file was not accepted when read back: the FAT layer's own byte comparisons, or
/// the caller's verdict on the bytes (its typed error, as it gave it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Rejected {
    /// The new cluster chain, read back from the storage after the flush, differs from the
    /// bytes written: the storage did not keep what it was given.
    #[error("the new chain reads back differently ({compared} bytes compared)")]
    ChainDiffers {
        /// How many bytes were compared (the whole new file).
        compared: usize,
    },
    /// After the directory entry was written, the file read through fatfs is not the new one.
    #[error("after the entry was written the file does not read back as written")]
    EntryDiffers,
    /// The bytes read back are the bytes written, but the caller's check refused them.
    #[error(transparent)]
    Check(VerifyError),
}

/// Files larger than this are not read into memory (state.tgz is kilobytes to a few MiB).
pub const MAX_READ: u64 = 256 * 1024 * 1024;

/// An open FAT volume.
pub struct FatVolume<'a> {
    fs: fatfs::FileSystem<Slice<'a>>,
    offset: u64,
    /// The last read the driver made (absolute disk offset, length); see [`FatVolume::locate`].
    last_read: ReadTrace,
}

impl<'a> FatVolume<'a> {
    /// Opens the volume that starts at the slice's first byte.
    pub fn open(slice: Slice<'a>) -> Result<FatVolume<'a>, FatError> {
        let offset = slice.absolute(0);
        let last_read = Rc::new(Cell::new(None));
        let fs = fatfs::FileSystem::new(slice.traced(last_read.clone()), fatfs::FsOptions::new())
            .map_err(|e| FatError::NotFat {
            offset,
            detail: e.to_string(),
        })?;
        Ok(FatVolume {
            fs,
            offset,
            last_read,
        })
    }

    /// `FAT12`, `FAT16` or `FAT32`.
    pub fn fat_type(&self) -> &'static str {
        match self.fs.fat_type() {
            fatfs::FatType::Fat12 => "FAT12",
            fatfs::FatType::Fat16 => "FAT16",
            fatfs::FatType::Fat32 => "FAT32",
        }
    }

    /// Lists the root directory.
    pub fn root(&self) -> Result<Vec<FileInfo>, FatError> {
        let mut out = Vec::new();
        for e in self.fs.root_dir().iter() {
            let e = e.map_err(|e| self.read_err("/", e))?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let m = e.modified();
            out.push(FileInfo {
                modified: format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    m.date.year, m.date.month, m.date.day, m.time.hour, m.time.min, m.time.sec
                ),
                size: e.len(),
                is_dir: e.is_dir(),
                name,
            });
        }
        Ok(out)
    }

    /// Reads a root-directory file whole; `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, FatError> {
        let entry = self
            .root()?
            .into_iter()
            .find(|f| f.name.eq_ignore_ascii_case(name) && !f.is_dir);
        let Some(info) = entry else { return Ok(None) };
        if info.size > MAX_READ {
            return Err(FatError::TooLarge {
                offset: self.offset,
                file: name.to_string(),
                size: info.size,
                limit: MAX_READ,
            });
        }
        let mut f = self
            .fs
            .root_dir()
            .open_file(&info.name)
            .map_err(|e| self.read_err(name, e))?;
        let mut buf = Vec::with_capacity(info.size as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| self.read_err(name, e))?;
        if buf.len() as u64 != info.size {
            return Err(FatError::Read {
                offset: self.offset,
                file: name.to_string(),
                detail: format!(
                    "directory says {} bytes, cluster chain gave {}",
                    info.size,
                    buf.len()
                ),
            });
        }
        Ok(Some(buf))
    }

    /// The absolute disk offset of byte `at` of root-directory file `name`, as the FAT driver
    /// finds it: it follows the file's cluster chain and reads that one byte, and the read it
    /// makes names the disk offset. Used to overwrite one byte of a file in place (as the
    /// bootloader rewrites the `bootstate` digit) without this crate computing cluster offsets
    /// itself. Returns the offset and the byte found there.
    pub fn locate(&self, name: &str, at: u64) -> Result<(u64, u8), FatError> {
        let entry = self
            .root()?
            .into_iter()
            .find(|f| f.name.eq_ignore_ascii_case(name) && !f.is_dir);
        let Some(info) = entry else {
            return Err(self.read_err(name, io::Error::other("no such file")));
        };
        if at >= info.size {
            return Err(self.read_err(
                name,
                io::Error::other(format!("byte {at} is past the end ({} bytes)", info.size)),
            ));
        }
        let mut f = self
            .fs
            .root_dir()
            .open_file(&info.name)
            .map_err(|e| self.read_err(name, e))?;
        f.seek(SeekFrom::Start(at))
            .map_err(|e| self.read_err(name, e))?;
        self.last_read.set(None);
        let mut byte = [0u8; 1];
        let n = f.read(&mut byte).map_err(|e| self.read_err(name, e))?;
        match (n, self.last_read.get()) {
            (1, Some((abs, 1))) => Ok((abs, byte[0])),
            (n, last) => Err(self.read_err(
                name,
                io::Error::other(format!(
                    "cannot tell where byte {at} lies (read {n} bytes, driver read {last:?})"
                )),
            )),
        }
    }

    /// Whether a root-directory file exists (names compare case-insensitively, as FAT does).
    pub fn exists(&self, name: &str) -> Result<bool, FatError> {
        Ok(self
            .root()?
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name)))
    }

    /// Renames a root-directory file; the destination must not exist.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FatError> {
        let root = self.fs.root_dir();
        root.rename(from, &root, to)
            .map_err(|e| self.write_err(&format!("{from} -> {to}"), e))
    }

    /// Removes a root-directory file.
    pub fn remove(&self, name: &str) -> Result<(), FatError> {
        self.fs
            .root_dir()
            .remove(name)
            .map_err(|e| self.write_err(name, e))
    }

    /// Flushes the driver's state (the FAT's clean flag) and closes the volume.
    pub fn close(self) -> Result<(), FatError> {
        let offset = self.offset;
        self.fs.unmount().map_err(|e| FatError::Write {
            offset,
            file: "(volume)".to_string(),
            detail: e.to_string(),
        })
    }

    fn write_err(&self, file: &str, e: io::Error) -> FatError {
        FatError::Write {
            offset: self.offset,
            file: file.to_string(),
            detail: e.to_string(),
        }
    }

    fn read_err(&self, file: &str, e: io::Error) -> FatError {
        FatError::Read {
            offset: self.offset,
            file: file.to_string(),
            detail: e.to_string(),
        }
    }
}
