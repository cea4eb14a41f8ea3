//! WS-Security 1.0/1.1 for Digikoppeling WUS profile 2W-be-S: verifying request signatures and
//! signing responses.
//!
//! Verification does the XML-DSig arithmetic (exclusive C14N, digests, RSA) in `soap::dsig`, over
//! the document parsed here, and adds the checks no library does (../shared/docs/wssec.md): one
//! Security/Timestamp/Signature, unique Ids, an algorithm allow-list, our own token lookup, chain
//! and OIN decision, coverage of the Body, the Timestamp and every WS-Addressing header **by node
//! identity** (which defeats signature wrapping), timestamp freshness and replay.
//!
//! Signing does not re-parse: dkd writes its own responses in canonical form (see `xml::escape`),
//! so each signed part's exclusive-C14N bytes are produced directly, digested, and SignedInfo is
//! signed once with RSA-SHA256 using a key parsed at start-up.

pub use super::security_error::SecurityError;
pub use crate::xml::NS_DS;
use crate::xml::{NS_SOAP11, NS_WSA, NS_WSSE, NS_WSSE11, NS_WSU};
use base64::Engine as _;
pub use replay::{ReplayCache, SharedReplay};
use rustls_pki_types::{CertificateDer, UnixTime};
pub use sign::{canonical_body, format_time, wsa_header, PemPart, Signer, SignerError};
use std::collections::HashSet;
use std::sync::Arc;
use time::OffsetDateTime;
use trust::Trusted;
pub use trust::{SignerTrust, TrustCache};

mod replay;
mod sign;
#[cfg(test)]
pub(crate) mod tests;
mod trust;

/// Exclusive C14N 1.0, the only canonicalisation accepted.
pub const ALG_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// RSA-SHA256, what dkd signs with.
pub const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// SHA-256 digest.
pub const ALG_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// X.509v3 token type.
pub const VALUE_TYPE_X509: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
/// Base64 encoding type.
pub const ENCODING_BASE64: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

const ALLOWED_SIGNATURE: [&str; 3] = [
    ALG_RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
];
// Digikoppeling's signing rules (SIGN001-004) name SHA-256, -384 and -512; SHA-224 is refused.
const ALLOWED_DIGEST: [&str; 3] = [
    ALG_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// Whether requests must be signed, and whether responses are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningMode {
    /// Every request must carry a valid signature; every response is signed.
    Required,
    /// A signature, when present, must be valid; every response is signed.
    Optional,
    /// No verification, no signing (for tests behind a trusted signing proxy only).
    Off,
}

/// What a verified request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The OIN of the signing certificate.
    pub signer_oin: String,
    /// The request's SignatureValue (base64, whitespace removed), echoed in SignatureConfirmation.
    pub signature_value: String,
    /// Until when (unix seconds) the MessageID counts as seen, when it was checked for replay:
    /// what a [`SharedReplay`] is told.
    pub replay_until: Option<i64>,
}

/// The verification policy, built once from the configuration.
pub struct VerifyPolicy {
    /// `required`, `optional` or `off`.
    pub mode: SigningMode,
    /// Chain check for signing certificates.
    pub trust: Arc<SignerTrust>,
    /// OINs allowed to sign.
    pub allowed_signer_oins: HashSet<String>,
    /// Whether the signing OIN must equal the TLS client OIN.
    pub signer_must_match_tls: bool,
    /// Accept any OIN from a trusted certificate (a client checking a server's response).
    pub any_signer: bool,
    /// Allowed clock difference.
    pub clock_skew: time::Duration,
    /// The oldest `Created` accepted (also bounds the replay window).
    pub max_age: time::Duration,
    /// MessageIDs seen.
    pub replay: ReplayCache,
    /// Trust decisions per signing certificate. Only valid for this policy's `trust`: build a new
    /// one whenever `trust` changes.
    pub trust_cache: TrustCache,
}

fn ds_is(doc: &uppsala::Document<'_>, id: uppsala::NodeId, ns: &str, local: &str) -> bool {
    doc.element(id)
        .is_some_and(|e| e.name.matches(Some(ns), local))
}

fn child_elements(doc: &uppsala::Document<'_>, id: uppsala::NodeId) -> Vec<uppsala::NodeId> {
    doc.children(id)
        .into_iter()
        .filter(|c| doc.element(*c).is_some())
        .collect()
}

fn qname(doc: &uppsala::Document<'_>, id: uppsala::NodeId) -> String {
    doc.element(id)
        .map(|e| match &e.name.namespace_uri {
            Some(ns) => format!("{{{ns}}}{}", e.name.local_name),
            None => e.name.local_name.to_string(),
        })
        .unwrap_or_default()
}

fn attr<'d>(doc: &'d uppsala::Document<'_>, id: uppsala::NodeId, local: &str) -> Option<&'d str> {
    doc.element(id).and_then(|e| e.get_attribute(local))
}

fn invalid(m: impl Into<String>) -> SecurityError {
    SecurityError::Invalid(m.into())
}

/// The Id of an element: `wsu:Id`, or an unqualified `Id` (xmlsec and some toolkits use it).
fn element_id(doc: &uppsala::Document<'_>, id: uppsala::NodeId) -> Option<String> {
    let e = doc.element(id)?;
    e.attributes
        .iter()
        .find(|a| {
            a.name.local_name == "Id"
                && matches!(a.name.namespace_uri.as_deref(), None | Some(NS_WSU))
        })
        .map(|a| a.value.to_string())
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

impl VerifyPolicy {
    /// Verifies the request's signature. `Ok(None)` when signing is optional and the request
    /// carries no Security header, or when verification is off.
    pub fn verify(
        &self,
        raw: &str,
        tls_oin: Option<&str>,
        message_id: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<Verified>, SecurityError> {
        self.verify_message(raw, tls_oin, message_id, now, None, Engine::Own)
    }

    /// [`VerifyPolicy::verify`] with bergshamra doing the XML-DSig arithmetic, as dkd did before
    /// `soap::dsig`: the reference the differential tests and the `dsig_diff` fuzz target compare
    /// the production path with.
    #[doc(hidden)]
    #[cfg(any(test, feature = "reference-dsig"))]
    pub fn verify_with_bergshamra(
        &self,
        raw: &str,
        tls_oin: Option<&str>,
        message_id: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<Verified>, SecurityError> {
        self.verify_message(raw, tls_oin, message_id, now, None, Engine::Bergshamra)
    }

    /// Verifies a signed response (as a client): like [`VerifyPolicy::verify`], and additionally
    /// requires a signed `wsse11:SignatureConfirmation` carrying `request_signature_value`.
    pub fn verify_response(
        &self,
        raw: &str,
        request_signature_value: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Verified>, SecurityError> {
        self.verify_message(
            raw,
            None,
            None,
            now,
            Some(request_signature_value),
            Engine::Own,
        )
    }

    /// How a client checks a server's signed answers: signing required, any OIN from a certificate
    /// chaining to `trust`, no replay check (the answer's RelatesTo ties it to the request).
    pub fn for_answers(
        trust: Arc<SignerTrust>,
        clock_skew: time::Duration,
        max_age: time::Duration,
    ) -> VerifyPolicy {
        VerifyPolicy {
            mode: SigningMode::Required,
            trust,
            allowed_signer_oins: HashSet::new(),
            signer_must_match_tls: false,
            any_signer: true,
            clock_skew,
            max_age,
            replay: ReplayCache::new(1),
            trust_cache: Default::default(),
        }
    }

    /// Verifies an answer as a client: signed, and confirming `request_signature` when the request
    /// was signed. A fault raised before the request's signature was checked cannot confirm it,
    /// so a fault is also accepted signed without SignatureConfirmation.
    pub fn verify_answer(
        &self,
        raw: &str,
        request_signature: Option<&str>,
        is_fault: bool,
        now: OffsetDateTime,
    ) -> Result<Verified, SecurityError> {
        let checked = match request_signature {
            Some(sv) => self.verify_response(raw, sv, now).or_else(|e| {
                if is_fault {
                    self.verify(raw, None, None, now)
                } else {
                    Err(e)
                }
            }),
            None => self.verify(raw, None, None, now),
        };
        checked.and_then(|v| v.ok_or(SecurityError::Missing))
    }

    fn verify_message(
        &self,
        raw: &str,
        tls_oin: Option<&str>,
        message_id: Option<&str>,
        now: OffsetDateTime,
        confirmation: Option<&str>,
        engine: Engine,
    ) -> Result<Option<Verified>, SecurityError> {
        if self.mode == SigningMode::Off {
            return Ok(None);
        }
        let doc = uppsala::parse(raw).map_err(|e| invalid(format!("XML: {e}")))?;
        let envelope = doc
            .document_element()
            .ok_or_else(|| invalid("no document element"))?;
        let mut header = None;
        let mut body = None;
        for c in child_elements(&doc, envelope) {
            if ds_is(&doc, c, NS_SOAP11, "Header") {
                header = Some(c);
            } else if ds_is(&doc, c, NS_SOAP11, "Body") {
                body = Some(c);
            }
        }
        let body = body.ok_or_else(|| invalid("no Body"))?;
        let headers = header.map(|h| child_elements(&doc, h)).unwrap_or_default();
        let securities: Vec<_> = headers
            .iter()
            .copied()
            .filter(|h| ds_is(&doc, *h, NS_WSSE, "Security"))
            .collect();
        let security = match securities.as_slice() {
            [] if self.mode == SigningMode::Optional => return Ok(None),
            [] => return Err(SecurityError::Missing),
            [one] => *one,
            _ => return Err(invalid("more than one wsse:Security header")),
        };
        let wsa_headers: Vec<_> = headers
            .iter()
            .copied()
            .filter(|h| {
                doc.element(*h)
                    .is_some_and(|e| e.name.namespace_uri.as_deref() == Some(NS_WSA))
            })
            .collect();

        // Exactly one Timestamp and one Signature; tokens; nothing else.
        let mut timestamp = None;
        let mut signature = None;
        let mut tokens = Vec::new();
        let mut confirmations = Vec::new();
        for c in child_elements(&doc, security) {
            if ds_is(&doc, c, NS_WSU, "Timestamp") {
                if timestamp.replace(c).is_some() {
                    return Err(invalid("more than one wsu:Timestamp"));
                }
            } else if ds_is(&doc, c, NS_DS, "Signature") {
                if signature.replace(c).is_some() {
                    return Err(invalid("more than one ds:Signature"));
                }
            } else if ds_is(&doc, c, NS_WSSE, "BinarySecurityToken") {
                tokens.push(c);
            } else if confirmation.is_some() && ds_is(&doc, c, NS_WSSE11, "SignatureConfirmation") {
                confirmations.push(c);
            } else {
                return Err(invalid(format!(
                    "unexpected {} in wsse:Security",
                    qname(&doc, c)
                )));
            }
        }
        let timestamp = timestamp.ok_or_else(|| invalid("no wsu:Timestamp"))?;
        let signature = signature.ok_or_else(|| invalid("no ds:Signature"))?;
        check_unique_ids(&doc)?;
        check_algorithms(&doc, signature)?;

        // Token: resolve the direct reference ourselves and decide trust before any crypto.
        let token = resolve_token(&doc, signature, &tokens)?;
        #[cfg(any(test, feature = "reference-dsig"))]
        let token_der: Vec<u8> = match engine {
            Engine::Own => Vec::new(),
            Engine::Bergshamra => token.clone(),
        };
        let trusted = self.trusted(token, now)?;
        let signer_oin = trusted.oin.clone().ok_or_else(|| {
            SecurityError::SignerNotAllowed("the signing certificate carries no OIN".into())
        })?;
        if !self.any_signer && !self.allowed_signer_oins.contains(&signer_oin) {
            return Err(SecurityError::SignerNotAllowed(signer_oin));
        }
        if self.signer_must_match_tls && tls_oin != Some(signer_oin.as_str()) {
            return Err(SecurityError::SignerMismatch {
                signer: signer_oin,
                tls: tls_oin.unwrap_or("-").to_owned(),
            });
        }

        // The XML-DSig arithmetic, with only this key.
        let covered: HashSet<usize> = match engine {
            Engine::Own => {
                let key = trusted
                    .key
                    .as_ref()
                    .map_err(|e| SecurityError::Token(e.clone()))?;
                super::dsig::verify(&doc, signature, key)?
            }
            #[cfg(any(test, feature = "reference-dsig"))]
            Engine::Bergshamra => bergshamra_verify(&doc, raw, signature, &token_der)?,
        }
        .into_iter()
        .map(|n| n.index())
        .collect();
        let mut must: Vec<(String, uppsala::NodeId)> = vec![
            ("soapenv:Body".into(), body),
            ("wsu:Timestamp".into(), timestamp),
        ];
        for h in &wsa_headers {
            must.push((
                format!(
                    "wsa:{}",
                    doc.element(*h)
                        .map(|e| e.name.local_name.to_string())
                        .unwrap_or_default()
                ),
                *h,
            ));
        }
        if let Some(expected) = confirmation {
            let sc = confirmations
                .iter()
                .copied()
                .find(|c| {
                    attr(&doc, *c, "Value").map(|v| v.split_whitespace().collect::<String>())
                        == Some(expected.to_owned())
                })
                .ok_or_else(|| {
                    invalid("no wsse11:SignatureConfirmation with the request's SignatureValue")
                })?;
            must.push(("wsse11:SignatureConfirmation".into(), sc));
        }
        for (name, node) in must {
            if !covered.contains(&node.index()) {
                return Err(SecurityError::Coverage(name));
            }
        }

        let replay_until = self.check_timestamp(&doc, timestamp, now, message_id)?;
        let signature_value = child_elements(&doc, signature)
            .into_iter()
            .find(|c| ds_is(&doc, *c, NS_DS, "SignatureValue"))
            // What the signature check decoded (its first text node), so the SignatureConfirmation
            // echoes exactly the value that was verified.
            .map(|c| super::dsig::signature_text(&doc, c))
            .unwrap_or_default();
        Ok(Some(Verified {
            signer_oin,
            signature_value,
            replay_until,
        }))
    }

    /// The chain, OIN and key decision for a signing certificate, from the cache when it was made
    /// before (within the certificate's validity and [`TRUST_TTL_SECS`]).
    fn trusted(&self, token: Vec<u8>, now: OffsetDateTime) -> Result<Arc<Trusted>, SecurityError> {
        let secs = now.unix_timestamp();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &token);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        if let Some(t) = self.trust_cache.get(&hash, secs) {
            return Ok(t);
        }
        let end_entity = CertificateDer::from(token);
        self.trust
            .verify(
                &end_entity,
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64)),
            )
            .map_err(|e| SecurityError::Token(format!("signing certificate: {e}")))?;
        let facts = crate::certs::signer_facts(&end_entity)
            .map_err(|e| SecurityError::Token(e.to_string()))?;
        if !facts.may_sign {
            return Err(SecurityError::Token(
                "signing certificate: its keyUsage allows neither digitalSignature nor \
                 nonRepudiation"
                    .into(),
            ));
        }
        let key = super::dsig::RsaKey::from_certificate(&end_entity);
        let (oin, not_before, not_after) = (facts.oin, facts.not_before, facts.not_after);
        let t = Arc::new(Trusted {
            oin,
            key,
            not_before,
            not_after,
            checked_at: secs,
        });
        self.trust_cache.insert(hash, t.clone(), secs);
        Ok(t)
    }

    fn check_timestamp(
        &self,
        doc: &uppsala::Document<'_>,
        ts: uppsala::NodeId,
        now: OffsetDateTime,
        message_id: Option<&str>,
    ) -> Result<Option<i64>, SecurityError> {
        let mut created = None;
        let mut expires = None;
        for c in child_elements(doc, ts) {
            let text = doc.text_content_deep(c);
            if ds_is(doc, c, NS_WSU, "Created") && created.is_none() {
                created =
                    Some(parse_time(&text).ok_or_else(|| {
                        invalid(format!("wsu:Created {text:?} is not a dateTime"))
                    })?);
            } else if ds_is(doc, c, NS_WSU, "Expires") && expires.is_none() {
                expires =
                    Some(parse_time(&text).ok_or_else(|| {
                        invalid(format!("wsu:Expires {text:?} is not a dateTime"))
                    })?);
            } else {
                return Err(invalid(format!(
                    "unexpected {} in wsu:Timestamp",
                    qname(doc, c)
                )));
            }
        }
        let created = created.ok_or_else(|| invalid("wsu:Timestamp without wsu:Created"))?;
        if created > now + self.clock_skew {
            return Err(SecurityError::Expired(format!(
                "Created {created} is in the future"
            )));
        }
        if created < now - self.max_age - self.clock_skew {
            return Err(SecurityError::Expired(format!(
                "Created {created} is older than the allowed age"
            )));
        }
        if let Some(e) = expires {
            if e < created {
                return Err(invalid("wsu:Expires is before wsu:Created"));
            }
            // Near the end of the time crate's range (a signed Expires of 9999-12-31) the sum
            // would not exist: such an Expires has not passed.
            if e.checked_add(self.clock_skew).is_some_and(|t| t < now) {
                return Err(SecurityError::Expired(format!("Expires {e} has passed")));
            }
        }
        if let Some(id) = message_id {
            let until = created
                .checked_add(self.max_age + self.clock_skew * 2)
                .map_or(i64::MAX, OffsetDateTime::unix_timestamp);
            if !self
                .replay
                .check_and_insert(id, now.unix_timestamp(), until)
            {
                return Err(SecurityError::Replay(id.to_owned()));
            }
            return Ok(Some(until));
        }
        Ok(None)
    }
}

/// Who does the XML-DSig arithmetic.
#[derive(Clone, Copy)]
enum Engine {
    /// `soap::dsig`, the production path.
    Own,
    /// bergshamra, the reference (tests and fuzzing).
    #[cfg(any(test, feature = "reference-dsig"))]
    Bergshamra,
}

/// The XML-DSig check as dkd made it before `soap::dsig`: bergshamra with only the token's key in
/// its manager. Returns the nodes the verified references resolved to.
#[cfg(any(test, feature = "reference-dsig"))]
fn bergshamra_verify(
    doc: &uppsala::Document<'_>,
    raw: &str,
    signature: uppsala::NodeId,
    token: &[u8],
) -> Result<Vec<uppsala::NodeId>, SecurityError> {
    let key = bergshamra_keys::loader::load_x509_cert_der(token)
        .map_err(|e| SecurityError::Token(e.to_string()))?;
    let mut km = bergshamra_keys::KeysManager::new();
    km.add_key(key);
    let ctx = bergshamra_dsig::DsigContext::new(km).with_strict_verification(false);
    let result = bergshamra_dsig::verify::verify_document_with_source(&ctx, doc, Some(raw))
        .map_err(|e| SecurityError::FailedCheck(e.to_string()))?;
    match result {
        bergshamra_dsig::VerifyResult::Valid {
            signature_node,
            references,
            ..
        } => {
            if signature_node != signature {
                return Err(invalid(
                    "the verified signature is not the one in wsse:Security",
                ));
            }
            Ok(references
                .iter()
                .filter(|r| r.digest_verified)
                .filter_map(|r| r.resolved_node)
                .collect())
        }
        bergshamra_dsig::VerifyResult::Invalid { reason } => {
            Err(SecurityError::FailedCheck(reason))
        }
    }
}

fn check_unique_ids(doc: &uppsala::Document<'_>) -> Result<(), SecurityError> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack = vec![doc.root()];
    while let Some(n) = stack.pop() {
        if let Some(e) = doc.element(n) {
            for a in &e.attributes {
                if matches!(&*a.name.local_name, "Id" | "ID" | "id") && !seen.insert(&a.value) {
                    return Err(invalid(format!("duplicate Id {:?}", a.value)));
                }
            }
        }
        stack.extend(doc.children_iter(n));
    }
    Ok(())
}

fn algorithm_of(
    doc: &uppsala::Document<'_>,
    parent: uppsala::NodeId,
    local: &str,
) -> Result<String, SecurityError> {
    let nodes: Vec<_> = child_elements(doc, parent)
        .into_iter()
        .filter(|c| ds_is(doc, *c, NS_DS, local))
        .collect();
    match nodes.as_slice() {
        [one] => attr(doc, *one, "Algorithm")
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("ds:{local} without Algorithm"))),
        _ => Err(invalid(format!("expected one ds:{local}"))),
    }
}

fn check_algorithms(
    doc: &uppsala::Document<'_>,
    signature: uppsala::NodeId,
) -> Result<(), SecurityError> {
    let signed_info = child_elements(doc, signature)
        .into_iter()
        .find(|c| ds_is(doc, *c, NS_DS, "SignedInfo"))
        .ok_or_else(|| invalid("no ds:SignedInfo"))?;
    let c14n = algorithm_of(doc, signed_info, "CanonicalizationMethod")?;
    if c14n != ALG_EXC_C14N {
        return Err(SecurityError::Algorithm(format!(
            "CanonicalizationMethod {c14n}"
        )));
    }
    let sig = algorithm_of(doc, signed_info, "SignatureMethod")?;
    if !ALLOWED_SIGNATURE.contains(&sig.as_str()) {
        return Err(SecurityError::Algorithm(format!("SignatureMethod {sig}")));
    }
    let refs: Vec<_> = child_elements(doc, signed_info)
        .into_iter()
        .filter(|c| ds_is(doc, *c, NS_DS, "Reference"))
        .collect();
    if refs.is_empty() {
        return Err(invalid("SignedInfo has no Reference"));
    }
    for r in refs {
        let uri = attr(doc, r, "URI").unwrap_or("");
        if !uri.starts_with('#') || uri.len() < 2 {
            return Err(invalid(format!(
                "Reference URI {uri:?} is not a same-document #Id reference"
            )));
        }
        let transforms: Vec<_> = child_elements(doc, r)
            .into_iter()
            .filter(|c| ds_is(doc, *c, NS_DS, "Transforms"))
            .collect();
        let list = match transforms.as_slice() {
            [t] => child_elements(doc, *t),
            _ => {
                return Err(SecurityError::Algorithm(format!(
                    "Reference {uri}: exactly one exc-c14n Transform is required"
                )))
            }
        };
        match list.as_slice() {
            [t] if ds_is(doc, *t, NS_DS, "Transform")
                && attr(doc, *t, "Algorithm") == Some(ALG_EXC_C14N) => {}
            _ => {
                return Err(SecurityError::Algorithm(format!(
                    "Reference {uri}: transforms must be exactly [exc-c14n]"
                )))
            }
        }
        let digest = algorithm_of(doc, r, "DigestMethod")?;
        if !ALLOWED_DIGEST.contains(&digest.as_str()) {
            return Err(SecurityError::Algorithm(format!("DigestMethod {digest}")));
        }
    }
    Ok(())
}

fn resolve_token(
    doc: &uppsala::Document<'_>,
    signature: uppsala::NodeId,
    tokens: &[uppsala::NodeId],
) -> Result<Vec<u8>, SecurityError> {
    let key_info = child_elements(doc, signature)
        .into_iter()
        .find(|c| ds_is(doc, *c, NS_DS, "KeyInfo"))
        .ok_or_else(|| SecurityError::Token("no ds:KeyInfo".into()))?;
    let str_ = child_elements(doc, key_info)
        .into_iter()
        .find(|c| ds_is(doc, *c, NS_WSSE, "SecurityTokenReference"))
        .ok_or_else(|| {
            SecurityError::Token("KeyInfo must hold a wsse:SecurityTokenReference".into())
        })?;
    let reference = child_elements(doc, str_)
        .into_iter()
        .find(|c| ds_is(doc, *c, NS_WSSE, "Reference"))
        .ok_or_else(|| {
            SecurityError::Token("SecurityTokenReference must hold a direct wsse:Reference".into())
        })?;
    let uri = attr(doc, reference, "URI").unwrap_or("");
    let id = uri
        .strip_prefix('#')
        .ok_or_else(|| SecurityError::Token(format!("token reference {uri:?} is not #Id")))?;
    let token = tokens
        .iter()
        .copied()
        .find(|t| element_id(doc, *t).as_deref() == Some(id))
        .ok_or_else(|| {
            SecurityError::Token(format!(
                "no BinarySecurityToken with Id {id:?} in wsse:Security"
            ))
        })?;
    if attr(doc, token, "ValueType") != Some(VALUE_TYPE_X509) {
        return Err(SecurityError::Token(
            "BinarySecurityToken ValueType must be X509v3".into(),
        ));
    }
    if let Some(enc) = attr(doc, token, "EncodingType") {
        if enc != ENCODING_BASE64 {
            return Err(SecurityError::Token(
                "BinarySecurityToken EncodingType must be Base64Binary".into(),
            ));
        }
    }
    let text = super::dsig::strip_whitespace(&doc.text_content_deep(token));
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| SecurityError::Token(format!("BinarySecurityToken is not base64: {e}")))
}
