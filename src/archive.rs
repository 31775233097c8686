//! The gzip'd tar layers: `state.tgz`, `local.tgz` and `configBundle-*.tgz`.
//!
//! Everything is decoded in memory (these archives are kilobytes to a few megabytes). A gzip file
//! may hold several members and all are decoded, as busybox and GNU gzip do. Members keep the byte
//! positions of their headers and data in the decompressed tar so a later edit can replace one
//! member and leave the others byte-identical.

use flate2::read::MultiGzDecoder;
use std::io::{self, Read};

/// Decompressed archives larger than this are refused: a configuration is never near it, and the
/// limit keeps a hostile or corrupt file from exhausting memory on a rescue system.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// One tar member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name as stored (long names resolved), without a leading `./`.
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub mode: u32,
    /// Tar type flag byte (`b'0'` regular file, `b'5'` directory, ...).
    pub kind: u8,
    /// Offset of the member's ustar header in the decompressed tar.
    pub header_offset: u64,
    /// Offset of the member's data in the decompressed tar.
    pub data_offset: u64,
}

impl Member {
    pub fn is_file(&self) -> bool {
        self.kind == b'0' || self.kind == 0 || self.kind == b'7'
    }
}

/// A decoded gzip'd tar.
#[derive(Debug, Clone)]
pub struct Tgz {
    /// What this archive is, for messages: `state.tgz`, `local.tgz`, ...
    pub label: String,
    pub compressed_len: u64,
    pub tar: Vec<u8>,
    pub members: Vec<Member>,
}

/// What went wrong in which archive, with the offset that shows where.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{archive}: not gzip data (first bytes {magic:02x?}, expected 1f 8b)")]
    NotGzip { archive: String, magic: Vec<u8> },
    #[error("{archive}: corrupt or truncated gzip stream near compressed byte {offset}: {detail}")]
    Gzip {
        archive: String,
        offset: u64,
        detail: String,
    },
    #[error("{archive}: decompresses to more than {limit} bytes; refusing")]
    TooLarge { archive: String, limit: u64 },
    #[error("{archive}: corrupt tar at byte {offset} of the decompressed data: {detail}")]
    Tar {
        archive: String,
        offset: u64,
        detail: String,
    },
    #[error(
        "{archive}: tar member `{member}` claims {size} bytes at offset {offset} but the archive ends at {len}"
    )]
    Truncated {
        archive: String,
        member: String,
        offset: u64,
        size: u64,
        len: u64,
    },
    #[error("{archive}: holds no member `{member}` (members: {present})")]
    Missing {
        archive: String,
        member: String,
        present: String,
    },
}

struct Counting<'a> {
    inner: &'a [u8],
    pos: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether bytes start like a gzip file.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Decompresses every gzip member of `bytes`.
pub fn gunzip(bytes: &[u8], label: &str) -> Result<Vec<u8>, ArchiveError> {
    if !is_gzip(bytes) {
        return Err(ArchiveError::NotGzip {
            archive: label.to_string(),
            magic: bytes.iter().take(2).copied().collect(),
        });
    }
    let mut src = Counting {
        inner: bytes,
        pos: 0,
    };
    let mut out = Vec::with_capacity(bytes.len() * 4);
    let res = {
        let mut dec = MultiGzDecoder::new(&mut src).take(MAX_DECOMPRESSED + 1);
        dec.read_to_end(&mut out)
    };
    match res {
        Ok(_) if out.len() as u64 > MAX_DECOMPRESSED => Err(ArchiveError::TooLarge {
            archive: label.to_string(),
            limit: MAX_DECOMPRESSED,
        }),
        Ok(_) => Ok(out),
        Err(e) => Err(ArchiveError::Gzip {
            archive: label.to_string(),
            offset: src.pos,
            detail: e.to_string(),
        }),
    }
}

impl Tgz {
    /// Decodes a gzip'd tar held in memory.
    pub fn parse(bytes: &[u8], label: &str) -> Result<Tgz, ArchiveError> {
        let tar = gunzip(bytes, label)?;
        let members = list_tar(&tar, label)?;
        Ok(Tgz {
            label: label.to_string(),
            compressed_len: bytes.len() as u64,
            tar,
            members,
        })
    }

    /// The member with this name (a leading `./` is ignored on both sides).
    pub fn member(&self, name: &str) -> Option<&Member> {
        let name = name.trim_start_matches("./");
        self.members.iter().find(|m| m.name == name)
    }

    /// The data of a member.
    pub fn data(&self, m: &Member) -> &[u8] {
        &self.tar[m.data_offset as usize..(m.data_offset + m.size) as usize]
    }

    /// The data of a named member, or an error naming what the archive does hold.
    pub fn require(&self, name: &str) -> Result<&[u8], ArchiveError> {
        match self.member(name) {
            Some(m) => Ok(self.data(m)),
            None => Err(ArchiveError::Missing {
                archive: self.label.clone(),
                member: name.to_string(),
                present: self.member_names(),
            }),
        }
    }

    fn member_names(&self) -> String {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// Lists a tar held in memory; ustar, GNU and pax headers are understood by the `tar` crate.
pub fn list_tar(tar_bytes: &[u8], label: &str) -> Result<Vec<Member>, ArchiveError> {
    let err = |offset: u64, detail: String| ArchiveError::Tar {
        archive: label.to_string(),
        offset,
        detail,
    };
    if tar_bytes.len() < 512 {
        return Err(err(
            0,
            format!(
                "only {} bytes, shorter than one tar header",
                tar_bytes.len()
            ),
        ));
    }
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive.entries().map_err(|e| err(0, e.to_string()))?;
    let mut members = Vec::new();
    let mut last_end = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| err(last_end, e.to_string()))?;
        let header_offset = entry.raw_header_position();
        let data_offset = entry.raw_file_position();
        let header = entry.header();
        let size = entry.size();
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let end = data_offset.saturating_add(size);
        if end > tar_bytes.len() as u64 {
            return Err(ArchiveError::Truncated {
                archive: label.to_string(),
                member: name,
                offset: data_offset,
                size,
                len: tar_bytes.len() as u64,
            });
        }
        members.push(Member {
            name,
            size,
            mtime: header.mtime().unwrap_or(0),
            mode: header.mode().unwrap_or(0),
            kind: header.as_bytes()[156],
            header_offset,
            data_offset,
        });
        last_end = end;
    }
    if members.is_empty() && tar_bytes.iter().take(512).any(|&b| b != 0) {
        return Err(err(0, "no valid tar header".to_string()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn multi_member_gzip_is_decoded_whole() {
        let tar = tar_of(&[("etc/a", b"one"), ("etc/b", b"two")]);
        let (a, b) = tar.split_at(700);
        let mut bytes = gz(a);
        bytes.extend(gz(b));
        let t = Tgz::parse(&bytes, "local.tgz").unwrap();
        assert_eq!(t.members.len(), 2);
        assert_eq!(t.require("./etc/b").unwrap(), b"two");
    }

    #[test]
    fn errors_name_the_layer() {
        let e = Tgz::parse(b"PK\x03\x04", "state.tgz").unwrap_err();
        assert!(e.to_string().starts_with("state.tgz: not gzip"), "{e}");
        let good = gz(&tar_of(&[("local.tgz", &[7u8; 3000])]));
        let e = Tgz::parse(&good[..good.len() / 2], "state.tgz").unwrap_err();
        assert!(matches!(e, ArchiveError::Gzip { .. }), "{e}");
        let t = Tgz::parse(&good, "state.tgz").unwrap();
        let e = t.require("local.tgz.ve").unwrap_err();
        assert_eq!(
            e.to_string(),
            "state.tgz: holds no member `local.tgz.ve` (members: local.tgz)"
        );
        let mut tar = tar_of(&[("x", &[1u8; 2000])]);
        tar.truncate(1024);
        let e = Tgz::parse(&gz(&tar), "local.tgz").unwrap_err();
        assert!(matches!(e, ArchiveError::Truncated { .. }), "{e}");
        let e = Tgz::parse(&gz(&[0xAB; 600]), "local.tgz").unwrap_err();
        assert!(matches!(e, ArchiveError::Tar { .. }), "{e}");
    }
}
