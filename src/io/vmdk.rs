//! Virtual disk containers in front of a raw image: VMware's text descriptor with flat extents,
//! and the formats bootbank refuses (sparse VMDK, qcow2) with the command that converts them.
//!
//! Nested ESXi hosts keep their boot disk as `disk.vmdk` (a few hundred bytes of text) plus
//! `disk-flat.vmdk` (the raw bytes). Reading the flat extent is reading a raw image, so this
//! module only reads the descriptor and says which files hold which sectors; the disk layer
//! opens them. Sparse formats interleave metadata with data: writing them safely would need a
//! second implementation of their allocation rules, so they are refused before anything is read.

use std::io;
use std::path::{Path, PathBuf};

/// VMDK descriptors are small text files; anything larger is not one (and is not read whole).
const MAX_DESCRIPTOR: u64 = 64 * 1024;
/// Sector size of VMDK extent lengths and offsets, fixed by the format.
pub const SECTOR: u64 = 512;

/// Errors of the container layer. Every message names the file and, for the descriptor, the
/// line, and ends with what to do.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    #[error("vmdk: cannot read {}: {cause}", .path.display())]
    Read { path: PathBuf, cause: io::Error },
    #[error("vmdk: {} line {line}: {why}", .path.display())]
    Descriptor {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error(
        "vmdk: {} is a {format}; bootbank reads raw images and flat VMDKs only: convert it first with `qemu-img convert -O raw {} {}`",
        .path.display(), .path.display(), .suggested.display()
    )]
    NeedsConversion {
        path: PathBuf,
        format: String,
        suggested: PathBuf,
    },
    #[error(
        "vmdk: {} has a parent disk (parentCID={parent_cid}): it is a snapshot delta; give the base disk, or consolidate first with `qemu-img convert -O raw {} {}`",
        .path.display(), .path.display(), .suggested.display()
    )]
    Snapshot {
        path: PathBuf,
        parent_cid: String,
        suggested: PathBuf,
    },
    #[error(
        "vmdk: {} line {line}: extent {extent} holds {have} bytes from byte {offset} but the descriptor says {want} (truncated or wrong extent file?)",
        .path.display()
    )]
    ExtentShort {
        path: PathBuf,
        line: usize,
        extent: String,
        offset: u64,
        have: u64,
        want: u64,
    },
    #[error("vmdk: {} line {line}: extent {extent}: {cause}", .path.display())]
    Extent {
        path: PathBuf,
        line: usize,
        extent: String,
        cause: io::Error,
    },
}

/// How an extent may be used, as the descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// One flat extent: `sectors` sectors of the virtual disk stored in `file` from sector `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    pub access: Access,
    pub sectors: u64,
    /// Resolved against the descriptor's directory.
    pub file: PathBuf,
    /// The name as written in the descriptor, for messages.
    pub name: String,
    /// Start within `file`, in sectors.
    pub offset: u64,
    /// Descriptor line, for messages.
    pub line: usize,
}

/// A descriptor whose extents are all flat: the virtual disk is their concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub path: PathBuf,
    pub create_type: Option<String>,
    pub extents: Vec<Extent>,
}

impl Descriptor {

    /// Parses descriptor text. `path` is the descriptor's own path: extent names are relative
    /// to its directory, and it appears in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Descriptor, VmdkError> {
        let bad = |line: usize, why: String| VmdkError::Descriptor {
            path: path.to_path_buf(),
            line,
            why,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut create_type = None;
        let mut parent_cid = None;
        let mut extents = Vec::new();
        let mut sparse_extent = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
                let ext = parse_extent(line, n, dir).map_err(|why| bad(n, why.to_string()))?;
                match ext {
                    ParsedExtent::Flat(e) if first == "NOACCESS" => {
                        return Err(bad(n, format!("extent {} is marked NOACCESS", e.name)));
                    }
                    ParsedExtent::Flat(e) => extents.push(e),
                    ParsedExtent::Sparse(kind) => {
                        sparse_extent.get_or_insert(kind);
                    }
                    ParsedExtent::Other(kind) => {
                        return Err(bad(
                            n,
                            format!(
                                "extent type {kind} is not supported (only FLAT and VMFS extents hold raw sectors)"
                            ),
                        ));
                    }
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "createType" => create_type = Some(value),
                "parentCID" => parent_cid = Some(value),
                _ => {}
            }
        }
        let suggested = suggested_output(path);
        let sparse_type = create_type.as_deref().filter(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("sparse") || t == "streamoptimized"
        });
        if let Some(kind) = sparse_type.map(str::to_string).or(sparse_extent) {
            return Err(VmdkError::NeedsConversion {
                path: path.to_path_buf(),
                format: format!("sparse VMDK ({kind})"),
                suggested,
            });
        }
        if let Some(cid) = parent_cid
            && !cid.eq_ignore_ascii_case("ffffffff")
        {
            return Err(VmdkError::Snapshot {
                path: path.to_path_buf(),
                parent_cid: cid,
                suggested,
            });
        }
        if extents.is_empty() {
            return Err(bad(
                text.lines().count().max(1),
                "no extent line (`RW <sectors> FLAT \"name-flat.vmdk\" 0`)".to_string(),
            ));
        }
        Ok(Descriptor {
            path: path.to_path_buf(),
            create_type,
            extents,
        })
    }

    /// Checks that every extent file exists and is long enough, so that a truncated copy is
    /// reported before the layers above read garbage or short.
    pub fn check_extents(&self) -> Result<(), VmdkError> {
        for e in &self.extents {
            let meta = std::fs::metadata(&e.file).map_err(|source| self.extent_err(e, source))?;
            if !meta.is_file() {
                return Err(self.extent_err(
                    e,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
                ));
            }
            let start = e.offset * SECTOR;
            let want = e.sectors * SECTOR;
            let have = meta.len().saturating_sub(start);
            if have < want {
                return Err(VmdkError::ExtentShort {
                    path: self.path.clone(),
                    line: e.line,
                    extent: e.name.clone(),
                    offset: start,
                    have,
                    want,
                });
            }
        }
        Ok(())
    }

    /// The error for an extent file that cannot be opened or used.
    pub fn extent_err(&self, e: &Extent, source: io::Error) -> VmdkError {
        VmdkError::Extent {
            path: self.path.clone(),
            line: e.line,
            extent: e.name.clone(),
            cause: source,
        }
    }
}

enum ParsedExtent {
    Flat(Extent),
    Sparse(String),
    Other(String),
}

/// What is wrong with an extent line of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ExtentSyntax {
    #[error("extent size `{0}` is not a number of sectors")]
    Size(String),
    #[error("extent line has no type")]
    NoType,
    #[error("extent file name is not in double quotes")]
    Unquoted,
    #[error("extent file name has no closing quote")]
    Unclosed,
    #[error("extent file name is empty")]
    EmptyName,
    #[error("extent offset `{0}` is not a number of sectors")]
    Offset(String),
    #[error("extent size or offset too large")]
    TooLarge,
}

/// `ACCESS SECTORS TYPE "FILE" [OFFSET]`.
fn parse_extent(line: &str, n: usize, dir: &Path) -> Result<ParsedExtent, ExtentSyntax> {
    let mut words = line.splitn(3, char::is_whitespace);
    let access = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("");
    let sectors: u64 = rest
        .parse()
        .map_err(|_| ExtentSyntax::Size(rest.to_string()))?;
    let tail = words.next().unwrap_or("").trim_start();
    let (kind, after) = tail.split_once(char::is_whitespace).unwrap_or((tail, ""));
    let upper = kind.to_ascii_uppercase();
    match upper.as_str() {
        "FLAT" | "VMFS" => {}
        "SPARSE" | "VMFSSPARSE" | "SESPARSE" => return Ok(ParsedExtent::Sparse(upper + " extent")),
        "" => return Err(ExtentSyntax::NoType),
        _ => return Ok(ParsedExtent::Other(kind.to_string())),
    }
    let after = after.trim_start();
    let Some(quoted) = after.strip_prefix('"') else {
        return Err(ExtentSyntax::Unquoted);
    };
    let Some((name, tail)) = quoted.split_once('"') else {
        return Err(ExtentSyntax::Unclosed);
    };
    if name.is_empty() {
        return Err(ExtentSyntax::EmptyName);
    }
    let tail = tail.trim();
    let offset: u64 = if tail.is_empty() {
        0
    } else {
        tail.parse()
            .map_err(|_| ExtentSyntax::Offset(tail.to_string()))?
    };
    if sectors.checked_mul(SECTOR).is_none() || offset.checked_mul(SECTOR).is_none() {
        return Err(ExtentSyntax::TooLarge);
    }
    let file = if Path::new(name).is_absolute() {
        PathBuf::from(name)
    } else {
        dir.join(name)
    };
    Ok(ParsedExtent::Flat(Extent {
        access: if access == "RW" {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        },
        sectors,
        file,
        name: name.to_string(),
        offset,
        line: n,
    }))
}

/// `disk.vmdk` -> `disk.img`, for the conversion command in messages.
fn suggested_output(path: &Path) -> PathBuf {
    let mut name = path
        .file_stem()
        .map_or_else(|| "disk".into(), |s| s.to_os_string());
    name.push(".img");
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// Refuses the formats that need converting, from the first bytes of a file or device (a
/// block device can hold one too, e.g. a logical volume given to a VM).
pub fn refuse_converted(magic: &[u8], path: &Path) -> Result<(), VmdkError> {
    let convert = |format: &str| VmdkError::NeedsConversion {
        path: path.to_path_buf(),
        format: format.to_string(),
        suggested: suggested_output(path),
    };
    match magic.get(..4) {
        Some(b"KDMV") => Err(convert("sparse VMDK (KDMV header)")),
        Some(b"COWD") => Err(convert("sparse VMDK (ESX 2 COWD header)")),
        Some(b"QFI\xfb") => Err(convert("qcow2 image")),
        _ => Ok(()),
    }
}

/// Whether a regular file of `len` bytes is worth reading whole to look for a descriptor.
pub fn may_be_descriptor(len: u64) -> bool {
    (4..=MAX_DESCRIPTOR).contains(&len)
}

/// The descriptor in `bytes` (a whole small file), or `None` when it is not one.
pub fn descriptor(bytes: &[u8], path: &Path) -> Result<Option<Descriptor>, VmdkError> {
    if !looks_like_descriptor(bytes) {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(bytes);
    Descriptor::parse(&text, path).map(Some)
}

/// VMware and qemu-img both begin descriptors with this comment; a raw disk begins with boot
/// code or zeros, an archive with its magic, so text starting this way is never a disk.
fn looks_like_descriptor(bytes: &[u8]) -> bool {
    let start = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = start.trim_ascii_start();
    start.starts_with(b"# Disk DescriptorFile")
        || (!bytes.contains(&0) && start.starts_with(b"version=") && contains(bytes, b"createType"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Descriptor, VmdkError> {
        Descriptor::parse(text, Path::new("/vm/disk.vmdk"))
    }

    #[test]
    fn flat_descriptor_with_offset_and_vmfs_type() {
        let d = parse(
            "# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType=\"vmfs\"\nRW 2048 VMFS \"disk-flat.vmdk\"\nRDONLY 10 FLAT \"/abs/b.bin\" 7\n",
        )
        .unwrap();
        assert_eq!(d.create_type.as_deref(), Some("vmfs"));
        assert_eq!(d.extents.len(), 2);
        assert_eq!(d.extents[0].file, PathBuf::from("/vm/disk-flat.vmdk"));
        assert_eq!(d.extents[0].offset, 0);
        assert_eq!(d.extents[1].access, Access::ReadOnly);
        assert_eq!(d.extents[1].offset, 7);
        assert_eq!(d.extents[1].line, 6);
        assert_eq!(d.extents.iter().map(|e| e.sectors * 512).sum::<u64>(), 2058 * 512);
    }

    #[test]
    fn refusals_name_the_line_or_the_command() {
        let e = parse("# Disk DescriptorFile\nRW x FLAT \"a\" 0\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse("# Disk DescriptorFile\ncreateType=\"monolithicSparse\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("qemu-img convert -O raw /vm/disk.vmdk /vm/disk.img"),
            "{e}"
        );
        let e = parse("# Disk DescriptorFile\nRW 8 SPARSE \"s.vmdk\"\n").unwrap_err();
        assert!(matches!(e, VmdkError::NeedsConversion { .. }), "{e}");
        let e =
            parse("# Disk DescriptorFile\nparentCID=12345678\nRW 8 FLAT \"a\" 0\n").unwrap_err();
        assert!(matches!(e, VmdkError::Snapshot { .. }), "{e}");
        let e = parse("# Disk DescriptorFile\nRW 8 ZERO\n").unwrap_err();
        assert!(e.to_string().contains("ZERO"), "{e}");
        let e = parse("# Disk DescriptorFile\nversion=1\n").unwrap_err();
        assert!(e.to_string().contains("no extent"), "{e}");
    }

    #[test]
    fn raw_bytes_are_not_descriptors() {
        assert!(!looks_like_descriptor(&[0u8; 512]));
        assert!(!looks_like_descriptor(b"\x1f\x8b\x08\x00"));
        assert!(looks_like_descriptor(b"\n# Disk DescriptorFile\n"));
    }

    /// A descriptor whose name is not UTF-8: the error keeps its bytes, the suggested output
    /// keeps them too (only the extension changes), and the message shows both with U+FFFD.
    #[test]
    fn refusals_keep_a_non_utf8_path() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(OsStr::from_bytes(b"/vm/d\xffk.vmdk"));
        let e = Descriptor::parse("# Disk DescriptorFile\ncreateType=\"monolithicSparse\"\n", path)
            .unwrap_err();
        let VmdkError::NeedsConversion {
            path: p, suggested, ..
        } = &e
        else {
            panic!("{e}");
        };
        assert_eq!(p.as_os_str().as_bytes(), b"/vm/d\xffk.vmdk");
        assert_eq!(suggested.as_os_str().as_bytes(), b"/vm/d\xffk.img");
        assert_eq!(
            e.to_string(),
            "vmdk: /vm/d\u{FFFD}k.vmdk is a sparse VMDK (monolithicSparse); bootbank reads raw images and flat VMDKs only: convert it first with `qemu-img convert -O raw /vm/d\u{FFFD}k.vmdk /vm/d\u{FFFD}k.img`"
        );
        let e = parse("# Disk DescriptorFile\nRW 8 FLAT \"a\" x\n").unwrap_err();
        assert!(matches!(&e, VmdkError::Descriptor { path, line: 2, .. } if path == Path::new("/vm/disk.vmdk")), "{e}");
        assert_eq!(
            e.to_string(),
            "vmdk: /vm/disk.vmdk line 2: extent offset `x` is not a number of sectors"
        );
        assert_eq!(suggested_output(Path::new("disk.vmdk")), PathBuf::from("disk.img"));
        assert_eq!(suggested_output(Path::new("/")), PathBuf::from("disk.img"));
    }
}
