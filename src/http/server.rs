//! The service listener: accept, TLS handshake (with a timeout and a connection limit), HTTP/1.1,
//! routing, body limits, and one log line per SOAP request.

use super::tls::peer_oin;
use super::wsdl::Documents;
use crate::soap::{
    self, fault::SoapError, Answer, Endpoint, Inbound, Request as SoapRequest, Role,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Limits of the listener, from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Headers must arrive within this.
    pub header_read_timeout: Duration,
    /// The body must arrive within this.
    pub body_read_timeout: Duration,
    /// The TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// On shutdown: how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

/// Everything a connection needs, shared.
pub struct State {
    /// The SOAP endpoint.
    pub endpoint: Endpoint,
    /// WSDL and XSDs.
    pub documents: Documents,
    /// The listener's limits.
    pub limits: Limits,
    /// The path the endpoint is served at.
    pub path: String,
    /// Request metrics, read by the ops listener.
    pub metrics: Arc<crate::ops::metrics::Metrics>,
    /// IB role: IBVerwijsindex, served beside GSDDossierReintegratie on the same listener.
    pub verwijsindex: Option<Mount>,
    /// Threads for signing and verification (one per core).
    /// `None`: verify and sign on the async workers (`server.crypto_threads = 0`).
    pub crypto: Option<super::workers::CryptoPool>,
}

/// A further endpoint on the listener.
pub struct Mount {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its WSDL and XSDs.
    pub documents: Documents,
    /// Its path.
    pub path: String,
}

impl State {
    fn mount(&self, verwijsindex: bool) -> (&Endpoint, &Documents) {
        match (&self.verwijsindex, verwijsindex) {
            (Some(m), true) => (&m.endpoint, &m.documents),
            _ => (&self.endpoint, &self.documents),
        }
    }
}

/// Serves until `shutdown` completes. Takes a bound listener so tests can use port 0.
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(state.limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting, so excess connections queue in the kernel backlog
        // instead of being accepted and starved.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(tcp, peer, acceptor, state, watcher).await;
        });
    }
    // Stop accepting (the listener is dropped here), let in-flight requests finish within the
    // grace period; idle keep-alive connections are closed at once.
    drop(listener);
    let grace = state.limits.shutdown_grace;
    tracing::info!(
        connections = graceful.count(),
        "shutting down: finishing in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
    Ok(())
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(state.limits.handshake_timeout, acceptor.accept(tcp)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let oin: Option<Arc<str>> = peer_oin(tls.get_ref().1.peer_certificates()).map(Arc::from);
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = svc_state.clone();
        let oin = oin.clone();
        async move { Ok::<_, std::convert::Infallible>(route(state, oin, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    if let Err(e) = watcher
        .watch(builder.serve_connection(TokioIo::new(tls), service))
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn xml(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

async fn route(
    state: Arc<State>,
    oin: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if let (Some(m), true, &hyper::Method::GET) = (
        &state.verwijsindex,
        path.starts_with("/portal/"),
        req.method(),
    ) {
        if let Role::IbVerwijsindex(ib) = &m.endpoint.role {
            return crate::ops::portal::serve(
                &ib.store,
                &ib.settings,
                path,
                crate::ops::portal::Caller::Tls(oin.as_deref()),
            );
        }
    }
    let vi = match &state.verwijsindex {
        _ if path == state.path => false,
        Some(m) if path == m.path => true,
        other => {
            let mut paths = state.path.clone();
            if let Some(m) = other {
                paths.push_str(" and ");
                paths.push_str(&m.path);
            }
            return text(
                StatusCode::NOT_FOUND,
                &format!("not found: the endpoints are at {paths}\n"),
            );
        }
    };
    match *req.method() {
        hyper::Method::GET => documents(state.mount(vi).1, req.uri().query()),
        hyper::Method::POST => soap_post(state, vi, oin, req).await,
        _ => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST for SOAP requests, GET ?wsdl for the WSDL\n",
            );
            r.headers_mut().insert(
                "allow",
                hyper::header::HeaderValue::from_static("GET, POST"),
            );
            r
        }
    }
}

fn documents(docs: &Documents, query: Option<&str>) -> Response<Full<Bytes>> {
    match query {
        Some(q) if q.eq_ignore_ascii_case("wsdl") => xml(200, docs.wsdl.clone()),
        Some(q) if q.starts_with("xsd=") => match docs.xsd(&q[4..]) {
            Some(d) => xml(200, d.to_owned()),
            None => text(StatusCode::NOT_FOUND, "unknown schema\n"),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "GET ?wsdl for the WSDL; SOAP requests use POST\n",
        ),
    }
}

/// A request's parts, owned so they can move to another thread.
struct OwnedInbound {
    body: Bytes,
    // Header values share the connection's read buffer: kept as they are, not copied.
    content_type: Option<hyper::header::HeaderValue>,
    soap_action: Option<hyper::header::HeaderValue>,
    tls_oin: Option<Arc<str>>,
}

impl OwnedInbound {
    fn get(&self) -> Inbound<'_> {
        Inbound {
            body: &self.body,
            content_type: header_text(self.content_type.as_ref()),
            soap_action: header_text(self.soap_action.as_ref()),
            tls_oin: self.tls_oin.as_deref(),
        }
    }
}

/// A header's value as text; `None` for values that are not visible ASCII.
fn header_text(v: Option<&hyper::header::HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

/// Runs SOAP work for an endpoint. Signing and verifying are pure CPU (an RSA operation each): with
/// security on and `server.crypto_threads` > 0 they run on the crypto worker set (`workers`),
/// where they cannot hold up other connections' I/O; by default on the calling async worker,
/// which saves two thread hand-overs per request. A panic comes back as `Err`.
async fn cpu<T: Send + 'static>(
    state: &Arc<State>,
    vi: bool,
    f: impl FnOnce(&Endpoint) -> T + Send + 'static,
) -> Result<T, ()> {
    let st = state.clone();
    let job = move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(st.mount(vi).0))).map_err(|_| ())
    };
    let ep = state.mount(vi).0;
    match &state.crypto {
        Some(pool) if ep.security.is_some() => pool.run(job).await.unwrap_or(Err(())),
        // A large change set holds the store until its commit (seconds, for a big import), and
        // on PostgreSQL every lookup is a round trip: the lookup must not wait on an async
        // worker, where it would stall every connection.
        _ if ep.service.store.reads_may_wait() => {
            tokio::task::spawn_blocking(job).await.unwrap_or(Err(()))
        }
        _ => job(),
    }
}

/// The frames of a request body as they arrive, kept outside the read so a body cut off by the
/// limit or the read timeout still shows its first bytes.
#[derive(Default)]
struct BodyRead {
    frames: Vec<Bytes>,
    len: usize,
}

impl BodyRead {
    /// The bytes read so far.
    fn prefix(&self) -> Vec<u8> {
        self.frames.concat()
    }

    /// The whole body; one frame (the common case) is handed on without a copy.
    fn into_bytes(mut self) -> Bytes {
        match self.frames.len() {
            0 => Bytes::new(),
            1 => self.frames.pop().unwrap_or_default(),
            _ => Bytes::from(self.frames.concat()),
        }
    }
}

/// Why a request body was not read in full.
enum BodyFailure {
    /// More than the limit arrived (what fits is kept).
    TooLarge,
    /// The connection failed.
    Read(hyper::Error),
}

async fn read_body(
    mut body: Incoming,
    limit: usize,
    read: &mut BodyRead,
) -> Result<(), BodyFailure> {
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyFailure::Read)?.into_data() else {
            continue;
        };
        if read.len + data.len() > limit {
            let room = limit - read.len;
            read.frames.push(data.slice(..room));
            read.len = limit;
            return Err(BodyFailure::TooLarge);
        }
        read.len += data.len();
        read.frames.push(data);
    }
    Ok(())
}

async fn soap_post(
    state: Arc<State>,
    vi: bool,
    oin: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let ep = state.mount(vi).0;
    let content_type = req.headers().get(hyper::header::CONTENT_TYPE).cloned();
    let soap_action = req.headers().get("soapaction").cloned();
    let limit = state.limits.max_body_bytes;
    let declared = header_text(req.headers().get(hyper::header::CONTENT_LENGTH))
        .and_then(|v| v.parse::<u64>().ok());
    let out = if declared.is_some_and(|n| n > limit as u64) {
        // Refuse before reading: the client learns at once, and we read nothing.
        let mut r = soap::reject(ep, &SoapError::TooLarge(limit));
        r.from_oin = None;
        r
    } else {
        let mut read = BodyRead::default();
        let reading = read_body(req.into_body(), limit, &mut read);
        let outcome = tokio::time::timeout(state.limits.body_read_timeout, reading).await;
        match outcome {
            // What did arrive may still say whom to address the fault to.
            Err(_) => soap::reject_read(
                ep,
                &SoapError::BodyTimeout(state.limits.body_read_timeout.as_secs()),
                &read.prefix(),
            ),
            Ok(Err(BodyFailure::TooLarge)) => {
                soap::reject_read(ep, &SoapError::TooLarge(limit), &read.prefix())
            }
            Ok(Err(BodyFailure::Read(e))) => {
                tracing::info!(error = %e, "request body could not be read");
                soap::reject(
                    ep,
                    &SoapError::InvalidEnvelope("the request body could not be read".into()),
                )
            }
            Ok(Ok(())) => {
                let owned = OwnedInbound {
                    body: read.into_bytes(),
                    content_type,
                    soap_action,
                    tls_oin: oin.clone(),
                };
                let internal = || {
                    soap::reject(
                        ep,
                        &SoapError::Internal("panic while handling a request".into()),
                    )
                };
                match &ep.role {
                    Role::IbRouter(ib) => {
                        match cpu(&state, vi, move |ep| soap::accept(ep, owned.get())).await {
                            Err(()) => internal(),
                            Ok(Err(refused)) => *refused,
                            Ok(Ok(acc)) => {
                                let reply = match &acc.request {
                                    SoapRequest::Gsd(bsn) => {
                                        let q = crate::service::ib::Question {
                                            from_address: acc
                                                .from_address()
                                                .unwrap_or_default()
                                                .to_owned(),
                                            message_id: acc
                                                .message_id()
                                                .unwrap_or_default()
                                                .to_owned(),
                                            asking_oin: acc
                                                .from_oin()
                                                .unwrap_or(&acc.tls_oin)
                                                .to_owned(),
                                        };
                                        ib.reintegratie_info(bsn, &q).await
                                    }
                                    SoapRequest::Verwijsindex(_) => {
                                        return xml(500, internal().body);
                                    }
                                };
                                cpu(&state, vi, move |ep| {
                                    soap::respond(ep, acc, Answer::Gsd(reply))
                                })
                                .await
                                .unwrap_or_else(|()| internal())
                            }
                        }
                    }
                    _ => cpu(&state, vi, move |ep| soap::handle(ep, owned.get()))
                        .await
                        .unwrap_or_else(|()| internal()),
                }
            }
        }
    };
    let code = match &out.outcome {
        soap::Outcome::Fault(c) => *c,
        _ => "",
    };
    tracing::info!(
        operation = ep.operation(),
        oin = oin.as_deref().unwrap_or("-"),
        from_oin = out.from_oin.as_deref().unwrap_or("-"),
        message_id = out.message_id.as_deref().unwrap_or("-"),
        bsn = out.bsn.map(|b| b.masked()).as_deref().unwrap_or("-"),
        outcome = out.outcome.label(),
        code,
        status = out.status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    let elapsed = started.elapsed().as_secs_f64();
    state.metrics.record(
        ep.operation(),
        out.outcome.label(),
        (!code.is_empty()).then_some(code),
        oin.as_deref().unwrap_or("-"),
        elapsed,
    );
    state.metrics.ignored_headers(&out.ignored_headers);
    let audit = crate::store::AuditRecord {
        at: time::OffsetDateTime::now_utc().unix_timestamp(),
        operation: ep.operation().into(),
        tls_oin: oin.as_deref().map(str::to_owned),
        from_oin: out.from_oin.clone(),
        message_id: out.message_id.clone(),
        bsn: out.bsn,
        outcome: out.outcome.label().into(),
        code: (!code.is_empty()).then(|| code.to_owned()),
    };
    queue_audit(&state, &ep.service.store, audit);
    let close = matches!(
        out.outcome,
        soap::Outcome::Fault("0013") | soap::Outcome::Fault("0014")
    );
    let mut resp = xml(out.status, out.body);
    if close {
        // The rest of an oversized or stalled body is not read; the connection cannot be reused.
        resp.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// Hands the audit record to the store's writer; the answer never waits for the audit trail.
fn queue_audit(state: &State, store: &crate::store::Store, audit: crate::store::AuditRecord) {
    if !store.queue_audit(audit) {
        let n = state.metrics.audit_dropped();
        // Once per thousand, so an overload does not also flood the log.
        if n % 1000 == 1 {
            tracing::error!(
                dropped = n,
                "audit queue full: audit records are being dropped"
            );
        }
    }
}
