//! Messages on stderr, in one format for every command:
//!
//! ```text
//! drvmeta: error: <what went wrong>
//! hint: <what to do>
//! drvmeta: warning: <something to know>
//! drvmeta: note: <what drvmeta did on the user's behalf>
//! drvmeta: <path>: <problem found in the input>
//! ```
//!
//! `-q` silences notes, warnings, status lines and progress (errors and
//! problems stay); `-v` adds timing lines. Prefixes are coloured on a
//! terminal only, never when `NO_COLOR` is set (non-empty), always when
//! `CLICOLOR_FORCE` is set (non-empty, not `0`).

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// The width human tables must fit: the terminal's when stdout is one,
/// else `COLUMNS` when set; `None` (no limit) for a pipe or a file.
pub fn table_width() -> Option<usize> {
    if std::io::stdout().is_terminal() {
        // SAFETY: TIOCGWINSZ fills the winsize struct given; stdout is open.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0
            && size.ws_col > 0
        {
            return Some(usize::from(size.ws_col));
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c > 0)
}

/// 0 quiet, 1 normal, 2 verbose.
static LEVEL: AtomicU8 = AtomicU8::new(1);

/// Set the verbosity from `-q` / `-v`.
pub fn init(quiet: bool, verbose: u8) {
    let level = if quiet { 0 } else { 1 + u8::from(verbose > 0) };
    LEVEL.store(level, Ordering::Relaxed);
}

fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

/// Whether `-q` was given.
pub fn quiet() -> bool {
    level() == 0
}

/// Whether stderr gets colours ([`color_for`] with this environment).
fn color() -> bool {
    static COLOR: OnceLock<bool> = OnceLock::new();
    *COLOR.get_or_init(|| {
        color_for(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("CLICOLOR_FORCE").as_deref(),
            std::io::stderr().is_terminal(),
        )
    })
}

/// The colour decision: `NO_COLOR` (non-empty) wins, then `CLICOLOR_FORCE`
/// (non-empty, not `0`), then whether stderr is a terminal.
fn color_for(
    no_color: Option<&std::ffi::OsStr>,
    force: Option<&std::ffi::OsStr>,
    terminal: bool,
) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if force.is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    terminal
}

/// `label` in bold `code` (an SGR colour) when colouring.
fn paint(label: &str, code: &str) -> String {
    if color() {
        format!("\x1b[1;{code}m{label}\x1b[0m")
    } else {
        label.to_owned()
    }
}

/// An error: the first line after `drvmeta: error:`, each later line that
/// starts with `hint: ` as a hint.
pub fn error(message: &str) {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default();
    eprintln!("drvmeta: {} {first}", paint("error:", "31"));
    for line in lines {
        match line.strip_prefix("hint: ") {
            Some(hint) => eprintln!("{} {hint}", paint("hint:", "36")),
            None => eprintln!("{line}"),
        }
    }
}

/// A warning (silenced by `-q`).
pub fn warning(message: &str) {
    if !quiet() {
        eprintln!("drvmeta: {} {message}", paint("warning:", "33"));
    }
}

/// What drvmeta did on the user's behalf (silenced by `-q`).
pub fn note(message: &str) {
    if !quiet() {
        eprintln!("drvmeta: {} {message}", paint("note:", "36"));
    }
}

/// A status line: what a command did (silenced by `-q`).
pub fn status(message: &str) {
    if !quiet() {
        eprintln!("drvmeta: {message}");
    }
}

/// A problem found in the input (never silenced: it explains the exit
/// status).
pub fn problem(message: &str) {
    eprintln!("drvmeta: {message}");
}

/// Detail for `-v`.
pub fn verbose(message: &str) {
    if level() > 1 {
        eprintln!("drvmeta: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_wins_then_force_then_the_terminal() {
        let some = |s: &'static str| Some(OsStr::new(s));
        assert!(!color_for(some("1"), some("1"), true));
        assert!(
            color_for(some(""), None, true),
            "an empty NO_COLOR is unset"
        );
        assert!(color_for(None, some("1"), false));
        assert!(!color_for(None, some("0"), false));
        assert!(!color_for(None, some(""), false));
        assert!(color_for(None, None, true));
        assert!(!color_for(None, None, false));
    }
}
