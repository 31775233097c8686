//! The partition table layer: GPT (512- and 4096-byte sectors, primary or backup header) and MBR
//! with logical partitions (hosts upgraded from ESXi 4.x), read with the `gptman` and `mbrman`
//! crates.

use crate::io::disk::Disk;
use serde::Serialize;

/// GPT type GUIDs ESXi uses, with the role each plays.
pub const GPT_TYPES: [(&str, &str); 6] = [
    ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System"),
    ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Basic Data"),
    ("AA31E02A-400F-11DB-9590-000C2911D1B8", "VMFS"),
    ("9D275380-40AD-11DB-BF97-000C2911D1B8", "vmkDiagnostic"),
    ("4EB2EA39-7855-4790-A79E-FAE495E21F8D", "VMFS-L (OSDATA)"),
    ("381CFCCC-7288-11E0-92EE-000C2911D0B2", "vSAN"),
];
const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
/// MBR type bytes of FAT file systems, the ones an MBR bootbank may carry.
const MBR_FAT_TYPES: [u8; 6] = [0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e];

/// Which kind of partition table the disk carries; serialized as `"gpt"` or `"mbr"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// GPT, read from the primary header or, when that is damaged or missing, the backup one;
    /// sectors of 512 or 4096 bytes.
    Gpt,
    /// MBR with 512-byte sectors, banks 5 and 6 as logical partitions in the extended one: a
    /// host upgraded from ESXi 4.x.
    Mbr,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub number: u32,
    pub first_lba: u64,
    pub last_lba: u64,
    /// GPT type GUID (upper case, dashed) or MBR type byte as `0x0e`.
    pub type_id: String,
    /// Human name of the type, when ESXi uses it.
    pub type_name: Option<&'static str>,
    /// GPT partition name (empty for MBR).
    pub name: String,
}

/// The table as read.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub scheme: Scheme,
    pub sector_size: u64,
    pub partitions: Vec<Partition>,
    /// Things the user should know, such as a damaged primary GPT header.
    pub warnings: Vec<String>,
}

/// Errors of the partition table layer.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition table: image is {len} bytes, too small to hold one")]
    TooSmall { len: u64 },
    #[error("partition table: no GPT header at byte 512 or 4096 and no MBR signature at byte 510")]
    NotFound,
    #[error("partition table: GPT ({sector_size}-byte sectors) unreadable: {detail}")]
    Gpt { sector_size: u64, detail: String },
    #[error("partition table: MBR unreadable: {detail}")]
    Mbr { detail: String },
    #[error("partition table: {0}")]
    Disk(crate::io::disk::DiskError),
}

// By hand rather than `#[from]`, which would also make the disk error the `source()` of one
// whose message already holds it.
impl From<crate::io::disk::DiskError> for PartitionError {
    fn from(e: crate::io::disk::DiskError) -> Self {
        PartitionError::Disk(e)
    }
}

impl Partition {
    /// Byte range of the partition on the disk.
    pub fn byte_start(&self, sector_size: u64) -> u64 {
        self.first_lba * sector_size
    }

    pub fn byte_len(&self, sector_size: u64) -> u64 {
        (self.last_lba + 1 - self.first_lba) * sector_size
    }

    /// Whether the bootloader would look for a bootbank here: GPT Basic Data or EFI System, or
    /// an MBR FAT type.
    pub fn may_be_bank(&self) -> bool {
        self.type_id == BASIC_DATA
            || self.type_id == EFI_SYSTEM
            || MBR_FAT_TYPES
                .iter()
                .any(|t| self.type_id == format!("0x{t:02x}"))
    }
}

/// Formats GPT's mixed-endian GUID bytes the usual way.
pub fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..]
            .iter()
            .map(|x| format!("{x:02X}"))
            .collect::<String>()
    )
}

fn type_name(id: &str) -> Option<&'static str> {
    GPT_TYPES.iter().find(|(g, _)| *g == id).map(|(_, n)| *n)
}

/// Whether the first bytes of a disk look like a partitioned disk (GPT or MBR with partitions).
pub fn looks_partitioned(head: &[u8]) -> bool {
    let gpt_at = |o: usize| head.len() >= o + 8 && &head[o..o + 8] == b"EFI PART";
    gpt_at(512) || gpt_at(4096) || (head.len() >= 512 && head[510] == 0x55 && head[511] == 0xAA)
}

/// Reads the partition table.
pub fn read(disk: &mut Disk) -> Result<Table, PartitionError> {
    if disk.len() < 1024 {
        return Err(PartitionError::TooSmall { len: disk.len() });
    }
    let head = disk.head(8192)?;
    let gpt_at = |o: usize| head.len() >= o + 8 && &head[o..o + 8] == b"EFI PART";
    let mbr_sig = head[510] == 0x55 && head[511] == 0xAA;
    let protective = mbr_sig && (0..4).any(|i| head[446 + i * 16 + 4] == 0xEE);
    let mut warnings = Vec::new();
    let sector_size = if gpt_at(512) {
        Some(512)
    } else if gpt_at(4096) {
        Some(4096)
    } else if protective {
        warnings.push(
            "primary GPT header missing: read the backup header at the end of the disk".to_string(),
        );
        None
    } else {
        if mbr_sig {
            return read_mbr(disk, warnings);
        }
        return Err(PartitionError::NotFound);
    };
    let sizes: Vec<u64> = match sector_size {
        Some(s) => vec![s],
        None => vec![512, 4096],
    };
    let mut last_err = (512, String::new());
    for ss in &sizes {
        // gptman reads the 128 entries field by field; a buffer turns thousands of small reads
        // into a few. Smaller than a cache block, so every read still goes through the cache
        // and the bytes read from the disk stay the same.
        let mut reader =
            std::io::BufReader::with_capacity(crate::io::disk::BLOCK as usize / 2, disk.whole());
        match gptman::GPT::read_from(&mut reader, *ss) {
            Ok(gpt) => {
                if gpt.header.primary_lba != 1 && sector_size.is_some() {
                    warnings.push(format!(
                        "primary GPT header at LBA 1 is damaged: using the backup header at LBA {}",
                        gpt.header.primary_lba
                    ));
                }
                let partitions = gpt
                    .iter()
                    .filter(|(_, p)| p.is_used())
                    .map(|(n, p)| {
                        let type_id = guid_string(&p.partition_type_guid);
                        Partition {
                            number: n,
                            first_lba: p.starting_lba,
                            last_lba: p.ending_lba,
                            type_name: type_name(&type_id),
                            type_id,
                            name: p.partition_name.as_str().to_string(),
                        }
                    })
                    .collect();
                return Ok(Table {
                    scheme: Scheme::Gpt,
                    sector_size: *ss,
                    partitions,
                    warnings,
                });
            }
            Err(e) => last_err = (*ss, flatten(&e)),
        }
    }
    Err(PartitionError::Gpt {
        sector_size: last_err.0,
        detail: last_err.1,
    })
}

fn flatten(e: &gptman::Error) -> String {
    match e {
        gptman::Error::ReadError(a, b) => {
            format!(
                "primary header: {}; backup header: {}",
                flatten(a),
                flatten(b)
            )
        }
        other => other.to_string(),
    }
}

fn read_mbr(disk: &mut Disk, mut warnings: Vec<String>) -> Result<Table, PartitionError> {
    let extended = |m: &mbrman::MBRHeader| {
        m.iter()
            .find(|(_, p)| matches!(p.sys, 0x05 | 0x0f | 0x85))
            .map(|(_, p)| p.starting_lba)
    };
    let mbr = mbrman::MBR::read_from(&mut disk.whole(), 512).map_err(|e| {
        let chain = mbrman::MBRHeader::read_from(&mut disk.whole())
            .ok()
            .as_ref()
            .and_then(extended)
            .map(|lba| {
                format!(
                    " in the chain of extended boot records starting at LBA {lba} (byte {})",
                    u64::from(lba) * 512
                )
            })
            .unwrap_or_default();
        PartitionError::Mbr {
            detail: format!("{e}{chain}"),
        }
    })?;
    if let Some(lba) = extended(&mbr.header)
        && mbr.logical_partitions.is_empty()
    {
        warnings.push(format!(
            "the extended partition at LBA {lba} holds no readable logical partition (no 55 AA signature in its first extended boot record at byte {}?): banks 5 and 6 of an MBR host live there",
            u64::from(lba) * 512
        ));
    }
    let partitions = mbr
        .iter()
        .filter(|(_, p)| p.is_used() && p.sectors > 0)
        .map(|(n, p)| Partition {
            number: n as u32,
            first_lba: u64::from(p.starting_lba),
            last_lba: u64::from(p.starting_lba) + u64::from(p.sectors) - 1,
            type_id: format!("0x{:02x}", p.sys),
            type_name: match p.sys {
                0x05 | 0x0f | 0x85 => Some("extended"),
                0xfb => Some("VMFS"),
                0xfc => Some("vmkDiagnostic"),
                t if MBR_FAT_TYPES.contains(&t) => Some("FAT"),
                _ => None,
            },
            name: String::new(),
        })
        .collect();
    Ok(Table {
        scheme: Scheme::Mbr,
        sector_size: 512,
        partitions,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_formatting_matches_the_reference() {
        // Basic Data as stored on disk (mixed endian).
        let b = [
            0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26,
            0x99, 0xC7,
        ];
        assert_eq!(guid_string(&b), BASIC_DATA);
    }
}
