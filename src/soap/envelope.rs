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

/// What [`read_headers`] found in the Header.
#[derive(Debug, Default)]
pub struct Headers<'a> {
    /// The WS-Addressing headers.
    pub addressing: Addressing,
    /// The `wsse:Security` block.
    pub security: Option<&'a Element>,
    /// The namespace of each unknown block that was ignored (`""` for none), in document order.
    pub ignored: Vec<&'a str>,
    /// The first block the policy refuses. Kept apart from the addressing so the refusal can
    /// still be addressed to the caller: every WS-Addressing header is read first.
    pub refused: Option<SoapError>,
}

/// Reads the WS-Addressing headers and applies the header policy: dkd acts on WS-Addressing and
/// `wsse:Security`; an unknown block marked `mustUnderstand` is refused, any other unknown block
/// is ignored (SOAP 1.1 §4.2.3, WS-I BP) — it is never trusted, and the signature check still
/// demands that its References resolve to the very Body, Timestamp and WS-Addressing nodes, so a
/// foreign block cannot carry a signed part away.
pub fn read_headers(headers: &[Element]) -> Headers<'_> {
    let mut out = Headers::default();
    for h in headers {
        match h.ns.as_deref() {
            Some(NS_WSA) => {
                if let Err(e) = read_wsa(h, &mut out.addressing) {
                    out.refused.get_or_insert(e);
                }
            }
            Some(NS_WSSE) if h.local == "Security" => {
                if out.security.is_some() {
                    out.refused.get_or_insert(SoapError::InvalidEnvelope(
                        "more than one wsse:Security header".into(),
                    ));
                } else {
                    out.security = Some(h);
                }
            }
            ns => {
                let mu = h.attr(Some(NS_SOAP11), "mustUnderstand");
                if matches!(mu, Some("1") | Some("true")) {
                    out.refused
                        .get_or_insert(SoapError::MustUnderstand(h.qname()));
                } else if ns == Some(NS_WSA_2004) {
                    // Not foreign: the blocks dkd acts on, in the wrong version. Ignoring them
                    // would answer "MessageID missing" to a client that sent one.
                    out.refused.get_or_insert(SoapError::ForeignHeader(format!(
                        "{} (WS-Addressing must use {NS_WSA})",
                        h.qname()
                    )));
                } else {
                    out.ignored.push(ns.unwrap_or(""));
                }
            }
        }
    }
    out
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

/// The longest WS-Addressing value [`addressing_of_prefix`] keeps.
const MAX_PREFIX_VALUE: usize = 4096;

/// The `wsa:MessageID`, `wsa:To` and `wsa:From/wsa:Address` that can be read from the start of a
/// message refused before it was read in full (its body over the limit), so the refusal can still
/// be addressed. One streaming pass over the Header, no tree; it stops at the Body, at the end of
/// the bytes and at anything it does not take (a reference, CDATA, a malformed token, a value over
/// 4 KiB), keeping what it read before. The values are only echoed, never trusted.
pub fn addressing_of_prefix(bytes: &[u8]) -> Addressing {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut a = Addressing::default();
    // The limit may cut a character in two.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut reader = xml::tokenizer(text);
    let mut depth = 0usize;
    // The header being read (depth 3) or From's Address (depth 4), and its text so far.
    let mut current: Option<(&'static str, String)> = None;
    while let Ok((resolved, event)) = reader.read_resolved_event() {
        let ns = match resolved {
            ResolveResult::Bound(n) => Some(n.into_inner()),
            _ => None,
        };
        match event {
            Event::Start(s) => {
                depth += 1;
                let local = s.local_name();
                let local = local.as_ref();
                match depth {
                    1 if ns == Some(NS_SOAP11.as_bytes()) && local == b"Envelope" => {}
                    2 if ns == Some(NS_SOAP11.as_bytes()) && local == b"Header" => {}
                    3 if ns == Some(NS_WSA.as_bytes()) => {
                        // From's own text is whitespace; only its Address counts.
                        current = match local {
                            b"MessageID" => Some(("MessageID", String::new())),
                            b"To" => Some(("To", String::new())),
                            b"From" => Some(("FromElement", String::new())),
                            _ => None,
                        };
                    }
                    4 if ns == Some(NS_WSA.as_bytes())
                        && local == b"Address"
                        && matches!(current, Some(("FromElement", _))) =>
                    {
                        current = Some(("From", String::new()));
                    }
                    1 | 2 => break,
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let Some((name, value)) = current.as_mut() {
                    if *name != "FromElement" {
                        let Ok(piece) = t.decode() else { break };
                        if value.len() + piece.len() > MAX_PREFIX_VALUE {
                            break;
                        }
                        value.push_str(&piece);
                    }
                }
            }
            Event::End(_) => {
                if let Some((name, value)) = current.take() {
                    let slot = match name {
                        "MessageID" if depth == 3 => Some(&mut a.message_id),
                        "To" if depth == 3 => Some(&mut a.to),
                        "From" if depth == 4 => Some(&mut a.from),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        if slot.is_none() && xml::check_chars(&value).is_ok() {
                            *slot = Some(value.trim().to_owned());
                        }
                    } else if name == "FromElement" && depth > 3 {
                        // The end of another child of From: its Address may still follow.
                        current = Some((name, value));
                    }
                }
                if depth <= 2 {
                    break;
                }
                depth -= 1;
            }
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            _ => break,
        }
    }
    a
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

    const WSA_DECL: &str = "xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"";

    fn start_of_request() -> String {
        format!(
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"{NS_SOAP11}\" {WSA_DECL}><s:Header>\
             <x:Trace xmlns:x=\"urn:x\"><wsa:MessageID>urn:uuid:inner</wsa:MessageID></x:Trace>\
             <wsa:MessageID>urn:uuid:1</wsa:MessageID><wsa:To> https://dkd/x </wsa:To>\
             <wsa:From><wsa:ReferenceParameters/><wsa:Address>https://c/?oin=00000099000000000002</wsa:Address></wsa:From>\
             </s:Header><s:Body><wsa:To>https://body/</wsa:To>"
        )
    }

    #[test]
    fn the_addressing_of_a_cut_off_message_is_read_from_its_header_only() {
        let full = start_of_request();
        let a = addressing_of_prefix(full.as_bytes());
        assert_eq!(a.message_id.as_deref(), Some("urn:uuid:1"));
        assert_eq!(a.to.as_deref(), Some("https://dkd/x"));
        assert_eq!(
            a.from.as_deref(),
            Some("https://c/?oin=00000099000000000002")
        );
        // Cut anywhere, including inside a value or a character: only whole values are kept,
        // and never one from outside the Header.
        let wide = full.replace("urn:uuid:1", "urn:uuid:é");
        for cut in 0..wide.len() {
            let a = addressing_of_prefix(&wide.as_bytes()[..cut]);
            for v in [&a.message_id, &a.to, &a.from].into_iter().flatten() {
                assert!(
                    [
                        "urn:uuid:é",
                        "https://dkd/x",
                        "https://c/?oin=00000099000000000002"
                    ]
                    .contains(&v.as_str()),
                    "{cut}: {v}"
                );
            }
        }
        // A reference ends the reading; what came before stays.
        let a = addressing_of_prefix(full.replace("https://dkd/x", "a&amp;b").as_bytes());
        assert_eq!(a.message_id.as_deref(), Some("urn:uuid:1"));
        assert_eq!(a.to, None);
        assert_eq!(addressing_of_prefix(b"not xml"), Addressing::default());
    }

    #[test]
    fn unknown_blocks_are_ignored_unless_marked_must_understand() {
        let doc = format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP11}\" {WSA_DECL}><s:Header>\
             <x:A xmlns:x=\"urn:x\" s:mustUnderstand=\"0\"/><B/>\
             <wsa:MessageID>urn:uuid:1</wsa:MessageID></s:Header><s:Body><b/></s:Body></s:Envelope>"
        );
        let env = parse(doc.as_bytes()).expect("envelope");
        let h = read_headers(&env.headers);
        assert_eq!(h.refused, None);
        assert_eq!(h.ignored, vec!["urn:x", ""]);
        assert_eq!(h.addressing.message_id.as_deref(), Some("urn:uuid:1"));
        let doc = doc.replace("s:mustUnderstand=\"0\"", "s:mustUnderstand=\"1\"");
        let env = parse(doc.as_bytes()).expect("envelope");
        let h = read_headers(&env.headers);
        assert_eq!(
            h.refused,
            Some(SoapError::MustUnderstand("{urn:x}A".into()))
        );
        assert_eq!(
            h.addressing.message_id.as_deref(),
            Some("urn:uuid:1"),
            "read after the refused block, so its fault can be addressed"
        );
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
