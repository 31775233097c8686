//! Targets that are not disks: a directory holding a bank, or an archive read whole.

use super::BundleReport;
use super::bank_report;
use super::{InspectError, Report, Sourced, TargetKind};
use crate::esxi::bank::Bank;
use crate::esxi::bank::{self as bootbank};
use crate::esxi::bootcfg::BootCfg;
use crate::esxi::config::Config;
use crate::esxi::nextboot;
use crate::esxi::nextboot::Candidate;
use crate::format::archive::Tgz;
use crate::format::fat::FileInfo;
use std::path::Path;

/// A directory holding a copied or mounted bank.
pub(super) fn inspect_dir(
    dir: &Path,
    report: &mut Report,
) -> Result<Option<Sourced>, InspectError> {
    let io = |path: &Path, source| InspectError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    let boot_cfg_path = dir.join("boot.cfg");
    let state_path = ["state.tgz", "local.tgz"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file());
    if !boot_cfg_path.is_file() && state_path.is_none() {
        return Err(InspectError::NotEsxi(format!(
            "{}: directory holds neither boot.cfg nor state.tgz: not a bootbank",
            dir.display()
        )));
    }
    let mut build = None;
    if boot_cfg_path.is_file() {
        let bytes = std::fs::read(&boot_cfg_path).map_err(|e| io(&boot_cfg_path, e))?;
        let boot_cfg = BootCfg::parse(&bytes).map_err(bootbank::BootCfgUnread::from);
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let e = e.map_err(|e| io(dir, e))?;
            let m = e.metadata().map_err(|er| io(&e.path(), er))?;
            files.push(FileInfo {
                name: e.file_name().to_string_lossy().into_owned(),
                size: m.len(),
                modified: String::new(),
                is_dir: m.is_dir(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let has_system = files
            .iter()
            .any(|f| !f.is_dir && bootbank::is_payload(&f.name));
        let bank = Bank {
            partition: 0,
            uuid: String::new(),
            fat_type: String::new(),
            boot_cfg,
            files,
            has_system,
            byte_start: 0,
            byte_len: 0,
        };
        let verdict = nextboot::predict(&[Candidate {
            partition: 0,
            boot_cfg: bank.boot_cfg.as_ref().map_err(|e| e.clone()),
        }]);
        build = bank
            .boot_cfg
            .as_ref()
            .ok()
            .map(|c| (c.build().to_string(), "boot.cfg"));
        let mut br = bank_report(&bank, &verdict.banks[0], true);
        br.uuid = None;
        report.will_boot = verdict.will_boot();
        report.explanation = verdict.explanation.clone();
        report.banks.push(br);
    }
    let Some(state_path) = state_path else {
        return Ok(None);
    };
    let bytes = std::fs::read(&state_path).map_err(|e| io(&state_path, e))?;
    let label = state_path.display().to_string();
    Ok(Some(Sourced {
        config: Config::from_state(&bytes, &label)?,
        source: label,
        build,
    }))
}

/// A gzip'd tar given directly: a config bundle, a state.tgz, or a local.tgz.
pub(super) fn inspect_archive(
    bytes: &[u8],
    name: &str,
    report: &mut Report,
) -> Result<Sourced, InspectError> {
    let outer = Tgz::parse(bytes, &format!("archive {name}"))?;
    if outer.member("state.tgz").is_none() && outer.member("Manifest.txt").is_some() {
        return Err(InspectError::NotEsxi(format!(
            "config bundle {name}: holds no state.tgz (members: {})",
            outer.member_names()
        )));
    }
    if outer.member("state.tgz").is_some() {
        report.kind = TargetKind::ConfigBundle;
        if let Some(m) = outer.member("Manifest.txt") {
            let text = String::from_utf8_lossy(outer.data(m));
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            };
            report.bundle = Some(BundleReport {
                release_level: field("RELEASELEVEL="),
                uuid: field("UUID="),
            });
        }
        let label = format!("config bundle {name} > state.tgz");
        let cfg = Config::from_state(outer.require("state.tgz")?, &label)?;
        let build = report
            .bundle
            .as_ref()
            .and_then(|b| b.release_level.clone())
            .map(|b| (b, "Manifest.txt"));
        return Ok(Sourced {
            config: cfg,
            source: label,
            build,
        });
    }
    let is_local = outer.member(crate::esxi::config::ESX_CONF).is_some();
    report.kind = if is_local {
        TargetKind::LocalArchive
    } else {
        TargetKind::StateArchive
    };
    let label = format!(
        "{name} ({})",
        if is_local { "local.tgz" } else { "state.tgz" }
    );
    let cfg = Config::from_state(bytes, &label)?;
    Ok(Sourced {
        config: cfg,
        source: label,
        build: None,
    })
}
