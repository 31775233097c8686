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
//!
//! Two jobs, a file each: [`kdf`] reads `encryption.info` and derives the key from it;
//! [`container`] parses, decrypts, seals and verifies the envelope.

pub mod container;
pub mod kdf;

pub use container::{Envelope, fresh_iv};
#[cfg(feature = "internals")]
pub use container::{Attribute, check_envelope, verify_sealed};
#[cfg(feature = "internals")]
pub use kdf::{ConfigEncData, derive_key};
pub use kdf::{DerivedKey, EncryptionInfo, key_hash};

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::container::{
        assemble, build_header, bytes_value, fixed_size, new_aead_footer, new_crypto_footer,
        string_value, u32_at,
    };
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
