//! Exclusive C14N 1.0 over the parsed document, into a byte buffer or straight into a digest.

use aws_lc_rs::digest;
use uppsala::{Document, NodeId, NodeKind};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

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
pub(super) struct DigestSink<'b> {
    ctx: digest::Context,
    buf: &'b mut Vec<u8>,
}

/// How much canonical output is gathered before it is digested.
pub(super) const DIGEST_CHUNK: usize = 4096;

impl<'b> DigestSink<'b> {
    pub(super) fn new(
        algorithm: &'static digest::Algorithm,
        buf: &'b mut Vec<u8>,
    ) -> DigestSink<'b> {
        buf.clear();
        DigestSink {
            ctx: digest::Context::new(algorithm),
            buf,
        }
    }

    pub(super) fn finish(mut self) -> digest::Digest {
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
