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
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error(
        "extract: {archive} member `{member}` (header at byte {offset}): {why}; nothing written"
    )]
    Hostile {
        archive: String,
        member: String,
        offset: u64,
        why: Refusal,
    },
    #[error("extract: {archive}: {detail}; nothing written")]
    Tar { archive: String, detail: String },
    #[error(
        "extract: {} is not empty; give an empty or new directory, or --force to write into it (existing files of the same name are replaced); nothing written",
        .dir.display()
    )]
    NotEmpty { dir: PathBuf },
    #[error("extract: {}: cannot list it; nothing written", .path.display())]
    Unlistable { path: PathBuf, source: io::Error },
    #[error("extract: {}: {why}; nothing written", .path.display())]
    Unsafe { path: PathBuf, why: InTheWay },
    #[error(
        "extract: {source_}: the configuration is sealed by the host's TPM; no offline tool can decrypt local.tgz.ve (the encryption recovery key or a config bundle taken on the host is needed); nothing written"
    )]
    Sealed { source_: String },
    #[error(
        "extract: {}: no configuration found (the bank holds no state.tgz); nothing written",
        .target.display()
    )]
    NoConfig { target: PathBuf },
    #[error("extract: cannot write {}: {cause} ({written} entries were written before)", .path.display())]
    Write {
        path: PathBuf,
        cause: io::Error,
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
    File,
    Directory,
    Symlink,
    Hardlink,
}

/// One thing written, as listed for the user.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Path relative to DIR, e.g. `local/etc/vmware/esx.conf`.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits as written (set-id and sticky bits are dropped).
    pub mode: String,
    /// Symlink target as stored, or the member a hard link shares data with.
    pub link: Option<String>,
}

/// The result of an extraction.
#[derive(Debug, Clone, Serialize)]
pub struct Extracted {
    pub target: String,
    /// Where the configuration came from, e.g. `partition 5 /state.tgz`.
    pub source: String,
    pub dir: String,
    pub encryption: Encryption,
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
    #[error("a symlink already in the directory (never followed)")]
    Symlink,
    #[error("exists and is not a directory")]
    NotDir,
    #[error("exists and is a directory")]
    IsDir,
}

/// Why a member is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Name(BadName),
    #[error("hard link with {0}")]
    LinkName(BadName),
    #[error("a device file")]
    Device,
    #[error("a fifo")]
    Fifo,
    #[error("a GNU sparse member (not supported)")]
    Sparse,
    #[error("member type {0:?} is not supported")]
    Kind(char),
    #[error("empty name")]
    EmptyName,
    #[error("the name appears twice in the archive")]
    Twice,
    #[error("lies below `{parent}`, which is not a directory (a link would be followed)")]
    Below { parent: String },
    #[error("hard link to `{to}`, which is not a regular file of this archive")]
    LinkTarget { to: String },
    #[error("hard link to a member that comes later in the archive")]
    LinkLater,
    #[error("{0}")]
    Symlink(BadSymlink),
}

/// A member name (or hard link target) that would leave the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    #[error("absolute path")]
    Absolute,
    #[error("`..` component")]
    DotDot,
}

/// A symlink whose target would leave the directory, or be resolved through another link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSymlink {
    #[error("symlink with an empty target")]
    Empty,
    #[error("symlink to the absolute path `{0}`, outside the directory")]
    Absolute(String),
    #[error("symlink to `{target}`, through the link `{link}`")]
    Through { target: String, link: String },
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
