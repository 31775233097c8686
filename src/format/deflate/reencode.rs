//! The splice: a new raw deflate stream for edited data that keeps the original's compressed
//! symbols wherever the data they decode to is unchanged (see the module above for the method).

use super::{BlockMap, DeflateError, Hunk, WINDOW, map_blocks};

use super::bits::Bits;
use super::ffi::{Code, Stream, Z_BLOCK, Z_FINISH, Z_NO_FLUSH, Z_OK, Z_STREAM_END, Z_SYNC_FLUSH};

/// How much of a re-encoded span's end is tried with different block splits to line it up.
const TAIL: usize = 8 * 1024;

/// Whether the raw deflate data from bit `from_bit` on, decoded with `history` as the window,
/// starts with `expected`.
fn decodes_to(raw: &[u8], from_bit: u64, history: &[u8], expected: &[u8]) -> bool {
    let (byte, r) = ((from_bit / 8) as usize, (from_bit % 8) as i32);
    let Some(first) = raw.get(byte) else {
        return expected.is_empty();
    };
    let input = &raw[byte + usize::from(r > 0)..];
    if u32::try_from(expected.len()).is_err() {
        return false;
    }
    let Some(mut st) = Stream::inflater() else {
        return false;
    };
    if !history.is_empty() && st.set_dictionary(history).is_err() {
        return false;
    }
    if r > 0 && st.prime(8 - r, i32::from(*first >> r)).is_err() {
        return false;
    }
    if st.set_input(input).is_err() {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let mut done = 0;
    while done < out.len() {
        let before = st.avail_in();
        match st.inflate(&mut out[done..], Z_NO_FLUSH) {
            (Z_OK, n) if n > 0 || st.avail_in() != before => done += n,
            (Z_STREAM_END, n) => {
                done += n;
                break;
            }
            _ => return false,
        }
    }
    done == out.len() && out == expected
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
    use super::symbols::{Block, Sym};
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
    let err =
        |what: &str, Code(code): Code| DeflateError::Encode(format!("zlib {what} returned {code}"));
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
    let mut st = Stream::deflater(level, wbits, mem_level).map_err(|c| err("deflateInit2", c))?;
    if primed.0 > 0 {
        st.prime(primed.0 as i32, primed.1 as i32)
            .map_err(|c| err("deflatePrime", c))?;
    }
    if !dict.is_empty() {
        st.set_dictionary(dict)
            .map_err(|c| err("deflateSetDictionary", c))?;
    }
    let run = |st: &mut Stream<'_>, input: &[u8], flush: i32, out: &mut Vec<u8>| {
        st.run(input, flush, out).map_err(|Code(r)| {
            DeflateError::Encode(format!("zlib deflate returned {r} (flush {flush})"))
        })
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 4096);
    let Some(goal) = goal else {
        run(&mut st, data, Z_FINISH, &mut out)?;
        let len = out.len() as u64 * 8;
        return Ok(Bits { bytes: out, len });
    };
    let split = data.len().saturating_sub(TAIL);
    run(&mut st, &data[..split], Z_BLOCK, &mut out)?;
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
        let mut v = st.copy().map_err(|c| err("deflateCopy", c))?;
        let mut vout = Vec::with_capacity(tail.len() + 1024);
        let mut from = 0;
        for &c in cuts.iter() {
            let at = tail.len() * c / 16;
            if at > from {
                run(&mut v, &tail[from..at], Z_BLOCK, &mut vout)?;
                from = at;
            }
        }
        run(&mut v, &tail[from..], Z_BLOCK, &mut vout)?;
        let (pending, bits) = v.pending().map_err(|c| err("deflatePending", c))?;
        if pending != 0 || !(0..64).contains(&bits) {
            return Err(DeflateError::Encode(format!(
                "zlib deflatePending left {pending} bytes and {bits} bits"
            )));
        }
        let whole = vout.len() as u64 * 8;
        let len = out.len() as u64 * 8 + whole + bits as u64;
        let gap = (goal + 8 - (len % 8) as u32) % 8;
        if !gap.is_multiple_of(2) && fallback.is_some() {
            continue;
        }
        // Flush the held bits out (an empty stored block follows them) to read their values.
        run(&mut v, &[], Z_SYNC_FLUSH, &mut vout)?;
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
