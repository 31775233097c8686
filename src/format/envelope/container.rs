//! The `local.tgz.ve` container: header block(s) and attributes, AES-256-GCM ciphertext and
//! footers; parsed, decrypted, sealed anew and verified.

use super::{
    AAD_SUFFIX, AEAD_FOOTER_MAGIC, AEAD_FOOTER_VERSION, ATTR_BYTES, ATTR_CIPHER_NAME, ATTR_IV,
    ATTR_KEY_HASH, ATTR_KEY_INFO, ATTR_STRING, ATTRS_START, BLOCK, CIPHER_NAME,
    CRYPTO_FOOTER_MAGIC, ENVELOPE_MAGIC, EnvelopeError, HEADER_VERSION, IV_LEN, IV_PREFIX,
    NEW_CRYPTO_FOOTER_VERSION, TAG_LEN, key_hash,
};
use aes_gcm::Key;
use aes_gcm::aead::Nonce;
use aes_gcm::aead::Tag;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};

/// A fresh IV as ESXi writes it: `WMV_` followed by 8 bytes from the operating system's random
/// source. GCM must never reuse a (key, IV) pair and the key of a host never changes, so every
/// sealing needs a new one.
pub fn fresh_iv() -> Result<[u8; 12], EnvelopeError> {
    let mut iv = [0u8; IV_LEN];
    iv[..4].copy_from_slice(IV_PREFIX);
    getrandom::fill(&mut iv[4..]).map_err(|e| EnvelopeError::Random(e.to_string()))?;
    Ok(iv)
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
pub(super) fn fixed_size(kind: u8) -> Option<usize> {
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

pub(super) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

pub(super) fn need(
    what: &'static str,
    b: &[u8],
    offset: usize,
    n: usize,
) -> Result<(), EnvelopeError> {
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
    pub(super) fn open(&self, key: &[u8; 32]) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError> {
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

pub(super) fn string_value(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

pub(super) fn bytes_value(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A header of as many blocks as the attributes need (one for the standard set): magic, zeros,
/// length and version at 504, attributes from 512 (each: type, flag, u16 0, name NUL, framed
/// value), a four-byte zero terminator, zeros to the block end.
pub(super) fn build_header<'a>(
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

pub(super) fn new_crypto_footer() -> Vec<u8> {
    let mut f = vec![0u8; BLOCK];
    f[BLOCK - 512..BLOCK - 512 + CRYPTO_FOOTER_MAGIC.len()].copy_from_slice(CRYPTO_FOOTER_MAGIC);
    f[BLOCK - 4..].copy_from_slice(&NEW_CRYPTO_FOOTER_VERSION.to_le_bytes());
    f
}

pub(super) fn new_aead_footer() -> Vec<u8> {
    let mut f = vec![0u8; BLOCK];
    f[..AEAD_FOOTER_MAGIC.len()].copy_from_slice(AEAD_FOOTER_MAGIC);
    f[BLOCK - 8..BLOCK - 4].copy_from_slice(&(TAG_LEN as u32).to_le_bytes());
    f[BLOCK - 4..].copy_from_slice(&AEAD_FOOTER_VERSION.to_le_bytes());
    f
}

/// header || AES-256-GCM(plaintext || zero padding || crypto footer with the padding length)
/// || AEAD footer with the tag. The footers are templates: only the padding length and the tag
/// are written into them.
pub(super) fn assemble(
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
