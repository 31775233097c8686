//! Fault injection below the fix engine: `transaction::replace` runs over a [`Storage`] that
//! stops writing after its Nth write, for every N from 0 to the number of writes of an
//! uninterrupted run. After each simulated crash the image must still inspect to a complete
//! configuration (the old or the new one, as mtools reads it too), and `fix` run again must
//! complete or undo the interrupted write and finish the job.
//!
//! The model is a process crash (or a power loss on a disk that keeps the order of writes): every
//! write that returned reached the image, in order, and nothing after it did. A disk that
//! reorders writes between two fsyncs is not modelled.
//!
//! After a crash `fsck.fat -n` may report only what the write protocol can leave (lost clusters,
//! FAT copies that differ on them); after the rerun it must be clean. A tally is printed. The
//! reordering of writes between flushes is replayed in `power_cut`.

use crate::common;
use crate::crash_support;

use crate::common::TempDir;
use crate::crash_support::{BankPart, DEVICE, Tally, bank};
use bootbank::config::{Config, ESX_CONF};
use bootbank::disk::{Disk, Storage};
use bootbank::fix::{self, Options, Request};
use bootbank::transaction::{self, Names};
use bootbank::write::commit::VerifyError;
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

/// What the crashing storage saw, shared with the test.
#[derive(Default)]
struct Log {
    writes: Cell<u64>,
    syncs: Cell<u64>,
    crashed: Cell<bool>,
}

/// A file that accepts `limit` writes and then "crashes": that write and every later write or
/// sync fails, and nothing more reaches the file. Syncs before the crash go through.
struct CrashAfter {
    file: File,
    limit: Option<u64>,
    log: Rc<Log>,
}

impl CrashAfter {
    fn crash(&self) -> io::Error {
        self.log.crashed.set(true);
        io::Error::other("simulated crash: nothing reaches the disk any more")
    }
}

impl Storage for CrashAfter {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.log.crashed.get() || self.limit.is_some_and(|l| self.log.writes.get() >= l) {
            return Err(self.crash());
        }
        self.file.write_all_at(buf, offset)?;
        self.log.writes.set(self.log.writes.get() + 1);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.log.crashed.get() {
            return Err(self.crash());
        }
        self.file.sync_data()?;
        self.log.syncs.set(self.log.syncs.get() + 1);
        Ok(())
    }
}

fn what() -> Request {
    Request::Devices(vec![DEVICE.to_string()])
}

/// A disk over `img` whose storage crashes after `limit` writes.
fn crashing_disk(img: &Path, limit: Option<u64>) -> (Disk, Rc<Log>) {
    let file = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let len = file.metadata().unwrap().len();
    let log = Rc::new(Log::default());
    let storage = CrashAfter {
        file,
        limit,
        log: Rc::clone(&log),
    };
    (Disk::from_storage(Box::new(storage), len, true), log)
}

/// What the write is about: the bank, and the new state.tgz with its intended esx.conf.
struct Job {
    partition: u32,
    old_bytes: Vec<u8>,
    new_bytes: Vec<u8>,
    new_esx_conf: Vec<u8>,
}

impl Job {
    fn plan(img: &Path) -> Job {
        let plan = fix::plan(img, &what(), &Options::default()).unwrap();
        assert_eq!(plan.steps.len(), 1, "one bank to change: {plan:?}");
        let step = &plan.steps[0];
        assert!(!step.changes.is_empty(), "the demo needs a change");
        Job {
            partition: step.partition.expect("a disk step names its partition"),
            old_bytes: step.old_bytes.clone(),
            new_bytes: step.new_bytes.clone(),
            new_esx_conf: step.new_esx_conf.clone(),
        }
    }

    /// The same check the engine makes: both archive levels decode, esx.conf is the new one.
    fn verify(&self) -> impl Fn(&[u8]) -> Result<(), VerifyError> + '_ {
        move |bytes: &[u8]| {
            let cfg = Config::from_state(bytes, "state.new").map_err(VerifyError::new)?;
            let local = cfg
                .local
                .as_ref()
                .ok_or_else(|| VerifyError::new(io::Error::other("no local.tgz")))?;
            let conf = local.require(ESX_CONF).map_err(VerifyError::new)?;
            if conf == self.new_esx_conf.as_slice() {
                Ok(())
            } else {
                Err(VerifyError::new(io::Error::other("esx.conf differs")))
            }
        }
    }

    /// `transaction::replace` over a storage crashing after `limit` writes; also returns the
    /// disk's own count of write calls.
    fn run(&self, img: &Path, limit: Option<u64>) -> (Result<(), String>, Rc<Log>, u64) {
        let (mut disk, log) = crashing_disk(img, limit);
        let bank = bank(&mut disk, self.partition);
        let names = Names::for_file("state.tgz");
        let verify = self.verify();
        let res = transaction::replace(&mut disk, &bank, &names, &self.new_bytes, &verify)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let calls = disk.write_calls();
        drop(disk);
        (res, log, calls)
    }
}

/// Owner of the story device and the rules of the findings, from the library's inspect.
fn inspect(img: &Path) -> Result<(Option<String>, Vec<&'static str>), String> {
    let r = bootbank::inspect::inspect(img, &Default::default()).map_err(|e| e.to_string())?;
    let owner = r
        .devices
        .iter()
        .find(|d| d.conf.pci_address == DEVICE)
        .and_then(|d| d.conf.owner_raw.clone());
    Ok((owner, r.findings.iter().map(|f| f.rule).collect()))
}

#[test]
fn every_crash_point_of_replace_is_recoverable() {
    if !common::builder_available() {
        return;
    }
    let started = Instant::now();
    let tmp = TempDir::new("fix-faults");
    let pristine = tmp.join("pristine.img");
    std::fs::copy(crash_support::demo(), &pristine).unwrap();
    let job = Job::plan(&pristine);
    let bank = BankPart::of(&pristine, job.partition);
    let scratch = tmp.join("fsck-partition.img");

    // An uninterrupted run, for the number of writes and syncs.
    let full = tmp.join("full.img");
    std::fs::copy(&pristine, &full).unwrap();
    let (res, log, calls) = job.run(&full, None);
    res.unwrap();
    let (total, syncs) = (log.writes.get(), log.syncs.get());
    assert!(total > 0);
    assert_eq!(calls, total, "Disk::write_calls vs writes the storage saw");
    assert_eq!(inspect(&full).unwrap().0.as_deref(), Some("vmkernel"));
    common::fsck_banks(&full);
    eprintln!("uninterrupted transaction::replace: {total} writes, {syncs} syncs");

    let mut problems: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    let img = tmp.join("crash.img");
    for n in 0..=total {
        let mut problem = |what: String| problems.push(format!("N={n}: {what}"));
        std::fs::copy(&pristine, &img).unwrap();
        let (res, log, _) = job.run(&img, Some(n));
        match (&res, n >= total) {
            (Ok(()), false) => problem(format!("replace succeeded with only {n} writes")),
            (Err(e), true) => problem(format!("replace failed without a crash: {e}")),
            _ => {}
        }
        assert_eq!(
            log.writes.get(),
            n.min(total),
            "N={n}: writes that reached the image"
        );

        // (a) inspect reads a complete configuration, the old or the new one, and reports the
        // interrupted write exactly when bootbank sees a leftover.
        let (owner, rules) = match inspect(&img) {
            Ok(v) => v,
            Err(e) => {
                problem(format!("inspect failed after the crash: {e}"));
                continue;
            }
        };
        let expected = match owner.as_deref() {
            Some("passthru") => &job.old_bytes,
            Some("vmkernel") => &job.new_bytes,
            other => {
                problem(format!(
                    "after the crash the owner is {other:?} ({rules:?})"
                ));
                continue;
            }
        };
        if rules.contains(&"no-configuration") {
            problem("no configuration after the crash".to_string());
        }
        let left = crash_support::leftover(&img, job.partition);
        if rules.contains(&"interrupted-write") != left.is_some() {
            problem(format!("leftover {left:?} but findings {rules:?}"));
        }

        // (b) mtools lists the file bootbank read and reads the same complete bytes.
        let names = bank.names(&img);
        let tx_names = Names::for_file("state.tgz");
        let effective = left
            .as_ref()
            .map(|l| l.effective(&tx_names).to_string())
            .unwrap_or_else(|| tx_names.current.clone());
        if !names.contains(&effective) {
            problem(format!("mdir does not list {effective}: {names:?}"));
        }
        if bank.read(&img, &effective).as_ref() != Some(expected) {
            problem(format!(
                "mcopy of {effective} differs from the {owner:?} configuration"
            ));
        }
        let after_crash = bank.fsck(&img, &scratch);
        if !after_crash.only_interrupted_write_leftovers() {
            problem(format!("fsck.fat after the crash: {after_crash}"));
        }

        // (c) fix again completes or undoes the interrupted write, then finishes the job.
        let backup = tmp.join(format!("backup-{n}"));
        let rerun = fix::plan(&img, &what(), &Options::default())
            .and_then(|plan| fix::apply(&plan, &backup));
        if let Err(e) = rerun {
            problem(format!("fix after the crash failed: {e}"));
            continue;
        }
        match inspect(&img) {
            Ok((owner, rules)) => {
                if owner.as_deref() != Some("vmkernel") || rules.contains(&"interrupted-write") {
                    problem(format!(
                        "after the rerun: owner {owner:?}, findings {rules:?}"
                    ));
                }
            }
            Err(e) => problem(format!("inspect after the rerun failed: {e}")),
        }
        let names = bank.names(&img);
        if names.iter().any(|n| n == "state.new" || n == "state.old")
            || !names.iter().any(|n| n == "state.tgz")
        {
            problem(format!("after the rerun mdir lists {names:?}"));
        }
        if bank.read(&img, "state.tgz").as_ref() != Some(&job.new_bytes) {
            problem("after the rerun mcopy reads another state.tgz".to_string());
        }
        let after_rerun = bank.fsck(&img, &scratch);
        if !after_rerun.is_clean() {
            problem(format!("fsck.fat after the rerun: {after_rerun}"));
        }
        if (n == 0 || n == total) && !(after_crash.is_clean() && after_rerun.is_clean()) {
            problem(format!("fsck.fat: {after_crash} / {after_rerun}"));
        }
        tally.add(
            n,
            &left,
            owner.as_deref().unwrap_or("-"),
            &after_crash,
            &after_rerun,
        );
    }
    eprintln!("{tally}");
    eprintln!("fix_faults: {:.1?}", started.elapsed());
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
