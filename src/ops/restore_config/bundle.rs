//! A configuration bundle read (its state.tgz and Manifest.txt's values), and the checks ESXi's
//! own restore makes of it: the release level against the bank's build, the bundle's UUID
//! against the host's `/system/uuid`.

use super::{Check, MANIFEST, RestoreConfigError, STATE, SourceInfo, Verdict};
use crate::esxi::config::Config;
use crate::format::archive::Tgz;
use crate::format::envelope::Encryption;
use crate::ops::fix;
use std::path::Path;

/// `/system/uuid` of a decoded configuration.
pub(super) fn system_uuid(cfg: &Config) -> Option<String> {
    cfg.esx_conf
        .as_ref()
        .and_then(|c| c.get("/system/uuid"))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
}

/// Reads a configuration bundle: its state.tgz (the bytes written) and Manifest.txt's values.
pub(super) fn read_bundle(path: &Path) -> Result<(Vec<u8>, SourceInfo), RestoreConfigError> {
    let bytes = std::fs::read(path).map_err(|cause| RestoreConfigError::BundleIo {
        path: path.to_path_buf(),
        cause,
    })?;
    let label = format!("bundle {}", path.display());
    let outer = Tgz::parse(&bytes, &label).map_err(|cause| RestoreConfigError::NotABundle {
        path: path.to_path_buf(),
        cause,
    })?;
    let missing = |what: &'static str| RestoreConfigError::BundleIncomplete {
        path: path.to_path_buf(),
        missing: what,
        members: outer.member_names(),
    };
    let manifest = outer
        .member(MANIFEST)
        .filter(|m| m.is_file())
        .ok_or_else(|| missing(MANIFEST))?;
    let state = outer
        .member(STATE)
        .filter(|m| m.is_file())
        .ok_or_else(|| missing(STATE))?;
    let text = String::from_utf8_lossy(outer.data(manifest)).into_owned();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix(key))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let state = outer.data(state).to_vec();
    let info = SourceInfo {
        kind: "bundle",
        partition: None,
        path: Some(path.display().to_string()),
        build: None,
        release_level: field("RELEASELEVEL="),
        uuid: field("UUID="),
        other_members: outer
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|n| n != MANIFEST && n != STATE)
            .collect(),
        size: state.len() as u64,
        sha256: fix::sha256_hex(&state),
        encryption: Encryption::None,
        system_uuid: None,
    };
    Ok((state, info))
}

/// The version and build number of a `RELEASELEVEL=` value, `VMware ESXi 7.0.3 build-22348816`.
pub fn parse_release_level(s: &str) -> Option<(String, u64)> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with("build-"))?;
    let build = words[at].strip_prefix("build-")?.parse().ok()?;
    let version = words[..at]
        .iter()
        .rev()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    Some((version.to_string(), build))
}

/// The version and build number of a boot.cfg `build=` value, `7.0.3-0.0.22348816`.
pub fn parse_boot_build(s: &str) -> Option<(String, u64)> {
    let (version, rest) = s.trim().split_once('-')?;
    let build = rest.rsplit('.').next()?.parse().ok()?;
    Some((version.to_string(), build))
}

pub(super) fn release_check(
    source: &SourceInfo,
    bank_build: Option<&str>,
    partition: u32,
    force: bool,
) -> Result<Check, RestoreConfigError> {
    let rl = source.release_level.clone();
    let verdict = match (
        rl.as_deref().and_then(parse_release_level),
        bank_build.and_then(parse_boot_build),
    ) {
        (Some(a), Some(b)) if a == b => Verdict::Match,
        (Some(_), Some(_)) => Verdict::Mismatch,
        _ => Verdict::Unknown,
    };
    if !force {
        match verdict {
            Verdict::Match => {}
            Verdict::Mismatch => {
                return Err(RestoreConfigError::ReleaseMismatch {
                    release_level: rl.unwrap_or_default(),
                    partition,
                    bank_build: bank_build.unwrap_or_default().to_string(),
                });
            }
            Verdict::Unknown => {
                return Err(RestoreConfigError::BuildUnknown {
                    release_level: rl,
                    partition,
                    bank_build: bank_build.map(str::to_string),
                });
            }
        }
    }
    Ok(Check {
        check: "release_level",
        bundle: rl,
        host: bank_build.map(str::to_string),
        host_from: Some(format!("partition {partition} /boot.cfg")),
        verdict,
        forced: force && verdict != Verdict::Match,
    })
}

pub(super) fn uuid_check(
    source: &SourceInfo,
    host: Option<&(String, String)>,
    force: bool,
) -> Result<Check, RestoreConfigError> {
    let verdict = match (&source.uuid, host) {
        (Some(b), Some((h, _))) if b.eq_ignore_ascii_case(h) => Verdict::Match,
        (Some(_), Some(_)) => Verdict::Mismatch,
        _ => Verdict::Unknown,
    };
    if !force {
        match (verdict, &source.uuid, host) {
            (Verdict::Mismatch, Some(b), Some((h, from))) => {
                return Err(RestoreConfigError::UuidMismatch {
                    bundle_uuid: b.clone(),
                    host_uuid: h.clone(),
                    host_from: from.clone(),
                });
            }
            (Verdict::Unknown, None, Some((h, _))) => {
                return Err(RestoreConfigError::UuidUnknown {
                    host_uuid: h.clone(),
                });
            }
            _ => {}
        }
    }
    Ok(Check {
        check: "host_uuid",
        bundle: source.uuid.clone(),
        host: host.map(|h| h.0.clone()),
        host_from: host.map(|h| h.1.clone()),
        verdict,
        // An unknown host UUID (nothing readable) is said in the notes, not forced.
        forced: force
            && (verdict == Verdict::Mismatch || (source.uuid.is_none() && host.is_some())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_compare_by_version_and_build_number() {
        assert_eq!(
            parse_release_level("VMware ESXi 7.0.3 build-22348816"),
            Some(("7.0.3".to_string(), 22348816))
        );
        assert_eq!(
            parse_boot_build("7.0.3-0.0.22348816"),
            Some(("7.0.3".to_string(), 22348816))
        );
        assert_eq!(
            parse_boot_build("6.7.0-0.0.14320388"),
            Some(("6.7.0".to_string(), 14320388))
        );
        assert_eq!(parse_release_level("VMware ESXi"), None);
        assert_eq!(parse_boot_build("latest"), None);
    }
}
