//! `bootbank bank status | rollback | select N`: argument handling, the plan shown to the user,
//! the question, and the prediction read back from the disk after the write.

use super::write::{Flags, ReadBack, Shown, execute};
use bootbank::Outcome;
use bootbank::bank::{self, BankPlan, Method, Status};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BankCommand {
    /// Show the banks and which one boots next (the same prediction as `inspect`, by the
    /// bootloader's own rules, with why in words), and which one Shift+R would boot instead.
    ///
    /// Exit codes: 0 read; 2 unusable target (not a disk or bank partition: archives and
    /// directories have no banks).
    ///
    /// Example:
    ///   bootbank bank status /dev/sdb
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
    /// Do what Shift+R at boot does, offline: the bank that boots next gets bootstate=3.
    ///
    /// The bootloader then picks the other valid bank, with its own (older) image and
    /// state.tgz. Refused when no other bank is valid ("No alternate hypervisor to roll back
    /// to"). The digit is overwritten in place inside boot.cfg, exactly as the bootloader
    /// writes it (one byte; file size and time unchanged); when boot.cfg has no bootstate line,
    /// or one that is not a single digit, boot.cfg is replaced the safe way instead (a new copy
    /// in free clusters, read back, then its directory entry switched) and the plan says so.
    ///
    /// Before writing: the plan is shown, boot.cfg is copied to a backup directory with a
    /// sha256 manifest, and (on a terminal) you are asked. After writing, the disk is read
    /// again and the new prediction printed. Undo with `bootbank restore TARGET --from DIR`
    /// or `bootbank bank select N`.
    ///
    /// Exit codes: 0 done; 1 a write failed; 2 refused or unusable, nothing written;
    /// 3 declined at the prompt.
    ///
    /// Examples:
    ///   bootbank bank rollback /dev/sdb --dry-run
    ///   bootbank bank rollback disk.img --yes
    #[command(verbatim_doc_comment)]
    Rollback(WriteArgs),
    /// Make bank N boot next, changing only bank N's boot.cfg.
    ///
    /// VMware's manual method either gives the chosen bank bootstate=0 and an updated larger
    /// than every other valid bank's, or gives the other bank bootstate=3. bootbank does the
    /// first, and only as much of it as needed: bootstate becomes 0 only when the bank's state
    /// would make the bootloader skip it (2, 3 or unknown; 0 and 1 stay), and updated becomes
    /// one above the other valid banks' largest only when the bank would not win otherwise.
    /// The other banks stay valid, so Shift+R can still go back to them (the second method is
    /// `bank rollback`, which gives that fallback up). When only the bootstate digit changes it
    /// is overwritten in place; a new updated generally changes the file's length (and the
    /// bootloader never rewrites it in place), so boot.cfg is then replaced the safe way
    /// (a new copy in free clusters, read back, then its directory entry switched in one
    /// sector write).
    ///
    /// A bank without a bootstate line gets bootstate=0 as its first line, so that the
    /// bootloader can mark it on Shift+R.
    ///
    /// Refused: N is not a bank; bank N has no usable boot.cfg, no build= line, no kernel or
    /// payloads (an empty bank), or quickboot set; another valid bank's updated is 2147483647
    /// or more (updated=-1 is read as 4294967295).
    ///
    /// Both commands write only a boot.cfg the bootloader reads as intended, else nothing
    /// (exit 2): never a space before `=`, and bootstate must stay on the first bootstate line,
    /// within the first 512 bytes, where the bootloader can update it. Neither acts when the
    /// next boot cannot be predicted from the disk alone.
    ///
    /// Exit codes as `rollback`.
    ///
    /// Examples:
    ///   bootbank bank select /dev/sdb 6 --dry-run
    ///   bootbank bank select disk.img 5 --yes --backup-dir /root/bank-backup
    #[command(verbatim_doc_comment)]
    Select(SelectArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// Disk image, block device or bootbank partition.
    target: PathBuf,
    /// Print the documented JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct WriteArgs {
    /// Disk image or block device.
    target: PathBuf,
    #[command(flatten)]
    opts: WriteFlags,
}

#[derive(Args)]
pub struct SelectArgs {
    /// Disk image or block device.
    target: PathBuf,
    /// Partition number of the bank to boot next (5 or 6 on ESXi disks).
    n: u32,
    #[command(flatten)]
    opts: WriteFlags,
}

#[derive(Args)]
pub struct WriteFlags {
    /// Show the plan; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask (for scripts). Without a terminal, writing requires --yes.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Where to copy boot.cfg before it changes (default: ./bootbank-backup-<UTC time>).
    #[arg(long, value_name = "DIR")]
    backup_dir: Option<PathBuf>,
    /// Print the plan, the outcome and the new status as JSON.
    #[arg(long)]
    json: bool,
}

impl WriteFlags {
    fn flags(&self) -> Flags {
        Flags {
            dry_run: self.dry_run,
            yes: self.yes,
            backup_dir: self.backup_dir.clone(),
            json: self.json,
        }
    }
}

pub fn run(c: BankCommand) -> ExitCode {
    match c {
        BankCommand::Status(a) => match bank::status(&a.target) {
            Ok(s) => {
                if a.json {
                    super::print_json(&s);
                } else {
                    print!("{}", render_status(&s));
                }
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(&super::error_text(&e), 2),
        },
        BankCommand::Rollback(a) => {
            execute(&a.target, &a.opts.flags(), bank::plan_rollback(&a.target))
        }
        BankCommand::Select(a) => execute(
            &a.target,
            &a.opts.flags(),
            bank::plan_select(&a.target, a.n),
        ),
    }
}

/// The status as text: the banks table, the prediction, what Shift+R would do.
pub fn render_status(s: &Status) -> String {
    let mut out = format!("{}\n\n", s.target);
    out.push_str(&super::human::render_banks(&s.banks));
    out.push_str(&super::human::render_why(&s.explanation));
    out.push_str(&match (s.will_boot, s.next_boot_partition) {
        (None, _) => format!(
            "Next boot: unknown; {}.\n",
            s.next_boot_unknown
                .as_deref()
                .unwrap_or("it cannot be predicted")
        ),
        (Some(false), _) => {
            "Next boot: none; no bank is valid, this host will not boot.\n".to_string()
        }
        (Some(true), Some(p)) => format!("Next boot: partition {p}.\n"),
        (Some(true), None) => "Next boot: this lone bank is valid.\n".to_string(),
    });
    if s.next_boot_partition.is_some() {
        let why = s.rollback_explanation.as_deref().unwrap_or("");
        out.push_str(&match s.rollback_partition {
            Some(p) => {
                format!("Shift+R (bootbank bank rollback) would boot partition {p}: {why}.\n")
            }
            None => format!("Shift+R would boot the same bank: {why}.\n"),
        });
    }
    for w in &s.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// The plan as text: why, each boot.cfg and how it is written, the keys, the next boot.
fn render_plan(plan: &BankPlan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    _ = writeln!(out, "Plan ({}) for {}:", plan.action, plan.target);
    _ = writeln!(out, "  {}", plan.explanation);
    for s in &plan.steps {
        let where_ = match s.partition {
            Some(p) => format!("partition {p}"),
            None => "this partition".to_string(),
        };
        _ = writeln!(
            out,
            "  {where_} /{} ({}):",
            s.file,
            match s.method {
                _ if s.old_bytes == s.new_bytes => "unchanged",
                Method::InPlaceDigit => "one digit in place",
                Method::ReplaceFile => "file replaced",
            }
        );
        for n in &s.notes {
            _ = writeln!(out, "    note: {n}");
        }
        for c in &s.changes {
            _ = writeln!(
                out,
                "    {}: {} -> {}",
                c.key,
                c.old.as_deref().unwrap_or("(not written)"),
                c.new
            );
        }
    }
    let show = |p: Option<u32>| p.map(|p| format!("partition {p}")).unwrap_or("none".into());
    _ = writeln!(
        out,
        "  Next boot: {} now, {} after.",
        show(plan.next_boot_partition_before),
        show(plan.next_boot_partition_after)
    );
    out
}

impl Shown for BankPlan {
    const BACKUP: &'static str = "Backup of boot.cfg";
    const READ_BACK_KEY: Option<&'static str> = Some("status");
    fn render(&self) -> String {
        render_plan(self)
    }
    fn question(&self, target: &Path) -> String {
        format!("Write this to {}?", target.display())
    }
    /// The new prediction comes from reading the disk again, not from the plan.
    fn read_back(&self, target: &Path, _: &mut Outcome, _json: bool) -> ReadBack {
        match bank::status(target) {
            Ok(s) => ReadBack {
                json: serde_json::to_value(&s).ok(),
                text: format!("\nRead back from the disk:\n{}", render_status(&s)),
                failed: None,
            },
            Err(e) => ReadBack {
                failed: Some(super::error_text(&e)),
                ..Default::default()
            },
        }
    }
}
