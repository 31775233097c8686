//! The `bootbank` command: thin argument parsing over the library.

mod cli;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// See and repair a VMware ESXi boot disk offline.
///
/// bootbank reads a disk image, a block device, a bootbank partition, a state.tgz or a
/// configBundle-*.tgz without mounting anything, predicts which bank the host boots next by the
/// bootloader's own rules, shows the configuration that bank will load, and repairs it safely.
///
/// Exit codes: 0 done (findings or not); 1 a write failed (the message says what is in place);
/// 2 unusable input, usage error or refusal, nothing written; 3 declined at the prompt, nothing
/// written. `config get` exits 1 when the key is missing.
#[derive(Parser)]
#[command(name = "bootbank", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour severities in the human output: auto (on a terminal, unless NO_COLOR is set and
    /// non-empty), always, never. JSON is never coloured.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    color: cli::style::ColorChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the host will boot next, with which configuration, and what will go wrong.
    ///
    /// TARGET is detected by content: a raw disk image or block device (opened read-only), a
    /// VMDK descriptor with flat extents (nested ESXi), a partition image holding one bootbank,
    /// a state.tgz, a configBundle-*.tgz, or a directory holding a mounted or copied bootbank.
    /// Nothing is ever written. Sparse VMDK and qcow2 must be converted first (the error says
    /// how).
    ///
    /// Examples:
    ///   bootbank inspect /dev/sdb
    ///   bootbank inspect examples/demo.img
    ///   bootbank inspect --json configBundle-esx01.tgz | jq '.findings'
    ///   bootbank inspect disk.img --sysfs captured-sys --disk sda
    #[command(verbatim_doc_comment)]
    Inspect(cli::inspect::InspectArgs),
    /// Check one or many targets against the rules that cripple or endanger a host.
    ///
    /// Everything inspect finds, plus: devices in passthrough that hold the inspected or a
    /// mounted disk (with sysfs), PCI bridges in passthrough, passthru.map entries that make
    /// storage or USB controllers passthrough-capable, banks that disagree on passthrough, and
    /// what a rollback would bring back. Rule ids are stable; README lists them.
    ///
    /// Exit codes: 0 no critical finding; 1 a critical finding; 2 a target could not be read.
    ///
    /// Examples:
    ///   bootbank lint /dev/sdb
    ///   bootbank lint --json bundles/*.tgz | jq -c 'select(.findings[].severity == "critical")'
    #[command(verbatim_doc_comment)]
    Lint(cli::lint::LintArgs),
    /// Lint many config bundles, state archives or disk images in parallel and sum up.
    ///
    /// Directories are searched recursively. An input that cannot be read is reported with its
    /// reason and skipped; the audit goes on. Exit codes: 0 no critical finding anywhere; 1 some
    /// input has a critical finding (unreadable inputs are listed in the summary).
    ///
    /// Examples:
    ///   bootbank audit /srv/config-bundles
    ///   bootbank audit --json /srv/config-bundles > audit.jsonl
    #[command(verbatim_doc_comment)]
    Audit(cli::audit::AuditArgs),
    /// Give devices set to passthrough back to the vmkernel, offline and safely.
    ///
    /// Sets /device/<addr>/owner from "passthru" to "vmkernel" in esx.conf of the bank that
    /// boots next (and with --both-banks or --bank N in other banks too, so that a rollback with
    /// Shift+R does not bring the mistake back). Only existing owner lines are changed.
    ///
    /// ADDR may be written as in esx.conf (decimal, e.g. 000:022:00.0) or as lspci/esxcli show
    /// it (hex, e.g. 0000:16:00.0 or 16:00.0); an address written exactly as an esx.conf key is
    /// read as ESXi's decimal form, anything else as lspci hex. Prefix esx: or pci: to force one
    /// reading. The plan always shows both forms.
    ///
    /// Before writing: the plan and a diff are shown, every file about to change is copied to a
    /// backup directory, and (on a terminal) you are asked. The new state.tgz is written into
    /// free clusters, read back and verified, then its directory entry is switched to it with
    /// one sector write, so that a power cut at any instant leaves the complete old or new
    /// configuration. Leftovers of an interrupted write are reclaimed first. Undo with
    /// `bootbank restore TARGET --from DIR`.
    ///
    /// Examples:
    ///   bootbank fix /dev/sdb --all-storage --dry-run
    ///   bootbank fix /dev/sdb --device 0000:16:00.0 --both-banks
    ///   bootbank fix state.tgz --device 000:022:00.0 --output fixed-state.tgz --yes
    #[command(verbatim_doc_comment)]
    Fix(cli::fix::FixArgs),
    /// Set a local account's password (root by default) offline, when it is forgotten.
    ///
    /// Reads the new password twice from the terminal without echo (or once from standard
    /// input with --password-stdin), hashes it as ESXi does (SHA-512 crypt, $6$, 5000 rounds,
    /// fresh random salt) and replaces only that user's hash in etc/shadow inside local.tgz,
    /// and in the ConfigStore's esx/authentication/user_accounts record where the host has one
    /// holding a hash (7.0 and later). No hash is ever printed. Encrypted (mode NONE)
    /// configurations are sealed again with the same key; a TPM-sealed one is refused with
    /// what still works on the host. Same plan, dry run, backup and safe write as `fix`.
    ///
    /// Examples:
    ///   bootbank passwd /dev/sdb --dry-run
    ///   bootbank passwd /dev/sdb --both-banks
    ///   printf '%s\n' "$NEWPW" | bootbank passwd disk.img --password-stdin --yes
    #[command(verbatim_doc_comment)]
    Passwd(cli::passwd::PasswdArgs),
    /// Show the management network as ESXi will bring it up, or change it offline.
    ///
    /// Shows every vmknic (address, mask, gateway, DHCP, port group, VLAN, vSwitch, uplinks),
    /// the physical NICs with their MACs and PCI addresses, and which vmknic carries
    /// management, read from the store the build obeys (ConfigStore on 7.0U2 and later,
    /// esx.conf before). With --sysfs (or on the machine itself) the uplinks' MACs are matched
    /// with the NICs present: a management vSwitch whose NICs are all gone (a swapped card) is
    /// a critical finding (exit 1). --ip/--gateway, --dhcp and --vlan change the ConfigStore
    /// (7.0U2+) with the same plan, dry run, backup and safe write as `fix`; esx.conf builds are
    /// shown, not changed.
    ///
    /// Examples:
    ///   bootbank network /dev/sdb
    ///   bootbank network disk.img --sysfs /sys --json
    ///   bootbank network /dev/sdb --vmk vmk0 --ip 192.168.1.20/24 --gateway 192.168.1.1 --dry-run
    ///   bootbank network /dev/sdb --vmk vmk0 --vlan 20 --both-banks
    #[command(verbatim_doc_comment)]
    Network(cli::network::NetworkArgs),
    /// Show the lockdown mode a host boots with; --disable leaves it offline (7.0 and later).
    ///
    /// Reads the configuration the next-boot bank (or the archive) holds: on 7.0 and later the
    /// ConfigStore's esx/authorization/lockdown_settings record through the host's own schema
    /// (mode NORMAL or STRICT; no record, or no mode in it, means not locked down), its
    /// exception users, and the DCUI access list (esx/authorization/dcui_access). Before 7.0
    /// it says plainly that it cannot tell, and --disable is refused. --disable takes `mode`
    /// out of the record with SQLite's own UPDATE; same plan, dry run, backup and safe write as
    /// `fix`; a TPM-sealed configuration is refused.
    ///
    /// Examples:
    ///   bootbank lockdown /dev/sdb
    ///   bootbank lockdown /dev/sdb --disable --dry-run
    ///   bootbank lockdown disk.img --disable --both-banks --yes
    #[command(verbatim_doc_comment)]
    Lockdown(cli::lockdown::LockdownArgs),
    /// Which bank boots next, and changing it: status, rollback (Shift+R offline), select N.
    ///
    /// Examples:
    ///   bootbank bank status /dev/sdb
    ///   bootbank bank rollback /dev/sdb --dry-run
    ///   bootbank bank select /dev/sdb 6 --yes
    #[command(subcommand, verbatim_doc_comment)]
    Bank(cli::bank::BankCommand),
    /// Read or change any esx.conf key through the same safe write path as `fix`.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Put back the files a `fix`, `config set|unset` or `bank rollback|select` backed up.
    ///
    /// Checks that the backup matches its manifest and that the target still holds what
    /// bootbank wrote (--force to override), then writes through the safe path, keeping a backup
    /// of what it replaces.
    ///
    /// Example:
    ///   bootbank restore /dev/sdb --from bootbank-backup-20261125T220000Z
    #[command(verbatim_doc_comment)]
    Restore(cli::restore::RestoreArgs),
    /// Put a missing or corrupt state.tgz back, from the other bank or a configuration bundle.
    ///
    /// The bank that boots next gets the state.tgz of bank N (--from-bank N) or of a
    /// configBundle-<host>.tgz (--from BUNDLE, as `vim-cmd hostsvc/firmware/backup_config` or
    /// PowerCLI `Get-VMHostFirmware -BackupConfiguration` make it), byte for byte. A bundle's
    /// RELEASELEVEL must match the bank's boot.cfg build and its UUID the host's /system/uuid
    /// (read from whichever configuration on the disk is readable), as ESXi's own restore
    /// requires; --force takes a mismatched bundle anyway. The plan shows the checks, the
    /// members that differ and the esx.conf diff; the current file, even a corrupt one, is
    /// backed up first. A missing state.tgz is created crash-safely (the chain first, then the
    /// directory entry in one sector write), an existing one replaced by the atomic switch.
    ///
    /// Exit codes: 0 written, nothing to do, or dry run; 1 a write failed (the bank holds what
    /// it held, no file or the old one, or the complete new one, never a mix); 2 refused or
    /// bad input, nothing written; 3 the question was declined.
    ///
    /// Examples:
    ///   bootbank restore-config /dev/sdb --from-bank 6 --dry-run
    ///   bootbank restore-config /dev/sdb --from configBundle-esx01.tgz
    ///   bootbank restore-config disk.img --from configBundle-old.tgz --force --yes --json
    #[command(verbatim_doc_comment)]
    RestoreConfig(cli::restore_config::RestoreConfigArgs),
    /// Unpack the configuration files of the bank that boots next into a directory, for reading.
    ///
    /// DIR/state/ gets the members of state.tgz, DIR/local/ those of local.tgz (decrypted when
    /// the configuration is encrypted with a key derivable offline; a TPM-sealed one is
    /// refused). Every member is checked before anything is written: absolute names, `..`,
    /// links pointing outside their directory, device and fifo members refuse the whole
    /// extraction. DIR must be empty or missing unless --force; a symlink already in DIR is
    /// never followed.
    ///
    /// Examples:
    ///   bootbank extract /dev/sdb --to esx01-config
    ///   bootbank extract configBundle-esx01.tgz --to esx01-config --json
    #[command(verbatim_doc_comment)]
    Extract(cli::extract::ExtractArgs),
    /// On a rescue system: find every ESXi boot disk, say what is wrong and fix it.
    ///
    /// Lists every ESXi boot disk of this machine with its verdict (as inspect and lint give
    /// it) and the controller it hangs behind, named from sysfs and pci.ids, and says in plain
    /// words when a device set to passthrough is the controller of the very disk ESXi boots
    /// from. Then: choose a disk (or the only one), see the plan and the diff, answer [y/N],
    /// and get the verdict after the fix and what to do next. Every valid bank is changed, so
    /// that a rollback does not bring the mistake back. --auto-fix does it for every disk
    /// without asking. Backups go to RAM (/run) unless --backup-dir names a place; the dialog
    /// says where.
    ///
    /// Exit codes: 0 done or nothing to fix; 1 a write failed; 2 no ESXi disk found, a refusal,
    /// or no terminal to ask on; 3 declined.
    ///
    /// Examples:
    ///   bootbank rescue
    ///   bootbank rescue /dev/sda --dry-run
    ///   bootbank rescue --auto-fix --backup-dir /mnt/usb
    ///   bootbank rescue --console /dev/tty1 --console /dev/ttyS0
    #[command(verbatim_doc_comment)]
    Rescue(cli::rescue::RescueArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Examples:
    ///   bootbank completions bash > /etc/bash_completion.d/bootbank
    ///   bootbank completions zsh > "${fpath[1]}/_bootbank"
    ///   bootbank completions fish > ~/.config/fish/completions/bootbank.fish
    #[command(verbatim_doc_comment)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory.
    ///
    /// Examples:
    ///   bootbank man | man -l -
    ///   bootbank man --out-dir /usr/local/share/man/man1
    #[command(verbatim_doc_comment)]
    Man {
        /// Write bootbank.1 and bootbank-<command>.1 here instead of printing bootbank.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a key's value from the configuration of the bank that boots next (exit 1 if the
    /// key is missing).
    ///
    /// Example:
    ///   bootbank config get /dev/sdb /adv/Misc/HostName
    #[command(verbatim_doc_comment)]
    Get(cli::fix::GetArgs),
    /// Change an existing key (add --create to add a missing one).
    ///
    /// Only existing keys are changed unless --create is given: lines that ESXi did not write
    /// itself have been reported not to work, and a typo would otherwise add a key silently.
    ///
    /// Example:
    ///   bootbank config set /dev/sdb /adv/Misc/HostName esx02 --dry-run
    #[command(verbatim_doc_comment)]
    Set(SetArgs),
    /// Remove every line of a key.
    Unset(UnsetArgs),
}

#[derive(Args)]
struct SetArgs {
    /// Disk image, block device, bootbank partition, state.tgz or config bundle.
    target: PathBuf,
    /// esx.conf key, e.g. /adv/Misc/HostName.
    key: String,
    /// New value (no quotes, backslashes or line breaks).
    value: String,
    /// Add the key when it does not exist.
    #[arg(long)]
    create: bool,
    #[command(flatten)]
    write: cli::fix::WriteArgs,
}

#[derive(Args)]
struct UnsetArgs {
    target: PathBuf,
    key: String,
    #[command(flatten)]
    write: cli::fix::WriteArgs,
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    cli::style::init(cli.color);
    match cli.command {
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Lint(a) => cli::lint::run(a),
        Command::Audit(a) => cli::audit::run(a),
        Command::Fix(a) => cli::fix::run_fix(a),
        Command::Passwd(a) => cli::passwd::run(a),
        Command::Network(a) => cli::network::run(a),
        Command::Lockdown(a) => cli::lockdown::run(a),
        Command::Restore(a) => cli::restore::run_restore(a),
        Command::RestoreConfig(a) => cli::restore_config::run(a),
        Command::Extract(a) => cli::extract::run(a),
        Command::Rescue(a) => cli::rescue::run(a),
        Command::Completions { shell } => cli::generate::completions(Cli::command(), shell),
        Command::Man { out_dir } => cli::generate::man(Cli::command(), out_dir.as_deref()),
        Command::Bank(c) => cli::bank::run(c),
        Command::Config(ConfigCommand::Get(a)) => cli::fix::run_get(a),
        Command::Config(ConfigCommand::Set(a)) => cli::fix::run_edit(
            a.target,
            vec![bootbank::Edit::Set {
                key: a.key,
                value: a.value,
                create: a.create,
            }],
            a.write,
        ),
        Command::Config(ConfigCommand::Unset(a)) => cli::fix::run_edit(
            a.target,
            vec![bootbank::Edit::Unset { key: a.key }],
            a.write,
        ),
    }
}

/// Asks glibc's malloc to keep freed memory for reuse instead of returning every large block to
/// the kernel: bootbank allocates and frees megabyte buffers several times per run (decoding,
/// checking, re-encoding), and on a fresh mapping each 4 KiB page costs a fault again. Memory use
/// stays bounded by the largest moment, as before.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
