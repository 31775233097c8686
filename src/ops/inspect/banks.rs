//! A disk's (or lone partition's) banks: each one's verdict and the configuration of the bank that
//! boots next.

use super::{BankReport, InspectError, Options, Report, Sourced, TargetKind};
use crate::esxi::bank::Bank;
use crate::esxi::bank::{self as bootbank};
use crate::esxi::bootcfg::BootCfg;
use crate::esxi::config::Config;
use crate::esxi::nextboot;
use crate::io::disk::Disk;
use crate::ops::findings;
use crate::ops::findings::Finding;
use crate::ops::findings::Severity;

/// Predicts the next boot, reports the banks, and reads the configuration of the bank that boots
/// next.
pub(super) fn banks_and_config(
    disk: &mut Disk,
    banks: Vec<Bank>,
    report: &mut Report,
    opts: &Options,
) -> Result<(Option<Sourced>, Option<Config>), InspectError> {
    let want_rollback = opts.rollback_config;
    let lone = report.kind == TargetKind::Partition;
    let candidates = bootbank::candidates(&banks);
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
        boot_cfg_error: b.boot_cfg.as_ref().err().map(|e| e.to_string()),
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
