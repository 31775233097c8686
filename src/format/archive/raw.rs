//! A tar's raw header records walked by hand, independently of the `tar` crate: which extension
//! records (GNU `L`/`K`, pax `x`/`g`) belong to a member, where its data really lies, and how
//! its octal fields were laid out, so that [`super::replace`] can rewrite it in the writer's
//! own style.
//!
//! Why not the `tar` crate's raw entries (`Archive::entries_with_seek`/`Entries::raw(true)` with
//! `pax_extensions()`): they give the records, but not the byte layout of a numeric field
//! (width, padding, terminator: [`OctalStyle`]), which is what keeps the rewritten header
//! byte-identical outside the size and checksum; the listing itself ([`super::list_tar`]) does use
//! the crate, and this walker is the second, independent reading the rewrite is checked against.

/// Tar block size: headers are one block and data is padded to a multiple of it.
pub(super) const BLOCK: usize = 512;

/// Byte range of the ustar header's size field.
pub(super) const SIZE_FIELD: std::ops::Range<usize> = 124..136;
/// Byte range of the ustar header's checksum field.
pub(super) const CKSUM_FIELD: std::ops::Range<usize> = 148..156;

/// `len` rounded up to a whole number of tar blocks.
pub(super) fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// POSIX header checksum: the unsigned sum of the header's bytes with the checksum field read as
/// eight spaces.
pub(super) fn header_checksum(header: &[u8]) -> u64 {
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
pub(super) struct OctalStyle {
    pub(super) width: usize,
    pad: u8,
    term: Vec<u8>,
}

impl OctalStyle {
    /// The layout of `field`, or None when it is not leading spaces, octal digits, then spaces
    /// and NULs (base-256, empty or garbled fields).
    pub(super) fn of(field: &[u8]) -> Option<OctalStyle> {
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
    pub(super) fn write(&self, field: &mut [u8], value: u64) -> bool {
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
pub(super) struct RawRecord {
    pub(super) offset: usize,
    pub(super) kind: u8,
    pub(super) data_offset: usize,
    /// Bytes of data stored after the header (a pax `size=` applied).
    pub(super) size: u64,
    /// For a pax header: the first key that changes how the next member's data is read.
    pub(super) pax_blocker: Option<String>,
}

/// Why the raw walk could not reach a member's header; every offset is a byte of the tar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum WalkError {
    #[error("no tar header starts at byte {target}")]
    NoHeaderAt { target: usize },
    #[error("the tar ends at byte {len} before its header")]
    EndsBefore { len: usize },
    #[error("an end-of-archive block at byte {pos} comes before its header")]
    EndBlock { pos: usize },
    #[error("unreadable size field in the header at byte {pos}")]
    SizeField { pos: usize },
    #[error("truncated sparse header at byte {pos}")]
    Sparse { pos: usize },
    #[error("the record at byte {pos} runs past the end of the tar")]
    PastEnd { pos: usize },
    #[error("malformed pax header at byte {pos}")]
    Pax { pos: usize },
    #[error("unreadable pax size in the header at byte {pos}")]
    PaxSize { pos: usize },
}

/// A member's header found by walking the tar's raw records.
#[derive(Debug)]
pub(super) struct Located {
    pub(super) record: RawRecord,
    /// The extension records (`L`, `K`, `x`, `X`, `g`) directly before it, in order.
    pub(super) extensions: Vec<RawRecord>,
    /// A pax global header earlier in the tar sets `size=`.
    pub(super) global_size: bool,
}

/// Walks the raw records from the start of the tar to the header at `target`, independently of
/// the `tar` crate, to see which extension records belong to that member and to confirm where
/// its data lies.
pub(super) fn locate(tar: &[u8], target: usize) -> Result<Located, WalkError> {
    let mut pos = 0usize;
    let mut pending_size: Option<u64> = None;
    let mut global_size = false;
    let mut extensions = Vec::new();
    loop {
        if pos > target {
            return Err(WalkError::NoHeaderAt { target });
        }
        let block = tar
            .get(pos..pos + BLOCK)
            .ok_or(WalkError::EndsBefore { len: tar.len() })?;
        if block.iter().all(|&b| b == 0) {
            return Err(WalkError::EndBlock { pos });
        }
        let kind = block[156];
        let field = parse_numeric(&block[SIZE_FIELD]).ok_or(WalkError::SizeField { pos })?;
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
                    .ok_or(WalkError::Sparse { pos })?;
                data_offset += BLOCK;
                if ext[504] == 0 {
                    break;
                }
            }
        }
        let end = (data_offset as u64)
            .checked_add(padded(size))
            .filter(|&e| e <= tar.len() as u64)
            .ok_or(WalkError::PastEnd { pos })?;
        let mut pax_blocker = None;
        if matches!(kind, b'x' | b'X' | b'g') {
            let body = &tar[data_offset..data_offset + size as usize];
            for (key, value) in pax_records(body).ok_or(WalkError::Pax { pos })? {
                if key == "size" {
                    if kind == b'g' {
                        global_size = true;
                    } else {
                        pending_size =
                            Some(parse_decimal(value).ok_or(WalkError::PaxSize { pos })?);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
