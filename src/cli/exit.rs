//! Exit codes (README.md, "Exit codes") and the one place where a failure becomes one: a command
//! returns [`Outcome`]; its `Ok` is the command's own answer (`toets`' JA/NEE, `import`'s rejected
//! rows, a probe's Nagios state), its `Err` a [`Failure`] that [`Failure::code`] maps.

use crate::app::StartError;
use crate::config::ConfigError;
use crate::control::ControlError;
use crate::import::ImportError;
use crate::store::StoreError;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit codes every command shares, as README.md documents them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success.
    Success = 0,
    /// Runtime failure.
    Failure = 1,
    /// Command-line usage error (as clap's own).
    Usage = 2,
    /// Invalid configuration.
    Config = 3,
    /// TLS material or certificate problem.
    Tls = 4,
    /// Store cannot be opened or written.
    Store = 5,
    /// Address cannot be bound.
    Bind = 6,
    /// `dkd import`: rows were rejected.
    RowsRejected = 7,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c as u8)
    }
}

/// `toets`'s exit code when it has no answer (0 is JA, 1 NEE).
pub const TOETS_ERROR: u8 = 2;

/// What a command returns.
pub type Outcome = Result<ExitCode, Failure>;

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The arguments do not fit.
    #[error("{0}")]
    Usage(String),
    /// The IB does not take this batch delivery.
    #[error(transparent)]
    Batch(#[from] crate::import::BatchError),
    /// The configuration cannot be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS material that cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    /// A signing certificate or key that cannot be used.
    #[error(transparent)]
    Signer(#[from] crate::soap::wssec::SignerError),
    /// The client certificate names no OIN and none was given.
    #[error("the client certificate carries no OIN: pass --from-oin")]
    NoOin,
    /// The development PKI cannot be written.
    #[error("cannot generate the development PKI: {0}")]
    DevPki(#[from] crate::certs::CertError),
    /// A server without its TLS material.
    #[error("{0} (run `dkd certs` for a development PKI, or `dkd serve --demo`)")]
    NoTls(StartError),
    /// The store at `at` failed.
    #[error("{at}: {source}")]
    Store {
        /// Which store, or what was being done.
        at: String,
        /// The cause.
        source: StoreError,
    },
    /// The demo's batch delivery cannot be imported.
    #[error("cannot load the demo batch delivery: {0}")]
    DemoBatch(ImportError),
    /// A server cannot start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A store command failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A file cannot be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else that stopped the command.
    #[error("{0}")]
    Other(String),
    /// A command whose exit code is its answer (`toets`) has none: its own code, whatever
    /// the cause.
    #[error(transparent)]
    NoAnswer(Box<Failure>),
}

impl Failure {
    /// The exit code.
    pub fn code(&self) -> u8 {
        let code = match self {
            Failure::Usage(_) | Failure::Batch(_) => Code::Usage,
            Failure::Config(_) => Code::Config,
            Failure::Tls(_)
            | Failure::Signer(_)
            | Failure::NoOin
            | Failure::DevPki(_)
            | Failure::NoTls(_) => Code::Tls,
            Failure::Store { .. } | Failure::DemoBatch(_) => Code::Store,
            Failure::Start(e) => match e {
                StartError::Tls(_) | StartError::Signer(_) => Code::Tls,
                StartError::Store(_) => Code::Store,
                StartError::Bind { .. } => Code::Bind,
                StartError::Config(_) => Code::Config,
                StartError::Threads(_) => Code::Failure,
            },
            Failure::Control(e) => match e {
                ControlError::Usage(_) => Code::Usage,
                ControlError::Store(_) | ControlError::InUse(_) | ControlError::OtherStore(_) => {
                    Code::Store
                }
                ControlError::Invalid(_)
                | ControlError::Import { .. }
                | ControlError::Failure(_) => Code::Failure,
            },
            Failure::File { .. } | Failure::Other(_) => Code::Failure,
            Failure::NoAnswer(_) => return TOETS_ERROR,
        };
        code as u8
    }

    /// `toets`' failure: no answer, except that a server holding another store is a store
    /// error (5), since a JA/NEE about the wrong store must never be taken for one.
    pub fn unanswered(self) -> Failure {
        match self {
            f @ Failure::Control(ControlError::OtherStore(_)) => f,
            f => Failure::NoAnswer(Box::new(f)),
        }
    }
}

/// The command's exit code; a failure is told on stderr first.
pub fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(f) => fail(f.code(), &f.to_string()),
    }
}

pub(super) fn fail(code: u8, msg: &str) -> ExitCode {
    tell!("dkd: error: {msg}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_commands_map_to_the_readme_codes() {
        let c = |e: ControlError| Failure::from(e).code();
        assert_eq!(c(ControlError::Usage("x".into())), 2);
        assert_eq!(c(ControlError::InUse("x".into())), 5);
        assert_eq!(c(ControlError::OtherStore("x".into())), 5);
        assert_eq!(c(ControlError::Invalid("x".into())), 1);
        assert_eq!(c(ControlError::Failure("x".into())), 1);
    }

    #[test]
    fn toets_has_no_answer_unless_the_store_is_another() {
        let other = Failure::from(ControlError::OtherStore("x".into())).unanswered();
        assert_eq!(other.code(), 5);
        let store = Failure::from(ControlError::InUse("x".into())).unanswered();
        assert_eq!(store.code(), TOETS_ERROR);
        assert_eq!(store.to_string(), "x");
        let config = Failure::Config(ConfigError::Invalid("y".into())).unanswered();
        assert_eq!(config.code(), TOETS_ERROR);
    }
}
