//! The deflate layer under gzip: decode a whole stream fast, map where its blocks begin, and
//! re-encode only the few symbols an edit touches.
//!
//! Reading (every command) decodes with libdeflate, which decodes a whole buffer about twice as
//! fast as a streaming inflater; when it refuses the data, the caller decodes again with the
//! streaming decoder to say where and why.
//!
//! Writing (`fix`, `config set`) changes one line of a file inside two levels of gzip. Compressing
//! both levels again costs far more than everything else a fix does, so [`splice`] keeps the
//! original compressed symbols wherever the data they decode to is unchanged. This is our own
//! code because no crate re-encodes part of a deflate stream; it builds on what zlib's own
//! examples do (zran.c maps block boundaries with `Z_BLOCK`, gzappend primes a compressor with
//! leftover bits) and goes below block boundaries with a small symbol reader (`symbols`):
//!
//! - everything before the symbol that makes the first changed byte is copied bit for bit, and
//!   that block is closed there with its own end-of-block code;
//! - the new data from there to the resume point is compressed by zlib-rs, primed with the bits
//!   of the last copied byte and given what precedes it (up to 32 KiB) as dictionary;
//! - the resume point is the first symbol boundary after which no symbol (within the 32 KiB a
//!   back-reference can reach) copies changed bytes, or bytes that moved by a different amount
//!   than itself. From there the original symbols follow behind a copy of their block's header,
//!   and decode to the same bytes because what they read is unchanged.
//!
//! The re-encoded span is made to end on the same bit position (mod 8) as the original bits it
//! hands over to, by choosing where to split its last few KiB into blocks and appending empty
//! fixed-code blocks (10 bits each, as zlib's `Z_PARTIAL_FLUSH` writes them). Then the rest of
//! the stream is copied byte for byte, so the archive that holds this one (local.tgz inside
//! state.tgz) changes only in a short span too. When no split lines up, the rest is copied
//! shifted by the difference, which is just as valid and only costs the outer level more.

mod symbols;

use libz_rs_sys as z;
use std::ops::Range;

/// The deflate window: no back-reference reaches further back than this.
pub const WINDOW: usize = 32 * 1024;

/// How much of a re-encoded span's end is tried with different block splits to line it up.
const TAIL: usize = 8 * 1024;

/// Errors of the deflate layer. Offsets are bytes into the deflate data.
#[derive(Debug, thiserror::Error)]
pub enum DeflateError {
    #[error("deflate data at byte {offset}: {detail}")]
    Corrupt { offset: u64, detail: String },
    #[error("decompressed data larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot re-encode the changed span: {0}")]
    Encode(String),
    /// The rest of the stream must be copied shifted by some bits, which needs the exact end
    /// (a map that stopped early knows it only to the byte): map the whole stream.
    #[error("the end of the stream is needed to the bit")]
    InexactEnd,
}

/// CRC-32 (gzip's) of `data`, with libdeflate's carry-less-multiply code where the CPU has it.
pub fn crc32(data: &[u8]) -> u32 {
    // SAFETY: libdeflate reads exactly `len` bytes from the pointer, which a slice provides.
    unsafe { libdeflate_sys::libdeflate_crc32(0, data.as_ptr().cast(), data.len()) }
}

/// Owns a libdeflate decompressor.
struct Decompressor(*mut libdeflate_sys::libdeflate_decompressor);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from libdeflate_alloc_decompressor and is freed once.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0) }
    }
}

/// Decodes the raw deflate stream at the start of `input`, appending the data to `out`, and
/// returns how many input bytes the stream took. `None` when libdeflate refuses the data or it
/// would exceed `limit` bytes: the caller decodes again with a streaming decoder, which names the
/// offset and the reason.
pub fn inflate_fast(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Option<usize> {
    use libdeflate_sys::*;
    // SAFETY: allocation is checked for NULL and freed by the guard.
    let d = Decompressor(unsafe { libdeflate_alloc_decompressor() });
    if d.0.is_null() {
        return None;
    }
    let start = out.len();
    if out.capacity() == start {
        out.reserve(64 * 1024);
    }
    loop {
        let spare = out.capacity() - start;
        populate(out, start);
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: libdeflate reads `input.len()` bytes from `input` and writes at most `spare`
        // bytes into the Vec's allocated spare capacity, reporting how many it wrote; only
        // those are then counted as initialised.
        let r = unsafe {
            libdeflate_deflate_decompress_ex(
                d.0,
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().add(start).cast(),
                spare,
                &mut used_in,
                &mut used_out,
            )
        };
        match r {
            r if r == libdeflate_result_LIBDEFLATE_SUCCESS => {
                // SAFETY: libdeflate initialised `used_out` bytes after `start`.
                unsafe { out.set_len(start + used_out) };
                return Some(used_in);
            }
            r if r == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE && spare < limit => {
                out.reserve((spare * 2).min(limit));
            }
            _ => return None,
        }
    }
}

/// Maps in the pages of `out`'s spare capacity after `from` with one system call when there are
/// many: letting the decoder fault them in one at a time costs as much as decoding (a fresh
/// megabyte is 256 faults). Advice only; ignored where the kernel lacks it (before Linux 5.14).
fn populate(out: &mut Vec<u8>, from: usize) {
    const PAGE: usize = 4096;
    let spare = out.capacity() - from;
    if spare < 64 * PAGE {
        return;
    }
    let base = out.as_mut_ptr() as usize + from;
    let start = base.div_ceil(PAGE) * PAGE;
    let end = (base + spare) / PAGE * PAGE;
    if end > start {
        // SAFETY: the range lies inside the Vec's own allocation; MADV_POPULATE_WRITE only
        // faults pages in (their contents are unspecified spare capacity either way).
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

/// Where the blocks of a deflate stream begin: `(bit offset in the compressed data, byte offset
/// in the decoded data)`, the first being `(0, 0)`, plus where the stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    pub starts: Vec<(u64, usize)>,
    /// Bit offset just after the final block's end-of-block code; with `end_exact` false, only
    /// the end of the last byte (the map stopped early).
    pub end_bit: u64,
    pub end_exact: bool,
    /// Length of the decoded data.
    pub total_out: usize,
}

/// A zlib stream that is ended when dropped. Boxed: zlib keeps a pointer to it.
struct Stream {
    s: Box<z::z_stream>,
    deflate: bool,
}

impl Stream {
    /// A raw (headerless) inflate stream; `None` when zlib cannot start one.
    fn inflater() -> Option<Stream> {
        let mut st = Stream {
            s: Box::default(),
            deflate: false,
        };
        // SAFETY: a zeroed (default) z_stream with a valid version string and size.
        let r = unsafe { z::inflateInit2_(&mut *st.s, -15, z::zlibVersion(), stream_size()) };
        if r != z::Z_OK {
            // Not initialised: nothing to end.
            std::mem::forget(st);
            return None;
        }
        Some(st)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by inflateInit2_/deflateInit2_/deflateCopy.
        unsafe {
            if self.deflate {
                z::deflateEnd(&mut *self.s);
            } else {
                z::inflateEnd(&mut *self.s);
            }
        }
    }
}

fn stream_size() -> i32 {
    std::mem::size_of::<z::z_stream>() as i32
}

/// Where the blocks of a raw deflate stream begin, found with zlib's `Z_BLOCK` decoding into a
/// small scratch buffer (libdeflate decodes the data itself; it cannot say where blocks begin).
/// Decoding stops once the data passes byte `until` (an edit needs the blocks up to the one
/// holding its first changed byte; [`splice`] reads any block after that itself), so an edit near
/// the start of a large archive maps almost nothing. `total_out` is the decoded length, known
/// from the decode. Without reaching the end the end bit is only known to the byte.
pub fn map_blocks(input: &[u8], until: usize, total_out: usize) -> Result<BlockMap, DeflateError> {
    let corrupt = |offset: u64, detail: &str| DeflateError::Corrupt {
        offset,
        detail: detail.to_string(),
    };
    let avail_in =
        u32::try_from(input.len()).map_err(|_| corrupt(0, "compressed data larger than 4 GiB"))?;
    let mut st = Stream::inflater().ok_or_else(|| corrupt(0, "cannot start the decoder"))?;
    st.s.next_in = input.as_ptr();
    st.s.avail_in = avail_in;
    // zlib keeps its own 32 KiB window, so the output space is only scratch.
    let mut scratch = vec![0u8; 64 * 1024];
    let mut starts = vec![(0u64, 0usize)];
    loop {
        // SAFETY: next_out points at the scratch buffer, `scratch.len()` bytes long, which
        // outlives the call; zlib writes only within it.
        let (r, produced) = unsafe {
            st.s.next_out = scratch.as_mut_ptr();
            st.s.avail_out = scratch.len() as u32;
            let before = st.s.total_out;
            let r = z::inflate(&mut *st.s, z::Z_BLOCK);
            (r, (st.s.total_out - before) as usize)
        };
        let out = st.s.total_out as usize;
        let at_bit = st.s.total_in * 8 - (st.s.data_type & 7) as u64;
        match r {
            // The end of the final block is the end of the stream. zlib-rs says so with
            // Z_STREAM_END after a Huffman block, but after a final stored block it stops at the
            // boundary (128) of the last block (64) and makes no further progress under Z_BLOCK.
            _ if r == z::Z_STREAM_END || (r == z::Z_OK && st.s.data_type & 192 == 192) => {
                return Ok(BlockMap {
                    starts,
                    end_bit: at_bit,
                    end_exact: true,
                    total_out: out,
                });
            }
            z::Z_OK | z::Z_BUF_ERROR => {
                // A boundary, unless it is the end of the final block (64: the last block has
                // been started), which is no place to resume copying at.
                if st.s.data_type & 128 != 0
                    && st.s.data_type & 64 == 0
                    && starts.last().map(|s| s.0) != Some(at_bit)
                {
                    starts.push((at_bit, out));
                }
                if out > until {
                    return Ok(BlockMap {
                        starts,
                        end_bit: input.len() as u64 * 8,
                        end_exact: false,
                        total_out,
                    });
                }
                if st.s.avail_in == 0 && produced == 0 && st.s.avail_out > 0 {
                    return Err(corrupt(
                        st.s.total_in,
                        "unexpected end of the compressed data (truncated file?)",
                    ));
                }
            }
            _ => {
                return Err(corrupt(st.s.total_in, "invalid deflate data"));
            }
        }
    }
}

/// One change to decoded data: the bytes `old` are replaced by `new_len` bytes (taken from the
/// new data at the corresponding position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old: Range<usize>,
    pub new_len: usize,
}

/// A string of bits being assembled, least significant bit first as deflate packs them.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    /// Number of valid bits; the last byte holds `len % 8` of them when not a whole byte.
    len: u64,
}

impl Bits {
    /// Appends bits `from..to` of `src`.
    fn append(&mut self, src: &[u8], from: u64, to: u64) {
        if from >= to {
            return;
        }
        let shift = (self.len % 8) as u32;
        if shift == 0 && from.is_multiple_of(8) {
            let (a, b) = ((from / 8) as usize, to.div_ceil(8) as usize);
            self.bytes.extend_from_slice(&src[a..b]);
            self.len += to - from;
            self.mask_tail();
            return;
        }
        if shift == (from % 8) as u32 {
            // Same alignment: merge the first byte, then copy whole bytes.
            let first = (from / 8) as usize;
            let last = self.bytes.last_mut().expect("a partial byte exists");
            let keep = (1u16 << shift) as u8 - 1;
            *last = (*last & keep) | (src[first] & !keep);
            let b = to.div_ceil(8) as usize;
            self.bytes
                .extend_from_slice(&src[first + 1..b.max(first + 1)]);
            self.len += to - from;
            self.mask_tail();
            return;
        }
        // Different alignment: move bits through a 64-bit accumulator.
        let mut pos = from;
        while pos < to {
            let take = (to - pos).min(56 - (pos % 8)) as u32;
            let byte = (pos / 8) as usize;
            let mut word = [0u8; 8];
            let end = (byte + 8).min(src.len());
            word[..end - byte].copy_from_slice(&src[byte..end]);
            let v = (u64::from_le_bytes(word) >> (pos % 8)) & ((1u64 << take) - 1);
            self.push(v, take);
            pos += take as u64;
        }
    }

    /// Appends the low `n` bits of `v` (n <= 57).
    fn push(&mut self, v: u64, n: u32) {
        let mut v = v;
        let mut n = n;
        let shift = (self.len % 8) as u32;
        if shift != 0 {
            let last = self.bytes.last_mut().expect("a partial byte exists");
            *last |= (v << shift) as u8;
            let used = (8 - shift).min(n);
            v >>= used;
            n -= used;
            self.len += used as u64;
        }
        while n > 0 {
            self.bytes.push(v as u8);
            let used = n.min(8);
            v >>= used;
            n -= used;
            self.len += used as u64;
        }
        self.mask_tail();
    }

    /// Zeroes the unused high bits of a partial last byte.
    fn mask_tail(&mut self) {
        let r = (self.len % 8) as u32;
        if r != 0
            && let Some(last) = self.bytes.last_mut()
        {
            *last &= (1u16 << r) as u8 - 1;
        }
    }

    /// Sets bit `at` (already written) to 0: a copied BFINAL that no longer ends the stream.
    fn clear_bit(&mut self, at: u64) {
        self.bytes[(at / 8) as usize] &= !(1u8 << (at % 8));
    }

    /// Removes a partial last byte and returns `(bits in it, its value)`.
    fn take_partial(&mut self) -> (u32, u8) {
        let r = (self.len % 8) as u32;
        if r == 0 {
            return (0, 0);
        }
        self.len -= r as u64;
        (r, self.bytes.pop().expect("a partial byte exists"))
    }
}

/// Whether the raw deflate data from bit `from_bit` on, decoded with `history` as the window,
/// starts with `expected`.
fn decodes_to(raw: &[u8], from_bit: u64, history: &[u8], expected: &[u8]) -> bool {
    let (byte, r) = ((from_bit / 8) as usize, (from_bit % 8) as i32);
    let Some(first) = raw.get(byte) else {
        return expected.is_empty();
    };
    let input = &raw[byte + usize::from(r > 0)..];
    let (Ok(avail_in), Ok(avail_out)) = (u32::try_from(input.len()), u32::try_from(expected.len()))
    else {
        return false;
    };
    let Some(mut st) = Stream::inflater() else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    // SAFETY: initialised stream; the pointers and lengths come from live slices that outlive
    // the calls.
    unsafe {
        if !history.is_empty()
            && z::inflateSetDictionary(&mut *st.s, history.as_ptr(), history.len() as u32)
                != z::Z_OK
        {
            return false;
        }
        if r > 0 && z::inflatePrime(&mut *st.s, 8 - r, i32::from(*first >> r)) != z::Z_OK {
            return false;
        }
        st.s.next_in = input.as_ptr();
        st.s.avail_in = avail_in;
        st.s.next_out = out.as_mut_ptr();
        st.s.avail_out = avail_out;
        while st.s.avail_out > 0 {
            let before = (st.s.avail_in, st.s.avail_out);
            match z::inflate(&mut *st.s, z::Z_NO_FLUSH) {
                z::Z_OK if (st.s.avail_in, st.s.avail_out) != before => {}
                z::Z_STREAM_END => break,
                _ => return false,
            }
        }
    }
    st.s.avail_out == 0 && out == expected
}

/// Where [`splice`] resumes copying the original after a re-encoded span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Nothing is copied after the span: it ends the stream.
    End,
    /// At the start of an original block (its header included).
    Block(u64),
    /// Inside an original block: a copy of its header (bits `header`), then its symbols from
    /// bit `at` on.
    Inside { header: (u64, u64), at: u64 },
}

/// The new raw deflate stream for `new`, given the original stream `old_raw` that decodes to the
/// original data, its block map, and the changes `hunks` (sorted, not overlapping, in original
/// coordinates) that turn the original data into `new`. `level` is zlib's compression level for
/// the re-encoded spans.
///
/// Around each change the original is cut at symbol boundaries, not block boundaries: the block
/// holding the first changed byte is closed early with its own end-of-block code, the new bytes
/// up to the resume point are compressed by zlib-rs, and copying resumes at the first symbol
/// after which no symbol's back-reference reads changed (or shifted) bytes, behind a copy of its
/// block's header. So an edit of one line re-encodes a few hundred bytes however large the
/// blocks are.
///
/// The result is checked before it is returned: from the start of each block that was cut,
/// through the re-encoded span, to 32 KiB past it, it must decode to the new data. Past that
/// point the decoder's window, bit position and codes are those of the original stream, which
/// decoded to the same bytes there. Any error means: compress everything again.
pub fn splice(
    old_raw: &[u8],
    map: &BlockMap,
    new: &[u8],
    hunks: &[Hunk],
    level: i32,
) -> Result<Vec<u8>, DeflateError> {
    use symbols::{Block, Sym};
    let fail = |why: &str| DeflateError::Encode(why.to_string());
    let starts = &map.starts;
    let mut total_delta: isize = 0;
    for (n, h) in hunks.iter().enumerate() {
        if h.old.end > map.total_out || h.old.start > h.old.end {
            return Err(DeflateError::Encode(format!(
                "change {:?} outside the {} decoded bytes",
                h.old, map.total_out
            )));
        }
        if n > 0 && hunks[n - 1].old.end > h.old.start {
            return Err(fail("changes overlap or are out of order"));
        }
        total_delta += h.new_len as isize - h.old.len() as isize;
    }
    if (map.total_out as isize + total_delta) as usize != new.len() {
        return Err(fail("the changes do not account for the new length"));
    }
    // How far an unchanged original byte at x moves: by every change that ends at or before it;
    // `after` also counts bytes inserted exactly at x (they come before it).
    let shift = |x: usize, after: bool| -> isize {
        hunks
            .iter()
            .filter(|h| h.old.end <= x && (after || !(h.old.is_empty() && h.old.start == x)))
            .map(|h| h.new_len as isize - h.old.len() as isize)
            .sum()
    };
    let to_new = |x: usize, after: bool| (x as isize + shift(x, after)) as usize;
    // Whether a copy at original position p would read other bytes in the new data: its source
    // holds changed bytes, or moved by a different amount than p did.
    let dirty = |p: usize, sym: Sym| -> bool {
        let Sym::Copy { len, dist } = sym else {
            return false;
        };
        let Some(src) = p.checked_sub(dist as usize) else {
            return true;
        };
        let end = src + len as usize;
        shift(src, true) != shift(p, true)
            || hunks.iter().any(|h| {
                if h.old.is_empty() {
                    src < h.old.start && h.old.start < end
                } else {
                    h.old.start < end && src < h.old.end
                }
            })
    };

    let mut w = Bits::default();
    let mut copied_to = 0u64;
    // The block whose header was written again by a resume inside it: (its start in the
    // original, the header's bit in `w`, the new offset decoding resumes at).
    let mut reopened: Option<(u64, u64, usize)> = None;
    // Ranges to check: (bit in `w` where a block begins, new offsets from..to it decodes).
    let mut checks: Vec<(u64, usize, usize)> = Vec::new();
    let mut k = 0;
    while k < hunks.len() {
        let first = &hunks[k];
        // The cut: the first symbol whose output reaches the change.
        let i = starts.partition_point(|s| s.1 <= first.old.start).max(1) - 1;
        let mut blk = Block::read(old_raw, starts[i].0)?;
        let (mut bit, mut out) = (blk.body, starts[i].1);
        // Set when the change begins where the final block ends (data appended): the bit after
        // that block.
        let mut after_last = None;
        loop {
            let (sym, next) = blk.next(old_raw, bit)?;
            if sym == Sym::End {
                after_last = Some(next);
                break;
            }
            if out + sym.out_len() > first.old.start {
                break;
            }
            (bit, out) = (next, out + sym.out_len());
        }
        let cut = (bit, out);
        let check_start = if bit == blk.body && after_last.is_none() {
            // At the block's first symbol: no block needs closing.
            if blk.start < copied_to {
                return Err(fail("a change falls in a span already re-encoded"));
            }
            w.append(old_raw, copied_to, blk.start);
            (w.len, to_new(out, false))
        } else {
            if bit < copied_to {
                return Err(fail("a change falls in a span already re-encoded"));
            }
            let w_before = w.len;
            w.append(old_raw, copied_to, after_last.unwrap_or(bit));
            let header = match reopened {
                Some((s, at, from)) if s == blk.start => (at, from),
                _ => (
                    w_before + (blk.start - copied_to),
                    to_new(starts[i].1, true),
                ),
            };
            if blk.last {
                w.clear_bit(header.0);
            }
            // A block cut short is closed with its own end-of-block code (a whole block already
            // has it, and a stored block needs none).
            if after_last.is_none() {
                let (code, n) = blk.end_code().expect("only Huffman blocks are cut inside");
                w.push(code, n);
            }
            header
        };
        // The resume point: the boundary after the last symbol that must be re-encoded (it
        // makes changed bytes, or reads them), looking 32 KiB past the last change.
        let mut change_end = first.old.end;
        k += 1;
        let mut resume_at = (cut.0, cut.1, blk.start);
        let mut stream_end = false;
        loop {
            if out >= change_end + WINDOW {
                break;
            }
            let (sym, next) = blk.next(old_raw, bit)?;
            if sym == Sym::End {
                if blk.last {
                    stream_end = true;
                    break;
                }
                blk = Block::read(old_raw, next)?;
                bit = blk.body;
                continue;
            }
            let len = sym.out_len();
            if k < hunks.len() && hunks[k].old.start < out + len {
                // A later change joins this span, which then reaches at least to where it
                // starts (an insertion just before this symbol leaves the symbol clean).
                while k < hunks.len() && hunks[k].old.start < out + len {
                    change_end = change_end.max(hunks[k].old.end);
                    k += 1;
                }
                resume_at = (bit, out, blk.start);
            }
            let bad = out < change_end || dirty(out, sym);
            (bit, out) = (next, out + len);
            if bad {
                resume_at = (bit, out, blk.start);
            }
        }
        // Data appended at the very end joins the span, which then ends the stream.
        let appended = stream_end && k < hunks.len();
        k = if appended { hunks.len() } else { k };
        let rblk = Block::read(old_raw, resume_at.2)?;
        let resume = if appended {
            Resume::End
        } else if resume_at.0 == rblk.body {
            Resume::Block(rblk.start)
        } else {
            match rblk.next(old_raw, resume_at.0)? {
                (Sym::End, _) if rblk.last => Resume::End,
                (Sym::End, next) => Resume::Block(next),
                _ => Resume::Inside {
                    header: (rblk.start, rblk.body),
                    at: resume_at.0,
                },
            }
        };
        let a = to_new(cut.1, false);
        let b = match resume {
            Resume::End => new.len(),
            _ => to_new(resume_at.1, true),
        };
        if a >= b {
            return Err(fail("an empty span"));
        }
        // The span must end where the copied bits line up with the original's bytes.
        let goal = match resume {
            Resume::End => None,
            Resume::Block(s) => Some((s % 8) as u32),
            Resume::Inside { header, at } => {
                Some((at as i64 - (header.1 - header.0) as i64).rem_euclid(8) as u32)
            }
        };
        let primed = w.take_partial();
        let part = encode(
            &new[a..b],
            &new[a.saturating_sub(WINDOW)..a],
            primed,
            level,
            goal,
        )?;
        w.append(&part.bytes, 0, part.len);
        copied_to = match resume {
            Resume::End => map.end_bit,
            Resume::Block(s) => s,
            Resume::Inside { header, at } => {
                reopened = Some((header.0, w.len, b));
                w.append(old_raw, header.0, header.1);
                at
            }
        };
        checks.push((check_start.0, check_start.1, (b + WINDOW).min(new.len())));
        if resume == Resume::End {
            break;
        }
    }
    if !map.end_exact && copied_to < map.end_bit && w.len % 8 != copied_to % 8 {
        // Copied shifted, the padding bits of the last byte could spill into one byte more.
        return Err(DeflateError::InexactEnd);
    }
    w.append(old_raw, copied_to, map.end_bit);
    // Check each span (spans closer than 32 KiB are checked as one).
    let mut merged: Vec<(u64, usize, usize)> = Vec::new();
    for c in checks {
        match merged.last_mut() {
            Some(last) if c.1 <= last.2 => last.2 = last.2.max(c.2),
            _ => merged.push(c),
        }
    }
    for (bit, from, to) in merged {
        if !decodes_to(
            &w.bytes,
            bit,
            &new[from.saturating_sub(WINDOW)..from],
            &new[from..to],
        ) {
            return Err(fail("the spliced stream does not decode to the new data"));
        }
    }
    Ok(w.bytes)
}

/// [`splice`] of the raw deflate stream `old_raw` (which decodes to `old_len` bytes), mapping its
/// blocks only as far as the changes need, and the whole stream when the end must be known to
/// the bit.
pub fn splice_stream(
    old_raw: &[u8],
    old_len: usize,
    new: &[u8],
    hunks: &[Hunk],
    level: i32,
) -> Result<Vec<u8>, DeflateError> {
    let until = hunks.last().map_or(0, |h| h.old.start);
    let map = map_blocks(old_raw, until, old_len)?;
    match splice(old_raw, &map, new, hunks, level) {
        Err(DeflateError::InexactEnd) => {
            let whole = map_blocks(old_raw, usize::MAX, old_len)?;
            splice(old_raw, &whole, new, hunks, level)
        }
        other => other,
    }
}

/// Compresses `data` as deflate blocks that follow `primed` bits, with `dict` as the history.
/// With `goal` the blocks are left open (no final block) and the result ends, when a split can
/// manage it, at a bit count equal to `goal` mod 8; without, it ends the stream.
fn encode(
    data: &[u8],
    dict: &[u8],
    primed: (u32, u8),
    level: i32,
    goal: Option<u32>,
) -> Result<Bits, DeflateError> {
    let err = |what: &str, code: i32| DeflateError::Encode(format!("zlib {what} returned {code}"));
    // A span is usually a few bytes to a few KiB: a window and hash table sized for it (and the
    // history that fits that window) make setting up the compressor, hashing the dictionary and
    // copying the state for each block split tried cost tens of microseconds instead of
    // hundreds (measured on the bench fixture: a 183-byte span 416 -> 14 us). Matches can still
    // reach four times the span back; spans of 8 KiB or more get zlib's full 32 KiB.
    let wbits = (data.len().max(1) * 4)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(9, 15) as i32;
    let mem_level = (wbits - 7).clamp(1, 8);
    let dict = &dict[dict.len().saturating_sub(1 << wbits)..];
    let mut st = Stream {
        s: Box::default(),
        deflate: true,
    };
    // SAFETY: a default z_stream with a valid version string and size.
    let r = unsafe {
        z::deflateInit2_(
            &mut *st.s,
            level,
            z::Z_DEFLATED,
            -wbits,
            mem_level,
            z::Z_DEFAULT_STRATEGY,
            z::zlibVersion(),
            stream_size(),
        )
    };
    if r != z::Z_OK {
        std::mem::forget(st);
        return Err(err("deflateInit2", r));
    }
    // SAFETY: the stream is initialised; the dictionary pointer and length come from a slice.
    unsafe {
        if primed.0 > 0 {
            let r = z::deflatePrime(&mut *st.s, primed.0 as i32, primed.1 as i32);
            if r != z::Z_OK {
                return Err(err("deflatePrime", r));
            }
        }
        if !dict.is_empty() {
            let r = z::deflateSetDictionary(&mut *st.s, dict.as_ptr(), dict.len() as u32);
            if r != z::Z_OK {
                return Err(err("deflateSetDictionary", r));
            }
        }
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 4096);
    let Some(goal) = goal else {
        run(&mut st, data, z::Z_FINISH, &mut out)?;
        let len = out.len() as u64 * 8;
        return Ok(Bits { bytes: out, len });
    };
    let split = data.len().saturating_sub(TAIL);
    run(&mut st, &data[..split], z::Z_BLOCK, &mut out)?;
    let tail = &data[split..];
    // Block splits of the tail to try, as fractions of it in sixteenths (an empty list: one
    // block). Each split adds a block header, which moves where the span ends.
    const SPLITS: &[&[usize]] = &[
        &[],
        &[8],
        &[4],
        &[12],
        &[2],
        &[14],
        &[6],
        &[10],
        &[4, 8],
        &[8, 12],
        &[4, 12],
        &[2, 8],
        &[1],
        &[15],
        &[3],
        &[13],
    ];
    let mut fallback = None;
    for cuts in SPLITS {
        let mut v = Stream {
            s: Box::default(),
            deflate: true,
        };
        // SAFETY: copies an initialised stream into a default one.
        let r = unsafe { z::deflateCopy(&mut *v.s, &mut *st.s) };
        if r != z::Z_OK {
            std::mem::forget(v);
            return Err(err("deflateCopy", r));
        }
        let mut vout = Vec::with_capacity(tail.len() + 1024);
        let mut from = 0;
        for &c in cuts.iter() {
            let at = tail.len() * c / 16;
            if at > from {
                run(&mut v, &tail[from..at], z::Z_BLOCK, &mut vout)?;
                from = at;
            }
        }
        run(&mut v, &tail[from..], z::Z_BLOCK, &mut vout)?;
        let (mut pending, mut bits) = (0u32, 0i32);
        // SAFETY: initialised stream, valid out-pointers.
        let r = unsafe { z::deflatePending(&mut *v.s, &mut pending, &mut bits) };
        if r != z::Z_OK || pending != 0 || !(0..64).contains(&bits) {
            return Err(err("deflatePending", r));
        }
        let whole = vout.len() as u64 * 8;
        let len = out.len() as u64 * 8 + whole + bits as u64;
        let gap = (goal + 8 - (len % 8) as u32) % 8;
        if !gap.is_multiple_of(2) && fallback.is_some() {
            continue;
        }
        // Flush the held bits out (an empty stored block follows them) to read their values.
        run(&mut v, &[], z::Z_SYNC_FLUSH, &mut vout)?;
        let mut b = Bits {
            bytes: out.clone(),
            len: out.len() as u64 * 8,
        };
        b.append(&vout, 0, whole + bits as u64);
        if gap.is_multiple_of(2) {
            // Empty blocks with fixed codes: BFINAL 0, BTYPE 01, end-of-block code 0000000.
            for _ in 0..gap / 2 {
                b.push(0b010, 10);
            }
            return Ok(b);
        }
        fallback = Some(b);
    }
    Ok(fallback.expect("at least one split was tried"))
}

/// Feeds `input` to a deflate stream with `flush`, appending all output to `out`.
fn run(st: &mut Stream, input: &[u8], flush: i32, out: &mut Vec<u8>) -> Result<(), DeflateError> {
    st.s.next_in = input.as_ptr();
    st.s.avail_in = u32::try_from(input.len())
        .map_err(|_| DeflateError::Encode("span larger than 4 GiB".to_string()))?;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let spare = (out.capacity() - out.len()).min(u32::MAX as usize);
        // SAFETY: next_out points at the Vec's spare capacity; the bytes zlib reports written
        // (avail_out shrinks by them) are then counted as initialised.
        let r = unsafe {
            st.s.next_out = out.as_mut_ptr().add(out.len());
            st.s.avail_out = spare as u32;
            let r = z::deflate(&mut *st.s, flush);
            let written = spare - st.s.avail_out as usize;
            out.set_len(out.len() + written);
            r
        };
        match r {
            z::Z_STREAM_END => return Ok(()),
            z::Z_OK | z::Z_BUF_ERROR => {
                // Done when all input is taken and zlib left output room unused.
                if st.s.avail_in == 0 && st.s.avail_out > 0 && flush != z::Z_FINISH {
                    return Ok(());
                }
                if r == z::Z_BUF_ERROR && st.s.avail_out > 0 {
                    return Err(DeflateError::Encode(format!(
                        "zlib deflate made no progress (flush {flush})"
                    )));
                }
            }
            _ => {
                return Err(DeflateError::Encode(format!("zlib deflate returned {r}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::DeflateEncoder};
    use std::io::Write;

    fn deflate(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn inflate_check(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut d = flate2::read::DeflateDecoder::new(raw);
        std::io::Read::read_to_end(&mut d, &mut out).unwrap();
        out
    }

    /// A text-like corpus with repeats, like esx.conf and XML.
    fn corpus(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let line = format!(
                "/device/000:{:03}:{:02}.{}/owner = \"{}\"\n",
                x % 256,
                (x >> 8) % 32,
                (x >> 13) % 8,
                ["vmkernel", "passthru", "none"][(x >> 20) as usize % 3]
            );
            out.extend_from_slice(line.as_bytes());
            if x.is_multiple_of(7) {
                // Incompressible stretches, like a database.
                for _ in 0..(x % 300) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.push(x as u8);
                }
            }
        }
        out.truncate(n);
        out
    }

    fn apply(old: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> (Vec<u8>, Vec<Hunk>) {
        let mut new = Vec::new();
        let mut at = 0;
        let mut hunks = Vec::new();
        for (r, bytes) in edits {
            new.extend_from_slice(&old[at..r.start]);
            new.extend_from_slice(bytes);
            at = r.end;
            hunks.push(Hunk {
                old: r.clone(),
                new_len: bytes.len(),
            });
        }
        new.extend_from_slice(&old[at..]);
        (new, hunks)
    }

    #[test]
    fn fast_and_mapped_decoders_agree_with_flate2() {
        let data = corpus(700_000, 7);
        for level in [1, 6, 9] {
            let raw = deflate(&data, level);
            let mut fast = Vec::new();
            assert_eq!(inflate_fast(&raw, &mut fast, 1 << 30), Some(raw.len()));
            assert_eq!(fast, data);
            let map = map_blocks(&raw, usize::MAX, data.len()).unwrap();
            assert!(map.end_exact);
            assert_eq!(map.total_out, data.len());
            // A map that stops early is the beginning of the whole one, up to the block holding
            // the byte it was asked for.
            let until = data.len() / 3;
            let part = map_blocks(&raw, until, data.len()).unwrap();
            assert!(!part.end_exact);
            assert_eq!(part.starts, map.starts[..part.starts.len()]);
            let upto = |m: &BlockMap| m.starts.iter().filter(|s| s.1 <= until).count();
            assert_eq!(upto(&part), upto(&map));
            assert!(
                map.starts.len() >= 2,
                "{level}: {} blocks",
                map.starts.len()
            );
            assert!(map.end_bit <= raw.len() as u64 * 8 && map.end_bit > raw.len() as u64 * 8 - 8);
            // No block "starts" where the final block ends: nothing can be resumed there.
            assert!(map.starts.last().unwrap().0 < map.end_bit);
            assert!(map.starts.iter().all(|s| s.1 < data.len()));
        }
    }

    #[test]
    fn spliced_streams_decode_to_the_new_data_and_keep_the_rest() {
        let data = corpus(600_000, 11);
        let cases: Vec<Vec<(Range<usize>, Vec<u8>)>> = vec![
            vec![(100..108, b"vmkernel".to_vec())],
            vec![(300_000..300_008, b"passthru".to_vec())],
            vec![(599_990..600_000, b"end".to_vec())],
            vec![(600_000..600_000, b"appended".to_vec())],
            vec![(0..0, b"prefix".to_vec())],
            vec![(250_000..250_100, Vec::new())],
            vec![
                (1000..1010, b"a longer replacement".to_vec()),
                (400_000..400_004, b"x".to_vec()),
            ],
            vec![
                (5000..5008, b"12345678".to_vec()),
                (20_000..20_001, b"yz".to_vec()),
            ],
        ];
        // Level 0 stores every block (no symbols to cut between), 1 and 9 make other blocks.
        for level in [0, 1, 6, 9] {
            let raw = deflate(&data, level);
            let map = map_blocks(&raw, usize::MAX, data.len()).unwrap();
            for (n, edits) in cases.iter().enumerate() {
                let (new, hunks) = apply(&data, edits);
                let out = splice(&raw, &map, &new, &hunks, 6).unwrap();
                assert_eq!(inflate_check(&out), new, "level {level} case {n}");
                let mut fast = Vec::new();
                assert_eq!(
                    inflate_fast(&out, &mut fast, 1 << 30),
                    Some(out.len()),
                    "level {level} case {n}"
                );
                assert_eq!(fast, new, "level {level} case {n}");
                // The bytes before the first changed block are the original's.
                let first = edits[0].0.start;
                let keep =
                    map.starts[map.starts.partition_point(|s| s.1 <= first).max(1) - 1].0 / 8;
                assert_eq!(
                    out[..keep as usize],
                    raw[..keep as usize],
                    "level {level} case {n}"
                );
            }
        }
    }

    #[test]
    fn a_small_edit_re_encodes_only_its_symbols() {
        // Lines that are rarely repeated whole: little later copies the changed bytes (here one
        // copy, 4.5 KB on), so a few KiB around them are re-encoded, inside a block that decodes
        // to more than 100 KiB (which a splice at block boundaries would re-encode whole).
        let mut data = Vec::new();
        for i in 0..6000u32 {
            data.extend_from_slice(
                format!(
                    "/device/{:03}:{:03}.{}/owner{i} = \"passthru{i}\"\n",
                    i % 251,
                    i / 7,
                    i % 8
                )
                .as_bytes(),
            );
        }
        let raw = deflate(&data, 6);
        let map = map_blocks(&raw, usize::MAX, data.len()).unwrap();
        let at = data.len() / 2;
        let i = map.starts.partition_point(|s| s.1 <= at) - 1;
        let block_end = map.starts.get(i + 1).map_or(data.len(), |s| s.1);
        assert!(block_end - map.starts[i].1 > 100 * 1024, "{:?}", map.starts);
        let (new, hunks) = apply(&data, &[(at..at + 4, b"vmkr".to_vec())]);
        let out = splice(&raw, &map, &new, &hunks, 6).unwrap();
        assert_eq!(inflate_check(&out), new);
        let p = out.iter().zip(&raw).take_while(|(a, b)| a == b).count();
        let s = out
            .iter()
            .rev()
            .zip(raw.iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        // What differs: the closed block's end code, the new span, and a copy of the header of
        // the block copying resumes in (a dynamic header is some tens of bytes).
        assert!(
            out.len() - p - s < 1500 && raw.len() - p - s < 1500,
            "{} and {} bytes differ",
            out.len() - p - s,
            raw.len() - p - s
        );
    }

    #[test]
    fn random_edits_at_every_level_decode_to_the_new_data() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for round in 0..400 {
            let data = corpus(1 + rnd(150_000), round);
            let level = [0, 1, 3, 6, 9][rnd(5)];
            let raw = deflate(&data, level);
            let mut at: Vec<usize> = (0..1 + rnd(3) * 2).map(|_| rnd(data.len() + 1)).collect();
            at.sort_unstable();
            let edits: Vec<(Range<usize>, Vec<u8>)> = at
                .chunks(2)
                .map(|c| {
                    let end = c.get(1).map_or(c[0], |&e| e.min(c[0] + rnd(40)));
                    (
                        c[0]..end,
                        (0..rnd(12))
                            .map(|i| b"vmkernel"[i % 8])
                            .collect::<Vec<u8>>(),
                    )
                })
                .filter(|(r, b)| !r.is_empty() || !b.is_empty())
                .collect();
            let (new, hunks) = apply(&data, &edits);
            // As archives do it: blocks mapped only as far as the changes need.
            let out = splice_stream(&raw, data.len(), &new, &hunks, 6)
                .unwrap_or_else(|e| panic!("round {round} level {level} {edits:?}: {e}"));
            assert_eq!(
                inflate_check(&out),
                new,
                "round {round} level {level} {edits:?}"
            );
        }
    }

    #[test]
    fn a_shifted_tail_needs_the_exact_end_and_gets_it() {
        // Letters with few repeats: mostly literals, so a one-byte change re-encodes about one
        // byte, and a span that short cannot always be split to line up with the original bits;
        // then the rest is copied shifted, which needs the stream's end to the bit.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        let raw = deflate(&data, 6);
        let whole = map_blocks(&raw, usize::MAX, data.len()).unwrap();
        let mut shifted = 0;
        for at in (1000..190_000).step_by(1900) {
            let (new, hunks) = apply(&data, &[(at..at + 1, vec![b'A'])]);
            let part = map_blocks(&raw, at, data.len()).unwrap();
            match splice(&raw, &part, &new, &hunks, 6) {
                Err(DeflateError::InexactEnd) => {
                    shifted += 1;
                    // With the whole map the same splice works.
                    let out = splice(&raw, &whole, &new, &hunks, 6).unwrap();
                    assert_eq!(inflate_check(&out), new, "at {at}");
                }
                other => assert_eq!(inflate_check(&other.unwrap()), new, "at {at}"),
            }
            let out = splice_stream(&raw, data.len(), &new, &hunks, 6).unwrap();
            assert_eq!(inflate_check(&out), new, "at {at}");
        }
        assert!(
            shifted > 0,
            "no splice needed the exact end: the test no longer tests it"
        );
    }

    #[test]
    fn a_final_block_cut_short_no_longer_ends_the_stream() {
        // One fixed-code block (short input), which is also the final one.
        let data = b"owner = passthru; owner = vmkernel; owner = passthru;".to_vec();
        let raw = deflate(&data, 6);
        let map = map_blocks(&raw, usize::MAX, data.len()).unwrap();
        assert_eq!(map.starts.len(), 1);
        let (new, hunks) = apply(&data, &[(8..16, b"vmkernel".to_vec())]);
        let out = splice(&raw, &map, &new, &hunks, 6).unwrap();
        assert_eq!(inflate_check(&out), new);
    }

    #[test]
    fn no_hunks_gives_the_original_stream() {
        let data = corpus(100_000, 3);
        let raw = deflate(&data, 6);
        let map = map_blocks(&raw, usize::MAX, data.len()).unwrap();
        let out = splice(&raw, &map, &data, &[], 6).unwrap();
        assert_eq!(inflate_check(&out), data);
    }

    #[test]
    fn corrupt_and_truncated_streams_are_errors() {
        let data = corpus(100_000, 5);
        let raw = deflate(&data, 6);
        assert!(map_blocks(&raw[..raw.len() / 2], usize::MAX, data.len()).is_err());
        assert_eq!(
            inflate_fast(&raw[..raw.len() / 2], &mut Vec::new(), 1 << 30),
            None
        );
        let mut bad = raw.clone();
        bad[0] = 0xff;
        assert!(map_blocks(&bad, usize::MAX, data.len()).is_err() || inflate_check_ok(&bad));
    }

    fn inflate_check_ok(raw: &[u8]) -> bool {
        let mut out = Vec::new();
        let mut d = flate2::read::DeflateDecoder::new(raw);
        std::io::Read::read_to_end(&mut d, &mut out).is_ok()
    }
}
