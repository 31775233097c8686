//! The bottom layer: a disk image or block device opened read-only, read through a small block
//! cache that counts every byte it fetches.
//!
//! Reading a boot disk must cost the same for a 16 GiB and a 2 TiB disk: the layers above seek
//! to the few structures they need, and this cache turns the FAT driver's many tiny reads into a
//! few aligned ones. The byte counter is what the benchmark reports.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Cache block size: large enough to cover a FAT sector run or a directory cluster in one read.
pub const BLOCK: u64 = 64 * 1024;
/// Blocks kept at most (16 MiB), so memory does not grow with what is read.
const MAX_BLOCKS: usize = 256;

/// Errors of the disk layer.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk: cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("disk: read failed at byte {offset}: {source}")]
    Read { offset: u64, source: io::Error },
    #[error("disk: need bytes {offset}..{end} but the image ends at {len} (truncated image?)")]
    Short { offset: u64, end: u64, len: u64 },
}

/// A read-only, cached, counted view of a whole disk or image.
pub struct Disk {
    file: File,
    len: u64,
    cache: HashMap<u64, Vec<u8>>,
    order: Vec<u64>,
    bytes_read: u64,
    reads: u64,
    pub is_block_device: bool,
}

impl Disk {
    /// Opens a path read-only. Block devices report their size through seeking to the end.
    pub fn open(path: &Path) -> Result<Disk, DiskError> {
        let open_err = |source| DiskError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        use std::os::unix::fs::FileTypeExt;
        let is_block_device = meta.file_type().is_block_device();
        let len = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        Ok(Disk {
            file,
            len,
            cache: HashMap::new(),
            order: Vec::new(),
            bytes_read: 0,
            reads: 0,
            is_block_device,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes fetched from the underlying file so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Read calls made on the underlying file so far.
    pub fn read_calls(&self) -> u64 {
        self.reads
    }

    fn block(&mut self, index: u64) -> io::Result<&[u8]> {
        if !self.cache.contains_key(&index) {
            let start = index * BLOCK;
            let want = BLOCK.min(self.len.saturating_sub(start)) as usize;
            let mut buf = vec![0u8; want];
            self.file.seek(SeekFrom::Start(start))?;
            self.file.read_exact(&mut buf)?;
            self.bytes_read += want as u64;
            self.reads += 1;
            if self.order.len() >= MAX_BLOCKS {
                let old = self.order.remove(0);
                self.cache.remove(&old);
            }
            self.order.push(index);
            self.cache.insert(index, buf);
        }
        Ok(&self.cache[&index])
    }

    /// Reads `buf.len()` bytes at `offset`, all or an error.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(DiskError::Short {
                offset,
                end,
                len: self.len,
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = (pos % BLOCK) as usize;
            let block = self.block(pos / BLOCK).map_err(|source| DiskError::Read {
                offset: pos,
                source,
            })?;
            let n = (block.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// A Read + Seek view of the whole disk, for crates that want one (gptman, mbrman).
    pub fn whole(&mut self) -> Slice<'_> {
        let len = self.len;
        Slice::new(self, 0, len)
    }
}

/// A window `[start, start+len)` of a disk, used for one partition. Writes are refused: this
/// layer is read-only and a FAT driver that tried to write would get an error, never the disk.
pub struct Slice<'a> {
    disk: &'a mut Disk,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Slice<'a> {
    pub fn new(disk: &'a mut Disk, start: u64, len: u64) -> Slice<'a> {
        Slice {
            disk,
            start,
            len,
            pos: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Absolute disk offset of a position in this slice.
    pub fn absolute(&self, pos: u64) -> u64 {
        self.start + pos
    }
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let abs = self.start + self.pos;
        let avail = self.disk.len.saturating_sub(abs).min(n as u64) as usize;
        if avail == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "image ends at byte {} before the partition does",
                    self.disk.len
                ),
            ));
        }
        self.disk
            .read_at(abs, &mut buf[..avail])
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.pos += avail as u64;
        Ok(avail)
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )),
        }
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "bootbank opened this disk read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
