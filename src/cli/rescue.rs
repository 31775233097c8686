//! `bootbank rescue`: the dialog a rescue system runs at boot. It lists every ESXi boot disk
//! with its verdict and the hardware it hangs behind, lets the user pick one, shows the plan
//! and the diff, asks, writes through `fix`'s safe path and says what the host will do now and
//! what to do next. `--auto-fix` does the same for every disk without asking.
//!
//! A server's console may be its screen (iDRAC/iLO/IPMI virtual KVM) or its serial port
//! (serial-over-LAN), and the person at night does not know which one the rescue image
//! favours: with `--console` the dialog is written to every terminal named and an answer is
//! taken from whichever is typed on first.

use bootbank::findings::Severity;
use bootbank::fix::{self, FixError};
use bootbank::rescue::{self, EsxDisk, Scan, Where};
use clap::Args;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct RescueArgs {
    /// Disks to look at (block devices or images). Default: every whole disk the sysfs tree
    /// lists, read through the device directory.
    disks: Vec<PathBuf>,
    /// Unattended: fix every critical finding on every ESXi disk found, without asking (as
    /// `fix --yes` would), printing the verdicts before and after.
    #[arg(long)]
    auto_fix: bool,
    /// Show the verdicts and the plans; write nothing.
    #[arg(long, conflicts_with = "auto_fix")]
    dry_run: bool,
    /// Where to copy every file before it changes, one subdirectory per disk. Default: a new
    /// directory under /run (RAM: lost at power-off, which the dialog says) when /run is a
    /// tmpfs, else ./bootbank-backup-<UTC time>.
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    /// The sysfs tree that lists the disks and names their controllers.
    #[arg(long, value_name = "PATH", default_value = "/sys")]
    sysfs: PathBuf,
    /// The directory holding the disks' device files.
    #[arg(long, value_name = "DIR", default_value = "/dev")]
    dev: PathBuf,
    /// Talk on this terminal (repeatable, e.g. --console /dev/tty1 --console /dev/ttyS0):
    /// everything is written to each; an answer is taken from the first one typed on. Default:
    /// standard input and output.
    #[arg(long = "console", value_name = "TTY")]
    consoles: Vec<PathBuf>,
    /// Print the disks found, their findings and (with --auto-fix) what was written, as JSON.
    /// Never asks.
    #[arg(long)]
    json: bool,
}

/// The terminals the dialog runs on.
struct Term {
    ttys: Vec<(String, File)>,
}

impl Term {
    fn open(paths: &[PathBuf]) -> Term {
        use std::os::unix::fs::OpenOptionsExt;
        let mut ttys = Vec::new();
        for p in paths {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(p)
            {
                // A console that exists but is no terminal (a file, /dev/null) cannot answer.
                Ok(f) if f.is_terminal() => ttys.push((p.display().to_string(), f)),
                Ok(_) => eprintln!(
                    "bootbank: note: {} is not a terminal; not used",
                    p.display()
                ),
                Err(e) => eprintln!("bootbank: note: cannot open {}: {e}; not used", p.display()),
            }
        }
        Term { ttys }
    }

    fn say(&mut self, text: &str) {
        if self.ttys.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        } else {
            for (_, f) in &mut self.ttys {
                let _ = f.write_all(text.as_bytes());
                let _ = f.flush();
            }
        }
    }

    /// Whether someone can answer: a console was opened, or stdin is a terminal.
    fn can_ask(&self) -> bool {
        !self.ttys.is_empty() || std::io::stdin().is_terminal()
    }

    /// Asks and reads one line; None when no terminal can answer any more. Anything typed
    /// before the question is discarded first, so that a key pressed during the boot is never
    /// taken as a yes.
    fn ask(&mut self, question: &str) -> Option<String> {
        if self.ttys.is_empty() {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                let _ = rustix::termios::tcflush(&stdin, rustix::termios::QueueSelector::IFlush);
            }
            self.say(question);
            let mut line = String::new();
            return match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line.trim().to_string()),
            };
        }
        for (_, f) in &self.ttys {
            let _ = rustix::termios::tcflush(f, rustix::termios::QueueSelector::IFlush);
        }
        self.say(question);
        loop {
            if self.ttys.is_empty() {
                return None;
            }
            use rustix::event::{PollFd, PollFlags};
            let mut fds: Vec<PollFd<'_>> = self
                .ttys
                .iter()
                .map(|(_, f)| PollFd::new(f, PollFlags::IN))
                .collect();
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return None,
            }
            let ready = fds.iter().position(|p| !p.revents().is_empty());
            let Some(i) = ready else { continue };
            let mut buf = [0u8; 512];
            match self.ttys[i].1.read(&mut buf) {
                Ok(0) | Err(_) => {
                    // A terminal that hung up cannot answer; the others still can.
                    self.ttys.remove(i);
                }
                Ok(k) => {
                    let answer = String::from_utf8_lossy(&buf[..k]).trim().to_string();
                    let from = self.ttys[i].0.clone();
                    for (j, (_, f)) in self.ttys.iter_mut().enumerate() {
                        if j != i {
                            let _ = writeln!(f, "{answer}   (answered on {from})");
                        }
                    }
                    return Some(answer);
                }
            }
        }
    }

    fn yes(&mut self, question: &str) -> Option<bool> {
        self.ask(&format!("{question} [y/N] "))
            .map(|a| matches!(a.as_str(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

pub fn run(a: RescueArgs) -> ExitCode {
    let mut term = Term::open(&a.consoles);
    let at = Where {
        sysfs: a.sysfs.clone(),
        dev: a.dev.clone(),
    };
    if !a.json {
        term.say("bootbank rescue: looking for ESXi boot disks...\n");
    }
    let scan = match rescue::scan(&at, &a.disks) {
        Ok(s) => s,
        Err(e) => return say_fail(&mut term, &super::error_text(&e), 2),
    };
    if a.json && !a.auto_fix {
        super::print_json(&scan);
        return ExitCode::from(if scan.esxi.is_empty() { 2 } else { 0 });
    }
    if !a.json {
        term.say(&render_scan(&scan));
    }
    if scan.esxi.is_empty() {
        if a.json {
            super::print_json(&serde_json::json!({"scan": scan, "fixed": []}));
        }
        return say_fail(
            &mut term,
            "no ESXi boot disk found (is the storage controller's driver in this image, and is the disk attached?)",
            2,
        );
    }
    let backup_base = a
        .backup_dir
        .clone()
        .unwrap_or_else(rescue::default_backup_dir);
    if a.auto_fix {
        return auto_fix(&mut term, &at, scan, &backup_base, a.json);
    }
    if a.dry_run {
        for d in scan.esxi.iter().filter(|d| d.has_critical()) {
            match rescue::plan_fix(d) {
                Ok(Some(plan)) => term.say(&super::fix::render_plan(&plan)),
                Ok(None) => {}
                Err(e) => term.say(&format!("{}: {}\n", d.device, super::fix::message(&e))),
            }
        }
        term.say("Dry run: nothing written.\n");
        return ExitCode::SUCCESS;
    }
    interactive(&mut term, &at, scan, &backup_base)
}

/// The error on the consoles when the dialog runs there (stderr is then one of them too, or
/// nobody's), else on stderr as every command does.
fn say_fail(term: &mut Term, msg: &str, code: u8) -> ExitCode {
    if term.ttys.is_empty() {
        return super::fail(msg, code);
    }
    term.say(&format!("bootbank: error: {msg}\n"));
    ExitCode::from(code)
}

fn interactive(term: &mut Term, at: &Where, mut scan: Scan, backup_base: &Path) -> ExitCode {
    let mut fixed_any = false;
    loop {
        let candidates: Vec<usize> = (0..scan.esxi.len())
            .filter(|&i| !scan.esxi[i].critical_devices.is_empty())
            .collect();
        if candidates.is_empty() {
            if fixed_any {
                term.say(&next_steps());
            } else {
                let unfixable = scan.esxi.iter().any(|d| !d.critical_other.is_empty());
                term.say(if unfixable {
                    "No device setting to give back; the critical problems above need another remedy (see each fix: line).\n"
                } else {
                    "Nothing to fix: no ESXi disk found has a critical problem. Nothing written.\n"
                });
            }
            return ExitCode::SUCCESS;
        }
        if !term.can_ask() {
            return say_fail(
                term,
                "not asking without a terminal: use --auto-fix to fix unattended, or --dry-run to only look; nothing written",
                2,
            );
        }
        let chosen = if scan.esxi.len() == 1 {
            term.say(&format!(
                "\nDisk 1 ({}) is the only ESXi boot disk.\n",
                scan.esxi[0].name
            ));
            0
        } else {
            let list: Vec<String> = candidates
                .iter()
                .map(|&i| format!("{} = {}", i + 1, scan.esxi[i].name))
                .collect();
            let q = format!(
                "\nWhich disk do you want to fix? ({}; Enter: none) ",
                list.join(", ")
            );
            match term.ask(&q) {
                None => return ExitCode::from(3),
                Some(t) if t.is_empty() => {
                    term.say("Nothing written.\n");
                    return ExitCode::from(if fixed_any { 0 } else { 3 });
                }
                Some(t) => match t.parse::<usize>() {
                    Ok(n) if n >= 1 && n <= scan.esxi.len() && candidates.contains(&(n - 1)) => {
                        n - 1
                    }
                    _ => {
                        term.say(&format!("\"{t}\" is not one of {}.\n", list.join(", ")));
                        continue;
                    }
                },
            }
        };
        let disk = &scan.esxi[chosen];
        let plan = match rescue::plan_fix(disk) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => return say_fail(term, &super::fix::message(&e), super::write::code(&e)),
        };
        term.say(&format!("\n{}", super::fix::render_plan(&plan)));
        if !plan.has_changes() {
            term.say("Nothing to change; nothing written.\n");
            return ExitCode::SUCCESS;
        }
        match term.yes(&format!("Write these changes to {}?", disk.device)) {
            Some(true) => {}
            Some(false) => {
                term.say("Nothing written.\n");
                return ExitCode::from(3);
            }
            None => return ExitCode::from(3),
        }
        let backup = backup_base.join(backup_name(&disk.name));
        if let Err(e) = write_one(term, disk, &plan, &backup) {
            return say_fail(term, &super::fix::message(&e), super::write::code(&e));
        }
        fixed_any = true;
        let name = disk.name.clone();
        match rescue::scan(at, &[PathBuf::from(&disk.device)]) {
            Ok(again) => {
                for d in &again.esxi {
                    term.say(&format!("\nNow, {}:\n{}", d.name, indent(&verdict(d))));
                }
                if let Some(i) = scan.esxi.iter().position(|d| d.name == name)
                    && let Some(new) = again.esxi.into_iter().next()
                {
                    scan.esxi[i] = new;
                }
            }
            Err(e) => term.say(&format!("warning: reading the disk again failed: {e}\n")),
        }
        if scan.esxi.len() == 1 {
            term.say(&next_steps());
            return ExitCode::SUCCESS;
        }
    }
}

fn auto_fix(term: &mut Term, at: &Where, scan: Scan, backup_base: &Path, json: bool) -> ExitCode {
    let mut worst = 0u8;
    let mut fixed = Vec::new();
    if !json {
        term.say("\nbootbank.auto=fix: fixing every critical finding on every ESXi disk found.\n");
    }
    for disk in &scan.esxi {
        let plan = match rescue::plan_fix(disk) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                term.say(&format!(
                    "{}: not fixed: {}\n",
                    disk.device,
                    super::fix::message(&e)
                ));
                worst = worst.max(super::write::code(&e));
                continue;
            }
        };
        if !plan.has_changes() {
            continue;
        }
        if !json {
            term.say(&format!("\n{}", super::fix::render_plan(&plan)));
        }
        let backup = backup_base.join(backup_name(&disk.name));
        match write_one(term, disk, &plan, &backup) {
            Ok(outcome) => fixed.push(serde_json::json!({
                "disk": disk.name, "device": disk.device, "plan": plan, "outcome": outcome,
            })),
            Err(e) => {
                term.say(&format!(
                    "{}: write failed: {}\n",
                    disk.device,
                    super::fix::message(&e)
                ));
                worst = worst.max(super::write::code(&e));
            }
        }
    }
    let names: Vec<PathBuf> = scan.esxi.iter().map(|d| PathBuf::from(&d.device)).collect();
    let after = rescue::scan(at, &names);
    if json {
        super::print_json(&serde_json::json!({
            "scan": scan,
            "fixed": fixed,
            "after": after.as_ref().ok(),
        }));
    } else {
        match &after {
            Ok(again) => {
                term.say("\nAfter the fix:\n");
                for d in &again.esxi {
                    term.say(&format!(
                        "  {} ({}):\n{}",
                        d.name,
                        d.device,
                        indent(&verdict(d))
                    ));
                }
            }
            Err(e) => term.say(&format!("warning: reading the disks again failed: {e}\n")),
        }
        term.say(&format!(
            "bootbank rescue: done: {} disk(s) fixed{}.\n",
            fixed.len(),
            if worst == 0 {
                String::new()
            } else {
                ", some could not be (see above)".into()
            }
        ));
        if !fixed.is_empty() {
            term.say(&next_steps());
        }
    }
    ExitCode::from(worst)
}

/// Writes one disk's plan through `fix::apply` and says where the backup went.
fn write_one(
    term: &mut Term,
    disk: &EsxDisk,
    plan: &fix::Plan,
    backup: &Path,
) -> Result<fix::Outcome, FixError> {
    let outcome = fix::apply(plan, backup)?;
    let mut s = String::new();
    for r in &outcome.recovered {
        let _ = writeln!(s, "Recovered: {r}");
    }
    for w in &outcome.written {
        let _ = writeln!(s, "Written and verified: {w}");
    }
    if let Some(b) = &outcome.backup_dir {
        let _ = writeln!(s, "Backup of every changed file: {b}");
        if rescue::is_volatile(Path::new(b)) {
            let _ = writeln!(
                s,
                "  This backup is in RAM and is lost at power-off. To keep it, plug in a USB stick and copy it, e.g.\n    mount /dev/sdX1 /mnt && cp -r {b} /mnt/ && umount /mnt"
            );
        }
        let _ = writeln!(
            s,
            "  Undo with: bootbank restore {} --from {b}",
            disk.device
        );
    }
    term.say(&s);
    Ok(outcome)
}

/// The disk's backup subdirectory: its kernel name, or for an image named by path the path
/// with its slashes replaced (a path joined as it is would replace the whole backup directory).
fn backup_name(disk: &str) -> String {
    disk.trim_start_matches('/').replace('/', "_")
}

fn next_steps() -> String {
    "\nWhat to do next:\n  1. Remove the rescue media: disconnect the virtual CD/DVD in the iDRAC/iLO/IPMI console, or pull the USB stick.\n  2. Make sure the ESXi disk is first in the boot order, then reboot (type `reboot` at the shell, or reset the server).\n  3. When ESXi is up, check in the vSphere Client (Host > Configure > PCI Devices) that the controller is no longer marked for passthrough; it was the mistake this repaired.\n".to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn verdict(d: &EsxDisk) -> String {
    let mut s = super::human::verdict(&d.verdict_report());
    for (addr, how) in boot_disk_words(d) {
        let _ = writeln!(
            s,
            "In plain words: {how} {addr} is set to passthrough. At the next boot ESXi hands it to a virtual machine and loses the very disk it boots from ({}), with the datastores on it; a setting changed on the running host is then lost at each reboot.",
            d.name
        );
    }
    s
}

/// For each device that takes the boot disk away: its address and how it stands to the disk,
/// with its names ("the storage controller of this disk, LSI MegaRAID SAS 1078 at").
fn boot_disk_words(d: &EsxDisk) -> Vec<(String, String)> {
    d.takes_boot_disk
        .iter()
        .map(|addr| {
            let is_controller = d
                .controller
                .as_ref()
                .is_some_and(|c| c.address.to_string() == *addr);
            let names = d
                .report
                .devices
                .iter()
                .find(|r| r.conf.pci_address == *addr)
                .and_then(|r| r.sysfs.as_ref())
                .map(device_name)
                .unwrap_or_default();
            let role = if is_controller {
                "the storage controller of this disk"
            } else {
                "a PCI bridge above the storage controller of this disk"
            };
            let how = if names.is_empty() {
                format!("{role},")
            } else {
                format!("{role}, {names},")
            };
            (addr.clone(), format!("{} at", how.trim_end_matches(',')))
        })
        .collect()
}

fn device_name(s: &bootbank::SysfsDevice) -> String {
    let vendor = s
        .vendor_name
        .clone()
        .unwrap_or(format!("{:04x}", s.vendor_id));
    let device = s
        .device_name
        .clone()
        .unwrap_or(format!("device {:04x}", s.device_id));
    format!("{vendor} {device}")
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "size unknown".into(),
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

fn render_scan(scan: &Scan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Found {} ESXi boot disk{}.",
        scan.esxi.len(),
        if scan.esxi.len() == 1 { "" } else { "s" }
    );
    for (i, d) in scan.esxi.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nDisk {}: {} ({}), {}{}",
            i + 1,
            d.device,
            d.name,
            size(d.size_bytes),
            d.model
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        );
        match &d.controller {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "  behind controller {}: {}{}{}",
                    c.address,
                    device_name(c),
                    c.class_name
                        .as_deref()
                        .map(|n| format!(" [{n}]"))
                        .unwrap_or_default(),
                    c.driver
                        .as_deref()
                        .map(|n| format!(", driver {n}"))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(s, "  behind no PCI controller that sysfs names");
            }
        }
        for b in &d.bridges {
            let _ = writeln!(s, "    via {}: {}", b.address, device_name(b));
        }
        s.push_str(&indent(&verdict(d)));
        for f in d
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Critical)
        {
            let _ = writeln!(s, "  {}: {}", f.severity.as_str(), f.message);
        }
        for w in &d.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
    }
    if !scan.other.is_empty() {
        let _ = writeln!(s, "\nOther disks (not ESXi boot disks):");
        for o in &scan.other {
            let _ = writeln!(
                s,
                "  {} ({}, {}): {}",
                o.device,
                size(o.size_bytes),
                o.model.as_deref().unwrap_or("no model"),
                o.reason
            );
        }
    }
    s
}
