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
use super::{FatError, FatVolume, Rejected};
use crate::format::verdict::Verify;
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
    verify: Verify<'_>,
) -> Result<Switched, FatError> {
    let (w0, c0) = (disk.bytes_written(), disk.write_calls());
    let (layout, scan, repaired) = healthy(disk, start, len)?;
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
    let target = Target {
        start,
        len,
        name,
        data,
    };
    let linked = write_chain(disk, &layout, &scan.tables, &new_chain, &target, verify)?;
    flushes += 1;

    // Phase 2: one sector, the entry pointing at the new chain.
    let first = new_chain.first().copied().unwrap_or(0);
    let (date, time) = fat_time(chrono::Local::now().naive_local());
    let edit = |e: &mut [u8]| {
        e[18..20].copy_from_slice(&date.to_le_bytes()); // last access date
        e[22..24].copy_from_slice(&time.to_le_bytes());
        e[24..26].copy_from_slice(&date.to_le_bytes());
        e[26..28].copy_from_slice(&(first as u16).to_le_bytes());
        e[28..32].copy_from_slice(&(data.len() as u32).to_le_bytes());
    };
    write_entry(
        disk,
        &layout,
        (&scan.tables, &linked),
        entry.offset,
        &target,
        &edit,
    )?;
    flushes += 1;

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
        runs: runs_of(&new_chain).len() as u32,
        repaired,
    })
}

/// The volume at `start`, scanned, with the leftovers of an interrupted write reclaimed first
/// (other damage is refused by `repair`, nothing written); the one scan serves both in the
/// usual, clean case.
pub(super) fn healthy(
    disk: &mut Disk,
    start: u64,
    len: u64,
) -> Result<(Layout, Scan, Option<super::Health>), FatError> {
    disk.drop_cache();
    let layout = Layout::read(disk, start, len)?;
    let mut scan = Scan::run(disk, &layout)?;
    let mut repaired = None;
    if !scan.health.is_clean() {
        let (found, _) = super::Health::repair(disk, &layout)?;
        disk.drop_cache();
        scan = Scan::run(disk, &layout)?;
        if !scan.health.is_clean() {
            return Err(FatError::Unrepaired {
                offset: start,
                health: scan.health,
            });
        }
        repaired = Some(found);
    }
    Ok((layout, scan, repaired))
}

/// The file a write puts into the volume at `start`.
pub(super) struct Target<'a> {
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) name: &'a str,
    pub(super) data: &'a [u8],
}

impl Target<'_> {
    fn err(&self, detail: String) -> FatError {
        FatError::Write {
            offset: self.start,
            file: self.name.to_string(),
            detail,
        }
    }

    fn verify_failed(&self, why: Rejected) -> FatError {
        FatError::Verify {
            offset: self.start,
            file: self.name.to_string(),
            why,
        }
    }
}

/// Puts the tables `from` back where `to` was written, in every copy, and flushes.
fn restore_tables(
    disk: &mut Disk,
    layout: &Layout,
    to: &[Table],
    from: &[Table],
) -> Result<(), FatError> {
    for (copy, (old, new)) in to.iter().zip(from).enumerate() {
        check::write_table(disk, layout, copy as u32, old, new)?;
    }
    check::sync(disk, layout)
}

/// Phase 1 of every write: the data into `chain` (clusters nothing references), the chain
/// linked in every FAT copy, a flush; then the chain read back from the storage and checked
/// (exact bytes, then `verify`). On a failed check the links are taken out again. Returns the
/// linked tables.
pub(super) fn write_chain(
    disk: &mut Disk,
    layout: &Layout,
    tables: &[Table],
    chain: &[u32],
    t: &Target<'_>,
    verify: Verify<'_>,
) -> Result<Vec<Table>, FatError> {
    let data = t.data;
    let cb = layout.cluster_bytes as usize;
    let mut at = 0usize;
    for run in &runs_of(chain) {
        let bytes = run.len() * cb;
        let mut buf = vec![0u8; bytes];
        let take = (data.len() - at).min(bytes);
        buf[..take].copy_from_slice(&data[at..at + take]);
        disk.write_at(layout.cluster_offset(run[0]), &buf)
            .map_err(|e| t.err(e.to_string()))?;
        at += take;
    }
    let linked: Vec<Table> = tables
        .iter()
        .map(|tb| {
            let mut tb = tb.clone();
            link(layout, &mut tb, chain);
            tb
        })
        .collect();
    for (copy, (old, new)) in tables.iter().zip(&linked).enumerate() {
        check::write_table(disk, layout, copy as u32, old, new)?;
    }
    check::sync(disk, layout)?;
    disk.drop_cache();
    let back = read_chain(disk, layout, chain.first().copied(), data.len())?;
    let checked = if back != data {
        Err(Rejected::ChainDiffers {
            compared: data.len(),
        })
    } else {
        verify(&back).map_err(Rejected::Check)
    };
    if let Err(why) = checked {
        restore_tables(disk, layout, &linked, tables)?;
        return Err(t.verify_failed(why));
    }
    Ok(linked)
}

/// Phase 2 of every write: the one sector holding the 32-byte entry at `entry_at`, changed by
/// `edit`, written in one call and flushed; then the file read back through fatfs. When it does
/// not read back as written, the old sector goes back and the new chain's links are taken out
/// (`tables`: as before phase 1, and as phase 1 left them).
pub(super) fn write_entry(
    disk: &mut Disk,
    layout: &Layout,
    tables: (&[Table], &[Table]),
    entry_at: u64,
    t: &Target<'_>,
    edit: &dyn Fn(&mut [u8]),
) -> Result<(), FatError> {
    let sector_at = entry_at - (entry_at - layout.start) % layout.sector;
    let mut old_sector = vec![0u8; layout.sector as usize];
    disk.read_at(sector_at, &mut old_sector)
        .map_err(|e| t.err(e.to_string()))?;
    let mut new_sector = old_sector.clone();
    let e = (entry_at - sector_at) as usize;
    edit(&mut new_sector[e..e + 32]);
    disk.write_at(sector_at, &new_sector)
        .map_err(|e| t.err(e.to_string()))?;
    check::sync(disk, layout)?;
    disk.drop_cache();
    let through_fatfs = FatVolume::open(Slice::new(disk, t.start, t.len))?.read(t.name)?;
    if through_fatfs.as_deref() != Some(t.data) {
        // Put the old entry back (an old chain was never touched), then free the new chain.
        disk.write_at(sector_at, &old_sector)
            .map_err(|e| t.err(e.to_string()))?;
        check::sync(disk, layout)?;
        restore_tables(disk, layout, tables.1, tables.0)?;
        return Err(t.verify_failed(Rejected::EntryDiffers));
    }
    Ok(())
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
