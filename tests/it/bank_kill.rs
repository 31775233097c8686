//! End to end: `bootbank bank select 6` on the demo disk (bank 6 gets a larger `updated`, written
//! through the safe replace of boot.cfg: a new chain, then one directory-entry switch) and `bank rollback` (one
//! bootstate digit in place), killed by strace at the Nth `pwrite64` and at the Nth `fsync`.
//! After each kill: `bank status --json` exits 0 and predicts the old or the new next boot, the
//! boot.cfg that status and recovery use holds the old or the new bytes exactly (as mtools reads
//! them), boot.cfg itself is complete, fsck.fat reports only lost clusters or differing FAT
//! copies; and the same command run again (only `bank status` after a finished rollback: a
//! second rollback would roll back again) exits 0, predicts the new next boot and leaves
//! `fsck.fat -n` clean. Every write and every fsync is a crash point.
//!
//! Needs strace (and ptrace permission); under `CI=true` its absence fails the test.

use crate::common;
use crate::crash_support;

use crate::common::TempDir;
use crate::crash_support::BankPart;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bootbank"))
}

fn output(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

/// The next-boot partition `bank status --json` predicts.
fn next_boot(img: &Path) -> Result<Option<u64>, String> {
    let out = output(
        Command::new(bin())
            .args(["bank", "status", "--json"])
            .arg(img),
    );
    if !out.status.success() {
        return Err(format!(
            "bank status exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["next_boot_partition"].as_u64())
}

struct Case {
    /// `bank` subcommand arguments after the target, e.g. `["6"]` for select.
    verb: &'static str,
    extra: &'static [&'static str],
    /// The bank whose boot.cfg changes.
    changed: u32,
    old_next: u64,
    new_next: u64,
}

fn run_case(case: &Case) {
    let tmp = TempDir::new(&format!("bank-kill-{}", case.verb));
    let pristine = tmp.join("pristine.img");
    std::fs::copy(crash_support::demo(), &pristine).unwrap();
    let part = BankPart::of(&pristine, case.changed);
    let old_cfg = part.read(&pristine, "boot.cfg").expect("boot.cfg");
    let args = |img: &Path, backup: &Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec!["bank".into(), case.verb.into(), img.into()];
        v.extend(case.extra.iter().map(Into::into));
        v.extend(["--yes".into(), "--backup-dir".into(), backup.into()]);
        v
    };

    // A clean run: the new bytes, and how many writes and fsyncs it makes.
    let clean = tmp.join("clean.img");
    std::fs::copy(&pristine, &clean).unwrap();
    let trace = tmp.join("trace");
    let out = output(
        common::cmd("strace")
            .args(["-f", "-e", "trace=pwrite64,fsync", "-o"])
            .arg(&trace)
            .arg(bin())
            .args(args(&clean, &tmp.join("backup-clean"))),
    );
    assert!(out.status.success(), "{out:?}");
    let new_cfg = part.read(&clean, "boot.cfg").expect("boot.cfg");
    assert_ne!(new_cfg, old_cfg);
    assert_eq!(next_boot(&clean).unwrap(), Some(case.new_next));
    let text = std::fs::read_to_string(&trace).unwrap();
    let count = |s: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("{s}(")))
            .count() as u64
    };
    let (writes, syncs) = (count("pwrite64"), count("fsync"));
    assert!(writes >= 1 && syncs >= 1, "{writes} writes, {syncs} fsyncs");

    let mut problems = Vec::new();
    let mut points = 0;
    for (syscall, total) in [("pwrite64", writes), ("fsync", syncs)] {
        for n in 1..=total {
            points += 1;
            let mut problem = |what: String| problems.push(format!("{syscall} N={n}: {what}"));
            let img = tmp.join("kill.img");
            std::fs::copy(&pristine, &img).unwrap();
            let out = output(
                common::cmd("strace")
                    .args(["-f", "-o", "/dev/null", "-e"])
                    .arg(format!("trace={syscall}"))
                    .arg("-e")
                    .arg(format!("inject={syscall}:signal=KILL:when={n}"))
                    .arg(bin())
                    .args(args(&img, &tmp.join(format!("backup-{syscall}-{n}")))),
            );
            if out.status.signal() != Some(libc::SIGKILL) && out.status.code() != Some(137) {
                problem(format!("not killed: {}", out.status));
                continue;
            }
            let after_kill = next_boot(&img);
            match after_kill {
                Ok(Some(p)) if p == case.old_next || p == case.new_next => {}
                ref other => problem(format!("after the kill status says {other:?}")),
            }
            // The boot.cfg in effect: boot.cfg, or boot.new when only it is complete, or
            // boot.old while the switch was under way; its bytes are the old or the new ones.
            let names = part.names(&img);
            let effective = ["boot.cfg", "boot.old", "boot.new"]
                .into_iter()
                .filter(|n| names.iter().any(|x| x == n))
                .map(|n| part.read(&img, n))
                .collect::<Vec<_>>();
            if !effective
                .iter()
                .any(|b| b.as_ref() == Some(&old_cfg) || b.as_ref() == Some(&new_cfg))
            {
                problem(format!("no complete boot.cfg (mdir {names:?})"));
            }
            // Without a rerun, the name the bootloader loads holds a complete boot.cfg.
            if !names.iter().any(|x| x == "boot.cfg")
                || !matches!(part.read(&img, "boot.cfg"), Some(b) if b == old_cfg || b == new_cfg)
            {
                problem(format!(
                    "boot.cfg is not complete after the kill (mdir {names:?})"
                ));
            }
            let fsck = part.fsck(&img, &tmp.join("fsck.img"));
            if !fsck.only_interrupted_write_leftovers() {
                problem(format!("fsck.fat after the kill: {fsck}"));
            }
            // Run it again unless the kill came after the change was in place: a rollback that
            // already happened is (rightly) refused a second time.
            let done = matches!(after_kill, Ok(Some(p)) if p == case.new_next)
                && !part
                    .names(&img)
                    .iter()
                    .any(|n| n == "boot.new" || n == "boot.old");
            // `select` again is a no-op for the configuration that still reclaims the FAT's
            // leftovers; a second rollback would roll back again, so only status is run.
            let again = if done && case.verb == "rollback" {
                output(Command::new(bin()).args(["bank", "status"]).arg(&img))
            } else {
                output(
                    Command::new(bin()).args(args(&img, &tmp.join(format!("again-{syscall}-{n}")))),
                )
            };
            if !again.status.success() {
                problem(format!(
                    "rerun exited {}: {}",
                    again.status,
                    String::from_utf8_lossy(&again.stderr)
                ));
                continue;
            }
            match next_boot(&img) {
                Ok(Some(p)) if p == case.new_next => {}
                other => problem(format!("after the rerun status says {other:?}")),
            }
            let names = part.names(&img);
            if names.iter().any(|n| n == "boot.new" || n == "boot.old")
                || part.read(&img, "boot.cfg").as_ref() != Some(&new_cfg)
            {
                problem(format!("after the rerun mdir lists {names:?}"));
            }
            let fsck = part.fsck(&img, &tmp.join("fsck.img"));
            if !fsck.is_clean() {
                problem(format!("fsck.fat after the rerun: {fsck}"));
            }
        }
    }
    assert!(points > 0);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn bank_select_and_rollback_survive_a_kill_at_every_write_and_fsync() {
    if !common::require_tools(&["strace", "mtools", "fsck.fat"]) {
        return;
    }
    run_case(&Case {
        verb: "select",
        extra: &["6"],
        changed: 6,
        old_next: 5,
        new_next: 6,
    });
    run_case(&Case {
        verb: "rollback",
        extra: &[],
        changed: 5,
        old_next: 5,
        new_next: 6,
    });
}
