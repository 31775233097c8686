//! The bootloader's selection rules (reference section 3), one table-driven test per rule, on
//! ESXi-like disks built with mkfs.fat and mtools (`tests/tools/mkdisk`). Each test names the
//! function of VMware's bootloader source (esx-boot: `bootlib/parse.c`, `safeboot/config.c`,
//! `safeboot/bootbank.c`) whose behaviour it checks. For every case the boot.cfg files are read
//! back from the image with mtools first (the disk holds exactly the case's bytes), then
//! `inspect --json` and `bank status --json` must give the expected next boot, agree with each
//! other, and say why in words.

use crate::common;

use crate::common::{BankSpec, Scenario, TempDir, bootbank, bootbank_ok, output_text, p};
use serde_json::Value;

fn tools() -> bool {
    common::builder_available() && common::require_tools(&["mcopy", "mtype"])
}

/// The expected outcome of a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Next {
    Boots(u32),
    NoBank,
    Unknown,
}
use Next::*;

struct Case {
    name: &'static str,
    /// "demo" (banks 5 and 6) or "6x" (banks 2, 5, 6 and 8 all carry the bank magic).
    layout: &'static str,
    banks: Vec<(u32, Vec<u8>)>,
    next: Next,
    /// Texts the prediction must contain (in the explanation, a bank's skipped reason, notes or
    /// reasons, or what Shift+R does).
    says: Vec<&'static str>,
    /// For Shift+R cases: the bank `bank status` says Shift+R boots instead (None: none).
    rollback: Option<Option<u32>>,
}

fn case(name: &'static str, banks: &[(u32, &str)], next: Next, says: &[&'static str]) -> Case {
    Case {
        name,
        layout: "demo",
        banks: banks
            .iter()
            .map(|(p, t)| (*p, t.as_bytes().to_vec()))
            .collect(),
        next,
        says: says.to_vec(),
        rollback: None,
    }
}

/// A boot.cfg whose first 520 bytes are a title line, so that what follows lies beyond byte
/// 512.
fn after_512(rest: &str) -> String {
    format!("title={}\n{rest}", "x".repeat(513))
}

fn json(cwd: &std::path::Path, args: &[&str]) -> Value {
    serde_json::from_str(&bootbank_ok(cwd, args)).expect("JSON output")
}

/// Builds each case's disk, checks it with mtools, and checks the prediction.
fn check(rule: &str, cases: Vec<Case>) {
    if !tools() {
        return;
    }
    for c in cases {
        let tag = format!("{rule}: {}", c.name);
        let t = TempDir::new("rules");
        let mut s = Scenario::new().layout(c.layout);
        for (n, bytes) in &c.banks {
            // Written as an extra file so any bytes reach the disk unchanged.
            s = s.bank(
                *n,
                BankSpec {
                    extra_files: vec![("boot.cfg".to_string(), bytes.clone())],
                    ..BankSpec::default()
                },
            );
        }
        let img = s.build(t.path());
        for (n, bytes) in &c.banks {
            assert_eq!(
                &common::read_fat_file(&img, *n, "boot.cfg"),
                bytes,
                "{tag}: mtools reads another boot.cfg on partition {n}"
            );
        }
        let i = json(t.path(), &["inspect", p(&img), "--json"]);
        let st = json(t.path(), &["bank", "status", p(&img), "--json"]);
        assert_eq!(i["banks"], st["banks"], "{tag}: status and inspect differ");
        assert_eq!(i["explanation"], st["explanation"], "{tag}");
        assert_eq!(i["next_boot_partition"], st["next_boot_partition"], "{tag}");
        assert_eq!(i["will_boot"], st["will_boot"], "{tag}");
        let got = match (i["next_boot_partition"].as_u64(), i["will_boot"].as_bool()) {
            (Some(n), Some(true)) => Boots(n as u32),
            (None, Some(false)) => NoBank,
            (None, None) => Unknown,
            other => panic!("{tag}: inconsistent {other:?}: {i:#}"),
        };
        assert_eq!(got, c.next, "{tag}: {i:#}");
        assert_eq!(
            i["next_boot_unknown"].is_string(),
            c.next == Unknown,
            "{tag}: {i:#}"
        );
        let mut words: Vec<String> = Vec::new();
        for e in i["explanation"].as_array().unwrap() {
            words.push(e.as_str().unwrap().to_string());
        }
        for b in i["banks"].as_array().unwrap() {
            for k in ["notes", "invalid_reasons"] {
                for e in b[k].as_array().unwrap() {
                    words.push(e.as_str().unwrap().to_string());
                }
            }
            if let Some(s) = b["skipped_reason"].as_str() {
                words.push(s.to_string());
            }
        }
        if let Some(s) = st["rollback_explanation"].as_str() {
            words.push(s.to_string());
        }
        let all = words.join("\n");
        for want in &c.says {
            assert!(all.contains(want), "{tag}: `{want}` not said in:\n{all}");
        }
        if let Some(r) = c.rollback {
            assert_eq!(
                st["rollback_partition"].as_u64().map(|n| n as u32),
                r,
                "{tag}: {st:#}"
            );
        }
        // The human output says it in words too.
        let text = bootbank_ok(t.path(), &["bank", "status", p(&img)]);
        for e in i["explanation"].as_array().unwrap() {
            assert!(text.contains(e.as_str().unwrap()), "{tag}: {text}");
        }
        let text = bootbank_ok(t.path(), &["inspect", p(&img)]);
        if c.next == Unknown {
            assert!(
                text.contains("which bank boots is unknown"),
                "{tag}: {text}"
            );
        }
    }
}

/// `parse_config_file` and `str_merge_spaces`: lines split on LF, a line ends at a NUL, white
/// space (the bootloader's ISO-8859-1 `isspace`, CR and TAB included) collapsed and trimmed,
/// `#` comments and lines without `=` ignored, the last repeated key wins, and bytes need not
/// be UTF-8.
#[test]
fn rule_line_layout_parse_config_file() {
    let mut cases = vec![
        case(
            "CRLF, tabs, comment",
            &[
                (5, "build=a\r\n\tupdated=\t9 \r\n# updated=99\r\n"),
                (6, "build=b\nupdated=5\n"),
            ],
            Boots(5),
            &[],
        ),
        case(
            "a line without =",
            &[
                (5, "build=a\nupdated=3\n"),
                (6, "build=b\nupdated 9\nupdated=2\n"),
            ],
            Boots(5),
            &[],
        ),
        case(
            "a NUL ends the line",
            &[
                (5, "build=a\nupdated=3\0 # newest\n"),
                (6, "build=b\nupdated=2\n"),
            ],
            Boots(5),
            &[],
        ),
        case(
            "the last repeated key wins",
            &[
                (5, "build=a\nupdated=9\nupdated=1\n"),
                (6, "build=b\nupdated=5\n"),
            ],
            Boots(6),
            &[],
        ),
    ];
    let mut latin1 = case("not UTF-8", &[(6, "build=b\nupdated=2\n")], Boots(5), &[]);
    latin1
        .banks
        .push((5, b"title=Caf\xe9 ESXi\nbuild=a\nupdated=3\n".to_vec()));
    cases.push(latin1);
    check("parse_config_file", cases);
}

/// `locate_value`: the loop meant to skip spaces before `=` starts on the `=` itself, so a
/// space (or any white space, collapsed to one) before `=` hides the key; spaces after `=` are
/// skipped.
#[test]
fn rule_space_before_equals_hides_the_key_locate_value() {
    check(
        "locate_value",
        vec![
            case(
                "updated = 7 (the issue)",
                &[(5, "build=a\nupdated=3\n"), (6, "build=b\nupdated = 7\n")],
                Boots(5),
                &[
                    "`updated = 7` is ignored: a space before `=` hides the key from the bootloader, so updated stays 0",
                    "updated=0 (must be above 0)",
                ],
            ),
            case(
                "bootstate = 3 is not read: the bank stays valid",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=7\nbootstate = 3\n"),
                ],
                Boots(6),
                &["`bootstate = 3` is ignored"],
            ),
            case(
                "build =b: no build",
                &[(5, "build=a\nupdated=1\n"), (6, "build =b\nupdated=7\n")],
                Boots(5),
                &["the bank has no build", "no build= line"],
            ),
            case(
                "a tab before = as well",
                &[(5, "build=a\nupdated=1\n"), (6, "build=b\nupdated\t=7\n")],
                Boots(5),
                &["a space before `=` hides the key"],
            ),
            case(
                "spaces after = are fine",
                &[(5, "build=a\nupdated=1\n"), (6, "build= b\nupdated=   7\n")],
                Boots(6),
                &[],
            ),
        ],
    );
}

/// `parse_option` with safeboot's table (`safeboot/config.c`: build, updated, bootstate,
/// quickboot, in that order): a key written as any leading part of a known key is that key,
/// the first in table order; case does not matter; a longer key is unknown.
#[test]
fn rule_keys_match_by_prefix_in_table_order_parse_option() {
    check(
        "parse_option",
        vec![
            case(
                "up=9 sets updated (the issue)",
                &[(5, "build=a\nupdated=3\n"), (6, "build=b\nup=9\n")],
                Boots(6),
                &["`up=9` sets updated"],
            ),
            case(
                "b= is build, tried before bootstate",
                &[(5, "build=a\nupdated=3\n"), (6, "b=8.0\nupdated=7\n")],
                Boots(6),
                &["`b=8.0` sets build"],
            ),
            case(
                "bo= is bootstate",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=7\nbo=3\n"),
                ],
                Boots(5),
                &["`bo=3` sets bootstate", "bootstate 3 becomes 3"],
            ),
            case(
                "an empty key is a prefix of build",
                &[(5, "build=a\nupdated=3\n"), (6, "=8.0\nupdated=7\n")],
                Boots(6),
                &["`=8.0` sets build"],
            ),
            case(
                "any case",
                &[(5, "build=a\nupdated=3\n"), (6, "BUILD=b\nUpDaTeD=7\n")],
                Boots(6),
                &[],
            ),
            case(
                "a longer key is unknown",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=2\nupdatedx=9\n"),
                ],
                Boots(5),
                &[],
            ),
            case(
                "q= is quickboot",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "bootstate=0\nbuild=b\nupdated=7\nq=1\n"),
                ],
                Boots(5),
                &["`q=1` sets quickboot", "quickboot=1 (must be 0)"],
            ),
        ],
    );
}

/// `parse_option`: an empty value stores integer 0 without any check; for `build` that is no
/// build, and after an earlier `build=` value it clears only half of the stored pointer on
/// 64-bit (UEFI) firmware, so what the bootloader then reads is unknown.
#[test]
fn rule_empty_values_parse_option() {
    check(
        "parse_option",
        vec![
            case(
                "updated= is 0",
                &[(5, "build=a\nupdated=3\n"), (6, "build=b\nupdated=\n")],
                Boots(5),
                &["updated=0 (must be above 0)"],
            ),
            case(
                "bootstate= is 0",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=7\nbootstate=\n"),
                ],
                Boots(6),
                &[],
            ),
            case(
                "build= is no build",
                &[(5, "build=a\nupdated=3\n"), (6, "build=\nupdated=7\n")],
                Boots(5),
                &["no build= line"],
            ),
            case(
                "quickboot= is 0",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=7\nquickboot=\n"),
                ],
                Boots(6),
                &[],
            ),
            case(
                "build= after build=b: unknown with UEFI",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nbuild=\nupdated=7\n"),
                ],
                Unknown,
                &[
                    "what the bootloader reads as the build of partition 6",
                    "build= is empty after an earlier build= line",
                ],
            ),
        ],
    );
}

/// `parse_option`, `is_number` and `atoi`/`strtol` (`libc/standard.c`): an integer key's value
/// must be an optional `-` and digits only, else the whole file fails and the bank is skipped
/// (`bank_get_config`); decimal always; only safeboot's keys count for the selection (a bad
/// `timeout=` fails mboot later, after the bank is chosen).
#[test]
fn rule_integers_is_number() {
    check(
        "is_number",
        vec![
            case(
                "trailing text",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=7 # newest\n"),
                ],
                Boots(5),
                &[
                    "partition 6 is skipped: boot.cfg line 2: `updated=7 # newest` (updated) is not a number",
                ],
            ),
            case(
                "a plus sign",
                &[(5, "build=a\nupdated=3\n"), (6, "build=b\nupdated=+9\n")],
                Boots(5),
                &["`updated=+9` (updated) is not a number"],
            ),
            case(
                "hex",
                &[(5, "build=a\nupdated=3\n"), (6, "build=b\nup=0x10\n")],
                Boots(5),
                &["`up=0x10` (updated) is not a number"],
            ),
            case(
                "leading zeros are decimal",
                &[(5, "build=a\nupdated=8\n"), (6, "build=b\nupdated=010\n")],
                Boots(6),
                &[],
            ),
            case(
                "a lone minus is 0",
                &[(5, "build=a\nupdated=3\n"), (6, "build=b\nupdated=-\n")],
                Boots(5),
                &["updated=0 (must be above 0)"],
            ),
            case(
                "timeout=5s is mboot's key, not safeboot's",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=7\ntimeout=5s\n"),
                ],
                Boots(6),
                &["mboot, which loads the bank once it is chosen, cannot parse this boot.cfg"],
            ),
        ],
    );
}

/// `bootbank_t.updated` is `uint32_t`, compared unsigned by `bank_auto_select`; `atoi` cuts a
/// number by the width of `long`, 32 bits in the BIOS bootloader and 64 in the UEFI one.
#[test]
fn rule_updated_is_unsigned_bootbank_t() {
    check(
        "bootbank_t.updated",
        vec![
            case(
                "updated=-1 is the largest (the issue)",
                &[(5, "build=a\nupdated=-1\n"), (6, "build=b\nupdated=9\n")],
                Boots(5),
                &["updated=-1 is read as the unsigned number 4294967295, the largest possible"],
            ),
            case(
                "-2147483648 reads 2147483648",
                &[
                    (5, "build=a\nupdated=-2147483648\n"),
                    (6, "build=b\nupdated=2147483647\n"),
                ],
                Boots(5),
                &["read as the unsigned number 2147483648"],
            ),
            case(
                "beyond 32 bits the firmware decides",
                &[
                    (5, "build=a\nupdated=-2\n"),
                    (6, "build=b\nupdated=4294967295\n"),
                ],
                Unknown,
                &["with UEFI partition 6 boots, with BIOS partition 5 boots"],
            ),
            case(
                "4294967296: 0 with UEFI",
                &[
                    (5, "build=a\nupdated=4294967296\n"),
                    (6, "build=b\nupdated=3\n"),
                ],
                Unknown,
                &["the UEFI bootloader reads 0, the BIOS one 2147483647"],
            ),
        ],
    );
}

/// `bank_scan`: 1 -> 2, 2 -> 3, 0 and 3 stay, another value -> 3; valid only in state 0 or 2
/// with `updated` > 0, a build and `quickboot` 0; an upgrading bank that is invalid otherwise
/// goes straight to 3; quickboot -> 3. A missing bootstate is 0 (the table's default).
#[test]
fn rule_state_transition_bank_scan() {
    check(
        "bank_scan",
        vec![
            case(
                "fresh install: the empty bank has the larger updated",
                &[
                    (5, "bootstate=0\nbuild=a\nupdated=1\n"),
                    (6, "bootstate=3\nbuild=a\nupdated=2\n"),
                ],
                Boots(5),
                &["bootstate 3 becomes 3 at boot (invalid)"],
            ),
            case(
                "upgrading boots once",
                &[
                    (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                    (6, "bootstate=1\nbuild=b\nupdated=5\n"),
                ],
                Boots(6),
                &[],
            ),
            case(
                "dirty falls back",
                &[
                    (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                    (6, "bootstate=2\nbuild=b\nupdated=5\n"),
                ],
                Boots(5),
                &["bootstate 2 becomes 3 at boot (invalid)"],
            ),
            case(
                "upgrading with updated 0 goes straight to 3",
                &[
                    (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                    (6, "bootstate=1\nbuild=b\nupdated=0\n"),
                ],
                Boots(5),
                &["bootstate 1 becomes 3 at boot (invalid)"],
            ),
            case(
                "quickboot",
                &[
                    (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                    (6, "bootstate=0\nbuild=b\nupdated=5\nquickboot=1\n"),
                ],
                Boots(5),
                &["quickboot=1 (must be 0)"],
            ),
            case(
                "missing bootstate is 0",
                &[
                    (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                    (6, "build=b\nupdated=5\n"),
                ],
                Boots(6),
                &[],
            ),
            case(
                "no valid bank",
                &[
                    (5, "bootstate=3\nbuild=a\nupdated=4\n"),
                    (6, "bootstate=0\nbuild=\nupdated=0\n"),
                ],
                NoBank,
                &[],
            ),
        ],
    );
}

/// `bank_set_bootstate` and `scan_config`: a due state change is written as one digit into the
/// first line starting with the word `bootstate` (blanks, then `=`) within the first 512 bytes;
/// when there is none, or its value does not start with 0-3, the bank is dropped (a failed
/// disk write, by contrast, is ignored).
#[test]
fn rule_failed_state_write_bank_set_bootstate() {
    let beyond1 = after_512("build=b\nupdated=9\nbootstate=1\n");
    let beyond0 = after_512("build=b\nupdated=9\nbootstate=0\n");
    let first_line = format!(
        "bootstate=0\n{}",
        after_512("build=b\nupdated=9\nbootstate=1\n")
    );
    check(
        "bank_set_bootstate",
        vec![
            case(
                "bootstate=1 beyond byte 512 (the issue)",
                &[(5, "build=a\nupdated=3\n"), (6, &beyond1)],
                Boots(5),
                &[
                    "partition 6 is skipped: its bootstate line lies beyond byte 512, where the bootloader cannot update it (bootstate 1 must become 2 at boot)",
                ],
            ),
            case(
                "bootstate=0 beyond byte 512: nothing to write",
                &[(5, "build=a\nupdated=3\n"), (6, &beyond0)],
                Boots(6),
                &[],
            ),
            case(
                "written by prefix: the update does not find it",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "bo=1\nbuild=b\nupdated=9\n"),
                ],
                Boots(5),
                &[
                    "partition 6 is skipped: bootstate 1 must become 2 at boot, but line 1 writes the key as `bo=`",
                ],
            ),
            case(
                "a value that is not a digit 0-3",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "bootstate=-1\nbuild=b\nupdated=9\n"),
                ],
                Boots(5),
                &[
                    "partition 6 is skipped: bootstate -1 is not 0-3 and must become 3 at boot, but the value of its first bootstate line starts with `-`",
                ],
            ),
            case(
                "quickboot without a bootstate line",
                &[
                    (5, "build=a\nupdated=3\n"),
                    (6, "build=b\nupdated=9\nquickboot=1\n"),
                ],
                Boots(5),
                &[
                    "partition 6 is skipped: quickboot is set, so the bootloader must set bootstate 3, but boot.cfg has no bootstate line to update",
                ],
            ),
            case(
                "the first bootstate line is written, the last one read",
                &[(5, "build=a\nupdated=3\n"), (6, &first_line)],
                Boots(6),
                &[
                    "the bootloader reads bootstate from line 5, but when it changes the state at boot it overwrites the first bootstate line (byte 10)",
                ],
            ),
        ],
    );
}

/// `get_boot_bank`: every partition number in order, the first 3 banks that scan (dropped ones
/// do not count, later partitions are never looked at). 6.7U2-U3 keep 2 and 6.7U1 and older
/// look only at partitions 5 and 6 (reference section 3): the disk does not say which runs, so
/// when that matters the next boot is unknown.
#[test]
fn rule_three_banks_from_any_partition_get_boot_bank() {
    let six = |mut c: Case| {
        c.layout = "6x";
        c
    };
    let dropped2 = after_512("build=z\nupdated=99\nbootstate=1\n");
    check(
        "get_boot_bank",
        vec![
            six(case(
                "four banks: the fourth is never looked at",
                &[
                    (2, "build=a\nupdated=1\n"),
                    (5, "build=b\nupdated=2\n"),
                    (6, "build=c\nupdated=3\n"),
                    (8, "build=d\nupdated=9\n"),
                ],
                Unknown,
                &[
                    "partition 8 is not looked at: the bootloader stops after the first 3 banks it finds (partition 2, partition 5, partition 6)",
                    "with 7.0 and later (the first 3 banks on any partition), partition 6 boots",
                    "with 6.7U2-U3 (the first 2 banks on any partition), partition 5 boots",
                ],
            )),
            six(case(
                "a dropped bank does not count",
                &[
                    (2, &dropped2),
                    (5, "build=b\nupdated=2\n"),
                    (6, "build=c\nupdated=3\n"),
                    (8, "build=d\nupdated=9\n"),
                ],
                Unknown,
                &["with 7.0 and later (the first 3 banks on any partition), partition 8 boots"],
            )),
            six(case(
                "bank magic without boot.cfg is not a bank",
                &[(5, "build=b\nupdated=2\n"), (6, "build=c\nupdated=3\n")],
                Boots(6),
                &[
                    "partition 2 is skipped: no /boot.cfg",
                    "partition 8 is skipped: no /boot.cfg",
                ],
            )),
            six(case(
                "a bank on partition 2 beats 5 and 6",
                &[
                    (2, "build=a\nupdated=9\n"),
                    (5, "build=b\nupdated=2\n"),
                    (6, "build=c\nupdated=3\n"),
                ],
                Unknown,
                &["with 6.7U1 and older (partitions 5 and 6 only), partition 6 boots"],
            )),
        ],
    );
}

/// `bank_auto_select`: the largest `updated` among valid banks; on a tie the bank found first,
/// which is the lower partition number.
#[test]
fn rule_ties_bank_auto_select() {
    check(
        "bank_auto_select",
        vec![
            case(
                "a tie goes to the lower partition",
                &[(5, "build=a\nupdated=7\n"), (6, "build=b\nupdated=7\n")],
                Boots(5),
                &[
                    "partition 5 and partition 6 have the same updated (7): the bootloader keeps the bank it found first, partition 5",
                ],
            ),
            case(
                "a tie with an invalid bank is no tie",
                &[
                    (5, "bootstate=3\nbuild=a\nupdated=7\n"),
                    (6, "build=b\nupdated=7\n"),
                ],
                Boots(6),
                &[],
            ),
            case(
                "-1 and 4294967295 tie with UEFI, not with BIOS",
                &[
                    (5, "build=a\nupdated=4294967295\n"),
                    (6, "build=b\nupdated=-1\n"),
                ],
                Unknown,
                &["with UEFI partition 5 boots, with BIOS partition 6 boots"],
            ),
        ],
    );
}

/// `get_boot_bank` with `shift_r` and `bank_kill`: Shift+R in mboot returns to safeboot, which
/// scans every bank again (state changes happen a second time), and, with two valid banks,
/// writes 3 into the default bank and selects again; with fewer it says "No alternate
/// hypervisor to roll back to", and when the write cannot be made "System has failed to roll
/// back".
#[test]
fn rule_shift_r_bank_kill() {
    let with = |mut c: Case, r: Option<u32>| {
        c.rollback = Some(r);
        c
    };
    check(
        "bank_kill",
        vec![
            with(
                case(
                    "two valid banks",
                    &[
                        (5, "bootstate=0\nbuild=a\nupdated=3\n"),
                        (6, "bootstate=0\nbuild=b\nupdated=2\n"),
                    ],
                    Boots(5),
                    &[
                        "partition 5 gets bootstate 3 and the bootloader selects again: partition 6 boots",
                    ],
                ),
                Some(6),
            ),
            with(
                case(
                    "the upgrading bank becomes 3 at the second scan",
                    &[
                        (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                        (6, "bootstate=1\nbuild=b\nupdated=5\n"),
                    ],
                    Boots(6),
                    &["No alternate hypervisor to roll back to"],
                ),
                Some(5),
            ),
            with(
                case(
                    "one valid bank",
                    &[
                        (5, "bootstate=0\nbuild=a\nupdated=4\n"),
                        (6, "bootstate=3\nbuild=b\nupdated=5\n"),
                    ],
                    Boots(5),
                    &["No alternate hypervisor to roll back to"],
                ),
                None,
            ),
            with(
                case(
                    "no bootstate line to kill",
                    &[
                        (5, "build=a\nupdated=4\n"),
                        (6, "bootstate=0\nbuild=b\nupdated=3\n"),
                    ],
                    Boots(5),
                    &["System has failed to roll back"],
                ),
                None,
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// bank rollback and select write boot.cfg files the bootloader reads as intended.

/// An installed-looking bank (payload files present) with this boot.cfg text.
fn bank_with(text: &str) -> BankSpec {
    BankSpec {
        boot_cfg: text.to_string(),
        payload: true,
        ..BankSpec::default()
    }
}

/// `bank rollback` and `bank select` refuse with exit 2 and write nothing when the result would
/// not be read by the bootloader as intended (`bank_set_bootstate`, `scan_config`,
/// `locate_value`); and what they do write reads as intended, checked with mtools.
#[test]
fn rollback_and_select_refuse_what_the_bootloader_would_misread() {
    if !tools() || !common::require_tools(&["sha256sum"]) {
        return;
    }
    let pad = |n: usize| format!("title={}\n", "x".repeat(n));
    // bootstate's digit at byte 511: one more byte before it moves it to 512.
    let edge = format!(
        "updated=1\nbuild=b\n{}bootstate=3\n",
        pad(511 - 18 - 10 - 7)
    );
    assert_eq!(edge.find("bootstate=3").unwrap() + 10, 511);
    let other = |u: &str| format!("bootstate=0\nbuild=a\nupdated={u}\n");
    // (case, command, partition 5's boot.cfg, partition 6's, what the refusal says)
    let refusals: Vec<(&str, &str, String, String, &str)> = vec![
        (
            "rollback: the next bank's bootstate lies beyond byte 512",
            "rollback",
            after_512("build=a\nupdated=9\nbootstate=0\n"),
            other("1"),
            "its bootstate line lies beyond byte 512, where the bootloader cannot update it",
        ),
        (
            "select: the bank's bootstate lies beyond byte 512",
            "select",
            other("5"),
            after_512("build=b\nupdated=1\nbootstate=3\n"),
            "its bootstate line lies beyond byte 512, where the bootloader cannot update it",
        ),
        (
            "select: a longer updated would move bootstate beyond byte 512",
            "select",
            other("9"),
            edge,
            "after the change, its bootstate line lies beyond byte 512",
        ),
        (
            "select: the bootstate line the bootloader would update is one it does not read",
            "select",
            other("5"),
            "bootstate = 3\nbuild=b\nupdated=1\n".to_string(),
            "is one the parser ignores",
        ),
        (
            "select: two bootstate lines",
            "select",
            other("5"),
            "bootstate=3\nbuild=b\nupdated=1\nbootstate=3\n".to_string(),
            "reads bootstate from line 4 but would write the first bootstate line",
        ),
        (
            "select: the other bank has updated=-1",
            "select",
            other("-1"),
            "bootstate=0\nbuild=b\nupdated=1\n".to_string(),
            "which the bootloader reads as 4294967295",
        ),
    ];
    for (name, cmd, b5, b6, says) in refusals {
        let t = TempDir::new("rules-refuse");
        let img = Scenario::new()
            .layout("demo")
            .bank(5, bank_with(&b5))
            .bank(6, bank_with(&b6))
            .build(t.path());
        let before = common::sha256_file(&img);
        let mut args = vec!["bank", cmd, p(&img)];
        if cmd == "select" {
            args.push("6");
        }
        args.push("--yes");
        let o = bootbank(t.path(), &args);
        let out = output_text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out}");
        assert!(out.contains(says), "{name}: `{says}` not in {out}");
        assert_eq!(
            common::sha256_file(&img),
            before,
            "{name}: the image changed"
        );
    }

    // What is written reads as intended: a key written by prefix keeps its spelling, a hidden
    // `updated = 9` stays hidden and untouched, no line gains a space before `=`, a bank
    // without a bootstate line gets `bootstate=0` first (where the bootloader can update it).
    let writes: Vec<(&str, &str, &str)> = vec![
        (
            "prefix key",
            "bootstate=3\nbuild=b\nup=1\n",
            "bootstate=0\nbuild=b\nup=6\n",
        ),
        (
            "hidden updated, no bootstate line",
            "build=b\nupdated = 9\n",
            "bootstate=0\nbuild=b\nupdated = 9\nupdated=6\n",
        ),
    ];
    for (name, text, want) in writes {
        let t = TempDir::new("rules-write");
        let img = Scenario::new()
            .layout("demo")
            .bank(5, bank_with("bootstate=0\nbuild=a\nupdated=5\n"))
            .bank(6, bank_with(text))
            .build(t.path());
        let (b1, b2) = (t.join("backup-select"), t.join("backup-rollback"));
        let o = bootbank(
            t.path(),
            &[
                "bank",
                "select",
                p(&img),
                "6",
                "--yes",
                "--backup-dir",
                p(&b1),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{name}: {}", output_text(&o));
        let got = common::mtype(&img, 6, "boot.cfg");
        assert_eq!(got, want, "{name}");
        let s = json(t.path(), &["bank", "status", p(&img), "--json"]);
        assert_eq!(s["next_boot_partition"], 6, "{name}: {s:#}");
        assert_eq!(
            s["rollback_partition"], 5,
            "{name}: Shift+R still goes back: {s:#}"
        );
        // And rolling back marks it invalid with one digit, read back by mtools.
        let o = bootbank(
            t.path(),
            &["bank", "rollback", p(&img), "--yes", "--backup-dir", p(&b2)],
        );
        assert_eq!(o.status.code(), Some(0), "{name}: {}", output_text(&o));
        let got = common::mtype(&img, 6, "boot.cfg");
        assert_eq!(
            got,
            want.replacen("bootstate=0", "bootstate=3", 1),
            "{name}"
        );
        let s = json(t.path(), &["bank", "status", p(&img), "--json"]);
        assert_eq!(s["next_boot_partition"], 5, "{name}: {s:#}");
    }
}
