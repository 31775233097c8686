//! What an interrupted write can leave in a FAT volume, told apart from any other damage.
//!
//! bootbank's replacement ([`super::switch`]) only ever changes FAT entries of clusters that no
//! directory entry reaches at that moment (a new chain before the switch, the old chain after
//! it), and it never sets the dirty bit. So whatever an interruption leaves, of bootbank's
//! current or earlier versions (which wrote through `fatfs` and set the bit), is at most:
//! clusters allocated that nothing reaches ("lost"), FAT copies that differ on such clusters, and
//! the dirty bit. Those three [`Health::repair`] puts right, touching only unreachable entries,
//! so the repair is safe to interrupt too. Anything else (a chain that breaks, runs into another
//! file, or disagrees with its size; copies that differ on a cluster a file uses) bootbank did
//! not make and does not repair: that is `fsck.fat`'s job, and a write is refused until then.

use super::FatError;
use super::raw::{self, DIRTY_BYTE, Entry, Layout, Table};
use crate::io::disk::Disk;
use serde::Serialize;

/// How far directories are followed (a loop in the tree is damage, not a hang).
const MAX_DEPTH: usize = 32;

/// The state of a FAT volume's allocation, as far as bootbank can tell and repair it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The boot sector's "not cleanly unmounted" bit, the one `fsck.fat` reports. (FAT16's
    /// clean-shutdown bits in FAT entry 1 are left as found: not every formatter sets them.)
    pub dirty: bool,
    /// Clusters allocated in some FAT copy that no directory entry reaches.
    pub lost: Vec<u32>,
    /// Clusters whose entries differ between the FAT copies (all unreachable, or it is damage).
    pub copies_differ: usize,
    /// Damage bootbank did not cause and will not repair (serialized as one sentence each).
    pub damage: Vec<Damage>,
}

/// Damage to a FAT volume that no interrupted bootbank write leaves: `fsck.fat` is the tool for
/// it. `path` is the entry's path from the root as its short names read (`/STATE.TGZ`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("{path}: directories nested deeper than {MAX_DEPTH}")]
    TooDeep { path: String },
    #[error("{path}: {size} bytes need {want} cluster(s), its chain has {have}")]
    ChainLength {
        path: String,
        size: u64,
        want: usize,
        have: usize,
    },
    #[error("{path}: its chain reaches cluster {cluster}, which is not a data cluster")]
    NotData { path: String, cluster: u32 },
    #[error("{path}: cluster {cluster} is used twice (cross-linked files or a loop)")]
    UsedTwice { path: String, cluster: u32 },
    #[error("{path}: its chain breaks at cluster {cluster} (entry {entry:#x})")]
    ChainBreaks {
        path: String,
        cluster: u32,
        entry: u32,
    },
    /// `values`: the entry in each FAT copy, in order.
    #[error("the FAT copies differ on cluster {cluster}, which a file uses ({values:x?})")]
    CopiesDifferInUse { cluster: u32, values: Vec<u32> },
    #[error("the FAT copies differ in reserved entry {entry} ({values:x?})")]
    CopiesDifferReserved { entry: u32, values: Vec<u32> },
}

/// Reports keep each damage as the sentence it prints (`inspect --json` shows it so).
impl Serialize for Damage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The damages as one clause for a message, `; ` between them.
pub fn damage_list(damage: &[Damage]) -> String {
    damage
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Health {
    /// Nothing to report: `fsck.fat -n` has nothing to say about allocation either.
    pub fn is_clean(&self) -> bool {
        !self.dirty && self.lost.is_empty() && self.copies_differ == 0 && self.damage.is_empty()
    }

    /// Only what an interrupted write leaves, which [`Health::repair`] puts right.
    pub fn is_repairable(&self) -> bool {
        self.damage.is_empty()
    }

    /// One line for the user: what would be repaired.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.lost.is_empty() {
            parts.push(format!(
                "{} cluster(s) allocated but used by no file",
                self.lost.len()
            ));
        }
        if self.copies_differ > 0 {
            parts.push(format!(
                "the FAT copies differ on {} unused cluster(s)",
                self.copies_differ
            ));
        }
        if self.dirty {
            parts.push("the dirty bit is set".to_string());
        }
        parts.extend(self.damage.iter().map(ToString::to_string));
        if parts.is_empty() {
            "clean".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// Reads the volume and sorts what it finds.
    pub fn check(disk: &mut Disk, layout: &Layout) -> Result<Health, FatError> {
        Ok(Scan::run(disk, layout)?.health)
    }

    /// Frees the lost clusters in every FAT copy, then clears the dirty bit, with a flush after
    /// each; refuses (nothing written) when there is damage it did not make. Returns what was
    /// found before, and the write calls made.
    pub fn repair(disk: &mut Disk, layout: &Layout) -> Result<(Health, u64), FatError> {
        let scan = Scan::run(disk, layout)?;
        let health = scan.health.clone();
        if !health.is_repairable() {
            return Err(FatError::Damaged {
                offset: layout.start,
                problems: health.damage.clone(),
            });
        }
        let mut writes = 0;
        if !health.lost.is_empty() || health.copies_differ > 0 {
            let reference = &scan.tables[0];
            for (copy, old) in scan.tables.iter().enumerate() {
                let mut new = old.clone();
                for &c in &health.lost {
                    new.set(c, 0);
                }
                // Entries 0 and 1 (media byte, end marker, FAT16 clean bits) as in the first copy.
                for c in 0..2 {
                    new.set(c, reference.get(c));
                }
                writes += write_table(disk, layout, copy as u32, old, &new)?;
            }
            sync(disk, layout)?;
        }
        if health.dirty {
            writes += clear_dirty(disk, layout)?;
            sync(disk, layout)?;
        }
        Ok((health, writes))
    }
}

/// A scan of the volume: the FAT copies, what is reached, and the verdict.
pub(super) struct Scan {
    pub tables: Vec<Table>,
    pub reached: Vec<bool>,
    pub root: Vec<Entry>,
    pub health: Health,
}

impl Scan {
    pub(super) fn run(disk: &mut Disk, layout: &Layout) -> Result<Scan, FatError> {
        let tables = (0..layout.fats)
            .map(|c| layout.read_table(disk, c))
            .collect::<Result<Vec<_>, _>>()?;
        let root_bytes = layout.read_root(disk)?;
        let root = raw::entries(&root_bytes, &|i| layout.root_start + i as u64 * 32);
        let mut scan = Scan {
            reached: vec![false; layout.clusters as usize + 2],
            tables,
            root: root.clone(),
            health: Health::default(),
        };
        scan.walk(disk, layout, &root, "", 0)?;
        scan.sort(disk, layout)?;
        Ok(scan)
    }

    /// Follows every entry of a directory, and the directories below it.
    fn walk(
        &mut self,
        disk: &mut Disk,
        layout: &Layout,
        entries: &[Entry],
        dir: &str,
        depth: usize,
    ) -> Result<(), FatError> {
        for e in entries {
            if e.is_volume_label() || e.is_dot() {
                continue;
            }
            let path = format!("{dir}/{}", e.short_name());
            let Some(chain) = self.chain(layout, e, &path) else {
                continue;
            };
            if e.is_dir() {
                if depth >= MAX_DEPTH {
                    self.health.damage.push(Damage::TooDeep { path });
                    continue;
                }
                let mut bytes = vec![0u8; chain.len() * layout.cluster_bytes as usize];
                for (i, &c) in chain.iter().enumerate() {
                    let at = i * layout.cluster_bytes as usize;
                    disk.read_at(
                        layout.cluster_offset(c),
                        &mut bytes[at..at + layout.cluster_bytes as usize],
                    )
                    .map_err(|err| FatError::Read {
                        offset: layout.start,
                        file: path.clone(),
                        detail: err.to_string(),
                    })?;
                }
                let per = (layout.cluster_bytes / 32) as usize;
                let sub = raw::entries(&bytes, &|i| {
                    layout.cluster_offset(chain[i / per]) + (i % per) as u64 * 32
                });
                self.walk(disk, layout, &sub, &path, depth + 1)?;
            } else {
                let want = e.size().div_ceil(layout.cluster_bytes) as usize;
                if chain.len() != want {
                    self.health.damage.push(Damage::ChainLength {
                        path,
                        size: e.size(),
                        want,
                        have: chain.len(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The chain an entry starts, marking it reached; `None` (and damage) when it breaks.
    fn chain(&mut self, layout: &Layout, e: &Entry, path: &str) -> Option<Vec<u32>> {
        let t = &self.tables[0];
        let mut out = Vec::new();
        let mut c = e.first_cluster();
        if c == 0 {
            return Some(out);
        }
        loop {
            if !layout.is_data(c) {
                self.health.damage.push(Damage::NotData {
                    path: path.to_string(),
                    cluster: c,
                });
                return None;
            }
            if self.reached[c as usize] {
                self.health.damage.push(Damage::UsedTwice {
                    path: path.to_string(),
                    cluster: c,
                });
                return None;
            }
            self.reached[c as usize] = true;
            out.push(c);
            let next = t.get(c);
            if layout.is_eoc(next) {
                return Some(out);
            }
            if next == 0 || next == layout.bad() || next == 1 {
                self.health.damage.push(Damage::ChainBreaks {
                    path: path.to_string(),
                    cluster: c,
                    entry: next,
                });
                return None;
            }
            c = next;
        }
    }

    /// Compares the copies and the reached set; sets the verdict.
    fn sort(&mut self, disk: &mut Disk, layout: &Layout) -> Result<(), FatError> {
        let mut lost = Vec::new();
        let mut differ = 0;
        let t0 = &self.tables[0];
        // The usual case, copies byte for byte equal, costs one comparison, not one per cluster.
        let identical = self.tables[1..].iter().all(|t| t.bytes == t0.bytes);
        for c in 2..layout.clusters + 2 {
            let v0 = t0.get(c);
            let same = identical || self.tables[1..].iter().all(|t| t.get(c) == v0);
            let reached = self.reached[c as usize];
            if !same {
                if reached {
                    let vals: Vec<u32> = self.tables.iter().map(|t| t.get(c)).collect();
                    self.health.damage.push(Damage::CopiesDifferInUse {
                        cluster: c,
                        values: vals,
                    });
                    continue;
                }
                differ += 1;
            }
            let allocated = v0 != 0 || (!same && self.tables.iter().any(|t| t.get(c) != 0));
            let marked_bad = same && v0 == layout.bad();
            if !reached && allocated && !marked_bad {
                lost.push(c);
            }
        }
        for c in 0..2 {
            let vals: Vec<u32> = self.tables.iter().map(|t| t.get(c)).collect();
            // FAT16 keeps its clean-shutdown and no-error bits in entry 1 (bits 15, 14).
            let mask = if layout.bits == 16 && c == 1 {
                0x3FFF
            } else {
                u32::MAX
            };
            if vals.iter().any(|&v| v & mask != vals[0] & mask) {
                self.health.damage.push(Damage::CopiesDifferReserved {
                    entry: c,
                    values: vals,
                });
            }
        }
        let mut bs = [0u8; 1];
        disk.read_at(layout.start + DIRTY_BYTE, &mut bs)
            .map_err(|e| FatError::Read {
                offset: layout.start,
                file: "(boot sector)".to_string(),
                detail: e.to_string(),
            })?;
        self.health.dirty = bs[0] & 1 != 0;
        self.health.lost = lost;
        self.health.copies_differ = differ;
        Ok(())
    }
}

/// Writes the sectors of FAT copy `copy` where `new` differs from `old` (runs of adjacent
/// sectors as one write). Returns the write calls made.
pub(super) fn write_table(
    disk: &mut Disk,
    layout: &Layout,
    copy: u32,
    old: &Table,
    new: &Table,
) -> Result<u64, FatError> {
    let s = layout.sector as usize;
    let base = layout.fat_offset(copy);
    let n = old.bytes.len() / s;
    let differs = |i: usize| old.bytes[i * s..(i + 1) * s] != new.bytes[i * s..(i + 1) * s];
    let mut writes = 0;
    let mut i = 0;
    while i < n {
        if !differs(i) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < n && differs(j) {
            j += 1;
        }
        disk.write_at(base + (i * s) as u64, &new.bytes[i * s..j * s])
            .map_err(|e| FatError::Write {
                offset: layout.start,
                file: format!("(FAT copy {})", copy + 1),
                detail: e.to_string(),
            })?;
        writes += 1;
        i = j;
    }
    Ok(writes)
}

/// Clears the dirty bit in the boot sector: one sector written.
fn clear_dirty(disk: &mut Disk, layout: &Layout) -> Result<u64, FatError> {
    let mut writes = 0;
    let mut sector = vec![0u8; layout.sector as usize];
    let werr = |e: crate::io::disk::DiskError| FatError::Write {
        offset: layout.start,
        file: "(boot sector)".to_string(),
        detail: e.to_string(),
    };
    disk.read_at(layout.start, &mut sector).map_err(werr)?;
    if sector[DIRTY_BYTE as usize] & 1 != 0 {
        sector[DIRTY_BYTE as usize] &= !1;
        disk.write_at(layout.start, &sector).map_err(werr)?;
        writes += 1;
    }
    Ok(writes)
}

/// Flushes the disk, as a FAT error of this volume.
pub(super) fn sync(disk: &mut Disk, layout: &Layout) -> Result<(), FatError> {
    disk.sync().map_err(|e| FatError::Write {
        offset: layout.start,
        file: "(flush)".to_string(),
        detail: e.to_string(),
    })
}
