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
            bootbank::partition::Scheme::Gpt => "GPT",
            bootbank::partition::Scheme::Mbr => "MBR",
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
            bootbank::envelope::Encryption::None => "not encrypted".to_string(),
            bootbank::envelope::Encryption::Kdf => format!(
                "encrypted, key derivable offline (mode {})",
                c.encryption_mode.as_deref().unwrap_or("?")
            ),
            bootbank::envelope::Encryption::Tpm => format!(
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

    if !r.devices.is_empty() {
        let _ = writeln!(
            s,
            "PCI devices in esx.conf (esx.conf addresses are decimal; lspci shows hex)"
        );
        let _ = writeln!(
            s,
            "  {:<16} {:<14} {:<10} vmkname",
            "esx.conf", "lspci", "owner"
        );
        for d in &r.devices {
            let c = &d.conf;
            let _ = writeln!(
                s,
                "  {:<16} {:<14} {:<10} {}",
                c.esx_address,
                c.pci_address,
                c.owner.as_deref().unwrap_or("-"),
                c.vmkname.as_deref().unwrap_or("-")
            );
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
        let _ = writeln!(
            s,
            "ConfigStore: {} PCI device record{}, {} disagreeing with esx.conf, {} unclear",
            cs.records.len(),
            if cs.records.len() == 1 { "" } else { "s" },
            cs.disagreements.len(),
            cs.unclear.len()
        );
        for d in &cs.disagreements {
            let _ = writeln!(s, "  differs: {d}");
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
