//! `bootbank lockdown`, end to end through the binary, checked with outside tools only:
//!
//! - the fixtures are the real 7.0.2 host's local.tgz, with a lockdown_settings row added by
//!   `mkrealhost --row` (Python's sqlite3), shaped as the host's own schema and its other
//!   single-record rows show (Identifier '', Version "proposed", UserValue a compact JSON
//!   object, the vital `removed_permissions` in VitalValue);
//! - mtools takes state.tgz off the bank, GNU tar and the independent decryptor unpack it;
//!   Python's sqlite3 (`configstore-rows`) compares the database row by row; every other member
//!   of local.tgz is byte-identical;
//! - a refusal, a dry run and a configuration with nothing to change leave the image's sha256
//!   unchanged.
//!
//! Under `CI=true` a missing tool (mtools, tar, python3, the decryptor, the real data) is a
//! failure.

use crate::common::{self, Scenario, TempDir, cmd, healthy_bank, output_text, p, run, untar};
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};

const DB: &str = "var/lib/vmware/configstore/backup/current-store-1";

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["mcopy", "tar", "gzip"])
}

fn real_tools() -> bool {
    tools()
        && common::require_tools(&["python3"])
        && common::require_real()
        && common::oracle_python().is_some()
}

fn lockdown(cwd: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["lockdown"];
    a.extend_from_slice(args);
    common::bootbank(cwd, &a)
}

/// A lockdown_settings row: `mode` and `exception_users` in UserValue, the permission lockdown
/// took from root in VitalValue (`removed_permissions` is vital in the host's schema; its
/// items are `esx/authorization/permissions` records, shaped as that host's root row).
fn lockdown_row(mode: &str) -> String {
    json!({
        "component": "esx", "group": "authorization", "name": "lockdown_settings",
        "ModifiedTime": "2021-08-11 07:33:45", "CreationTime": "2021-07-01 08:00:15",
        "Revision": 3,
        "UserValue": {"mode": mode, "exception_users": ["svc-backup"]},
        "VitalValue": {"removed_permissions": [{
            "access_mode": "Admin", "is_group": false, "principal": "root",
            "cs_generated_id": "52 2f 4d 38 94 0b 2c 9c-c7 5d b2 56 c2 9e d5 8d"
        }]},
    })
    .to_string()
}

/// A disk whose bank 5 holds the real host's configuration (encrypted, mode NONE) built from
/// `local`.
fn real_disk(t: &TempDir, local: &Path) -> (PathBuf, PathBuf) {
    let state = t.join(format!(
        "{}-state.tgz",
        local.file_stem().unwrap().to_string_lossy()
    ));
    common::real_encrypted_state(t.path(), local, &state);
    let img = Scenario::new()
        .layout("demo")
        .name(&format!(
            "{}.img",
            local.file_stem().unwrap().to_string_lossy()
        ))
        .bank(5, common::real_bank(3, 0, fs::read(&state).unwrap()))
        .build(t.path());
    (img, state)
}

/// Bank `n`'s state.tgz off the disk with mtools, unpacked with GNU tar and the independent
/// decryptor into `into/local`.
fn extract_local(img: &Path, n: u32, into: &Path) {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).unwrap();
    let state = into.join("state.tgz");
    common::copy_fat_file(img, n, "state.tgz", &state);
    run(cmd("tar").arg("-xzf").arg(&state).arg("-C").arg(into));
    let local = into.join("local.tgz.decrypted");
    let py = common::oracle_python().expect("the independent decryptor");
    run(cmd(py)
        .arg(common::tool("oracle-decrypt"))
        .arg(into.join("encryption.info"))
        .arg(into.join("local.tgz.ve"))
        .arg(&local));
    untar(&local, &into.join("local"));
}

/// Every file under `a` and `b` is the same, except `except`.
fn same_tree_except(a: &Path, b: &Path, except: &[&str]) {
    let list = |d: &Path| -> Vec<String> {
        let out = common::run_text(
            cmd("find")
                .arg(d)
                .arg("-type")
                .arg("f")
                .arg("-printf")
                .arg("%P\\n"),
        );
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "member lists differ");
    for f in la {
        if !except.contains(&f.as_str()) {
            assert!(
                fs::read(a.join(&f)).unwrap() == fs::read(b.join(&f)).unwrap(),
                "{f} changed"
            );
        }
    }
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", output_text(o)))
}

/// The real 7.0.2 host as it is: no lockdown_settings row, so the schema's default applies (no
/// mode: not locked down), shown plainly; `--disable` has nothing to change and writes nothing.
#[test]
fn real_702_has_no_record_and_disable_writes_nothing() {
    if !real_tools() {
        return;
    }
    let t = TempDir::new("lockdown-real");
    let local = common::mkrealhost(t.path(), "plain.tgz", &[]);
    let (img, _) = real_disk(&t, &local);
    let sum = common::sha256_file(&img);

    let o = lockdown(t.path(), &[p(&img)]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("mode: not locked down"), "{text}");
    assert!(
        text.contains("no esx/authorization/lockdown_settings record"),
        "{text}"
    );
    assert!(
        text.contains("the schema's modes are NORMAL, STRICT"),
        "{text}"
    );
    assert!(text.contains("DCUI access"), "{text}");

    let o = lockdown(t.path(), &[p(&img), "--json"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let v = json_of(&o);
    assert_eq!(v["state"]["kind"], "config_store", "{v:#}");
    assert_eq!(v["state"]["lockdown"]["records"], 0);
    assert_eq!(v["state"]["lockdown"]["mode"], Value::Null);
    assert_eq!(v["state"]["lockdown"]["modes"], json!(["NORMAL", "STRICT"]));
    assert_eq!(v["state"]["dcui_access"]["users"], json!(["root"]));
    assert_eq!(v["state"]["dcui_access"]["from_record"], false);
    assert_eq!(v["build"], common::REAL_BUILD);

    let o = lockdown(t.path(), &[p(&img), "--disable", "--yes"]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("Nothing to change; nothing written."),
        "{text}"
    );
    assert!(text.contains("not locked down"), "{text}");
    assert_eq!(
        common::sha256_file(&img),
        sum,
        "nothing to change, yet written"
    );
}

/// A NORMAL lockdown row on the real host, sealed as the host seals it (mode NONE): shown with
/// its column, exception users and removed permission; `--dry-run` writes nothing; `--disable`
/// changes exactly that row's UserValue (the `mode` member taken out, every other byte of the
/// text kept), ModifiedTime and Revision (+1, by the triggers), per Python's sqlite3; every
/// other member is byte-identical; the envelope decrypts with the independent decryptor; the
/// backup is the old state.tgz; a second run has nothing to change.
#[test]
fn real_702_normal_row_is_disabled_by_one_update() {
    if !real_tools() {
        return;
    }
    let t = TempDir::new("lockdown-normal");
    let local = common::mkrealhost(t.path(), "normal.tgz", &["--row", &lockdown_row("NORMAL")]);
    let (img, state) = real_disk(&t, &local);
    untar(&local, &t.join("before"));
    let sum = common::sha256_file(&img);

    let o = lockdown(t.path(), &[p(&img)]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("mode: NORMAL"), "{text}");
    assert!(text.contains("in UserValue"), "{text}");
    assert!(text.contains("exception users: svc-backup"), "{text}");
    assert!(
        text.contains("permissions lockdown took away: root (Admin)"),
        "{text}"
    );
    let v = json_of(&lockdown(t.path(), &[p(&img), "--json"]));
    assert_eq!(v["state"]["lockdown"]["mode"], "NORMAL", "{v:#}");
    assert_eq!(v["state"]["lockdown"]["mode_columns"], json!(["UserValue"]));
    assert_eq!(v["state"]["lockdown"]["problems"], json!([]));

    let o = lockdown(t.path(), &[p(&img), "--disable", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let v = json_of(&o);
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["plan"]["steps"][0]["member_changes"][0]["member"], DB,
        "{v:#}"
    );
    assert_eq!(common::sha256_file(&img), sum, "the dry run wrote");

    let bk = t.join("backup");
    let o = lockdown(
        t.path(),
        &[p(&img), "--disable", "--yes", "--backup-dir", p(&bk)],
    );
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("`mode` NORMAL taken out of UserValue"),
        "{text}"
    );
    assert!(text.contains("has not been tried on a real host"), "{text}");
    assert!(
        text.contains(r#"UserValue after:  {"exception_users":["svc-backup"]}"#),
        "{text}"
    );
    // The plan comes first, then the outcome.
    assert!(
        text.find("Plan for").unwrap() < text.find("taken out of").unwrap(),
        "{text}"
    );
    extract_local(&img, 5, &t.join("after"));
    same_tree_except(&t.join("before"), &t.join("after/local"), &[DB]);
    let (rb, ra) = (
        common::configstore_rows(&t.join("before").join(DB)),
        common::configstore_rows(&t.join("after/local").join(DB)),
    );
    assert_eq!(rb.len(), ra.len());
    let mut changed = 0;
    for (b, a) in rb.iter().zip(&ra) {
        if b == a {
            continue;
        }
        changed += 1;
        assert_eq!(a["table"], "Config", "{a}");
        assert_eq!(b["rowid"], a["rowid"]);
        let (bo, ao) = (b["row"].as_object().unwrap(), a["row"].as_object().unwrap());
        assert_eq!(ao["Name"], "lockdown_settings");
        for (k, v) in bo {
            if ao[k] != *v {
                assert!(
                    ["UserValue", "ModifiedTime", "Revision"].contains(&k.as_str()),
                    "column {k} changed"
                );
            }
        }
        // mkrealhost writes the keys sorted: `mode` is the last member, and goes with the
        // comma before it; the rest of the text is kept byte for byte.
        assert_eq!(
            bo["UserValue"],
            r#"{"exception_users":["svc-backup"],"mode":"NORMAL"}"#
        );
        assert_eq!(ao["UserValue"], r#"{"exception_users":["svc-backup"]}"#);
        assert_eq!(ao["VitalValue"], bo["VitalValue"]);
        assert_eq!(ao["Revision"].as_i64(), Some(4));
    }
    assert_eq!(changed, 1, "rows changed");
    assert!(
        ra.iter()
            .any(|l| l.get("integrity_check") == Some(&json!(["ok"]))),
        "integrity_check"
    );
    assert_eq!(
        fs::read(t.join("after/encryption.info")).unwrap(),
        common::real_file("encryption.info")
    );
    assert_eq!(
        fs::read(bk.join("partition5-state.tgz")).unwrap(),
        fs::read(&state).unwrap()
    );
    common::fsck_banks(&img);

    let o = lockdown(t.path(), &[p(&img)]);
    assert!(
        output_text(&o).contains("mode: not locked down"),
        "{}",
        output_text(&o)
    );
    let after = common::sha256_file(&img);
    let o = lockdown(t.path(), &[p(&img), "--disable", "--yes"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("Nothing to change"),
        "{}",
        output_text(&o)
    );
    assert_eq!(common::sha256_file(&img), after);
}

/// STRICT on a bare local.tgz target written to `--output`; a schema that differs from the
/// 7.0.2 one, and a mode the schema does not allow, are refused with nothing written.
#[test]
fn strict_is_disabled_and_unknown_schemas_are_refused() {
    if !real_tools() {
        return;
    }
    let t = TempDir::new("lockdown-strict");
    let local = common::mkrealhost(t.path(), "strict.tgz", &["--row", &lockdown_row("STRICT")]);
    let o = lockdown(t.path(), &[p(&local)]);
    assert!(
        output_text(&o).contains("Strict lockdown"),
        "{}",
        output_text(&o)
    );
    let out = t.join("out.tgz");
    let o = lockdown(
        t.path(),
        &[
            p(&local),
            "--disable",
            "--yes",
            "--output",
            p(&out),
            "--backup-dir",
            p(&t.join("bk")),
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    untar(&out, &t.join("after"));
    let rows = common::configstore_rows(&t.join("after").join(DB));
    let row = rows
        .iter()
        .find(|l| l["row"]["Name"] == "lockdown_settings")
        .expect("the row");
    assert_eq!(
        row["row"]["UserValue"],
        r#"{"exception_users":["svc-backup"]}"#
    );

    for (name, args, want) in [
        (
            "schema.tgz",
            vec![
                "--row".to_string(),
                lockdown_row("NORMAL"),
                "--schema-set".into(),
                "esx/authorization/lockdown_settings".into(),
                "/properties/mode/enum".into(),
                r#"["NORMAL","STRICT","LOCKED"]"#.into(),
            ],
            "differs from the one bootbank knows",
        ),
        (
            "badmode.tgz",
            vec!["--row".to_string(), lockdown_row("LOCKED")],
            "cannot be read as ESXi reads it",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let l = common::mkrealhost(t.path(), name, &args);
        let sum = common::sha256_file(&l);
        let o = lockdown(t.path(), &[p(&l), "--disable", "--yes"]);
        let text = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {text}");
        assert!(text.contains(want), "{name}: {text}");
        assert_eq!(common::sha256_file(&l), sum, "{name} written");
    }
}

/// A 6.x configuration (no ConfigStore): bootbank says it cannot tell, and `--disable` is
/// refused with exit 2 and nothing written.
#[test]
fn six_x_cannot_tell_and_disable_is_refused() {
    if !tools() {
        return;
    }
    let t = TempDir::new("lockdown-6x");
    let img = Scenario::new()
        .layout("demo")
        .bank(5, healthy_bank(3, 0))
        .build(t.path());
    let sum = common::sha256_file(&img);
    let o = lockdown(t.path(), &[p(&img)]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("bootbank cannot tell"), "{text}");
    assert!(text.contains("local.tgz does not hold it"), "{text}");
    let v = json_of(&lockdown(t.path(), &[p(&img), "--json"]));
    assert_eq!(v["state"]["kind"], "not_known", "{v:#}");
    let o = lockdown(t.path(), &[p(&img), "--disable", "--yes"]);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("no published source says where"), "{text}");
    // Write flags without --disable are a usage error, not a silent read.
    let o = lockdown(t.path(), &[p(&img), "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(output_text(&o).contains("go with --disable"));
    assert_eq!(common::sha256_file(&img), sum);
}

/// TPM-sealed: shown as not readable; `--disable` refused with what still works.
#[test]
fn tpm_sealed_is_refused() {
    if !tools() {
        return;
    }
    let t = TempDir::new("lockdown-tpm");
    let mut b5 = healthy_bank(3, 0);
    b5.encrypted = Some("TPM");
    let img = Scenario::new().layout("demo").bank(5, b5).build(t.path());
    let sum = common::sha256_file(&img);
    let o = lockdown(t.path(), &[p(&img)]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("sealed by the host's TPM"),
        "{}",
        output_text(&o)
    );
    let o = lockdown(t.path(), &[p(&img), "--disable", "--yes"]);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("sealed by the host's TPM"), "{text}");
    assert!(text.contains("DCUI"), "{text}");
    assert_eq!(common::sha256_file(&img), sum);
}
