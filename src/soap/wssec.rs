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
use crate::xml::{escape, escape_attr, NS_SOAP11, NS_WSA, NS_WSSE, NS_WSSE11, NS_WSU};
use base64::Engine as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

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

/// Whether a certificate may sign WS-Security messages: it chains to a trusted CA, is within its
/// validity, and is not on a CRL. Unlike the TLS client check no extended key usage is required:
/// a message signer is not a TLS client, and many signing certificates are TLS server
/// certificates (EKU serverAuth only). The keyUsage is judged afterwards, from the parsed
/// certificate (`certs::signer_facts`).
pub struct SignerTrust {
    anchors: Vec<rustls_pki_types::TrustAnchor<'static>>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

/// Any extended key usage, or none: the chain, validity and revocation checks still apply.
struct AnyExtendedKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // A malformed extension is still refused.
        for id in iter {
            id?;
        }
        Ok(())
    }
}

impl SignerTrust {
    /// Trusts certificates issued under `roots` (CA certificates, DER), refusing those on `crls`
    /// with the policy dkd's TLS verifier uses: every certificate of the chain is checked, one
    /// whose status a CRL cannot tell is refused, a CRL past its nextUpdate still counts.
    pub fn new(
        roots: &[CertificateDer<'_>],
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<SignerTrust, String> {
        let anchors = roots
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| format!("CA certificate refused: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if anchors.is_empty() {
            return Err("no CA certificate to trust".into());
        }
        let crls = crls
            .iter()
            .map(|c| {
                webpki::OwnedCertRevocationList::from_der(c)
                    .map(webpki::CertRevocationList::from)
                    .map_err(|e| format!("CRL refused: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SignerTrust {
            anchors,
            crls,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        })
    }

    /// Checks `end_entity` (no intermediates: a BinarySecurityToken carries one certificate).
    pub fn verify(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), String> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(describe_pki_error)?;
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                b.with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                    .build()
            });
        cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            &[],
            now,
            AnyExtendedKeyUsage,
            revocation,
            None,
        )
        .map(|_| ())
        .map_err(describe_pki_error)
    }
}

fn describe_pki_error(e: webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => "expired".into(),
        E::CertNotValidYet { .. } => "not valid yet".into(),
        E::UnknownIssuer => "not issued by a trusted CA".into(),
        // A CA of the same name as a trusted one, not its key.
        E::InvalidSignatureForPublicKey => {
            "not issued by a trusted CA (the issuer's signature does not verify)".into()
        }
        E::CertRevoked => "revoked".into(),
        E::UnknownRevocationStatus => "revocation status unknown (no CRL of its issuer)".into(),
        E::BadDer | E::BadDerTime | E::TrailingData(_) => "not a well-formed certificate".into(),
        other => format!("{other:?}"),
    }
}

/// What the chain check and the certificate parses established about one signing certificate.
/// The IB signs every request with the same certificate, so re-deciding per request would cost
/// an RSA verify (the chain) and two X.509 parses for nothing.
struct Trusted {
    /// The OIN in the subject, if any.
    oin: Option<String>,
    /// The RSA public key, or why it could not be loaded (reported only at the point the uncached
    /// path reports it, so the error order stays the same).
    key: Result<super::dsig::RsaKey, String>,
    /// The certificate's validity period (unix seconds): webpki refuses outside it, and so does
    /// a cached decision.
    not_before: i64,
    not_after: i64,
    /// When the chain was checked (unix seconds); decisions are re-made after [`TRUST_TTL_SECS`].
    checked_at: i64,
}

/// How long a positive trust decision is reused. The trust anchors and CRLs are fixed for the
/// life of a `VerifyPolicy`, so this is defence in depth, not a correctness bound.
const TRUST_TTL_SECS: i64 = 600;

/// A bounded memory of signing certificates that passed the chain check, keyed by the SHA-256 of
/// their DER. Only positive decisions are kept: a refused certificate is re-checked every time,
/// so untrusted tokens cannot fill it.
pub struct TrustCache {
    inner: Mutex<HashMap<[u8; 32], Arc<Trusted>>>,
    capacity: usize,
}

impl Default for TrustCache {
    fn default() -> TrustCache {
        TrustCache::new(64)
    }
}

impl TrustCache {
    /// A cache holding at most `capacity` certificates (0 disables it).
    pub fn new(capacity: usize) -> TrustCache {
        TrustCache {
            inner: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn get(&self, hash: &[u8; 32], now: i64) -> Option<Arc<Trusted>> {
        let g = self.inner.lock().ok()?;
        let t = g.get(hash)?;
        // The same bounds webpki applies to the end entity (`now` outside [notBefore, notAfter]
        // is refused), so an expired certificate goes back through the full check and fails there.
        (now >= t.not_before && now <= t.not_after && now - t.checked_at < TRUST_TTL_SECS)
            .then(|| t.clone())
    }

    fn insert(&self, hash: [u8; 32], t: Arc<Trusted>, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut g) = self.inner.lock() else { return };
        if g.len() >= self.capacity && !g.contains_key(&hash) {
            g.retain(|_, v| {
                now >= v.not_before && now <= v.not_after && now - v.checked_at < TRUST_TTL_SECS
            });
            if g.len() >= self.capacity {
                // Still full of live entries: more signing certificates than expected. Starting
                // over costs one chain check per certificate; it never grows.
                g.clear();
            }
        }
        g.insert(hash, t);
    }

    /// How many certificates are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// Whether no certificate is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// MessageIDs seen by every instance serving one store (PostgreSQL), behind this process's
/// [`ReplayCache`]. Implemented in the wiring (`app`), so `soap` names no store type.
pub trait SharedReplay: Send + Sync {
    /// Records `message_id` as seen until `until` (unix seconds): `Ok(true)` when no instance saw
    /// it within its window before `now`, `Ok(false)` when one did, `Err` when that cannot be
    /// known now (the request is then not answered: fail closed).
    fn claim(&self, message_id: &str, now: i64, until: i64) -> Result<bool, String>;
}

/// A bounded memory of MessageIDs seen within their validity window.
pub struct ReplayCache {
    inner: Mutex<ReplayInner>,
    capacity: usize,
    shared: Option<std::sync::Arc<dyn SharedReplay>>,
}

struct ReplayInner {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` MessageIDs.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(ReplayInner {
                seen: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            shared: None,
        }
    }

    /// This cache in front of the MessageIDs every instance on the store has seen.
    pub fn with_shared(mut self, shared: std::sync::Arc<dyn SharedReplay>) -> ReplayCache {
        self.shared = Some(shared);
        self
    }

    /// The instances' shared memory behind this cache, if any.
    pub fn shared(&self) -> Option<&dyn SharedReplay> {
        self.shared.as_deref()
    }

    /// Forgets a MessageID recorded here whose request was not answered after all (the shared
    /// memory could not be asked), so a retry of it is judged afresh.
    pub fn forget(&self, id: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.seen.remove(id);
        }
    }

    /// Records a MessageID valid until `until` (unix seconds); false if it was already seen.
    pub fn check_and_insert(&self, id: &str, now: i64, until: i64) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        while let Some((exp, _)) = g.order.front() {
            if *exp >= now && g.order.len() < self.capacity {
                break;
            }
            // Expired, or over capacity: forget the oldest entry. Over capacity a replay older than
            // the evicted entry could pass, but its Timestamp is then close to expiry anyway.
            if let Some((_, old)) = g.order.pop_front() {
                g.seen.remove(&old);
            }
        }
        if g.seen.get(id).is_some_and(|&exp| exp >= now) {
            return false;
        }
        g.seen.insert(id.to_owned(), until);
        // Keep `order` sorted enough: windows are similar, so appending is a good approximation.
        g.order.push_back((until, id.to_owned()));
        true
    }
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

/// The response signer: the service certificate and its RSA key, parsed once.
pub struct Signer {
    key: aws_lc_rs::signature::RsaKeyPair,
    cert_b64: String,
    rng: aws_lc_rs::rand::SystemRandom,
    /// How long a response's Timestamp is valid.
    pub ttl: time::Duration,
}

/// Which PEM input of [`Signer::from_pem`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemPart {
    /// The certificate.
    Cert,
    /// The private key.
    Key,
}

/// Why the signing material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SignerError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl Signer {
    /// Loads the signing certificate (PEM, first certificate) and RSA private key (PEM, PKCS#8 or
    /// PKCS#1).
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Signer, SignerError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| SignerError {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        Signer::from_pem(&read(cert)?, &read(key)?).map_err(|(which, reason)| SignerError {
            path: match which {
                PemPart::Cert => cert,
                PemPart::Key => key,
            }
            .display()
            .to_string(),
            reason,
        })
    }

    /// [`Signer::load`] from PEM text in memory (`dkd check` signs with a certificate it made).
    /// `Err` names the part that is wrong.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Signer, (PemPart, String)> {
        use rustls_pki_types::pem::PemObject;
        let cert_der =
            CertificateDer::from_pem_slice(cert).map_err(|e| (PemPart::Cert, e.to_string()))?;
        let key_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| (PemPart::Key, e.to_string()))?;
        let key_pair = match &key_der {
            rustls_pki_types::PrivateKeyDer::Pkcs8(k) => {
                aws_lc_rs::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
            }
            rustls_pki_types::PrivateKeyDer::Pkcs1(k) => {
                aws_lc_rs::signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
            }
            _ => {
                return Err((
                    PemPart::Key,
                    "the signing key must be an RSA key (PKCS#8 or PKCS#1)".into(),
                ))
            }
        }
        .map_err(|e| (PemPart::Key, format!("not a usable RSA key: {e}")))?;
        Ok(Signer {
            key: key_pair,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(cert_der.as_ref()),
            rng: aws_lc_rs::rand::SystemRandom::new(),
            ttl: time::Duration::minutes(5),
        })
    }

    /// Builds the `wsse:Security` header for parts whose canonical (exc-C14N) bytes are given,
    /// with a Timestamp and, when `confirm` is set, a SignatureConfirmation; both signed too.
    pub fn security_header(
        &self,
        parts: &[(&str, &str)],
        confirm: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<String, SecurityError> {
        let created = format_time(now);
        let expires = format_time(now + self.ttl);
        let mut ts = String::with_capacity(300);
        ts.push_str("<wsu:Timestamp xmlns:wsu=\"");
        ts.push_str(NS_WSU);
        ts.push_str("\" wsu:Id=\"_Timestamp\"><wsu:Created>");
        ts.push_str(&created);
        ts.push_str("</wsu:Created><wsu:Expires>");
        ts.push_str(&expires);
        ts.push_str("</wsu:Expires></wsu:Timestamp>");
        let mut sc = String::new();
        if let Some(v) = confirm {
            sc.push_str("<wsse11:SignatureConfirmation xmlns:wsse11=\"");
            sc.push_str(NS_WSSE11);
            sc.push_str("\" xmlns:wsu=\"");
            sc.push_str(NS_WSU);
            sc.push_str("\" Value=\"");
            escape_attr(v, &mut sc);
            sc.push_str("\" wsu:Id=\"_SignatureConfirmation\"></wsse11:SignatureConfirmation>");
        }
        let mut signed_info = String::with_capacity(300 + 400 * (parts.len() + 2));
        signed_info.push_str("<ds:SignedInfo xmlns:ds=\"");
        signed_info.push_str(NS_DS);
        signed_info.push_str("\"><ds:CanonicalizationMethod Algorithm=\"");
        signed_info.push_str(ALG_EXC_C14N);
        signed_info.push_str("\"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm=\"");
        signed_info.push_str(ALG_RSA_SHA256);
        signed_info.push_str("\"></ds:SignatureMethod>");
        let mut all: Vec<(&str, &str)> = parts.to_vec();
        all.push(("_Timestamp", &ts));
        if !sc.is_empty() {
            all.push(("_SignatureConfirmation", &sc));
        }
        for (id, canonical) in all {
            let digest =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
            signed_info.push_str("<ds:Reference URI=\"#");
            signed_info.push_str(id);
            signed_info.push_str("\"><ds:Transforms><ds:Transform Algorithm=\"");
            signed_info.push_str(ALG_EXC_C14N);
            signed_info.push_str("\"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm=\"");
            signed_info.push_str(ALG_SHA256);
            signed_info.push_str("\"></ds:DigestMethod><ds:DigestValue>");
            signed_info
                .push_str(&base64::engine::general_purpose::STANDARD.encode(digest.as_ref()));
            signed_info.push_str("</ds:DigestValue></ds:Reference>");
        }
        signed_info.push_str("</ds:SignedInfo>");
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                signed_info.as_bytes(),
                &mut sig,
            )
            .map_err(|_| SecurityError::FailedCheck("RSA signing failed".into()))?;
        let mut out = String::with_capacity(signed_info.len() + self.cert_b64.len() + 1200);
        out.push_str("<wsse:Security xmlns:wsse=\"");
        out.push_str(NS_WSSE);
        out.push_str("\" xmlns:wsu=\"");
        out.push_str(NS_WSU);
        out.push_str("\" soapenv:mustUnderstand=\"1\">");
        out.push_str(&ts);
        out.push_str("<wsse:BinarySecurityToken EncodingType=\"");
        out.push_str(ENCODING_BASE64);
        out.push_str("\" ValueType=\"");
        out.push_str(VALUE_TYPE_X509);
        out.push_str("\" wsu:Id=\"_X509\">");
        out.push_str(&self.cert_b64);
        out.push_str("</wsse:BinarySecurityToken>");
        out.push_str(&sc);
        out.push_str("<ds:Signature xmlns:ds=\"");
        out.push_str(NS_DS);
        out.push_str("\">");
        out.push_str(&signed_info);
        out.push_str("<ds:SignatureValue>");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(&sig));
        out.push_str("</ds:SignatureValue><ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI=\"#_X509\" ValueType=\"");
        out.push_str(VALUE_TYPE_X509);
        out.push_str(
            "\"/></wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature></wsse:Security>",
        );
        Ok(out)
    }
}

#[cfg(test)]
impl Signer {
    /// RSA-SHA256 over `data` with the signing key (tests that build their own signatures).
    pub(crate) fn sign_for_test(&self, data: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                data,
                &mut sig,
            )
            .expect("sign");
        sig
    }

    /// The certificate, base64 DER.
    pub(crate) fn cert_b64(&self) -> &str {
        &self.cert_b64
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form WS-Security toolkits write.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The exclusive-C14N form of a WS-Addressing header dkd writes: the same bytes it puts in the
/// document (the header declares both namespaces it uses).
pub fn wsa_header(name: &str, id: Option<&str>, inner: impl FnOnce(&mut String), out: &mut String) {
    out.push_str("<wsa:");
    out.push_str(name);
    out.push_str(" xmlns:wsa=\"");
    out.push_str(NS_WSA);
    out.push('"');
    if let Some(id) = id {
        out.push_str(" xmlns:wsu=\"");
        out.push_str(NS_WSU);
        out.push_str("\" wsu:Id=\"");
        out.push_str(id);
        out.push('"');
    }
    out.push('>');
    inner(out);
    out.push_str("</wsa:");
    out.push_str(name);
    out.push('>');
}

/// The exclusive-C14N form of `soapenv:Body` around already-canonical content.
pub fn canonical_body(id: &str, inner: &str) -> String {
    let mut s = String::with_capacity(inner.len() + 200);
    s.push_str("<soapenv:Body xmlns:soapenv=\"");
    s.push_str(NS_SOAP11);
    s.push_str("\" xmlns:wsu=\"");
    s.push_str(NS_WSU);
    s.push_str("\" wsu:Id=\"");
    escape(id, &mut s);
    s.push_str("\">");
    s.push_str(inner);
    s.push_str("</soapenv:Body>");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::certs::DevCa;

    pub(crate) struct Fixture {
        _dir: tempfile::TempDir,
        pub(crate) signer: Signer,
        pub(crate) policy: VerifyPolicy,
    }

    pub(crate) const OIN: &str = "00000099000000000002";

    pub(crate) fn fixture() -> Fixture {
        fixture_signed_by(|ca| ca.client("c", Some(OIN), 10))
    }

    /// A fixture whose signer's certificate `make` issues under the trusted CA.
    pub(crate) fn fixture_signed_by(
        make: impl FnOnce(&DevCa) -> Result<crate::certs::Issued, crate::certs::CertError>,
    ) -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let ca = DevCa::new("ca").expect("ca");
        let c = make(&ca).expect("signer certificate");
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ca.pem"), ca.issued().cert_pem).expect("w");
        std::fs::write(p("c.pem"), &c.cert_pem).expect("w");
        std::fs::write(p("c-key.pem"), &c.key_pem).expect("w");
        let signer = Signer::load(&p("c.pem"), &p("c-key.pem")).expect("signer");
        let policy = VerifyPolicy {
            mode: SigningMode::Required,
            trust: crate::http::tls::signer_trust(&p("ca.pem"), &[]).expect("trust"),
            allowed_signer_oins: [OIN.to_owned()].into_iter().collect(),
            signer_must_match_tls: true,
            any_signer: false,
            clock_skew: time::Duration::seconds(60),
            max_age: time::Duration::seconds(300),
            replay: ReplayCache::new(10),
            trust_cache: Default::default(),
        };
        Fixture {
            _dir: dir,
            signer,
            policy,
        }
    }

    pub(crate) fn request(f: &Fixture, id: &str, now: OffsetDateTime) -> String {
        crate::soap::signed_request(
            &f.signer,
            "https://x/GSDDossierReintegratie-v0200",
            OIN,
            "123456782",
            id,
            now,
        )
        .expect("sign")
    }

    fn invalid_message(r: Result<Option<Verified>, SecurityError>) -> String {
        match r {
            Err(SecurityError::Invalid(m)) => m,
            other => panic!("expected InvalidSecurity, got {other:?}"),
        }
    }

    #[test]
    fn reference_count_repeats_and_prefix_lists_are_bounded_before_any_digest() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:bounds", now);
        let start = req.find("<ds:Reference ").expect("a Reference");
        let end = start + req[start..].find("</ds:Reference>").expect("its end") + 15;
        let one = &req[start..end];
        // The same Reference twice: both resolve to one element.
        let twice = format!("{}{one}{}", &req[..end], &req[end..]);
        let m = invalid_message(f.policy.verify(&twice, Some(OIN), None, now));
        assert!(m.contains("same element"), "{m}");
        // More References than a 2W-be-S message has parts.
        let many = format!("{}{}{}", &req[..end], one.repeat(16), &req[end..]);
        let m = invalid_message(f.policy.verify(&many, Some(OIN), None, now));
        assert!(m.contains("at most 16"), "{m}");
        // A PrefixList of thousands made every canonicalised element quadratic.
        let list: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
        let c14n = format!(
            "<ds:CanonicalizationMethod Algorithm=\"{ALG_EXC_C14N}\"></ds:CanonicalizationMethod>"
        );
        assert!(req.contains(&c14n), "{req}");
        let long = req.replace(
            &c14n,
            &format!(
                "<ds:CanonicalizationMethod Algorithm=\"{ALG_EXC_C14N}\"><ec:InclusiveNamespaces xmlns:ec=\"{ALG_EXC_C14N}\" PrefixList=\"{}\"/></ds:CanonicalizationMethod>",
                list.join(" ")
            ),
        );
        let m = invalid_message(f.policy.verify(&long, Some(OIN), None, now));
        assert!(m.contains("PrefixList"), "{m}");
        // Sixteen prefixes, repeated, are fine for the bound (the changed SignedInfo then fails
        // the signature check, as any change does).
        let ok_list = format!("{} {}", list[..16].join(" "), list[..16].join(" "));
        let within = long.replace(&list.join(" "), &ok_list);
        assert!(matches!(
            f.policy.verify(&within, Some(OIN), None, now),
            Err(SecurityError::FailedCheck(_))
        ));
    }

    #[test]
    fn an_expires_at_the_end_of_time_is_not_a_panic() {
        let mut f = fixture();
        let now = OffsetDateTime::now_utc();
        f.signer.ttl = time::macros::datetime!(9999-12-31 23:59:59 UTC) - now;
        let req = request(&f, "urn:uuid:late", now);
        assert!(req.contains("9999-12-31T23:59:59"), "{req}");
        let v = f
            .policy
            .verify(&req, Some(OIN), Some("urn:uuid:late"), now)
            .expect("valid")
            .expect("signed");
        assert_eq!(v.signer_oin, OIN);
    }

    #[test]
    fn the_confirmed_signature_value_is_the_verified_one() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:sv", now);
        let at = req.find("</ds:SignatureValue>").expect("SignatureValue");
        // The verifier reads the first text node (as bergshamra does); what dkd echoes in its
        // SignatureConfirmation must be that value, not the text of every node.
        let padded = format!("{}<!---->JUNK{}", &req[..at], &req[at..]);
        let clean = f
            .policy
            .verify(&req, Some(OIN), None, now)
            .expect("valid")
            .expect("signed");
        let v = f
            .policy
            .verify(&padded, Some(OIN), None, now)
            .expect("valid")
            .expect("signed");
        assert_eq!(v.signature_value, clean.signature_value);
        assert!(!v.signature_value.contains("JUNK"));
    }

    #[test]
    fn own_signature_verifies_with_independent_c14n() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:1", now);
        let v = f
            .policy
            .verify(&req, Some(OIN), Some("urn:uuid:1"), now)
            .expect("valid")
            .expect("signed");
        assert_eq!(v.signer_oin, OIN);
        assert!(!v.signature_value.is_empty());
    }

    #[test]
    fn replayed_message_id_is_refused_and_cache_is_bounded() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:2", now);
        f.policy
            .verify(&req, Some(OIN), Some("urn:uuid:2"), now)
            .expect("first");
        assert!(matches!(
            f.policy.verify(&req, Some(OIN), Some("urn:uuid:2"), now),
            Err(SecurityError::Replay(_))
        ));
        let cache = ReplayCache::new(3);
        for i in 0..10 {
            assert!(cache.check_and_insert(&format!("m{i}"), 0, 100));
        }
        assert!(cache.inner.lock().map(|g| g.seen.len()).unwrap_or(99) <= 3);
    }

    #[test]
    fn tampering_after_signing_fails_the_check() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:3", now).replace("123456782", "111222333");
        assert!(
            matches!(
                f.policy.verify(&req, Some(OIN), Some("urn:uuid:3"), now),
                Err(SecurityError::FailedCheck(_))
            ),
            "tampered body"
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let old = request(&f, "urn:uuid:4", now - time::Duration::minutes(20));
        assert!(matches!(
            f.policy.verify(&old, Some(OIN), Some("urn:uuid:4"), now),
            Err(SecurityError::Expired(_))
        ));
        let future = request(&f, "urn:uuid:5", now + time::Duration::minutes(5));
        assert!(matches!(
            f.policy.verify(&future, Some(OIN), Some("urn:uuid:5"), now),
            Err(SecurityError::Expired(_))
        ));
    }

    #[test]
    fn signer_must_match_tls_oin() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:6", now);
        assert!(matches!(
            f.policy
                .verify(&req, Some("00000099000000000009"), Some("urn:uuid:6"), now),
            Err(SecurityError::SignerMismatch { .. })
        ));
    }

    #[test]
    fn a_cached_trust_decision_ends_with_the_certificate() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:7", now);
        f.policy
            .verify(&req, Some(OIN), Some("urn:uuid:7"), now)
            .expect("valid");
        assert_eq!(f.policy.trust_cache.len(), 1);
        // The fixture's client certificate is valid for 10 days: a request signed (and checked)
        // after that must fail the token check even though its certificate is cached.
        let later = now + time::Duration::days(11);
        let late = request(&f, "urn:uuid:8", later);
        assert!(matches!(
            f.policy.verify(&late, Some(OIN), Some("urn:uuid:8"), later),
            Err(SecurityError::Token(_))
        ));
    }

    #[test]
    fn a_signer_needs_no_tls_extended_key_usage_but_must_allow_signatures() {
        use crate::certs::SignerUsage as U;
        let now = OffsetDateTime::now_utc();
        for usage in [
            U::ServerAuthOnly,
            U::ClientAuthOnly,
            U::NoExtendedKeyUsage,
            U::NonRepudiationOnly,
        ] {
            let f = fixture_signed_by(|ca| ca.signer("s", Some(OIN), 10, usage));
            let req = request(&f, "urn:uuid:eku", now);
            let v = f
                .policy
                .verify(&req, Some(OIN), Some("urn:uuid:eku"), now)
                .unwrap_or_else(|e| panic!("{usage:?}: {e}"))
                .expect("signed");
            assert_eq!(v.signer_oin, OIN, "{usage:?}");
        }
        let f = fixture_signed_by(|ca| ca.signer("s", Some(OIN), 10, U::NoDigitalSignature));
        let req = request(&f, "urn:uuid:ku", now);
        match f.policy.verify(&req, Some(OIN), None, now) {
            Err(SecurityError::Token(m)) => assert!(m.contains("digitalSignature"), "{m}"),
            other => panic!("keyEncipherment only must be refused: {other:?}"),
        }
        assert!(f.policy.trust_cache.is_empty(), "a refusal is not cached");
    }

    #[test]
    fn a_signer_from_another_ca_or_expired_is_still_refused() {
        let now = OffsetDateTime::now_utc();
        let f = fixture();
        let foreign = fixture_signed_by(|ca| {
            ca.signer(
                "s",
                Some(OIN),
                10,
                crate::certs::SignerUsage::ServerAuthOnly,
            )
        });
        let req = request(&foreign, "urn:uuid:foreign", now);
        match f.policy.verify(&req, Some(OIN), None, now) {
            Err(SecurityError::Token(m)) => assert!(m.contains("trusted CA"), "{m}"),
            other => panic!("another CA's signer must be refused: {other:?}"),
        }
        let later = now + time::Duration::days(11);
        let late = request(&f, "urn:uuid:late-eku", later);
        match f.policy.verify(&late, Some(OIN), None, later) {
            Err(SecurityError::Token(m)) => assert!(m.contains("expired"), "{m}"),
            other => panic!("an expired signer must be refused: {other:?}"),
        }
    }

    #[test]
    fn a_revoked_signer_is_refused_and_one_the_crl_does_not_name_is_not() {
        use crate::certs::SignerUsage as U;
        let now = OffsetDateTime::now_utc();
        let dir = tempfile::tempdir().expect("tmp");
        let ca = DevCa::new("ca").expect("ca");
        let revoked = ca
            .signer("r", Some(OIN), 10, U::ServerAuthOnly)
            .expect("signer");
        let kept = ca
            .signer("k", Some(OIN), 10, U::ServerAuthOnly)
            .expect("signer");
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ca.pem"), ca.issued().cert_pem).expect("w");
        std::fs::write(p("crl.pem"), ca.crl_pem(&[&revoked.cert_pem]).expect("crl")).expect("w");
        let trust = crate::http::tls::signer_trust(&p("ca.pem"), &[p("crl.pem")]).expect("trust");
        for (name, issued, ok) in [("revoked", &revoked, false), ("kept", &kept, true)] {
            std::fs::write(p("s.pem"), &issued.cert_pem).expect("w");
            std::fs::write(p("s-key.pem"), &issued.key_pem).expect("w");
            let mut f = fixture();
            f.signer = Signer::load(&p("s.pem"), &p("s-key.pem")).expect("signer");
            f.policy.trust = trust.clone();
            let req = request(&f, &format!("urn:uuid:crl-{name}"), now);
            match f.policy.verify(&req, Some(OIN), None, now) {
                Ok(Some(_)) if ok => {}
                Err(SecurityError::Token(m)) if !ok => assert!(m.contains("revoked"), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn sha224_digests_and_rsa_sha224_signatures_are_refused_as_algorithms() {
        let f = fixture();
        let now = OffsetDateTime::now_utc();
        let req = request(&f, "urn:uuid:224", now);
        let sha256 = format!("<ds:DigestMethod Algorithm=\"{ALG_SHA256}\">");
        assert!(req.contains(&sha256), "{req}");
        // Refused by the allow-list before any digest is compared: an Algorithm refusal (fault
        // 0027), not a failed check.
        let sha224 = req.replacen(
            &sha256,
            "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#sha224\">",
            1,
        );
        match f.policy.verify(&sha224, Some(OIN), None, now) {
            Err(SecurityError::Algorithm(m)) => assert!(m.contains("sha224"), "{m}"),
            other => panic!("SHA-224 must be refused: {other:?}"),
        }
        let rsa224 = req.replace(
            ALG_RSA_SHA256,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha224",
        );
        match f.policy.verify(&rsa224, Some(OIN), None, now) {
            Err(SecurityError::Algorithm(m)) => assert!(m.contains("rsa-sha224"), "{m}"),
            other => panic!("RSA-SHA224 must be refused: {other:?}"),
        }
    }

    #[test]
    fn format_time_is_utc_with_milliseconds() {
        let t = time::macros::datetime!(2026-11-22 15:04:05.123 +01:00);
        assert_eq!(format_time(t), "2026-11-22T14:04:05.123Z");
    }
}
