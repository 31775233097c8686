//! The human-readable report: the verdict first, then the banks, the configuration, the devices.

use bootbank::findings::Severity;
use bootbank::inspect::{Report, TargetKind};
use std::fmt::Write as _;
use std::io::Write as _;

/// Prints the report to stdout.
pub fn print_report(r: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(render(r).as_bytes());
}

fn kind_name(k: TargetKind) -> &'static str {
    match k {
        TargetKind::Disk => "disk",
        TargetKind::Partition => "bootbank partition image",
        TargetKind::Directory => "bootbank directory",
        TargetKind::StateArchive => "state archive",
        TargetKind::ConfigBundle => "config bundle",
        TargetKind::LocalArchive => "local.tgz archive",
    }
}

/// The banks table (empty text when there are no banks), shared by inspect and `bank status`.
pub fn render_banks(banks: &[bootbank::inspect::BankReport]) -> String {
    let mut s = String::new();
    if banks.is_empty() {
        return s;
    }
    let _ = writeln!(s, "Banks");
    let _ = writeln!(
        s,
        "  {:<5} {:<36} {:<24} {:>7}  {:<11} {:<6} next",
        "part", "uuid", "build", "updated", "bootstate", "valid"
    );
    for b in banks {
        let state = match (b.bootstate, b.bootstate_at_boot) {
            (Some(w), Some(a)) if b.bootstate_written => format!("{w} -> {a}"),
            (Some(_), Some(a)) => format!("none -> {a}"),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            s,
            "  {:<5} {:<36} {:<24} {:>7}  {:<11} {:<6} {}",
            b.partition.map(|p| p.to_string()).unwrap_or("-".into()),
            b.uuid.as_deref().unwrap_or("-"),
            b.build.as_deref().unwrap_or("-"),
            b.updated.map(|u| u.to_string()).unwrap_or("-".into()),
            state,
            if b.valid { "yes" } else { "no" },
            if b.boots_next { "<- boots next" } else { "" }
        );
        let state_desc = match &b.state_archive {
            Some(f) => format!("{} {} bytes, modified {}", f.name, f.size, f.modified),
            None => "no state.tgz".to_string(),
        };
        let _ = writeln!(s, "        holds: {}, {}", b.contents, state_desc);
        match &b.skipped_reason {
            Some(why) => {
                let _ = writeln!(s, "        skipped: {why}");
            }
            None => {
                for why in &b.invalid_reasons {
                    let _ = writeln!(s, "        not valid: {why}");
                }
            }
        }
        for n in &b.notes {
            let _ = writeln!(s, "        note: {n}");
        }
    }
    let _ = writeln!(s);
    s
}

/// The prediction's explanation, one sentence a line (empty text when there is nothing
/// surprising), shared by inspect and `bank status`.
pub fn render_why(explanation: &[String]) -> String {
    let mut s = String::new();
    if explanation.is_empty() {
        return s;
    }
    let _ = writeln!(s, "Why");
    for e in explanation {
        let _ = writeln!(s, "  {e}");
    }
    let _ = writeln!(s);
    s
}

/// Renders the report as text.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let mut head = format!("{}: {}", r.target, kind_name(r.kind));
    if let Some(t) = &r.partition_table {
        let scheme = match t.scheme {
            bootbank::Scheme::Gpt => "GPT",
            bootbank::Scheme::Mbr => "MBR",
        };
        let _ = write!(head, ", {scheme}, {}-byte sectors", t.sector_size);
    }
    let _ = writeln!(s, "{head}\n");

    s.push_str(&verdict(r));

    s.push_str(&render_banks(&r.banks));
    s.push_str(&render_why(&r.explanation));

    if let Some(b) = &r.bundle {
        let _ = writeln!(
            s,
            "Config bundle: release level {}, host UUID {}\n",
            b.release_level.as_deref().unwrap_or("?"),
            b.uuid.as_deref().unwrap_or("?")
        );
    }

    if let Some(c) = &r.config {
        let enc = match c.encryption {
            bootbank::Encryption::None => "not encrypted".to_string(),
            bootbank::Encryption::Kdf => format!(
                "encrypted, key derivable offline (mode {})",
                c.encryption_mode.as_deref().unwrap_or("?")
            ),
            bootbank::Encryption::Tpm => format!(
                "encrypted, key sealed by the host's TPM (mode {})",
                c.encryption_mode.as_deref().unwrap_or("?")
            ),
        };
        let _ = writeln!(s, "Configuration: {} ({enc})", c.source);
        if let Some(h) = &c.hostname {
            let _ = writeln!(s, "  host name: {h}");
        }
        if !c.local_members.is_empty() {
            let _ = writeln!(s, "  local.tgz members:");
            for m in &c.local_members {
                let _ = writeln!(s, "    {} {:>9}  {}", m.mode, m.size, m.name);
            }
        } else {
            let names: Vec<&str> = c.state_members.iter().map(|m| m.name.as_str()).collect();
            let _ = writeln!(s, "  state.tgz members: {}", names.join(", "));
        }
        let _ = writeln!(s);
    }

    if let Some(o) = r.config.as_ref().and_then(|c| c.device_ownership.as_ref()) {
        let _ = writeln!(
            s,
            "Device ownership is read from {}: {}",
            match o.store {
                Some(st) => st.to_string(),
                None => "esx.conf or the ConfigStore (not known which)".to_string(),
            },
            o.why
        );
        let _ = writeln!(s);
    }

    if !r.devices.is_empty() {
        let _ = writeln!(
            s,
            "PCI devices (esx.conf addresses are decimal; lspci and the ConfigStore use hex)"
        );
        let _ = writeln!(
            s,
            "  {:<14} {:<16} {:<9} {:<16} {:<10} read from",
            "lspci", "esx.conf", "owner", "as written", "vmkname"
        );
        for d in &r.devices {
            let c = &d.conf;
            let sources: Vec<String> = c.sources.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "  {:<14} {:<16} {:<9} {:<16} {:<10} {}{}",
                c.pci_address,
                c.esx_address,
                c.owner.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                c.owner_raw.as_deref().unwrap_or("-"),
                c.vmkname.as_deref().unwrap_or("-"),
                if sources.is_empty() {
                    "-".to_string()
                } else {
                    sources.join(" + ")
                },
                match (c.owner_source, c.sources.len()) {
                    (Some(o), 2) => format!(" (ESXi obeys {o})"),
                    _ => String::new(),
                }
            );
            if c.stores_disagree() {
                let _ = writeln!(
                    s,
                    "      esx.conf says \"{}\", the ConfigStore says {}",
                    c.esx_conf
                        .as_ref()
                        .and_then(|e| e.owner.as_deref())
                        .unwrap_or("?"),
                    c.configstore
                        .as_ref()
                        .and_then(|x| x.owner_raw.as_deref())
                        .unwrap_or("?")
                );
            }
            if let Some(x) = &d.sysfs {
                let name = match (&x.vendor_name, &x.device_name) {
                    (Some(v), Some(n)) => format!("{v} {n}"),
                    (Some(v), None) => format!("{v} device {:04x}", x.device_id),
                    _ => format!("{:04x}:{:04x}", x.vendor_id, x.device_id),
                };
                let _ = writeln!(
                    s,
                    "      here: {name} [{}], driver {}",
                    x.class_name.as_deref().unwrap_or("unknown class"),
                    x.driver.as_deref().unwrap_or("none")
                );
                if !x.disks.is_empty() {
                    let disks: Vec<String> = x
                        .disks
                        .iter()
                        .map(|k| {
                            let mut t = k.name.clone();
                            if k.inspected {
                                t.push_str(" (the disk inspected)");
                            }
                            if k.via_bridge {
                                t.push_str(" (behind this bridge)");
                            }
                            t
                        })
                        .collect();
                    let _ = writeln!(s, "      disks: {}", disks.join(", "));
                }
            }
        }
        let _ = writeln!(s);
    }

    if let Some(cs) = &r.configstore {
        let passthru = cs
            .pci_devices
            .iter()
            .filter(|p| p.owner == Some(bootbank::Ownership::Passthru))
            .count();
        let _ = writeln!(
            s,
            "ConfigStore: {} rows; {} pci_devices record{} ({passthru} passthrough), {} device name{}; schemas from {}",
            cs.rows,
            cs.pci_devices.len(),
            if cs.pci_devices.len() == 1 { "" } else { "s" },
            cs.device_names.len(),
            if cs.device_names.len() == 1 { "" } else { "s" },
            if cs.schema.host_store {
                format!("the host's schema store ({})", cs.schema.vib_ids.join(", "))
            } else {
                "bootbank's built-in copy (no schema store in local.tgz)".to_string()
            }
        );
        for n in cs.device_names.iter().filter(|n| n.address.is_none()) {
            let _ = writeln!(
                s,
                "  {} at {} ({}): address form not understood, shown as written",
                n.alias.as_deref().unwrap_or("?"),
                n.bus_address.as_deref().unwrap_or("?"),
                n.bus_type.as_deref().unwrap_or("?")
            );
        }
        let _ = writeln!(s);
    }

    if !r.findings.is_empty() {
        let _ = writeln!(s, "Findings");
        for f in &r.findings {
            let _ = writeln!(
                s,
                "  {} {:<26} {}",
                super::style::severity(f.severity, &format!("{:<8}", f.severity.as_str())),
                f.rule,
                f.message
            );
        }
        let _ = writeln!(s);
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// The verdict lines: what happens at the next boot, and the critical problems with their fixes.
pub fn verdict(r: &Report) -> String {
    let mut s = String::new();
    let critical: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .collect();
    let next = r.banks.iter().find(|b| b.boots_next);
    let boot_line = match (r.will_boot, next) {
        (Some(false), _) => "this host will not boot: no bank is valid".to_string(),
        (None, _) if r.next_boot_unknown.is_some() => format!(
            "which bank boots is unknown: {}",
            r.next_boot_unknown
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches("the next boot cannot be predicted from the disk alone: ")
        ),
        (_, Some(b)) => format!(
            "the host boots partition {} (build {})",
            b.partition.map(|p| p.to_string()).unwrap_or_default(),
            b.build.as_deref().unwrap_or("?")
        ),
        _ => "configuration read".to_string(),
    };
    if critical.is_empty() {
        let _ = writeln!(s, "VERDICT: {boot_line}; no critical findings.");
    } else {
        let _ = writeln!(
            s,
            "VERDICT: {boot_line}, and {} critical problem{} will cripple it:",
            critical.len(),
            if critical.len() == 1 { "" } else { "s" }
        );
        for f in &critical {
            let _ = writeln!(
                s,
                "  {}",
                super::style::severity(Severity::Critical, &format!("! {}", f.message))
            );
            if let Some(fix) = &f.fix {
                let _ = writeln!(s, "    fix: {fix}");
            }
        }
    }
    s
}
