//! Shared by the crash tests (`fix_faults`, `fix_kill`): the story's demo disk, the bank seen
//! through mtools (an oracle independent of bootbank's FAT driver), `fsck.fat -n` with its
//! messages sorted into the kinds of damage an interrupted write can leave, and a tally of the
//! states seen. Use with `mod common; mod crash_support;`.
#![allow(dead_code)]

use crate::common;
use bootbank::bootbank::Bank;
use bootbank::disk::Disk;
use bootbank::transaction::{Leftover, Names};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The story's storage adapter as lspci shows it (esx.conf `000:022:00.0`, vmhba2).
pub const DEVICE: &str = "0000:16:00.0";

/// `examples/demo.img`: bank 5 boots next and hands `DEVICE` to passthru.
pub fn demo() -> PathBuf {
    common::manifest_dir().join("examples").join("demo.img")
}

/// Bank `partition` of the disk, found the way the library finds banks.
pub fn bank(disk: &mut Disk, partition: u32) -> Bank {
    let table = bootbank::partition::read(disk).unwrap();
    let part = table
        .partitions
        .iter()
        .find(|p| p.number == partition)
        .unwrap_or_else(|| panic!("no partition {partition}"));
    bootbank::bootbank::probe(disk, part, table.sector_size)
        .unwrap()
        .unwrap_or_else(|| panic!("partition {partition} is not a bank"))
}

/// The leftover of an interrupted write in bank `partition`, as bootbank detects it.
pub fn leftover(img: &Path, partition: u32) -> Option<Leftover> {
    let mut disk = Disk::open(img).unwrap();
    let bank = bank(&mut disk, partition);
    Leftover::detect(&bank.files, &Names::for_file("state.tgz"))
}

/// One FAT partition of an image, read with mtools and checked with fsck.fat. The partition is
/// located once (lsparts) and then addressed by offset, to keep a loop over hundreds of crash
/// points fast.
pub struct BankPart {
    pub partition: u32,
    pub offset: u64,
    pub len: u64,
}

impl BankPart {
    pub fn of(img: &Path, partition: u32) -> BankPart {
        let p = common::part(img, partition);
        BankPart {
            partition,
            offset: p.offset(),
            len: p.len(),
        }
    }

    fn mtools_image(&self, img: &Path) -> String {
        format!("{}@@{}", img.display(), self.offset)
    }

    /// Root directory names as `mdir -b` lists them, lower case, without `::/`.
    pub fn names(&self, img: &Path) -> Vec<String> {
        let out = common::cmd("mdir")
            .arg("-b")
            .arg("-i")
            .arg(self.mtools_image(img))
            .arg("::")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("::/").to_ascii_lowercase())
            .collect()
    }

    /// A root file read with `mcopy -n`; None when mtools cannot read it.
    pub fn read(&self, img: &Path, name: &str) -> Option<Vec<u8>> {
        let out = common::cmd("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(self.mtools_image(img))
            .arg(format!("::/{name}"))
            .arg("-")
            .output()
            .unwrap();
        out.status.success().then_some(out.stdout)
    }

    /// `fsck.fat -n` on a copy of the partition (`scratch` is overwritten).
    pub fn fsck(&self, img: &Path, scratch: &Path) -> Fsck {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; self.len as usize];
        std::fs::File::open(img)
            .unwrap()
            .read_exact_at(&mut buf, self.offset)
            .unwrap();
        std::fs::write(scratch, &buf).unwrap();
        let out = common::cmd("fsck.fat")
            .arg("-n")
            .arg(scratch)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Fsck::parse(&text, out.status.success(), &scratch.display().to_string())
    }
}

/// A kind of damage `fsck.fat -n` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Damage {
    /// "Dirty bit is set": the volume was not closed. fatfs sets the bit on the first write
    /// of a session and clears it on unmount, but never clears a bit it found set at mount,
    /// so after a crash the bit stays until a real fsck removes it.
    DirtyBit,
    /// "Reclaimed N unused clusters": allocated clusters no entry points to (a crash between
    /// allocating and linking, or a rename interrupted after deleting the old entry).
    LostClusters,
    /// "FATs differ but appear to be intact": a crash between the two FAT copies.
    FatsDiffer,
    /// "Orphaned long file name part": long-name entries with no short entry after them.
    OrphanLfn,
    /// "Bad short file name": a long-name entry cut before its attribute byte was written,
    /// which reads as a short entry with a name like `A`.
    BadShortName,
    /// "Contains a free cluster": a file whose chain was freed before its entry was deleted.
    FreeClusterInChain,
    /// "File size is N bytes, cluster chain length is M": size and chain disagree.
    SizeMismatch,
}

impl Damage {
    fn of_line(line: &str) -> Option<Damage> {
        let kinds = [
            ("Dirty bit is set", Damage::DirtyBit),
            ("unused cluster", Damage::LostClusters),
            ("FATs differ", Damage::FatsDiffer),
            ("Orphaned long file name", Damage::OrphanLfn),
            ("Bad short file name", Damage::BadShortName),
            ("Contains a free cluster", Damage::FreeClusterInChain),
            ("cluster chain length is", Damage::SizeMismatch),
        ];
        kinds
            .iter()
            .find(|(needle, _)| line.contains(needle))
            .map(|(_, d)| *d)
    }
}

/// What `fsck.fat -n` said about one partition.
#[derive(Debug, Clone, Default)]
pub struct Fsck {
    pub damage: BTreeSet<Damage>,
    /// Lines that are neither the banner, the summary, a known kind of damage, nor what
    /// fsck.fat says it would do about one.
    pub unknown: Vec<String>,
    pub text: String,
}

impl Fsck {
    fn parse(text: &str, success: bool, path: &str) -> Fsck {
        // What fsck.fat prints around a finding: the file concerned and what -a would do.
        let follow_ups = [
            "Auto-deleting.",
            "Auto-renaming it.",
            "Renamed to ",
            "Automatically removing dirty bit.",
            "Using first FAT.",
            "Truncating file to",
            "Leaving filesystem unchanged.",
            "Assuming EOF.",
        ];
        let mut f = Fsck {
            text: text.to_string(),
            ..Fsck::default()
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with("fsck.fat ")
                || (line.starts_with(path) && line.contains(" files, "))
                || line.starts_with('/')
                || follow_ups.iter().any(|p| line.starts_with(p))
            {
                continue;
            }
            match Damage::of_line(line) {
                Some(d) => {
                    f.damage.insert(d);
                }
                None => f.unknown.push(line.to_string()),
            }
        }
        if !success && f.damage.is_empty() && f.unknown.is_empty() {
            f.unknown
                .push(format!("fsck.fat failed without a message: {text}"));
        }
        f
    }

    pub fn is_clean(&self) -> bool {
        self.damage.is_empty() && self.unknown.is_empty()
    }

    /// Only what an interrupted bootbank write may leave: clusters no file uses and FAT
    /// copies that differ (on them). No broken file, no dirty bit, nothing unknown.
    pub fn only_interrupted_write_leftovers(&self) -> bool {
        self.unknown.is_empty()
            && self
                .damage
                .iter()
                .all(|d| matches!(d, Damage::LostClusters | Damage::FatsDiffer))
    }
}

impl fmt::Display for Fsck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(f, "clean");
        }
        let mut parts: Vec<String> = self.damage.iter().map(|d| format!("{d:?}")).collect();
        parts.extend(self.unknown.iter().map(|u| format!("unknown: {u}")));
        write!(f, "{}", parts.join(", "))
    }
}

/// Counts of what the crash points led to, printed at the end of a test.
#[derive(Default)]
pub struct Tally {
    pub points: usize,
    pub states: BTreeMap<String, usize>,
    pub after_crash: BTreeMap<String, usize>,
    pub after_rerun: BTreeMap<String, usize>,
    /// Crash points whose rerun left fsck.fat damage, per kind, with the first few N.
    pub remaining: BTreeMap<Damage, Vec<u64>>,
}

impl Tally {
    pub fn add(
        &mut self,
        n: u64,
        leftover: &Option<Leftover>,
        owner: &str,
        crash: &Fsck,
        rerun: &Fsck,
    ) {
        self.points += 1;
        let state = match leftover {
            Some(l) => format!("{l:?}"),
            None => "no leftover".to_string(),
        };
        *self
            .states
            .entry(format!("{state:<18} config read: {owner}"))
            .or_default() += 1;
        *self.after_crash.entry(crash.to_string()).or_default() += 1;
        *self.after_rerun.entry(rerun.to_string()).or_default() += 1;
        for d in &rerun.damage {
            self.remaining.entry(*d).or_default().push(n);
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} crash points", self.points)?;
        writeln!(f, "state left by the crash (bootbank's Leftover):")?;
        for (k, v) in &self.states {
            writeln!(f, "  {v:4}  {k}")?;
        }
        writeln!(f, "fsck.fat -n after the crash:")?;
        for (k, v) in &self.after_crash {
            writeln!(f, "  {v:4}  {k}")?;
        }
        writeln!(f, "fsck.fat -n after fix was run again:")?;
        for (k, v) in &self.after_rerun {
            writeln!(f, "  {v:4}  {k}")?;
        }
        for (d, ns) in &self.remaining {
            writeln!(f, "  {d:?} remains after the rerun for N in {}", ranges(ns))?;
        }
        Ok(())
    }
}

/// `1-4, 7, 9-12` for a sorted list.
fn ranges(ns: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ns.len() {
        let mut j = i;
        while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ns[i].to_string()
        } else {
            format!("{}-{}", ns[i], ns[j])
        });
        i = j + 1;
    }
    out.join(", ")
}
