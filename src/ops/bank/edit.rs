//! boot.cfg integer edits: one value set where the bootloader reads it, every other byte kept,
//! and how the change can reach the disk.

use crate::esxi::bootcfg::BootCfg;
use super::error::{BankOpError, UnwritableReason};
use super::plan::{KeyChange, Method};

/// boot.cfg with the integer `key` set to `value`, every other byte kept. An existing value is
/// replaced where it stands (the line that wins, as the bootloader reads it, whatever prefix of
/// the key it is written with); a missing `bootstate` is added as the first line (where ESXi
/// writes it, and where the bootloader can update it), any other missing key last. A new line
/// is always `key=value`, never with a space before `=` (which would hide the key). Whether the
/// result reads as intended is [`check_written`]'s to say.
pub fn set_int(bytes: &[u8], cfg: &BootCfg, key: &str, value: i64) -> Vec<u8> {
    let text = value.to_string();
    match cfg.get(key) {
        Some(v) => {
            // The value's bytes in the file, from its first to its last (none when empty).
            let end = v.offset + v.len;
            let mut out = bytes[..v.offset].to_vec();
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&bytes[end..]);
            out
        }
        None => {
            let eol: &[u8] = if bytes.windows(2).any(|w| w == b"\r\n") {
                b"\r\n"
            } else {
                b"\n"
            };
            let line = [format!("{key}={text}").as_bytes(), eol].concat();
            if key == "bootstate" {
                [line, bytes.to_vec()].concat()
            } else {
                let mut out = bytes.to_vec();
                if !out.is_empty() && !out.ends_with(b"\n") {
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(&line);
                out
            }
        }
    }
}

/// Refuses a boot.cfg the bootloader would not read as intended. `want`: the numbers it must
/// read for the keys that change; every other selection key must read as before; no line may
/// be hidden by a space before `=` that was not already; and the bank's `bootstate` must be one
/// the bootloader can update itself at boot and on Shift+R (`BootCfg::state_writable`: the
/// first `bootstate` line, within the first 512 bytes, a digit 0-3, the line the parser
/// reads), so that an edit never moves it beyond byte 512.
pub fn check_written(
    partition: u32,
    old: &BootCfg,
    new_bytes: &[u8],
    want: &[(&str, i64)],
) -> Result<BootCfg, BankOpError> {
    let cannot = |why: UnwritableReason| BankOpError::Unwritable { partition, why };
    let new = BootCfg::parse(new_bytes).map_err(|e| cannot(e.into()))?;
    for (key, value) in want {
        if new.number(key) != i128::from(*value) {
            return Err(cannot(UnwritableReason::ReadsOtherwise {
                key: key.to_string(),
                read: new.text(key).to_string(),
                want: *value,
            }));
        }
    }
    for key in ["build", "updated", "bootstate", "quickboot"] {
        let same = old.text(key) == new.text(key) && old.number(key) == new.number(key);
        if want.iter().all(|(k, _)| *k != key) && !same {
            return Err(cannot(UnwritableReason::OtherKeyChanges {
                key: key.to_string(),
                read: new.text(key).to_string(),
                was: old.text(key).to_string(),
            }));
        }
    }
    if old.build_cleared() != new.build_cleared() {
        return Err(cannot(UnwritableReason::BuildReadsDifferently));
    }
    if new.hidden().len() > old.hidden().len() {
        return Err(cannot(UnwritableReason::HidesKey));
    }
    if let Err(why) = new.state_writable() {
        return Err(cannot(UnwritableReason::StateNotWritable {
            after_change: old.state_writable().is_ok(),
            why,
        }));
    }
    Ok(new)
}

/// The way `new` can reach the disk: in place when it differs from `old` only in the single
/// `bootstate` digit (written as one digit), else a file replace.
pub(super) fn method_for(old: &[u8], new: &[u8]) -> (Method, Option<u64>) {
    let Ok(cfg) = BootCfg::parse(old) else {
        return (Method::ReplaceFile, None);
    };
    let Some(v) = cfg.get("bootstate") else {
        return (Method::ReplaceFile, None);
    };
    let one_digit = |b: &[u8]| b.len() == 1 && b[0].is_ascii_digit();
    if old.len() == new.len()
        && one_digit(v.text.as_bytes())
        && one_digit(&new[v.offset..v.offset + 1])
        && old
            .iter()
            .zip(new)
            .enumerate()
            .all(|(i, (a, b))| a == b || i == v.offset)
    {
        (Method::InPlaceDigit, Some(v.offset as u64))
    } else {
        (Method::ReplaceFile, None)
    }
}

pub(super) fn key_changes(old: &BootCfg, new: &BootCfg) -> Vec<KeyChange> {
    ["bootstate", "updated"]
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (old.get(k).map(|v| v.text.clone()), new.get(k)?.text.clone());
            (a.as_deref() != Some(b.as_str())).then(|| KeyChange {
                key: k.to_string(),
                old: a,
                new: b,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esxi::bootcfg::{BootCfgError, StateUnwritable};

    fn cfg(b: &[u8]) -> BootCfg {
        BootCfg::parse(b).unwrap()
    }

    #[test]
    fn set_int_replaces_the_winning_value_only() {
        let b = b"bootstate=0\ntitle=x\nupdated=9\nupdated=12\nupdated = 7\n";
        let out = set_int(b, &cfg(b), "updated", 13);
        assert_eq!(
            out, b"bootstate=0\ntitle=x\nupdated=9\nupdated=13\nupdated = 7\n",
            "the last line the bootloader reads; `updated = 7` is hidden from it"
        );
        let out = set_int(b, &cfg(b), "bootstate", 3);
        assert_eq!(
            out,
            b"bootstate=3\ntitle=x\nupdated=9\nupdated=12\nupdated = 7\n"
        );
        // A key written by prefix keeps its spelling; an empty value gets the digits.
        let b = b"bo=1\nup=\n";
        assert_eq!(set_int(b, &cfg(b), "updated", 4), b"bo=1\nup=4\n");
        assert_eq!(set_int(b, &cfg(b), "bootstate", 0), b"bo=0\nup=\n");
    }

    #[test]
    fn set_int_adds_missing_keys() {
        let b = b"build=1\nupdated=2";
        assert_eq!(
            set_int(b, &cfg(b), "bootstate", 3),
            b"bootstate=3\nbuild=1\nupdated=2"
        );
        let b = b"build=1\r\nbootstate=0\r\n";
        assert_eq!(
            set_int(b, &cfg(b), "updated", 4),
            b"build=1\r\nbootstate=0\r\nupdated=4\r\n"
        );
    }

    #[test]
    fn method_is_in_place_only_for_one_digit() {
        let b = b"bootstate=0\nupdated=2\nbuild=x\n";
        assert_eq!(
            method_for(b, &set_int(b, &cfg(b), "bootstate", 3)),
            (Method::InPlaceDigit, Some(10))
        );
        assert_eq!(
            method_for(b, &set_int(b, &cfg(b), "updated", 3)).0,
            Method::ReplaceFile
        );
        let two = b"bootstate=00\nupdated=2\nbuild=x\n";
        assert_eq!(
            method_for(two, &set_int(two, &cfg(two), "bootstate", 3)).0,
            Method::ReplaceFile
        );
        let none = b"updated=2\nbuild=x\n";
        assert_eq!(
            method_for(none, &set_int(none, &cfg(none), "bootstate", 3)).0,
            Method::ReplaceFile
        );
    }

    /// The reason `check_written` gives, or a panic naming what it returned instead.
    fn refusal(old: &[u8], new: &[u8], want: &[(&str, i64)]) -> UnwritableReason {
        match check_written(5, &cfg(old), new, want) {
            Err(BankOpError::Unwritable { partition: 5, why }) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const OLD: &[u8] = b"bootstate=0\ntitle=Loading VMware ESXi\nbuild=7.0.3-0.0.1\nupdated=2\n";

    #[test]
    fn check_written_accepts_what_set_int_wrote() {
        let new = set_int(OLD, &cfg(OLD), "bootstate", 3);
        let read = check_written(5, &cfg(OLD), &new, &[("bootstate", 3)]).unwrap();
        assert_eq!((read.number("bootstate"), read.number("updated")), (3, 2));
        let new = set_int(OLD, &cfg(OLD), "updated", 3);
        assert!(check_written(5, &cfg(OLD), &new, &[("updated", 3)]).is_ok());
    }

    #[test]
    fn check_written_refuses_a_value_the_bootloader_reads_otherwise() {
        // An earlier `updated` line does not count: the bootloader reads the last one.
        let new = b"bootstate=0\ntitle=Loading VMware ESXi\nbuild=7.0.3-0.0.1\nupdated=5\nupdated=2\n";
        match refusal(OLD, new, &[("updated", 5)]) {
            UnwritableReason::ReadsOtherwise { key, read, want } => {
                assert_eq!((key.as_str(), read.as_str(), want), ("updated", "2", 5))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_written_refuses_a_change_to_another_selection_key() {
        let new = b"bootstate=3\ntitle=Loading VMware ESXi\nbuild=7.0.3-0.0.2\nupdated=2\n";
        match refusal(OLD, new, &[("bootstate", 3)]) {
            UnwritableReason::OtherKeyChanges { key, read, was } => assert_eq!(
                (key.as_str(), read.as_str(), was.as_str()),
                ("build", "7.0.3-0.0.2", "7.0.3-0.0.1")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_written_refuses_a_new_line_hidden_by_a_space_before_the_equals_sign() {
        let new = b"bootstate=3\ntitle=Loading VMware ESXi\nbuild=7.0.3-0.0.1\nupdated=2\nupdated =9\n";
        assert!(matches!(
            refusal(OLD, new, &[("bootstate", 3)]),
            UnwritableReason::HidesKey
        ));
    }

    #[test]
    fn check_written_refuses_a_bootstate_the_bootloader_cannot_update() {
        // The bootloader rewrites bootstate only within boot.cfg's first 512 bytes: a long
        // first line pushes it beyond, before and after the edit.
        let old = [
            b"kernelopt=".as_slice(),
            &[b'x'; 600],
            b"\nbootstate=0\nupdated=2\n",
        ]
        .concat();
        let new = set_int(&old, &cfg(&old), "bootstate", 3);
        assert!(matches!(
            refusal(&old, &new, &[("bootstate", 3)]),
            UnwritableReason::StateNotWritable {
                after_change: false,
                ..
            }
        ));
    }

    #[test]
    fn key_changes_lists_bootstate_and_updated_as_written() {
        let new = b"bootstate=3\ntitle=Loading VMware ESXi\nbuild=7.0.3-0.0.1\nupdated=2\n";
        assert_eq!(
            key_changes(&cfg(OLD), &cfg(new)),
            vec![KeyChange {
                key: "bootstate".into(),
                old: Some("0".into()),
                new: "3".into()
            }]
        );
        let old = b"build=7.0.3-0.0.1\n";
        let new = b"bootstate=0\nbuild=7.0.3-0.0.1\nupdated=07\n";
        assert_eq!(
            key_changes(&cfg(old), &cfg(new)),
            vec![
                KeyChange {
                    key: "bootstate".into(),
                    old: None,
                    new: "0".into()
                },
                KeyChange {
                    key: "updated".into(),
                    old: None,
                    new: "07".into()
                }
            ]
        );
        assert!(key_changes(&cfg(OLD), &cfg(OLD)).is_empty());
    }

    /// The refusal `check_written` gives, with the partition it names.
    fn refusal_in(r: Result<BootCfg, BankOpError>) -> (u32, UnwritableReason) {
        match r {
            Err(BankOpError::Unwritable { partition, why }) => (partition, why),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn set_int_keeps_the_key_as_written_and_the_blanks_around_the_value() {
        // `UP=` sets `updated` (a case-insensitive prefix); the value starts after the blanks.
        let b = b"build=7.0.2\n  UP=  12 \nbo=1\n";
        assert_eq!(
            set_int(b, &cfg(b), "updated", 4),
            b"build=7.0.2\n  UP=  4 \nbo=1\n"
        );
        assert_eq!(
            set_int(b, &cfg(b), "bootstate", 0),
            b"build=7.0.2\n  UP=  12 \nbo=0\n"
        );
        // The value may grow or take a sign; the line keeps its place.
        let b = b"updated=9\nbuild=x\n";
        assert_eq!(
            set_int(b, &cfg(b), "updated", 10),
            b"updated=10\nbuild=x\n"
        );
        assert_eq!(
            set_int(b, &cfg(b), "updated", -1),
            b"updated=-1\nbuild=x\n"
        );
        // The prefix form is one the bootloader reads as meant.
        let b = b"bootstate=0\nbuild=7.0.2\n  UP=  12 \n";
        let out = set_int(b, &cfg(b), "updated", 13);
        assert_eq!(out, b"bootstate=0\nbuild=7.0.2\n  UP=  13 \n");
        let new = check_written(1, &cfg(b), &out, &[("updated", 13)]).unwrap();
        assert_eq!(new.number("updated"), 13);
    }

    #[test]
    fn set_int_adds_a_missing_bootstate_first_and_any_other_key_last() {
        let b = b"# generated\nbuild=7.0.3\nupdated=1\n";
        assert_eq!(
            set_int(b, &cfg(b), "bootstate", 0),
            b"bootstate=0\n# generated\nbuild=7.0.3\nupdated=1\n"
        );
        // A last line without its end gets one, in the file's own style, before the new line.
        let b = b"bootstate=0\r\nbuild=x";
        assert_eq!(
            set_int(b, &cfg(b), "updated", 2),
            b"bootstate=0\r\nbuild=x\r\nupdated=2\r\n"
        );
        assert_eq!(set_int(b"", &cfg(b""), "updated", 1), b"updated=1\n");
        assert_eq!(set_int(b"", &cfg(b""), "bootstate", 0), b"bootstate=0\n");
        // `updated = 7` sets nothing, so `updated` is missing: a new `key=value` line is added,
        // and the hidden line stays as it was.
        let b = b"bootstate=0\nbuild=x\nupdated = 7\n";
        let out = set_int(b, &cfg(b), "updated", 8);
        assert_eq!(out, b"bootstate=0\nbuild=x\nupdated = 7\nupdated=8\n");
        assert_eq!(
            check_written(1, &cfg(b), &out, &[("updated", 8)])
                .unwrap()
                .number("updated"),
            8
        );
    }

    #[test]
    fn a_missing_bootstate_added_first_is_one_the_bootloader_can_update() {
        let b = format!("build=x\ntitle={}\n", "x".repeat(600)).into_bytes();
        let out = set_int(&b, &cfg(&b), "bootstate", 0);
        assert_eq!(out, [&b"bootstate=0\n"[..], &b].concat());
        let new = check_written(5, &cfg(&b), &out, &[("bootstate", 0)]).unwrap();
        assert_eq!(new.state_writable(), Ok(10));
        // The same file with its bootstate line beyond byte 512: refused as it stands.
        let b = format!("build=x\ntitle={}\nbootstate=1\n", "x".repeat(600)).into_bytes();
        let out = set_int(&b, &cfg(&b), "bootstate", 3);
        assert_eq!(
            refusal_in(check_written(5, &cfg(&b), &out, &[("bootstate", 3)])),
            (
                5,
                UnwritableReason::StateNotWritable {
                    after_change: false,
                    why: StateUnwritable::Beyond512
                }
            )
        );
    }

    #[test]
    fn check_written_refuses_what_the_bootloader_would_misread() {
        let old = cfg(b"bootstate=0\nupdated=1\n");
        assert_eq!(
            refusal_in(check_written(
                2,
                &old,
                b"bootstate=0\nupdated=4\n",
                &[("updated", 5)]
            )),
            (
                2,
                UnwritableReason::ReadsOtherwise {
                    key: "updated".into(),
                    read: "4".into(),
                    want: 5
                }
            )
        );
        assert_eq!(
            refusal_in(check_written(
                2,
                &old,
                b"bootstate=3\nupdated=2\n",
                &[("bootstate", 3)]
            ))
            .1,
            UnwritableReason::OtherKeyChanges {
                key: "updated".into(),
                read: "2".into(),
                was: "1".into()
            }
        );
        assert_eq!(
            refusal_in(check_written(2, &old, b"bootstate=x\nupdated=1\n", &[])).1,
            UnwritableReason::Parse(BootCfgError::NotANumber {
                key: "bootstate".into(),
                written_key: "bootstate".into(),
                value: "x".into(),
                line: 1
            })
        );
        // `title = y` is a line mboot ignores.
        let old = cfg(b"bootstate=0\nbuild=x\n");
        assert_eq!(
            refusal_in(check_written(2, &old, b"bootstate=0\nbuild=x\ntitle = y\n", &[])).1,
            UnwritableReason::HidesKey
        );
        // Both read build as empty text, but the second empties a build that was set.
        let old = cfg(b"bootstate=0\nbuild=\n");
        assert_eq!(
            refusal_in(check_written(2, &old, b"bootstate=0\nbuild=x\nbuild=\n", &[])).1,
            UnwritableReason::BuildReadsDifferently
        );
        // A state the bootloader cannot overwrite, made by the change.
        let old = cfg(b"bootstate=0\n");
        assert_eq!(
            refusal_in(check_written(2, &old, b"bootstate=5\n", &[("bootstate", 5)])).1,
            UnwritableReason::StateNotWritable {
                after_change: true,
                why: StateUnwritable::NotADigit { value: "5".into() }
            }
        );
        // `bo=` is read as bootstate, but the bootloader's own update looks for the whole word.
        let b = b"bo=1\nbuild=x\n";
        let out = set_int(b, &cfg(b), "bootstate", 0);
        assert_eq!(out, b"bo=0\nbuild=x\n");
        assert_eq!(
            refusal_in(check_written(2, &cfg(b), &out, &[("bootstate", 0)])).1,
            UnwritableReason::StateNotWritable {
                after_change: false,
                why: StateUnwritable::Spelled {
                    line: 1,
                    written_key: "bo".into()
                }
            }
        );
    }

    #[test]
    fn method_for_finds_the_one_digit_and_its_offset() {
        // 8 bytes of `build=x\n`, 10 of `updated=2\n`, then `bootstate=`: the digit is byte 28.
        let b = b"build=x\nupdated=2\nbootstate=0\n";
        assert_eq!(
            method_for(b, b"build=x\nupdated=2\nbootstate=3\n"),
            (Method::InPlaceDigit, Some(28))
        );
        // Blanks after `=` are skipped: the digit is byte 12.
        assert_eq!(
            method_for(b"bootstate=  1 \nbuild=x\n", b"bootstate=  2 \nbuild=x\n"),
            (Method::InPlaceDigit, Some(12))
        );
        let replace = (Method::ReplaceFile, None);
        let old = b"bootstate=0\nupdated=2\n";
        // Another byte changes too, or only another byte changes.
        assert_eq!(method_for(old, b"bootstate=3\nupdated=5\n"), replace);
        assert_eq!(method_for(old, b"bootstate=0\nupdated=5\n"), replace);
        // The new value is not a digit, or not one digit.
        assert_eq!(method_for(old, b"bootstate=-\nupdated=2\n"), replace);
        assert_eq!(method_for(old, b"bootstate=10\nupdated=2\n"), replace);
        // The old value is not one digit.
        assert_eq!(method_for(b"bootstate=-1\n", b"bootstate=-3\n"), replace);
        // The old boot.cfg does not parse: no offset to trust.
        assert_eq!(
            method_for(b"updated=x\nbootstate=0\n", b"updated=x\nbootstate=3\n"),
            replace
        );
    }

    #[test]
    fn key_changes_name_the_known_key_and_both_values() {
        let change = |key: &str, old: Option<&str>, new: &str| KeyChange {
            key: key.into(),
            old: old.map(Into::into),
            new: new.into(),
        };
        assert_eq!(
            key_changes(
                &cfg(b"bootstate=0\nupdated=1\nbuild=x\n"),
                &cfg(b"bootstate=3\nupdated=1\nbuild=x\n")
            ),
            [change("bootstate", Some("0"), "3")]
        );
        // A key not written before has no old value; bootstate comes before updated.
        assert_eq!(
            key_changes(&cfg(b"updated=1\n"), &cfg(b"bootstate=0\nupdated=2\n")),
            [
                change("bootstate", None, "0"),
                change("updated", Some("1"), "2")
            ]
        );
        // Written by prefix: named by the key it sets.
        assert_eq!(
            key_changes(&cfg(b"up=7\n"), &cfg(b"up=8\n")),
            [change("updated", Some("7"), "8")]
        );
        // Only bootstate and updated are reported, and only when their text changes.
        assert_eq!(
            key_changes(
                &cfg(b"bootstate=0\nbuild=x\n"),
                &cfg(b"bootstate=0\nbuild=y\n")
            ),
            []
        );
    }
}
