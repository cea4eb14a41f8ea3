//! `dkd check URL`: a compliance run against any GSDDossierReintegratie-v0200 endpoint (or, with
//! `--service verwijsindex`, an IBVerwijsindex-v0300 endpoint), judged the way the IB judges one
//! before go-live. Each check in [`CHECKS`] has a stable name, a verdict and a reason a supplier can
//! act on; the report is a table, JSON or JUnit XML.
//!
//! The TLS session and every exchange go through [`crate::http::inspect`] (shared with the probe);
//! requests are built by [`crate::soap::client`], answers read by the same readers dkd itself uses.

mod answers;
mod output;
mod refusals;
mod requests;
mod timing;
pub mod tls;
mod transport;

use crate::http::client::split_url;
use crate::http::inspect::{self, Exchange, ExchangeError, HttpAnswer, Progress};
use crate::soap::wssec::{Signer, SignerTrust};
use answers::check_answers;
pub use output::{json, junit, summary, table};
use refusals::{check_errors, check_security};
use requests::Built;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timing::check_timing;
use transport::{check_tls, check_wsdl};

/// Every check, by its stable name, with what it means. Scenario tests assert on these names.
pub const CHECKS: &[(&str, &str)] = &[
    ("tls.versions", "TLS 1.0 and 1.1 are refused, TLS 1.2 and 1.3 accepted"),
    ("tls.cipher", "ECDHE-RSA-AES128-GCM-SHA256 is accepted (TLS 1.2)"),
    ("tls.client-cert", "a client without a certificate is refused"),
    ("tls.chain", "the server certificate chains to --ca and names the host"),
    ("tls.days-left", "the server certificate is valid for at least --min-days more days"),
    ("tls.oin", "the server certificate's subject carries an OIN (serialNumber)"),
    ("wsdl.parses", "GET URL?wsdl answers 200 with a well-formed WSDL"),
    ("wsdl.operation", "the WSDL names the service's operation"),
    ("wsdl.address", "the WSDL's soap:address is the checked URL"),
    ("answers.known-bsn", "each --bsn is answered with a schema-valid ClientSuwi for that BSN (IBVerwijsindex: the update is acknowledged)"),
    ("answers.unknown-bsn", "--unknown-bsn is answered with fwi:NietsGevonden"),
    ("answers.addressing", "the answer carries MessageID, RelatesTo = the request's MessageID, the response Action, and To = the request's From"),
    ("answers.to-oin", "a request whose wsa:To is the URL with ?oin= naming the server certificate's OIN (TS 4.0, WUS WA001) is answered, From = that To"),
    ("answers.signed", "the answer is signed per 2W-be-S (Body, Timestamp, every WS-A header) and confirms the request's SignatureValue"),
    ("errors.malformed-bsn", "an 8-digit Burgerservicenr gets a SOAP 1.1 Fault with fwi:Fout, addressed and signed"),
    ("errors.eleven-test", "a BSN failing the 11-test gets a Fault with fwi:Fout, addressed and signed"),
    ("errors.not-xml", "a body that is not XML gets a Fault with fwi:Fout, signed"),
    ("errors.soap12", "a SOAP 1.2 envelope gets a SOAP 1.1 Fault with fwi:Fout, signed"),
    ("errors.soapaction", "a SOAPAction other than \"\" or the wsa:Action gets a Fault, addressed and signed"),
    ("errors.action", "a wrong wsa:Action gets a Fault, addressed and signed"),
    ("errors.message-id", "a request without wsa:MessageID gets a Fault with fwi:Fout, signed"),
    ("errors.oversized", "a body over --oversized-bytes gets a Fault with fwi:Fout, signed"),
    ("security.unsigned", "an unsigned request is refused with a Fault"),
    ("security.tampered-body", "a request whose Body changed after signing is refused"),
    ("security.tampered-to", "a request whose wsa:To changed after signing is refused"),
    ("security.sha1", "a request naming SHA-1 as digest is refused"),
    ("security.expired", "a request whose Timestamp expired is refused"),
    ("security.future", "a request whose Timestamp lies an hour ahead is refused"),
    ("security.no-timestamp", "a signed request without a Timestamp is refused"),
    ("security.wrapping", "a signature-wrapping attack (signed Body moved, another Body put in) is refused"),
    ("security.duplicate-id", "a request with two elements carrying the same wsu:Id is refused"),
    ("security.replay", "the same signed request sent twice is refused the second time"),
    ("security.untrusted-ca", "a request signed by a certificate from an untrusted CA is refused"),
    ("timing.latency", "p50/p99 over --requests requests; a warning when p99 exceeds --slow-ms"),
];

/// The service a URL offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `GSDDossierReintegratie-v0200` (a gemeente, or the IB's routing endpoint).
    Gsd,
    /// `IBVerwijsindex-v0300` (the IB).
    Verwijsindex,
}

impl Service {
    fn operation(self) -> &'static str {
        match self {
            Service::Gsd => "GSDReintegratieInfo",
            Service::Verwijsindex => "IBVerwijsindex",
        }
    }
    fn action(self) -> &'static str {
        match self {
            Service::Gsd => crate::suwiml::gsd::ACTION_REQUEST,
            Service::Verwijsindex => crate::suwiml::verwijsindex::ACTION_REQUEST,
        }
    }
    fn response_action(self) -> &'static str {
        match self {
            Service::Gsd => crate::suwiml::gsd::ACTION_RESPONSE,
            Service::Verwijsindex => crate::suwiml::verwijsindex::ACTION_RESPONSE,
        }
    }
    fn fault_action(self) -> &'static str {
        match self {
            Service::Gsd => crate::suwiml::gsd::ACTION_FAULT,
            Service::Verwijsindex => crate::suwiml::verwijsindex::ACTION_FAULT,
        }
    }
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Passed.
    Pass,
    /// Passed, with something to look at (timing above the threshold).
    Warn,
    /// Could not be run here (no --bsn given, requests unsigned, an earlier step failed).
    Skip,
    /// Failed: the endpoint does not do what the chain expects.
    Fail,
}

impl Verdict {
    /// `pass`, `warn`, `skip`, `fail`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Skip => "skip",
            Verdict::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The stable name (see [`CHECKS`]).
    pub name: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in a sentence.
    pub reason: String,
    /// How long the check took.
    pub duration: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The checked URL.
    pub url: String,
    /// The service checked.
    pub service: Service,
    /// Whether a TCP connection could be made at all; `false` means nothing was judged.
    pub connected: bool,
    /// Why not, when not.
    pub connect_error: Option<String>,
    /// Every check, in [`CHECKS`] order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// The outcome of one check by name.
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }

    /// 0 all passed, 1 a check failed, 3 could not connect.
    pub fn exit_code(&self) -> u8 {
        if !self.connected {
            3
        } else if self.outcomes.iter().any(|o| o.verdict == Verdict::Fail) {
            1
        } else {
            0
        }
    }
}

/// What to check and how.
pub struct CheckOptions {
    /// The endpoint URL (`https://host[:port]/path`, also `wsa:To`).
    pub url: String,
    /// The service offered there.
    pub service: Service,
    /// BSNs the endpoint holds data for.
    pub bsns: Vec<String>,
    /// A valid BSN it holds nothing for.
    pub unknown_bsn: String,
    /// Our OIN, for `wsa:From`.
    pub from_oin: String,
    /// The CAs trusted for the server's TLS and signing certificates.
    pub roots: RootCertStore,
    /// The response's signing certificate must chain to these.
    pub trust: Arc<SignerTrust>,
    /// Our TLS client certificate chain and key.
    pub client_chain: Vec<CertificateDer<'static>>,
    /// Its key.
    pub client_key: PrivateKeyDer<'static>,
    /// Signs the requests; `None` sends them unsigned (the security checks are then skipped).
    pub signer: Option<Arc<Signer>>,
    /// `tls.days-left` fails below this.
    pub min_days: i64,
    /// Requests measured by `timing.latency`.
    pub requests: usize,
    /// `timing.latency` warns when p99 exceeds this.
    pub slow: Duration,
    /// Each exchange must finish within this.
    pub timeout: Duration,
    /// The body size `errors.oversized` sends.
    pub oversized_bytes: usize,
    /// IBVerwijsindex: the gemeente (`Bron/CdPartijSuwi`) the updates come from.
    pub gemeente: String,
    /// IBVerwijsindex: the cluster (`CdClusteringIb`) of the updates.
    pub cluster: String,
}

/// `--unknown-bsn` default: valid (11-test), held by nobody.
pub const DEFAULT_UNKNOWN_BSN: &str = "123456782";
/// `--min-days` default (as `ops.min_cert_days`).
pub const DEFAULT_MIN_DAYS: i64 = 14;
/// `--requests` default.
pub const DEFAULT_REQUESTS: usize = 20;
/// `--requests` at most: the check must stay a check, not a load test.
pub const MAX_REQUESTS: usize = 1000;
/// `--slow-ms` default: well inside the IB's route timeout (5 s).
pub const DEFAULT_SLOW_MS: u64 = 1000;
/// `--oversized-bytes` default: twice dkd's own default body limit.
pub const DEFAULT_OVERSIZED: usize = 2 * 1024 * 1024;
/// Answers larger than this are not read to the end.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

impl CheckOptions {
    /// Loads the TLS material and the signer (default: the TLS certificate and key; none with
    /// `unsigned`), with defaults for everything else. `Err` is a usage error.
    pub fn from_paths(
        url: &str,
        cert: &Path,
        key: &Path,
        ca: &Path,
        sign: Option<(&Path, &Path)>,
        unsigned: bool,
    ) -> Result<CheckOptions, String> {
        use crate::http::tls;
        split_url(url)
            .map_err(|_| format!("bad URL {url:?}: expected https://host[:port]/path"))?;
        let chain = tls::load_certs(cert).map_err(|e| e.to_string())?;
        let client_key = tls::load_key(key).map_err(|e| e.to_string())?;
        let mut roots = RootCertStore::empty();
        for c in tls::load_certs(ca).map_err(|e| e.to_string())? {
            roots
                .add(c)
                .map_err(|e| format!("{}: CA certificate refused: {e}", ca.display()))?;
        }
        let from_oin = chain
            .first()
            .and_then(|d| crate::certs::oin_of(d).ok().flatten())
            .ok_or_else(|| {
                format!(
                    "{}: the client certificate carries no OIN (subject serialNumber)",
                    cert.display()
                )
            })?;
        let signer = if unsigned {
            None
        } else {
            let (sc, sk) = sign.unwrap_or((cert, key));
            Some(Arc::new(Signer::load(sc, sk).map_err(|e| e.to_string())?))
        };
        let trust = tls::signer_trust(ca, &[]).map_err(|e| e.to_string())?;
        Ok(CheckOptions {
            url: url.to_owned(),
            service: Service::Gsd,
            bsns: Vec::new(),
            unknown_bsn: DEFAULT_UNKNOWN_BSN.into(),
            from_oin,
            roots,
            trust,
            client_chain: chain,
            client_key,
            signer,
            min_days: DEFAULT_MIN_DAYS,
            requests: DEFAULT_REQUESTS,
            slow: Duration::from_millis(DEFAULT_SLOW_MS),
            timeout: Duration::from_secs(10),
            oversized_bytes: DEFAULT_OVERSIZED,
            gemeente: String::new(),
            cluster: "04".into(),
        })
    }

    /// Usage problems the options themselves have.
    pub fn validate(&self) -> Result<(), String> {
        for b in self.bsns.iter().chain(std::iter::once(&self.unknown_bsn)) {
            crate::suwiml::types::Bsn::parse(b).map_err(|e| match e {
                crate::suwiml::types::BsnError::Format => format!("BSN {b:?} is not 9 digits"),
                crate::suwiml::types::BsnError::ElevenTest => {
                    format!("BSN {b:?} fails the 11-test")
                }
            })?;
        }
        if self.requests == 0 || self.requests > MAX_REQUESTS {
            return Err(format!("--requests must be 1..={MAX_REQUESTS}"));
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        if self.service == Service::Verwijsindex && self.gemeente.is_empty() {
            return Err(
                "--service verwijsindex needs --gemeente (the sending gemeente's code)".into(),
            );
        }
        Ok(())
    }
}

/// The run's shared state.
struct Ctx<'a> {
    o: &'a CheckOptions,
    host: String,
    port: u16,
    path: String,
    /// The normal client configuration (TLS 1.2 and 1.3, our certificate).
    tls: Arc<rustls::ClientConfig>,
    /// The OIN in the server certificate, once `tls.oin` has seen it.
    server_oin: Option<String>,
    out: Vec<Outcome>,
}

impl Ctx<'_> {
    fn record(
        &mut self,
        name: &'static str,
        started: Instant,
        (verdict, reason): (Verdict, String),
    ) {
        self.out.push(Outcome {
            name,
            verdict,
            reason,
            duration: started.elapsed(),
        });
    }

    async fn send(
        &self,
        tls: Arc<rustls::ClientConfig>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        progress: &mut Progress,
    ) -> Result<HttpAnswer, ExchangeError> {
        let x = Exchange {
            method,
            host: &self.host,
            port: self.port,
            path,
            headers,
            body,
            limit: MAX_RESPONSE,
        };
        match tokio::time::timeout(self.o.timeout, inspect::exchange(tls, x, progress)).await {
            Ok(r) => r,
            Err(_) => Err(ExchangeError {
                stage: progress.stage,
                text: format!(
                    "no answer within {} s ({})",
                    self.o.timeout.as_secs_f64(),
                    progress
                        .stage
                        .describe(&inspect::authority(&self.host, self.port))
                ),
            }),
        }
    }

    /// Sends a SOAP request as built.
    async fn post(&self, b: &Built) -> Result<HttpAnswer, String> {
        let headers = [
            ("content-type", b.content_type.as_str()),
            ("soapaction", b.soap_action.as_str()),
            (
                "user-agent",
                concat!("dkd-check/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        let mut p = Progress::default();
        self.send(
            self.tls.clone(),
            "POST",
            &self.path,
            &headers,
            b.text.clone().into_bytes(),
            &mut p,
        )
        .await
        .map_err(|e| e.text)
    }
}

/// Runs every check. Never panics on what the server sends.
pub async fn run(o: &CheckOptions) -> Report {
    let mut report = Report {
        url: o.url.clone(),
        service: o.service,
        connected: true,
        connect_error: None,
        outcomes: Vec::new(),
    };
    let (host, port, path) = match split_url(&o.url) {
        Ok(x) => x,
        Err(e) => {
            report.connected = false;
            report.connect_error = Some(e.to_string());
            return report;
        }
    };
    let normal = tls::Narrow {
        versions: &[&rustls::version::TLS13, &rustls::version::TLS12],
        suite: None,
        client_auth: true,
    };
    let tls_cfg = match tls::client_config(&o.roots, &o.client_chain, &o.client_key, &normal) {
        Ok(c) => c,
        Err(e) => {
            report.connected = false;
            report.connect_error = Some(format!("the client certificate is unusable: {e}"));
            return report;
        }
    };
    // Could we reach it at all? Without a TCP connection nothing can be judged (exit 3).
    if let Err(e) = tokio::time::timeout(
        o.timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())
    .and_then(|r| r.map_err(|e| inspect::io_text(&e)))
    {
        report.connected = false;
        report.connect_error = Some(format!(
            "cannot connect to {}: {e}",
            inspect::authority(&host, port)
        ));
        return report;
    }
    let mut cx = Ctx {
        o,
        host,
        port,
        path,
        tls: tls_cfg,
        server_oin: None,
        out: Vec::new(),
    };
    check_tls(&mut cx).await;
    check_wsdl(&mut cx).await;
    check_answers(&mut cx).await;
    check_errors(&mut cx).await;
    check_security(&mut cx).await;
    check_timing(&mut cx).await;
    // Report in the table's order, whatever order they ran in.
    let mut out = cx.out;
    out.sort_by_key(|x| CHECKS.iter().position(|(n, _)| *n == x.name));
    report.outcomes = out;
    report
}

fn pass(s: impl Into<String>) -> (Verdict, String) {
    (Verdict::Pass, s.into())
}
fn fail(s: impl Into<String>) -> (Verdict, String) {
    (Verdict::Fail, s.into())
}
fn skip(s: impl Into<String>) -> (Verdict, String) {
    (Verdict::Skip, s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_and_grouped() {
        let mut seen = std::collections::HashSet::new();
        for (n, _) in CHECKS {
            assert!(seen.insert(*n), "{n} twice");
            let g = n.split('.').next().unwrap_or("");
            assert!(
                ["tls", "wsdl", "answers", "errors", "security", "timing"].contains(&g),
                "{n}"
            );
        }
    }

    #[test]
    fn junit_escapes_reasons_and_counts_verdicts() {
        let r = Report {
            url: "https://x/\"a\"".into(),
            service: Service::Gsd,
            connected: true,
            connect_error: None,
            outcomes: vec![
                Outcome {
                    name: "tls.oin",
                    verdict: Verdict::Fail,
                    reason: "no <OIN> & \"x\"".into(),
                    duration: Duration::from_millis(5),
                },
                Outcome {
                    name: "tls.chain",
                    verdict: Verdict::Skip,
                    reason: "s".into(),
                    duration: Duration::ZERO,
                },
                Outcome {
                    name: "timing.latency",
                    verdict: Verdict::Warn,
                    reason: "slow <".into(),
                    duration: Duration::ZERO,
                },
            ],
        };
        let x = junit(&r);
        assert!(crate::xml::parse(x.as_bytes()).is_ok(), "{x}");
        assert!(
            x.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("message=\"no &lt;OIN> &amp; &quot;x&quot;\""),
            "{x}"
        );
        assert_eq!(r.exit_code(), 1);
    }
}
