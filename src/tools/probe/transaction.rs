//! The transaction: the request, the exchange and the findings on what came back.

use super::{one_line, quoted, secs, Answer, ProbeOptions, ProbeResult, Status};
use crate::http::client::split_url;
use crate::http::inspect::{self, authority, HttpAnswer, Progress};
use crate::soap::wssec::{SecurityError, Verified, VerifyPolicy};
use crate::xml::{Element, NS_FWI, NS_GSD, NS_SOAP11, NS_WSA};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Responses larger than this are not read to the end.
const MAX_RESPONSE: usize = 10 * 1024 * 1024;

/// The findings of one probe; the summary lists them worst first.
pub(super) struct Findings(pub(super) Vec<(Status, String)>);

impl Findings {
    pub(super) fn add(&mut self, status: Status, text: impl Into<String>) {
        self.0.push((status, text.into()));
    }

    pub(super) fn finish(mut self, r: &mut ProbeResult) {
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
