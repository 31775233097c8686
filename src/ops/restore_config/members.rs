//! The member comparison: which members of state.tgz and local.tgz the restore adds, removes or
//! changes, for the plan to list.

use super::{MemberChange, STATE};
use crate::esxi::config::Config;
use crate::format::archive::Tgz;

/// Members of state.tgz and local.tgz that the restore adds, removes or changes.
pub(super) fn member_changes(old: Option<&Config>, new: &Config) -> Vec<MemberChange> {
    let mut out = Vec::new();
    let mut compare = |archive: &'static str, a: Option<&Tgz>, b: Option<&Tgz>| {
        let Some(b) = b else { return };
        for m in &b.members {
            match a.and_then(|a| a.member(&m.name).map(|o| (a, o))) {
                None => out.push(MemberChange {
                    archive,
                    name: m.name.clone(),
                    change: "added",
                    old_size: None,
                    new_size: Some(m.size),
                }),
                Some((a, o)) if a.data(o) != b.data(m) => out.push(MemberChange {
                    archive,
                    name: m.name.clone(),
                    change: "changed",
                    old_size: Some(o.size),
                    new_size: Some(m.size),
                }),
                _ => {}
            }
        }
        for o in a.map(|a| a.members.as_slice()).unwrap_or_default() {
            if b.member(&o.name).is_none() {
                out.push(MemberChange {
                    archive,
                    name: o.name.clone(),
                    change: "removed",
                    old_size: Some(o.size),
                    new_size: None,
                });
            }
        }
    };
    compare(STATE, old.map(|c| &c.state), Some(&new.state));
    compare(
        "local.tgz",
        old.and_then(|c| c.local.as_ref()),
        new.local.as_ref(),
    );
    out
}
