//! The FAT volume at the level of sectors: the boot sector's geometry, the FAT copies, the root
//! directory's 32-byte entries and the cluster chains they start.
//!
//! Why not the `fatfs` crate here (it reads every bank, see [`super::FatVolume`]): writing a file
//! with it creates or truncates the directory entry first and extends the chain as data arrives,
//! sets the volume's dirty bit for the whole session, and offers no way to write a chain that no
//! entry references yet and then switch an existing entry to it. That switch is what makes a
//! replacement atomic (see [`super::replace`]), so the few structures it needs are read and
//! written here, from the on-disk format (Microsoft's FAT specification, "FAT: General Overview
//! of On-Disk Format", 2000; the same layout `mkfs.fat` writes and `fsck.fat` checks).
//!
//! Only FAT12 and FAT16 are handled: ESXi's bootbanks are FAT16 (the small test banks may be
//! FAT12), with the root directory in its fixed region. A FAT32 volume is refused, not guessed.

use super::FatError;
use crate::io::disk::Disk;

/// Boot-sector byte whose bit 0 is the "volume not cleanly unmounted" flag on FAT12/16
/// (`BS_Reserved1`, which Linux and dosfstools use as the dirty flag; `fatfs` sets it while
/// mounted for writing).
pub const DIRTY_BYTE: u64 = 0x25;

/// Where a FAT12/16 volume keeps what, in bytes from the start of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Absolute byte offset of the volume's boot sector.
    pub start: u64,
    /// Length of the partition holding the volume.
    pub len: u64,
    /// Bytes per logical sector: the unit every write here is made of.
    pub sector: u64,
    pub cluster_bytes: u64,
    pub fats: u32,
    /// Bytes of one FAT copy.
    pub fat_bytes: u64,
    /// Absolute offset of the first FAT copy.
    pub fat_start: u64,
    /// Absolute offset of the root directory region and its size in entries.
    pub root_start: u64,
    pub root_entries: u32,
    /// Absolute offset of cluster 2.
    pub data_start: u64,
    /// Number of data clusters; valid cluster numbers are `2..clusters + 2`.
    pub clusters: u32,
    /// 12 or 16.
    pub bits: u8,
}

fn le16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Layout {
    /// Reads the geometry from the boot sector of the volume at `start` (`len` bytes).
    pub fn read(disk: &mut Disk, start: u64, len: u64) -> Result<Layout, FatError> {
        let not = |detail: String| FatError::NotFat {
            offset: start,
            detail,
        };
        let mut bs = [0u8; 512];
        disk.read_at(start, &mut bs)
            .map_err(|e| not(format!("boot sector: {e}")))?;
        let sector = le16(&bs, 11);
        let per_cluster = u32::from(bs[13]);
        let reserved = le16(&bs, 14);
        let fats = u32::from(bs[16]);
        let root_entries = le16(&bs, 17);
        let total = match le16(&bs, 19) {
            0 => le32(&bs, 32),
            n => n,
        };
        let fat_sectors = le16(&bs, 22);
        if !matches!(sector, 512 | 1024 | 2048 | 4096)
            || !per_cluster.is_power_of_two()
            || reserved == 0
            || fats == 0
        {
            return Err(not(format!(
                "boot sector geometry not understood (bytes/sector {sector}, sectors/cluster {per_cluster}, reserved {reserved}, FATs {fats})"
            )));
        }
        if fat_sectors == 0 || root_entries == 0 {
            return Err(FatError::Unsupported {
                offset: start,
                detail: "FAT32 volume: bootbank writes only FAT12/FAT16 banks, as ESXi makes them"
                    .to_string(),
            });
        }
        let s = u64::from(sector);
        let root_sectors = (u64::from(root_entries) * 32).div_ceil(s);
        let first_data =
            u64::from(reserved) + u64::from(fats) * u64::from(fat_sectors) + root_sectors;
        if first_data >= u64::from(total) || u64::from(total) * s > len {
            return Err(not(format!(
                "boot sector says {total} sectors of {sector} bytes, data from sector {first_data}, in a partition of {len} bytes"
            )));
        }
        let clusters = ((u64::from(total) - first_data) / u64::from(per_cluster)) as u32;
        // The FAT type follows from the cluster count alone (the specification's rule).
        let bits = match clusters {
            0..4085 => 12,
            4085..65525 => 16,
            _ => {
                return Err(FatError::Unsupported {
                    offset: start,
                    detail: format!("{clusters} clusters is FAT32"),
                });
            }
        };
        let fat_bytes = u64::from(fat_sectors) * s;
        let needed = (u64::from(clusters) + 2) * u64::from(bits) / 8 + 1;
        if fat_bytes < needed {
            return Err(not(format!(
                "a FAT of {fat_bytes} bytes cannot map {clusters} clusters"
            )));
        }
        Ok(Layout {
            start,
            len,
            sector: s,
            cluster_bytes: s * u64::from(per_cluster),
            fats,
            fat_bytes,
            fat_start: start + u64::from(reserved) * s,
            root_start: start
                + (u64::from(reserved) + u64::from(fats) * u64::from(fat_sectors)) * s,
            root_entries,
            data_start: start + first_data * s,
            clusters,
            bits,
        })
    }

    /// Absolute offset of FAT copy `copy`.
    pub fn fat_offset(&self, copy: u32) -> u64 {
        self.fat_start + u64::from(copy) * self.fat_bytes
    }

    /// Absolute offset of data cluster `c` (2 or more).
    pub fn cluster_offset(&self, c: u32) -> u64 {
        self.data_start + u64::from(c - 2) * self.cluster_bytes
    }

    /// Whether `c` names a data cluster.
    pub fn is_data(&self, c: u32) -> bool {
        (2..self.clusters + 2).contains(&c)
    }

    /// End-of-chain marker as written (the specification's "all ones").
    pub fn eoc(&self) -> u32 {
        if self.bits == 12 { 0xFFF } else { 0xFFFF }
    }

    /// Whether an entry value ends a chain.
    pub fn is_eoc(&self, v: u32) -> bool {
        if self.bits == 12 {
            v >= 0xFF8
        } else {
            v >= 0xFFF8
        }
    }

    /// The bad-cluster marker.
    pub fn bad(&self) -> u32 {
        if self.bits == 12 { 0xFF7 } else { 0xFFF7 }
    }

    /// Reads FAT copy `copy`.
    pub fn read_table(&self, disk: &mut Disk, copy: u32) -> Result<Table, FatError> {
        let mut bytes = vec![0u8; self.fat_bytes as usize];
        disk.read_at(self.fat_offset(copy), &mut bytes)
            .map_err(|e| FatError::Read {
                offset: self.start,
                file: format!("(FAT copy {})", copy + 1),
                detail: e.to_string(),
            })?;
        Ok(Table {
            bytes,
            bits: self.bits,
        })
    }

    /// Reads the root directory region.
    pub fn read_root(&self, disk: &mut Disk) -> Result<Vec<u8>, FatError> {
        let mut bytes = vec![0u8; self.root_entries as usize * 32];
        disk.read_at(self.root_start, &mut bytes)
            .map_err(|e| FatError::Read {
                offset: self.start,
                file: "(root directory)".to_string(),
                detail: e.to_string(),
            })?;
        Ok(bytes)
    }
}

/// One FAT copy in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub bytes: Vec<u8>,
    bits: u8,
}

impl Table {
    /// The entry of cluster `c`.
    pub fn get(&self, c: u32) -> u32 {
        let c = c as usize;
        if self.bits == 16 {
            le16(&self.bytes, c * 2)
        } else {
            let at = c + c / 2;
            let v = le16(&self.bytes, at);
            if c.is_multiple_of(2) {
                v & 0xFFF
            } else {
                v >> 4
            }
        }
    }

    /// Sets the entry of cluster `c`.
    pub fn set(&mut self, c: u32, v: u32) {
        let c = c as usize;
        if self.bits == 16 {
            self.bytes[c * 2..c * 2 + 2].copy_from_slice(&(v as u16).to_le_bytes());
        } else {
            let at = c + c / 2;
            let old = le16(&self.bytes, at);
            let new = if c.is_multiple_of(2) {
                (old & 0xF000) | (v & 0xFFF)
            } else {
                (old & 0x000F) | ((v & 0xFFF) << 4)
            };
            self.bytes[at..at + 2].copy_from_slice(&(new as u16).to_le_bytes());
        }
    }
}

/// Attribute bits of a directory entry.
pub const ATTR_DIR: u8 = 0x10;
pub const ATTR_VOLUME: u8 = 0x08;
pub const ATTR_LFN: u8 = 0x0F;

/// A short (8.3) directory entry in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index in its directory (the root's fixed region, or a directory's cluster chain).
    pub index: usize,
    /// Absolute disk offset of the entry's 32 bytes.
    pub offset: u64,
    pub raw: [u8; 32],
}

impl Entry {
    pub fn attr(&self) -> u8 {
        self.raw[11]
    }
    pub fn is_dir(&self) -> bool {
        self.attr() & ATTR_DIR != 0
    }
    pub fn is_volume_label(&self) -> bool {
        self.attr() & ATTR_VOLUME != 0 && !self.is_dir()
    }
    pub fn first_cluster(&self) -> u32 {
        le16(&self.raw, 26)
    }
    pub fn size(&self) -> u64 {
        u64::from(le32(&self.raw, 28))
    }
    /// The name as `NAME.EXT`, upper case as stored.
    pub fn short_name(&self) -> String {
        let base = String::from_utf8_lossy(&self.raw[0..8])
            .trim_end()
            .to_string();
        let ext = String::from_utf8_lossy(&self.raw[8..11])
            .trim_end()
            .to_string();
        if ext.is_empty() {
            base
        } else {
            format!("{base}.{ext}")
        }
    }
    /// Whether this is `.` or `..`.
    pub fn is_dot(&self) -> bool {
        self.raw[0] == b'.'
    }
}

/// The entries in use of a directory's bytes (`base` is the absolute offset of `bytes[0]`, or
/// `None` per entry when the bytes span clusters that are not contiguous: see `offsets`).
pub fn entries(bytes: &[u8], offsets: &dyn Fn(usize) -> u64) -> Vec<Entry> {
    let mut out = Vec::new();
    for (index, e) in bytes.chunks_exact(32).enumerate() {
        match e[0] {
            0 => break,
            0xE5 => continue,
            _ if e[11] & 0x3F == ATTR_LFN => continue,
            _ => {}
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(e);
        out.push(Entry {
            index,
            offset: offsets(index),
            raw,
        });
    }
    out
}

/// The 11 bytes a root file name is stored as in its short entry (`state.tgz` -> `STATE   TGZ`),
/// or `None` when the name is not a plain 8.3 name.
pub fn short_form(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    let ok = |s: &str, max| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'~')
    };
    if !ok(base, 8) || !(ext.is_empty() || ok(ext, 3)) {
        return None;
    }
    let mut out = [b' '; 11];
    for (i, b) in base.bytes().enumerate() {
        out[i] = b.to_ascii_uppercase();
    }
    for (i, b) in ext.bytes().enumerate() {
        out[8 + i] = b.to_ascii_uppercase();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat12_entries_pack_two_in_three_bytes() {
        let mut t = Table {
            bytes: vec![0; 12],
            bits: 12,
        };
        t.set(2, 0xABC);
        t.set(3, 0x123);
        assert_eq!(&t.bytes[3..6], &[0xBC, 0x3A, 0x12]);
        assert_eq!((t.get(2), t.get(3)), (0xABC, 0x123));
        t.set(2, 0);
        assert_eq!((t.get(2), t.get(3)), (0, 0x123));
    }

    #[test]
    fn fat16_entries_are_little_endian_words() {
        let mut t = Table {
            bytes: vec![0; 8],
            bits: 16,
        };
        t.set(3, 0xFFFF);
        t.set(2, 3);
        assert_eq!(t.bytes, [0, 0, 0, 0, 3, 0, 0xFF, 0xFF]);
    }

    #[test]
    fn short_forms_are_padded_upper_case() {
        assert_eq!(&short_form("state.tgz").unwrap(), b"STATE   TGZ");
        assert_eq!(&short_form("boot.cfg").unwrap(), b"BOOT    CFG");
        assert_eq!(&short_form("useropts.gz").unwrap(), b"USEROPTSGZ ");
        assert_eq!(short_form("a.long.name"), None);
        assert_eq!(short_form("toolongname.tgz"), None);
    }
}
