//! Creating a root-directory file that is missing, so that at every instant the name is either
//! absent (as before) or holds the complete new content, whatever is interrupted and whichever
//! unflushed writes are lost. The companion of [`super::switch`], for a bank whose `state.tgz`
//! is gone (deleted, or never written), where there is no entry to switch.
//!
//! The protocol, with a flush (fsync) between the two phases:
//!
//! 1. **Write the new chain where nothing looks**, exactly as a replacement does
//!    ([`super::switch`]'s phase 1): the data in free clusters, the chain linked in every FAT
//!    copy, flush, read back from the storage and verified. No directory entry references these
//!    clusters, so until phase 2 lands the volume reads exactly as before (the file missing);
//!    an interruption leaves at most clusters that nothing uses ("lost"), which
//!    [`super::Health::repair`] reclaims on the next write. On a failed check the chain is freed
//!    again.
//! 2. **Write the entry**: a new 32-byte short entry in a free slot of the fixed root directory
//!    (a deleted entry, `0xE5`, or the first never-used one, `0x00`), written as the one sector
//!    that holds it. Before that sector lands the file is absent; after, it is complete. Flush,
//!    and read the file back through `fatfs` (a second, independent reader); on a mismatch the
//!    old sector is put back and the chain freed.
//!
//! Why one sector write is atomic enough is said in [`super::switch`].
//!
//! The entry is the one mtools writes for a lower-case 8.3 name copied with `mcopy` (seen on
//! the demo disk, `examples/demo.img`, made by `examples/make-demo.sh` with mtools 4.x, and on
//! every fixture bank): the name upper case in the 11 name bytes, attribute 0x20 (archive),
//! byte 12 = 0x18 (Windows NT's "base and extension are lower case" bits, which mtools sets for
//! an all-lower-case name instead of writing a VFAT long-name entry), byte 13 (creation time,
//! tenths) 0, and the creation, last-access and modification date/time all the same moment;
//! high cluster word 0 (FAT12/16). Names that are not plain 8.3, or mix case within the base or
//! the extension (which would need a long-name entry), are refused.

use super::raw::{self, ATTR_LFN};
use super::switch::{
    Switched, Target, allocate, fat_time, healthy, runs_of, write_chain, write_entry,
};
use super::{FatError, FatVolume};
use crate::format::verdict::Verify;
use crate::io::disk::{Disk, Slice};

/// Attribute of a plain file as mtools writes it (archive bit).
const ATTR_ARCHIVE: u8 = 0x20;
/// Byte 12 bits: base name lower case, extension lower case (Windows NT, mtools).
const NT_LOWER_BASE: u8 = 0x08;
const NT_LOWER_EXT: u8 = 0x10;

/// The 32-byte short entry for `name` (see the module documentation), `None` when the name is
/// not 8.3 or its case cannot be said without a long-name entry.
pub fn short_entry(name: &str, first: u32, size: u32, date: u16, time: u16) -> Option<[u8; 32]> {
    let short = raw::short_form(name)?;
    let (base, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    // One case per part: all lower (flagged), or no lower-case letter at all.
    let case = |s: &str, flag: u8| -> Option<u8> {
        let lower = s.bytes().any(|b| b.is_ascii_lowercase());
        let upper = s.bytes().any(|b| b.is_ascii_uppercase());
        match (lower, upper) {
            (true, true) => None,
            (true, false) => Some(flag),
            _ => Some(0),
        }
    };
    let nt = case(base, NT_LOWER_BASE)? | case(ext, NT_LOWER_EXT)?;
    let mut e = [0u8; 32];
    e[0..11].copy_from_slice(&short);
    e[11] = ATTR_ARCHIVE;
    e[12] = nt;
    e[13] = 0;
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    // 20..22: high cluster word, 0 on FAT12/16.
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    e[26..28].copy_from_slice(&(first as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    Some(e)
}

/// The index of the root slot a new entry goes into: the first deleted (`0xE5`) slot that does
/// not follow a live long-name entry (which would then name it), or else the first never-used
/// (`0x00`) slot when the one after it is never-used too (or it is the last). `None`: full.
pub fn free_slot(root: &[u8]) -> Option<usize> {
    let n = root.len() / 32;
    let live_lfn = |i: usize| {
        let e = &root[i * 32..i * 32 + 32];
        e[0] != 0xE5 && e[0] != 0 && e[11] & 0x3F == ATTR_LFN
    };
    for i in 0..n {
        match root[i * 32] {
            0xE5 if i == 0 || !live_lfn(i - 1) => return Some(i),
            0 => {
                let next_unused = i + 1 == n || root[(i + 1) * 32] == 0;
                return next_unused.then_some(i);
            }
            _ => {}
        }
    }
    None
}

/// Creates root file `name` in the FAT12/16 volume at `start` with `data` (see the module
/// documentation). The file must not exist. Leftovers of an interrupted write are reclaimed
/// first; other damage refuses the write, nothing written. `verify` checks the bytes read back
/// before the entry is written.
pub fn create(
    disk: &mut Disk,
    start: u64,
    len: u64,
    name: &str,
    data: &[u8],
    verify: Verify<'_>,
) -> Result<Switched, FatError> {
    let (w0, c0) = (disk.bytes_written(), disk.write_calls());
    let werr = |detail: String| FatError::Write {
        offset: start,
        file: name.to_string(),
        detail,
    };
    let size = u32::try_from(data.len()).map_err(|_| werr("larger than FAT allows".into()))?;
    // The entry is built first: a name it cannot write is refused before anything is written.
    if short_entry(name, 0, 0, 0, 0).is_none() {
        return Err(FatError::Unsupported {
            offset: start,
            detail: format!("`{name}` is not an 8.3 name of one case per part"),
        });
    }
    let (layout, scan, repaired) = healthy(disk, start, len)?;
    let short = raw::short_form(name).expect("checked above");
    let taken = scan.root.iter().any(|e| e.raw[0..11] == short)
        || FatVolume::open(Slice::new(disk, start, len))?.exists(name)?;
    if taken {
        return Err(werr("already exists".to_string()));
    }
    let root = layout.read_root(disk)?;
    let slot =
        free_slot(&root).ok_or_else(|| werr("the root directory has no free entry".into()))?;
    let mut flushes = 0;

    // Phase 1: the chain, in clusters nothing references.
    let chain = allocate(&layout, &scan.tables, data.len() as u64)
        .ok_or_else(|| werr(format!("not enough free space for {} bytes", data.len())))?;
    let target = Target {
        start,
        len,
        name,
        data,
    };
    let linked = write_chain(disk, &layout, &scan.tables, &chain, &target, verify)?;
    flushes += 1;

    // Phase 2: one sector, the new entry in a free slot.
    let (date, time) = fat_time(chrono::Local::now().naive_local());
    let first = chain.first().copied().unwrap_or(0);
    let entry = short_entry(name, first, size, date, time).expect("checked above");
    let entry_at = layout.root_start + slot as u64 * 32;
    write_entry(
        disk,
        &layout,
        (&scan.tables, &linked),
        entry_at,
        &target,
        &|e: &mut [u8]| e.copy_from_slice(&entry),
    )?;
    flushes += 1;
    Ok(Switched {
        bytes_written: disk.bytes_written() - w0,
        write_calls: disk.write_calls() - c0,
        flushes,
        clusters: chain.len() as u32,
        runs: runs_of(&chain).len() as u32,
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_the_ones_mtools_writes_for_lower_case_names() {
        // The demo disk's STATE   TGZ entry (mcopy -m, 2023-11-14 22:13:20): 20 18 00 aa b1 6e
        // 57 6e 57 00 00 aa b1 6e 57 18 00 bc 03 00 00 after the name.
        let e = short_entry("state.tgz", 0x18, 0x3bc, 0x576e, 0xb1aa).unwrap();
        assert_eq!(&e[0..11], b"STATE   TGZ");
        assert_eq!(
            e[11..],
            [
                0x20, 0x18, 0x00, 0xaa, 0xb1, 0x6e, 0x57, 0x6e, 0x57, 0x00, 0x00, 0xaa, 0xb1, 0x6e,
                0x57, 0x18, 0x00, 0xbc, 0x03, 0x00, 0x00
            ]
        );
        assert_eq!(short_entry("STATE.TGZ", 2, 1, 0, 0).unwrap()[12], 0);
        assert_eq!(short_entry("state.TGZ", 2, 1, 0, 0).unwrap()[12], 0x08);
        assert!(short_entry("State.tgz", 2, 1, 0, 0).is_none());
        assert!(short_entry("a.long.name", 2, 1, 0, 0).is_none());
    }

    #[test]
    fn free_slots_skip_live_entries_and_orphaned_long_names() {
        let mut root = vec![0u8; 32 * 6];
        root[0] = b'A';
        root[32] = 0xE5;
        root[64] = b'B';
        assert_eq!(free_slot(&root), Some(1));
        // A live long-name entry before the deleted slot would name a new entry there.
        root[0] = 0x41;
        root[11] = ATTR_LFN;
        assert_eq!(free_slot(&root), Some(3));
        // A never-used slot followed by stale bytes is not taken.
        root[3 * 32 + 32] = b'X';
        assert_eq!(free_slot(&root), None);
        let full = vec![b'A'; 64];
        assert_eq!(free_slot(&full), None);
        let mut last = vec![b'A'; 64];
        last[32] = 0;
        assert_eq!(free_slot(&last), Some(1));
    }
}
