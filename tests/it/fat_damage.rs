//! A bank whose FAT is damaged in a way no interrupted write leaves (two files sharing a
//! cluster) is never written: every command that writes refuses with exit 2 and names the
//! damage, the image stays byte for byte as it was, no backup is made, and `inspect` reports
//! it. `fsck.fat -n` is the oracle that the damage is real and what it is.

use crate::common::{
    self, TempDir, bootbank, cmd, copy_sparse, dd_partition, output_text, p, sha256_file,
};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn tools() -> bool {
    common::require_tools(&["mshowfat", "fsck.fat", "sfdisk", "dd", "truncate"])
}

/// Clusters of `file` in the FAT at `off`, from `mshowfat` (`::/b.b00 <2-3>` or `<2> <21>`).
fn clusters(img: &Path, off: u64, file: &str) -> Vec<u16> {
    let out = common::run_text(
        cmd("mshowfat")
            .arg("-i")
            .arg(format!("{}@@{off}", p(img)))
            .arg(format!("::/{file}")),
    );
    let mut v = Vec::new();
    for run in out.split('<').skip(1) {
        let run = run.split('>').next().unwrap();
        let (a, b) = run.split_once('-').unwrap_or((run, run));
        v.extend(a.trim().parse::<u16>().unwrap()..=b.trim().parse::<u16>().unwrap());
    }
    v
}

/// Points FAT16 entry `cluster` at `to` in every FAT copy of the volume at `off`, with the
/// geometry read from its boot sector.
fn set_fat16_entry(img: &Path, off: u64, cluster: u16, to: u16) {
    let f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let mut bs = [0u8; 512];
    f.read_exact_at(&mut bs, off).unwrap();
    let bps = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let reserved = u64::from(u16::from_le_bytes([bs[14], bs[15]]));
    let fats = u64::from(bs[16]);
    let per_fat = u64::from(u16::from_le_bytes([bs[22], bs[23]]));
    assert!(fats >= 1 && per_fat > 0, "not a FAT16 boot sector");
    for copy in 0..fats {
        let at = off + (reserved + copy * per_fat) * bps + u64::from(cluster) * 2;
        f.write_all_at(&to.to_le_bytes(), at).unwrap();
    }
}

#[test]
fn a_cross_linked_fat_is_refused_by_every_writer_and_reported() {
    if !tools() {
        return;
    }
    let t = TempDir::new("fat-damage");
    let img = t.join("disk.img");
    copy_sparse(
        &common::manifest_dir().join("examples").join("demo.img"),
        &img,
    );
    let part = common::part(&img, 5);
    let off = part.offset();
    // b.b00's chain is made to continue into s.v00's second cluster.
    let (b, s) = (clusters(&img, off, "b.b00"), clusters(&img, off, "s.v00"));
    assert!(b.len() >= 2 && s.len() >= 2, "b.b00 {b:?}, s.v00 {s:?}");
    let shared = s[1];
    set_fat16_entry(&img, off, b[0], shared);
    assert_eq!(clusters(&img, off, "b.b00"), vec![b[0], shared]);

    // The oracle: fsck.fat sees the two files share a cluster.
    let copy = t.join("p5.img");
    dd_partition(&img, &part, &copy);
    let fsck = cmd("fsck.fat").arg("-n").arg(&copy).output().unwrap();
    let fsck_text = String::from_utf8_lossy(&fsck.stdout);
    assert_ne!(
        fsck.status.code(),
        Some(0),
        "fsck.fat -n found nothing:\n{fsck_text}"
    );
    assert!(fsck_text.contains("share clusters"), "{fsck_text}");

    let before = sha256_file(&img);
    let want = format!("cluster {shared} is used twice (cross-linked files or a loop)");
    let writers: [&[&str]; 4] = [
        &["fix", p(&img), "--device", "0000:16:00.0"],
        &["config", "set", p(&img), "/adv/Misc/HostName", "x"],
        &["bank", "rollback", p(&img)],
        &["restore-config", p(&img), "--from-bank", "6"],
    ];
    for (i, args) in writers.iter().enumerate() {
        let backup = t.join(format!("backup-{i}"));
        let mut full = args.to_vec();
        full.extend(["--yes", "--backup-dir", p(&backup)]);
        let o = bootbank(t.path(), &full);
        let text = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{text}");
        assert!(
            text.contains(&want) && text.contains("nothing was written"),
            "{args:?}\n{text}"
        );
        assert!(!backup.exists(), "{args:?} made a backup");
        assert_eq!(sha256_file(&img), before, "{args:?} wrote to the image");
    }

    // inspect reports it, with the same words, as a finding of its own.
    let o = bootbank(t.path(), &["inspect", p(&img), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "fat-damaged")
        .unwrap_or_else(|| panic!("no fat-damaged finding:\n{}", output_text(&o)));
    assert!(
        finding["message"].as_str().unwrap().contains(&want),
        "{finding}"
    );
}
