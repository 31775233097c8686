//! Vendor, device and class names for PCI IDs.
//!
//! On the rescue system the user has to recognise the card ESXi saw; `1000:005d` means little,
//! "Broadcom / LSI MegaRAID SAS-3 3108" a lot. The rescue system's own `pci.ids` is preferred
//! because it is the file `lspci` reads, so our names match what the user sees there; when it is
//! missing (minimal live images) a copy built into the binary (`data/pci.ids.gz`) is used.
//!
//! The `pci-ids` crate was tried and dropped: its build script downloads the database from the
//! network at build time, and it has no runtime parser. Why not `pciid-parser` either, which has
//! one (`Database::read`): it builds a `String` per vendor, device and subsystem in nested maps
//! (tens of thousands of allocations for one lookup on a rescue system), where one buffer and
//! span indexes do. Reading the text format is simple, so it is done here. The parser keeps the file text in one
//! buffer and indexes vendors, devices, classes and subclasses by byte spans into it, which keeps
//! loading the ~1.3 MB system file to one read, one pass and a few vectors.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where distributions install `pci.ids`, in the order `lspci` and `update-pciids` use them.
pub const SYSTEM_PATHS: [&str; 3] = [
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids",
];

/// Why an explicitly named `pci.ids` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PciIdsError {
    /// The file could not be read at all (missing, a directory, no permission...).
    #[error("cannot read PCI ID database {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file was read but is not a `pci.ids` database.
    #[error("{origin} is not a pci.ids database: {reason}")]
    Invalid { origin: String, reason: String },
}

/// A PCI name database: the system's `pci.ids` or the one built into the binary.
///
/// Lookups return owned strings so callers can keep them after the database is dropped.
pub struct PciIds {
    db: Db,
    source: String,
}

enum Db {
    Text(Table),
}

/// The built-in copy of pci.ids (see `data/README.md` for its version and licence).
const BUILTIN_GZ: &[u8] = include_bytes!("../../data/pci.ids.gz");

impl fmt::Debug for PciIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PciIds");
        d.field("source", &self.source);
        let Db::Text(t) = &self.db;
        {
            d.field("vendors", &t.vendors.len())
                .field("devices", &t.devices.len())
                .field("classes", &t.classes.len())
                .field("subclasses", &t.subclasses.len());
        }
        d.finish()
    }
}

impl PciIds {
    /// The database `lspci` on this system would use, else the built-in one. Never fails: a
    /// missing or unusable system file just means the built-in names are used, and
    /// [`PciIds::source`] says which one was taken.
    pub fn load() -> PciIds {
        Self::load_first(SYSTEM_PATHS.iter().map(Path::new))
    }

    /// The first of `candidates` that exists and parses (its source reads `system:<path>`),
    /// else the built-in database. Lets callers and tests choose the search list.
    pub fn load_first<'a>(candidates: impl IntoIterator<Item = &'a Path>) -> PciIds {
        for path in candidates {
            if !path.is_file() {
                continue;
            }
            if let Ok(mut ids) = Self::from_path(path) {
                ids.source = format!("system:{}", path.display());
                return ids;
            }
        }
        Self::builtin()
    }

    /// Reads one `pci.ids` file the user named; unlike [`PciIds::load`] this reports why the
    /// file cannot be used instead of falling back. Source reads `file:<path>`.
    pub fn from_path(path: &Path) -> Result<PciIds, PciIdsError> {
        let bytes = std::fs::read(path).map_err(|cause| PciIdsError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let origin = format!("file:{}", path.display());
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            // pci.ids is UTF-8 today; a stray byte in an old copy should not lose every name.
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Self::from_text(text, origin)
    }

    /// Parses `pci.ids` text already in memory; `origin` becomes [`PciIds::source`].
    ///
    /// Lines that fit no known form are skipped, like comments, so that a newer file format
    /// does not cost the names we can read; a text without a single vendor entry is rejected.
    pub fn from_text(text: String, origin: impl Into<String>) -> Result<PciIds, PciIdsError> {
        let origin = origin.into();
        let invalid = |reason: String| PciIdsError::Invalid {
            origin: origin.clone(),
            reason,
        };
        if let Some(pos) = text.bytes().position(|b| b == 0) {
            return Err(invalid(format!("binary data (NUL byte at offset {pos})")));
        }
        if u32::try_from(text.len()).is_err() {
            return Err(invalid(format!("too large ({} bytes)", text.len())));
        }
        let table = Table::parse(text);
        if table.vendors.is_empty() {
            return Err(invalid("no vendor entries found".to_string()));
        }
        Ok(PciIds {
            db: Db::Text(table),
            source: origin,
        })
    }

    /// The database compiled into the binary; always available, so a rescue system without
    /// pciutils still gets names. Decompressed on use (a few milliseconds), only when needed.
    pub fn builtin() -> PciIds {
        let mut text = String::new();
        let decoded = flate2::read::GzDecoder::new(BUILTIN_GZ).read_to_string(&mut text);
        let parsed = decoded
            .ok()
            .and_then(|_| Self::from_text(text, "built-in").ok());
        // The copy is fixed at build time and checked by the tests; an empty table is the safe
        // answer should it ever be unreadable.
        parsed.unwrap_or(PciIds {
            db: Db::Text(Table::parse(String::new())),
            source: "built-in (unreadable)".to_string(),
        })
    }

    /// Which database answers: `system:<path>`, `file:<path>` or `built-in`; shown to the user
    /// so that a name differing from another tool's can be explained.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The vendor's name, e.g. `Intel Corporation` for 0x8086.
    pub fn vendor_name(&self, vendor: u16) -> Option<String> {
        match &self.db {
            Db::Text(t) => t.vendor(vendor).map(str::to_string),
        }
    }

    /// The device's name within its vendor, e.g. `MegaRAID SAS-3 3108 [Invader]` for 1000:005d.
    pub fn device_name(&self, vendor: u16, device: u16) -> Option<String> {
        match &self.db {
            Db::Text(t) => t.device(vendor, device).map(str::to_string),
        }
    }

    /// The name for a 24-bit class code as sysfs gives it (`0x010400`): the subclass name
    /// (`RAID bus controller`), or the class name when the subclass is unknown, as `lspci` does.
    /// The programming interface byte is ignored.
    pub fn class_name(&self, class_code: u32) -> Option<String> {
        let class = ((class_code >> 16) & 0xff) as u8;
        let subclass = ((class_code >> 8) & 0xff) as u8;
        match &self.db {
            Db::Text(t) => t
                .subclass(class, subclass)
                .or_else(|| t.class(class))
                .map(str::to_string),
        }
    }
}

/// A byte range in [`Table::text`]; the text is at most `u32::MAX` bytes long.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// Index over a `pci.ids` text. Every vector is sorted by key; on duplicate keys the first
/// entry in the file wins.
struct Table {
    text: String,
    vendors: Vec<(u16, Span)>,
    /// Key: vendor << 16 | device.
    devices: Vec<(u32, Span)>,
    classes: Vec<(u8, Span)>,
    /// Key: class << 8 | subclass.
    subclasses: Vec<(u16, Span)>,
}

enum Section {
    None,
    Vendor(u16),
    Class(u8),
}

impl Table {
    fn parse(text: String) -> Table {
        let mut vendors = Vec::with_capacity(4096);
        let mut devices = Vec::with_capacity(text.len() / 40);
        let mut classes = Vec::new();
        let mut subclasses = Vec::new();
        let mut section = Section::None;

        let mut offset = 0usize;
        for raw in text.split('\n') {
            let line_start = offset;
            offset += raw.len() + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let span_of = |name: &str| Span {
                // `name` is a subslice of `text`; the length check in from_text keeps it in u32.
                start: (line_start + (name.as_ptr() as usize - raw.as_ptr() as usize)) as u32,
                len: name.len() as u32,
            };
            if let Some(rest) = line.strip_prefix("\t\t") {
                // Subsystem (vendor section) or programming interface (class section): unused.
                let _ = rest;
            } else if let Some(rest) = line.strip_prefix('\t') {
                match section {
                    Section::Vendor(v) => {
                        if let Some((id, name)) = id_and_name(rest, 4) {
                            devices.push(((u32::from(v) << 16) | id, span_of(name)));
                        }
                    }
                    Section::Class(c) => {
                        if let Some((id, name)) = id_and_name(rest, 2) {
                            subclasses.push(((u16::from(c) << 8) | id as u16, span_of(name)));
                        }
                    }
                    Section::None => {}
                }
            } else if let Some(rest) = line.strip_prefix("C ") {
                section = match id_and_name(rest, 2) {
                    Some((id, name)) => {
                        classes.push((id as u8, span_of(name)));
                        Section::Class(id as u8)
                    }
                    None => Section::None,
                };
            } else {
                section = match id_and_name(line, 4) {
                    Some((id, name)) => {
                        vendors.push((id as u16, span_of(name)));
                        Section::Vendor(id as u16)
                    }
                    // An unknown top-level line (a future section): ignore what is under it.
                    None => Section::None,
                };
            }
        }

        // The file is sorted already, so these stable sorts are a linear pass.
        fn index<K: Ord + Copy>(v: &mut Vec<(K, Span)>) {
            v.sort_by_key(|e| e.0);
            v.dedup_by_key(|e| e.0);
            v.shrink_to_fit();
        }
        index(&mut vendors);
        index(&mut devices);
        index(&mut classes);
        index(&mut subclasses);
        Table {
            text,
            vendors,
            devices,
            classes,
            subclasses,
        }
    }

    fn get<K: Ord>(&self, v: &[(K, Span)], key: K) -> Option<&str> {
        let i = v.binary_search_by(|e| e.0.cmp(&key)).ok()?;
        let s = v[i].1;
        self.text.get(s.start as usize..(s.start + s.len) as usize)
    }

    fn vendor(&self, vendor: u16) -> Option<&str> {
        self.get(&self.vendors, vendor)
    }

    fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.get(&self.devices, (u32::from(vendor) << 16) | u32::from(device))
    }

    fn class(&self, class: u8) -> Option<&str> {
        self.get(&self.classes, class)
    }

    fn subclass(&self, class: u8, subclass: u8) -> Option<&str> {
        self.get(
            &self.subclasses,
            (u16::from(class) << 8) | u16::from(subclass),
        )
    }
}

/// Splits `hhhh  Name` into its id (exactly `digits` hex digits) and the trimmed name.
fn id_and_name(s: &str, digits: usize) -> Option<(u32, &str)> {
    let id = s.get(..digits)?;
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let rest = &s[digits..];
    // The format separates id and name with two spaces; accept any run of blanks.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let name = rest.trim();
    if name.is_empty() {
        return None;
    }
    Some((u32::from_str_radix(id, 16).ok()?, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# comment line
#\tVersion: test

1000  Broadcom / LSI
\t0001  53c810
\t\t1000 1000  LSI53C810AE PCI to SCSI I/O Processor
\t005d  MegaRAID SAS-3 3108 [Invader]
\t\t1000 9361  MegaRAID SAS 9361-8i
8086  Intel Corporation\r
\t1521  I350 Gigabit Network Connection\r
\t2f08  Xeon E7 v3/Xeon E5 v3/Core i7 PCI Express Root Port 3
ZZZZ  not a vendor line
\tdead  device under a broken vendor line
0bad  Duplicate first
0bad  Duplicate second
abcd\tTab separated
\txyz1  bad device id

# List of known device classes, subclasses and programming interfaces

C 01  Mass storage controller
\t00  SCSI storage controller
\t04  RAID bus controller
\t06  SATA controller
\t\t01  AHCI 1.0
C 06  Bridge
\t04  PCI bridge
\t\t00  Normal decode
C ff  Unassigned class
";

    fn sample() -> PciIds {
        PciIds::from_text(SAMPLE.to_string(), "test").unwrap()
    }

    #[test]
    fn parses_vendors_and_devices() {
        let ids = sample();
        assert_eq!(ids.source(), "test");
        assert_eq!(ids.vendor_name(0x1000).as_deref(), Some("Broadcom / LSI"));
        assert_eq!(
            ids.vendor_name(0x8086).as_deref(),
            Some("Intel Corporation")
        );
        assert_eq!(
            ids.device_name(0x1000, 0x005d).as_deref(),
            Some("MegaRAID SAS-3 3108 [Invader]")
        );
        assert_eq!(ids.device_name(0x1000, 0x0001).as_deref(), Some("53c810"));
        // CRLF line ends are tolerated.
        assert_eq!(
            ids.device_name(0x8086, 0x1521).as_deref(),
            Some("I350 Gigabit Network Connection")
        );
        // A device id is looked up under its own vendor only.
        assert_eq!(ids.device_name(0x8086, 0x005d), None);
        assert_eq!(ids.vendor_name(0x1234), None);
    }

    #[test]
    fn skips_subsystems_broken_lines_and_duplicates() {
        let ids = sample();
        // Subsystem lines are not devices.
        assert_eq!(ids.device_name(0x1000, 0x1000), None);
        assert_eq!(ids.device_name(0x1000, 0x9361), None);
        // Devices under an unparseable vendor line are not attached to the previous vendor.
        assert_eq!(ids.device_name(0x8086, 0xdead), None);
        // First entry wins.
        assert_eq!(ids.vendor_name(0x0bad).as_deref(), Some("Duplicate first"));
        assert_eq!(ids.vendor_name(0xabcd).as_deref(), Some("Tab separated"));
    }

    #[test]
    fn class_names_fall_back_to_the_class() {
        let ids = sample();
        assert_eq!(
            ids.class_name(0x010400).as_deref(),
            Some("RAID bus controller")
        );
        assert_eq!(ids.class_name(0x010601).as_deref(), Some("SATA controller"));
        assert_eq!(ids.class_name(0x060400).as_deref(), Some("PCI bridge"));
        assert_eq!(
            ids.class_name(0x01ff00).as_deref(),
            Some("Mass storage controller")
        );
        assert_eq!(
            ids.class_name(0xffff00).as_deref(),
            Some("Unassigned class")
        );
        assert_eq!(ids.class_name(0x020000), None);
        // Class-section lines are not vendors or devices.
        assert_eq!(ids.vendor_name(0x0001), None);
    }

    #[test]
    fn rejects_texts_that_are_not_pci_ids() {
        for bad in [
            "",
            "# only comments\n",
            "C 01  Mass storage\n",
            "a\0b 1000  x\n",
        ] {
            let err = PciIds::from_text(bad.to_string(), "bad").unwrap_err();
            assert!(matches!(err, PciIdsError::Invalid { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn explicit_paths_report_typed_errors() {
        let missing = Path::new("/nonexistent/pci.ids");
        assert!(matches!(
            PciIds::from_path(missing),
            Err(PciIdsError::Read { .. })
        ));
        // A directory cannot be read as a file.
        assert!(matches!(
            PciIds::from_path(Path::new("/")),
            Err(PciIdsError::Read { .. })
        ));
        // Cargo.toml exists but is not a pci.ids file.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let err = PciIds::from_path(&manifest).unwrap_err();
        assert!(matches!(err, PciIdsError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("Cargo.toml"), "{err}");
    }

    #[test]
    fn load_first_falls_back_to_builtin() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let ids = PciIds::load_first([Path::new("/nonexistent/pci.ids"), manifest.as_path()]);
        assert_eq!(ids.source(), "built-in");
    }

    #[test]
    fn builtin_database_knows_the_story_hardware() {
        let ids = PciIds::builtin();
        assert_eq!(ids.source(), "built-in");
        assert_eq!(
            ids.vendor_name(0x8086).as_deref(),
            Some("Intel Corporation")
        );
        assert_eq!(ids.vendor_name(0x1000).as_deref(), Some("Broadcom / LSI"));
        assert_eq!(
            ids.device_name(0x1000, 0x005d).as_deref(),
            Some("MegaRAID SAS-3 3108 [Invader]")
        );
        assert_eq!(
            ids.class_name(0x010400).as_deref(),
            Some("RAID bus controller")
        );
        assert_eq!(
            ids.class_name(0xffff00).as_deref(),
            Some("Unassigned class")
        );
    }

    #[test]
    fn system_file_agrees_with_builtin_on_stable_names() {
        let ids = PciIds::load();
        if ids.source() == "built-in" {
            eprintln!("no system pci.ids; comparison skipped");
            return;
        }
        assert!(ids.source().starts_with("system:/"), "{}", ids.source());
        let builtin = PciIds::builtin();
        for (v, d) in [(0x8086, 0x1521), (0x1000, 0x005d), (0x8086, 0x8d02)] {
            assert_eq!(ids.vendor_name(v), builtin.vendor_name(v));
            assert_eq!(ids.device_name(v, d), builtin.device_name(v, d));
        }
        for c in [0x010400, 0x060400, 0x020000, 0x0c0330] {
            assert_eq!(ids.class_name(c), builtin.class_name(c));
        }
    }
}
