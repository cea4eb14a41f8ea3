//! The XML-DSig arithmetic of request verification: exclusive C14N 1.0 of the referenced
//! subtrees and of SignedInfo over the already parsed `uppsala` document, the reference digests
//! and the RSA PKCS#1 v1.5 check.
//!
//! Deliberately narrow: `wssec::check_algorithms` has already refused everything but `#Id`
//! references, one exc-C14N transform, SHA-2 digests and RSA-SHA2 signatures, so none of the
//! general transform pipeline is needed. Where XML-DSig leaves a choice (which attributes are Ids,
//! where the PrefixList is read, which text of DigestValue counts), this module does what
//! bergshamra 0.11.1 does, because bergshamra stays the reference in the differential tests and
//! the `dsig_diff` fuzz target: a request is accepted here exactly when bergshamra accepted it.
//! Like bergshamra in its `trusted_keys_only` mode, only the key of the token `wssec` resolved and
//! trusted is used, never key material inline in KeyInfo.

use super::security_error::SecurityError;
use crate::xml::NS_DS;
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine as _;
use uppsala::{Document, NodeId, NodeKind};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The signing certificate's RSA public key, parsed once per certificate (cached with the trust
/// decision) for each signature method allowed.
pub(crate) struct RsaKey {
    sha256: ParsedPublicKey,
    sha384: ParsedPublicKey,
    sha512: ParsedPublicKey,
}

impl RsaKey {
    /// Parses the certificate's SubjectPublicKeyInfo. The 2048..=8192-bit bounds are the ones
    /// bergshamra (kryptering over AWS-LC) enforces.
    pub(crate) fn from_certificate(der: &[u8]) -> Result<RsaKey, String> {
        use x509_parser::prelude::FromDer as _;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| format!("certificate: {e}"))?;
        let spki = cert.tbs_certificate.subject_pki.raw;
        let parse = |alg: &'static signature::RsaParameters| {
            ParsedPublicKey::new(alg, spki).map_err(|e| format!("not a usable RSA key: {e}"))
        };
        Ok(RsaKey {
            sha256: parse(&signature::RSA_PKCS1_2048_8192_SHA256)?,
            sha384: parse(&signature::RSA_PKCS1_2048_8192_SHA384)?,
            sha512: parse(&signature::RSA_PKCS1_2048_8192_SHA512)?,
        })
    }

    fn for_method(&self, uri: &str) -> Option<&ParsedPublicKey> {
        match uri {
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => Some(&self.sha256),
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => Some(&self.sha384),
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => Some(&self.sha512),
            _ => None,
        }
    }
}

fn failed(m: impl Into<String>) -> SecurityError {
    SecurityError::FailedCheck(m.into())
}

fn is_ds(doc: &Document<'_>, id: NodeId, local: &str) -> bool {
    doc.element(id)
        .is_some_and(|e| e.name.matches(Some(NS_DS), local))
}

fn first_ds_child(doc: &Document<'_>, parent: NodeId, local: &str) -> Option<NodeId> {
    doc.children_iter(parent).find(|c| is_ds(doc, *c, local))
}

/// The first text or CDATA child, as bergshamra reads DigestValue and SignatureValue.
fn first_text<'d>(doc: &'d Document<'_>, id: NodeId) -> &'d str {
    doc.children_iter(id)
        .find_map(|c| match doc.node_kind(c) {
            Some(NodeKind::Text(t)) | Some(NodeKind::CData(t)) => Some(&**t),
            _ => None,
        })
        .unwrap_or("")
}

/// `s` without Unicode white space (`char::is_whitespace`), as bergshamra and the WS-Security
/// readers clean base64 text; ASCII text, the usual case, is filtered by byte.
pub fn strip_whitespace(s: &str) -> String {
    if s.is_ascii() {
        // Copied in runs between the line breaks: a byte-wise push was 5 % of a verification.
        let bytes = s.as_bytes();
        let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
        // Without an early exit this check vectorises; one-line base64 is common.
        if !bytes.iter().fold(false, |any, b| any | space(b)) {
            return s.to_owned();
        }
        let mut kept = Vec::with_capacity(bytes.len());
        let mut start = 0;
        for (i, b) in bytes.iter().enumerate() {
            if space(b) {
                kept.extend_from_slice(bytes.get(start..i).unwrap_or_default());
                start = i + 1;
            }
        }
        kept.extend_from_slice(bytes.get(start..).unwrap_or_default());
        // Only ASCII bytes were removed from ASCII text.
        String::from_utf8(kept).unwrap_or_default()
    } else {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }
}

/// The text of a DigestValue or SignatureValue as it is verified: its first text node, without
/// white space.
pub(crate) fn signature_text(doc: &Document<'_>, id: NodeId) -> String {
    strip_whitespace(first_text(doc, id))
}

fn base64_value(doc: &Document<'_>, id: NodeId, what: &str) -> Result<Vec<u8>, SecurityError> {
    let clean = signature_text(doc, id);
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| failed(format!("{what}: {e}")))
}

/// The PrefixList of the first `InclusiveNamespaces` child carrying one. Like bergshamra, the
/// child is matched by local name only.
pub fn inclusive_prefixes<'d>(doc: &'d Document<'_>, parent: NodeId) -> Vec<&'d str> {
    doc.children_iter(parent)
        .filter_map(|c| doc.element(c))
        .filter(|e| &*e.name.local_name == "InclusiveNamespaces")
        .find_map(|e| e.get_attribute("PrefixList"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

/// Verifies `signature` (already structurally checked by `wssec`) with `key` and returns the
/// nodes its references resolved to, in reference order.
pub(crate) fn verify(
    doc: &Document<'_>,
    signature: NodeId,
    key: &RsaKey,
) -> Result<Vec<NodeId>, SecurityError> {
    let (ids, first) = IdMap::build(doc)?;
    // bergshamra verifies the first ds:Signature of the document, and `wssec` refused when that
    // was not the one in wsse:Security; a wrapped signature is refused here before any work.
    if first != Some(signature) {
        return Err(SecurityError::Invalid(
            "the verified signature is not the one in wsse:Security".into(),
        ));
    }
    let signed_info =
        first_ds_child(doc, signature, "SignedInfo").ok_or_else(|| failed("no SignedInfo"))?;
    let c14n_method = first_ds_child(doc, signed_info, "CanonicalizationMethod")
        .ok_or_else(|| failed("no CanonicalizationMethod"))?;
    let method = first_ds_child(doc, signed_info, "SignatureMethod")
        .and_then(|m| doc.element(m)?.get_attribute("Algorithm"))
        .ok_or_else(|| failed("no SignatureMethod"))?;

    // The cheap checks first, then the signature over SignedInfo, and only then the references'
    // digests: canonicalising is the costly part (a 1 MiB Body per Reference), and only the
    // holder of a trusted key can now make dkd do it.
    let references: Vec<NodeId> = doc
        .children_iter(signed_info)
        .filter(|c| is_ds(doc, *c, "Reference"))
        .collect();
    if references.len() > MAX_REFERENCES {
        return Err(SecurityError::Invalid(format!(
            "{} References in SignedInfo; at most {MAX_REFERENCES} are accepted",
            references.len()
        )));
    }
    let planned = references
        .iter()
        .map(|r| plan_reference(doc, &ids, *r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut targets: Vec<usize> = planned.iter().map(|p| p.target.index()).collect();
    targets.sort_unstable();
    if targets.windows(2).any(|w| w[0] == w[1]) {
        return Err(SecurityError::Invalid(
            "two References resolve to the same element".into(),
        ));
    }

    let mut buf = Vec::with_capacity(DIGEST_CHUNK);
    exc_c14n(
        doc,
        signed_info,
        false,
        &checked_prefixes(doc, c14n_method)?,
        &mut buf,
    );
    let value = first_ds_child(doc, signature, "SignatureValue")
        .ok_or_else(|| failed("no SignatureValue"))?;
    let value = base64_value(doc, value, "SignatureValue")?;
    let key = key
        .for_method(method)
        .ok_or_else(|| failed(format!("SignatureMethod {method}")))?;
    key.verify_sig(&buf, &value)
        .map_err(|_| failed("signature value verification failed"))?;

    for p in &planned {
        let mut sink = DigestSink::new(p.algorithm, &mut buf);
        exc_c14n(doc, p.target, false, &p.prefixes, &mut sink);
        if sink.finish().as_ref() != p.expected.as_slice() {
            return Err(failed(format!(
                "Reference digest failed: URI={}: expected digest does not match computed digest",
                p.uri
            )));
        }
    }
    Ok(planned.into_iter().map(|p| p.target).collect())
}

/// At most this many References in SignedInfo: a 2W-be-S message signs its Body, Timestamp, at
/// most seven WS-Addressing headers and (an answer) one SignatureConfirmation.
pub const MAX_REFERENCES: usize = 16;
/// At most this many prefixes in an InclusiveNamespaces PrefixList, each at most this long: every
/// canonicalised element looks each one up, and a PrefixList of thousands made that quadratic.
pub const MAX_PREFIXES: usize = 16;
const MAX_PREFIX_BYTES: usize = 64;

/// The PrefixList of [`inclusive_prefixes`] without repeats (they change nothing in the canonical
/// form), refused when it names more than [`MAX_PREFIXES`].
fn checked_prefixes<'d>(
    doc: &'d Document<'_>,
    parent: NodeId,
) -> Result<Vec<&'d str>, SecurityError> {
    let mut list = inclusive_prefixes(doc, parent);
    list.sort_unstable();
    list.dedup();
    if list.len() > MAX_PREFIXES || list.iter().any(|p| p.len() > MAX_PREFIX_BYTES) {
        return Err(SecurityError::Invalid(format!(
            "an InclusiveNamespaces PrefixList may name at most {MAX_PREFIXES} prefixes of at most {MAX_PREFIX_BYTES} bytes"
        )));
    }
    Ok(list)
}

/// A Reference resolved and read, before its digest is computed.
struct Planned<'d> {
    uri: &'d str,
    target: NodeId,
    algorithm: &'static digest::Algorithm,
    expected: Vec<u8>,
    prefixes: Vec<&'d str>,
}

fn plan_reference<'d>(
    doc: &'d Document<'_>,
    ids: &IdMap<'d>,
    reference: NodeId,
) -> Result<Planned<'d>, SecurityError> {
    let uri = doc
        .element(reference)
        .and_then(|e| e.get_attribute("URI"))
        .unwrap_or("");
    let digest_uri = first_ds_child(doc, reference, "DigestMethod")
        .and_then(|m| doc.element(m)?.get_attribute("Algorithm"))
        .ok_or_else(|| failed(format!("Reference {uri}: no DigestMethod")))?;
    let expected = first_ds_child(doc, reference, "DigestValue")
        .ok_or_else(|| failed(format!("Reference {uri}: no DigestValue")))?;
    let expected = base64_value(doc, expected, "DigestValue")?;
    let fragment = uri
        .strip_prefix('#')
        .ok_or_else(|| failed(format!("Reference {uri:?} is not same-document")))?;
    if fragment == "xpointer(/)" {
        // The whole document includes this DigestValue, so no digest can match it.
        return Err(failed(format!("Reference {uri}: digest mismatch")));
    }
    // #xpointer(id('...')) would keep comments, but the exc-C14N transform (without comments)
    // that must follow drops them again, so both forms canonicalise alike.
    let xpointer = fragment
        .strip_prefix("xpointer(id('")
        .and_then(|r| r.strip_suffix("'))"))
        .or_else(|| {
            fragment
                .strip_prefix("xpointer(id(\"")
                .and_then(|r| r.strip_suffix("\"))"))
        });
    let target = ids
        .get(xpointer.unwrap_or(fragment))
        .ok_or_else(|| failed(format!("Reference {uri}: ID not found")))?;
    let transform = first_ds_child(doc, reference, "Transforms")
        .and_then(|t| {
            doc.children_iter(t).find(|c| {
                doc.element(*c)
                    .is_some_and(|e| &*e.name.local_name == "Transform")
            })
        })
        .ok_or_else(|| failed(format!("Reference {uri}: no Transform")))?;
    let algorithm = match digest_uri {
        "http://www.w3.org/2001/04/xmlenc#sha256" => &digest::SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => &digest::SHA384,
        "http://www.w3.org/2001/04/xmlenc#sha512" => &digest::SHA512,
        other => return Err(failed(format!("DigestMethod {other}"))),
    };
    Ok(Planned {
        uri,
        target,
        algorithm,
        expected,
        prefixes: checked_prefixes(doc, transform)?,
    })
}

/// Same-document Ids as bergshamra collects them: per element the first attribute with local
/// name `Id`, `ID`, `id` or `AssertionID` (any namespace), every value unique in the document.
struct IdMap<'d> {
    sorted: Vec<(&'d str, NodeId)>,
}

impl<'d> IdMap<'d> {
    /// The map, and the first ds:Signature in document order (found on the same walk).
    fn build(doc: &'d Document<'_>) -> Result<(IdMap<'d>, Option<NodeId>), SecurityError> {
        let mut sorted = Vec::with_capacity(16);
        let mut signature = None;
        let mut stack = vec![doc.root()];
        while let Some(n) = stack.pop() {
            if let Some(e) = doc.element(n) {
                if signature.is_none() && e.name.matches(Some(NS_DS), "Signature") {
                    signature = Some(n);
                }
                for name in ["Id", "ID", "id", "AssertionID"] {
                    if let Some(v) = e.get_attribute(name) {
                        sorted.push((v, n));
                    }
                }
            }
            // Reversed, so the walk is in document order.
            let first = stack.len();
            stack.extend(doc.children_iter(n));
            if let Some(children) = stack.get_mut(first..) {
                children.reverse();
            }
        }
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(failed(format!("duplicate ID: {}", w[0].0)));
        }
        Ok((IdMap { sorted }, signature))
    }

    fn get(&self, id: &str) -> Option<NodeId> {
        self.sorted
            .binary_search_by(|(v, _)| (*v).cmp(id))
            .ok()
            .and_then(|i| self.sorted.get(i))
            .map(|(_, n)| *n)
    }
}

/// Where canonical bytes go.
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Feeds a digest through a buffer: canonical output comes in many short pieces, and each
/// `Context::update` crosses into AWS-LC. The buffer is the caller's, so the references of one
/// signature share one allocation.
struct DigestSink<'b> {
    ctx: digest::Context,
    buf: &'b mut Vec<u8>,
}

/// How much canonical output is gathered before it is digested.
const DIGEST_CHUNK: usize = 4096;

impl<'b> DigestSink<'b> {
    fn new(algorithm: &'static digest::Algorithm, buf: &'b mut Vec<u8>) -> DigestSink<'b> {
        buf.clear();
        DigestSink {
            ctx: digest::Context::new(algorithm),
            buf,
        }
    }

    fn finish(mut self) -> digest::Digest {
        self.ctx.update(self.buf);
        self.buf.clear();
        self.ctx.finish()
    }
}

impl Sink for DigestSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > DIGEST_CHUNK {
            self.ctx.update(self.buf);
            self.buf.clear();
        }
        if bytes.len() >= DIGEST_CHUNK {
            self.ctx.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// Text escaping of C14N: `&`, `<`, `>` and CR.
fn escape_text<S: Sink>(s: &str, out: &mut S) {
    escape(s, out, |b| match b {
        b'&' => Some(&b"&amp;"[..]),
        b'<' => Some(&b"&lt;"[..]),
        b'>' => Some(&b"&gt;"[..]),
        b'\r' => Some(&b"&#xD;"[..]),
        _ => None,
    });
}

/// Attribute-value escaping of C14N: `&`, `<`, `"`, TAB, LF and CR.
fn escape_attr<S: Sink>(s: &str, out: &mut S) {
    escape(s, out, |b| match b {
        b'&' => Some(&b"&amp;"[..]),
        b'<' => Some(&b"&lt;"[..]),
        b'"' => Some(&b"&quot;"[..]),
        b'\t' => Some(&b"&#x9;"[..]),
        b'\n' => Some(&b"&#xA;"[..]),
        b'\r' => Some(&b"&#xD;"[..]),
        _ => None,
    });
}

#[inline]
fn escape<S: Sink>(s: &str, out: &mut S, entity: impl Fn(u8) -> Option<&'static [u8]>) {
    // Every byte that is escaped is ASCII, so it never splits a UTF-8 sequence.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if let Some(e) = entity(*b) {
            out.put(bytes.get(start..i).unwrap_or_default());
            out.put(e);
            start = i + 1;
        }
    }
    out.put(bytes.get(start..).unwrap_or_default());
}

fn put_name<S: Sink>(prefix: Option<&str>, local: &str, out: &mut S) {
    if let Some(p) = prefix {
        out.put(p.as_bytes());
        out.put(b":");
    }
    out.put(local.as_bytes());
}

/// The binding of `prefix` in a scope stack (latest wins; an empty URI undeclares).
fn lookup<'d>(stack: &[(&'d str, &'d str)], prefix: &str) -> Option<&'d str> {
    stack
        .iter()
        .rev()
        .find(|(p, _)| *p == prefix)
        .map(|(_, u)| *u)
}

enum Step {
    Enter(NodeId),
    Leave {
        node: NodeId,
        in_scope: usize,
        rendered: usize,
    },
}

/// Exclusive XML Canonicalization 1.0 of the subtree at `apex` (an element), with comments or
/// without, and the InclusiveNamespaces `prefixes` (`#default` for the default namespace).
/// The apex's ancestors contribute only their namespace declarations, as exc-C14N of a
/// document subset requires.
pub fn exc_c14n<S: Sink>(
    doc: &Document<'_>,
    apex: NodeId,
    with_comments: bool,
    prefixes: &[&str],
    out: &mut S,
) {
    let mut in_scope: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut ancestors = Vec::with_capacity(8);
    let mut up = doc.parent(apex);
    while let Some(a) = up {
        ancestors.push(a);
        up = doc.parent(a);
    }
    for a in ancestors.into_iter().rev() {
        if let Some(e) = doc.element(a) {
            in_scope.extend(e.namespace_declarations.iter().map(|(p, u)| (&**p, &**u)));
        }
    }
    // Declarations output by an output ancestor (exc-C14N renders a declaration only when the
    // nearest output ancestor did not render the same one).
    let mut rendered: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut used: Vec<&str> = Vec::with_capacity(8);
    let mut decls: Vec<(&str, &str)> = Vec::with_capacity(8);
    let mut attrs: Vec<&uppsala::Attribute<'_>> = Vec::with_capacity(8);
    let mut stack = vec![Step::Enter(apex)];
    while let Some(step) = stack.pop() {
        let node = match step {
            Step::Enter(node) => node,
            Step::Leave {
                node,
                in_scope: s,
                rendered: r,
            } => {
                if let Some(e) = doc.element(node) {
                    out.put(b"</");
                    put_name(e.name.prefix.as_deref(), &e.name.local_name, out);
                    out.put(b">");
                }
                in_scope.truncate(s);
                rendered.truncate(r);
                continue;
            }
        };
        match doc.node_kind(node) {
            Some(NodeKind::Element(e)) => {
                let leave = Step::Leave {
                    node,
                    in_scope: in_scope.len(),
                    rendered: rendered.len(),
                };
                in_scope.extend(e.namespace_declarations.iter().map(|(p, u)| (&**p, &**u)));

                // Visibly utilised prefixes: the element's, its attributes', the PrefixList's.
                used.clear();
                used.push(e.name.prefix.as_deref().unwrap_or(""));
                for a in &e.attributes {
                    let p = match a.name.namespace_uri.as_deref() {
                        Some(XML_NS) => Some("xml"),
                        Some(_) => a.name.prefix.as_deref().filter(|p| !p.is_empty()),
                        None => None,
                    };
                    if let Some(p) = p {
                        if !used.contains(&p) {
                            used.push(p);
                        }
                    }
                }
                for p in prefixes {
                    let p = if *p == "#default" { "" } else { *p };
                    if !used.contains(&p) {
                        used.push(p);
                    }
                }
                decls.clear();
                for p in &used {
                    if *p == "xml" {
                        continue;
                    }
                    match lookup(&in_scope, p).filter(|u| !u.is_empty()) {
                        Some(uri) if lookup(&rendered, p) != Some(uri) => decls.push((p, uri)),
                        Some(_) => {}
                        // xmlns="" is needed only to undo a default an output ancestor rendered.
                        None if p.is_empty()
                            && lookup(&rendered, "").is_some_and(|u| !u.is_empty()) =>
                        {
                            decls.push(("", ""))
                        }
                        None => {}
                    }
                }
                // The default namespace first, then by prefix.
                decls.sort_unstable_by(|a, b| a.0.cmp(b.0));
                attrs.clear();
                attrs.extend(e.attributes.iter());
                // Unqualified attributes first, then by (namespace URI, local name).
                attrs.sort_by(|a, b| {
                    let ka = (
                        a.name.namespace_uri.as_deref().unwrap_or(""),
                        &*a.name.local_name,
                    );
                    let kb = (
                        b.name.namespace_uri.as_deref().unwrap_or(""),
                        &*b.name.local_name,
                    );
                    ka.cmp(&kb)
                });

                out.put(b"<");
                put_name(e.name.prefix.as_deref(), &e.name.local_name, out);
                for (p, uri) in &decls {
                    if p.is_empty() {
                        out.put(b" xmlns=\"");
                    } else {
                        out.put(b" xmlns:");
                        out.put(p.as_bytes());
                        out.put(b"=\"");
                    }
                    escape_attr(uri, out);
                    out.put(b"\"");
                }
                for a in &attrs {
                    out.put(b" ");
                    let prefix = match a.name.namespace_uri.as_deref() {
                        Some(XML_NS) => Some("xml"),
                        Some(_) => a.name.prefix.as_deref().filter(|p| !p.is_empty()),
                        None => None,
                    };
                    put_name(prefix, &a.name.local_name, out);
                    out.put(b"=\"");
                    escape_attr(&a.value, out);
                    out.put(b"\"");
                }
                out.put(b">");
                rendered.extend(decls.iter().copied());

                stack.push(leave);
                let first = stack.len();
                stack.extend(doc.children_iter(node).map(Step::Enter));
                if let Some(children) = stack.get_mut(first..) {
                    children.reverse();
                }
            }
            Some(NodeKind::Text(t)) | Some(NodeKind::CData(t)) => escape_text(t, out),
            Some(NodeKind::Comment(c)) if with_comments => {
                out.put(b"<!--");
                out.put(c.as_bytes());
                out.put(b"-->");
            }
            Some(NodeKind::ProcessingInstruction(pi)) => {
                out.put(b"<?");
                out.put(pi.target.as_bytes());
                if let Some(data) = pi.data.as_deref().filter(|d| !d.is_empty()) {
                    out.put(b" ");
                    escape(data, out, |b| (b == b'\r').then_some(&b"&#xD;"[..]));
                }
                out.put(b"?>");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! bergshamra is the reference: the canonical bytes of every element must equal
    //! bergshamra-c14n's, and the verdict on every document must equal the bergshamra path's.
    use super::*;
    use crate::soap::wssec::tests::{fixture, request, Fixture, OIN};
    use crate::soap::wssec::{format_time, ALG_EXC_C14N, ALG_RSA_SHA256, ALG_SHA256};
    use crate::xml::{NS_SOAP11, NS_WSA, NS_WSSE, NS_WSU};
    use time::OffsetDateTime;

    const PREFIX_LISTS: [&[&str]; 5] = [
        &[],
        &["#default"],
        &["p", "a", "#default"],
        &["xml", "unused", "b", "xmlns"],
        &["soapenv", "wsu", "ds", "wsa"],
    ];

    fn reference_c14n(doc: &Document<'_>, node: NodeId, prefixes: &[&str]) -> Vec<u8> {
        let set = bergshamra_xml::NodeSet::tree_without_comments(node, doc);
        bergshamra_c14n::canonicalize_doc(
            doc,
            bergshamra_c14n::C14nMode::Exclusive,
            Some(&set),
            prefixes,
        )
        .expect("bergshamra c14n")
    }

    fn assert_same_c14n(xml: &str) {
        let doc = uppsala::parse(xml).expect("parse");
        let mut elements = 0;
        for n in doc.descendants(doc.root()) {
            if doc.element(n).is_none() {
                continue;
            }
            elements += 1;
            for prefixes in PREFIX_LISTS {
                let mut ours = Vec::new();
                exc_c14n(&doc, n, false, prefixes, &mut ours);
                let reference = reference_c14n(&doc, n, prefixes);
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&reference),
                    "element {n:?} with PrefixList {prefixes:?} of {xml}"
                );
                // The digest sink sees the same bytes, however they are split.
                let mut buf = Vec::new();
                let mut sink = DigestSink::new(&digest::SHA256, &mut buf);
                exc_c14n(&doc, n, false, prefixes, &mut sink);
                assert_eq!(
                    sink.finish().as_ref(),
                    digest::digest(&digest::SHA256, &reference).as_ref()
                );
            }
        }
        assert!(elements > 0);
    }

    #[test]
    fn whitespace_is_stripped_as_char_is_whitespace_does() {
        for s in [
            "",
            " ",
            "ab",
            " a\tb\nc\r\x0b\x0cd ",
            "AB\n\nCD\n",
            "a\u{a0}b\u{2003}c d",
            "\u{e9} x",
        ] {
            let expected: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(strip_whitespace(s), expected, "{s:?}");
        }
    }

    #[test]
    fn canonical_bytes_equal_bergshamras() {
        let docs = [
            r#"<r xmlns="urn:root" xmlns:p="urn:one" xmlns:unused="urn:u"><p:a p:x="1" b="2" a="3" xml:lang="nl"><x xmlns:p="urn:two"><p:b/></x></p:a><p:c/><plain xmlns=""><child/><d xmlns="urn:d"/></plain></r>"#,
            "<a t=\"&quot;&amp;&lt;>&#9;&#10;&#13;'\" u='\"'><![CDATA[x<&>]]>t&amp;&lt;&gt;&#13;<!--c--><?pi data\r?><?pi2?>\u{e9}\u{1F600}</a>",
            r#"<e xmlns:b="urn:a" xmlns:a="urn:b" a:z="1" b:y="2" z="3" a="4" b:a="5"><a:f/></e>"#,
            r#"<d xmlns="urn:x"><p:e xmlns:p="urn:p"><f/><p:g xmlns=""/></p:e></d>"#,
            r#"<r xmlns:a="urn:same" xmlns:b="urn:same"><a:x b:y="1"/></r>"#,
            r#"<a:r xmlns:a="urn:a"><a:s xmlns:a="urn:a"><a:t xmlns:a="urn:other"><a:u xmlns:a="urn:a"/></a:t></a:s></a:r>"#,
            "<r>\n  <s>  x  </s>\r\n\t<t\n  a = 'v'\n/></r>",
            r#"<r xmlns="urn:r"><s xmlns=""><t/><u xmlns="urn:r"/></s></r>"#,
            r#"<x:r xmlns:x="urn:x" xmlns="urn:d"><x:s><t xmlns:x="urn:y" x:a="1"/></x:s></x:r>"#,
        ];
        for d in docs {
            assert_same_c14n(d);
        }
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        assert_same_c14n(&request(&f, "urn:uuid:c14n", now));
        for (_, doc) in signed_documents(&f, now) {
            assert_same_c14n(&doc);
        }
    }

    struct Shape {
        /// Extra attributes on soapenv:Envelope (namespace declarations).
        envelope: &'static str,
        /// Extra attributes on soapenv:Body.
        body: &'static str,
        /// The Body's content.
        content: &'static str,
        /// InclusiveNamespaces of CanonicalizationMethod and of each Transform.
        signed_info_prefixes: Option<&'static str>,
        transform_prefixes: Option<&'static str>,
        /// Between SignedInfo's children.
        space: &'static str,
        /// Line-wrap SignatureValue at 64 characters, as xmlsec does.
        wrap: bool,
        /// Before the SecurityTokenReference in KeyInfo.
        key_info: &'static str,
    }

    const BASE: Shape = Shape {
        envelope: "",
        body: "",
        content: r#"<m:Q xmlns:m="urn:m" b="2" a="1"><m:x>t&amp;&lt;</m:x><y xmlns="urn:d" m:z="3"/></m:Q>"#,
        signed_info_prefixes: None,
        transform_prefixes: None,
        space: "",
        wrap: false,
        key_info: "",
    };

    fn inclusive(list: Option<&str>) -> String {
        list.map(|l| {
            format!(r#"<ec:InclusiveNamespaces xmlns:ec="{ALG_EXC_C14N}" PrefixList="{l}"/>"#)
        })
        .unwrap_or_default()
    }

    /// A request of `shape`, signed over bergshamra's canonical bytes (so its own verdict is the
    /// reference, not an assumption).
    fn sign_shape(f: &Fixture, shape: &Shape, now: OffsetDateTime) -> String {
        sign_shape_with(f, &f.signer, shape, now)
    }

    fn sign_shape_with(
        f: &Fixture,
        signer: &crate::soap::wssec::Signer,
        shape: &Shape,
        now: OffsetDateTime,
    ) -> String {
        let sp = shape.space;
        let mut refs = String::new();
        for id in ["_To", "_TS", "_Body"] {
            refs.push_str(&format!(
                r##"<ds:Reference URI="#{id}">{sp}<ds:Transforms><ds:Transform Algorithm="{ALG_EXC_C14N}">{}</ds:Transform></ds:Transforms>{sp}<ds:DigestMethod Algorithm="{ALG_SHA256}"/>{sp}<ds:DigestValue>DIGEST({id})</ds:DigestValue>{sp}</ds:Reference>{sp}"##,
                inclusive(shape.transform_prefixes)
            ));
        }
        let template = format!(
            r##"<soapenv:Envelope xmlns:soapenv="{NS_SOAP11}"{env}><soapenv:Header><wsa:To xmlns:wsa="{NS_WSA}" xmlns:wsu="{NS_WSU}" wsu:Id="_To">https://x/</wsa:To><wsse:Security xmlns:wsse="{NS_WSSE}" xmlns:wsu="{NS_WSU}" soapenv:mustUnderstand="1"><wsu:Timestamp wsu:Id="_TS"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:BinarySecurityToken EncodingType="{enc}" ValueType="{vt}" wsu:Id="_X509">{cert}</wsse:BinarySecurityToken><ds:Signature xmlns:ds="{NS_DS}"><ds:SignedInfo>{sp}<ds:CanonicalizationMethod Algorithm="{ALG_EXC_C14N}">{si}</ds:CanonicalizationMethod>{sp}<ds:SignatureMethod Algorithm="{ALG_RSA_SHA256}"/>{sp}{refs}</ds:SignedInfo><ds:SignatureValue>SIGVALUE</ds:SignatureValue><ds:KeyInfo>{key_info}<wsse:SecurityTokenReference><wsse:Reference URI="#_X509" ValueType="{vt}"/></wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature></wsse:Security></soapenv:Header><soapenv:Body xmlns:wsu="{NS_WSU}" wsu:Id="_Body"{body}>{content}</soapenv:Body></soapenv:Envelope>"##,
            env = shape.envelope,
            created = format_time(now),
            expires = format_time(now + time::Duration::minutes(5)),
            enc = crate::soap::wssec::ENCODING_BASE64,
            vt = crate::soap::wssec::VALUE_TYPE_X509,
            cert = f.signer.cert_b64(),
            si = inclusive(shape.signed_info_prefixes),
            body = shape.body,
            content = shape.content,
            key_info = shape.key_info.replace("EVIL", signer.cert_b64()),
        );
        let mut xml = template.clone();
        {
            let doc = uppsala::parse(&template).expect("template");
            let (ids, _) = IdMap::build(&doc).expect("ids");
            for r in doc.descendants(doc.root()) {
                if !is_ds(&doc, r, "Reference") {
                    continue;
                }
                let uri = doc
                    .element(r)
                    .and_then(|e| e.get_attribute("URI"))
                    .expect("URI");
                let id = uri.trim_start_matches('#');
                let target = ids.get(id).expect("target");
                let transform = doc
                    .descendants(r)
                    .into_iter()
                    .find(|t| is_ds(&doc, *t, "Transform"))
                    .expect("transform");
                let bytes = reference_c14n(&doc, target, &inclusive_prefixes(&doc, transform));
                let d = digest::digest(&digest::SHA256, &bytes);
                xml = xml.replace(
                    &format!("DIGEST({id})"),
                    &base64::engine::general_purpose::STANDARD.encode(d.as_ref()),
                );
            }
        }
        let doc = uppsala::parse(&xml).expect("digested");
        let signed_info = doc
            .descendants(doc.root())
            .into_iter()
            .find(|n| is_ds(&doc, *n, "SignedInfo"))
            .expect("SignedInfo");
        let method = first_ds_child(&doc, signed_info, "CanonicalizationMethod").expect("c14n");
        let bytes = reference_c14n(&doc, signed_info, &inclusive_prefixes(&doc, method));
        let mut value =
            base64::engine::general_purpose::STANDARD.encode(signer.sign_for_test(&bytes));
        if shape.wrap {
            value = value
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n");
        }
        xml.replace("SIGVALUE", &value)
    }

    fn signed_documents(f: &Fixture, now: OffsetDateTime) -> Vec<(&'static str, String)> {
        let shapes = [
            ("plain", BASE),
            (
                "PrefixList on transforms and SignedInfo",
                Shape {
                    transform_prefixes: Some("soapenv wsu #default m"),
                    signed_info_prefixes: Some("wsse soapenv"),
                    ..BASE
                },
            ),
            (
                "default namespace and unused declarations on the Envelope",
                Shape {
                    envelope: r#" xmlns="urn:env-default" xmlns:m="urn:m" xmlns:unused="urn:u""#,
                    ..BASE
                },
            ),
            (
                "default namespace in scope and PrefixList #default",
                Shape {
                    envelope: r#" xmlns="urn:env-default""#,
                    transform_prefixes: Some("#default"),
                    content: r#"<Q xmlns="" a="1"><x>1</x></Q><R>2</R>"#,
                    ..BASE
                },
            ),
            (
                "whitespace in SignedInfo, wrapped SignatureValue",
                Shape {
                    space: "\n      ",
                    wrap: true,
                    ..BASE
                },
            ),
            (
                "attributes, escapes, comments and CDATA in the Body",
                Shape {
                    body: r#" z="1" xml:lang="nl" a="&quot;&#9;""#,
                    content: "<m:Q xmlns:m=\"urn:m\" xmlns:n=\"urn:n\" n:b=\"2\" m:a=\"1\"><!-- note -->x<![CDATA[<&>]]>&#13;\n</m:Q>",
                    ..BASE
                },
            ),
        ];
        shapes
            .iter()
            .map(|(name, s)| (*name, sign_shape(f, s, now)))
            .collect()
    }

    fn verdicts(f: &Fixture, xml: &str, now: OffsetDateTime) -> (bool, bool) {
        let ours = f.policy.verify(xml, Some(OIN), None, now);
        let reference = f.policy.verify_with_bergshamra(xml, Some(OIN), None, now);
        (ours.is_ok(), reference.is_ok())
    }

    #[test]
    fn verdicts_equal_bergshamras() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let mut documents = signed_documents(&f, now);
        documents.push(("signed_request", request(&f, "urn:uuid:diff", now)));
        let mutations: [(&str, &str, &str); 14] = [
            ("tampered body text", "123456782", "111222333"),
            ("tampered text", "t&amp;&lt;", "t&amp;&gt;"),
            ("tampered attribute", r#"b="2""#, r#"b="3""#),
            ("reordered attributes", r#"b="2" a="1""#, r#"a="1" b="2""#),
            (
                "unused declaration on an ancestor",
                "<soapenv:Header>",
                r#"<soapenv:Header xmlns:zz="urn:zz" xmlns:m="urn:m">"#,
            ),
            (
                "default namespace on an ancestor",
                "<soapenv:Header>",
                r#"<soapenv:Header xmlns="urn:new-default">"#,
            ),
            (
                "default namespace on the Envelope",
                "<soapenv:Envelope ",
                r#"<soapenv:Envelope xmlns="urn:d2" "#,
            ),
            (
                "redeclared prefix on the Envelope",
                "<soapenv:Envelope ",
                r#"<soapenv:Envelope xmlns:m="urn:other" "#,
            ),
            (
                "whitespace in SignedInfo",
                "<ds:SignedInfo>",
                "<ds:SignedInfo> ",
            ),
            (
                "whitespace in the Body",
                "</soapenv:Body>",
                " </soapenv:Body>",
            ),
            (
                "comment in the Body",
                "</soapenv:Body>",
                "<!--x--></soapenv:Body>",
            ),
            (
                "PrefixList dropped",
                r#"PrefixList="soapenv wsu #default m""#,
                r#"PrefixList="""#,
            ),
            ("digest altered", "<ds:DigestValue>", "<ds:DigestValue>AAAA"),
            (
                "xpointer reference",
                r##"URI="#_Body""##,
                r##"URI="#xpointer(id('_Body'))""##,
            ),
        ];
        let mut accepted = 0;
        let (mut same, mut refused) = (0, 0);
        for (name, doc) in &documents {
            let (ours, reference) = verdicts(&f, doc, now);
            assert!(reference, "bergshamra refuses the {name} document");
            assert_eq!(ours, reference, "{name}");
            accepted += 1;
            for (what, from, to) in mutations {
                if !doc.contains(from) {
                    continue;
                }
                let mutated = doc.replacen(from, to, 1);
                let (ours, reference) = verdicts(&f, &mutated, now);
                assert_eq!(
                    ours, reference,
                    "{name}, {what}: ours {ours}, bergshamra {reference}"
                );
                if ours {
                    same += 1;
                } else {
                    refused += 1;
                }
            }
        }
        assert_eq!(accepted, documents.len());
        // Both kinds of mutation occur: ones C14N absorbs, ones that break the signature.
        assert!(
            same >= 6 && refused >= 30,
            "{same} accepted, {refused} refused"
        );
    }

    /// A forger signing with their own key, next to a reference to a trusted token copied from
    /// any signed request and their certificate inline in KeyInfo, is refused by both: only the
    /// key of the token `wssec` trusted is used.
    #[test]
    fn key_material_inline_in_key_info_is_not_used() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let dir = tempfile::tempdir().expect("tmp");
        let evil = crate::certs::DevCa::new("evil")
            .and_then(|ca| ca.client("evil", Some(OIN), 10))
            .expect("evil");
        std::fs::write(dir.path().join("e.pem"), &evil.cert_pem).expect("w");
        std::fs::write(dir.path().join("e-key.pem"), &evil.key_pem).expect("w");
        let signer = crate::soap::wssec::Signer::load(
            &dir.path().join("e.pem"),
            &dir.path().join("e-key.pem"),
        )
        .expect("signer");
        let shape = Shape {
            key_info: "<ds:X509Data><ds:X509Certificate>EVIL</ds:X509Certificate></ds:X509Data>",
            ..BASE
        };
        let forged = sign_shape_with(&f, &signer, &shape, now);
        for verdict in [
            f.policy.verify(&forged, Some(OIN), None, now),
            f.policy
                .verify_with_bergshamra(&forged, Some(OIN), None, now),
        ] {
            assert!(matches!(verdict, Err(SecurityError::FailedCheck(_))));
        }
    }
}
