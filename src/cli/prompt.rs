//! The question before a write, shared by every writing command.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

pub fn ask(question: &str) -> Result<bool, ExitCode> {
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| super::fail(&format!("cannot read the answer: {e}"), 2))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The question before a write: refused without a terminal (exit 2, the user is told which flag
/// to add), declined with exit 3, nothing written either way. `Err` is the exit code to return.
pub fn confirm(question: &str) -> Result<(), ExitCode> {
    if !std::io::stdin().is_terminal() {
        return Err(super::fail(
            "not asking without a terminal: add --yes to write, or --dry-run to only look",
            2,
        ));
    }
    if ask(question)? {
        Ok(())
    } else {
        println!("Nothing written.");
        Err(ExitCode::from(3))
    }
}
