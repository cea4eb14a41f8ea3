//! `dkd check URL`: a compliance run against any GSDDossierReintegratie-v0200 endpoint (or, with
//! `--service verwijsindex`, an IBVerwijsindex-v0300 endpoint), judged the way the IB judges one
//! before go-live. Each check in [`CHECKS`] has a stable name, a verdict and a reason a supplier can
//! act on; the report is a table, JSON or JUnit XML.
//!
//! The TLS session and every exchange go through [`crate::http::inspect`] (shared with the probe);
//! requests are built by [`crate::soap::client`], answers read by the same readers dkd itself uses.

mod requests;
pub mod tls;

use crate::http::client::split_url;
use crate::http::inspect::{self, Exchange, ExchangeError, HttpAnswer, Progress, Stage};
use crate::soap::wssec::{Signer, SignerTrust, VerifyPolicy};
use crate::xml::{Element, NS_FWI, NS_SOAP11, NS_WSA};
use requests::{Built, Variant};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

async fn check_tls(cx: &mut Ctx<'_>) {
    let o = cx.o;
    // tls.versions
    let t = Instant::now();
    let mut problems = Vec::new();
    for (v, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        match tls::legacy_hello(&cx.host, cx.port, v, o.timeout).await {
            Ok(tls::Legacy::Refused(_)) => {}
            Ok(tls::Legacy::Accepted) => {
                problems.push(format!("{name} is accepted (it must be refused)"))
            }
            Err(e) => problems.push(format!("{name} could not be tried: {e}")),
        }
    }
    for (v, name) in [
        (&rustls::version::TLS12, "TLS 1.2"),
        (&rustls::version::TLS13, "TLS 1.3"),
    ] {
        let n = tls::Narrow {
            versions: &[v],
            suite: None,
            client_auth: true,
        };
        match handshake(cx, &n).await {
            Ok(_) => {}
            Err(e) => problems.push(format!("{name} is not accepted ({e})")),
        }
    }
    let v = if problems.is_empty() {
        pass("TLS 1.0 and 1.1 refused, TLS 1.2 and 1.3 accepted")
    } else {
        fail(problems.join("; "))
    };
    cx.record("tls.versions", t, v);

    // tls.cipher
    let t = Instant::now();
    let n = tls::Narrow {
        versions: &[&rustls::version::TLS12],
        suite: Some(tls::REQUIRED_SUITE),
        client_auth: true,
    };
    let v = match handshake(cx, &n).await {
        Ok(_) => pass("ECDHE-RSA-AES128-GCM-SHA256 accepted over TLS 1.2"),
        Err(e) => fail(format!(
            "a TLS 1.2 client offering only ECDHE-RSA-AES128-GCM-SHA256 is refused ({e}); enable this suite (it needs an RSA server key)"
        )),
    };
    cx.record("tls.cipher", t, v);

    // tls.client-cert: the refusal may come in the handshake (TLS 1.2) or as an alert after it
    // (TLS 1.3), so a request is sent and nothing but an HTTP answer counts as acceptance.
    let t = Instant::now();
    let n = tls::Narrow {
        versions: &[&rustls::version::TLS13, &rustls::version::TLS12],
        suite: None,
        client_auth: false,
    };
    let v = match tls::client_config(&o.roots, &o.client_chain, &o.client_key, &n) {
        Err(e) => skip(format!("cannot build a client without certificate: {e}")),
        Ok(cfg) => {
            let mut p = Progress::default();
            let wsdl = format!("{}?wsdl", cx.path);
            match cx.send(cfg, "GET", &wsdl, &[], Vec::new(), &mut p).await {
                Ok(a) => fail(format!(
                    "a client without a certificate got HTTP {} for GET ?wsdl: require a client certificate chaining to the chain's CA in the TLS handshake",
                    a.status
                )),
                Err(_) => pass("a client without a certificate is refused"),
            }
        }
    };
    cx.record("tls.client-cert", t, v);

    // tls.chain, tls.days-left, tls.oin: from one normal handshake.
    let t = Instant::now();
    let mut p = Progress::default();
    let wsdl = format!("{}?wsdl", cx.path);
    let r = cx
        .send(cx.tls.clone(), "GET", &wsdl, &[], Vec::new(), &mut p)
        .await;
    let leaf = p.peer_leaf.clone();
    let v = match (&r, &leaf) {
        (_, Some(_)) => pass("the server certificate chains to the trusted CA and names the host"),
        (Err(e), None) if e.stage == Stage::Handshake => fail(format!(
            "{}: the server certificate must chain to the PKIoverheid CA given with --ca and name the host in the URL",
            e.text
        )),
        (Err(e), None) => fail(e.text.clone()),
        (Ok(_), None) => fail("the server sent no certificate"),
    };
    cx.record("tls.chain", t, v);
    let t = Instant::now();
    let v = match &leaf {
        None => skip("no server certificate was seen (see tls.chain)"),
        Some(l) => match crate::certs::days_left(l, time::OffsetDateTime::now_utc()) {
            Ok(d) if d >= o.min_days => pass(format!("{d} days left")),
            Ok(d) if d < 0 => fail(format!("the server certificate expired {} days ago", -d)),
            Ok(d) => fail(format!(
                "the server certificate has {d} days left (fewer than {}): renew it now",
                o.min_days
            )),
            Err(e) => fail(format!("the server certificate cannot be read: {e}")),
        },
    };
    cx.record("tls.days-left", t, v);
    let t = Instant::now();
    let v = match &leaf {
        None => skip("no server certificate was seen (see tls.chain)"),
        Some(l) => match crate::certs::oin_of(l) {
            Ok(Some(oin)) => {
                let v = pass(format!("OIN {oin}"));
                cx.server_oin = Some(oin);
                v
            }
            Ok(None) => fail("the server certificate's subject has no serialNumber with the organisation's OIN: request a PKIoverheid certificate carrying the OIN"),
            Err(e) => fail(format!("the server certificate cannot be read: {e}")),
        },
    };
    cx.record("tls.oin", t, v);
}

async fn handshake(cx: &Ctx<'_>, n: &tls::Narrow<'_>) -> Result<(), String> {
    let cfg = tls::client_config(&cx.o.roots, &cx.o.client_chain, &cx.o.client_key, n)?;
    let mut p = Progress::default();
    match tokio::time::timeout(
        cx.o.timeout,
        inspect::connect(cfg, &cx.host, cx.port, &mut p),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.text),
        Err(_) => Err("no handshake within the timeout".into()),
    }
}

async fn check_wsdl(cx: &mut Ctx<'_>) {
    let t = Instant::now();
    let mut p = Progress::default();
    let path = format!("{}?wsdl", cx.path);
    let r = cx
        .send(cx.tls.clone(), "GET", &path, &[], Vec::new(), &mut p)
        .await;
    let doc = match r {
        Err(e) => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!("GET ?wsdl failed: {}", e.text)),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
        Ok(a) if a.status != 200 => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!(
                    "GET ?wsdl answered HTTP {}: serve the WSDL at URL?wsdl",
                    a.status
                )),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
        Ok(a) => crate::xml::parse_with(&a.body, &crate::xml::ParseLimits::FILE),
    };
    const NS_WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
    const NS_WSDL_SOAP: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
    let doc = match doc {
        Ok(d) if d.is(Some(NS_WSDL), "definitions") => d,
        Ok(d) => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!(
                    "?wsdl is XML but its root is {}, not wsdl:definitions",
                    d.qname()
                )),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
        Err(e) => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!("?wsdl is not well-formed XML: {e}")),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
    };
    cx.record("wsdl.parses", t, pass("a well-formed WSDL 1.1 document"));
    let op = cx.o.service.operation();
    let named = doc
        .elements()
        .filter(|e| e.is(Some(NS_WSDL), "portType"))
        .flat_map(|pt| pt.elements())
        .any(|e| e.is(Some(NS_WSDL), "operation") && e.attr(None, "name") == Some(op));
    let v = if named {
        pass(format!("portType operation {op}"))
    } else {
        fail(format!("the WSDL's portType has no operation named {op}"))
    };
    cx.record("wsdl.operation", t, v);
    let locations: Vec<String> = doc
        .elements()
        .filter(|e| e.is(Some(NS_WSDL), "service"))
        .flat_map(|s| s.elements())
        .flat_map(|port| port.elements())
        .filter(|a| a.is(Some(NS_WSDL_SOAP), "address"))
        .filter_map(|a| a.attr(None, "location").map(str::to_owned))
        .collect();
    let v = if locations.contains(&cx.o.url) {
        pass(format!("soap:address {}", cx.o.url))
    } else if locations.is_empty() {
        fail("the WSDL has no soap:address")
    } else {
        fail(format!(
            "the WSDL's soap:address is {} but the endpoint is {}: set the public URL the IB calls",
            locations.join(", "),
            cx.o.url
        ))
    };
    cx.record("wsdl.address", t, v);
}

/// A parsed answer: HTTP status, the envelope's headers and body element.
struct Read {
    status: u16,
    headers: Vec<Element>,
    body: Element,
    text: String,
}

fn read(a: &HttpAnswer) -> Result<Read, String> {
    let env = crate::soap::envelope::parse(&a.body).map_err(|e| {
        format!(
            "the answer (HTTP {}) is not a SOAP 1.1 envelope with one body element: {e}",
            a.status
        )
    })?;
    Ok(Read {
        status: a.status,
        headers: env.headers,
        body: env.body,
        text: String::from_utf8_lossy(&a.body).into_owned(),
    })
}

fn header_text(r: &Read, local: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|h| h.is(Some(NS_WSA), local))
        .map(|h| {
            if local == "To" || local == "RelatesTo" || local == "MessageID" || local == "Action" {
                h.text().trim().to_owned()
            } else {
                crate::soap::client::find_text(h, "Address")
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            }
        })
}

fn verify(
    cx: &Ctx<'_>,
    r: &Read,
    request_sig: Option<&str>,
    is_fault: bool,
) -> Result<String, String> {
    VerifyPolicy::for_answers(
        cx.o.trust.clone(),
        time::Duration::seconds(120),
        time::Duration::seconds(300),
    )
    .verify_answer(
        &r.text,
        request_sig,
        is_fault,
        time::OffsetDateTime::now_utc(),
    )
    .map(|v| v.signer_oin)
    .map_err(|e| e.to_string())
}

/// The WS-Addressing reply headers per Transactiestandaard 4.0; `Err` lists what is wrong.
fn addressing(cx: &Ctx<'_>, r: &Read, b: &Built, action: &[&str]) -> Result<(), String> {
    let mut wrong = Vec::new();
    match header_text(r, "MessageID") {
        None => wrong.push("no wsa:MessageID".to_owned()),
        Some(m) if m == b.message_id => {
            wrong.push("wsa:MessageID repeats the request's".to_owned())
        }
        Some(m) if !m.contains(':') => {
            wrong.push(format!("wsa:MessageID {m:?} is not an absolute URI"))
        }
        Some(_) => {}
    }
    match header_text(r, "RelatesTo") {
        Some(v) if v == b.message_id => {}
        Some(v) => wrong.push(format!(
            "wsa:RelatesTo {v:?} is not the request's MessageID"
        )),
        None => wrong.push("no wsa:RelatesTo".to_owned()),
    }
    match header_text(r, "Action") {
        Some(a) if action.contains(&a.as_str()) => {}
        Some(a) => wrong.push(format!("wsa:Action {a:?} is not {}", action.join(" or "))),
        None => wrong.push("no wsa:Action".to_owned()),
    }
    let from = requests::from_address(&cx.o.from_oin);
    match header_text(r, "To") {
        Some(t) if t == from => {}
        Some(t) => wrong.push(format!(
            "wsa:To {t:?} is not the request's wsa:From address"
        )),
        None => wrong.push("no wsa:To".to_owned()),
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

async fn check_answers(cx: &mut Ctx<'_>) {
    let o = cx.o;
    let t = Instant::now();
    let mut last: Option<(Read, Built)> = None;
    // answers.known-bsn
    if o.bsns.is_empty() {
        cx.record("answers.known-bsn", t, skip("no --bsn given"));
    } else {
        let mut problems = Vec::new();
        for bsn in &o.bsns {
            let b = requests::build(o, bsn, Variant::Normal);
            let b = match b {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("cannot build the request: {e}"));
                    continue;
                }
            };
            match cx.post(&b).await.and_then(|a| read(&a)) {
                Err(e) => problems.push(format!("BSN …{}: {e}", tail(bsn))),
                Ok(r) => {
                    if let Err(e) = judge_known(o, &r, bsn) {
                        problems.push(format!("BSN …{}: {e}", tail(bsn)));
                    }
                    last = Some((r, b));
                }
            }
        }
        let v = if problems.is_empty() {
            pass(match o.service {
                Service::Gsd => format!(
                    "{} BSN(s) answered with a schema-valid ClientSuwi",
                    o.bsns.len()
                ),
                Service::Verwijsindex => format!("{} update(s) acknowledged", o.bsns.len()),
            })
        } else {
            fail(problems.join("; "))
        };
        cx.record("answers.known-bsn", t, v);
    }
    // answers.unknown-bsn
    let t = Instant::now();
    if o.service == Service::Verwijsindex {
        cx.record(
            "answers.unknown-bsn",
            t,
            skip("not applicable to IBVerwijsindex"),
        );
    } else {
        let v = match requests::build(o, &o.unknown_bsn, Variant::Normal) {
            Err(e) => fail(format!("cannot build the request: {e}")),
            Ok(b) => match cx.post(&b).await.and_then(|a| read(&a)) {
                Err(e) => fail(e),
                Ok(r) => {
                    let v = judge_unknown(&r);
                    last = Some((r, b));
                    v
                }
            },
        };
        cx.record("answers.unknown-bsn", t, v);
    }
    // answers.to-oin sends a request of its own, so it is judged whatever came before.
    let t = Instant::now();
    let v = to_oin(cx).await;
    cx.record("answers.to-oin", t, v);
    // answers.addressing and answers.signed: on the last answer that arrived.
    let t = Instant::now();
    let Some((r, b)) = last else {
        cx.record(
            "answers.addressing",
            t,
            skip("no answer arrived (see answers.*)"),
        );
        cx.record(
            "answers.signed",
            t,
            skip("no answer arrived (see answers.*)"),
        );
        return;
    };
    // Whether a Fault should have come is for answers.known-bsn/unknown-bsn to say; here a Fault
    // is judged as addressed when it carries the Fault Action.
    let action = if r.body.is(Some(NS_SOAP11), "Fault") {
        o.service.fault_action()
    } else {
        o.service.response_action()
    };
    let v = match addressing(cx, &r, &b, &[action]) {
        Ok(()) => pass("MessageID, RelatesTo, Action and To as Transactiestandaard 4.0 asks"),
        Err(e) => fail(e),
    };
    cx.record("answers.addressing", t, v);
    let t = Instant::now();
    let v = match verify(cx, &r, b.signature.as_deref(), false) {
        Ok(oin) => pass(format!(
            "signed by OIN {oin}{}",
            if b.signature.is_some() {
                ", SignatureConfirmation matches"
            } else {
                ""
            }
        )),
        Err(e) => fail(format!("the answer's signature is refused: {e}")),
    };
    cx.record("answers.signed", t, v);
}

/// `answers.to-oin`: Suwinet clients address the provider as `URL?oin=<its OIN>`; the endpoint
/// must take that as its own address and answer From = that To.
async fn to_oin(cx: &Ctx<'_>) -> (Verdict, String) {
    let o = cx.o;
    let Some(oin) = cx.server_oin.as_deref() else {
        return skip("the server certificate's OIN is not known (see tls.oin)");
    };
    if o.url.contains('?') {
        return skip("the URL already has a query");
    }
    let bsn = match o.service {
        Service::Gsd => o.unknown_bsn.as_str(),
        Service::Verwijsindex => match o.bsns.first() {
            Some(b) => b.as_str(),
            None => return skip("no --bsn given"),
        },
    };
    let to = format!("{}?oin={oin}", o.url);
    let b = match requests::build_to(o, bsn, Variant::Normal, &to) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot build the request: {e}")),
    };
    let r = match cx.post(&b).await.and_then(|a| read(&a)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    // Whether the answer's content is right is judged by answers.*: here only that the address
    // was taken as the endpoint's own.
    if r.body.is(Some(NS_SOAP11), "Fault") {
        return fail(format!(
            "wsa:To {to:?} (the URL with the server's own OIN) was refused: {}",
            fault_text(&r.body)
        ));
    }
    match header_text(&r, "From") {
        Some(from) if from == to => pass(format!("answered, From = {to}")),
        Some(from) => fail(format!(
            "answered, but wsa:From is {from:?}, not the request's wsa:To {to:?}"
        )),
        None => fail(format!(
            "answered wsa:To {to:?} without wsa:From/Address (it must be that To)"
        )),
    }
}

fn tail(bsn: &str) -> &str {
    bsn.get(6..).unwrap_or(bsn)
}

/// A known BSN's answer: a schema-valid ClientSuwi for that BSN (GSD), an Acknowledgement (VI).
fn judge_known(o: &CheckOptions, r: &Read, bsn: &str) -> Result<(), String> {
    if r.body.is(Some(NS_SOAP11), "Fault") {
        return Err(format!("answered with a Fault: {}", fault_text(&r.body)));
    }
    match o.service {
        Service::Verwijsindex => match crate::suwiml::verwijsindex::parse_response(&r.body) {
            Ok(crate::suwiml::verwijsindex::Answer::Acknowledgement) => Ok(()),
            Ok(crate::suwiml::verwijsindex::Answer::Fwi(m)) => Err(format!(
                "the update was refused with FWI {}",
                m.iter()
                    .map(|m| format!("{} {}", m.code, m.tekst))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => Err(e),
        },
        Service::Gsd => {
            if !r
                .body
                .is(Some(crate::xml::NS_GSD), "GSDReintegratieInfoResponse")
            {
                return Err(format!(
                    "the body is {}, not GSDReintegratieInfoResponse",
                    r.body.qname()
                ));
            }
            let Some(c) = r.body.elements().next() else {
                return Err("GSDReintegratieInfoResponse is empty".into());
            };
            if !c.is(None, "ClientSuwi") {
                return Err(format!(
                    "expected an unqualified ClientSuwi, found {}",
                    c.qname()
                ));
            }
            if let Some(q) = qualified(c) {
                return Err(format!("{q} inside ClientSuwi is namespace-qualified; children are unqualified in the schema"));
            }
            let p = crate::suwiml::gsd::read_client(c).map_err(|errs| {
                format!(
                    "ClientSuwi does not follow the schema: {}",
                    errs.first().map(|(_, e)| e.to_string()).unwrap_or_default()
                )
            })?;
            p.validate().map_err(|errs| {
                format!(
                    "ClientSuwi breaks a facet of the schema: {}",
                    errs.first().map(|e| e.to_string()).unwrap_or_default()
                )
            })?;
            if p.bsn.as_str() != bsn {
                return Err(format!(
                    "ClientSuwi is about another BSN (…{})",
                    tail(p.bsn.as_str())
                ));
            }
            Ok(())
        }
    }
}

/// The first descendant of `e` in a namespace, by qualified name.
fn qualified(e: &Element) -> Option<String> {
    for c in e.elements() {
        if c.ns.is_some() {
            return Some(c.qname());
        }
        if let Some(q) = qualified(c) {
            return Some(q);
        }
    }
    None
}

fn judge_unknown(r: &Read) -> (Verdict, String) {
    if r.body.is(Some(NS_SOAP11), "Fault") {
        return fail(format!(
            "a valid BSN without data got a Fault: {} (expected fwi:NietsGevonden)",
            fault_text(&r.body)
        ));
    }
    let kids: Vec<&Element> = r.body.elements().collect();
    match kids.as_slice() {
        [k] if k.is(Some(NS_FWI), "NietsGevonden") && r.body.is(Some(crate::xml::NS_GSD), "GSDReintegratieInfoResponse") => {
            pass("answered fwi:NietsGevonden")
        }
        _ => fail(format!(
            "a valid BSN without data must be answered GSDReintegratieInfoResponse with only fwi:NietsGevonden; got {} with {}",
            r.body.qname(),
            kids.iter().map(|k| k.qname()).collect::<Vec<_>>().join(" ")
        )),
    }
}

fn fault_text(f: &Element) -> String {
    let code = f
        .elements()
        .find(|c| c.local == "detail")
        .and_then(|d| crate::soap::client::find_text(d, "Code"));
    format!(
        "{}{} {}",
        crate::soap::client::find_text(f, "faultcode")
            .unwrap_or_default()
            .trim(),
        code.map(|c| format!(" code {}", c.trim()))
            .unwrap_or_default(),
        crate::soap::client::find_text(f, "faultstring")
            .unwrap_or_default()
            .trim()
    )
}

/// How an error or security case must be answered.
struct Expect {
    /// RelatesTo must name the request's MessageID (it could be read).
    addressed: bool,
    /// The fault must be signed.
    signed: bool,
}

/// Judges the answer to a request that must be refused: a SOAP 1.1 Fault (HTTP 500) with an
/// `fwi:Fout` in its detail, and as `e` asks addressed and signed.
fn judge_fault(
    cx: &Ctx<'_>,
    a: Result<HttpAnswer, String>,
    b: &Built,
    e: &Expect,
) -> (Verdict, String) {
    let a = match a {
        Ok(a) => a,
        Err(err) => {
            return fail(format!(
                "no SOAP answer: {err}; a refusal must be a SOAP 1.1 Fault"
            ))
        }
    };
    let r = match read(&a) {
        Ok(r) => r,
        Err(err) => return fail(err),
    };
    if !r.body.is(Some(NS_SOAP11), "Fault") {
        return fail(format!(
            "the request was answered with {} (HTTP {}) instead of a SOAP 1.1 Fault",
            r.body.qname(),
            r.status
        ));
    }
    let mut wrong = Vec::new();
    let fout = r
        .body
        .elements()
        .find(|c| c.local == "detail" && c.ns.is_none())
        .and_then(|d| d.elements().find(|c| c.is(Some(NS_FWI), "Fout")).cloned());
    if fout.is_none() {
        wrong.push("its detail has no fwi:Fout".to_owned());
    }
    if r.status != 500 {
        wrong.push(format!(
            "it came with HTTP {} (SOAP 1.1 faults use 500)",
            r.status
        ));
    }
    if e.addressed {
        match header_text(&r, "RelatesTo") {
            Some(v) if v == b.message_id => {}
            Some(v) => wrong.push(format!(
                "its wsa:RelatesTo {v:?} is not the request's MessageID"
            )),
            None => wrong.push("it has no wsa:RelatesTo".to_owned()),
        }
    }
    if e.signed {
        if let Err(err) = verify(cx, &r, b.signature.as_deref(), true) {
            wrong.push(format!("its signature is refused: {err}"));
        }
    }
    let what = fault_text(&r.body);
    if wrong.is_empty() {
        pass(format!("refused: {what}"))
    } else {
        fail(format!("the Fault ({what}) is wrong: {}", wrong.join("; ")))
    }
}

async fn check_errors(cx: &mut Ctx<'_>) {
    let cases: [(&'static str, Variant, bool); 7] = [
        ("errors.malformed-bsn", Variant::Bsn("12345678"), true),
        ("errors.eleven-test", Variant::Bsn("123456789"), true),
        ("errors.not-xml", Variant::NotXml, false),
        ("errors.soap12", Variant::Soap12, false),
        ("errors.soapaction", Variant::SoapAction, true),
        ("errors.action", Variant::WrongAction, true),
        ("errors.message-id", Variant::NoMessageId, false),
    ];
    for (name, variant, addressed) in cases {
        let t = Instant::now();
        let v = match requests::build(cx.o, &cx.o.unknown_bsn, variant) {
            Err(e) => fail(format!("cannot build the request: {e}")),
            Ok(b) => {
                let a = cx.post(&b).await;
                judge_fault(
                    cx,
                    a,
                    &b,
                    &Expect {
                        addressed,
                        signed: true,
                    },
                )
            }
        };
        cx.record(name, t, v);
    }
    let t = Instant::now();
    let v = match requests::build(cx.o, &cx.o.unknown_bsn, Variant::Normal) {
        Err(e) => fail(format!("cannot build the request: {e}")),
        Ok(b) => {
            let a = requests::oversized(cx, &b).await;
            let v = judge_fault(
                cx,
                a,
                &b,
                &Expect {
                    addressed: false,
                    signed: true,
                },
            );
            match v {
                (Verdict::Fail, why) => fail(format!("{} bytes: {why}", cx.o.oversized_bytes)),
                v => v,
            }
        }
    };
    cx.record("errors.oversized", t, v);
}

async fn check_security(cx: &mut Ctx<'_>) {
    let cases: [(&'static str, Variant); 10] = [
        ("security.unsigned", Variant::Unsigned),
        ("security.tampered-body", Variant::TamperedBody),
        ("security.tampered-to", Variant::TamperedTo),
        ("security.sha1", Variant::Sha1),
        ("security.expired", Variant::Expired),
        ("security.future", Variant::Future),
        ("security.no-timestamp", Variant::NoTimestamp),
        ("security.wrapping", Variant::Wrapping),
        ("security.duplicate-id", Variant::DuplicateId),
        ("security.untrusted-ca", Variant::UntrustedCa),
    ];
    let any = Expect {
        addressed: false,
        signed: false,
    };
    for (name, variant) in cases {
        let t = Instant::now();
        if cx.o.signer.is_none() && name != "security.unsigned" {
            cx.record(name, t, skip("requests are unsigned (--unsigned)"));
            continue;
        }
        let v = match requests::build(cx.o, &cx.o.unknown_bsn, variant) {
            Err(e) => skip(format!("cannot build the request: {e}")),
            Ok(b) => {
                let a = cx.post(&b).await;
                judge_fault(cx, a, &b, &any)
            }
        };
        cx.record(name, t, v);
    }
    // security.replay: the same signed request twice; the first must be answered.
    let t = Instant::now();
    let v = if cx.o.signer.is_none() {
        skip("requests are unsigned (--unsigned)")
    } else {
        match requests::build(cx.o, &cx.o.unknown_bsn, Variant::Normal) {
            Err(e) => fail(format!("cannot build the request: {e}")),
            Ok(b) => match cx.post(&b).await.and_then(|a| read(&a)) {
                Err(e) => fail(format!("the first copy got no usable answer: {e}")),
                Ok(r) if r.body.is(Some(NS_SOAP11), "Fault") => fail(format!(
                    "the first copy was already refused ({}), so a replay cannot be told apart",
                    fault_text(&r.body)
                )),
                Ok(_) => {
                    let a = cx.post(&b).await;
                    match judge_fault(cx, a, &b, &any) {
                        (Verdict::Fail, why) => {
                            fail(format!("the second copy was not refused: {why}"))
                        }
                        v => v,
                    }
                }
            },
        }
    };
    cx.record("security.replay", t, v);
}

async fn check_timing(cx: &mut Ctx<'_>) {
    let t = Instant::now();
    let mut times = Vec::with_capacity(cx.o.requests);
    let bsn = cx.o.bsns.first().unwrap_or(&cx.o.unknown_bsn).clone();
    for _ in 0..cx.o.requests {
        let b = match requests::build(cx.o, &bsn, Variant::Normal) {
            Ok(b) => b,
            Err(e) => {
                cx.record(
                    "timing.latency",
                    t,
                    fail(format!("cannot build the request: {e}")),
                );
                return;
            }
        };
        let started = Instant::now();
        // Only a SOAP answer is timed: a quick 503 or error page is no answer the IB can use.
        match cx.post(&b).await.and_then(|a| read(&a)) {
            Ok(_) => times.push(started.elapsed()),
            Err(e) => {
                cx.record(
                    "timing.latency",
                    t,
                    fail(format!(
                        "request {} of {} failed: {e}",
                        times.len() + 1,
                        cx.o.requests
                    )),
                );
                return;
            }
        }
    }
    times.sort();
    let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let (p50, p99) = (at(0.50), at(0.99));
    let text = format!(
        "p50 {} ms, p99 {} ms over {} requests (each on a new connection)",
        p50.as_millis(),
        p99.as_millis(),
        times.len()
    );
    let v = if p99 > cx.o.slow {
        (
            Verdict::Warn,
            format!(
                "{text}: p99 above {} ms; the IB gives up after its route timeout",
                cx.o.slow.as_millis()
            ),
        )
    } else {
        pass(text)
    };
    cx.record("timing.latency", t, v);
}

/// The report as an aligned table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    if !r.connected {
        s.push_str(&format!(
            "dkd check {}: {}\n",
            r.url,
            r.connect_error.as_deref().unwrap_or("could not connect")
        ));
        return s;
    }
    let w = r.outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in &r.outcomes {
        s.push_str(&format!(
            "{:<w$}  {:<4}  {}\n",
            o.name,
            o.verdict.label().to_ascii_uppercase(),
            o.reason
        ));
    }
    s.push_str(&summary(r));
    s.push('\n');
    s
}

/// One line: `33 checks: 30 passed, 1 warning, 2 skipped, 0 failed`.
pub fn summary(r: &Report) -> String {
    let n = |v| r.outcomes.iter().filter(|o| o.verdict == v).count();
    format!(
        "{} checks: {} passed, {} warning(s), {} skipped, {} failed",
        r.outcomes.len(),
        n(Verdict::Pass),
        n(Verdict::Warn),
        n(Verdict::Skip),
        n(Verdict::Fail)
    )
}

/// The report as JSON.
pub fn json(r: &Report) -> String {
    let checks: Vec<serde_json::Value> = r
        .outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name,
                "verdict": o.verdict.label(),
                "reason": o.reason,
                "ms": o.duration.as_millis() as u64,
            })
        })
        .collect();
    let v = serde_json::json!({
        "url": r.url,
        "service": match r.service { Service::Gsd => "gsd", Service::Verwijsindex => "verwijsindex" },
        "connected": r.connected,
        "error": r.connect_error,
        "exit_code": r.exit_code(),
        "checks": checks,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// The report as JUnit XML: one testcase per check (class = its group), `failure` for a failed
/// check, `skipped` for a skipped one, a warning as `system-out` of a passed one. A run that could
/// not connect is one failed testcase `connect`.
pub fn junit(r: &Report) -> String {
    use crate::xml::{escape, escape_attr};
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let n = |v| r.outcomes.iter().filter(|o| o.verdict == v).count();
    let total: f64 = r.outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let (tests, failures) = if r.connected {
        (r.outcomes.len(), n(Verdict::Fail))
    } else {
        (1, 1)
    };
    s.push_str("<testsuites><testsuite name=\"dkd check ");
    escape_attr(&r.url, &mut s);
    s.push_str(&format!(
        "\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{}\" time=\"{total:.3}\">\n",
        n(Verdict::Skip)
    ));
    if !r.connected {
        s.push_str(
            "  <testcase classname=\"dkd.check\" name=\"connect\" time=\"0\"><failure message=\"",
        );
        escape_attr(
            r.connect_error.as_deref().unwrap_or("could not connect"),
            &mut s,
        );
        s.push_str("\"/></testcase>\n");
    }
    for o in &r.outcomes {
        let group = o.name.split('.').next().unwrap_or("");
        s.push_str(&format!(
            "  <testcase classname=\"dkd.check.{group}\" name=\""
        ));
        escape_attr(o.name, &mut s);
        s.push_str(&format!("\" time=\"{:.3}\">", o.duration.as_secs_f64()));
        match o.verdict {
            Verdict::Fail => {
                s.push_str("<failure message=\"");
                escape_attr(&o.reason, &mut s);
                s.push_str("\"/>");
            }
            Verdict::Skip => {
                s.push_str("<skipped message=\"");
                escape_attr(&o.reason, &mut s);
                s.push_str("\"/>");
            }
            Verdict::Warn => {
                s.push_str("<system-out>WARNING: ");
                escape(&o.reason, &mut s);
                s.push_str("</system-out>");
            }
            Verdict::Pass => {
                s.push_str("<system-out>");
                escape(&o.reason, &mut s);
                s.push_str("</system-out>");
            }
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("</testsuite></testsuites>\n");
    s
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
