//! The bootbank layer: recognise a bank the way ESXi's bootloader does and read what it holds.
//!
//! A bank is a FAT partition whose **second sector** starts with `VMWARE FAT16    ` followed by
//! the bank's 16-byte UUID, and whose `/boot.cfg` parses. Partition names and volume labels vary
//! between versions and are never relied upon.

use crate::esxi::bootcfg::BootCfg;
pub use crate::esxi::bootcfg::BootCfgUnread;
use crate::esxi::leftover::{Leftover, Names};
use crate::esxi::nextboot::{self, Candidate, Prediction};
use crate::format::fat::{FatError, FatVolume, FileInfo};
use crate::format::partition::Partition;
use crate::io::disk::{Disk, DiskError, Slice};
use serde::Serialize;

/// The 16 bytes at the start of a bank's second sector.
pub const MAGIC: &[u8; 16] = b"VMWARE FAT16    ";

/// Module names that mark a bank holding a system image (kernel and payloads), as opposed to the
/// empty second bank a fresh install leaves with only a boot.cfg.
pub fn is_payload(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "b.b00" || n.ends_with(".v00") || n.ends_with(".b00") || n == "s.v00"
}

/// What one bank holds.
#[derive(Debug, Clone, Serialize)]
pub struct Bank {
    pub partition: u32,
    /// The bank UUID in ESXi's `/vmfs/volumes/<uuid>` form.
    pub uuid: String,
    pub fat_type: String,
    #[serde(skip)]
    pub boot_cfg: Result<BootCfg, BootCfgUnread>,
    pub files: Vec<FileInfo>,
    /// Whether the kernel and payload modules are present.
    pub has_system: bool,
    /// Where the bank sits, to reopen it for reading state.tgz.
    #[serde(skip)]
    pub byte_start: u64,
    #[serde(skip)]
    pub byte_len: u64,
}

/// The configuration file of a bank, with what an interrupted write may have left beside it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub names: Names,
    pub leftover: Option<Leftover>,
    /// The file holding the configuration that is (or will be, once the leftover is completed or
    /// undone) in place.
    pub effective: FileInfo,
}

/// What the bootloader's selection sees of `banks`: each one's boot.cfg as read.
pub fn candidates(banks: &[Bank]) -> Vec<Candidate<'_>> {
    banks
        .iter()
        .map(|b| Candidate {
            partition: b.partition,
            boot_cfg: b.boot_cfg.as_ref().map_err(|e| e.clone()),
        })
        .collect()
}

/// Which of `banks` the bootloader will boot next.
pub fn predict(banks: &[Bank]) -> Prediction {
    nextboot::predict(&candidates(banks))
}

impl Bank {
    /// The configuration archive of this bank: `state.tgz`, or on old embedded builds a bare
    /// `local.tgz`; after an interrupted bootbank write, the file recovery would put in place.
    pub fn config_file(&self) -> Option<ConfigFile> {
        let find = |n: &str| {
            self.files
                .iter()
                .find(|f| !f.is_dir && f.name.eq_ignore_ascii_case(n))
        };
        for file in ["state.tgz", "local.tgz"] {
            let names = Names::for_file(file);
            let leftover = Leftover::detect(&self.files, &names);
            let effective = match &leftover {
                Some(l) => find(l.effective(&names)),
                None => find(&names.current),
            };
            if let Some(effective) = effective {
                return Some(ConfigFile {
                    effective: effective.clone(),
                    names,
                    leftover,
                });
            }
        }
        None
    }

    /// The configuration file as listed, for reports.
    pub fn state_file(&self) -> Option<FileInfo> {
        self.config_file().map(|c| c.effective)
    }
}

/// Errors of the bootbank layer; the cause is in the message (not also `source()`).
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("bootbank on partition {partition}: {cause}")]
    Disk { partition: u32, cause: DiskError },
    #[error("bootbank on partition {partition}: {cause}")]
    Fat { partition: u32, cause: FatError },
}

/// Formats the UUID bytes as ESXi shows them: `%08x-%08x-%04x-%012x` of the bytes read as
/// little-endian u32, u32, u16 and then six bytes in order.
pub fn format_uuid(b: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:08x}-{:04x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        u16::from_le_bytes([b[8], b[9]]),
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// Reads the magic sector; returns the UUID when the partition carries the bank magic.
pub fn read_magic(
    disk: &mut Disk,
    start: u64,
    sector_size: u64,
) -> Result<Option<String>, DiskError> {
    let mut sector = [0u8; 32];
    disk.read_at(start + sector_size, &mut sector)?;
    if &sector[..16] != MAGIC {
        return Ok(None);
    }
    let uuid: [u8; 16] = sector[16..32].try_into().expect("16 bytes");
    Ok(Some(format_uuid(&uuid)))
}

/// Probes one partition. `Ok(None)`: not a bank (wrong type or no magic).
pub fn probe(
    disk: &mut Disk,
    part: &Partition,
    sector_size: u64,
) -> Result<Option<Bank>, BankError> {
    if !part.may_be_bank() {
        return Ok(None);
    }
    let start = part.byte_start(sector_size);
    let len = part.byte_len(sector_size);
    probe_at(disk, part.number, start, len, sector_size)
}

/// Probes a bank at a byte range of the disk (a whole partition image uses 0..len).
pub fn probe_at(
    disk: &mut Disk,
    partition: u32,
    start: u64,
    len: u64,
    sector_size: u64,
) -> Result<Option<Bank>, BankError> {
    let disk_err = |cause| BankError::Disk { partition, cause };
    if start + len > disk.len() {
        return Err(disk_err(DiskError::Short {
            offset: start,
            end: start + len,
            len: disk.len(),
        }));
    }
    let Some(uuid) = read_magic(disk, start, sector_size).map_err(disk_err)? else {
        return Ok(None);
    };
    let fat_err = |cause| BankError::Fat { partition, cause };
    let vol = FatVolume::open(Slice::new(disk, start, len)).map_err(fat_err)?;
    let files = vol.root().map_err(fat_err)?;
    let boot_cfg = match vol.read("boot.cfg").map_err(fat_err)? {
        None => Err(BootCfgUnread::Missing {
            file: "boot.cfg".to_string(),
        }),
        Some(bytes) => BootCfg::parse(&bytes).map_err(BootCfgUnread::from),
    };
    let has_system = files.iter().any(|f| !f.is_dir && is_payload(&f.name));
    Ok(Some(Bank {
        partition,
        uuid,
        fat_type: vol.fat_type().to_string(),
        boot_cfg,
        files,
        has_system,
        byte_start: start,
        byte_len: len,
    }))
}

/// Reads one root file of a bank found earlier.
pub fn read_file(disk: &mut Disk, bank: &Bank, name: &str) -> Result<Option<Vec<u8>>, BankError> {
    let fat_err = |cause| BankError::Fat {
        partition: bank.partition,
        cause,
    };
    let vol = FatVolume::open(Slice::new(disk, bank.byte_start, bank.byte_len)).map_err(fat_err)?;
    vol.read(name).map_err(fat_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_format() {
        let b = [
            0x3b, 0xc3, 0xb0, 0x66, 0xf8, 0xdf, 0x53, 0xd2, 0x3e, 0x01, 0x1e, 0x00, 0xf5, 0x00,
            0x01, 0x3e,
        ];
        assert_eq!(format_uuid(&b), "66b0c33b-d253dff8-013e-1e00f500013e");
    }
}
