//! esx.conf: one `/path/to/key = "value"` setting per line.
//!
//! Lines are kept with their byte ranges so that an edit can replace one value and leave every
//! other byte of the file as it was. PCI device settings (`/device/<addr>/owner`, `vmkname`) are
//! grouped by address *value*, since ESXi has written the same device in several decimal shapes.

use crate::esxi::pci::PciAddress;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// One setting line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line number.
    pub line: usize,
    /// Byte range of the value between its quotes.
    pub value_range: Range<usize>,
}

/// A parsed esx.conf.
#[derive(Debug, Clone, Default)]
pub struct EsxConf {
    pub entries: Vec<Entry>,
    /// Lines that are not settings (kept for reporting; never produced by ESXi as far as known).
    pub odd_lines: Vec<usize>,
}

/// Why esx.conf cannot be read or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EsxConfError {
    #[error("esx.conf is not text (invalid UTF-8 at byte {offset})")]
    NotText { offset: usize },
    #[error(
        "esx.conf has no key `{key}`; `set` changes existing keys only (add --create to add it; lines ESXi did not write itself have been reported not to work)"
    )]
    NoSuchKey { key: String },
    #[error(
        "`{key}` is not an esx.conf key (keys start with `/` and hold no spaces, quotes or `=`)"
    )]
    BadKey { key: String },
    #[error(
        "value for `{key}` holds a quote, backslash or line break: how ESXi escapes those is unknown, so bootbank will not write one"
    )]
    BadValue { key: String },
}

/// One change to esx.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Set a key's value; with `create`, add the line when the key is missing.
    Set {
        /// The esx.conf key, starting with `/` (`/adv/Misc/HostName`); refused with `BadKey`
        /// when it holds spaces, quotes or `=`.
        key: String,
        /// The new value, written between the quotes of every line of the key as is; refused
        /// with `BadValue` when it holds a quote, backslash or line break.
        value: String,
        /// Add `key = "value"` at its sorted place when the key is missing, instead of refusing
        /// with `NoSuchKey` (`config set --create`).
        create: bool,
    },
    /// Remove every line of a key.
    Unset {
        /// The esx.conf key; refused with `NoSuchKey` when no line holds it.
        key: String,
    },
}

/// What an edit changed, line by line, for the plan shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub key: String,
    /// 1-based line in the file before the edit (for an added line: where it goes).
    pub line: usize,
    pub old: Option<String>,
    pub new: Option<String>,
}

fn valid_key(key: &str) -> bool {
    key.starts_with('/')
        && key.len() > 1
        && !key
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
}

/// Applies edits to esx.conf bytes, changing only the bytes that must change: a set rewrites the
/// value between the quotes of the key's line(s), an unset removes those lines, a created key is
/// inserted as one line at its sorted place. Setting a key to the value it has changes nothing.
pub fn apply(bytes: &[u8], edits: &[Edit]) -> Result<(Vec<u8>, Vec<Change>), EsxConfError> {
    let mut out = bytes.to_vec();
    let mut changes = Vec::new();
    for edit in edits {
        let conf = EsxConf::parse(&out)?;
        match edit {
            Edit::Set { key, value, create } => {
                if !valid_key(key) {
                    return Err(EsxConfError::BadKey { key: key.clone() });
                }
                if value.contains(['"', '\\', '\n', '\r']) {
                    return Err(EsxConfError::BadValue { key: key.clone() });
                }
                let hits: Vec<&Entry> = conf.entries.iter().filter(|e| &e.key == key).collect();
                if hits.is_empty() {
                    if !create {
                        return Err(EsxConfError::NoSuchKey { key: key.clone() });
                    }
                    // Sorted position: before the first line whose key sorts after the new one.
                    let line_starts = line_starts(&out);
                    let before = conf.entries.iter().find(|e| e.key.as_str() > key.as_str());
                    let (at, line) = match before {
                        Some(e) => (line_starts[e.line - 1], e.line),
                        None => {
                            if !out.is_empty() && !out.ends_with(b"\n") {
                                out.push(b'\n');
                            }
                            (out.len(), line_starts.len() + 1)
                        }
                    };
                    let text = format!("{key} = \"{value}\"\n");
                    out.splice(at..at, text.bytes());
                    changes.push(Change {
                        key: key.clone(),
                        line,
                        old: None,
                        new: Some(value.clone()),
                    });
                    continue;
                }
                // Rewrite from the end so earlier ranges stay valid.
                for e in hits.iter().rev() {
                    if &e.value == value {
                        continue;
                    }
                    out.splice(e.value_range.clone(), value.bytes());
                    changes.push(Change {
                        key: key.clone(),
                        line: e.line,
                        old: Some(e.value.clone()),
                        new: Some(value.clone()),
                    });
                }
            }
            Edit::Unset { key } => {
                let starts = line_starts(&out);
                let lines: Vec<&Entry> = conf.entries.iter().filter(|e| &e.key == key).collect();
                if lines.is_empty() {
                    return Err(EsxConfError::NoSuchKey { key: key.clone() });
                }
                for e in lines.iter().rev() {
                    let from = starts[e.line - 1];
                    let to = starts.get(e.line).copied().unwrap_or(out.len());
                    out.drain(from..to);
                    changes.push(Change {
                        key: key.clone(),
                        line: e.line,
                        old: Some(e.value.clone()),
                        new: None,
                    });
                }
            }
        }
    }
    changes.sort_by_key(|c| c.line);
    Ok((out, changes))
}

/// Byte offsets where each line starts.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\n' && i + 1 < bytes.len())
            .map(|(i, _)| i + 1),
    );
    v
}

/// A PCI device as esx.conf describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The address exactly as written in the keys.
    pub esx_address: String,
    /// The same address as lspci/esxcli print it, lower-case hex.
    pub pci_address: String,
    #[serde(skip)]
    pub address: PciAddress,
    pub owner: Option<String>,
    pub vmkname: Option<String>,
    /// 1-based line of the owner setting, when there is one.
    pub owner_line: Option<usize>,
}

impl Device {
    /// A storage adapter: ESXi names those `vmhbaN`.
    pub fn is_storage(&self) -> bool {
        self.vmkname
            .as_deref()
            .is_some_and(|n| n.starts_with("vmhba"))
    }

    pub fn is_passthru(&self) -> bool {
        self.owner.as_deref() == Some("passthru")
    }
}

impl EsxConf {
    pub fn parse(bytes: &[u8]) -> Result<EsxConf, EsxConfError> {
        let text = std::str::from_utf8(bytes).map_err(|e| EsxConfError::NotText {
            offset: e.valid_up_to(),
        })?;
        let mut conf = EsxConf::default();
        let mut offset = 0usize;
        for (i, raw) in text.split('\n').enumerate() {
            let start = offset;
            offset += raw.len() + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Some((key, vstart, vend)) => conf.entries.push(Entry {
                    key: key.to_string(),
                    value: line[vstart..vend].to_string(),
                    line: i + 1,
                    value_range: start + vstart..start + vend,
                }),
                None => conf.odd_lines.push(i + 1),
            }
        }
        Ok(conf)
    }

    /// The value of a key; the last occurrence wins, as for any key-value file read in order.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    /// Whether a `/device/<text>/...` key is written with exactly this address text.
    pub fn has_device_text(&self, text: &str) -> bool {
        self.entries
            .iter()
            .any(|e| device_key(&e.key).is_some_and(|(a, _)| a == text))
    }

    /// PCI devices, grouped by address value, in address order.
    pub fn devices(&self) -> Vec<Device> {
        let mut by_addr: BTreeMap<PciAddress, Device> = BTreeMap::new();
        for e in &self.entries {
            let Some((text, field)) = device_key(&e.key) else {
                continue;
            };
            let Ok(address) = PciAddress::parse_esx(text) else {
                continue;
            };
            let d = by_addr.entry(address).or_insert_with(|| Device {
                esx_address: text.to_string(),
                pci_address: address.to_string(),
                address,
                owner: None,
                vmkname: None,
                owner_line: None,
            });
            match field {
                "owner" => {
                    d.owner = Some(e.value.clone());
                    d.owner_line = Some(e.line);
                    d.esx_address = text.to_string();
                }
                "vmkname" => d.vmkname = Some(e.value.clone()),
                _ => {}
            }
        }
        by_addr.into_values().collect()
    }
}

/// Splits `/device/<addr>/<field>` into its address text and field.
fn device_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("/device/")?;
    let (addr, field) = rest.split_once('/')?;
    Some((addr, field))
}

/// `/key = "value"` -> (key, value start, value end) within the line.
fn parse_line(line: &str) -> Option<(&str, usize, usize)> {
    let eq = line.find('=')?;
    let key = line[..eq].trim();
    if !key.starts_with('/') || key.contains(char::is_whitespace) {
        return None;
    }
    let after = &line[eq + 1..];
    let q1 = eq + 1 + after.find('"')?;
    if !line[eq + 1..q1].trim().is_empty() {
        return None;
    }
    let q2 = line.rfind('"')?;
    if q2 <= q1 || !line[q2 + 1..].trim().is_empty() {
        return None;
    }
    Some((key, q1 + 1, q2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/esxconf/sample-4.0.conf");

    #[test]
    fn sample_devices() {
        let conf = EsxConf::parse(SAMPLE).unwrap();
        assert!(conf.odd_lines.is_empty());
        let devs = conf.devices();
        let sata = devs.iter().find(|d| d.esx_address == "000:31.2").unwrap();
        assert_eq!(sata.pci_address, "0000:00:1f.2");
        assert_eq!(sata.vmkname.as_deref(), Some("vmhba0"));
        assert_eq!(sata.owner.as_deref(), Some("vmkernel"));
        let bridge = devs
            .iter()
            .find(|d| d.pci_address == "0000:00:1e.0")
            .unwrap();
        assert!(bridge.is_passthru());
        let nic = devs.iter().find(|d| d.esx_address == "000:25.0").unwrap();
        assert_eq!(nic.owner, None);
        assert_eq!(
            devs.iter().filter(|d| d.is_passthru()).count(),
            3,
            "000:27.0, 000:30.0 and 001:00.0"
        );
    }

    #[test]
    fn value_ranges_and_odd_lines() {
        let text = b"/a/b = \"x y\"\nnot a setting\n/c = \"\"\r\n";
        let conf = EsxConf::parse(text).unwrap();
        assert_eq!(conf.entries.len(), 2);
        assert_eq!(&text[conf.entries[0].value_range.clone()], b"x y");
        assert_eq!(conf.entries[1].value, "");
        assert_eq!(conf.odd_lines, vec![2]);
    }

    #[test]
    fn edits_change_only_the_bytes_they_must() {
        let text = b"/a = \"1\"\n/device/000:022:00.0/owner = \"passthru\"\n/z = \"x\"\n";
        let (out, ch) = apply(
            text,
            &[Edit::Set {
                key: "/device/000:022:00.0/owner".into(),
                value: "vmkernel".into(),
                create: false,
            }],
        )
        .unwrap();
        assert_eq!(
            out,
            b"/a = \"1\"\n/device/000:022:00.0/owner = \"vmkernel\"\n/z = \"x\"\n"
        );
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].line, 2);
        // Same value: no change at all.
        let (same, ch) = apply(
            text,
            &[Edit::Set {
                key: "/a".into(),
                value: "1".into(),
                create: false,
            }],
        )
        .unwrap();
        assert_eq!(same, text);
        assert!(ch.is_empty());
        // Missing key without create is refused; with create it lands sorted.
        let set_m = |create| Edit::Set {
            key: "/m".into(),
            value: "v".into(),
            create,
        };
        assert!(matches!(
            apply(text, &[set_m(false)]),
            Err(EsxConfError::NoSuchKey { .. })
        ));
        let (out, _) = apply(text, &[set_m(true)]).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap().lines().nth(2),
            Some("/m = \"v\"")
        );
        let (out, _) = apply(text, &[Edit::Unset { key: "/z".into() }]).unwrap();
        assert_eq!(out, &text[..text.len() - 9]);
        assert!(matches!(
            apply(
                text,
                &[Edit::Set {
                    key: "/a".into(),
                    value: "a\"b".into(),
                    create: false
                }]
            ),
            Err(EsxConfError::BadValue { .. })
        ));
    }

    #[test]
    fn same_device_in_two_shapes_is_one_device() {
        let text = b"/device/000:022:00.0/owner = \"passthru\"\n/device/0000:22:00.0/vmkname = \"vmhba2\"\n";
        let devs = EsxConf::parse(text).unwrap().devices();
        assert_eq!(devs.len(), 1);
        assert!(devs[0].is_storage() && devs[0].is_passthru());
        assert_eq!(devs[0].pci_address, "0000:16:00.0");
        assert_eq!(devs[0].esx_address, "000:022:00.0");
    }
}
