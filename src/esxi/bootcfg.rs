//! boot.cfg, read exactly as ESXi's bootloader reads it.
//!
//! The facts come from VMware's bootloader source (esx-boot, GPL-2.0; read for facts, no code
//! copied); each rule names the function it follows. Two programs read the same file with one
//! routine (`parse_config_file` in `bootlib/parse.c`) and different tables of known keys:
//! **safeboot**, which chooses the bank (`build`, `updated`, `bootstate`, `quickboot`, tried in
//! that order: `safeboot/config.c`), and **mboot**, which then loads the chosen bank (`kernel`,
//! `kernelopt`, `modules`, `title`, `prefix`, `nobootif`, `timeout`, ...: `mboot/config.c`).
//!
//! - Lines split on `\n`; a line ends at its first NUL byte; runs of white space become one
//!   space and the ends are trimmed (`str_merge_spaces`; white space is the bootloader's own
//!   ISO-8859-1 `isspace`: BS, TAB, LF, VT, FF, CR, space and NBSP); empty lines and lines
//!   starting with `#` are skipped (`parse_option`).
//! - A line's key is everything before its first `=`. It names the first known key, in table
//!   order, of which it is a case-insensitive prefix (`locate_value`, `parse_option`): `up=9`
//!   sets `updated`, `b=` sets `build` (tried before `bootstate`), `bo=` sets `bootstate`, even
//!   `=x` sets `build`. Spaces before `=` are not skipped (`locate_value`'s loop meant to skip
//!   them starts on the `=` itself), so `updated = 7` names no key and is ignored, like any
//!   unknown key or a line without `=`.
//! - One space after `=` is skipped; the rest of the line is the value; a later line for the
//!   same key replaces the value.
//! - An empty value stores integer 0 without any check (`parse_option`); for a text key that
//!   means no value, but after an earlier non-empty value it clears only the low 32 bits of the
//!   stored text pointer (a union of `char *` and `int`): see [`BootCfg::build_cleared`].
//! - An integer value must be an optional `-` and then digits only (`is_number`: `7 # newest`,
//!   `+1` and `0x1` fail); a failing line makes the whole parse fail there, and safeboot skips
//!   the bank. The number is converted by `atoi`, a saturating `strtol` cut to `int`
//!   (`libc/standard.c`); see `nextboot::atoi` for what that means beyond 32 bits.
//!
//! When safeboot has to change the state at boot it does not use this parser: it looks for the
//! first `bootstate` at the start of a line, followed by optional blanks and `=`, within the
//! first 512 bytes of the file, and overwrites the first character of its value in place
//! (`scan_config`, `bank_set_bootstate`): see [`BootCfg::state_site`].

/// How a known key's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
}

/// A table of known keys, in the order the parser tries them.
pub type Table = &'static [(&'static str, Kind)];

/// safeboot's keys, in the order `parse_option` tries them (`safeboot/config.c`).
pub const SAFEBOOT_KEYS: Table = &[
    ("build", Kind::Text),
    ("updated", Kind::Int),
    ("bootstate", Kind::Int),
    ("quickboot", Kind::Int),
];

/// mboot's keys, in the order `parse_option` tries them (`mboot/config.c` of current esx-boot;
/// older releases know fewer of the later ones).
pub const MBOOT_KEYS: Table = &[
    ("kernel", Kind::Text),
    ("kernelopt", Kind::Text),
    ("modules", Kind::Text),
    ("title", Kind::Text),
    ("prefix", Kind::Text),
    ("nobootif", Kind::Int),
    ("timeout", Kind::Int),
    ("noquirks", Kind::Int),
    ("norts", Kind::Int),
    ("crypto", Kind::Text),
    ("runtimewd", Kind::Int),
    ("tftpblksize", Kind::Int),
    ("acpitables", Kind::Text),
    ("runtimewdtimeout", Kind::Int),
    ("skip", Kind::Int),
    ("errtimeout", Kind::Int),
];

/// The bootloader can rewrite `bootstate` only within this many first bytes of boot.cfg
/// (`bank_set_bootstate`: "Our BIOS utils library is not able to write a file beyond 512
/// bytes").
pub const STATE_WRITE_LIMIT: usize = 512;

/// White space as the bootloader's C library classifies it (`libc/ctypes.c`, ISO-8859-1): BS,
/// TAB, LF, VT, FF, CR, space and NBSP.
pub fn is_space(b: u8) -> bool {
    matches!(b, 0x08..=0x0d | b' ' | 0xa0)
}

/// The line of a known key that the parser keeps (the last one for the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The known key it sets.
    pub key: &'static str,
    /// The key as written (white space collapsed), e.g. `up` for `updated`.
    pub written_key: String,
    /// The value, white space collapsed (bytes that are not UTF-8 shown as U+FFFD).
    pub text: String,
    /// The value's bytes as the bootloader holds them.
    pub bytes: Vec<u8>,
    /// 1-based line number.
    pub line: usize,
    /// Byte offset in the file of the value's first byte (for an empty value: right after `=`).
    pub offset: usize,
    /// How many bytes of the file the value spans, from its first to its last byte (0 when
    /// empty).
    pub len: usize,
    /// For an integer key: the number `strtol` reads (an empty value reads 0), before the cut to
    /// `int`; saturated far beyond any `long`. None for text keys.
    pub number: Option<i128>,
}

impl Setting {
    /// Whether the key is written shorter than the known key (it matched by prefix).
    pub fn by_prefix(&self) -> bool {
        self.written_key.len() < self.key.len()
    }
}

/// A line that looks like a known key but which the bootloader ignores, because of a space
/// before `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    pub line: usize,
    /// The known key it was probably meant for.
    pub key: &'static str,
    /// The line, white space collapsed.
    pub text: String,
}

/// Why a boot.cfg does not parse for safeboot; the bootloader skips such a bank. (For mboot's
/// table the same error is [`BootCfg::loader_error`].)
/// Why a bank's boot.cfg could not be read as one: the bootloader skips such a bank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootCfgUnread {
    /// The bank has no such file (`boot.cfg`, or the name a leftover of an interrupted write
    /// makes the effective one).
    #[error("no /{file}")]
    Missing { file: String },
    #[error(transparent)]
    Parse(#[from] BootCfgError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootCfgError {
    #[error(
        "boot.cfg line {line}: `{written_key}={value}` ({key}) is not a number (the bootloader accepts an optional - and digits only)"
    )]
    NotANumber {
        key: String,
        written_key: String,
        value: String,
        line: usize,
    },
}

/// What one table's parse kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    /// The winning setting of each key, in table order.
    settings: Vec<Option<Setting>>,
    /// Text keys that were given a value and then an empty one.
    cleared: Vec<bool>,
    /// The line where the parse stopped.
    error: Option<BootCfgError>,
}

/// One line after `str_merge_spaces`, with each byte's index in the raw line.
struct Merged {
    text: Vec<u8>,
    map: Vec<usize>,
}

fn merge(raw: &[u8]) -> Merged {
    // A line is a C string: it ends at its first NUL.
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let mut text = Vec::with_capacity(raw.len());
    let mut map = Vec::with_capacity(raw.len());
    let mut space = true;
    for (i, &b) in raw.iter().enumerate() {
        if is_space(b) {
            if !space {
                text.push(b' ');
                map.push(i);
                space = true;
            }
        } else {
            text.push(b);
            map.push(i);
            space = false;
        }
    }
    if text.last() == Some(&b' ') {
        text.pop();
        map.pop();
    }
    Merged { text, map }
}

/// The lines `parse_config_file` hands to `parse_option`: split on `\n`, empty ones left out.
/// Yields (1-based number, byte offset, bytes).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, usize, &[u8])> {
    let mut offset = 0usize;
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(move |(i, raw)| {
            let start = offset;
            offset += raw.len() + 1;
            (!raw.is_empty()).then_some((i + 1, start, raw))
        })
}

/// The known key a line's key part names: the first of the table it is a case-insensitive
/// prefix of (`locate_value` compares only as many bytes as the key part has).
fn match_key(part: &[u8], table: Table) -> Option<usize> {
    table.iter().position(|(k, _)| {
        part.len() <= k.len() && part.eq_ignore_ascii_case(&k.as_bytes()[..part.len()])
    })
}

/// `is_number`: an optional `-`, then digits only (none at all is accepted too).
fn is_number(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    digits.iter().all(u8::is_ascii_digit)
}

/// The number `strtol(v, NULL, 10)` reads from a value `is_number` accepted, saturated at
/// +-2^100 (beyond every `long`).
fn read_number(v: &[u8]) -> i128 {
    const CAP: i128 = 1 << 100;
    let (neg, digits) = match v.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, v),
    };
    let mut n: i128 = 0;
    for d in digits {
        n = (n * 10 + i128::from(d - b'0')).min(CAP);
    }
    if neg { -n } else { n }
}

/// `parse_config_file` with one table of known keys.
fn parse_table(bytes: &[u8], table: Table) -> (Parsed, Vec<Hidden>) {
    let mut p = Parsed {
        settings: vec![None; table.len()],
        cleared: vec![false; table.len()],
        error: None,
    };
    let mut hidden = Vec::new();
    for (line_no, start, raw) in lines(bytes) {
        let m = merge(raw);
        let line = &m.text;
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let part = &line[..eq];
        let Some(index) = match_key(part, table) else {
            // `updated = 7`: the key part ends in a space and so names no key.
            if let Some(stripped) = part.strip_suffix(b" ")
                && !stripped.is_empty()
                && let Some(i) = match_key(stripped, table)
            {
                hidden.push(Hidden {
                    line: line_no,
                    key: table[i].0,
                    text: String::from_utf8_lossy(line).into_owned(),
                });
            }
            continue;
        };
        let (key, kind) = table[index];
        let mut v = eq + 1;
        while line.get(v) == Some(&b' ') {
            v += 1;
        }
        let value = &line[v..];
        let (offset, len) = if value.is_empty() {
            (start + m.map[eq] + 1, 0)
        } else {
            let first = m.map[v];
            let last = m.map[line.len() - 1];
            (start + first, last - first + 1)
        };
        let number = match kind {
            Kind::Text => None,
            Kind::Int if value.is_empty() => Some(0),
            Kind::Int if is_number(value) => Some(read_number(value)),
            Kind::Int => {
                p.error = Some(BootCfgError::NotANumber {
                    key: key.to_string(),
                    written_key: String::from_utf8_lossy(part).into_owned(),
                    value: String::from_utf8_lossy(value).into_owned(),
                    line: line_no,
                });
                break;
            }
        };
        if kind == Kind::Text {
            let had_text = p.settings[index]
                .as_ref()
                .is_some_and(|s| !s.bytes.is_empty());
            // An empty value stores integer 0 over the text pointer: a pointer that was NULL
            // stays NULL; one that held text is only partly cleared on 64-bit firmware.
            p.cleared[index] = value.is_empty() && (had_text || p.cleared[index]);
        }
        p.settings[index] = Some(Setting {
            key,
            written_key: String::from_utf8_lossy(part).into_owned(),
            text: String::from_utf8_lossy(value).into_owned(),
            bytes: value.to_vec(),
            line: line_no,
            offset,
            len,
            number,
        });
    }
    (p, hidden)
}

/// `scan_config` on `buf`: the offset of the first non-blank byte after
/// `<keyword>[ \t]*=` where the keyword starts a line (only white space before it on its line);
/// None when there is none, or when nothing but blanks follows the `=` up to the end of `buf`.
pub fn scan_config(buf: &[u8], keyword: &[u8]) -> Option<usize> {
    let limit = buf.len();
    let klen = keyword.len();
    let mut p = 0usize;
    loop {
        // mem_strcasestr: the keyword must lie wholly within the buffer.
        let i = (p..=limit.checked_sub(klen)?)
            .find(|&i| buf[i..i + klen].eq_ignore_ascii_case(keyword))?;
        let mut found = buf[..i]
            .iter()
            .rev()
            .take_while(|&&b| b != b'\n')
            .all(|&b| is_space(b));
        p = i + klen;
        if found {
            found = false;
            while p < limit {
                if buf[p] != b' ' && buf[p] != b'\t' {
                    if buf[p] == b'=' {
                        p += 1;
                        found = true;
                    }
                    break;
                }
                p += 1;
            }
        }
        if found {
            break;
        }
    }
    (p..limit).find(|&q| buf[q] != b' ' && buf[q] != b'\t')
}

/// Where the bootloader would write a new `bootstate` digit (`bank_set_bootstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSite {
    /// The first `bootstate` line within the first 512 bytes: the offset of its value's first
    /// byte, and that byte. The write succeeds only when it is a digit 0-3.
    Found { offset: usize, byte: u8 },
    /// No `bootstate` line in the first 512 bytes; `beyond` is the offset of the value of the
    /// first one further on, if any.
    Missing { beyond: Option<usize> },
}

/// Why the bootloader could not update a boot.cfg's `bootstate` itself
/// ([`BootCfg::state_writable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateUnwritable {
    #[error(
        "its bootstate value `{value}` does not start with a digit 0-3, which is all the bootloader can overwrite"
    )]
    NotADigit { value: String },
    #[error(
        "the bootloader reads bootstate from line {read_line} but would write the first bootstate line (byte {written_offset}) instead"
    )]
    OtherLine {
        read_line: usize,
        written_offset: usize,
    },
    #[error(
        "the bootstate line at byte {offset} is one the parser ignores, so the bootloader would update a line it does not read"
    )]
    Ignored { offset: usize },
    #[error("its bootstate line lies beyond byte 512, where the bootloader cannot update it")]
    Beyond512,
    #[error(
        "line {line} sets bootstate as `{written_key}=`, which the bootloader's in-place update does not find (it looks for the whole word `bootstate`)"
    )]
    Spelled { line: usize, written_key: String },
    #[error("boot.cfg has no bootstate line for the bootloader to update")]
    NoLine,
}

/// A parsed boot.cfg: the file's bytes, what safeboot and mboot read from it, and where the
/// bootloader would rewrite the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCfg {
    bytes: Vec<u8>,
    safeboot: Parsed,
    mboot: Parsed,
    hidden: Vec<Hidden>,
}

impl BootCfg {
    /// Parses boot.cfg bytes. Fails only when safeboot's parse fails (the bank is then skipped);
    /// mboot's own failure is [`BootCfg::loader_error`].
    pub fn parse(bytes: &[u8]) -> Result<BootCfg, BootCfgError> {
        let (safeboot, mut hidden) = parse_table(bytes, SAFEBOOT_KEYS);
        if let Some(e) = safeboot.error {
            return Err(e);
        }
        let (mboot, more) = parse_table(bytes, MBOOT_KEYS);
        hidden.extend(more);
        hidden.sort_by_key(|h| h.line);
        hidden.dedup_by_key(|h| h.line);
        Ok(BootCfg {
            bytes: bytes.to_vec(),
            safeboot,
            mboot,
            hidden,
        })
    }

    /// The file as read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The setting the bootloader keeps for a known key (case-insensitive), from safeboot's
    /// table for its four keys, else from mboot's (up to the line where mboot's parse stopped).
    pub fn get(&self, key: &str) -> Option<&Setting> {
        let pos = |t: Table| t.iter().position(|(k, _)| k.eq_ignore_ascii_case(key));
        match pos(SAFEBOOT_KEYS) {
            Some(i) => self.safeboot.settings[i].as_ref(),
            None => pos(MBOOT_KEYS).and_then(|i| self.mboot.settings[i].as_ref()),
        }
    }

    /// An integer key's number as read (0 when missing or empty).
    pub fn number(&self, key: &str) -> i128 {
        self.get(key).and_then(|s| s.number).unwrap_or(0)
    }

    fn int(&self, key: &str) -> i64 {
        self.number(key).clamp(i64::MIN.into(), i64::MAX.into()) as i64
    }

    /// `bootstate` as written; a missing key means 0 (the table's default).
    pub fn bootstate(&self) -> i64 {
        self.int("bootstate")
    }

    /// Whether a line sets `bootstate` at all (a missing one reads as 0).
    pub fn has_bootstate(&self) -> bool {
        self.get("bootstate").is_some()
    }

    /// `updated` as written (the bootloader compares it unsigned: see `nextboot`); missing
    /// means 0.
    pub fn updated(&self) -> i64 {
        self.int("updated")
    }

    /// `quickboot` as written; missing means 0.
    pub fn quickboot(&self) -> i64 {
        self.int("quickboot")
    }

    /// `build`, empty when missing or empty.
    pub fn build(&self) -> &str {
        self.text("build")
    }

    /// Whether `build=` is given an empty value after a non-empty one. The bootloader stores
    /// the empty value as integer 0 over the text pointer: with 32-bit pointers (BIOS) that is
    /// NULL, no build; with 64-bit ones (UEFI) only half of the pointer is cleared, and what
    /// the bootloader then reads as the build is unknown.
    pub fn build_cleared(&self) -> bool {
        self.safeboot.cleared[0]
    }

    /// Any known key's text, empty when missing.
    pub fn text(&self, key: &str) -> &str {
        self.get(key).map(|v| v.text.as_str()).unwrap_or("")
    }

    /// `modules=` split on `---` (as mboot's list splitter does), prefix not applied.
    pub fn modules(&self) -> Vec<&str> {
        self.text("modules")
            .split("---")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Where mboot's parse of this file fails (a non-numeric `timeout`, say): safeboot may still
    /// choose the bank, but loading it then stops with a configuration error.
    pub fn loader_error(&self) -> Option<&BootCfgError> {
        self.mboot.error.as_ref()
    }

    /// Lines that look like a known key but are ignored because of a space before `=`.
    pub fn hidden(&self) -> &[Hidden] {
        &self.hidden
    }

    /// Where the bootloader would write a new `bootstate` digit: `scan_config` over the first
    /// 512 bytes, as `bank_set_bootstate` calls it.
    pub fn state_site(&self) -> StateSite {
        let limit = self.bytes.len().min(STATE_WRITE_LIMIT);
        match scan_config(&self.bytes[..limit], b"bootstate") {
            Some(offset) => StateSite::Found {
                offset,
                byte: self.bytes[offset],
            },
            None => StateSite::Missing {
                beyond: scan_config(&self.bytes, b"bootstate").filter(|&o| o >= limit),
            },
        }
    }

    /// Whether the bootloader can itself update this file's state as it reads it: the first
    /// `bootstate` line lies within the first 512 bytes, its value starts with a digit 0-3,
    /// and it is the line the parser takes `bootstate` from (`bank_set_bootstate` writes the
    /// first such line, while the parser keeps the last). `Err` says why not.
    pub fn state_writable(&self) -> Result<usize, StateUnwritable> {
        let winner = self.get("bootstate");
        match (self.state_site(), winner) {
            (StateSite::Found { offset, byte }, Some(w)) if w.offset == offset => {
                if (b'0'..=b'3').contains(&byte) {
                    Ok(offset)
                } else {
                    Err(StateUnwritable::NotADigit {
                        value: w.text.clone(),
                    })
                }
            }
            (StateSite::Found { offset, .. }, Some(w)) => Err(StateUnwritable::OtherLine {
                read_line: w.line,
                written_offset: offset,
            }),
            (StateSite::Found { offset, .. }, None) => Err(StateUnwritable::Ignored { offset }),
            (StateSite::Missing { beyond: Some(_) }, _) => Err(StateUnwritable::Beyond512),
            (StateSite::Missing { beyond: None }, Some(w)) => Err(StateUnwritable::Spelled {
                line: w.line,
                written_key: w.written_key.clone(),
            }),
            (StateSite::Missing { beyond: None }, None) => Err(StateUnwritable::NoLine),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(b: &[u8]) -> BootCfg {
        BootCfg::parse(b).unwrap()
    }

    #[test]
    fn parses_the_41_sample() {
        let cfg =
            BootCfg::parse(include_bytes!("../../tests/fixtures/bootcfg/4.1-installed")).unwrap();
        assert_eq!(cfg.build(), "4.1.0-260247");
        assert_eq!(cfg.updated(), 2);
        assert_eq!(cfg.bootstate(), 0);
        assert_eq!(cfg.modules().last(), Some(&"vcl.tgz"));
        assert_eq!(cfg.modules().len(), 8);
        assert_eq!(cfg.loader_error(), None);
    }

    /// `parse_config_file`, `str_merge_spaces`, `parse_option`: layout.
    #[test]
    fn layout_rules() {
        let text = b"# comment\n  BUILD=  8.0.2-1 \nupdated=1\n\tUpdated=\t 7 \r\nkernelopt=a \x0b  b\nnonsense\n\n";
        let cfg = cfg(text);
        assert_eq!(cfg.build(), "8.0.2-1");
        assert_eq!(cfg.updated(), 7, "the last repeated key wins");
        assert_eq!(cfg.get("updated").unwrap().line, 4);
        assert_eq!(cfg.text("kernelopt"), "a b");
        assert!(!cfg.has_bootstate());
        assert_eq!(cfg.bootstate(), 0);
        // A line ends at a NUL; NBSP and BS are white space to the bootloader.
        let cfg = self::cfg(b"updated=5\0 # ignored\nbuild=\xa0x\x08\n");
        assert_eq!(cfg.updated(), 5);
        assert_eq!(cfg.build(), "x");
        // Bytes that are not UTF-8 are fine.
        assert_eq!(self::cfg(b"title=x\xff\nbuild=b\n").build(), "b");
    }

    /// `locate_value`: a space before `=` hides the key.
    #[test]
    fn space_before_equals_hides_the_key() {
        let cfg = cfg(b"updated=3\nupdated = 7\nBUILD =x\n");
        assert_eq!(cfg.updated(), 3);
        assert_eq!(cfg.build(), "");
        assert_eq!(
            cfg.hidden()
                .iter()
                .map(|h| (h.line, h.key))
                .collect::<Vec<_>>(),
            [(2, "updated"), (3, "build")]
        );
    }

    /// `parse_option` with safeboot's table order: prefixes.
    #[test]
    fn keys_match_by_prefix_in_table_order() {
        let cfg = cfg(b"up=9\nb=8.0\nbo=1\nQ=1\n");
        assert_eq!(cfg.updated(), 9);
        assert_eq!(cfg.build(), "8.0");
        assert_eq!(cfg.bootstate(), 1);
        assert_eq!(cfg.quickboot(), 1);
        assert!(cfg.get("updated").unwrap().by_prefix());
        assert_eq!(
            self::cfg(b"=x\n").build(),
            "x",
            "an empty key is a prefix of build"
        );
        assert_eq!(
            self::cfg(b"updatedx=4\n").updated(),
            0,
            "longer than the key"
        );
        // mboot's table: `t` is title (before timeout), `k` kernel.
        let cfg = self::cfg(b"t=5s\nk=b.b00\n");
        assert_eq!(cfg.text("title"), "5s");
        assert_eq!(cfg.text("kernel"), "b.b00");
        assert_eq!(cfg.loader_error(), None);
    }

    /// `parse_option`, `is_number`, `strtol`: integers.
    #[test]
    fn integers() {
        let cfg = cfg(b"updated=-1\nbootstate=\nquickboot=-\n");
        assert_eq!(cfg.updated(), -1);
        assert!(cfg.has_bootstate());
        assert_eq!(cfg.bootstate(), 0, "an empty value is 0");
        assert_eq!(cfg.quickboot(), 0, "a lone - reads 0");
        assert_eq!(
            self::cfg(b"updated=007\n").updated(),
            7,
            "decimal, not octal"
        );
        assert_eq!(
            self::cfg(b"updated=99999999999999999999999999999999999\n").number("updated"),
            1 << 100
        );
        let err = BootCfg::parse(b"build=1\nupdated=2\nbootstate=zero\n").unwrap_err();
        assert_eq!(
            err,
            BootCfgError::NotANumber {
                key: "bootstate".into(),
                written_key: "bootstate".into(),
                value: "zero".into(),
                line: 3
            }
        );
        for bad in [
            &b"updated=7 # newest\n"[..],
            b"updated=+1\n",
            b"up=0x10\n",
            b"quickboot=1 \x01\n",
        ] {
            assert!(
                BootCfg::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Only safeboot's keys decide whether the bank is skipped; mboot's fail later.
        let cfg = self::cfg(b"timeout=5s\nbuild=x\n");
        assert!(cfg.loader_error().unwrap().to_string().contains("timeout"));
    }

    #[test]
    fn empty_build_after_a_build_is_flagged() {
        assert!(cfg(b"build=x\nbuild=\n").build_cleared());
        assert!(!cfg(b"build=\nbuild=x\n").build_cleared());
        assert!(!cfg(b"build=\n").build_cleared());
        assert!(cfg(b"build=x\nbuild=\nbuild=\n").build_cleared());
    }

    #[test]
    fn value_offsets_point_at_the_value() {
        let text = b"build=1\n  bootstate=  2 \nupdated=\n";
        let cfg = cfg(text);
        let v = cfg.get("bootstate").unwrap();
        assert_eq!((&text[v.offset..v.offset + v.len], v.len), (&b"2"[..], 1));
        let u = cfg.get("updated").unwrap();
        assert_eq!((u.offset, u.len), (text.len() - 1, 0));
        let t = b"kernelopt= a \t b\n";
        let k = self::cfg(t);
        let k = k.get("kernelopt").unwrap();
        assert_eq!(&t[k.offset..k.offset + k.len], b"a \t b");
    }

    /// `scan_config` and `bank_set_bootstate`: where the state is written.
    #[test]
    fn state_site() {
        let site = |b: &[u8]| cfg(b).state_site();
        assert_eq!(
            site(b"bootstate=1\n"),
            StateSite::Found {
                offset: 10,
                byte: b'1'
            }
        );
        // Blanks before `=` and after it are fine for scan_config (not for the parser).
        assert_eq!(
            site(b" BootState \t= \t2\n"),
            StateSite::Found {
                offset: 15,
                byte: b'2'
            }
        );
        // Not the first word of its line, or commented: not found.
        assert_eq!(
            site(b"kernelopt=bootstate=1\n#bootstate=1\n"),
            StateSite::Missing { beyond: None }
        );
        // Beyond byte 512.
        let mut long = format!("title={}\n", "x".repeat(600)).into_bytes();
        long.extend_from_slice(b"bootstate=1\n");
        let at = long.len() - 2;
        assert_eq!(
            cfg(&long).state_site(),
            StateSite::Missing { beyond: Some(at) }
        );
        // The value's first byte must lie within the 512 bytes.
        let mut edge = format!("title={}\n", "x".repeat(512 - 7 - 10)).into_bytes();
        edge.extend_from_slice(b"bootstate=1\n");
        assert_eq!(edge.iter().position(|&b| b == b'1').unwrap(), 512);
        assert!(matches!(
            cfg(&edge).state_site(),
            StateSite::Missing { beyond: Some(512) }
        ));
        edge.remove(0);
        assert_eq!(
            cfg(&edge).state_site(),
            StateSite::Found {
                offset: 511,
                byte: b'1'
            }
        );
        // The first line, whatever the parser keeps.
        let two = cfg(b"bootstate=0\nbootstate=1\n");
        assert_eq!(two.bootstate(), 1);
        assert_eq!(
            two.state_site(),
            StateSite::Found {
                offset: 10,
                byte: b'0'
            }
        );
        assert!(
            two.state_writable()
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        assert!(cfg(b"boot=1\n").state_writable().is_err());
        assert!(cfg(b"bootstate=-1\n").state_writable().is_err());
        assert_eq!(cfg(b"bootstate=3\n").state_writable(), Ok(10));
        assert!(
            cfg(&long)
                .state_writable()
                .unwrap_err()
                .to_string()
                .contains("beyond byte 512")
        );
    }
}
