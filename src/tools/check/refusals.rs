//! The `errors.*` and `security.*` checks: what the server must refuse, and how.

use super::answers::{fault_text, header_text, read, verify};
use super::requests::{self, Built, Variant};
use super::{fail, pass, skip, Ctx, Verdict};
use crate::http::inspect::HttpAnswer;
use crate::xml::{NS_FWI, NS_SOAP11};
use std::time::Instant;

/// How an error or security case must be answered.
pub(super) struct Expect {
    /// RelatesTo must name the request's MessageID (it could be read).
    addressed: bool,
    /// The fault must be signed.
    signed: bool,
}

/// Judges the answer to a request that must be refused: a SOAP 1.1 Fault (HTTP 500) with an
/// `fwi:Fout` in its detail, and as `e` asks addressed and signed.
pub(super) fn judge_fault(
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

pub(super) async fn check_errors(cx: &mut Ctx<'_>) {
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

pub(super) async fn check_security(cx: &mut Ctx<'_>) {
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
