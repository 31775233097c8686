//! The backup every write takes first, outside the target: a copy of each file about to change
//! and a manifest with the sha256 of the file before and after the write, everything fsynced
//! before [`crate::write::commit::commit`] writes a byte to the target. The one `restore` reads
//! it back with [`read`] and checks each entry against the target with [`compare`], whichever
//! command wrote it (a `state.tgz` from `fix`, `config` or `passwd`, a `boot.cfg` from `bank`).

use crate::write::private::{self, PrivateDirError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Backup manifest, written before the first write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `bootbank <version>` of the build that wrote the backup.
    pub tool: String,
    /// When the backup was written, RFC 3339 in UTC.
    pub created: String,
    /// The target the write was for, as an absolute canonical path; `restore` is given its
    /// target separately and does not read this.
    pub target: String,
    /// One per file copied, in the order written; empty when the write only creates a file
    /// (`restore-config` of a missing state.tgz): the backup then says there was nothing.
    pub entries: Vec<ManifestEntry>,
}

/// One file in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Partition number of the bank the file is in; None for a lone bank partition image
    /// (restored as partition 0) or an archive target.
    pub partition: Option<u32>,
    /// UUID of that bank (`/vmfs/volumes/<uuid>` form); `restore` refuses another bank's UUID
    /// without `--force`. None for an archive target, and then not checked.
    pub bank_uuid: Option<String>,
    /// The file's name in the bank, or the target file's name.
    pub file: String,
    /// The copy inside the backup directory.
    pub backup: String,
    /// Lowercase hex sha256 of the file before the write: of the copy, checked on every read.
    pub sha256_before: String,
    /// Lowercase hex sha256 of what the write meant to leave, so that `restore` knows the file
    /// is still as bootbank wrote it.
    pub sha256_after: String,
    /// Length of the copy (the file before the write), in bytes.
    pub size: u64,
}

/// One file to copy into a backup before it changes.
#[derive(Debug, Clone)]
pub struct BackupFile<'a> {
    /// Partition number of the bank the file is in, None for a lone bank partition image or an
    /// archive target; also names the copy (`partition5-state.tgz`, else the bare file name).
    pub partition: Option<u32>,
    /// UUID of that bank, recorded so that `restore` can tell another disk's bank; None when
    /// there is no bank (an archive target).
    pub bank_uuid: Option<String>,
    /// The file's name in the bank (`state.tgz`, `boot.cfg`) or the target file's name.
    pub file: String,
    /// The file as it is now: what is copied into the backup.
    pub old_bytes: &'a [u8],
    /// What the write will leave; only its sha256 is kept (`sha256_after`).
    pub new_bytes: &'a [u8],
}

/// Why a backup could not be written or read back. Nothing was written to the target.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The directory will not take private files; the cause is in the message.
    #[error("backup directory {0}")]
    Dir(PrivateDirError),
    /// The backup directory is the target or lies inside it (a directory target), where the
    /// write would change it. Nothing was created.
    #[error("backup directory {} is inside the target", .dir.display())]
    InsideTarget {
        /// The backup directory as given.
        dir: PathBuf,
    },
    /// A copy of that name is already in the directory with other bytes (another write's
    /// backup): it is never overwritten. The same bytes (a rerun after an interruption) are
    /// kept. Nothing was written to the target.
    #[error(
        "backup file {} already exists with other content; choose another --backup-dir",
        .path.display()
    )]
    FileExists {
        /// The copy already in the backup directory.
        path: PathBuf,
    },
    /// The directory's `manifest.json` is not JSON of a bootbank manifest (not a backup, or
    /// damaged). Nothing was restored.
    #[error("{}: not a bootbank backup manifest: {cause}", .path.display())]
    NotAManifest {
        /// The `manifest.json` read.
        path: PathBuf,
        /// What the JSON parser rejected, with line and column.
        cause: serde_json::Error,
    },
    /// A copy's sha256 is not the manifest's `sha256_before`: the backup cannot be trusted and
    /// nothing is restored from it.
    #[error(
        "{}: does not match the checksum in the manifest; the backup is damaged",
        .path.display()
    )]
    Damaged {
        /// The copy that does not match.
        path: PathBuf,
    },
    /// The backup was taken from another bank (another disk?); `--force` restores anyway.
    #[error(
        "partition {partition} is bank {bank_uuid} but the backup was taken from bank {}: another disk? (--force to restore anyway)",
        .backup_uuid.as_deref().unwrap_or("?")
    )]
    OtherBank {
        /// The partition of the target that the entry would be restored to.
        partition: u32,
        /// That partition's bank UUID, as the target has it now.
        bank_uuid: String,
        /// The bank UUID recorded in the backup's manifest entry.
        backup_uuid: Option<String>,
    },
    /// The file is neither what the backup's write left nor the backed-up copy.
    #[error(
        "{location}: changed since the backup's write (neither the file bootbank wrote nor the backed-up one); --force to overwrite it"
    )]
    ChangedSince {
        /// Where the file is on the target (`partition 5 /state.tgz`).
        location: String,
    },
    /// The cause is in the message.
    #[error("{}: {cause}", .path.display())]
    Io {
        /// The file or directory being read, written or synced (the target, the backup
        /// directory, a copy or `manifest.json`).
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |cause| BackupError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The sha256 of `b` as 64 lowercase hex digits, the form the manifest and the plans show.
pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The default backup directory: `./bootbank-backup-<UTC time>`.
pub fn default_backup_dir() -> PathBuf {
    PathBuf::from(format!(
        "bootbank-backup-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ))
}

/// Writes a backup of `files` taken from `target` into `dir`, with the sha256 manifest that
/// `restore` checks, everything fsynced before anything is written to the target.
pub fn write(target: &Path, dir: &Path, files: &[BackupFile<'_>]) -> Result<(), BackupError> {
    let target_path = target;
    let target = std::fs::canonicalize(target_path).map_err(io_err(target_path))?;
    let dir_abs = std::path::absolute(dir).map_err(io_err(dir))?;
    if dir_abs.starts_with(&target) || dir_abs == target {
        return Err(BackupError::InsideTarget {
            dir: dir.to_path_buf(),
        });
    }
    private::create_dir(dir).map_err(BackupError::Dir)?;
    let mut entries = Vec::new();
    for s in files {
        let backup = match s.partition {
            Some(p) => format!("partition{p}-{}", s.file),
            None => s.file.clone(),
        };
        let path = dir.join(&backup);
        // Rerunning the same command after an interruption finds its own backup: the same
        // bytes may stay; anything else is never overwritten.
        match std::fs::read(&path) {
            Ok(existing) if existing == s.old_bytes => {}
            Ok(_) => return Err(BackupError::FileExists { path }),
            Err(_) => write_synced(&path, s.old_bytes)?,
        }
        entries.push(ManifestEntry {
            partition: s.partition,
            bank_uuid: s.bank_uuid.clone(),
            file: s.file.clone(),
            backup,
            sha256_before: sha256_hex(s.old_bytes),
            sha256_after: sha256_hex(s.new_bytes),
            size: s.old_bytes.len() as u64,
        });
    }
    let manifest = Manifest {
        tool: format!("bootbank {}", env!("CARGO_PKG_VERSION")),
        created: chrono::Utc::now().to_rfc3339(),
        target: target.display().to_string(),
        entries,
    };
    let text = serde_json::to_vec_pretty(&manifest).expect("plain data serialises");
    write_synced(&dir.join("manifest.json"), &text)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A backup file, readable by its owner only ([`crate::write::private`]), synced.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    private::write_file(path, bytes).map_err(io_err(path))
}

/// A backup read back: the manifest and each entry's bytes, checked against its sha256.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The backup directory it was read from, as given.
    pub dir: PathBuf,
    /// The parsed `manifest.json`.
    pub manifest: Manifest,
    /// The backed-up bytes of each manifest entry, in the manifest's order.
    pub files: Vec<Vec<u8>>,
}

impl Backup {
    /// Whether every file of the backup is a bank's `boot.cfg` (a backup of `bank
    /// rollback|select`).
    pub fn is_boot_cfg(&self) -> bool {
        !self.manifest.entries.is_empty()
            && self
                .manifest
                .entries
                .iter()
                .all(|e| e.file.eq_ignore_ascii_case("boot.cfg"))
    }
}

/// Reads the backup in `from` and checks every file against the manifest's checksum.
pub fn read(from: &Path) -> Result<Backup, BackupError> {
    let mpath = from.join("manifest.json");
    let text = std::fs::read(&mpath).map_err(io_err(&mpath))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|cause| BackupError::NotAManifest {
            path: mpath.clone(),
            cause,
        })?;
    let mut files = Vec::new();
    for e in &manifest.entries {
        let bpath = from.join(&e.backup);
        let bytes = std::fs::read(&bpath).map_err(io_err(&bpath))?;
        if sha256_hex(&bytes) != e.sha256_before {
            return Err(BackupError::Damaged { path: bpath });
        }
        files.push(bytes);
    }
    Ok(Backup {
        dir: from.to_path_buf(),
        manifest,
        files,
    })
}

/// How a file of the target stands against a backup entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It holds the backed-up bytes already.
    Restored,
    /// It holds what the backup's write left.
    AsWritten,
    /// Neither (allowed only with `--force`).
    Changed,
}

/// The checks every restore makes before it plans a file: the bank is the one the backup was
/// taken from (its UUID; `None` for an archive target), and the file is either what the
/// backup's write left or the backed-up copy. `force` lets both differ.
pub fn compare(
    entry: &ManifestEntry,
    bank: Option<(u32, &str)>,
    current: &[u8],
    location: &str,
    force: bool,
) -> Result<Standing, BackupError> {
    if let Some((partition, uuid)) = bank
        && entry.bank_uuid.as_deref().is_some_and(|u| u != uuid)
        && !force
    {
        return Err(BackupError::OtherBank {
            partition,
            bank_uuid: uuid.to_string(),
            backup_uuid: entry.bank_uuid.clone(),
        });
    }
    let now = sha256_hex(current);
    if now == entry.sha256_before {
        Ok(Standing::Restored)
    } else if now == entry.sha256_after {
        Ok(Standing::AsWritten)
    } else if force {
        Ok(Standing::Changed)
    } else {
        Err(BackupError::ChangedSince {
            location: location.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(before: &[u8], after: &[u8]) -> ManifestEntry {
        ManifestEntry {
            partition: Some(5),
            bank_uuid: Some("u5".into()),
            file: "state.tgz".into(),
            backup: "partition5-state.tgz".into(),
            sha256_before: sha256_hex(before),
            sha256_after: sha256_hex(after),
            size: before.len() as u64,
        }
    }

    #[test]
    fn compare_tells_restored_written_changed_and_other_banks() {
        let e = entry(b"before", b"after");
        let at = Some((5, "u5"));
        let cmp = |cur: &[u8], bank, force| compare(&e, bank, cur, "partition 5 /state.tgz", force);
        assert_eq!(cmp(b"before", at, false).unwrap(), Standing::Restored);
        assert_eq!(cmp(b"after", at, false).unwrap(), Standing::AsWritten);
        assert!(matches!(
            cmp(b"other", at, false),
            Err(BackupError::ChangedSince { .. })
        ));
        assert_eq!(cmp(b"other", at, true).unwrap(), Standing::Changed);
        assert!(matches!(
            cmp(b"after", Some((5, "u6")), false),
            Err(BackupError::OtherBank { partition: 5, .. })
        ));
        assert_eq!(
            cmp(b"after", Some((5, "u6")), true).unwrap(),
            Standing::AsWritten
        );
        // An archive target has no bank to compare.
        assert_eq!(cmp(b"after", None, false).unwrap(), Standing::AsWritten);
    }
}
