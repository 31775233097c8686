//! `bootbank extract`.

use bootbank::extract::{self, EntryKind, Options};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ExtractArgs {
    /// Disk image, block device, partition image, VMDK, state.tgz or config bundle.
    target: PathBuf,
    /// Directory to unpack into (created when missing; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Write into a directory that is not empty; files of the same name are replaced (symlinks
    /// in DIR are never followed).
    #[arg(long)]
    force: bool,
    /// List what was written as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ExtractArgs) -> ExitCode {
    let opts = Options { force: a.force };
    match extract::extract(&a.target, &a.to, &opts) {
        Ok(x) => {
            if a.json {
                super::print_json(&x);
            } else {
                println!(
                    "Extracted {} entries of {} into {}:",
                    x.entries.len(),
                    x.source,
                    x.dir
                );
                for e in &x.entries {
                    let kind = match e.kind {
                        EntryKind::File => "file",
                        EntryKind::Directory => "dir",
                        EntryKind::Symlink => "symlink",
                        EntryKind::Hardlink => "hardlink",
                    };
                    match &e.link {
                        Some(l) => {
                            println!("  {kind:<8} {} {:>9}  {} -> {l}", e.mode, e.size, e.path)
                        }
                        None => println!("  {kind:<8} {} {:>9}  {}", e.mode, e.size, e.path),
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&super::error_text(&e), if e.during_write() { 1 } else { 2 }),
    }
}
