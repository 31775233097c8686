//! The prediction: which bank boots next under every assumption, and why when they disagree.
use super::scan::{Assume, PRIMARY, Pass, Seen, assumptions, scan_all, unknown_builds};
use serde::Serialize;

use super::{Candidate, Cands, Firmware, Release, atoi, name, notes, show, sorted};

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

fn describe_unknown(cands: &Cands<'_>, runs: &[(Assume, Option<u32>)]) -> String {
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
