//! `bootbank lockdown`: the lockdown mode a host boots with, and `--disable` through `fix`'s
//! plan, question and write.

use bootbank::lockdown::{LockdownReport, LockdownState};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct LockdownArgs {
    /// Disk image, block device, bootbank partition, state.tgz or config bundle.
    target: PathBuf,
    /// Leave lockdown mode: take `mode` out of the ConfigStore's lockdown_settings record
    /// (7.0 and later). Refused where bootbank cannot tell where the host keeps it.
    #[arg(long)]
    disable: bool,
    #[command(flatten)]
    write: super::fix::WriteArgs,
}

pub fn run(a: LockdownArgs) -> ExitCode {
    if a.disable {
        return super::fix::execute(&a.target, &a.write, |o| {
            bootbank::lockdown::plan_disable(&a.target, o)
        });
    }
    if a.write.dry_run || a.write.yes || a.write.backup_dir.is_some() {
        return super::fail(
            "--dry-run, --yes and --backup-dir go with --disable; without it `bootbank lockdown` only reads",
            2,
        );
    }
    match bootbank::lockdown::show(&a.target) {
        Ok(r) => {
            if a.write.json {
                super::print_json(&r);
            } else {
                print!("{}", human(&r));
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e.to_string(), 2),
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// The report in words.
pub fn human(r: &LockdownReport) -> String {
    let mut out = format!(
        "Lockdown mode of {}{}:\n",
        r.location.as_deref().unwrap_or(&r.target),
        r.build
            .as_deref()
            .map(|b| format!(" (build {b})"))
            .unwrap_or_default()
    );
    let target = &r.target;
    match &r.state {
        LockdownState::ConfigStore {
            lockdown: l,
            dcui_access: d,
        } => {
            let place = match (l.records, l.rowid) {
                (0, _) => format!(
                    "no {} record in the ConfigStore; the host's schema gives `mode` no default",
                    l.key
                ),
                (_, Some(rowid)) => format!(
                    "ConfigStore {} rowid {rowid}{}",
                    l.key,
                    if l.mode_columns.is_empty() {
                        ", which sets no mode".to_string()
                    } else {
                        format!(", in {}", l.mode_columns.join(", "))
                    }
                ),
                (n, None) => format!("{n} ConfigStore {} records", l.key),
            };
            match &l.mode {
                Some(m) => out.push_str(&format!("  mode: {m} ({place})\n")),
                None => out.push_str(&format!(
                    "  mode: not locked down ({place}; the schema's modes are {}, and no mode means none)\n",
                    list(&l.modes)
                )),
            }
            out.push_str(&format!(
                "  exception users: {}\n",
                list(&l.exception_users)
            ));
            if !l.removed_permissions.is_empty() {
                let who: Vec<String> = l
                    .removed_permissions
                    .iter()
                    .map(|p| {
                        format!(
                            "{} ({})",
                            p.principal.as_deref().unwrap_or("?"),
                            p.access_mode.as_deref().unwrap_or("?")
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "  permissions lockdown took away: {}\n",
                    who.join(", ")
                ));
            }
            out.push_str(&format!(
                "  DCUI access (esx/authorization/dcui_access): {} ({})\n",
                list(&d.users),
                if d.from_record {
                    "from its record"
                } else {
                    "the schema's default"
                }
            ));
            for p in l.problems.iter().chain(&d.problems) {
                out.push_str(&format!("  problem: {p}\n"));
            }
            if !l.schema_differences.is_empty() {
                out.push_str(&format!(
                    "  the host's schema of {} differs from the one bootbank knows: {}\n",
                    l.key,
                    l.schema_differences.join("; ")
                ));
            }
            match l.mode.as_deref() {
                Some("NORMAL") => out.push_str(&format!(
                    "Normal lockdown: the host is managed through vCenter; the DCUI stays open to the DCUI access users ({}) and to exception users with the Admin role, who can leave lockdown there (F2, Configure Lockdown Mode). Offline: bootbank lockdown {target} --disable\n",
                    list(&d.users)
                )),
                Some("STRICT") => out.push_str(&format!(
                    "Strict lockdown: the DCUI service is stopped; only vCenter, and exception users with the Admin role over SSH or the ESXi Shell if those run, reach the host. Offline: bootbank lockdown {target} --disable\n"
                )),
                Some(_) => out.push_str("This mode is none the schema allows: bootbank will not change it.\n"),
                None => {}
            }
        }
        LockdownState::NotKnown { lockdown_conf } => {
            out.push_str("  mode: bootbank cannot tell\n");
            out.push_str(&format!(
                "  This configuration has no ConfigStore (hosts before 7.0). No published source says which file and key hold lockdown mode on these builds; ESXi 7.0.2's schema store names a configuration file /{}, whose format is not published. {}\n",
                bootbank::lockdown::LOCKDOWN_CONF,
                match lockdown_conf {
                    Some(n) => format!("local.tgz holds it ({n} bytes)."),
                    None => "local.tgz does not hold it.".to_string(),
                }
            ));
            out.push_str("  What works: at the DCUI (F2, Configure Lockdown Mode) as a DCUI.Access user in normal lockdown; from vCenter; `vim-cmd -U dcui vimsvc/auth/lockdown_mode_exit` in the ESXi Shell.\n");
        }
        LockdownState::Unreadable { error } => {
            out.push_str(&format!(
                "  mode: not known: the ConfigStore cannot be read ({error})\n"
            ));
        }
        LockdownState::Sealed { mode } => {
            out.push_str(&format!(
                "  mode: not known: the configuration is sealed by the host's TPM (encryption.info mode {mode}); no offline tool can read it\n"
            ));
        }
        LockdownState::NoConfiguration => {
            out.push_str("  mode: not known: no configuration to read\n");
        }
    }
    out
}
