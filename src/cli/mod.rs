//! Output formatting for the command line; the library does the work.

pub mod human;

use serde::Serialize;
use std::io::Write;

/// Prints a value as pretty JSON followed by a newline. A closed pipe ends quietly.
pub fn print_json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}
