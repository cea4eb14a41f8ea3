//! The refusals of request security, apart from `wssec` so that `dsig` (below it) can return
//! them without naming the module that calls it.

/// Why a request's security was refused. `soap::fault::describe` maps each to its WSS fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// No wsse:Security header while signing is required.
    #[error("no wsse:Security header")]
    Missing,
    /// Structure: counts, unexpected elements, duplicate Ids, unresolvable references.
    #[error("invalid wsse:Security: {0}")]
    Invalid(String),
    /// An algorithm outside the allow-list.
    #[error("algorithm not allowed: {0}")]
    Algorithm(String),
    /// A part that must be signed is not covered (including signature wrapping).
    #[error("not covered by the signature: {0}")]
    Coverage(String),
    /// The signature or a digest does not verify.
    #[error("signature check failed: {0}")]
    FailedCheck(String),
    /// The BinarySecurityToken is unusable or does not chain to the trusted CAs.
    #[error("security token refused: {0}")]
    Token(String),
    /// The signing certificate's OIN is not allowed.
    #[error("signer OIN not allowed: {0}")]
    SignerNotAllowed(String),
    /// The signing OIN differs from the TLS client OIN.
    #[error("signer OIN {signer} differs from TLS client OIN {tls}")]
    SignerMismatch {
        /// OIN in the signing certificate.
        signer: String,
        /// OIN in the TLS client certificate.
        tls: String,
    },
    /// Timestamp expired, too old, or too far in the future.
    #[error("timestamp refused: {0}")]
    Expired(String),
    /// The MessageID was seen before within the window.
    #[error("replayed MessageID {0}")]
    Replay(String),
}
