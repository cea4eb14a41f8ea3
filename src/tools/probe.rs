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
use crate::http::inspect::{self, authority, HttpAnswer, Progress};
use crate::http::tls;
use crate::soap::wssec::{SecurityError, Signer, Verified, VerifyPolicy};
use crate::xml::{Element, NS_FWI, NS_GSD, NS_SOAP11, NS_WSA};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A valid BSN (11-test) that no register holds: `NietsGevonden` is the healthy answer.
pub const DEFAULT_BSN: &str = "123456782";
/// `--warning-days` default.
pub const DEFAULT_WARNING_DAYS: i64 = 30;
/// `--critical-days` default.
pub const DEFAULT_CRITICAL_DAYS: i64 = 7;
/// `--timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are not read to the end.
const MAX_RESPONSE: usize = 10 * 1024 * 1024;
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

/// The findings of one probe; the summary lists them worst first.
struct Findings(Vec<(Status, String)>);

impl Findings {
    fn add(&mut self, status: Status, text: impl Into<String>) {
        self.0.push((status, text.into()));
    }

    fn finish(mut self, r: &mut ProbeResult) {
        // Stable: equally bad findings keep their order.
        self.0.sort_by_key(|f| std::cmp::Reverse(f.0));
        r.status = self.0.first().map_or(Status::Ok, |f| f.0);
        let texts: Vec<&str> = self.0.iter().map(|f| f.1.as_str()).collect();
        r.summary = one_line(&texts.join(", "));
    }
}

/// Performs the probe. Never panics on what the server sends; every problem is a finding.
pub async fn probe(opts: ProbeOptions) -> ProbeResult {
    let mut r = ProbeResult::new(&opts.url, opts.warning_days, opts.critical_days);
    let mut f = Findings(Vec::new());
    let unknown = |why: String| ProbeResult {
        url: opts.url.clone(),
        warning_days: opts.warning_days,
        critical_days: opts.critical_days,
        ..ProbeResult::unknown(why)
    };
    if let Err(e) = check_arguments(&opts) {
        return unknown(e);
    }
    let Ok((host, port, path)) = split_url(&opts.url) else {
        return unknown(format!("bad URL {:?}", opts.url));
    };

    let now = time::OffsetDateTime::now_utc();
    if let Some(d) = opts
        .client_cert
        .as_deref()
        .and_then(|c| crate::certs::days_left(c, now).ok())
    {
        r.client_cert_days_left = Some(d);
        let s = days_status(d, &opts);
        if s != Status::Ok {
            f.add(
                s,
                format!(
                    "our client certificate {}",
                    days_text(d, s, &opts).trim_start_matches("certificate ")
                ),
            );
        }
    }

    // Sign (RSA: on the blocking pool, like every signature in dkd).
    let message_id = crate::soap::new_message_id();
    let request = {
        let (signer, url, oin, bsn, id) = (
            opts.signer.clone(),
            opts.url.clone(),
            opts.from_oin.clone(),
            opts.bsn.clone(),
            message_id.clone(),
        );
        let signed = tokio::task::spawn_blocking(move || {
            crate::soap::signed_request(&signer, &url, &oin, &bsn, &id, now)
        })
        .await;
        match signed {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return unknown(format!("cannot sign the request: {e}")),
            Err(e) => return unknown(format!("cannot sign the request: {e}")),
        }
    };
    let request_sig = crate::soap::client::signature_value(&request);

    // The exchange, within the timeout; what was learnt before a failure is kept.
    let mut progress = Progress::default();
    let started = Instant::now();
    let addr = authority(&host, port);
    let outcome = tokio::time::timeout(
        opts.timeout,
        exchange(&opts, &host, port, &path, request, &mut progress),
    )
    .await;
    let elapsed = started.elapsed();
    // Reported after the answer: the status line reads answer, signature, certificate (the
    // worst finding moves to the front anyway).
    let cert_finding = progress.peer_leaf.as_deref().map(|leaf| {
        r.server_oin = crate::certs::oin_of(leaf).ok().flatten();
        match crate::certs::days_left(leaf, time::OffsetDateTime::now_utc()) {
            Ok(d) => {
                r.cert_days_left = Some(d);
                let s = days_status(d, &opts);
                (s, days_text(d, s, &opts))
            }
            Err(e) => (
                Status::Critical,
                format!("the server certificate cannot be read: {e}"),
            ),
        }
    });
    let answer = match outcome {
        Err(_) => {
            f.add(
                Status::Critical,
                format!(
                    "no answer within {} ({})",
                    secs(opts.timeout),
                    progress.stage.describe(&addr)
                ),
            );
            f.0.extend(cert_finding);
            f.finish(&mut r);
            return r;
        }
        Ok(Err(e)) => {
            f.add(Status::Critical, e);
            f.0.extend(cert_finding);
            f.finish(&mut r);
            return r;
        }
        Ok(Ok(a)) => a,
    };
    r.duration = Some(elapsed);
    r.http_status = Some(answer.status);
    r.response_size = Some(answer.body.len());

    judge(
        &opts,
        &mut r,
        &mut f,
        answer,
        &message_id,
        request_sig,
        elapsed,
    )
    .await;
    f.0.extend(cert_finding);
    f.finish(&mut r);
    r
}

fn check_arguments(opts: &ProbeOptions) -> Result<(), String> {
    split_url(&opts.url)
        .map_err(|_| format!("bad URL {:?}: expected https://host[:port]/path", opts.url))?;
    if opts.bsn.len() != 9 || !opts.bsn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("--bsn {:?} is not 9 digits", opts.bsn));
    }
    if opts.warning_days < opts.critical_days {
        return Err(format!(
            "--warning-days ({}) must not be below --critical-days ({})",
            opts.warning_days, opts.critical_days
        ));
    }
    if opts.timeout.is_zero() {
        return Err("--timeout must be more than 0".into());
    }
    Ok(())
}

fn days_status(days: i64, opts: &ProbeOptions) -> Status {
    if days < opts.critical_days {
        Status::Critical
    } else if days < opts.warning_days {
        Status::Warning
    } else {
        Status::Ok
    }
}

fn days_text(days: i64, s: Status, opts: &ProbeOptions) -> String {
    match s {
        _ if days < 0 => format!("certificate expired {} days ago", -days),
        Status::Critical => format!(
            "certificate {days} days left (critical below {})",
            opts.critical_days
        ),
        Status::Warning => format!(
            "certificate {days} days left (warning below {})",
            opts.warning_days
        ),
        _ => format!("certificate {days} days left"),
    }
}

async fn exchange(
    opts: &ProbeOptions,
    host: &str,
    port: u16,
    path: &str,
    request: String,
    progress: &mut Progress,
) -> Result<HttpAnswer, String> {
    inspect::exchange(
        opts.tls.clone(),
        inspect::Exchange {
            method: "POST",
            host,
            port,
            path,
            headers: &[
                ("content-type", "text/xml; charset=utf-8"),
                ("soapaction", "\"\""),
                (
                    "user-agent",
                    concat!("dkd-probe/", env!("CARGO_PKG_VERSION")),
                ),
            ],
            body: request.into_bytes(),
            limit: MAX_RESPONSE,
        },
        progress,
    )
    .await
    .map_err(|e| e.text)
}

/// Judges a response that arrived: SOAP structure, answer, correlation, signature.
async fn judge(
    opts: &ProbeOptions,
    r: &mut ProbeResult,
    f: &mut Findings,
    answer: HttpAnswer,
    message_id: &str,
    request_sig: Option<String>,
    elapsed: Duration,
) {
    let ms = elapsed.as_millis();
    let media = answer
        .content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "no Content-Type".into());
    let not_soap =
        |why: &str| format!("not a SOAP response (HTTP {}, {media}){why}", answer.status);
    let doc = match crate::xml::parse(&answer.body) {
        Ok(d) if d.is(Some(NS_SOAP11), "Envelope") => d,
        Ok(d) if d.local == "Envelope" => {
            f.add(
                Status::Critical,
                not_soap(&format!(": the envelope is {}, not SOAP 1.1", d.qname())),
            );
            return;
        }
        _ => {
            f.add(Status::Critical, not_soap(""));
            return;
        }
    };
    let header = doc.elements().find(|e| e.is(Some(NS_SOAP11), "Header"));
    let body = doc.elements().find(|e| e.is(Some(NS_SOAP11), "Body"));

    // The answer.
    let first = body.and_then(|b| b.elements().next());
    match first {
        None => {
            r.answer = Some(Answer::Other);
            f.add(
                Status::Critical,
                format!("empty soapenv:Body (HTTP {}, {ms} ms)", answer.status),
            );
        }
        Some(e) if e.is(Some(NS_SOAP11), "Fault") => {
            r.answer = Some(Answer::Fault);
            let faultcode = child_text(e, "faultcode").unwrap_or_else(|| "?".into());
            let faultstring = child_text(e, "faultstring").unwrap_or_default();
            let code = e
                .elements()
                .find(|c| c.local == "detail")
                .and_then(|d| find(d, "Code"))
                .map(|c| c.text().trim().to_owned());
            let mut text = format!("SOAP Fault {}", faultcode.trim());
            if let Some(c) = &code {
                text.push_str(&format!(" code {c}"));
            }
            if !faultstring.trim().is_empty() {
                text.push_str(&format!(": {}", quoted(&faultstring)));
            }
            text.push_str(&format!(" (HTTP {}, {ms} ms)", answer.status));
            r.code = code;
            f.add(Status::Critical, text);
        }
        Some(e) if e.is(Some(NS_GSD), "GSDReintegratieInfoResponse") => {
            judge_response(opts, r, f, e, answer.status, ms);
        }
        Some(e) => {
            r.answer = Some(Answer::Other);
            f.add(
                Status::Critical,
                format!(
                    "unexpected answer {} (HTTP {}, {ms} ms)",
                    e.qname(),
                    answer.status
                ),
            );
        }
    }

    // WS-Addressing correlation.
    let relates_to = header.and_then(|h| h.elements().find(|e| e.is(Some(NS_WSA), "RelatesTo")));
    match relates_to.map(|e| e.text().trim().to_owned()) {
        None => {
            r.relates_to_matches = Some(false);
            f.add(Status::Critical, "no wsa:RelatesTo in the response");
        }
        Some(v) if v == message_id => r.relates_to_matches = Some(true),
        Some(v) => {
            r.relates_to_matches = Some(false);
            f.add(
                Status::Critical,
                format!(
                    "wsa:RelatesTo {} is not our MessageID {message_id}",
                    quoted(&v)
                ),
            );
        }
    }

    // The signature, on the blocking pool.
    let is_fault = r.answer == Some(Answer::Fault);
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let trust = opts.response_trust.clone();
    let checked = tokio::task::spawn_blocking(move || {
        verify_signature(trust, &text, request_sig.as_deref(), is_fault)
    })
    .await
    .unwrap_or_else(|e| Err(SecurityError::Invalid(format!("verification aborted: {e}"))));
    match checked {
        Ok(v) => {
            r.signature_valid = Some(true);
            f.add(Status::Ok, "signature valid");
            r.signer_oin = Some(v.signer_oin);
        }
        Err(e) => {
            r.signature_valid = Some(false);
            f.add(
                Status::Critical,
                format!("response signature invalid: {}", quoted(&e.to_string())),
            );
        }
    }
}

/// Judges the children of `GSDReintegratieInfoResponse`: `ClientSuwi` (with optional `fwi:FWI`),
/// `fwi:NietsGevonden`, or `fwi:FWI`.
fn judge_response(
    opts: &ProbeOptions,
    r: &mut ProbeResult,
    f: &mut Findings,
    e: &Element,
    http: u16,
    ms: u128,
) {
    let kids: Vec<&Element> = e.elements().collect();
    let fwi = kids.iter().find(|k| k.is(Some(NS_FWI), "FWI"));
    let answered = |what: &str| format!("GSDReintegratieInfo answered {what} in {ms} ms");
    let mut status = Status::Ok;
    let mut text = match kids.first() {
        Some(k) if k.is(None, "ClientSuwi") => {
            r.answer = Some(Answer::ClientSuwi);
            match crate::suwiml::gsd::read_client(k) {
                Ok(p) if p.bsn.as_str() == opts.bsn => answered("ClientSuwi"),
                Ok(p) => {
                    status = Status::Critical;
                    format!(
                        "GSDReintegratieInfo answered ClientSuwi for another BSN (…{}) in {ms} ms",
                        &p.bsn.as_str()[6..]
                    )
                }
                Err(errs) => {
                    status = Status::Critical;
                    let first = errs.first().map(|(_, e)| e.to_string()).unwrap_or_default();
                    format!(
                        "GSDReintegratieInfo answered a ClientSuwi that does not follow the schema ({}) in {ms} ms",
                        quoted(&first)
                    )
                }
            }
        }
        Some(k) if k.is(Some(NS_FWI), "NietsGevonden") && kids.len() == 1 => {
            r.answer = Some(Answer::NietsGevonden);
            answered("NietsGevonden")
        }
        Some(k) if k.is(Some(NS_FWI), "FWI") && kids.len() == 1 => {
            r.answer = Some(Answer::Fwi);
            answered("FWI")
        }
        _ => {
            r.answer = Some(Answer::Other);
            status = Status::Critical;
            let names: Vec<String> = kids.iter().map(|k| k.qname()).collect();
            format!(
                "GSDReintegratieInfoResponse does not follow the schema (children: {}) in {ms} ms",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(" ")
                }
            )
        }
    };
    // FWI messages: a Fout alone means the request was not answered; with ClientSuwi, a Fout or
    // Waarschuwing means part of the data is missing. Informatie is fine.
    if let Some(fwi) = fwi {
        let worst = ["Fout", "Waarschuwing", "Informatie"]
            .iter()
            .find_map(|lvl| fwi.elements().find(|m| m.local == *lvl));
        if let Some(m) = worst {
            let code = child_text(m, "Code").map(|c| c.trim().to_owned());
            let tekst = child_text(m, "Tekst").unwrap_or_default();
            text.push_str(&format!(" with FWI {}", m.local));
            if let Some(c) = &code {
                text.push_str(&format!(" code {c}"));
            }
            if !tekst.trim().is_empty() {
                text.push_str(&format!(": {}", quoted(&tekst)));
            }
            let s = match (m.local.as_str(), r.answer) {
                ("Fout", Some(Answer::Fwi)) => Status::Critical,
                ("Fout" | "Waarschuwing", _) => Status::Warning,
                _ => Status::Ok,
            };
            status = status.max(s);
            r.code = code;
        } else if r.answer == Some(Answer::Fwi) {
            status = Status::Critical;
            text.push_str(" without any message");
        }
    }
    if http != 200 {
        status = Status::Critical;
        text.push_str(&format!(" but with HTTP {http}"));
    }
    f.add(status, text);
}

fn verify_signature(
    trust: Arc<crate::soap::wssec::SignerTrust>,
    body: &str,
    request_sig: Option<&str>,
    is_fault: bool,
) -> Result<Verified, SecurityError> {
    VerifyPolicy::for_answers(
        trust,
        time::Duration::seconds(120),
        time::Duration::seconds(300),
    )
    .verify_answer(body, request_sig, is_fault, time::OffsetDateTime::now_utc())
}

fn child_text(e: &Element, local: &str) -> Option<String> {
    e.elements().find(|c| c.local == local).map(|c| c.text())
}

fn find<'a>(e: &'a Element, local: &str) -> Option<&'a Element> {
    if e.local == local {
        return Some(e);
    }
    e.elements().find_map(|c| find(c, local))
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

/// The Nagios status line: `DKD OK - summary | perfdata`. Perfdata (`time`, `cert_days` with its
/// thresholds in Nagios range syntax, `size`) is given for what was measured.
pub fn nagios_line(r: &ProbeResult) -> String {
    let mut s = format!("DKD {} - {}", r.status.label(), r.summary);
    let mut perf = Vec::new();
    if let Some(d) = r.duration {
        perf.push(format!("time={:.3}s;;;0", d.as_secs_f64()));
    }
    if let Some(days) = r.cert_days_left {
        // "30:" = alert when below 30 (Nagios range syntax).
        perf.push(format!(
            "cert_days={days};{}:;{}:",
            r.warning_days, r.critical_days
        ));
    }
    if let Some(n) = r.response_size {
        perf.push(format!("size={n}B;;;0"));
    }
    if !perf.is_empty() {
        s.push_str(" | ");
        s.push_str(&perf.join(" "));
    }
    s
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// The result as Prometheus text-format metrics (e.g. for node_exporter's textfile collector).
/// Metrics whose value was not measured are left out.
pub fn prometheus(r: &ProbeResult) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(o, "{name}{labels} {value}");
        }
    };
    let one = |v: &str| vec![(String::new(), v.to_owned())];
    let flag = |b: bool| if b { "1" } else { "0" };
    gauge(
        "dkd_probe_success",
        "Whether the GSDReintegratieInfo transaction succeeded (status OK or WARNING).",
        &one(flag(r.success())),
    );
    let statuses: Vec<(String, String)> = Status::ALL
        .iter()
        .map(|s| {
            (
                format!("{{status=\"{}\"}}", s.label().to_ascii_lowercase()),
                flag(*s == r.status).to_owned(),
            )
        })
        .collect();
    gauge(
        "dkd_probe_status",
        "The probe's verdict: 1 for the current status.",
        &statuses,
    );
    gauge(
        "dkd_probe_exit_code",
        "The Nagios exit code of the verdict (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
        &one(&r.status.exit_code().to_string()),
    );
    if let Some(d) = r.duration {
        gauge(
            "dkd_probe_duration_seconds",
            "From connecting to the last byte of the response.",
            &one(&format!("{:.6}", d.as_secs_f64())),
        );
    }
    if let Some(d) = r.cert_days_left {
        gauge(
            "dkd_probe_cert_days_left",
            "Whole days until the server's TLS certificate expires.",
            &one(&d.to_string()),
        );
    }
    if let Some(d) = r.client_cert_days_left {
        gauge(
            "dkd_probe_client_cert_days_left",
            "Whole days until the probe's own TLS client certificate expires.",
            &one(&d.to_string()),
        );
    }
    if let Some(v) = r.signature_valid {
        gauge(
            "dkd_probe_signature_valid",
            "Whether the response's WS-Security signature and SignatureConfirmation verified.",
            &one(flag(v)),
        );
    }
    if let Some(v) = r.relates_to_matches {
        gauge(
            "dkd_probe_relates_to_matches",
            "Whether wsa:RelatesTo equals the request's MessageID.",
            &one(flag(v)),
        );
    }
    if let Some(v) = r.http_status {
        gauge(
            "dkd_probe_http_status_code",
            "HTTP status of the response.",
            &one(&v.to_string()),
        );
    }
    if let Some(v) = r.response_size {
        gauge(
            "dkd_probe_response_size_bytes",
            "Size of the response body.",
            &one(&v.to_string()),
        );
    }
    gauge(
        "dkd_probe_info",
        "The probed URL, the kind of answer and its fault or FWI code.",
        &[(
            format!(
                "{{url=\"{}\",answer=\"{}\",code=\"{}\"}}",
                label(&r.url),
                r.answer.map_or("", Answer::name),
                label(r.code.as_deref().unwrap_or(""))
            ),
            "1".to_owned(),
        )],
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> ProbeResult {
        let mut r = ProbeResult::new("https://127.0.0.1:1/x", 30, 7);
        r.summary =
            "GSDReintegratieInfo answered NietsGevonden in 12 ms, signature valid, certificate 300 days left".into();
        r.duration = Some(Duration::from_millis(12));
        r.cert_days_left = Some(300);
        r.response_size = Some(4321);
        r.signature_valid = Some(true);
        r.answer = Some(Answer::NietsGevonden);
        r
    }

    #[test]
    fn nagios_line_has_summary_and_perfdata() {
        assert_eq!(
            nagios_line(&result()),
            "DKD OK - GSDReintegratieInfo answered NietsGevonden in 12 ms, signature valid, \
             certificate 300 days left | time=0.012s;;;0 cert_days=300;30:;7: size=4321B;;;0"
        );
        let u = ProbeResult::unknown("ca.pem: no such file | x\ny");
        assert_eq!(nagios_line(&u), "DKD UNKNOWN - ca.pem: no such file / x y");
        assert_eq!(u.status.exit_code(), 3);
    }

    /// Compile-time: the probe can be spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    fn probe_future_is_send(o: ProbeOptions) {
        fn send<T: Send>(_: &T) {}
        send(&probe(o));
    }

    #[test]
    fn findings_are_sorted_worst_first() {
        let mut r = ProbeResult::new("u", 30, 7);
        let mut f = Findings(Vec::new());
        f.add(Status::Ok, "a");
        f.add(Status::Warning, "b");
        f.add(Status::Critical, "c");
        f.add(Status::Ok, "d");
        f.finish(&mut r);
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.summary, "c, b, a, d");
    }

    #[test]
    fn prometheus_output_has_the_metrics() {
        let p = prometheus(&result());
        for line in [
            "dkd_probe_success 1",
            "dkd_probe_status{status=\"ok\"} 1",
            "dkd_probe_status{status=\"critical\"} 0",
            "dkd_probe_duration_seconds 0.012000",
            "dkd_probe_cert_days_left 300",
            "dkd_probe_signature_valid 1",
            "dkd_probe_info{url=\"https://127.0.0.1:1/x\",answer=\"NietsGevonden\",code=\"\"} 1",
        ] {
            assert!(p.lines().any(|l| l == line), "{line} missing in\n{p}");
        }
        assert!(!p.contains("dkd_probe_http_status_code"));
    }

    #[test]
    fn io_text_drops_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(111);
        let t = crate::http::inspect::io_text(&e);
        assert!(!t.contains("os error"), "{t}");
        assert_eq!(one_line("a|b\r\nc"), "a/b  c");
        assert_eq!(quoted(&"x".repeat(300)).chars().count(), MAX_QUOTED + 1);
    }
}
