//! Certificates: reading the OIN and validity from X.509, and generating the development PKI
//! (`dkd certs`, `serve --demo`, tests). Never used for production keys.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use std::path::{Path, PathBuf};

/// The test OIN of the demo server certificate.
pub const DEMO_SERVER_OIN: &str = "00000099000000000001";
/// The test OIN of the demo client certificate, on the demo allow-list.
pub const DEMO_CLIENT_OIN: &str = "00000099000000000002";
/// A test OIN deliberately NOT on the demo allow-list, to show the refusal.
pub const DEMO_UNLISTED_OIN: &str = "00000099000000000003";

/// OID of the X.520 `serialNumber` attribute, where Digikoppeling puts the OIN.
const OID_SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];

/// Errors while reading or making certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate could not be parsed.
    #[error("certificate cannot be parsed: {0}")]
    Parse(String),
}

/// The OIN in a certificate's subject `serialNumber`, if it holds 20 digits.
pub fn oin_of(der: &[u8]) -> Result<Option<String>, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(oin_in(&cert))
}

/// What a WS-Security signer check needs from a certificate, from one parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerFacts {
    /// The OIN in the subject, if any.
    pub oin: Option<String>,
    /// `notBefore` in unix seconds.
    pub not_before: i64,
    /// `notAfter` in unix seconds.
    pub not_after: i64,
    /// Whether the key may make signatures: no keyUsage extension, or one with digitalSignature
    /// or nonRepudiation (contentCommitment). The extended key usage does not matter: a message
    /// signer is neither a TLS client nor a TLS server.
    pub may_sign: bool,
}

/// The OIN, the validity period and the keyUsage verdict of a signing certificate, for callers
/// that cache a decision about the certificate for as long as it is valid.
pub fn signer_facts(der: &[u8]) -> Result<SignerFacts, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let v = cert.validity();
    let may_sign = match cert.key_usage() {
        Ok(None) => true,
        Ok(Some(ku)) => ku.value.digital_signature() || ku.value.non_repudiation(),
        Err(e) => return Err(CertError::Parse(format!("keyUsage: {e}"))),
    };
    Ok(SignerFacts {
        oin: oin_in(&cert),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        may_sign,
    })
}

fn oin_in(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    for attr in cert.subject().iter_attributes() {
        if attr
            .attr_type()
            .iter()
            .is_some_and(|it| it.eq(OID_SERIAL_NUMBER.iter().copied()))
        {
            if let Ok(s) = attr.as_str() {
                if s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) {
                    return Some(s.to_owned());
                }
            }
        }
    }
    None
}

/// Whole days until the certificate expires (negative when expired).
pub fn days_left(der: &[u8], now: time::OffsetDateTime) -> Result<i64, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let not_after = cert.validity().not_after.timestamp();
    Ok((not_after - now.unix_timestamp()).div_euclid(86_400))
}

/// Seconds until the certificate expires (negative when expired).
pub fn seconds_left(der: &[u8], now: time::OffsetDateTime) -> Result<i64, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::Parse(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp() - now.unix_timestamp())
}

/// A generated certificate with its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// A development CA that can issue server and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn rsa_key() -> Result<KeyPair, CertError> {
    // RSA keys: the chain's required suite ECDHE-RSA-AES128-GCM-SHA256 needs an RSA server key,
    // and WS-Security's RSA-SHA256 needs RSA signing keys.
    Ok(KeyPair::generate_rsa_for(
        &rcgen::PKCS_RSA_SHA256,
        rcgen::RsaKeySize::_2048,
    )?)
}

fn dn(cn: &str, oin: Option<&str>) -> Result<DistinguishedName, CertError> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "NL");
    dn.push(
        DnType::OrganizationName,
        "dkd development PKI (not for production)",
    );
    dn.push(DnType::CommonName, cn);
    if let Some(oin) = oin {
        let ps = rcgen::string::PrintableString::try_from(oin)?;
        dn.push(
            DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
            DnValue::PrintableString(ps),
        );
    }
    Ok(dn)
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl DevCa {
    /// A new self-signed CA.
    pub fn new(cn: &str) -> Result<DevCa, CertError> {
        let key = rsa_key()?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn, None)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// A CA made earlier (its certificate and key in PEM, as [`DevCa::issued`] gives them), to
    /// issue more certificates under it; `Err` when the key is not the certificate's.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<DevCa, CertError> {
        use rustls_pki_types::pem::PemObject;
        let key = KeyPair::from_pem(key_pem)?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertError::Parse(e.to_string()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CertError::Parse(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(DevCa {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// The CA certificate and key.
    pub fn issued(&self) -> Issued {
        Issued {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// A TLS server certificate for the given DNS names and IP addresses.
    pub fn server(
        &self,
        cn: &str,
        names: &[&str],
        oin: Option<&str>,
        days: i64,
    ) -> Result<Issued, CertError> {
        let key = rsa_key()?;
        let cert_pem = self.server_cert(&key, cn, names, oin, days)?;
        Ok(Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// A TLS server certificate like [`DevCa::server`] for an existing key (PEM): one CA
    /// signature, no key generation, so many parties can each get their own certificate (their
    /// own OIN) at once. The certificate in PEM.
    pub fn server_for_key(
        &self,
        key_pem: &str,
        cn: &str,
        names: &[&str],
        oin: Option<&str>,
        days: i64,
    ) -> Result<String, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        self.server_cert(&key, cn, names, oin, days)
    }

    fn server_cert(
        &self,
        key: &KeyPair,
        cn: &str,
        names: &[&str],
        oin: Option<&str>,
        days: i64,
    ) -> Result<String, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for n in names {
            params
                .subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*n).try_into()?),
                });
        }
        params.distinguished_name = dn(cn, oin)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        Ok(params.signed_by(key, &self.issuer)?.pem())
    }

    /// A TLS client (and message-signing) certificate carrying an OIN.
    pub fn client(&self, cn: &str, oin: Option<&str>, days: i64) -> Result<Issued, CertError> {
        let key = rsa_key()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn, oin)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The key usages of a development signing certificate ([`DevCa::signer`]), for tests of the
/// WS-Security signer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerUsage {
    /// keyUsage digitalSignature, EKU serverAuth only: a TLS server certificate.
    ServerAuthOnly,
    /// keyUsage digitalSignature, EKU clientAuth only.
    ClientAuthOnly,
    /// keyUsage digitalSignature, no EKU extension.
    NoExtendedKeyUsage,
    /// keyUsage nonRepudiation only, no EKU.
    NonRepudiationOnly,
    /// keyUsage keyEncipherment only (no digitalSignature, no nonRepudiation): may not sign.
    NoDigitalSignature,
}

impl DevCa {
    /// A CRL (PEM) revoking the certificates in `revoked` (PEM), valid for a day.
    pub fn crl_pem(&self, revoked: &[&str]) -> Result<String, CertError> {
        use rustls_pki_types::pem::PemObject;
        let now = time::OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::new();
        for pem in revoked {
            let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| CertError::Parse(e.to_string()))?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| CertError::Parse(e.to_string()))?;
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: cert.raw_serial().to_vec().into(),
                revocation_time: now - time::Duration::minutes(5),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(1),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// A certificate for signing messages, with the key usages of `usage`.
    pub fn signer(
        &self,
        cn: &str,
        oin: Option<&str>,
        days: i64,
        usage: SignerUsage,
    ) -> Result<Issued, CertError> {
        use ExtendedKeyUsagePurpose as Eku;
        use KeyUsagePurpose as Ku;
        let (key_usages, ekus) = match usage {
            SignerUsage::ServerAuthOnly => (vec![Ku::DigitalSignature], vec![Eku::ServerAuth]),
            SignerUsage::ClientAuthOnly => (vec![Ku::DigitalSignature], vec![Eku::ClientAuth]),
            SignerUsage::NoExtendedKeyUsage => (vec![Ku::DigitalSignature], vec![]),
            SignerUsage::NonRepudiationOnly => (vec![Ku::ContentCommitment], vec![]),
            SignerUsage::NoDigitalSignature => (vec![Ku::KeyEncipherment], vec![]),
        };
        let key = rsa_key()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn, oin)?;
        params.key_usages = key_usages;
        params.extended_key_usages = ekus;
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The files of the development PKI, relative to its directory.
pub mod files {
    /// CA certificate (the client CA bundle in demo mode, and the CA to trust in curl).
    pub const CA: &str = "ca.pem";
    /// CA key.
    pub const CA_KEY: &str = "ca-key.pem";
    /// Server certificate.
    pub const SERVER: &str = "server.pem";
    /// Server key.
    pub const SERVER_KEY: &str = "server-key.pem";
    /// Client certificate with an allowed OIN.
    pub const CLIENT: &str = "client.pem";
    /// Its key.
    pub const CLIENT_KEY: &str = "client-key.pem";
    /// Client certificate with an OIN that is not allowed.
    pub const UNLISTED: &str = "client-unlisted.pem";
    /// Its key.
    pub const UNLISTED_KEY: &str = "client-unlisted-key.pem";
}

/// Whether a complete development PKI exists in `dir`.
pub fn dev_pki_present(dir: &Path) -> bool {
    [
        files::CA,
        files::SERVER,
        files::SERVER_KEY,
        files::CLIENT,
        files::CLIENT_KEY,
    ]
    .iter()
    .all(|f| dir.join(f).is_file())
}

/// Generates (overwriting) the development PKI in `dir`.
pub fn generate_dev_pki(dir: &Path) -> Result<(), CertError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca = DevCa::new("dkd development CA")?;
    let server = ca.server(
        "localhost",
        &["localhost", "127.0.0.1", "::1"],
        Some(DEMO_SERVER_OIN),
        825,
    )?;
    let client = ca.client("dkd demo client", Some(DEMO_CLIENT_OIN), 825)?;
    let unlisted = ca.client(
        "dkd demo client (not allowed)",
        Some(DEMO_UNLISTED_OIN),
        825,
    )?;
    let ca_files = ca.issued();
    for (name, pem, secret) in [
        (files::CA, &ca_files.cert_pem, false),
        (files::CA_KEY, &ca_files.key_pem, true),
        (files::SERVER, &server.cert_pem, false),
        (files::SERVER_KEY, &server.key_pem, true),
        (files::CLIENT, &client.cert_pem, false),
        (files::CLIENT_KEY, &client.key_pem, true),
        (files::UNLISTED, &unlisted.cert_pem, false),
        (files::UNLISTED_KEY, &unlisted.key_pem, true),
    ] {
        write_file(&dir.join(name), pem, secret).map_err(io(&dir.join(name)))?;
    }
    Ok(())
}

/// Writes a file atomically (temp file + rename), private keys with mode 0600.
pub fn write_file(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn der(pem: &str) -> Vec<u8> {
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    #[test]
    fn oin_is_read_from_subject_serial_number() {
        let ca = DevCa::new("t").expect("ca");
        let c = ca.client("c", Some(DEMO_CLIENT_OIN), 10).expect("client");
        assert_eq!(
            oin_of(&der(&c.cert_pem)).expect("parse").as_deref(),
            Some(DEMO_CLIENT_OIN)
        );
        let none = ca.client("c", None, 10).expect("client");
        assert_eq!(oin_of(&der(&none.cert_pem)).expect("parse"), None);
        let d = days_left(&der(&c.cert_pem), time::OffsetDateTime::now_utc()).expect("days");
        assert!((9..=10).contains(&d), "{d}");
    }

    #[test]
    fn a_loaded_ca_issues_many_oins_for_one_key_and_refuses_a_key_not_its_own() {
        let made = DevCa::new("t").expect("ca");
        let shared = made
            .server("s", &["localhost"], Some(DEMO_SERVER_OIN), 10)
            .expect("server");
        let files = made.issued();
        let ca = DevCa::load(&files.cert_pem, &files.key_pem).expect("load");
        let ca_der = der(&files.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        let key = KeyPair::from_pem(&shared.key_pem).expect("key");
        for oin in ["00000099000000001001", "00000099000000001002"] {
            let pem = ca
                .server_for_key(&shared.key_pem, "g", &["127.0.0.1"], Some(oin), 10)
                .expect("issue");
            let d = der(&pem);
            assert_eq!(oin_of(&d).expect("parse").as_deref(), Some(oin));
            let (_, c) = x509_parser::parse_x509_certificate(&d).expect("cert");
            assert_eq!(c.issuer().as_raw(), ca_cert.subject().as_raw());
            assert_eq!(c.public_key().raw, key.subject_public_key_info().as_slice());
        }
        let e = DevCa::load(&files.cert_pem, &shared.key_pem)
            .err()
            .expect("another key");
        assert!(e.to_string().contains("does not belong"), "{e}");
    }

    #[test]
    fn a_signer_may_sign_with_digital_signature_or_non_repudiation_whatever_its_eku() {
        let ca = DevCa::new("t").expect("ca");
        for (usage, may_sign) in [
            (SignerUsage::ServerAuthOnly, true),
            (SignerUsage::ClientAuthOnly, true),
            (SignerUsage::NoExtendedKeyUsage, true),
            (SignerUsage::NonRepudiationOnly, true),
            (SignerUsage::NoDigitalSignature, false),
        ] {
            let c = ca
                .signer("s", Some(DEMO_CLIENT_OIN), 10, usage)
                .expect("signer");
            let f = signer_facts(&der(&c.cert_pem)).expect("parse");
            assert_eq!(f.may_sign, may_sign, "{usage:?}");
            assert_eq!(f.oin.as_deref(), Some(DEMO_CLIENT_OIN));
        }
    }
}
