//! `inspect` on an arbitrary file: disk image, partition image or archive, detected by content.
//! Errors are fine; a panic, a hang or a runaway allocation is a bug.
#![no_main]

use bootbank::inspect::{self, Options};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("bootbank-fuzz-inspect-{}.img", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch image");
    if let Ok(report) = inspect::inspect(path, &Options::default()) {
        // The JSON contract must serialise whatever was read.
        serde_json::to_string(&report).expect("report serialises");
    }
});
