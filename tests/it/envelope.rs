//! Envelopes written by bootbank (`Envelope::build_new` and `Envelope::seal`) checked against an
//! independent decryptor: PyPI's dissect.hypervisor, run through `tests/tools/oracle-decrypt` in
//! the venv made by `tests/tools/oracle-venv`. The oracle must open every envelope we write to
//! exactly the bytes we sealed, and must refuse the tampered ones we refuse.
//!
//! Without python3/pip/PyPI the oracle tests print SKIPPED and pass, except under `CI=true`,
//! where a missing oracle fails them.

use crate::common;

use crate::common::TempDir;
use bootbank::envelope::{ATTR_IV, DerivedKey, EncryptionInfo, Envelope, EnvelopeError, fresh_iv};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The reference's encryption.info (section 5), as written by a real host.
const REFERENCE_INFO: &str = ".encoding = \"UTF-8\"\nincludeKeyCache = \"FALSE\"\nmode = \"NONE\"\nConfigEncData = \"keyId=fmLOxWrvTX6Di8rjLu/SUQ%3d%3d:data1=Uz8MFZfqTbWN2jIHbFPhag%3d%3d:data2=IDcZE41aR+uxDv7Iz8zJSA%3d%3d:version=1\"\n";

/// Derived once per test binary: 100000 PBKDF2 rounds take about a second in a debug build.
fn key() -> &'static DerivedKey {
    static KEY: OnceLock<DerivedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        EncryptionInfo::parse(REFERENCE_INFO.as_bytes())
            .unwrap()
            .derive_key()
            .unwrap()
    })
}

/// The oracle's python, or None (skip) when it cannot be installed outside CI.
fn oracle() -> Option<&'static Path> {
    common::oracle_python()
}

/// What the oracle said: the plaintext, or its error message.
fn oracle_decrypt(py: &Path, envelope: &[u8]) -> Result<Vec<u8>, String> {
    let dir = TempDir::new("envelope-oracle");
    let (info, ve, out) = (
        dir.join("encryption.info"),
        dir.join("local.tgz.ve"),
        dir.join("local.tgz"),
    );
    std::fs::write(&info, REFERENCE_INFO).unwrap();
    std::fs::write(&ve, envelope).unwrap();
    let o = Command::new(py)
        .arg(common::tool("oracle-decrypt"))
        .args([&info, &ve, &out])
        .output()
        .unwrap_or_else(|e| panic!("run oracle-decrypt: {e}"));
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    // The oracle derived the key on its own: it must be ours.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let k = key();
    let hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        stdout.contains(&format!("key-id {}\n", k.key_id)),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("key {hex}\n")), "{stdout}");
    Ok(std::fs::read(&out).unwrap())
}

/// Reproducible bytes without long runs, so padding mistakes cannot hide in zeros.
fn sample(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn build(plain: &[u8]) -> Vec<u8> {
    let k = key();
    Envelope::build_new(&k.key_id, &k.key, plain, fresh_iv().unwrap()).unwrap()
}

#[test]
fn oracle_opens_new_envelopes() {
    let Some(py) = oracle() else { return };
    // Empty, one byte, exactly one block (no padding), and the reference sample's size.
    for n in [0, 1, 4096, 94293] {
        let plain = sample(n, n as u64 + 1);
        let ve = build(&plain);
        let got = oracle_decrypt(py, &ve).unwrap_or_else(|e| panic!("{n} bytes: {e}"));
        assert_eq!(got.len(), plain.len(), "{n} bytes");
        assert!(got == plain, "{n} bytes: oracle plaintext differs");
        if n == 94293 {
            assert_eq!(ve.len(), 110592);
        }
    }
}

#[test]
fn oracle_opens_resealed_envelopes() {
    let Some(py) = oracle() else { return };
    let k = key();
    let orig = build(&sample(94293, 7));
    let env = Envelope::parse(&orig).unwrap();
    let iv_at = env.attribute(ATTR_IV).unwrap().value_offset;
    // Longer (one more block) and shorter than the original.
    for n in [100_000, 5000] {
        let plain = sample(n, n as u64);
        let iv = fresh_iv().unwrap();
        let sealed = env.seal(&plain, &k.key, iv).unwrap();
        assert_eq!(sealed[..iv_at], orig[..iv_at]);
        assert_eq!(sealed[iv_at..iv_at + 12], iv);
        assert_eq!(sealed[iv_at + 12..4096], orig[iv_at + 12..4096]);
        let got = oracle_decrypt(py, &sealed).unwrap_or_else(|e| panic!("{n} bytes: {e}"));
        assert!(got == plain, "{n} bytes: oracle plaintext differs");
        // A reseal of a reseal keeps working.
        let again = Envelope::parse(&sealed)
            .unwrap()
            .seal(&orig[..10], &k.key, fresh_iv().unwrap())
            .unwrap();
        assert_eq!(oracle_decrypt(py, &again).unwrap(), &orig[..10]);
    }
}

/// Two seals of the same plaintext never share an IV, so never share a keystream.
#[test]
fn every_seal_gets_a_fresh_iv() {
    let k = key();
    let env = Envelope::parse(&build(b"x")).unwrap();
    let a = env.seal(b"same", &k.key, fresh_iv().unwrap()).unwrap();
    let b = env.seal(b"same", &k.key, fresh_iv().unwrap()).unwrap();
    let (a, b) = (Envelope::parse(&a).unwrap(), Envelope::parse(&b).unwrap());
    assert_ne!(a.iv(), b.iv());
    assert_eq!(&a.iv()[..4], b"WMV_");
    assert_ne!(a.tag(), b.tag());
}

#[test]
fn tampering_is_refused_here_and_by_the_oracle() {
    let k = key();
    let plain = sample(10_000, 3);
    let ve = build(&plain);
    let env = Envelope::parse(&ve).unwrap();
    let iv_at = env.attribute(ATTR_IV).unwrap().value_offset;
    let name_at = env.attributes()[0].offset + 6;
    // A ciphertext byte, the tag, a header padding byte (the header is associated data), an
    // attribute name, the IV.
    for at in [4096 + 5000, ve.len() - 4096 + 40, 300, name_at, iv_at + 7] {
        let mut t = ve.clone();
        t[at] ^= 0x01;
        let e = Envelope::parse(&t).unwrap().decrypt(&k.key).unwrap_err();
        assert!(
            matches!(e, EnvelopeError::AuthenticationFailed),
            "byte {at}: {e}"
        );
        // dissect.hypervisor 3.21 authenticates a header it re-serialises from the parsed
        // fields, not the stored bytes: a flipped byte in the zero area between the magic and
        // byte 504 does not reach its associated data, so it opens that envelope. Both agree on
        // every header whose unparsed bytes are zero, as ours are (the oracle opening our
        // envelopes shows it); only bootbank is asked to refuse the padding flip.
        if at == 300 {
            continue;
        }
        if let Some(py) = oracle() {
            let r = oracle_decrypt(py, &t);
            assert!(
                r.is_err(),
                "byte {at}: the oracle opened a tampered envelope"
            );
        }
    }
    if let Some(py) = oracle() {
        assert!(oracle_decrypt(py, &ve).unwrap() == plain);
    }
}
