//! The configuration layers below a bank: `state.tgz` -> (envelope) -> `local.tgz` ->
//! `etc/vmware/esx.conf`, all decoded in memory.

use crate::esxi::esxconf::{EsxConf, EsxConfError};
use crate::format::archive::{ArchiveError, Tgz};
use crate::format::envelope::{DerivedKey, Encryption, EncryptionInfo, Envelope, EnvelopeError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Path of esx.conf inside local.tgz.
pub const ESX_CONF: &str = "etc/vmware/esx.conf";

/// A member of local.tgz, as listed for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberSummary {
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub mode: String,
}

/// What the configuration archive holds.
#[derive(Debug, Clone)]
pub struct Config {
    pub encryption: Encryption,
    /// `mode` from encryption.info, when encrypted.
    pub encryption_mode: Option<String>,
    pub state: Tgz,
    /// Decoded local.tgz when readable (not encrypted).
    pub local: Option<Tgz>,
    pub esx_conf: Option<EsxConf>,
    /// For a configuration decrypted offline: the envelope and key that seal a changed one.
    pub sealed: Option<Sealed>,
}

/// What re-encrypting a changed local.tgz needs: the original envelope (its header layout is
/// kept) and the key derived from encryption.info (which is never changed).
#[derive(Debug, Clone)]
pub struct Sealed {
    pub envelope: Envelope,
    pub key: DerivedKey,
}

/// Derives the mode-NONE key once per run: 100000 PBKDF2 rounds are the slowest thing bootbank
/// does, and every bank of a host, read again after a write, has the same key.
fn derive_cached(info: &EncryptionInfo) -> Result<DerivedKey, EnvelopeError> {
    /// (data1, data2) -> key.
    type Keys = HashMap<(Vec<u8>, Vec<u8>), DerivedKey>;
    static CACHE: OnceLock<Mutex<Keys>> = OnceLock::new();
    let data = info.config_enc_data()?;
    let id = (data.data1.clone(), data.data2.clone());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(k) = cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
        return Ok(k);
    }
    let key = info.derive_key()?;
    if let Ok(mut c) = cache.lock() {
        c.insert(id, key.clone());
    }
    Ok(key)
}

/// Errors of the configuration layers, each naming its archive and offset or member.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("state.tgz: {0}")]
    Envelope(EnvelopeError),
    #[error("{archive} > {ESX_CONF}: {cause}")]
    EsxConf {
        archive: String,
        cause: EsxConfError,
    },
    #[error("{archive} holds neither local.tgz nor local.tgz.ve (members: {present})")]
    NoLocal { archive: String, present: String },
}

// By hand rather than `#[from]`: the message holds the cause, so it is not also `source()`.
impl From<EnvelopeError> for ConfigError {
    fn from(e: EnvelopeError) -> Self {
        ConfigError::Envelope(e)
    }
}

impl Config {
    /// Reads a `state.tgz` (or a bare `local.tgz`: `label` says which).
    pub fn from_state(bytes: &[u8], label: &str) -> Result<Config, ConfigError> {
        Self::read(bytes, label, Tgz::parse)
    }

    /// Like [`Config::from_state`], but maps the deflate blocks of state.tgz and local.tgz so
    /// that a changed configuration re-encodes only what changed (see [`crate::format::archive::reseal`]).
    pub fn from_state_for_edit(bytes: &[u8], label: &str) -> Result<Config, ConfigError> {
        Self::read(bytes, label, Tgz::parse_for_edit)
    }

    fn read(
        bytes: &[u8],
        label: &str,
        parse: fn(&[u8], &str) -> Result<Tgz, ArchiveError>,
    ) -> Result<Config, ConfigError> {
        let state = parse(bytes, label)?;
        if state.member(ESX_CONF).is_some() {
            // A bare local.tgz (older embedded builds keep one in the bank).
            return Self::plain(state.clone(), state);
        }
        if state.member("local.tgz.ve").is_some() {
            let info = EncryptionInfo::parse(state.require("encryption.info")?)?;
            let kind = info.kind()?;
            let mode = Some(info.mode()?.to_string());
            let envelope = Envelope::parse(state.require("local.tgz.ve")?)?;
            if kind != Encryption::Kdf {
                // Sealed by the host's TPM: nothing offline can open it.
                return Ok(Config {
                    encryption: kind,
                    encryption_mode: mode,
                    state,
                    local: None,
                    esx_conf: None,
                    sealed: None,
                });
            }
            let key = derive_cached(&info)?;
            let plain = envelope.decrypt(&key.key)?;
            let local = Tgz::parse(&plain, &format!("{label} > local.tgz.ve (decrypted)"))?;
            let mut cfg = Self::plain(state, local)?;
            cfg.encryption = kind;
            cfg.encryption_mode = mode;
            cfg.sealed = Some(Sealed { envelope, key });
            return Ok(cfg);
        }
        if state.member("local.tgz").is_none() {
            return Err(ConfigError::NoLocal {
                archive: label.to_string(),
                present: state.member_names(),
            });
        }
        let local = parse(state.require("local.tgz")?, &format!("{label} > local.tgz"))?;
        Self::plain(state, local)
    }

    fn plain(state: Tgz, local: Tgz) -> Result<Config, ConfigError> {
        let esx_conf =
            EsxConf::parse(local.require(ESX_CONF)?).map_err(|cause| ConfigError::EsxConf {
                archive: local.label.clone(),
                cause,
            })?;
        Ok(Config {
            encryption: Encryption::None,
            encryption_mode: None,
            state,
            local: Some(local),
            esx_conf: Some(esx_conf),
            sealed: None,
        })
    }

    /// Members of local.tgz (empty when encrypted).
    pub fn local_members(&self) -> Vec<MemberSummary> {
        self.local.as_ref().map(summarize).unwrap_or_default()
    }
}

/// The members of an archive as listed for the user.
pub fn summarize(t: &Tgz) -> Vec<MemberSummary> {
    t.members
        .iter()
        .map(|m| MemberSummary {
            name: m.name.clone(),
            size: m.size,
            mtime: m.mtime,
            mode: format!("{:04o}", m.mode & 0o7777),
        })
        .collect()
}
