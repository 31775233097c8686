//! `etc/shadow` inside local.tgz: the local accounts' password hashes, and the one change
//! `bootbank passwd` makes in it (one user's hash field).
//!
//! Evidence for the format (reference section 4; the real 7.0.2 host in `../shared/real/`):
//! - the real host's `etc/shadow` (member of its local.tgz, 178 bytes, mode 0644) has three
//!   lines of nine `:`-separated fields, LF-terminated, no comments: `root` with a `$6$` hash
//!   (8-character salt, no `rounds=` field, 86-character digest), `dcui` and `vpxuser` with `*`
//!   (no password login); then last change (days since 1970), 0, 99999, 7 and three empty fields.
//! - VMware KB 1032666 (ESXi/ESX 4.x) shows the same line shape, `$6$` meaning SHA-512, set by
//!   `passwd root` through pam_unix.
//! - The host's own ConfigStore schema of `esx/authentication/user_accounts` (7.0.2,
//!   `esx-base-7.0.2_0.0.17867351-schema`) constrains `password_hash` to
//!   `^[$][6][$][a-zA-Z0-9/.]+[$][a-zA-Z0-9/.]+[$]?`: SHA-512 crypt with no `rounds=` field,
//!   i.e. the default 5000 rounds.
//!
//! What bootbank writes: `$6$` + a 16-character salt (12 random bytes from the operating system,
//! crypt's base64) + `$` + the digest, 5000 rounds, the form of the real host's hash and of the
//! schema's pattern. 16 characters is SHA-crypt's longest salt (the real host's own hash has 8;
//! both verify with any crypt(3) that implements `$6$`). Only the hash field of the user's line
//! changes: the last-change field is left as it is, because no evidence found shows what ESXi
//! writes there when it changes a password (see the README).

use sha_crypt::{PasswordHasher, ShaCrypt};

/// Path of the shadow file inside local.tgz.
pub const SHADOW: &str = "etc/shadow";

/// Random bytes per salt: 12 bytes are 16 characters of crypt's base64, SHA-crypt's maximum.
const SALT_BYTES: usize = 12;

/// The form of ESXi's hashes: SHA-512 crypt, default rounds (no `rounds=` field).
const PREFIX: &str = "$6$";

/// Why the shadow file cannot be changed. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    #[error("{SHADOW} is not text (byte {offset} is not UTF-8)")]
    NotText { offset: usize },
    #[error("{SHADOW} has no line for user {user} (users: {users})")]
    NoUser { user: String, users: String },
    #[error(
        "{SHADOW} has {count} lines for user {user} (lines {lines}): which one ESXi reads is not known"
    )]
    Duplicate {
        user: String,
        count: usize,
        lines: String,
    },
    #[error(
        "{SHADOW} line {line} (user {user}) has {fields} fields, not the 9 of every line ESXi writes"
    )]
    Fields {
        user: String,
        line: usize,
        fields: usize,
    },
    #[error(
        "{SHADOW} line {line}: user {user}'s password field is `{shown}`: the account does not log in with a password (ESXi writes `*` for dcui and vpxuser); bootbank does not unlock accounts"
    )]
    Locked {
        user: String,
        line: usize,
        shown: String,
    },
    #[error(
        "{SHADOW} line {line}: user {user}'s password field is not a crypt hash bootbank knows ({shown}); it is not changed"
    )]
    UnknownHash {
        user: String,
        line: usize,
        shown: String,
    },
    #[error("{0}")]
    BadPassword(String),
    #[error("no random salt: {0}")]
    Random(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// What kind of password field a line has. Never carries the hash itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKind {
    /// `$6$...`: SHA-512 crypt, what ESXi writes.
    Sha512,
    /// `$5$...` or `$1$...`: SHA-256 or MD5 crypt (ESX 4.x and older wrote MD5).
    OtherCrypt,
    /// An empty field: no password.
    Empty,
}

/// One user's line of the shadow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    /// 1-based line number.
    pub line: usize,
    pub kind: HashKind,
    /// Byte span of the hash field in the file.
    span: (usize, usize),
}

/// Finds `user`'s line and checks that its password field is one bootbank may replace.
pub fn find(text: &[u8], user: &str) -> Result<Entry, ShadowError> {
    let s = std::str::from_utf8(text).map_err(|e| ShadowError::NotText {
        offset: e.valid_up_to(),
    })?;
    let mut found = Vec::new();
    let mut users = Vec::new();
    let mut at = 0;
    for (i, line) in s.split_inclusive('\n').enumerate() {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let name = body.split(':').next().unwrap_or("");
        if !name.is_empty() {
            users.push(name.to_string());
        }
        if name == user {
            found.push((i + 1, at, body));
        }
        at += line.len();
    }
    let (line, start, body) = match found.as_slice() {
        [] => {
            return Err(ShadowError::NoUser {
                user: user.to_string(),
                users: if users.is_empty() {
                    "none".into()
                } else {
                    users.join(", ")
                },
            });
        }
        [one] => *one,
        many => {
            return Err(ShadowError::Duplicate {
                user: user.to_string(),
                count: many.len(),
                lines: many
                    .iter()
                    .map(|f| f.0.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let fields: Vec<&str> = body.split(':').collect();
    if fields.len() != 9 {
        return Err(ShadowError::Fields {
            user: user.to_string(),
            line,
            fields: fields.len(),
        });
    }
    let hash = fields[1];
    let kind = if hash.is_empty() {
        HashKind::Empty
    } else if hash.starts_with('*') || hash.starts_with('!') {
        return Err(ShadowError::Locked {
            user: user.to_string(),
            line,
            // `*` and `!` alone are shown; a locked hash (`!$6$...`) is not.
            shown: if hash.len() == 1 {
                hash.to_string()
            } else {
                format!("{}<hash>", &hash[..1])
            },
        });
    } else if hash.starts_with(PREFIX) && hash.len() > PREFIX.len() {
        HashKind::Sha512
    } else if (hash.starts_with("$5$") || hash.starts_with("$1$")) && hash.len() > 3 {
        HashKind::OtherCrypt
    } else {
        return Err(ShadowError::UnknownHash {
            user: user.to_string(),
            line,
            shown: format!("{} characters", hash.len()),
        });
    };
    let hash_start = start + fields[0].len() + 1;
    Ok(Entry {
        user: user.to_string(),
        line,
        kind,
        span: (hash_start, hash_start + hash.len()),
    })
}

/// `text` with `user`'s hash field replaced by `hash`, every other byte kept.
pub fn set_hash(text: &[u8], user: &str, hash: &str) -> Result<(Vec<u8>, Entry), ShadowError> {
    if !is_esxi_hash(hash) {
        return Err(ShadowError::Hash(
            "not a $6$ hash in ESXi's form".to_string(),
        ));
    }
    let e = find(text, user)?;
    let mut out = Vec::with_capacity(text.len() + hash.len());
    out.extend_from_slice(&text[..e.span.0]);
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(&text[e.span.1..]);
    Ok((out, e))
}

/// The hash field of `user`'s line (for the tests' read-back checks; never printed).
#[cfg(feature = "internals")]
pub fn hash_of<'a>(text: &'a [u8], user: &str) -> Option<&'a str> {
    let e = find(text, user).ok()?;
    std::str::from_utf8(&text[e.span.0..e.span.1]).ok()
}

/// Checks a new password: not empty, no NUL (crypt(3) stops there), no line break (it could not
/// have been typed at ESXi's prompt).
pub fn check_password(password: &[u8]) -> Result<(), ShadowError> {
    if password.is_empty() {
        return Err(ShadowError::BadPassword(
            "the password is empty; bootbank sets no empty password".into(),
        ));
    }
    if password.contains(&0) {
        return Err(ShadowError::BadPassword(
            "the password contains a NUL byte".into(),
        ));
    }
    if password.contains(&b'\n') || password.contains(&b'\r') {
        return Err(ShadowError::BadPassword(
            "the password contains a line break".into(),
        ));
    }
    Ok(())
}

/// The SHA-512 crypt hash of `password` in ESXi's form, with a fresh random salt.
pub fn hash_password(password: &[u8]) -> Result<String, ShadowError> {
    check_password(password)?;
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| ShadowError::Random(e.to_string()))?;
    hash_with_salt(password, &salt)
}

/// [`hash_password`] with given salt bytes (encoded as crypt's base64 to form the salt text).
pub fn hash_with_salt(password: &[u8], salt: &[u8]) -> Result<String, ShadowError> {
    let mcf = ShaCrypt::SHA512
        .hash_password_with_salt(password, salt)
        .map_err(|e| ShadowError::Hash(e.to_string()))?
        .to_string();
    // sha-crypt always writes the rounds field (`$6$rounds=5000$salt$digest`). With 5000, the
    // default, the digest is the same as without the field (the rounds field is not hashed), and
    // ESXi's own hashes and its schema's pattern have no such field: drop it.
    let rest = mcf
        .strip_prefix("$6$rounds=5000$")
        .ok_or_else(|| ShadowError::Hash("unexpected form from sha-crypt".to_string()))?;
    let hash = format!("{PREFIX}{rest}");
    if !is_esxi_hash(&hash) {
        return Err(ShadowError::Hash(
            "the result is not in ESXi's form".to_string(),
        ));
    }
    Ok(hash)
}

/// `$6$` + salt (1-16 characters of crypt's alphabet) + `$` + 86 digest characters: the real
/// host's form, which also matches its schema's `password_hash` pattern.
pub fn is_esxi_hash(h: &str) -> bool {
    let alphabet = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let Some(rest) = h.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((salt, digest)) = rest.split_once('$') else {
        return false;
    };
    (1..=16).contains(&salt.len()) && alphabet(salt) && digest.len() == 86 && alphabet(digest)
}

/// The salt text of a hash in ESXi's form (tests verify the digest with outside tools).
#[cfg(feature = "internals")]
pub fn salt_of(h: &str) -> Option<&str> {
    h.strip_prefix(PREFIX)?.split_once('$').map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"root:$6$abcdefgh$0123456789012345678901234567890123456789012345678901234567890123456789012345678901:18582:0:99999:7:::\ndcui:*:13358:0:99999:7:::\nvpxuser:*:14875:0:99999:7:::\n";

    #[test]
    fn only_the_hash_field_changes() {
        let h = hash_with_salt(b"secret", b"0123456789ab").unwrap();
        let (out, e) = set_hash(SAMPLE, "root", &h).unwrap();
        assert_eq!(e.line, 1);
        assert_eq!(e.kind, HashKind::Sha512);
        let want = format!("root:{h}:18582:0:99999:7:::\n");
        assert_eq!(&out[..want.len()], want.as_bytes());
        assert_eq!(
            &out[want.len()..],
            &SAMPLE[SAMPLE.iter().position(|b| *b == b'\n').unwrap() + 1..]
        );
        assert_eq!(hash_of(&out, "root"), Some(h.as_str()));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            find(SAMPLE, "nobody"),
            Err(ShadowError::NoUser { .. })
        ));
        assert!(matches!(
            find(SAMPLE, "dcui"),
            Err(ShadowError::Locked { .. })
        ));
        let dup = [SAMPLE, b"root::1:0:99999:7:::\n"].concat();
        assert!(matches!(
            find(&dup, "root"),
            Err(ShadowError::Duplicate { count: 2, .. })
        ));
        assert!(matches!(
            find(b"root:x:1\n", "root"),
            Err(ShadowError::Fields { fields: 3, .. })
        ));
        assert!(matches!(
            find(b"root:x:1:0:99999:7:::\n", "root"),
            Err(ShadowError::UnknownHash { .. })
        ));
        assert_eq!(
            find(b"root::1:0:99999:7:::", "root").unwrap().kind,
            HashKind::Empty
        );
        assert!(check_password(b"").is_err());
        assert!(check_password(b"a\nb").is_err());
        assert!(check_password(b"a\0b").is_err());
    }

    #[test]
    fn hashes_have_esxi_form_and_fresh_salts() {
        let a = hash_password(b"pw").unwrap();
        let b = hash_password(b"pw").unwrap();
        assert!(is_esxi_hash(&a), "{}", a.len());
        assert_ne!(a, b);
        assert_eq!(salt_of(&a).unwrap().len(), 16);
        assert!(!a.contains("rounds="));
    }
}
