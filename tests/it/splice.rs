//! A fix re-encodes only the deflate symbols around the changed line (src/deflate.rs), at both
//! gzip levels. Checked with GNU gzip and tar, and busybox (what ESXi writes and reads them
//! with), as oracles: the archives these tools wrote and bootbank changed must test clean with
//! `gzip -t`, list the same members with the same metadata, and differ from the original only in
//! the intended line; and nearly all of the original compressed bytes must still be there, byte
//! for byte, which only a splice can give.

use crate::common;

use crate::common::{TempDir, cmd, run, run_text, tar_listing, tar_member};
use std::fs;
use std::path::Path;

const STORY_DEVICE: &str = "0000:16:00.0";

/// A tree whose esx.conf sits `before` KiB of text into local.tgz, with more text and a
/// poorly compressible file after it, so that both gzip levels have many deflate blocks.
fn stage(root: &Path, before_kib: usize) {
    let text = |seed: usize, kib: usize| -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = seed;
        while out.len() < kib * 1024 {
            out.extend_from_slice(
                format!(
                    "<vm id=\"{}\" name=\"vm-{}\" path=\"/vmfs/volumes/ds{}/vm{}\"/>\n",
                    i,
                    i * 7,
                    i % 5,
                    i
                )
                .as_bytes(),
            );
            i += 1;
        }
        out
    };
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"0123456789abcdef"[(x % 16) as usize]
        })
        .collect();
    let mut files = vec![
        (
            "etc/vmware/esx.conf".to_string(),
            common::esxconf("story.conf").into_bytes(),
        ),
        ("etc/vmware/hostd/vms.xml".to_string(), text(1, 300)),
        (
            "var/lib/vmware/configstore/backup/datafile-store".to_string(),
            noise,
        ),
    ];
    if before_kib > 0 {
        files.push((
            "etc/aaa/inventory.xml".to_string(),
            text(100_000, before_kib),
        ));
    }
    common::write_tree(root, &files);
}

/// `bootbank fix STATE --device <story> --yes --output DIR/fixed.tgz`; returns that path.
fn fix_to_file(state: &Path, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("fixed.tgz");
    let o = run(cmd(env!("CARGO_BIN_EXE_bootbank"))
        .args(["fix"])
        .arg(state)
        .args(["--device", STORY_DEVICE, "--yes", "--output"])
        .arg(&out)
        .arg("--backup-dir")
        .arg(dir.join("backup")));
    assert!(o.status.success());
    out
}

/// Bytes of `old`, in whole KiB chunks, found verbatim somewhere in `new`. A recompressed
/// stream keeps none past the gzip header; a splice keeps every block it did not re-encode
/// (moved, when a re-encoded span before it changed length).
fn kept(old: &[u8], new: &[u8]) -> usize {
    old.chunks_exact(1024)
        .filter(|c| new.windows(1024).any(|w| w == *c))
        .count()
        * 1024
}

#[test]
fn fix_keeps_the_unchanged_deflate_blocks_at_both_levels() {
    if !common::require_tools(&["tar", "gzip"]) {
        return;
    }
    for before_kib in [0, 200] {
        let dir = TempDir::new(&format!("splice-{before_kib}"));
        let root = dir.path().join("root");
        stage(&root, before_kib);
        let state = dir.path().join("state.tgz");
        common::mkstate(&root, &state, None);
        let out = fix_to_file(&state, dir.path());

        // GNU gzip and tar accept both levels and list the same members with the same metadata.
        run(cmd("gzip").arg("-t").arg(&out));
        // local.tgz's size changes with its compressed bytes; nothing else does.
        let no_size = |l: String| -> Vec<String> {
            l.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    [&f[..2], &f[3..]].concat().join(" ")
                })
                .collect()
        };
        assert_eq!(no_size(tar_listing(&out)), no_size(tar_listing(&state)));
        let (old_local, new_local) = (
            tar_member(&state, "local.tgz"),
            tar_member(&out, "local.tgz"),
        );
        for (name, bytes) in [("old", &old_local), ("new", &new_local)] {
            let p = dir.path().join(format!("{name}-local.tgz"));
            fs::write(&p, bytes).unwrap();
            run(cmd("gzip").arg("-t").arg(&p));
        }
        let (old_l, new_l) = (
            dir.path().join("old-local.tgz"),
            dir.path().join("new-local.tgz"),
        );
        assert_eq!(tar_listing(&new_l), tar_listing(&old_l));
        for member in [
            "etc/vmware/hostd/vms.xml",
            "var/lib/vmware/configstore/backup/datafile-store",
        ] {
            assert_eq!(
                tar_member(&new_l, member),
                tar_member(&old_l, member),
                "{member}"
            );
        }
        let diff = run_text(
            cmd("bash").arg("-c").arg("diff <(tar -xzOf \"$1\" etc/vmware/esx.conf) <(tar -xzOf \"$2\" etc/vmware/esx.conf) || true").arg("diff").arg(&old_l).arg(&new_l),
        );
        let changed: Vec<&str> = diff.lines().filter(|l| l.starts_with(['<', '>'])).collect();
        assert_eq!(
            changed,
            [
                "< /device/000:022:00.0/owner = \"passthru\"",
                "> /device/000:022:00.0/owner = \"vmkernel\""
            ],
            "{diff}"
        );

        // Nearly every compressed byte is the original's, at both levels: a splice at symbol
        // boundaries re-encodes a few hundred bytes around each change, where a recompression
        // keeps nothing past the gzip header (and a splice at block boundaries re-encoded whole
        // blocks, which in these archives span hundreds of KiB).
        let (old_state, new_state) = (fs::read(&state).unwrap(), fs::read(&out).unwrap());
        // In state.tgz, local.tgz's bytes after its changed span move (a block header is written
        // again there), so copies that reach back across it are re-encoded too: up to the 32 KiB
        // window of nearly incompressible data, about 34 chunks.
        for (what, old, new, most) in [
            ("local.tgz", &old_local, &new_local, 2),
            ("state.tgz", &old_state, &new_state, 40),
        ] {
            let lost = old.len() / 1024 - kept(old, new) / 1024;
            assert!(
                lost <= most,
                "before {before_kib} KiB: {what}: {lost} of {} KiB chunks changed (at most {most} expected)",
                old.len() / 1024
            );
        }
        // The gzip headers are the original bytes (GNU gzip -n: no name, no time).
        assert_eq!(new_state[..10], old_state[..10]);
        assert_eq!(new_local[..10], old_local[..10]);
    }
}

/// ESXi writes local.tgz and state.tgz with busybox tar and gzip (reference, section on
/// state.tgz). Archives busybox wrote are spliced like GNU gzip's, and busybox (what the host
/// itself would use to read them) and GNU tar both read the result.
#[test]
fn archives_busybox_wrote_are_spliced_and_busybox_reads_the_result() {
    if !common::require_tools(&["busybox", "tar", "gzip"]) {
        return;
    }
    let dir = TempDir::new("splice-busybox");
    let root = dir.path().join("root");
    stage(&root, 64);
    let bb = |args: &[&str], cwd: &Path| {
        run(cmd("busybox").args(args).current_dir(cwd));
    };
    let inner = dir.path().join("inner");
    fs::create_dir_all(&inner).unwrap();
    bb(
        &[
            "tar",
            "-czf",
            inner.join("local.tgz").to_str().unwrap(),
            "etc",
            "var",
        ],
        &root,
    );
    let state = dir.path().join("state.tgz");
    bb(
        &["tar", "-czf", state.to_str().unwrap(), "local.tgz"],
        &inner,
    );
    let out = fix_to_file(&state, dir.path());

    // busybox lists and extracts both levels; GNU gzip tests them clean.
    run(cmd("gzip").arg("-t").arg(&out));
    let listing = |a: &Path| run_text(cmd("busybox").args(["tar", "-tzf"]).arg(a));
    assert_eq!(listing(&out), listing(&state));
    let x = dir.path().join("x");
    fs::create_dir_all(&x).unwrap();
    bb(&["tar", "-xzf", out.to_str().unwrap()], &x);
    let (old_local, new_local) = (inner.join("local.tgz"), x.join("local.tgz"));
    run(cmd("gzip").arg("-t").arg(&new_local));
    assert_eq!(listing(&new_local), listing(&old_local));
    assert_eq!(tar_listing(&new_local), tar_listing(&old_local));
    let conf = |a: &Path| {
        run(cmd("busybox")
            .args(["tar", "-xzOf"])
            .arg(a)
            .arg("etc/vmware/esx.conf"))
        .stdout
    };
    let (old_conf, new_conf) = (
        String::from_utf8(conf(&old_local)).unwrap(),
        String::from_utf8(conf(&new_local)).unwrap(),
    );
    let changed: Vec<(&str, &str)> = old_conf
        .lines()
        .zip(new_conf.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "/device/000:022:00.0/owner = \"passthru\"",
            "/device/000:022:00.0/owner = \"vmkernel\""
        )]
    );
    assert_eq!(old_conf.lines().count(), new_conf.lines().count());
    // Spliced, not recompressed: nearly every KiB of the original local.tgz is still there.
    let (a, b) = (fs::read(&old_local).unwrap(), fs::read(&new_local).unwrap());
    let lost = a.len() / 1024 - kept(&a, &b) / 1024;
    assert!(lost <= 2, "{lost} of {} KiB chunks changed", a.len() / 1024);
}
