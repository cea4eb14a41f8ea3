//! Reading a SOAP 1.1 envelope: structure, header policy and WS-Addressing.
//!
//! The checks are split so `soap::handle` can apply them in a fixed order and still answer with a
//! `RelatesTo` whenever the MessageID could be read.

use super::fault::SoapError;
use crate::xml::{self, Element, NS_SOAP11, NS_SOAP12, NS_WSA, NS_WSSE};

/// The anonymous address of WS-Addressing 1.0.
pub const WSA_ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";
/// The older WS-Addressing namespace, recognised only to give a precise refusal.
const NS_WSA_2004: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";

/// A parsed envelope.
#[derive(Debug)]
pub struct Envelope {
    /// Header blocks in document order.
    pub headers: Vec<Element>,
    /// The single element inside `soapenv:Body`.
    pub body: Element,
}

/// Parses bytes into an envelope, checking the SOAP 1.1 structure.
pub fn parse(bytes: &[u8]) -> Result<Envelope, SoapError> {
    let root = xml::parse(bytes).map_err(|e| match e {
        xml::XmlError::NotUtf8(m) => SoapError::NotUtf8(m),
        other => SoapError::InvalidEnvelope(other.to_string()),
    })?;
    if root.local == "Envelope" && root.ns.as_deref() == Some(NS_SOAP12) {
        return Err(SoapError::VersionMismatch);
    }
    if !root.is(Some(NS_SOAP11), "Envelope") {
        return Err(SoapError::InvalidEnvelope(format!(
            "the root element must be {{{NS_SOAP11}}}Envelope, found {}",
            root.qname()
        )));
    }
    if root.has_text() {
        return Err(SoapError::InvalidEnvelope(
            "text directly inside Envelope".into(),
        ));
    }
    let mut header: Option<Element> = None;
    let mut body: Option<Element> = None;
    for child in root.children.into_iter() {
        let xml::Node::Element(child) = child else {
            continue;
        };
        match (child.ns.as_deref(), child.local.as_str()) {
            (Some(NS_SOAP11), "Header") if header.is_none() && body.is_none() => {
                header = Some(child)
            }
            (Some(NS_SOAP11), "Body") if body.is_none() => body = Some(child),
            _ => {
                return Err(SoapError::InvalidEnvelope(format!(
                    "unexpected {} in Envelope (expected an optional Header, then Body)",
                    child.qname()
                )))
            }
        }
    }
    let body = body.ok_or_else(|| SoapError::InvalidEnvelope("the envelope has no Body".into()))?;
    if body.has_text() {
        return Err(SoapError::InvalidEnvelope(
            "text directly inside Body".into(),
        ));
    }
    let mut items = body.children.into_iter().filter_map(|n| match n {
        xml::Node::Element(e) => Some(e),
        xml::Node::Text(_) => None,
    });
    let first = items.next().ok_or_else(|| {
        SoapError::InvalidEnvelope("the Body is empty: exactly one element is required".into())
    })?;
    if items.next().is_some() {
        return Err(SoapError::InvalidEnvelope(
            "the Body holds more than one element".into(),
        ));
    }
    let headers = match header {
        Some(h) => {
            if h.has_text() {
                return Err(SoapError::InvalidEnvelope(
                    "text directly inside Header".into(),
                ));
            }
            // Moved, not cloned: the wsse:Security block alone is most of a signed request.
            h.children
                .into_iter()
                .filter_map(|n| match n {
                    xml::Node::Element(e) => Some(e),
                    xml::Node::Text(_) => None,
                })
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Envelope {
        headers,
        body: first,
    })
}

/// The WS-Addressing headers of a request, as read (not yet validated).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Addressing {
    /// `wsa:MessageID`.
    pub message_id: Option<String>,
    /// `wsa:Action`.
    pub action: Option<String>,
    /// `wsa:To`.
    pub to: Option<String>,
    /// `wsa:From/wsa:Address`.
    pub from: Option<String>,
    /// `wsa:ReplyTo/wsa:Address`.
    pub reply_to: Option<String>,
    /// `wsa:FaultTo/wsa:Address`.
    pub fault_to: Option<String>,
    /// `wsa:RelatesTo`.
    pub relates_to: Option<String>,
    /// The first header that occurred more than once.
    pub duplicate: Option<&'static str>,
    /// `wsa:From` was present but without an Address.
    pub from_without_address: bool,
}

/// Reads the WS-Addressing headers and enforces the header policy: only WS-Addressing and
/// `wsse:Security`, and no unknown `mustUnderstand` blocks.
pub fn read_headers(headers: &[Element]) -> Result<(Addressing, Option<&Element>), SoapError> {
    let mut a = Addressing::default();
    let mut security = None;
    for h in headers {
        match h.ns.as_deref() {
            Some(NS_WSA) => read_wsa(h, &mut a)?,
            Some(NS_WSSE) if h.local == "Security" => {
                if security.is_some() {
                    return Err(SoapError::InvalidEnvelope(
                        "more than one wsse:Security header".into(),
                    ));
                }
                security = Some(h);
            }
            _ => {
                let mu = h.attr(Some(NS_SOAP11), "mustUnderstand");
                if matches!(mu, Some("1") | Some("true")) {
                    return Err(SoapError::MustUnderstand(h.qname()));
                }
                if h.ns.as_deref() == Some(NS_WSA_2004) {
                    return Err(SoapError::ForeignHeader(format!(
                        "{} (WS-Addressing must use {NS_WSA})",
                        h.qname()
                    )));
                }
                return Err(SoapError::ForeignHeader(h.qname()));
            }
        }
    }
    Ok((a, security))
}

fn read_wsa(h: &Element, a: &mut Addressing) -> Result<(), SoapError> {
    let slot: (&'static str, &mut Option<String>) = match h.local.as_str() {
        "MessageID" => ("MessageID", &mut a.message_id),
        "Action" => ("Action", &mut a.action),
        "To" => ("To", &mut a.to),
        "RelatesTo" => ("RelatesTo", &mut a.relates_to),
        "From" => ("From", &mut a.from),
        "ReplyTo" => ("ReplyTo", &mut a.reply_to),
        "FaultTo" => ("FaultTo", &mut a.fault_to),
        _ => return Err(SoapError::ForeignHeader(h.qname())),
    };
    let (name, target) = slot;
    let value = match name {
        "From" | "ReplyTo" | "FaultTo" => {
            let addr = h
                .elements()
                .find(|e| e.is(Some(NS_WSA), "Address"))
                .map(|e| e.text().trim().to_owned());
            if addr.is_none() && name == "From" {
                a.from_without_address = true;
            }
            addr.unwrap_or_default()
        }
        _ => h.text().trim().to_owned(),
    };
    if target.is_some() {
        a.duplicate.get_or_insert(name);
        return Ok(());
    }
    *target = Some(value);
    Ok(())
}

/// Extracts the OIN from a `wsa:From` address such as `http://host/path?oin=00000001234567890000`
/// (the query key is matched case-insensitively: Logius writes `OIN`).
pub fn oin_from_address(address: &str) -> Option<&str> {
    let query = address.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.eq_ignore_ascii_case("oin") && is_oin(v)).then_some(v)
    })
}

/// Whether a string is a 20-digit OIN.
pub fn is_oin(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a string looks like an absolute URI (a scheme, then no whitespace).
pub fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    // On bytes: a scheme is ASCII, and so is nearly every URI. Decoding characters and asking
    // Unicode's whitespace table for each was ~5 % of an unsigned answer's instructions.
    let scheme_ok = scheme
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let spaced = if s.is_ascii() {
        // char::is_whitespace on ASCII: TAB, LF, VT, FF, CR and space.
        s.bytes().any(|b| matches!(b, b'\t'..=b'\r' | b' '))
    } else {
        s.chars().any(char::is_whitespace)
    };
    scheme_ok && !rest.is_empty() && !spaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oin_is_read_from_from_address_in_either_case() {
        assert_eq!(
            oin_from_address("http://x/y?oin=00000099000000000002"),
            Some("00000099000000000002")
        );
        assert_eq!(
            oin_from_address("http://x/y?a=1&OIN=00000099000000000002"),
            Some("00000099000000000002")
        );
        assert_eq!(oin_from_address("http://x/y?oin=123"), None);
        assert_eq!(oin_from_address("http://x/y"), None);
    }

    #[test]
    fn absolute_uri_check() {
        assert!(is_absolute_uri(
            "urn:uuid:6a1b0c1e-0000-4000-8000-000000000000"
        ));
        assert!(is_absolute_uri("uuid:abc"));
        assert!(!is_absolute_uri("abc"));
        assert!(!is_absolute_uri("urn:uuid: x"));
        assert!(!is_absolute_uri(":x"));
    }

    /// The byte-wise check against the character-wise definition it replaced, over every string
    /// of up to four pieces from a set that holds each kind of edge: ASCII and Unicode
    /// whitespace (VT, FF, NBSP, U+2028, U+3000), scheme punctuation, a non-ASCII letter.
    #[test]
    fn absolute_uri_check_agrees_with_its_character_wise_definition() {
        fn reference(s: &str) -> bool {
            let Some((scheme, rest)) = s.split_once(':') else {
                return false;
            };
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !s.chars().any(char::is_whitespace)
        }
        let pieces = [
            "a", "Z", "9", "+", "-", ".", ":", "/", " ", "\t", "\u{b}", "\u{c}", "\r", "\n",
            "\u{a0}", "\u{2028}", "\u{3000}", "é", "_", "\u{85}",
        ];
        let mut n = 0;
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            assert_eq!(is_absolute_uri(&s), reference(&s), "{s:?}");
            n += 1;
            if s.chars().count() < 4 {
                for p in pieces {
                    stack.push(format!("{s}{p}"));
                }
            }
        }
        assert!(n > 160_000, "{n}");
    }
}
