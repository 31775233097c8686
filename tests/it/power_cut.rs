//! Power cuts, replayed: `fix`, `bank select`, `bank rollback` and `restore` run once on the demo disk through a
//! storage that records every write and flush (`bootbank::io::record`); then every image a power
//! cut could leave is rebuilt: all writes up to a flush, plus any subset of the sectors written
//! after it, each sector as any version written to it or untouched (reorderings and torn
//! multi-sector writes included). Exhaustive while an interval has at most `EXHAUSTIVE_UP_TO`
//! combinations, else that many sampled with a fixed seed.
//!
//! After each crash state, without a rerun: the bank that boots next holds a complete file
//! under the name ESXi loads (the old or the new bytes exactly, as mtools reads them; both were
//! extracted once with GNU tar), and bootbank reads a configuration from it. Then the same
//! command runs again and `fsck.fat -n` on the bank is clean. The counts are printed.

use crate::common::{self, TempDir};
use crate::crash_support::{self, BankPart, DEVICE};
use bootbank::disk::Disk;
use bootbank::fix::{self, Options, Request};
use bootbank::io::record::{Journal, Recorder};
use std::path::Path;

/// Combinations per flush interval tried exhaustively; above it, this many are sampled.
const EXHAUSTIVE_UP_TO: u64 = 512;
/// The demo's logical sector.
const SECTOR: u64 = 512;

/// Runs `op` on a disk over `img`'s bytes that records what it does.
fn record(img: &Path, op: impl FnOnce(Disk)) -> Journal {
    let base = std::fs::read(img).unwrap();
    let len = base.len() as u64;
    let (rec, events) = Recorder::new(base.clone());
    op(Disk::from_storage(Box::new(rec), len, true));
    let events = events.borrow();
    Journal::new(base, &events, SECTOR)
}

/// GNU tar reads both archive levels of a state.tgz, esx.conf among them.
fn tar_extracts(state: &[u8], tmp: &TempDir, tag: &str) {
    let dir = tmp.join(format!("tar-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.tgz"), state).unwrap();
    common::run(
        common::cmd("tar")
            .arg("-xzf")
            .arg(dir.join("state.tgz"))
            .arg("-C")
            .arg(&dir),
    );
    let listing = common::run_text(common::cmd("tar").arg("-tzf").arg(dir.join("local.tgz")));
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "etc/vmware/esx.conf"),
        "{tag}: GNU tar lists no esx.conf in local.tgz: {listing}"
    );
}

/// One command under test.
struct Case<'a> {
    name: &'a str,
    /// The bank and file whose name ESXi loads.
    partition: u32,
    file: &'a str,
    old: Vec<u8>,
    new: Vec<u8>,
    /// Runs the command for real on the image file (the rerun).
    rerun: &'a dyn Fn(&Path) -> Result<(), String>,
    /// What bootbank reads after a cut: Ok when a complete configuration or boot.cfg is seen.
    reads: &'a dyn Fn(&Path) -> Result<(), String>,
}

/// Replays every crash state of `journal`; returns the problems and prints the coverage.
fn replay(case: &Case<'_>, journal: &Journal, tmp: &TempDir) -> Vec<String> {
    let mut problems = Vec::new();
    let img = tmp.join(format!("{}-cut.img", case.name));
    let scratch = tmp.join("fsck.img");
    let mut total = 0;
    let mut report = Vec::new();
    for k in 0..journal.intervals() {
        let (states, cov) = journal.crash_states(k, EXHAUSTIVE_UP_TO, 0x5eed + k as u64);
        report.push(format!(
            "  interval {k}: {} sectors written, {} crash states {}",
            cov.sectors,
            cov.tried,
            match cov.possible {
                Some(_) => "(all of them)".to_string(),
                None => "(sampled, fixed seed)".to_string(),
            }
        ));
        for (i, st) in states.into_iter().enumerate() {
            total += 1;
            let mut problem = |what: String| {
                problems.push(format!(
                    "{} interval {k} state {i} ({} of {} sectors): {what}",
                    case.name, st.landed, st.sectors
                ))
            };
            std::fs::write(&img, &st.image).unwrap();
            let bank = BankPart::of(&img, case.partition);
            match bank.read(&img, case.file) {
                Some(b) if b == case.old || b == case.new => {}
                Some(b) => problem(format!(
                    "mtools reads a {}-byte {} that is neither the old nor the new one",
                    b.len(),
                    case.file
                )),
                None => problem(format!("mtools cannot read {}", case.file)),
            }
            if let Err(e) = (case.reads)(&img) {
                problem(format!("bootbank after the cut: {e}"));
            }
            let cut = bank.fsck(&img, &scratch);
            if !cut.only_interrupted_write_leftovers() {
                problem(format!("fsck.fat -n after the cut: {cut}"));
            }
            if let Err(e) = (case.rerun)(&img) {
                problem(format!("rerun failed: {e}"));
                continue;
            }
            if bank.read(&img, case.file).as_ref() != Some(&case.new) {
                problem(format!("after the rerun {} is not the new one", case.file));
            }
            let after = bank.fsck(&img, &scratch);
            if !after.is_clean() {
                problem(format!("fsck.fat -n after the rerun: {after}"));
            }
        }
    }
    eprintln!(
        "{}: {} flushes, {total} crash states tried\n{}",
        case.name,
        journal.flushes(),
        report.join("\n")
    );
    assert!(total > 0);
    problems
}

fn owner(img: &Path) -> Result<(), String> {
    let r = bootbank::inspect::inspect(img, &Default::default()).map_err(|e| e.to_string())?;
    match r
        .devices
        .iter()
        .find(|d| d.conf.pci_address == DEVICE)
        .and_then(|d| d.conf.owner_raw.as_deref())
    {
        Some("passthru" | "vmkernel") => Ok(()),
        other => Err(format!("owner {other:?}")),
    }
}

fn fix_devices() -> Request {
    Request::Devices(vec![DEVICE.to_string()])
}

#[test]
fn fix_bank_select_rollback_and_restore_survive_every_power_cut() {
    if !common::builder_available() || !common::require_tools(&["mtools", "fsck.fat", "tar"]) {
        return;
    }
    let tmp = TempDir::new("power-cut");
    let pristine = tmp.join("demo.img");
    std::fs::copy(crash_support::demo(), &pristine).unwrap();
    let mut problems = Vec::new();
    let n = std::cell::Cell::new(0);
    let backup = |tag: &str| {
        n.set(n.get() + 1);
        tmp.join(format!("backup-{tag}-{}", n.get()))
    };

    // fix: state.tgz of bank 5.
    let plan = fix::plan(&pristine, &fix_devices(), &Options::default()).unwrap();
    let (old, new) = (
        plan.steps[0].old_bytes.clone(),
        plan.steps[0].new_bytes.clone(),
    );
    tar_extracts(&old, &tmp, "old");
    tar_extracts(&new, &tmp, "new");
    let journal = record(&pristine, |disk| {
        fix::apply_on(&plan, &backup("fix"), Some(disk)).unwrap();
    });
    let rerun_fix = |img: &Path| -> Result<(), String> {
        let plan =
            fix::plan(img, &fix_devices(), &Options::default()).map_err(|e| e.to_string())?;
        fix::apply(&plan, &backup("fix"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    problems.extend(replay(
        &Case {
            name: "fix",
            partition: 5,
            file: "state.tgz",
            old: old.clone(),
            new: new.clone(),
            rerun: &rerun_fix,
            reads: &owner,
        },
        &journal,
        &tmp,
    ));

    // bank select 6: boot.cfg of bank 6 replaced.
    let bank_plan = bootbank::bank::plan_select(&pristine, 6).unwrap();
    let step = bank_plan
        .steps
        .iter()
        .find(|s| s.partition == Some(6))
        .expect("select changes bank 6");
    let (old_cfg, new_cfg) = (step.old_bytes.clone(), step.new_bytes.clone());
    assert_ne!(old_cfg, new_cfg);
    let journal = record(&pristine, |disk| {
        bootbank::bank::apply_on(&bank_plan, &backup("select"), disk).unwrap();
    });
    let rerun_select = |img: &Path| -> Result<(), String> {
        let plan = bootbank::bank::plan_select(img, 6).map_err(|e| e.to_string())?;
        bootbank::bank::apply(&plan, &backup("select"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let status = |img: &Path| -> Result<(), String> {
        let s = bootbank::bank::status(img).map_err(|e| e.to_string())?;
        match s.next_boot_partition {
            Some(5 | 6) => Ok(()),
            other => Err(format!("next boot {other:?}")),
        }
    };
    problems.extend(replay(
        &Case {
            name: "bank select 6",
            partition: 6,
            file: "boot.cfg",
            old: old_cfg,
            new: new_cfg,
            rerun: &rerun_select,
            reads: &status,
        },
        &journal,
        &tmp,
    ));

    // bank rollback: bank 5's bootstate digit overwritten in place (one byte, one sector).
    let rollback_plan = bootbank::bank::plan_rollback(&pristine).unwrap();
    let step = rollback_plan
        .steps
        .iter()
        .find(|s| s.partition == Some(5))
        .expect("rollback changes bank 5");
    let (old_cfg, new_cfg) = (step.old_bytes.clone(), step.new_bytes.clone());
    assert_eq!(old_cfg.len(), new_cfg.len(), "one digit in place");
    let journal = record(&pristine, |disk| {
        bootbank::bank::apply_on(&rollback_plan, &backup("rollback"), disk).unwrap();
    });
    // A rollback that already happened is not repeated (it would roll back again).
    let rerun_rollback = |img: &Path| -> Result<(), String> {
        let now = bootbank::bank::status(img).map_err(|e| e.to_string())?;
        if now.next_boot_partition == Some(6) {
            return Ok(());
        }
        let plan = bootbank::bank::plan_rollback(img).map_err(|e| e.to_string())?;
        bootbank::bank::apply(&plan, &backup("rollback"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    problems.extend(replay(
        &Case {
            name: "bank rollback",
            partition: 5,
            file: "boot.cfg",
            old: old_cfg,
            new: new_cfg,
            rerun: &rerun_rollback,
            reads: &status,
        },
        &journal,
        &tmp,
    ));

    // restore: the fixed disk put back from fix's backup.
    let fixed = tmp.join("fixed.img");
    std::fs::copy(&pristine, &fixed).unwrap();
    let fix_backup = backup("restore-source");
    let plan = fix::plan(&fixed, &fix_devices(), &Options::default()).unwrap();
    fix::apply(&plan, &fix_backup).unwrap();
    let restore_plan = fix::plan_restore(&fixed, &fix_backup, false).unwrap();
    let journal = record(&fixed, |disk| {
        fix::apply_on(&restore_plan, &backup("restore"), Some(disk)).unwrap();
    });
    let rerun_restore = |img: &Path| -> Result<(), String> {
        let plan = fix::plan_restore(img, &fix_backup, false).map_err(|e| e.to_string())?;
        fix::apply(&plan, &backup("restore"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    problems.extend(replay(
        &Case {
            name: "restore",
            partition: 5,
            file: "state.tgz",
            old: new,
            new: old,
            rerun: &rerun_restore,
            reads: &owner,
        },
        &journal,
        &tmp,
    ));

    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
