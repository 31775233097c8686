//! Planning `rollback`, `select N` and the restore of a boot.cfg backup.

use crate::esxi::bootcfg::BootCfg;
use crate::esxi::nextboot;
use crate::write::backup::{self, Backup, BackupError, Standing};
use crate::write::transaction::Leftover;
use std::path::Path;
use super::edit::{check_written, key_changes, method_for, set_int};
use super::error::{BankOpError, NotBootable};
use super::plan::{BankPlan, BankStep, Method};
use super::status::{open, predict, where_, Read, Target};
use super::{boot_names, BOOT_CFG};

fn step(lone: bool, r: &Read, new_bytes: Vec<u8>) -> Result<BankStep, BankOpError> {
    if r.leftover == Some(Leftover::All) {
        return Err(BankOpError::Leftover {
            partition: r.bank.partition,
            leftover: Leftover::All,
        });
    }
    let changed = r.bytes != new_bytes;
    // A bank whose FAT is damaged beyond an interrupted write's leftovers is not written to:
    // refused with the plan, as `fix` refuses it, so that nothing at all is written.
    if changed {
        match &r.fat {
            Err(e) => {
                return Err(BankOpError::FatUnread {
                    partition: r.bank.partition,
                    cause: e.clone(),
                });
            }
            Ok(h) if !h.is_repairable() => {
                return Err(BankOpError::FatDamaged {
                    partition: r.bank.partition,
                    problems: h.damage.clone(),
                });
            }
            Ok(_) => {}
        }
    }
    let (method, offset) = if changed {
        method_for(&r.bytes, &new_bytes)
    } else {
        (Method::ReplaceFile, None)
    };
    let old = r.effective.as_ref().ok();
    let new = if changed {
        Some(
            BootCfg::parse(&new_bytes).map_err(|e| BankOpError::CannotBoot {
                partition: r.bank.partition,
                why: e.into(),
            })?,
        )
    } else {
        None
    };
    let changes = match (old, &new) {
        (Some(o), Some(n)) => key_changes(o, n),
        _ => Vec::new(),
    };
    let mut notes = Vec::new();
    if let Some(l) = &r.leftover {
        notes.push(format!(
            "{}; it is completed or undone first",
            l.describe(&boot_names())
        ));
    }
    if let Some(h) = r
        .fat
        .as_ref()
        .ok()
        .filter(|h| !h.is_clean() && h.is_repairable())
    {
        notes.push(format!(
            "the FAT holds what an interrupted write leaves ({}): reclaimed first",
            h.describe()
        ));
    }
    const SAFE: &str = "boot.cfg is replaced the safe way (a new copy written in free clusters and read back, then the directory entry switched to it in one sector write)";
    let bootstate_only = !changes.is_empty() && changes.iter().all(|c| c.key == "bootstate");
    match (method, changed) {
        (_, false) => {}
        (Method::InPlaceDigit, true) => notes.push(format!(
            "the bootstate digit (byte {} of boot.cfg) is overwritten in place, as the bootloader does: one byte, file size and time unchanged",
            offset.unwrap_or(0)
        )),
        (Method::ReplaceFile, true) => notes.push(match old.map(|c| c.get("bootstate")) {
            Some(None) if bootstate_only => format!(
                "boot.cfg has no bootstate line, so one digit cannot be overwritten in place: {SAFE}"
            ),
            Some(Some(v)) if bootstate_only && v.text.len() != 1 => format!(
                "bootstate is not written as one digit ({}), so it cannot be overwritten in place: {SAFE}",
                v.text
            ),
            _ => format!("the change alters boot.cfg's length: {SAFE}"),
        }),
    }
    Ok(BankStep {
        partition: (!lone).then_some(r.bank.partition),
        bank_uuid: r.bank.uuid.clone(),
        file: BOOT_CFG.to_string(),
        method,
        offset_in_file: offset,
        changes,
        notes,
        recover: r.leftover.clone(),
        fat_leftover: r
            .fat
            .as_ref()
            .ok()
            .filter(|h| !h.is_clean() && h.is_repairable())
            .map(|h| h.describe()),
        old_bytes: r.bytes.clone(),
        new_bytes,
        number: r.bank.partition,
    })
}

/// Refuses a leftover no recovery can settle, and puts first a recovery-only step for every bank
/// with a leftover that the plan does not otherwise change, so that the banks are after the write
/// what the plan predicted with.
fn add_recoveries(t: &Target, plan: &mut BankPlan) -> Result<(), BankOpError> {
    let mut first = Vec::new();
    let tidy = |r: &&Read| {
        r.fat
            .as_ref()
            .is_ok_and(|h| !h.is_clean() && h.is_repairable())
    };
    for r in t.banks.iter().filter(|r| r.leftover.is_some() || tidy(r)) {
        if !plan.steps.iter().any(|s| s.number == r.bank.partition) {
            first.push(step(t.lone, r, r.bytes.clone())?);
        }
    }
    first.append(&mut plan.steps);
    plan.steps = first;
    Ok(())
}

fn banks_list(t: &Target) -> Vec<u32> {
    t.banks.iter().map(|r| r.bank.partition).collect()
}

/// Plans `bank rollback`: what Shift+R does.
pub fn plan_rollback(target: &Path) -> Result<BankPlan, BankOpError> {
    let t = open(target)?;
    if t.lone {
        return Err(BankOpError::LonePartition {
            target: target.to_path_buf(),
        });
    }
    let before = predict(&t.banks, &[]);
    if let Some(why) = &before.unknown {
        return Err(BankOpError::Unknown { why: why.clone() });
    }
    let next = before
        .next_boot_partition
        .ok_or(BankOpError::NothingBoots)?;
    let r = t
        .banks
        .iter()
        .find(|r| r.bank.partition == next)
        .expect("the next bank is one of the banks");
    let cfg = r
        .effective
        .as_ref()
        .map_err(|_| BankOpError::NothingBoots)?;
    let new_bytes = set_int(&r.bytes, cfg, "bootstate", 3);
    let new_cfg = check_written(next, cfg, &new_bytes, &[("bootstate", 3)])?;
    let after = predict(&t.banks, &[(next, &new_cfg)]);
    let Some(to) = after.next_boot_partition else {
        return Err(BankOpError::NoAlternate {
            current: next,
            others: before
                .banks
                .iter()
                .filter(|v| v.partition != next)
                .map(|v| (v.partition, v.invalid_reasons.clone()))
                .collect(),
        });
    };
    let step = step(false, r, new_bytes)?;
    let mut plan = BankPlan {
        target: target.display().to_string(),
        action: "rollback",
        selected_partition: None,
        next_boot_partition_before: Some(next),
        next_boot_partition_after: Some(to),
        explanation: format!(
            "partition {next} boots next; as Shift+R does, its bootstate becomes 3 (invalid), so the bootloader picks partition {to}, the other valid bank. Rollback brings back that bank's image and its own (older) state.tgz. Nothing else changes; `bootbank bank select {next}` or `bootbank restore` undoes it"
        ),
        steps: vec![step],
        target_path: target.to_path_buf(),
    };
    add_recoveries(&t, &mut plan)?;
    Ok(plan)
}

/// Plans `bank select N`: bank N boots next, changing only bank N.
pub fn plan_select(target: &Path, n: u32) -> Result<BankPlan, BankOpError> {
    let t = open(target)?;
    if t.lone {
        return Err(BankOpError::LonePartition {
            target: target.to_path_buf(),
        });
    }
    let Some(r) = t.banks.iter().find(|r| r.bank.partition == n) else {
        return Err(BankOpError::NoSuchBank {
            partition: n,
            banks: banks_list(&t),
        });
    };
    let cannot = |why: NotBootable| BankOpError::CannotBoot { partition: n, why };
    let cfg = r.effective.as_ref().map_err(|e| cannot(e.clone().into()))?;
    if cfg.build_cleared() {
        return Err(cannot(NotBootable::BuildCleared));
    }
    if cfg.build().is_empty() {
        return Err(cannot(NotBootable::NoBuild));
    }
    if !r.bank.has_system {
        return Err(cannot(NotBootable::NoSystem));
    }
    if cfg.number("quickboot") != 0 {
        return Err(cannot(NotBootable::QuickBoot(
            cfg.text("quickboot").to_string(),
        )));
    }
    let before = predict(&t.banks, &[]);
    let mut plan = BankPlan {
        target: target.display().to_string(),
        action: "select",
        selected_partition: Some(n),
        next_boot_partition_before: before.next_boot_partition,
        next_boot_partition_after: before.next_boot_partition,
        steps: Vec::new(),
        explanation: String::new(),
        target_path: target.to_path_buf(),
    };
    if before.next_boot_partition == Some(n) {
        plan.explanation = format!("partition {n} already boots next: nothing to change");
        add_recoveries(&t, &mut plan)?;
        return Ok(plan);
    }
    let mut bytes = r.bytes.clone();
    let mut why = Vec::new();
    let mut want: Vec<(&str, i64)> = Vec::new();
    let state = cfg.bootstate();
    if !matches!(nextboot::transition(state), 0 | 2) {
        bytes = set_int(&bytes, cfg, "bootstate", 0);
        want.push(("bootstate", 0));
        why.push(format!(
            "its bootstate {state} ({}) would make the bootloader skip it, so it becomes 0 (valid)",
            nextboot::bootstate_meaning(state)
        ));
    }
    let cur = BootCfg::parse(&bytes).map_err(|e| cannot(e.into()))?;
    if predict(&t.banks, &[(n, &cur)]).next_boot_partition != Some(n) {
        // The largest `updated` of the other valid banks, as the bootloader compares it
        // (unsigned; the larger reading when the firmware decides).
        let top = before
            .banks
            .iter()
            .filter(|v| v.valid && v.partition != n)
            .filter_map(|v| t.banks.iter().find(|r| r.bank.partition == v.partition))
            .filter_map(|r| {
                let c = r.effective.as_ref().ok()?;
                let u = c.number("updated");
                let read = [nextboot::Firmware::Uefi, nextboot::Firmware::Bios]
                    .map(|fw| nextboot::atoi(u, fw) as u32);
                Some((
                    read[0].max(read[1]),
                    r.bank.partition,
                    c.text("updated").to_string(),
                ))
            })
            .max();
        let (top, top_part, top_text) = top.unwrap_or((0, 0, String::new()));
        if top >= i32::MAX as u32 {
            return Err(cannot(NotBootable::UpdatedBeyondReach {
                partition: top_part,
                text: top_text,
                read: top,
            }));
        }
        let new_updated = i64::from(top) + 1;
        bytes = set_int(&bytes, &cur, "updated", new_updated);
        want.push(("updated", new_updated));
        why.push(format!(
            "its updated={} does not beat the other valid banks' (largest {top}), so it becomes {new_updated}, one above, as the installer numbers a new image",
            cur.text("updated")
        ));
    }
    let cur = BootCfg::parse(&bytes).map_err(|e| cannot(e.into()))?;
    if !cur.has_bootstate()
        && cur.state_site() == (crate::esxi::bootcfg::StateSite::Missing { beyond: None })
    {
        // Without a bootstate line the bootloader could not mark the bank on Shift+R: give it
        // the line a missing one means, first in the file where the bootloader can update it.
        bytes = set_int(&bytes, &cur, "bootstate", 0);
        want.push(("bootstate", 0));
        why.push(
            "it has no bootstate line, which the bootloader needs to mark it on Shift+R, so `bootstate=0` (what a missing line means) becomes its first line".to_string(),
        );
    }
    let new_cfg = check_written(n, cfg, &bytes, &want)?;
    let after = predict(&t.banks, &[(n, &new_cfg)]);
    if let Some(u) = &after.unknown {
        return Err(BankOpError::Unknown { why: u.clone() });
    }
    if after.next_boot_partition != Some(n) {
        let v = after.banks.iter().find(|v| v.partition == n);
        return Err(cannot(
            match v.map(|v| v.invalid_reasons.clone()).unwrap_or_default() {
                reasons if reasons.is_empty() => NotBootable::StillAnother,
                reasons => NotBootable::Invalid(reasons),
            },
        ));
    }
    plan.next_boot_partition_after = Some(n);
    plan.explanation = format!(
        "partition {n} is made to boot next by changing only its own boot.cfg: {}. The other banks are not touched and stay valid, so Shift+R can still go back to them",
        why.join("; ")
    );
    plan.steps.push(step(false, r, bytes)?);
    add_recoveries(&t, &mut plan)?;
    Ok(plan)
}

/// Plans putting back boot.cfg files from a backup written by `bank rollback|select`, read
/// and checked by [`backup::read`] (the one `restore`, [`crate::ops::restore::plan`], hands
/// it here when every file of the backup is a boot.cfg).
pub(crate) fn plan_restore_of(
    target: &Path,
    from: &Backup,
    force: bool,
) -> Result<BankPlan, BankOpError> {
    let manifest = &from.manifest;
    let t = open(target)?;
    let mut plan = BankPlan {
        target: target.display().to_string(),
        action: "restore",
        selected_partition: None,
        next_boot_partition_before: predict(&t.banks, &[]).next_boot_partition,
        next_boot_partition_after: None,
        steps: Vec::new(),
        explanation: format!(
            "boot.cfg put back from {} (taken {} by {})",
            from.dir.display(),
            manifest.created,
            manifest.tool
        ),
        target_path: target.to_path_buf(),
    };
    let mut restored: Vec<(u32, BootCfg)> = Vec::new();
    for (e, backup) in manifest.entries.iter().zip(&from.files) {
        let p = e.partition.unwrap_or(0);
        let r = t
            .banks
            .iter()
            .find(|r| r.bank.partition == p)
            .ok_or_else(|| BankOpError::NoSuchBank {
                partition: p,
                banks: banks_list(&t),
            })?;
        let location = format!("{} /{BOOT_CFG}", where_(t.lone, p));
        let standing = backup::compare(e, Some((p, &r.bank.uuid)), &r.bytes, &location, force)?;
        let cfg = BootCfg::parse(backup).map_err(|cause| BankOpError::BadBackup {
            path: from.dir.join(&e.backup),
            cause,
        })?;
        let mut s = step(t.lone, r, backup.clone())?;
        if standing == Standing::Restored {
            s.notes
                .push("already holds the backed-up boot.cfg".to_string());
        }
        restored.push((p, cfg));
        plan.steps.push(s);
    }
    let refs: Vec<(u32, &BootCfg)> = restored.iter().map(|(p, c)| (*p, c)).collect();
    plan.next_boot_partition_after = predict(&t.banks, &refs).next_boot_partition;
    add_recoveries(&t, &mut plan)?;
    Ok(plan)
}

/// Plans putting back boot.cfg files from a backup written by `bank rollback|select`. `Ok(None)`
/// when the backup is not one of boot.cfg files (or has no readable manifest): `fix`'s restore
/// handles it. [`crate::ops::restore::plan`] takes either kind.
pub fn plan_restore(
    target: &Path,
    from: &Path,
    force: bool,
) -> Result<Option<BankPlan>, BankOpError> {
    match backup::read(from) {
        Ok(b) if b.is_boot_cfg() => plan_restore_of(target, &b, force).map(Some),
        Ok(_) | Err(BackupError::NotAManifest { .. } | BackupError::Io { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
