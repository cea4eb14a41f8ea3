//! Whether a signing certificate is trusted: the chain and CRL checks, and the cache of positive
//! decisions.

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
pub(super) struct Trusted {
    /// The OIN in the subject, if any.
    pub(super) oin: Option<String>,
    /// The RSA public key, or why it could not be loaded (reported only at the point the uncached
    /// path reports it, so the error order stays the same).
    pub(super) key: Result<crate::soap::dsig::RsaKey, String>,
    /// The certificate's validity period (unix seconds): webpki refuses outside it, and so does
    /// a cached decision.
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    /// When the chain was checked (unix seconds); decisions are re-made after [`TRUST_TTL_SECS`].
    pub(super) checked_at: i64,
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

    pub(super) fn get(&self, hash: &[u8; 32], now: i64) -> Option<Arc<Trusted>> {
        let g = self.inner.lock().ok()?;
        let t = g.get(hash)?;
        // The same bounds webpki applies to the end entity (`now` outside [notBefore, notAfter]
        // is refused), so an expired certificate goes back through the full check and fails there.
        (now >= t.not_before && now <= t.not_after && now - t.checked_at < TRUST_TTL_SECS)
            .then(|| t.clone())
    }

    pub(super) fn insert(&self, hash: [u8; 32], t: Arc<Trusted>, now: i64) {
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
