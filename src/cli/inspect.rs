//! `bootbank inspect`.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InspectArgs {
    /// Disk image, block device, flat VMDK, partition image, state.tgz, config bundle or directory.
    target: PathBuf,
    /// Print the documented JSON report instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hardware: SysfsArgs,
}

/// Where to look up the hardware (shared by inspect and lint).
#[derive(Args)]
pub struct SysfsArgs {
    /// Enrich PCI devices from this sysfs tree (default: /sys when TARGET is a block device of
    /// this machine). Use a captured copy to look at another machine's hardware.
    #[arg(long, value_name = "PATH")]
    sysfs: Option<PathBuf>,
    /// Name of the inspected disk in the sysfs tree (e.g. sda), to mark it among the disks
    /// behind each device. Found automatically for block devices.
    #[arg(long, value_name = "NAME", requires = "sysfs")]
    disk: Option<String>,
}

impl SysfsArgs {
    pub fn options(self) -> bootbank::inspect::Options {
        bootbank::inspect::Options {
            sysfs: self.sysfs,
            disk_name: self.disk,
            ..Default::default()
        }
    }
}

pub fn run(a: InspectArgs) -> ExitCode {
    let opts = a.hardware.options();
    match bootbank::inspect::inspect(&a.target, &opts) {
        Ok(report) => {
            if a.json {
                super::print_json(&report);
            } else {
                super::human::print_report(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&super::error_text(&e), 2),
    }
}
