//! `bootbank completions SHELL` and `bootbank man`: generated from the same clap definition that
//! parses the arguments, so they cannot drift from the real options.

use clap::Command;
use clap_complete::Shell;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: Command, shell: Shell) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "bootbank", &mut out);
    write_stdout(&out)
}

/// Writes the main page to stdout, or with `dir` one page per command (bootbank.1,
/// bootbank-inspect.1, ...) into that directory.
pub fn man(cmd: Command, dir: Option<&Path>) -> ExitCode {
    match dir {
        Some(dir) => {
            if let Err(e) =
                std::fs::create_dir_all(dir).and_then(|_| clap_mangen::generate_to(cmd, dir))
            {
                return super::fail(&format!("man: cannot write into {}: {e}", dir.display()), 1);
            }
            ExitCode::SUCCESS
        }
        None => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                return super::fail(&format!("man: cannot render the page: {e}"), 1);
            }
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(bytes);
    ExitCode::SUCCESS
}
