//! Planning over a target: which banks of a disk (or the archive's one configuration) change,
//! each handed to a step builder.

use super::step::build_step;
use super::{Banks, FixError, Options, Plan, Request, StepBuilder, StepInput};
use crate::esxi::bank::{self as bootbank, Bank};
use crate::esxi::config::ESX_CONF;
use crate::esxi::target::Target;
use crate::format::archive::{self, Tgz};
use crate::io::disk::Disk;
use crate::ops::inspect::TargetKind;
use crate::write::transaction;
use std::path::Path;

/// Builds the plan: reads the target read-only and computes every new byte.
pub fn plan(target: &Path, what: &Request, opts: &Options) -> Result<Plan, FixError> {
    let mut resolved = None;
    let needs_state = matches!(what, Request::Devices(_) | Request::AllStorage);
    plan_with(target, opts, needs_state, &mut |i, plan| {
        build_step(
            i.state,
            i.location,
            i.build.clone(),
            what,
            &mut resolved,
            plan,
            i.wrap,
        )
    })
}

/// [`plan`] with the step of each configuration made by `build`: the banks are chosen as `fix`
/// chooses them (`opts`), each bank's state.tgz (or the archive target) is handed to `build`,
/// and the steps it returns go through the same backup, write and read-back as `fix`'s.
/// `needs_state`: a chosen bank without a state.tgz is an error (else it is skipped).
pub fn plan_with(
    target: &Path,
    opts: &Options,
    needs_state: bool,
    build: &mut StepBuilder<'_>,
) -> Result<Plan, FixError> {
    let mut plan = Plan::empty(target).with_output(opts.output.clone());
    match Target::open(target)? {
        Target::Directory(_) => {
            return Err(FixError::DirectoryTarget {
                path: target.to_path_buf(),
                restore: false,
            });
        }
        Target::Archive { bytes, .. } => plan_archive(&bytes, &mut plan, build)?,
        Target::Disk {
            mut disk, found, ..
        } => plan_disk(&mut disk, &found.banks, needs_state, opts, &mut plan, build)?,
    }
    Ok(plan)
}

fn plan_disk(
    disk: &mut Disk,
    banks: &[Bank],
    needs_state: bool,
    opts: &Options,
    plan: &mut Plan,
    build_step: &mut StepBuilder<'_>,
) -> Result<(), FixError> {
    let lone = banks.len() == 1 && banks[0].partition == 0;
    plan.kind = if lone {
        TargetKind::Partition
    } else {
        TargetKind::Disk
    };
    let prediction = bootbank::predict(banks);
    let next = if lone {
        Some(0)
    } else {
        prediction.next_boot_partition
    };
    let mut chosen: Vec<u32> = Vec::new();
    match (&opts.banks, next) {
        (Banks::Next, Some(p)) => chosen.push(p),
        (Banks::Next, None) => {
            return Err(FixError::NoNextBank {
                unknown: prediction.unknown.clone(),
            });
        }
        (Banks::Also(list), next) => {
            chosen.extend(next);
            for p in list {
                if !banks.iter().any(|b| b.partition == *p) {
                    return Err(FixError::NotABank {
                        partition: *p,
                        banks: banks.iter().map(|b| b.partition).collect(),
                    });
                }
                if !chosen.contains(p) {
                    chosen.push(*p);
                }
            }
        }
        (Banks::Both, next) => {
            chosen.extend(next);
            for v in prediction.banks.iter().filter(|v| v.valid) {
                if !chosen.contains(&v.partition) {
                    chosen.push(v.partition);
                }
            }
            if chosen.is_empty() {
                return Err(FixError::NoValidBank);
            }
        }
    }
    for p in chosen {
        let bank = banks
            .iter()
            .find(|b| b.partition == p)
            .expect("chosen among banks");
        let where_ = if lone {
            "this partition".to_string()
        } else {
            format!("partition {p}")
        };
        let Some(cf) = bank.config_file() else {
            if needs_state && plan.steps.is_empty() {
                return Err(FixError::NoStateArchive { location: where_ });
            }
            continue;
        };
        let file = cf.effective.name.to_ascii_lowercase();
        let old_bytes = bootbank::read_file(disk, bank, &cf.effective.name)?.unwrap_or_default();
        let location = format!("{where_} /{file}");
        let build = bank
            .boot_cfg
            .as_ref()
            .ok()
            .map(|c| (c.build().to_string(), "boot.cfg"));
        let input = StepInput {
            state: &old_bytes,
            location: &location,
            build,
            wrap: &Ok,
        };
        let mut step = build_step(&input, plan)?;
        step.partition = (!lone).then_some(p);
        step.bank_uuid = Some(bank.uuid.clone());
        step.file = cf.names.current.clone();
        if let Some(l) = &cf.leftover {
            step.notes.insert(
                0,
                format!("{}; it is completed or undone first", l.describe(&cf.names)),
            );
        }
        step.fat_leftover = fat_leftover(disk, bank, &location)?;
        if let Some(what) = &step.fat_leftover {
            step.notes.push(format!(
                "the FAT holds what an interrupted write leaves ({what}): reclaimed first"
            ));
        }
        step.leftover = cf.leftover.clone();
        step.names = Some(cf.names.clone());
        plan.steps.push(step);
    }
    Ok(())
}

/// What an interrupted write left in the bank's FAT, in words (`None` when clean): the write
/// reclaims it first. A FAT damaged in any other way refuses the plan, nothing written.
pub(super) fn fat_leftover(disk: &mut Disk, bank: &Bank, location: &str) -> Result<Option<String>, FixError> {
    let health = transaction::fat_health(disk, bank).map_err(|cause| FixError::FatUnread {
        location: location.to_string(),
        cause,
    })?;
    if !health.is_repairable() {
        return Err(FixError::FatDamaged {
            location: location.to_string(),
            problems: health.damage,
        });
    }
    Ok((!health.is_clean()).then(|| health.describe()))
}

fn plan_archive(
    bytes: &[u8],
    plan: &mut Plan,
    build_step: &mut StepBuilder<'_>,
) -> Result<(), FixError> {
    let file = plan
        .target_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outer = Tgz::parse_for_edit(bytes, &format!("archive {file}"))?;
    if outer.member("state.tgz").is_some() {
        plan.kind = TargetKind::ConfigBundle;
        let inner = outer.require("state.tgz")?.to_vec();
        let build = outer.member("Manifest.txt").and_then(|m| {
            String::from_utf8_lossy(outer.data(m))
                .lines()
                .find_map(|l| {
                    l.strip_prefix("RELEASELEVEL=")
                        .map(|v| v.trim().to_string())
                })
                .map(|b| (b, "Manifest.txt"))
        });
        let wrap = |state: Vec<u8>| -> Result<Vec<u8>, FixError> {
            let (tar, hunks) = outer.replace_member_hunks("state.tgz", &state)?;
            Ok(archive::reseal(bytes, &outer, &tar, Some(&hunks)))
        };
        let input = StepInput {
            state: &inner,
            location: "bundle > state.tgz",
            build,
            wrap: &wrap,
        };
        let mut step = build_step(&input, plan)?;
        step.old_bytes = bytes.to_vec();
        step.file = file;
        plan.steps.push(step);
        return Ok(());
    }
    plan.kind = if outer.member(ESX_CONF).is_some() {
        TargetKind::LocalArchive
    } else {
        TargetKind::StateArchive
    };
    let input = StepInput {
        state: bytes,
        location: &file,
        build: None,
        wrap: &Ok,
    };
    let mut step = build_step(&input, plan)?;
    step.file = file;
    plan.steps.push(step);
    Ok(())
}
