//! Which bank boots next, decided the way VMware's bootloader decides it (reference section 3;
//! esx-boot `safeboot/bootbank.c` and `safeboot/config.c`, read for facts only, no code copied).
//!
//! For each partition in number order the bootloader scans the bank (`bank_scan`):
//! 1. boot.cfg must parse (`bank_get_config`), else the bank is dropped: it is not counted.
//! 2. `updated` is stored unsigned (32 bits, `bootbank_t`): `-1` is 4294967295. It must not be
//!    0; `build` must be non-empty.
//! 3. The state transition: 1 -> 2, 2 -> 3, 0 and 3 stay, any other value -> 3 (and the bank is
//!    invalid); `quickboot` set -> 3 (invalid); an upgrading bank (1 or 2) that is invalid
//!    otherwise -> 3.
//! 4. When the state changes, the new digit is written in place (`bank_set_bootstate`): if the
//!    first `bootstate` line lies beyond byte 512 or its value does not start with 0-3, the
//!    write cannot be made and the bank is dropped; a failed disk write is ignored.
//! 5. The bank is valid when the new state is 0 or 2 and nothing above made it invalid.
//!
//! The scan keeps the first 3 banks it finds (`get_boot_bank`, `BOOTBANKS_NR`; dropped banks
//! do not count, later partitions are never looked at), and the valid bank with the largest
//! `updated` boots, the first found on a tie (`bank_auto_select`).
//!
//! Facts the disk does not tell are not guessed: the prediction is made under every possible
//! answer and, when the answers differ, says the next boot is unknown and why: the bootloader
//! release (6.7U2-U3 keep 2 banks, 6.7U1 and older look at partitions 5 and 6 only: reference
//! section 3, not in the published source), the firmware (`long` is 32 bits in the BIOS
//! bootloader, 64 in the UEFI ones, which changes numbers beyond 32 bits), and what the UEFI
//! bootloader sees as `build` after `build=` is emptied again (see
//! [`BootCfg::build_cleared`]).

use crate::esxi::bootcfg::{BootCfg, StateSite};
use serde::Serialize;

/// What the selection needs to know about one bank.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub partition: u32,
    /// `Err(reason)` when boot.cfg is missing or does not parse: the bank is skipped.
    pub boot_cfg: Result<&'a BootCfg, String>,
}

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
    const ALL: [Release; 3] = [Release::Current, Release::V67u2, Release::Old];

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

    fn describe(self) -> &'static str {
        match self {
            Release::Current => "7.0 and later (the first 3 banks on any partition)",
            Release::V67u2 => "6.7U2-U3 (the first 2 banks on any partition)",
            Release::Old => "6.7U1 and older (partitions 5 and 6 only)",
        }
    }
}

/// One set of answers to what the disk does not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assume {
    release: Release,
    firmware: Firmware,
    /// Bit i: the i-th bank (in partition order) whose `build` the UEFI bootloader cannot be
    /// known to see is taken as having one.
    builds: u32,
}

const PRIMARY: Assume = Assume {
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
enum Seen {
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
struct Pass {
    seen: Vec<Seen>,
    next: Option<usize>,
}

type Cands<'a> = [(u32, Result<&'a BootCfg, String>)];

fn unknown_builds(cands: &Cands) -> Vec<usize> {
    cands
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| c.as_ref().is_ok_and(|c| c.build_cleared()))
        .map(|(i, _)| i)
        .take(8)
        .collect()
}

fn scan_all(cands: &Cands, a: Assume) -> Pass {
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
            Err(e) => Seen::Unreadable(e.clone()),
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
fn auto_select(seen: &[Seen], except: Option<usize>) -> Option<usize> {
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
fn assumptions(cands: &Cands) -> Vec<Assume> {
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

/// The verdict on one bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BankVerdict {
    pub partition: u32,
    /// `bootstate` after the transition the bootloader applies at boot (None when the bank is
    /// skipped or never looked at).
    pub bootstate_after: Option<i64>,
    pub valid: bool,
    /// Why the bank is not valid, in words; empty when valid.
    pub invalid_reasons: Vec<String>,
    pub boots_next: bool,
    /// `updated` as the bootloader compares it, unsigned 32-bit (None when boot.cfg does not
    /// parse, or when the firmware decides).
    pub updated_at_boot: Option<u64>,
    /// Why the bootloader leaves the bank out altogether (it is then not counted among the 3
    /// it keeps), or never looks at it; None when it counts it.
    pub skipped_reason: Option<String>,
    /// What the bootloader reads differently from what boot.cfg seems to say, in words.
    pub notes: Vec<String>,
    /// The byte the bootloader overwrites at the next boot: offset in boot.cfg, new digit.
    #[serde(skip)]
    pub state_write: Option<(usize, u8)>,
}

/// The whole prediction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    pub banks: Vec<BankVerdict>,
    /// The bank that boots next; None when none does, or when that is unknown (see `unknown`).
    pub next_boot_partition: Option<u32>,
    /// Why the next boot cannot be told from the disk alone; None when it can.
    pub unknown: Option<String>,
    /// The surprising parts of the outcome, in words (skipped banks, keys the bootloader reads
    /// differently, ties, what is unknown).
    pub explanation: Vec<String>,
}

impl Prediction {
    /// Whether a bank boots: None when that is unknown.
    pub fn will_boot(&self) -> Option<bool> {
        match self.unknown {
            Some(_) => None,
            None => Some(self.next_boot_partition.is_some()),
        }
    }
}

fn sorted<'a>(candidates: &[Candidate<'a>]) -> Vec<(u32, Result<&'a BootCfg, String>)> {
    let mut v: Vec<_> = candidates
        .iter()
        .map(|c| (c.partition, c.boot_cfg.clone()))
        .collect();
    v.sort_by_key(|(p, _)| *p);
    v
}

fn name(p: u32) -> String {
    if p == 0 {
        "this bank".to_string()
    } else {
        format!("partition {p}")
    }
}

fn show(p: Option<u32>) -> String {
    match p {
        Some(p) => format!("{} boots", name(p)),
        None => "no bank boots".to_string(),
    }
}

/// What the bootloader reads differently from what boot.cfg seems to say.
pub fn notes(cfg: &BootCfg) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["build", "updated", "bootstate", "quickboot"] {
        if let Some(s) = cfg.get(key)
            && s.by_prefix()
        {
            out.push(format!(
                "line {}: `{}={}` sets {key}: the bootloader takes any leading part of a key for the key (tried in the order build, updated, bootstate, quickboot)",
                s.line, s.written_key, s.text
            ));
        }
    }
    for h in cfg.hidden() {
        if !matches!(h.key, "build" | "updated" | "bootstate" | "quickboot") {
            continue;
        }
        let now = match cfg.get(h.key) {
            Some(s) => format!("{} is `{}` from line {}", h.key, s.text, s.line),
            None if h.key == "build" => "the bank has no build".to_string(),
            None => format!("{} stays 0", h.key),
        };
        out.push(format!(
            "line {}: `{}` is ignored: a space before `=` hides the key from the bootloader, so {now}",
            h.line, h.text
        ));
    }
    let wide = |key: &str| {
        let n = cfg.number(key);
        let (u, b) = (atoi(n, Firmware::Uefi), atoi(n, Firmware::Bios));
        (n, u, b)
    };
    let (n, u, b) = wide("updated");
    if n < 0 || n > i128::from(i32::MAX) {
        let text = cfg.text("updated");
        if u == b {
            out.push(format!(
                "updated={text} is read as the unsigned number {}{}",
                u as u32,
                if u as u32 == u32::MAX {
                    ", the largest possible"
                } else {
                    ""
                }
            ));
        } else {
            out.push(format!(
                "updated={text} is beyond 32 bits: the UEFI bootloader reads {}, the BIOS one {}",
                u as u32, b as u32
            ));
        }
    }
    for key in ["bootstate", "quickboot"] {
        let (_, u, b) = wide(key);
        let differs = if key == "quickboot" {
            (u != 0) != (b != 0)
        } else {
            u != b
        };
        if differs {
            out.push(format!(
                "{key}={} is beyond 32 bits: the UEFI bootloader reads {u}, the BIOS one {b}",
                cfg.text(key)
            ));
        }
    }
    if cfg.build_cleared() {
        out.push(format!(
            "line {}: build= is empty after an earlier build= line: the BIOS bootloader then has no build; what the UEFI one reads is unknown (the empty value clears only half of the stored text pointer)",
            cfg.get("build").map(|s| s.line).unwrap_or(0)
        ));
    }
    if let (StateSite::Found { offset, .. }, Some(w)) = (cfg.state_site(), cfg.get("bootstate"))
        && w.offset != offset
    {
        out.push(format!(
            "the bootloader reads bootstate from line {}, but when it changes the state at boot it overwrites the first bootstate line (byte {offset})",
            w.line
        ));
    }
    if let Some(e) = cfg.loader_error() {
        out.push(format!(
            "mboot, which loads the bank once it is chosen, cannot parse this boot.cfg ({e}): if this bank is chosen the boot stops with a configuration error"
        ));
    }
    out
}

/// Predicts the next boot. Candidates may come in any order; they are considered in partition
/// number order as the bootloader does.
pub fn predict(candidates: &[Candidate<'_>]) -> Prediction {
    let cands = sorted(candidates);
    let primary = scan_all(&cands, PRIMARY);
    let next_of = |p: &Pass| p.next.map(|i| cands[i].0);
    let runs: Vec<(Assume, Option<u32>)> = assumptions(&cands)
        .into_iter()
        .map(|a| (a, next_of(&scan_all(&cands, a))))
        .collect();
    let primary_next = next_of(&primary);
    let unknown = runs
        .iter()
        .any(|(_, n)| *n != primary_next)
        .then(|| describe_unknown(&cands, &runs));

    let mut banks = Vec::with_capacity(cands.len());
    let mut explanation = Vec::new();
    let kept_parts: Vec<u32> = primary
        .seen
        .iter()
        .zip(&cands)
        .filter(|(s, _)| matches!(s, Seen::Kept(_)))
        .map(|(_, (p, _))| *p)
        .collect();
    for (i, ((partition, cfg), seen)) in cands.iter().zip(&primary.seen).enumerate() {
        let cfg_ok = cfg.as_ref().ok();
        let bank_notes = cfg_ok.map(|c| notes(c)).unwrap_or_default();
        let updated_at_boot = cfg_ok.and_then(|c| {
            let n = c.number("updated");
            let u = atoi(n, Firmware::Uefi) as u32;
            (u == atoi(n, Firmware::Bios) as u32).then_some(u64::from(u))
        });
        let mut v = BankVerdict {
            partition: *partition,
            bootstate_after: None,
            valid: false,
            invalid_reasons: Vec::new(),
            boots_next: unknown.is_none() && primary.next == Some(i),
            updated_at_boot,
            skipped_reason: None,
            notes: bank_notes.clone(),
            state_write: None,
        };
        let skip = |why: String, v: &mut BankVerdict, ex: &mut Vec<String>| {
            ex.push(format!("{} is skipped: {why}", name(*partition)));
            v.invalid_reasons.push(why.clone());
            v.skipped_reason = Some(why);
        };
        match seen {
            Seen::Ignored => {
                // Only other releases ignore partitions; the primary one looks at all.
                v.skipped_reason = Some("not a partition this bootloader looks at".into());
                v.invalid_reasons.push("not looked at".into());
            }
            Seen::NotReached => {
                let why = format!(
                    "the bootloader stops after the first {} banks it finds ({})",
                    kept_parts.len(),
                    kept_parts
                        .iter()
                        .map(|p| format!("partition {p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                explanation.push(format!("{} is not looked at: {why}", name(*partition)));
                v.invalid_reasons.push(format!("not looked at: {why}"));
                v.skipped_reason = Some(format!("not looked at: {why}"));
            }
            Seen::Unreadable(why) => skip(why.clone(), &mut v, &mut explanation),
            Seen::Dropped(why) => skip(why.clone(), &mut v, &mut explanation),
            Seen::Kept(k) => {
                v.bootstate_after = Some(k.state.into());
                v.valid = k.valid;
                v.invalid_reasons = k.reasons.clone();
                v.state_write = k.write;
            }
        }
        if !matches!(seen, Seen::NotReached | Seen::Ignored) {
            for n in &bank_notes {
                explanation.push(format!("{}: {n}", name(*partition)));
            }
        }
        banks.push(v);
    }
    if unknown.is_none()
        && let Some(w) = primary.next
        && let Seen::Kept(best) = &primary.seen[w]
    {
        let tied: Vec<u32> = primary
            .seen
            .iter()
            .zip(&cands)
            .enumerate()
            .filter(|(i, (s, _))| {
                *i != w && matches!(s, Seen::Kept(k) if k.valid && k.updated == best.updated)
            })
            .map(|(_, (_, (p, _)))| *p)
            .collect();
        if !tied.is_empty() {
            explanation.push(format!(
                "{} and {} have the same updated ({}): the bootloader keeps the bank it found first, partition {}",
                name(cands[w].0),
                tied.iter()
                    .map(|p| name(*p))
                    .collect::<Vec<_>>()
                    .join(" and "),
                best.updated,
                cands[w].0
            ));
        }
    }
    if let Some(u) = &unknown {
        explanation.push(u.clone());
    }
    Prediction {
        banks,
        next_boot_partition: if unknown.is_some() {
            None
        } else {
            primary_next
        },
        unknown,
        explanation,
    }
}

fn describe_unknown(cands: &Cands, runs: &[(Assume, Option<u32>)]) -> String {
    let find = |a: Assume| runs.iter().find(|(b, _)| *b == a).map(|(_, n)| *n);
    let mut parts = Vec::new();
    let by_release: Vec<(Release, Option<u32>)> = Release::ALL
        .iter()
        .filter_map(|&r| {
            find(Assume {
                release: r,
                ..PRIMARY
            })
            .map(|n| (r, n))
        })
        .collect();
    if by_release.iter().any(|(_, n)| *n != by_release[0].1) {
        parts.push(format!(
            "it depends on the bootloader's release, which the banks do not record: {}",
            by_release
                .iter()
                .map(|(r, n)| format!("with {}, {}", r.describe(), show(*n)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let uefi = find(PRIMARY).flatten();
    let bios = find(Assume {
        firmware: Firmware::Bios,
        ..PRIMARY
    })
    .flatten();
    if uefi != bios {
        parts.push(format!(
            "it depends on the firmware: a number in boot.cfg lies beyond 32 bits, which the UEFI bootloader (64-bit) and the BIOS one (32-bit) read differently: with UEFI {}, with BIOS {}",
            show(uefi),
            show(bios)
        ));
    }
    let unknown = unknown_builds(cands);
    let with_builds: Vec<Option<u32>> = runs
        .iter()
        .filter(|(a, _)| a.release == Release::Current && a.firmware == Firmware::Uefi)
        .map(|(_, n)| *n)
        .collect();
    if with_builds.iter().any(|n| *n != with_builds[0]) {
        let mut outcomes: Vec<String> = with_builds.iter().map(|n| show(*n)).collect();
        outcomes.sort();
        outcomes.dedup();
        parts.push(format!(
            "with UEFI it depends on what the bootloader reads as the build of {} (build= emptied after a build= line): {}",
            unknown
                .iter()
                .map(|&i| name(cands[i].0))
                .collect::<Vec<_>>()
                .join(" and "),
            outcomes.join(" or ")
        ));
    }
    if parts.is_empty() {
        parts.push(
            "the bootloader's release and the firmware decide together (6.7U2-U3 or older, BIOS or UEFI)"
                .to_string(),
        );
    }
    format!(
        "the next boot cannot be predicted from the disk alone: {}",
        parts.join("; ")
    )
}

/// What Shift+R at boot ("VMware Hypervisor Recovery", answered Y) does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShiftR {
    /// The bank that boots after it; None when none does or when that is unknown.
    pub boots: Option<u32>,
    /// What the bootloader does, in words.
    pub explanation: String,
}

/// Shift+R, pressed while mboot loads the bank chosen at boot: mboot returns to safeboot, which
/// scans every bank again (`get_boot_bank` with `shift_r`, on the files as the first scan
/// rewrote them, so each state change happens a second time), takes the default bank again
/// and, when at least two banks are valid, overwrites its state with 3 and selects again
/// (`bank_kill`); with fewer it says "No alternate hypervisor to roll back to", and when the
/// write is impossible "System has failed to roll back", and boots the default bank.
pub fn shift_r(candidates: &[Candidate<'_>]) -> ShiftR {
    let cands = sorted(candidates);
    let primary = shift_r_under(&cands, PRIMARY);
    let all: Vec<Option<u32>> = assumptions(&cands)
        .into_iter()
        .map(|a| shift_r_under(&cands, a).boots)
        .collect();
    if all.iter().any(|b| *b != primary.boots) {
        return ShiftR {
            boots: None,
            explanation: "what Shift+R boots cannot be predicted from the disk alone: it depends on the bootloader's release or the firmware (see the next boot)".to_string(),
        };
    }
    primary
}

fn shift_r_under(cands: &Cands, a: Assume) -> ShiftR {
    let first = scan_all(cands, a);
    if first.next.is_none() {
        return ShiftR {
            boots: None,
            explanation: "no bank is valid, so nothing loads and Shift+R never comes".to_string(),
        };
    }
    // The files as the first scan left them.
    let after: Vec<Result<BootCfg, String>> = cands
        .iter()
        .zip(&first.seen)
        .map(|((_, cfg), seen)| match (cfg, seen) {
            (Ok(c), Seen::Kept(k)) => match k.write {
                Some((at, digit)) => {
                    let mut b = c.bytes().to_vec();
                    b[at] = digit;
                    BootCfg::parse(&b).map_err(|e| e.to_string())
                }
                None => Ok((*c).clone()),
            },
            (Ok(c), _) => Ok((*c).clone()),
            (Err(e), _) => Err(e.clone()),
        })
        .collect();
    let again: Vec<(u32, Result<&BootCfg, String>)> = cands
        .iter()
        .zip(&after)
        .map(|((p, _), c)| (*p, c.as_ref().map_err(|e| e.clone())))
        .collect();
    let second = scan_all(&again, a);
    let Some(d) = second.next else {
        return ShiftR {
            boots: None,
            explanation: "after Shift+R the bootloader scans the banks again and finds none valid"
                .to_string(),
        };
    };
    let dp = cands[d].0;
    let valid = second
        .seen
        .iter()
        .filter(|s| matches!(s, Seen::Kept(k) if k.valid))
        .count();
    let moved = if Some(d) != first.next {
        format!(
            " ({} was tried at the first scan and its state moved on at the second)",
            name(cands[first.next.unwrap_or(d)].0)
        )
    } else {
        String::new()
    };
    if valid < 2 {
        return ShiftR {
            boots: Some(dp),
            explanation: format!(
                "the bootloader scans the banks again, finds only {} valid{moved} and says \"No alternate hypervisor to roll back to\"; {} boots",
                name(dp),
                name(dp)
            ),
        };
    }
    // bank_kill writes 3 into the default bank's file as the second scan left it.
    let mut bytes = after[d]
        .as_ref()
        .map(|c| c.bytes().to_vec())
        .unwrap_or_default();
    if let Seen::Kept(Kept {
        write: Some((at, digit)),
        ..
    }) = &second.seen[d]
    {
        bytes[*at] = *digit;
    }
    let writable = BootCfg::parse(&bytes)
        .ok()
        .and_then(|c| match c.state_site() {
            StateSite::Found { offset, byte } if (b'0'..=b'3').contains(&byte) => Some(offset),
            _ => None,
        });
    if writable.is_none() {
        return ShiftR {
            boots: Some(dp),
            explanation: format!(
                "the bootloader cannot write bootstate 3 into {}'s boot.cfg (no bootstate line with a digit 0-3 in its first 512 bytes) and says \"System has failed to roll back\"; {} boots again",
                name(dp),
                name(dp)
            ),
        };
    }
    let to = auto_select(&second.seen, Some(d)).map(|i| cands[i].0);
    ShiftR {
        boots: to,
        explanation: format!(
            "{} gets bootstate 3{moved} and the bootloader selects again: {}",
            name(dp),
            show(to)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> BootCfg {
        BootCfg::parse(text.as_bytes()).unwrap()
    }

    fn owned(banks: &[(u32, &str)]) -> Vec<(u32, Result<BootCfg, String>)> {
        banks
            .iter()
            .map(|(p, t)| (*p, BootCfg::parse(t.as_bytes()).map_err(|e| e.to_string())))
            .collect()
    }

    fn cands(o: &[(u32, Result<BootCfg, String>)]) -> Vec<Candidate<'_>> {
        o.iter()
            .map(|(p, b)| Candidate {
                partition: *p,
                boot_cfg: b.as_ref().map_err(|e| e.clone()),
            })
            .collect()
    }

    fn run(banks: &[(u32, &str)]) -> Prediction {
        predict(&cands(&owned(banks)))
    }

    fn bank(p: &Prediction, n: u32) -> &BankVerdict {
        p.banks.iter().find(|b| b.partition == n).unwrap()
    }

    fn long_title() -> String {
        format!("title={}\n", "x".repeat(520))
    }

    #[test]
    fn transitions() {
        assert_eq!(
            [0, 1, 2, 3, 4, -1, 9].map(transition),
            [0, 2, 3, 3, 3, 3, 3]
        );
    }

    #[test]
    fn atoi_by_firmware() {
        assert_eq!(atoi(-1, Firmware::Uefi), -1);
        assert_eq!(atoi(4294967295, Firmware::Uefi), -1);
        assert_eq!(atoi(4294967295, Firmware::Bios), i32::MAX);
        assert_eq!(atoi(4294967296, Firmware::Uefi), 0);
        assert_eq!(atoi(1 << 100, Firmware::Uefi), -1);
        assert_eq!(atoi(-(1 << 100), Firmware::Bios), i32::MIN);
    }

    /// The issue's four cases, one table: (banks, next boot, text expected in the explanation).
    #[test]
    fn the_issue_cases() {
        let beyond = format!("{}build=b\nupdated=9\nbootstate=1\n", long_title());
        type Case<'a> = (Vec<(u32, &'a str)>, Option<u32>, &'a str);
        let table: Vec<Case> = vec![
            (
                vec![(5, "build=a\nupdated=-1\n"), (6, "build=b\nupdated=9\n")],
                Some(5),
                "4294967295",
            ),
            (
                vec![(5, "build=a\nupdated=3\n"), (6, "build=b\nup=9\n")],
                Some(6),
                "`up=9` sets updated",
            ),
            (
                vec![(5, "build=a\nupdated=3\n"), (6, "build=b\nupdated = 7\n")],
                Some(5),
                "a space before `=` hides the key",
            ),
            (
                vec![(5, "build=a\nupdated=3\n"), (6, &beyond)],
                Some(5),
                "partition 6 is skipped: its bootstate line lies beyond byte 512, where the bootloader cannot update it",
            ),
        ];
        for (banks, next, why) in table {
            let p = run(&banks);
            assert_eq!(p.next_boot_partition, next, "{banks:?}: {p:#?}");
            assert_eq!(p.unknown, None);
            assert!(
                p.explanation.iter().any(|e| e.contains(why)),
                "{why}: {:#?}",
                p.explanation
            );
        }
    }

    #[test]
    fn fresh_install_empty_bank_has_larger_updated() {
        let p = run(&[
            (5, "build=7.0.3-1\nupdated=1\nbootstate=0\n"),
            (6, "build=7.0.3-1\nupdated=2\nbootstate=3\n"),
        ]);
        assert_eq!(p.next_boot_partition, Some(5));
        assert!(!p.banks[1].valid);
        assert!(p.explanation.is_empty(), "{:?}", p.explanation);
    }

    #[test]
    fn upgrading_bank_is_tried_once_then_dropped() {
        let upgrading = run(&[
            (5, "build=a\nupdated=1\nbootstate=0\n"),
            (6, "build=b\nupdated=2\nbootstate=1\n"),
        ]);
        assert_eq!(upgrading.next_boot_partition, Some(6));
        assert_eq!(upgrading.banks[1].bootstate_after, Some(2));
        assert_eq!(upgrading.banks[1].state_write, Some((28, b'2')));
        let dirty = run(&[
            (5, "build=a\nupdated=1\nbootstate=0\n"),
            (6, "build=b\nupdated=2\nbootstate=2\n"),
        ]);
        assert_eq!(dirty.next_boot_partition, Some(5));
    }

    /// `bank_scan`: the state transition, quickboot, and an upgrade that cannot be valid.
    #[test]
    fn bank_scan_rules() {
        let kept = |t: &str| match bank_scan(&cfg(t), Firmware::Uefi, false) {
            Scanned::Kept(k) => (k.state, k.valid, k.write.map(|w| w.1)),
            Scanned::Dropped(why) => panic!("{t}: dropped: {why}"),
        };
        assert_eq!(kept("bootstate=0\nbuild=a\nupdated=1\n"), (0, true, None));
        assert_eq!(
            kept("bootstate=1\nbuild=a\nupdated=1\n"),
            (2, true, Some(b'2'))
        );
        assert_eq!(
            kept("bootstate=2\nbuild=a\nupdated=1\n"),
            (3, false, Some(b'3'))
        );
        assert_eq!(kept("bootstate=3\nbuild=a\nupdated=1\n"), (3, false, None));
        // 1 with a bad updated goes straight to 3, not 2.
        assert_eq!(
            kept("bootstate=1\nbuild=a\nupdated=0\n"),
            (3, false, Some(b'3'))
        );
        assert_eq!(
            kept("bootstate=1\nupdated=4\n"),
            (3, false, Some(b'3')),
            "no build"
        );
        // quickboot: invalid, state 3 written.
        assert_eq!(
            kept("bootstate=0\nbuild=a\nupdated=1\nquickboot=1\n"),
            (3, false, Some(b'3'))
        );
        // 0 with a bad updated stays 0 (no write), invalid.
        assert_eq!(kept("bootstate=0\nbuild=a\nupdated=0\n"), (0, false, None));
    }

    /// `bank_set_bootstate`: a state change the bootloader cannot write drops the bank.
    #[test]
    fn impossible_state_write_drops_the_bank() {
        let dropped = |t: &str| match bank_scan(&cfg(t), Firmware::Uefi, false) {
            Scanned::Dropped(why) => why,
            Scanned::Kept(k) => panic!("{t}: kept: {k:?}"),
        };
        assert!(
            dropped(&format!(
                "{}bootstate=1\nbuild=a\nupdated=1\n",
                long_title()
            ))
            .starts_with("its bootstate line lies beyond byte 512")
        );
        assert!(dropped("bootstate=7\nbuild=a\nupdated=1\n").contains("starts with `7`"));
        assert!(dropped("bootstate=-1\nbuild=a\nupdated=1\n").contains("starts with `-`"));
        assert!(dropped("boot=1\nbuild=a\nupdated=1\n").contains("`boot=`"));
        assert!(dropped("build=a\nupdated=1\nquickboot=1\n").contains("no bootstate line"));
        // No change due: the line's place does not matter.
        assert!(matches!(
            bank_scan(
                &cfg(&format!(
                    "{}bootstate=0\nbuild=a\nupdated=1\n",
                    long_title()
                )),
                Firmware::Uefi,
                false
            ),
            Scanned::Kept(Kept { valid: true, .. })
        ));
        // The first bootstate line is written, whatever the parser keeps.
        let two = cfg("bootstate=0\nbuild=a\nupdated=1\nbootstate=1\n");
        match bank_scan(&two, Firmware::Uefi, false) {
            Scanned::Kept(k) => assert_eq!((k.state, k.write), (2, Some((10, b'2')))),
            other => panic!("{other:?}"),
        }
    }

    /// `bank_auto_select`: ties go to the bank found first, whatever the order given.
    #[test]
    fn tie_goes_to_lower_partition_whatever_the_order() {
        let p = run(&[(6, "build=b\nupdated=4\n"), (5, "build=a\nupdated=4\n")]);
        assert_eq!(p.next_boot_partition, Some(5));
        assert_eq!(p.banks[0].partition, 5);
        assert!(p.explanation.iter().any(|e| e.contains("same updated (4)")));
    }

    #[test]
    fn missing_bootstate_means_valid() {
        let p = run(&[(5, "build=a\nupdated=1\n")]);
        assert_eq!(p.next_boot_partition, Some(5));
    }

    #[test]
    fn no_valid_bank() {
        let p = predict(&[
            Candidate {
                partition: 5,
                boot_cfg: Err("boot.cfg line 2: not a number".into()),
            },
            Candidate {
                partition: 6,
                boot_cfg: Ok(&cfg("build=\nupdated=3\n")),
            },
            Candidate {
                partition: 7,
                boot_cfg: Ok(&cfg("build=x\nupdated=0\n")),
            },
            Candidate {
                partition: 8,
                boot_cfg: Ok(&cfg("build=x\nupdated=5\nquickboot=1\nbootstate=0\n")),
            },
        ]);
        assert_eq!(p.next_boot_partition, None);
        assert_eq!(p.will_boot(), Some(false));
        assert!(
            p.banks
                .iter()
                .all(|b| !b.valid && !b.invalid_reasons.is_empty())
        );
    }

    /// `get_boot_bank`: the first 3 banks found count; dropped ones do not; and the release
    /// (which the disk does not record) decides when more banks or other partitions matter.
    #[test]
    fn how_many_banks_and_which_partitions() {
        let beyond = format!("{}build=z\nupdated=50\nbootstate=1\n", long_title());
        // Four banks: 8 is never looked at by 7.0+, 2 is a bank too.
        let p = run(&[
            (2, "build=a\nupdated=1\n"),
            (5, "build=b\nupdated=2\n"),
            (6, "build=c\nupdated=3\n"),
            (8, "build=d\nupdated=9\n"),
        ]);
        assert_eq!(p.next_boot_partition, None, "{p:#?}");
        let u = p.unknown.as_deref().unwrap();
        assert!(
            u.contains("7.0 and later (the first 3 banks on any partition), partition 6 boots"),
            "{u}"
        );
        assert!(
            u.contains("6.7U2-U3 (the first 2 banks on any partition), partition 5 boots"),
            "{u}"
        );
        assert!(
            bank(&p, 8)
                .skipped_reason
                .as_deref()
                .unwrap()
                .starts_with("not looked at")
        );
        assert_eq!(p.will_boot(), None);
        // A dropped bank does not count: 8 is reached.
        let owned = owned(&[
            (2, &beyond),
            (5, "build=b\nupdated=2\n"),
            (6, "build=c\nupdated=3\n"),
            (8, "build=d\nupdated=1\n"),
        ]);
        let p = predict(&cands(&owned));
        assert_eq!(bank(&p, 8).skipped_reason, None);
        assert_eq!(p.next_boot_partition, Some(6), "{p:#?}");
        // Banks 5 and 6 only: every release agrees.
        let p = run(&[(5, "build=b\nupdated=2\n"), (6, "build=c\nupdated=3\n")]);
        assert_eq!((p.next_boot_partition, p.unknown), (Some(6), None));
    }

    /// `bootbank_t.updated` is `uint32_t`; `atoi` cuts by the width of `long`.
    #[test]
    fn updated_is_unsigned_and_wide_numbers_depend_on_the_firmware() {
        let p = run(&[
            (5, "build=a\nupdated=-1\n"),
            (6, "build=b\nupdated=2000000000\n"),
        ]);
        assert_eq!(p.next_boot_partition, Some(5));
        assert_eq!(bank(&p, 5).updated_at_boot, Some(4294967295));
        // 4294967296: 0 for UEFI (invalid), 2147483647 for BIOS (valid, wins).
        let p = run(&[
            (5, "build=a\nupdated=4294967296\n"),
            (6, "build=b\nupdated=3\n"),
        ]);
        assert_eq!(p.next_boot_partition, None);
        assert!(
            p.unknown
                .as_deref()
                .unwrap()
                .contains("with UEFI partition 6 boots, with BIOS partition 5 boots")
        );
        assert_eq!(bank(&p, 5).updated_at_boot, None);
        // Beyond 32 bits but the same outcome: known.
        let p = run(&[
            (5, "build=a\nupdated=99999999999\n"),
            (6, "build=b\nupdated=3\n"),
        ]);
        assert_eq!(
            (p.next_boot_partition, p.unknown.is_none()),
            (Some(5), true)
        );
    }

    #[test]
    fn an_emptied_build_is_unknown_with_uefi() {
        let p = run(&[
            (5, "build=a\nbuild=\nupdated=9\n"),
            (6, "build=b\nupdated=3\n"),
        ]);
        assert_eq!(p.next_boot_partition, None);
        assert!(
            p.unknown
                .as_deref()
                .unwrap()
                .contains("what the bootloader reads as the build of partition 5")
        );
        // It does not matter when the bank cannot win anyway.
        let p = run(&[
            (5, "build=a\nbuild=\nupdated=1\n"),
            (6, "build=b\nupdated=3\n"),
        ]);
        assert_eq!(p.next_boot_partition, Some(6));
    }

    #[test]
    fn a_lone_bank_is_judged_alone() {
        let p = run(&[(0, "build=a\nupdated=1\n")]);
        assert_eq!(p.next_boot_partition, Some(0));
        assert_eq!(p.unknown, None);
    }

    /// `get_boot_bank` with `shift_r` after mboot returns, and `bank_kill`.
    #[test]
    fn shift_r_scans_again_then_kills_the_default() {
        let sr = |banks: &[(u32, &str)]| shift_r(&cands(&owned(banks)));
        let pair = sr(&[
            (5, "bootstate=0\nbuild=a\nupdated=3\n"),
            (6, "bootstate=0\nbuild=b\nupdated=2\n"),
        ]);
        assert_eq!(pair.boots, Some(6), "{pair:?}");
        // The upgrading bank becomes 3 at the second scan: only 5 is left.
        let up = sr(&[
            (5, "bootstate=0\nbuild=a\nupdated=4\n"),
            (6, "bootstate=1\nbuild=b\nupdated=5\n"),
        ]);
        assert_eq!(up.boots, Some(5));
        assert!(up.explanation.contains("No alternate hypervisor"), "{up:?}");
        // Only one valid bank.
        let one = sr(&[
            (5, "bootstate=0\nbuild=a\nupdated=4\n"),
            (6, "bootstate=3\nbuild=b\nupdated=5\n"),
        ]);
        assert_eq!(one.boots, Some(5));
        assert!(one.explanation.contains("No alternate hypervisor"));
        // No bootstate line: the kill cannot be written.
        let no_line = sr(&[
            (5, "build=a\nupdated=4\n"),
            (6, "bootstate=0\nbuild=b\nupdated=3\n"),
        ]);
        assert_eq!(no_line.boots, Some(5));
        assert!(
            no_line
                .explanation
                .contains("System has failed to roll back")
        );
    }
}
