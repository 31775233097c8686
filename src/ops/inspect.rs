//! `inspect`: read a target of any supported kind and build one [`Report`] of what the host will
//! boot, with which configuration, and what will go wrong.
//!
//! The target kind is detected from content, never from the file name: a directory holding a
//! bank, a gzip'd tar (state archive, config bundle or local.tgz), a lone FAT partition carrying
//! the bank magic, or a partitioned disk.

mod enrich;
use crate::esxi::bank::{self as bootbank, Bank, BankError};
use crate::esxi::bootcfg::BootCfg;
use crate::esxi::config::{Config, ConfigError, MemberSummary};
use crate::esxi::configstore::{ConfigStore, DeviceName, PciDeviceRecord, SchemaSource};
use crate::esxi::devices::{self, HostDevice, Obeyed};
use crate::esxi::nextboot::{self, Candidate};
use crate::esxi::target::{Target, TargetError};
use crate::format::archive::{ArchiveError, Tgz};
use crate::format::envelope::Encryption;
use crate::format::fat::FileInfo;
use crate::format::partition::{PartitionError, Table};
use crate::io::disk::{Disk, DiskError};
use crate::ops::findings::{self, Finding, Severity};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the target turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Disk,
    Partition,
    Directory,
    StateArchive,
    ConfigBundle,
    LocalArchive,
}

/// One bank as reported.
#[derive(Debug, Clone, Serialize)]
pub struct BankReport {
    /// Partition number (null for a lone partition image or a directory).
    pub partition: Option<u32>,
    pub uuid: Option<String>,
    pub build: Option<String>,
    pub updated: Option<i64>,
    /// `bootstate` as written (a missing line reads as 0; see `bootstate_written`).
    pub bootstate: Option<i64>,
    pub bootstate_written: bool,
    /// `bootstate` after the transition the bootloader applies at boot.
    pub bootstate_at_boot: Option<i64>,
    pub valid: bool,
    pub invalid_reasons: Vec<String>,
    pub boots_next: bool,
    /// `updated` as the bootloader compares it: unsigned 32-bit (`-1` is 4294967295); null when
    /// boot.cfg does not parse or the firmware decides (a number beyond 32 bits).
    pub updated_at_boot: Option<u64>,
    /// Why the bootloader leaves this bank out altogether, or never looks at it, in words; null
    /// when it counts the bank (valid or not).
    pub skipped_reason: Option<String>,
    /// What the bootloader reads differently from what boot.cfg seems to say (a key written by
    /// prefix, a key hidden by a space before `=`, an unsigned `updated`, ...).
    pub notes: Vec<String>,
    /// `system` (kernel and payloads present) or `empty`.
    pub contents: &'static str,
    pub state_archive: Option<FileInfo>,
    pub boot_cfg_error: Option<String>,
}

/// The configuration that was read.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Where it came from, e.g. `partition 5 /state.tgz`.
    pub source: String,
    pub encryption: Encryption,
    pub encryption_mode: Option<String>,
    /// Key id of an encrypted configuration decrypted offline.
    pub key_id: Option<String>,
    /// Members of state.tgz.
    pub state_members: Vec<MemberSummary>,
    /// Members of local.tgz (empty when encrypted).
    pub local_members: Vec<MemberSummary>,
    pub esx_conf_lines: Option<usize>,
    /// Host name from `/adv/Misc/HostName`, when present.
    pub hostname: Option<String>,
    /// Which store ESXi reads device ownership from on this build (None when sealed by a TPM).
    pub device_ownership: Option<Obeyed>,
}

/// A config bundle's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub release_level: Option<String>,
    pub uuid: Option<String>,
}

/// The ConfigStore (7.0+): its device records, merged as ESXi merges them, and the schemas
/// they were read with.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStoreReport {
    /// Rows of the `Config` table, all keys.
    pub rows: u64,
    pub schema: SchemaReport,
    /// `esx/hardware/pci_devices` records, in table order.
    pub pci_devices: Vec<PciDeviceRecord>,
    /// `esx/system/device_data` records (vmkernel device names), in table order.
    pub device_names: Vec<DeviceName>,
}

/// Where the ConfigStore's schemas came from and how they compare with bootbank's.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaReport {
    /// local.tgz holds the host's schema store.
    pub host_store: bool,
    /// The VIB ids of the schemas read (the build that wrote them).
    pub vib_ids: Vec<String>,
    /// Per key bootbank reads: where its schema was read.
    pub sources: std::collections::BTreeMap<String, SchemaSource>,
    /// Per key: where the host's schema differs from the one bootbank knows.
    pub differences: std::collections::BTreeMap<String, Vec<String>>,
}

impl SchemaReport {
    fn new(store: &ConfigStore) -> SchemaReport {
        let s = &store.schemas;
        SchemaReport {
            host_store: s.host_store,
            vib_ids: s.vib_ids.clone(),
            sources: s
                .schemas
                .iter()
                .map(|x| (x.key.to_string(), x.source.clone()))
                .collect(),
            differences: s
                .differences
                .iter()
                .map(|(k, d)| (k.to_string(), d.clone()))
                .collect(),
        }
    }
}

/// A device as reported: what the configuration says (both stores), plus what the rescue
/// system's sysfs says.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    #[serde(flatten)]
    pub conf: HostDevice,
    pub sysfs: Option<crate::host::sysfs::SysfsDevice>,
}

/// Everything `inspect` found. Serialised as the documented `--json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub kind: TargetKind,
    pub partition_table: Option<Table>,
    pub banks: Vec<BankReport>,
    pub next_boot_partition: Option<u32>,
    /// Whether any bank will boot (false: "this host will not boot"; null when that cannot be
    /// told, see `next_boot_unknown`).
    pub will_boot: Option<bool>,
    /// Why the next boot cannot be predicted from the disk alone (the bootloader release or the
    /// firmware decides); null when it can.
    pub next_boot_unknown: Option<String>,
    /// The surprising parts of the prediction, in words: skipped banks and why, keys the
    /// bootloader reads differently, ties, what is unknown.
    pub explanation: Vec<String>,
    pub config: Option<ConfigReport>,
    pub bundle: Option<BundleReport>,
    pub devices: Vec<DeviceReport>,
    /// The ConfigStore database (7.0+), when local.tgz holds one.
    pub configstore: Option<ConfigStoreReport>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    /// Bytes read from the disk or image (0 for archives and directories).
    pub bytes_read: u64,
    /// Where sysfs enrichment came from, when used.
    pub sysfs_root: Option<String>,
    /// pci.ids source used for names.
    pub pci_ids: Option<String>,
}

/// Errors of `inspect`: the layer errors, plus "this is not an ESXi boot medium".
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{0}")]
    NotEsxi(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
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
    pub bytes: Vec<u8>,
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
    let meta = std::fs::metadata(target).map_err(|source| InspectError::Io {
        path: target.display().to_string(),
        source,
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

/// Predicts the next boot, reports the banks, and reads the configuration of the bank that boots
/// next.
fn banks_and_config(
    disk: &mut Disk,
    banks: Vec<Bank>,
    report: &mut Report,
    opts: &Options,
) -> Result<(Option<Sourced>, Option<Config>), InspectError> {
    let want_rollback = opts.rollback_config;
    let lone = report.kind == TargetKind::Partition;
    let candidates: Vec<Candidate> = banks
        .iter()
        .map(|b| Candidate {
            partition: b.partition,
            boot_cfg: b.boot_cfg.as_ref().map_err(|e| e.clone()),
        })
        .collect();
    let prediction = nextboot::predict(&candidates);
    for v in &prediction.banks {
        let b = banks
            .iter()
            .find(|b| b.partition == v.partition)
            .expect("every verdict comes from a bank");
        report.banks.push(bank_report(b, v, lone));
    }
    report.next_boot_partition = if lone {
        None
    } else {
        prediction.next_boot_partition
    };
    report.will_boot = prediction.will_boot();
    report.next_boot_unknown = prediction.unknown.clone();
    report.explanation = prediction.explanation.clone();
    if prediction.will_boot() == Some(false) {
        report.findings.push(Finding {
            severity: Severity::Critical,
            rule: findings::NO_BOOTABLE_BANK,
            device: None,
            message: if lone {
                "this bank is not valid: the bootloader would skip it".to_string()
            } else {
                "no bank is valid: this host will not boot".to_string()
            },
            fix: None,
        });
    }
    // The bank Shift+R would boot instead (`nextboot::shift_r`), when it differs.
    let shift_r = if want_rollback && !lone && prediction.next_boot_partition.is_some() {
        nextboot::shift_r(&candidates)
            .boots
            .filter(|&p| Some(p) != prediction.next_boot_partition)
    } else {
        None
    };
    let rollback = match shift_r {
        Some(p) => {
            let bank = banks
                .iter()
                .find(|b| b.partition == p)
                .expect("every verdict comes from a bank");
            match bank_config(disk, bank) {
                Ok(c) => c,
                Err(e) => {
                    report.warnings.push(format!(
                        "partition {}: configuration not read: {e}",
                        bank.partition
                    ));
                    None
                }
            }
        }
        None => None,
    };
    // The configuration that matters is the next-boot bank's; with none bootable, show the
    // newest bank that has one, so the user still sees the settings.
    let chosen = match prediction.next_boot_partition {
        Some(p) => banks.iter().find(|b| b.partition == p),
        None => banks
            .iter()
            .filter(|b| b.state_file().is_some())
            .max_by_key(|b| b.boot_cfg.as_ref().map(|c| c.updated()).unwrap_or(0)),
    };
    let Some(bank) = chosen else {
        return Ok((None, rollback));
    };
    let where_ = if lone {
        "this partition".to_string()
    } else {
        format!("partition {}", bank.partition)
    };
    let Some(cf) = bank.config_file() else {
        report.findings.push(Finding {
            severity: Severity::Warning,
            rule: findings::NO_CONFIGURATION,
            device: None,
            message: format!(
                "the bank on {where_} holds no state.tgz: the host boots with a default configuration"
            ),
            fix: None,
        });
        return Ok((None, rollback));
    };
    if let Some(l) = &cf.leftover {
        report.findings.push(Finding {
            severity: Severity::Warning,
            rule: findings::INTERRUPTED_WRITE,
            device: None,
            message: format!("{where_}: {}", l.describe(&cf.names)),
            fix: Some(format!(
                "rerun `bootbank fix` on this target: it completes or undoes the interrupted write first (the configuration shown is the one {} holds)",
                cf.effective.name.to_ascii_lowercase()
            )),
        });
    }
    fat_findings(disk, bank, &where_, report);
    let name = cf.effective.name.to_ascii_lowercase();
    let bytes = bootbank::read_file(disk, bank, &cf.effective.name)?
        .ok_or_else(|| InspectError::NotEsxi(format!("{where_}: {name} vanished while reading")))?;
    let label = format!("{where_} /{name}");
    let cfg = match opts.decoded.iter().find(|d| d.bytes == bytes) {
        Some(d) => d.config.clone(),
        None => Config::from_state(&bytes, &label)?,
    };
    let build = bank
        .boot_cfg
        .as_ref()
        .ok()
        .map(|c| (c.build().to_string(), "boot.cfg"));
    Ok((
        Some(Sourced {
            config: cfg,
            source: label,
            build,
        }),
        rollback,
    ))
}

/// The configuration a bank holds (None when it has none).
fn bank_config(disk: &mut Disk, bank: &Bank) -> Result<Option<Config>, InspectError> {
    let Some(cf) = bank.config_file() else {
        return Ok(None);
    };
    let Some(bytes) = bootbank::read_file(disk, bank, &cf.effective.name)? else {
        return Ok(None);
    };
    let label = format!(
        "partition {} /{}",
        bank.partition,
        cf.effective.name.to_ascii_lowercase()
    );
    Ok(Some(Config::from_state(&bytes, &label)?))
}

pub(crate) fn bank_report(b: &Bank, v: &nextboot::BankVerdict, lone: bool) -> BankReport {
    let cfg: Option<&BootCfg> = b.boot_cfg.as_ref().ok();
    BankReport {
        partition: (!lone).then_some(b.partition),
        uuid: Some(b.uuid.clone()),
        build: cfg.map(|c| c.build().to_string()),
        updated: cfg.map(|c| c.updated()),
        bootstate: cfg.map(|c| c.bootstate()),
        bootstate_written: cfg.is_some_and(|c| c.has_bootstate()),
        bootstate_at_boot: v.bootstate_after,
        valid: v.valid,
        invalid_reasons: v.invalid_reasons.clone(),
        boots_next: v.boots_next && !lone,
        updated_at_boot: v.updated_at_boot,
        skipped_reason: v.skipped_reason.clone(),
        notes: v.notes.clone(),
        contents: if b.has_system { "system" } else { "empty" },
        state_archive: b.state_file(),
        boot_cfg_error: b.boot_cfg.as_ref().err().cloned(),
    }
}

/// A directory holding a copied or mounted bank.
fn inspect_dir(dir: &Path, report: &mut Report) -> Result<Option<Sourced>, InspectError> {
    let io = |path: &Path, source| InspectError::Io {
        path: path.display().to_string(),
        source,
    };
    let boot_cfg_path = dir.join("boot.cfg");
    let state_path = ["state.tgz", "local.tgz"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file());
    if !boot_cfg_path.is_file() && state_path.is_none() {
        return Err(InspectError::NotEsxi(format!(
            "{}: directory holds neither boot.cfg nor state.tgz: not a bootbank",
            dir.display()
        )));
    }
    let mut build = None;
    if boot_cfg_path.is_file() {
        let bytes = std::fs::read(&boot_cfg_path).map_err(|e| io(&boot_cfg_path, e))?;
        let boot_cfg = BootCfg::parse(&bytes).map_err(|e| e.to_string());
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let e = e.map_err(|e| io(dir, e))?;
            let m = e.metadata().map_err(|er| io(&e.path(), er))?;
            files.push(FileInfo {
                name: e.file_name().to_string_lossy().into_owned(),
                size: m.len(),
                modified: String::new(),
                is_dir: m.is_dir(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let has_system = files
            .iter()
            .any(|f| !f.is_dir && bootbank::is_payload(&f.name));
        let bank = Bank {
            partition: 0,
            uuid: String::new(),
            fat_type: String::new(),
            boot_cfg,
            files,
            has_system,
            byte_start: 0,
            byte_len: 0,
        };
        let verdict = nextboot::predict(&[Candidate {
            partition: 0,
            boot_cfg: bank.boot_cfg.as_ref().map_err(|e| e.clone()),
        }]);
        build = bank
            .boot_cfg
            .as_ref()
            .ok()
            .map(|c| (c.build().to_string(), "boot.cfg"));
        let mut br = bank_report(&bank, &verdict.banks[0], true);
        br.uuid = None;
        report.will_boot = verdict.will_boot();
        report.explanation = verdict.explanation.clone();
        report.banks.push(br);
    }
    let Some(state_path) = state_path else {
        return Ok(None);
    };
    let bytes = std::fs::read(&state_path).map_err(|e| io(&state_path, e))?;
    let label = state_path.display().to_string();
    Ok(Some(Sourced {
        config: Config::from_state(&bytes, &label)?,
        source: label,
        build,
    }))
}

/// A gzip'd tar given directly: a config bundle, a state.tgz, or a local.tgz.
fn inspect_archive(bytes: &[u8], name: &str, report: &mut Report) -> Result<Sourced, InspectError> {
    let outer = Tgz::parse(bytes, &format!("archive {name}"))?;
    if outer.member("state.tgz").is_none() && outer.member("Manifest.txt").is_some() {
        return Err(InspectError::NotEsxi(format!(
            "config bundle {name}: holds no state.tgz (members: {})",
            outer.member_names()
        )));
    }
    if outer.member("state.tgz").is_some() {
        report.kind = TargetKind::ConfigBundle;
        if let Some(m) = outer.member("Manifest.txt") {
            let text = String::from_utf8_lossy(outer.data(m));
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            report.bundle = Some(BundleReport {
                release_level: field("RELEASELEVEL="),
                uuid: field("UUID="),
            });
        }
        let label = format!("config bundle {name} > state.tgz");
        let cfg = Config::from_state(outer.require("state.tgz")?, &label)?;
        let build = report
            .bundle
            .as_ref()
            .and_then(|b| b.release_level.clone())
            .map(|b| (b, "Manifest.txt"));
        return Ok(Sourced {
            config: cfg,
            source: label,
            build,
        });
    }
    let is_local = outer.member(crate::esxi::config::ESX_CONF).is_some();
    report.kind = if is_local {
        TargetKind::LocalArchive
    } else {
        TargetKind::StateArchive
    };
    let label = format!(
        "{name} ({})",
        if is_local { "local.tgz" } else { "state.tgz" }
    );
    let cfg = Config::from_state(bytes, &label)?;
    Ok(Sourced {
        config: cfg,
        source: label,
        build: None,
    })
}

fn apply_config(
    cfg: &Config,
    source: String,
    build: Option<(String, &'static str)>,
    report: &mut Report,
) {
    report.config = Some(ConfigReport {
        source: source.clone(),
        encryption: cfg.encryption,
        encryption_mode: cfg.encryption_mode.clone(),
        key_id: cfg.sealed.as_ref().map(|s| s.key.key_id.clone()),
        state_members: crate::esxi::config::summarize(&cfg.state),
        local_members: cfg.local_members(),
        esx_conf_lines: cfg.esx_conf.as_ref().map(|c| c.entries.len()),
        hostname: cfg
            .esx_conf
            .as_ref()
            .and_then(|c| c.get("/adv/Misc/HostName"))
            .map(str::to_string),
        device_ownership: None,
    });
    let key_id = cfg.sealed.as_ref().map(|s| s.key.key_id.clone());
    if let Some(f) = findings::encryption_finding(
        cfg.encryption,
        cfg.encryption_mode.as_deref(),
        key_id.as_deref(),
    ) {
        report.findings.push(f);
    }
    let Some(local) = &cfg.local else {
        return;
    };
    let store = match ConfigStore::from_local(local) {
        Ok(s) => s,
        Err(e) => {
            report.warnings.push(format!(
                "{source} > local.tgz: ConfigStore not readable: {e}"
            ));
            None
        }
    };
    let devices = devices_of(cfg.esx_conf.as_ref(), store.as_ref(), build);
    let (obeyed, devices) = devices;
    report
        .findings
        .extend(findings::device_findings(&devices, &obeyed, &report.target));
    if let Some(store) = &store {
        report.findings.extend(findings::schema_findings(store));
        report.configstore = Some(ConfigStoreReport {
            rows: store.rows,
            schema: SchemaReport::new(store),
            pci_devices: store.pci_devices.clone(),
            device_names: store.device_names.clone(),
        });
    }
    if let Some(c) = report.config.as_mut() {
        c.device_ownership = Some(obeyed);
    }
    report.devices = devices
        .into_iter()
        .map(|d| DeviceReport {
            conf: d,
            sysfs: None,
        })
        .collect();
}

/// The devices of a configuration and which store the build obeys: decided by the build that
/// boots it (`build`, with where it was read) or else the build that wrote its schema store.
pub(crate) fn devices_of(
    conf: Option<&crate::esxi::esxconf::EsxConf>,
    store: Option<&ConfigStore>,
    build: Option<(String, &'static str)>,
) -> (Obeyed, Vec<HostDevice>) {
    let (build, from) = match build {
        Some((b, f)) => (Some(b), f),
        None => (None, "boot.cfg"),
    };
    let obeyed = Obeyed::decide(&[
        (build, from),
        (
            store.and_then(|s| s.schemas.esx_base_build()),
            "schema store",
        ),
    ]);
    let mut obeyed = obeyed;
    if obeyed.store == Some(devices::Store::ConfigStore) && store.is_none() {
        obeyed.why.push_str(
            "; this configuration has no readable ConfigStore, so esx.conf's /device/ lines are taken instead",
        );
    }
    let list = devices::host_devices(conf, store, &obeyed);
    (obeyed, list)
}

/// The esx.conf that the bank booting next (or the archive) holds, with where it came from; for
/// `config get`.
pub fn read_esx_conf(
    target: &Path,
) -> Result<(crate::esxi::esxconf::EsxConf, String), InspectError> {
    let report_and_cfg = read_config(target)?;
    match report_and_cfg {
        Some((cfg, source)) => match cfg.esx_conf {
            Some(c) => Ok((c, source)),
            None => Err(InspectError::NotEsxi(format!(
                "{source}: the configuration is sealed by the host's TPM; no offline tool can read it"
            ))),
        },
        None => Err(InspectError::NotEsxi(format!(
            "{}: no configuration found",
            target.display()
        ))),
    }
}

/// Findings on the FAT of the bank whose configuration is shown (the one a fix writes): the
/// leftovers bootbank reclaims itself, and damage it leaves to `fsck.fat`.
fn fat_findings(disk: &mut Disk, bank: &Bank, where_: &str, report: &mut Report) {
    match crate::write::transaction::fat_health(disk, bank) {
        Ok(h) if h.is_clean() => {}
        Ok(h) if h.is_repairable() => report.findings.push(Finding {
            severity: Severity::Info,
            rule: findings::FAT_LEFTOVER,
            device: None,
            message: format!(
                "{where_}: the FAT holds what an interrupted write leaves: {}; harmless to ESXi",
                h.describe()
            ),
            fix: Some(
                "bootbank's next write to this bank reclaims it (and says so); `fsck.fat -a` would too"
                    .to_string(),
            ),
        }),
        Ok(h) => report.findings.push(Finding {
            severity: Severity::Warning,
            rule: findings::FAT_DAMAGED,
            device: None,
            message: format!("{where_}: the FAT is damaged: {}", h.describe()),
            fix: Some(
                "bootbank will not write to this bank: back it up, then repair it with `fsck.fat` (on the partition, unmounted)"
                    .to_string(),
            ),
        }),
        Err(e) => report
            .warnings
            .push(format!("{where_}: the FAT's allocation was not checked: {e}")),
    }
}
