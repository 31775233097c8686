//! `inspect`: read a target of any supported kind and build one [`Report`] of what the host will
//! boot, with which configuration, and what will go wrong.
//!
//! The target kind is detected from content, never from the file name: a directory holding a
//! bank, a gzip'd tar (state archive, config bundle or local.tgz), a lone FAT partition carrying
//! the bank magic, or a partitioned disk.
//!
//! A file a job: [`report`] is the JSON contract; [`banks`] reads a disk's banks and the
//! configuration of the bank that boots next; [`sources`] reads a directory or an archive given
//! on its own; [`config`] turns a decoded configuration into the report's configuration and
//! devices; `enrich` joins the devices with the rescue system's sysfs.

use crate::esxi::bank::BankError;
use crate::esxi::config::Config;
use crate::esxi::config::ConfigError;
use crate::esxi::target::Target;
use crate::esxi::target::TargetError;
use crate::format::archive::ArchiveError;
use crate::format::partition::PartitionError;
use crate::io::disk::DiskError;
use crate::ops::findings;
use banks::banks_and_config;
use config::apply_config;
use sources::{inspect_archive, inspect_dir};
use std::path::Path;
use std::path::PathBuf;

pub mod banks;
pub mod config;
pub(crate) mod enrich;
pub mod report;
pub mod sources;

pub(crate) use banks::bank_report;
pub(crate) use config::devices_of;
pub use config::read_esx_conf;
pub use report::{
    BankReport, BundleReport, ConfigReport, ConfigStoreReport, DeviceReport, Report, SchemaReport,
    TargetKind,
};

/// Errors of `inspect`: the layer errors, plus "this is not an ESXi boot medium".
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Reading the disk failed. (Opening a target reports its disk errors as `Target`.)
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The partition table cannot be read. (Opening a target reports this as `Target`.)
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Reading a file from a bank's FAT (the configuration archive) failed.
    #[error(transparent)]
    Bank(#[from] BankError),
    /// The configuration archive was found but cannot be decoded: a damaged state.tgz or
    /// local.tgz, an encryption envelope that does not open, an esx.conf that does not parse.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An archive given directly is not a readable gzip'd tar, or lacks a member it needs.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The target cannot be opened as any kind bootbank reads (missing, empty, no partition
    /// table or bank magic, no bank on the disk, ...).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The target opened but is not an ESXi boot medium after all (a directory with neither
    /// boot.cfg nor state.tgz, a config bundle without state.tgz), or holds no configuration
    /// the caller asked for (none at all, or sealed by a TPM); the message says which.
    #[error("{0}")]
    NotEsxi(String),
    /// A file of a directory target, or the target's metadata, could not be read.
    #[error("{}: {cause}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        cause: std::io::Error,
    },
}

/// Options of `inspect`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Enrich devices from this sysfs tree (`/sys` or a captured copy).
    pub sysfs: Option<PathBuf>,
    /// Name of the disk being inspected in that tree (found automatically for block devices).
    pub disk_name: Option<String>,
    /// Also decode the configuration of the bank a rollback (Shift+R) would boot, in the same
    /// pass over the disk (`lint` compares the two).
    pub rollback_config: bool,
    /// Configurations already decoded from exact state.tgz bytes (`fix` decodes what it wrote,
    /// read back from the disk, to check it). The next-boot bank's file is still read from the
    /// target; when its bytes are one of these, that decoding is taken instead of repeating it.
    pub decoded: Vec<Decoded>,
}

/// A configuration and the exact bytes it was decoded from.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The state.tgz (or bare local.tgz) bytes exactly as they are on the disk, compared whole
    /// with the file the next-boot bank holds.
    pub bytes: Vec<u8>,
    /// What those bytes decode to, taken as is when they match.
    pub config: Config,
}

/// Reads only the configuration of the bank that boots next (or of the archive), with where it
/// came from, for the commands that need its files rather than a report (`config get`,
/// `extract`). `None`: the bank holds no configuration.
pub fn read_config(target: &Path) -> Result<Option<(Config, String)>, InspectError> {
    let (_, cfg, _) = inspect_inner(target, &Options::default())?;
    Ok(cfg.map(|s| (s.config, s.source)))
}

/// Inspects a target.
pub fn inspect(target: &Path, opts: &Options) -> Result<Report, InspectError> {
    inspect_with_config(target, opts).map(|(r, _)| r)
}

/// The decoded configurations [`inspect_with_config`] hands back.
#[derive(Debug, Clone, Default)]
pub struct Configs {
    /// The bank that boots next (or the archive's).
    pub next: Option<Config>,
    /// The bank a rollback would boot, when [`Options::rollback_config`] asked for it and it
    /// has a readable configuration (why not is in the report's warnings).
    pub rollback: Option<Config>,
}

/// [`inspect`], also handing back the decoded configurations, for checks that look at more
/// than esx.conf (`lint`).
pub fn inspect_with_config(
    target: &Path,
    opts: &Options,
) -> Result<(Report, Configs), InspectError> {
    let (mut report, config, rollback) = inspect_inner(target, opts)?;
    let config = config.map(|s| {
        apply_config(&s.config, s.source, s.build, &mut report);
        s.config
    });
    let meta = std::fs::metadata(target).map_err(|cause| InspectError::Io {
        path: target.to_path_buf(),
        cause,
    })?;
    if let Some(root) = &opts.sysfs {
        enrich::enrich(&mut report, root, opts.disk_name.as_deref(), Some(target));
    } else if meta_is_block(&meta) {
        enrich::enrich(&mut report, Path::new("/sys"), None, Some(target));
    }
    findings::sort(&mut report.findings);
    Ok((
        report,
        Configs {
            next: config,
            rollback,
        },
    ))
}

/// A configuration with where it came from, e.g. `partition 5 /state.tgz`, and the build that
/// boots with it with where that was read (`boot.cfg`, `Manifest.txt`).
pub(crate) struct Sourced {
    config: Config,
    source: String,
    build: Option<(String, &'static str)>,
}
type Inner = (Report, Option<Sourced>, Option<Config>);

fn inspect_inner(target: &Path, opts: &Options) -> Result<Inner, InspectError> {
    let mut report = Report {
        target: target.display().to_string(),
        kind: TargetKind::Disk,
        partition_table: None,
        banks: Vec::new(),
        next_boot_partition: None,
        will_boot: None,
        next_boot_unknown: None,
        explanation: Vec::new(),
        config: None,
        bundle: None,
        devices: Vec::new(),
        configstore: None,
        findings: Vec::new(),
        warnings: Vec::new(),
        bytes_read: 0,
        sysfs_root: None,
        pci_ids: None,
    };
    let config: Option<Sourced>;
    let mut rollback = None;
    match Target::open(target)? {
        Target::Directory(dir) => {
            report.kind = TargetKind::Directory;
            config = inspect_dir(&dir, &mut report)?;
        }
        Target::Archive { bytes, .. } => {
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "archive".to_string());
            config = Some(inspect_archive(&bytes, &name, &mut report)?);
        }
        Target::Disk {
            mut disk, found, ..
        } => {
            if let Some(t) = &found.table {
                report.warnings.extend(t.warnings.iter().cloned());
            } else {
                report.kind = TargetKind::Partition;
            }
            report.partition_table = found.table;
            (config, rollback) = banks_and_config(&mut disk, found.banks, &mut report, opts)?;
            report.bytes_read = disk.bytes_read();
        }
    }
    Ok((report, config, rollback))
}

fn meta_is_block(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}
