//! gzip members (RFC 1952): the header read and written byte for byte, every member of a file
//! decoded (libdeflate first, the streaming decoder for precise errors), and one member sealed
//! with the original's header fields.

use super::{ArchiveError, MAX_DECOMPRESSED};
use flate2::{Compression, GzBuilder};
use std::io::Write;

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

/// Whether bytes start like a gzip file.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// The result of decoding every member of a gzip file.
pub(super) struct Gunzipped {
    pub(super) data: Vec<u8>,
    pub(super) header: GzipHeader,
    pub(super) members: usize,
}

/// Decompresses every gzip member of `bytes` (the tests' oracle for what was written).
#[cfg(feature = "internals")]
pub fn gunzip(bytes: &[u8], label: &str) -> Result<Vec<u8>, ArchiveError> {
    gunzip_members(bytes, label).map(|g| g.data)
}

/// Decodes member by member (flate2's `MultiGzDecoder` hides the boundaries), counting them and
/// keeping the first member's header. Like `MultiGzDecoder`, bytes after a member that do not
/// start another valid member are an error.
pub(super) fn gunzip_members(bytes: &[u8], label: &str) -> Result<Gunzipped, ArchiveError> {
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

/// The compression level gzip used, as XFL tells it (2: best, 4: fastest, otherwise the default).
pub(super) fn level_of(xfl: u8) -> u32 {
    match xfl {
        2 => 9,
        4 => 1,
        _ => 6,
    }
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

#[cfg(test)]
mod tests {
    use super::super::Tgz;
    use super::super::testutil::{gz, tar_of};
    use super::*;

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
}
