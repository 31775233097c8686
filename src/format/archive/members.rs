//! Listing a tar held in memory (through the `tar` crate), with each member's header and data
//! offsets so an edit can replace one member in place.

use super::ArchiveError;

/// One tar member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name as stored (long names resolved), without a leading `./`.
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub mode: u32,
    /// Tar type flag byte (`b'0'` regular file, `b'5'` directory, ...).
    pub kind: u8,
    /// Offset of the member's ustar header in the decompressed tar.
    pub header_offset: u64,
    /// Offset of the member's data in the decompressed tar.
    pub data_offset: u64,
}

impl Member {
    pub fn is_file(&self) -> bool {
        self.kind == b'0' || self.kind == 0 || self.kind == b'7'
    }
}

/// Lists a tar held in memory; ustar, GNU and pax headers are understood by the `tar` crate.
pub fn list_tar(tar_bytes: &[u8], label: &str) -> Result<Vec<Member>, ArchiveError> {
    let err = |offset: u64, detail: String| ArchiveError::Tar {
        archive: label.to_string(),
        offset,
        detail,
    };
    if tar_bytes.len() < 512 {
        return Err(err(
            0,
            format!(
                "only {} bytes, shorter than one tar header",
                tar_bytes.len()
            ),
        ));
    }
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive.entries().map_err(|e| err(0, e.to_string()))?;
    let mut members = Vec::new();
    let mut last_end = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| err(last_end, e.to_string()))?;
        let header_offset = entry.raw_header_position();
        let data_offset = entry.raw_file_position();
        let header = entry.header();
        let size = entry.size();
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let end = data_offset.saturating_add(size);
        if end > tar_bytes.len() as u64 {
            return Err(ArchiveError::Truncated {
                archive: label.to_string(),
                member: name,
                offset: data_offset,
                size,
                len: tar_bytes.len() as u64,
            });
        }
        members.push(Member {
            name,
            size,
            mtime: header.mtime().unwrap_or(0),
            mode: header.mode().unwrap_or(0),
            kind: header.as_bytes()[156],
            header_offset,
            data_offset,
        });
        last_end = end;
    }
    if members.is_empty() && tar_bytes.iter().take(512).any(|&b| b != 0) {
        return Err(err(0, "no valid tar header".to_string()));
    }
    Ok(members)
}
