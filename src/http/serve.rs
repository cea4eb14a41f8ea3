//! The one accept loop behind every listener (the service, the admin API, the ops listener):
//! accept, the TLS handshake within a deadline (when the listener speaks TLS), the connection
//! budget of `conns` (when it has one), hyper HTTP/1.1, and the shutdown. What a listener
//! serves is a [`Handler`]; how its connections are treated is its [`Options`].

use super::conns::{Budget, Handshake, Sizes};
use super::tls::peer_oin;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

/// How a listener treats its connections.
#[derive(Clone)]
pub struct Options {
    /// Which listener, for the log.
    pub name: &'static str,
    /// Mutual TLS (the acceptor's verifier decides which client certificates pass); `None`:
    /// plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// The TLS handshake, and with a budget the wait for a connection slot after it, must
    /// finish within this.
    pub handshake_timeout: Duration,
    /// Request headers must arrive within this.
    pub header_read_timeout: Duration,
    /// hyper's read buffer limit; `None`: hyper's default.
    pub max_buf_size: Option<usize>,
    /// The connection budget (`conns`); `None`: every accepted connection is served.
    pub budget: Option<Sizes>,
    /// On shutdown, every connection is closed gracefully (idle ones at once) and the loop waits
    /// this long for in-flight requests. `None`: the loop only stops accepting; connections
    /// end on their own.
    pub shutdown_grace: Option<Duration>,
}

impl Options {
    /// An operator's listener (admin API, ops): fixed 10 s deadlines, hyper's buffer, no budget,
    /// no grace period; its peers are few and local.
    pub fn operator(name: &'static str, tls: Option<TlsAcceptor>) -> Options {
        Options {
            name,
            tls,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_buf_size: None,
            budget: None,
            shutdown_grace: None,
        }
    }
}

/// The other end of a connection, as the transport established it.
#[derive(Debug)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS (and so the client certificate was verified).
    pub tls: bool,
    /// The OIN of its TLS client certificate, when it carries one.
    pub oin: Option<Arc<str>>,
}

/// What a listener serves.
pub trait Handler: Send + Sync + 'static {
    /// Fails a request: hyper then ends the connection without an answer.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Answers one request on a connection from `peer`.
    fn call(
        self: Arc<Self>,
        peer: Arc<Peer>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Full<Bytes>>, Self::Error>> + Send + 'static;

    /// A connection was shed or refused by the budget (for the metrics).
    fn shed(&self) {}
}

/// Serves `handler` on `listener` until `shutdown` completes. Takes a bound listener so tests
/// can use port 0.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    options: Options,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let name = options.name;
    let budget = options.budget.map(Budget::new);
    let options = Arc::new(options);
    // With a grace period every connection task holds a receiver: the sender's `closed` is "all
    // connections gone".
    let (stop_tx, stop_rx) = watch::channel(false);
    let graceful = options.shutdown_grace.is_some();
    tokio::pin!(shutdown);
    loop {
        // Accepting is never held up by the budget: a connection that cannot be served is shed
        // (or sheds an older one), so no client waits in the kernel backlog behind sockets that
        // never finish a handshake.
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let handshake = match &budget {
            None => None,
            Some(b) => match b.arrive(peer.ip()) {
                Some(h) => Some(h),
                None => {
                    tracing::debug!(listener = name, %peer, "refused: every handshake slot holds a client waiting for a connection slot");
                    handler.shed();
                    continue;
                }
            },
        };
        let (options, handler) = (options.clone(), handler.clone());
        let stop = graceful.then(|| stop_rx.clone());
        tokio::spawn(async move {
            connection(tcp, peer, &options, handler, handshake, stop).await;
        });
    }
    // Stop accepting (the listener is dropped here), let in-flight requests finish within the
    // grace period; idle keep-alive connections are closed at once.
    drop(listener);
    drop(stop_rx);
    let Some(grace) = options.shutdown_grace else {
        return Ok(());
    };
    tracing::info!(
        listener = name,
        connections = stop_tx.receiver_count(),
        "shutting down: finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!(
            listener = name,
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
    Ok(())
}

/// Completes once the server is stopping; never without a stop signal.
async fn stopping(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        // A dropped sender means the server is gone: stopping too.
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

/// Completes when `n` is notified; never without one.
async fn notified(n: Option<&Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn connection<H: Handler>(
    tcp: TcpStream,
    addr: SocketAddr,
    options: &Options,
    handler: Arc<H>,
    handshake: Option<Handshake>,
    mut stop: Option<watch::Receiver<bool>>,
) {
    let name = options.name;
    let _ = tcp.set_nodelay(true);
    // The deadline covers the handshake and the wait for a connection slot after it.
    let deadline = tokio::time::Instant::now() + options.handshake_timeout;
    let Some(acceptor) = &options.tls else {
        let peer = Peer {
            addr,
            tls: false,
            oin: None,
        };
        return established(tcp, peer, options, handler, handshake, deadline, stop).await;
    };
    let shed = handshake.as_ref().map(|h| h.shed.clone());
    let tls = tokio::select! {
        r = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(listener = name, peer = %addr, error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::info!(listener = name, peer = %addr, "TLS handshake timed out");
                return;
            }
        },
        _ = notified(shed.as_deref()) => {
            tracing::debug!(listener = name, peer = %addr, "TLS handshake shed: the handshake budget is full");
            handler.shed();
            return;
        }
        _ = stopping(&mut stop) => return,
    };
    let peer = Peer {
        addr,
        tls: true,
        oin: peer_oin(tls.get_ref().1.peer_certificates()).map(Arc::from),
    };
    established(tls, peer, options, handler, handshake, deadline, stop).await;
}

/// After the handshake: a connection slot (with a budget), then HTTP until the connection ends,
/// is shed, or the server stops.
async fn established<H: Handler, IO>(
    io: IO,
    peer: Peer,
    options: &Options,
    handler: Arc<H>,
    handshake: Option<Handshake>,
    deadline: tokio::time::Instant,
    mut stop: Option<watch::Receiver<bool>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (name, addr) = (options.name, peer.addr);
    let conn = match handshake {
        None => None,
        Some(h) => tokio::select! {
            r = tokio::time::timeout_at(deadline, h.establish()) => match r {
                Ok(Some(c)) => Some(c),
                Ok(None) => {
                    tracing::debug!(listener = name, peer = %addr, "shed while waiting for a connection slot");
                    handler.shed();
                    return;
                }
                Err(_) => {
                    tracing::info!(listener = name, peer = %addr, "no connection slot freed within the handshake timeout");
                    return;
                }
            },
            _ = stopping(&mut stop) => return,
        },
    };
    let peer = Arc::new(peer);
    let activity = conn.as_ref().map(|c| c.activity());
    let svc_handler = handler.clone();
    let service = hyper::service::service_fn(move |req| {
        let (handler, peer) = (svc_handler.clone(), peer.clone());
        // Busy from the request head until the answer is handed to hyper: not shed meanwhile.
        let busy = activity.as_ref().map(|a| a.busy());
        async move {
            let r = handler.call(peer, req).await;
            drop(busy);
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    if let Some(n) = options.max_buf_size {
        builder.max_buf_size(n);
    }
    let http = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(http);
    let shed = conn.as_ref().map(|c| c.shed.clone());
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = http.as_mut() => break r,
            // Both close gracefully: an idle connection at once, a busy one after its answer.
            _ = notified(shed.as_deref()), if !closing => {
                tracing::debug!(listener = name, peer = %addr, "idle connection shed: the connection slots are full");
                handler.shed();
                http.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stopping(&mut stop), if !closing => {
                http.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = name, peer = %addr, error = %e, "connection ended with an error");
    }
    drop(conn);
}
