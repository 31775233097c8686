//! `bootbank network`, end to end through the binary, checked with outside tools only:
//!
//! - what `network` shows of the real 7.0.2 host is compared with the host's ConfigStore read by
//!   Python's sqlite3 (`configstore-rows`), and with the facts of that host;
//! - a static address and a VLAN change are verified row by row with Python's sqlite3: only the
//!   intended rows differ, in them only UserValue, ModifiedTime and Revision, and in UserValue
//!   only the intended fields; the configuration is taken off the disk with mtools and GNU tar,
//!   an encrypted one opened with the independent decryptor; every other member of local.tgz is
//!   byte-identical;
//! - refusals (unknown vmknic, an esx.conf build) leave the image's sha256 unchanged;
//! - the NIC-swap case with fake sysfs trees.
//!
//! Under `CI=true` a missing tool (python3, mtools, the decryptor, the real data) is a failure.

use crate::common::{
    self, BankSpec, Scenario, TempDir, cmd, output_text, p, run, sha256_file, untar,
};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DB: &str = "var/lib/vmware/configstore/backup/current-store-1";

fn tools() -> bool {
    common::builder_available()
        && common::require_tools(&["python3", "mcopy", "tar", "gzip"])
        && common::require_real()
}

fn bootbank(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::BIN)
        .arg("network")
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .output()
        .expect("run bootbank")
}

/// A plain state.tgz holding `local` (GNU tar, gzip -n).
fn plain_state(local: &Path, out: &Path) {
    run(cmd("bash")
        .arg("-c")
        .arg("tar -C \"$(dirname \"$1\")\" --format=gnu --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -cf - \"$(basename \"$1\")\" | gzip -n > \"$2\"")
        .arg("tar")
        .arg(local)
        .arg(out));
}

/// The Config rows of a database as Python's sqlite3 reads them, by rowid.
fn config_rows(db: &Path) -> Vec<(i64, serde_json::Map<String, Value>)> {
    common::configstore_rows(db)
        .into_iter()
        .filter(|r| r["table"] == "Config")
        .map(|r| {
            (
                r["rowid"].as_i64().unwrap(),
                r["row"].as_object().unwrap().clone(),
            )
        })
        .collect()
}

fn json_col(row: &serde_json::Map<String, Value>, col: &str) -> Value {
    serde_json::from_str(row[col].as_str().unwrap_or("null")).unwrap()
}

/// The row of `name`/`identifier`.
fn row<'a>(
    rows: &'a [(i64, serde_json::Map<String, Value>)],
    name: &str,
    identifier: &str,
) -> &'a (i64, serde_json::Map<String, Value>) {
    rows.iter()
        .find(|(_, r)| r["Name"] == name && r["Identifier"] == identifier)
        .unwrap_or_else(|| panic!("no {name} row {identifier}"))
}

/// Every database row is the same in `before` and `after` except the rows `changed` (rowids),
/// and in those only UserValue, ModifiedTime and Revision (Revision + 1). Returns each changed
/// row's UserValue before and after, parsed.
fn only_rows_changed(before: &Path, after: &Path, changed: &[i64]) -> Vec<(Value, Value)> {
    let (all_b, all_a) = (
        common::configstore_rows(before),
        common::configstore_rows(after),
    );
    assert_eq!(all_b.len(), all_a.len(), "row count");
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for (b, a) in all_b.iter().zip(&all_a) {
        if b == a {
            continue;
        }
        assert_eq!((&b["table"], &b["rowid"]), (&a["table"], &a["rowid"]));
        assert_eq!(a["table"], "Config", "{a}");
        let rowid = a["rowid"].as_i64().unwrap();
        assert!(changed.contains(&rowid), "row {rowid} changed: {a}");
        seen.push(rowid);
        let (bo, ao) = (b["row"].as_object().unwrap(), a["row"].as_object().unwrap());
        for (k, v) in bo {
            if ao[k] != *v {
                assert!(
                    ["UserValue", "ModifiedTime", "Revision"].contains(&k.as_str()),
                    "column {k} of row {rowid} changed"
                );
            }
        }
        assert_eq!(
            ao["Revision"].as_i64().unwrap(),
            bo["Revision"].as_i64().unwrap() + 1,
            "Revision of row {rowid}"
        );
        assert_ne!(ao["ModifiedTime"], bo["ModifiedTime"]);
        out.push((json_col(bo, "UserValue"), json_col(ao, "UserValue")));
    }
    assert_eq!(seen, changed, "rows changed");
    out
}

/// `new` equals `old` with `set` (path, value; Null removes) applied.
fn only_fields_changed(old: &Value, new: &Value, set: &[(&[&str], Value)]) {
    let mut want = old.clone();
    for (path, v) in set {
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut want;
        for p in parents {
            at = at.get_mut(*p).unwrap();
        }
        if v.is_null() {
            at.as_object_mut().unwrap().remove(*last);
        } else {
            at[*last] = v.clone();
        }
    }
    assert_eq!(*new, want);
}

/// Bank `n`'s configuration off the disk with mtools and GNU tar (and the independent
/// decryptor when encrypted), unpacked into `into/local`.
fn extract_local(img: &Path, n: u32, into: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).unwrap();
    let state = into.join("state.tgz");
    common::copy_fat_file(img, n, "state.tgz", &state);
    run(cmd("tar").arg("-xzf").arg(&state).arg("-C").arg(into));
    let mut local = into.join("local.tgz");
    if !local.exists() {
        local = into.join("local.tgz.decrypted");
        let py = common::oracle_python().expect("the independent decryptor");
        run(cmd(py)
            .arg(common::tool("oracle-decrypt"))
            .arg(into.join("encryption.info"))
            .arg(into.join("local.tgz.ve"))
            .arg(&local));
    }
    untar(&local, &into.join("local"));
    local
}

/// Every file under `a` and `b` is the same, except `except`.
fn same_tree_except(a: &Path, b: &Path, except: &[&str]) {
    let list = |d: &Path| -> Vec<String> {
        let out = common::run_text(cmd("find").arg(d).args(["-type", "f", "-printf", "%P\\n"]));
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "member lists differ");
    for f in la.iter().filter(|f| !except.contains(&f.as_str())) {
        assert!(
            fs::read(a.join(f)).unwrap() == fs::read(b.join(f)).unwrap(),
            "{f} changed"
        );
    }
}

/// The real host's configuration, shown: every value compared with what Python's sqlite3
/// reads from the same database, and with the facts of that host (vmk0 on DHCP on
/// "Management Network" of vSwitch0, uplink vmnic0 00:0c:29:80:16:86).
#[test]
fn real_702_show() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-show");
    let local = common::mkrealhost(t.path(), "local.tgz", &[]);
    let state = t.join("state.tgz");
    plain_state(&local, &state);
    untar(&local, &t.join("x"));
    let rows = config_rows(&t.join("x").join(DB));
    let o = bootbank(t.path(), &[p(&state), "--json"]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = &r["network"];
    assert_eq!(n["source"], "configstore");
    assert_eq!(n["management"], "vmk0");
    let v = &n["vmknics"][0];
    let (_, vr) = row(&rows, "vmknics", "vmk0");
    let (user, vital, cached) = (
        json_col(vr, "UserValue"),
        json_col(vr, "VitalValue"),
        json_col(vr, "CachedValue"),
    );
    assert_eq!(v["device"], "vmk0");
    assert_eq!(v["dhcp"], user["ip"]["dhcp"]);
    assert_eq!(v["dhcp"], true);
    assert_eq!(v["address"], Value::Null);
    assert_eq!(v["port_group"], user["port_group"]);
    assert_eq!(v["port_group"], "Management Network");
    assert_eq!(v["mac"], vital["mac"]);
    assert_eq!(v["dhcp_server"], cached["dhcp_server"]);
    assert_eq!(v["management"], true);
    let (_, sr) = row(&rows, "switches", "vSwitch0");
    let su = json_col(sr, "UserValue");
    assert_eq!(v["vswitch"], "vSwitch0");
    assert_eq!(v["vlan"], su["port_groups"][0]["vlan_id"]);
    assert_eq!(
        v["uplinks"],
        su["port_groups"][0]["policy"]["nic_teaming"]["active_nics"]
    );
    let (_, stack) = row(&rows, "net_stacks", "defaultTcpipStack");
    let stack = json_col(stack, "UserValue");
    assert_eq!(
        v["gateway"],
        stack["routing_config"]["ipv4_default_gateway"]
    );
    assert_eq!(n["switches"][0]["uplinks"], su["bridge"]["nics"]);
    let (_, nr) = row(&rows, "nics", "vmnic0");
    let nic = &n["nics"][0];
    assert_eq!(nic["name"], "vmnic0");
    assert_eq!(nic["mac"], json_col(nr, "VitalValue")["mac"]);
    assert_eq!(nic["mac"], "00:0c:29:80:16:86");
    // vmnic0's device_data bus address is one of the forms not understood: shown as written.
    assert_eq!(nic["bus_address"], "m01000b00");
    assert_eq!(nic["pci_address"], Value::Null);
    // The human form says the same.
    let o = bootbank(t.path(), &[p(&state)]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("vmk0 [management]: DHCP"), "{text}");
    assert!(text.contains("vmnic0: MAC 00:0c:29:80:16:86"), "{text}");
}

/// A static address on the real host, encrypted (mode NONE), on a disk: vmk0's UserValue gets
/// dhcp false, the address and mask; the net stack's routing_config gets MANUAL and the gateway;
/// nothing else changes (Python's sqlite3, row by row); the independent decryptor opens the new
/// envelope; every other member of local.tgz is byte-identical; the backup is the old state.tgz.
#[test]
fn real_702_static_ip_encrypted_disk() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-static");
    let local = common::mkrealhost(t.path(), "local.tgz", &[]);
    let state = t.join("state.tgz");
    common::real_encrypted_state(t.path(), &local, &state);
    let img = Scenario::new()
        .layout("demo")
        .bank(5, common::real_bank(3, 0, fs::read(&state).unwrap()))
        .build(t.path());
    untar(&local, &t.join("before"));
    let args = [
        p(&img),
        "--vmk",
        "vmk0",
        "--ip",
        "192.168.1.20/24",
        "--gateway",
        "192.168.1.1",
    ];
    // The dry run writes nothing.
    let sum = sha256_file(&img);
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let o = bootbank(t.path(), &dry);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(sha256_file(&img), sum);
    let bk = t.join("backup");
    let mut write = args.to_vec();
    write.extend(["--yes", "--backup-dir", p(&bk)]);
    let o = bootbank(t.path(), &write);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("ip.dhcp: true -> false"), "{text}");
    extract_local(&img, 5, &t.join("after"));
    same_tree_except(&t.join("before"), &t.join("after/local"), &[DB]);
    let rows = config_rows(&t.join("before").join(DB));
    let (vmk_row, _) = row(&rows, "vmknics", "vmk0");
    let (stack_row, _) = row(&rows, "net_stacks", "defaultTcpipStack");
    let mut want = vec![*vmk_row, *stack_row];
    want.sort();
    let changed = only_rows_changed(
        &t.join("before").join(DB),
        &t.join("after/local").join(DB),
        &want,
    );
    for (old, new) in &changed {
        if old.get("device").is_some() {
            only_fields_changed(
                old,
                new,
                &[
                    (&["ip", "dhcp"], Value::Bool(false)),
                    (&["ip", "ipv4_address"], "192.168.1.20".into()),
                    (&["ip", "ipv4_subnet_mask"], "255.255.255.0".into()),
                ],
            );
        } else {
            only_fields_changed(
                old,
                new,
                &[
                    (&["routing_config", "source"], "MANUAL".into()),
                    (
                        &["routing_config", "ipv4_default_gateway"],
                        "192.168.1.1".into(),
                    ),
                ],
            );
        }
    }
    assert_eq!(
        fs::read(t.join("after/encryption.info")).unwrap(),
        common::real_file("encryption.info")
    );
    assert_eq!(
        fs::read(bk.join("partition5-state.tgz")).unwrap(),
        fs::read(&state).unwrap()
    );
    common::fsck_banks(&img);
    // bootbank reads back what it wrote; going back to DHCP drops the address fields again.
    let o = bootbank(t.path(), &[p(&img), "--json"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = &r["network"]["vmknics"][0];
    assert_eq!(
        (&v["dhcp"], &v["address"], &v["prefix_len"], &v["gateway"]),
        (
            &Value::Bool(false),
            &Value::from("192.168.1.20"),
            &Value::from(24),
            &Value::from("192.168.1.1")
        )
    );
    let o = bootbank(
        t.path(),
        &[
            p(&img),
            "--dhcp",
            "--yes",
            "--backup-dir",
            p(&t.join("bk2")),
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    extract_local(&img, 5, &t.join("back"));
    let back = config_rows(&t.join("back/local").join(DB));
    let before = config_rows(&t.join("before").join(DB));
    let (_, b) = row(&before, "vmknics", "vmk0");
    let (_, a) = row(&back, "vmknics", "vmk0");
    assert_eq!(json_col(a, "UserValue"), json_col(b, "UserValue"));
    // Byte for byte: the edits changed only the changed fields' bytes (key order and every
    // other field as ESXi wrote them), so going back gives ESXi's own vmk0 text again.
    assert_eq!(a["UserValue"], b["UserValue"]);
    let (_, sb) = row(&before, "net_stacks", "defaultTcpipStack");
    let (_, sa) = row(&back, "net_stacks", "defaultTcpipStack");
    // --dhcp sets the source back and keeps the last gateway (DHCP supplies its own): ESXi's
    // text with only that value's bytes different.
    assert_eq!(
        sa["UserValue"].as_str().unwrap(),
        sb["UserValue"].as_str().unwrap().replace(
            "\"ipv4_default_gateway\":\"10.199.5.1\"",
            "\"ipv4_default_gateway\":\"192.168.1.1\""
        )
    );
}

/// The VLAN of vmk0's port group on the real host (archive target): only vSwitch0's row, and in
/// its UserValue only the Management Network's vlan_id, change.
#[test]
fn real_702_vlan() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-vlan");
    let local = common::mkrealhost(t.path(), "local.tgz", &[]);
    let state = t.join("state.tgz");
    plain_state(&local, &state);
    untar(&local, &t.join("before"));
    let out = t.join("new-state.tgz");
    let o = bootbank(
        t.path(),
        &[
            p(&state),
            "--vlan",
            "20",
            "--yes",
            "--output",
            p(&out),
            "--backup-dir",
            p(&t.join("bk")),
        ],
    );
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    fs::create_dir_all(t.join("after")).unwrap();
    run(cmd("tar")
        .arg("-xzf")
        .arg(&out)
        .arg("-C")
        .arg(t.join("after")));
    untar(&t.join("after/local.tgz"), &t.join("after/local"));
    same_tree_except(&t.join("before"), &t.join("after/local"), &[DB]);
    let rows = config_rows(&t.join("before").join(DB));
    let (sw_row, _) = row(&rows, "switches", "vSwitch0");
    let changed = only_rows_changed(
        &t.join("before").join(DB),
        &t.join("after/local").join(DB),
        &[*sw_row],
    );
    let (old, new) = &changed[0];
    let i = old["port_groups"]
        .as_array()
        .unwrap()
        .iter()
        .position(|g| g["name"] == "Management Network")
        .unwrap();
    let mut want = old.clone();
    want["port_groups"][i]["vlan_id"] = Value::from(20);
    assert_eq!(*new, want);
    // Byte for byte: on the real host the Management Network is the first port group, so the
    // new text is ESXi's own with its first `"vlan_id":0` made 20, nothing else.
    assert_eq!(i, 0);
    let after = config_rows(&t.join("after/local").join(DB));
    let (_, ob) = row(&rows, "switches", "vSwitch0");
    let (_, oa) = row(&after, "switches", "vSwitch0");
    let old_text = ob["UserValue"].as_str().unwrap();
    assert_eq!(
        oa["UserValue"].as_str().unwrap(),
        old_text.replacen("\"vlan_id\":0", "\"vlan_id\":20", 1)
    );
    // A VLAN outside the schema's range is refused before anything is read.
    let o = bootbank(t.path(), &[p(&state), "--vlan", "4096", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

/// Refusals write nothing and exit 2: an unknown vmknic; a 6.x host (esx.conf), whose network
/// lines bootbank shows but does not change.
#[test]
fn refusals_write_nothing() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-refuse");
    let local = common::mkrealhost(t.path(), "local.tgz", &[]);
    let state = t.join("state.tgz");
    plain_state(&local, &state);
    let sum = sha256_file(&state);
    let o = bootbank(
        t.path(),
        &[
            p(&state),
            "--vmk",
            "vmk7",
            "--dhcp",
            "--yes",
            "--backup-dir",
            p(&t.join("b")),
        ],
    );
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("no vmknic vmk7 (vmknics: vmk0)"), "{text}");
    assert_eq!(sha256_file(&state), sum);

    let img = Scenario::new()
        .layout("demo")
        .bank(5, BankSpec::installed("6.7.0-8169922", 3, 0, &six_x_conf()))
        .build(t.path());
    let sum = sha256_file(&img);
    let o = bootbank(
        t.path(),
        &[
            p(&img),
            "--vlan",
            "20",
            "--yes",
            "--backup-dir",
            p(&t.join("b2")),
        ],
    );
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("reads its network from esx.conf"), "{text}");
    assert_eq!(sha256_file(&img), sum);

    // TPM-sealed: shown as unreadable, refused with what still works on the host.
    let mut b5 = common::healthy_bank(3, 0);
    b5.encrypted = Some("TPM");
    let tpm = Scenario::new()
        .layout("demo")
        .name("tpm.img")
        .bank(5, b5)
        .build(t.path());
    let sum = sha256_file(&tpm);
    let o = bootbank(t.path(), &[p(&tpm), "--dhcp", "--yes"]);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("sealed by the host's TPM"), "{text}");
    assert!(
        text.contains("esxcli network ip interface ipv4 set -i vmk0"),
        "{text}"
    );
    let o = bootbank(t.path(), &[p(&tpm)]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert_eq!(sha256_file(&tpm), sum);
}

/// A 6.x esx.conf made only of key names with published evidence (see `esxi::network::
/// from_esx_conf`), and the two advanced options the real 7.0.2 host writes.
fn six_x_conf() -> String {
    [
        "/adv/Net/ManagementAddr = \"192.168.1.20\"",
        "/adv/Net/ManagementIface = \"vmk0\"",
        "/net/pnic/child[0000]/mac = \"00:0c:29:aa:bb:01\"",
        "/net/pnic/child[0000]/virtualMac = \"00:50:56:aa:bb:01\"",
        "/net/routes/kernel/gateway = \"192.168.1.1\"",
        "/net/vmkernelnic/child[0000]/dhcp = \"false\"",
        "/net/vmkernelnic/child[0000]/ipv4address = \"192.168.1.20\"",
        "/net/vmkernelnic/child[0000]/ipv4netmask = \"255.255.255.0\"",
        "/net/vmkernelnic/child[0000]/mac = \"00:0c:29:aa:bb:01\"",
        "/net/vswitch/child[0000]/name = \"vSwitch0\"",
        "/net/vswitch/child[0000]/portgroup/child[0000]/name = \"Management Network\"",
        "/net/vswitch/child[0000]/portgroup/child[0000]/vlanId = \"496\"",
        "/net/vswitch/child[0000]/uplinks/child[0000]/pnic = \"vmnic0\"",
        "/system/uuid = \"5f1b2c3d-0000-0000-0000-000c29aabb01\"",
        "",
    ]
    .join("\n")
}

/// A 6.x host's network, read from esx.conf.
#[test]
fn six_x_esx_conf_show() {
    if !common::builder_available() {
        return;
    }
    let t = TempDir::new("network-6x");
    let img = Scenario::new()
        .layout("demo")
        .bank(5, BankSpec::installed("6.7.0-8169922", 3, 0, &six_x_conf()))
        .build(t.path());
    let o = bootbank(t.path(), &[p(&img), "--json"]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = &r["network"];
    assert_eq!(n["source"], "esx.conf");
    assert_eq!(n["management"], "vmk0");
    let v = &n["vmknics"][0];
    assert_eq!(v["device"], "child[0000]");
    assert_eq!(
        (&v["dhcp"], &v["address"], &v["prefix_len"], &v["gateway"]),
        (
            &Value::Bool(false),
            &Value::from("192.168.1.20"),
            &Value::from(24),
            &Value::from("192.168.1.1")
        )
    );
    assert_eq!(n["switches"][0]["name"], "vSwitch0");
    assert_eq!(n["switches"][0]["port_groups"][0]["vlan"], 496);
    assert_eq!(n["nics"][0]["mac"], "00:0c:29:aa:bb:01");
}

/// A fake sysfs tree with one NIC: `class/net/<name>` a link into `devices/` as the kernel
/// makes it, with `address` and a `device` link to the PCI function.
fn fake_sysfs(root: &Path, name: &str, mac: &str, pci: &str) {
    let dev = root.join(format!("devices/pci0000:00/{pci}"));
    let net = dev.join("net").join(name);
    fs::create_dir_all(&net).unwrap();
    fs::write(net.join("address"), format!("{mac}\n")).unwrap();
    std::os::unix::fs::symlink(format!("../../../{pci}"), net.join("device")).unwrap();
    fs::create_dir_all(root.join("class/net")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../devices/pci0000:00/{pci}/net/{name}"),
        root.join("class/net").join(name),
    )
    .unwrap();
    // A virtual interface without a device link is no NIC.
    let lo = root.join("devices/virtual/net/lo");
    fs::create_dir_all(&lo).unwrap();
    fs::write(lo.join("address"), "00:00:00:00:00:00\n").unwrap();
    let _ = std::os::unix::fs::symlink("../../devices/virtual/net/lo", root.join("class/net/lo"));
}

/// The NIC-swap case: the real host's management uplink vmnic0 (00:0c:29:80:16:86) in a
/// machine whose only NIC has another MAC is a critical finding (exit 1); the same machine with
/// that MAC present is clean (exit 0).
#[test]
fn nic_swap_is_a_finding() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-swap");
    let local = common::mkrealhost(t.path(), "local.tgz", &[]);
    let state = t.join("state.tgz");
    plain_state(&local, &state);
    let same = t.join("sys-same");
    fake_sysfs(&same, "ens192", "00:0C:29:80:16:86", "0000:0b:00.0");
    let o = bootbank(t.path(), &[p(&state), "--sysfs", p(&same), "--json"]);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["present_nics"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(r["uplinks"][0]["present_as"]["name"], "ens192");
    assert_eq!(r["uplinks"][0]["present_as"]["pci_address"], "0000:0b:00.0");
    assert!(r["findings"].as_array().unwrap().is_empty(), "{text}");

    let swapped = t.join("sys-swapped");
    fake_sysfs(&swapped, "ens224", "00:1b:21:3c:4d:5e", "0000:13:00.0");
    let o = bootbank(t.path(), &[p(&state), "--sysfs", p(&swapped), "--json"]);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &r["findings"][0];
    assert_eq!(f["rule"], "management-uplink-missing");
    assert_eq!(f["severity"], "critical");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("vmnic0 (MAC 00:0c:29:80:16:86"), "{msg}");
    assert!(msg.contains("ens224 00:1b:21:3c:4d:5e"), "{msg}");
    assert_eq!(r["uplinks"][0]["present_as"], Value::Null);
}

/// lint's `passthru-management-uplink`: vmnic0, the only uplink of vSwitch0 (which carries the
/// management vmknic vmk0 on the real host), handed to passthrough (a pci_devices row and the
/// device_data names added with Python's sqlite3) is critical; the real host as it is has no
/// such finding.
#[test]
fn lint_flags_passthrough_of_the_management_uplink() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-lint");
    let lint = |state: &Path| {
        let o = Command::new(common::BIN)
            .args(["lint", "--json"])
            .arg(state)
            .current_dir(t.path())
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", output_text(&o)));
        (o.status.code(), v)
    };
    let rule = |v: &Value| -> Vec<Value> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "passthru-management-uplink")
            .cloned()
            .collect()
    };
    let clean = common::mkrealhost(t.path(), "clean.tgz", &[]);
    let clean_state = t.join("clean-state.tgz");
    plain_state(&clean, &clean_state);
    let (_, v) = lint(&clean_state);
    assert!(rule(&v).is_empty(), "{v}");

    let local = common::mkrealhost(
        t.path(),
        "local.tgz",
        &["--passthru", "0000:0b:00.0=vmnic0"],
    );
    let state = t.join("state.tgz");
    plain_state(&local, &state);
    let (code, v) = lint(&state);
    let hits = rule(&v);
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(code, Some(1));
    assert_eq!(hits[0]["severity"], "critical");
    assert_eq!(hits[0]["device"], "0000:0b:00.0");
    let msg = hits[0]["message"].as_str().unwrap();
    assert!(msg.contains("vmnic0, an uplink of vSwitch0"), "{msg}");
    assert!(msg.contains("management vmknic vmk0"), "{msg}");
}

/// The host's schema store decides what bootbank may write: without one, with a field marked
/// vital, with a narrower VLAN range, or with an enum lacking `MANUAL`, the change is refused
/// (exit 2, nothing written) and the reason names the schema.
#[test]
fn the_hosts_schema_decides() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-schema");
    // A vmk1 whose ip.dhcp AutoConfValue sets as well (added with Python's sqlite3).
    let vmk1 = serde_json::json!({
        "component": "esx", "group": "network", "name": "vmknics", "identifier": "vmk1",
        "AutoConfValue": {"device": "vmk1", "ip": {"dhcp": true, "ipv6_enabled": true}},
        "UserValue": {"device": "vmk1", "port_group": "VM Network",
                      "net_stack_instance_key": "defaultTcpipStack",
                      "ip": {"dhcp": true, "ipv6_enabled": true}},
    })
    .to_string();
    let cases: [(&str, &[&str], &[&str], &str); 5] = [
        (
            "column",
            &["--row", &vmk1],
            &[
                "--vmk",
                "vmk1",
                "--ip",
                "10.0.0.5/8",
                "--gateway",
                "10.0.0.1",
            ],
            "vmk1: ip.dhcp is set in AutoConfValue",
        ),
        (
            "none",
            &["--no-schema-store"],
            &["--dhcp"],
            "has no schema for esx/network/vmknics",
        ),
        (
            "vital",
            &[
                "--schema-set",
                "esx/network/vmknics",
                "/items/properties/ip/properties/ipv4_address/vital",
                "true",
            ],
            &["--ip", "10.0.0.5/8", "--gateway", "10.0.0.1"],
            "marks it vital",
        ),
        (
            "range",
            &[
                "--schema-set",
                "esx/network_vss/switches",
                "/items/properties/port_groups/items/properties/vlan_id/maximum",
                "100",
            ],
            &["--vlan", "200"],
            "allows 0..100, not 200",
        ),
        (
            "enum",
            &[
                "--schema-set",
                "esx/network/net_stacks",
                "/items/properties/routing_config/properties/source/enum",
                "[\"DHCP\"]",
            ],
            &["--ip", "10.0.0.5/8", "--gateway", "10.0.0.1"],
            "does not allow \"MANUAL\"",
        ),
    ];
    for (tag, build, args, want) in cases {
        let dir = t.join(tag);
        fs::create_dir_all(&dir).unwrap();
        let local = common::mkrealhost(&dir, "local.tgz", build);
        let state = t.join(format!("{tag}-state.tgz"));
        plain_state(&local, &state);
        let sum = sha256_file(&state);
        let bk = t.join("bk");
        let mut all = vec![p(&state)];
        all.extend(args);
        all.extend(["--yes", "--backup-dir", p(&bk)]);
        let o = bootbank(t.path(), &all);
        let text = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{tag}: {text}");
        assert!(text.contains(want), "{tag}: {text}");
        assert!(text.contains("nothing was written"), "{tag}: {text}");
        assert_eq!(sha256_file(&state), sum, "{tag}");
    }
}

/// An uplink's PCI address comes from its device_data record (alias -> `p` + SBDF): a vmnic1
/// added to the real host (a nics row and the two device_data rows, with Python's sqlite3) is
/// shown at 0000:13:00.0 with its MAC.
#[test]
fn uplink_pci_address_from_device_data() {
    if !tools() {
        return;
    }
    let t = TempDir::new("network-pci");
    let nic = serde_json::json!({
        "component": "esx", "group": "network", "name": "nics", "identifier": "vmnic1",
        "UserValue": {"name": "vmnic1"},
        "VitalValue": {"name": "vmnic1", "mac": "00:1b:21:3c:4d:5e",
                       "virtual_mac": "00:50:56:5b:4d:5e"},
    })
    .to_string();
    let local = common::mkrealhost(
        t.path(),
        "local.tgz",
        &["--alias", "0000:13:00.0=vmnic1", "--row", &nic],
    );
    let state = t.join("state.tgz");
    plain_state(&local, &state);
    let o = bootbank(t.path(), &[p(&state), "--json"]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let nics = r["network"]["nics"].as_array().unwrap();
    let n = nics.iter().find(|n| n["name"] == "vmnic1").expect(&text);
    assert_eq!(n["pci_address"], "0000:13:00.0");
    assert_eq!(n["bus_address"], "p0000:13:00.0");
    assert_eq!(n["mac"], "00:1b:21:3c:4d:5e");
}
