//! Configurations for the unit tests, in the layout ESXi writes (a state.tgz whose one member is
//! local.tgz), built with the archive layer's test tars.

use crate::esxi::config::Config;
use crate::format::archive::testutil::{gz, tar_of};

/// A gzip'd ustar archive of these files, in this order.
pub(super) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    gz(&tar_of(files))
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
