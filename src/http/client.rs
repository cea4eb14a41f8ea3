//! A minimal HTTPS client over mutual TLS: one request per connection. Used to call other
//! endpoints and by the tests; deliberately small so its behaviour is obvious in a test failure.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// The largest answer read (a portal report is a few MB at most).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// The largest SOAP answer read: a ClientSuwi is a few KB, and the IB role forwards one question
/// to several gemeenten at once.
pub const MAX_SOAP_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A response: status, selected headers and the body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a call failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `https://host:port/path`.
    #[error("bad URL {0}")]
    Url(String),
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// host:port
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate refused, no common suite, ...).
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// host:port
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// HTTP-level failure.
    #[error("HTTP: {0}")]
    Http(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Splits `https://host:port/path?query` into (host, port, path-and-query).
pub fn split_url(url: &str) -> Result<(String, u16, String), ClientError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| ClientError::Url(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, p) = stripped
            .split_once(']')
            .ok_or_else(|| ClientError::Url(url.into()))?;
        (h.to_owned(), p.strip_prefix(':').unwrap_or("443"))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (authority.to_owned(), "443"),
        }
    };
    let port: u16 = port.parse().map_err(|_| ClientError::Url(url.into()))?;
    Ok((host, port, path.to_owned()))
}

/// Sends one request with the given method, headers and body.
pub async fn request(
    tls: Arc<ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    request_limited(tls, method, url, headers, body, timeout, MAX_RESPONSE_BYTES).await
}

async fn request_limited(
    tls: Arc<ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
    limit: usize,
) -> Result<Response, ClientError> {
    tokio::time::timeout(
        timeout,
        request_inner(tls, method, url, headers, body, limit),
    )
    .await
    .map_err(|_| ClientError::Timeout(timeout))?
}

async fn request_inner(
    tls: Arc<ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    limit: usize,
) -> Result<Response, ClientError> {
    // Plain HTTP only for loopback helpers (the IB portal on an ops listener); everything on the
    // network is https.
    let (host, port, path, secure) = match url.strip_prefix("http://") {
        Some(rest) => {
            let (h, p, path) = split_url(&format!("https://{rest}"))?;
            let p = if rest.split('/').next().is_some_and(|a| a.contains(':')) {
                p
            } else {
                80
            };
            (h, p, path, false)
        }
        None => {
            let (h, p, path) = split_url(url)?;
            (h, p, path, true)
        }
    };
    let addr = format!("{host}:{port}");
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    if !secure {
        return send(tcp, method, &path, &addr, headers, body, limit).await;
    }
    let server_name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|_| ClientError::Url(url.into()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|source| ClientError::Tls {
            addr: addr.clone(),
            source,
        })?;
    send(stream, method, &path, &addr, headers, body, limit).await
}

async fn send<IO>(
    io: IO,
    method: &str,
    path: &str,
    addr: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    limit: usize,
) -> Result<Response, ClientError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Another party's answer is input: bounded like requests are.
    let body = Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ClientError::Http(format!("the answer is larger than {limit} bytes"))
            } else {
                ClientError::Http(e.to_string())
            }
        })?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// POSTs a SOAP 1.1 envelope with `SOAPAction: ""`.
pub async fn post_soap(
    tls: Arc<ClientConfig>,
    url: &str,
    envelope: &str,
    timeout: Duration,
) -> Result<Response, ClientError> {
    request_limited(
        tls,
        "POST",
        url,
        &[
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", "\"\""),
        ],
        envelope.as_bytes().to_vec(),
        timeout,
        MAX_SOAP_RESPONSE_BYTES,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_oversized_answer_is_an_error_not_a_memory_blow_up() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                MAX_RESPONSE_BYTES + 1
            );
            let _ = s.write_all(head.as_bytes()).await;
            // Bounded: one byte more than the limit, or until the client hangs up.
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..=(MAX_RESPONSE_BYTES >> 20) {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(crate::http::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let r = request(
            tls,
            "GET",
            &format!("http://{addr}/portal"),
            &[],
            Vec::new(),
            Duration::from_secs(10),
        )
        .await;
        match r {
            Err(ClientError::Http(m)) => assert!(m.contains("larger than"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn split_url_handles_ports_and_ipv6() {
        let (h, p, path) = split_url("https://127.0.0.1:8443/GSD?wsdl").expect("ok");
        assert_eq!(
            (h.as_str(), p, path.as_str()),
            ("127.0.0.1", 8443, "/GSD?wsdl")
        );
        let (h, p, _) = split_url("https://[::1]:9/x").expect("ok");
        assert_eq!((h.as_str(), p), ("::1", 9));
        assert_eq!(split_url("https://example.nl").expect("ok").1, 443);
        assert!(split_url("http://x").is_err());
    }
}
