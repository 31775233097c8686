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

use crate::format::deflate::Hunk;
use flate2::{Compression, GzBuilder};
use std::io::Write;

/// Decompressed archives larger than this are refused: a configuration is never near it, and the
/// limit keeps a hostile or corrupt file from exhausting memory on a rescue system.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Tar block size: headers are one block and data is padded to a multiple of it.
const BLOCK: usize = 512;

/// Byte range of the ustar header's size field.
const SIZE_FIELD: std::ops::Range<usize> = 124..136;
/// Byte range of the ustar header's checksum field.
const CKSUM_FIELD: std::ops::Range<usize> = 148..156;

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

/// The header fields of a gzip member (RFC 1952, section 2.3), kept so a rewritten archive can
/// carry the same modification time, OS byte, file name, comment and extra field as the one ESXi
/// (or an administrator) wrote, and so tools comparing the old and new file see only the content
/// change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GzipHeader {
    /// MTIME: seconds since the epoch, 0 when the writer stored none (`gzip -n`, busybox on a pipe).
    pub mtime: u32,
    /// XFL: 2 for maximum compression, 4 for fastest, 0 otherwise (GNU gzip -6, busybox).
    pub xfl: u8,
    /// OS: 3 for Unix; flate2 alone would write 255.
    pub os: u8,
    /// FNAME: the original file name, without its terminating NUL.
    pub name: Option<Vec<u8>>,
    /// FCOMMENT: the comment, without its terminating NUL.
    pub comment: Option<Vec<u8>>,
    /// FEXTRA: the extra field's payload, without its length prefix.
    pub extra: Option<Vec<u8>>,
    /// FHCRC: whether the header carried a CRC16 of itself.
    pub fhcrc: bool,
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

impl GzipHeader {
    /// Reads the header at the start of a gzip member by hand, because flate2's `GzHeader` does
    /// not expose XFL. Returns the header and its length in bytes (with the FHCRC bytes), or None
    /// when `bytes` does not start with a complete gzip header. Does not check the header CRC or
    /// the compression method; the decoder does.
    pub fn parse(bytes: &[u8]) -> Option<(GzipHeader, usize)> {
        let fixed = bytes.get(..10)?;
        if fixed[0] != 0x1f || fixed[1] != 0x8b {
            return None;
        }
        let flg = fixed[3];
        let mut h = GzipHeader {
            mtime: u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            xfl: fixed[8],
            os: fixed[9],
            fhcrc: flg & FHCRC != 0,
            ..GzipHeader::default()
        };
        let mut pos = 10;
        if flg & FEXTRA != 0 {
            let len = bytes.get(pos..pos + 2)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            h.extra = Some(bytes.get(pos + 2..pos + 2 + len)?.to_vec());
            pos += 2 + len;
        }
        let zstring = |pos: &mut usize| -> Option<Vec<u8>> {
            let rest = bytes.get(*pos..)?;
            let n = rest.iter().position(|&b| b == 0)?;
            *pos += n + 1;
            Some(rest[..n].to_vec())
        };
        if flg & FNAME != 0 {
            h.name = Some(zstring(&mut pos)?);
        }
        if flg & FCOMMENT != 0 {
            h.comment = Some(zstring(&mut pos)?);
        }
        if h.fhcrc {
            bytes.get(pos..pos + 2)?;
            pos += 2;
        }
        Some((h, pos))
    }

    /// Whether the FHCRC of a header `len` bytes long at the start of `bytes` (as returned by
    /// [`GzipHeader::parse`]) matches; true when the header carries none.
    fn crc_matches(&self, bytes: &[u8], len: usize) -> bool {
        !self.fhcrc
            || (crate::format::deflate::crc32(&bytes[..len - 2]) as u16).to_le_bytes()
                == bytes[len - 2..len]
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

/// Whether bytes start like a gzip file.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// The result of decoding every member of a gzip file.
struct Gunzipped {
    data: Vec<u8>,
    header: GzipHeader,
    members: usize,
}

/// Decompresses every gzip member of `bytes`.
pub fn gunzip(bytes: &[u8], label: &str) -> Result<Vec<u8>, ArchiveError> {
    gunzip_members(bytes, label).map(|g| g.data)
}

/// Decodes member by member (flate2's `MultiGzDecoder` hides the boundaries), counting them and
/// keeping the first member's header. Like `MultiGzDecoder`, bytes after a member that do not
/// start another valid member are an error.
fn gunzip_members(bytes: &[u8], label: &str) -> Result<Gunzipped, ArchiveError> {
    if !is_gzip(bytes) {
        return Err(ArchiveError::NotGzip {
            archive: label.to_string(),
            magic: bytes.iter().take(2).copied().collect(),
        });
    }
    let gzip_err = |offset: usize, detail: String| ArchiveError::Gzip {
        archive: label.to_string(),
        offset: offset as u64,
        detail,
    };
    // The last member's ISIZE (uncompressed length mod 2^32) sizes the output for the usual
    // single-member file; more members just grow it.
    let mut data: Vec<u8> = Vec::with_capacity(size_hint(bytes).max(64 * 1024));
    let mut header = None;
    let mut members = 0;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let Some((h, hlen)) = GzipHeader::parse(rest) else {
            return Err(gzip_err(
                pos,
                if members == 0 {
                    "gzip header not understood".to_string()
                } else {
                    "trailing bytes after the last gzip member are not another member".to_string()
                },
            ));
        };
        if !h.crc_matches(rest, hlen) {
            return Err(gzip_err(
                pos + hlen - 2,
                "gzip header CRC does not match".to_string(),
            ));
        }
        if header.is_none() {
            header = Some(h);
        }
        let member_start = data.len();
        let body = &rest[hlen..];
        // libdeflate first; when it refuses, the streaming decoder below says where and why.
        let limit = (MAX_DECOMPRESSED as usize).saturating_sub(member_start);
        let consumed = match crate::format::deflate::inflate_fast(body, &mut data, limit) {
            Some(n) => n,
            None => {
                data.truncate(member_start);
                inflate_streaming(body, &mut data, pos + hlen, &gzip_err, label)?
            }
        };
        let trailer_at = hlen + consumed;
        let Some(trailer) = rest.get(trailer_at..trailer_at + 8) else {
            return Err(gzip_err(
                pos + trailer_at,
                "truncated gzip trailer (CRC and length missing)".to_string(),
            ));
        };
        let crc = crate::format::deflate::crc32(&data[member_start..]);
        let want_crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
        let want_len = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
        if crc != want_crc || (data.len() - member_start) as u32 != want_len {
            return Err(gzip_err(
                pos + trailer_at,
                format!(
                    "gzip trailer does not match the data (CRC {crc:08x} vs {want_crc:08x}, length {} vs {want_len})",
                    (data.len() - member_start) as u32
                ),
            ));
        }
        members += 1;
        pos += trailer_at + 8;
    }
    Ok(Gunzipped {
        data,
        header: header.unwrap_or_default(),
        members,
    })
}

/// How large the decoded data of a gzip file will be, to size the buffer at once: the last
/// member's ISIZE (its length mod 2^32), but never more than the compressed bytes can expand to
/// (deflate's limit is 1032:1) nor [`MAX_DECOMPRESSED`]. The decode buffers are mapped in ahead of
/// decoding, so a corrupt trailer must not make bootbank map in a gigabyte.
fn size_hint(bytes: &[u8]) -> usize {
    let isize = bytes
        .len()
        .checked_sub(4)
        .map(|i| u32::from_le_bytes(bytes[i..].try_into().expect("4 bytes")) as u64)
        .unwrap_or(0);
    isize.min(bytes.len() as u64 * 1032).min(MAX_DECOMPRESSED) as usize
}

/// Decodes one raw deflate stream with the streaming decoder (flate2 over zlib-rs), appending to
/// `data`; returns the compressed bytes it took. Used when libdeflate refuses a stream, because
/// it names the offset and the reason.
fn inflate_streaming(
    body: &[u8],
    data: &mut Vec<u8>,
    body_at: usize,
    gzip_err: &dyn Fn(usize, String) -> ArchiveError,
    label: &str,
) -> Result<usize, ArchiveError> {
    // Raw inflate straight into the Vec's spare capacity: `read_to_end` over a decoder would
    // zero every spare byte first.
    let mut inflate = flate2::Decompress::new(false);
    loop {
        if data.len() == data.capacity() {
            data.reserve(data.capacity().max(64 * 1024));
        }
        let before_in = inflate.total_in() as usize;
        let status = inflate
            .decompress_vec(&body[before_in..], data, flate2::FlushDecompress::None)
            .map_err(|e| gzip_err(body_at + inflate.total_in() as usize, e.to_string()))?;
        if data.len() as u64 > MAX_DECOMPRESSED {
            return Err(ArchiveError::TooLarge {
                archive: label.to_string(),
                limit: MAX_DECOMPRESSED,
            });
        }
        match status {
            flate2::Status::StreamEnd => return Ok(inflate.total_in() as usize),
            _ if inflate.total_in() as usize == before_in && data.len() < data.capacity() => {
                return Err(gzip_err(
                    body_at + before_in,
                    "unexpected end of the compressed data (truncated file?)".to_string(),
                ));
            }
            _ => {}
        }
    }
}

/// Decodes a single-member gzip file block by block, keeping the map [`reseal`] needs. `None`
/// for anything else (several members, bad data): the caller reads it the ordinary way, which
/// reports errors precisely, and edits fall back to [`seal`].
/// The compression level gzip used, as XFL tells it (2: best, 4: fastest, otherwise the default).
fn level_of(xfl: u8) -> u32 {
    match xfl {
        2 => 9,
        4 => 1,
        _ => 6,
    }
}

/// Like [`seal`], but when `original` (the file `old` was read from with
/// [`Tgz::parse_for_edit`]) is known block by block and `hunks` say which tar bytes changed,
/// re-encodes only the deflate blocks around them and keeps the gzip header bytes as they were.
/// The result is decoded and compared with `tar` before it is returned; on any doubt the whole
/// tar is compressed again with [`seal`], which is always correct, only slower.
pub fn reseal(original: &[u8], old: &Tgz, tar: &[u8], hunks: Option<&[Hunk]>) -> Vec<u8> {
    if let (Some(map), Some(hunks)) = (&old.map, hunks)
        && let Some(out) = splice_gzip(original, map, old.gzip.xfl, old.tar.len(), tar, hunks)
    {
        return out;
    }
    seal(tar, &old.gzip)
}

fn splice_gzip(
    original: &[u8],
    map: &GzMap,
    xfl: u8,
    old_len: usize,
    tar: &[u8],
    hunks: &[Hunk],
) -> Option<Vec<u8>> {
    let raw = original.get(map.header_len..map.header_len + map.deflate_len)?;
    // The re-encoded spans use zlib-rs's level 3 where gzip used its default: zlib-rs's levels 4
    // to 6 use a slower match finder that compresses configuration archives no better.
    let level = match level_of(xfl) {
        6 => 3,
        l => l as i32,
    };
    // The splice checks what it re-encoded (and the 32 KiB after) by decoding it; an error
    // means compressing everything again.
    let body = crate::format::deflate::splice_stream(raw, old_len, tar, hunks, level).ok()?;
    let mut out = Vec::with_capacity(map.header_len + body.len() + 8);
    out.extend_from_slice(&original[..map.header_len]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crate::format::deflate::crc32(tar).to_le_bytes());
    out.extend_from_slice(&(tar.len() as u32).to_le_bytes());
    Some(out)
}

/// Compresses `tar` as ONE gzip member carrying `like`'s MTIME, OS, FNAME, FCOMMENT, FEXTRA,
/// FHCRC and XFL, so the rewritten `state.tgz`/`local.tgz` differs from the original only where
/// its content does.
///
/// The compression level follows XFL the way gzip sets it (2: level 9, 4: level 1, otherwise the
/// default level 6, which GNU gzip and busybox mark with XFL 0); flate2 derives XFL from the level,
/// so it comes out equal, and any other value is copied as is (XFL is informational and not
/// covered by a checksum). The deflate bytes themselves differ from what gzip or busybox produce.
/// A file that had several gzip members becomes one member, which every gunzip reads the same.
///
/// # Panics
/// When `like.extra` is longer than 65535 bytes, which no parsed header can be. A NUL inside
/// `like.name` or `like.comment` ends the string, as it does for every reader.
pub fn seal(tar: &[u8], like: &GzipHeader) -> Vec<u8> {
    let level = Compression::new(level_of(like.xfl));
    let cut = |s: &[u8]| s.split(|&b| b == 0).next().unwrap_or_default().to_vec();
    let mut b = GzBuilder::new().mtime(like.mtime).operating_system(like.os);
    if let Some(x) = &like.extra {
        b = b.extra(x.clone());
    }
    if let Some(n) = &like.name {
        b = b.filename(cut(n));
    }
    if let Some(c) = &like.comment {
        b = b.comment(cut(c));
    }
    let mut enc = b.write(Vec::with_capacity(tar.len() / 3 + 64), level);
    // Writing to a Vec cannot fail.
    enc.write_all(tar).expect("gzip into memory");
    let mut out = enc.finish().expect("gzip into memory");
    out[8] = like.xfl;
    if like.fhcrc {
        // flate2 cannot write FHCRC: set the flag and insert the CRC16 (the low half of the CRC32
        // of the header bytes before it) after the header.
        let (_, len) = GzipHeader::parse(&out).expect("flate2 wrote a gzip header");
        out[3] |= FHCRC;
        let crc16 = (crate::format::deflate::crc32(&out[..len]) as u16).to_le_bytes();
        out.splice(len..len, crc16);
    }
    out
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

    /// The tar (uncompressed) with the content of regular-file member `name` (a leading `./` is
    /// ignored) replaced by `data`, following the rewrite rule: every other byte of the archive
    /// stays as it was and in its place, that is all other members' headers, data and padding, GNU
    /// long-name (`L`/`K`) records, pax headers, the end-of-archive blocks and whatever follows
    /// them. In the member's own header only the size field (written in the original's width,
    /// padding and terminator, e.g. `%011o\0`) and the checksum (recomputed, written in the
    /// original's style, e.g. GNU's six digits, NUL, space) change; its mtime, mode, owner and
    /// names are kept. The data is zero-padded to a whole block, so everything after the member
    /// moves by the change in whole blocks; the tar's total length is then no longer a multiple of
    /// GNU tar's 10240-byte record, which GNU tar and busybox read without complaint.
    ///
    /// Refused (`ArchiveError::Rewrite`) rather than guessed: a name held by several members, a
    /// member that is not a regular file, a member whose pax extended header (`x`, or a global
    /// `g`) sets `size=` or GNU sparse keys (the header's size field would not be the one readers
    /// use), a size field in base-256 or otherwise not octal, and a new size with more octal
    /// digits than the original field holds (8 GiB with GNU tar's and busybox's 11 digits).
    /// The result is read back and checked before it is returned. Compress it with [`seal`].
    pub fn replace_member(&self, name: &str, data: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        self.replace_member_hunks(name, data).map(|(tar, _)| tar)
    }

    /// [`Tgz::replace_member`], also saying which bytes of the tar changed (sorted, in the old
    /// tar's coordinates) for [`reseal`]: the changed span of the member's header (its size and
    /// checksum), the changed span of its data (after the common beginning and end of the old
    /// and new data), and its padding when that changes length.
    pub fn replace_member_hunks(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<(Vec<u8>, Vec<Hunk>), ArchiveError> {
        let want = name.trim_start_matches("./");
        let refuse = |detail: String| ArchiveError::Rewrite {
            archive: self.label.clone(),
            member: want.to_string(),
            detail,
        };
        let mut hits = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.name == want);
        let Some((index, m)) = hits.next() else {
            return Err(self.missing(want));
        };
        let others = hits.count();
        if others > 0 {
            return Err(refuse(format!(
                "{} members carry this name (tar extracts the last one); refusing to guess which to replace",
                others + 1
            )));
        }
        if !m.is_file() {
            return Err(refuse(format!(
                "it is not a regular file (type flag {})",
                describe_kind(m.kind)
            )));
        }
        let tar = &self.tar;
        let hdr = m.header_offset as usize;
        let at = locate(tar, hdr).map_err(&refuse)?;
        if at.global_size {
            return Err(refuse(
                "a pax global header ('g') before it sets `size=`; not supported".to_string(),
            ));
        }
        for ext in &at.extensions {
            if let Some(key) = &ext.pax_blocker {
                return Err(refuse(format!(
                    "its pax extended header ('{}') at byte {} sets `{key}`, which overrides the \
                     header's size field; rewriting such members is not supported",
                    char::from(ext.kind),
                    ext.offset
                )));
            }
        }
        if at.record.data_offset != hdr + BLOCK
            || at.record.data_offset as u64 != m.data_offset
            || at.record.size != m.size
        {
            return Err(refuse(format!(
                "its header at byte {hdr} does not read the same way twice (data at {} size {} vs \
                 data at {} size {}); not rewriting",
                at.record.data_offset, at.record.size, m.data_offset, m.size
            )));
        }
        let data_off = hdr + BLOCK;
        let old_end = data_off as u64 + padded(m.size);
        if old_end > tar.len() as u64 {
            return Err(refuse(format!(
                "its data and padding end at byte {old_end}, after the end of the tar ({})",
                tar.len()
            )));
        }
        let old_end = old_end as usize;

        let mut header = [0u8; BLOCK];
        header.copy_from_slice(&tar[hdr..data_off]);
        let size_style = OctalStyle::of(&header[SIZE_FIELD]).ok_or_else(|| {
            refuse(format!(
                "its size field {:02x?} is not plain octal",
                &header[SIZE_FIELD]
            ))
        })?;
        let new_size = data.len() as u64;
        if !size_style.write(&mut header[SIZE_FIELD], new_size) {
            return Err(refuse(format!(
                "the new size {new_size} needs {} octal digits but the header's size field holds {}",
                format!("{new_size:o}").len(),
                size_style.width
            )));
        }
        let cksum_style = OctalStyle::of(&header[CKSUM_FIELD]).ok_or_else(|| {
            refuse(format!(
                "its checksum field {:02x?} is not plain octal",
                &header[CKSUM_FIELD]
            ))
        })?;
        let sum = header_checksum(&header);
        if !cksum_style.write(&mut header[CKSUM_FIELD], sum) {
            return Err(refuse(format!(
                "the checksum does not fit its {}-digit field",
                cksum_style.width
            )));
        }

        let pad = padded(new_size) as usize - data.len();
        let mut out = Vec::with_capacity(tar.len() + data.len() + pad);
        out.extend_from_slice(&tar[..hdr]);
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len() + pad, 0);
        out.extend_from_slice(&tar[old_end..]);

        self.check_rewrite(&out, index, data).map_err(refuse)?;

        let mut hunks = Vec::new();
        let old_header = &tar[hdr..data_off];
        if let (Some(a), Some(b)) = (
            old_header.iter().zip(&header).position(|(x, y)| x != y),
            old_header.iter().zip(&header).rposition(|(x, y)| x != y),
        ) {
            hunks.push(Hunk {
                old: hdr + a..hdr + b + 1,
                new_len: b + 1 - a,
            });
        }
        let old_data = &tar[data_off..data_off + m.size as usize];
        hunks.extend(diff_hunks(old_data, data).into_iter().map(|h| Hunk {
            old: data_off + h.old.start..data_off + h.old.end,
            new_len: h.new_len,
        }));
        let old_pad = old_end - data_off - old_data.len();
        if old_pad != pad {
            let at = data_off + old_data.len();
            match hunks.last_mut() {
                Some(h) if h.old.end == at => {
                    h.old.end = old_end;
                    h.new_len += pad;
                }
                _ => hunks.push(Hunk {
                    old: at..old_end,
                    new_len: pad,
                }),
            }
        }
        Ok((out, hunks))
    }

    /// Reads a rewritten tar back: same members in the same order with the same metadata, those
    /// before the replaced one in place, those after it moved by the same whole number of blocks,
    /// and the replaced one holding `data`.
    fn check_rewrite(&self, out: &[u8], index: usize, data: &[u8]) -> Result<(), String> {
        let back = list_tar(out, &self.label)
            .map_err(|e| format!("the rewritten tar does not read back: {e}"))?;
        if back.len() != self.members.len() {
            return Err(format!(
                "the rewritten tar reads back with {} members instead of {}",
                back.len(),
                self.members.len()
            ));
        }
        let old = &self.members[index];
        let shift = padded(data.len() as u64) as i128 - padded(old.size) as i128;
        for (i, (a, b)) in self.members.iter().zip(&back).enumerate() {
            let moved = |x: u64| (x as i128 + if i > index { shift } else { 0 }) as u64;
            let want = Member {
                size: if i == index {
                    data.len() as u64
                } else {
                    a.size
                },
                header_offset: moved(a.header_offset),
                data_offset: moved(a.data_offset),
                ..a.clone()
            };
            if *b != want {
                return Err(format!(
                    "the rewritten tar reads back member {i} as {b:?}, expected {want:?}"
                ));
            }
        }
        let got = &out[old.data_offset as usize..][..data.len()];
        if got != data {
            return Err("the rewritten tar reads back other content".to_string());
        }
        Ok(())
    }
}

/// Where `new` differs from `old`, for an edit made in one place plus, possibly, small changes
/// after it that keep their position relative to the end: after the common beginning, the new
/// data is compared with the old aligned at their ends (a re-encoded gzip member: the changed
/// blocks, then the original blocks moved by the change in length, then a new CRC). Equal runs
/// shorter than 64 bytes are not worth keeping apart and count as changed.
/// Length of the common beginning of `a` and `b`, compared a chunk at a time (memcmp) before
/// byte by byte: archives are hundreds of KiB that differ in a few places.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 256;
    let n = a.len().min(b.len());
    let mut k = 0;
    while k + CHUNK <= n && a[k..k + CHUNK] == b[k..k + CHUNK] {
        k += CHUNK;
    }
    k + a[k..n]
        .iter()
        .zip(&b[k..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Length of the common end of `a` and `b`, as [`common_prefix`].
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 256;
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut k = 0;
    while k + CHUNK <= n && a[n - k - CHUNK..n - k] == b[n - k - CHUNK..n - k] {
        k += CHUNK;
    }
    k + a[..n - k]
        .iter()
        .rev()
        .zip(b[..n - k].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

fn diff_hunks(old: &[u8], new: &[u8]) -> Vec<Hunk> {
    const MIN_RUN: usize = 64;
    let p = common_prefix(old, new);
    if p == old.len() && p == new.len() {
        return Vec::new();
    }
    let d = new.len() as isize - old.len() as isize;
    // Walk back over old positions x (exclusive ends) with new position x + d, down to `lo`.
    let lo = p + (-d).max(0) as usize;
    let mut tail: Vec<Hunk> = Vec::new();
    let mut x = old.len();
    // End of the current run of changed bytes being walked, if any.
    let mut diff_end: Option<usize> = None;
    while x > lo {
        // Length of the equal run ending at x.
        let nx = (x as isize + d) as usize;
        let run = common_suffix(&old[lo..x], &new[(lo as isize + d) as usize..nx]);
        if run >= MIN_RUN || (run > 0 && x - run == lo && diff_end.is_none()) {
            if let Some(end) = diff_end.take() {
                tail.push(Hunk {
                    old: x..end,
                    new_len: end - x,
                });
            }
            x -= run;
        } else {
            diff_end.get_or_insert(x);
            x -= run.max(1);
        }
    }
    // What remains between the common beginning and the first kept run is the edit itself.
    let front_end = diff_end.unwrap_or(x);
    let front = Hunk {
        old: p..front_end,
        new_len: (front_end as isize + d) as usize - p,
    };
    let mut hunks = Vec::with_capacity(tail.len() + 1);
    if !front.old.is_empty() || front.new_len > 0 {
        hunks.push(front);
    }
    hunks.extend(tail.into_iter().rev());
    hunks
}

/// `len` rounded up to a whole number of tar blocks.
fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn describe_kind(kind: u8) -> String {
    if kind == 0 {
        "NUL".to_string()
    } else {
        format!("'{}'", char::from(kind).escape_default())
    }
}

/// POSIX header checksum: the unsigned sum of the header's bytes with the checksum field read as
/// eight spaces.
fn header_checksum(header: &[u8]) -> u64 {
    header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if CKSUM_FIELD.contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum()
}

/// How a tar writer laid out an octal numeric field, so a new value can be written the same way:
/// `width` characters of digits (left-padded with `pad`, `'0'` or `' '`) followed by the
/// original's terminator bytes (spaces and NULs, e.g. `\0` for `%011o\0`, `\0 ` for GNU's
/// checksum).
#[derive(Debug, PartialEq, Eq)]
struct OctalStyle {
    width: usize,
    pad: u8,
    term: Vec<u8>,
}

impl OctalStyle {
    /// The layout of `field`, or None when it is not leading spaces, octal digits, then spaces
    /// and NULs (base-256, empty or garbled fields).
    fn of(field: &[u8]) -> Option<OctalStyle> {
        let term = field
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == 0)
            .count();
        let width = field.len() - term;
        let body = &field[..width];
        let lead = body.iter().take_while(|&&b| b == b' ').count();
        let digits = &body[lead..];
        if digits.is_empty() || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return None;
        }
        Some(OctalStyle {
            width,
            pad: if lead > 0 { b' ' } else { b'0' },
            term: field[width..].to_vec(),
        })
    }

    /// Writes `value` into `field` (as long as the one this style was read from); false, leaving
    /// `field` alone, when it needs more digits than `width`.
    fn write(&self, field: &mut [u8], value: u64) -> bool {
        let digits = format!("{value:o}");
        if digits.len() > self.width || field.len() != self.width + self.term.len() {
            return false;
        }
        let lead = self.width - digits.len();
        field[..lead].fill(self.pad);
        field[lead..self.width].copy_from_slice(digits.as_bytes());
        field[self.width..].copy_from_slice(&self.term);
        true
    }
}

/// A tar numeric field: octal text (up to the first NUL, spaces trimmed) or GNU base-256.
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None;
        }
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x3f), |v, &b| {
                v.checked_mul(256)?.checked_add(u64::from(b))
            });
    }
    let text = field.split(|&b| b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(text).ok()?.trim_matches(' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// One header block of a tar as it lies in the file, extension records included.
#[derive(Debug)]
struct RawRecord {
    offset: usize,
    kind: u8,
    data_offset: usize,
    /// Bytes of data stored after the header (a pax `size=` applied).
    size: u64,
    /// For a pax header: the first key that changes how the next member's data is read.
    pax_blocker: Option<String>,
}

/// A member's header found by walking the tar's raw records.
#[derive(Debug)]
struct Located {
    record: RawRecord,
    /// The extension records (`L`, `K`, `x`, `X`, `g`) directly before it, in order.
    extensions: Vec<RawRecord>,
    /// A pax global header earlier in the tar sets `size=`.
    global_size: bool,
}

/// Walks the raw records from the start of the tar to the header at `target`, independently of
/// the `tar` crate, to see which extension records belong to that member and to confirm where
/// its data lies.
fn locate(tar: &[u8], target: usize) -> Result<Located, String> {
    let mut pos = 0usize;
    let mut pending_size: Option<u64> = None;
    let mut global_size = false;
    let mut extensions = Vec::new();
    loop {
        if pos > target {
            return Err(format!("no tar header starts at byte {target}"));
        }
        let block = tar
            .get(pos..pos + BLOCK)
            .ok_or_else(|| format!("the tar ends at byte {} before its header", tar.len()))?;
        if block.iter().all(|&b| b == 0) {
            return Err(format!(
                "an end-of-archive block at byte {pos} comes before its header"
            ));
        }
        let kind = block[156];
        let field = parse_numeric(&block[SIZE_FIELD])
            .ok_or_else(|| format!("unreadable size field in the header at byte {pos}"))?;
        let is_ext = matches!(kind, b'x' | b'X' | b'g' | b'L' | b'K');
        let size = if is_ext {
            field
        } else {
            pending_size.take().unwrap_or(field)
        };
        let mut data_offset = pos + BLOCK;
        if kind == b'S' && block[482] != 0 {
            // Old GNU sparse member: extension blocks of sparse map come before the data.
            loop {
                let ext = tar
                    .get(data_offset..data_offset + BLOCK)
                    .ok_or_else(|| format!("truncated sparse header at byte {pos}"))?;
                data_offset += BLOCK;
                if ext[504] == 0 {
                    break;
                }
            }
        }
        let end = (data_offset as u64)
            .checked_add(padded(size))
            .filter(|&e| e <= tar.len() as u64)
            .ok_or_else(|| format!("the record at byte {pos} runs past the end of the tar"))?;
        let mut pax_blocker = None;
        if matches!(kind, b'x' | b'X' | b'g') {
            let body = &tar[data_offset..data_offset + size as usize];
            for (key, value) in
                pax_records(body).ok_or_else(|| format!("malformed pax header at byte {pos}"))?
            {
                if key == "size" {
                    if kind == b'g' {
                        global_size = true;
                    } else {
                        pending_size = Some(parse_decimal(value).ok_or_else(|| {
                            format!("unreadable pax size in the header at byte {pos}")
                        })?);
                    }
                }
                if pax_blocker.is_none() && (key == "size" || key.starts_with("GNU.sparse.")) {
                    pax_blocker = Some(key.to_string());
                }
            }
        }
        let record = RawRecord {
            offset: pos,
            kind,
            data_offset,
            size,
            pax_blocker,
        };
        if pos == target {
            return Ok(Located {
                record,
                extensions,
                global_size,
            });
        }
        if is_ext {
            extensions.push(record);
        } else {
            extensions.clear();
        }
        pos = end as usize;
    }
}

/// The `length key=value\n` records of a pax extended header, or None when malformed.
fn pax_records(mut body: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let mut out = Vec::new();
    // GNU tar pads nothing inside the data, but be lenient with trailing NULs.
    while body.first().is_some_and(|&b| b != 0) {
        let space = body.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&body[..space]).ok()?.parse().ok()?;
        let record = body.get(..len)?;
        let kv = record.get(space + 1..len.checked_sub(1)?)?;
        let eq = kv.iter().position(|&b| b == b'=')?;
        out.push((std::str::from_utf8(&kv[..eq]).ok()?, &kv[eq + 1..]));
        body = &body[len..];
    }
    Some(out)
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
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
    use flate2::write::GzEncoder;
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
    fn gnu_tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(1_600_000_000);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// The ranges where `a` and `b` (same length) differ.
    fn diff_ranges(a: &[u8], b: &[u8]) -> Vec<std::ops::Range<usize>> {
        assert_eq!(a.len(), b.len());
        let mut out: Vec<std::ops::Range<usize>> = Vec::new();
        for i in (0..a.len()).filter(|&i| a[i] != b[i]) {
            match out.last_mut() {
                Some(r) if r.end == i => r.end = i + 1,
                _ => out.push(i..i + 1),
            }
        }
        out
    }

    /// Replaces `name` and checks the rewrite rule byte by byte.
    fn check_replace(t: &Tgz, name: &str, data: &[u8]) -> Vec<u8> {
        let m = t.member(name).unwrap().clone();
        let new = t.replace_member(name, data).unwrap();
        let hdr = m.header_offset as usize;
        assert_eq!(new[..hdr], t.tar[..hdr], "bytes before the header");
        for r in diff_ranges(&t.tar[hdr..hdr + 512], &new[hdr..hdr + 512]) {
            assert!(
                (124..136).contains(&r.start) && r.end <= 136
                    || (148..156).contains(&r.start) && r.end <= 156,
                "header changed at {r:?}"
            );
        }
        let d = hdr + 512;
        assert_eq!(&new[d..d + data.len()], data);
        let new_end = d + padded(data.len() as u64) as usize;
        assert!(new[d + data.len()..new_end].iter().all(|&b| b == 0));
        let old_end = d + padded(m.size) as usize;
        assert_eq!(new[new_end..], t.tar[old_end..], "bytes after the member");
        let back = list_tar(&new, "x").unwrap();
        assert_eq!(back.len(), t.members.len());
        new
    }

    #[test]
    fn gzip_header_fields_are_captured_and_sealed_back() {
        let tar = tar_of(&[("etc/a", b"one")]);
        let mut e = GzBuilder::new()
            .mtime(0x6543_2101)
            .operating_system(3)
            .filename("local.tar")
            .comment("made by hand")
            .extra(vec![b'A', b'B', 2, 0, 7, 9])
            .write(Vec::new(), Compression::best());
        e.write_all(&tar).unwrap();
        let bytes = e.finish().unwrap();
        let t = Tgz::parse(&bytes, "local.tgz").unwrap();
        let want = GzipHeader {
            mtime: 0x6543_2101,
            xfl: 2,
            os: 3,
            name: Some(b"local.tar".to_vec()),
            comment: Some(b"made by hand".to_vec()),
            extra: Some(vec![b'A', b'B', 2, 0, 7, 9]),
            fhcrc: false,
        };
        assert_eq!(t.gzip, want);
        assert_eq!(t.gzip_members, 1);
        let sealed = seal(&t.tar, &t.gzip);
        let (h, len) = GzipHeader::parse(&bytes).unwrap();
        assert_eq!(h, want);
        assert_eq!(sealed[..len], bytes[..len], "header bytes");
        let again = Tgz::parse(&sealed, "local.tgz").unwrap();
        assert_eq!(again.tar, t.tar);
        assert_eq!(again.gzip, want);
    }

    #[test]
    fn seal_keeps_xfl_and_writes_a_valid_header_crc() {
        let tar = tar_of(&[("etc/a", &[5u8; 4000])]);
        for xfl in [0u8, 2, 4, 9] {
            let like = GzipHeader {
                mtime: 1_700_000_000,
                xfl,
                os: 3,
                name: Some(b"state.tar".to_vec()),
                fhcrc: true,
                ..GzipHeader::default()
            };
            let bytes = seal(&tar, &like);
            assert_eq!(bytes[8], xfl);
            assert_eq!(bytes[3], FHCRC | FNAME);
            // flate2 checks the header CRC16 while decoding.
            let t = Tgz::parse(&bytes, "state.tgz").unwrap();
            assert_eq!(t.gzip, like);
            assert_eq!(t.tar, tar);
            let mut bad = bytes.clone();
            bad[20] ^= 1; // inside the CRC16 (10 + "state.tar\0")
            assert!(Tgz::parse(&bad, "state.tgz").is_err());
        }
    }

    /// Applies hunks the way the deflate splice reads them: new bytes at the corresponding place.
    fn apply_hunks(old: &[u8], new: &[u8], hunks: &[Hunk]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut at, mut delta) = (0usize, 0isize);
        for h in hunks {
            out.extend_from_slice(&old[at..h.old.start]);
            let ns = (h.old.start as isize + delta) as usize;
            out.extend_from_slice(&new[ns..ns + h.new_len]);
            delta += h.new_len as isize - h.old.len() as isize;
            at = h.old.end;
        }
        out.extend_from_slice(&old[at..]);
        out
    }

    #[test]
    fn common_prefix_and_suffix_agree_with_a_byte_by_byte_count() {
        let a: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 253) as u8).collect();
        for at in [0, 1, 255, 256, 257, 511, 512, 1000, 2999] {
            let mut b = a.clone();
            b[at] ^= 0x55;
            let slow_p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let slow_s = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count();
            assert_eq!(common_prefix(&a, &b), slow_p, "{at}");
            assert_eq!(common_suffix(&a, &b), slow_s, "{at}");
            // Different lengths: compared from each end.
            assert_eq!(common_prefix(&a, &b[..at]), at);
            assert_eq!(common_suffix(&a[at + 1..], &b), a.len() - at - 1);
        }
        assert_eq!(common_prefix(&a, &a), a.len());
        assert_eq!(common_suffix(&[], &a), 0);
    }

    #[test]
    fn diff_hunks_find_the_edit_and_the_changes_after_it() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut cases = Vec::new();
        // A re-encoded start of different length, the rest moved, and a new 4-byte CRC.
        let mut new = b"re-encoded head".to_vec();
        new.extend_from_slice(&old[100..4992]);
        new.extend_from_slice(b"CRC!");
        new.extend_from_slice(&old[4996..]);
        cases.push(new);
        cases.push(old[..4000].to_vec());
        let mut longer = old.clone();
        longer.extend_from_slice(b"more");
        cases.push(longer);
        let mut inserted = old[..2000].to_vec();
        inserted.extend_from_slice(b"inserted");
        inserted.extend_from_slice(&old[2000..]);
        cases.push(inserted);
        let mut deleted = old[..2000].to_vec();
        deleted.extend_from_slice(&old[2100..]);
        cases.push(deleted);
        cases.push(old.clone());
        for (n, new) in cases.iter().enumerate() {
            let hunks = diff_hunks(&old, new);
            assert_eq!(apply_hunks(&old, new, &hunks), *new, "case {n}: {hunks:?}");
            let changed: usize = hunks.iter().map(|h| h.old.len().max(h.new_len)).sum();
            assert!(
                changed <= 200 + old.len().abs_diff(new.len()),
                "case {n}: {hunks:?}"
            );
        }
        assert_eq!(diff_hunks(&old, &cases[0]).len(), 2);
    }

    #[test]
    fn gzip_members_are_counted() {
        let tar = tar_of(&[("etc/a", b"one"), ("etc/b", b"two")]);
        let t = Tgz::parse(&gz(&tar), "local.tgz").unwrap();
        assert_eq!((t.gzip_members, t.gzip.os, t.gzip.xfl), (1, 255, 0));
        let mut three = Vec::new();
        for part in tar.chunks(600) {
            three.extend(gz(part));
        }
        let t = Tgz::parse(&three, "local.tgz").unwrap();
        assert_eq!(t.gzip_members, tar.len().div_ceil(600));
        assert_eq!(t.tar, tar);
        let mut junk = gz(&tar);
        junk.extend(b"junk");
        let e = Tgz::parse(&junk, "local.tgz").unwrap_err();
        assert!(matches!(e, ArchiveError::Gzip { .. }), "{e}");
    }

    #[test]
    fn replace_keeps_everything_else() {
        let conf = b"/adv/Misc/HostName = \"esx01\"\n".repeat(40);
        let files: [(&str, &[u8]); 4] = [
            ("etc/hosts", b"127.0.0.1 localhost\n"),
            ("etc/vmware/esx.conf", &conf),
            ("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
            (
                "etc/vmware/hostd/a-very-long-directory-name-that-goes-on-and-on/and-a-file-name-past-one-hundred-bytes.xml",
                b"<config/>\n",
            ),
        ];
        for (which, tar) in [("ustar", tar_of(&files)), ("gnu", gnu_tar_of(&files))] {
            let t = Tgz::parse(&gz(&tar), which).unwrap();
            for new in [
                b"short\n".to_vec(),
                conf.repeat(3),
                vec![b'x'; conf.len()],
                Vec::new(),
                vec![b'y'; 512],
            ] {
                let out = check_replace(&t, "./etc/vmware/esx.conf", &new);
                let back = Tgz::parse(&gz(&out), which).unwrap();
                assert_eq!(back.require("etc/vmware/esx.conf").unwrap(), &new[..]);
                for (name, data) in files.iter().filter(|f| f.0 != "etc/vmware/esx.conf") {
                    assert_eq!(back.require(name).unwrap(), *data, "{which} {name}");
                }
            }
            let long = files[3].0;
            let out = check_replace(&t, long, b"<config>x</config>\n");
            assert_eq!(
                Tgz::parse(&gz(&out), which).unwrap().require(long).unwrap(),
                b"<config>x</config>\n"
            );
        }
    }

    #[test]
    fn octal_styles_are_kept() {
        let cases: [(&[u8], u64, &[u8]); 5] = [
            (b"00000000017\0", 0o1234, b"00000001234\0"),
            (b"00000000017 ", 0o1234, b"00000001234 "),
            (b"         17 ", 0o1234, b"       1234 "),
            (b"000000000017", 0o1234, b"000000001234"),
            (b"017\0 \0\0\0\0\0\0\0", 0o7, b"007\0 \0\0\0\0\0\0\0"),
        ];
        for (field, value, want) in cases {
            let style = OctalStyle::of(field).unwrap();
            let mut f = field.to_vec();
            assert!(style.write(&mut f, value));
            assert_eq!(f, want, "{:?}", String::from_utf8_lossy(field));
            assert_eq!(parse_numeric(&f), Some(value));
        }
        let style = OctalStyle::of(b"017\0\0\0\0\0\0\0\0\0").unwrap();
        assert!(!style.write(&mut [0u8; 12], 0o1000));
        for bad in [
            &b"\0\0\0\0\0\0\0\0"[..],
            b"0x12\0",
            &[0x80, 0, 0, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(OctalStyle::of(bad), None);
        }
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
    }

    #[test]
    fn checksum_style_of_the_tar_crate_is_kept() {
        // The tar crate writes the checksum as seven digits and a NUL, GNU as six, NUL, space.
        let tar = tar_of(&[("a", b"1"), ("b", b"22")]);
        assert_eq!(tar[148 + 7], 0);
        let out = check_replace(&Tgz::parse(&gz(&tar), "t").unwrap(), "a", b"333");
        assert_eq!(out[148 + 7], 0);
        assert_ne!(out[148 + 6], 0);
        let tar = gnu_tar_of(&[("a", b"1"), ("b", b"22")]);
        let mut gnu = tar.clone();
        let sum = header_checksum(&gnu[..512]);
        gnu[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let out = check_replace(&Tgz::parse(&gz(&gnu), "t").unwrap(), "a", b"333");
        assert_eq!(&out[154..156], b"\0 ");
        let sum = header_checksum(&out[..512]);
        assert_eq!(&out[148..154], format!("{sum:06o}").as_bytes());
    }

    #[test]
    fn size_that_does_not_fit_is_refused() {
        let mut tar = tar_of(&[("a", b"1234567")]);
        tar[124..136].copy_from_slice(b"7\0\0\0\0\0\0\0\0\0\0\0");
        let sum = header_checksum(&tar[..512]);
        tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let t = Tgz::parse(&gz(&tar), "local.tgz").unwrap();
        check_replace(&t, "a", b"1");
        let e = t.replace_member("a", b"12345678").unwrap_err();
        assert!(matches!(e, ArchiveError::Rewrite { .. }), "{e}");
        assert!(e.to_string().contains("needs 2 octal digits"), "{e}");
    }

    #[test]
    fn unsupported_members_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "etc/", &[][..]).unwrap();
        b.append_pax_extensions([("path", &b"etc/paxpath"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_data(&mut h, "etc/x", &b"abc"[..]).unwrap();
        b.append_pax_extensions([("size", &b"3"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_data(&mut h, "etc/sized", &b"def"[..]).unwrap();
        for _ in 0..2 {
            let mut h = tar::Header::new_ustar();
            h.set_size(1);
            b.append_data(&mut h, "etc/twice", &b"g"[..]).unwrap();
        }
        let t = Tgz::parse(&gz(&b.into_inner().unwrap()), "local.tgz").unwrap();
        let refused = |name: &str, what: &str| {
            let e = t.replace_member(name, b"new").unwrap_err();
            assert!(matches!(e, ArchiveError::Rewrite { .. }), "{e}");
            assert!(e.to_string().contains(what), "{e}");
        };
        refused("etc/", "not a regular file");
        refused("etc/sized", "sets `size`");
        refused("etc/twice", "2 members carry this name");
        let e = t.replace_member("etc/nope", b"").unwrap_err();
        assert!(matches!(e, ArchiveError::Missing { .. }), "{e}");
        // A pax header without size= is kept as it is.
        let out = check_replace(&t, "etc/paxpath", b"longer content\n");
        let back = Tgz::parse(&gz(&out), "local.tgz").unwrap();
        assert_eq!(back.require("etc/sized").unwrap(), b"def");
    }
    #[test]
    fn mutated_tars_never_panic() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", &b"etc/p"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        b.append_data(&mut h, "x", &b"abc"[..]).unwrap();
        let mut seed = b.into_inner().unwrap();
        seed.extend(gnu_tar_of(&[
            ("etc/a", b"1"),
            (&"d/".repeat(60), &[9u8; 700]),
            ("etc/b", b"22"),
        ]));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut tar = seed.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % tar.len() as u64) as usize;
                tar[i] = match next() % 4 {
                    0 => 0,
                    1 => b'0' + (next() % 10) as u8,
                    2 => b' ',
                    _ => next() as u8,
                };
            }
            let Ok(members) = list_tar(&tar, "t") else {
                continue;
            };
            let t = Tgz {
                label: "t".into(),
                compressed_len: 0,
                tar,
                members,
                gzip: GzipHeader::default(),
                gzip_members: 1,
                map: None,
            };
            for m in &t.members {
                let len = (next() % 1200) as usize;
                if let Ok(out) = t.replace_member(&m.name, &vec![b'n'; len]) {
                    assert_eq!(list_tar(&out, "t").unwrap().len(), t.members.len());
                }
            }
        }
    }
}
