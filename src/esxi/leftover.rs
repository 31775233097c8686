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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> FileInfo {
        FileInfo {
            name: name.into(),
            size: 1,
            modified: String::new(),
            is_dir: false,
        }
    }

    fn listing(names: &[&str]) -> Vec<FileInfo> {
        let mut v: Vec<FileInfo> = names.iter().map(|n| file(n)).collect();
        // Files a bank always holds, which never count.
        v.push(file("boot.cfg"));
        v.push(file("s.v00"));
        v
    }

    #[test]
    fn names_follow_the_stem_in_lower_case() {
        let n = Names::for_file("STATE.TGZ");
        assert_eq!(
            (n.current.as_str(), n.new.as_str(), n.old.as_str()),
            ("state.tgz", "state.new", "state.old")
        );
        let n = Names::for_file("boot.cfg");
        assert_eq!((n.new.as_str(), n.old.as_str()), ("boot.new", "boot.old"));
        assert_eq!(n.while_missing(), "the bootloader skips this bank");
        assert_eq!(
            Names::for_file("local.tgz").while_missing(),
            "ESXi would boot with defaults"
        );
    }

    /// Every combination of the three names, and which file holds the configuration after
    /// recovery: the one ESXi would load once the interrupted rename sequence is finished or
    /// undone.
    #[test]
    fn every_combination_of_the_three_names() {
        let n = Names::for_file("state.tgz");
        let cases: [(&[&str], Option<Leftover>, &str); 8] = [
            (&[], None, "state.tgz"),
            (&["state.tgz"], None, "state.tgz"),
            (
                &["state.tgz", "state.new"],
                Some(Leftover::NewBesideCurrent),
                "state.tgz",
            ),
            (&["state.new"], Some(Leftover::OnlyNew), "state.new"),
            (
                &["state.new", "state.old"],
                Some(Leftover::NewAndOld),
                "state.new",
            ),
            (&["state.old"], Some(Leftover::OnlyOld), "state.old"),
            (
                &["state.tgz", "state.old"],
                Some(Leftover::OldBesideCurrent),
                "state.tgz",
            ),
            (
                &["state.tgz", "state.new", "state.old"],
                Some(Leftover::All),
                "state.tgz",
            ),
        ];
        for (files, want, effective) in cases {
            let got = Leftover::detect(&listing(files), &n);
            assert_eq!(got, want, "{files:?}");
            if let Some(l) = got {
                assert_eq!(l.effective(&n), effective, "{files:?}");
            }
        }
    }

    /// FAT names are case-insensitive (a short name is stored in upper case, so a file may
    /// read back as `STATE.TGZ`), and a directory of that name is not the file.
    #[test]
    fn case_is_ignored_and_directories_do_not_count() {
        let n = Names::for_file("state.tgz");
        let files = vec![file("STATE.TGZ"), file("State.New")];
        assert_eq!(
            Leftover::detect(&files, &n),
            Some(Leftover::NewBesideCurrent)
        );
        let mut dir = file("state.old");
        dir.is_dir = true;
        let files = vec![file("state.tgz"), dir];
        assert_eq!(Leftover::detect(&files, &n), None);
    }

    #[test]
    fn each_description_names_the_files_and_what_the_host_does() {
        let n = Names::for_file("boot.cfg");
        assert_eq!(
            Leftover::OnlyOld.describe(&n),
            "an interrupted bootbank write left the previous boot.cfg as boot.old and no boot.cfg: the bootloader skips this bank until it is undone"
        );
        assert_eq!(
            Leftover::All.describe(&Names::for_file("state.tgz")),
            "state.tgz, state.new and state.old all exist: not a state bootbank leaves"
        );
    }
}
