//! Terminal output that never panics, and the rule for output that was lost.

use super::exit::{fail, Code};
use std::process::ExitCode;

/// `println!` without its panic: a stdout that went away (`dkd report | head`, a server's banner
/// nobody reads) or cannot be written (a full disk) must not abort a command halfway, after its
/// store work or in a running server. The first failure is kept and [`finish`] reports it.
macro_rules! say {
    () => {
        $crate::cli::output::put(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::put(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` without its panic: a message about a failure must not become another failure
/// (stderr on a full disk).
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` likewise.
macro_rules! put {
    ($($arg:tt)*) => {
        $crate::cli::output::put(format_args!($($arg)*))
    };
}

/// Why stdout could not be written, the first time it could not.
pub(super) static STDOUT_FAILED: std::sync::OnceLock<std::io::Error> = std::sync::OnceLock::new();

pub(super) fn put(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if STDOUT_FAILED.get().is_some() {
        return;
    }
    if let Err(e) = std::io::stdout().write_fmt(text) {
        let _ = STDOUT_FAILED.set(e);
    }
}

/// What becomes of a command's exit code when its output was lost (not to a closed pipe: a
/// reader that stopped reading, as `head` does, got what it wanted).
#[derive(Clone, Copy)]
pub(super) enum Lost {
    /// A successful command fails with [`Code::Failure`], so a script that redirected the output
    /// into a file learns that the file is incomplete; a failed one keeps its own code.
    Fails,
    /// The exit code is the answer (`toets`: JA/NEE, `probe`: a Nagios state): it becomes the
    /// command's own code for "no answer" (`toets` 2, `probe` 3 UNKNOWN), whatever it was.
    Unanswered(u8),
    /// A server's banner: said on stderr; the exit code stays that of the shutdown, which a
    /// service manager would otherwise take for a failure days later.
    Said,
}

pub(super) fn finish(code: ExitCode, lost: Lost) -> ExitCode {
    let Some(e) = STDOUT_FAILED
        .get()
        .filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe)
    else {
        return code;
    };
    let msg = format!("cannot write to standard output: {e}");
    match lost {
        Lost::Fails if code == ExitCode::SUCCESS => fail(Code::Failure as u8, &msg),
        Lost::Unanswered(c) => fail(c, &msg),
        Lost::Fails | Lost::Said => {
            let _ = fail(Code::Failure as u8, &msg);
            code
        }
    }
}
