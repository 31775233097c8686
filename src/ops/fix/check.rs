//! The read-back checks: the bytes written must decode to the configuration the step computed.

use super::{MemberChange, Step, StoreChange};
use crate::esxi::config::{Config, ESX_CONF};
use crate::esxi::configstore::{self, ConfigStore};
use crate::format::archive::Tgz;
use crate::ops::inspect;
use crate::write::commit::VerifyError;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;

/// Why bytes read back are not the configuration a step meant to write. [`apply`]'s read-back
/// check returns it inside the commit's error; the commit then leaves the previous file in place.
///
/// [`apply`]: super::apply
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The file read back is not byte for byte the new file the check decoded.
    #[error("the bytes read back are not the ones checked")]
    NotTheCheckedBytes,
    /// The thread decoding the new file ended without a verdict (it panicked).
    #[error("the check stopped unexpectedly")]
    Stopped,
    /// No verdict was recorded for the step.
    #[error("not checked")]
    NotChecked,
    /// The new configuration decodes without a local.tgz.
    #[error("no local.tgz")]
    NoLocal,
    /// The step changes the ConfigStore, but the new local.tgz decodes without one.
    #[error("no ConfigStore")]
    NoStore,
    /// A part of the new configuration decodes to other bytes than the step computed.
    #[error("{what} differs from the intended one")]
    Differs {
        /// The part: `esx.conf`, a member's path in local.tgz, `the ConfigStore database`.
        what: String,
    },
    /// A ConfigStore record the step changed does not read back with its new owner.
    #[error("ConfigStore record {identifier} does not read back as {owner}")]
    Record {
        /// The record's Identifier, as stored.
        identifier: String,
        /// The owner it should have, as the store writes it (`OWNER_VMKERNEL`).
        owner: String,
    },
    /// The bytes do not decode; the decoder's own error.
    #[error(transparent)]
    Decode(Arc<dyn std::error::Error + Send + Sync>),
}

impl CheckError {
    fn decode(e: impl std::error::Error + Send + Sync + 'static) -> CheckError {
        CheckError::Decode(Arc::new(e))
    }
}

/// Checks that bytes decode to a configuration whose esx.conf is `want` and, when the step
/// changes the ConfigStore, whose database is the intended one and reads back with every changed
/// record owned by the vmkernel. Hands back what it decoded.
fn check_bytes(
    bytes: &[u8],
    location: &str,
    want: &[u8],
    bundle: bool,
    store: Option<(&[u8], &[StoreChange])>,
    members: &[MemberChange],
) -> Result<inspect::Decoded, CheckError> {
    let state = if bundle {
        let outer = Tgz::parse(bytes, location).map_err(CheckError::decode)?;
        outer
            .require("state.tgz")
            .map_err(CheckError::decode)?
            .to_vec()
    } else {
        bytes.to_vec()
    };
    let cfg = Config::from_state(&state, location).map_err(CheckError::decode)?;
    let config = check_config(cfg, want, store, members)?;
    Ok(inspect::Decoded {
        bytes: state,
        config,
    })
}

/// The read-back check of one step, started on another thread before the backup is written:
/// decoding both archive levels is CPU work that overlaps the backup's and the new file's fsyncs.
/// The write path reads the new file back and requires it to be exactly the bytes checked here
/// (so what is on the storage is what decoded correctly) before [`Prechecked::verify`] waits for
/// this check and passes its verdict on.
pub(super) struct Prechecked<'scope, 'a> {
    new: &'a [u8],
    job: Cell<Option<ScopedJoinHandle<'scope, Result<inspect::Decoded, CheckError>>>>,
    verdict: RefCell<Option<Result<(), CheckError>>>,
    decoded: &'a RefCell<Vec<inspect::Decoded>>,
}

impl<'scope, 'a: 'scope> Prechecked<'scope, 'a> {
    pub(super) fn start(
        s: &'scope std::thread::Scope<'scope, '_>,
        step: &'a Step,
        bundle: bool,
        decoded: &'a RefCell<Vec<inspect::Decoded>>,
    ) -> Self {
        let job = s.spawn(move || {
            check_bytes(
                &step.new_bytes,
                &step.location,
                &step.new_esx_conf,
                bundle,
                step.store_check(),
                &step.member_changes,
            )
        });
        Prechecked {
            new: &step.new_bytes,
            job: Cell::new(Some(job)),
            verdict: RefCell::new(None),
            decoded,
        }
    }

    pub(super) fn verify(&self, read_back: &[u8]) -> Result<(), CheckError> {
        if read_back != self.new {
            return Err(CheckError::NotTheCheckedBytes);
        }
        if let Some(job) = self.job.take() {
            let verdict = job
                .join()
                .unwrap_or(Err(CheckError::Stopped))
                .map(|d| self.decoded.borrow_mut().push(d));
            *self.verdict.borrow_mut() = Some(verdict);
        }
        self.verdict
            .borrow()
            .clone()
            .unwrap_or(Err(CheckError::NotChecked))
    }
}

/// The checks of [`check_bytes`] on a decoded configuration, which it hands back when they pass.
fn check_config(
    cfg: Config,
    want: &[u8],
    store: Option<(&[u8], &[StoreChange])>,
    members: &[MemberChange],
) -> Result<Config, CheckError> {
    {
        let local = cfg.local.as_ref().ok_or(CheckError::NoLocal)?;
        let got = local.require(ESX_CONF).map_err(CheckError::decode)?;
        if got != want {
            return Err(CheckError::Differs {
                what: "esx.conf".to_string(),
            });
        }
        for m in members {
            if local.require(&m.member).map_err(CheckError::decode)? != m.bytes.as_slice() {
                return Err(CheckError::Differs {
                    what: m.member.clone(),
                });
            }
        }
        if let Some((db, changed)) = store {
            let got = local
                .require(configstore::MEMBER)
                .map_err(CheckError::decode)?;
            if got != db {
                return Err(CheckError::Differs {
                    what: "the ConfigStore database".to_string(),
                });
            }
            let s = ConfigStore::from_local(local)
                .map_err(CheckError::decode)?
                .ok_or(CheckError::NoStore)?;
            for c in changed {
                let r = s
                    .pci_devices
                    .iter()
                    .find(|r| r.record.rowid == Some(c.rowid));
                if r.and_then(|r| r.owner_raw.as_deref()) != Some(c.new_owner.as_str()) {
                    return Err(CheckError::Record {
                        identifier: c.identifier.clone(),
                        owner: c.new_owner.clone(),
                    });
                }
            }
        }
    }
    Ok(cfg)
}

/// Any configuration that decodes is usable for completing an interrupted write.
pub(super) fn verify_any(bytes: &[u8]) -> Result<(), VerifyError> {
    Config::from_state(bytes, "state.new")
        .map(|_| ())
        .map_err(VerifyError::new)
}
