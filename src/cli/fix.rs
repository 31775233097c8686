//! `bootbank fix`, `config get|set|unset` and `restore`: argument handling, the plan shown to
//! the user, the question, and the report of what was written.

use super::write::{Flags, ReadBack, Shown};
use bootbank::Edit;
use bootbank::Outcome;
use bootbank::findings::Severity;
use bootbank::fix::{self, Banks, FixError, Options, Plan, Request};
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options shared by every command that writes.
#[derive(Args)]
pub struct WriteArgs {
    /// Also change bank N (repeatable). A bank that will not boot is changed only when named.
    #[arg(long = "bank", value_name = "N")]
    banks: Vec<u32>,
    /// Change every valid bank, so that a rollback (Shift+R) does not undo the change.
    #[arg(long, conflicts_with = "banks")]
    both_banks: bool,
    /// Show the plan and the diff of esx.conf; write nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Do not ask (for scripts). Without a terminal, writing requires --yes.
    #[arg(long, short = 'y')]
    pub(super) yes: bool,
    /// Where to copy every file before it changes (default: ./bootbank-backup-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub(super) backup_dir: Option<PathBuf>,
    /// For a state.tgz or config bundle: write the result here instead of in place.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the plan and the outcome as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args)]
pub struct FixArgs {
    /// Disk image, block device, bootbank partition, state.tgz or config bundle.
    target: PathBuf,
    /// Device to give back to the vmkernel (repeatable): 0000:16:00.0, 16:00.0, 000:022:00.0,
    /// esx:..., pci:...
    #[arg(long = "device", short = 'd', value_name = "ADDR")]
    devices: Vec<String>,
    /// Every storage adapter (vmhba*) owned by passthru.
    #[arg(long, conflicts_with = "devices")]
    all_storage: bool,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Args)]
pub struct GetArgs {
    target: PathBuf,
    key: String,
}

impl WriteArgs {
    pub(super) fn flags(&self) -> Flags {
        Flags {
            dry_run: self.dry_run,
            yes: self.yes,
            backup_dir: self.backup_dir.clone(),
            json: self.json,
        }
    }

    fn options(&self) -> Options {
        Options {
            banks: if self.both_banks {
                Banks::Both
            } else if self.banks.is_empty() {
                Banks::Next
            } else {
                Banks::Also(self.banks.clone())
            },
            output: self.output.clone(),
        }
    }
}

/// The one-line message for an error, with what still works when the library says it cannot.
pub(super) fn message(e: &FixError) -> String {
    match e {
        FixError::TpmSealed { devices, .. } => {
            use bootbank::fix::SealedDevice;
            let cmd = |a: &str| format!("esxcli hardware pci pcipassthru set -d {a} -e false -a");
            let cmds: Vec<String> = if devices.is_empty() {
                vec![format!(
                    "{} (the device list is inside the sealed configuration; `lspci` on the host or `esxcli hardware pci pcipassthru list` names them)",
                    cmd("<SSSS:BB:DD.F>")
                )]
            } else {
                devices
                    .iter()
                    .map(|d| match d {
                        SealedDevice::Known(a) => cmd(&a.to_string()),
                        SealedDevice::Ambiguous { typed, esx, pci } => format!(
                            "{} (if {typed} is esx.conf's decimal form) or {} (if it is lspci's hex form)",
                            cmd(&esx.to_string()),
                            cmd(&pci.to_string())
                        ),
                        SealedDevice::Unread(t) => cmd(t),
                    })
                    .collect()
            };
            format!(
                "{e}. What still works: on the host, {}, then /sbin/auto-backup.sh; or boot with the encryption recovery key; or restore a config bundle",
                cmds.join("; ")
            )
        }
        FixError::TpmSealedAccount { user, .. } => format!(
            "{e}. What still works: on the host's console (DCUI: F2, Troubleshooting Options, Enable ESXi Shell, then Alt+F1) or over SSH while someone is still logged in, `esxcli system account set -i {user} -p NEWPASSWORD -c NEWPASSWORD`, then /sbin/auto-backup.sh; or boot with the encryption recovery key; or reset it through vCenter (host profile) if the host is managed"
        ),
        FixError::Lockdown(bootbank::lockdown::LockdownRefusal::TpmSealed { .. }) => format!(
            "{e}. What still works: in normal lockdown, at the DCUI (F2, Configure Lockdown Mode) as a user of the DCUI access list; from vCenter, if it still manages the host; or boot with the encryption recovery key"
        ),
        other => super::error_text(other),
    }
}

pub fn run_fix(a: FixArgs) -> ExitCode {
    let what = if a.all_storage {
        Request::AllStorage
    } else if !a.devices.is_empty() {
        Request::Devices(a.devices.clone())
    } else {
        match choose_interactively(&a.target) {
            Ok(Some(devs)) => Request::Devices(devs),
            Ok(None) => return ExitCode::from(3),
            Err(code) => return code,
        }
    };
    execute(&a.target, &a.write, |o| fix::plan(&a.target, &what, o))
}

pub fn run_edit(target: PathBuf, edits: Vec<Edit>, write: WriteArgs) -> ExitCode {
    let what = Request::Edits(edits);
    execute(&target, &write, |o| fix::plan(&target, &what, o))
}

pub fn run_get(a: GetArgs) -> ExitCode {
    match bootbank::inspect::read_esx_conf(&a.target) {
        Ok((conf, location)) => match conf.get(&a.key) {
            Some(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("bootbank: {location}: esx.conf has no key {}", a.key);
                ExitCode::from(1)
            }
        },
        Err(e) => super::fail(&super::error_text(&e), 2),
    }
}

/// With no device named: on a terminal, offer the critical ones; otherwise refuse and say which
/// flag to add.
fn choose_interactively(target: &Path) -> Result<Option<Vec<String>>, ExitCode> {
    if !std::io::stdin().is_terminal() {
        return Err(super::fail(
            "name the devices to give back to the vmkernel with --device ADDR (repeatable) or use --all-storage; `bootbank inspect` lists them",
            2,
        ));
    }
    let report = bootbank::inspect::inspect(target, &Default::default())
        .map_err(|e| super::fail(&super::error_text(&e), 2))?;
    let critical: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Critical && f.device.is_some())
        .collect();
    if critical.is_empty() {
        return Err(super::fail(
            "no critical device finding to fix; name devices with --device ADDR",
            2,
        ));
    }
    println!("Devices that will cripple this host at the next boot:");
    for f in &critical {
        println!("  {}", super::style::severity(f.severity, &f.message));
    }
    if !super::prompt::ask("Give these back to the vmkernel?")? {
        return Ok(None);
    }
    Ok(Some(
        critical
            .iter()
            .filter_map(|f| f.device.clone())
            .map(|d| format!("pci:{d}"))
            .collect(),
    ))
}

pub(super) fn execute(
    target: &Path,
    w: &WriteArgs,
    make_plan: impl FnOnce(&Options) -> Result<Plan, FixError>,
) -> ExitCode {
    super::write::execute(target, &w.flags(), make_plan(&w.options()))
}

impl Shown for Plan {
    const BACKUP: &'static str = "Backup of every changed file";
    fn render(&self) -> String {
        render_plan(self)
    }
    fn message(e: &FixError) -> String {
        message(e)
    }
    fn read_back(&self, target: &Path, outcome: &mut Outcome, json: bool) -> ReadBack {
        if json {
            return ReadBack::default();
        }
        // The file is read again from scratch; decoding it again is skipped when its bytes are
        // the ones the read-back check decoded.
        let again = bootbank::inspect::Options {
            decoded: std::mem::take(&mut outcome.decoded),
            ..Default::default()
        };
        super::write::verdict_now(self.output().unwrap_or(target), &again)
    }
}

/// The plan as text: every device as typed and as read, each file's changes and the diff
/// (`rescue` writes it to its consoles).
pub(super) fn render_plan(plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    _ = writeln!(out, "Plan for {}:", plan.target);
    for d in &plan.devices {
        _ = writeln!(
            out,
            "  device {} read as {}: lspci {} = esx.conf {} = ConfigStore {} ({}, owner {}{})",
            d.typed,
            match d.read_as {
                bootbank::Reading::Esx => "ESXi's decimal form",
                bootbank::Reading::Pci => "lspci hex",
                bootbank::Reading::Bus => "the ConfigStore bus address",
            },
            d.pci_address,
            d.esx_address.as_deref().unwrap_or("?"),
            d.bus_address,
            d.vmkname.as_deref().unwrap_or("no vmkname"),
            d.owner.as_deref().unwrap_or("none"),
            d.owner_source
                .map(|s| format!(", read from {s}"))
                .unwrap_or_default(),
        );
    }
    for s in &plan.steps {
        _ = writeln!(out, "  {}:", s.location);
        for n in &s.notes {
            _ = writeln!(
                out,
                "    {}",
                super::style::severity(Severity::Warning, &format!("note: {n}"))
            );
        }
        if !s.changes_anything() {
            _ = writeln!(out, "    no change");
        }
        for c in &s.changes {
            match (&c.old, &c.new) {
                (Some(o), Some(n)) => {
                    _ = writeln!(out, "    line {}: {} \"{o}\" -> \"{n}\"", c.line, c.key)
                }
                (None, Some(n)) => _ = writeln!(out, "    add: {} = \"{n}\"", c.key),
                (Some(o), None) => {
                    _ = writeln!(out, "    line {}: remove {} (was \"{o}\")", c.line, c.key)
                }
                (None, None) => _ = writeln!(out, "    {}", c.key),
            }
        }
        for c in &s.store_changes {
            _ = writeln!(
                out,
                "    ConfigStore (local.tgz > {}) {} record {} (rowid {}), device {} = esx.conf {} = {}: owner {} -> {}",
                c.member,
                c.key,
                c.identifier,
                c.rowid,
                c.pci_address,
                c.esx_address,
                c.bus_address,
                c.old_owner,
                c.new_owner
            );
            for col in &c.columns {
                _ = writeln!(out, "      {} before: {}", col.column, col.old_text);
                _ = writeln!(out, "      {} after:  {}", col.column, col.new_text);
            }
            _ = writeln!(
                out,
                "      ModifiedTime {} -> {}, Revision {} -> {} (set by the store's own triggers)",
                c.modified_time_before.as_deref().unwrap_or("NULL"),
                c.modified_time_after.as_deref().unwrap_or("NULL"),
                c.revision_before
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "NULL".into()),
                c.revision_after
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "NULL".into()),
            );
        }
        for m in &s.member_changes {
            for w in &m.what {
                _ = writeln!(out, "    local.tgz > {}: {w}", m.member);
            }
        }
        if !s.changes.is_empty() && !s.diff.is_empty() {
            for l in s.diff.lines() {
                _ = writeln!(out, "    {l}");
            }
        }
    }
    out
}
