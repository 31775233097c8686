//! Reads a raw deflate stream one symbol at a time, with the bit position of every symbol.
//!
//! [`super::splice`] cuts a block short just before the symbol that produces the first changed
//! byte, and resumes copying the original at a symbol boundary inside a later block (behind a
//! copy of that block's header). Decoders (libdeflate, zlib) report neither symbol boundaries nor
//! the Huffman code of a block's end-of-block symbol, so this small decoder exists. It does not
//! produce the decoded bytes (their positions are enough) and is used only on the few blocks an
//! edit touches; whole streams are decoded by libdeflate and zlib-rs.

use super::DeflateError;

/// Length bases and extra bits of length symbols 257..=285 (RFC 1951, 3.2.5).
const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Distance bases and extra bits of distance symbols 0..=29.
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order code length code lengths are sent in.
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

fn corrupt(bit: u64, detail: &str) -> DeflateError {
    DeflateError::Corrupt {
        offset: bit / 8,
        detail: detail.to_string(),
    }
}

/// Up to 56 bits of `raw` from bit `bit` on, least significant first; zeros past the end.
fn peek(raw: &[u8], bit: u64) -> u64 {
    let byte = (bit / 8) as usize;
    let mut word = [0u8; 8];
    if let Some(src) = raw.get(byte..) {
        let n = src.len().min(8);
        word[..n].copy_from_slice(&src[..n]);
    }
    u64::from_le_bytes(word) >> (bit % 8)
}

/// `n` bits (n <= 32) at `*bit`, advancing it; an error past the end of `raw`.
fn take(raw: &[u8], bit: &mut u64, n: u32) -> Result<u32, DeflateError> {
    if *bit + u64::from(n) > raw.len() as u64 * 8 {
        return Err(corrupt(*bit, "unexpected end of the compressed data"));
    }
    let v = (peek(raw, *bit) & ((1u64 << n) - 1)) as u32;
    *bit += u64::from(n);
    Ok(v)
}

/// A canonical Huffman code as a lookup table indexed by the next `bits` input bits.
struct Table {
    /// `symbol << 4 | code length`; 0 for bit patterns no code starts with.
    lookup: Vec<u16>,
    bits: u32,
    /// The code of every symbol (bit-reversed, as it is sent) and its length; 0 when unused.
    codes: Vec<(u16, u8)>,
}

impl Table {
    fn new(lengths: &[u8], bit: u64) -> Result<Table, DeflateError> {
        let max = u32::from(lengths.iter().copied().max().unwrap_or(0)).max(1);
        let mut count = [0u16; 16];
        for &l in lengths {
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut next = [0u32; 16];
        let mut code = 0u32;
        for len in 1..16 {
            code = (code + u32::from(count[len - 1])) << 1;
            next[len] = code;
            if code + u32::from(count[len]) > 1 << len {
                return Err(corrupt(bit, "over-subscribed Huffman code"));
            }
        }
        let mut lookup = vec![0u16; 1 << max];
        let mut codes = vec![(0u16, 0u8); lengths.len()];
        for (sym, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let c = next[len as usize];
            next[len as usize] += 1;
            let rev = (c.reverse_bits() >> (32 - u32::from(len))) as usize;
            codes[sym] = (rev as u16, len);
            let entry = ((sym as u16) << 4) | u16::from(len);
            let mut i = rev;
            while i < lookup.len() {
                lookup[i] = entry;
                i += 1 << len;
            }
        }
        Ok(Table {
            lookup,
            bits: max,
            codes,
        })
    }

    fn decode(&self, raw: &[u8], bit: &mut u64) -> Result<u16, DeflateError> {
        let e = self.lookup[(peek(raw, *bit) & ((1u64 << self.bits) - 1)) as usize];
        let len = u64::from(e & 15);
        if len == 0 || *bit + len > raw.len() as u64 * 8 {
            return Err(corrupt(*bit, "invalid Huffman code"));
        }
        *bit += len;
        Ok(e >> 4)
    }
}

/// What one symbol does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sym {
    /// One literal byte.
    Literal,
    /// `len` bytes copied from `dist` bytes back.
    Copy { len: u32, dist: u32 },
    /// The whole data of a stored block (it has no symbols to cut between).
    Stored { len: u32 },
    /// The end of the block.
    End,
}

impl Sym {
    /// Bytes of output.
    pub fn out_len(self) -> usize {
        match self {
            Sym::Literal => 1,
            Sym::Copy { len, .. } | Sym::Stored { len } => len as usize,
            Sym::End => 0,
        }
    }
}

enum Codes {
    Stored { len: u32 },
    Huffman { lit: Table, dist: Option<Table> },
}

/// One block's header, read.
pub struct Block {
    /// Bit where the header begins.
    pub start: u64,
    /// Bit where the first symbol (or a stored block's data) begins.
    pub body: u64,
    /// BFINAL: no block follows.
    pub last: bool,
    codes: Codes,
}

impl Block {
    pub fn read(raw: &[u8], start: u64) -> Result<Block, DeflateError> {
        let mut bit = start;
        let last = take(raw, &mut bit, 1)? == 1;
        let codes = match take(raw, &mut bit, 2)? {
            0 => {
                bit = bit.div_ceil(8) * 8;
                let len = take(raw, &mut bit, 16)?;
                let nlen = take(raw, &mut bit, 16)?;
                if len != !nlen & 0xffff {
                    return Err(corrupt(start, "stored block length check failed"));
                }
                Codes::Stored { len }
            }
            1 => {
                let mut l = [8u8; 288];
                l[144..256].fill(9);
                l[256..280].fill(7);
                Codes::Huffman {
                    lit: Table::new(&l, start)?,
                    dist: Some(Table::new(&[5u8; 30], start)?),
                }
            }
            2 => {
                let hlit = take(raw, &mut bit, 5)? as usize + 257;
                let hdist = take(raw, &mut bit, 5)? as usize + 1;
                let hclen = take(raw, &mut bit, 4)? as usize + 4;
                let mut cl = [0u8; 19];
                for &i in &CL_ORDER[..hclen] {
                    cl[i] = take(raw, &mut bit, 3)? as u8;
                }
                let clt = Table::new(&cl, start)?;
                let mut lengths = Vec::with_capacity(hlit + hdist);
                while lengths.len() < hlit + hdist {
                    let (value, repeat) = match clt.decode(raw, &mut bit)? {
                        l @ 0..=15 => (l as u8, 1),
                        16 => {
                            let prev = *lengths
                                .last()
                                .ok_or_else(|| corrupt(bit, "repeat with no length before it"))?;
                            (prev, 3 + take(raw, &mut bit, 2)?)
                        }
                        17 => (0, 3 + take(raw, &mut bit, 3)?),
                        _ => (0, 11 + take(raw, &mut bit, 7)?),
                    };
                    if lengths.len() + repeat as usize > hlit + hdist {
                        return Err(corrupt(bit, "code lengths overrun"));
                    }
                    lengths.extend(std::iter::repeat_n(value, repeat as usize));
                }
                if lengths[256] == 0 {
                    return Err(corrupt(bit, "no end-of-block code"));
                }
                let dist_lengths = &lengths[hlit..];
                Codes::Huffman {
                    lit: Table::new(&lengths[..hlit], start)?,
                    dist: if dist_lengths.iter().all(|&l| l == 0) {
                        None
                    } else {
                        Some(Table::new(dist_lengths, start)?)
                    },
                }
            }
            _ => return Err(corrupt(start, "invalid block type 3")),
        };
        Ok(Block {
            start,
            body: bit,
            last,
            codes,
        })
    }

    /// Whether symbols can be cut between (not a stored block).
    #[cfg(test)]
    pub fn huffman(&self) -> bool {
        matches!(self.codes, Codes::Huffman { .. })
    }

    /// The end-of-block code as sent (bits, count): what closes a block cut short.
    pub fn end_code(&self) -> Option<(u64, u32)> {
        match &self.codes {
            Codes::Huffman { lit, .. } => {
                let (c, l) = lit.codes[256];
                Some((u64::from(c), u32::from(l)))
            }
            Codes::Stored { .. } => None,
        }
    }

    /// Decodes the symbol at `bit` and returns it with the bit after it. For a stored block the
    /// data is one symbol at `body` (none when empty), then `End` (taking no bits) where it ends.
    pub fn next(&self, raw: &[u8], bit: u64) -> Result<(Sym, u64), DeflateError> {
        let (lit, dist) = match &self.codes {
            Codes::Stored { len } => {
                return Ok(if bit == self.body && *len > 0 {
                    let end = bit + u64::from(*len) * 8;
                    if end > raw.len() as u64 * 8 {
                        return Err(corrupt(bit, "stored block past the end of the data"));
                    }
                    (Sym::Stored { len: *len }, end)
                } else {
                    (Sym::End, bit)
                });
            }
            Codes::Huffman { lit, dist } => (lit, dist),
        };
        let mut b = bit;
        let s = lit.decode(raw, &mut b)?;
        let sym = match s {
            0..=255 => Sym::Literal,
            256 => Sym::End,
            257..=285 => {
                let i = (s - 257) as usize;
                let len = u32::from(LEN_BASE[i]) + take(raw, &mut b, u32::from(LEN_EXTRA[i]))?;
                let dt = dist
                    .as_ref()
                    .ok_or_else(|| corrupt(b, "a copy in a block without distance codes"))?;
                let d = dt.decode(raw, &mut b)? as usize;
                if d >= 30 {
                    return Err(corrupt(b, "invalid distance symbol"));
                }
                let dist = u32::from(DIST_BASE[d]) + take(raw, &mut b, u32::from(DIST_EXTRA[d]))?;
                Sym::Copy { len, dist }
            }
            _ => return Err(corrupt(bit, "invalid length symbol")),
        };
        Ok((sym, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::DeflateEncoder};
    use std::io::Write;

    /// Walks every block and symbol; returns the decoded length, the number of blocks and
    /// whether any block was stored.
    fn walk(raw: &[u8]) -> (usize, usize, bool) {
        let (mut bit, mut out, mut blocks, mut stored) = (0u64, 0usize, 0usize, false);
        loop {
            let b = Block::read(raw, bit).unwrap();
            blocks += 1;
            stored |= !b.huffman();
            let mut at = b.body;
            loop {
                let (s, next) = b.next(raw, at).unwrap();
                at = next;
                if s == Sym::End {
                    break;
                }
                if let Sym::Copy { dist, .. } = s {
                    assert!(dist as usize <= out && dist <= 32768);
                }
                out += s.out_len();
            }
            bit = at;
            if b.last {
                break;
            }
        }
        assert_eq!(
            bit.div_ceil(8) as usize,
            raw.len(),
            "the walk ends where the data does"
        );
        (out, blocks, stored)
    }

    #[test]
    fn walks_fixed_dynamic_and_stored_blocks_to_the_right_length() {
        let mut data = Vec::new();
        for i in 0..40_000u32 {
            data.extend_from_slice(format!("/device/{i:05}/owner = \"passthru\"\n").as_bytes());
        }
        let mut x = 1u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push(x as u8);
        }
        for level in [0, 1, 6, 9] {
            let mut e = DeflateEncoder::new(Vec::new(), Compression::new(level));
            e.write_all(&data).unwrap();
            let raw = e.finish().unwrap();
            let (len, blocks, stored) = walk(&raw);
            assert_eq!(len, data.len(), "level {level}");
            assert!(blocks > 1, "level {level}");
            // Level 0 stores everything; the others store only what does not compress.
            assert!(stored || level != 0, "level {level}");
        }
        // A short input gets one fixed-code block.
        let mut e = DeflateEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(b"hello hello hello").unwrap();
        let raw = e.finish().unwrap();
        assert_eq!(walk(&raw).0, 17);
    }

    #[test]
    fn truncated_or_invalid_streams_are_errors_not_panics() {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(&b"abcabcabc".repeat(1000)).unwrap();
        let raw = e.finish().unwrap();
        for cut in 0..raw.len() {
            let r = Block::read(&raw[..cut], 0).and_then(|b| {
                let mut at = b.body;
                loop {
                    let (s, n) = b.next(&raw[..cut], at)?;
                    at = n;
                    if s == Sym::End {
                        return Ok(());
                    }
                }
            });
            assert!(r.is_err(), "cut at {cut}");
        }
        assert!(Block::read(&[0b111], 0).is_err(), "block type 3");
    }
}
