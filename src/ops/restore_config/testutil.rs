//! Configurations for the unit tests: gzip'd tars built with the `tar` crate and flate2, the
//! layout ESXi writes (a state.tgz whose one member is local.tgz).

use crate::esxi::config::Config;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;

/// A gzip'd ustar archive of these files, in this order.
pub(super) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}

/// The state.tgz of a local.tgz holding these files, and the local.tgz itself.
pub(super) fn state_of(local: &[(&str, &[u8])]) -> (Vec<u8>, Vec<u8>) {
    let local = tar_gz(local);
    (tar_gz(&[("local.tgz", &local)]), local)
}

/// The decoded configuration of a state.tgz whose local.tgz holds these files (an esx.conf
/// among them).
pub(super) fn config_of(local: &[(&str, &[u8])]) -> Config {
    Config::from_state(&state_of(local).0, "state.tgz").unwrap()
}
