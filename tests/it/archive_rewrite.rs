//! `Tgz::replace_member` and `seal` against GNU tar and gzip as oracles: archives written by GNU
//! tar in every format it has (`gnu`, whose "ustar  " magic busybox also writes, `oldgnu`,
//! `ustar`, `posix`/pax), with a name past 100 bytes, a symlink, directories and several files,
//! gzip'd as one member or as two concatenated `gzip -c` outputs. After replacing
//! `etc/vmware/esx.conf` (longer, shorter, same length) the result must list, extract and compare
//! like the original except for that member, and its raw tar bytes must differ only in that
//! member's size field, checksum field and data.

use crate::common;

use crate::common::{TempDir, cmd, run};
use bootbank::archive::{GzipHeader, Tgz, seal};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const CONF: &str = "etc/vmware/esx.conf";
const LONG: &str = "etc/vmware/hostd/a-very-long-directory-name-to-push-the-path/\
                    and-a-file-name-that-takes-it-well-past-one-hundred-bytes.xml";
const FORMATS: &[&str] = &["gnu", "oldgnu", "ustar", "posix"];
/// The modification time given to the tar file, which `gzip FILE` stores in its header.
const TAR_MTIME: u32 = 1_500_000_000;

fn tools() -> bool {
    common::require_tools(&["tar", "gzip", "touch"])
}

/// A small persistent-state tree like ESXi's local.tgz.
fn stage_tree(root: &Path) {
    let conf = common::esxconf("healthy.conf");
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "etc/hosts".into(),
            b"127.0.0.1\tlocalhost.localdomain localhost\n".to_vec(),
        ),
        (
            "etc/passwd".into(),
            b"root:x:0:0:Administrator:/:/bin/sh\n".to_vec(),
        ),
        ("etc/shadow".into(), b"root:*:19000:0:99999:7:::\n".to_vec()),
        (CONF.into(), conf.into_bytes()),
        ("etc/vmware/.backup.counter".into(), b"7\n".to_vec()),
        (
            "etc/vmware/license.cfg".into(),
            vec![0xa5; 1536], // exactly three blocks: no padding
        ),
        (LONG.into(), b"<ConfigRoot/>\n".to_vec()),
        (
            "etc/rc.local.d/local.sh".into(),
            b"#!/bin/sh\nexit 0\n".to_vec(),
        ),
    ];
    common::write_tree(root, &files);
    let mode = |p: &str, m: u32| {
        fs::set_permissions(root.join(p), fs::Permissions::from_mode(m)).unwrap();
    };
    mode("etc/shadow", 0o600);
    mode("etc/rc.local.d/local.sh", 0o755);
    fs::create_dir_all(root.join("etc/vmware/ssl")).unwrap();
    std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
}

/// How the tar is gzip'd.
#[derive(Clone, Copy, Debug)]
enum Gz {
    /// `gzip -c FILE` with extra flags (FNAME and the file's mtime are stored).
    One(&'static [&'static str]),
    /// Two `gzip -c PART` outputs concatenated.
    Two,
}

/// Writes `<dir>/<tag>.tgz` from `root` with GNU tar in `format`.
fn build(dir: &TempDir, root: &Path, format: &str, gz: Gz, tag: &str) -> PathBuf {
    let tar = dir.join(format!("{tag}.tar"));
    run(cmd("tar")
        .arg(format!("--format={format}"))
        .args(["--sort=name", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(root)
        .arg("etc"));
    let gzip = |file: &Path, flags: &[&str]| {
        run(cmd("touch")
            .arg("-d")
            .arg(format!("@{TAR_MTIME}"))
            .arg(file));
        run(cmd("gzip").args(flags).arg("-c").arg(file)).stdout
    };
    let bytes = match gz {
        Gz::One(flags) => gzip(&tar, flags),
        Gz::Two => {
            let raw = fs::read(&tar).unwrap();
            let (a, b) = raw.split_at(raw.len() / 2 + 77);
            let (pa, pb) = (dir.join(format!("{tag}.1")), dir.join(format!("{tag}.2")));
            fs::write(&pa, a).unwrap();
            fs::write(&pb, b).unwrap();
            let mut out = gzip(&pa, &[]);
            out.extend(gzip(&pb, &[]));
            out
        }
    };
    let tgz = dir.join(format!("{tag}.tgz"));
    fs::write(&tgz, bytes).unwrap();
    tgz
}

/// `tar -tvzf` lines, failing on any warning.
fn listing(tgz: &Path) -> Vec<String> {
    let out = run(cmd("tar").arg("-tvzf").arg(tgz));
    assert!(
        out.stderr.is_empty(),
        "tar -tvzf {}: {}",
        tgz.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Header block numbers GNU tar reports (`tar -tR`), by name, plus the end-of-archive block.
fn blocks(raw_tar: &Path) -> (Vec<(u64, String)>, u64) {
    let text = common::run_text(cmd("tar").arg("-tR").arg("-f").arg(raw_tar));
    let mut members = Vec::new();
    let mut end = None;
    for line in text.lines() {
        let (block, rest) = line
            .strip_prefix("block ")
            .and_then(|l| l.split_once(": "))
            .unwrap_or_else(|| panic!("tar -tR line: {line}"));
        let block: u64 = block.parse().unwrap();
        if rest == "** Block of NULs **" {
            end = Some(block);
        } else {
            members.push((block, rest.to_string()));
        }
    }
    (
        members,
        end.expect("tar -tR reports the end of the archive"),
    )
}

/// From the block GNU tar reports for a member, skips its extension records (GNU `L`/`K`,
/// pax `x`) to its own ustar header; returns that header's byte offset.
fn own_header(tar: &[u8], block: u64) -> usize {
    let mut pos = block as usize * 512;
    while matches!(tar[pos + 156], b'L' | b'K' | b'x') {
        let size = std::str::from_utf8(&tar[pos + 124..pos + 135]).unwrap();
        let size = usize::from_str_radix(size.trim(), 8).unwrap();
        pos += 512 + size.div_ceil(512) * 512;
    }
    pos
}

/// Everything under `dir` (relative path, kind, mode, content or link target), sorted.
fn tree(dir: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String, u32, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let md = fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap().display().to_string();
                out.push((rel, "link".into(), 0, target.into_bytes()));
            } else if md.is_dir() {
                out.push((rel, "dir".into(), mode, Vec::new()));
                walk(base, &p, out);
            } else {
                out.push((rel, "file".into(), mode, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn extract(tgz: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let out = run(cmd("tar").arg("-xpzf").arg(tgz).arg("-C").arg(into));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `gzip -lvN` fields that come from the header: date, time and stored name.
fn gzip_lv(tgz: &Path) -> Vec<String> {
    let text = common::run_text(cmd("gzip").arg("-lvN").arg(tgz));
    let line = text
        .lines()
        .nth(1)
        .expect("gzip -lvN data line")
        .to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    // method crc date(2 words) time compressed uncompressed ratio name
    vec![f[2].into(), f[3].into(), f[4].into(), f[8..].join(" ")]
}

/// Replaces `member` of `orig` with `new` and checks the result with tar and gzip.
fn check(dir: &TempDir, orig: &Path, member: &str, new: &[u8], tag: &str) {
    let bytes = fs::read(orig).unwrap();
    let t = Tgz::parse(&bytes, "local.tgz").unwrap();
    let old_len = t.require(member).unwrap().len();
    let tar = t.replace_member(member, new).unwrap();
    let sealed = seal(&tar, &t.gzip);
    let out = dir.join(format!("{tag}.tgz"));
    fs::write(&out, &sealed).unwrap();

    // gzip is happy and the file is one member carrying the original's header bytes.
    run(cmd("gzip").arg("-t").arg(&out));
    let (h, hlen) = GzipHeader::parse(&bytes).unwrap();
    assert_eq!(h, t.gzip);
    assert_eq!(sealed[..hlen], bytes[..hlen], "{tag}: gzip header bytes");
    assert_eq!(Tgz::parse(&sealed, "new").unwrap().gzip_members, 1);
    if t.gzip.name.is_some() && t.gzip.mtime != 0 {
        // Without a stored name and time gzip -lvN shows the file's own.
        assert_eq!(
            gzip_lv(&out),
            gzip_lv(orig),
            "{tag}: gzip -lvN header fields"
        );
    }

    // Listing: identical but for the member's size.
    let (a, b) = (listing(orig), listing(&out));
    assert_eq!(a.len(), b.len(), "{tag}: listing lengths");
    let mut seen = false;
    for (la, lb) in a.iter().zip(&b) {
        let (fa, fb): (Vec<&str>, Vec<&str>) = (
            la.split_whitespace().collect(),
            lb.split_whitespace().collect(),
        );
        if fa.last() == Some(&member) {
            seen = true;
            assert_eq!(fa[2], old_len.to_string(), "{tag}: {la}");
            assert_eq!(fb[2], new.len().to_string(), "{tag}: {lb}");
            assert_eq!((&fa[..2], &fa[3..]), (&fb[..2], &fb[3..]), "{tag}");
        } else {
            assert_eq!(la, lb, "{tag}: listing");
        }
    }
    assert!(seen, "{tag}: {member} not in the listing {a:?}");

    // Extraction: the member holds the new data, everything else is as before.
    assert_eq!(common::tar_member(&out, member), new, "{tag}: tar -xzOf");
    let (xa, xb) = (dir.join(format!("{tag}.xa")), dir.join(format!("{tag}.xb")));
    extract(orig, &xa);
    extract(&out, &xb);
    let (ta, tb) = (tree(&xa), tree(&xb));
    assert_eq!(ta.len(), tb.len(), "{tag}: extracted trees");
    for (ea, eb) in ta.iter().zip(&tb) {
        if ea.0 == member {
            assert_eq!((&ea.0, &ea.1, ea.2), (&eb.0, &eb.1, eb.2), "{tag}");
            assert_eq!(eb.3, new, "{tag}");
        } else {
            assert_eq!(ea, eb, "{tag}: extracted {}", ea.0);
        }
    }
    // GNU tar's own comparison against the original's files: only the member differs.
    let diff = cmd("tar")
        .arg("-dzf")
        .arg(&out)
        .arg("-C")
        .arg(&xa)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&diff.stdout).into_owned();
    let want = if new.len() == old_len {
        format!("{member}: Contents differ\n")
    } else {
        format!("{member}: Size differs\n")
    };
    let want = if new == t.require(member).unwrap() {
        String::new()
    } else {
        want
    };
    assert_eq!(
        report,
        want,
        "{tag}: tar -d: {}",
        String::from_utf8_lossy(&diff.stderr)
    );

    // Raw bytes of the uncompressed tars, as gzip decompresses them.
    let old_raw = run(cmd("gzip").arg("-dc").arg(orig)).stdout;
    let new_raw = run(cmd("gzip").arg("-dc").arg(&out)).stdout;
    assert_eq!(new_raw, tar, "{tag}: gzip -dc gives back the tar");
    let (old_tar, new_tar) = (
        dir.join(format!("{tag}.old.tar")),
        dir.join(format!("{tag}.new.tar")),
    );
    fs::write(&old_tar, &old_raw).unwrap();
    fs::write(&new_tar, &new_raw).unwrap();
    let (old_blocks, old_endb) = blocks(&old_tar);
    let (new_blocks, new_endb) = blocks(&new_tar);
    let idx = old_blocks
        .iter()
        .position(|(_, l)| l == member)
        .unwrap_or_else(|| panic!("{tag}: tar -tR has no {member}: {old_blocks:?}"));
    let hdr = own_header(&old_raw, old_blocks[idx].0);
    assert_eq!(own_header(&new_raw, new_blocks[idx].0), hdr, "{tag}");
    assert_eq!(
        new_raw[..hdr],
        old_raw[..hdr],
        "{tag}: bytes before the member"
    );
    for i in 0..512 {
        if old_raw[hdr + i] != new_raw[hdr + i] {
            assert!(
                (124..136).contains(&i) || (148..156).contains(&i),
                "{tag}: header byte {i} changed"
            );
        }
    }
    let d = hdr + 512;
    let old_end = d + old_len.div_ceil(512) * 512;
    let new_end = d + new.len().div_ceil(512) * 512;
    assert_eq!(&new_raw[d..d + new.len()], new, "{tag}: data");
    assert!(
        new_raw[d + new.len()..new_end].iter().all(|&b| b == 0),
        "{tag}: padding"
    );
    assert_eq!(
        new_raw[new_end..],
        old_raw[old_end..],
        "{tag}: bytes after the member"
    );
    // GNU tar sees every later member (and the end of the archive) moved by the same blocks.
    let shift = new_end as i64 / 512 - old_end as i64 / 512;
    for (i, ((ob, on), (nb, nn))) in old_blocks.iter().zip(&new_blocks).enumerate() {
        assert_eq!(on, nn, "{tag}: tar -tR names");
        let moved = if i > idx { shift } else { 0 };
        assert_eq!(*nb as i64, *ob as i64 + moved, "{tag}: block of {nn}");
    }
    assert_eq!(
        new_endb as i64,
        old_endb as i64 + shift,
        "{tag}: end of archive"
    );
}

/// The new contents tried for esx.conf: longer (by several blocks), shorter, same length.
fn variants(old: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut longer = old.to_vec();
    for i in 0..60 {
        longer
            .extend(format!("/adv/UserVars/Test{i:03} = \"a value that adds a block\"\n").bytes());
    }
    let text = String::from_utf8(old.to_vec()).unwrap();
    assert!(text.contains("\"esx01\""), "fixture names host esx01");
    let same = text.replace("\"esx01\"", "\"esx02\"").into_bytes();
    assert_eq!(same.len(), old.len());
    vec![
        ("longer", longer),
        ("shorter", old[..old.len() / 3].to_vec()),
        ("same", same),
    ]
}

#[test]
fn replace_in_every_gnu_tar_format() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("archive-rewrite");
    let root = dir.join("root");
    stage_tree(&root);
    let old = fs::read(root.join(CONF)).unwrap();
    for format in FORMATS {
        let orig = build(&dir, &root, format, Gz::One(&[]), format);
        let t = Tgz::parse(&fs::read(&orig).unwrap(), "local.tgz").unwrap();
        assert_eq!(t.gzip_members, 1);
        assert_eq!(t.gzip.mtime, TAR_MTIME);
        assert_eq!(t.gzip.os, 3, "gzip on Unix");
        assert_eq!(t.gzip.xfl, 0, "gzip -6 writes XFL 0");
        assert_eq!(
            t.gzip.name.as_deref(),
            Some(format!("{format}.tar").as_bytes())
        );
        for (what, new) in variants(&old) {
            check(&dir, &orig, CONF, &new, &format!("{format}-{what}"));
        }
        // The long-named member, behind its 'L' record (gnu, oldgnu), pax header (posix) or
        // prefix field (ustar).
        check(
            &dir,
            &orig,
            LONG,
            b"<ConfigRoot>\n  <x/>\n</ConfigRoot>\n",
            &format!("{format}-long"),
        );
        // A member whose data fills its blocks exactly, grown and shrunk by one byte, and an
        // unchanged rewrite.
        let lic = "etc/vmware/license.cfg";
        check(
            &dir,
            &orig,
            lic,
            &[0x5a; 1537],
            &format!("{format}-lic-grow"),
        );
        check(
            &dir,
            &orig,
            lic,
            &[0x5a; 1535],
            &format!("{format}-lic-shrink"),
        );
        check(
            &dir,
            &orig,
            lic,
            &[0xa5; 1536],
            &format!("{format}-lic-same"),
        );
    }
}

#[test]
fn multi_member_gzip_becomes_one_member() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("archive-rewrite-multi");
    let root = dir.join("root");
    stage_tree(&root);
    let old = fs::read(root.join(CONF)).unwrap();
    for format in ["gnu", "posix"] {
        let tag = format!("{format}-two");
        let orig = build(&dir, &root, format, Gz::Two, &tag);
        let t = Tgz::parse(&fs::read(&orig).unwrap(), "local.tgz").unwrap();
        assert_eq!(t.gzip_members, 2);
        assert_eq!(t.gzip.name.as_deref(), Some(format!("{tag}.1").as_bytes()));
        for (what, new) in variants(&old) {
            check(&dir, &orig, CONF, &new, &format!("{tag}-{what}"));
        }
    }
}

#[test]
fn gzip_header_variants_are_preserved() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("archive-rewrite-gzip");
    let root = dir.join("root");
    stage_tree(&root);
    let old = fs::read(root.join(CONF)).unwrap();
    let longer = &variants(&old)[0].1;
    for (tag, flags, xfl, named) in [
        ("best", &["-9"][..], 2u8, true),
        ("fast", &["-1"][..], 4, true),
        ("noname", &["-n"][..], 0, false),
    ] {
        let orig = build(&dir, &root, "gnu", Gz::One(flags), tag);
        let t = Tgz::parse(&fs::read(&orig).unwrap(), "local.tgz").unwrap();
        assert_eq!(t.gzip.xfl, xfl, "{tag}");
        assert_eq!(t.gzip.name.is_some(), named, "{tag}");
        assert_eq!(t.gzip.mtime, if named { TAR_MTIME } else { 0 }, "{tag}");
        check(&dir, &orig, CONF, longer, &format!("gz-{tag}"));
    }
}
