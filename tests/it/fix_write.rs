//! `bootbank fix`, `config set|unset` and `restore` checked end to end through the binary, with
//! oracles nobody here wrote: after every successful write
//!
//! - `fsck.fat -n` is clean on every FAT partition (a `dd` copy of each);
//! - mtools (`mcopy`) reads the new state.tgz, and it matches the backup manifest's `sha256_after`
//!   (the backed-up copy matches the original state.tgz byte for byte);
//! - GNU `tar --full-time -tvzf` lists the same members with the same mode, owner, mtime and order
//!   at every archive level (state.tgz, local.tgz inside it; a config bundle adds one level), the
//!   size differing only for the member on the changed path;
//! - `tar -xzO` of esx.conf differs from the original in exactly the intended line (`diff`);
//! - every other member at every level extracts byte-identical;
//! - every other file in the bank is byte-identical (`mcopy` each), with the same `mdir` line;
//!   no `state.new`/`state.old` is left;
//! - the partition table (lsparts: `sfdisk --dump`, `fdisk -b 4096`) is the same; every partition
//!   that holds no changed bank, and the first and last MiB outside the banks, have the same
//!   sha256 (`sha256sum` of the range's non-zero 64 KiB chunks with their offsets: equal digests
//!   mean equal bytes, and a sparse 16 GiB image is hashed in milliseconds);
//! - in a changed bank, every byte that differs lies in the FAT or root directory region (from
//!   the boot sector's BPB read with `od`) or in a cluster of the old or new state.tgz
//!   (`mshowfat`); the reserved sectors (boot sector, bank magic and UUID) do not change.
//!
//! Where nothing may be written (dry run, refusal without a terminal, TPM, a locked image) the
//! image's sha256 must not change. Runs in ~17 s in debug mode; images are built once per test
//! and copied with `cp --sparse=always` per case.

use crate::common;

use crate::common::{
    Scenario, TarEntry, TempDir, bootbank, bootbank_ok, cmd, copy_sparse, healthy_bank,
    output_text, p, run_text, run_with_input, sha256_file, story_bank, tar_entries, untar,
};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const ESX_CONF: &str = "etc/vmware/esx.conf";
const OWNER_PASSTHRU: &str = "/device/000:022:00.0/owner = \"passthru\"";
const OWNER_VMKERNEL: &str = "/device/000:022:00.0/owner = \"vmkernel\"";
const MIB: u64 = 1 << 20;
/// Chunk size of the sparse-aware digests and diffs.
const CHUNK: u64 = 64 * 1024;

fn tools() -> bool {
    common::builder_available()
        && common::require_tools(&["mshowfat", "sha256sum", "diff", "cp", "flock", "dd"])
}

// ---------------------------------------------------------------------------------------------
// Running bootbank (see `common::bootbank`)

/// "N bytes written in M writes" from a successful write.
fn written_stats(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.contains(" bytes written in "))
        .unwrap_or_else(|| panic!("no 'bytes written' line:\n{stdout}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[0].parse().unwrap(), w[4].parse().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Files, digests, sparse-aware comparison

fn sha256_bytes(data: &[u8]) -> String {
    let o = run_with_input(&mut cmd("sha256sum"), data);
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Byte ranges of `path` that hold data (SEEK_DATA/SEEK_HOLE); the whole file when the file
/// system cannot tell.
fn data_extents(path: &Path) -> Vec<(u64, u64)> {
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let d = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if d < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return vec![(0, len)];
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(fd, d, libc::SEEK_HOLE) };
        let h = if h < 0 { len } else { h as u64 };
        out.push((d as u64, h));
        pos = h;
    }
    out
}

fn read_at(f: &mut File, off: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(off)).unwrap();
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Chunk indices (relative to `start`, CHUNK bytes each) of `[start, end)` that touch data in
/// any of `extents`.
fn chunks_with_data(extents: &[&[(u64, u64)]], start: u64, end: u64) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    for list in extents {
        for &(a, b) in list.iter() {
            let (a, b) = (a.max(start), b.min(end));
            if a >= b {
                continue;
            }
            for i in (a - start) / CHUNK..=(b - 1 - start) / CHUNK {
                set.insert(i);
            }
        }
    }
    set
}

/// sha256 (sha256sum) of the byte range `[start, end)`: over every non-zero CHUNK of the range
/// with its offset, so that equal digests mean equal bytes, holes and written zeros alike.
fn range_digest(img: &Path, start: u64, end: u64) -> String {
    let ext = data_extents(img);
    let mut f = File::open(img).unwrap();
    let mut stream = Vec::new();
    for i in chunks_with_data(&[&ext], start, end) {
        let off = start + i * CHUNK;
        let buf = read_at(&mut f, off, CHUNK.min(end - off));
        if buf.iter().any(|&b| b != 0) {
            stream.extend_from_slice(format!("{i}:{}\n", buf.len()).as_bytes());
            stream.extend_from_slice(&buf);
        }
    }
    sha256_bytes(&stream)
}

/// Runs of bytes (absolute `[start, end)`) where two images of the same size differ.
fn differing_runs(a: &Path, b: &Path) -> Vec<(u64, u64)> {
    let len = fs::metadata(a).unwrap().len();
    assert_eq!(len, fs::metadata(b).unwrap().len(), "image size changed");
    let (ea, eb) = (data_extents(a), data_extents(b));
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for i in chunks_with_data(&[&ea, &eb], 0, len) {
        let off = i * CHUNK;
        let n = CHUNK.min(len - off);
        let (x, y) = (read_at(&mut fa, off, n), read_at(&mut fb, off, n));
        if x == y {
            continue;
        }
        for (j, (u, v)) in x.iter().zip(&y).enumerate() {
            if u != v {
                let at = off + j as u64;
                match runs.last_mut() {
                    Some(r) if r.1 == at => r.1 = at + 1,
                    _ => runs.push((at, at + 1)),
                }
            }
        }
    }
    runs
}

// ---------------------------------------------------------------------------------------------
// fsck.fat, FAT geometry (BPB via od) and cluster lists (mshowfat)

/// The BPB fields of a FAT16 bank, read with `od` from its boot sector.
#[derive(Debug, Clone, Copy)]
struct Fat {
    /// Absolute byte offset of the partition.
    off: u64,
    bps: u64,
    spc: u64,
    reserved: u64,
    nfats: u64,
    spf: u64,
    root_entries: u64,
}

impl Fat {
    fn read(img: &Path, off: u64) -> Fat {
        let bytes: Vec<u64> = run_text(
            cmd("od")
                .args(["-An", "-v", "-tu1", "-N", "36", "-j"])
                .arg(off.to_string())
                .arg(img),
        )
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
        let u16le = |i: usize| bytes[i] | (bytes[i + 1] << 8);
        let fat = Fat {
            off,
            bps: u16le(11),
            spc: bytes[13],
            reserved: u16le(14),
            nfats: bytes[16],
            root_entries: u16le(17),
            spf: u16le(22),
        };
        assert!(
            fat.bps >= 512 && fat.spc > 0 && fat.spf > 0 && fat.root_entries > 0,
            "not a FAT16 BPB at {off}: {fat:?}"
        );
        fat
    }
    fn cluster_bytes(&self) -> u64 {
        self.bps * self.spc
    }
    /// Bytes before the first data cluster: reserved sectors, the FATs, the root directory.
    fn meta_len(&self) -> u64 {
        let root_sectors = (self.root_entries * 32).div_ceil(self.bps);
        (self.reserved + self.nfats * self.spf + root_sectors) * self.bps
    }
    fn reserved_len(&self) -> u64 {
        self.reserved * self.bps
    }
    /// Absolute byte range of cluster `c`.
    fn cluster(&self, c: u64) -> (u64, u64) {
        let s = self.off + self.meta_len() + (c - 2) * self.cluster_bytes();
        (s, s + self.cluster_bytes())
    }
}

/// Clusters of `file` in the FAT at `off` (`mshowfat`), empty when the file does not exist.
fn clusters(img: &Path, off: u64, file: &str) -> Vec<u64> {
    let o = cmd("mshowfat")
        .arg("-i")
        .arg(format!("{}@@{off}", p(img)))
        .arg(format!("::{file}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !o.status.success() {
        return Vec::new();
    }
    let t = String::from_utf8_lossy(&o.stdout);
    let mut out = Vec::new();
    for tok in t.split('<').skip(1) {
        let inner = tok.split('>').next().unwrap();
        let (a, b) = inner.split_once('-').unwrap_or((inner, inner));
        let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
        out.extend(a..=b);
    }
    out
}

/// `mcopy -n -i IMG@@OFF ::FILE -`, None when mcopy fails.
fn mcopy_out(img: &Path, off: u64, file: &str) -> Option<Vec<u8>> {
    let o = cmd("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{off}", p(img)))
        .arg(format!("::/{file}"))
        .arg("-")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    o.status.success().then_some(o.stdout)
}

/// Root-directory names of the FAT at `off` (`mdir -b`), lower-cased, without "::/".
fn fat_names(img: &Path, off: u64) -> BTreeSet<String> {
    run_text(
        cmd("mdir")
            .arg("-b")
            .arg("-i")
            .arg(format!("{}@@{off}", p(img)))
            .arg("::"),
    )
    .lines()
    .map(|l| l.trim_start_matches("::/").to_ascii_lowercase())
    .filter(|l| !l.is_empty())
    .collect()
}

/// `mdir` lines of every file except `skip` (name, size, date, time as mtools shows them).
fn fat_listing_except(img: &Path, off: u64, skip: &str) -> Vec<String> {
    let stem = skip.split('.').next().unwrap().to_ascii_lowercase();
    run_text(
        cmd("mdir")
            .arg("-i")
            .arg(format!("{}@@{off}", p(img)))
            .arg("::"),
    )
    .lines()
    .filter(|l| {
        let low = l.to_ascii_lowercase();
        !low.contains(&stem) && !low.contains("bytes free") && !low.contains(" file")
    })
    .map(str::to_string)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// The intended esx.conf change

/// One intended change of esx.conf.
#[derive(Debug, Clone)]
enum ConfEdit {
    /// This exact line becomes that line.
    Line(String, String),
    /// This exact line is removed.
    Remove(String),
}

impl ConfEdit {
    fn story() -> ConfEdit {
        ConfEdit::Line(OWNER_PASSTHRU.into(), OWNER_VMKERNEL.into())
    }
    fn reversed(&self) -> ConfEdit {
        match self {
            ConfEdit::Line(a, b) => ConfEdit::Line(b.clone(), a.clone()),
            ConfEdit::Remove(_) => panic!("no reverse for a removal"),
        }
    }
    /// The expected `diff OLD NEW` output for `old`.
    fn expected_diff(&self, old: &str) -> String {
        let find = |l: &str| {
            let hits: Vec<usize> = old
                .lines()
                .enumerate()
                .filter(|(_, x)| *x == l)
                .map(|(i, _)| i + 1)
                .collect();
            assert_eq!(hits.len(), 1, "line {l:?} must occur once in esx.conf");
            hits[0]
        };
        match self {
            ConfEdit::Line(a, b) => {
                let n = find(a);
                format!("{n}c{n}\n< {a}\n---\n> {b}\n")
            }
            ConfEdit::Remove(a) => {
                let n = find(a);
                format!("{n}d{}\n< {a}\n", n - 1)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Archive checks (GNU tar)

/// Checks two gzip'd tars level by level along `chain` (the member that changes at each level;
/// the last is esx.conf). Returns the new esx.conf.
fn check_archive_chain(
    before: &Path,
    after: &Path,
    chain: &[&str],
    edit: &ConfEdit,
    tmp: &Path,
) -> String {
    let (mut a, mut b) = (before.to_path_buf(), after.to_path_buf());
    let mut new_conf = String::new();
    for (level, member) in chain.iter().enumerate() {
        let where_ = format!("level {level} ({})", a.display());
        let (la, lb) = (tar_entries(&a), tar_entries(&b));
        let names = |l: &[TarEntry]| l.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&la), names(&lb), "{where_}: member names or order");
        for (x, y) in la.iter().zip(&lb) {
            assert_eq!(
                (&x.mode, &x.owner, &x.mtime),
                (&y.mode, &y.owner, &y.mtime),
                "{where_}: metadata of {}",
                x.name
            );
            if x.name != *member {
                assert_eq!(x.size, y.size, "{where_}: size of {}", x.name);
            }
        }
        assert!(
            la.iter().any(|e| e.name == *member),
            "{where_}: no member {member}"
        );
        let (da, db) = (
            tmp.join(format!("x{level}-before")),
            tmp.join(format!("x{level}-after")),
        );
        for (d, arc) in [(&da, &a), (&db, &b)] {
            untar(arc, d);
        }
        for e in la.iter().filter(|e| e.mode.starts_with('-')) {
            let (x, y) = (
                fs::read(da.join(&e.name)).unwrap(),
                fs::read(db.join(&e.name)).unwrap(),
            );
            if e.name == *member {
                assert_ne!(x, y, "{where_}: {member} did not change");
                let sz = lb.iter().find(|f| f.name == e.name).unwrap().size;
                assert_eq!(sz, y.len() as u64, "{where_}: listed size of {member}");
            } else {
                assert!(x == y, "{where_}: member {} differs", e.name);
            }
        }
        if level + 1 == chain.len() {
            let old = String::from_utf8(common::tar_member(&a, member)).unwrap();
            let new = String::from_utf8(common::tar_member(&b, member)).unwrap();
            let (fo, fn_) = (tmp.join("esx.conf.before"), tmp.join("esx.conf.after"));
            fs::write(&fo, &old).unwrap();
            fs::write(&fn_, &new).unwrap();
            let d = cmd("diff").arg(&fo).arg(&fn_).output().unwrap();
            assert_eq!(d.status.code(), Some(1), "diff of esx.conf");
            assert_eq!(
                String::from_utf8_lossy(&d.stdout),
                edit.expected_diff(&old),
                "{where_}: esx.conf must differ in exactly the intended line"
            );
            new_conf = new;
        } else {
            a = da.join(member);
            b = db.join(member);
        }
    }
    new_conf
}

// ---------------------------------------------------------------------------------------------
// The disk check

/// What one verified disk write changed, for the report.
#[derive(Debug, Default)]
struct WriteSummary {
    differing_bytes: u64,
    in_fat_and_root: u64,
    in_clusters: u64,
    new_state_sizes: Vec<u64>,
    cluster_bytes: u64,
}

/// Everything the module comment lists, for a disk image whose banks `changed` got `edit`.
fn check_disk_write(
    before: &Path,
    after: &Path,
    changed: &[u32],
    edit: &ConfEdit,
    tmp: &Path,
) -> WriteSummary {
    let _ = fs::remove_dir_all(tmp);
    fs::create_dir_all(tmp).unwrap();
    let mut summary = check_disk_bytes(before, after, changed, &[]);
    check_bank_files(before, after, changed, edit, tmp, &mut summary);
    summary
}

/// The byte-level part: fsck, table, partitions and first/last MiB outside the changed banks,
/// and every differing byte inside the FAT/root region or a cluster of state.tgz in `before`,
/// `after` or one of `also` (images of the same disk between the two).
fn check_disk_bytes(before: &Path, after: &Path, changed: &[u32], also: &[&Path]) -> WriteSummary {
    let checked = {
        let scratch = TempDir::new("fixw-fsck");
        common::fsck_fat_partitions(after, scratch.path())
    };
    assert!(
        !checked.is_empty(),
        "no FAT partition in {}",
        after.display()
    );
    for n in changed {
        assert!(
            checked.contains(n),
            "partition {n} was not checked by fsck.fat"
        );
    }

    // Partition table, partitions, first and last MiB.
    let parts = common::partitions(before);
    assert_eq!(parts, common::partitions(after), "partition table changed");
    let len = fs::metadata(before).unwrap().len();
    let bank_ranges: Vec<(u64, u64)> = parts
        .iter()
        .filter(|q| changed.contains(&q.num))
        .map(|q| (q.offset(), q.offset() + q.len()))
        .collect();
    let overlaps = |s: u64, e: u64| bank_ranges.iter().any(|&(a, b)| s < b && a < e);
    for q in &parts {
        let (s, e) = (q.offset(), q.offset() + q.len());
        if overlaps(s, e) {
            continue;
        }
        assert_eq!(
            range_digest(before, s, e),
            range_digest(after, s, e),
            "partition {} (bytes {s}..{e}) changed",
            q.num
        );
    }
    for (s, e) in [(0, MIB.min(len)), (len.saturating_sub(MIB), len)] {
        let mut pieces = vec![(s, e)];
        for &(a, b) in &bank_ranges {
            pieces = pieces
                .into_iter()
                .flat_map(|(x, y)| {
                    let mut v = Vec::new();
                    if x < a.min(y) {
                        v.push((x, a.min(y)));
                    }
                    if b.max(x) < y {
                        v.push((b.max(x), y));
                    }
                    v
                })
                .collect();
        }
        for (x, y) in pieces {
            assert_eq!(
                range_digest(before, x, y),
                range_digest(after, x, y),
                "bytes {x}..{y} (first/last MiB outside the banks) changed"
            );
        }
    }

    // Every differing byte lies in an allowed region of a changed bank.
    let mut summary = WriteSummary::default();
    let mut allowed_meta = Vec::new();
    let mut allowed_clusters = Vec::new();
    for &n in changed {
        let q = parts.iter().find(|q| q.num == n).expect("changed bank");
        let fat = Fat::read(before, q.offset());
        summary.cluster_bytes = fat.cluster_bytes();
        allowed_meta.push((
            q.offset() + fat.reserved_len(),
            q.offset() + fat.meta_len(),
            n,
        ));
        let old_c = clusters(before, q.offset(), "state.tgz");
        let new_c = clusters(after, q.offset(), "state.tgz");
        assert!(!old_c.is_empty() && !new_c.is_empty(), "mshowfat state.tgz");
        let between: Vec<u64> = also
            .iter()
            .flat_map(|img| clusters(img, q.offset(), "state.tgz"))
            .collect();
        for c in old_c.iter().chain(&new_c).chain(&between) {
            let (s, e) = fat.cluster(*c);
            allowed_clusters.push((s, e));
        }
    }
    let runs = differing_runs(before, after);
    assert!(!runs.is_empty(), "nothing changed in the image");
    for &(s, e) in &runs {
        summary.differing_bytes += e - s;
        let mut at = s;
        while at < e {
            if let Some(&(_, me, _)) = allowed_meta.iter().find(|m| m.0 <= at && at < m.1) {
                let to = me.min(e);
                summary.in_fat_and_root += to - at;
                at = to;
            } else if let Some(&(_, ce)) = allowed_clusters.iter().find(|c| c.0 <= at && at < c.1) {
                let to = ce.min(e);
                summary.in_clusters += to - at;
                at = to;
            } else {
                let bank = parts
                    .iter()
                    .find(|q| q.offset() <= at && at < q.offset() + q.len())
                    .map(|q| format!("partition {} + {}", q.num, at - q.offset()))
                    .unwrap_or_else(|| "outside every partition".into());
                panic!(
                    "byte {at} ({bank}) changed outside the FAT, root directory and state.tgz \
                     clusters of the changed banks; differing runs (first 20 of {}): {:?}",
                    runs.len(),
                    &runs[..runs.len().min(20)]
                );
            }
        }
    }
    summary
}

/// The file-level part: other files identical, no leftovers, the archive chain of state.tgz.
fn check_bank_files(
    before: &Path,
    after: &Path,
    changed: &[u32],
    edit: &ConfEdit,
    tmp: &Path,
    summary: &mut WriteSummary,
) {
    let parts = common::partitions(before);
    // Files of each changed bank.
    for &n in changed {
        let q = parts.iter().find(|q| q.num == n).unwrap();
        let off = q.offset();
        let names = fat_names(before, off);
        assert_eq!(
            names,
            fat_names(after, off),
            "partition {n}: root directory names (state.new/state.old left?)"
        );
        assert_eq!(
            fat_listing_except(before, off, "state.tgz"),
            fat_listing_except(after, off, "state.tgz"),
            "partition {n}: mdir lines of the other files"
        );
        for f in names.iter().filter(|f| f.as_str() != "state.tgz") {
            assert!(
                mcopy_out(before, off, f) == mcopy_out(after, off, f),
                "partition {n}: {f} differs"
            );
        }
        let (sb, sa) = (
            tmp.join(format!("p{n}-state-before.tgz")),
            tmp.join(format!("p{n}-state-after.tgz")),
        );
        fs::write(&sb, mcopy_out(before, off, "state.tgz").unwrap()).unwrap();
        let new_state = mcopy_out(after, off, "state.tgz").expect("mcopy reads the new state.tgz");
        summary.new_state_sizes.push(new_state.len() as u64);
        fs::write(&sa, new_state).unwrap();
        let lvl = tmp.join(format!("p{n}-levels"));
        check_archive_chain(&sb, &sa, &["local.tgz", ESX_CONF], edit, &lvl);
    }
}

/// The backup of a disk write: manifest entries for exactly `changed`, each backed-up file equal
/// to the original state.tgz (mcopy from `before`) and `sha256_after` equal to the new one.
fn check_backup(dir: &Path, before: &Path, after: &Path, changed: &[u32]) {
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let entries = m["entries"].as_array().unwrap();
    let mut parts: Vec<u32> = entries
        .iter()
        .map(|e| e["partition"].as_u64().unwrap() as u32)
        .collect();
    parts.sort();
    assert_eq!(parts, changed, "backup manifest partitions");
    for e in entries {
        let n = e["partition"].as_u64().unwrap() as u32;
        let off = common::part(before, n).offset();
        let copy = dir.join(e["backup"].as_str().unwrap());
        let orig = mcopy_out(before, off, "state.tgz").unwrap();
        assert!(fs::read(&copy).unwrap() == orig, "backup of partition {n}");
        assert_eq!(e["sha256_before"].as_str().unwrap(), sha256_bytes(&orig));
        let new = mcopy_out(after, off, "state.tgz").unwrap();
        assert_eq!(e["sha256_after"].as_str().unwrap(), sha256_bytes(&new));
    }
}

/// Prints what a write did (visible with --nocapture).
fn report(tag: &str, s: &WriteSummary, stats: (u64, u64)) {
    eprintln!(
        "{tag}: {} bytes differ ({} in FAT/root dir, {} in state.tgz clusters); bootbank wrote {} \
         bytes in {} writes; new state.tgz {:?} bytes; cluster {} bytes",
        s.differing_bytes,
        s.in_fat_and_root,
        s.in_clusters,
        stats.0,
        stats.1,
        s.new_state_sizes,
        s.cluster_bytes
    );
    // bootbank counts what it wrote: at least every byte that differs.
    assert!(
        stats.0 >= s.differing_bytes,
        "{tag}: {} bytes written < {} bytes differing",
        stats.0,
        s.differing_bytes
    );
}

/// A case directory with a fresh sparse copy of `pristine` as `name`.
fn fresh(t: &TempDir, pristine: &Path, name: &str) -> PathBuf {
    let dir = t.join(name);
    fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    copy_sparse(pristine, &img);
    img
}

/// Runs a writing command on a fresh copy of `pristine` and checks everything; returns (image
/// after, stdout). `args` is the subcommand (`fix`, or `config set|unset`) and its arguments
/// without TARGET, which is inserted after the subcommand; `--yes --backup-dir DIR` are added.
fn write_and_check(
    t: &TempDir,
    pristine: &Path,
    case: &str,
    args: &[&str],
    changed: &[u32],
    edit: &ConfEdit,
) -> (PathBuf, String) {
    let img = fresh(t, pristine, case);
    let dir = img.parent().unwrap().to_path_buf();
    let backup = dir.join("backup");
    let mut full: Vec<&str> = vec![args[0]];
    let mut rest = args[1..].to_vec();
    if args[0] == "config" {
        full.push(args[1]);
        rest = args[2..].to_vec();
    }
    full.push(p(&img));
    full.extend(rest);
    full.extend(["--yes", "--backup-dir", p(&backup)]);
    let out = bootbank_ok(&dir, &full);
    let s = check_disk_write(pristine, &img, changed, edit, &dir.join("check"));
    check_backup(&backup, pristine, &img, changed);
    report(case, &s, written_stats(&out));
    (img, out)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn demo_image() -> PathBuf {
    common::manifest_dir().join("examples").join("demo.img")
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The demo's story, fixed by the lspci address, then put back with `restore`.
#[test]
fn demo_story_fix_and_restore() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-demo");
    let demo = demo_image();
    let (fixed, out) = write_and_check(
        &t,
        &demo,
        "lspci",
        &["fix", "--device", "0000:16:00.0"],
        &[5],
        &ConfEdit::story(),
    );
    assert!(out.contains("read as lspci hex"), "{out}");
    assert!(
        out.contains("Written and verified: partition 5 /state.tgz"),
        "{out}"
    );

    // restore: a write like any other, back to the original state.tgz byte for byte
    let dir = fixed.parent().unwrap();
    let snap = dir.join("fixed.img");
    copy_sparse(&fixed, &snap);
    let rb = dir.join("restore-backup");
    let out = bootbank_ok(
        dir,
        &[
            "restore",
            p(&fixed),
            "--from",
            p(&dir.join("backup")),
            "--yes",
            "--backup-dir",
            p(&rb),
        ],
    );
    let s = check_disk_write(
        &snap,
        &fixed,
        &[5],
        &ConfEdit::story().reversed(),
        &dir.join("check-restore"),
    );
    report("restore", &s, written_stats(&out));
    let off = common::part(&demo, 5).offset();
    assert!(
        mcopy_out(&fixed, off, "state.tgz") == mcopy_out(&demo, off, "state.tgz"),
        "restored state.tgz differs from the original"
    );
    check_backup(&rb, &snap, &fixed, &[5]);
    // relative to the original image, only FAT/root bytes and state.tgz clusters (original,
    // fixed, restored) differ
    let s = check_disk_bytes(&demo, &fixed, &[5], &[&snap]);
    eprintln!(
        "restored vs original: {} bytes differ ({} in FAT/root dir, {} in clusters)",
        s.differing_bytes, s.in_fat_and_root, s.in_clusters
    );
}

/// `--device` in esx.conf's decimal form, and `--all-storage`.
#[test]
fn demo_decimal_address_and_all_storage() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-forms");
    let demo = demo_image();
    let (_, out) = write_and_check(
        &t,
        &demo,
        "decimal",
        &["fix", "--device", "000:022:00.0"],
        &[5],
        &ConfEdit::story(),
    );
    assert!(out.contains("read as ESXi's decimal form"), "{out}");
    assert!(out.contains("lspci 0000:16:00.0"), "{out}");
    write_and_check(
        &t,
        &demo,
        "all-storage",
        &["fix", "--all-storage"],
        &[5],
        &ConfEdit::story(),
    );
}

/// `config set` of /adv/Misc/HostName (longer value: the member grows) and `config unset`.
#[test]
fn demo_config_set_and_unset() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-config");
    let demo = demo_image();
    write_and_check(
        &t,
        &demo,
        "set",
        &[
            "config",
            "set",
            "/adv/Misc/HostName",
            "esx01-recovered.lab.example",
        ],
        &[5],
        &ConfEdit::Line(
            "/adv/Misc/HostName = \"esx01\"".into(),
            "/adv/Misc/HostName = \"esx01-recovered.lab.example\"".into(),
        ),
    );
    write_and_check(
        &t,
        &demo,
        "unset",
        &["config", "unset", "/adv/UserVars/SuppressShellWarning"],
        &[5],
        &ConfEdit::Remove("/adv/UserVars/SuppressShellWarning = \"1\"".into()),
    );
}

/// Nothing is written by a dry run, without a terminal and --yes, or on a locked image.
#[test]
fn demo_dry_run_refusal_and_lock_write_nothing() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-nowrite");
    let demo = demo_image();
    let want = sha256_file(&demo);

    let img = fresh(&t, &demo, "dry");
    let dir = img.parent().unwrap();
    let backup = dir.join("backup");
    let o = bootbank(
        dir,
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--dry-run",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("Dry run: nothing written"),
        "{}",
        output_text(&o)
    );
    assert!(output_text(&o).contains("+/device/000:022:00.0/owner = \"vmkernel\""));
    assert_eq!(sha256_file(&img), want, "dry run changed the image");
    assert!(!backup.exists(), "dry run wrote a backup");

    // no terminal, no --yes: exit 2 and nothing written
    let img = fresh(&t, &demo, "notty");
    let dir = img.parent().unwrap();
    let backup = dir.join("backup");
    let o = bootbank(
        dir,
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("add --yes"), "{}", output_text(&o));
    assert_eq!(sha256_file(&img), want, "refusal changed the image");
    assert!(!backup.exists(), "refusal wrote a backup");
    // config set and restore refuse the same way
    let o = bootbank(dir, &["config", "set", p(&img), "/adv/Misc/HostName", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_eq!(sha256_file(&img), want);

    // an image locked by another process (the flock tool): exit 2, "in use"
    let img = fresh(&t, &demo, "locked");
    let dir = img.parent().unwrap();
    let backup = dir.join("backup");
    let holder = common::HeldLock::hold(&img);
    let o = bootbank(
        dir,
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    holder.release();
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("in use"), "{}", output_text(&o));
    assert_eq!(sha256_file(&img), want, "a locked image was written");
    // Regression: the backup used to be written before the lock was tried.
    assert!(
        !backup.exists(),
        "a refused write left a backup directory behind"
    );
}

/// A TPM-sealed configuration is refused (exit 2), naming esxcli; nothing is written.
#[test]
fn tpm_encrypted_bank_is_refused() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-tpm");
    let mut b5 = story_bank(3, 0);
    b5.encrypted = Some("TPM");
    let img = Scenario::new()
        .layout("demo")
        .bank(5, b5)
        .bank(6, healthy_bank(2, 0))
        .build(t.path());
    let want = sha256_file(&img);
    let backup = t.join("backup");
    let o = bootbank(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("esxcli"), "{}", output_text(&o));
    assert_eq!(sha256_file(&img), want, "TPM bank was written");
    assert!(!backup.exists(), "TPM refusal wrote a backup");
}

/// --both-banks when both banks hold the mistake: both change.
#[test]
fn both_banks_change_when_both_hold_the_mistake() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-both");
    let pristine = Scenario::new()
        .layout("demo")
        .bank(5, story_bank(3, 0))
        .bank(6, story_bank(2, 0))
        .build(t.path());
    let (_, out) = write_and_check(
        &t,
        &pristine,
        "both",
        &["fix", "--device", "0000:16:00.0", "--both-banks"],
        &[5, 6],
        &ConfEdit::story(),
    );
    assert!(
        out.contains("Written and verified: partition 6 /state.tgz"),
        "{out}"
    );
}

/// Fresh-install-like: bank 6 has bootstate=3 (invalid). --both-banks leaves it alone;
/// --bank 6 changes it too.
#[test]
fn invalid_bank_changes_only_when_named() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-invalid");
    let pristine = Scenario::new()
        .layout("demo")
        .bank(5, story_bank(1, 0))
        .bank(6, story_bank(2, 3))
        .build(t.path());
    write_and_check(
        &t,
        &pristine,
        "both-banks",
        &["fix", "--device", "0000:16:00.0", "--both-banks"],
        &[5],
        &ConfEdit::story(),
    );
    write_and_check(
        &t,
        &pristine,
        "bank6",
        &["fix", "--device", "0000:16:00.0", "--bank", "6"],
        &[5, 6],
        &ConfEdit::story(),
    );
}

/// 7.x layout on a 16 GiB sparse image: 4 GiB banks with 64 KiB clusters.
#[test]
fn layout_7x_4gib_banks() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-7x");
    let pristine = Scenario::new()
        .layout("7x")
        .size("16G")
        .bank(5, story_bank(3, 0))
        .bank(6, healthy_bank(2, 0))
        .build(t.path());
    let fat = Fat::read(&pristine, common::part(&pristine, 5).offset());
    assert_eq!(fat.cluster_bytes(), 65536, "{fat:?}");
    let (img, out) = write_and_check(
        &t,
        &pristine,
        "7x",
        &["fix", "--device", "0000:16:00.0"],
        &[5],
        &ConfEdit::story(),
    );
    assert!(out.contains("partition 5 /state.tgz"), "{out}");
    assert!(
        common::disk_usage(&img) < 64 * MIB,
        "the fixed image is no longer sparse"
    );
}

/// MBR (DOS label, extended + logical banks) as on hosts upgraded from 4.x/5.x.
#[test]
fn layout_mbr() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-mbr");
    let pristine = Scenario::new()
        .layout("6x")
        .size("1G")
        .table("mbr")
        .bank(5, story_bank(3, 0))
        .bank(6, healthy_bank(2, 0))
        .build(t.path());
    assert_eq!(common::part(&pristine, 5).label, "dos");
    write_and_check(
        &t,
        &pristine,
        "mbr",
        &["fix", "--device", "0000:16:00.0", "--both-banks"],
        &[5],
        &ConfEdit::story(),
    );
}

/// 4Kn GPT (4096-byte sectors) 7.x layout.
#[test]
fn layout_4096_byte_sectors() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-4kn");
    let pristine = Scenario::new()
        .layout("7x")
        .size("16G")
        .sector(4096)
        .bank(5, story_bank(3, 0))
        .bank(6, story_bank(2, 0))
        .build(t.path());
    let p5 = common::part(&pristine, 5);
    assert_eq!(p5.sector_size, 4096);
    assert_eq!(Fat::read(&pristine, p5.offset()).bps, 4096);
    write_and_check(
        &t,
        &pristine,
        "4kn",
        &["fix", "--device", "0000:16:00.0", "--both-banks"],
        &[5, 6],
        &ConfEdit::story(),
    );
}

/// state.tgz and local.tgz written as two concatenated gzip members each.
#[test]
fn multimember_gzip_state() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-multi");
    let mut b5 = story_bank(3, 0);
    b5.multimember = true;
    // enough members that the tar stream is split inside local.tgz's member list
    b5.local_files = (0..12)
        .map(|i| {
            (
                format!("etc/vmware/hostd/vm{i}.xml"),
                format!("<vm id=\"{i}\"/>\n").repeat(40).into_bytes(),
            )
        })
        .collect();
    let pristine = Scenario::new()
        .layout("demo")
        .bank(5, b5)
        .bank(6, healthy_bank(2, 0))
        .build(t.path());
    // the fixture really is multi-member: gzip -l cannot sum it, but zcat reads it
    let off = common::part(&pristine, 5).offset();
    let state = mcopy_out(&pristine, off, "state.tgz").unwrap();
    let members = state
        .windows(3)
        .filter(|w| w == &[0x1f, 0x8b, 0x08])
        .count();
    assert!(members >= 2, "fixture state.tgz has {members} gzip headers");
    write_and_check(
        &t,
        &pristine,
        "multimember",
        &["fix", "--device", "0000:16:00.0"],
        &[5],
        &ConfEdit::story(),
    );
}

/// A state.tgz target fixed in place, and one fixed to --output (the original untouched).
#[test]
fn state_archive_in_place_and_to_output() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-state");
    let demo = demo_image();
    let orig = t.join("orig-state.tgz");
    fs::write(
        &orig,
        mcopy_out(&demo, common::part(&demo, 5).offset(), "state.tgz").unwrap(),
    )
    .unwrap();

    // in place
    let target = t.join("state.tgz");
    fs::copy(&orig, &target).unwrap();
    let backup = t.join("backup");
    let out = bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&target),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    check_archive_chain(
        &orig,
        &target,
        &["local.tgz", ESX_CONF],
        &ConfEdit::story(),
        &t.join("inplace"),
    );
    assert!(fs::read(backup.join("state.tgz")).unwrap() == fs::read(&orig).unwrap());
    let (w, _) = written_stats(&out);
    assert_eq!(w, fs::metadata(&target).unwrap().len(), "{out}");
    let leftovers: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("bootbank-new"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // --output: the target is not touched
    let target = t.join("state2.tgz");
    fs::copy(&orig, &target).unwrap();
    let want = sha256_file(&target);
    let output = t.join("fixed-state.tgz");
    bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&target),
            "--device",
            "000:022:00.0",
            "--output",
            p(&output),
            "--yes",
            "--backup-dir",
            p(&t.join("backup2")),
        ],
    );
    assert_eq!(sha256_file(&target), want, "--output changed the original");
    check_archive_chain(
        &orig,
        &output,
        &["local.tgz", ESX_CONF],
        &ConfEdit::story(),
        &t.join("output"),
    );
}

/// A configBundle-*.tgz: Manifest.txt + state.tgz > local.tgz > esx.conf.
#[test]
fn config_bundle_target() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-bundle");
    let demo = demo_image();
    let state = t.join("state.tgz");
    fs::write(
        &state,
        mcopy_out(&demo, common::part(&demo, 5).offset(), "state.tgz").unwrap(),
    )
    .unwrap();
    let orig = t.join("orig-bundle.tgz");
    common::mkbundle(&state, &orig, &[]);
    let target = t.join("configBundle-esx01.tgz");
    fs::copy(&orig, &target).unwrap();
    bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&target),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&t.join("backup")),
        ],
    );
    check_archive_chain(
        &orig,
        &target,
        &["state.tgz", "local.tgz", ESX_CONF],
        &ConfEdit::story(),
        &t.join("levels"),
    );
    assert_eq!(
        common::tar_member(&orig, "Manifest.txt"),
        common::tar_member(&target, "Manifest.txt")
    );
}

/// The checks are not vacuous: a fixed demo image with one more byte changed in the other bank,
/// in a free cluster of the changed bank or in the backup GPT, with FATs that disagree, or
/// checked against another intended line, fails them.
#[test]
fn the_checks_catch_stray_changes() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-self");
    let demo = demo_image();
    let (fixed, _) = write_and_check(
        &t,
        &demo,
        "fixed",
        &["fix", "--device", "0000:16:00.0"],
        &[5],
        &ConfEdit::story(),
    );
    let (p5, p6) = (common::part(&demo, 5), common::part(&demo, 6));
    let fat5 = Fat::read(&demo, p5.offset());
    let fat6 = Fat::read(&demo, p6.offset());
    let boot_cfg6 = clusters(&demo, p6.offset(), "boot.cfg")[0];
    let len = fs::metadata(&demo).unwrap().len();
    let fat2_entry_100 = p5.offset() + fat5.reserved_len() + fat5.spf * fat5.bps + 200;
    let cases: Vec<(&str, u64, u8)> = vec![
        ("bank 6 boot.cfg", fat6.cluster(boot_cfg6).0 + 3, 0x55),
        ("bank 5 free cluster", fat5.cluster(1000).0 + 7, 0x55),
        ("backup GPT", len - 512 + 20, 0x55),
        ("bank 5 second FAT only", fat2_entry_100, 0xff),
        ("bank 5 boot sector", p5.offset() + 3, b'X'),
    ];
    for (what, at, byte) in cases {
        let bad = t.join(format!("bad-{}.img", what.replace(' ', "-")));
        copy_sparse(&fixed, &bad);
        let mut f = fs::OpenOptions::new().write(true).open(&bad).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[byte]).unwrap();
        drop(f);
        let tmp = t.join("check-bad");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_disk_write(&demo, &bad, &[5], &ConfEdit::story(), &tmp)
        }))
        .is_err();
        assert!(
            caught,
            "a stray change in {what} (byte {at}) was not caught"
        );
    }
    let tmp = t.join("check-wrong-line");
    let wrong = ConfEdit::Line(
        "/adv/Misc/HostName = \"esx01\"".into(),
        "/adv/Misc/HostName = \"esx02\"".into(),
    );
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_disk_write(&demo, &fixed, &[5], &wrong, &tmp)
    }))
    .is_err();
    assert!(
        caught,
        "an esx.conf diff other than the intended one was not caught"
    );
}

/// `mcopy` of a small file into the root of the FAT at `off` (the leftover a test plants).
fn plant(img: &Path, off: u64, name: &str, bytes: &[u8], dir: &Path) {
    let src = dir.join(format!("planted-{name}"));
    fs::write(&src, bytes).unwrap();
    common::run(
        cmd("mcopy")
            .arg("-i")
            .arg(format!("{}@@{off}", p(img)))
            .arg(&src)
            .arg(format!("::/{name}")),
    );
}

/// Leftovers no bootbank version leaves (state.tgz, state.new and state.old all present) are
/// neither completed nor undone: refused with exit 2, every byte of the image as before. With
/// `--both-banks` and the leftovers only in the second bank, the first bank is written and
/// verified, then the second refuses: exit 1 (the target was changed), the message says what
/// was already written, and the backup restores the first bank.
#[test]
fn unsettled_leftovers_refuse_and_a_partial_write_says_so() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixw-unsettled");
    let pristine = Scenario::new()
        .layout("demo")
        .bank(5, story_bank(3, 0))
        .bank(6, story_bank(2, 0))
        .build(t.path());
    let off6 = common::part(&pristine, 6).offset();

    // One bank, refused before anything is written.
    let img = fresh(&t, &pristine, "one");
    let dir = img.parent().unwrap().to_path_buf();
    let off5 = common::part(&img, 5).offset();
    plant(&img, off5, "state.new", b"not a state.tgz", &dir);
    plant(&img, off5, "state.old", b"nor this", &dir);
    let before = sha256_file(&img);
    let o = bootbank(
        &dir,
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&dir.join("b")),
        ],
    );
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("state.tgz, state.new and state.old all exist")
            && text.contains("nothing was written there"),
        "{text}"
    );
    assert_eq!(sha256_file(&img), before, "an unsettled bank was written");
    assert!(
        fat_names(&img, off5).contains("state.new"),
        "leftover touched"
    );

    // Two banks: the first written, the second refused.
    let img = fresh(&t, &pristine, "two");
    let dir = img.parent().unwrap().to_path_buf();
    plant(&img, off6, "state.new", b"not a state.tgz", &dir);
    plant(&img, off6, "state.old", b"nor this", &dir);
    let planted = dir.join("planted.img");
    copy_sparse(&img, &planted);
    let backup = dir.join("b");
    let o = bootbank(
        &dir,
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--both-banks",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("already written and verified: partition 5 /state.tgz"),
        "{text}"
    );
    let off5 = common::part(&img, 5).offset();
    let state5 = mcopy_out(&img, off5, "state.tgz").unwrap();
    assert_ne!(
        Some(&state5),
        mcopy_out(&planted, off5, "state.tgz").as_ref()
    );
    assert_eq!(
        mcopy_out(&img, off6, "state.tgz"),
        mcopy_out(&planted, off6, "state.tgz"),
        "the refused bank's state.tgz changed"
    );
    common::fsck_banks_result(&img).unwrap();
    // restore puts bank 5 back, then meets bank 6's leftovers again: the same partial report.
    let o = bootbank(
        &dir,
        &[
            "restore",
            p(&img),
            "--from",
            p(&backup),
            "--yes",
            "--backup-dir",
            p(&dir.join("rb")),
        ],
    );
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("already written and verified: partition 5 /state.tgz"),
        "{text}"
    );
    assert_eq!(
        mcopy_out(&img, off5, "state.tgz"),
        mcopy_out(&planted, off5, "state.tgz"),
        "restore did not put bank 5 back"
    );
    assert!(
        fat_names(&img, off6).contains("state.new"),
        "leftover touched"
    );
}
