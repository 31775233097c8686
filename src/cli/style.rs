//! Colour for the human output: severities only (critical red, warning yellow), decided once
//! per run from `--color` and the environment. JSON and error messages are never coloured.

use bootbank::findings::Severity;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is unset or empty.
    Auto,
    /// Always colour, even into a pipe or file.
    Always,
    /// Never colour.
    Never,
}

static ON: OnceLock<bool> = OnceLock::new();

/// Whether `choice` means colour here: `auto` follows <https://no-color.org> (a non-empty
/// NO_COLOR turns it off) and colours only a terminal, where the escapes are understood.
pub fn decide(choice: ColorChoice, no_color: Option<&str>, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && no_color.is_none_or(str::is_empty),
    }
}

/// Fixes the choice for this run (the first call wins).
pub fn init(choice: ColorChoice) {
    let no_color = std::env::var("NO_COLOR").ok();
    let on = decide(choice, no_color.as_deref(), std::io::stdout().is_terminal());
    let _ = ON.set(on);
}

fn on() -> bool {
    *ON.get().unwrap_or(&false)
}

/// `text` in the colour of `severity` (unchanged for info, or when colour is off).
pub fn severity(severity: Severity, text: &str) -> String {
    let code = match severity {
        Severity::Critical => "31",
        Severity::Warning => "33",
        Severity::Info => return text.to_string(),
    };
    if on() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_off_auto_only() {
        assert!(decide(ColorChoice::Auto, None, true));
        assert!(decide(ColorChoice::Auto, Some(""), true));
        assert!(!decide(ColorChoice::Auto, Some("1"), true));
        assert!(!decide(ColorChoice::Auto, None, false));
        assert!(decide(ColorChoice::Always, Some("1"), false));
        assert!(!decide(ColorChoice::Never, None, true));
    }
}
