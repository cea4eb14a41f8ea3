//! Small XML helpers shared by the message and envelope writers: escaping and namespace constants.
//!
//! Kept apart so that `suwiml` and `soap` agree on the exact bytes they emit (which matters once
//! responses are signed over their canonical form).

use std::sync::Arc;

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace: recognised only to answer `VersionMismatch`.
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing 1.0.
pub const NS_WSA: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Security 1.0 secext.
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Security 1.0 utility.
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// WS-Security 1.1 secext.
pub const NS_WSSE11: &str = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
/// XML-DSig namespace.
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// SuwiML FWI v0205.
pub const NS_FWI: &str = "http://bkwi.nl/SuwiML/FWI/v0205";
/// GSDDossierReintegratie v0200 body namespace.
pub const NS_GSD: &str = "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie/v0200";
/// IBVerwijsindex v0300 body namespace.
pub const NS_VI: &str = "http://bkwi.nl/SuwiML/Diensten/IBVerwijsindex/v0300";

/// Escapes text content exactly as exclusive C14N does, so that what dkd writes is already in
/// canonical form and can be digested without re-canonicalising.
pub fn escape(s: &str, out: &mut String) {
    escape_with(s, out, &TEXT);
}

/// Escapes an attribute value the way C14N does.
pub fn escape_attr(s: &str, out: &mut String) {
    escape_with(s, out, &ATTR);
}

/// Per byte: 0 for a byte copied as it is, otherwise what to do with it (see [`escape_with`]).
const fn escape_table(attr: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = FORBIDDEN;
        b += 1;
    }
    t[b'\r' as usize] = b'\r';
    t[b'&' as usize] = b'&';
    t[b'<' as usize] = b'<';
    t[0xEF] = LEAD_EF;
    if attr {
        t[b'"' as usize] = b'"';
        t[b'\t' as usize] = b'\t';
        t[b'\n' as usize] = b'\n';
    } else {
        t[b'>' as usize] = b'>';
        t[b'\t' as usize] = 0;
        t[b'\n' as usize] = 0;
    }
    t
}

const FORBIDDEN: u8 = 1;
const LEAD_EF: u8 = 2;
static TEXT: [u8; 256] = escape_table(false);
static ATTR: [u8; 256] = escape_table(true);

/// Copies runs of plain characters in one piece; never writes a character XML forbids (it could
/// only come from an echoed error). Works on bytes with a table: every character C14N replaces
/// is ASCII, and in a `str` the only characters XML forbids are C0 controls and U+FFFE/U+FFFF,
/// whose UTF-8 starts with 0xEF (escaping was ~7 % of an unsigned answer's work in process).
fn escape_with(s: &str, out: &mut String, table: &[u8; 256]) {
    out.reserve(s.len());
    let bytes = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while let Some(n) = bytes[i..].iter().position(|&b| table[usize::from(b)] != 0) {
        i += n;
        let (replacement, len) = match table[usize::from(bytes[i])] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' => ("&#x9;", 1),
            b'\n' => ("&#xA;", 1),
            b'\r' => ("&#xD;", 1),
            LEAD_EF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                ("\u{FFFD}", 3)
            }
            LEAD_EF => {
                // Another character starting with 0xEF: plain.
                i += 1;
                continue;
            }
            _ => ("\u{FFFD}", 1),
        };
        // `plain..i` ends before an ASCII byte or a lead byte: a character boundary.
        out.push_str(&s[plain..i]);
        out.push_str(replacement);
        i += len;
        plain = i;
    }
    out.push_str(&s[plain..]);
}

/// Appends `<name>text</name>` with escaping.
pub fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape(text, out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_characters() {
        let mut s = String::new();
        escape("a<b>&\"c\r", &mut s);
        assert_eq!(s, "a&lt;b&gt;&amp;\"c&#xD;");
        let mut a = String::new();
        escape_attr("a<\"&\n", &mut a);
        assert_eq!(a, "a&lt;&quot;&amp;&#xA;");
        // Characters XML forbids never reach the output; text around them, multi-byte included, does.
        let mut f = String::new();
        escape("é\u{1}ü<\u{FFFE}z", &mut f);
        assert_eq!(f, "é\u{FFFD}ü&lt;\u{FFFD}z");
    }

    /// The byte-wise escaping against a character-by-character statement of the rule, over every
    /// character of the BMP edges and a few beyond.
    #[test]
    fn escaping_bytes_equals_escaping_characters() {
        let reference = |s: &str, attr: bool| {
            let mut o = String::new();
            for c in s.chars() {
                match c {
                    '&' => o.push_str("&amp;"),
                    '<' => o.push_str("&lt;"),
                    '>' if !attr => o.push_str("&gt;"),
                    '"' if attr => o.push_str("&quot;"),
                    '\t' if attr => o.push_str("&#x9;"),
                    '\n' if attr => o.push_str("&#xA;"),
                    '\r' => o.push_str("&#xD;"),
                    c if !is_xml_char(c) => o.push('\u{FFFD}'),
                    c => o.push(c),
                }
            }
            o
        };
        let chars: String = (0u32..0x300)
            .chain(0xD700..0xD800)
            .chain(0xE000..0xE100)
            .chain(0xEFF0..0xF010)
            .chain(0xFFF0..=0xFFFF)
            .chain([0x10000, 0x1F600, 0x10FFFF])
            .filter_map(char::from_u32)
            .collect();
        for piece in [chars.as_str(), "plain text", "", "\u{FFFF}", "x\u{FFFE}"] {
            let (mut t, mut a) = (String::new(), String::new());
            escape(piece, &mut t);
            escape_attr(piece, &mut a);
            assert_eq!(t, reference(piece, false));
            assert_eq!(a, reference(piece, true));
        }
    }
}

/// A parsed element: namespace-resolved names, attributes and children. Small on purpose: SOAP
/// messages dkd accepts are bounded in size and depth, and a tree makes every structural rule
/// (order, cardinality, qualification) a plain `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI, `None` for an unqualified element. Shared: a document names a handful of
    /// namespaces on every element, and one allocation each per parse was measurable.
    pub ns: Option<Arc<str>>,
    /// Local name.
    pub local: String,
    /// Attributes other than namespace declarations.
    pub attrs: Vec<Attr>,
    /// Child nodes in document order.
    pub children: Vec<Node>,
    /// Byte offset of the start tag in the document (for `file:line` messages).
    pub pos: usize,
}

/// An attribute with its resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Namespace URI, `None` for an unprefixed attribute.
    pub ns: Option<Arc<str>>,
    /// Local name.
    pub local: String,
    /// Unescaped value.
    pub value: String,
}

/// A child node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (entities and character references resolved, CDATA included).
    Text(String),
}

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

/// How deep dkd follows element nesting. SuwiML messages with WS-Security need about 12 levels;
/// the limit keeps the tree (and its recursive drop) bounded for hostile input.
pub const MAX_DEPTH: usize = 64;

/// Bounds on what [`parse_with`] builds. The body limit (`server.max_body_bytes`, 1 MiB) already
/// bounds the total, but within 1 MiB a hostile message can still be ~100,000 empty elements or
/// attributes, or one 1 MiB text node, each of which costs far more memory and time in the tree,
/// the namespace resolver and the signature verifier's parser than its bytes suggest. A signed
/// GSDReintegratieInfo (fuzz/corpus/wssec/seed-signed-found.xml) has 53 elements, at most 3
/// attributes on one element, names under 30 bytes, attribute values under 100 bytes and no text
/// over 1.3 KiB (the BinarySecurityToken; a PKIoverheid certificate makes that ~3 KiB), so the
/// defaults leave one to two orders of magnitude of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Element nesting.
    pub max_depth: usize,
    /// Elements in the document.
    pub max_elements: usize,
    /// Attributes on one element, namespace declarations included.
    pub max_attributes_per_element: usize,
    /// Attributes in the document, namespace declarations included.
    pub max_attributes: usize,
    /// Bytes of one text node (adjacent text, references and CDATA joined, after unescaping).
    pub max_text_bytes: usize,
    /// Bytes of an element or attribute name, prefix included.
    pub max_name_bytes: usize,
    /// Bytes of one attribute value (namespace names included) as written, before unescaping.
    pub max_attr_value_bytes: usize,
}

impl ParseLimits {
    /// For SOAP messages from the network: what [`parse`] uses.
    pub const MESSAGE: ParseLimits = ParseLimits {
        max_depth: MAX_DEPTH,
        max_elements: 10_000,
        max_attributes_per_element: 64,
        max_attributes: 10_000,
        max_text_bytes: 64 * 1024,
        max_name_bytes: 256,
        max_attr_value_bytes: 8 * 1024,
    };

    /// For import files an operator hands to `dkd import`: they hold a million persons, so only
    /// the depth (which bounds recursion) is limited.
    pub const FILE: ParseLimits = ParseLimits {
        max_depth: MAX_DEPTH,
        max_elements: usize::MAX,
        max_attributes_per_element: usize::MAX,
        max_attributes: usize::MAX,
        max_text_bytes: usize::MAX,
        max_name_bytes: usize::MAX,
        max_attr_value_bytes: usize::MAX,
    };
}

impl Element {
    /// Child elements, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Whether this element has the given namespace and local name.
    pub fn is(&self, ns: Option<&str>, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == ns
    }

    /// The concatenated text of this element's direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Whether the element has any non-whitespace text directly inside it.
    pub fn has_text(&self) -> bool {
        self.children
            .iter()
            .any(|n| matches!(n, Node::Text(t) if !t.trim().is_empty()))
    }

    /// The value of an attribute.
    pub fn attr(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.local == local && a.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    /// `{ns}local` for messages.
    pub fn qname(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }
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
