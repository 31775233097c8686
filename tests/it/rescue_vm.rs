//! The rescue image in a real virtual machine (issue 14): `rescue/build` makes the ISO, QEMU
//! boots it with two ESXi test disks whose configurations hand their own controllers to
//! passthrough, and the disks are checked afterwards with mtools, GNU tar and the independent
//! decryptor.
//!
//! - sda: a 6.7 disk (esx.conf `/device/000:000:05.0/owner = "passthru"`, vmhba2) on an emulated
//!   MegaRAID SAS controller pinned at 0000:00:05.0;
//! - nvme0n1: the real 7.0.2 host's encrypted configuration (ConfigStore row
//!   `0000:00:06.0` OWNER_PASSTHRU, vmhba3) on an emulated NVMe controller pinned at
//!   0000:00:06.0.
//!
//! (a) BIOS boot from the ISO as a CD, the interactive dialog driven over the serial console;
//! (b) UEFI boot (OVMF) from the ISO written to a USB stick, the unattended menu entry
//! (`bootbank.auto=fix bootbank.poweroff`). QEMU runs under TCG unless `BOOTBANK_VM_ACCEL`
//! says `kvm`. `bench/rescue` runs the `#[ignore]`d benchmark below.
//!
//! The ISO is built once per test run, or taken as it is when `target/rescue/bootbank-rescue.iso`
//! is newer than every source it is made from.

use crate::common::{self, Scenario, TempDir, cmd, run};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use std::{fs, thread};

const RAID: &str = "0000:00:05.0";
const NVME: &str = "0000:00:06.0";
const STORE: &str = "var/lib/vmware/configstore/backup/current-store-1";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
const BUILD6: &str = "6.7.0-0.0.14320388";

fn tools() -> bool {
    let ok = common::builder_available()
        && common::require_tools(&[
            "qemu-system-x86_64",
            "grub-mkrescue",
            "xorriso",
            "apt-get",
            "dpkg-deb",
            "mcopy",
            "tar",
            "gzip",
        ])
        && common::require_real();
    if ok && !Path::new(OVMF_CODE).is_file() {
        assert!(!common::in_ci(), "{OVMF_CODE} is missing (package ovmf)");
        eprintln!("skipping: {OVMF_CODE} is missing (package ovmf)");
        return false;
    }
    ok
}

/// The newest modification time of the files under `p`.
fn newest(p: &Path) -> std::time::SystemTime {
    let meta = fs::metadata(p).unwrap();
    let mut t = meta.modified().unwrap();
    if meta.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            t = t.max(newest(&e.unwrap().path()));
        }
    }
    t
}

/// The ISO: built by `rescue/build` once per run, unless the one in target/ is fresh.
fn iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let root = common::manifest_dir();
        let iso = root.join("target/rescue/bootbank-rescue.iso");
        let sources = ["src", "rescue", "Cargo.toml", "Cargo.lock"]
            .iter()
            .map(|s| newest(&root.join(s)))
            .max()
            .unwrap();
        let fresh = fs::metadata(&iso)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > sources);
        if !fresh {
            let o = run(&mut cmd(root.join("rescue/build")));
            assert!(
                o.status.success(),
                "rescue/build failed:\n{}",
                common::output_text(&o)
            );
            eprint!("{}", String::from_utf8_lossy(&o.stdout));
        }
        let size = fs::metadata(&iso).unwrap().len();
        assert!(size <= 64 << 20, "the ISO is {size} bytes, over 64 MiB");
        eprintln!(
            "bench: ISO size {size} bytes ({:.1} MiB)",
            size as f64 / 1048576.0
        );
        iso
    })
}

/// The two ESXi test disks, in `dir`: (6.7 on MegaRAID, 7.0.2 encrypted on NVMe).
fn disks(dir: &Path) -> (PathBuf, PathBuf) {
    let conf = common::esxconf("story.conf")
        .replace("000:022:00.0", "000:000:05.0")
        .replace("000:023:00.0", "000:000:07.0");
    assert!(conf.contains("/device/000:000:05.0/owner = \"passthru\""));
    let six = Scenario::new()
        .layout("demo")
        .name("esx67.img")
        .bank(5, common::BankSpec::installed(BUILD6, 3, 0, &conf))
        .bank(6, common::BankSpec::installed(BUILD6, 2, 0, &conf))
        .build(&dir.join("b6"));
    let w = dir.join("w7");
    fs::create_dir_all(&w).unwrap();
    let local = common::mkrealhost(&w, "local.tgz", &["--passthru", &format!("{NVME}=vmhba3")]);
    let state = w.join("state.tgz");
    common::real_encrypted_state(&w, &local, &state);
    let state = fs::read(&state).unwrap();
    let seven = Scenario::new()
        .layout("demo")
        .name("esx702.img")
        .bank(5, common::real_bank(3, 0, state.clone()))
        .bank(6, common::real_bank(2, 0, state))
        .build(&dir.join("b7"));
    common::fsck_banks(&six);
    common::fsck_banks(&seven);
    (six, seven)
}

/// A QEMU process whose first serial port is its stdin/stdout, everything it printed kept.
struct Vm {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    started: Instant,
    /// How far `expect` has read.
    seen: usize,
    log: PathBuf,
}

fn accel() -> String {
    std::env::var("BOOTBANK_VM_ACCEL").unwrap_or_else(|_| "tcg".into())
}

impl Vm {
    fn start(args: &[String], log: PathBuf) -> Vm {
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-M",
            "pc",
            "-accel",
            &accel(),
            "-m",
            "1024",
            "-smp",
            "1",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        eprintln!("qemu-system-x86_64 {}", args.join(" "));
        let mut child = c.spawn().expect("qemu-system-x86_64");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o2 = out.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Vm {
            child,
            stdin,
            out,
            started: Instant::now(),
            seen: 0,
            log,
        }
    }

    /// The serial output so far, escape sequences and carriage returns removed.
    fn text(&self) -> String {
        let raw = self.out.lock().unwrap().clone();
        let s = String::from_utf8_lossy(&raw).replace('\r', "");
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(c);
        }
        out
    }

    /// Waits for `what` after what the last `expect` matched; returns the time since start.
    fn expect(&mut self, what: &str, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.text();
            if let Some(i) = t.get(self.seen..).and_then(|s| s.find(what)) {
                self.seen += i + what.len();
                return self.started.elapsed();
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                fs::write(&self.log, &t).unwrap();
                let _ = self.child.kill();
                panic!(
                    "no {what:?} on the serial console within {timeout:?} (log: {})\n---\n{}",
                    self.log.display(),
                    tail(&t, 4000)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&mut self, s: &str) {
        self.stdin.write_all(s.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for QEMU to exit (the guest powered off).
    fn wait_exit(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                fs::write(&self.log, self.text()).unwrap();
                assert!(st.success(), "qemu exited with {st}");
                return;
            }
            if Instant::now() > deadline {
                let t = self.text();
                fs::write(&self.log, &t).unwrap();
                let _ = self.child.kill();
                panic!(
                    "the guest did not power off within {timeout:?}\n{}",
                    tail(&t, 3000)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// QEMU arguments attaching the two disks at the pinned PCI addresses.
fn disk_args(six: &Path, seven: &Path) -> Vec<String> {
    [
        "-device",
        "megasas,id=raid,bus=pci.0,addr=0x5",
        "-drive",
        &format!("file={},if=none,format=raw,id=d6", six.display()),
        "-device",
        "scsi-hd,drive=d6,bus=raid.0",
        "-drive",
        &format!("file={},if=none,format=raw,id=d7", seven.display()),
        "-device",
        "nvme,serial=esx702,drive=d7,bus=pci.0,addr=0x6",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

const BOOT: Duration = Duration::from_secs(600);
const STEP: Duration = Duration::from_secs(180);

/// Checks both disks after the rescue with tools other than bootbank: both banks of each now
/// give the controller back to the vmkernel; nothing else in esx.conf changed.
fn check_fixed(t: &TempDir, six: &Path, seven: &Path) {
    for bank in [5, 6] {
        let state = t.join(format!("six-state{bank}.tgz"));
        common::copy_fat_file(six, bank, "state.tgz", &state);
        let local = t.join(format!("six-local{bank}.tgz"));
        fs::write(&local, common::tar_member(&state, "local.tgz")).unwrap();
        let conf = String::from_utf8(common::tar_member(&local, "etc/vmware/esx.conf")).unwrap();
        assert!(
            conf.contains("/device/000:000:05.0/owner = \"vmkernel\""),
            "bank {bank} of the 6.7 disk:\n{conf}"
        );
        assert!(!conf.contains("passthru"), "bank {bank}:\n{conf}");
        let want = common::esxconf("story.conf")
            .replace("000:022:00.0", "000:000:05.0")
            .replace("000:023:00.0", "000:000:07.0")
            .replace(
                "/device/000:000:05.0/owner = \"passthru\"",
                "/device/000:000:05.0/owner = \"vmkernel\"",
            );
        assert_eq!(conf, want, "only the owner line changed");

        let into = t.join(format!("seven{bank}"));
        crate::fix_configstore::extract_local(seven, bank, &into);
        let rows = common::configstore_rows(&into.join("local").join(STORE));
        let text: Vec<String> = rows
            .iter()
            .map(ToString::to_string)
            .filter(|r| r.contains(NVME) && r.contains("OWNER_"))
            .collect();
        assert!(!text.is_empty(), "no pci_devices row for {NVME}");
        for r in &text {
            assert!(
                r.contains("OWNER_VMKERNEL") && !r.contains("OWNER_PASSTHRU"),
                "bank {bank} of the 7.0.2 disk: {r}"
            );
        }
    }
    common::fsck_banks(six);
    common::fsck_banks(seven);
}

/// (a) BIOS, the ISO as a CD, the interactive dialog over the serial console.
#[test]
fn bios_cd_interactive_fixes_both_disks() {
    if !tools() {
        return;
    }
    let iso = iso();
    let t = TempDir::new("rescue-bios");
    let (six, seven) = disks(t.path());
    // bootindex: SeaBIOS would try the ESXi disks first (they carry no BIOS boot code here).
    let mut args: Vec<String> = vec![
        "-drive".into(),
        format!(
            "file={},if=none,media=cdrom,format=raw,readonly=on,id=cd",
            iso.display()
        ),
        "-device".into(),
        "ide-cd,drive=cd,bootindex=0".into(),
    ];
    args.extend(disk_args(&six, &seven));
    let mut vm = Vm::start(&args, t.join("serial.log"));
    vm.expect("bootbank rescue: find the ESXi disk", BOOT);
    vm.send("i");
    vm.expect("Found 2 ESXi boot disks.", BOOT);
    let verdict = vm.expect("VERDICT:", STEP);
    eprintln!(
        "bench: BIOS CD boot to the first verdict: {:.1} s ({})",
        verdict.as_secs_f64(),
        accel()
    );
    vm.expect("Which disk do you want to fix?", STEP);
    let text = vm.text();
    for want in [
        "Disk 1: /dev/nvme0n1 (nvme0n1)".to_string(),
        format!("behind controller {NVME}:"),
        "Disk 2: /dev/sda (sda)".to_string(),
        format!("behind controller {RAID}:"),
        "MegaRAID SAS 1078".to_string(),
        "driver megaraid_sas".to_string(),
        "driver nvme".to_string(),
        format!(
            "at {RAID} is set to passthrough. At the next boot ESXi hands it to a virtual machine and loses the very disk it boots from (sda)"
        ),
        format!(
            "at {NVME} is set to passthrough. At the next boot ESXi hands it to a virtual machine and loses the very disk it boots from (nvme0n1)"
        ),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    vm.send("2\n");
    vm.expect("Plan for /dev/sda:", STEP);
    vm.expect("+/device/000:000:05.0/owner = \"vmkernel\"", STEP);
    vm.expect("Write these changes to /dev/sda? [y/N]", STEP);
    vm.send("y\n");
    vm.expect("Backup of every changed file: /run/bootbank-backup-", STEP);
    vm.expect("This backup is in RAM and is lost at power-off", STEP);
    vm.expect("Now, sda:", STEP);
    vm.expect("no critical findings.", STEP);
    vm.expect(
        "Which disk do you want to fix? (1 = nvme0n1; Enter: none)",
        STEP,
    );
    vm.send("1\n");
    vm.expect("Plan for /dev/nvme0n1:", STEP);
    vm.expect("owner OWNER_PASSTHRU -> OWNER_VMKERNEL", STEP);
    vm.expect("Write these changes to /dev/nvme0n1? [y/N]", STEP);
    vm.send("y\n");
    vm.expect("Now, nvme0n1:", STEP);
    vm.expect("no critical findings.", STEP);
    vm.expect("What to do next:", STEP);
    vm.expect("Remove the rescue media", STEP);
    vm.expect("A shell is ready", STEP);
    vm.expect("Please press Enter to activate this console.", STEP);
    vm.send("\n");
    thread::sleep(Duration::from_secs(2));
    vm.send("poweroff\n");
    vm.wait_exit(STEP);
    check_fixed(&t, &six, &seven);
}

/// (b) UEFI (OVMF), the ISO written to a USB stick as with dd, the unattended menu entry.
#[test]
fn uefi_usb_unattended_fixes_and_powers_off() {
    if !tools() {
        return;
    }
    let iso = iso();
    let t = TempDir::new("rescue-uefi");
    let (six, seven) = disks(t.path());
    let stick = t.join("stick.img");
    run(cmd("dd")
        .arg(format!("if={}", iso.display()))
        .arg(format!("of={}", stick.display()))
        .arg("bs=1M")
        .arg("status=none"));
    let vars = t.join("OVMF_VARS.fd");
    fs::copy(OVMF_VARS, &vars).unwrap();
    let mut args: Vec<String> = [
        "-drive",
        &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        "-drive",
        &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        "-device",
        "qemu-xhci,id=xhci,bus=pci.0,addr=0x8",
        "-drive",
        &format!("file={},if=none,format=raw,id=stick", stick.display()),
        "-device",
        "usb-storage,bus=xhci.0,drive=stick,bootindex=0",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(disk_args(&six, &seven));
    let mut vm = Vm::start(&args, t.join("serial.log"));
    vm.expect(
        "bootbank rescue unattended: fix every critical finding, then power off",
        BOOT,
    );
    vm.send("a");
    let verdict = vm.expect("VERDICT:", BOOT);
    eprintln!(
        "bench: UEFI USB boot to the first verdict: {:.1} s ({})",
        verdict.as_secs_f64(),
        accel()
    );
    vm.expect("bootbank.auto=fix: fixing every critical finding", STEP);
    vm.expect("After the fix:", STEP);
    vm.expect("bootbank rescue: done: 2 disk(s) fixed.", STEP);
    let text = vm.text();
    let after = &text[text.find("After the fix:").unwrap()..];
    assert_eq!(after.matches("no critical findings.").count(), 2, "{after}");
    vm.expect("bootbank.poweroff: powering off.", STEP);
    vm.wait_exit(STEP);
    check_fixed(&t, &six, &seven);
}

/// `bench/rescue`: the ISO's size, and the time from starting QEMU with the image's kernel and
/// initramfs (as PXE would load them) to the first verdict with the two test disks, against
/// the same kernel and initramfs booted to its shell (`bootbank.shell`, no drivers, no disks
/// read), under the same accelerator in the same run.
#[test]
#[ignore]
fn bench_boot_to_verdict() {
    if !tools() {
        return;
    }
    let iso = iso();
    let t = TempDir::new("rescue-bench");
    for f in ["vmlinuz", "initrd.img"] {
        run(cmd("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", &format!("/boot/{f}")])
            .arg(t.join(f)));
    }
    let runs: usize = std::env::var("BOOTBANK_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let base_args = |append: &str| -> Vec<String> {
        vec![
            "-kernel".into(),
            t.join("vmlinuz").display().to_string(),
            "-initrd".into(),
            t.join("initrd.img").display().to_string(),
            "-append".into(),
            format!("console=tty0 console=ttyS0,115200n8 quiet loglevel=3 {append}"),
        ]
    };
    let (mut shell, mut verdict) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let mut vm = Vm::start(
            &base_args("bootbank.shell"),
            t.join(format!("shell{i}.log")),
        );
        shell.push(vm.expect("A shell is ready", BOOT).as_secs_f64());
        drop(vm);
        let (six, seven) = disks(&t.join(format!("d{i}")));
        let mut a = base_args("bootbank.auto=fix bootbank.poweroff");
        a.extend(disk_args(&six, &seven));
        let mut vm = Vm::start(&a, t.join(format!("verdict{i}.log")));
        verdict.push(vm.expect("VERDICT:", BOOT).as_secs_f64());
        vm.expect("bootbank rescue: done: 2 disk(s) fixed.", STEP);
        vm.wait_exit(STEP);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (s, v) = (med(&mut shell), med(&mut verdict));
    println!(
        "bench: ISO {} bytes; {} boot (kernel+initramfs, as from PXE), median of {runs}: to the shell (baseline, bootbank.shell) {s:.2} s, to the first verdict with 2 ESXi disks {v:.2} s, ratio {:.2}x, {:.2} s more",
        fs::metadata(iso).unwrap().len(),
        accel(),
        v / s,
        v - s
    );
}

/// `bootbank rescue` outside a VM, on the demo disk image: the dry run and a missing terminal
/// write nothing; `--auto-fix` fixes, keeps a backup where told and reads the disk again.
#[test]
fn rescue_command_on_an_image() {
    let t = TempDir::new("rescue-cli");
    let img = t.join("demo.img");
    fs::copy(common::manifest_dir().join("examples/demo.img"), &img).unwrap();
    let before = fs::read(&img).unwrap();
    let path = img.to_str().unwrap();

    let o = common::bootbank(t.path(), &["rescue", path, "--dry-run"]);
    let text = common::output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for want in [
        "Found 1 ESXi boot disk.",
        "VERDICT: the host boots partition 5",
        "+/device/000:022:00.0/owner = \"vmkernel\"",
        "Dry run: nothing written.",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let o = common::bootbank(t.path(), &["rescue", path]);
    assert_eq!(o.status.code(), Some(2), "{}", common::output_text(&o));
    assert!(common::output_text(&o).contains("not asking without a terminal"));
    assert!(fs::read(&img).unwrap() == before, "written without a yes");

    let o = common::bootbank(t.path(), &["rescue", "--json", path]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["esxi"][0]["critical_devices"],
        serde_json::json!(["0000:16:00.0"])
    );

    let backup = t.join("backup");
    let o = common::bootbank(
        t.path(),
        &[
            "rescue",
            path,
            "--auto-fix",
            "--backup-dir",
            backup.to_str().unwrap(),
        ],
    );
    let text = common::output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("bootbank rescue: done: 1 disk(s) fixed."),
        "{text}"
    );
    assert!(text.contains("no critical findings."), "{text}");
    let sub = backup.join(path.trim_start_matches('/').replace('/', "_"));
    assert!(
        sub.join("manifest.json").is_file() || sub.is_dir(),
        "no backup in {}",
        sub.display()
    );
    assert!(fs::read(&img).unwrap() != before);

    let o = common::bootbank(t.path(), &["rescue", t.join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", common::output_text(&o));
}
