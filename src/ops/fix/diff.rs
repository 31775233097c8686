//! The unified diff of esx.conf a plan shows.

use crate::esxi::config::ESX_CONF;

/// A unified diff of two esx.conf texts.
pub fn unified_diff(old: &[u8], new: &[u8], location: &str) -> String {
    let (a, b) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    similar::TextDiff::from_lines(a.as_ref(), b.as_ref())
        .unified_diff()
        .context_radius(2)
        .header(
            &format!("a/{location} > {ESX_CONF}"),
            &format!("b/{location} > {ESX_CONF}"),
        )
        .to_string()
}
