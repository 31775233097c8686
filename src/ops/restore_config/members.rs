//! The member comparison: which members of state.tgz and local.tgz the restore adds, removes or
//! changes, for the plan to list.

use super::{MemberChange, STATE};
use crate::esxi::config::Config;
use crate::format::archive::Tgz;

/// Members of state.tgz and local.tgz that the restore adds, removes or changes.
pub(super) fn member_changes(old: Option<&Config>, new: &Config) -> Vec<MemberChange> {
    let mut out = Vec::new();
    let mut compare = |archive: &'static str, a: Option<&Tgz>, b: Option<&Tgz>| {
        let Some(b) = b else { return };
        for m in &b.members {
            match a.and_then(|a| a.member(&m.name).map(|o| (a, o))) {
                None => out.push(MemberChange {
                    archive,
                    name: m.name.clone(),
                    change: "added",
                    old_size: None,
                    new_size: Some(m.size),
                }),
                Some((a, o)) if a.data(o) != b.data(m) => out.push(MemberChange {
                    archive,
                    name: m.name.clone(),
                    change: "changed",
                    old_size: Some(o.size),
                    new_size: Some(m.size),
                }),
                _ => {}
            }
        }
        for o in a.map(|a| a.members.as_slice()).unwrap_or_default() {
            if b.member(&o.name).is_none() {
                out.push(MemberChange {
                    archive,
                    name: o.name.clone(),
                    change: "removed",
                    old_size: Some(o.size),
                    new_size: None,
                });
            }
        }
    };
    compare(STATE, old.map(|c| &c.state), Some(&new.state));
    compare(
        "local.tgz",
        old.and_then(|c| c.local.as_ref()),
        new.local.as_ref(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{config_of, state_of, tar_gz};
    use super::*;
    use crate::format::envelope::Encryption;

    const ESX: &str = "etc/vmware/esx.conf";
    /// 54 bytes: 16 of `/system/uuid = "`, the 36 of the UUID, the closing quote and newline.
    const OLD_CONF: &[u8] = b"/system/uuid = \"5fb27665-83f4-b1f5-3e9f-000c29801686\"\n";
    /// 83 bytes: the 54 above and the 29 of the hostname line.
    const NEW_CONF: &[u8] =
        b"/system/uuid = \"5fb27665-83f4-b1f5-3e9f-000c29801686\"\n/adv/Misc/HostName = \"esx01\"\n";
    /// 20 bytes.
    const HOSTS: &[u8] = b"127.0.0.1 localhost\n";
    /// 26 bytes.
    const SHADOW: &[u8] = b"root:*:18000:0:99999:7:::\n";
    /// 17 bytes.
    const LOCAL_SH: &[u8] = b"#!/bin/sh\nexit 0\n";

    type Row<'a> = (&'a str, &'a str, &'a str, Option<u64>, Option<u64>);

    fn rows(changes: &[MemberChange]) -> Vec<Row<'_>> {
        changes
            .iter()
            .map(|c| (c.archive, c.name.as_str(), c.change, c.old_size, c.new_size))
            .collect()
    }

    fn old_files() -> [(&'static str, &'static [u8]); 3] {
        [(ESX, OLD_CONF), ("etc/hosts", HOSTS), ("etc/shadow", SHADOW)]
    }

    fn new_files() -> [(&'static str, &'static [u8]); 3] {
        [
            (ESX, NEW_CONF),
            ("etc/hosts", HOSTS),
            ("etc/rc.local.d/local.sh", LOCAL_SH),
        ]
    }

    #[test]
    fn changed_added_then_removed_state_first_unchanged_members_left_out() {
        let old_local = state_of(&old_files()).1;
        let new_local = state_of(&new_files()).1;
        let old = config_of(&old_files());
        let new = config_of(&new_files());
        // state.tgz's one member is local.tgz, whose compressed bytes differ; inside it esx.conf
        // grows by the hostname line, etc/hosts is the same bytes (not listed), local.sh is new
        // and etc/shadow gone: new members in the new archive's order, then the removed ones.
        assert_eq!(
            rows(&member_changes(Some(&old), &new)),
            [
                (
                    "state.tgz",
                    "local.tgz",
                    "changed",
                    Some(old_local.len() as u64),
                    Some(new_local.len() as u64)
                ),
                ("local.tgz", ESX, "changed", Some(54), Some(83)),
                ("local.tgz", "etc/rc.local.d/local.sh", "added", None, Some(17)),
                ("local.tgz", "etc/shadow", "removed", Some(26), None),
            ]
        );
    }

    #[test]
    fn nothing_to_compare_with_lists_every_member_added() {
        let new_local = state_of(&new_files()).1;
        let new = config_of(&new_files());
        assert_eq!(
            rows(&member_changes(None, &new)),
            [
                (
                    "state.tgz",
                    "local.tgz",
                    "added",
                    None,
                    Some(new_local.len() as u64)
                ),
                ("local.tgz", ESX, "added", None, Some(83)),
                ("local.tgz", "etc/hosts", "added", None, Some(20)),
                ("local.tgz", "etc/rc.local.d/local.sh", "added", None, Some(17)),
            ]
        );
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let old = config_of(&old_files());
        let new = config_of(&old_files());
        assert!(member_changes(Some(&old), &new).is_empty());
    }

    #[test]
    fn a_sealed_source_compares_state_tgz_alone() {
        let old = config_of(&old_files());
        // A TPM-sealed state.tgz of 7.0U2+: encryption.info (12 bytes) and the envelope (64
        // bytes here); its local.tgz cannot be opened, so the old local.tgz's members are not
        // listed as removed.
        let info: &[u8] = b"mode = \"TPM\"";
        let ve = [0x5Au8; 64];
        let state = tar_gz(&[("encryption.info", info), ("local.tgz.ve", &ve)]);
        let new = Config {
            encryption: Encryption::Tpm,
            encryption_mode: Some("TPM".into()),
            state: Tgz::parse(&state, "state.tgz").unwrap(),
            local: None,
            esx_conf: None,
            sealed: None,
        };
        let old_local = state_of(&old_files()).1;
        assert_eq!(
            rows(&member_changes(Some(&old), &new)),
            [
                ("state.tgz", "encryption.info", "added", None, Some(12)),
                ("state.tgz", "local.tgz.ve", "added", None, Some(64)),
                (
                    "state.tgz",
                    "local.tgz",
                    "removed",
                    Some(old_local.len() as u64),
                    None
                ),
            ]
        );
    }
}
