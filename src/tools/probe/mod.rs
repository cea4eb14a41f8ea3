//! `dkd probe`: a synthetic transaction for monitoring systems. One real, signed
//! GSDReintegratieInfo over mutual TLS against any 2W-be-S endpoint, judged on five things: the TLS
//! handshake, the server certificate's days left, WS-Addressing correlation (`RelatesTo` = our
//! MessageID), the response signature (with SignatureConfirmation) and the answer's structure.
//! The verdict follows the Nagios plugin convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one
//! status line with perfdata), or is printed as Prometheus metrics.
//!
//! The connection is made through [`crate::http::inspect`] rather than [`crate::http::client`]
//! because the probe reads the server's certificate from the TLS session.

use crate::http::client::split_url;
use crate::http::tls;
use crate::soap::wssec::Signer;
pub use output::{nagios_line, prometheus};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
pub use transaction::probe;

mod output;
#[cfg(test)]
mod tests;
mod transaction;

/// A valid BSN (11-test) that no register holds: `NietsGevonden` is the healthy answer.
pub const DEFAULT_BSN: &str = "123456782";
/// `--warning-days` default.
pub const DEFAULT_WARNING_DAYS: i64 = 30;
/// `--critical-days` default.
pub const DEFAULT_CRITICAL_DAYS: i64 = 7;
/// `--timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are not read to the end.
/// Text from the server (fault strings) is cut to this many characters in the status line.
const MAX_QUOTED: usize = 200;

/// What to probe and how to judge it.
pub struct ProbeOptions {
    /// The endpoint URL (`https://host:port/path`, also `wsa:To`).
    pub url: String,
    /// The BSN to ask about.
    pub bsn: String,
    /// Our OIN, for `wsa:From`.
    pub from_oin: String,
    /// Mutual-TLS client configuration (trusts `--ca`, presents `--cert`).
    pub tls: Arc<rustls::ClientConfig>,
    /// Signs the request (`--sign-cert`/`--sign-key`, default the TLS certificate and key).
    pub signer: Arc<Signer>,
    /// The response's signing certificate must chain to these CAs (`--ca`).
    pub response_trust: Arc<crate::soap::wssec::SignerTrust>,
    /// Our own TLS client certificate (DER), to warn before it expires too.
    pub client_cert: Option<Vec<u8>>,
    /// WARNING when a certificate has fewer days left than this.
    pub warning_days: i64,
    /// CRITICAL when a certificate has fewer days left than this.
    pub critical_days: i64,
    /// The whole exchange (connect, handshake, request, response) must finish within this.
    pub timeout: Duration,
}

impl ProbeOptions {
    /// Loads the TLS client configuration, the request signer (default: the TLS certificate and
    /// key) and the response trust from files, with the defaults for everything else
    /// ([`DEFAULT_BSN`], [`DEFAULT_WARNING_DAYS`], [`DEFAULT_CRITICAL_DAYS`],
    /// [`DEFAULT_TIMEOUT`]). `Err` is an UNKNOWN result: see [`ProbeResult::unknown`].
    pub fn from_paths(
        url: &str,
        cert: &Path,
        key: &Path,
        ca: &Path,
        sign_cert: Option<&Path>,
        sign_key: Option<&Path>,
    ) -> Result<ProbeOptions, String> {
        split_url(url)
            .map_err(|_| format!("bad URL {url:?}: expected https://host[:port]/path"))?;
        let tls_cfg = tls::client_config(ca, cert, key).map_err(|e| e.to_string())?;
        let leaf = tls::load_certs(cert)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .map(|c| c.to_vec());
        let from_oin = leaf
            .as_deref()
            .and_then(|d| crate::certs::oin_of(d).ok().flatten())
            .ok_or_else(|| {
                format!(
                    "{}: the client certificate carries no OIN (subject serialNumber)",
                    cert.display()
                )
            })?;
        let (sc, sk) = match (sign_cert, sign_key) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => (cert, key),
            _ => return Err("--sign-cert and --sign-key go together".into()),
        };
        let signer = Signer::load(sc, sk).map_err(|e| e.to_string())?;
        let trust = tls::signer_trust(ca, &[]).map_err(|e| e.to_string())?;
        Ok(ProbeOptions {
            url: url.to_owned(),
            bsn: DEFAULT_BSN.to_owned(),
            from_oin,
            tls: Arc::new(tls_cfg),
            signer: Arc::new(signer),
            response_trust: trust,
            client_cert: leaf,
            warning_days: DEFAULT_WARNING_DAYS,
            critical_days: DEFAULT_CRITICAL_DAYS,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

/// The verdict, in the Nagios plugin convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Everything checked out.
    Ok,
    /// Answered correctly, but something needs attention soon (a certificate, an FWI warning).
    Warning,
    /// The endpoint cannot be used as it is.
    Critical,
    /// The probe itself could not run (bad arguments, unreadable certificate files).
    Unknown,
}

impl Status {
    /// The plugin exit code: 0, 1, 2 or 3.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    const ALL: [Status; 4] = [
        Status::Ok,
        Status::Warning,
        Status::Critical,
        Status::Unknown,
    ];
}

/// What kind of answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `GSDReintegratieInfoResponse` with `ClientSuwi`.
    ClientSuwi,
    /// `GSDReintegratieInfoResponse` with `fwi:NietsGevonden`.
    NietsGevonden,
    /// `GSDReintegratieInfoResponse` with only `fwi:FWI`.
    Fwi,
    /// A SOAP Fault.
    Fault,
    /// A SOAP envelope with anything else in its Body.
    Other,
}

impl Answer {
    /// The name used in the status line and the `answer` label.
    pub fn name(self) -> &'static str {
        match self {
            Answer::ClientSuwi => "ClientSuwi",
            Answer::NietsGevonden => "NietsGevonden",
            Answer::Fwi => "FWI",
            Answer::Fault => "Fault",
            Answer::Other => "other",
        }
    }
}

/// The outcome of one probe: the verdict, its one-line explanation and the measurements.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// The verdict: the worst of all checks.
    pub status: Status,
    /// One line, worst finding first (no `|`, no newlines).
    pub summary: String,
    /// The probed URL (empty for an UNKNOWN before options were read).
    pub url: String,
    /// From connecting to the last byte of the response, when a response arrived.
    pub duration: Option<Duration>,
    /// The HTTP status of the response.
    pub http_status: Option<u16>,
    /// Response size in bytes.
    pub response_size: Option<usize>,
    /// Whole days until the server's TLS certificate expires (negative: expired).
    pub cert_days_left: Option<i64>,
    /// Whole days until our own TLS client certificate expires.
    pub client_cert_days_left: Option<i64>,
    /// The WARNING threshold in days.
    pub warning_days: i64,
    /// The CRITICAL threshold in days.
    pub critical_days: i64,
    /// Whether the response's signature (and SignatureConfirmation) verified; `None` when no
    /// SOAP response arrived.
    pub signature_valid: Option<bool>,
    /// The OIN of the response's signing certificate, when the signature verified.
    pub signer_oin: Option<String>,
    /// The OIN in the server's TLS certificate, if it carries one.
    pub server_oin: Option<String>,
    /// Whether `wsa:RelatesTo` equals our MessageID; `None` when no SOAP response arrived.
    pub relates_to_matches: Option<bool>,
    /// The kind of answer.
    pub answer: Option<Answer>,
    /// The `Code` of a fault or FWI message.
    pub code: Option<String>,
}

impl ProbeResult {
    fn new(url: &str, warning_days: i64, critical_days: i64) -> ProbeResult {
        ProbeResult {
            status: Status::Ok,
            summary: String::new(),
            url: url.to_owned(),
            duration: None,
            http_status: None,
            response_size: None,
            cert_days_left: None,
            client_cert_days_left: None,
            warning_days,
            critical_days,
            signature_valid: None,
            signer_oin: None,
            server_oin: None,
            relates_to_matches: None,
            answer: None,
            code: None,
        }
    }

    /// An UNKNOWN result: the probe could not run (e.g. [`ProbeOptions::from_paths`] failed).
    pub fn unknown(message: impl Into<String>) -> ProbeResult {
        let mut r = ProbeResult::new("", DEFAULT_WARNING_DAYS, DEFAULT_CRITICAL_DAYS);
        r.status = Status::Unknown;
        r.summary = one_line(&message.into());
        r
    }

    /// Whether the transaction itself worked (OK or WARNING): `dkd_probe_success`.
    pub fn success(&self) -> bool {
        matches!(self.status, Status::Ok | Status::Warning)
    }
}

/// Server-provided text, on one line and cut short.
fn quoted(s: &str) -> String {
    let s = one_line(s.trim());
    if s.chars().count() > MAX_QUOTED {
        let cut: String = s.chars().take(MAX_QUOTED).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// One line without `|` (the perfdata separator).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '|' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
