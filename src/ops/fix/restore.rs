//! Planning a restore: each backed-up configuration file becomes a step that writes it back.

use super::diff::unified_diff;
use super::target::fat_leftover;
use super::{FixError, Plan, Step};
use crate::esxi::bank as bootbank;
use crate::esxi::config::{Config, ESX_CONF};
use crate::esxi::esxconf::{Change, EsxConf};
use crate::esxi::target::Target;
use crate::format::archive::Tgz;
use crate::ops::inspect::TargetKind;
use crate::write::backup::Standing;
use crate::write::transaction::Names;
use std::path::Path;

/// Plans putting back the configuration files of a backup made by [`apply`] (the one
/// `restore`, [`crate::ops::restore::plan`], takes either kind of backup).
///
/// [`apply`]: super::apply
pub fn plan_restore(target: &Path, from: &Path, force: bool) -> Result<Plan, FixError> {
    let backup = crate::write::backup::read(from)?;
    if backup.is_boot_cfg() {
        return Err(FixError::BootCfgBackup {
            dir: from.to_path_buf(),
        });
    }
    plan_restore_of(target, &backup, force)
}

/// The restore plan of a backup of configuration files, read and checked by
/// [`crate::write::backup::read`]: each file becomes a step whose new bytes are the backed-up
/// copy, written through the same commit (with its own backup).
pub(crate) fn plan_restore_of(
    target: &Path,
    backup: &crate::write::backup::Backup,
    force: bool,
) -> Result<Plan, FixError> {
    let mut plan = Plan::empty(target);
    let (mut disk, banks, archive_bytes) = match Target::open(target)? {
        Target::Archive { bytes, .. } => (None, Vec::new(), Some(bytes)),
        Target::Disk { disk, found, .. } => (Some(disk), found.banks, None),
        Target::Directory(_) => {
            return Err(FixError::DirectoryTarget {
                path: target.to_path_buf(),
                restore: true,
            });
        }
    };
    let is_archive = archive_bytes.is_some();
    for (e, backup) in backup.manifest.entries.iter().zip(&backup.files) {
        let backup = backup.clone();
        let mut fat_leftover = None;
        let (current, location, names, leftover, uuid) = if is_archive {
            plan.kind = TargetKind::StateArchive;
            (
                archive_bytes.clone().unwrap_or_default(),
                e.file.clone(),
                None,
                None,
                None,
            )
        } else {
            let p = e.partition.unwrap_or(0);
            let bank = banks
                .iter()
                .find(|b| b.partition == p)
                .ok_or_else(|| FixError::NoBankForBackup { partition: p })?;
            let cf = bank.config_file();
            let disk = disk.as_mut().expect("a disk target has its disk open");
            let bytes = match &cf {
                Some(c) => bootbank::read_file(disk, bank, &c.effective.name)?.unwrap_or_default(),
                None => Vec::new(),
            };
            let location = format!("partition {p} /{}", e.file);
            fat_leftover = self::fat_leftover(disk, bank, &location)?;
            plan.kind = if e.partition.is_none() {
                TargetKind::Partition
            } else {
                TargetKind::Disk
            };
            (
                bytes,
                match e.partition {
                    Some(p) => format!("partition {p} /{}", e.file),
                    None => format!("this partition /{}", e.file),
                },
                Some(
                    cf.as_ref()
                        .map(|c| c.names.clone())
                        .unwrap_or_else(|| Names::for_file(&e.file)),
                ),
                cf.and_then(|c| c.leftover),
                Some(bank.uuid.clone()),
            )
        };
        let bank = match (&uuid, e.partition) {
            (Some(u), p) => Some((p.unwrap_or(0), u.as_str())),
            (None, _) => None,
        };
        let restored = crate::write::backup::compare(e, bank, &current, &location, force)?
            == Standing::Restored;
        let mut notes = Vec::new();
        if restored {
            notes.push("already holds the backed-up configuration".to_string());
        }
        let bundle = plan.kind == TargetKind::StateArchive
            && Tgz::parse(&backup, "backup")
                .map(|t| t.member("state.tgz").is_some())
                .unwrap_or(false);
        if bundle {
            plan.kind = TargetKind::ConfigBundle;
        }
        let esx = |bytes: &[u8]| -> Result<Vec<u8>, FixError> {
            let state = if bundle {
                Tgz::parse(bytes, &location)?.require("state.tgz")?.to_vec()
            } else {
                bytes.to_vec()
            };
            let cfg = Config::from_state(&state, &location)?;
            Ok(cfg
                .local
                .as_ref()
                .map(|l| l.require(ESX_CONF).map(<[u8]>::to_vec))
                .transpose()?
                .unwrap_or_default())
        };
        let new_conf = esx(&backup)?;
        let old_conf = if current.is_empty() {
            Vec::new()
        } else {
            esx(&current).unwrap_or_default()
        };
        let changes = if restored {
            Vec::new()
        } else {
            conf_changes(&old_conf, &new_conf)
        };
        plan.steps.push(Step {
            location: location.clone(),
            partition: e.partition,
            bank_uuid: uuid,
            file: e.file.clone(),
            diff: unified_diff(&old_conf, &new_conf, &location),
            changes: if restored {
                changes
            } else if changes.is_empty() {
                // Same esx.conf, other members differ: still a change to write.
                vec![Change {
                    key: "(other members of local.tgz)".into(),
                    line: 0,
                    old: None,
                    new: None,
                }]
            } else {
                changes
            },
            notes,
            store_changes: Vec::new(),
            member_changes: Vec::new(),
            old_bytes: current,
            new_bytes: backup,
            new_esx_conf: new_conf,
            new_store: None,
            leftover,
            fat_leftover,
            names,
        });
    }
    Ok(plan)
}

/// Key-level differences between two esx.conf texts, for a restore plan.
fn conf_changes(old: &[u8], new: &[u8]) -> Vec<Change> {
    let (a, b) = (
        EsxConf::parse(old).unwrap_or_default(),
        EsxConf::parse(new).unwrap_or_default(),
    );
    let mut out = Vec::new();
    for e in &a.entries {
        let nv = b.get(&e.key);
        if nv != Some(e.value.as_str()) {
            out.push(Change {
                key: e.key.clone(),
                line: e.line,
                old: Some(e.value.clone()),
                new: nv.map(str::to_string),
            });
        }
    }
    for e in &b.entries {
        if a.get(&e.key).is_none() {
            out.push(Change {
                key: e.key.clone(),
                line: e.line,
                old: None,
                new: Some(e.value.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, line: usize, old: Option<&str>, new: Option<&str>) -> Change {
        Change {
            key: key.into(),
            line,
            old: old.map(str::to_string),
            new: new.map(str::to_string),
        }
    }

    #[test]
    fn changed_removed_and_added_keys_with_their_lines() {
        let old = b"/adv/Misc/HostName = \"esx01\"\n\
            /device/000:022:00.0/owner = \"passthru\"\n\
            /system/uuid = \"u1\"\n\
            /adv/Removed = \"1\"\n";
        // The uuid line moved up a line: a move is no change.
        let new = b"/adv/Misc/HostName = \"esx01\"\n\
            /system/uuid = \"u1\"\n\
            /device/000:022:00.0/owner = \"vmkernel\"\n\
            \n\
            /adv/Added = \"x\"\n";
        assert_eq!(
            conf_changes(old, new),
            [
                // A changed or removed key: its line in the old text.
                change(
                    "/device/000:022:00.0/owner",
                    2,
                    Some("passthru"),
                    Some("vmkernel")
                ),
                change("/adv/Removed", 4, Some("1"), None),
                // An added key: its line in the new text (line 4 is blank).
                change("/adv/Added", 5, None, Some("x")),
            ]
        );
    }

    #[test]
    fn the_same_settings_are_no_change() {
        let conf = b"/a = \"1\"\n/b = \"2\"\n";
        assert!(conf_changes(conf, conf).is_empty());
        // Spacing and line endings around the quotes are not the value.
        assert!(conf_changes(conf, b"/b=\"2\"\r\n/a   =   \"1\"\n").is_empty());
    }

    #[test]
    fn an_unreadable_side_counts_as_empty() {
        // Not UTF-8: nothing can be compared key by key, so every key of the other side is
        // added (or removed).
        assert_eq!(
            conf_changes(b"\xff\xfe", b"/a = \"1\"\n"),
            [change("/a", 1, None, Some("1"))]
        );
        assert_eq!(
            conf_changes(b"/a = \"1\"\n", b""),
            [change("/a", 1, Some("1"), None)]
        );
    }
}
