//! The encrypted configuration of ESXi 7.0U2 and later: `encryption.info` and the
//! `local.tgz.ve` envelope (reference section 5).
//!
//! With mode `NONE` the key is derived offline from `encryption.info` ([`EncryptionInfo::derive_key`]);
//! any other mode means the key is sealed in the host's TPM and no offline tool can decrypt it.
//!
//! [`Envelope::parse`] reads the envelope's layout (header block(s), ciphertext, AEAD footer) and
//! [`Envelope::decrypt`] opens it. [`Envelope::seal`] writes a new envelope for changed plaintext
//! that differs from the original only where it must: the same header bytes with a fresh
//! `vmware.iv`, the ciphertext, and the tag in the AEAD footer. Every envelope this module writes
//! is parsed and decrypted again and compared with the plaintext before it is returned
//! ([`verify_sealed`]), so a caller never holds bytes that do not open to what it meant to write.
//!
//! Layout (little-endian, 4096-byte blocks):
//!
//! ```text
//! header block(s)   "DataTransformEnvelope", u32 header length - 512 @504, u32 version 2 @508,
//!                   attributes from byte 512, zero padding
//! ciphertext        AES-256-GCM(plaintext || zeros to a 4096 multiple || crypto footer block)
//!                   AAD = header block(s) as stored || "ESXConfiguration"
//! AEAD footer       "DataTransformAeadFooter", 9 pad, 4056 data (tag first), u32 size, u32 version 1
//! ```

use aes_gcm::aead::{Nonce, Tag};
use aes_gcm::{AeadInOut, Aes256Gcm, Key, KeyInit};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The first bytes of an envelope file.
pub const ENVELOPE_MAGIC: &[u8] = b"DataTransformEnvelope";
/// Magic at the start of the last 512 bytes of the (encrypted) crypto footer block.
pub const CRYPTO_FOOTER_MAGIC: &[u8] = b"DataTransformCryptoFooter";
/// Magic at the start of the plain AEAD footer block.
pub const AEAD_FOOTER_MAGIC: &[u8] = b"DataTransformAeadFooter";
/// Appended to the header bytes to form the GCM associated data.
pub const AAD_SUFFIX: &[u8] = b"ESXConfiguration";
/// The only cipher ESXi has been seen to use, and the only one this module implements.
pub const CIPHER_NAME: &str = "AES-256-GCM";
/// Appended to `data1` to form the PBKDF2 password in mode NONE (reference section 5).
pub const KDF_TEXT: &[u8] =
    b"This is obfuscation, not encryption. If you want encryption, use TPM.";
/// PBKDF2 iteration count in mode NONE.
pub const KDF_ITERATIONS: u32 = 100_000;
/// Envelope block size: header, padding, footers all align to it.
pub const BLOCK: usize = 4096;

/// Header version this module understands (u32 at byte 508).
const HEADER_VERSION: u32 = 2;
/// AEAD footer version this module understands (u32 at its byte 4092).
const AEAD_FOOTER_VERSION: u32 = 1;
/// Crypto footer version written by [`Envelope::build_new`]. No real envelope was at hand to read
/// it from; [`Envelope::seal`] keeps the original's value instead of using this one.
const NEW_CRYPTO_FOOTER_VERSION: u32 = 1;
/// GCM tag length: the only one ESXi writes and the only one `Aes256Gcm` checks.
const TAG_LEN: usize = 16;
/// GCM nonce length (`vmware.iv`).
const IV_LEN: usize = 12;
/// Where the attribute list starts inside the first header block.
const ATTRS_START: usize = 512;
/// The fixed prefix of every IV ESXi writes (`WMV_` followed by 8 bytes).
const IV_PREFIX: &[u8; 4] = b"WMV_";

/// Attribute type: NUL-terminated string.
pub const ATTR_STRING: u8 = 0x0B;
/// Attribute type: u64 length then that many bytes.
pub const ATTR_BYTES: u8 = 0x0C;

pub const ATTR_KEY_INFO: &str = "vmware.keyInfo";
pub const ATTR_CIPHER_NAME: &str = "vmware.cipherName";
pub const ATTR_KEY_HASH: &str = "vmware.keyHash";
pub const ATTR_IV: &str = "vmware.iv";

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

/// Errors of the envelope layer. Offsets are byte offsets in the file named by the message
/// (`local.tgz.ve` unless it says otherwise), so a user can look at the bytes with `xxd -s`.
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
    #[error("encryption.info has no `ConfigEncData` line")]
    NoConfigEncData,
    #[error("encryption.info: ConfigEncData field `{field}`: {reason}")]
    BadConfigEncData { field: String, reason: String },
    #[error(
        "the configuration is sealed by the host's TPM (encryption.info mode = \"{mode}\"): \
         no offline tool can derive its key"
    )]
    NotKdf { mode: String },
    #[error("local.tgz.ve: truncated: {what} needs bytes {offset}..{need}, the file has {len}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error(
        "local.tgz.ve: bad header length at byte 504: {value} + 512 is not a positive multiple \
         of 4096"
    )]
    BadHeaderLength { value: u32 },
    #[error(
        "local.tgz.ve: {len} bytes after the {header_len}-byte header are not whole 4096-byte \
         blocks (ciphertext + AEAD footer)"
    )]
    BadBodyLength { header_len: usize, len: usize },
    #[error(
        "local.tgz.ve: unsupported {what} version {found} at byte {offset} (expected {expected})"
    )]
    UnsupportedVersion {
        what: &'static str,
        offset: usize,
        found: u32,
        expected: u32,
    },
    #[error("local.tgz.ve: unknown attribute type 0x{kind:02x} at byte {offset}")]
    UnknownAttributeType { offset: usize, kind: u8 },
    #[error("local.tgz.ve: attribute `{name}` at byte {offset}: {reason}")]
    BadAttribute {
        name: String,
        offset: usize,
        reason: String,
    },
    #[error("local.tgz.ve: header has no `{name}` attribute")]
    MissingAttribute { name: &'static str },
    #[error("local.tgz.ve: cipher `{found}` is not supported (only AES-256-GCM)")]
    WrongCipher { found: String },
    #[error("local.tgz.ve: bad AEAD footer at byte {offset}: {reason}")]
    BadAeadFooter { offset: usize, reason: String },
    #[error("wrong key: this envelope was sealed with another key")]
    WrongKey,
    #[error("authentication failed: corrupt or tampered")]
    AuthenticationFailed,
    #[error("local.tgz.ve: bad crypto footer (decrypted) at byte {offset}: {reason}")]
    BadCryptoFooter { offset: usize, reason: String },
    #[error("local.tgz.ve: plaintext of {len} bytes is too large for an envelope")]
    TooLarge { len: usize },
    #[error("cannot draw a random IV from the operating system: {0}")]
    Random(String),
    #[error("the envelope just written does not open to the same bytes: {reason}; nothing written")]
    SealCheck { reason: String },
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
                Some((_, v)) => {
                    decode_base64(v).map_err(|reason| EnvelopeError::BadConfigEncData {
                        field: name.to_string(),
                        reason,
                    })
                }
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

/// A fresh IV as ESXi writes it: `WMV_` followed by 8 bytes from the operating system's random
/// source. GCM must never reuse a (key, IV) pair and the key of a host never changes, so every
/// sealing needs a new one.
pub fn fresh_iv() -> Result<[u8; 12], EnvelopeError> {
    let mut iv = [0u8; IV_LEN];
    iv[..4].copy_from_slice(IV_PREFIX);
    getrandom::fill(&mut iv[4..]).map_err(|e| EnvelopeError::Random(e.to_string()))?;
    Ok(iv)
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

fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
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
    engine
        .decode(cleaned.as_bytes())
        .map_err(|e| format!("not base64 ({e}): `{s}`"))
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

/// One header attribute, with where it was found so that a rewrite can change exactly its value
/// bytes and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Offset of the type byte in the file.
    pub offset: usize,
    pub kind: u8,
    pub flag: u8,
    /// The u16 after the flag: zero in every envelope seen, kept as found.
    pub reserved: u16,
    /// Name as stored (lossy UTF-8; ESXi's names are ASCII).
    pub name: String,
    /// Value bytes: a string without its NUL, the bytes of a 0x0C value without the length, the
    /// raw little-endian bytes of a fixed-size number.
    pub value: Vec<u8>,
    /// Offset of the first value byte in the file.
    pub value_offset: usize,
}

impl Attribute {
    /// The value of a string attribute, lossily decoded.
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// Size of the fixed-size attribute types: 0x01-0x04 unsigned 8/16/32/64-bit, 0x05-0x08 signed,
/// 0x09 float, 0x0A double. ESXi has not been seen to write any of them; the sizes follow the
/// usual numbering and are kept as raw bytes, so a wrong guess cannot change what is rewritten,
/// only whether the list parses.
fn fixed_size(kind: u8) -> Option<usize> {
    Some(match kind {
        0x01 | 0x05 => 1,
        0x02 | 0x06 => 2,
        0x03 | 0x07 | 0x09 => 4,
        0x04 | 0x08 | 0x0A => 8,
        _ => return None,
    })
}

/// A parsed `local.tgz.ve`. Keeps the header and AEAD footer bytes exactly as stored, since the
/// header is the associated data and a rewrite must reproduce every byte of it but the IV.
#[derive(Clone)]
pub struct Envelope {
    header: Vec<u8>,
    attributes: Vec<Attribute>,
    ciphertext: Vec<u8>,
    aead_footer: Vec<u8>,
    cipher_index: usize,
    key_hash_index: usize,
    iv_index: usize,
}

/// Layout and attributes only: the ciphertext would bury them in kilobytes of hex.
impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("header_len", &self.header.len())
            .field("attributes", &self.attributes)
            .field("ciphertext_len", &self.ciphertext.len())
            .field("tag", &self.tag())
            .finish()
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn need(what: &'static str, b: &[u8], offset: usize, n: usize) -> Result<(), EnvelopeError> {
    match offset.checked_add(n) {
        Some(end) if end <= b.len() => Ok(()),
        _ => Err(EnvelopeError::Truncated {
            what,
            offset,
            need: offset.saturating_add(n),
            len: b.len(),
        }),
    }
}

impl Envelope {
    /// Parses the layout and the attributes; checks everything that can be checked without the
    /// key (magic, lengths, versions, required attributes and their sizes, cipher).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        check_envelope(bytes)?;
        need("header", bytes, 0, ATTRS_START)?;
        let value = u32_at(bytes, 504);
        let header_len = value as usize + 512;
        if !header_len.is_multiple_of(BLOCK) {
            return Err(EnvelopeError::BadHeaderLength { value });
        }
        let version = u32_at(bytes, 508);
        if version != HEADER_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                what: "header",
                offset: 508,
                found: version,
                expected: HEADER_VERSION,
            });
        }
        need("header", bytes, 0, header_len)?;
        let header = &bytes[..header_len];
        let attributes = parse_attributes(header)?;

        let body = bytes.len() - header_len;
        if !body.is_multiple_of(BLOCK) {
            return Err(EnvelopeError::BadBodyLength {
                header_len,
                len: body,
            });
        }
        // At least the crypto footer block and the AEAD footer block.
        need("ciphertext and AEAD footer", bytes, header_len, 2 * BLOCK)?;
        let footer_at = bytes.len() - BLOCK;
        let aead_footer = &bytes[footer_at..];
        check_aead_footer(aead_footer, footer_at)?;

        let find = |name: &'static str| {
            attributes
                .iter()
                .position(|a| a.name == name)
                .ok_or(EnvelopeError::MissingAttribute { name })
        };
        let cipher_index = find(ATTR_CIPHER_NAME)?;
        let key_hash_index = find(ATTR_KEY_HASH)?;
        let iv_index = find(ATTR_IV)?;
        let cipher = &attributes[cipher_index];
        if cipher.kind != ATTR_STRING {
            return Err(bad_attr(cipher, "expected a string (type 0x0b)"));
        }
        if cipher.value != CIPHER_NAME.as_bytes() {
            return Err(EnvelopeError::WrongCipher {
                found: cipher.value_str(),
            });
        }
        for (i, len) in [(key_hash_index, 32), (iv_index, IV_LEN)] {
            let a = &attributes[i];
            if a.kind != ATTR_BYTES || a.value.len() != len {
                return Err(bad_attr(
                    a,
                    &format!(
                        "expected {len} bytes (type 0x0c), found type 0x{:02x} with {} bytes",
                        a.kind,
                        a.value.len()
                    ),
                ));
            }
        }
        Ok(Envelope {
            header: header.to_vec(),
            attributes,
            ciphertext: bytes[header_len..footer_at].to_vec(),
            aead_footer: aead_footer.to_vec(),
            cipher_index,
            key_hash_index,
            iv_index,
        })
    }

    /// Header block(s) exactly as stored.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Attributes in stored order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }

    /// The first attribute of that name.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// `vmware.keyInfo` as written, when present. Not needed to decrypt (the key hash decides),
    /// so its absence is no error.
    pub fn key_info(&self) -> Option<String> {
        self.attribute(ATTR_KEY_INFO).map(Attribute::value_str)
    }

    pub fn key_hash(&self) -> &[u8] {
        &self.attributes[self.key_hash_index].value
    }

    pub fn iv(&self) -> [u8; 12] {
        self.attributes[self.iv_index]
            .value
            .as_slice()
            .try_into()
            .expect("checked in parse")
    }

    pub fn tag(&self) -> &[u8] {
        &self.aead_footer[32..32 + TAG_LEN]
    }

    /// Length of the ciphertext (plaintext + padding + crypto footer block).
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Total file length.
    pub fn len(&self) -> usize {
        self.header.len() + self.ciphertext.len() + self.aead_footer.len()
    }

    /// Never true: an envelope has at least three blocks (clippy wants it beside `len`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `key` is the one this envelope was sealed with (its `vmware.keyHash`).
    pub fn key_matches(&self, key: &[u8; 32]) -> bool {
        key_hash(&self.attributes[self.cipher_index].value, key) == self.key_hash()
    }

    /// Decrypts: checks the key hash first (so a wrong key is named as such), then the GCM tag,
    /// then strips the crypto footer and the padding it declares.
    pub fn decrypt(&self, key: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
        self.open(key).map(|(plain, _)| plain)
    }

    /// Plaintext and the decrypted crypto footer block.
    fn open(&self, key: &[u8; 32]) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError> {
        if !self.key_matches(key) {
            return Err(EnvelopeError::WrongKey);
        }
        let mut buf = self.ciphertext.clone();
        let tag = Tag::<Aes256Gcm>::try_from(self.tag()).expect("16 bytes");
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
            .decrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(self.iv()),
                &aad(&self.header),
                buf.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| EnvelopeError::AuthenticationFailed)?;
        let footer_start = buf.len() - BLOCK;
        let file_off = self.header.len() + footer_start;
        let footer = buf.split_off(footer_start);
        if !footer[BLOCK - 512..].starts_with(CRYPTO_FOOTER_MAGIC) {
            return Err(EnvelopeError::BadCryptoFooter {
                offset: file_off + BLOCK - 512,
                reason: "no `DataTransformCryptoFooter` magic".to_string(),
            });
        }
        let padding = u32_at(&footer, BLOCK - 8) as usize;
        if padding > buf.len() {
            return Err(EnvelopeError::BadCryptoFooter {
                offset: file_off + BLOCK - 8,
                reason: format!(
                    "padding length {padding} exceeds the {} bytes before the footer",
                    buf.len()
                ),
            });
        }
        buf.truncate(buf.len() - padding);
        Ok((buf, footer))
    }

    /// Seals `plaintext` into a new envelope with this one's header (same layout, attributes,
    /// order, flags and every other byte) but `iv` in `vmware.iv`, a crypto footer block equal to
    /// the original's but for its padding length, and the new tag in a copy of the original AEAD
    /// footer. Needs the key this envelope was sealed with: `encryption.info` is never changed,
    /// so another key would make an envelope the host cannot open. The result has been decrypted
    /// and compared with `plaintext`.
    pub fn seal(
        &self,
        plaintext: &[u8],
        key: &[u8; 32],
        iv: [u8; 12],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let (_, crypto_footer) = self.open(key)?;
        let mut header = self.header.clone();
        let at = self.attributes[self.iv_index].value_offset;
        header[at..at + IV_LEN].copy_from_slice(&iv);
        let out = assemble(
            header,
            &crypto_footer,
            &self.aead_footer,
            &iv,
            plaintext,
            key,
        )?;
        verify_sealed(&out, key, plaintext)?;
        Ok(out)
    }

    /// A new envelope from scratch, for test fixtures: one header block with `vmware.keyInfo`
    /// (`key_id`), `vmware.cipherName`, `vmware.keyHash`, `vmware.iv` in that order (types 0x0b,
    /// 0x0b, 0x0c, 0x0c, flag 0), as the reference describes ESXi's. The result has been
    /// decrypted and compared with `plaintext`.
    pub fn build_new(
        key_id: &str,
        key: &[u8; 32],
        plaintext: &[u8],
        iv: [u8; 12],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let attrs = [
            (ATTR_STRING, ATTR_KEY_INFO, string_value(key_id.as_bytes())),
            (
                ATTR_STRING,
                ATTR_CIPHER_NAME,
                string_value(CIPHER_NAME.as_bytes()),
            ),
            (
                ATTR_BYTES,
                ATTR_KEY_HASH,
                bytes_value(&key_hash(CIPHER_NAME.as_bytes(), key)),
            ),
            (ATTR_BYTES, ATTR_IV, bytes_value(&iv)),
        ];
        let header = build_header(
            attrs
                .iter()
                .map(|(kind, name, value)| (*kind, 0u8, *name, value.as_slice())),
        )?;
        let out = assemble(
            header,
            &new_crypto_footer(),
            &new_aead_footer(),
            &iv,
            plaintext,
            key,
        )?;
        verify_sealed(&out, key, plaintext)?;
        Ok(out)
    }
}

/// The check every written envelope passes before it is handed out: it parses, opens with `key`
/// and yields exactly `expected`.
pub fn verify_sealed(bytes: &[u8], key: &[u8; 32], expected: &[u8]) -> Result<(), EnvelopeError> {
    let check = |e: EnvelopeError| EnvelopeError::SealCheck {
        reason: e.to_string(),
    };
    let plain = Envelope::parse(bytes)
        .map_err(check)?
        .decrypt(key)
        .map_err(check)?;
    if plain != expected {
        let at = plain
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(plain.len().min(expected.len()));
        return Err(EnvelopeError::SealCheck {
            reason: format!(
                "{} bytes out, {} expected, first difference at byte {at}",
                plain.len(),
                expected.len()
            ),
        });
    }
    Ok(())
}

fn aad(header: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + AAD_SUFFIX.len());
    a.extend_from_slice(header);
    a.extend_from_slice(AAD_SUFFIX);
    a
}

fn bad_attr(a: &Attribute, reason: &str) -> EnvelopeError {
    EnvelopeError::BadAttribute {
        name: a.name.clone(),
        offset: a.offset,
        reason: reason.to_string(),
    }
}

fn parse_attributes(header: &[u8]) -> Result<Vec<Attribute>, EnvelopeError> {
    let nul_end = |from: usize, what: &'static str| -> Result<usize, EnvelopeError> {
        header[from..]
            .iter()
            .position(|&c| c == 0)
            .map(|p| from + p)
            .ok_or(EnvelopeError::Truncated {
                what,
                offset: from,
                need: header.len() + 1,
                len: header.len(),
            })
    };
    let mut out = Vec::new();
    let mut off = ATTRS_START;
    loop {
        // The list ends with a zero type byte; running into the end of the header without one
        // means the header length or the list is wrong.
        need("attribute list", header, off, 1)?;
        let kind = header[off];
        if kind == 0 {
            return Ok(out);
        }
        need("attribute", header, off, 4)?;
        let flag = header[off + 1];
        let reserved = u16::from_le_bytes([header[off + 2], header[off + 3]]);
        let name_end = nul_end(off + 4, "attribute name")?;
        let name = String::from_utf8_lossy(&header[off + 4..name_end]).into_owned();
        let mut at = name_end + 1;
        let (value_offset, value) = match kind {
            ATTR_STRING => {
                let end = nul_end(at, "string attribute")?;
                let v = (at, header[at..end].to_vec());
                at = end + 1;
                v
            }
            ATTR_BYTES => {
                need("bytes attribute length", header, at, 8)?;
                let n = u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
                at += 8;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                need("bytes attribute", header, at, n)?;
                let v = (at, header[at..at + n].to_vec());
                at += n;
                v
            }
            k => match fixed_size(k) {
                Some(n) => {
                    need("number attribute", header, at, n)?;
                    let v = (at, header[at..at + n].to_vec());
                    at += n;
                    v
                }
                None => return Err(EnvelopeError::UnknownAttributeType { offset: off, kind }),
            },
        };
        out.push(Attribute {
            offset: off,
            kind,
            flag,
            reserved,
            name,
            value,
            value_offset,
        });
        off = at;
    }
}

fn check_aead_footer(f: &[u8], at: usize) -> Result<(), EnvelopeError> {
    let bad = |offset: usize, reason: String| EnvelopeError::BadAeadFooter {
        offset: at + offset,
        reason,
    };
    if !f.starts_with(AEAD_FOOTER_MAGIC) {
        return Err(bad(0, "no `DataTransformAeadFooter` magic".to_string()));
    }
    let size = u32_at(f, BLOCK - 8);
    if size as usize != TAG_LEN {
        return Err(bad(
            BLOCK - 8,
            format!("tag size {size}, expected 16 (AES-256-GCM)"),
        ));
    }
    let version = u32_at(f, BLOCK - 4);
    if version != AEAD_FOOTER_VERSION {
        return Err(EnvelopeError::UnsupportedVersion {
            what: "AEAD footer",
            offset: at + BLOCK - 4,
            found: version,
            expected: AEAD_FOOTER_VERSION,
        });
    }
    Ok(())
}

fn string_value(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

fn bytes_value(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A header of as many blocks as the attributes need (one for the standard set): magic, zeros,
/// length and version at 504, attributes from 512 (each: type, flag, u16 0, name NUL, framed
/// value), a four-byte zero terminator, zeros to the block end.
fn build_header<'a>(
    attrs: impl Iterator<Item = (u8, u8, &'a str, &'a [u8])>,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut h = vec![0u8; ATTRS_START];
    h[..ENVELOPE_MAGIC.len()].copy_from_slice(ENVELOPE_MAGIC);
    for (kind, flag, name, framed) in attrs {
        h.extend_from_slice(&[kind, flag, 0, 0]);
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        h.extend_from_slice(framed);
    }
    h.extend_from_slice(&[0; 4]);
    let len = h.len().div_ceil(BLOCK) * BLOCK;
    h.resize(len, 0);
    let value = u32::try_from(len - 512).map_err(|_| EnvelopeError::TooLarge { len })?;
    h[504..508].copy_from_slice(&value.to_le_bytes());
    h[508..512].copy_from_slice(&HEADER_VERSION.to_le_bytes());
    Ok(h)
}

fn new_crypto_footer() -> Vec<u8> {
    let mut f = vec![0u8; BLOCK];
    f[BLOCK - 512..BLOCK - 512 + CRYPTO_FOOTER_MAGIC.len()].copy_from_slice(CRYPTO_FOOTER_MAGIC);
    f[BLOCK - 4..].copy_from_slice(&NEW_CRYPTO_FOOTER_VERSION.to_le_bytes());
    f
}

fn new_aead_footer() -> Vec<u8> {
    let mut f = vec![0u8; BLOCK];
    f[..AEAD_FOOTER_MAGIC.len()].copy_from_slice(AEAD_FOOTER_MAGIC);
    f[BLOCK - 8..BLOCK - 4].copy_from_slice(&(TAG_LEN as u32).to_le_bytes());
    f[BLOCK - 4..].copy_from_slice(&AEAD_FOOTER_VERSION.to_le_bytes());
    f
}

/// header || AES-256-GCM(plaintext || zero padding || crypto footer with the padding length)
/// || AEAD footer with the tag. The footers are templates: only the padding length and the tag
/// are written into them.
fn assemble(
    header: Vec<u8>,
    crypto_footer: &[u8],
    aead_footer: &[u8],
    iv: &[u8; 12],
    plaintext: &[u8],
    key: &[u8; 32],
) -> Result<Vec<u8>, EnvelopeError> {
    let padding = (BLOCK - plaintext.len() % BLOCK) % BLOCK;
    let padding32 = u32::try_from(padding).expect("below 4096");
    let mut out = header;
    let body_start = out.len();
    out.reserve(plaintext.len() + padding + 2 * BLOCK);
    out.extend_from_slice(plaintext);
    out.resize(out.len() + padding, 0);
    let footer_at = out.len();
    out.extend_from_slice(crypto_footer);
    out[footer_at + BLOCK - 8..footer_at + BLOCK - 4].copy_from_slice(&padding32.to_le_bytes());
    let (header, body) = out.split_at_mut(body_start);
    let tag = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
        .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(*iv), &aad(header), body.into())
        .map_err(|_| EnvelopeError::TooLarge {
            len: plaintext.len(),
        })?;
    let tag_at = out.len() + 32;
    out.extend_from_slice(aead_footer);
    out[tag_at..tag_at + TAG_LEN].copy_from_slice(&tag);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    const REFERENCE_INFO: &[u8] = b".encoding = \"UTF-8\"\nincludeKeyCache = \"FALSE\"\nmode = \"NONE\"\nConfigEncData = \"keyId=fmLOxWrvTX6Di8rjLu/SUQ%3d%3d:data1=Uz8MFZfqTbWN2jIHbFPhag%3d%3d:data2=IDcZE41aR+uxDv7Iz8zJSA%3d%3d:version=1\"\n";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The reference key, derived once per test binary (100000 PBKDF2 rounds are slow in debug).
    fn reference_key() -> &'static DerivedKey {
        static KEY: OnceLock<DerivedKey> = OnceLock::new();
        KEY.get_or_init(|| {
            EncryptionInfo::parse(REFERENCE_INFO)
                .unwrap()
                .derive_key()
                .unwrap()
        })
    }

    /// Any key will do where the derivation is not under test.
    const K: [u8; 32] = [7u8; 32];
    const IV: [u8; 12] = *b"WMV_\x01\x02\x03\x04\x05\x06\x07\x08";

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn reference_example() {
        let info = EncryptionInfo::parse(REFERENCE_INFO).unwrap();
        assert_eq!(info.kind().unwrap(), Encryption::Kdf);
        assert!(info.get("ConfigEncData").unwrap().starts_with("keyId="));
        let tpm = EncryptionInfo::parse(b"mode = \"TPM\"\n").unwrap();
        assert_eq!(tpm.kind().unwrap(), Encryption::Tpm);
        assert!(matches!(
            tpm.derive_key(),
            Err(EnvelopeError::NotKdf { mode }) if mode == "TPM"
        ));
        assert!(EncryptionInfo::parse(b"x = 1\n").unwrap().kind().is_err());
    }

    /// The published values of reference section 5 (a real host's encryption.info).
    #[test]
    fn published_values_reproduce() {
        let k = reference_key();
        assert_eq!(k.key_id, "7e62cec5-6aef-4d7e-838b-cae32eefd251");
        assert_eq!(
            hex(&k.key),
            "ae29634dca8627013f7c7cf2d05b4d5cc444d42cd4e8acbaa4fb815dda3b3066"
        );
        assert_eq!(
            hex(&key_hash(CIPHER_NAME.as_bytes(), &k.key)),
            "7eaad9a3be03cbf5e092adc8ce04724f9b2a49785fba2533c56b7e26977b8c86"
        );
        assert!(!format!("{k:?}").contains("ae29634d"));
    }

    #[test]
    fn config_enc_data_is_parsed_liberally() {
        let strict = EncryptionInfo::parse(REFERENCE_INFO)
            .unwrap()
            .config_enc_data()
            .unwrap();
        assert_eq!(strict.data1.len(), 16);
        assert_eq!(strict.data2.len(), 16);
        // Upper-case escapes, escaped `+` and `/`, missing padding, URL-safe alphabet, spaces,
        // other names' case, extra and empty fields.
        let odd = ConfigEncData::parse(
            " KEYID=fmLOxWrvTX6Di8rjLu%2FSUQ%3D%3D :: Data1=Uz8MFZfqTbWN2jIHbFPhag:\
             data2=IDcZE41aR-uxDv7Iz8zJSA%3d%3D:version=1:future=%zz",
        )
        .unwrap();
        assert_eq!(odd.key_id_bytes, strict.key_id_bytes);
        assert_eq!(odd.data1, strict.data1);
        assert_eq!(odd.data2, strict.data2);
        assert_eq!(
            odd.fields.last().unwrap(),
            &("future".to_string(), "%zz".to_string())
        );
        let plus = ConfigEncData::parse("data1=IDcZE41aR%2buxDv7Iz8zJSA==:data2=AA").unwrap();
        assert_eq!(plus.data1, strict.data2);
        assert_eq!(plus.key_id(), "");
        assert_eq!(
            ConfigEncData::parse("keyId=AAEC:data1=AA:data2=AA")
                .unwrap()
                .key_id(),
            "000102"
        );
        for bad in ["data1=AA", "data2=AA", "data1=@@@@:data2=AA"] {
            assert!(
                matches!(
                    ConfigEncData::parse(bad),
                    Err(EnvelopeError::BadConfigEncData { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            EncryptionInfo::parse(b"mode = \"NONE\"\n")
                .unwrap()
                .derive_key(),
            Err(EnvelopeError::NoConfigEncData)
        ));
    }

    #[test]
    fn fresh_iv_has_the_esxi_prefix_and_differs() {
        let a = fresh_iv().unwrap();
        let b = fresh_iv().unwrap();
        assert_eq!(&a[..4], b"WMV_");
        assert_ne!(a, b);
    }

    /// The reference's sample: 94293 bytes of plaintext make a 110592-byte file.
    #[test]
    fn build_new_has_the_reference_layout() {
        let plain = sample(94293);
        let bytes =
            Envelope::build_new("7e62cec5-6aef-4d7e-838b-cae32eefd251", &K, &plain, IV).unwrap();
        assert_eq!(bytes.len(), 110592);
        assert_eq!(&bytes[..21], ENVELOPE_MAGIC);
        assert_eq!(u32_at(&bytes, 504), 3584);
        assert_eq!(u32_at(&bytes, 508), 2);
        let env = Envelope::parse(&bytes).unwrap();
        assert_eq!(env.ciphertext_len(), 102400);
        assert_eq!(env.len(), bytes.len());
        let names: Vec<_> = env
            .attributes()
            .iter()
            .map(|a| (a.kind, a.flag, a.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (0x0B, 0, ATTR_KEY_INFO),
                (0x0B, 0, ATTR_CIPHER_NAME),
                (0x0C, 0, ATTR_KEY_HASH),
                (0x0C, 0, ATTR_IV)
            ]
        );
        assert_eq!(
            env.key_info().as_deref(),
            Some("7e62cec5-6aef-4d7e-838b-cae32eefd251")
        );
        assert_eq!(env.iv(), IV);
        let f = &bytes[bytes.len() - BLOCK..];
        assert_eq!(&f[..23], AEAD_FOOTER_MAGIC);
        assert_eq!(u32_at(f, BLOCK - 8), 16);
        assert_eq!(u32_at(f, BLOCK - 4), 1);
        let (back, footer) = env.open(&K).unwrap();
        assert_eq!(back, plain);
        assert_eq!(u32_at(&footer, BLOCK - 8), 4011);
        assert_eq!(&footer[BLOCK - 512..BLOCK - 487], CRYPTO_FOOTER_MAGIC);
    }

    #[test]
    fn round_trips_at_block_edges() {
        for n in [0, 1, 4095, 4096, 4097, 8192] {
            let plain = sample(n);
            let bytes = Envelope::build_new("id", &K, &plain, IV).unwrap();
            let blocks = n.div_ceil(BLOCK);
            assert_eq!(bytes.len(), (blocks + 3) * BLOCK, "{n}");
            assert_eq!(Envelope::parse(&bytes).unwrap().decrypt(&K).unwrap(), plain);
        }
    }

    #[test]
    fn seal_changes_only_iv_ciphertext_and_tag() {
        let orig = Envelope::build_new("id", &K, &sample(5000), IV).unwrap();
        let env = Envelope::parse(&orig).unwrap();
        let new_iv = *b"WMV_abcdefgh";
        let plain = sample(9000);
        let sealed = env.seal(&plain, &K, new_iv).unwrap();
        let back = Envelope::parse(&sealed).unwrap();
        assert_eq!(back.decrypt(&K).unwrap(), plain);
        assert_eq!(back.iv(), new_iv);
        let iv_at = env.attribute(ATTR_IV).unwrap().value_offset;
        for (i, (a, b)) in env.header().iter().zip(back.header()).enumerate() {
            if !(iv_at..iv_at + 12).contains(&i) {
                assert_eq!(a, b, "header byte {i}");
            }
        }
        let (fa, fb) = (&orig[orig.len() - BLOCK..], &sealed[sealed.len() - BLOCK..]);
        assert_eq!(fa[..32], fb[..32]);
        assert_eq!(fa[48..], fb[48..]);
        assert_ne!(fa[32..48], fb[32..48]);
        assert!(matches!(
            env.seal(&plain, &[8u8; 32], new_iv),
            Err(EnvelopeError::WrongKey)
        ));
    }

    /// A header with every fixed-size type, odd flags and a non-zero reserved field survives a
    /// seal byte for byte (but the IV).
    #[test]
    fn seal_keeps_unusual_attributes() {
        let hash = bytes_value(&key_hash(CIPHER_NAME.as_bytes(), &K));
        let cipher = string_value(CIPHER_NAME.as_bytes());
        let iv = bytes_value(&IV);
        let mut attrs: Vec<(u8, u8, String, Vec<u8>)> = (1u8..=10)
            .map(|t| {
                let n = fixed_size(t).unwrap();
                (t, t, format!("x.t{t}"), vec![t; n])
            })
            .collect();
        attrs.insert(3, (ATTR_BYTES, 5, ATTR_IV.into(), iv));
        attrs.push((ATTR_STRING, 1, ATTR_CIPHER_NAME.into(), cipher));
        attrs.push((ATTR_BYTES, 0, ATTR_KEY_HASH.into(), hash));
        // A long string forces a second header block.
        attrs.push((ATTR_STRING, 0, "x.long".into(), string_value(&[b'a'; 5000])));
        let mut header = build_header(
            attrs
                .iter()
                .map(|(k, f, n, v)| (*k, *f, n.as_str(), v.as_slice())),
        )
        .unwrap();
        header[512 + 2] = 0x42; // reserved u16 of the first attribute
        assert_eq!(header.len(), 2 * BLOCK);
        let plain = sample(100);
        let bytes = assemble(
            header.clone(),
            &new_crypto_footer(),
            &new_aead_footer(),
            &IV,
            &plain,
            &K,
        )
        .unwrap();
        let env = Envelope::parse(&bytes).unwrap();
        assert_eq!(env.attributes().len(), 14);
        assert_eq!(env.attributes()[0].reserved, 0x42);
        assert_eq!(env.attribute("x.t10").unwrap().value, vec![10; 8]);
        assert_eq!(env.key_info(), None);
        assert_eq!(env.decrypt(&K).unwrap(), plain);
        let sealed = env.seal(b"new", &K, *b"WMV_zzzzzzzz").unwrap();
        let back = Envelope::parse(&sealed).unwrap();
        assert_eq!(back.header().len(), header.len());
        let diff: Vec<usize> = (0..header.len())
            .filter(|&i| header[i] != back.header()[i])
            .collect();
        let iv_at = env.attribute(ATTR_IV).unwrap().value_offset;
        assert!(diff.iter().all(|i| (iv_at + 4..iv_at + 12).contains(i)));
        assert_eq!(back.decrypt(&K).unwrap(), b"new");
    }

    #[test]
    fn wrong_key_and_tampering_are_named() {
        let bytes = Envelope::build_new("id", &K, &sample(3000), IV).unwrap();
        let env = Envelope::parse(&bytes).unwrap();
        assert!(matches!(
            env.decrypt(&[0u8; 32]),
            Err(EnvelopeError::WrongKey)
        ));
        // Ciphertext, header padding, the keyInfo name, the IV, the header's last byte.
        let iv_at = env.attribute(ATTR_IV).unwrap().value_offset;
        for at in [BLOCK + 10, 2 * BLOCK - 1, 100, 520, iv_at + 5, BLOCK - 1] {
            let mut t = bytes.clone();
            t[at] ^= 1;
            let e = Envelope::parse(&t).unwrap().decrypt(&K).unwrap_err();
            assert!(
                matches!(e, EnvelopeError::AuthenticationFailed),
                "byte {at}: {e}"
            );
            assert_eq!(e.to_string(), "authentication failed: corrupt or tampered");
        }
        let mut t = bytes.clone();
        let tag_at = bytes.len() - BLOCK + 40;
        t[tag_at] ^= 0x80;
        assert!(matches!(
            Envelope::parse(&t).unwrap().decrypt(&K),
            Err(EnvelopeError::AuthenticationFailed)
        ));
        let hash_at = env.attribute(ATTR_KEY_HASH).unwrap().value_offset;
        let mut t = bytes.clone();
        t[hash_at] ^= 1;
        let e = Envelope::parse(&t).unwrap().decrypt(&K).unwrap_err();
        assert_eq!(
            e.to_string(),
            "wrong key: this envelope was sealed with another key"
        );
    }

    #[test]
    fn layout_errors_carry_offsets() {
        let bytes = Envelope::build_new("id", &K, &sample(10), IV).unwrap();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            f(&mut b);
            Envelope::parse(&b).unwrap_err()
        };
        assert!(matches!(
            with(&|b| b[0] = b'X'),
            EnvelopeError::NotEnvelope { .. }
        ));
        assert!(matches!(
            with(&|b| b.truncate(300)),
            EnvelopeError::Truncated { need: 512, .. }
        ));
        assert!(matches!(
            with(&|b| b[504] = 1),
            EnvelopeError::BadHeaderLength { value: 3585 }
        ));
        assert!(matches!(
            with(&|b| b[508] = 3),
            EnvelopeError::UnsupportedVersion { offset: 508, .. }
        ));
        assert!(matches!(
            with(&|b| b.truncate(2 * BLOCK)),
            EnvelopeError::Truncated { .. }
        ));
        assert!(matches!(
            with(&|b| b.truncate(b.len() - 1)),
            EnvelopeError::BadBodyLength { .. }
        ));
        assert!(matches!(
            with(&|b| b[512] = 0x0D),
            EnvelopeError::UnknownAttributeType {
                offset: 512,
                kind: 0x0D
            }
        ));
        let e = with(&|b| b[512] = 0x0D);
        assert_eq!(
            e.to_string(),
            "local.tgz.ve: unknown attribute type 0x0d at byte 512"
        );
        // Changing the first attribute's type to 0 ends the list before any attribute.
        assert!(matches!(
            with(&|b| b[512] = 0),
            EnvelopeError::MissingAttribute {
                name: ATTR_CIPHER_NAME
            }
        ));
        let cipher_at = Envelope::parse(&bytes)
            .unwrap()
            .attribute(ATTR_CIPHER_NAME)
            .unwrap()
            .value_offset;
        assert!(matches!(
            with(&|b| b[cipher_at + 4] = b'1'),
            EnvelopeError::WrongCipher { found } if found == "AES-156-GCM"
        ));
        // A header whose attribute list runs off its end.
        assert!(matches!(
            with(&|b| b[512..BLOCK].fill(1)),
            EnvelopeError::Truncated { .. }
        ));
        let footer = bytes.len() - BLOCK;
        assert!(matches!(
            with(&|b| b[footer] = b'x'),
            EnvelopeError::BadAeadFooter { offset, .. } if offset == footer
        ));
        assert!(matches!(
            with(&|b| b[footer + BLOCK - 8] = 12),
            EnvelopeError::BadAeadFooter { .. }
        ));
        assert!(matches!(
            with(&|b| b[footer + BLOCK - 4] = 2),
            EnvelopeError::UnsupportedVersion {
                what: "AEAD footer",
                ..
            }
        ));
    }

    #[test]
    fn bad_crypto_footer_is_reported_after_decryption() {
        let mut footer = new_crypto_footer();
        footer[BLOCK - 512] = b'x';
        let bytes = assemble(
            build_header(
                [
                    (
                        ATTR_STRING,
                        0,
                        ATTR_CIPHER_NAME,
                        string_value(CIPHER_NAME.as_bytes()).as_slice(),
                    ),
                    (
                        ATTR_BYTES,
                        0,
                        ATTR_KEY_HASH,
                        bytes_value(&key_hash(CIPHER_NAME.as_bytes(), &K)).as_slice(),
                    ),
                    (ATTR_BYTES, 0, ATTR_IV, bytes_value(&IV).as_slice()),
                ]
                .into_iter(),
            )
            .unwrap(),
            &footer,
            &new_aead_footer(),
            &IV,
            b"abc",
            &K,
        )
        .unwrap();
        let e = Envelope::parse(&bytes).unwrap().decrypt(&K).unwrap_err();
        assert!(
            matches!(e, EnvelopeError::BadCryptoFooter { offset, .. } if offset == 3 * BLOCK - 512),
            "{e}"
        );
    }
}
