//! What an interrupted bootbank write can leave in a bank's root directory, and which file then
//! holds the configuration in place. Read by every command that looks at a bank (inspect reports
//! it, fix completes or undoes it); the write path itself is `write::transaction`.

use crate::format::fat::FileInfo;
use serde::Serialize;

/// The names used around one configuration file, e.g. `state.tgz`, `state.new`, `state.old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub current: String,
    pub new: String,
    pub old: String,
}

impl Names {
    /// Names for a file such as `state.tgz` (or a bare `local.tgz`).
    pub fn for_file(file: &str) -> Names {
        let stem = file.split('.').next().unwrap_or(file).to_ascii_lowercase();
        Names {
            current: file.to_ascii_lowercase(),
            new: format!("{stem}.new"),
            old: format!("{stem}.old"),
        }
    }
}

impl Names {
    /// What the host does while `current` is missing, for messages.
    pub fn while_missing(&self) -> &'static str {
        if self.current == "boot.cfg" {
            "the bootloader skips this bank"
        } else {
            "ESXi would boot with defaults"
        }
    }
}

/// What an interrupted write left behind, and which file holds the configuration that will be in
/// place once it is completed or undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Leftover {
    /// `state.new` beside `state.tgz`: interrupted before the switch; undo removes `state.new`.
    NewBesideCurrent,
    /// Only `state.new`: interrupted while `state.tgz` was being renamed; completing renames
    /// `state.new` to `state.tgz`.
    OnlyNew,
    /// `state.new` and `state.old`, no `state.tgz`: interrupted between the two renames;
    /// completing renames `state.new` and removes `state.old`.
    NewAndOld,
    /// Only `state.old`: interrupted while `state.new` was being renamed; undo renames
    /// `state.old` back.
    OnlyOld,
    /// `state.old` beside `state.tgz`: the switch is done; completing removes `state.old`.
    OldBesideCurrent,
    /// All three names: not a state bootbank leaves; nothing is done automatically.
    All,
}

impl Leftover {
    /// Detects leftovers from a root directory listing.
    pub fn detect(files: &[FileInfo], names: &Names) -> Option<Leftover> {
        let has = |n: &str| {
            files
                .iter()
                .any(|f| !f.is_dir && f.name.eq_ignore_ascii_case(n))
        };
        match (has(&names.current), has(&names.new), has(&names.old)) {
            (true, false, false) | (false, false, false) => None,
            (true, true, false) => Some(Leftover::NewBesideCurrent),
            (false, true, false) => Some(Leftover::OnlyNew),
            (false, true, true) => Some(Leftover::NewAndOld),
            (false, false, true) => Some(Leftover::OnlyOld),
            (true, false, true) => Some(Leftover::OldBesideCurrent),
            (true, true, true) => Some(Leftover::All),
        }
    }

    /// The file whose content will be the configuration after recovery.
    pub fn effective<'a>(&self, names: &'a Names) -> &'a str {
        match self {
            Leftover::OnlyNew | Leftover::NewAndOld => &names.new,
            Leftover::OnlyOld => &names.old,
            _ => &names.current,
        }
    }

    /// One sentence for the user.
    pub fn describe(&self, names: &Names) -> String {
        let Names { current, new, old } = names;
        match self {
            Leftover::NewBesideCurrent => format!(
                "an interrupted bootbank write left {new} beside {current}; {current} is still the configuration in place"
            ),
            Leftover::OnlyNew => format!(
                "an interrupted bootbank write left the new {current} as {new} and no {current}: {} until it is completed",
                names.while_missing()
            ),
            Leftover::NewAndOld => format!(
                "an interrupted bootbank write left {new} and {old} but no {current}: {} until it is completed",
                names.while_missing()
            ),
            Leftover::OnlyOld => format!(
                "an interrupted bootbank write left the previous {current} as {old} and no {current}: {} until it is undone",
                names.while_missing()
            ),
            Leftover::OldBesideCurrent => {
                format!("a bootbank write finished but left {old} beside {current}")
            }
            Leftover::All => {
                format!("{current}, {new} and {old} all exist: not a state bootbank leaves")
            }
        }
    }
}
