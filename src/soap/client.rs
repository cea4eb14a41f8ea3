//! dkd as a SOAP client: the envelopes it sends (`dkd call`, the probe, the IB role's routing, the
//! outbox sender) and the checks on what comes back. Building and reading only; sending is the
//! transport's job.

use super::wssec::{self, SecurityError, Signer, VerifyPolicy};
use crate::xml::{self, escape, Element, NS_FWI, NS_SOAP11, NS_WSA, NS_WSU};

/// One outgoing request.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The endpoint URL, also `wsa:To`.
    pub to: &'a str,
    /// `wsa:From/wsa:Address`: carries the OIN of the party asking (`…?oin=<20 digits>`).
    pub from_address: &'a str,
    /// `wsa:Action`.
    pub action: &'a str,
    /// The body element, declaring its own namespace.
    pub body: &'a str,
    /// `wsa:MessageID`.
    pub message_id: &'a str,
}

/// Writes the request envelope; signed per 2W-be-S (Body, Timestamp and every WS-Addressing
/// header) when a signer is given.
pub fn envelope(
    signer: Option<&Signer>,
    o: &Outgoing<'_>,
    now: time::OffsetDateTime,
) -> Result<String, SecurityError> {
    envelope_without(signer, o, &[], now)
}

/// [`envelope`] leaving out the WS-Addressing headers named in `omit` (`"MessageID"`, `"Action"`,
/// `"To"`): the properly signed but incomplete requests `dkd check` expects a fault for.
pub fn envelope_without(
    signer: Option<&Signer>,
    o: &Outgoing<'_>,
    omit: &[&str],
    now: time::OffsetDateTime,
) -> Result<String, SecurityError> {
    let id = |name: &'static str| signer.map(|_| name);
    let mut headers: Vec<(&str, String)> = Vec::with_capacity(4);
    for (name, hid, value) in [
        ("MessageID", "_MessageID", o.message_id),
        ("Action", "_Action", o.action),
        ("To", "_To", o.to),
    ] {
        if omit.contains(&name) {
            continue;
        }
        let mut h = String::new();
        wssec::wsa_header(name, id(hid), |out| escape(value, out), &mut h);
        headers.push((hid, h));
    }
    let mut h = String::new();
    wssec::wsa_header(
        "From",
        id("_From"),
        |out| {
            out.push_str("<wsa:Address>");
            escape(o.from_address, out);
            out.push_str("</wsa:Address>");
        },
        &mut h,
    );
    headers.push(("_From", h));
    let security = match signer {
        Some(s) => {
            let canonical_body = wssec::canonical_body("_Body", o.body);
            let mut parts: Vec<(&str, &str)> =
                headers.iter().map(|(i, h)| (*i, h.as_str())).collect();
            parts.push(("_Body", &canonical_body));
            Some(s.security_header(&parts, None, now)?)
        }
        None => None,
    };
    let mut s = String::with_capacity(o.body.len() + 4096);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"");
    s.push_str(NS_SOAP11);
    s.push_str("\"><soapenv:Header>");
    if let Some(sec) = &security {
        s.push_str(sec);
    }
    for (_, h) in &headers {
        s.push_str(h);
    }
    if signer.is_some() {
        s.push_str("</soapenv:Header><soapenv:Body xmlns:wsu=\"");
        s.push_str(NS_WSU);
        s.push_str("\" wsu:Id=\"_Body\">");
    } else {
        s.push_str("</soapenv:Header><soapenv:Body>");
    }
    s.push_str(o.body);
    s.push_str("</soapenv:Body></soapenv:Envelope>");
    Ok(s)
}

/// The `ds:SignatureValue` of a signed envelope dkd wrote (to match the answer's
/// SignatureConfirmation against).
pub fn signature_value(envelope: &str) -> Option<String> {
    let (a, b) = ("<ds:SignatureValue>", "</ds:SignatureValue>");
    let i = envelope.find(a)? + a.len();
    let j = envelope[i..].find(b)? + i;
    Some(envelope[i..j].split_whitespace().collect())
}

/// Why an answer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not a SOAP 1.1 envelope with one body element.
    #[error("the answer is not a usable SOAP envelope: {0}")]
    Malformed(String),
    /// A SOAP Fault.
    #[error("SOAP Fault {faultcode} (code {code}): {text}")]
    Fault {
        /// `faultcode`.
        faultcode: String,
        /// The `fwi:Fout/Code` of the detail, or empty.
        code: String,
        /// `faultstring`.
        text: String,
    },
    /// `wsa:RelatesTo` is missing or names another message.
    #[error("the answer's wsa:RelatesTo {0:?} does not match the request's MessageID")]
    RelatesTo(Option<String>),
    /// The signature, SignatureConfirmation or signing certificate was refused.
    #[error("the answer's signature was refused: {0}")]
    Security(String),
}

/// Reads an answer: SOAP structure, Fault, `wsa:RelatesTo`, and — with a policy — the signature,
/// which must confirm `request_signature` when the request was signed. Returns the body element.
pub fn read_response(
    text: &str,
    message_id: &str,
    request_signature: Option<&str>,
    verify: Option<&VerifyPolicy>,
    now: time::OffsetDateTime,
) -> Result<Element, ResponseError> {
    let env = super::envelope::parse(text.as_bytes())
        .map_err(|e| ResponseError::Malformed(e.to_string()))?;
    let is_fault = env.body.is(Some(NS_SOAP11), "Fault");
    if let Some(policy) = verify {
        policy
            .verify_answer(text, request_signature, is_fault, now)
            .map_err(|e| ResponseError::Security(e.to_string()))?;
    }
    let relates = env
        .headers
        .iter()
        .find(|h| h.is(Some(NS_WSA), "RelatesTo"))
        .map(|h| h.text().trim().to_owned());
    if is_fault {
        // A fault may lack RelatesTo (the request's MessageID was unreadable); one that names
        // another message is not about this request.
        if relates.as_deref().is_some_and(|r| r != message_id) {
            return Err(ResponseError::RelatesTo(relates));
        }
        let find = |e: &Element, local: &str| find_text(e, local).unwrap_or_default();
        return Err(ResponseError::Fault {
            faultcode: find(&env.body, "faultcode"),
            code: env
                .body
                .elements()
                .find(|c| c.local == "detail")
                .and_then(|d| {
                    d.elements()
                        .find(|c| c.is(Some(NS_FWI), "Fout"))
                        .map(|f| find(f, "Code"))
                })
                .unwrap_or_default(),
            text: find(&env.body, "faultstring"),
        });
    }
    if relates.as_deref() != Some(message_id) {
        return Err(ResponseError::RelatesTo(relates));
    }
    Ok(env.body)
}

/// The text of the first descendant (or self) with this local name.
pub fn find_text(e: &xml::Element, local: &str) -> Option<String> {
    if e.local == local {
        return Some(e.text());
    }
    e.elements().find_map(|c| find_text(c, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_naming_another_message_is_not_taken_as_this_ones() {
        let fault = |relates: &str| {
            format!("<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP11}\"><soapenv:Header>{relates}</soapenv:Header><soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>schema</faultstring><detail><fwi:Fout xmlns:fwi=\"{NS_FWI}\"><Code>0004</Code></fwi:Fout></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
        };
        let now = time::OffsetDateTime::now_utc();
        let other = fault(&format!(
            "<wsa:RelatesTo xmlns:wsa=\"{NS_WSA}\">urn:uuid:other</wsa:RelatesTo>"
        ));
        assert!(matches!(
            read_response(&other, "urn:uuid:1", None, None, now),
            Err(ResponseError::RelatesTo(Some(_)))
        ));
        // Without RelatesTo (the MessageID could not be read) the fault stands.
        match read_response(&fault(""), "urn:uuid:1", None, None, now) {
            Err(ResponseError::Fault { code, .. }) => assert_eq!(code, "0004"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsigned_request_reads_back_as_a_request() {
        let mut body = String::new();
        crate::suwiml::gsd::write_request("123456782", &mut body);
        let env = envelope(
            None,
            &Outgoing {
                to: "https://x/GSD",
                from_address: "https://ib?oin=00000099000000000002",
                action: crate::suwiml::gsd::ACTION_REQUEST,
                body: &body,
                message_id: "urn:uuid:1",
            },
            time::OffsetDateTime::now_utc(),
        )
        .expect("envelope");
        let e = super::super::envelope::parse(env.as_bytes()).expect("parse");
        assert_eq!(
            crate::suwiml::gsd::parse_request(&e.body)
                .expect("body")
                .as_str(),
            "123456782"
        );
        assert_eq!(
            read_response(
                &env,
                "urn:uuid:1",
                None,
                None,
                time::OffsetDateTime::now_utc()
            ),
            Err(ResponseError::RelatesTo(None))
        );
    }
}
