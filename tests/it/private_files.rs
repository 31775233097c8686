//! What bootbank writes outside the target holds the host's secrets (password hashes, private
//! keys, and for mode NONE what decrypts them): backup and extract directories are created 0700
//! and backup files 0600 whatever the umask, and a backup directory others can write is refused
//! before anything is written. Modes are read with stat(1), not with bootbank's code.

use crate::common;

use crate::common::{TempDir, cmd, copy_sparse, output_text, p, sha256_file};
use std::fs;
use std::path::Path;

/// `stat -c %a PATH`: the permission bits in octal.
fn mode(path: &Path) -> String {
    common::run_text(cmd("stat").args(["-c", "%a"]).arg(path))
        .trim()
        .to_string()
}

/// Runs the bootbank binary through bash with `umask` set first.
fn under_umask(cwd: &Path, umask: &str, args: &[&str]) -> std::process::Output {
    let mut c = cmd("bash");
    c.current_dir(cwd)
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(common::BIN)
        .args(args);
    c.output().unwrap()
}

#[test]
fn backups_and_extracted_files_are_private_whatever_the_umask() {
    if !common::require_tools(&["stat", "bash", "mcopy"]) {
        return;
    }
    let demo = common::manifest_dir().join("examples/demo.img");
    for umask in ["0000", "0022", "0277"] {
        let t = TempDir::new("private");
        let img = t.join("disk.img");
        copy_sparse(&demo, &img);
        let backup = t.join("backups/esx01");
        let o = under_umask(
            t.path(),
            umask,
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
        assert!(o.status.success(), "umask {umask}: {}", output_text(&o));
        assert_eq!(mode(&backup), "700", "umask {umask}: backup directory");
        let files: Vec<_> = fs::read_dir(&backup)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            files.len() >= 2,
            "a state.tgz copy and the manifest: {files:?}"
        );
        for f in &files {
            assert_eq!(mode(f), "600", "umask {umask}: {}", f.display());
        }
        // extract: the directory it creates, and the ones below it, only for the owner.
        let out = t.join("config");
        let o = under_umask(t.path(), umask, &["extract", p(&img), "--to", p(&out)]);
        assert!(o.status.success(), "umask {umask}: {}", output_text(&o));
        assert_eq!(mode(&out), "700", "umask {umask}: extract directory");
        assert_eq!(
            mode(&out.join("local/etc")),
            "700",
            "umask {umask}: a directory below"
        );
    }
}

#[test]
fn a_backup_directory_others_can_write_is_refused() {
    if !common::require_tools(&["stat", "mcopy"]) {
        return;
    }
    let t = TempDir::new("private-shared");
    let img = t.join("disk.img");
    copy_sparse(&common::manifest_dir().join("examples/demo.img"), &img);
    let before = sha256_file(&img);
    let shared = t.join("shared");
    fs::create_dir(&shared).unwrap();
    for m in ["777", "775", "1777"] {
        common::run(cmd("chmod").arg(m).arg(&shared));
        let o = common::bootbank(
            t.path(),
            &[
                "fix",
                p(&img),
                "--device",
                "0000:16:00.0",
                "--yes",
                "--backup-dir",
                p(&shared),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "mode {m}: {}", output_text(&o));
        assert!(
            output_text(&o).contains("others can write"),
            "{}",
            output_text(&o)
        );
        assert_eq!(sha256_file(&img), before, "mode {m}: nothing written");
        assert_eq!(
            fs::read_dir(&shared).unwrap().count(),
            0,
            "mode {m}: no backup"
        );
    }
}
