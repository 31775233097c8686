//! The bottom layer: a disk image or block device, read through a small block cache that counts
//! every byte it fetches, and written only when opened for writing.
//!
//! Reading a boot disk must cost the same for a 16 GiB and a 2 TiB disk: the layers above seek
//! to the few structures they need, and this cache turns the FAT driver's many tiny reads into a
//! few aligned ones. The byte counter is what the benchmark reports.
//!
//! Writes go straight through to the storage with `pwrite(2)` (the cache is updated, never
//! written back later), so every write the layers above make is one system call that a fault
//! injection test can interrupt.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::io::vmdk::{self, Access, Descriptor, VmdkError};

/// Where a [`Disk`]'s bytes live: a file or block device, or a test double that fails on cue.
pub trait Storage {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes written data durable.
    fn sync(&mut self) -> io::Result<()>;
}

impl Storage for File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// One flat extent of a VMDK: disk bytes `[start, start+len)` live in `file` from `base`.
struct ExtentPart {
    start: u64,
    len: u64,
    file: File,
    base: u64,
}

/// The flat extents of a VMDK as one storage; a read or write that spans extents is split.
struct Extents {
    parts: Vec<ExtentPart>,
}

impl Extents {
    /// Calls `f(file, file_offset, range_in_buf)` for each extent piece of `[offset, offset+n)`.
    fn each(
        &self,
        offset: u64,
        n: usize,
        mut f: impl FnMut(&File, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut done = 0usize;
        while done < n {
            let pos = offset + done as u64;
            let part = self
                .parts
                .iter()
                .find(|p| pos >= p.start && pos < p.start + p.len)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("byte {pos} is past the last extent"),
                    )
                })?;
            let within = pos - part.start;
            let take = ((part.len - within) as usize).min(n - done);
            f(&part.file, part.base + within, done..done + take)?;
            done += take;
        }
        Ok(())
    }
}

impl Storage for Extents {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let n = buf.len();
        self.each(offset, n, |file, at, r| file.read_exact_at(&mut buf[r], at))
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.each(offset, buf.len(), |file, at, r| {
            file.write_all_at(&buf[r], at)
        })
    }
    fn sync(&mut self) -> io::Result<()> {
        self.parts.iter().try_for_each(|p| p.file.sync_all())
    }
}

/// Cache block size: one page, covering a run of FAT or directory sectors. Measured: 64 KiB blocks
/// read and touched more memory (page faults dominated a 16 GiB inspect); reads of a block or more
/// bypass the cache.
pub const BLOCK: u64 = 4 * 1024;
/// Blocks kept at most (1 MiB), so memory does not grow with what is read.
const MAX_BLOCKS: usize = 256;

/// Errors of the disk layer.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk: cannot open {}: {cause}", .path.display())]
    Open { path: PathBuf, cause: io::Error },
    #[error("disk: read failed at byte {offset}: {cause}")]
    Read { offset: u64, cause: io::Error },
    #[error("disk: need bytes {offset}..{end} but the image ends at {len} (truncated image?)")]
    Short { offset: u64, end: u64, len: u64 },
    #[error("disk: write failed at byte {offset}: {cause}")]
    Write { offset: u64, cause: io::Error },
    #[error("disk: {} is read-only ({cause}); nothing was written", .path.display())]
    ReadOnly { path: PathBuf, cause: io::Error },
    #[error(
        "disk: {} is in use ({why}); unmount it or stop what holds it, nothing was written",
        .path.display()
    )]
    Busy { path: PathBuf, why: String },
    #[error(transparent)]
    Container(#[from] VmdkError),
}

/// A cached, counted view of a whole disk or image; read-only unless opened with
/// [`Disk::open_rw`].
pub struct Disk {
    storage: Box<dyn Storage>,
    len: u64,
    cache: HashMap<u64, Vec<u8>>,
    order: Vec<u64>,
    bytes_read: u64,
    reads: u64,
    bytes_written: u64,
    writes: u64,
    syncs: u64,
    writable: bool,
    pub is_block_device: bool,
    /// The VMDK descriptor the bytes were found through, if any.
    descriptor: Option<PathBuf>,
}

impl Disk {
    /// Opens a path read-only. Block devices report their size through seeking to the end.
    pub fn open(path: &Path) -> Result<Disk, DiskError> {
        match Disk::open_file(path)? {
            (_, Some(d)) => Disk::open_extents(d, false),
            (disk, None) => Ok(disk),
        }
    }

    /// The file itself, read-only, and the VMDK descriptor it holds, if any (formats that need
    /// converting are refused here).
    fn open_file(path: &Path) -> Result<(Disk, Option<Descriptor>), DiskError> {
        let open_err = |cause| DiskError::Open {
            path: path.to_path_buf(),
            cause,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let len = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        let mut disk = Disk::from_storage(Box::new(file), len, false);
        disk.is_block_device = meta.file_type().is_block_device();
        let descriptor = disk.container(path, meta.is_file())?;
        Ok((disk, descriptor))
    }

    /// Looks at the first bytes (through the cache: the layers above read them next anyway)
    /// for a format to refuse, and reads a small regular file whole for a VMDK descriptor.
    fn container(&mut self, path: &Path, regular: bool) -> Result<Option<Descriptor>, DiskError> {
        let magic = self.head(4)?;
        vmdk::refuse_converted(&magic, path)?;
        if !(regular && vmdk::may_be_descriptor(self.len)) {
            return Ok(None);
        }
        let bytes = self.head(self.len as usize)?;
        Ok(vmdk::descriptor(&bytes, path)?)
    }

    /// Opens the flat extents a VMDK descriptor names, as one disk. Writing takes the same
    /// exclusive lock on every extent file as on an image file, so that two bootbanks never
    /// write the same flat file.
    fn open_extents(d: Descriptor, write: bool) -> Result<Disk, DiskError> {
        d.check_extents()?;
        let mut parts = Vec::with_capacity(d.extents.len());
        let mut start = 0u64;
        for e in &d.extents {
            if write && e.access == Access::ReadOnly {
                return Err(DiskError::ReadOnly {
                    path: e.file.clone(),
                    cause: io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} line {} marks this extent RDONLY",
                            d.path.display(),
                            e.line
                        ),
                    ),
                });
            }
            let file = OpenOptions::new()
                .read(true)
                .write(write)
                .open(&e.file)
                .map_err(|source| match source.raw_os_error() {
                    Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) if write => {
                        DiskError::ReadOnly {
                            path: e.file.clone(),
                            cause: source,
                        }
                    }
                    _ => DiskError::Container(d.extent_err(e, source)),
                })?;
            if write {
                file.try_lock().map_err(|_| DiskError::Busy {
                    path: e.file.clone(),
                    why: "another process holds a lock on it (another bootbank?)".to_string(),
                })?;
            }
            let len = e.sectors * vmdk::SECTOR;
            parts.push(ExtentPart {
                start,
                len,
                file,
                base: e.offset * vmdk::SECTOR,
            });
            start += len;
        }
        let mut disk = Disk::from_storage(Box::new(Extents { parts }), start, write);
        disk.descriptor = Some(d.path);
        Ok(disk)
    }

    /// The VMDK descriptor this disk was opened through: the bytes live in its extents, so
    /// whoever wants to read or replace the target as a whole file must not use the given path.
    pub fn descriptor(&self) -> Option<&Path> {
        self.descriptor.as_deref()
    }

    /// Opens a path for writing, exclusively: a block device with `O_EXCL` (the kernel refuses
    /// it while a partition is mounted or held by another user), after checking the mount
    /// table; an image file with an exclusive advisory lock held while the `Disk` lives.
    pub fn open_rw(path: &Path) -> Result<Disk, DiskError> {
        let meta = std::fs::metadata(path).map_err(|cause| DiskError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
        let is_block_device = meta.file_type().is_block_device();
        // A descriptor is replaced by its extents, and a format to refuse is refused, before
        // anything is opened for writing.
        if let (_, Some(d)) = Disk::open_file(path)? {
            return Disk::open_extents(d, true);
        }
        if is_block_device && let Some(m) = mounted_from(path) {
            return Err(DiskError::Busy {
                path: path.to_path_buf(),
                why: format!("{m} is mounted"),
            });
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if is_block_device {
            opts.custom_flags(libc::O_EXCL);
        }
        let mut file =
            opts.open(path).map_err(|source| {
                match source.raw_os_error() {
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => DiskError::ReadOnly {
                path: path.to_path_buf(),
                cause: source,
            },
            Some(libc::EBUSY) => DiskError::Busy {
                path: path.to_path_buf(),
                why: "the kernel reports it busy: mounted, or held by RAID, LVM or another program"
                    .to_string(),
            },
            _ => DiskError::Open {
                path: path.to_path_buf(),
                cause: source,
            },
        }
            })?;
        if !is_block_device {
            file.try_lock().map_err(|_| DiskError::Busy {
                path: path.to_path_buf(),
                why: "another process holds a lock on it (another bootbank?)".to_string(),
            })?;
        }
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|cause| DiskError::Open {
                path: path.to_path_buf(),
                cause,
            })?;
        let mut disk = Disk::from_storage(Box::new(file), len, true);
        disk.is_block_device = is_block_device;
        Ok(disk)
    }

    /// A disk over any storage; tests use this to inject failures.
    pub fn from_storage(storage: Box<dyn Storage>, len: u64, writable: bool) -> Disk {
        Disk {
            storage,
            len,
            cache: HashMap::new(),
            order: Vec::new(),
            bytes_read: 0,
            reads: 0,
            bytes_written: 0,
            writes: 0,
            syncs: 0,
            writable,
            is_block_device: false,
            descriptor: None,
        }
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Write calls made so far.
    pub fn write_calls(&self) -> u64 {
        self.writes
    }

    /// Forgets cached blocks so the next reads come from the storage: used to verify what was
    /// written by reading it back.
    pub fn drop_cache(&mut self) {
        self.cache.clear();
        self.order.clear();
    }

    /// Writes `buf` at `offset` straight through to the storage, keeping the cache coherent.
    pub fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let end = offset.saturating_add(buf.len() as u64);
        if !self.writable {
            return Err(DiskError::Write {
                offset,
                cause: io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"),
            });
        }
        if end > self.len {
            return Err(DiskError::Short {
                offset,
                end,
                len: self.len,
            });
        }
        self.storage
            .write_at(offset, buf)
            .map_err(|cause| DiskError::Write {
                offset,
                cause,
            })?;
        self.bytes_written += buf.len() as u64;
        self.writes += 1;
        for index in offset / BLOCK..=(end.saturating_sub(1)) / BLOCK {
            if let Some(block) = self.cache.get_mut(&index) {
                let bstart = index * BLOCK;
                let from = offset.max(bstart);
                let to = end.min(bstart + block.len() as u64);
                if from < to {
                    block[(from - bstart) as usize..(to - bstart) as usize]
                        .copy_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
                }
            }
        }
        Ok(())
    }

    /// Flushes (fsync calls) made so far.
    pub fn sync_calls(&self) -> u64 {
        self.syncs
    }

    /// Makes everything written so far durable (fsync).
    pub fn sync(&mut self) -> Result<(), DiskError> {
        self.syncs += 1;
        self.storage.sync().map_err(|cause| DiskError::Write {
            offset: 0,
            cause,
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
            self.storage.read_at(start, &mut buf)?;
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
        // Large reads (file contents in big clusters) go straight into the caller's buffer: the
        // cache is for the small scattered reads of tables and directories, and copying through
        // it would only touch more memory. Writes keep the storage current, so this is coherent.
        if buf.len() as u64 >= BLOCK {
            self.storage
                .read_at(offset, buf)
                .map_err(|cause| DiskError::Read {
                    offset,
                    cause,
                })?;
            self.bytes_read += buf.len() as u64;
            self.reads += 1;
            return Ok(());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = (pos % BLOCK) as usize;
            let block = self.block(pos / BLOCK).map_err(|cause| DiskError::Read {
                offset: pos,
                cause,
            })?;
            let n = (block.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// The first `max` bytes (fewer for a smaller file), to tell what the target is.
    pub fn head(&mut self, max: usize) -> Result<Vec<u8>, DiskError> {
        let mut head = vec![0u8; max.min(self.len as usize)];
        self.read_at(0, &mut head)?;
        Ok(head)
    }

    /// A Read + Seek view of the whole disk, for crates that want one (gptman, mbrman).
    pub fn whole(&mut self) -> Slice<'_> {
        let len = self.len;
        Slice::new(self, 0, len)
    }
}

/// Shared record of a [`Slice`]'s last read: absolute disk offset and length.
pub type ReadTrace = std::rc::Rc<std::cell::Cell<Option<(u64, usize)>>>;

/// A window `[start, start+len)` of a disk, used for one partition. Writes are refused: this
/// layer is read-only and a FAT driver that tried to write would get an error, never the disk.
pub struct Slice<'a> {
    disk: &'a mut Disk,
    start: u64,
    len: u64,
    pos: u64,
    /// Where the last read went (absolute offset and length), when traced: lets the FAT layer
    /// say which disk byte holds a given byte of a file, without this crate computing cluster
    /// offsets itself.
    trace: Option<ReadTrace>,
}

impl<'a> Slice<'a> {
    pub fn new(disk: &'a mut Disk, start: u64, len: u64) -> Slice<'a> {
        Slice {
            disk,
            start,
            len,
            pos: 0,
            trace: None,
        }
    }

    /// Records the absolute offset and length of every read into `cell` (the last one wins).
    pub fn traced(mut self, cell: ReadTrace) -> Self {
        self.trace = Some(cell);
        self
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
        if let Some(t) = &self.trace {
            t.set(Some((abs, avail)));
        }
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
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.disk.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "bootbank opened this disk read-only",
            ));
        }
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.disk
            .write_at(self.start + self.pos, &buf[..n])
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The mounted file system, if any, whose source is this block device or one of its partitions.
fn mounted_from(dev: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(dev).ok()?.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(src), Some(dir)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(m) = std::fs::metadata(src) else {
            continue;
        };
        if !m.file_type().is_block_device() {
            continue;
        }
        let (ma, mi) = (libc::major(m.rdev()), libc::minor(m.rdev()));
        // Same device, or a partition of it (sysfs names the parent of a partition).
        let parent = std::fs::read_link(format!("/sys/dev/block/{ma}:{mi}"))
            .ok()
            .and_then(|p| {
                let parent = p.parent()?.file_name()?.to_string_lossy().into_owned();
                std::fs::read_to_string(format!("/sys/class/block/{parent}/dev")).ok()
            });
        if (ma, mi) == (major, minor)
            || parent.as_deref().map(str::trim) == Some(&format!("{major}:{minor}"))
        {
            return Some(format!("{src} on {dir}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two extents, the second at an offset in its file: reads and writes across the boundary
    /// are split, the bytes before the offset are never touched.
    #[test]
    fn extents_split_reads_and_writes() {
        let dir = std::env::temp_dir().join(format!("bootbank-extents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, [1u8; 1024]).unwrap();
        std::fs::write(
            &b,
            [9u8; 512]
                .iter()
                .chain(&[2u8; 1024])
                .copied()
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let text = format!(
            "# Disk DescriptorFile\nRW 2 FLAT \"{}\" 0\nRW 2 FLAT \"{}\" 1\n",
            a.display(),
            b.display()
        );
        let d = Descriptor::parse(&text, &dir.join("x.vmdk")).unwrap();
        let mut disk = Disk::open_extents(d.clone(), true).unwrap();
        assert_eq!(disk.len(), 2048);
        let mut buf = [0u8; 8];
        disk.read_at(1020, &mut buf).unwrap();
        assert_eq!(buf, [1, 1, 1, 1, 2, 2, 2, 2]);
        disk.write_at(1022, &[7u8; 4]).unwrap();
        drop(disk);
        let a_bytes = std::fs::read(&a).unwrap();
        let b_bytes = std::fs::read(&b).unwrap();
        assert_eq!(&a_bytes[1020..], &[1, 1, 7, 7]);
        assert_eq!(&b_bytes[510..516], &[9, 9, 7, 7, 2, 2]);
        let mut disk = Disk::open_extents(d, false).unwrap();
        assert!(matches!(
            disk.read_at(2040, &mut [0u8; 16]),
            Err(DiskError::Short { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The errors that name a file carry it as given, byte for byte (a Linux file name need not
    /// be UTF-8), and show it as `Path::display` does, one U+FFFD per bad byte.
    #[test]
    fn errors_carry_the_path_as_given() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("bootbank-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shown = format!("{}/img-\u{FFFD}", dir.display());

        let missing = dir.join(OsStr::from_bytes(b"img-\xff"));
        let e = Disk::open(&missing).err().unwrap();
        assert!(matches!(&e, DiskError::Open { path, .. } if *path == missing), "{e}");
        assert_eq!(
            e.to_string(),
            format!("disk: cannot open {shown}: No such file or directory (os error 2)")
        );

        std::fs::write(&missing, [0u8; 1024]).unwrap();
        let held = Disk::open_rw(&missing).unwrap();
        let e = Disk::open_rw(&missing).err().unwrap();
        assert!(matches!(&e, DiskError::Busy { path, .. } if *path == missing), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "disk: {shown} is in use (another process holds a lock on it (another bootbank?)); unmount it or stop what holds it, nothing was written"
            )
        );
        drop(held);

        let descriptor = dir.join("x.vmdk");
        let text = "# Disk DescriptorFile\nRDONLY 2 FLAT \"img-\u{FFFD}\" 0\n";
        let mut d = Descriptor::parse(text, &descriptor).unwrap();
        // Descriptor text is UTF-8, so the non-UTF-8 extent file is put in by hand.
        d.extents[0].file = missing.clone();
        let e = Disk::open_extents(d, true).err().unwrap();
        assert!(matches!(&e, DiskError::ReadOnly { path, .. } if *path == missing), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "disk: {shown} is read-only ({}/x.vmdk line 2 marks this extent RDONLY); nothing was written",
                dir.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
