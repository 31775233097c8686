//! What in a boot.cfg the bootloader reads differently than a reader would expect.

use super::{Firmware, atoi};
use crate::esxi::bootcfg::StateSite;

use crate::esxi::bootcfg::BootCfg;

/// What the bootloader reads differently from what boot.cfg seems to say.
pub fn notes(cfg: &BootCfg) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["build", "updated", "bootstate", "quickboot"] {
        if let Some(s) = cfg.get(key)
            && s.by_prefix()
        {
            out.push(format!(
                "line {}: `{}={}` sets {key}: the bootloader takes any leading part of a key for the key (tried in the order build, updated, bootstate, quickboot)",
                s.line, s.written_key, s.text
            ));
        }
    }
    for h in cfg.hidden() {
        if !matches!(h.key, "build" | "updated" | "bootstate" | "quickboot") {
            continue;
        }
        let now = match cfg.get(h.key) {
            Some(s) => format!("{} is `{}` from line {}", h.key, s.text, s.line),
            None if h.key == "build" => "the bank has no build".to_string(),
            None => format!("{} stays 0", h.key),
        };
        out.push(format!(
            "line {}: `{}` is ignored: a space before `=` hides the key from the bootloader, so {now}",
            h.line, h.text
        ));
    }
    let wide = |key: &str| {
        let n = cfg.number(key);
        let (u, b) = (atoi(n, Firmware::Uefi), atoi(n, Firmware::Bios));
        (n, u, b)
    };
    let (n, u, b) = wide("updated");
    if n < 0 || n > i128::from(i32::MAX) {
        let text = cfg.text("updated");
        if u == b {
            out.push(format!(
                "updated={text} is read as the unsigned number {}{}",
                u as u32,
                if u as u32 == u32::MAX {
                    ", the largest possible"
                } else {
                    ""
                }
            ));
        } else {
            out.push(format!(
                "updated={text} is beyond 32 bits: the UEFI bootloader reads {}, the BIOS one {}",
                u as u32, b as u32
            ));
        }
    }
    for key in ["bootstate", "quickboot"] {
        let (_, u, b) = wide(key);
        let differs = if key == "quickboot" {
            (u != 0) != (b != 0)
        } else {
            u != b
        };
        if differs {
            out.push(format!(
                "{key}={} is beyond 32 bits: the UEFI bootloader reads {u}, the BIOS one {b}",
                cfg.text(key)
            ));
        }
    }
    if cfg.build_cleared() {
        out.push(format!(
            "line {}: build= is empty after an earlier build= line: the BIOS bootloader then has no build; what the UEFI one reads is unknown (the empty value clears only half of the stored text pointer)",
            cfg.get("build").map(|s| s.line).unwrap_or(0)
        ));
    }
    if let (StateSite::Found { offset, .. }, Some(w)) = (cfg.state_site(), cfg.get("bootstate"))
        && w.offset != offset
    {
        out.push(format!(
            "the bootloader reads bootstate from line {}, but when it changes the state at boot it overwrites the first bootstate line (byte {offset})",
            w.line
        ));
    }
    if let Some(e) = cfg.loader_error() {
        out.push(format!(
            "mboot, which loads the bank once it is chosen, cannot parse this boot.cfg ({e}): if this bank is chosen the boot stops with a configuration error"
        ));
    }
    out
}
