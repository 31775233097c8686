//! `passwd`: a local account's new password, written offline into the configuration the host
//! boots with, through `fix`'s engine ([`fix::plan_with`], [`fix::member_step`], [`fix::apply`]):
//! the same choice of banks, plan, dry run, backup outside the target, crash-safe write and
//! read-back.
//!
//! Where ESXi keeps a password, and what bootbank changes (evidence in the README):
//! - `etc/shadow` in local.tgz, every version: the user's hash field, SHA-512 crypt in ESXi's
//!   form (`shadow`). Every other byte of the file, and every other member of local.tgz and
//!   state.tgz, stays as it is.
//! - the ConfigStore (7.0 and later), `esx/authentication/user_accounts`: the user's record's
//!   `password_hash`, only where that record exists and already holds one
//!   (`ConfigStore::set_password_hash`). The real 7.0.2 host has no such record (its root
//!   hash is in etc/shadow only), so there only etc/shadow changes, and the plan says so.
//! - A ConfigStore that cannot be read, a record bootbank cannot change, a schema that differs
//!   from the 7.0.2 one: refused, nothing written (the store may hold the very hash to change).
//! - A configuration sealed by the host's TPM: refused ([`FixError::TpmSealed`]).

use crate::esxi::config::Config;
use crate::esxi::configstore::{self, ConfigStore};
use crate::esxi::shadow::{self, HashKind, SHADOW};
use crate::format::envelope::Encryption;
use crate::ops::fix::{self, FixError, Options, Plan, StepInput};
use std::path::Path;

/// Builds the plan of setting `user`'s password to `password` in the banks `opts` chooses (or
/// in the archive target). One hash (one fresh salt) is written everywhere.
pub fn plan(target: &Path, user: &str, password: &[u8], opts: &Options) -> Result<Plan, FixError> {
    let refused = |reason: shadow::ShadowError| FixError::Shadow {
        location: None,
        reason,
    };
    shadow::check_password(password).map_err(refused)?;
    let hash = shadow::hash_password(password).map_err(refused)?;
    fix::plan_with(target, opts, true, &mut |input, _plan| {
        step(input, user, &hash)
    })
    .map_err(|e| match e {
        FixError::TpmSealed { location, mode, .. } => FixError::TpmSealedAccount {
            location,
            mode,
            user: user.to_string(),
        },
        other => other,
    })
}

/// The step of one configuration.
fn step(input: &StepInput<'_>, user: &str, hash: &str) -> Result<fix::Step, FixError> {
    let location = input.location;
    let cfg = Config::from_state_for_edit(input.state, location)?;
    if cfg.encryption == Encryption::Tpm {
        return fix::member_step(input, &cfg, Vec::new(), Vec::new());
    }
    let local = cfg.local.as_ref().ok_or_else(|| FixError::NoLocalTgz {
        location: location.to_string(),
    })?;
    let Some(m) = local.member(SHADOW).filter(|m| m.is_file()) else {
        return Err(FixError::NoShadow {
            location: location.to_string(),
            file: SHADOW.to_string(),
            members: local.member_names(),
        });
    };
    let old_shadow = local.data(m);
    let (new_shadow, entry) =
        shadow::set_hash(old_shadow, user, hash).map_err(|reason| FixError::Shadow {
            location: Some(location.to_string()),
            reason,
        })?;
    let was = match entry.kind {
        HashKind::Sha512 => "a SHA-512 crypt hash",
        HashKind::OtherCrypt => "an MD5 or SHA-256 crypt hash",
        HashKind::Empty => "empty (no password)",
    };
    let mut members = vec![(
        SHADOW.to_string(),
        new_shadow,
        vec![format!(
            "{user}'s password hash (line {}, was {was}): changed to a new SHA-512 crypt hash; the other fields of the line (last change, aging) and every other line are unchanged",
            entry.line
        )],
    )];
    let mut notes = Vec::new();
    let build = input
        .build
        .as_ref()
        .map(|(b, from)| format!("build {b} (from {from})"))
        .unwrap_or_else(|| "this configuration".to_string());
    match ConfigStore::from_local(local) {
        Err(source) => {
            // It may hold the very hash to change: nothing is written.
            return Err(FixError::Store {
                location: location.to_string(),
                cause: source,
            });
        }
        Ok(None) => notes.push(format!(
            "{build} has no ConfigStore (hosts before 7.0): ESXi reads {user}'s password from {SHADOW} only"
        )),
        Ok(Some(store)) => match store.user_account(user).as_slice() {
            [] => notes.push(format!(
                "{build}: the ConfigStore has no esx/authentication/user_accounts record for {user} ({} such records in all), so only {SHADOW} changes. The real ESXi 7.0.2 host keeps root's hash the same way (in {SHADOW}, no record); a 2024 public write-up says 7.0U1 and later rebuild {SHADOW} from the ConfigStore at boot, which no host data here confirms: unverified",
                store.user_accounts.len()
            )),
            [one] => {
                let rowid = one.record.rowid.ok_or_else(|| FixError::Store {
                    location: location.to_string(),
                    cause: configstore::EditRefusal::ReadBack(format!(
                        "record {} has no rowid to address it by",
                        one.identifier
                    ))
                    .into(),
                })?;
                let e = store
                    .set_password_hash(rowid, hash)
                    .map_err(|cause| FixError::Store {
                        location: location.to_string(),
                        cause,
                    })?;
                members.push((
                    configstore::MEMBER.to_string(),
                    e.bytes,
                    vec![format!(
                        "esx/authentication/user_accounts record {} (rowid {rowid}): password_hash in {} changed to the same new hash{}; ModifiedTime {} -> {}, Revision {} -> {} (set by the store's own triggers); no other row or column changes",
                        e.identifier,
                        e.columns.join(", "),
                        if e.reserialised {
                            " (the column's JSON text was re-serialised)"
                        } else {
                            ""
                        },
                        e.modified_time.0.as_deref().unwrap_or("NULL"),
                        e.modified_time.1.as_deref().unwrap_or("NULL"),
                        e.revision.0.map(|r| r.to_string()).unwrap_or("NULL".into()),
                        e.revision.1.map(|r| r.to_string()).unwrap_or("NULL".into()),
                    )],
                ));
                notes.push(format!(
                    "{build}: the ConfigStore has a user_accounts record for {user} holding a password hash: both it and {SHADOW} get the new hash"
                ));
            }
            many => {
                return Err(FixError::AmbiguousAccount {
                    location: location.to_string(),
                    member: configstore::MEMBER.to_string(),
                    user: user.to_string(),
                    count: many.len(),
                });
            }
        },
    }
    notes.push(
        "ESXi's password quality rules (Security.PasswordQualityControl) are not applied offline: the new password is taken as given".to_string(),
    );
    fix::member_step(input, &cfg, members, notes)
}
