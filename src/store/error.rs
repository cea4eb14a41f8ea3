//! The store's error.

use super::SCHEMA_VERSION;
use crate::suwiml::model::FieldError;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or corruption problem.
    #[error("store I/O error: {0}")]
    Io(String),
    /// Another process (a running `dkd serve`) holds the store.
    #[error("{0} is in use by another dkd process (a running `dkd serve`?)")]
    Locked(String),
    /// The data directory was written by another dkd version.
    #[error("store schema version {found} is not supported by this dkd (expects {SCHEMA_VERSION}); use another data directory, or re-import into a fresh one")]
    SchemaVersion {
        /// What the store says.
        found: u32,
    },
    /// A stored record does not decode: corruption or a manual edit.
    #[error("stored record for BSN ******{suffix} cannot be read: {reason}")]
    Corrupt {
        /// Last three digits of the BSN.
        suffix: String,
        /// Decoder message.
        reason: String,
    },
    /// A record failed validation and was not written.
    #[error("record refused: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The database cannot be reached now (or did not answer in time); dkd reconnects by itself.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The PostgreSQL schema is newer than this dkd: another instance runs a later version.
    #[error("the PostgreSQL schema is at version {found}, newer than this dkd knows ({known}); run the dkd that migrated it, or a later one")]
    SchemaAhead {
        /// What the database says.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// The PostgreSQL schema is older than this dkd and was not migrated.
    #[error("the PostgreSQL schema is at version {found}, this dkd needs {known}: run `dkd store migrate` (or `dkd serve`, which migrates)")]
    SchemaBehind {
        /// What the database says.
        found: u32,
        /// What this build needs.
        known: u32,
    },
    /// A transaction lost against a concurrent one (retried by the store).
    #[error("store conflict: {0}")]
    Conflict(String),
}
