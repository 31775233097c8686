//! The write path, differentially: a tar of random members is built with the `tar` crate and
//! gzip'd with flate2; one member's content is edited through bootbank
//! (`Tgz::replace_member_hunks`, then `archive::reseal`, and `deflate::splice_stream` on its own);
//! the results must inflate, with flate2 (not bootbank's decoder), to exactly the edited tar,
//! and that tar must be byte for byte the one the `tar` crate builds with the edited content.
//!
//! One property, two drivers: the fuzz target `fuzz/fuzz_targets/splice.rs` includes this file
//! and feeds it libFuzzer's inputs; [`fixed_seeds`] runs it over a fixed set of inputs on stable
//! Rust so CI exercises it.

use bootbank::archive::{Tgz, reseal};
use bootbank::deflate::splice_stream;
use flate2::Compression;
use flate2::read::{DeflateDecoder, MultiGzDecoder};
use flate2::write::GzEncoder;
use std::io::{Read, Write};

/// Reads the fuzz input as a stream of choices; zeros once it runs out.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        let v = usize::from(self.byte()) << 8 | usize::from(self.byte());
        v % n.max(1)
    }

    /// Content that deflate finds back-references in: words from a small vocabulary, with a
    /// run of raw choice bytes now and then, `len` bytes long.
    fn content(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 8] = [
            b"/adv/Misc/HostName = \"esx01\"\n",
            b"/device/0000:16:00.0/owner = \"passthru\"\n",
            b"<vm id=\"1\" path=\"/vmfs/volumes/ds1\"/>\n",
            b"root:x:0:0::/:/bin/sh\n",
            b"0123456789abcdef",
            b"\0\0\0\0\0\0\0\0",
            b" ",
            b"configstore",
        ];
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let c = self.byte();
            if c < 224 {
                out.extend_from_slice(WORDS[usize::from(c % 8)]);
            } else {
                for _ in 0..c - 223 {
                    let b = self.byte();
                    out.push(b);
                }
            }
        }
        out.truncate(len);
        out
    }
}

fn build_tar(members: &[(String, Vec<u8>)], gnu: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = if gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, &data[..])
            .expect("tar into memory");
    }
    b.into_inner().expect("tar into memory")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the gzip file bootbank wrote inflates");
    out
}

/// The property for one input. Panics when it does not hold.
pub fn check(input: &[u8]) {
    let mut c = Choices(input);
    let gnu = c.byte() & 1 == 1;
    let level = [1, 6, 9][c.below(3)];
    let count = 1 + c.below(5);
    let mut members: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            // Now and then a name past ustar's 100 bytes (a GNU `L` record or a ustar prefix).
            let name = if c.byte() < 32 {
                format!("etc/{}/member-{i}", "d".repeat(60 + c.below(80)))
            } else {
                format!("etc/member-{i}")
            };
            let len = [c.below(600), c.below(20_000), c.below(140_000)][c.below(3)];
            (name, c.content(len))
        })
        .collect();
    let old_tar = build_tar(&members, gnu);
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(&old_tar).expect("gzip into memory");
    let old_gz = enc.finish().expect("gzip into memory");

    // The edit: a span of one member replaced by new bytes of another length.
    let which = c.below(count);
    let old = members[which].1.clone();
    let at = c.below(old.len() + 1);
    let cut = c.below(old.len() - at + 1).min(4096);
    let insert_len = c.below(2048);
    let insert = c.content(insert_len);
    let mut new = old[..at].to_vec();
    new.extend_from_slice(&insert);
    new.extend_from_slice(&old[at + cut..]);
    members[which].1 = new.clone();
    let want_tar = build_tar(&members, gnu);

    let t = Tgz::parse_for_edit(&old_gz, "t.tgz").expect("flate2's gzip of a tar parses");
    assert_eq!(t.tar, old_tar, "bootbank decodes the original tar");
    let name = members[which].0.clone();
    let (tar, hunks) = t
        .replace_member_hunks(&name, &new)
        .expect("a regular member of a tar-crate tar can be replaced");
    assert_eq!(
        tar, want_tar,
        "the edited tar is the one the tar crate builds"
    );

    // Through reseal (a splice, or the whole tar compressed again when it has any doubt).
    let resealed = reseal(&old_gz, &t, &tar, Some(&hunks));
    assert_eq!(
        gunzip(&resealed),
        want_tar,
        "reseal's output inflates to the edited tar"
    );

    // The splice on its own, so that reseal's fallback cannot hide a wrong splice.
    let map = t
        .map
        .as_ref()
        .expect("one gzip member is mapped for editing");
    let raw = &old_gz[map.header_len..map.header_len + map.deflate_len];
    if let Ok(body) = splice_stream(raw, old_tar.len(), &tar, &hunks, 3) {
        let mut out = Vec::new();
        DeflateDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("the spliced deflate stream inflates");
        assert_eq!(
            out, want_tar,
            "the spliced stream inflates to the edited tar"
        );
    }
}

/// Fixed inputs from a fixed seed: the same cases on every run.
#[cfg(test)]
#[test]
fn fixed_seeds() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for case in 0..200 {
        let len = 16 + (next() % 400) as usize;
        let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let result = std::panic::catch_unwind(|| check(&input));
        assert!(result.is_ok(), "case {case} failed; input {input:02x?}");
    }
}
