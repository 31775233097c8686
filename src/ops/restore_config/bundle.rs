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
    use super::super::testutil::config_of;
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

    /// The release levels real bundles carry (the demo's 6.7 host, the real 7.0.2 host) and the
    /// 8.0U2 build of the installer sample: `VMware ESXi <version> build-<number>`.
    #[test]
    fn release_levels_give_the_version_before_build_and_the_number_after_it() {
        for (line, version, build) in [
            ("VMware ESXi 6.7.0 build-14320388", "6.7.0", 14320388),
            ("VMware ESXi 7.0.2 build-17867351", "7.0.2", 17867351),
            ("VMware ESXi 8.0.2 build-22380479", "8.0.2", 22380479),
            // Words split on any whitespace; what follows build-N is not read.
            ("  VMware ESXi\t7.0.2  build-17867351 \r", "7.0.2", 17867351),
            ("VMware ESXi 7.0.2 build-17867351 extra", "7.0.2", 17867351),
        ] {
            assert_eq!(
                parse_release_level(line),
                Some((version.to_string(), build)),
                "{line:?}"
            );
        }
        for line in [
            "",
            // No version word (one starting with a digit) before build-.
            "build-17867351",
            "VMware ESXi build-17867351",
            // A build that is not a number.
            "VMware ESXi 7.0.2 build-",
            "VMware ESXi 7.0.2 build-1786x351",
            // No build- word.
            "VMware ESXi 7.0.2",
        ] {
            assert_eq!(parse_release_level(line), None, "{line:?}");
        }
    }

    /// boot.cfg `build=` as the samples carry it: `4.1.0-260247` (an installed 4.1 bank),
    /// `8.0.2-0.0.22380479` (the 8.0U2 installer): the version before the first `-`, the
    /// number after the last `.`.
    #[test]
    fn boot_builds_give_the_version_before_the_dash_and_the_last_number() {
        for (value, version, build) in [
            ("4.1.0-260247", "4.1.0", 260247),
            ("8.0.2-0.0.22380479", "8.0.2", 22380479),
            ("7.0.2-0.0.17867351", "7.0.2", 17867351),
            (" 7.0.2-0.0.17867351\n", "7.0.2", 17867351),
        ] {
            assert_eq!(
                parse_boot_build(value),
                Some((version.to_string(), build)),
                "{value:?}"
            );
        }
        for value in ["", "8.0.2", "8.0.2-0.0.", "8.0.2-0.0.2238x479"] {
            assert_eq!(parse_boot_build(value), None, "{value:?}");
        }
        // The two forms of one build are equal, so the release check matches them.
        assert_eq!(
            parse_release_level("VMware ESXi 8.0.2 build-22380479"),
            parse_boot_build("8.0.2-0.0.22380479")
        );
    }

    const REAL_RELEASE: &str = "VMware ESXi 7.0.2 build-17867351";
    const REAL_BUILD: &str = "7.0.2-0.0.17867351";
    const REAL_UUID: &str = "5fb27665-83f4-b1f5-3e9f-000c29801686";

    /// A bundle's source as `read_bundle` fills it, with these Manifest.txt values.
    fn bundle(release_level: Option<&str>, uuid: Option<&str>) -> SourceInfo {
        SourceInfo {
            kind: "bundle",
            partition: None,
            path: Some("configBundle-esx01.tgz".into()),
            build: None,
            release_level: release_level.map(str::to_string),
            uuid: uuid.map(str::to_string),
            other_members: Vec::new(),
            size: 0,
            sha256: String::new(),
            encryption: Encryption::None,
            system_uuid: None,
        }
    }

    type Seen<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Verdict,
        bool,
    );

    fn seen(c: &Check) -> Seen<'_> {
        (
            c.check,
            c.bundle.as_deref(),
            c.host.as_deref(),
            c.host_from.as_deref(),
            c.verdict,
            c.forced,
        )
    }

    #[test]
    fn release_check_matches_refuses_or_is_forced() {
        let from = Some("partition 5 /boot.cfg");
        // The same version and build in both forms: a match, never forced.
        for force in [false, true] {
            let c = release_check(&bundle(Some(REAL_RELEASE), None), Some(REAL_BUILD), 5, force)
                .unwrap();
            assert_eq!(
                seen(&c),
                (
                    "release_level",
                    Some(REAL_RELEASE),
                    Some(REAL_BUILD),
                    from,
                    Verdict::Match,
                    false
                )
            );
        }

        // Another build: refused with both values, taken with --force.
        let other = "VMware ESXi 7.0.3 build-22348816";
        let e = release_check(&bundle(Some(other), None), Some(REAL_BUILD), 5, false).unwrap_err();
        assert!(matches!(
            &e,
            RestoreConfigError::ReleaseMismatch { release_level, partition: 5, bank_build }
                if release_level == other && bank_build == REAL_BUILD
        ));
        assert_eq!(
            e.to_string(),
            "the bundle is for VMware ESXi 7.0.3 build-22348816, but partition 5 boots build 7.0.2-0.0.17867351: ESXi's own restore refuses a bundle of another build (MismatchedBundle); --force to restore anyway"
        );
        let c = release_check(&bundle(Some(other), None), Some(REAL_BUILD), 5, true).unwrap();
        assert_eq!(
            seen(&c),
            (
                "release_level",
                Some(other),
                Some(REAL_BUILD),
                from,
                Verdict::Mismatch,
                true
            )
        );

        // The same build number under another version is another build.
        let e = release_check(
            &bundle(Some("VMware ESXi 7.0.3 build-17867351"), None),
            Some(REAL_BUILD),
            5,
            false,
        )
        .unwrap_err();
        assert!(matches!(e, RestoreConfigError::ReleaseMismatch { .. }), "{e}");
    }

    #[test]
    fn release_check_cannot_compare_without_both_sides() {
        let e = release_check(&bundle(None, None), Some(REAL_BUILD), 5, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot compare the bundle's release level (no RELEASELEVEL= line) with partition 5's build (7.0.2-0.0.17867351); --force to restore anyway"
        );
        let e = release_check(&bundle(Some(REAL_RELEASE), None), None, 6, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot compare the bundle's release level (VMware ESXi 7.0.2 build-17867351) with partition 6's build (no build= in boot.cfg); --force to restore anyway"
        );
        // Present but without a version and build-N: as unknown as missing.
        let e = release_check(&bundle(Some("VMware ESXi"), None), Some(REAL_BUILD), 5, false)
            .unwrap_err();
        assert!(
            matches!(
                &e,
                RestoreConfigError::BuildUnknown { release_level: Some(r), partition: 5, bank_build: Some(b) }
                    if r == "VMware ESXi" && b == REAL_BUILD
            ),
            "{e}"
        );
        let c = release_check(&bundle(None, None), None, 5, true).unwrap();
        assert_eq!(
            seen(&c),
            (
                "release_level",
                None,
                None,
                Some("partition 5 /boot.cfg"),
                Verdict::Unknown,
                true
            )
        );
    }

    #[test]
    fn uuid_check_matches_refuses_or_is_forced() {
        let host = (REAL_UUID.to_string(), "partition 5 /state.tgz".to_string());
        let from = Some("partition 5 /state.tgz");
        // Compared without regard to case; a match is never forced.
        let upper = REAL_UUID.to_ascii_uppercase();
        for force in [false, true] {
            let c = uuid_check(&bundle(None, Some(&upper)), Some(&host), force).unwrap();
            assert_eq!(
                seen(&c),
                (
                    "host_uuid",
                    Some(upper.as_str()),
                    Some(REAL_UUID),
                    from,
                    Verdict::Match,
                    false
                )
            );
        }

        let other = "52a4c1e6-3f0b-91d2-7c55-002590a1b2c0";
        let e = uuid_check(&bundle(None, Some(other)), Some(&host), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the bundle was made on host 52a4c1e6-3f0b-91d2-7c55-002590a1b2c0, but this host is 5fb27665-83f4-b1f5-3e9f-000c29801686 (/system/uuid in partition 5 /state.tgz): ESXi's own restore refuses another host's bundle (MismatchedBundle); --force to restore anyway"
        );
        let c = uuid_check(&bundle(None, Some(other)), Some(&host), true).unwrap();
        assert_eq!(
            seen(&c),
            (
                "host_uuid",
                Some(other),
                Some(REAL_UUID),
                from,
                Verdict::Mismatch,
                true
            )
        );
    }

    #[test]
    fn uuid_check_refuses_a_bundle_without_uuid_only_when_the_host_is_known() {
        let host = (REAL_UUID.to_string(), "partition 6 /state.tgz".to_string());
        let e = uuid_check(&bundle(None, None), Some(&host), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the bundle's Manifest.txt has no UUID= line, so it cannot be checked against this host (5fb27665-83f4-b1f5-3e9f-000c29801686); --force to restore anyway"
        );
        let c = uuid_check(&bundle(None, None), Some(&host), true).unwrap();
        assert_eq!(
            seen(&c),
            (
                "host_uuid",
                None,
                Some(REAL_UUID),
                Some("partition 6 /state.tgz"),
                Verdict::Unknown,
                true
            )
        );
        // No configuration on the disk can be read: not refused, and not forced either (the
        // plan's notes say the UUID is not checked).
        for uuid in [Some(REAL_UUID), None] {
            for force in [false, true] {
                let c = uuid_check(&bundle(None, uuid), None, force).unwrap();
                assert_eq!(
                    seen(&c),
                    ("host_uuid", uuid, None, None, Verdict::Unknown, false)
                );
            }
        }
    }

    #[test]
    fn system_uuid_is_the_trimmed_value_and_an_empty_one_is_none() {
        let uuid = |conf: &[u8]| system_uuid(&config_of(&[("etc/vmware/esx.conf", conf)]));
        assert_eq!(
            uuid(b"/system/uuid = \" 5fb27665-83f4-b1f5-3e9f-000c29801686 \"\n").as_deref(),
            Some(REAL_UUID)
        );
        assert_eq!(uuid(b"/system/uuid = \"  \"\n"), None);
        assert_eq!(uuid(b"/adv/Misc/HostName = \"esx01\"\n"), None);
    }
}
