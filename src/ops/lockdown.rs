//! `lockdown`: a host's lockdown mode as it will boot with it, and `--disable` offline where the
//! host keeps it in a place the evidence names, through `fix`'s engine ([`fix::plan_with`],
//! [`fix::member_step`]): the same choice of banks, plan, dry run, backup outside the target,
//! crash-safe write and read-back as `fix` and `passwd`.
//!
//! Where ESXi keeps lockdown mode, and what bootbank does (evidence in the README and in
//! `crate::esxi::configstore::lockdown`):
//! - 7.0 and later: the ConfigStore's `esx/authorization/lockdown_settings` record, read through
//!   the host's own schema. `--disable` takes `mode` out of the column that sets it
//!   (`ConfigStore::clear_lockdown_mode`); a configuration without the record, or whose record
//!   sets no mode, is not locked down: nothing to change, nothing written.
//! - before 7.0 (no ConfigStore): no published source says which file and key hold the mode.
//!   The 7.0.2 schema store names a configuration file `/etc/vmware/lockdown.conf`
//!   (`esx/files/lockdown_conf`), but not its format. bootbank shows whether local.tgz holds
//!   that file, says it cannot tell the mode, and refuses `--disable`
//!   ([`LockdownRefusal::NotKnown`]).
//! - sealed by the host's TPM: nothing can be read or changed offline
//!   ([`LockdownRefusal::TpmSealed`]).

use crate::esxi::config::Config;
use crate::esxi::configstore::lockdown::{DcuiAccess, Lockdown};
use crate::esxi::configstore::{self, ConfigStore};
use crate::format::archive::Tgz;
use crate::format::envelope::Encryption;
use crate::ops::fix::{self, FixError, Options, Plan, StepInput};
use crate::ops::inspect::{self, InspectError};
use serde::Serialize;
use std::path::Path;

/// The file the 7.0.2 schema store names `esx/files/lockdown_conf` (path
/// `/etc/vmware/lockdown.conf`), as a member of local.tgz.
pub const LOCKDOWN_CONF: &str = "etc/vmware/lockdown.conf";

/// What `bootbank lockdown TARGET` shows.
#[derive(Debug, Clone, Serialize)]
pub struct LockdownReport {
    /// The target as given, displayed (shown when no configuration was found in it).
    pub target: String,
    /// The configuration read (`partition 5 /state.tgz`, `state.tgz`, ...).
    pub location: Option<String>,
    /// The build that boots it, when known.
    pub build: Option<String>,
    /// The lockdown mode, or why it cannot be told.
    pub state: LockdownState,
}

/// Where the mode was read, and what it is.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LockdownState {
    /// 7.0 and later: the ConfigStore says.
    ConfigStore {
        /// The `esx/authorization/lockdown_settings` record as ESXi reads it: the mode (`None`:
        /// not locked down), exception users, permissions lockdown took away.
        lockdown: Box<Lockdown>,
        /// Who may log in at the DCUI whatever the mode (`esx/authorization/dcui_access`): the
        /// way back in when lockdown locks everyone else out.
        dcui_access: DcuiAccess,
    },
    /// No ConfigStore (before 7.0): where this build keeps the mode is not published.
    NotKnown {
        /// The size of `etc/vmware/lockdown.conf` when local.tgz holds it.
        lockdown_conf: Option<usize>,
    },
    /// The ConfigStore is there but cannot be read.
    Unreadable {
        /// Why the ConfigStore database in local.tgz cannot be read.
        error: String,
    },
    /// Sealed by the host's TPM.
    Sealed {
        /// The encryption mode encryption.info gives (`?` when it gives none).
        mode: String,
    },
    /// The target holds no configuration to read.
    NoConfiguration,
}

/// Why `lockdown --disable` changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockdownRefusal {
    /// The configuration has no ConfigStore (before 7.0): where the build keeps lockdown mode is
    /// not published, so bootbank cannot tell it or change it. Nothing was written.
    #[error(
        "{location} has no ConfigStore (hosts before 7.0): no published source says where {} keeps lockdown mode{}, so bootbank cannot tell whether it is locked down and will not change it; nothing was written",
        .build.as_deref().map(|b| format!("build {b}")).unwrap_or_else(|| "this build".into()),
        if let Some(n) = .lockdown_conf { format!(" (local.tgz holds {LOCKDOWN_CONF}, {n} bytes, whose format is not published)") } else { String::new() }
    )]
    NotKnown {
        /// The configuration concerned: `partition 5 /state.tgz`, `state.tgz`, ...
        location: String,
        /// The build it runs, from the bank's boot.cfg or the bundle's Manifest.txt, when known.
        build: Option<String>,
        /// The size in bytes of `etc/vmware/lockdown.conf` when local.tgz holds it.
        lockdown_conf: Option<usize>,
    },
    /// The configuration is sealed by the host's TPM: its lockdown mode cannot be read or
    /// changed offline. Nothing was written.
    #[error(
        "{location}: the configuration is sealed by the host's TPM (mode {mode}): no offline tool can read or change its lockdown mode, nothing was written"
    )]
    TpmSealed {
        /// The configuration that is sealed: `partition 5 /state.tgz`, ...
        location: String,
        /// The encryption mode encryption.info gives (`?` when it gives none).
        mode: String,
    },
}

/// Lockdown mode of the configuration the target boots next (or the archive's), read-only.
pub fn show(target: &Path) -> Result<LockdownReport, InspectError> {
    let (report, configs) = inspect::inspect_with_config(target, &inspect::Options::default())?;
    let build = report
        .banks
        .iter()
        .find(|b| b.boots_next)
        .and_then(|b| b.build.clone())
        .or_else(|| report.bundle.as_ref().and_then(|b| b.release_level.clone()));
    let location = report.config.as_ref().map(|c| c.source.clone());
    let state = match &configs.next {
        None => LockdownState::NoConfiguration,
        Some(cfg) => state_of(cfg),
    };
    Ok(LockdownReport {
        target: target.display().to_string(),
        location,
        build,
        state,
    })
}

fn state_of(cfg: &Config) -> LockdownState {
    if cfg.encryption == Encryption::Tpm {
        return LockdownState::Sealed {
            mode: cfg.encryption_mode.clone().unwrap_or_else(|| "?".into()),
        };
    }
    let Some(local) = &cfg.local else {
        return LockdownState::NoConfiguration;
    };
    match ConfigStore::from_local(local) {
        Ok(Some(store)) => LockdownState::ConfigStore {
            lockdown: Box::new(store.lockdown()),
            dcui_access: store.dcui_access(),
        },
        Ok(None) => LockdownState::NotKnown {
            lockdown_conf: lockdown_conf(local),
        },
        Err(e) => LockdownState::Unreadable {
            error: e.to_string(),
        },
    }
}

fn lockdown_conf(local: &Tgz) -> Option<usize> {
    local
        .member(LOCKDOWN_CONF)
        .filter(|m| m.is_file())
        .map(|m| local.data(m).len())
}

/// Builds the plan of leaving lockdown mode in the banks `opts` chooses (or in the archive
/// target). A configuration that is not locked down gets a step that changes nothing.
pub fn plan_disable(target: &Path, opts: &Options) -> Result<Plan, FixError> {
    fix::plan_with(target, opts, true, &mut |input, _plan| step(input))
}

/// The step of one configuration.
fn step(input: &StepInput<'_>) -> Result<fix::Step, FixError> {
    let location = input.location;
    let cfg = Config::from_state_for_edit(input.state, location)?;
    if cfg.encryption == Encryption::Tpm {
        return Err(LockdownRefusal::TpmSealed {
            location: location.to_string(),
            mode: cfg.encryption_mode.clone().unwrap_or_else(|| "?".into()),
        }
        .into());
    }
    let local = cfg.local.as_ref().ok_or_else(|| FixError::NoLocalTgz {
        location: location.to_string(),
    })?;
    let store = match ConfigStore::from_local(local) {
        Err(cause) => {
            return Err(FixError::Store {
                location: location.to_string(),
                cause,
            });
        }
        Ok(None) => {
            return Err(LockdownRefusal::NotKnown {
                location: location.to_string(),
                build: input.build.as_ref().map(|(b, _)| b.clone()),
                lockdown_conf: lockdown_conf(local),
            }
            .into());
        }
        Ok(Some(s)) => s,
    };
    let lk = store.lockdown();
    let key = configstore::schema::LOCKDOWN_SETTINGS;
    let mut notes = Vec::new();
    if !lk.is_on() {
        notes.push(if lk.records == 0 {
            format!(
                "{location}: not locked down: the ConfigStore has no {key} record, and the host's schema gives `mode` no default; nothing to change"
            )
        } else {
            format!(
                "{location}: not locked down: the {key} record sets no `mode`; nothing to change"
            )
        });
        return fix::member_step(input, &cfg, Vec::new(), notes);
    }
    let e = store
        .clear_lockdown_mode()
        .map_err(|cause| FixError::Store {
            location: location.to_string(),
            cause,
        })?;
    let what = format!(
        "{key} (rowid {}): `mode` {} taken out of {}{} (the schema's enum has no \"disabled\" value: no mode is not locked down); exception_users and removed_permissions kept; ModifiedTime {} -> {}, Revision {} -> {} (set by the store's own triggers); no other row or column changes",
        e.rowid,
        e.old_mode,
        e.columns
            .iter()
            .map(|c| c.column.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if e.columns.iter().any(|c| c.reserialised) {
            " (the column's JSON text was re-serialised)"
        } else {
            ""
        },
        e.modified_time.0.as_deref().unwrap_or("NULL"),
        e.modified_time.1.as_deref().unwrap_or("NULL"),
        e.revision.0.map(|r| r.to_string()).unwrap_or("NULL".into()),
        e.revision.1.map(|r| r.to_string()).unwrap_or("NULL".into()),
    );
    if !lk.removed_permissions.is_empty() {
        let who: Vec<String> = lk
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
        notes.push(format!(
            "the record keeps {} permission(s) lockdown took away ({}); hostd gives them back when lockdown is left through its API, and whether it does at boot after an offline change is not known: bootbank does not move them. If root cannot log in to the Host Client afterwards, log in at the DCUI as a user of the DCUI access list ({}) and grant the role there",
            who.len(),
            who.join(", "),
            store.dcui_access().users.join(", ")
        ));
    }
    notes.push(
        "that ESXi boots without lockdown after this offline change is inferred from its own schema; it has not been tried on a real host".to_string(),
    );
    // The texts are shown whole: lockdown settings hold no secret.
    let mut what = vec![what];
    for c in &e.columns {
        what.push(format!("{} before: {}", c.column, c.old_text));
        what.push(format!("{} after:  {}", c.column, c.new_text));
    }
    fix::member_step(
        input,
        &cfg,
        vec![(configstore::MEMBER.to_string(), e.bytes, what)],
        notes,
    )
}
