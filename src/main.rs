//! The `bootbank` command: thin argument parsing over the library.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// See and repair a VMware ESXi boot disk offline.
///
/// bootbank reads a disk image, a block device, a bootbank partition, a state.tgz or a
/// configBundle-*.tgz without mounting anything, predicts which bank the host boots next by the
/// bootloader's own rules, and shows the configuration that bank will load.
///
/// Exit codes: 0 the target was read (findings or not), 2 unusable input or usage error.
#[derive(Parser)]
#[command(name = "bootbank", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the host will boot next, with which configuration, and what will go wrong.
    ///
    /// TARGET is detected by content: a raw disk image or block device (opened read-only), a
    /// partition image holding one bootbank, a state.tgz, a configBundle-*.tgz, or a directory
    /// holding a mounted or copied bootbank. Nothing is ever written.
    ///
    /// Examples:
    ///   bootbank inspect /dev/sdb
    ///   bootbank inspect examples/demo.img
    ///   bootbank inspect --json configBundle-esx01.tgz | jq '.findings'
    ///   bootbank inspect /dev/sdb --sysfs /sys      (name the PCI cards ESXi's addresses point at)
    #[command(verbatim_doc_comment)]
    Inspect {
        /// Disk image, block device, partition image, state.tgz, config bundle or directory.
        target: PathBuf,
        /// Print the documented JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// Enrich PCI devices from this sysfs tree (default: /sys when TARGET is a block device
        /// of this machine). Use a captured copy to look at another machine's hardware.
        #[arg(long, value_name = "PATH")]
        sysfs: Option<PathBuf>,
        /// Name of the inspected disk in the sysfs tree (e.g. sda), to mark it among the disks
        /// behind each device. Found automatically for block devices.
        #[arg(long, value_name = "NAME", requires = "sysfs")]
        disk: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect {
            target,
            json,
            sysfs,
            disk,
        } => {
            let opts = bootbank::inspect::Options {
                sysfs,
                disk_name: disk,
            };
            match bootbank::inspect::inspect(&target, &opts) {
                Ok(report) => {
                    if json {
                        cli::print_json(&report);
                    } else {
                        cli::human::print_report(&report);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bootbank: error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
