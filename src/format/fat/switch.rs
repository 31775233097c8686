//! Replacing a root-directory file so that its name holds the complete old or the complete new
//! content at every instant, whatever is interrupted and whichever unflushed writes are lost.
//!
//! The protocol, with a flush (fsync) between the three phases:
//!
//! 1. **Write the new chain where nothing looks.** The new bytes go into free clusters, and
//!    their chain is linked in every FAT copy (first copy, then the others). No directory entry
//!    references these clusters yet, so until phase 2 lands the volume reads exactly as before;
//!    an interruption leaves at most clusters that nothing uses. Flush, then read the new file
//!    back from the storage through its chain and verify it (the caller decodes both archive
//!    levels); on failure the chain is freed again and nothing else was touched.
//! 2. **Switch the entry.** The file's existing short directory entry gets the new start cluster,
//!    size and modification time: 32 bytes inside one sector, written as that one sector. Its
//!    name, attributes, creation time and long-name entries do not change. Flush, and read the
//!    file back through `fatfs` (a second, independent reader of the chain).
//! 3. **Free the old chain** in every FAT copy. Flush. An interruption here leaves the old
//!    clusters allocated but unreferenced: lost clusters, which [`super::Health::repair`]
//!    reclaims on the next write.
//!
//! Why one sector write is atomic enough: every disk ESXi boots from (SATA/SAS/NVMe drives,
//! RAID virtual disks, SD cards and USB sticks behind a flash translation layer) writes a
//! logical sector as a unit: drives guarantee that a sector is either the old or the new data
//! (a write interrupted inside a sector is detected by the sector's ECC and reads as a media
//! error, never as a mix), and flash controllers program whole pages, with the logical-to-
//! physical map updated after the page is written. A sector that reads as an error after a power
//! cut (the torn case) would make the root directory unreadable to ESXi and to bootbank alike;
//! bootbank then refuses to write and points to the backup it made before phase 1 (and
//! `fsck.fat`). Multi-sector writes (data, FAT runs) are not assumed atomic: only sector by
//! sector, in any order, which the power-cut tests replay.

use super::check::{self, Scan};
use super::raw::{self, Layout, Table};
use super::{FatError, FatVolume};
use crate::io::disk::{Disk, Slice};
use serde::Serialize;

/// What a replacement did, for the user and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Switched {
    pub bytes_written: u64,
    pub write_calls: u64,
    pub flushes: u64,
    /// Clusters of the new chain, and how many runs of adjacent clusters they form.
    pub clusters: u32,
    pub runs: u32,
    /// What an interrupted write had left in the FAT, reclaimed before the new chain.
    pub repaired: Option<super::Health>,
}

/// FAT's date and time words for a moment of local time (FAT stores local time, as the
/// `fatfs` crate and ESXi's own vfat driver write it).
pub fn fat_time(now: chrono::NaiveDateTime) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    let year = (now.year() - 1980).clamp(0, 127) as u16;
    let date = (year << 9) | ((now.month() as u16) << 5) | now.day() as u16;
    let time =
        ((now.hour() as u16) << 11) | ((now.minute() as u16) << 5) | (now.second() as u16 / 2);
    (date, time)
}

/// Replaces root file `name` of the FAT12/16 volume at `start` with `data` (see the module
/// documentation). The volume must be healthy: repair leftovers first with
/// [`super::Health::repair`], which this does first when it has to. `verify` checks the bytes read
/// back before the switch.
pub fn replace(
    disk: &mut Disk,
    start: u64,
    len: u64,
    name: &str,
    data: &[u8],
    verify: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<Switched, FatError> {
    let (w0, c0) = (disk.bytes_written(), disk.write_calls());
    disk.drop_cache();
    let layout = Layout::read(disk, start, len)?;
    let mut scan = Scan::run(disk, &layout)?;
    let mut repaired = None;
    if !scan.health.is_clean() {
        // Leftovers of an interrupted write are reclaimed first (other damage is refused by
        // `repair`, nothing written); the one scan serves both in the usual, clean case.
        let (found, _) = super::Health::repair(disk, &layout)?;
        disk.drop_cache();
        scan = Scan::run(disk, &layout)?;
        if !scan.health.is_clean() {
            return Err(FatError::Damaged {
                offset: start,
                problems: vec![scan.health.describe()],
            });
        }
        repaired = Some(found);
    }
    let short = raw::short_form(name).ok_or_else(|| FatError::Unsupported {
        offset: start,
        detail: format!("`{name}` is not an 8.3 name"),
    })?;
    let entry = scan
        .root
        .iter()
        .find(|e| e.raw[0..11] == short && !e.is_dir() && !e.is_volume_label())
        .cloned()
        .ok_or_else(|| FatError::Write {
            offset: start,
            file: name.to_string(),
            detail: "no such file in the root directory".to_string(),
        })?;
    let old_chain = chain_of(&layout, &scan.tables[0], entry.first_cluster());
    let mut flushes = 0;

    // Phase 1: the new chain, in clusters nothing references.
    let new_chain =
        allocate(&layout, &scan.tables, data.len() as u64).ok_or_else(|| FatError::Write {
            offset: start,
            file: name.to_string(),
            detail: format!(
                "not enough free space for {} bytes beside the current file",
                data.len()
            ),
        })?;
    let werr = |detail: String| FatError::Write {
        offset: start,
        file: name.to_string(),
        detail,
    };
    let runs = runs_of(&new_chain);
    let cb = layout.cluster_bytes as usize;
    let mut at = 0usize;
    for run in &runs {
        let bytes = run.len() * cb;
        let mut buf = vec![0u8; bytes];
        let take = (data.len() - at).min(bytes);
        buf[..take].copy_from_slice(&data[at..at + take]);
        disk.write_at(layout.cluster_offset(run[0]), &buf)
            .map_err(|e| werr(e.to_string()))?;
        at += take;
    }
    let linked: Vec<Table> = scan
        .tables
        .iter()
        .map(|t| {
            let mut t = t.clone();
            link(&layout, &mut t, &new_chain);
            t
        })
        .collect();
    for (copy, (old, new)) in scan.tables.iter().zip(&linked).enumerate() {
        check::write_table(disk, &layout, copy as u32, old, new)?;
    }
    check::sync(disk, &layout)?;
    flushes += 1;
    let undo = |disk: &mut Disk| -> Result<(), FatError> {
        for (copy, (old, new)) in linked.iter().zip(&scan.tables).enumerate() {
            check::write_table(disk, &layout, copy as u32, old, new)?;
        }
        check::sync(disk, &layout)
    };
    disk.drop_cache();
    let back = read_chain(disk, &layout, new_chain.first().copied(), data.len())?;
    let check = if back != data {
        Err(format!(
            "the new chain reads back differently ({} bytes compared)",
            data.len()
        ))
    } else {
        verify(&back)
    };
    if let Err(why) = check {
        undo(disk)?;
        return Err(FatError::Verify {
            offset: start,
            file: name.to_string(),
            why,
        });
    }

    // Phase 2: one sector, the entry pointing at the new chain.
    let sector = layout.sector;
    let sector_at = entry.offset - (entry.offset - layout.start) % sector;
    let mut old_sector = vec![0u8; sector as usize];
    disk.read_at(sector_at, &mut old_sector)
        .map_err(|e| werr(e.to_string()))?;
    let mut new_sector = old_sector.clone();
    let e = (entry.offset - sector_at) as usize;
    let first = new_chain.first().copied().unwrap_or(0);
    let (date, time) = fat_time(chrono::Local::now().naive_local());
    new_sector[e + 18..e + 20].copy_from_slice(&date.to_le_bytes()); // last access date
    new_sector[e + 22..e + 24].copy_from_slice(&time.to_le_bytes());
    new_sector[e + 24..e + 26].copy_from_slice(&date.to_le_bytes());
    new_sector[e + 26..e + 28].copy_from_slice(&(first as u16).to_le_bytes());
    new_sector[e + 28..e + 32].copy_from_slice(&(data.len() as u32).to_le_bytes());
    disk.write_at(sector_at, &new_sector)
        .map_err(|e| werr(e.to_string()))?;
    check::sync(disk, &layout)?;
    flushes += 1;
    disk.drop_cache();
    let through_fatfs = FatVolume::open(Slice::new(disk, start, len))?.read(name)?;
    if through_fatfs.as_deref() != Some(data) {
        // Put the old entry back (its chain was never touched), then free the new chain.
        disk.write_at(sector_at, &old_sector)
            .map_err(|e| werr(e.to_string()))?;
        check::sync(disk, &layout)?;
        undo(disk)?;
        return Err(FatError::Verify {
            offset: start,
            file: name.to_string(),
            why: "after the switch the file does not read back as written".to_string(),
        });
    }

    // Phase 3: the old chain is free again.
    let freed: Vec<Table> = linked
        .iter()
        .map(|t| {
            let mut t = t.clone();
            for &c in &old_chain {
                t.set(c, 0);
            }
            t
        })
        .collect();
    for (copy, (old, new)) in linked.iter().zip(&freed).enumerate() {
        check::write_table(disk, &layout, copy as u32, old, new)?;
    }
    check::sync(disk, &layout)?;
    flushes += 1;
    Ok(Switched {
        bytes_written: disk.bytes_written() - w0,
        write_calls: disk.write_calls() - c0,
        flushes,
        clusters: new_chain.len() as u32,
        runs: runs.len() as u32,
        repaired,
    })
}

/// The clusters of the chain starting at `first` (already checked by the scan).
pub(super) fn chain_of(layout: &Layout, t: &Table, first: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut c = first;
    while layout.is_data(c) && out.len() <= layout.clusters as usize {
        out.push(c);
        let next = t.get(c);
        if layout.is_eoc(next) {
            break;
        }
        c = next;
    }
    out
}

/// Free clusters (free in every copy) for `bytes`: the first run long enough, else the first
/// free ones in order. `None` when the volume has too few.
pub(super) fn allocate(layout: &Layout, tables: &[Table], bytes: u64) -> Option<Vec<u32>> {
    let need = bytes.div_ceil(layout.cluster_bytes) as usize;
    if need == 0 {
        return Some(Vec::new());
    }
    let free: Vec<u32> = (2..layout.clusters + 2)
        .filter(|&c| tables.iter().all(|t| t.get(c) == 0))
        .collect();
    if free.len() < need {
        return None;
    }
    let mut run_start = 0;
    for i in 0..free.len() {
        if i > 0 && free[i] != free[i - 1] + 1 {
            run_start = i;
        }
        if i + 1 - run_start == need {
            return Some(free[run_start..=i].to_vec());
        }
    }
    Some(free[..need].to_vec())
}

/// Adjacent clusters grouped, so each run is one write.
pub(super) fn runs_of(chain: &[u32]) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    for &c in chain {
        match out.last_mut() {
            Some(run) if *run.last().unwrap() + 1 == c => run.push(c),
            _ => out.push(vec![c]),
        }
    }
    out
}

pub(super) fn link(layout: &Layout, t: &mut Table, chain: &[u32]) {
    for (i, &c) in chain.iter().enumerate() {
        t.set(c, chain.get(i + 1).copied().unwrap_or(layout.eoc()));
    }
}

/// Reads `len` bytes from the chain that the first FAT copy, re-read from the storage, links
/// from `first` (the caller drops the cache first, so this is what the disk holds).
pub(super) fn read_chain(
    disk: &mut Disk,
    layout: &Layout,
    first: Option<u32>,
    len: usize,
) -> Result<Vec<u8>, FatError> {
    let table = layout.read_table(disk, 0)?;
    let chain = first.map_or_else(Vec::new, |f| chain_of(layout, &table, f));
    let cb = layout.cluster_bytes as usize;
    let mut out = vec![0u8; chain.len() * cb];
    for (i, &c) in chain.iter().enumerate() {
        disk.read_at(layout.cluster_offset(c), &mut out[i * cb..(i + 1) * cb])
            .map_err(|e| FatError::Read {
                offset: layout.start,
                file: format!("(new chain, cluster {c})"),
                detail: e.to_string(),
            })?;
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_time_packs_local_time() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(21, 30, 59)
            .unwrap();
        let (date, time) = fat_time(t);
        assert_eq!(date, (46 << 9) | (12 << 5) | 1);
        assert_eq!(time, (21 << 11) | (30 << 5) | 29);
    }

    #[test]
    fn runs_group_adjacent_clusters() {
        assert_eq!(
            runs_of(&[5, 6, 7, 9, 10, 12]),
            vec![vec![5, 6, 7], vec![9, 10], vec![12]]
        );
        assert!(runs_of(&[]).is_empty());
    }
}
