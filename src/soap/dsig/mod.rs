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

mod c14n;
#[cfg(test)]
mod tests;

pub use c14n::{exc_c14n, Sink};
use c14n::{DigestSink, DIGEST_CHUNK};

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
