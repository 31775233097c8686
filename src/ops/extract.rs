//! `extract`: the configuration files of the bank that boots next, unpacked into a directory for
//! reading: `DIR/state/` holds the members of state.tgz, `DIR/local/` the members of local.tgz
//! (decrypted when the key can be derived offline).
//!
//! The archives come from a disk that may be damaged or hostile, and the user will read the
//! result with ordinary tools, so every member is checked before the first byte is written: a
//! name that is absolute or climbs with `..`, a link whose target leaves its archive's directory
//! or passes through another link, a device or fifo, a member written twice: the whole
//! extraction is refused. Writing never follows a symlink found in DIR: every directory is
//! opened with `O_NOFOLLOW` relative to its parent, and every file is created under a temporary
//! name and renamed into place.

use crate::esxi::config::ESX_CONF;
use crate::format::archive::Tgz;
use crate::format::envelope::Encryption;
use crate::ops::inspect::{self, InspectError};
use rustix::fs::{self, AtFlags, Mode, OFlags, RawMode};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Errors of `extract`. Every refusal happens before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The target could not be opened or its configuration not read (see [`InspectError`]).
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// A member of state.tgz or local.tgz would write outside the directory, or is of a kind
    /// bootbank does not write; the whole extraction is refused.
    #[error(
        "extract: {archive} member `{member}` (header at byte {offset}): {why}; nothing written"
    )]
    Hostile {
        /// The archive level holding the member (its label, e.g. `local.tgz`).
        archive: String,
        /// The member's name as stored in the tar.
        member: String,
        /// Byte offset of the member's header in the decompressed tar.
        offset: u64,
        /// What is wrong with it.
        why: Refusal,
    },
    /// The archive's tar could not be walked member by member.
    #[error("extract: {archive}: {detail}; nothing written")]
    Tar {
        /// The archive level (its label, e.g. `state.tgz`).
        archive: String,
        /// The tar reader's words.
        detail: String,
    },
    /// DIR exists and holds something, and `--force` was not given.
    #[error(
        "extract: {} is not empty; give an empty or new directory, or --force to write into it (existing files of the same name are replaced); nothing written",
        .dir.display()
    )]
    NotEmpty {
        /// The directory given.
        dir: PathBuf,
    },
    /// DIR exists but cannot be read to see whether it is empty.
    #[error("extract: {}: cannot list it; nothing written", .path.display())]
    Unlistable {
        /// The directory given.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// With `--force`, something already in DIR stands where a member would go in a way
    /// bootbank will not replace (a symlink, or a file where a directory goes).
    #[error("extract: {}: {why}; nothing written", .path.display())]
    Unsafe {
        /// The path in DIR that is in the way.
        path: PathBuf,
        /// What is there.
        why: InTheWay,
    },
    /// local.tgz.ve is sealed by the host's TPM: only state.tgz could be read.
    #[error(
        "extract: {source_}: the configuration is sealed by the host's TPM; no offline tool can decrypt local.tgz.ve (the encryption recovery key or a config bundle taken on the host is needed); nothing written"
    )]
    Sealed {
        /// Where the configuration was found, e.g. `partition 5 /state.tgz`.
        source_: String,
    },
    /// The next-boot bank (or the target) holds no configuration archive.
    #[error(
        "extract: {}: no configuration found (the bank holds no state.tgz); nothing written",
        .target.display()
    )]
    NoConfig {
        /// The target given.
        target: PathBuf,
    },
    /// Writing into DIR failed part-way (exit 1): `written` entries are in place.
    #[error("extract: cannot write {}: {cause} ({written} entries were written before)", .path.display())]
    Write {
        /// The path in DIR that could not be written.
        path: PathBuf,
        /// The operating system's error.
        cause: io::Error,
        /// How many entries were written before it.
        written: usize,
    },
}

impl ExtractError {
    /// Whether something may have been written (exit 1) rather than nothing (exit 2).
    pub fn during_write(&self) -> bool {
        matches!(self, ExtractError::Write { .. })
    }
}

/// Options of `extract`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write into a directory that is not empty (same names are replaced, never followed).
    pub force: bool,
}

/// What an entry is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file, with its data.
    File,
    /// A directory.
    Directory,
    /// A symbolic link, created as stored (never followed while writing).
    Symlink,
    /// A hard link to an earlier regular file of the same archive.
    Hardlink,
}

/// One thing written, as listed for the user.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Path relative to DIR, e.g. `local/etc/vmware/esx.conf`.
    pub path: String,
    /// What was created.
    pub kind: EntryKind,
    /// Data bytes written (0 for directories and links).
    pub size: u64,
    /// Permission bits as written (set-id and sticky bits are dropped).
    pub mode: String,
    /// Symlink target as stored, or the member a hard link shares data with.
    pub link: Option<String>,
}

/// The result of an extraction.
#[derive(Debug, Clone, Serialize)]
pub struct Extracted {
    /// The target as given.
    pub target: String,
    /// Where the configuration came from, e.g. `partition 5 /state.tgz`.
    pub source: String,
    /// The directory written into.
    pub dir: String,
    /// Whether local.tgz was encrypted (and so decrypted to be written).
    pub encryption: Encryption,
    /// Everything written, in archive order: state.tgz's members under `state/` (when the
    /// target has that level), then local.tgz's under `local/`.
    pub entries: Vec<Entry>,
}

/// Unpacks the configuration of `target`'s next-boot bank into `dir`.
pub fn extract(target: &Path, dir: &Path, opts: &Options) -> Result<Extracted, ExtractError> {
    let (cfg, source) = inspect::read_config(target)?.ok_or_else(|| ExtractError::NoConfig {
        target: target.to_path_buf(),
    })?;
    let Some(local) = &cfg.local else {
        return Err(ExtractError::Sealed { source_: source });
    };
    let mut ops = Vec::new();
    // A bare local.tgz (older embedded builds, or given directly) has no state level.
    if cfg.state.member(ESX_CONF).is_none() {
        ops.extend(plan(&cfg.state, "state")?);
    }
    ops.extend(plan(local, "local")?);

    if dir.exists() {
        let mut list = std::fs::read_dir(dir).map_err(|source| ExtractError::Unlistable {
            path: dir.to_path_buf(),
            source,
        })?;
        if list.next().is_some() && !opts.force {
            return Err(ExtractError::NotEmpty {
                dir: dir.to_path_buf(),
            });
        }
        for op in &ops {
            preflight(dir, op)?;
        }
    }
    let entries = write_all(dir, &ops, &cfg)?;
    Ok(Extracted {
        target: target.display().to_string(),
        source,
        dir: dir.display().to_string(),
        encryption: cfg.encryption,
        entries,
    })
}

/// One member to write, checked.
#[derive(Debug)]
struct Op {
    /// `state` or `local` first, then the member's components.
    path: Vec<OsString>,
    what: What,
    mode: u32,
    mtime: u64,
    /// Which archive (`state`/`local`) and the byte range of the data in its tar.
    archive: &'static str,
    data: std::ops::Range<usize>,
}

#[derive(Debug)]
enum What {
    File,
    Dir,
    Symlink(OsString),
    /// Path (with the archive prefix) of the earlier file this links to.
    Hardlink(Vec<OsString>),
}

/// What is in the way of a write into an existing directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InTheWay {
    /// A symlink is where a member or one of its parent directories goes.
    #[error("a symlink already in the directory (never followed)")]
    Symlink,
    /// A file (not a directory) is where a directory goes.
    #[error("exists and is not a directory")]
    NotDir,
    /// A directory is where a file or link goes.
    #[error("exists and is a directory")]
    IsDir,
}

/// Why a member is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The member's name would leave the directory.
    #[error("{0}")]
    Name(BadName),
    /// A hard link's target name would leave the directory.
    #[error("hard link with {0}")]
    LinkName(BadName),
    /// A character or block device (type `3` or `4`): never created.
    #[error("a device file")]
    Device,
    /// A named pipe (type `6`): never created.
    #[error("a fifo")]
    Fifo,
    /// A GNU sparse member (type `S`), which bootbank does not expand.
    #[error("a GNU sparse member (not supported)")]
    Sparse,
    /// Any other tar type flag (the flag byte as a character).
    #[error("member type {0:?} is not supported")]
    Kind(char),
    /// A member other than a directory whose name has no component (empty, or only `.` and
    /// `/`).
    #[error("empty name")]
    EmptyName,
    /// Two members of the same archive have the same name: which one ESXi keeps is not known.
    #[error("the name appears twice in the archive")]
    Twice,
    /// The member lies below another member that is not a directory.
    #[error("lies below `{parent}`, which is not a directory (a link would be followed)")]
    Below {
        /// The member above it, as named in the archive.
        parent: String,
    },
    /// A hard link whose target is not an earlier regular file of the same archive.
    #[error("hard link to `{to}`, which is not a regular file of this archive")]
    LinkTarget {
        /// The link's target as stored.
        to: String,
    },
    /// A hard link to a member that comes after it in the archive.
    #[error("hard link to a member that comes later in the archive")]
    LinkLater,
    /// A symlink whose target would leave the directory.
    #[error("{0}")]
    Symlink(BadSymlink),
}

/// A member name (or hard link target) that would leave the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    /// It starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// It has a `..` component.
    #[error("`..` component")]
    DotDot,
}

/// A symlink whose target would leave the directory, or be resolved through another link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSymlink {
    /// The link's target is empty.
    #[error("symlink with an empty target")]
    Empty,
    /// The link's target (given) is an absolute path.
    #[error("symlink to the absolute path `{0}`, outside the directory")]
    Absolute(String),
    /// The link's target resolves through another symlink of the archive.
    #[error("symlink to `{target}`, through the link `{link}`")]
    Through {
        /// The link's target as stored.
        target: String,
        /// The other symlink it would pass through.
        link: String,
    },
    /// The link's target (given), resolved from the link's directory, leaves the directory.
    #[error("symlink to `{0}`, outside the directory")]
    Outside(String),
}

/// A member name split into components; `Err` says why it is refused.
fn components(name: &[u8]) -> Result<Vec<OsString>, BadName> {
    if name.first() == Some(&b'/') {
        return Err(BadName::Absolute);
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(BadName::DotDot),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

/// Checks every member of `tgz` and returns what to write under `prefix`.
fn plan(tgz: &Tgz, prefix: &'static str) -> Result<Vec<Op>, ExtractError> {
    let archive_label = tgz.label.clone();
    let tar_err = |detail: String| ExtractError::Tar {
        archive: archive_label.clone(),
        detail,
    };
    let mut archive = tar::Archive::new(&tgz.tar[..]);
    let entries = archive.entries().map_err(|e| tar_err(e.to_string()))?;
    // First pass: names and kinds; links are checked once every member is known.
    let mut raw = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| tar_err(e.to_string()))?;
        let header = entry.header();
        let name_bytes = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&name_bytes).into_owned();
        let offset = entry.raw_header_position();
        let hostile = |why: Refusal| ExtractError::Hostile {
            archive: archive_label.clone(),
            member: member.clone(),
            offset,
            why,
        };
        let comps = components(&name_bytes).map_err(|e| hostile(Refusal::Name(e)))?;
        use tar::EntryType as T;
        let kind = header.entry_type();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let what = match kind {
            T::Regular | T::Continuous => What::File,
            T::Directory => What::Dir,
            T::Symlink => What::Symlink(OsStr::from_bytes(&link.unwrap_or_default()).into()),
            T::Link => {
                let to = components(&link.unwrap_or_default())
                    .map_err(|e| hostile(Refusal::LinkName(e)))?;
                let mut full = vec![OsString::from(prefix)];
                full.extend(to);
                What::Hardlink(full)
            }
            T::Char | T::Block => return Err(hostile(Refusal::Device)),
            T::Fifo => return Err(hostile(Refusal::Fifo)),
            T::GNUSparse => return Err(hostile(Refusal::Sparse)),
            other => {
                return Err(hostile(Refusal::Kind(other.as_byte() as char)));
            }
        };
        if comps.is_empty() {
            if matches!(what, What::Dir) {
                continue;
            }
            return Err(hostile(Refusal::EmptyName));
        }
        let start = entry.raw_file_position() as usize;
        let size = entry.size() as usize;
        let mut path = vec![OsString::from(prefix)];
        path.extend(comps);
        raw.push((
            Op {
                path,
                what,
                mode: header.mode().unwrap_or(0o644),
                mtime: header.mtime().unwrap_or(0),
                archive: prefix,
                data: start..start + size,
            },
            member,
            offset,
        ));
    }
    // Second pass: duplicates, members below files or links, and link targets.
    let mut kinds: BTreeMap<&[OsString], usize> = BTreeMap::new();
    for (i, (op, member, offset)) in raw.iter().enumerate() {
        let hostile = |why: Refusal| ExtractError::Hostile {
            archive: archive_label.clone(),
            member: member.clone(),
            offset: *offset,
            why,
        };
        if let Some(&j) = kinds.get(op.path.as_slice())
            && !(matches!(op.what, What::Dir) && matches!(raw[j].0.what, What::Dir))
        {
            return Err(hostile(Refusal::Twice));
        }
        kinds.insert(&op.path, i);
        for n in 1..op.path.len() {
            if let Some(&j) = kinds.get(&op.path[..n])
                && !matches!(raw[j].0.what, What::Dir)
            {
                return Err(hostile(Refusal::Below {
                    parent: raw[j].1.clone(),
                }));
            }
        }
    }
    for (op, member, offset) in &raw {
        let hostile = |why: Refusal| ExtractError::Hostile {
            archive: archive_label.clone(),
            member: member.clone(),
            offset: *offset,
            why,
        };
        match &op.what {
            What::Symlink(target) => check_symlink(&op.path, target, &raw, &kinds)
                .map_err(|e| hostile(Refusal::Symlink(e)))?,
            What::Hardlink(to) => {
                let ok = kinds
                    .get(to.as_slice())
                    .map(|&j| matches!(raw[j].0.what, What::File))
                    .unwrap_or(false);
                if !ok {
                    return Err(hostile(Refusal::LinkTarget {
                        to: to[1..]
                            .iter()
                            .map(|c| c.to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/"),
                    }));
                }
                // The target must come first: tar writes it before its links.
                let j = kinds[to.as_slice()];
                let me = kinds[op.path.as_slice()];
                if j >= me {
                    return Err(hostile(Refusal::LinkLater));
                }
            }
            _ => {}
        }
    }
    Ok(raw.into_iter().map(|(op, _, _)| op).collect())
}

/// A symlink's target must stay inside its archive's directory, resolved from the link's own
/// directory without passing through another link (whose real target could climb out).
fn check_symlink(
    path: &[OsString],
    target: &OsStr,
    raw: &[(Op, String, u64)],
    kinds: &BTreeMap<&[OsString], usize>,
) -> Result<(), BadSymlink> {
    let bytes = target.as_bytes();
    if bytes.is_empty() {
        return Err(BadSymlink::Empty);
    }
    if bytes[0] == b'/' {
        return Err(BadSymlink::Absolute(target.to_string_lossy().into_owned()));
    }
    // Start in the link's directory; path[0] is the archive prefix, which may not be left. A
    // link as the last component is fine (it is checked from its own directory); a link in the
    // middle would be resolved from its real target, so it is refused.
    let mut at: Vec<OsString> = path[..path.len() - 1].to_vec();
    for c in bytes.split(|&b| b == b'/') {
        if matches!(c, b"" | b".") {
            continue;
        }
        if let Some(&j) = kinds.get(at.as_slice())
            && matches!(raw[j].0.what, What::Symlink(_))
        {
            return Err(BadSymlink::Through {
                target: target.to_string_lossy().into_owned(),
                link: raw[j].1.clone(),
            });
        }
        if c == b".." {
            if at.len() <= 1 {
                return Err(BadSymlink::Outside(target.to_string_lossy().into_owned()));
            }
            at.pop();
        } else {
            at.push(OsStr::from_bytes(c).to_os_string());
        }
    }
    Ok(())
}

/// Before writing into an existing directory: no component on the way may be a symlink or a
/// non-directory (the write pass would refuse it half-way).
fn preflight(dir: &Path, op: &Op) -> Result<(), ExtractError> {
    let mut p = dir.to_path_buf();
    let last = op.path.len() - 1;
    for (i, c) in op.path.iter().enumerate() {
        p.push(c);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            return Ok(());
        };
        let needs_dir = i < last || matches!(op.what, What::Dir);
        if m.file_type().is_symlink() && needs_dir {
            return Err(ExtractError::Unsafe {
                path: p,
                why: InTheWay::Symlink,
            });
        }
        if needs_dir && !m.is_dir() {
            return Err(ExtractError::Unsafe {
                path: p,
                why: InTheWay::NotDir,
            });
        }
        if !needs_dir && m.is_dir() {
            return Err(ExtractError::Unsafe {
                path: p,
                why: InTheWay::IsDir,
            });
        }
    }
    Ok(())
}

fn cstr(c: &OsStr) -> io::Result<CString> {
    CString::new(c.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A mode for rustix from the u32 the tar header gave.
fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits as RawMode)
}

/// Opens (creating when missing) the directory `comps` below `root`, never following a link.
fn open_dir(root: &OwnedFd, comps: &[OsString]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::io::dup(root)?;
    for c in comps {
        let name = cstr(c)?;
        let created = match fs::mkdirat(&fd, &name, mode(0o700)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(e.into()),
        };
        // O_NOFOLLOW refuses a symlink in place of the directory (ELOOP).
        fd = fs::openat(&fd, &name, flags, Mode::empty())?;
        if created {
            // Created here: owner only, whatever the umask took from 0700.
            fs::fchmod(&fd, mode(0o700))?;
        }
    }
    Ok(fd)
}

const TMP: &str = ".bootbank-extract.tmp";

fn write_all(
    dir: &Path,
    ops: &[Op],
    cfg: &crate::esxi::config::Config,
) -> Result<Vec<Entry>, ExtractError> {
    let mut entries: Vec<Entry> = Vec::new();
    let fail = |path: &Path, source: io::Error, written: usize| ExtractError::Write {
        path: path.to_path_buf(),
        cause: source,
        written,
    };
    // The host's password hashes and private keys go in there: only the owner may look.
    crate::write::private::create_dir(dir).map_err(|e| match e {
        crate::write::private::PrivateDirError::Io { cause, .. } => fail(dir, cause, 0),
        shared => fail(dir, io::Error::other(shared.to_string()), 0),
    })?;
    let root = File::open(dir)
        .map(OwnedFd::from)
        .map_err(|e| fail(dir, e, 0))?;
    for op in ops {
        let shown: PathBuf = op.path.iter().collect();
        let full = dir.join(&shown);
        let n = entries.len();
        let (parent_comps, name) = op.path.split_at(op.path.len() - 1);
        let name = &name[0];
        let tar = if op.archive == "state" {
            &cfg.state.tar
        } else {
            &cfg.local.as_ref().expect("checked before").tar
        };
        let entry = (|| -> io::Result<Entry> {
            let parent = open_dir(&root, parent_comps)?;
            let pfd = &parent;
            let cname = cstr(name)?;
            let tmp = CString::new(TMP).expect("no NUL");
            // A leftover temporary from an interrupted run is ours to remove.
            let _ = fs::unlinkat(pfd, &tmp, AtFlags::empty());
            let mut entry = Entry {
                path: shown.to_string_lossy().into_owned(),
                kind: EntryKind::File,
                size: 0,
                mode: String::new(),
                link: None,
            };
            match &op.what {
                What::Dir => {
                    let mode = (op.mode & 0o777) | 0o700;
                    open_dir(&parent, std::slice::from_ref(name))?;
                    // AT_SYMLINK_NOFOLLOW is not supported by fchmodat on Linux, but open_dir
                    // just proved it is a directory.
                    fs::chmodat(pfd, &cname, self::mode(mode), AtFlags::empty())?;
                    entry.kind = EntryKind::Directory;
                    entry.mode = format!("{mode:04o}");
                    return Ok(entry);
                }
                What::File => {
                    let mode = (op.mode & 0o777) | 0o400;
                    let flags = OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC;
                    // O_EXCL|O_NOFOLLOW never opens an existing file or follows a link.
                    let mut f = File::from(fs::openat(pfd, &tmp, flags, self::mode(0o600))?);
                    let data = &tar[op.data.clone()];
                    f.write_all(data)?;
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(op.mtime);
                    f.set_modified(t)?;
                    fs::fchmod(&f, self::mode(mode))?;
                    entry.size = data.len() as u64;
                    entry.mode = format!("{mode:04o}");
                }
                What::Symlink(target) => {
                    let t = cstr(target)?;
                    fs::symlinkat(&t, pfd, &tmp)?;
                    entry.kind = EntryKind::Symlink;
                    entry.mode = "0777".to_string();
                    entry.link = Some(target.to_string_lossy().into_owned());
                }
                What::Hardlink(to) => {
                    let (to_parent, to_name) = to.split_at(to.len() - 1);
                    let from = open_dir(&root, to_parent)?;
                    let to_c = cstr(&to_name[0])?;
                    // No AT_SYMLINK_FOLLOW: a symlink is linked, not followed.
                    fs::linkat(&from, &to_c, pfd, &tmp, AtFlags::empty())?;
                    let shown_to: PathBuf = to.iter().collect();
                    let size = entries
                        .iter()
                        .find(|e| Path::new(&e.path) == shown_to)
                        .map(|e| (e.size, e.mode.clone()))
                        .unwrap_or_default();
                    entry.kind = EntryKind::Hardlink;
                    entry.size = size.0;
                    entry.mode = size.1;
                    entry.link = Some(shown_to.to_string_lossy().into_owned());
                }
            }
            // renameat replaces the name itself (file or link), never what a link points to.
            fs::renameat(pfd, &tmp, pfd, &cname)?;
            Ok(entry)
        })()
        .map_err(|e| fail(&full, e, n))?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_checked() {
        assert_eq!(components(b"./etc//hosts").unwrap(), ["etc", "hosts"]);
        assert_eq!(components(b"/etc/x").unwrap_err(), BadName::Absolute);
        assert_eq!(components(b"etc/../../x").unwrap_err(), BadName::DotDot);
        assert!(components(b"./").unwrap().is_empty());
    }
}
