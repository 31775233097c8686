//! `bootbank extract TARGET --to DIR`, checked against GNU tar:
//!
//! - the demo disk's next-boot configuration extracts to exactly what `tar -xzf` of its
//!   state.tgz and the local.tgz inside gives (`diff -r`), and `--json` lists every entry;
//! - an encrypted (mode NONE) bank extracts to the plain local.tgz GNU tar built before
//!   encryption; a TPM-sealed bank is refused;
//! - hostile archives crafted with GNU tar (`-P` keeps `../x` and `/etc/x`; symlinks made with
//!   `ln -s`; a char device archived from /dev/null; a fifo) and with Python's tarfile where GNU
//!   tar will not write the entry (a hard link to `../../x`, a member below a symlink): exit 2,
//!   one line naming the member, and no file anywhere in the test's directory tree changes;
//! - a non-empty DIR is refused without --force; with --force a symlink already in DIR is never
//!   followed.

use crate::common;

use crate::common::{
    Scenario, TempDir, bootbank, bootbank_ok, cmd, healthy_bank, output_text, p, run, run_text,
    story_bank, write_tree,
};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["diff", "find", "python3", "mkfifo"])
}

fn demo_image() -> PathBuf {
    common::manifest_dir().join("examples").join("demo.img")
}

/// Every path under `dir` with its type, size and content digest (`find` + `sha256sum`), to
/// prove that nothing changed.
fn snapshot(dir: &Path) -> String {
    run_text(cmd("bash").arg("-c").arg(format!(
        "cd '{}' && find . -printf '%y %s %p -> %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum",
        dir.display()
    )))
}

/// `diff -r A B` must report nothing.
fn assert_same_tree(a: &Path, b: &Path) {
    let o = cmd("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn demo_extracts_what_gnu_tar_extracts() {
    if !tools() {
        return;
    }
    let t = TempDir::new("extract-demo");
    let out = t.join("out");
    let json = bootbank_ok(
        t.path(),
        &["extract", p(&demo_image()), "--to", p(&out), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["source"], "partition 5 /state.tgz", "{v:#}");
    assert_eq!(v["encryption"], "none");

    // the oracle: mcopy the same state.tgz, GNU tar it apart
    let oracle = t.join("oracle");
    fs::create_dir_all(oracle.join("state")).unwrap();
    fs::create_dir_all(oracle.join("local")).unwrap();
    let state = t.join("state.tgz");
    fs::write(&state, common::read_fat_file(&demo_image(), 5, "state.tgz")).unwrap();
    run(cmd("tar")
        .arg("-xzf")
        .arg(&state)
        .arg("-C")
        .arg(oracle.join("state")));
    run(cmd("tar")
        .arg("-xzf")
        .arg(oracle.join("state/local.tgz"))
        .arg("-C")
        .arg(oracle.join("local")));
    assert_same_tree(&out, &oracle);

    // --json lists exactly the files written, with their sizes
    let files = run_text(cmd("bash").arg("-c").arg(format!(
        "cd '{}' && find . -type f -printf '%P %s\\n' | sort",
        out.display()
    )));
    let mut listed: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "file")
        .map(|e| format!("{} {}", e["path"].as_str().unwrap(), e["size"]))
        .collect();
    listed.sort();
    assert_eq!(listed.join("\n") + "\n", files);
    assert!(files.contains("local/etc/vmware/esx.conf "), "{files}");

    // the human listing, and the refusal of the now non-empty DIR (nothing changes)
    let before = snapshot(t.path());
    let o = bootbank(t.path(), &["extract", p(&demo_image()), "--to", p(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("not empty"), "{}", output_text(&o));
    assert_eq!(snapshot(t.path()), before);
    let text = bootbank_ok(
        t.path(),
        &["extract", p(&demo_image()), "--to", p(&t.join("out2"))],
    );
    assert!(text.contains("local/etc/vmware/esx.conf"), "{text}");
}

#[test]
fn encrypted_bank_extracts_decrypted_and_tpm_is_refused() {
    if !tools() {
        return;
    }
    let t = TempDir::new("extract-enc");
    let mut b5 = story_bank(3, 0);
    b5.encrypted = Some("NONE");
    let img = Scenario::new()
        .layout("demo")
        .bank(5, b5)
        .bank(6, healthy_bank(2, 0))
        .build(t.path());
    let out = t.join("out");
    let json = bootbank_ok(t.path(), &["extract", p(&img), "--to", p(&out), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["encryption"], "kdf", "{v:#}");
    assert!(out.join("state/local.tgz.ve").is_file());
    assert!(out.join("state/encryption.info").is_file());
    // the plain local.tgz GNU tar made before it was encrypted (tests/tools/mkstate)
    let plain = t.join("disk.img.stage/work5/local.tgz");
    assert!(
        plain.is_file(),
        "fixture layout changed: {}",
        plain.display()
    );
    let oracle = t.join("oracle");
    fs::create_dir_all(&oracle).unwrap();
    run(cmd("tar").arg("-xzf").arg(&plain).arg("-C").arg(&oracle));
    assert_same_tree(&out.join("local"), &oracle);

    let mut b5 = story_bank(3, 0);
    b5.encrypted = Some("TPM");
    let tpm = Scenario::new()
        .layout("demo")
        .name("tpm.img")
        .bank(5, b5)
        .build(t.path());
    let out = t.join("out-tpm");
    let o = bootbank(t.path(), &["extract", p(&tpm), "--to", p(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sealed by the host's TPM"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "a refusal created DIR");
}

/// A work area: `root/` (the tree archived), `outside/victim` (must never change), `out` (DIR).
struct Hostile {
    t: TempDir,
}

impl Hostile {
    fn new(tag: &str) -> Hostile {
        let t = TempDir::new(tag);
        write_tree(
            &t.join("root"),
            &[(
                "etc/vmware/esx.conf".to_string(),
                common::esxconf("story.conf").into_bytes(),
            )],
        );
        write_tree(
            &t.join("outside"),
            &[("victim".to_string(), b"untouched\n".to_vec())],
        );
        Hostile { t }
    }
    fn root(&self) -> PathBuf {
        self.t.join("root")
    }
    /// `local.tgz` made by `script` (run with bash in root/, must write ../local.tgz), wrapped in
    /// a state.tgz with GNU tar.
    fn state_from(&self, script: &str) -> PathBuf {
        run(cmd("bash").arg("-c").arg(script).current_dir(self.root()));
        let state = self.t.join("state.tgz");
        run(cmd("tar")
            .arg("-czf")
            .arg(&state)
            .arg("-C")
            .arg(self.t.path())
            .arg("local.tgz"));
        state
    }
    /// Extraction must be refused naming `member`, with nothing anywhere changed.
    fn refused(&self, state: &Path, member: &str, why: &str) {
        let before = snapshot(self.t.path());
        let out = self.t.join("out");
        let o = bootbank(self.t.path(), &["extract", p(state), "--to", p(&out)]);
        assert_eq!(o.status.code(), Some(2), "{member}: {}", output_text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{}", output_text(&o));
        assert!(err.contains(&format!("`{member}`")), "{member}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(err.contains("nothing written"), "{err}");
        assert!(!out.exists(), "{member}: DIR was created");
        assert_eq!(
            snapshot(self.t.path()),
            before,
            "{member}: something changed"
        );
        assert_eq!(
            fs::read(self.t.join("outside/victim")).unwrap(),
            b"untouched\n"
        );
        // nothing named x appeared at the root of the file system either
        assert!(!Path::new("/etc/x-bootbank-extract").exists());
    }
}

#[test]
fn hostile_members_from_gnu_tar_are_refused() {
    if !tools() {
        return;
    }
    // `../x` kept by -P
    let h = Hostile::new("extract-dotdot");
    fs::write(h.t.join("x"), b"escape\n").unwrap();
    let s = h.state_from("tar -czPf ../local.tgz etc ../x");
    h.refused(&s, "../x", "`..` component");

    // `/etc/x` (an absolute name; -P keeps the slash)
    let h = Hostile::new("extract-abs");
    fs::write(h.root().join("x"), b"escape\n").unwrap();
    let s =
        h.state_from("tar -czPf ../local.tgz --transform='s,^x$,/etc/x-bootbank-extract,' etc x");
    h.refused(&s, "/etc/x-bootbank-extract", "absolute path");

    // symlinks out: relative, absolute, and through another link
    let h = Hostile::new("extract-symlink");
    let s = h.state_from("ln -s ../../../outside/victim etc/evil && tar -czf ../local.tgz etc");
    h.refused(&s, "etc/evil", "outside the directory");
    let h = Hostile::new("extract-symlink-abs");
    let s = h.state_from("ln -s /etc/passwd etc/abs && tar -czf ../local.tgz etc");
    h.refused(&s, "etc/abs", "absolute path");
    let h = Hostile::new("extract-symlink-chain");
    let s =
        h.state_from("mkdir d && ln -s .. d/l && ln -s d/l/.. e && tar -czf ../local.tgz etc d e");
    h.refused(&s, "e", "through the link `d/l`");

    // a character device (archived from /dev/null) and a fifo
    let h = Hostile::new("extract-dev");
    let s = h
        .state_from("tar -czf ../local.tgz etc -C / --transform='s,^dev/null$,etc/null,' dev/null");
    h.refused(&s, "etc/null", "a device file");
    let h = Hostile::new("extract-fifo");
    let s = h.state_from("mkfifo etc/pipe && tar -czf ../local.tgz etc");
    h.refused(&s, "etc/pipe", "a fifo");
}

/// Python's tarfile, for entries GNU tar does not write from a real tree.
const PY_TAR: &str = r#"
import io, sys, tarfile
out, kind = sys.argv[1], sys.argv[2]
with tarfile.open(out, "w:gz", format=tarfile.GNU_FORMAT) as t:
    t.add("etc", recursive=True)
    def member(name, type_, link="", data=b""):
        i = tarfile.TarInfo(name); i.type = type_; i.linkname = link; i.size = len(data); i.mode = 0o644
        t.addfile(i, io.BytesIO(data) if data else None)
    if kind == "hardlink-out":
        member("etc/hard", tarfile.LNKTYPE, "../../outside/victim")
    elif kind == "below-symlink":
        member("etc/sub", tarfile.SYMTYPE, "../../outside")
        member("etc/sub/victim", tarfile.REGTYPE, data=b"overwritten\n")
    elif kind == "twice":
        member("etc/hosts", tarfile.REGTYPE, data=b"one\n")
        member("etc/hosts", tarfile.REGTYPE, data=b"two\n")
    elif kind == "hardlink-later":
        member("etc/early", tarfile.LNKTYPE, "etc/late")
        member("etc/late", tarfile.REGTYPE, data=b"x\n")
"#;

#[test]
fn hostile_members_from_python_tarfile_are_refused() {
    if !tools() {
        return;
    }
    for (kind, member, why) in [
        ("hardlink-out", "etc/hard", "hard link with `..` component"),
        ("below-symlink", "etc/sub/victim", "lies below `etc/sub`"),
        ("twice", "etc/hosts", "appears twice"),
        ("hardlink-later", "etc/early", "comes later in the archive"),
    ] {
        let h = Hostile::new(&format!("extract-py-{kind}"));
        let script = format!(
            "python3 -c '{}' ../local.tgz {kind}",
            PY_TAR.replace('\'', "'\\''")
        );
        let s = h.state_from(&script);
        h.refused(&s, member, why);
    }
}

#[test]
fn symlinks_inside_are_kept_and_links_in_dir_never_followed() {
    if !tools() {
        return;
    }
    // a symlink and a hard link that stay inside are written as links (GNU tar makes both)
    let h = Hostile::new("extract-links-ok");
    let s = h.state_from(
        "ln -s vmware/esx.conf etc/conf-link && ln etc/vmware/esx.conf etc/conf-hard && tar -czf ../local.tgz etc",
    );
    let out = h.t.join("out");
    bootbank_ok(h.t.path(), &["extract", p(&s), "--to", p(&out)]);
    let link = out.join("local/etc/conf-link");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("vmware/esx.conf"));
    let oracle = h.t.join("oracle");
    fs::create_dir_all(&oracle).unwrap();
    run(cmd("tar")
        .arg("-xzf")
        .arg(h.t.join("local.tgz"))
        .arg("-C")
        .arg(&oracle));
    assert_same_tree(&out.join("local"), &oracle);

    // --force into a DIR whose `local` is a symlink to outside: refused, outside untouched
    let out = h.t.join("out-link");
    fs::create_dir_all(&out).unwrap();
    symlink(h.t.join("outside"), out.join("local")).unwrap();
    let before = snapshot(h.t.path());
    let o = bootbank(h.t.path(), &["extract", p(&s), "--to", p(&out), "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("never followed"),
        "{}",
        output_text(&o)
    );
    assert_eq!(snapshot(h.t.path()), before);

    // --force where a file's own name is a symlink to outside: the link is replaced, the
    // victim untouched
    let out = h.t.join("out-file-link");
    fs::create_dir_all(out.join("local/etc/vmware")).unwrap();
    symlink(
        h.t.join("outside/victim"),
        out.join("local/etc/vmware/esx.conf"),
    )
    .unwrap();
    bootbank_ok(h.t.path(), &["extract", p(&s), "--to", p(&out), "--force"]);
    assert_eq!(
        fs::read(h.t.join("outside/victim")).unwrap(),
        b"untouched\n"
    );
    assert!(
        !fs::symlink_metadata(out.join("local/etc/vmware/esx.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read(out.join("local/etc/vmware/esx.conf")).unwrap(),
        common::esxconf("story.conf").into_bytes()
    );
}
