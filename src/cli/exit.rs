//! Exit codes (documented in README.md).

use std::process::ExitCode;

/// Runtime failure.
pub(super) const FAILURE: u8 = 1;
/// Command-line usage error (as clap's own).
pub(super) const USAGE: u8 = 2;
/// Invalid configuration.
pub(super) const CONFIG: u8 = 3;
/// TLS material or certificate problem.
pub(super) const TLS: u8 = 4;
/// Store cannot be opened or written.
pub(super) const STORE: u8 = 5;
/// Address cannot be bound.
pub(super) const BIND: u8 = 6;

/// Exit code of `dkd import` when rows were rejected.
pub(super) const EXIT_ROWS_REJECTED: u8 = 7;

/// `toets`'s exit code when it has no answer (0 is JA, 1 NEE).
pub(super) const TOETS_ERROR: u8 = 2;

pub(super) fn fail(code: u8, msg: &str) -> ExitCode {
    tell!("dkd: error: {msg}");
    ExitCode::from(code)
}
