//! The gzip'd tar layers: `state.tgz`, `local.tgz` and `configBundle-*.tgz`.
//!
//! Everything is decoded in memory (these archives are kilobytes to a few megabytes). A gzip file
//! may hold several members and all are decoded, as busybox and GNU gzip do. Members keep the byte
//! positions of their headers and data in the decompressed tar so a later edit can replace one
//! member and leave the others byte-identical.
//!
//! The write half follows the rewrite rule of the ESXi reference (section 4): keep every member,
//! its order and its header bytes, and change only the content, size and checksum of the member
//! being repaired ([`Tgz::replace_member`]); then compress the tar again with the original gzip
//! header fields ([`seal`]).
//!
//! One job a file: [`gzip`] reads and writes gzip members, [`splice`] re-encodes only the
//! deflate blocks an edit touches ([`reseal`]), [`members`] lists a tar, [`replace`] replaces one
//! member in place, `raw` walks a tar's raw header records for it, and `diff` finds the bytes
//! that changed.

mod diff;
pub mod gzip;
pub mod members;
mod raw;
pub mod replace;
pub mod splice;
#[cfg(test)]
pub(crate) mod testutil;

pub use gzip::{GzipHeader, is_gzip, seal};
#[cfg(feature = "internals")]
pub use gzip::gunzip;
pub use members::{Member, list_tar};
pub use splice::reseal;

use gzip::{Gunzipped, gunzip_members};

/// Decompressed archives larger than this are refused: a configuration is never near it, and the
/// limit keeps a hostile or corrupt file from exhausting memory on a rescue system.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// A decoded gzip'd tar.
#[derive(Debug, Clone)]
pub struct Tgz {
    /// What this archive is, for messages: `state.tgz`, `local.tgz`, ...
    pub label: String,
    pub compressed_len: u64,
    pub tar: Vec<u8>,
    pub members: Vec<Member>,
    /// Header of the first gzip member, for [`seal`] to reproduce when writing the archive back.
    pub gzip: GzipHeader,
    /// How many gzip members the file held (concatenated `gzip -c` outputs give several);
    /// [`seal`] always writes one, so a caller can report that the layout changed.
    pub gzip_members: usize,
    /// Where the deflate blocks begin, when the archive was read with [`Tgz::parse_for_edit`]:
    /// lets [`reseal`] re-encode only the blocks an edit touches.
    pub map: Option<GzMap>,
}

/// The layout of a single-member gzip file read for editing.
#[derive(Debug, Clone)]
pub struct GzMap {
    /// Length of the gzip header (kept byte for byte by [`reseal`]).
    pub header_len: usize,
    /// Length of the deflate data after it.
    pub deflate_len: usize,
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
    /// The member exists but cannot be rewritten in place without touching bytes the rewrite rule
    /// says to keep (or without guessing at a layout this module does not understand).
    #[error("{archive}: cannot replace member `{member}`: {detail}")]
    Rewrite {
        archive: String,
        member: String,
        detail: String,
    },
}

impl Tgz {
    /// Decodes a gzip'd tar held in memory.
    pub fn parse(bytes: &[u8], label: &str) -> Result<Tgz, ArchiveError> {
        let g = gunzip_members(bytes, label)?;
        Self::listed(bytes.len(), g, label, None)
    }

    fn listed(
        compressed_len: usize,
        g: Gunzipped,
        label: &str,
        map: Option<GzMap>,
    ) -> Result<Tgz, ArchiveError> {
        let members = list_tar(&g.data, label)?;
        Ok(Tgz {
            label: label.to_string(),
            compressed_len: compressed_len as u64,
            tar: g.data,
            members,
            gzip: g.header,
            gzip_members: g.members,
            map,
        })
    }

    /// Like [`Tgz::parse`], but also notes where the deflate data lies so that [`reseal`] can
    /// re-encode only what an edit changes (it maps the blocks it needs then). A file of several
    /// gzip members is compressed whole again instead.
    pub fn parse_for_edit(bytes: &[u8], label: &str) -> Result<Tgz, ArchiveError> {
        let mut t = Self::parse(bytes, label)?;
        if t.gzip_members == 1
            && let Some((_, header_len)) = GzipHeader::parse(bytes)
        {
            // One member and nothing after it (anything else is refused by the decoder): the
            // deflate data runs up to the 8-byte trailer.
            t.map = bytes
                .len()
                .checked_sub(header_len + 8)
                .map(|deflate_len| GzMap {
                    header_len,
                    deflate_len,
                });
        }
        Ok(t)
    }

    /// The same archive with its tar replaced by `tar` (e.g. the result of [`Tgz::replace_member`])
    /// and listed again, so that a second member can be replaced in turn. The gzip header is
    /// kept for [`seal`].
    pub fn with_tar(&self, tar: Vec<u8>) -> Result<Tgz, ArchiveError> {
        let members = list_tar(&tar, &self.label)?;
        Ok(Tgz {
            label: self.label.clone(),
            compressed_len: self.compressed_len,
            tar,
            members,
            gzip: self.gzip.clone(),
            gzip_members: self.gzip_members,
            // The map describes the original tar, not this one.
            map: None,
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
            None => Err(self.missing(name)),
        }
    }

    fn missing(&self, name: &str) -> ArchiveError {
        ArchiveError::Missing {
            archive: self.label.clone(),
            member: name.to_string(),
            present: self.member_names(),
        }
    }

    /// Member names for messages, `none` when empty.
    pub fn member_names(&self) -> String {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{gz, tar_of};
    use super::*;

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
