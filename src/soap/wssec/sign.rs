//! Signing responses from their canonical bytes.

use super::{
    SecurityError, ALG_EXC_C14N, ALG_RSA_SHA256, ALG_SHA256, ENCODING_BASE64, VALUE_TYPE_X509,
};
use crate::xml::{escape, escape_attr, NS_DS, NS_SOAP11, NS_WSA, NS_WSSE, NS_WSSE11, NS_WSU};
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

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
