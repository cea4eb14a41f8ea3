//! The TLS side of `dkd check`: client configurations narrowed to one protocol version, one
//! cipher suite or no client certificate, and a hand-written legacy ClientHello.

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The suite the Digikoppeling TLS profile requires every endpoint to offer.
pub const REQUIRED_SUITE: rustls::CipherSuite =
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256;

/// What a client configuration is narrowed to.
pub struct Narrow<'a> {
    /// Protocol versions offered.
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    /// Only this cipher suite, when set.
    pub suite: Option<rustls::CipherSuite>,
    /// Present the client certificate.
    pub client_auth: bool,
}

/// A client configuration trusting `roots`, narrowed as asked.
pub fn client_config(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    n: &Narrow<'_>,
) -> Result<Arc<ClientConfig>, String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(s) = n.suite {
        provider.cipher_suites.retain(|c| c.suite() == s);
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(n.versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone());
    let mut cfg = if n.client_auth {
        builder
            .with_client_auth_cert(chain.to_vec(), key.clone_key())
            .map_err(|e| e.to_string())?
    } else {
        builder.with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What a server did with a TLS 1.0 or 1.1 ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Legacy {
    /// It answered with an alert, closed or reset the connection, or answered another version.
    Refused(String),
    /// It answered with a ServerHello for the offered version.
    Accepted,
}

/// Offers only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1) and reports whether the server went
/// along. rustls cannot speak these versions at all, so the ClientHello is written by hand: a
/// server that accepts answers with a ServerHello naming the version, which is all this needs to
/// see; the handshake is never continued.
pub async fn legacy_hello(
    host: &str,
    port: u16,
    version: u16,
    timeout: Duration,
) -> Result<Legacy, String> {
    let run = async {
        let mut tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect: {}", crate::http::inspect::io_text(&e)))?;
        tcp.write_all(&client_hello(version, host))
            .await
            .map_err(|e| format!("cannot send the ClientHello: {e}"))?;
        let mut head = [0u8; 11];
        let mut got = 0;
        while got < head.len() {
            match tcp.read(&mut head[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        Ok(judge_legacy(&head[..got], version))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        // Silence is no acceptance: the server never agreed to the version.
        Err(_) => Ok(Legacy::Refused("no answer to the ClientHello".into())),
    }
}

/// Reads the first bytes of the server's answer: a TLS record header (type, version, length) and,
/// for a handshake record, the message type, its length and the ServerHello's version.
fn judge_legacy(b: &[u8], version: u16) -> Legacy {
    match b {
        [] => Legacy::Refused("the server closed the connection".into()),
        [0x15, ..] => Legacy::Refused(match b.get(6) {
            Some(d) => format!("alert {}", alert_name(*d)),
            None => "an alert".into(),
        }),
        [0x16, _, _, _, _, 0x02, _, _, _, hi, lo] => {
            let v = u16::from_be_bytes([*hi, *lo]);
            if v == version {
                Legacy::Accepted
            } else {
                Legacy::Refused(format!("a ServerHello for version {v:#06x}"))
            }
        }
        _ => Legacy::Refused("an answer that is not a ServerHello".into()),
    }
}

fn alert_name(d: u8) -> String {
    match d {
        40 => "handshake_failure".into(),
        47 => "illegal_parameter".into(),
        50 => "decode_error".into(),
        70 => "protocol_version".into(),
        71 => "insufficient_security".into(),
        80 => "internal_error".into(),
        d => format!("{d}"),
    }
}

/// A minimal ClientHello for TLS 1.0/1.1: the suites such servers commonly take (ECDHE-RSA and
/// RSA with AES-CBC-SHA, 3DES), the curves they need, and the server name.
fn client_hello(version: u16, host: &str) -> Vec<u8> {
    let [vh, vl] = version.to_be_bytes();
    let mut body = vec![vh, vl];
    // The random: fixed bytes are fine, the handshake never gets past the ServerHello.
    body.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    body.push(0); // no session id
    let suites: [u16; 6] = [0xc013, 0xc014, 0x002f, 0x0035, 0x000a, 0x00ff];
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null only
    let mut ext = Vec::new();
    // supported_groups: x25519, secp256r1, secp384r1
    ext.extend([
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
    ]);
    // ec_point_formats: uncompressed
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    let is_name = !host.is_empty() && host.parse::<std::net::IpAddr>().is_err() && host.len() < 256;
    if is_name {
        let n = host.len() as u16;
        ext.extend([0x00, 0x00]);
        ext.extend((n + 5).to_be_bytes());
        ext.extend((n + 3).to_be_bytes());
        ext.push(0);
        ext.extend(n.to_be_bytes());
        ext.extend(host.as_bytes());
    }
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    // The record layer says TLS 1.0, as clients of that time did.
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_answers_are_judged_by_their_first_bytes() {
        assert_eq!(
            judge_legacy(&[0x15, 3, 1, 0, 2, 2, 70], 0x0301),
            Legacy::Refused("alert protocol_version".into())
        );
        assert_eq!(
            judge_legacy(&[0x16, 3, 1, 0, 80, 2, 0, 0, 76, 3, 1], 0x0301),
            Legacy::Accepted
        );
        assert!(matches!(
            judge_legacy(&[0x16, 3, 3, 0, 80, 2, 0, 0, 76, 3, 3], 0x0302),
            Legacy::Refused(_)
        ));
        assert!(matches!(judge_legacy(&[], 0x0301), Legacy::Refused(_)));
        let h = client_hello(0x0302, "localhost");
        assert_eq!(&h[..3], &[0x16, 3, 1]);
        assert_eq!(u16::from_be_bytes([h[3], h[4]]) as usize, h.len() - 5);
        assert_eq!(&h[9..11], &[3, 2]);
    }
}
