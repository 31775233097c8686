//! What ships around the binary: shell completions and manual pages generated from the CLI
//! definition, and `--color` / `NO_COLOR`.
//!
//! - the bash script passes `bash -n`, and loaded into bash, completing `bootbank <TAB>` offers
//!   every subcommand `bootbank help` lists, and `bootbank extract --<TAB>` its options;
//! - zsh and fish scripts name every subcommand;
//! - every page `bootbank man --out-dir` writes, and the page `bootbank man` prints, renders with
//!   groff (`-ww`: all warnings) and with `man -l` without a single warning.

use crate::common;

use crate::common::{TempDir, bootbank, bootbank_ok, cmd, output_text, p, run};
use std::fs;
use std::path::Path;

/// Subcommand names from `bootbank help` (the "Commands:" block), without `help` itself.
fn subcommands(dir: &Path) -> Vec<String> {
    let help = bootbank_ok(dir, &["help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n != "help")
        .collect();
    assert!(names.len() >= 7, "{help}");
    names
}

/// Loads the bash completion script and asks it to complete `words` (the last one is the word
/// being completed); returns the candidates.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n_bootbank bootbank '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = run(cmd("bash").arg("-c").arg(program));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_every_subcommand() {
    if !common::require_tools(&["bash"]) {
        return;
    }
    let t = TempDir::new("pack-bash");
    let script = t.join("bootbank.bash");
    fs::write(&script, bootbank_ok(t.path(), &["completions", "bash"])).unwrap();
    run(cmd("bash").arg("-n").arg(&script));
    let offered = bash_complete(&script, &["bootbank", ""]);
    for sub in subcommands(t.path()) {
        assert!(offered.contains(&sub), "`{sub}` not offered: {offered:?}");
    }
    let opts = bash_complete(&script, &["bootbank", "extract", "--"]);
    for o in ["--to", "--force", "--json"] {
        assert!(opts.iter().any(|x| x == o), "`{o}` not offered: {opts:?}");
    }
    let opts = bash_complete(&script, &["bootbank", "inspect", "--"]);
    assert!(opts.iter().any(|x| x == "--color"), "{opts:?}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let t = TempDir::new("pack-shells");
    let subs = subcommands(t.path());
    for shell in ["zsh", "fish"] {
        let script = bootbank_ok(t.path(), &["completions", shell]);
        for sub in &subs {
            assert!(script.contains(sub.as_str()), "{shell}: no `{sub}`");
        }
    }
    let o = bootbank(t.path(), &["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
}

/// Renders a page with groff (all warnings on) and with man; both must be silent on stderr.
fn assert_renders_cleanly(page: &Path) {
    let g = cmd("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .unwrap();
    assert!(
        g.status.success() && g.stderr.is_empty(),
        "groff {}: {}",
        page.display(),
        String::from_utf8_lossy(&g.stderr)
    );
    let m = cmd("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(
        m.status.success() && m.stderr.is_empty(),
        "man -l {}: {}",
        page.display(),
        String::from_utf8_lossy(&m.stderr)
    );
    let text = String::from_utf8_lossy(&m.stdout);
    assert!(text.contains("NAME"), "{text}");
}

#[test]
fn man_pages_render_without_warnings() {
    if !common::require_tools(&["groff", "man"]) {
        return;
    }
    let t = TempDir::new("pack-man");
    let page = t.join("bootbank.1");
    fs::write(&page, bootbank_ok(t.path(), &["man"])).unwrap();
    assert_renders_cleanly(&page);
    let text = run(cmd("man").arg("-l").arg(&page).env("MANPAGER", "cat")).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("Exit codes"), "{text}");
    for sub in subcommands(t.path()) {
        assert!(
            text.contains(&format!("bootbank-{sub}(1)")),
            "no {sub}: {text}"
        );
    }

    let dir = t.join("man1");
    bootbank_ok(t.path(), &["man", "--out-dir", p(&dir)]);
    let mut pages: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for sub in subcommands(t.path()) {
        assert!(
            pages.contains(&format!("bootbank-{sub}.1")),
            "no page for {sub}: {pages:?}"
        );
    }
    for name in &pages {
        assert_renders_cleanly(&dir.join(name));
    }
    // a page of a subcommand carries its examples
    let extract = fs::read_to_string(dir.join("bootbank-extract.1")).unwrap();
    assert!(extract.contains("\\-\\-to"), "{extract}");
    assert!(extract.contains("bootbank extract /dev/sdb"), "{extract}");
}

// ---------------------------------------------------------------------------------------------
// --color and NO_COLOR

fn demo_image() -> std::path::PathBuf {
    common::manifest_dir().join("examples").join("demo.img")
}

const ESC: &str = "\x1b[";

/// Runs bootbank with `args` and extra environment, stdout to a pipe.
fn piped(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = std::process::Command::new(common::BIN);
    c.args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs bootbank on a pseudo-terminal (util-linux `script`), where `auto` colours.
fn on_terminal(dir: &Path, args: &[&str], no_color: Option<&str>) -> String {
    let line = std::iter::once(common::BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = cmd("script");
    c.args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null());
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{line}: {}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn color_always_auto_never_and_no_color() {
    let t = TempDir::new("pack-color");
    let demo = demo_image();
    let d = p(&demo);

    // always: the critical severity in red, in the verdict and in the findings
    let out = piped(t.path(), &["inspect", d, "--color", "always"], &[]);
    assert!(out.contains("  \x1b[31m! storage adapter vmhba2"), "{out}");
    assert!(out.contains("\x1b[31mcritical"), "{out}");
    // even with NO_COLOR, always wins; the global flag may come before the subcommand
    let out = piped(
        t.path(),
        &["--color", "always", "inspect", d],
        &[("NO_COLOR", "1")],
    );
    assert!(out.contains(ESC), "{out}");
    // fix's plan: a note in yellow
    let out = piped(
        t.path(),
        &[
            "fix",
            d,
            "--device",
            "0000:02:00.0",
            "--dry-run",
            "--color",
            "always",
        ],
        &[],
    );
    assert!(out.contains("\x1b[33mnote: 0000:02:00.0"), "{out}");

    // default and auto into a pipe, never, and JSON even with always: no escapes
    for args in [
        vec!["inspect", d],
        vec!["inspect", d, "--color", "auto"],
        vec!["inspect", d, "--color", "never"],
        vec!["inspect", d, "--json", "--color", "always"],
        vec![
            "fix",
            d,
            "--device",
            "0000:02:00.0",
            "--dry-run",
            "--json",
            "--color",
            "always",
        ],
    ] {
        let out = piped(t.path(), &args, &[]);
        assert!(!out.contains(ESC), "{args:?}: {out}");
        assert!(!out.is_empty());
    }

    if !common::require_tool("script") {
        return;
    }
    // on a terminal, auto colours unless NO_COLOR is set and non-empty
    let out = on_terminal(t.path(), &["inspect", d], None);
    assert!(out.contains("\x1b[31m"), "{out}");
    let out = on_terminal(t.path(), &["inspect", d, "--color", "auto"], Some(""));
    assert!(out.contains("\x1b[31m"), "{out}");
    let out = on_terminal(t.path(), &["inspect", d, "--color", "auto"], Some("1"));
    assert!(!out.contains(ESC), "{out}");
    assert!(out.contains("critical"), "{out}");
    let out = on_terminal(t.path(), &["inspect", d, "--color", "never"], None);
    assert!(!out.contains(ESC), "{out}");
}
