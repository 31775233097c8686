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
//!
//! A file a job: [`scan`] is the bootloader's scan of one bank and of the bank list under each
//! assumption; [`predict`](mod@predict) turns the scans into the prediction; [`notes`](mod@notes)
//! tells what in a boot.cfg the bootloader reads differently than it looks; [`shift`] is the
//! `Shift+R` (roll back) menu's choice.

use crate::esxi::bootcfg::{BootCfg, BootCfgUnread};

pub mod notes;
pub mod predict;
pub mod scan;
pub mod shift;

pub use notes::notes;
pub use predict::{BankVerdict, Prediction, predict};
pub use scan::{Firmware, Release, atoi, bootstate_meaning, transition};
#[cfg(feature = "internals")]
pub use scan::{Kept, Scanned, bank_scan};
pub use shift::{ShiftR, shift_r};

/// What the selection needs to know about one bank.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub partition: u32,
    /// `Err(reason)` when boot.cfg is missing or does not parse: the bank is skipped.
    pub boot_cfg: Result<&'a BootCfg, BootCfgUnread>,
}

type Cands<'a> = [(u32, Result<&'a BootCfg, BootCfgUnread>)];

fn sorted<'a>(candidates: &[Candidate<'a>]) -> Vec<(u32, Result<&'a BootCfg, BootCfgUnread>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> BootCfg {
        BootCfg::parse(text.as_bytes()).unwrap()
    }

    fn owned(banks: &[(u32, &str)]) -> Vec<(u32, Result<BootCfg, BootCfgUnread>)> {
        banks
            .iter()
            .map(|(p, t)| {
                (
                    *p,
                    BootCfg::parse(t.as_bytes()).map_err(BootCfgUnread::Parse),
                )
            })
            .collect()
    }

    fn cands(o: &[(u32, Result<BootCfg, BootCfgUnread>)]) -> Vec<Candidate<'_>> {
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
        let table: Vec<Case<'_>> = vec![
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
                boot_cfg: Err(BootCfgUnread::Missing {
                    file: "boot.cfg".into(),
                }),
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
