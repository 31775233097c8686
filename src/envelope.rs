//! The encrypted configuration of ESXi 7.0U2 and later: `encryption.info` and the
//! `local.tgz.ve` envelope (reference section 5).
//!
//! This release recognises the envelope and tells which kind of key protects it: with mode
//! `NONE` the key can be derived offline from `encryption.info`; any other mode means the key is
//! sealed in the host's TPM and no offline tool can decrypt it.

use serde::Serialize;

/// The first bytes of an envelope file.
pub const ENVELOPE_MAGIC: &[u8] = b"DataTransformEnvelope";

/// How the configuration is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Plain `local.tgz`.
    None,
    /// Encrypted, key derivable offline (mode NONE, no TPM).
    Kdf,
    /// Encrypted, key sealed by the host's TPM.
    Tpm,
}

/// Parsed `encryption.info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionInfo {
    /// `name = "value"` pairs in file order.
    pub fields: Vec<(String, String)>,
}

/// Errors of the envelope layer.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("encryption.info is not text (invalid UTF-8 at byte {offset})")]
    NotText { offset: usize },
    #[error("encryption.info has no `mode` line")]
    NoMode,
    #[error(
        "local.tgz.ve: not an envelope (first bytes {found:02x?}, expected `DataTransformEnvelope`)"
    )]
    NotEnvelope { found: Vec<u8> },
}

impl EncryptionInfo {
    pub fn parse(bytes: &[u8]) -> Result<EncryptionInfo, EnvelopeError> {
        let text = std::str::from_utf8(bytes).map_err(|e| EnvelopeError::NotText {
            offset: e.valid_up_to(),
        })?;
        let fields = text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                Some((k.trim().to_string(), v.to_string()))
            })
            .collect();
        Ok(EncryptionInfo { fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The `mode` value as written.
    pub fn mode(&self) -> Result<&str, EnvelopeError> {
        self.get("mode").ok_or(EnvelopeError::NoMode)
    }

    /// `Kdf` for mode NONE, `Tpm` for anything else.
    pub fn kind(&self) -> Result<Encryption, EnvelopeError> {
        Ok(if self.mode()?.eq_ignore_ascii_case("NONE") {
            Encryption::Kdf
        } else {
            Encryption::Tpm
        })
    }
}

/// Checks that bytes start like an envelope.
pub fn check_envelope(bytes: &[u8]) -> Result<(), EnvelopeError> {
    if bytes.starts_with(ENVELOPE_MAGIC) {
        Ok(())
    } else {
        Err(EnvelopeError::NotEnvelope {
            found: bytes.iter().take(8).copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_example() {
        let text = b".encoding = \"UTF-8\"\nincludeKeyCache = \"FALSE\"\nmode = \"NONE\"\nConfigEncData = \"keyId=fmLOxWrvTX6Di8rjLu/SUQ%3d%3d:data1=Uz8MFZfqTbWN2jIHbFPhag%3d%3d:data2=IDcZE41aR+uxDv7Iz8zJSA%3d%3d:version=1\"\n";
        let info = EncryptionInfo::parse(text).unwrap();
        assert_eq!(info.kind().unwrap(), Encryption::Kdf);
        assert!(info.get("ConfigEncData").unwrap().starts_with("keyId="));
        let tpm = EncryptionInfo::parse(b"mode = \"TPM\"\n").unwrap();
        assert_eq!(tpm.kind().unwrap(), Encryption::Tpm);
        assert!(EncryptionInfo::parse(b"x = 1\n").unwrap().kind().is_err());
    }
}
