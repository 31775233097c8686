//! Replacing one member of a tar in place, under the rewrite rule: every other byte kept, only
//! the member's size, checksum, data and padding changed, and the result read back.

use super::diff::diff_hunks;
use super::raw::{BLOCK, CKSUM_FIELD, OctalStyle, SIZE_FIELD, header_checksum, locate, padded};
use super::{ArchiveError, Member, Tgz, list_tar};
use crate::format::deflate::Hunk;

impl Tgz {
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
    /// The result is read back and checked before it is returned. Compress it with [`seal`](super::seal).
    pub fn replace_member(&self, name: &str, data: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        self.replace_member_hunks(name, data).map(|(tar, _)| tar)
    }

    /// [`Tgz::replace_member`], also saying which bytes of the tar changed (sorted, in the old
    /// tar's coordinates) for [`reseal`](super::reseal): the changed span of the member's header (its size and
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
        let at = locate(tar, hdr).map_err(|e| refuse(e.to_string()))?;
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

        self.check_rewrite(&out, index, data)
            .map_err(|e| refuse(e.to_string()))?;

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
    fn check_rewrite(&self, out: &[u8], index: usize, data: &[u8]) -> Result<(), ReadBack> {
        let back = list_tar(out, &self.label).map_err(|e| ReadBack::Unreadable(Box::new(e)))?;
        if back.len() != self.members.len() {
            return Err(ReadBack::Count {
                got: back.len(),
                want: self.members.len(),
            });
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
                return Err(ReadBack::Member {
                    index: i,
                    got: Box::new(b.clone()),
                    want: Box::new(want),
                });
            }
        }
        let got = &out[old.data_offset as usize..][..data.len()];
        if got != data {
            return Err(ReadBack::Content);
        }
        Ok(())
    }
}

/// How a rewritten tar failed to read back as the original with one member replaced.
#[derive(Debug, thiserror::Error)]
enum ReadBack {
    #[error("the rewritten tar does not read back: {0}")]
    Unreadable(Box<ArchiveError>),
    #[error("the rewritten tar reads back with {got} members instead of {want}")]
    Count { got: usize, want: usize },
    #[error("the rewritten tar reads back member {index} as {got:?}, expected {want:?}")]
    Member {
        index: usize,
        got: Box<Member>,
        want: Box<Member>,
    },
    #[error("the rewritten tar reads back other content")]
    Content,
}

fn describe_kind(kind: u8) -> String {
    if kind == 0 {
        "NUL".to_string()
    } else {
        format!("'{}'", char::from(kind).escape_default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::GzipHeader;
    use super::super::testutil::{gnu_tar_of, gz, tar_of};
    use super::*;

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
