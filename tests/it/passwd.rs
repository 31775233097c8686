//! `bootbank passwd`, end to end through the binary, checked with outside tools only:
//!
//! - the new hash is verified with `openssl passwd -6 -salt SALT PASSWORD` (OpenSSL's own
//!   SHA-512 crypt), which must give exactly the hash found in the written etc/shadow;
//! - mtools takes state.tgz off the bank, GNU tar unpacks both levels (the independent decryptor
//!   opens an encrypted one); every member of local.tgz but etc/shadow is byte-identical, and in
//!   etc/shadow only the hash field of the user's line differs;
//! - a ConfigStore record is compared row by row with Python's sqlite3 (`configstore-rows`);
//! - backups equal the original state.tgz; a dry run, a refusal and a TPM-sealed bank leave the
//!   image's sha256 unchanged; no output contains a `$6$` hash.
//!
//! Under `CI=true` a missing tool (openssl, mtools, the decryptor) is a failure.

use crate::common::{
    self, BankSpec, Scenario, TempDir, cmd, healthy_bank, output_text, p, run, run_with_input,
    sha256_file, untar,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "Corr3ct-horse:battery staple";
/// A 6.x-style shadow: root with a SHA-512 hash (of "old", made by openssl in the test), the
/// two accounts ESXi writes with `*`.
fn shadow_6x(root_hash: &str) -> Vec<u8> {
    format!(
        "root:{root_hash}:17000:0:99999:7:::\ndcui:*:13358:0:99999:7:::\nvpxuser:*:14875:0:99999:7:::\n"
    )
    .into_bytes()
}

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["openssl", "mcopy", "tar", "gzip"])
}

/// `openssl passwd -6 -salt SALT PASSWORD`.
fn openssl_hash(salt: &str, password: &str) -> String {
    common::run_text(
        cmd("openssl")
            .args(["passwd", "-6", "-salt", salt])
            .arg(password),
    )
    .trim()
    .to_string()
}

/// Runs `bootbank passwd ARGS --password-stdin` with `input` on standard input.
fn passwd(cwd: &Path, args: &[&str], input: &str) -> Output {
    let o = run_with_input(
        Command::new(common::BIN)
            .arg("passwd")
            .args(args)
            .arg("--password-stdin")
            .current_dir(cwd)
            .env("LC_ALL", "C"),
        input.as_bytes(),
    );
    let text = output_text(&o);
    assert!(!text.contains("$6$"), "a hash was printed:\n{text}");
    o
}

fn field(line: &str, n: usize) -> String {
    line.split(':').nth(n).unwrap_or_default().to_string()
}

/// The hash of `user` in a shadow text.
fn hash_in(shadow: &[u8], user: &str) -> String {
    String::from_utf8_lossy(shadow)
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .map(|l| field(l, 1))
        .unwrap_or_else(|| panic!("no {user} line"))
}

/// Only the hash field of `user`'s line differs between the two shadow texts; returns the new
/// hash.
fn only_hash_changed(old: &[u8], new: &[u8], user: &str) -> String {
    let (o, n) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let (ol, nl): (Vec<&str>, Vec<&str>) = (o.split('\n').collect(), n.split('\n').collect());
    assert_eq!(ol.len(), nl.len(), "line count");
    for (a, b) in ol.iter().zip(&nl) {
        if a.split(':').next() == Some(user) {
            let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(':').collect(), b.split(':').collect());
            assert_eq!(fa.len(), fb.len());
            for i in 0..fa.len() {
                if i != 1 {
                    assert_eq!(fa[i], fb[i], "field {} of {user}'s line changed", i + 1);
                }
            }
            assert_ne!(fa[1], fb[1], "the hash did not change");
        } else {
            assert_eq!(a, b, "another line changed");
        }
    }
    hash_in(new, user)
}

/// The hash is in ESXi's form and OpenSSL computes the same one from the password.
fn verify_hash(hash: &str, password: &str) {
    let rest = hash.strip_prefix("$6$").expect("a $6$ hash");
    assert!(!rest.contains("rounds="), "rounds field written");
    let (salt, digest) = rest.split_once('$').unwrap();
    assert_eq!(salt.len(), 16, "salt length");
    assert_eq!(digest.len(), 86, "digest length");
    assert!(
        openssl_hash(salt, password) == hash,
        "openssl passwd -6 does not give the hash bootbank wrote"
    );
    assert!(
        openssl_hash(salt, "wrong password") != hash,
        "openssl accepts a wrong password"
    );
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
        if except.contains(&f.as_str()) {
            continue;
        }
        assert!(
            fs::read(a.join(&f)).unwrap() == fs::read(b.join(&f)).unwrap(),
            "{f} changed"
        );
    }
}

/// Bank `n`'s state.tgz off the disk with mtools, unpacked with GNU tar (and the independent
/// decryptor when encrypted) into `into/local`. Returns the local.tgz path.
fn extract_local(img: &Path, n: u32, into: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).unwrap();
    let state = into.join("state.tgz");
    common::copy_fat_file(img, n, "state.tgz", &state);
    run(cmd("tar").arg("-xzf").arg(&state).arg("-C").arg(into));
    let mut local = into.join("local.tgz");
    if !local.exists() {
        let ve = into.join("local.tgz.ve");
        assert!(ve.exists(), "neither local.tgz nor local.tgz.ve");
        local = into.join("local.tgz.decrypted");
        let py = common::oracle_python().expect("the independent decryptor");
        run(cmd(py)
            .arg(common::tool("oracle-decrypt"))
            .arg(into.join("encryption.info"))
            .arg(&ve)
            .arg(&local));
    }
    untar(&local, &into.join("local"));
    local
}

fn shadow_bank(updated: u32, shadow: Vec<u8>) -> BankSpec {
    let mut b = healthy_bank(updated, 0);
    b.local_files.push(("etc/shadow".to_string(), shadow));
    b
}

/// A 6.x disk: the password goes into etc/shadow only; every other member and byte stays; the
/// backup is the old state.tgz; the dry run writes nothing; bank 6 is left alone.
#[test]
fn six_x_disk_shadow_only() {
    if !tools() {
        return;
    }
    let t = TempDir::new("passwd-6x");
    let old_hash = openssl_hash("abcdefgh", "old");
    let img = Scenario::new()
        .layout("demo")
        .bank(5, shadow_bank(3, shadow_6x(&old_hash)))
        .bank(6, shadow_bank(2, shadow_6x(&old_hash)))
        .build(t.path());
    extract_local(&img, 5, &t.join("before"));
    let sum = sha256_file(&img);

    let o = passwd(t.path(), &[p(&img), "--dry-run"], &format!("{PASSWORD}\n"));
    assert!(o.status.success(), "{}", output_text(&o));
    let text = output_text(&o);
    assert!(text.contains("root's password hash"), "{text}");
    assert!(text.contains("has no ConfigStore"), "{text}");
    assert_eq!(sha256_file(&img), sum, "the dry run wrote");
    let o = passwd(
        t.path(),
        &[p(&img), "--dry-run", "--json"],
        &format!("{PASSWORD}\n"),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["plan"]["steps"][0]["member_changes"][0]["member"], "etc/shadow",
        "{v:#}"
    );
    assert_eq!(sha256_file(&img), sum, "the dry run wrote");

    let bk = t.join("backup");
    let o = passwd(
        t.path(),
        &[p(&img), "--yes", "--backup-dir", p(&bk)],
        &format!("{PASSWORD}\n"),
    );
    assert!(o.status.success(), "{}", output_text(&o));
    extract_local(&img, 5, &t.join("after"));
    let new = only_hash_changed(
        &fs::read(t.join("before/local/etc/shadow")).unwrap(),
        &fs::read(t.join("after/local/etc/shadow")).unwrap(),
        "root",
    );
    verify_hash(&new, PASSWORD);
    same_tree_except(
        &t.join("before/local"),
        &t.join("after/local"),
        &["etc/shadow"],
    );
    // The backup is the old state.tgz; bank 6 is untouched.
    assert_eq!(
        fs::read(bk.join("partition5-state.tgz")).unwrap(),
        fs::read(t.join("before/state.tgz")).unwrap()
    );
    assert!(bk.join("manifest.json").is_file());
    extract_local(&img, 6, &t.join("six"));
    assert_eq!(
        hash_in(&fs::read(t.join("six/local/etc/shadow")).unwrap(), "root"),
        old_hash
    );
    common::fsck_banks(&img);

    // Restore puts the old state.tgz back.
    let o = common::bootbank(t.path(), &["restore", p(&img), "--from", p(&bk), "--yes"]);
    assert!(o.status.success(), "{}", output_text(&o));
    extract_local(&img, 5, &t.join("restored"));
    assert_eq!(
        fs::read(t.join("restored/state.tgz")).unwrap(),
        fs::read(t.join("before/state.tgz")).unwrap()
    );
}

/// Refusals: exit 2 and the image unchanged.
#[test]
fn refusals_write_nothing() {
    if !tools() {
        return;
    }
    let t = TempDir::new("passwd-refuse");
    let img = Scenario::new()
        .layout("demo")
        .bank(
            5,
            shadow_bank(3, shadow_6x(&openssl_hash("abcdefgh", "old"))),
        )
        .build(t.path());
    let sum = sha256_file(&img);
    for (args, input, want) in [
        (vec![p(&img), "--yes"], "\n", "empty"),
        (vec![p(&img), "--yes"], "", "empty"),
        (
            vec![p(&img), "--yes", "--user", "nobody"],
            "pw\n",
            "no line for user nobody",
        ),
        (
            vec![p(&img), "--yes", "--user", "dcui"],
            "pw\n",
            "does not log in with a password",
        ),
        (vec![p(&img)], "pw\n", "add --yes"),
        (
            vec![p(&img), "--yes", "--bank", "9"],
            "pw\n",
            "not a bootbank",
        ),
    ] {
        let o = passwd(t.path(), &args, input);
        let text = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(want), "{args:?}: {text}");
        assert_eq!(sha256_file(&img), sum, "{args:?} wrote");
    }
    // The default fixture's root is locked (`*`): refused too.
    let img2 = Scenario::new()
        .layout("demo")
        .name("locked.img")
        .bank(5, healthy_bank(3, 0))
        .build(t.path());
    let sum2 = sha256_file(&img2);
    let o = passwd(t.path(), &[p(&img2), "--yes"], "pw\n");
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_eq!(sha256_file(&img2), sum2);
}

/// A TPM-sealed bank: exit 2, nothing written, the on-host alternative printed.
#[test]
fn tpm_sealed_is_refused_with_the_on_host_way() {
    if !tools() {
        return;
    }
    let t = TempDir::new("passwd-tpm");
    let mut b5 = healthy_bank(3, 0);
    b5.encrypted = Some("TPM");
    let img = Scenario::new().layout("demo").bank(5, b5).build(t.path());
    let sum = sha256_file(&img);
    let o = passwd(t.path(), &[p(&img), "--yes"], "pw\n");
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("sealed by the host's TPM"), "{text}");
    assert!(text.contains("esxcli system account set -i root"), "{text}");
    assert_eq!(sha256_file(&img), sum);
}

fn real_tools() -> bool {
    tools()
        && common::require_tools(&["python3"])
        && common::require_real()
        && common::oracle_python().is_some()
}

/// The real 7.0.2 host, encrypted (mode NONE), on a disk: its ConfigStore has no user_accounts
/// record, so only etc/shadow changes; the independent decryptor opens the new envelope; every
/// other member of local.tgz is byte-identical; encryption.info is unchanged.
#[test]
fn real_702_encrypted_shadow_only() {
    if !real_tools() {
        return;
    }
    let t = TempDir::new("passwd-real");
    let local = common::mkrealhost(t.path(), "local.tgz", &[]);
    let state = t.join("state.tgz");
    common::real_encrypted_state(t.path(), &local, &state);
    let img = Scenario::new()
        .layout("demo")
        .bank(5, common::real_bank(3, 0, fs::read(&state).unwrap()))
        .build(t.path());
    untar(&local, &t.join("before"));
    let bk = t.join("backup");
    let o = passwd(
        t.path(),
        &[p(&img), "--yes", "--backup-dir", p(&bk)],
        &format!("{PASSWORD}\n"),
    );
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("no esx/authentication/user_accounts record for root"),
        "{text}"
    );
    extract_local(&img, 5, &t.join("after"));
    let new = only_hash_changed(
        &fs::read(t.join("before/etc/shadow")).unwrap(),
        &fs::read(t.join("after/local/etc/shadow")).unwrap(),
        "root",
    );
    verify_hash(&new, PASSWORD);
    same_tree_except(&t.join("before"), &t.join("after/local"), &["etc/shadow"]);
    assert_eq!(
        fs::read(t.join("after/encryption.info")).unwrap(),
        common::real_file("encryption.info")
    );
    assert_eq!(
        fs::read(bk.join("partition5-state.tgz")).unwrap(),
        fs::read(&state).unwrap()
    );
    common::fsck_banks(&img);
}

/// A ConfigStore user_accounts record for root holding a hash (a row added to the real host's
/// store with Python's sqlite3, fields from the host's own schema): the same new hash goes into
/// etc/shadow and into that record's password_hash; Python's sqlite3 sees only that row's
/// UserValue, ModifiedTime and Revision change. A record without password_hash is refused.
#[test]
fn real_702_user_accounts_record_gets_the_hash_too() {
    if !real_tools() {
        return;
    }
    let t = TempDir::new("passwd-store");
    let old = openssl_hash("abcdefgh", "old");
    let row = serde_json::json!({
        "component": "esx", "group": "authentication", "name": "user_accounts",
        "identifier": "root",
        "UserValue": {"name": "root", "password_hash": old, "description": "Administrator"},
        "VitalValue": {"name": "root", "uid": 0, "last_password_change": 18582},
    })
    .to_string();
    let local = common::mkrealhost(t.path(), "local.tgz", &["--row", &row]);
    // A plain (unencrypted) state.tgz holding that local.tgz, as an archive target.
    let state = t.join("state.tgz");
    run(cmd("bash")
        .arg("-c")
        .arg("tar -C \"$(dirname \"$1\")\" --format=gnu --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -cf - local.tgz | gzip -n > \"$2\"")
        .arg("tar")
        .arg(&local)
        .arg(&state));
    untar(&local, &t.join("before"));
    let out = t.join("new-state.tgz");
    let o = passwd(
        t.path(),
        &[
            p(&state),
            "--yes",
            "--output",
            p(&out),
            "--backup-dir",
            p(&t.join("bk")),
        ],
        &format!("{PASSWORD}\n"),
    );
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("password_hash in UserValue changed"),
        "{text}"
    );
    fs::create_dir_all(t.join("after")).unwrap();
    run(cmd("tar")
        .arg("-xzf")
        .arg(&out)
        .arg("-C")
        .arg(t.join("after")));
    untar(&t.join("after/local.tgz"), &t.join("after/local"));
    let new = only_hash_changed(
        &fs::read(t.join("before/etc/shadow")).unwrap(),
        &fs::read(t.join("after/local/etc/shadow")).unwrap(),
        "root",
    );
    verify_hash(&new, PASSWORD);
    let db = "var/lib/vmware/configstore/backup/current-store-1";
    same_tree_except(
        &t.join("before"),
        &t.join("after/local"),
        &["etc/shadow", db],
    );
    let (rb, ra) = (
        common::configstore_rows(&t.join("before").join(db)),
        common::configstore_rows(&t.join("after/local").join(db)),
    );
    assert_eq!(rb.len(), ra.len());
    let mut changed = 0;
    for (b, a) in rb.iter().zip(&ra) {
        if b == a {
            continue;
        }
        changed += 1;
        assert_eq!((&b["table"], &b["rowid"]), (&a["table"], &a["rowid"]));
        assert_eq!(a["table"], "Config", "{a}");
        let (bo, ao) = (b["row"].as_object().unwrap(), a["row"].as_object().unwrap());
        for (k, v) in bo {
            if ao[k] != *v {
                assert!(
                    ["UserValue", "ModifiedTime", "Revision"].contains(&k.as_str()),
                    "column {k} changed"
                );
            }
        }
        let uv: serde_json::Value =
            serde_json::from_str(ao["UserValue"].as_str().unwrap()).unwrap();
        assert_eq!(
            uv["password_hash"], new,
            "the record's hash is not the shadow's"
        );
        assert_eq!(uv["description"], "Administrator");
        assert_eq!(
            ao["Revision"].as_i64().unwrap(),
            bo["Revision"].as_i64().unwrap() + 1
        );
    }
    assert_eq!(changed, 1, "rows changed");

    // The host's schema of user_accounts differs from the 7.0.2 one: refused, nothing written.
    let row_with_hash = serde_json::json!({
        "component": "esx", "group": "authentication", "name": "user_accounts",
        "identifier": "root",
        "UserValue": {"name": "root", "password_hash": old, "description": "Administrator"},
        "VitalValue": {"name": "root", "uid": 0, "last_password_change": 18582},
    })
    .to_string();
    let local = common::mkrealhost(
        t.path(),
        "schema.tgz",
        &[
            "--row",
            &row_with_hash,
            "--schema-set",
            "esx/authentication/user_accounts",
            "/items/properties/password_hash/pattern",
            "\"^.*$\"",
        ],
    );
    let sum = sha256_file(&local);
    let o = passwd(t.path(), &[p(&local), "--yes"], "pw\n");
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("differs from the one bootbank knows"),
        "{text}"
    );
    assert_eq!(sha256_file(&local), sum);

    // A record without password_hash: refused, nothing written.
    let row = serde_json::json!({
        "component": "esx", "group": "authentication", "name": "user_accounts",
        "identifier": "root",
        "UserValue": {"name": "root", "description": "Administrator"},
        "VitalValue": {"name": "root", "uid": 0, "last_password_change": 18582},
    })
    .to_string();
    let local = common::mkrealhost(t.path(), "nohash.tgz", &["--row", &row]);
    let sum = sha256_file(&local);
    let o = passwd(t.path(), &[p(&local), "--yes"], "pw\n");
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("has no `password_hash`"), "{text}");
    assert_eq!(sha256_file(&local), sum);
}
