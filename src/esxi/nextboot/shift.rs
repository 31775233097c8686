//! The `Shift+R` rollback the bootloader's menu offers: which bank it would switch to.
use super::scan::{Assume, Kept, PRIMARY, Seen, assumptions, auto_select, scan_all};
use serde::Serialize;

use super::{Candidate, Cands, name, show, sorted};
use crate::esxi::bootcfg::StateSite;
use crate::esxi::bootcfg::{BootCfg, BootCfgUnread};

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

fn shift_r_under(cands: &Cands<'_>, a: Assume) -> ShiftR {
    let first = scan_all(cands, a);
    if first.next.is_none() {
        return ShiftR {
            boots: None,
            explanation: "no bank is valid, so nothing loads and Shift+R never comes".to_string(),
        };
    }
    // The files as the first scan left them.
    let after: Vec<Result<BootCfg, BootCfgUnread>> = cands
        .iter()
        .zip(&first.seen)
        .map(|((_, cfg), seen)| match (cfg, seen) {
            (Ok(c), Seen::Kept(k)) => match k.write {
                Some((at, digit)) => {
                    let mut b = c.bytes().to_vec();
                    b[at] = digit;
                    BootCfg::parse(&b).map_err(BootCfgUnread::Parse)
                }
                None => Ok((*c).clone()),
            },
            (Ok(c), _) => Ok((*c).clone()),
            (Err(e), _) => Err(e.clone()),
        })
        .collect();
    let again: Vec<(u32, Result<&BootCfg, BootCfgUnread>)> = cands
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
