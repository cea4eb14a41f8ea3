//! A minimal HTTPS client over mutual TLS. The free functions open one connection per request
//! (the CLI, the tests: behaviour obvious in a test failure); a [`Pool`] keeps connections open
//! between requests for the callers that repeat them (the IB's routing, the push).

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
    request_limited(
        tls,
        Call {
            method,
            url,
            headers,
            body,
            timeout,
            limit: MAX_RESPONSE_BYTES,
        },
        None,
    )
    .await
}

/// One request to make.
struct Call<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: Vec<u8>,
    timeout: Duration,
    /// The largest answer read.
    limit: usize,
}

impl<'a> Call<'a> {
    fn soap(url: &'a str, envelope: &str, timeout: Duration) -> Call<'a> {
        Call {
            method: "POST",
            url,
            headers: &SOAP_HEADERS,
            body: envelope.as_bytes().to_vec(),
            timeout,
            limit: MAX_SOAP_RESPONSE_BYTES,
        }
    }
}

async fn request_limited(
    tls: Arc<ClientConfig>,
    call: Call<'_>,
    pool: Option<&Pool>,
) -> Result<Response, ClientError> {
    let timeout = call.timeout;
    tokio::time::timeout(timeout, request_inner(tls, call, pool))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// How long a connection may wait in a [`Pool`] for its next request: below common server
/// keep-alive limits (dkd's own `server.header_read_timeout_secs` is 10 s, Apache's default 5 s),
/// so a reused connection is seldom one the server is closing at that moment.
pub const POOL_IDLE: Duration = Duration::from_secs(4);
/// Idle connections kept per destination.
const POOL_PER_DESTINATION: usize = 8;

struct Idle {
    sender: Sender,
    since: std::time::Instant,
    /// Keeps the configuration alive, so its address (part of the key) stays its own.
    _tls: Arc<ClientConfig>,
}

/// Open connections kept between requests to the same destination with the same TLS
/// configuration (HTTP/1.1 keep-alive). The IB role asks the same few gemeenten and the push
/// calls one IB again and again; a mutual-TLS handshake per call cost more than the call. Cheap
/// to clone (shared). Requests that were never written to a pooled connection (it closed
/// meanwhile) go out on another; a request that was written is never sent twice.
#[derive(Clone, Default)]
pub struct Pool {
    idle: Arc<std::sync::Mutex<IdleMap>>,
}

/// Idle connections by (TLS configuration's address, scheme://host:port).
type IdleMap = std::collections::HashMap<(usize, String), Vec<Idle>>;

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn checkout(&self, key: &(usize, String)) -> Option<Sender> {
        let mut map = self.lock();
        let idle = map.get_mut(key)?;
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < POOL_IDLE && i.sender.is_ready() {
                return Some(i.sender);
            }
        }
        None
    }

    /// Takes the connection back once it is ready for the next request (hyper marks it so
    /// after the answer has been read); a connection that closes instead is dropped.
    fn checkin(&self, key: (usize, String), mut sender: Sender, tls: Arc<ClientConfig>) {
        let pool = self.clone();
        tokio::spawn(async move {
            let ready = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                return;
            }
            let mut map = pool.lock();
            let idle = map.entry(key).or_default();
            idle.retain(|i| i.since.elapsed() < POOL_IDLE && !i.sender.is_closed());
            if idle.len() < POOL_PER_DESTINATION {
                idle.push(Idle {
                    sender,
                    since: std::time::Instant::now(),
                    _tls: tls,
                });
            }
        });
    }

    /// Idle connections held now (for tests and diagnostics).
    pub fn idle(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// [`post_soap`] over a kept-alive connection when one is free.
    pub async fn post_soap(
        &self,
        tls: Arc<ClientConfig>,
        url: &str,
        envelope: &str,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        request_limited(tls, Call::soap(url, envelope, timeout), Some(self)).await
    }
}

const SOAP_HEADERS: [(&str, &str); 2] = [
    ("content-type", "text/xml; charset=utf-8"),
    ("soapaction", "\"\""),
];

async fn request_inner(
    tls: Arc<ClientConfig>,
    call: Call<'_>,
    pool: Option<&Pool>,
) -> Result<Response, ClientError> {
    let Call {
        method,
        url,
        headers,
        body,
        limit,
        ..
    } = call;
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
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path.as_str())
        .header("host", addr.as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let key = (
        Arc::as_ptr(&tls) as usize,
        format!("{}://{addr}", if secure { "https" } else { "http" }),
    );
    if let Some(pool) = pool {
        while let Some(mut sender) = pool.checkout(&key) {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let r = read(resp, limit).await;
                    if r.is_ok() {
                        pool.checkin(key, sender, tls);
                    }
                    return r;
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection had closed. Another one is safe.
                    Some(unsent) => req = unsent,
                    None => return Err(ClientError::Http(e.into_error().to_string())),
                },
            }
        }
    }
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let (mut sender, driver) = if secure {
        let server_name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|_| ClientError::Url(url.into()))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|source| ClientError::Tls {
                addr: addr.clone(),
                source,
            })?;
        handshake(stream).await?
    } else {
        handshake(tcp).await?
    };
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let r = read(resp, limit).await;
    match pool {
        Some(pool) if r.is_ok() => pool.checkin(key, sender, tls),
        // The connection ends here; its task with it.
        _ => driver.abort(),
    }
    r
}

async fn handshake<IO>(io: IO) -> Result<(Sender, tokio::task::JoinHandle<()>), ClientError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, driver))
}

async fn read(
    resp: hyper::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Response, ClientError> {
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
    request_limited(tls, Call::soap(url, envelope, timeout), None).await
}

/// A client error in the words the FWI uses (the IB naming a gemeente it could not ask, the
/// push saying why an update waits).
pub fn describe_client_error(e: &ClientError) -> String {
    match e {
        ClientError::Url(u) => format!("ongeldige URL {u}"),
        ClientError::Connect { addr, source } => format!("niet bereikbaar ({addr}: {source})"),
        ClientError::Tls { addr, source } => format!("TLS met {addr} mislukt: {source}"),
        ClientError::Http(m) => format!("HTTP-fout: {m}"),
        ClientError::Timeout(d) => format!("geen antwoord binnen {} s", d.as_secs_f64()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let tls = plain_tls();
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

    /// A plain-HTTP server on loopback answering "ok", counting the connections it accepts;
    /// `idle`: how long it keeps an idle connection open.
    async fn counting_server(
        keep_alive: bool,
        idle: Duration,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/x", l.local_addr().expect("addr"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.keep_alive(keep_alive)
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(idle);
                    let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        (url, accepted)
    }

    /// A client configuration trusting nobody: for plain-HTTP loopback peers in tests.
    pub(crate) fn plain_tls() -> Arc<ClientConfig> {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(crate::http::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    }

    async fn get(pool: &Pool, tls: &Arc<ClientConfig>, url: &str) -> Response {
        pool.post_soap(tls.clone(), url, "<x/>", Duration::from_secs(5))
            .await
            .expect("answered")
    }

    async fn settle(pool: &Pool, idle: usize) {
        for _ in 0..100 {
            if pool.idle() == idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "pool holds {} idle connections, expected {idle}",
            pool.idle()
        );
    }

    #[tokio::test]
    async fn a_pool_reuses_one_connection_for_requests_in_a_row() {
        let (url, accepted) = counting_server(true, Duration::from_secs(10)).await;
        let (pool, tls) = (Pool::default(), plain_tls());
        for _ in 0..3 {
            assert_eq!(get(&pool, &tls, &url).await.text(), "ok");
            settle(&pool, 1).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Without a pool: a connection per request, none kept.
        request(tls, "GET", &url, &[], Vec::new(), Duration::from_secs(5))
            .await
            .expect("answered");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_the_server_closes_are_not_reused_and_nothing_fails() {
        // "Connection: close" on every answer: nothing is kept.
        let (url, accepted) = counting_server(false, Duration::from_secs(10)).await;
        let (pool, tls) = (Pool::default(), plain_tls());
        for _ in 0..3 {
            assert_eq!(get(&pool, &tls, &url).await.text(), "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(pool.idle(), 0);
        // The server drops idle connections after 100 ms: the next request opens another.
        let (url, accepted) = counting_server(true, Duration::from_millis(100)).await;
        assert_eq!(get(&pool, &tls, &url).await.text(), "ok");
        settle(&pool, 1).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(&pool, &tls, &url).await.text(), "ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
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
