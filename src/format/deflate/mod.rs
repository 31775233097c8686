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

//!
//! A file a job: [`inflate_fast`] decodes a whole stream with libdeflate (and [`crc32`]);
//! [`map`] finds where the blocks begin; [`reencode`] re-encodes around the changes,
//! writing through `bits` and reading symbols with `symbols`.
//!
//! The crate's FFI is one file, `ffi`: every libdeflate call and every zlib-rs `z_stream` call
//! (a stream that ends itself when dropped, with safe methods for priming, dictionaries, copies
//! and one-call-at-a-time inflating). Outside it the library calls C only through `rustix`; the
//! binary's `main.rs` keeps one `mallopt` (glibc tuning, which rustix does not offer).

mod bits;
mod ffi;
pub mod map;
pub mod reencode;
mod symbols;

pub use ffi::{crc32, inflate_fast};
pub use map::{BlockMap, map_blocks};
pub use reencode::splice_stream;
#[cfg(feature = "internals")]
pub use reencode::splice;

use std::ops::Range;

/// The deflate window: no back-reference reaches further back than this.
pub const WINDOW: usize = 32 * 1024;

/// Errors of the deflate layer. Offsets are bytes into the deflate data.
#[derive(Debug, thiserror::Error)]
pub enum DeflateError {
    #[error("deflate data at byte {offset}: {detail}")]
    Corrupt { offset: u64, detail: String },
    #[error("cannot re-encode the changed span: {0}")]
    Encode(String),
    /// The rest of the stream must be copied shifted by some bits, which needs the exact end
    /// (a map that stopped early knows it only to the byte): map the whole stream.
    #[error("the end of the stream is needed to the bit")]
    InexactEnd,
}

/// One change to decoded data: the bytes `old` are replaced by `new_len` bytes (taken from the
/// new data at the corresponding position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old: Range<usize>,
    pub new_len: usize,
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
