//! The namespace-resolving parser over quick-xml: DTDs refused, within `ParseLimits`.

use super::dom::{Attr, Element, Node};
use super::limits::ParseLimits;
use std::sync::Arc;

/// Why bytes are not a document dkd will read. Each maps to one dkd fault code in `soap::fault`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The bytes are not UTF-8, or the declaration names another encoding.
    #[error("the message is not UTF-8 encoded: {0}")]
    NotUtf8(String),
    /// A DOCTYPE is present: refused outright (entity expansion and external entities).
    #[error("a DOCTYPE is not allowed in a SOAP message")]
    Dtd,
    /// Not well-formed XML.
    #[error("the message is not well-formed XML: {0}")]
    Malformed(String),
    /// Deeper than [`ParseLimits::max_depth`].
    #[error("the message nests elements deeper than {0} levels")]
    TooDeep(usize),
    /// Over one of the other [`ParseLimits`]: `what` names it for the fault text.
    #[error("the message exceeds a limit: {what} (at most {limit})")]
    OverLimit {
        /// Which limit, e.g. "elements in the document".
        what: &'static str,
        /// The limit that was passed.
        limit: usize,
    },
}

/// The 1-based line of a byte offset in a text.
pub fn line_of(text: &[u8], pos: usize) -> usize {
    1 + text[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// The tokenizer of every XML reader here (this module's tree, `envelope::addressing_of_prefix`),
/// set up once so they agree on what is well-formed; a leading byte order mark is skipped.
pub(crate) fn tokenizer(text: &str) -> quick_xml::NsReader<&[u8]> {
    let mut reader = quick_xml::NsReader::from_str(without_bom(text));
    configure(reader.config_mut());
    reader
}

fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn configure(cfg: &mut quick_xml::reader::Config) {
    cfg.check_end_names = true;
    cfg.check_comments = true;
    cfg.expand_empty_elements = false;
}

/// Parses a message from the network into its root element, refusing DTDs, non-UTF-8 input and
/// anything over [`ParseLimits::MESSAGE`].
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    parse_with(bytes, &ParseLimits::MESSAGE)
}

/// Parses a complete document into its root element within `limits`, refusing DTDs and non-UTF-8
/// input.
pub fn parse_with(bytes: &[u8], limits: &ParseLimits) -> Result<Element, XmlError> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;

    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8(e.to_string()))?;
    let mut reader = tokenizer(text);

    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    let mut known: Vec<Arc<str>> = Vec::new();
    let mut ns_of = |r: ResolveResult<'_>| -> Result<Option<Arc<str>>, XmlError> {
        match r {
            ResolveResult::Bound(ns) => {
                let uri = ns.as_ref();
                if let Some(k) = known.iter().find(|k| k.as_bytes() == uri) {
                    return Ok(Some(k.clone()));
                }
                let k: Arc<str> = String::from_utf8_lossy(uri).into();
                known.push(k.clone());
                Ok(Some(k))
            }
            ResolveResult::Unbound => Ok(None),
            ResolveResult::Unknown(p) => Err(XmlError::Malformed(format!(
                "undeclared namespace prefix '{}'",
                String::from_utf8_lossy(&p)
            ))),
        }
    };

    let over = |what: &'static str, limit: usize| XmlError::OverLimit { what, limit };
    let check_name = |raw: &[u8]| -> Result<(), XmlError> {
        if raw.len() > limits.max_name_bytes {
            return Err(over("bytes in a name", limits.max_name_bytes));
        }
        check_qname(raw)
    };
    let mut elements = 0usize;
    let mut attributes = 0usize;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut first = true;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|e| malformed(&e))?;
        // XML 1.0 §2.8: the declaration comes first or not at all; quick-xml reports one
        // anywhere. Elsewhere it would glue the text around it into one node for the limits here
        // while other readers (the one-pass reader, the signature verifier's) see two.
        if matches!(event, Event::Decl(_)) && !first {
            return Err(XmlError::Malformed(
                "an XML declaration is allowed only at the start of the document".into(),
            ));
        }
        first = false;
        let start = match event {
            Event::Start(ref s) | Event::Empty(ref s) => Some(s.clone()),
            _ => None,
        };
        let is_empty = matches!(event, Event::Empty(_));
        if let Some(s) = start {
            if root.is_some() {
                return Err(XmlError::Malformed("content after the root element".into()));
            }
            if stack.len() >= limits.max_depth {
                return Err(XmlError::TooDeep(limits.max_depth));
            }
            elements += 1;
            if elements > limits.max_elements {
                return Err(over("elements in the document", limits.max_elements));
            }
            let ns = ns_of(resolved)?;
            check_name(s.name().as_ref())?;
            let local = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
            let mut attrs = Vec::new();
            let mut on_element = 0usize;
            for a in s.attributes().with_checks(true) {
                // Counted before the duplicate check, which compares each attribute with every
                // earlier one on the element (quadratic in their number).
                on_element += 1;
                attributes += 1;
                if on_element > limits.max_attributes_per_element {
                    return Err(over(
                        "attributes on one element",
                        limits.max_attributes_per_element,
                    ));
                }
                if attributes > limits.max_attributes {
                    return Err(over("attributes in the document", limits.max_attributes));
                }
                let a = a.map_err(|e| malformed(&e))?;
                let key = a.key;
                check_name(key.as_ref())?;
                if a.value.len() > limits.max_attr_value_bytes {
                    return Err(over(
                        "bytes in an attribute value",
                        limits.max_attr_value_bytes,
                    ));
                }
                if key.as_namespace_binding().is_some() {
                    // quick-xml binds the raw value; other parsers expand references first. Refuse
                    // references in namespace names rather than disagree about them.
                    if a.value.contains(&b'&') {
                        return Err(XmlError::Malformed(
                            "character or entity references in a namespace name are not accepted"
                                .into(),
                        ));
                    }
                    continue;
                }
                let (r, l) = reader.resolve_attribute(key);
                let ans = ns_of(r)?;
                let value = a.unescape_value().map_err(|e| malformed(&e))?.into_owned();
                check_chars(&value)?;
                attrs.push(Attr {
                    ns: ans,
                    local: String::from_utf8_lossy(l.as_ref()).into_owned(),
                    value,
                });
            }
            // The reader stands just after the tag; step back over it to the '<'.
            let tag_len = s.len() + if is_empty { 3 } else { 2 };
            let pos = usize::try_from(reader.buffer_position())
                .unwrap_or(0)
                .saturating_sub(tag_len);
            let el = Element {
                ns,
                local,
                attrs,
                children: Vec::new(),
                pos,
            };
            if is_empty {
                attach(&mut stack, &mut root, el);
            } else {
                stack.push(el);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unexpected end tag".into()))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| malformed(&e))?;
                // XML 1.0 §2.11: line ends become LF before anything sees the text (uppsala, the
                // signature verifier's parser, does so; found by the xml_diff fuzz target).
                if s.contains('\r') {
                    push_text(
                        &mut stack,
                        limits,
                        &s.replace("\r\n", "\n").replace('\r', "\n"),
                    )?;
                } else {
                    push_text(&mut stack, limits, &s)?;
                }
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| malformed(&e))?;
                push_text(&mut stack, limits, &s)?;
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| malformed(&e))?
                } else {
                    let name = r.decode().map_err(|e| malformed(&e))?;
                    match name.as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        other => {
                            return Err(XmlError::Malformed(format!(
                                "undefined entity '&{other};'"
                            )))
                        }
                    }
                };
                let ch =
                    ch.ok_or_else(|| XmlError::Malformed("invalid character reference".into()))?;
                push_text(&mut stack, limits, ch.encode_utf8(&mut [0u8; 4]))?;
            }
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| malformed(&e))?;
                    let enc = String::from_utf8_lossy(&enc).to_ascii_lowercase();
                    if enc != "utf-8" && enc != "utf8" {
                        return Err(XmlError::NotUtf8(format!("declared encoding is {enc}")));
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::PI(_) => {
                return Err(XmlError::Malformed(
                    "processing instructions are not allowed".into(),
                ))
            }
            Event::Comment(_) => {}
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unexpected end of document".into()));
    }
    root.ok_or_else(|| XmlError::Malformed("no root element".into()))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

/// Whether a character may appear in an XML 1.0 document.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

pub(crate) fn check_chars(s: &str) -> Result<(), XmlError> {
    // Every text and attribute value passes here; a character-by-character decode was 8 % of a
    // signed envelope's parse. Only C0 controls and U+FFFE/U+FFFF (UTF-8 lead byte 0xEF) can be
    // refused in a `str`, so bytes free of both need no closer look.
    if !s
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF)
    {
        return Ok(());
    }
    match s.chars().find(|c| !is_xml_char(*c)) {
        None => Ok(()),
        Some(c) => Err(XmlError::Malformed(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ))),
    }
}

/// A QName dkd accepts: a non-empty local part, and a non-empty prefix when there is a colon.
/// Other parsers disagree on anything else (found by fuzzing against uppsala), and a disagreement
/// between the parser that answers and the one that checks signatures must not exist.
pub(crate) fn check_qname(raw: &[u8]) -> Result<(), XmlError> {
    let mut parts = raw.split(|b| *b == b':');
    let ok = match (parts.next(), parts.next(), parts.next()) {
        (Some(local), None, None) => !local.is_empty(),
        (Some(prefix), Some(local), None) => !prefix.is_empty() && !local.is_empty(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let name = String::from_utf8_lossy(raw);
        Err(XmlError::Malformed(format!(
            "{name:?} is not a valid element or attribute name"
        )))
    }
}

fn push_text(stack: &mut [Element], limits: &ParseLimits, s: &str) -> Result<(), XmlError> {
    let too_long = || XmlError::OverLimit {
        what: "bytes in a text node",
        limit: limits.max_text_bytes,
    };
    if s.len() > limits.max_text_bytes {
        return Err(too_long());
    }
    check_chars(s)?;
    match stack.last_mut() {
        Some(parent) => {
            if let Some(Node::Text(t)) = parent.children.last_mut() {
                // Text arrives in pieces (each reference is one): the limit is on the joined node.
                if t.len() + s.len() > limits.max_text_bytes {
                    return Err(too_long());
                }
                t.push_str(s);
            } else {
                parent.children.push(Node::Text(s.to_owned()));
            }
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;
    use crate::xml::{escape, MAX_DEPTH};

    #[test]
    fn fuzz_findings_are_refused_consistently() {
        // Regression tests for fuzz/regressions/: control characters, references in namespace
        // names, names that are not QNames.
        assert_malformed(&[
            &b"<a>urn:&#x1;</a>"[..],
            b"<a b=\"&#x0;\"/>",
            b"<a xmlns=\"urn:&#x61;\"/>",
            b"<a xmlns:p=\"urn:&amp;\"/>",
            b"<xml:/>",
            b"<:a/>",
            b"<a:b:c xmlns:a=\"urn:a\"/>",
            b"<a>\x01</a>",
        ]);
        let doc = parse(b"<a>x\r\ny\rz&#xD;</a>").expect("parses");
        assert_eq!(
            doc.text(),
            "x\ny\nz\r",
            "line ends normalised, a character reference kept"
        );
        let mut out = String::new();
        escape("a\u{0}b\u{1}", &mut out);
        assert_eq!(out, "a\u{FFFD}b\u{FFFD}");
    }

    fn assert_malformed(inputs: &[&[u8]]) {
        for bad in inputs {
            assert!(
                matches!(parse(bad), Err(XmlError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Found in review: a declaration mid-document glued the text around it into one node (one
    /// limit check) while the one-pass reader saw two pieces, each under the limit.
    #[test]
    fn an_xml_declaration_is_accepted_only_at_the_start() {
        assert!(parse(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>").is_ok());
        assert!(parse("\u{feff}<?xml version=\"1.0\"?><a/>".as_bytes()).is_ok());
        assert_malformed(&[
            &b"<a><?xml version=\"1.0\"?></a>"[..],
            b" <?xml version=\"1.0\"?><a/>",
            b"<a/><?xml version=\"1.0\"?>",
            b"<?xml version=\"1.0\"?><?xml version=\"1.0\"?><a/>",
        ]);
        let half = " ".repeat(ParseLimits::MESSAGE.max_text_bytes / 2 + 1);
        let glued = format!("<a>{half}<?xml version=\"1.0\"?>{half}</a>");
        assert!(parse(glued.as_bytes()).is_err());
    }

    #[test]
    fn each_limit_is_enforced_just_past_its_value() {
        let l = ParseLimits::MESSAGE;
        let over = |what| move |r: Result<Element, XmlError>| matches!(r, Err(XmlError::OverLimit { what: w, .. }) if w == what);
        let doc = |inner: &str| format!("<r>{inner}</r>");

        let at = doc(&"<e/>".repeat(l.max_elements - 1));
        assert!(parse(at.as_bytes()).is_ok(), "exactly max_elements");
        let past = doc(&"<e/>".repeat(l.max_elements));
        assert!(over("elements in the document")(parse(past.as_bytes())));

        let attrs = |n: usize| (0..n).map(|i| format!(" a{i}=\"\"")).collect::<String>();
        assert!(parse(format!("<r{}/>", attrs(l.max_attributes_per_element)).as_bytes()).is_ok());
        let past = format!("<r{}/>", attrs(l.max_attributes_per_element + 1));
        assert!(over("attributes on one element")(parse(past.as_bytes())));
        // Namespace declarations count: they cost the resolver as much as attributes.
        let ns: String = (0..=l.max_attributes_per_element)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect();
        assert!(over("attributes on one element")(parse(
            format!("<r{ns}/>").as_bytes()
        )));
        let per = l.max_attributes_per_element;
        let n = l.max_attributes / per + 1;
        let past = doc(&format!("<e{}/>", attrs(per)).repeat(n));
        assert!(over("attributes in the document")(parse(past.as_bytes())));

        assert!(parse(doc(&"x".repeat(l.max_text_bytes)).as_bytes()).is_ok());
        let past = doc(&"x".repeat(l.max_text_bytes + 1));
        assert!(over("bytes in a text node")(parse(past.as_bytes())));
        // Joined text counts, however it is split into pieces.
        let half = "x".repeat(l.max_text_bytes / 2);
        let past = doc(&format!("{half}&amp;<![CDATA[{half}]]>"));
        assert!(over("bytes in a text node")(parse(past.as_bytes())));

        let name = "n".repeat(l.max_name_bytes);
        assert!(parse(format!("<{name}/>").as_bytes()).is_ok());
        let long = "n".repeat(l.max_name_bytes + 1);
        assert!(over("bytes in a name")(parse(
            format!("<{long}/>").as_bytes()
        )));
        assert!(over("bytes in a name")(parse(
            format!("<r {long}=\"\"/>").as_bytes()
        )));
        assert!(over("bytes in a name")(parse(
            format!("<p:r xmlns:{long}=\"urn:x\" xmlns:p=\"urn:p\"/>").as_bytes()
        )));

        let v = "v".repeat(l.max_attr_value_bytes);
        assert!(parse(format!("<r a=\"{v}\"/>").as_bytes()).is_ok());
        assert!(over("bytes in an attribute value")(parse(
            format!("<r a=\"{v}v\"/>").as_bytes()
        )));
        assert!(over("bytes in an attribute value")(parse(
            format!("<r xmlns=\"urn:{v}\"/>").as_bytes()
        )));

        // Import files are not held to the message limits.
        let many = doc(&"<e/>".repeat(l.max_elements * 2));
        assert!(parse_with(many.as_bytes(), &ParseLimits::FILE).is_ok());
    }

    #[test]
    fn element_positions_give_lines() {
        let doc = b"<a>\n  <b/>\n  <c>x</c>\n</a>";
        let e = parse(doc).expect("parses");
        let lines: Vec<usize> = e.elements().map(|c| line_of(doc, c.pos)).collect();
        assert_eq!(lines, vec![2, 3]);
        assert_eq!(&doc[e.elements().nth(1).expect("c").pos..][..3], b"<c>");
    }

    #[test]
    fn resolves_namespaces_and_entities() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?><a:x xmlns:a="urn:a"><y k="1&amp;2">t&lt;&#65;<![CDATA[<z>]]></y></a:x>"#;
        let e = parse(doc).expect("parses");
        assert!(e.is(Some("urn:a"), "x"));
        let y = e.elements().next().expect("child");
        assert!(y.is(None, "y"));
        assert_eq!(y.attr(None, "k"), Some("1&2"));
        assert_eq!(y.text(), "t<A<z>");
    }

    #[test]
    fn refuses_dtd_and_foreign_encodings() {
        let dtd = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>"#;
        assert_eq!(parse(dtd), Err(XmlError::Dtd));
        let latin = br#"<?xml version="1.0" encoding="ISO-8859-1"?><x/>"#;
        assert!(matches!(parse(latin), Err(XmlError::NotUtf8(_))));
        assert!(matches!(parse(b"<x>\xff</x>"), Err(XmlError::NotUtf8(_))));
    }

    #[test]
    fn refuses_malformed_and_deep_input() {
        assert_malformed(&[
            &b"<x>"[..],
            b"<x></y>",
            b"",
            b"hello",
            b"<x/><y/>",
            b"<p:x/>",
            b"<x>&foo;</x>",
        ]);
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooDeep(MAX_DEPTH)));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn characters_outside_xml_are_refused_in_text_and_attributes_and_names_are_checked() {
        for bad in ["\u{1}", "\u{1F}", "\u{FFFE}", "\u{FFFF}", "ok\u{FFFF}"] {
            for doc in [format!("<x>{bad}</x>"), format!("<x a=\"{bad}\"/>")] {
                let err = parse(doc.as_bytes()).expect_err(&doc);
                assert!(
                    matches!(&err, XmlError::Malformed(m) if m.contains("is not allowed in XML")),
                    "{doc:?}: {err:?}"
                );
            }
        }
        // Tab, line ends and characters whose UTF-8 starts with 0xEF (U+F000, U+FFFD) are XML.
        let fine = "<x a=\"\u{F000}\t\">é\u{FFFD}\u{F000}\n\u{1F600}</x>";
        let root = parse(fine.as_bytes()).expect("valid characters");
        assert_eq!(root.text(), "é\u{FFFD}\u{F000}\n\u{1F600}");
        for bad in ["<:x/>", "<x: />", "<a:b:c/>", "<x :a=\"1\"/>"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
