//! `bootbank fix` on an encrypted configuration (ESXi 7.0U2+: state.tgz = local.tgz.ve +
//! encryption.info), checked end to end through the binary with outside tools only:
//!
//! - mtools (`mcopy`) reads the new state.tgz; GNU `tar --full-time -tvzf` lists the same members
//!   in the same order with the same mode, owner and mtime; encryption.info extracts
//!   byte-identical;
//! - the new local.tgz.ve keeps the envelope's length rules (4096-byte blocks, the same header
//!   length, plaintext rounded up to a block plus a crypto footer block and an AEAD footer
//!   block) and the original header bytes except the 12 value bytes of `vmware.iv` (found by
//!   walking the attribute list here, not with bootbank's parser), which differ and start with
//!   `WMV_`; the AEAD footer differs only in its 16-byte tag;
//! - the independent decryptor (PyPI dissect.hypervisor through `tests/tools/oracle-decrypt`)
//!   opens the original and the new envelope; GNU tar shows the same local.tgz members with the
//!   same metadata, every member byte-identical except esx.conf, and `diff` of esx.conf is
//!   exactly the owner line of 000:022:00.0 going from "passthru" to "vmkernel";
//! - `fsck.fat -n` is clean on every FAT partition; `bootbank inspect --json` reports the
//!   configuration as `kdf` with the reference's key id and no critical finding;
//! - `bootbank restore` puts back the original state.tgz byte for byte.
//!
//! A TPM-sealed bank is refused (exit 2, image unchanged) with an esxcli command line.
//!
//! Without python3/pip/PyPI the oracle checks print SKIPPED and the rest still runs, except under
//! `CI=true`, where a missing oracle fails the test (like tests/it/envelope.rs).
//!
//! Two `#[ignore]`d helpers serve `bench/encrypted`: `make_bench_fixture` writes a 16 GiB 7.x
//! image with an encrypted bank 5 and its plain twin into `$BOOTBANK_BENCH_DIR`, and
//! `time_key_derivation` prints how long bootbank's key derivation takes in this build.

use crate::common;

use crate::common::{
    Scenario, TarEntry, TempDir, bootbank, bootbank_ok, cmd, copy_sparse, fsck_fat_partitions,
    healthy_bank, output_text, p, run, sha256_file, story_bank, tar_entries, untar,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const ESX_CONF: &str = "etc/vmware/esx.conf";
const OWNER_PASSTHRU: &str = "/device/000:022:00.0/owner = \"passthru\"";
const OWNER_VMKERNEL: &str = "/device/000:022:00.0/owner = \"vmkernel\"";
const KEY_ID: &str = "7e62cec5-6aef-4d7e-838b-cae32eefd251";
/// The IV the fixture builder (tests/it/common) writes into every envelope.
const FIXTURE_IV: &[u8; 12] = b"WMV_\0\0\0\0\0\0\0\x01";
const BLOCK: usize = 4096;

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["diff", "cp", "sha256sum", "dd"])
}

// ---------------------------------------------------------------------------------------------
// Running bootbank (see `common::bootbank`)

fn inspect_json(cwd: &Path, img: &Path) -> serde_json::Value {
    let out = bootbank_ok(cwd, &["inspect", "--json", p(img)]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect --json: {e}\n{out}"))
}

fn critical_findings(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("findings[]")
        .iter()
        .filter(|f| f["severity"] == "critical")
        .map(|f| format!("{}: {}", f["rule"], f["message"]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The independent decryptor

/// The oracle's python, or None (skip) when it cannot be installed outside CI.
fn oracle() -> Option<&'static Path> {
    common::oracle_python()
}

/// `oracle-decrypt INFO VE OUT`: the plaintext written to OUT; checks the key id it derived.
fn oracle_decrypt(py: &Path, info: &Path, ve: &Path, out: &Path) -> Vec<u8> {
    let o = run(Command::new(py)
        .arg(common::tool("oracle-decrypt"))
        .arg(info)
        .arg(ve)
        .arg(out));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("key-id {KEY_ID}\n")),
        "oracle key id: {stdout}"
    );
    fs::read(out).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Outside-tool checks

/// Same names in the same order, same mode/owner/mtime; the same size except for `changed`.
fn same_listing(before: &[TarEntry], after: &[TarEntry], changed: &str, what: &str) {
    let names = |l: &[TarEntry]| l.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(before), names(after), "{what}: member names or order");
    for (x, y) in before.iter().zip(after) {
        assert_eq!(
            (&x.mode, &x.owner, &x.mtime),
            (&y.mode, &y.owner, &y.mtime),
            "{what}: metadata of {}",
            x.name
        );
        if x.name != changed {
            assert_eq!(x.size, y.size, "{what}: size of {}", x.name);
        }
    }
}

fn u32_le(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// Offset of the value of the `vmware.iv` attribute, found by walking the attribute list from
/// byte 512 (type, flag, u16, NUL-terminated name, then a NUL-terminated string for type 0x0b or
/// a u64 length and that many bytes for 0x0c). Written here from the reference's description,
/// independently of bootbank's parser; panics on anything else.
fn iv_value_offset(header: &[u8]) -> usize {
    let mut at = 512;
    loop {
        let kind = header[at];
        assert_ne!(kind, 0, "no vmware.iv attribute in the header");
        let name_end = at + 4 + header[at + 4..].iter().position(|&c| c == 0).unwrap();
        let name = &header[at + 4..name_end];
        let v = name_end + 1;
        match kind {
            0x0B => at = v + header[v..].iter().position(|&c| c == 0).unwrap() + 1,
            0x0C => {
                let n = u64::from_le_bytes(header[v..v + 8].try_into().unwrap()) as usize;
                if name == b"vmware.iv" {
                    assert_eq!(n, 12, "vmware.iv length");
                    return v + 8;
                }
                at = v + 8 + n;
            }
            k => panic!("attribute type 0x{k:02x} at {at} not expected in this envelope"),
        }
    }
}

/// A change made to a copy of the new envelope (given the IV's offset), to show a check catches it.
type Stray = fn(&mut Vec<u8>, usize);

/// The new envelope against the original: length rules, header bytes (all but the 12 value bytes
/// of `vmware.iv`, which must hold a fresh `WMV_` IV), and the AEAD footer (all but the tag).
/// Returns the header length.
fn check_resealed(ve_b: &[u8], ve_a: &[u8]) -> usize {
    assert_eq!(ve_a[..21], *b"DataTransformEnvelope");
    let header_len = u32_le(ve_b, 504) + 512;
    assert_eq!(header_len % BLOCK, 0);
    assert_eq!(u32_le(ve_a, 504) + 512, header_len, "header length");
    for (what, ve) in [("original", ve_b), ("new", ve_a)] {
        assert_eq!(ve.len() % BLOCK, 0, "{what} envelope length {}", ve.len());
        assert!(
            ve.len() >= header_len + 2 * BLOCK,
            "{what} envelope too short"
        );
    }
    let iv_at = iv_value_offset(&ve_b[..header_len]);
    assert_eq!(iv_value_offset(&ve_a[..header_len]), iv_at);
    assert_eq!(&ve_b[iv_at..iv_at + 12], FIXTURE_IV);
    let new_iv = &ve_a[iv_at..iv_at + 12];
    assert!(new_iv.starts_with(b"WMV_"), "new IV {new_iv:02x?}");
    assert_ne!(new_iv, FIXTURE_IV, "the IV was reused");
    let differing: Vec<usize> = (0..header_len).filter(|&i| ve_b[i] != ve_a[i]).collect();
    assert!(
        differing.iter().all(|i| (iv_at..iv_at + 12).contains(i)),
        "header bytes other than vmware.iv changed: {differing:?} (iv at {iv_at})"
    );
    let (fb, fa) = (&ve_b[ve_b.len() - BLOCK..], &ve_a[ve_a.len() - BLOCK..]);
    assert_eq!(fa[..23], *b"DataTransformAeadFooter");
    assert_eq!(fb[..32], fa[..32], "AEAD footer before the tag");
    assert_eq!(fb[48..], fa[48..], "AEAD footer after the tag");
    assert_ne!(fb[32..48], fa[32..48], "the tag did not change");
    header_len
}

/// The expected `diff OLD NEW` for the story's one-line change.
fn story_diff(old: &str) -> String {
    let hits: Vec<usize> = old
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == OWNER_PASSTHRU)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "the passthru line must occur once");
    let n = hits[0];
    format!("{n}c{n}\n< {OWNER_PASSTHRU}\n---\n> {OWNER_VMKERNEL}\n")
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The demo layout with bank 5 (boots next) holding the story's esx.conf encrypted with `mode`.
fn encrypted_demo(dir: &Path, mode: &'static str) -> PathBuf {
    let mut b5 = story_bank(3, 0);
    b5.encrypted = Some(mode);
    Scenario::new()
        .layout("demo")
        .bank(5, b5)
        .bank(6, healthy_bank(2, 0))
        .build(dir)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The story on an encrypted (mode NONE) bank: fixed, checked with outside tools, restored.
#[test]
fn kdf_bank_fix_checked_by_outside_tools_and_restored() {
    if !tools() {
        return;
    }
    let started = Instant::now();
    let t = TempDir::new("fixenc-kdf");
    let pristine = encrypted_demo(&t.join("build"), "NONE");
    let img = t.join("disk.img");
    copy_sparse(&pristine, &img);

    // Before: bootbank sees the mistake through the envelope.
    let before = inspect_json(t.path(), &img);
    assert_eq!(before["config"]["encryption"], "kdf", "{before:#}");
    assert!(
        critical_findings(&before)
            .iter()
            .any(|f| f.contains("passthru-storage-adapter")),
        "{before:#}"
    );

    // The fix.
    let backup = t.join("backup");
    let out = bootbank_ok(
        t.path(),
        &[
            "fix",
            p(&img),
            "--device",
            "0000:16:00.0",
            "--yes",
            "--backup-dir",
            p(&backup),
        ],
    );
    assert!(
        out.contains("Written and verified: partition 5 /state.tgz"),
        "{out}"
    );
    assert!(
        out.contains(&format!("same key (id {KEY_ID}) and a fresh IV")),
        "{out}"
    );

    // state.tgz, as mtools reads it.
    let (sb, sa) = (t.join("state-before.tgz"), t.join("state-after.tgz"));
    common::copy_fat_file(&pristine, 5, "state.tgz", &sb);
    common::copy_fat_file(&img, 5, "state.tgz", &sa);
    let (old_state, new_state) = (fs::read(&sb).unwrap(), fs::read(&sa).unwrap());
    assert_ne!(old_state, new_state, "state.tgz did not change");
    // gzip header (magic, method, flags, mtime, XFL, OS) kept.
    assert_eq!(old_state[..10], new_state[..10], "state.tgz gzip header");

    // GNU tar: same members, metadata and order; only local.tgz.ve may change size.
    let (lb, la) = (tar_entries(&sb), tar_entries(&sa));
    let names: Vec<&str> = lb.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["local.tgz.ve", "encryption.info"]);
    same_listing(&lb, &la, "local.tgz.ve", "state.tgz");
    let (xb, xa) = (t.join("state-x-before"), t.join("state-x-after"));
    untar(&sb, &xb);
    untar(&sa, &xa);
    let info = fs::read(xa.join("encryption.info")).unwrap();
    assert!(
        info == fs::read(xb.join("encryption.info")).unwrap(),
        "encryption.info changed"
    );
    assert_eq!(info, common::REFERENCE_ENCRYPTION_INFO.as_bytes());

    // The envelope: length rules, header bytes, AEAD footer.
    let (ve_b, ve_a) = (
        fs::read(xb.join("local.tgz.ve")).unwrap(),
        fs::read(xa.join("local.tgz.ve")).unwrap(),
    );
    let header_len = check_resealed(&ve_b, &ve_a);
    // The check is not vacuous: each of these stray changes to the new envelope fails it.
    let iv_at = iv_value_offset(&ve_b[..header_len]);
    let strays: [(&str, Stray); 6] = [
        ("header padding byte", |v, _| v[300] ^= 1),
        ("keyHash byte", |v, iv| v[iv - 30] ^= 1),
        ("IV prefix", |v, iv| v[iv] = b'X'),
        ("old IV reused", |v, iv| {
            v[iv..iv + 12].copy_from_slice(FIXTURE_IV)
        }),
        ("AEAD footer version", |v, _| {
            let n = v.len();
            v[n - 1] ^= 1
        }),
        ("one block short", |v, _| v.truncate(v.len() - BLOCK)),
    ];
    for (what, stray) in strays {
        let mut bad = ve_a.clone();
        stray(&mut bad, iv_at);
        let caught = std::panic::catch_unwind(|| check_resealed(&ve_b, &bad)).is_err();
        assert!(caught, "a stray change ({what}) was not caught");
    }

    // The independent decryptor opens both; GNU tar compares what is inside.
    if let Some(py) = oracle() {
        let (lb_path, la_path) = (t.join("local-before.tgz"), t.join("local-after.tgz"));
        let local_b = oracle_decrypt(
            py,
            &xb.join("encryption.info"),
            &xb.join("local.tgz.ve"),
            &lb_path,
        );
        let local_a = oracle_decrypt(
            py,
            &xa.join("encryption.info"),
            &xa.join("local.tgz.ve"),
            &la_path,
        );
        assert_eq!(
            ve_a.len(),
            header_len + local_a.len().div_ceil(BLOCK) * BLOCK + 2 * BLOCK,
            "new envelope length for {} bytes of plaintext",
            local_a.len()
        );
        assert_eq!(local_b[..10], local_a[..10], "local.tgz gzip header");
        let (eb, ea) = (tar_entries(&lb_path), tar_entries(&la_path));
        assert!(eb.iter().any(|e| e.name == ESX_CONF), "{eb:?}");
        same_listing(&eb, &ea, ESX_CONF, "local.tgz");
        let (yb, ya) = (t.join("local-x-before"), t.join("local-x-after"));
        untar(&lb_path, &yb);
        untar(&la_path, &ya);
        for e in eb.iter().filter(|e| e.mode.starts_with('-')) {
            let (x, y) = (
                fs::read(yb.join(&e.name)).unwrap(),
                fs::read(ya.join(&e.name)).unwrap(),
            );
            if e.name == ESX_CONF {
                let size = ea.iter().find(|f| f.name == e.name).unwrap().size;
                assert_eq!(size, y.len() as u64, "listed size of esx.conf");
            } else {
                assert!(x == y, "local.tgz member {} differs", e.name);
            }
        }
        let old_conf = fs::read_to_string(yb.join(ESX_CONF)).unwrap();
        assert_eq!(old_conf, common::esxconf("story.conf"));
        let d = cmd("diff")
            .arg(yb.join(ESX_CONF))
            .arg(ya.join(ESX_CONF))
            .output()
            .unwrap();
        assert_eq!(d.status.code(), Some(1), "diff of esx.conf");
        assert_eq!(String::from_utf8_lossy(&d.stdout), story_diff(&old_conf));
    }

    // FAT, inspect, backup.
    let checked = fsck_fat_partitions(&img, t.path());
    assert!(checked.contains(&5), "partition 5 not checked: {checked:?}");
    let after = inspect_json(t.path(), &img);
    let cfg = &after["config"];
    assert_eq!(cfg["encryption"], "kdf", "{after:#}");
    assert_eq!(cfg["encryption_mode"], "NONE", "{after:#}");
    assert_eq!(cfg["key_id"], KEY_ID, "{after:#}");
    assert_eq!(cfg["source"], "partition 5 /state.tgz", "{after:#}");
    assert!(critical_findings(&after).is_empty(), "{after:#}");
    let dev = after["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pci_address"] == "0000:16:00.0")
        .unwrap_or_else(|| panic!("no device 0000:16:00.0: {after:#}"));
    assert_eq!(dev["owner"], "vmkernel");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{manifest:#}");
    assert!(
        fs::read(backup.join(entries[0]["backup"].as_str().unwrap())).unwrap() == old_state,
        "the backup is not the original state.tgz"
    );

    // restore: the original state.tgz, byte for byte.
    let undo = t.join("restore-backup");
    bootbank_ok(
        t.path(),
        &[
            "restore",
            p(&img),
            "--from",
            p(&backup),
            "--yes",
            "--backup-dir",
            p(&undo),
        ],
    );
    assert!(
        common::read_fat_file(&img, 5, "state.tgz") == old_state,
        "restored state.tgz differs from the original"
    );
    fsck_fat_partitions(&img, t.path());
    let restored = inspect_json(t.path(), &img);
    assert_eq!(restored["config"]["key_id"], KEY_ID);
    assert_eq!(
        critical_findings(&restored),
        critical_findings(&before),
        "restored findings"
    );
    // The other bank was never touched.
    assert!(
        common::read_fat_file(&img, 6, "state.tgz")
            == common::read_fat_file(&pristine, 6, "state.tgz")
    );
    eprintln!(
        "kdf fix + checks + restore: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A TPM-sealed bank: `fix` refuses with exit 2, writes nothing, and prints the esxcli command
/// line. The address typed in lspci hex is filled in; with `--all-storage` nothing offline can
/// say which device is meant, and the command keeps a placeholder.
#[test]
fn tpm_bank_is_refused_with_esxcli_filled_in() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fixenc-tpm");
    let img = encrypted_demo(t.path(), "TPM");
    let want = sha256_file(&img);
    let report = inspect_json(t.path(), &img);
    assert_eq!(report["config"]["encryption"], "tpm", "{report:#}");
    assert_eq!(report["config"]["encryption_mode"], "TPM", "{report:#}");
    assert!(report["config"]["key_id"].is_null(), "{report:#}");

    let refuse = |args: &[&str]| -> String {
        let backup = t.join("backup");
        let mut full = vec!["fix", p(&img)];
        full.extend_from_slice(args);
        full.extend(["--yes", "--backup-dir", p(&backup)]);
        let o = bootbank(t.path(), &full);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", output_text(&o));
        assert_eq!(
            sha256_file(&img),
            want,
            "{args:?}: the TPM bank was written"
        );
        assert!(!backup.exists(), "{args:?}: the refusal wrote a backup");
        output_text(&o)
    };

    let o = refuse(&["--device", "0000:16:00.0"]);
    assert!(
        o.contains("esxcli hardware pci pcipassthru set -d 0000:16:00.0 -e false -a"),
        "{o}"
    );
    assert!(o.contains("sealed by the host's TPM"), "{o}");
    assert!(o.contains("nothing was written"), "{o}");
    // The short lspci form is filled in as the full hex address esxcli prints.
    let o = refuse(&["--device", "16:00.0"]);
    assert!(o.contains("set -d 0000:16:00.0 -e false -a"), "{o}");
    // `esx:` forces ESXi's decimal reading: bus 022 is 0x16.
    let o = refuse(&["--device", "esx:000:022:00.0"]);
    assert!(o.contains("set -d 0000:16:00.0 -e false -a"), "{o}");
    // Which storage adapters are passthru is inside the sealed esx.conf: no address to fill in.
    let o = refuse(&["--all-storage"]);
    assert!(o.contains("set -d <SSSS:BB:DD.F> -e false -a"), "{o}");
}

// ---------------------------------------------------------------------------------------------
// Helpers for bench/encrypted (ignored: run on demand)

/// Writes `encrypted.img` (bank 5: story esx.conf + a few hundred KiB of other members, encrypted
/// mode NONE; bank 6: healthy, plain) and `plain.img` (the same banks, bank 5 not encrypted) into
/// `$BOOTBANK_BENCH_DIR`: 7.x layout, 16 GiB sparse, 4 GiB FAT16 banks. Does nothing without the
/// variable.
#[test]
#[ignore = "fixture for bench/encrypted; needs BOOTBANK_BENCH_DIR"]
fn make_bench_fixture() {
    let Some(dir) = std::env::var_os("BOOTBANK_BENCH_DIR").map(PathBuf::from) else {
        eprintln!("make_bench_fixture: BOOTBANK_BENCH_DIR is not set; nothing to do");
        return;
    };
    assert!(tools(), "the fixture builder's tools are missing");
    fs::create_dir_all(&dir).unwrap();
    // Like bench/inspect's banks: 40 hostd VM files and a 512 KiB database-sized member of
    // pseudo-random hex (compresses about 2:1).
    let mut files: Vec<(String, Vec<u8>)> = (1..=40)
        .map(|i| {
            let body: String = (1..=400)
                .map(|n| format!("<vm id=\"{i}\" n=\"{n}\"/>\n"))
                .collect();
            (format!("etc/vmware/hostd/vm{i}.xml"), body.into_bytes())
        })
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let store: String = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:08x}", x as u32)
        })
        .collect();
    files.push((
        "var/lib/vmware/configstore/backup/datafile-store".into(),
        store.into_bytes(),
    ));
    for (name, encrypted) in [("encrypted.img", Some("NONE")), ("plain.img", None)] {
        let mut b5 = story_bank(3, 0);
        b5.local_files = files.clone();
        b5.encrypted = encrypted;
        let mut b6 = healthy_bank(2, 0);
        b6.local_files = files.clone();
        let img = Scenario::new()
            .layout("7x")
            .size("16G")
            .name(name)
            .bank(5, b5)
            .bank(6, b6)
            .build(&dir);
        let _ = fs::remove_dir_all(dir.join(format!("{name}.stage")));
        println!("{}", img.display());
    }
}

/// Prints `kdf_ms <milliseconds>`: the median of 5 runs of bootbank's mode-NONE key derivation
/// (100000 rounds of PBKDF2-HMAC-SHA256) in this build of the library.
#[test]
#[ignore = "measurement for bench/encrypted"]
fn time_key_derivation() {
    let info =
        bootbank::envelope::EncryptionInfo::parse(common::REFERENCE_ENCRYPTION_INFO.as_bytes())
            .unwrap();
    let mut ms: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let k = info.derive_key().unwrap();
            let e = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(k.key_id, KEY_ID);
            e
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!("kdf_ms {:.2}", ms[2]);
}
