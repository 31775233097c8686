//! `bootbank passwd`: reading the new password (twice from the terminal without echo, or once
//! from standard input), then the plan, question and write of `fix`.

use clap::Args;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PasswdArgs {
    /// Disk image, block device, bootbank partition, state.tgz or config bundle.
    target: PathBuf,
    /// The account whose password is set.
    #[arg(long, value_name = "NAME", default_value = "root")]
    user: String,
    /// Read the new password once from standard input (one trailing line break is dropped);
    /// writing then needs --yes, since there is no terminal to ask on.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    write: super::fix::WriteArgs,
}

pub fn run(a: PasswdArgs) -> ExitCode {
    let password = match read_password(&a) {
        Ok(p) => p,
        Err(msg) => return super::fail(&msg, 2),
    };
    super::fix::execute(&a.target, &a.write, |o| {
        bootbank::passwd::plan(&a.target, &a.user, &password, o)
    })
}

/// The new password: from standard input, or twice from the terminal without echo.
fn read_password(a: &PasswdArgs) -> Result<Vec<u8>, String> {
    if a.password_stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        if buf.ends_with(b"\n") {
            buf.pop();
            if buf.ends_with(b"\r") {
                buf.pop();
            }
        }
        bootbank::check_password(&buf).map_err(|e| e.to_string())?;
        return Ok(buf);
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| {
            format!("no terminal to read the new password from ({e}): use --password-stdin")
        })?;
    let first = prompt(&tty, &format!("New password for {}: ", a.user))?;
    bootbank::check_password(&first).map_err(|e| e.to_string())?;
    let second = prompt(&tty, "Retype the new password: ")?;
    if first != second {
        return Err("the two passwords differ; nothing written".to_string());
    }
    Ok(first)
}

/// Asks on the terminal with echo off, restoring the terminal's settings afterwards.
fn prompt(tty: &std::fs::File, question: &str) -> Result<Vec<u8>, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let mut w = tty;
    let _ = w.write_all(question.as_bytes());
    let _ = w.flush();
    let saved = tcgetattr(tty).map_err(|e| {
        format!(
            "cannot read the terminal's settings: {}",
            std::io::Error::from(e)
        )
    })?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(tty, OptionalActions::Flush, &quiet)
        .map_err(|e| format!("cannot turn off echo: {}", std::io::Error::from(e)))?;
    let mut line = Vec::new();
    let read = std::io::BufReader::new(tty).read_until(b'\n', &mut line);
    let _ = tcsetattr(tty, OptionalActions::Flush, &saved);
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    if line.ends_with(b"\n") {
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    Ok(line)
}
