//! `encryption.info` and the key derivation of mode `NONE`: the `ConfigEncData` field, PBKDF2
//! over its two halves, the key id and the key hash ESXi stores beside the ciphertext.

use super::{Encryption, EnvelopeError, KDF_ITERATIONS, KDF_TEXT};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Parsed `encryption.info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionInfo {
    /// `name = "value"` pairs in file order.
    pub fields: Vec<(String, String)>,
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

    /// The parsed `ConfigEncData` line.
    pub fn config_enc_data(&self) -> Result<ConfigEncData, EnvelopeError> {
        ConfigEncData::parse(
            self.get("ConfigEncData")
                .ok_or(EnvelopeError::NoConfigEncData)?,
        )
    }

    /// Derives the key for mode NONE; refuses any other mode, since its key lives in the TPM and
    /// deriving from `ConfigEncData` anyway would only produce a wrong key. Costs 100000 PBKDF2
    /// rounds: call it once per run and keep the result.
    pub fn derive_key(&self) -> Result<DerivedKey, EnvelopeError> {
        if self.kind()? != Encryption::Kdf {
            return Err(EnvelopeError::NotKdf {
                mode: self.mode()?.to_string(),
            });
        }
        Ok(self.config_enc_data()?.derive_key())
    }
}

/// `ConfigEncData` from `encryption.info`: `:`-separated `name=value` pairs whose values are
/// URL-escaped base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEncData {
    /// Decoded `keyId` (16 bytes on every host seen; empty when absent).
    pub key_id_bytes: Vec<u8>,
    /// Decoded `data1`: the start of the PBKDF2 password.
    pub data1: Vec<u8>,
    /// Decoded `data2`: the PBKDF2 salt.
    pub data2: Vec<u8>,
    /// Every pair as written (values URL-unescaped, not base64-decoded), `version` included.
    pub fields: Vec<(String, String)>,
}

impl ConfigEncData {
    /// Parses the value of the `ConfigEncData` line. Liberal: names are case-insensitive, any
    /// `%XX` escape is decoded, base64 padding may be missing and the URL-safe alphabet is
    /// accepted, since nothing about the writer beyond one sample is known. `data1` and `data2`
    /// are required (the key depends on them); a missing `keyId` only leaves the id empty.
    pub fn parse(value: &str) -> Result<ConfigEncData, EnvelopeError> {
        let fields: Vec<(String, String)> = value
            .split(':')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.trim().to_string(), url_unescape(v.trim()))
            })
            .collect();
        let decoded = |name: &str, required: bool| -> Result<Vec<u8>, EnvelopeError> {
            match fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some((_, v)) => decode_base64(v).map_err(|e| EnvelopeError::BadConfigEncData {
                    field: name.to_string(),
                    reason: format!("not base64 ({e}): `{v}`"),
                }),
                None if required => Err(EnvelopeError::BadConfigEncData {
                    field: name.to_string(),
                    reason: "missing".to_string(),
                }),
                None => Ok(Vec::new()),
            }
        };
        Ok(ConfigEncData {
            key_id_bytes: decoded("keyId", false)?,
            data1: decoded("data1", true)?,
            data2: decoded("data2", true)?,
            fields,
        })
    }

    /// The key id: a UUID formatted 8-4-4-4-12 in lower case (bytes in stored order) when
    /// `keyId` is 16 bytes, else its bytes in hex, so an odd id is still shown, never refused.
    pub fn key_id(&self) -> String {
        format_key_id(&self.key_id_bytes)
    }

    /// The mode-NONE key (see [`derive_key`]).
    pub fn derive_key(&self) -> DerivedKey {
        DerivedKey {
            key_id: self.key_id(),
            key: derive_key(&self.data1, &self.data2),
        }
    }
}

/// A derived key with its id. `Debug` leaves the key out, so it cannot end up in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct DerivedKey {
    pub key_id: String,
    pub key: [u8; 32],
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Mode-NONE key derivation: PBKDF2-HMAC-SHA256(password = data1 || [`KDF_TEXT`],
/// salt = data2, 100000 rounds, 32 bytes).
pub fn derive_key(data1: &[u8], data2: &[u8]) -> [u8; 32] {
    let mut password = Vec::with_capacity(data1.len() + KDF_TEXT.len());
    password.extend_from_slice(data1);
    password.extend_from_slice(KDF_TEXT);
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&password, data2, KDF_ITERATIONS, &mut key);
    key
}

/// `vmware.keyHash`: SHA-256(cipher name || key). Lets a wrong key be told apart from a corrupt
/// file before any decryption.
pub fn key_hash(cipher_name: &[u8], key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(cipher_name);
    h.update(key);
    h.finalize().into()
}

fn format_key_id(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if b.len() == 16 {
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    } else {
        hex
    }
}

/// Decodes every `%XX` escape (either case); a `%` not followed by two hex digits stays as is.
/// `+` is kept: in base64 it is a digit, not a space.
fn url_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(cleaned.as_bytes())
}
