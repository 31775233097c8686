//! The archive layers: gzip, tar, state.tgz -> local.tgz -> esx.conf, encryption.info and the
//! envelope check.
//!
//! Each input is tried four ways, so that the fuzzer reaches the inner layers without having to
//! produce valid gzip streams itself:
//! 1. as the raw bytes of a state.tgz (gzip and tar parsing of arbitrary data);
//! 2. gzip'd by the target, as a state.tgz (the tar layer);
//! 3. gzip'd as local.tgz inside a well-formed state.tgz (the local.tgz tar and esx.conf);
//! 4. split at the first NUL into encryption.info and local.tgz.ve inside a well-formed
//!    7.0U2-style state.tgz.
#![no_main]

use bootbank::archive::{self, Tgz};
use bootbank::config::{self, Config};
use flate2::Crc;
use libfuzzer_sys::fuzz_target;

/// A gzip member of stored (uncompressed) deflate blocks: valid gzip, and far cheaper per run than
/// setting up a compressor (which dominated the run time under ASan).
fn gz(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let len = chunk.len() as u16;
        out.push(u8::from(chunks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn check_tgz(t: &Tgz) {
    for m in &t.members {
        assert!(m.data_offset + m.size <= t.tar.len() as u64, "{m:?}");
        assert_eq!(t.data(m).len() as u64, m.size);
        let _ = m.is_file();
    }
    let _ = t.require("local.tgz");
}

fn check_config(bytes: &[u8], label: &str) {
    if let Ok(c) = Config::from_state(bytes, label) {
        check_tgz(&c.state);
        let _ = c.local_members();
        if let Some(local) = &c.local {
            check_tgz(local);
            assert!(local.require(config::ESX_CONF).is_ok());
        }
        if let Some(conf) = &c.esx_conf {
            let _ = conf.devices();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. Raw bytes.
    if let Ok(t) = Tgz::parse(data, "state.tgz") {
        check_tgz(&t);
    }
    if let Ok(members) = archive::list_tar(data, "tar") {
        for m in members {
            assert!(m.data_offset + m.size <= data.len() as u64, "{m:?}");
        }
    }
    check_config(data, "state.tgz");
    // 2. The input as the tar of a state.tgz.
    check_config(&gz(data), "state.tgz");
    // 3. The input as the tar of local.tgz.
    let state = gz(&tar_of(&[("local.tgz", &gz(data))]));
    check_config(&state, "state.tgz");
    // 4. encryption.info NUL local.tgz.ve.
    let (info, ve) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let state = gz(&tar_of(&[("encryption.info", info), ("local.tgz.ve", ve)]));
    check_config(&state, "state.tgz");
});
