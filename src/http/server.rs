//! The service listener: `serve`'s accept loop with the service's TLS, connection budget and
//! shutdown grace; routing; and per SOAP request three steps: read the body (limit, timeout),
//! dispatch (`soap`, the operation, the scenario), record (log line, metrics, audit slot).

use super::conns::Sizes;
use super::serve::{serve, Handler, Options, Peer};
use super::wsdl::Documents;
use crate::soap::{
    self,
    fault::{DkdCode, SoapError},
    Answer, Endpoint, EndpointKind, Inbound, Request as SoapRequest,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
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
    /// Authenticated connections served at once.
    pub max_connections: usize,
    /// Connections in the TLS handshake at once.
    pub max_handshakes: usize,
    /// Connections in the TLS handshake at once from one peer address.
    pub max_handshakes_per_address: usize,
    /// How long a request waits for room in the audit queue before it is answered 0051.
    pub audit_wait: Duration,
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
    /// Gemeente role with `scenario.enabled`: how answers go wrong on purpose.
    pub scenario: Option<Arc<crate::chain::scenario::Live>>,
}

/// Marks a response that must not be sent: the connection is closed instead (`reset` scenario).
#[derive(Debug, Clone, Copy)]
pub struct ScenarioReset;

impl std::fmt::Display for ScenarioReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed without an answer by the reset scenario")
    }
}

impl std::error::Error for ScenarioReset {}

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
    let l = &state.limits;
    let options = Options {
        name: "service",
        tls: Some(acceptor),
        handshake_timeout: l.handshake_timeout,
        header_read_timeout: l.header_read_timeout,
        max_buf_size: Some(64 * 1024),
        budget: Some(Sizes {
            handshakes: l.max_handshakes,
            per_address: l.max_handshakes_per_address,
            connections: l.max_connections,
        }),
        shutdown_grace: Some(l.shutdown_grace),
    };
    serve(listener, options, state, shutdown).await
}

impl Handler for State {
    type Error = ScenarioReset;

    async fn call(
        self: Arc<Self>,
        peer: Arc<Peer>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, ScenarioReset> {
        let r = route(self, peer.oin.clone(), req).await;
        // hyper ends the connection when the service fails: that is the reset.
        match r.extensions().get::<ScenarioReset>() {
            Some(reset) => Err(*reset),
            None => Ok(r),
        }
    }

    fn shed(&self) {
        self.metrics.connection_shed();
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
        if let EndpointKind::IbVerwijsindex(ib) = &m.endpoint.kind {
            return crate::ib::portal::serve(
                &ib.store,
                &ib.settings,
                path,
                crate::ib::portal::Caller::Tls(oin.as_deref()),
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

/// A SOAP request: the body read, the request dispatched, the outcome recorded, the answer sent.
async fn soap_post(
    state: Arc<State>,
    vi: bool,
    oin: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let ep = state.mount(vi).0;
    // Room for the audit record first: without it nobody is answered about a person.
    let slot = audit_slot(&state, &ep.service.store).await;
    let out = match read_request(&state, ep, oin.clone(), req).await {
        Ok(inbound) => dispatch(&state, vi, inbound, slot.is_some()).await,
        Err(refused) => *refused,
    };
    record(&state, ep, oin.as_deref(), &out, slot, started);
    // The rest of an oversized or stalled body is not read; the connection cannot be reused.
    let close = matches!(
        out.outcome,
        soap::Outcome::Fault(DkdCode::TooLarge | DkdCode::BodyTimeout)
    );
    let wire = out.wire;
    let mut resp = xml(out.status, out.body);
    if close {
        resp.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    match wire {
        Some(w) => scenario_wire(w, resp).await,
        None => resp,
    }
}

/// The request's body within `max_body_bytes` and `body_read_timeout`, with the headers `soap`
/// reads (Content-Type, SOAPAction); `Err`: the fault for a body too large, too slow or broken,
/// addressed from the part that arrived.
async fn read_request(
    state: &State,
    ep: &Endpoint,
    tls_oin: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Result<OwnedInbound, Box<soap::Outbound>> {
    let limit = state.limits.max_body_bytes;
    let declared = header_text(req.headers().get(hyper::header::CONTENT_LENGTH))
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refuse before reading: the client learns at once, and we read nothing.
        let mut r = soap::reject(ep, &SoapError::TooLarge(limit));
        r.from_oin = None;
        return Err(Box::new(r));
    }
    let content_type = req.headers().get(hyper::header::CONTENT_TYPE).cloned();
    let soap_action = req.headers().get("soapaction").cloned();
    let mut read = BodyRead::default();
    let reading = read_body(req.into_body(), limit, &mut read);
    let refused = match tokio::time::timeout(state.limits.body_read_timeout, reading).await {
        Ok(Ok(())) => {
            return Ok(OwnedInbound {
                body: read.into_bytes(),
                content_type,
                soap_action,
                tls_oin,
            })
        }
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
    };
    Err(Box::new(refused))
}

/// The request handled by `soap` (on the crypto worker set when configured), with the
/// operation: the gemeente's and IBVerwijsindex inside `soap::handle_as` (and the scenario's
/// effect), the IB's routing between `soap::accept` and `soap::respond`. Without room in the
/// audit trail (`audited` false) the request is checked as usual and answered 0051.
async fn dispatch(
    state: &Arc<State>,
    vi: bool,
    inbound: OwnedInbound,
    audited: bool,
) -> soap::Outbound {
    let ep = state.mount(vi).0;
    let internal = || {
        soap::reject(
            ep,
            &SoapError::Internal("panic while handling a request".into()),
        )
    };
    match &ep.kind {
        _ if !audited => cpu(state, vi, move |ep| unavailable(ep, inbound.get()))
            .await
            .unwrap_or_else(|()| internal()),
        EndpointKind::IbRouter(ib) => {
            let acc = match cpu(state, vi, move |ep| soap::accept(ep, inbound.get())).await {
                Err(()) => return internal(),
                Ok(Err(refused)) => return *refused,
                Ok(Ok(acc)) => acc,
            };
            let SoapRequest::Gsd(bsn) = &acc.request else {
                // The router's endpoint reads only GSDReintegratieInfo requests.
                return internal();
            };
            let q = crate::ib::route::Question {
                from_address: acc.from_address().unwrap_or_default().to_owned(),
                message_id: acc.message_id().unwrap_or_default().to_owned(),
                asking_oin: acc.from_oin().unwrap_or(&acc.tls_oin).to_owned(),
            };
            let reply = ib.reintegratie_info(bsn, &q).await;
            cpu(state, vi, move |ep| {
                soap::respond(ep, acc, Answer::Gsd(reply))
            })
            .await
            .unwrap_or_else(|()| internal())
        }
        _ => {
            let scenario = state.scenario.clone();
            cpu(state, vi, move |ep| {
                soap::handle_as(ep, inbound.get(), scenario.as_deref())
            })
            .await
            .unwrap_or_else(|()| internal())
        }
    }
}

/// The request's traces: the log line, the metrics, and the audit record in the slot taken
/// before the request was read (none: the log line is its only trace, and says so).
fn record(
    state: &State,
    ep: &Endpoint,
    oin: Option<&str>,
    out: &soap::Outbound,
    slot: Option<crate::store::AuditSlot>,
    started: Instant,
) {
    let code = match &out.outcome {
        soap::Outcome::Fault(c) => c.as_str(),
        _ => "",
    };
    tracing::info!(
        operation = ep.operation(),
        oin = oin.unwrap_or("-"),
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
        oin.unwrap_or("-"),
        elapsed,
    );
    state.metrics.ignored_headers(&out.ignored_headers);
    let audit = crate::store::AuditRecord {
        at: time::OffsetDateTime::now_utc().unix_timestamp(),
        operation: ep.operation().into(),
        tls_oin: oin.map(str::to_owned),
        from_oin: out.from_oin.clone(),
        message_id: out.message_id.clone(),
        bsn: out.bsn,
        outcome: out.outcome.label().into(),
        code: (!code.is_empty()).then(|| code.to_owned()),
    };
    match slot {
        Some(slot) => slot.record(audit),
        None => {
            let n = state.metrics.audit_refused();
            // This line is the request's only trace: the trail had no room for its record.
            tracing::warn!(
                refused = n,
                operation = ep.operation(),
                oin = oin.unwrap_or("-"),
                from_oin = out.from_oin.as_deref().unwrap_or("-"),
                message_id = out.message_id.as_deref().unwrap_or("-"),
                bsn = out.bsn.map(|b| b.masked()).as_deref().unwrap_or("-"),
                outcome = out.outcome.label(),
                "audit trail full: answered without data (0051), not in the audit trail"
            );
        }
    }
}

/// A scenario's transport part, applied to the answer `soap` wrote (`crate::chain::scenario::Wire`).
async fn scenario_wire(
    wire: crate::chain::scenario::Wire,
    resp: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    use crate::chain::scenario::Wire;
    tracing::info!(effect = ?wire, "scenario applied to this answer");
    let unanswered = || {
        let mut r = text(StatusCode::INTERNAL_SERVER_ERROR, "");
        r.extensions_mut().insert(ScenarioReset);
        r
    };
    match wire {
        Wire::Delay(d) => {
            tokio::time::sleep(d).await;
            resp
        }
        Wire::Hang => {
            tokio::time::sleep(crate::chain::scenario::HANG_LIMIT).await;
            unanswered()
        }
        Wire::Reset => unanswered(),
        Wire::Unavailable => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable (dkd scenario http-503)\n",
            );
            r.headers_mut()
                .insert("retry-after", hyper::header::HeaderValue::from_static("30"));
            r
        }
    }
}

/// A slot in the audit queue: at once when there is room, else waiting up to
/// `limits.audit_wait` on a blocking thread (a stalled disk must not stall the async workers).
async fn audit_slot(state: &State, store: &crate::store::Store) -> Option<crate::store::AuditSlot> {
    if let Some(slot) = store.audit_slot(Duration::ZERO) {
        return Some(slot);
    }
    let wait = state.limits.audit_wait;
    if wait.is_zero() {
        return None;
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.audit_slot(wait))
        .await
        .ok()
        .flatten()
}

/// The answer when the audit trail has no room: every check on the request as usual, then
/// "service unavailable" (0051) instead of the operation, so nothing about anyone goes out
/// unrecorded.
fn unavailable(ep: &Endpoint, req: Inbound<'_>) -> soap::Outbound {
    match soap::accept(ep, req) {
        Err(refused) => *refused,
        Ok(acc) => {
            let answer = ep.unavailable(&acc.request);
            soap::respond(ep, acc, answer)
        }
    }
}
