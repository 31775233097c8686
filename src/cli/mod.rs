//! Output formatting for the command line; the library does the work.

pub mod audit;
pub mod bank;
pub mod extract;
pub mod fix;
pub mod generate;
pub mod human;
pub mod inspect;
pub mod lint;
pub mod lockdown;
pub mod network;
pub mod passwd;
pub mod prompt;
pub mod rescue;
pub mod restore;
pub mod restore_config;
pub mod style;
pub mod write;

use serde::Serialize;
use std::io::Write;

/// Prints a value as pretty JSON followed by a newline, in one write (stdout is line-buffered,
/// and a report has hundreds of lines). A closed pipe ends quietly.
pub fn print_json<T: Serialize>(value: &T) {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        // Serialising our own plain data types cannot fail; say so loudly if it ever does.
        format!("{{\"error\": \"cannot serialise report: {e}\"}}")
    });
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// An error and its causes on one line, `message: cause: cause`. The library's errors put each
/// cause in `source()` rather than in their own message (so that a program printing the chain
/// sees it once); a cause whose words the message already holds is not repeated.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let words = cause.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        next = cause.source();
    }
    text
}

/// Prints a one-line error and returns the exit code.
pub fn fail(msg: &str, code: u8) -> std::process::ExitCode {
    eprintln!("bootbank: error: {msg}");
    std::process::ExitCode::from(code)
}

/// Prints what a write did: recoveries, the backup, what was written and verified. `backup`
/// says what the backup holds, e.g. "Backup of boot.cfg".
pub fn print_outcome(outcome: &bootbank::fix::Outcome, backup: &str) {
    for r in &outcome.recovered {
        println!("Recovered: {r}");
    }
    if let Some(b) = &outcome.backup_dir {
        println!("{backup}: {b}");
    }
    for wr in &outcome.written {
        println!("Written and verified: {wr}");
    }
}
