//! Planning: the target and the source read read-only, the checks run, and every byte to write
//! computed before anything is opened for writing.

use super::bundle::{read_bundle, release_check, system_uuid, uuid_check};
use super::members::member_changes;
use super::{Current, CurrentFile, Plan, SourceInfo, Verdict, WriteMethod};
use super::{Request, RestoreConfigError, STATE, Source};
use crate::esxi::bank::{self as bootbank, Bank};
use crate::esxi::config::{Config, ESX_CONF};
use crate::esxi::leftover::{Leftover, Names};
use crate::esxi::target::Target;
use crate::format::envelope::Encryption;
use crate::ops::fix;
use crate::write::transaction;
use std::path::Path;

/// Reads the target and the source read-only, runs the checks and computes what is written.
pub fn plan(target: &Path, req: &Request) -> Result<Plan, RestoreConfigError> {
    let (mut disk, banks) = match Target::open(target)? {
        Target::Disk { disk, found, .. } => (disk, found.banks),
        Target::Archive { .. } | Target::Directory(_) => {
            return Err(RestoreConfigError::NotADisk {
                path: target.to_path_buf(),
            });
        }
    };
    let lone = banks.len() == 1 && banks[0].partition == 0;
    let next = if lone {
        Some(0)
    } else {
        let p = bootbank::predict(&banks);
        if p.next_boot_partition.is_none() {
            return Err(RestoreConfigError::NoNextBank { unknown: p.unknown });
        }
        p.next_boot_partition
    };
    let part = next.expect("set above");
    let bank = banks
        .iter()
        .find(|b| b.partition == part)
        .expect("predicted among banks");
    let where_ = |p: u32| {
        if lone {
            "this partition".to_string()
        } else {
            format!("partition {p}")
        }
    };
    let location = format!("{} /{STATE}", where_(part));
    let names = Names::for_file(STATE);
    if let Some(l) = Leftover::detect(&bank.files, &names) {
        return Err(RestoreConfigError::Leftover {
            location,
            state: l.describe(&names),
        });
    }
    let has = |b: &Bank, n: &str| {
        b.files
            .iter()
            .any(|f| !f.is_dir && f.name.eq_ignore_ascii_case(n))
    };
    let exists = has(bank, STATE);
    if !exists && has(bank, "local.tgz") {
        return Err(RestoreConfigError::BareLocal { location });
    }
    let fat_leftover = {
        let h = transaction::fat_health(&mut disk, bank).map_err(|source| {
            RestoreConfigError::FatUnread {
                location: location.clone(),
                source,
            }
        })?;
        if !h.is_repairable() {
            return Err(RestoreConfigError::FatDamaged {
                location,
                problems: h.damage,
            });
        }
        (!h.is_clean()).then(|| h.describe())
    };
    let build = bank
        .boot_cfg
        .as_ref()
        .ok()
        .map(|c| c.build().to_string())
        .filter(|b| !b.is_empty());

    // The file as it is.
    let old_bytes = if exists {
        bootbank::read_file(&mut disk, bank, STATE)?.unwrap_or_default()
    } else {
        Vec::new()
    };
    let old_cfg = (!old_bytes.is_empty()).then(|| Config::from_state(&old_bytes, &location));
    let current = CurrentFile {
        state: match (&old_cfg, exists) {
            (_, false) => Current::Missing,
            (None, true) => Current::Empty,
            (Some(Err(_)), true) => Current::Unreadable,
            (Some(Ok(_)), true) => Current::Readable,
        },
        size: exists.then_some(old_bytes.len() as u64),
        sha256: exists.then(|| fix::sha256_hex(&old_bytes)),
        error: match &old_cfg {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        },
    };
    let old_cfg = old_cfg.and_then(Result::ok);

    // The source.
    let mut notes = Vec::new();
    let (new_bytes, mut source) = match &req.source {
        Source::Bank(n) => {
            let src = banks.iter().find(|b| b.partition == *n).ok_or_else(|| {
                RestoreConfigError::NotABank {
                    partition: *n,
                    banks: banks.iter().map(|b| b.partition).collect(),
                }
            })?;
            if *n == part {
                return Err(RestoreConfigError::SameBank { partition: *n });
            }
            if !has(src, STATE) {
                return Err(RestoreConfigError::SourceMissing { partition: *n });
            }
            let bytes = bootbank::read_file(&mut disk, src, STATE)?.unwrap_or_default();
            let src_build = src
                .boot_cfg
                .as_ref()
                .ok()
                .map(|c| c.build().to_string())
                .filter(|b| !b.is_empty());
            if src_build != build {
                // What an upgrade does itself: the new bank starts from the old bank's state.tgz.
                notes.push(format!(
                    "partition {n} runs build {}, partition {part} build {}: ESXi converts an older build's configuration at boot, as after an upgrade (which copies the old bank's state.tgz to the new bank)",
                    src_build.as_deref().unwrap_or("?"),
                    build.as_deref().unwrap_or("?")
                ));
            }
            let info = SourceInfo {
                kind: "bank",
                partition: Some(*n),
                path: None,
                build: src_build,
                release_level: None,
                uuid: None,
                other_members: Vec::new(),
                size: bytes.len() as u64,
                sha256: fix::sha256_hex(&bytes),
                encryption: Encryption::None,
                system_uuid: None,
            };
            (bytes, info)
        }
        Source::Bundle(path) => read_bundle(path)?,
    };
    let source_label = match &req.source {
        Source::Bank(n) => format!("{} /{STATE}", where_(*n)),
        Source::Bundle(p) => format!("{} > {STATE}", p.display()),
    };
    let new_cfg = Config::from_state(&new_bytes, &source_label).map_err(|source| {
        RestoreConfigError::SourceUnreadable {
            location: source_label.clone(),
            cause: source,
        }
    })?;
    source.encryption = new_cfg.encryption;
    source.system_uuid = system_uuid(&new_cfg);
    if new_cfg.encryption == Encryption::Tpm {
        notes.push(format!(
            "{source_label} is sealed by the host's TPM (mode {}): it is copied byte for byte, but its esx.conf cannot be shown or compared; only the host it was made on can open it",
            new_cfg.encryption_mode.as_deref().unwrap_or("?")
        ));
    }

    // The host's UUID: the first configuration on the disk that can be read, target first.
    let mut host: Option<(String, String)> = old_cfg
        .as_ref()
        .and_then(system_uuid)
        .map(|u| (u, location.clone()));
    if host.is_none() {
        for b in banks.iter().filter(|b| b.partition != part) {
            if !has(b, STATE) {
                continue;
            }
            let loc = format!("{} /{STATE}", where_(b.partition));
            let Ok(Some(bytes)) = bootbank::read_file(&mut disk, b, STATE) else {
                continue;
            };
            if let Some(u) = Config::from_state(&bytes, &loc)
                .ok()
                .as_ref()
                .and_then(system_uuid)
            {
                host = Some((u, loc));
                break;
            }
        }
    }
    if host.is_none() {
        notes.push(
            "no configuration on this disk can be read (missing, corrupt or TPM-sealed), so the host's UUID (/system/uuid in esx.conf) is not known and is not checked".to_string(),
        );
    }

    let mut checks = Vec::new();
    if let Source::Bundle(_) = &req.source {
        checks.push(release_check(&source, build.as_deref(), part, req.force)?);
        checks.push(uuid_check(&source, host.as_ref(), req.force)?);
        if let (Some(m), Some(s)) = (&source.uuid, &source.system_uuid)
            && !m.eq_ignore_ascii_case(s)
        {
            notes.push(format!(
                "the bundle's Manifest.txt says UUID={m}, its own esx.conf /system/uuid = \"{s}\""
            ));
        }
        if !source.other_members.is_empty() {
            notes.push(format!(
                "the bundle also holds {}: not used",
                source.other_members.join(", ")
            ));
        }
    } else if let (Some((h, from)), Some(s)) = (&host, &source.system_uuid)
        && !h.eq_ignore_ascii_case(s)
    {
        // Both banks of one disk: another host's configuration is worth a word, not a refusal.
        notes.push(format!("the source's /system/uuid is {s}, {from} says {h}"));
    }
    for c in &checks {
        if c.forced {
            notes.push(format!(
                "--force: the {} check ({}) is overridden",
                c.check.replace('_', " "),
                match c.verdict {
                    Verdict::Mismatch => "mismatch",
                    _ => "cannot be compared",
                }
            ));
        }
    }

    let esx = |c: &Config| {
        c.local
            .as_ref()
            .and_then(|l| l.require(ESX_CONF).ok())
            .map(<[u8]>::to_vec)
    };
    let new_esx_conf = esx(&new_cfg);
    let old_esx_conf = old_cfg.as_ref().and_then(esx);
    let diff = match &new_esx_conf {
        Some(n) => fix::unified_diff(old_esx_conf.as_deref().unwrap_or_default(), n, &location),
        None => String::new(),
    };
    let members = member_changes(old_cfg.as_ref(), &new_cfg);
    let method = if exists && old_bytes == new_bytes {
        notes.push(format!("{location} already holds these bytes"));
        WriteMethod::None
    } else if exists {
        WriteMethod::Replace
    } else {
        WriteMethod::Create
    };
    if let Some(l) = &fat_leftover {
        notes.push(format!(
            "the FAT holds what an interrupted write leaves ({l}): reclaimed first"
        ));
    }
    Ok(Plan {
        target: target.display().to_string(),
        partition: (!lone).then_some(part),
        bank_uuid: bank.uuid.clone(),
        location,
        file: STATE.to_string(),
        build,
        method,
        current,
        source,
        checks,
        members,
        diff,
        notes,
        fat_leftover,
        old_bytes,
        new_bytes,
        new_esx_conf,
        target_path: target.to_path_buf(),
        part,
    })
}
