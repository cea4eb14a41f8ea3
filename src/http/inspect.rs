//! One HTTPS exchange over mutual TLS that also reports what the TLS session was (the server's
//! certificate, the protocol version and suite) and how far it got before a failure: what
//! `dkd probe` and `dkd check` judge, and what [`super::client`] hides.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// How far an exchange got (for timeout messages) and what the TLS session showed.
#[derive(Default)]
pub struct Progress {
    /// The last stage reached.
    pub stage: Stage,
    /// The server's end-entity certificate (DER), once the handshake completed.
    pub peer_leaf: Option<Vec<u8>>,
    /// The negotiated protocol version.
    pub version: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite.
    pub suite: Option<rustls::CipherSuite>,
}

/// A stage of the exchange.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect.
    #[default]
    Connect,
    /// TLS handshake.
    Handshake,
    /// Request sent, response awaited.
    Response,
}

impl Stage {
    /// `connecting to host:port`, ...
    pub fn describe(self, addr: &str) -> String {
        match self {
            Stage::Connect => format!("connecting to {addr}"),
            Stage::Handshake => format!("TLS handshake with {addr}"),
            Stage::Response => "waiting for the response".into(),
        }
    }
}

/// A response that arrived.
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// One request to send.
pub struct Exchange<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// Host name or address.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: &'a str,
    /// Extra request headers (`content-type`, `soapaction`, `user-agent`).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: Vec<u8>,
    /// The largest answer read.
    pub limit: usize,
}

/// Why an exchange failed: `stage` says where, `text` says why in words.
#[derive(Debug, Clone)]
pub struct ExchangeError {
    /// Where it failed.
    pub stage: Stage,
    /// Why.
    pub text: String,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An I/O error's text without the ` (os error N)` suffix: `Connection refused`.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_owned(),
        _ => s,
    }
}

/// An error with its causes: `connection error: received fatal alert: CertificateRequired`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// TLS 1.3: the server checks our certificate after the client's handshake is done, so its
/// refusal arrives as an alert instead of the response.
pub fn refused_our_certificate(why: &str) -> bool {
    [
        "UnknownCA",
        "CertificateRequired",
        "BadCertificate",
        "CertificateExpired",
        "CertificateRevoked",
        "UnsupportedCertificate",
        "AccessDenied",
        "HandshakeFailure",
    ]
    .iter()
    .any(|a| why.contains(&format!("received fatal alert: {a}")))
}

/// Connects and completes the TLS handshake, recording the session in `progress`.
pub async fn connect(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    progress: &mut Progress,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ExchangeError> {
    let addr = authority(host, port);
    progress.stage = Stage::Connect;
    let err = |stage, text| ExchangeError { stage, text };
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| {
            err(
                Stage::Connect,
                format!("cannot connect to {addr}: {}", io_text(&e)),
            )
        })?;
    progress.stage = Stage::Handshake;
    let server_name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
        err(
            Stage::Handshake,
            format!("{host:?} is not a valid server name"),
        )
    })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            err(
                Stage::Handshake,
                format!("TLS handshake with {addr} failed: {}", io_text(&e)),
            )
        })?;
    let session = stream.get_ref().1;
    progress.peer_leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    progress.version = session.protocol_version();
    progress.suite = session.negotiated_cipher_suite().map(|s| s.suite());
    Ok(stream)
}

/// Connects, sends one request and reads the answer (at most `x.limit` bytes). What was learnt
/// before a failure stays in `progress`.
pub async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    x: Exchange<'_>,
    progress: &mut Progress,
) -> Result<HttpAnswer, ExchangeError> {
    let addr = authority(x.host, x.port);
    let stream = connect(tls, x.host, x.port, progress).await?;
    progress.stage = Stage::Response;
    let err = |text| ExchangeError {
        stage: Stage::Response,
        text,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(format!("HTTP with {addr} failed: {}", chain(&e))))?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(x.method)
        .uri(x.path)
        .header("host", &addr);
    for (k, v) in x.headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(x.body)))
        .map_err(|e| err(format!("cannot build the request: {e}")))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| {
            let why = chain(&e);
            err(format!(
                "no HTTP response from {addr}: {why}{}",
                if refused_our_certificate(&why) {
                    " (the server refused our client certificate)"
                } else {
                    ""
                }
            ))
        })?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(resp.into_body(), x.limit)
            .collect()
            .await
            .map_err(|e| {
                err(format!(
                    "reading the response from {addr} failed: {}",
                    chain(&*e)
                ))
            })?
            .to_bytes()
            .to_vec();
        Ok(HttpAnswer {
            status,
            content_type,
            body,
        })
    }
    .await;
    driver.abort();
    result
}
