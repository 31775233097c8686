//! `bootbank audit`: many config bundles (built with GNU tar and gzip by tests/tools) in nested
//! directories, one unreadable; every input gets one JSON line, the summary counts them, and the
//! unreadable one does not stop the others.

use crate::common;

use crate::common::{TempDir, esxconf};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;

#[test]
fn audit_reads_every_bundle_and_skips_the_bad_one() {
    if !common::require_tools(&["tar", "gzip"]) {
        return;
    }
    let dir = TempDir::new("audit");
    let fleet = dir.join("fleet");
    let mut want: BTreeMap<String, bool> = BTreeMap::new();
    for (i, (conf, encrypted)) in [
        ("story.conf", None),
        ("healthy.conf", None),
        ("story.conf", Some("NONE")),
        ("healthy.conf", None),
    ]
    .iter()
    .enumerate()
    {
        let root = dir.join(format!("root{i}"));
        common::write_tree(
            &root,
            &[(
                "etc/vmware/esx.conf".to_string(),
                esxconf(conf).into_bytes(),
            )],
        );
        let state = dir.join(format!("state{i}.tgz"));
        match encrypted {
            Some(m) => {
                // A real envelope: sealed by bootbank's writer with the reference key.
                let plain = dir.join(format!("local{i}.tgz"));
                common::mkstate_args(&root, &plain, &["--local-only"]);
                let ve = dir.join(format!("local{i}.tgz.ve"));
                let k = common::reference_key();
                let env = bootbank::envelope::Envelope::build_new(
                    &k.key_id,
                    &k.key,
                    &fs::read(&plain).unwrap(),
                    *b"WMV_\0\0\0\0\0\0\0\x01",
                )
                .unwrap();
                fs::write(&ve, env).unwrap();
                common::mkstate_args(
                    &root,
                    &state,
                    &["--encrypted", m, "--ve", ve.to_str().unwrap()],
                );
            }
            None => common::mkstate(&root, &state, None),
        }
        let sub = fleet.join(if i % 2 == 0 { "rack-a" } else { "rack-b/row-1" });
        fs::create_dir_all(&sub).unwrap();
        let bundle = sub.join(format!("configBundle-esx{i:02}.tgz"));
        common::mkbundle(&state, &bundle, &[]);
        want.insert(bundle.display().to_string(), *conf == "story.conf");
    }
    let junk = fleet.join("rack-b/configBundle-broken.tgz");
    fs::write(&junk, b"\x1f\x8b\x08\x00garbage").unwrap();

    let o = common::cmd(env!("CARGO_BIN_EXE_bootbank"))
        .args(["audit", "--json", "-j", "2"])
        .arg(&fleet)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let path = l["path"].as_str().unwrap();
        if path == junk.display().to_string() {
            assert!(l["error"].as_str().unwrap().contains("gzip"), "{l}");
            continue;
        }
        assert_eq!(l["error"], Value::Null, "{l}");
        let critical = l["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "critical" && f["rule"] == "passthru-storage-adapter");
        assert_eq!(critical, want[path], "{path}: {l}");
    }
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(
        summary.contains(
            "audit: 5 inputs, 4 read, 2 with critical findings, 1 encrypted, 1 unreadable"
        ),
        "{summary}"
    );
    assert!(summary.contains("passthru-storage-adapter: 2"), "{summary}");
    assert!(!summary.contains("tpm-sealed"), "{summary}");
}

/// A TPM-sealed host in a fleet: its line carries tpm-recovery-key, and the summary lists it
/// under "record the recovery key now".
#[test]
fn audit_names_the_tpm_sealed_hosts() {
    if !common::require_tools(&["tar", "gzip"]) {
        return;
    }
    let dir = TempDir::new("audit-tpm");
    let fleet = dir.join("fleet");
    fs::create_dir_all(&fleet).unwrap();
    let mut sealed = String::new();
    for (i, mode) in [Some("TPM"), None].iter().enumerate() {
        let root = dir.join(format!("root{i}"));
        common::write_tree(
            &root,
            &[(
                "etc/vmware/esx.conf".to_string(),
                esxconf("healthy.conf").into_bytes(),
            )],
        );
        let state = dir.join(format!("state{i}.tgz"));
        match mode {
            // A real envelope (bootbank's writer) under a key nobody has, as a TPM seals it.
            Some(m) => {
                let plain = dir.join(format!("local{i}.tgz"));
                common::mkstate_args(&root, &plain, &["--local-only"]);
                let env = bootbank::envelope::Envelope::build_new(
                    "00000000-0000-0000-0000-000000000000",
                    &[0x5au8; 32],
                    &fs::read(&plain).unwrap(),
                    *b"WMV_\0\0\0\0\0\0\0\x01",
                )
                .unwrap();
                let ve = dir.join(format!("local{i}.tgz.ve"));
                fs::write(&ve, env).unwrap();
                common::mkstate_args(
                    &root,
                    &state,
                    &["--encrypted", m, "--ve", ve.to_str().unwrap()],
                );
            }
            None => common::mkstate(&root, &state, None),
        }
        let bundle = fleet.join(format!("configBundle-esx{i:02}.tgz"));
        common::mkbundle(&state, &bundle, &[]);
        if mode.is_some() {
            sealed = bundle.display().to_string();
        }
    }
    let o = common::cmd(env!("CARGO_BIN_EXE_bootbank"))
        .args(["audit", "--json"])
        .arg(&fleet)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let has = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "tpm-recovery-key");
        assert_eq!(has, v["path"] == sealed.as_str(), "{v}");
    }
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(
        summary.contains("1 sealed by their host's TPM: record each one's recovery key now"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("tpm-sealed: {sealed}")),
        "{summary}"
    );
    assert!(summary.contains("tpm-recovery-key: 1"), "{summary}");
}

/// Builds the encrypted set of bench/audit: `BOOTBANK_AUDIT_N` config bundles (default 200)
/// whose state.tgz holds a real mode-NONE envelope, in `BOOTBANK_AUDIT_DIR`; every 10th host has
/// the story's esx.conf. Each host has its own encryption.info (key id, data1, data2 made from its
/// number), as a real fleet does, so each needs its own key derivation. Run by the bench, not by
/// `cargo test`.
#[test]
#[ignore]
fn make_audit_fixture() {
    let Some(out) = std::env::var_os("BOOTBANK_AUDIT_DIR").map(std::path::PathBuf::from) else {
        panic!("set BOOTBANK_AUDIT_DIR");
    };
    let n: usize = std::env::var("BOOTBANK_AUDIT_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    fs::create_dir_all(&out).unwrap();
    let work = TempDir::new("audit-fixture");
    for i in 1..=n {
        let conf = if i % 10 == 0 {
            "story.conf"
        } else {
            "healthy.conf"
        };
        let root = work.join(format!("root{i}"));
        let text = esxconf(conf).replace("\"esx01\"", &format!("\"esx{i}\""));
        common::write_tree(
            &root,
            &[("etc/vmware/esx.conf".to_string(), text.into_bytes())],
        );
        let plain = work.join(format!("local{i}.tgz"));
        common::mkstate_args(&root, &plain, &["--local-only"]);
        common::encrypted_bundle(
            work.path(),
            &fs::read(&plain).unwrap(),
            &common::fleet_enc_data(i),
            &out.join(format!("configBundle-enc{i:05}.tgz")),
            &[],
        );
    }
}
