//! Which bank boots next, predicted by the bootloader's own rules (reference section 3).
//!
//! Choosing by `updated` alone is wrong: a fresh install gives the empty second bank the larger
//! `updated` with `bootstate=3`. The bootloader first applies the boot-time state transition, then
//! keeps only valid banks, then takes the largest `updated`, the lower partition on a tie.

use crate::bootcfg::BootCfg;
use serde::Serialize;

/// What the selection needs to know about one bank.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub partition: u32,
    /// `Err(reason)` when boot.cfg is missing or does not parse: the bank is skipped.
    pub boot_cfg: Result<&'a BootCfg, String>,
}

/// The verdict on one bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BankVerdict {
    pub partition: u32,
    /// `bootstate` after the transition the bootloader applies at boot (None when unparsable).
    pub bootstate_after: Option<i64>,
    pub valid: bool,
    /// Why the bank is not valid, in words; empty when valid.
    pub invalid_reasons: Vec<String>,
    pub boots_next: bool,
}

/// The whole prediction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    pub banks: Vec<BankVerdict>,
    pub next_boot_partition: Option<u32>,
}

/// The boot-time state transition: 1 -> 2, 2 -> 3, 0 and 3 stay, anything else -> 3.
pub fn transition(bootstate: i64) -> i64 {
    match bootstate {
        0 => 0,
        1 => 2,
        2 => 3,
        3 => 3,
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

/// Predicts the next boot. Candidates may come in any order; they are considered in partition
/// number order as the bootloader does.
pub fn predict(candidates: &[Candidate<'_>]) -> Prediction {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| c.partition);
    let mut banks: Vec<BankVerdict> = sorted
        .iter()
        .map(|c| match &c.boot_cfg {
            Err(why) => BankVerdict {
                partition: c.partition,
                bootstate_after: None,
                valid: false,
                invalid_reasons: vec![why.clone()],
                boots_next: false,
            },
            Ok(cfg) => {
                let after = transition(cfg.bootstate());
                let mut reasons = Vec::new();
                if !(after == 0 || after == 2) {
                    reasons.push(format!(
                        "bootstate {} becomes {} at boot ({})",
                        cfg.bootstate(),
                        after,
                        bootstate_meaning(after)
                    ));
                }
                if cfg.updated() <= 0 {
                    reasons.push(format!("updated={} (must be above 0)", cfg.updated()));
                }
                if cfg.build().is_empty() {
                    reasons.push("no build= line".to_string());
                }
                if cfg.quickboot() != 0 {
                    reasons.push(format!("quickboot={} (must be 0)", cfg.quickboot()));
                }
                BankVerdict {
                    partition: c.partition,
                    bootstate_after: Some(after),
                    valid: reasons.is_empty(),
                    invalid_reasons: reasons,
                    boots_next: false,
                }
            }
        })
        .collect();
    // Largest `updated` among valid banks; strict comparison keeps the lower partition on a tie.
    let mut best: Option<(usize, i64)> = None;
    for (i, (v, c)) in banks.iter().zip(&sorted).enumerate() {
        if !v.valid {
            continue;
        }
        let updated = c.boot_cfg.as_ref().map(|b| b.updated()).unwrap_or(0);
        if best.is_none_or(|(_, u)| updated > u) {
            best = Some((i, updated));
        }
    }
    let next = best.map(|(i, _)| {
        banks[i].boots_next = true;
        banks[i].partition
    });
    Prediction {
        banks,
        next_boot_partition: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> BootCfg {
        BootCfg::parse(text.as_bytes()).unwrap()
    }

    fn run(banks: &[(u32, Result<BootCfg, String>)]) -> Prediction {
        let c: Vec<Candidate> = banks
            .iter()
            .map(|(p, b)| Candidate {
                partition: *p,
                boot_cfg: b.as_ref().map_err(|e| e.clone()),
            })
            .collect();
        predict(&c)
    }

    #[test]
    fn transitions() {
        assert_eq!(
            [0, 1, 2, 3, 4, -1, 9].map(transition),
            [0, 2, 3, 3, 3, 3, 3]
        );
    }

    #[test]
    fn fresh_install_empty_bank_has_larger_updated() {
        let p = run(&[
            (5, Ok(cfg("build=7.0.3-1\nupdated=1\nbootstate=0\n"))),
            (6, Ok(cfg("build=7.0.3-1\nupdated=2\nbootstate=3\n"))),
        ]);
        assert_eq!(p.next_boot_partition, Some(5));
        assert!(!p.banks[1].valid);
    }

    #[test]
    fn upgrading_bank_is_tried_once_then_dropped() {
        let upgrading = run(&[
            (5, Ok(cfg("build=a\nupdated=1\nbootstate=0\n"))),
            (6, Ok(cfg("build=b\nupdated=2\nbootstate=1\n"))),
        ]);
        assert_eq!(upgrading.next_boot_partition, Some(6));
        assert_eq!(upgrading.banks[1].bootstate_after, Some(2));
        let dirty = run(&[
            (5, Ok(cfg("build=a\nupdated=1\nbootstate=0\n"))),
            (6, Ok(cfg("build=b\nupdated=2\nbootstate=2\n"))),
        ]);
        assert_eq!(dirty.next_boot_partition, Some(5));
    }

    #[test]
    fn tie_goes_to_lower_partition_whatever_the_order() {
        let p = run(&[
            (6, Ok(cfg("build=b\nupdated=4\n"))),
            (5, Ok(cfg("build=a\nupdated=4\n"))),
        ]);
        assert_eq!(p.next_boot_partition, Some(5));
        assert_eq!(p.banks[0].partition, 5);
    }

    #[test]
    fn missing_bootstate_means_valid() {
        let p = run(&[(5, Ok(cfg("build=a\nupdated=1\n")))]);
        assert_eq!(p.next_boot_partition, Some(5));
    }

    #[test]
    fn no_valid_bank() {
        let p = run(&[
            (5, Err("boot.cfg line 2: not a number".into())),
            (6, Ok(cfg("build=\nupdated=3\n"))),
            (7, Ok(cfg("build=x\nupdated=0\n"))),
            (8, Ok(cfg("build=x\nupdated=5\nquickboot=1\n"))),
        ]);
        assert_eq!(p.next_boot_partition, None);
        assert!(
            p.banks
                .iter()
                .all(|b| !b.valid && !b.invalid_reasons.is_empty())
        );
    }
}
