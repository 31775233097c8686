//! Test support for bootbank's integration tests: builds ESXi-like disk images and
//! archives with the shell scripts in `tests/tools` (which only drive real tools:
//! sfdisk/fdisk, mkfs.fat, mtools, dd, GNU tar, gzip), and inspects them with those
//! same tools. Standard library only.
//!
//! Use from an integration test with `mod common;`. Tests that need the tools should
//! start with `if !common::builder_available() { return; }`: without the tools the test
//! prints why and passes, except when `CI=true`, where a missing tool is a failure.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Root of the crate (where Cargo.toml is).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/tools/<name>`: mkdisk, mkstate, mkbundle, fsck-banks, lsparts.
pub fn tool(name: &str) -> PathBuf {
    manifest_dir().join("tests").join("tools").join(name)
}

/// `tests/fixtures/<rel>`.
pub fn fixture_path(rel: &str) -> PathBuf {
    manifest_dir().join("tests").join("fixtures").join(rel)
}

/// Text of `tests/fixtures/esxconf/<name>` (story.conf, healthy.conf, sample-4.0.conf).
pub fn esxconf(name: &str) -> String {
    let p = fixture_path(&format!("esxconf/{name}"));
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------
// Tools

/// Directories searched after `PATH`: dosfstools and fdisk live in /usr/sbin, which is
/// not on every user's PATH.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Everything the fixture builder and its checks run.
pub const BUILDER_TOOLS: &[&str] = &[
    "bash", "sfdisk", "fdisk", "mkfs.fat", "fsck.fat", "mcopy", "mdir", "mtype", "minfo", "dd",
    "od", "truncate", "numfmt", "tar", "gzip",
];

/// Full path of an executable on PATH (or in /usr/sbin, /sbin), if any.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True when running in CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI").as_deref(),
        Ok("true") | Ok("1") | Ok("TRUE") | Ok("True")
    )
}

/// True when `name` can be run. When it is missing: panics under `CI=true`, otherwise
/// prints a skip message to stderr and returns false (the caller should `return`).
pub fn require_tool(name: &str) -> bool {
    if find_tool(name).is_some() {
        return true;
    }
    if in_ci() {
        panic!(
            "required tool `{name}` is missing (CI=true); install dosfstools mtools fdisk gdisk"
        );
    }
    eprintln!("SKIPPED: tool `{name}` not found (apt install dosfstools mtools fdisk gdisk)");
    false
}

/// `require_tool` for each name; true when all are present.
pub fn require_tools(names: &[&str]) -> bool {
    names.iter().all(|n| require_tool(n))
}

/// All of [`BUILDER_TOOLS`] are present (see [`require_tool`] for the CI rule).
pub fn builder_available() -> bool {
    require_tools(BUILDER_TOOLS)
}

/// PATH with /usr/sbin and /sbin appended, for the commands we spawn.
fn tool_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    std::env::join_paths(dirs).expect("PATH")
}

/// A `Command` for an external program, with /usr/sbin on PATH and LC_ALL=C.
pub fn cmd(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", tool_path())
        .env("LC_ALL", "C")
        .env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// A `Command` running one of the `tests/tools` scripts through bash (so the
/// executable bit does not matter).
pub fn tool_cmd(name: &str) -> Command {
    let mut c = cmd("bash");
    c.arg(tool(name));
    c
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `c`, panicking with its stdout and stderr when it fails. Returns the output.
pub fn run(c: &mut Command) -> Output {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", describe(c)));
    if !out.status.success() {
        panic!(
            "command failed ({}): {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            describe(c),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `c` and returns its stdout as text (panics on failure).
pub fn run_text(c: &mut Command) -> String {
    String::from_utf8_lossy(&run(c).stdout).into_owned()
}

/// Runs `c` with `input` on stdin; returns the output whatever the exit status.
pub fn run_with_input(c: &mut Command, input: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", describe(c)));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------------
// Temporary directories

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under cargo's target/tmp (or the system temp dir), removed on
/// drop unless `BOOTBANK_KEEP_TMP` is set (then its path is printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = base.join(format!(
            "bootbank-{tag}-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
    /// Keeps the directory; returns its path.
    pub fn keep(self) -> PathBuf {
        let p = self.path.clone();
        std::mem::forget(self);
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("BOOTBANK_KEEP_TMP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------
// boot.cfg

/// The `modules=` list of an installed bank of `build` ("6.7.0-0.0.14320388"):
/// 7.x/8.x names, with basemisc.tgz and resvibs.tgz from 7.0.3 on, esxiodpt.tgz from
/// 8.0.2 on, and `state.tgz` last.
pub fn modules_for(build: &str) -> Vec<&'static str> {
    let ver: Vec<u32> = build
        .split('-')
        .next()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let v = |i: usize| ver.get(i).copied().unwrap_or(0);
    let at_least = |a: u32, b: u32, c: u32| (v(0), v(1), v(2)) >= (a, b, c);
    let mut m = vec![
        "jumpstrt.gz",
        "useropts.gz",
        "features.gz",
        "k.b00",
        "uc_intel.b00",
        "uc_amd.b00",
        "uc_hygon.b00",
        "procfs.b00",
        "vmx.v00",
        "vim.v00",
        "tpm.v00",
        "sb.v00",
        "s.v00",
        "lsi_mr3.v00",
        "nvme_pci.v00",
        "vmkusb.v00",
        "esx_ui.v00",
        "tools.t00",
        "xorg.v00",
        "gc.v00",
        "imgdb.tgz",
    ];
    if at_least(7, 0, 3) {
        m.extend(["basemisc.tgz", "resvibs.tgz"]);
    }
    if at_least(8, 0, 2) {
        m.push("esxiodpt.tgz");
    }
    m.push("state.tgz");
    m
}

/// A realistic installed 7.x/8.x boot.cfg (like samples/boot.cfg-4.1-installed, with
/// 7.x names): kernel b.b00, modules from [`modules_for`] ending in `--- state.tgz`.
pub fn boot_cfg(build: &str, updated: u32, bootstate: u32) -> String {
    format!(
        "bootstate={bootstate}\ntitle=Loading VMware ESXi\ntimeout=5\nprefix=\nkernel=b.b00\n\
         kernelopt=autoPartition=FALSE\nmodules={}\nbuild={build}\nupdated={updated}\n",
        modules_for(build).join(" --- ")
    )
}

/// Values of a boot.cfg key (last one wins, like the bootloader; keys case-insensitive).
pub fn cfg_value(text: &str, key: &str) -> Option<String> {
    let mut v = None;
    for line in text.split('\n') {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, val)) = line.split_once('=')
            && k.trim().eq_ignore_ascii_case(key)
        {
            v = Some(val.trim().to_string());
        }
    }
    v
}

// ---------------------------------------------------------------------------------
// Archives

/// `mkstate ROOT OUT [args...]` (see tests/tools/mkstate; e.g. `&["--encrypted", "NONE"]`).
pub fn mkstate_args(root: &Path, out: &Path, args: &[&str]) {
    run(tool_cmd("mkstate").arg(root).arg(out).args(args));
}

/// `mkstate ROOT OUT [--encrypted MODE]`.
pub fn mkstate(root: &Path, out: &Path, encrypted: Option<&str>) {
    match encrypted {
        Some(m) => mkstate_args(root, out, &["--encrypted", m]),
        None => mkstate_args(root, out, &[]),
    }
}

/// `mkbundle STATE OUT [args...]` (configBundle: Manifest.txt + state.tgz).
pub fn mkbundle(state: &Path, out: &Path, args: &[&str]) {
    run(tool_cmd("mkbundle").arg(state).arg(out).args(args));
}

/// Writes `files` (relative names, subdirectories created) under `dir`.
pub fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
}

// ---------------------------------------------------------------------------------
// Banks and scenarios

/// Contents of one bootbank.
#[derive(Clone, Debug, Default)]
pub struct BankSpec {
    /// Text of /boot.cfg; empty = no boot.cfg at all.
    pub boot_cfg: String,
    /// etc/vmware/esx.conf inside local.tgz; with None and no `local_files` the bank
    /// gets no state.tgz (like the second bank right after a fresh install).
    pub esx_conf: Option<String>,
    /// More members of local.tgz (relative names such as "etc/vmware/passthru.map");
    /// they replace the defaults (etc/hosts, etc/passwd, etc/shadow) of the same name.
    pub local_files: Vec<(String, Vec<u8>)>,
    /// More files in the bank (relative names; written last, so they can replace
    /// payload files or state.tgz).
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// Some("NONE") or Some("TPM"): 7.0U2+ state.tgz (local.tgz.ve + encryption.info). The
    /// envelope is real, written by bootbank's envelope writer: with NONE sealed with the key the
    /// reference's encryption.info derives, with TPM with a key nobody has.
    pub encrypted: Option<&'static str>,
    /// Write small dummy files for `kernel=` and every `modules=` entry of boot_cfg
    /// except state.tgz (b.b00 and the *.b00/*.v00/*.gz/*.tgz); *.gz are valid gzip,
    /// *.tgz valid tar.gz.
    pub payload: bool,
    /// Put a bare local.tgz in the bank instead of state.tgz (older embedded builds).
    pub bare_local_tgz: bool,
    /// Write local.tgz and state.tgz as two concatenated gzip members each.
    pub multimember: bool,
}

impl BankSpec {
    /// An installed bank: [`boot_cfg`] text, payload files, state.tgz with `esx_conf`.
    pub fn installed(build: &str, updated: u32, bootstate: u32, esx_conf: &str) -> BankSpec {
        BankSpec {
            boot_cfg: boot_cfg(build, updated, bootstate),
            esx_conf: Some(esx_conf.to_string()),
            payload: true,
            ..BankSpec::default()
        }
    }

    /// A bank holding only the given boot.cfg text.
    pub fn boot_cfg_only(text: &str) -> BankSpec {
        BankSpec {
            boot_cfg: text.to_string(),
            ..BankSpec::default()
        }
    }

    /// Writes this bank's files into `dir` (created). `work` is a scratch directory.
    pub fn stage(&self, dir: &Path, work: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::create_dir_all(work).unwrap();
        if !self.boot_cfg.is_empty() {
            fs::write(dir.join("boot.cfg"), &self.boot_cfg).unwrap();
        }
        if self.payload {
            let mut names: Vec<String> = Vec::new();
            if let Some(k) = cfg_value(&self.boot_cfg, "kernel") {
                names.push(k);
            }
            if let Some(m) = cfg_value(&self.boot_cfg, "modules") {
                names.extend(m.split(" --- ").map(|s| s.trim().to_string()));
            }
            if names.is_empty() {
                names = vec![
                    "b.b00".into(),
                    "k.b00".into(),
                    "s.v00".into(),
                    "vmx.v00".into(),
                ];
            }
            for name in names {
                if name.is_empty()
                    || name == "state.tgz"
                    || name.contains('/')
                    || dir.join(&name).exists()
                {
                    continue;
                }
                write_payload(&dir.join(&name), &name, work);
            }
        }
        if self.esx_conf.is_some() || !self.local_files.is_empty() {
            let root = work.join("local-root");
            let _ = fs::remove_dir_all(&root);
            let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            files.insert("etc/hosts".into(), b"127.0.0.1\tlocalhost.localdomain localhost\n::1\tlocalhost.localdomain localhost\n".to_vec());
            files.insert(
                "etc/passwd".into(),
                b"root:x:0:0:Administrator:/:/bin/sh\n".to_vec(),
            );
            files.insert("etc/shadow".into(), b"root:*:19000:0:99999:7:::\n".to_vec());
            if let Some(c) = &self.esx_conf {
                files.insert("etc/vmware/esx.conf".into(), c.as_bytes().to_vec());
            }
            for (k, v) in &self.local_files {
                files.insert(k.clone(), v.clone());
            }
            let list: Vec<(String, Vec<u8>)> = files.into_iter().collect();
            write_tree(&root, &list);
            let mut args: Vec<String> = Vec::new();
            if let Some(m) = self.encrypted {
                // A real envelope, written by bootbank's envelope writer (itself checked against
                // the independent decryptor in tests/envelope.rs): mode NONE with the key the
                // reference's encryption.info derives, a TPM mode with a key nobody has.
                let local = work.join("local.tgz");
                mkstate_args(&root, &local, &["--local-only"]);
                let plain = fs::read(&local).unwrap();
                let (key_id, key) = if m == "NONE" {
                    let k = reference_key();
                    (k.key_id.clone(), k.key)
                } else {
                    (
                        "00000000-0000-0000-0000-000000000000".to_string(),
                        [0x5au8; 32],
                    )
                };
                let iv = *b"WMV_\0\0\0\0\0\0\0\x01";
                let ve = bootbank::envelope::Envelope::build_new(&key_id, &key, &plain, iv)
                    .expect("envelope writer");
                let ve_path = work.join("local.tgz.ve");
                fs::write(&ve_path, ve).unwrap();
                args.extend(["--encrypted".to_string(), m.to_string()]);
                args.extend(["--ve".to_string(), ve_path.display().to_string()]);
            }
            if self.multimember {
                args.push("--multimember".to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if self.bare_local_tgz {
                let mut args = args.clone();
                args.push("--local-only");
                mkstate_args(&root, &dir.join("local.tgz"), &args);
            } else {
                mkstate_args(&root, &dir.join("state.tgz"), &args);
            }
        }
        write_tree(dir, &self.extra_files);
    }
}

/// A small dummy payload file: text, gzip'd for *.gz, a one-member tar.gz for *.tgz.
fn write_payload(path: &Path, name: &str, work: &Path) {
    let text = format!("bootbank test payload {name}\n").repeat(24);
    if name.ends_with(".tgz") {
        let d = work.join("payload-tgz");
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("payload.txt"), &text).unwrap();
        run(cmd("tar")
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@1700000000",
            ])
            .args(["--use-compress-program", "gzip -n", "-cf"])
            .arg(path)
            .arg("-C")
            .arg(&d)
            .arg("payload.txt"));
    } else if name.ends_with(".gz") {
        let out = run_with_input(cmd("gzip").args(["-n", "-c"]), text.as_bytes());
        assert!(out.status.success(), "gzip failed");
        fs::write(path, out.stdout).unwrap();
    } else {
        fs::write(path, text).unwrap();
    }
}

/// A disk image to build: layout, table, sector size and bank contents.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub layout: String,
    pub size: Option<String>,
    pub table: String,
    pub sector: u32,
    pub name: String,
    pub banks: BTreeMap<u32, BankSpec>,
    pub uuids: BTreeMap<u32, String>,
    pub no_magic: BTreeSet<u32>,
    pub extra_args: Vec<String>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl Scenario {
    /// 7x layout (32G), GPT, 512-byte sectors, image name "disk.img", no bank files.
    pub fn new() -> Scenario {
        Scenario {
            layout: "7x".into(),
            size: None,
            table: "gpt".into(),
            sector: 512,
            name: "disk.img".into(),
            banks: BTreeMap::new(),
            uuids: BTreeMap::new(),
            no_magic: BTreeSet::new(),
            extra_args: Vec::new(),
        }
    }
    /// "6x", "7x", "min" or "demo".
    pub fn layout(mut self, layout: &str) -> Self {
        self.layout = layout.into();
        self
    }
    /// Disk size as mkdisk reads it: "16G", "2T", "8M" or bytes.
    pub fn size(mut self, size: &str) -> Self {
        self.size = Some(size.into());
        self
    }
    /// "gpt" or "mbr".
    pub fn table(mut self, table: &str) -> Self {
        self.table = table.into();
        self
    }
    /// 512 or 4096.
    pub fn sector(mut self, sector: u32) -> Self {
        self.sector = sector;
        self
    }
    /// File name of the image inside the build directory.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    /// Contents of bank partition `n` (5 or 6; any formatted partition works).
    pub fn bank(mut self, n: u32, spec: BankSpec) -> Self {
        self.banks.insert(n, spec);
        self
    }
    /// Bank UUID of partition `n`: 32 hex digits in disk order, or
    /// "esx:aaaaaaaa-bbbbbbbb-cccc-dddddddddddd" as ESXi prints it.
    pub fn uuid(mut self, n: u32, uuid: &str) -> Self {
        self.uuids.insert(n, uuid.into());
        self
    }
    /// Leave the "VMWARE FAT16" magic out of partition `n`.
    pub fn no_magic(mut self, n: u32) -> Self {
        self.no_magic.insert(n);
        self
    }
    /// Any other mkdisk argument (e.g. "--mbr-bank-type", "0e").
    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.into());
        self
    }
    /// The mkdisk arguments for an image at `out` with bank directories under `stage`.
    pub fn mkdisk_args(&self, out: &Path, stage: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--out".into(),
            out.display().to_string(),
            "--layout".into(),
            self.layout.clone(),
            "--table".into(),
            self.table.clone(),
            "--sector".into(),
            self.sector.to_string(),
        ];
        if let Some(s) = &self.size {
            a.extend(["--size".into(), s.clone()]);
        }
        for n in self.banks.keys() {
            a.extend([
                "--files".into(),
                n.to_string(),
                stage.join(format!("bank{n}")).display().to_string(),
            ]);
        }
        for (n, u) in &self.uuids {
            a.extend(["--uuid".into(), n.to_string(), u.clone()]);
        }
        for n in &self.no_magic {
            a.extend(["--no-magic".into(), n.to_string()]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
    /// Stages the bank directories under `dir/<name>.stage/` and runs mkdisk; returns
    /// the path of the image (`dir/<name>`).
    pub fn build(&self, dir: &Path) -> PathBuf {
        let out = dir.join(&self.name);
        let stage = dir.join(format!("{}.stage", self.name));
        let _ = fs::remove_dir_all(&stage);
        for (n, spec) in &self.banks {
            spec.stage(
                &stage.join(format!("bank{n}")),
                &stage.join(format!("work{n}")),
            );
        }
        run(tool_cmd("mkdisk").args(self.mkdisk_args(&out, &stage)));
        out
    }
}

// ---------------------------------------------------------------------------------
// Inspecting images

/// One partition as `tests/tools/lsparts` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// "gpt" or "dos".
    pub label: String,
    pub sector_size: u64,
    pub num: u32,
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// GPT type GUID (upper case) or MBR type id in hex ("6", "e", "fb", "5").
    pub type_id: String,
}

impl Part {
    pub fn end(&self) -> u64 {
        self.start + self.sectors - 1
    }
    pub fn offset(&self) -> u64 {
        self.start * self.sector_size
    }
    pub fn len(&self) -> u64 {
        self.sectors * self.sector_size
    }
    /// "IMG@@OFFSET" for mtools' -i.
    pub fn mtools_image(&self, img: &Path) -> String {
        format!("{}@@{}", img.display(), self.offset())
    }
}

/// The partitions of `img`, in table order (sfdisk --dump; fdisk -b 4096 for 4Kn).
pub fn partitions(img: &Path) -> Vec<Part> {
    run_text(tool_cmd("lsparts").arg(img))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "lsparts line: {l}");
            Part {
                label: f[0].into(),
                sector_size: f[1].parse().unwrap(),
                num: f[2].parse().unwrap(),
                start: f[3].parse().unwrap(),
                sectors: f[4].parse().unwrap(),
                type_id: f[5].into(),
            }
        })
        .collect()
}

/// Partition number `n` of `img` (panics when absent).
pub fn part(img: &Path, n: u32) -> Part {
    partitions(img)
        .into_iter()
        .find(|p| p.num == n)
        .unwrap_or_else(|| panic!("{} has no partition {n}", img.display()))
}

/// Reads a file from the FAT of partition `n` with `mcopy -n ::PATH -`.
pub fn read_fat_file(img: &Path, n: u32, path: &str) -> Vec<u8> {
    let p = part(img, n);
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    run(cmd("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(p.mtools_image(img))
        .arg(format!("::{path}"))
        .arg("-"))
    .stdout
}

/// Copies a file out of the FAT of partition `n` (see [`read_fat_file`]) to `to`.
pub fn copy_fat_file(img: &Path, n: u32, path: &str, to: &Path) {
    fs::write(to, read_fat_file(img, n, path))
        .unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
}

/// `mtype -i IMG@@OFF ::PATH` of partition `n`, as text.
pub fn mtype(img: &Path, n: u32, path: &str) -> String {
    let p = part(img, n);
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    run_text(
        cmd("mtype")
            .arg("-i")
            .arg(p.mtools_image(img))
            .arg(format!("::{path}")),
    )
}

/// Names in the root directory of partition `n` (`mdir -b`), e.g. ["::/boot.cfg", ...].
pub fn mdir(img: &Path, n: u32) -> Vec<String> {
    let p = part(img, n);
    let out = cmd("mdir")
        .arg("-b")
        .arg("-i")
        .arg(p.mtools_image(img))
        .arg("::")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `len` bytes of `img` at byte `offset` (plain reads).
pub fn read_bytes(img: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// The 32 bytes at the start of partition `n`'s second sector (magic + UUID), read
/// with `dd | od` like a person would.
pub fn second_sector_head(img: &Path, n: u32) -> Vec<u8> {
    let p = part(img, n);
    let script = format!(
        "dd if='{}' bs=1 skip={} count=32 status=none | od -An -v -tx1",
        img.display(),
        p.offset() + p.sector_size
    );
    let text = run_text(cmd("bash").arg("-c").arg(script));
    text.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// The bank UUID as ESXi prints it (`%08x-%08x-%04x-%012x` of LE u32, u32, u16, 6 bytes).
pub fn esx_uuid(raw: &[u8]) -> String {
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let rest: String = raw[10..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{:08x}-{:08x}-{:04x}-{rest}",
        u32le(&raw[0..4]),
        u32le(&raw[4..8]),
        u16::from_le_bytes([raw[8], raw[9]])
    )
}

/// Runs `tests/tools/fsck-banks IMG`; Ok(report) when every FAT partition is clean.
pub fn fsck_banks_result(img: &Path) -> Result<String, String> {
    let out = tool_cmd("fsck-banks")
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Runs `tests/tools/fsck-banks IMG`, panicking with its report when a check fails.
pub fn fsck_banks(img: &Path) -> String {
    fsck_banks_result(img).unwrap_or_else(|e| panic!("fsck-banks {} failed:\n{e}", img.display()))
}

/// Real disk usage of a file in bytes (`du -B1`; st_blocks * 512).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}

/// Extracts `member` of a gzip'd tar (`tar -xzOf`).
pub fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    run(cmd("tar").arg("-xzOf").arg(archive).arg(member)).stdout
}

/// `tar -tzvf ARCHIVE` listing.
pub fn tar_listing(archive: &Path) -> String {
    run_text(cmd("tar").arg("-tzvf").arg(archive))
}

/// The encryption.info that tests/tools/mkstate writes for an encrypted state (the reference's
/// published values).
pub const REFERENCE_ENCRYPTION_INFO: &str = ".encoding = \"UTF-8\"\nincludeKeyCache = \"FALSE\"\nmode = \"NONE\"\nConfigEncData = \"keyId=fmLOxWrvTX6Di8rjLu/SUQ%3d%3d:data1=Uz8MFZfqTbWN2jIHbFPhag%3d%3d:data2=IDcZE41aR+uxDv7Iz8zJSA%3d%3d:version=1\"\n";

/// The key of [`REFERENCE_ENCRYPTION_INFO`], derived once per test binary.
pub fn reference_key() -> &'static bootbank::envelope::DerivedKey {
    static KEY: std::sync::OnceLock<bootbank::envelope::DerivedKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        bootbank::envelope::EncryptionInfo::parse(REFERENCE_ENCRYPTION_INFO.as_bytes())
            .unwrap()
            .derive_key()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------
// Running the bootbank binary

/// The bootbank binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_bootbank");

/// Runs the bootbank binary in `cwd` with `args`, LC_ALL=C and stdin from /dev/null (never
/// a terminal); returns its output whatever the exit status.
pub fn bootbank(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run bootbank")
}

/// Exit code, stdout and stderr of `o` as one text, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs bootbank (see [`bootbank`]) and requires exit 0; returns stdout.
pub fn bootbank_ok(cwd: &Path, args: &[&str]) -> String {
    let o = bootbank(cwd, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "bootbank {args:?}:\n{}",
        output_text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `path` as text, for command-line arguments (panics on a non-UTF-8 path).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------------
// Scenario banks shared by the write tests

/// An installed 6.7U3 bank (build 6.7.0-0.0.14320388) with the story's esx.conf
/// (000:022:00.0 owned by passthru).
pub fn story_bank(updated: u32, bootstate: u32) -> BankSpec {
    BankSpec::installed(
        "6.7.0-0.0.14320388",
        updated,
        bootstate,
        &esxconf("story.conf"),
    )
}

/// An installed 6.7U3 bank (build 6.7.0-0.0.13981272) with the healthy esx.conf.
pub fn healthy_bank(updated: u32, bootstate: u32) -> BankSpec {
    BankSpec::installed(
        "6.7.0-0.0.13981272",
        updated,
        bootstate,
        &esxconf("healthy.conf"),
    )
}

/// A ConfigStore database built by `tests/tools/mkconfigstore` (python3) as `dir/name`
/// with `args`; returns its bytes.
pub fn mkconfigstore(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let db = dir.join(name);
    run(cmd("python3")
        .arg(tool("mkconfigstore"))
        .arg(&db)
        .args(args));
    fs::read(&db).unwrap()
}

// ---------------------------------------------------------------------------------
// Files and digests with outside tools

/// `cp --sparse=always FROM TO`.
pub fn copy_sparse(from: &Path, to: &Path) {
    run(cmd("cp").arg("--sparse=always").arg(from).arg(to));
}

/// SHA-256 of a file as `sha256sum` prints it (lower-case hex).
pub fn sha256_file(path: &Path) -> String {
    run_text(cmd("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// One `tar --full-time --numeric-owner -tvzf` line: mode, owner, size, date and time, name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub mode: String,
    pub owner: String,
    pub size: u64,
    pub mtime: String,
    pub name: String,
}

/// The members of a gzip'd tar with their metadata, as GNU tar lists them
/// (`tar --full-time --numeric-owner -tvzf`), in archive order.
pub fn tar_entries(archive: &Path) -> Vec<TarEntry> {
    run_text(
        cmd("tar")
            .args(["--full-time", "--numeric-owner", "-tvzf"])
            .arg(archive),
    )
    .lines()
    .map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert!(w.len() >= 6, "tar -tv line: {l}");
        TarEntry {
            mode: w[0].into(),
            owner: w[1].into(),
            size: w[2].parse().unwrap_or(0),
            mtime: format!("{} {}", w[3], w[4]),
            name: w[5..].join(" "),
        }
    })
    .collect()
}

/// `tar -xzf ARCHIVE -C DIR` into a fresh DIR (removed first if it exists).
pub fn untar(archive: &Path, dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    run(cmd("tar").arg("-xzf").arg(archive).arg("-C").arg(dir));
}

// ---------------------------------------------------------------------------------
// Partitions with dd and fsck.fat

/// Copies partition `q` of `img` to `out` with `dd conv=sparse` (O_DIRECT first: GiBs of
/// holes read faster around the page cache) and truncates `out` to the partition's length,
/// so `out` holds exactly the partition's bytes.
pub fn dd_partition(img: &Path, q: &Part, out: &Path) {
    let dd = |flags: &str| {
        cmd("dd")
            .arg(format!("if={}", p(img)))
            .arg(format!("of={}", p(out)))
            .arg("bs=4M")
            .arg(format!("iflag={flags}skip_bytes,count_bytes"))
            .arg(format!("skip={}", q.offset()))
            .arg(format!("count={}", q.len()))
            .args(["conv=sparse", "status=none"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(dd("direct,") || dd(""), "dd of partition {}", q.num);
    run(cmd("truncate").arg("-s").arg(q.len().to_string()).arg(out));
}

/// `fsck.fat -n` on a sparse `dd` copy (under `scratch`) of every FAT partition of `img` (a
/// FAT12/16/32 signature in its boot sector; DOS extended containers skipped). Fails on a
/// non-zero exit or on any message besides the version banner and the summary line: the
/// fsck.fat part of tests/tools/fsck-banks, without its mdir listing. Returns the partitions
/// checked (possibly none).
pub fn fsck_fat_partitions(img: &Path, scratch: &Path) -> Vec<u32> {
    let mut checked = Vec::new();
    for q in partitions(img) {
        if matches!(q.type_id.as_str(), "5" | "f" | "85") {
            continue;
        }
        let sig16 = read_bytes(img, q.offset() + 54, 5);
        let sig32 = read_bytes(img, q.offset() + 82, 5);
        if !(sig16.starts_with(b"FAT1") || sig32 == b"FAT32") {
            continue;
        }
        let slice = scratch.join(format!("fsck-p{}", q.num));
        dd_partition(img, &q, &slice);
        let o = cmd("fsck.fat")
            .arg("-n")
            .arg(&slice)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let summary = format!("{}: ", p(&slice));
        let extra: Vec<&str> = all
            .lines()
            .filter(|l| !l.starts_with("fsck.fat "))
            .filter(|l| !(l.starts_with(&summary) && l.ends_with(" clusters")))
            .collect();
        assert!(
            o.status.success() && extra.is_empty(),
            "fsck.fat -n on partition {} of {}:\n{all}",
            q.num,
            img.display()
        );
        let _ = fs::remove_file(&slice);
        checked.push(q.num);
    }
    checked
}

/// An exclusive lock on a file held by another process (the `flock` tool), as a user's other
/// program would hold it; returns once the lock is taken.
pub struct HeldLock(std::process::Child);

impl HeldLock {
    pub fn hold(path: &Path) -> HeldLock {
        use std::io::BufRead;
        let mut child = cmd("flock")
            .arg("-x")
            .arg(path)
            .args(["-c", "echo locked; read line"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        HeldLock(child)
    }

    /// Releases the lock (`read` returns at end of input) and checks the holder ended well.
    pub fn release(mut self) {
        let mut stdin = self.0.stdin.take().unwrap();
        let _ = stdin.write_all(b"\n");
        drop(stdin);
        assert!(self.0.wait().unwrap().success());
    }
}

// ---------------------------------------------------------------------------------
// The real ESXi 7.0.2 host's configuration (../shared/real/), read at test time only

/// The real 7.0.2 host's folder, `../shared/real/dissect-hypervisor-esxi702` beside the
/// project (or `$BOOTBANK_REAL_DIR`).
pub fn real_dir() -> PathBuf {
    std::env::var_os("BOOTBANK_REAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../shared/real/dissect-hypervisor-esxi702"))
}

/// True when the real host's data and python3 are here. Missing under `CI=true`: a failure,
/// never a silent skip.
pub fn require_real() -> bool {
    if !require_tools(&["python3", "tar", "gzip"]) {
        return false;
    }
    let d = real_dir();
    if d.join("local.tgz.decrypted").is_file() {
        return true;
    }
    if in_ci() {
        panic!(
            "the real 7.0.2 host's data is missing (CI=true): {} (set BOOTBANK_REAL_DIR)",
            d.display()
        );
    }
    eprintln!("SKIPPED: real host data not found at {}", d.display());
    false
}

/// A real file of the 7.0.2 host, e.g. `encryption.info`.
pub fn real_file(name: &str) -> Vec<u8> {
    fs::read(real_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `tests/tools/mkrealhost OUT args...`: the real host's local.tgz with rows added by Python's
/// sqlite3; returns its path.
pub fn mkrealhost(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    run(cmd("python3")
        .arg(tool("mkrealhost"))
        .arg(&out)
        .arg("--real")
        .arg(real_dir())
        .args(args));
    out
}

/// `tests/tools/configstore-rows DB`: every row of every table as JSON lines (Python's
/// sqlite3), parsed.
pub fn configstore_rows(db: &Path) -> Vec<serde_json::Value> {
    run_text(cmd("python3").arg(tool("configstore-rows")).arg(db))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The real host's envelope header with `plain` sealed under the key the real
/// encryption.info derives (bootbank's envelope writer, itself checked against the independent
/// decryptor); a fixed IV so fixtures are reproducible.
pub fn seal_real(plain: &[u8]) -> Vec<u8> {
    let info = bootbank::envelope::EncryptionInfo::parse(&real_file("encryption.info")).unwrap();
    let key = info.derive_key().unwrap();
    let env = bootbank::envelope::Envelope::parse(&real_file("local.tgz.ve")).unwrap();
    env.seal(plain, &key.key, *b"WMV_\0\0\0\0\0\0\0\x02")
        .expect("envelope writer")
}

/// A 7.0U2+ state.tgz as the real host's bootbank holds it: `local.tgz.ve` (the given local.tgz
/// sealed, see [`seal_real`]) and the real `encryption.info`, tarred with GNU tar.
pub fn real_encrypted_state(dir: &Path, local: &Path, out: &Path) {
    let stage = dir.join("real-state-stage");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).unwrap();
    fs::write(
        stage.join("local.tgz.ve"),
        seal_real(&fs::read(local).unwrap()),
    )
    .unwrap();
    fs::write(stage.join("encryption.info"), real_file("encryption.info")).unwrap();
    run(cmd("bash").arg("-c").arg(
        "tar -C \"$1\" --format=gnu --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -cf - local.tgz.ve encryption.info | gzip -n > \"$2\"",
    ).arg("tar").arg(&stage).arg(out));
}

/// The build of the real 7.0.2 host (esx-base 7.0.2-17867351), as boot.cfg writes it.
pub const REAL_BUILD: &str = "7.0.2-0.0.17867351";

/// An installed bank of the real host's build whose state.tgz is `state` (e.g. one made with
/// [`mkrealhost`] and [`real_encrypted_state`]).
pub fn real_bank(updated: u32, bootstate: u32, state: Vec<u8>) -> BankSpec {
    BankSpec {
        boot_cfg: boot_cfg(REAL_BUILD, updated, bootstate),
        payload: true,
        extra_files: vec![("state.tgz".to_string(), state)],
        ..BankSpec::default()
    }
}

/// The python of the venv holding the pinned independent decryptor (`tests/tools/oracle-venv`),
/// or None (skip) when it cannot be installed outside CI; under `CI=true` a missing oracle fails.
pub fn oracle_python() -> Option<&'static Path> {
    static PY: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let why = match Command::new(tool("oracle-venv")).output() {
            Ok(o) if o.status.success() => {
                let py = String::from_utf8_lossy(&o.stdout).trim().to_string();
                return Some(PathBuf::from(py));
            }
            Ok(o) => format!(
                "oracle-venv failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run oracle-venv: {e}"),
        };
        if in_ci() {
            panic!("independent decryptor missing (CI=true): {why}");
        }
        eprintln!("SKIPPED: independent decryptor (dissect.hypervisor) unavailable: {why}");
        None
    })
    .as_deref()
}

/// The ConfigEncData of fleet host `i`: its own key id, data1 and data2 (made from its
/// number), as every host of a real fleet has its own.
pub fn fleet_enc_data(i: usize) -> String {
    use base64::Engine;
    use sha2::Digest;
    let b64 = |what: &str| {
        let h = sha2::Sha256::digest(format!("{what} {i}").as_bytes());
        base64::engine::general_purpose::STANDARD
            .encode(&h[..16])
            .replace('=', "%3d")
    };
    format!(
        "keyId={}:data1={}:data2={}:version=1",
        b64("key id"),
        b64("data1"),
        b64("data2")
    )
}

/// A config bundle (mkbundle with `bundle_args`) whose state.tgz holds `local_tgz` sealed with
/// the key `enc_data` derives (bootbank's envelope writer, checked against the independent
/// decryptor in tests/envelope.rs) and an encryption.info carrying `enc_data` (mkstate).
pub fn encrypted_bundle(
    work: &Path,
    local_tgz: &[u8],
    enc_data: &str,
    out: &Path,
    bundle_args: &[&str],
) {
    let k = bootbank::envelope::ConfigEncData::parse(enc_data)
        .unwrap()
        .derive_key();
    let env = bootbank::envelope::Envelope::build_new(
        &k.key_id,
        &k.key,
        local_tgz,
        *b"WMV_\0\0\0\0\0\0\0\x01",
    )
    .unwrap();
    let ve = work.join("bundle-local.tgz.ve");
    fs::write(&ve, env).unwrap();
    // mkstate wants a tree even when it is handed the envelope (`--ve`); it is not used then.
    let root = work.join("bundle-unused-root");
    write_tree(
        &root,
        &[("etc/hosts".to_string(), b"127.0.0.1 localhost\n".to_vec())],
    );
    let state = work.join("bundle-state.tgz");
    mkstate_args(
        &root,
        &state,
        &[
            "--encrypted",
            "NONE",
            "--ve",
            ve.to_str().unwrap(),
            "--enc-data",
            enc_data,
        ],
    );
    mkbundle(&state, out, bundle_args);
}
