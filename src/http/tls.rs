//! TLS: the rustls server and client configurations dkd uses, and reading the peer's OIN.
//!
//! Mutual TLS is not optional on the service listener: a client without a certificate chaining
//! to the configured CA bundle fails the handshake, before any HTTP is read.

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS setup problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The crypto provider: aws-lc-rs, passed explicitly so nothing depends on a process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads all certificates of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect();
    let certs = certs.map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Reads a private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_err(path, format!("no usable private key: {e}")))
}

fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| file_err(p, e))?;
        let pem: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
        match pem {
            Ok(v) if !v.is_empty() => out.extend(v),
            _ => out.push(CertificateRevocationListDer::from(bytes)),
        }
    }
    Ok(out)
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store
            .add(c)
            .map_err(|e| file_err(path, format!("CA certificate refused: {e}")))?;
    }
    Ok(store)
}

/// The verifier that decides whether a TLS client certificate chains to `ca`, is not revoked and
/// allows client authentication (WS-Security signers: [`signer_trust`]).
pub fn client_verifier(
    ca: &Path,
    crls: &[PathBuf],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .with_crls(load_crls(crls)?)
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// The trust decision for WS-Security signing certificates: the CAs of `ca` and the CRLs, as for
/// TLS clients, but without requiring an extended key usage (`soap::wssec::SignerTrust`).
pub fn signer_trust(
    ca: &Path,
    crls: &[PathBuf],
) -> Result<Arc<crate::soap::wssec::SignerTrust>, TlsError> {
    crate::soap::wssec::SignerTrust::new(&load_certs(ca)?, &load_crls(crls)?)
        .map(Arc::new)
        .map_err(|e| file_err(ca, e))
}

/// The service listener's configuration: TLS 1.2 and 1.3, client certificate required and
/// verified against `client_ca` (and CRLs), HTTP/1.1.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crls: &[PathBuf],
) -> Result<ServerConfig, TlsError> {
    let verifier = client_verifier(client_ca, crls)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client configuration for calling other 2W-be-S endpoints (and for tests): trusts `ca`,
/// presents `cert`/`key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))
}

/// The OIN of the peer's end-entity certificate, if any.
pub fn peer_oin(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    crate::certs::oin_of(leaf.as_ref()).ok().flatten()
}
