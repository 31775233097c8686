//! boot.cfg, parsed exactly as ESXi's bootloader parses it.
//!
//! The bootloader is forgiving about layout (trimmed ends, collapsed spaces, `#` comments, any key
//! case, unknown keys ignored, the last repeated key wins) but strict about integers: one
//! non-numeric `updated`, `bootstate`, `quickboot` or `timeout` makes the whole file unusable and
//! the bank is skipped. We mirror both so our prediction matches the host's.

use std::collections::BTreeMap;

/// Keys whose value must be an integer for the file to parse at all.
pub const INTEGER_KEYS: [&str; 4] = ["updated", "bootstate", "quickboot", "timeout"];

/// A parsed boot.cfg. Raw lines are kept with their byte offsets so that a later edit can change
/// one digit in place, the way the bootloader itself rewrites `bootstate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCfg {
    /// Effective values by lower-case key (the last occurrence wins).
    values: BTreeMap<String, Value>,
}

/// One effective `key=value` with where it sits in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    /// 1-based line number of the occurrence that wins.
    pub line: usize,
    /// Byte offset of the value's first byte in the file.
    pub offset: usize,
}

/// Why a boot.cfg does not parse; the bootloader skips such a bank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootCfgError {
    #[error(
        "boot.cfg line {line}: `{key}={value}` is not a number, so the bootloader skips this bank"
    )]
    NotANumber {
        key: String,
        value: String,
        line: usize,
    },
    #[error("boot.cfg is not text (invalid UTF-8 at byte {offset})")]
    NotText { offset: usize },
}

impl BootCfg {
    /// Parses boot.cfg bytes.
    pub fn parse(bytes: &[u8]) -> Result<BootCfg, BootCfgError> {
        let text = std::str::from_utf8(bytes).map_err(|e| BootCfgError::NotText {
            offset: e.valid_up_to(),
        })?;
        let mut values = BTreeMap::new();
        let mut offset = 0usize;
        for (index, raw) in text.split('\n').enumerate() {
            let line_start = offset;
            offset += raw.len() + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Lines without `=` carry no setting; the bootloader ignores them as it does unknown keys.
            let Some(eq) = raw.find('=') else { continue };
            let key = collapse(raw[..eq].trim()).to_ascii_lowercase();
            let value_raw = &raw[eq + 1..];
            let lead = value_raw.len() - value_raw.trim_start().len();
            let value = collapse(value_raw.trim());
            values.insert(
                key,
                Value {
                    text: value,
                    line: index + 1,
                    offset: line_start + eq + 1 + lead,
                },
            );
        }
        for key in INTEGER_KEYS {
            if let Some(v) = values.get(key)
                && parse_int(&v.text).is_none()
            {
                return Err(BootCfgError::NotANumber {
                    key: key.to_string(),
                    value: v.text.clone(),
                    line: v.line,
                });
            }
        }
        Ok(BootCfg { values })
    }

    /// The effective value of a key (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(&key.to_ascii_lowercase())
    }

    fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| parse_int(&v.text))
    }

    /// `bootstate` as written; a missing key means 0.
    pub fn bootstate(&self) -> i64 {
        self.int("bootstate").unwrap_or(0)
    }

    /// Whether `bootstate` is written at all (a missing one reads as 0).
    pub fn has_bootstate(&self) -> bool {
        self.get("bootstate").is_some()
    }

    /// `updated`, the serial number banks are ranked by; missing means 0.
    pub fn updated(&self) -> i64 {
        self.int("updated").unwrap_or(0)
    }

    /// `quickboot`; missing means 0.
    pub fn quickboot(&self) -> i64 {
        self.int("quickboot").unwrap_or(0)
    }

    /// `build`, empty when missing.
    pub fn build(&self) -> &str {
        self.text("build")
    }

    /// Any text key, empty when missing.
    pub fn text(&self, key: &str) -> &str {
        self.get(key).map(|v| v.text.as_str()).unwrap_or("")
    }

    /// `modules=` split on ` --- `, prefix not applied.
    pub fn modules(&self) -> Vec<&str> {
        let m = self.text("modules");
        if m.is_empty() {
            return Vec::new();
        }
        m.split(" --- ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Integers as the bootloader accepts them: optional sign, decimal digits, nothing else.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_41_sample() {
        let cfg =
            BootCfg::parse(include_bytes!("../tests/fixtures/bootcfg/4.1-installed")).unwrap();
        assert_eq!(cfg.build(), "4.1.0-260247");
        assert_eq!(cfg.updated(), 2);
        assert_eq!(cfg.bootstate(), 0);
        assert_eq!(cfg.modules().last(), Some(&"vcl.tgz"));
        assert_eq!(cfg.modules().len(), 8);
    }

    #[test]
    fn layout_rules() {
        let text = b"# comment\n  BUILD = 8.0.2-1 \nupdated=1\nUpdated =  7\nkernelopt=a   b\nnonsense\n\n";
        let cfg = BootCfg::parse(text).unwrap();
        assert_eq!(cfg.build(), "8.0.2-1");
        assert_eq!(cfg.updated(), 7, "last repeated key wins");
        assert_eq!(cfg.get("updated").unwrap().line, 4);
        assert_eq!(cfg.text("kernelopt"), "a b");
        assert!(!cfg.has_bootstate());
        assert_eq!(cfg.bootstate(), 0);
    }

    #[test]
    fn value_offsets_point_at_the_value() {
        let text = b"build=1\nbootstate = 2\n";
        let cfg = BootCfg::parse(text).unwrap();
        let v = cfg.get("bootstate").unwrap();
        assert_eq!(&text[v.offset..v.offset + 1], b"2");
    }

    #[test]
    fn non_numeric_integer_fails_whole_file() {
        let err = BootCfg::parse(b"build=1\nupdated=2\nbootstate=zero\n").unwrap_err();
        assert_eq!(
            err,
            BootCfgError::NotANumber {
                key: "bootstate".into(),
                value: "zero".into(),
                line: 3
            }
        );
        assert!(BootCfg::parse(b"timeout=5s\n").is_err());
        assert!(BootCfg::parse(b"updated=\n").is_err());
        assert!(BootCfg::parse(b"title=x\xff\n").is_err());
    }
}
