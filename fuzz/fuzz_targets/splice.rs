//! The write path, differentially: a random tar of random members, gzip'd, one member edited
//! through bootbank's replace, reseal and splice, and the results must inflate (with flate2) to
//! exactly the edited tar. The property lives in `tests/it/write_path_property.rs`, which the
//! integration tests also run over fixed seeds on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/it/write_path_property.rs"]
mod property;

fuzz_target!(|data: &[u8]| {
    property::check(data);
});
