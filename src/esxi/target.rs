//! One way to open what the user names: a partitioned disk (image, block device or flat VMDK)
//! with its banks, a lone bank partition image, a gzip'd tar (state.tgz, config bundle,
//! local.tgz) or a directory holding a copied bank. Told by content, never by name.
//!
//! Every command that takes a TARGET opens it here, so they all recognise the same things and
//! refuse the rest with the same typed error; the banks are found the way the bootloader finds
//! them (partition type, the `VMWARE FAT16` magic and UUID in the second sector, a boot.cfg).

use crate::esxi::bank::{self as bootbank, Bank, BankError};
use crate::format::archive;
use crate::format::partition::{self, PartitionError, Scheme, Table};
use crate::io::disk::{Disk, DiskError};
use std::path::{Path, PathBuf};

/// How many bytes of a target are read to tell what it is.
pub const HEAD: usize = 8192;

/// What a target turned out to be.
// One Target is made per command and moved into its match at once: the size of the Disk
// variant costs nothing, and boxing it would only add derefs at every caller.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// A directory holding a copied or mounted bank.
    Directory(PathBuf),
    /// A gzip'd tar given directly, read whole.
    Archive {
        /// The file as given.
        path: PathBuf,
        /// The whole file, still gzip-compressed.
        bytes: Vec<u8>,
    },
    /// A disk with its partition table and banks, or a lone bank partition image (`table` is
    /// None), opened read-only; `head` is its first `HEAD` bytes.
    Disk {
        /// The image, block device or flat VMDK extent, open read-only.
        disk: Disk,
        /// The first 8192 bytes (fewer when the target is smaller), as read to tell its kind.
        head: Vec<u8>,
        /// The partition table (None for a lone bank image) and the banks found through it.
        found: Found,
    },
}

/// The banks of a disk (or of a lone bank partition image, then `table` is None).
#[derive(Debug)]
pub struct Found {
    pub table: Option<Table>,
    pub banks: Vec<Bank>,
}

/// Why a target cannot be opened as any of the kinds bootbank reads.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target's metadata could not be read (it does not exist, no permission), or a gzip
    /// archive could not be read whole. Nothing was opened.
    #[error("{}: {cause}", .path.display())]
    Io {
        /// The target as given.
        path: PathBuf,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// Opening the file, block device or VMDK (descriptor or flat extent), or reading its first
    /// 8192 bytes, failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The first bytes look like a GPT or MBR, but the table cannot be read.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A partition (or a lone bank image) carries the bank magic, but reading the bank on it
    /// failed.
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The target holds zero bytes (an empty file, device or flat extent).
    #[error(
        "{}: empty file, not an ESXi boot disk, bootbank partition, state.tgz or config bundle",
        .path.display()
    )]
    Empty {
        /// The target as given.
        path: PathBuf,
    },
    /// Neither a partition table, nor the bank magic, nor a gzip header in the first `scanned`
    /// bytes.
    #[error(
        "{}: not an ESXi boot disk, bootbank partition, state.tgz or config bundle (no partition table, no bank magic, no gzip header in the first {scanned} bytes)",
        .path.display()
    )]
    Unrecognised {
        /// The target as given (empty when returned by `find_banks`, which has no path).
        path: PathBuf,
        /// How many bytes were looked at: 8192, or the whole target when it is smaller.
        scanned: usize,
    },
    /// A partition table, but no partition carries the bank magic.
    #[error(
        "bootbank: no ESXi bootbank on this disk ({} table with {partitions} partitions; none carries `VMWARE FAT16` in its second sector){}",
        match .scheme { Scheme::Gpt => "GPT", Scheme::Mbr => "MBR" },
        .warnings.iter().map(|w| format!("; {w}")).collect::<String>()
    )]
    NoBanks {
        /// Which table the disk carries.
        scheme: Scheme,
        /// How many used partitions the table lists, none of them a bank.
        partitions: usize,
        /// What reading the table noticed (a damaged primary GPT header, an unreadable extended
        /// partition), which may explain why no bank was found.
        warnings: Vec<String>,
    },
    /// The bank magic at the start of an image whose FAT cannot be read as a bank.
    #[error("not a bootbank")]
    NotABank,
    /// Archives are read and replaced as whole files by path; one inside a VMDK's flat extent
    /// would be read from the descriptor instead, so it is refused (nobody stores one that way).
    #[error(
        "vmdk: {}: the flat extent holds a gzip archive, not a disk; give the archive itself",
        .descriptor.display()
    )]
    ArchiveInVmdk {
        /// The VMDK descriptor file that was given.
        descriptor: PathBuf,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Directory(p) => f.debug_tuple("Directory").field(p).finish(),
            Target::Archive { path, bytes } => f
                .debug_struct("Archive")
                .field("path", path)
                .field("bytes", &bytes.len())
                .finish(),
            Target::Disk { found, .. } => f.debug_struct("Disk").field("found", found).finish(),
        }
    }
}

impl Target {
    /// Opens `path` read-only and tells what it is.
    pub fn open(path: &Path) -> Result<Target, TargetError> {
        let meta = std::fs::metadata(path).map_err(|cause| TargetError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        if meta.is_dir() {
            return Ok(Target::Directory(path.to_path_buf()));
        }
        let mut disk = Disk::open(path)?;
        let head = disk.head(HEAD)?;
        if archive::is_gzip(&head) {
            if let Some(d) = disk.descriptor() {
                return Err(TargetError::ArchiveInVmdk {
                    descriptor: d.to_path_buf(),
                });
            }
            drop(disk);
            let bytes = std::fs::read(path).map_err(|cause| TargetError::Io {
                path: path.to_path_buf(),
                cause,
            })?;
            return Ok(Target::Archive {
                path: path.to_path_buf(),
                bytes,
            });
        }
        if head.is_empty() {
            return Err(TargetError::Empty {
                path: path.to_path_buf(),
            });
        }
        let found = match find_banks(&mut disk, &head) {
            Err(TargetError::Unrecognised { scanned, .. }) => {
                return Err(TargetError::Unrecognised {
                    path: path.to_path_buf(),
                    scanned,
                });
            }
            other => other?,
        };
        Ok(Target::Disk { disk, head, found })
    }
}

/// Finds the banks of an open disk the way the bootloader does (also on a disk opened for
/// writing, to find them again before a write). `head` is its first [`HEAD`] bytes. A target
/// with neither a table nor the bank magic is [`TargetError::Unrecognised`] (its `path` empty:
/// [`Target::open`] fills it in).
pub fn find_banks(disk: &mut Disk, head: &[u8]) -> Result<Found, TargetError> {
    if let Some(ss) = lone_bank_sector_size(head) {
        let len = disk.len();
        let bank = bootbank::probe_at(disk, 0, 0, len, ss)?.ok_or(TargetError::NotABank)?;
        return Ok(Found {
            table: None,
            banks: vec![bank],
        });
    }
    if !partition::looks_partitioned(head) {
        return Err(TargetError::Unrecognised {
            path: PathBuf::new(),
            scanned: head.len(),
        });
    }
    let table = partition::read(disk)?;
    let mut banks = Vec::new();
    for p in &table.partitions {
        if let Some(b) = bootbank::probe(disk, p, table.sector_size)? {
            banks.push(b);
        }
    }
    if banks.is_empty() {
        return Err(TargetError::NoBanks {
            scheme: table.scheme,
            partitions: table.partitions.len(),
            warnings: table.warnings.clone(),
        });
    }
    Ok(Found {
        table: Some(table),
        banks,
    })
}

/// A lone bank partition image: a FAT boot sector whose second sector holds the bank magic.
fn lone_bank_sector_size(head: &[u8]) -> Option<u64> {
    if head.len() < 1024 || head[510] != 0x55 || head[511] != 0xAA {
        return None;
    }
    let bps = u16::from_le_bytes([head[11], head[12]]) as usize;
    if !(bps == 512 || bps == 4096) || head.len() < bps + 16 {
        return None;
    }
    (&head[bps..bps + 16] == bootbank::MAGIC).then_some(bps as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_bank_is_told_by_its_second_sector() {
        let mut head = vec![0u8; 2048];
        head[510] = 0x55;
        head[511] = 0xAA;
        head[11..13].copy_from_slice(&512u16.to_le_bytes());
        assert_eq!(lone_bank_sector_size(&head), None, "no magic");
        head[512..528].copy_from_slice(bootbank::MAGIC);
        assert_eq!(lone_bank_sector_size(&head), Some(512));
        head[11..13].copy_from_slice(&1024u16.to_le_bytes());
        assert_eq!(lone_bank_sector_size(&head), None, "no such sector size");
        assert_eq!(lone_bank_sector_size(&head[..600]), None, "too short");
    }
}
