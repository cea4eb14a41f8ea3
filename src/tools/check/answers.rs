//! The `answers.*` checks, and the reading of an answer every group shares.

use super::requests::{self, Built, Variant};
use super::{fail, pass, skip, CheckOptions, Ctx, Service, Verdict};
use crate::http::inspect::HttpAnswer;
use crate::soap::wssec::VerifyPolicy;
use crate::xml::{Element, NS_FWI, NS_SOAP11, NS_WSA};
use std::time::Instant;

/// A parsed answer: HTTP status, the envelope's headers and body element.
pub(super) struct Read {
    pub(super) status: u16,
    headers: Vec<Element>,
    pub(super) body: Element,
    text: String,
}

pub(super) fn read(a: &HttpAnswer) -> Result<Read, String> {
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

pub(super) fn header_text(r: &Read, local: &str) -> Option<String> {
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

pub(super) fn verify(
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
pub(super) fn addressing(cx: &Ctx<'_>, r: &Read, b: &Built, action: &[&str]) -> Result<(), String> {
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

pub(super) async fn check_answers(cx: &mut Ctx<'_>) {
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
pub(super) async fn to_oin(cx: &Ctx<'_>) -> (Verdict, String) {
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

pub(super) fn tail(bsn: &str) -> &str {
    bsn.get(6..).unwrap_or(bsn)
}

/// A known BSN's answer: a schema-valid ClientSuwi for that BSN (GSD), an Acknowledgement (VI).
pub(super) fn judge_known(o: &CheckOptions, r: &Read, bsn: &str) -> Result<(), String> {
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
pub(super) fn qualified(e: &Element) -> Option<String> {
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

pub(super) fn judge_unknown(r: &Read) -> (Verdict, String) {
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

pub(super) fn fault_text(f: &Element) -> String {
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
