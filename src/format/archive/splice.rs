//! Writing an edited tar back as gzip, re-encoding only the deflate blocks around the changed
//! bytes when the original's block layout is known ([`reseal`]), else the whole tar ([`seal`]).

use super::gzip::{level_of, seal};
use super::{GzMap, Tgz};
use crate::format::deflate::Hunk;

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
