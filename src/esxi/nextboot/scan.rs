//! The bootloader's scan: one bank's boot.cfg checked and its state moved on (`bank_scan`), and
//! the whole partition list scanned under each assumption the disk does not settle.

use super::Cands;

use crate::esxi::bootcfg::{BootCfg, StateSite};

/// The width of C `long` in the bootloader that runs, which decides how `atoi` reads a number
/// beyond 32 bits: 32 in the BIOS bootloader (ia32), 64 in the UEFI ones (x86-64, arm64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Uefi,
    Bios,
}

/// `atoi` of the bootloader's C library (`libc/standard.c`): `strtol` saturates at the range of
/// `long`, then the cast to `int` keeps the low 32 bits.
pub fn atoi(n: i128, fw: Firmware) -> i32 {
    match fw {
        Firmware::Bios => n.clamp(i32::MIN.into(), i32::MAX.into()) as i32,
        Firmware::Uefi => n.clamp(i64::MIN.into(), i64::MAX.into()) as i64 as i32,
    }
}

/// Which partitions a bootloader release scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// 7.0 and later (the published source, `get_boot_bank`): every partition in number order,
    /// the first 3 banks found.
    Current,
    /// 6.7U2 and 6.7U3 (reference section 3): every partition, the first 2 banks.
    V67u2,
    /// 6.7U1 and older (reference section 3): partitions 5 and 6 only.
    Old,
}

impl Release {
    pub(super) const ALL: [Release; 3] = [Release::Current, Release::V67u2, Release::Old];

    fn keeps(self) -> usize {
        match self {
            Release::Current => 3,
            Release::V67u2 | Release::Old => 2,
        }
    }

    fn looks_at(self, partition: u32) -> bool {
        // Partition 0 is a lone bank image: its number is unknown and it is always looked at.
        self != Release::Old || matches!(partition, 0 | 5 | 6)
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Release::Current => "7.0 and later (the first 3 banks on any partition)",
            Release::V67u2 => "6.7U2-U3 (the first 2 banks on any partition)",
            Release::Old => "6.7U1 and older (partitions 5 and 6 only)",
        }
    }
}

/// One set of answers to what the disk does not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Assume {
    pub(super) release: Release,
    pub(super) firmware: Firmware,
    /// Bit i: the i-th bank (in partition order) whose `build` the UEFI bootloader cannot be
    /// known to see is taken as having one.
    pub(super) builds: u32,
}

pub(super) const PRIMARY: Assume = Assume {
    release: Release::Current,
    firmware: Firmware::Uefi,
    builds: 0,
};

/// A bank the scan counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// `bootstate` as the bootloader reads it, and after the transition.
    pub state_before: i32,
    pub state: i32,
    /// `updated` as the bootloader compares it.
    pub updated: u32,
    pub valid: bool,
    pub reasons: Vec<String>,
    /// The byte the bootloader overwrites at boot: offset in boot.cfg and the new digit.
    pub write: Option<(usize, u8)>,
}

/// What `bank_scan` makes of one parsed boot.cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// Left out altogether, and not counted: why, in words.
    Dropped(String),
    Kept(Kept),
}

/// `bank_scan` for one bank whose boot.cfg parsed. `has_build_if_unknown` answers what the
/// UEFI bootloader sees after an emptied `build=` ([`BootCfg::build_cleared`]).
pub fn bank_scan(cfg: &BootCfg, fw: Firmware, has_build_if_unknown: bool) -> Scanned {
    let updated = atoi(cfg.number("updated"), fw) as u32;
    let state = atoi(cfg.number("bootstate"), fw);
    let quickboot = atoi(cfg.number("quickboot"), fw) != 0;
    let has_build = if cfg.build_cleared() && fw == Firmware::Uefi {
        has_build_if_unknown
    } else {
        !cfg.build().is_empty()
    };
    let mut valid = true;
    let mut reasons = Vec::new();
    if updated == 0 {
        valid = false;
        reasons.push(if cfg.number("updated") == 0 {
            "updated=0 (must be above 0)".to_string()
        } else {
            format!(
                "updated={} reads as 0 (must be above 0)",
                cfg.text("updated")
            )
        });
    }
    if !has_build {
        valid = false;
        reasons.push(if cfg.build_cleared() {
            "build= emptied after an earlier build= line".to_string()
        } else {
            "no build= line".to_string()
        });
    }
    let (mut new, mut upgrading) = match state {
        1 => (2, true),
        2 => (3, true),
        0 | 3 => (state, false),
        _ => {
            valid = false;
            (3, false)
        }
    };
    if quickboot {
        valid = false;
        upgrading = false;
        new = 3;
        reasons.push(format!("quickboot={} (must be 0)", cfg.text("quickboot")));
    }
    let failed_upgrade = upgrading && !valid;
    if failed_upgrade {
        new = 3;
    }
    let mut write = None;
    if new != state {
        let due = if quickboot {
            "quickboot is set, so the bootloader must set bootstate 3".to_string()
        } else if failed_upgrade {
            format!("bootstate {state} with a bad updated or build must become 3 at boot")
        } else if matches!(state, 1 | 2) {
            format!("bootstate {state} must become {new} at boot")
        } else {
            format!("bootstate {state} is not 0-3 and must become 3 at boot")
        };
        match cfg.state_site() {
            StateSite::Found { offset, byte } if (b'0'..=b'3').contains(&byte) => {
                write = Some((offset, b'0' + new as u8));
            }
            StateSite::Found { byte, .. } => {
                return Scanned::Dropped(format!(
                    "{due}, but the value of its first bootstate line starts with `{}`, and the bootloader can only overwrite a digit 0-3",
                    char::from(byte).escape_default()
                ));
            }
            StateSite::Missing { beyond: Some(_) } => {
                return Scanned::Dropped(format!(
                    "its bootstate line lies beyond byte 512, where the bootloader cannot update it ({due})"
                ));
            }
            StateSite::Missing { beyond: None } => {
                return Scanned::Dropped(match cfg.get("bootstate") {
                    Some(s) => format!(
                        "{due}, but line {} writes the key as `{}=`, and the bootloader's in-place update looks for the whole word `bootstate` at the start of a line",
                        s.line, s.written_key
                    ),
                    None => format!("{due}, but boot.cfg has no bootstate line to update"),
                });
            }
        }
    }
    if !(new == 0 || new == 2) {
        valid = false;
        reasons.insert(
            0,
            format!(
                "bootstate {} becomes {} at boot ({})",
                cfg.bootstate(),
                new,
                bootstate_meaning(new.into())
            ),
        );
    }
    Scanned::Kept(Kept {
        state_before: state,
        state: new,
        updated,
        valid,
        reasons,
        write,
    })
}

/// How one pass of the scan saw a bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    /// Not a partition this release looks at.
    Ignored,
    /// Never scanned: the bootloader already had all the banks it keeps.
    NotReached,
    /// boot.cfg missing or not parsable.
    Unreadable(String),
    Dropped(String),
    Kept(Kept),
}

/// One pass of `get_boot_bank` over banks in partition order.
pub(super) struct Pass {
    pub(super) seen: Vec<Seen>,
    pub(super) next: Option<usize>,
}

pub(super) fn unknown_builds(cands: &Cands<'_>) -> Vec<usize> {
    cands
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| c.as_ref().is_ok_and(|c| c.build_cleared()))
        .map(|(i, _)| i)
        .take(8)
        .collect()
}

pub(super) fn scan_all(cands: &Cands<'_>, a: Assume) -> Pass {
    let unknown = unknown_builds(cands);
    let mut seen = Vec::with_capacity(cands.len());
    let mut kept = 0usize;
    for (i, (partition, cfg)) in cands.iter().enumerate() {
        if !a.release.looks_at(*partition) {
            seen.push(Seen::Ignored);
            continue;
        }
        if kept >= a.release.keeps() {
            seen.push(Seen::NotReached);
            continue;
        }
        let s = match cfg {
            Err(e) => Seen::Unreadable(e.to_string()),
            Ok(cfg) => {
                let bit = unknown.iter().position(|&u| u == i);
                let has_build = bit.is_some_and(|b| a.builds & (1 << b) != 0);
                match bank_scan(cfg, a.firmware, has_build) {
                    Scanned::Dropped(why) => Seen::Dropped(why),
                    Scanned::Kept(k) => {
                        kept += 1;
                        Seen::Kept(k)
                    }
                }
            }
        };
        seen.push(s);
    }
    let next = auto_select(&seen, None);
    Pass { seen, next }
}

/// `bank_auto_select`: the valid bank with the largest `updated`; the first found keeps a tie.
pub(super) fn auto_select(seen: &[Seen], except: Option<usize>) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (i, s) in seen.iter().enumerate() {
        if let Seen::Kept(k) = s
            && k.valid
            && Some(i) != except
            && best.is_none_or(|(_, u)| u == 0 || k.updated > u)
        {
            best = Some((i, k.updated));
        }
    }
    best.map(|(i, _)| i)
}

/// Every set of answers worth trying for these banks.
pub(super) fn assumptions(cands: &Cands<'_>) -> Vec<Assume> {
    let lone = cands.iter().any(|(p, _)| *p == 0);
    let k = unknown_builds(cands).len();
    let mut out = Vec::new();
    for release in Release::ALL {
        if lone && release != Release::Current {
            continue;
        }
        for firmware in [Firmware::Uefi, Firmware::Bios] {
            let combos = if firmware == Firmware::Uefi {
                1u32 << k
            } else {
                1
            };
            for builds in 0..combos {
                out.push(Assume {
                    release,
                    firmware,
                    builds,
                });
            }
        }
    }
    out
}

/// The boot-time state transition for a state 0-3 or any other value: 1 -> 2, 2 -> 3, 0 and 3
/// stay, anything else -> 3.
pub fn transition(bootstate: i64) -> i64 {
    match bootstate {
        0 => 0,
        1 => 2,
        2 => 3,
        _ => 3,
    }
}

/// Meaning of a bootstate digit, for people.
pub fn bootstate_meaning(bootstate: i64) -> &'static str {
    match bootstate {
        0 => "valid",
        1 => "upgrading, not yet tried",
        2 => "dirty, tried once and not confirmed",
        3 => "invalid",
        _ => "unknown value, treated as invalid",
    }
}
