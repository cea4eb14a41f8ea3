//! The common request, read in one pass without building a tree.
//!
//! Nearly every unsigned request dkd answers has one shape: an Envelope whose Header holds only
//! WS-Addressing blocks, and a Body holding a GSDReintegratieInfo with one Burgerservicenr.
//! Building the element tree for it ([`crate::xml::parse`]) was the largest part of an unsigned
//! answer's SOAP work (3 of 7 µs in process, 14 % of the server's CPU under load). [`read`]
//! accepts exactly that shape in one streaming pass and answers `None` for anything else,
//! well-formed or not; the caller then takes the full path, which finds the precise fault.
//!
//! So this reader only has to be *narrower* than the full path, never different: whatever it
//! accepts, the full path accepts too, with the same WS-Addressing values and the same BSN. It
//! uses the same tokenizer with the same settings and the same character, name and size checks,
//! and gives up on everything the full path treats specially (references, CDATA, comments,
//! carriage returns, empty-element tags, unknown or repeated headers, attributes other than
//! namespace declarations and the Body's `wsu:Id`). The tests below and the `fast_diff` fuzz target
//! compare the two paths.

use super::envelope::Addressing;
use crate::suwiml::types::Bsn;
use crate::xml::{
    check_chars, check_qname, plain_tokenizer, ParseLimits, NS_GSD, NS_SOAP11, NS_WSA, NS_WSU,
};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{PrefixDeclaration, QName};
use std::borrow::Cow;

/// What the full path would read from an accepted request: its WS-Addressing headers (not yet
/// validated) and the BSN of its GSDReintegratieInfo (format and 11-test passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simple {
    /// The WS-Addressing headers, as `envelope::read_headers` reads them.
    pub addressing: Addressing,
    /// The Burgerservicenr asked about.
    pub bsn: Bsn,
}

/// Where the reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Envelope,
    Header,
    Body,
    /// A header whose text is its value (MessageID, Action, To, RelatesTo).
    Value(Slot),
    /// A header whose value is in its `wsa:Address` (From, ReplyTo, FaultTo).
    Endpoint(Slot),
    Address(Slot),
    Request,
    Burgerservicenr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    MessageId,
    Action,
    To,
    RelatesTo,
    From,
    ReplyTo,
    FaultTo,
}

impl Slot {
    fn of(local: &[u8]) -> Option<Slot> {
        Some(match local {
            b"MessageID" => Slot::MessageId,
            b"Action" => Slot::Action,
            b"To" => Slot::To,
            b"RelatesTo" => Slot::RelatesTo,
            b"From" => Slot::From,
            b"ReplyTo" => Slot::ReplyTo,
            b"FaultTo" => Slot::FaultTo,
            _ => return None,
        })
    }

    fn field(self, a: &mut Addressing) -> &mut Option<String> {
        match self {
            Slot::MessageId => &mut a.message_id,
            Slot::Action => &mut a.action,
            Slot::To => &mut a.to,
            Slot::RelatesTo => &mut a.relates_to,
            Slot::From => &mut a.from,
            Slot::ReplyTo => &mut a.reply_to,
            Slot::FaultTo => &mut a.fault_to,
        }
    }
}

/// The namespaces of the accepted shape.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ns {
    Soap,
    Wsa,
    Gsd,
    Wsu,
    Other,
}

impl Ns {
    fn of(uri: &[u8]) -> Ns {
        match uri {
            u if u == NS_SOAP11.as_bytes() => Ns::Soap,
            u if u == NS_WSA.as_bytes() => Ns::Wsa,
            u if u == NS_GSD.as_bytes() => Ns::Gsd,
            u if u == NS_WSU.as_bytes() => Ns::Wsu,
            _ => Ns::Other,
        }
    }
}

/// The namespace declarations in scope, innermost last.
///
/// quick-xml's `NsReader` resolves every name against a table of namespace URIs it copies per
/// element, which cost more than the tokenizing itself (`floor/quick_xml_scan*` in
/// BENCHMARKS.md). The shape accepted here needs only to know which of a few namespaces a prefix
/// stands for, so this table keeps that, for short prefixes and a few declarations, and the
/// reader gives up on everything else: longer prefixes, more declarations, the reserved `xml`
/// and `xmlns` prefixes and namespaces (which `NsReader` treats specially), and undeclaring a
/// prefix (`xmlns:p=""`).
struct Scope {
    bindings: [Binding; MAX_BINDINGS],
    len: usize,
}

#[derive(Clone, Copy)]
struct Binding {
    prefix: [u8; MAX_PREFIX],
    /// 0 for the default namespace (`xmlns="…"`).
    prefix_len: usize,
    /// `None`: the default namespace undeclared (`xmlns=""`).
    ns: Option<Ns>,
    /// The depth of the declaring element (the root is 1).
    depth: usize,
}

const MAX_BINDINGS: usize = 12;
const MAX_PREFIX: usize = 16;
const XML_NS: &[u8] = b"http://www.w3.org/XML/1998/namespace";
const XMLNS_NS: &[u8] = b"http://www.w3.org/2000/xmlns/";

impl Scope {
    fn new() -> Scope {
        Scope {
            bindings: [Binding {
                prefix: [0; MAX_PREFIX],
                prefix_len: 0,
                ns: None,
                depth: 0,
            }; MAX_BINDINGS],
            len: 0,
        }
    }

    /// Adds a declaration of the element at `depth`; `None` where the reader gives up.
    fn declare(&mut self, decl: PrefixDeclaration<'_>, uri: &[u8], depth: usize) -> Option<()> {
        if uri == XML_NS || uri == XMLNS_NS || self.len == MAX_BINDINGS {
            return None;
        }
        let (prefix, ns) = match decl {
            PrefixDeclaration::Default => (&[][..], (!uri.is_empty()).then(|| Ns::of(uri))),
            PrefixDeclaration::Named(p) => {
                if p == b"xml" || p == b"xmlns" || p.is_empty() || uri.is_empty() {
                    return None;
                }
                (p, Some(Ns::of(uri)))
            }
        };
        let b = self.bindings.get_mut(self.len)?;
        b.prefix.get_mut(..prefix.len())?.copy_from_slice(prefix);
        b.prefix_len = prefix.len();
        b.ns = ns;
        b.depth = depth;
        self.len += 1;
        Some(())
    }

    /// The namespace of a name: `Some(None)` unbound, `None` an undeclared prefix (the reader gives
    /// up). Unprefixed attributes have no namespace; unprefixed elements the default one.
    fn resolve(&self, name: QName<'_>, element: bool) -> Option<Option<Ns>> {
        let prefix = name.prefix().map(|p| p.into_inner());
        if prefix.is_none() && !element {
            return Some(None);
        }
        let wanted = prefix.unwrap_or_default();
        let found = self.bindings[..self.len]
            .iter()
            .rev()
            .find(|b| b.prefix.get(..b.prefix_len) == Some(wanted));
        match (found, prefix) {
            (Some(b), _) => Some(b.ns),
            (None, None) => Some(None),
            (None, Some(_)) => None,
        }
    }

    /// Drops the declarations of elements deeper than `depth`.
    fn leave(&mut self, depth: usize) {
        while self.len > 0 && self.bindings[self.len - 1].depth > depth {
            self.len -= 1;
        }
    }
}

/// What a start tag carries besides namespace declarations.
#[derive(PartialEq)]
enum Attrs {
    None,
    /// Only `wsu:Id` (permitted on the Body's request element, for signing).
    WsuId,
    Other,
}

const LIMITS: ParseLimits = ParseLimits::MESSAGE;
/// Attributes on one tag, namespace declarations included (the full path takes up to
/// `LIMITS.max_attributes_per_element`).
const MAX_ATTRIBUTES: usize = 8;

/// Reads a GSDReintegratieInfo request of the common shape; `None` for anything else (the full
/// path then decides).
pub fn read(bytes: &[u8]) -> Option<Simple> {
    let input = std::str::from_utf8(bytes).ok()?;
    let mut reader = plain_tokenizer(input);
    let mut scope = Scope::new();

    let mut stack: Vec<Frame> = Vec::with_capacity(6);
    let (mut root_done, mut header_seen, mut body_seen) = (false, false, false);
    let (mut request_seen, mut address_seen) = (false, false);
    // Borrowed from the input: only the trimmed value is copied.
    let mut value: Option<&str> = None;
    let mut bsn: Option<Bsn> = None;
    let mut a = Addressing::default();
    let mut first = true;
    loop {
        let event = reader.read_event().ok()?;
        // A declaration anywhere but first is the full path's to refuse.
        if matches!(event, Event::Decl(_)) && !first {
            return None;
        }
        first = false;
        match event {
            Event::Start(s) => {
                let name = s.name();
                if name.as_ref().len() > LIMITS.max_name_bytes
                    || check_qname(name.as_ref()).is_err()
                {
                    return None;
                }
                // The tag's own declarations are in scope for its name and attributes.
                let attrs = attributes(&mut scope, stack.len() + 1, &s)?;
                let ns = scope.resolve(name, true)?;
                let local = s.local_name();
                let frame = match (stack.last(), ns, local.as_ref()) {
                    (None, Some(Ns::Soap), b"Envelope") if !root_done => Frame::Envelope,
                    (Some(Frame::Envelope), Some(Ns::Soap), b"Header")
                        if !header_seen && !body_seen =>
                    {
                        header_seen = true;
                        Frame::Header
                    }
                    (Some(Frame::Envelope), Some(Ns::Soap), b"Body") if !body_seen => {
                        body_seen = true;
                        Frame::Body
                    }
                    (Some(Frame::Header), Some(Ns::Wsa), l) => {
                        let slot = Slot::of(l)?;
                        // A repeated header is a fault the full path words.
                        if slot.field(&mut a).is_some() {
                            return None;
                        }
                        match slot {
                            Slot::From | Slot::ReplyTo | Slot::FaultTo => {
                                address_seen = false;
                                Frame::Endpoint(slot)
                            }
                            _ => Frame::Value(slot),
                        }
                    }
                    (Some(Frame::Endpoint(slot)), Some(Ns::Wsa), b"Address") if !address_seen => {
                        address_seen = true;
                        Frame::Address(*slot)
                    }
                    (Some(Frame::Body), Some(Ns::Gsd), b"GSDReintegratieInfo")
                        if !request_seen && attrs != Attrs::Other =>
                    {
                        request_seen = true;
                        Frame::Request
                    }
                    (Some(Frame::Request), None, b"Burgerservicenr")
                        if bsn.is_none() && attrs == Attrs::None =>
                    {
                        Frame::Burgerservicenr
                    }
                    _ => return None,
                };
                value = None;
                stack.push(frame);
            }
            Event::End(_) => {
                let frame = stack.pop()?;
                scope.leave(stack.len());
                match frame {
                    Frame::Envelope => {
                        if !body_seen {
                            return None;
                        }
                        root_done = true;
                    }
                    Frame::Header => {}
                    Frame::Body => {
                        if !request_seen {
                            return None;
                        }
                    }
                    Frame::Value(slot) | Frame::Address(slot) => {
                        *slot.field(&mut a) =
                            Some(value.take().unwrap_or_default().trim().to_owned());
                    }
                    Frame::Endpoint(_) => {
                        if !address_seen {
                            return None;
                        }
                    }
                    Frame::Request => {
                        bsn?;
                    }
                    Frame::Burgerservicenr => {
                        // Not trimmed: the full path reads the text as it is.
                        bsn = Some(Bsn::parse(value.take().unwrap_or_default()).ok()?);
                    }
                }
            }
            Event::Text(t) => {
                let s = match t.into_inner() {
                    Cow::Borrowed(b) => within(input, b)?,
                    Cow::Owned(_) => return None,
                };
                // Line ends are normalised by the full path: leave such text to it.
                if s.len() > LIMITS.max_text_bytes || s.contains('\r') || check_chars(s).is_err() {
                    return None;
                }
                match stack.last() {
                    Some(Frame::Value(_) | Frame::Address(_) | Frame::Burgerservicenr) => {
                        if value.is_some() {
                            return None;
                        }
                        value = Some(s);
                    }
                    // Narrower than the full path's `trim`: ASCII only (CR is gone above).
                    _ if s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n')) => {}
                    _ => return None,
                }
            }
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.ok()?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") && !enc.eq_ignore_ascii_case(b"utf8") {
                        return None;
                    }
                }
            }
            Event::Eof => break,
            Event::Empty(_)
            | Event::CData(_)
            | Event::Comment(_)
            | Event::PI(_)
            | Event::DocType(_)
            | Event::GeneralRef(_) => return None,
        }
    }
    if !root_done || !stack.is_empty() {
        return None;
    }
    Some(Simple {
        addressing: a,
        bsn: bsn?,
    })
}

/// `part` of `input` as the `str` it is there: the input was checked as UTF-8 once, where
/// quick-xml's `decode` checks every text again. `None` if `part` is not a whole-character piece
/// of `input`.
fn within<'a>(input: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    input.get(start..start.checked_add(part.len())?)
}

/// Checks a start tag's attributes as the full parser does, adds its namespace declarations to
/// `scope` (the tag being at `depth`), and says what the other attributes are; `None` where the
/// full parser would refuse them or this reader gives up.
fn attributes(scope: &mut Scope, depth: usize, s: &BytesStart<'_>) -> Option<Attrs> {
    // Duplicates are found here as quick-xml finds them (equal raw names), without the vector it
    // allocates per tag for that; tags with more attributes go to the full path.
    let mut seen: [&[u8]; MAX_ATTRIBUTES] = [&[]; MAX_ATTRIBUTES];
    // The other attributes' names, resolved once all of the tag's declarations are known.
    let mut others: [&[u8]; MAX_ATTRIBUTES] = [&[]; MAX_ATTRIBUTES];
    let mut n_others = 0;
    for (n, a) in s.attributes().with_checks(false).enumerate() {
        if n >= MAX_ATTRIBUTES {
            return None;
        }
        let a = a.ok()?;
        let key = a.key.into_inner();
        if seen[..n].contains(&key) {
            return None;
        }
        seen[n] = key;
        if key.len() > LIMITS.max_name_bytes
            || check_qname(key).is_err()
            || a.value.len() > LIMITS.max_attr_value_bytes
        {
            return None;
        }
        if let Some(decl) = a.key.as_namespace_binding() {
            if a.value.contains(&b'&') {
                return None;
            }
            scope.declare(decl, &a.value, depth)?;
            continue;
        }
        let v = a.unescape_value().ok()?;
        check_chars(&v).ok()?;
        others[n_others] = key;
        n_others += 1;
    }
    let mut kind = Attrs::None;
    for key in &others[..n_others] {
        let key = QName(key);
        let ns = scope.resolve(key, false)?;
        kind = if ns == Some(Ns::Wsu) && key.local_name().as_ref() == b"Id" && kind != Attrs::Other
        {
            Attrs::WsuId
        } else {
            Attrs::Other
        };
    }
    Some(kind)
}

/// What the full path reads from the same bytes, for comparisons with [`read`]: `None` where it
/// refuses them.
pub fn read_fully(bytes: &[u8]) -> Option<Simple> {
    let env = super::envelope::parse(bytes).ok()?;
    let headers = super::envelope::read_headers(&env.headers);
    if headers.refused.is_some() || headers.security.is_some() {
        return None;
    }
    let addressing = headers.addressing;
    let bsn = crate::suwiml::gsd::parse_request(&env.body).ok()?;
    Some(Simple { addressing, bsn })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WSA: &str = "xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"";

    fn request(headers: &str, body: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{NS_SOAP11}\">\n  \
             <soapenv:Header>{headers}</soapenv:Header>\n  <soapenv:Body>{body}</soapenv:Body>\n</soapenv:Envelope>\n"
        )
    }

    fn headers() -> String {
        format!(
            "<wsa:MessageID {WSA}>urn:uuid:1</wsa:MessageID><wsa:Action {WSA}> urn:a </wsa:Action>\
             <wsa:To {WSA}>https://x/y</wsa:To><wsa:From {WSA}><wsa:Address>http://c/?oin=00000001234567890000</wsa:Address></wsa:From>"
        )
    }

    fn body(inner: &str) -> String {
        format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\">{inner}</gsd:GSDReintegratieInfo>")
    }

    #[test]
    fn the_common_request_is_read_in_one_pass_as_the_full_path_reads_it() {
        let ok = request(
            &headers(),
            &body("<Burgerservicenr>999900006</Burgerservicenr>"),
        );
        let fast = read(ok.as_bytes()).expect("the common shape takes the fast path");
        assert_eq!(fast.bsn.as_str(), "999900006");
        assert_eq!(fast.addressing.action.as_deref(), Some("urn:a"));
        assert_eq!(
            fast.addressing.from.as_deref(),
            Some("http://c/?oin=00000001234567890000")
        );
        assert_eq!(Some(fast), read_fully(ok.as_bytes()));
        // What dkd's own client sends (the IB router, `dkd call`, the load generator).
        let sent = crate::soap::client::envelope(
            None,
            &crate::soap::client::Outgoing {
                to: "https://x/GSDDossierReintegratie-v0200",
                from_address: "http://c/?oin=00000001234567890000",
                action: "urn:a",
                body: &body("<Burgerservicenr>999900006</Burgerservicenr>"),
                message_id: "urn:uuid:2",
            },
            time::OffsetDateTime::now_utc(),
        )
        .expect("unsigned");
        assert!(read(sent.as_bytes()).is_some(), "{sent}");
        assert_eq!(read(sent.as_bytes()), read_fully(sent.as_bytes()));
        // Attributes the full path ignores on headers, and wsu:Id on the request.
        let attrs = request(
            &headers().replace(
                "<wsa:To ",
                "<wsa:To soapenv:mustUnderstand=\"1\" ",
            ),
            &body("<Burgerservicenr>999900006</Burgerservicenr>").replace(
                "<gsd:GSDReintegratieInfo ",
                "<gsd:GSDReintegratieInfo xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\" wsu:Id=\"b\" ",
            ),
        );
        assert!(read(attrs.as_bytes()).is_some(), "{attrs}");
        assert_eq!(read(attrs.as_bytes()), read_fully(attrs.as_bytes()));
    }

    #[test]
    fn anything_else_is_left_to_the_full_path() {
        let bsn = "<Burgerservicenr>999900006</Burgerservicenr>";
        let cases: Vec<(&str, String)> = vec![
            (
                "comment",
                request(&headers(), &body(&format!("<!-- x -->{bsn}"))),
            ),
            (
                "reference",
                request(
                    &headers().replace("urn:uuid:1", "urn:uuid:&#49;"),
                    &body(bsn),
                ),
            ),
            (
                "CDATA",
                request(
                    &headers(),
                    &body("<Burgerservicenr><![CDATA[999900006]]></Burgerservicenr>"),
                ),
            ),
            (
                "carriage return",
                request(&headers().replace("urn:a", "urn:a\r"), &body(bsn)),
            ),
            (
                "empty header",
                request(&format!("{}<wsa:RelatesTo {WSA}/>", headers()), &body(bsn)),
            ),
            (
                "repeated header",
                request(
                    &format!("{}<wsa:To {WSA}>https://x/z</wsa:To>", headers()),
                    &body(bsn),
                ),
            ),
            (
                "unknown header",
                request(
                    &format!("{}<x:Other xmlns:x=\"urn:x\"/>", headers()),
                    &body(bsn),
                ),
            ),
            (
                "From without Address",
                request(
                    &headers().replace(
                        "<wsa:Address>http://c/?oin=00000001234567890000</wsa:Address>",
                        "",
                    ),
                    &body(bsn),
                ),
            ),
            (
                "text in Body",
                request(&headers(), &format!("x{}", body(bsn))),
            ),
            (
                "other attribute on the request",
                request(
                    &headers(),
                    &body(bsn).replace(
                        "<gsd:GSDReintegratieInfo ",
                        "<gsd:GSDReintegratieInfo a=\"1\" ",
                    ),
                ),
            ),
            (
                "attribute on Burgerservicenr",
                request(
                    &headers(),
                    &body("<Burgerservicenr a=\"1\">999900006</Burgerservicenr>"),
                ),
            ),
            (
                "qualified Burgerservicenr",
                request(
                    &headers(),
                    &body("<gsd:Burgerservicenr>999900006</gsd:Burgerservicenr>"),
                ),
            ),
            (
                "second element in the request",
                request(&headers(), &body(&format!("{bsn}<X/>"))),
            ),
            (
                "11-test",
                request(
                    &headers(),
                    &body("<Burgerservicenr>999900007</Burgerservicenr>"),
                ),
            ),
            (
                "BSN with spaces",
                request(
                    &headers(),
                    &body("<Burgerservicenr> 999900006</Burgerservicenr>"),
                ),
            ),
            (
                "no Body",
                request(&headers(), "").replace("<soapenv:Body></soapenv:Body>", ""),
            ),
            (
                "content after the root",
                format!("{}<x/>", request(&headers(), &body(bsn))),
            ),
            (
                "DOCTYPE",
                format!("<!DOCTYPE x>{}", request(&headers(), &body(bsn))),
            ),
            (
                "undeclared prefix",
                request(
                    &headers().replace("<wsa:To ", "<wsa:To q:a=\"1\" "),
                    &body(bsn),
                ),
            ),
            (
                "duplicate attribute",
                request(
                    &headers().replace("<wsa:To ", "<wsa:To a=\"1\" a=\"2\" "),
                    &body(bsn),
                ),
            ),
            (
                "nine attributes on a tag",
                request(
                    &headers().replace(
                        "<wsa:To ",
                        "<wsa:To a=\"1\" b=\"1\" c=\"1\" d=\"1\" e=\"1\" f=\"1\" g=\"1\" h=\"1\" ",
                    ),
                    &body(bsn),
                ),
            ),
            (
                "declaration inside the document",
                request(
                    &headers().replace("<wsa:MessageID ", "<?xml version=\"1.0\"?><wsa:MessageID "),
                    &body(bsn),
                ),
            ),
            (
                "character outside XML",
                request(&headers().replace("urn:a", "urn:\u{1}a"), &body(bsn)),
            ),
            (
                "other encoding",
                request(&headers(), &body(bsn)).replace("UTF-8", "ISO-8859-1"),
            ),
            (
                "SOAP 1.2",
                request(&headers(), &body(bsn))
                    .replace(NS_SOAP11, "http://www.w3.org/2003/05/soap-envelope"),
            ),
            (
                "unclosed",
                request(&headers(), &body(bsn)).replace("</soapenv:Envelope>", ""),
            ),
        ];
        for (what, doc) in cases {
            assert_eq!(read(doc.as_bytes()), None, "{what}: {doc}");
        }
    }

    /// Found in review: text on both sides of a declaration inside the document, each piece under
    /// the text limit and together over it, was answered here and refused by the full path.
    #[test]
    fn a_declaration_inside_the_document_goes_to_the_full_path() {
        let half = " ".repeat(40_000);
        let doc = request(
            &format!("{half}<?xml version=\"1.0\"?>{half}{}", headers()),
            &body("<Burgerservicenr>999900006</Burgerservicenr>"),
        );
        assert_eq!(read(doc.as_bytes()), None);
        assert_eq!(read_fully(doc.as_bytes()), None);
    }

    /// The committed seeds and regression inputs of every fuzz target, and whatever else a local
    /// fuzz run left in `fuzz/corpus/` (thousands of documents close to the common shape): whatever
    /// the fast path accepts, the full path accepts the same way.
    #[test]
    fn the_fast_path_agrees_with_the_full_path_on_the_fuzz_inputs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = 0;
        for top in ["corpus", "regressions"] {
            for target in std::fs::read_dir(root.join(top)).expect("fuzz inputs") {
                for entry in std::fs::read_dir(target.expect("dir").path()).expect("dir") {
                    let path = entry.expect("entry").path();
                    let bytes = std::fs::read(&path).expect("read");
                    files += 1;
                    if let Some(s) = read(&bytes) {
                        assert_eq!(Some(s), read_fully(&bytes), "{}", path.display());
                    }
                }
            }
        }
        assert!(files >= 20, "only {files} fuzz inputs found");
    }

    /// A small deterministic differential fuzzer: mutants of the common request (tokens of XML
    /// and of the shape inserted, ranges deleted or overwritten), each checked against the full
    /// path, so the contract is tested on every machine and not only where a fuzz run left its
    /// corpus.
    #[test]
    fn namespaces_are_scoped_as_the_full_path_scopes_them() {
        let bsn = "<Burgerservicenr>999900006</Burgerservicenr>";
        let wsu = format!("xmlns:wsu=\"{NS_WSU}\"");
        let unprefixed = format!(
            "<GSDReintegratieInfo xmlns=\"{NS_GSD}\"><Burgerservicenr xmlns=\"\">999900006</Burgerservicenr></GSDReintegratieInfo>"
        );
        // (case, request, whether the fast reader takes it)
        let cases: Vec<(&str, String, bool)> = vec![
            (
                "default namespace, undeclared for the BSN",
                request(&headers(), &unprefixed),
                true,
            ),
            (
                "default namespace kept for the BSN",
                request(&headers(), &unprefixed.replace(" xmlns=\"\"", "")),
                false,
            ),
            (
                "prefix declared on the root, used in the body",
                request(&headers(), &body(bsn))
                    .replace(&format!(" xmlns:gsd=\"{NS_GSD}\""), "")
                    .replace(
                        "<soapenv:Envelope ",
                        &format!("<soapenv:Envelope xmlns:gsd=\"{NS_GSD}\" "),
                    ),
                true,
            ),
            (
                "prefix rebound deeper",
                request(&headers(), &body(bsn))
                    .replace("<soapenv:Body>", "<soapenv:Body xmlns:gsd=\"urn:other\">"),
                true,
            ),
            (
                "prefix rebound to another namespace on the request",
                request(&headers(), &body(bsn)).replace(NS_GSD, "urn:other"),
                false,
            ),
            (
                "prefix declared on a sibling only",
                request(
                    &headers().replace(&format!("<wsa:To {WSA}>"), "<wsa:To>"),
                    &body(bsn),
                ),
                false,
            ),
            (
                "wsu declared after wsu:Id on the same tag",
                request(
                    &headers(),
                    &body(bsn).replace(
                        "<gsd:GSDReintegratieInfo ",
                        &format!("<gsd:GSDReintegratieInfo wsu:Id=\"b\" {wsu} "),
                    ),
                ),
                true,
            ),
            (
                "wsu:Id with wsu declared on the body",
                request(
                    &headers(),
                    &body(bsn).replace(
                        "<gsd:GSDReintegratieInfo ",
                        "<gsd:GSDReintegratieInfo wsu:Id=\"b\" ",
                    ),
                )
                .replace("<soapenv:Body>", &format!("<soapenv:Body {wsu}>")),
                true,
            ),
            (
                "wsu:Id out of scope",
                request(
                    &headers().replace("<wsa:To ", &format!("<wsa:To {wsu} ")),
                    &body(bsn).replace(
                        "<gsd:GSDReintegratieInfo ",
                        "<gsd:GSDReintegratieInfo wsu:Id=\"b\" ",
                    ),
                ),
                false,
            ),
            (
                "Id in another namespace",
                request(
                    &headers(),
                    &body(bsn).replace(
                        "<gsd:GSDReintegratieInfo ",
                        "<gsd:GSDReintegratieInfo xmlns:wsu=\"urn:x\" wsu:Id=\"b\" ",
                    ),
                ),
                false,
            ),
            (
                "xml:lang on a header",
                request(
                    &headers().replace("<wsa:To ", "<wsa:To xml:lang=\"nl\" "),
                    &body(bsn),
                ),
                false,
            ),
            (
                "the xml prefix declared",
                request(&headers(), &body(bsn)).replace(
                    "<soapenv:Body>",
                    "<soapenv:Body xmlns:xml=\"http://www.w3.org/XML/1998/namespace\">",
                ),
                false,
            ),
            (
                "another prefix bound to the xml namespace",
                request(
                    &headers().replace(
                        "<wsa:To ",
                        "<wsa:To xmlns:p=\"http://www.w3.org/XML/1998/namespace\" ",
                    ),
                    &body(bsn),
                ),
                false,
            ),
            (
                "a prefix undeclared",
                request(&headers(), &body(bsn))
                    .replace("<soapenv:Body>", "<soapenv:Body xmlns:p=\"\">"),
                false,
            ),
            (
                "a prefix longer than the table keeps",
                request(&headers(), &body(bsn))
                    .replace("gsd:", "gsdgsdgsdgsdgsdgsd:")
                    .replace("xmlns:gsd=", "xmlns:gsdgsdgsdgsdgsdgsd="),
                false,
            ),
            (
                "more declarations than the table keeps",
                {
                    let decls = |from: usize| {
                        (from..from + 6)
                            .map(|i| format!("xmlns:p{i}=\"urn:{i}\""))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    request(&headers(), &body(bsn))
                        .replace("<soapenv:Body>", &format!("<soapenv:Body {}>", decls(0)))
                        .replace(
                            "<soapenv:Envelope ",
                            &format!("<soapenv:Envelope {} ", decls(6)),
                        )
                },
                false,
            ),
        ];
        for (case, doc, fast) in cases {
            let full = read_fully(doc.as_bytes());
            match read(doc.as_bytes()) {
                Some(s) => {
                    assert!(fast, "{case}: took the fast path\n{doc}");
                    assert_eq!(Some(s), full, "{case}\n{doc}");
                }
                None => assert!(!fast, "{case}: left to the full path\n{doc}"),
            }
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_path_on_mutants() {
        let bsn = "<Burgerservicenr>999900006</Burgerservicenr>";
        let bases = [
            request(&headers(), &body(bsn)),
            request(&headers().replace("urn:uuid:1", "urn:uuid:2"), &body(bsn))
                .replace("\n", "")
                .replace(
                    "<soapenv:Envelope ",
                    "<soapenv:Envelope xmlns:gsd=\"urn:other\" ",
                ),
        ];
        let tokens: &[&str] = &[
            " ",
            "\n",
            "\r",
            "\t",
            "<",
            ">",
            "/",
            "\"",
            "'",
            "=",
            ":",
            "&amp;",
            "&#49;",
            "&lt;",
            "<!-- c -->",
            "<![CDATA[9]]>",
            "<?xml version=\"1.0\"?>",
            "<?pi x?>",
            "<!DOCTYPE a>",
            " xmlns=\"urn:x\"",
            " xmlns=\"\"",
            " xmlns:wsa=\"urn:x\"",
            " xmlns:gsd=\"urn:x\"",
            " a=\"1\"",
            " a=\"1\" a=\"2\"",
            " wsu:Id=\"x\"",
            " q:a=\"1\"",
            "wsa:",
            "soapenv:",
            "gsd:",
            "Burgerservicenr",
            "MessageID",
            "RelatesTo",
            "ReplyTo",
            "From",
            "Address",
            "Header",
            "Body",
            "Envelope",
            "<wsa:To>x</wsa:To>",
            "<x/>",
            "</a>",
            "\u{1}",
            "\u{FFFE}",
            "\u{FEFF}",
            "\u{A0}",
            "9",
            "0",
            "é",
        ];
        // Declarations of the namespaces the shape needs, and of the reserved ones.
        let declarations: Vec<String> = [
            ("xmlns:wsu", NS_WSU),
            ("xmlns:wsa", NS_WSA),
            ("xmlns:soapenv", NS_SOAP11),
            ("xmlns:gsd", NS_GSD),
            ("xmlns", NS_GSD),
            ("xmlns:xml", "http://www.w3.org/XML/1998/namespace"),
            ("xmlns:p", ""),
            ("xml:lang", "nl"),
        ]
        .iter()
        .map(|(k, v)| format!(" {k}=\"{v}\""))
        .collect();
        let tokens: Vec<&str> = tokens
            .iter()
            .copied()
            .chain(declarations.iter().map(String::as_str))
            .collect();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n.max(1) as u64) as usize
        };
        let (mut fast, mut refused) = (0, 0);
        for i in 0..40_000 {
            let mut doc = bases[i % bases.len()].as_bytes().to_vec();
            // Mostly one edit: two or three rarely leave the shape intact.
            for _ in 0..1 + next(4) / 3 {
                // Half the edits at a tag's edge, where attributes, names and neighbours change.
                let edges: Vec<usize> = doc
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| matches!(b, b'<' | b'>' | b'/'))
                    .map(|(i, _)| i)
                    .collect();
                let at = if next(2) == 0 && !edges.is_empty() {
                    edges[next(edges.len())]
                } else {
                    next(doc.len() + 1)
                };
                match next(3) {
                    0 => {
                        let t = tokens[next(tokens.len())].as_bytes();
                        doc.splice(at..at, t.iter().copied());
                    }
                    1 => {
                        let end = (at + 1 + next(12)).min(doc.len());
                        doc.drain(at.min(end)..end);
                    }
                    _ => {
                        let t = tokens[next(tokens.len())].as_bytes();
                        let end = (at + t.len()).min(doc.len());
                        doc.splice(at.min(end)..end, t.iter().copied());
                    }
                }
            }
            match read(&doc) {
                Some(s) => {
                    fast += 1;
                    assert_eq!(
                        Some(s),
                        read_fully(&doc),
                        "mutant {i}: {}",
                        String::from_utf8_lossy(&doc)
                    );
                }
                None => refused += 1,
            }
        }
        // Both outcomes must be common, or the mutants test nothing.
        assert!(
            fast > 300 && refused > 1_000,
            "fast {fast}, refused {refused}"
        );
    }
}
