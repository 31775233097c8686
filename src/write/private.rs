//! Files bootbank writes outside the target (backups, extracted configurations) hold the host's
//! password hashes and private keys, and for a mode-NONE configuration everything needed to
//! decrypt them: they are created readable by their owner only, whatever the umask.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories bootbank creates for backups and extracted files.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the backup files bootbank writes.
pub const FILE_MODE: u32 = 0o600;

/// Why a directory will not take private files.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// The cause is in the message.
    #[error("{}: {cause}", .path.display())]
    Io {
        path: std::path::PathBuf,
        cause: io::Error,
    },
    /// The directory exists and someone other than its owner can write into it (mode
    /// `mode`), or its owner is another user: they could replace or read what bootbank puts
    /// there.
    #[error(
        "{}: others can write into this directory (mode {mode:04o}, owner uid {uid}); choose a directory only you can write, or a new one",
        .path.display()
    )]
    Shared {
        path: std::path::PathBuf,
        mode: u32,
        uid: u32,
    },
}

/// Makes `dir` (and missing parents) and returns whether it was created. A directory created
/// here gets [`DIR_MODE`] whatever the umask; an existing one is used only when no one but its
/// owner, the user running bootbank, can write into it.
pub fn create_dir(dir: &Path) -> Result<bool, PrivateDirError> {
    let io_err = |cause| PrivateDirError::Io {
        path: dir.to_path_buf(),
        cause,
    };
    if let Ok(meta) = fs::metadata(dir) {
        let me = rustix::process::geteuid().as_raw();
        let mode = meta.mode() & 0o7777;
        if !meta.is_dir() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            )));
        }
        if mode & 0o022 != 0 || meta.uid() != me {
            return Err(PrivateDirError::Shared {
                path: dir.to_path_buf(),
                mode,
                uid: meta.uid(),
            });
        }
        return Ok(false);
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err)?;
    // The umask may have taken bits from the owner too; set the mode itself.
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(io_err)?;
    Ok(true)
}

/// Writes `bytes` to a new or replaced file with [`FILE_MODE`] and syncs it.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // An existing file keeps its mode through open(2), and the umask may clear owner bits of a
    // new one: set it on the open file either way.
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn private_whatever_the_umask_and_shared_dirs_refused() {
        let base = std::env::temp_dir().join(format!("bootbank-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        // A permissive umask (harmless to the tests running beside this one); tests/it/private_files.rs
        // runs the binary under one that clears owner bits too.
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let dir = base.join("a/b");
        let created = create_dir(&dir);
        let file = dir.join("f");
        let wrote = write_file(&file, b"secret");
        rustix::process::umask(old);
        assert!(created.unwrap());
        wrote.unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"secret");
        assert!(
            !create_dir(&dir).unwrap(),
            "an existing private dir is used"
        );
        fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            create_dir(&dir),
            Err(PrivateDirError::Shared { mode: 0o777, .. })
        ));
        fs::set_permissions(&dir, Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            create_dir(&dir),
            Err(PrivateDirError::Shared { .. })
        ));
        fs::remove_dir_all(&base).unwrap();
    }
}
