//! Wiring: from a validated [`Config`] to a bound, ready-to-run server. Shared by `dkd serve` and
//! the integration tests, so the tests exercise exactly what users run. The periodic jobs are in
//! `periodic`, the admin listener in `admin`.

mod admin;
mod periodic;

use crate::config::{Config, Role, GSD_PATH, VI_PATH};
use crate::gemeente::service::Service;
use crate::http::admin::AdminState;
use crate::http::server::{self, Limits, Mount, State};
use crate::http::{tls, wsdl::Documents};
use crate::soap::wssec::{ReplayCache, SharedReplay, Signer, SigningMode, VerifyPolicy};
use crate::soap::{Endpoint, EndpointKind, Security};
use crate::store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why the server could not start; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material missing or unusable.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// The store cannot be opened.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// The signing certificate or key is unusable.
    #[error("{0}")]
    Signer(#[from] crate::soap::wssec::SignerError),
    /// The configuration cannot work (found only when the material is loaded).
    #[error("{0}")]
    Config(String),
    /// Worker threads could not be started.
    #[error("cannot start worker threads: {0}")]
    Threads(std::io::Error),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound server, not yet accepting.
pub struct App {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    addr: SocketAddr,
    admin: Option<Admin>,
    ops: Option<(
        tokio::net::TcpListener,
        Arc<crate::ops::OpsState>,
        SocketAddr,
    )>,
    retention: crate::config::RetentionConfig,
    audit_days: u32,
    push: Option<crate::gemeente::push::Sender>,
    fetcher: Option<(Arc<crate::gemeente::fetch::Fetcher>, u64)>,
    /// The interval of the shared replay cache's prune (PostgreSQL with signing on).
    replay_prune: Option<Duration>,
    /// IB role: the stale check's settings and interval.
    ib_stale: Option<(crate::ib::IbSettings, Duration)>,
}

/// The bound admin listener.
struct Admin {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AdminState>,
    addr: SocketAddr,
}

impl App {
    /// Opens the store, loads TLS material and binds the listener.
    pub async fn bind(cfg: &Config) -> Result<App, StartError> {
        let store = Store::open_at(&cfg.store.location(), true)?;
        App::bind_with_store(cfg, store).await
    }

    /// Like [`App::bind`] with an already opened store.
    pub async fn bind_with_store(cfg: &Config, store: Store) -> Result<App, StartError> {
        // A store served without an identity gets one now, before any command can find it locked.
        store.identity(role_name(cfg.role))?;
        let pushing = cfg.pushes();
        let store = store.with_outbox(pushing);
        store.set_audit_queue(cfg.audit.queue_records);
        let tls_cfg = tls::server_config(
            &cfg.tls.cert,
            &cfg.tls.key,
            &cfg.tls.client_ca,
            &cfg.tls.crls,
        )?;
        let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: cfg.server.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: cfg.server.listen.clone(),
            source,
        })?;
        // With port 0 (tests) the public URL must carry the port actually bound.
        let public_url = cfg
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{addr}{GSD_PATH}"));
        let service = Service {
            store,
            dn: cfg.server.service_dn.clone(),
            window_days: cfg.retention.window_days,
        };
        let own_oins = own_oins(cfg)?;
        let (kind, verwijsindex) = match cfg.role {
            Role::Gemeente => (EndpointKind::Gemeente, None),
            Role::Ib => {
                let ib = Arc::new(ib_role(cfg, &service, &public_url)?);
                let url = cfg
                    .ib
                    .verwijsindex_url
                    .clone()
                    .unwrap_or_else(|| format!("https://{addr}{VI_PATH}"));
                let gemeente_oins: Vec<String> = cfg
                    .ib
                    .gemeenten
                    .iter()
                    .flat_map(|g| g.oins.iter().cloned())
                    .collect();
                let endpoint = Endpoint {
                    service: service.clone(),
                    public_url: url.clone(),
                    to_aliases: Vec::new(),
                    own_oins: own_oins.clone(),
                    allowed_oins: gemeente_oins.iter().cloned().collect(),
                    security: security_for(cfg, &gemeente_oins, &service.store)?.map(Arc::new),
                    kind: EndpointKind::IbVerwijsindex(ib.clone()),
                };
                let mount = Mount {
                    endpoint,
                    documents: Documents::verwijsindex(&url),
                    path: public_url_path(&url, VI_PATH),
                };
                (EndpointKind::IbRouter(ib), Some(mount))
            }
        };
        let security = security(cfg, &service.store)?.map(Arc::new);
        let shared_store = service.store.is_shared();
        let endpoint = Endpoint {
            service,
            public_url: public_url.clone(),
            to_aliases: cfg.server.to_aliases.clone(),
            own_oins,
            allowed_oins: cfg.auth.allowed_oins.iter().cloned().collect(),
            security,
            kind,
        };
        let limits = Limits {
            max_body_bytes: cfg.server.max_body_bytes,
            header_read_timeout: Duration::from_secs(cfg.server.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(cfg.server.body_read_timeout_secs),
            handshake_timeout: Duration::from_secs(cfg.server.tls_handshake_timeout_secs),
            max_connections: cfg.server.max_connections,
            max_handshakes: cfg.server.max_handshakes,
            max_handshakes_per_address: cfg.server.max_handshakes_per_address,
            audit_wait: Duration::from_millis(cfg.audit.wait_ms),
            shutdown_grace: Duration::from_secs(cfg.server.shutdown_grace_secs),
        };
        let path = public_url_path(&public_url, GSD_PATH);
        let metrics = Arc::new(crate::ops::metrics::Metrics::default());
        let scenario = crate::chain::scenario::Live::new(&cfg.scenario);
        let state = Arc::new(State {
            endpoint,
            documents: Documents::gsd(&public_url),
            limits,
            path,
            metrics: metrics.clone(),
            verwijsindex,
            // With signing off nothing would run on the set: no idle threads.
            crypto: match cfg.server.crypto_threads {
                _ if cfg.signing_mode() == SigningMode::Off => None,
                0 => None,
                n => Some(
                    crate::http::workers::CryptoPool::new(Some(n)).map_err(StartError::Threads)?,
                ),
            },
            scenario: scenario.clone(),
        });
        let push = if pushing {
            let mut sender = push_sender(cfg, &state.endpoint.service.store)?;
            sender.scenario = scenario.clone();
            Some(sender)
        } else {
            None
        };
        let fetch = fetcher(cfg, &state.endpoint.service.store)?.map(Arc::new);
        let admin = admin::bind_admin(
            cfg,
            &state.endpoint.service.store,
            fetch.clone(),
            scenario.clone(),
        )
        .await?;
        let ops = if cfg.ops.listen.is_empty() {
            None
        } else {
            let l = tokio::net::TcpListener::bind(&cfg.ops.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: cfg.ops.listen.clone(),
                    source,
                })?;
            let a = l.local_addr().map_err(|source| StartError::Bind {
                addr: cfg.ops.listen.clone(),
                source,
            })?;
            let server_cert = tls::load_certs(&cfg.tls.cert)?
                .first()
                .map(|c| c.to_vec())
                .unwrap_or_default();
            let mut ops_state = crate::ops::OpsState::new(
                state.endpoint.service.store.clone(),
                metrics,
                server_cert,
                crate::ops::Thresholds {
                    min_cert_days: cfg.ops.min_cert_days,
                    max_import_age_hours: cfg.ops.max_import_age_hours,
                    window_days: cfg.retention.window_days,
                    max_outbox_age_secs: cfg.ops.max_outbox_age_secs as i64,
                },
                public_url.clone(),
            );
            ops_state.ib = (cfg.role == Role::Ib).then(|| ib_settings(cfg));
            ops_state.scenario = scenario.clone();
            Some((l, Arc::new(ops_state), a))
        };
        Ok(App {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls_cfg)),
            state,
            admin,
            ops,
            retention: cfg.retention.clone(),
            audit_days: cfg.audit.retention_days,
            addr,
            push,
            fetcher: fetch.map(|f| (f, cfg.signals.fetch_interval_secs)),
            replay_prune: (shared_store && cfg.signing_mode() != SigningMode::Off).then(|| {
                // Rows live one replay window; pruning as often keeps the table at about
                // one window of requests.
                let window = cfg.security.max_message_age_secs + 2 * cfg.security.clock_skew_secs;
                Duration::from_secs(window.max(60))
            }),
            ib_stale: (cfg.role == Role::Ib && cfg.ib.stale_check_interval_secs > 0).then(|| {
                (
                    ib_settings(cfg),
                    Duration::from_secs(cfg.ib.stale_check_interval_secs),
                )
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ops listener's bound address, when enabled.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|o| o.2)
    }

    /// The admin API's bound address, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The public URL of the endpoint.
    pub fn public_url(&self) -> &str {
        &self.state.endpoint.public_url
    }

    /// IB role: the public URL of the IBVerwijsindex endpoint.
    pub fn verwijsindex_url(&self) -> Option<&str> {
        self.state
            .verwijsindex
            .as_ref()
            .map(|m| m.endpoint.public_url.as_str())
    }

    /// The scenario this server runs (`scenario.enabled`), switchable while it runs.
    pub fn scenario(&self) -> Option<&Arc<crate::chain::scenario::Live>> {
        self.state.scenario.as_ref()
    }

    /// The store behind the endpoint.
    pub fn store(&self) -> &Store {
        &self.state.endpoint.service.store
    }

    /// Serves until `shutdown` completes, then flushes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let store = self.state.endpoint.service.store.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        self.spawn_periodic(&store, &stop_rx);
        if let Some((l, st, _)) = self.ops {
            tokio::spawn(crate::ops::run(l, st, stopped(stop_rx.clone())));
        }
        if let Some(admin) = self.admin {
            tokio::spawn(crate::http::admin::run(
                admin.listener,
                admin.tls,
                admin.state,
                stopped(stop_rx.clone()),
            ));
        }
        if let Some(live) = self.state.scenario.clone() {
            let stop = stopped(stop_rx.clone());
            let url = self.state.endpoint.public_url.clone();
            tokio::spawn(async move {
                // Loud on purpose: nobody must mistake this server for a well-behaved gemeente.
                let mut tick = tokio::time::interval(crate::chain::scenario::WARN_EVERY);
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = &mut stop => return,
                    }
                    crate::chain::scenario::warn_if_active(&live, &url);
                }
            });
        }
        if let Some(sender) = self.push {
            tracing::info!(url = %sender.url, "pushing verwijsindex updates to the IB");
            tokio::spawn(sender.run(stopped(stop_rx.clone())));
        }
        let server = server::run(self.listener, self.acceptor, self.state, stopped(stop_rx));
        tokio::pin!(server);
        let r = tokio::select! {
            r = &mut server => r,
            _ = shutdown => {
                let _ = stop_tx.send(true);
                server.await
            }
        };
        if let Err(e) = store.flush() {
            tracing::error!(error = %e, "store flush at shutdown failed");
        }
        r
    }
}

/// The role's name in the configuration, the store identity and the admin API.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Gemeente => "gemeente",
        Role::Ib => "ib",
    }
}

/// Builds the WS-Security setup from `[security]`, or `None` when signing is off.
pub fn security(cfg: &Config, store: &Store) -> Result<Option<Security>, StartError> {
    security_for(cfg, &cfg.auth.allowed_oins, store)
}

/// [`security`] for an endpoint with its own allow-list of callers.
fn security_for(
    cfg: &Config,
    allowed: &[String],
    store: &Store,
) -> Result<Option<Security>, StartError> {
    let mode = cfg.signing_mode();
    if mode == SigningMode::Off {
        return Ok(None);
    }
    let s = &cfg.security;
    let mut signer = Signer::load(
        s.sign_cert.as_ref().unwrap_or(&cfg.tls.cert),
        s.sign_key.as_ref().unwrap_or(&cfg.tls.key),
    )?;
    signer.ttl = time::Duration::seconds(s.response_ttl_secs as i64);
    let trust = tls::signer_trust(
        s.trusted_ca.as_ref().unwrap_or(&cfg.tls.client_ca),
        &cfg.tls.crls,
    )?;
    let verify = VerifyPolicy {
        mode,
        trust,
        allowed_signer_oins: allowed
            .iter()
            .chain(&s.allowed_signer_oins)
            .cloned()
            .collect(),
        signer_must_match_tls: s.signer_must_match_tls,
        any_signer: false,
        clock_skew: time::Duration::seconds(s.clock_skew_secs as i64),
        max_age: time::Duration::seconds(s.max_message_age_secs as i64),
        replay: match store.is_shared() {
            true => ReplayCache::new(s.replay_cache_size)
                .with_shared(Arc::new(StoreReplay(store.clone()))),
            false => ReplayCache::new(s.replay_cache_size),
        },
        trust_cache: Default::default(),
    };
    Ok(Some(Security { verify, signer }))
}

/// The replay cache every instance on a PostgreSQL store shares, behind each one's own: the
/// soap layer gets it as a [`SharedReplay`] and names no store type.
struct StoreReplay(Store);

impl SharedReplay for StoreReplay {
    fn claim(&self, message_id: &str, now: i64, until: i64) -> Result<bool, String> {
        self.0
            .replay_claim(message_id, now, until)
            .map_err(|e| e.to_string())
    }
}

/// The path part of a public URL (where the endpoint is routed), defaulting to the standard path.
fn public_url_path(url: &str, default: &str) -> String {
    url.strip_prefix("https://")
        .and_then(|r| {
            r.find('/')
                .map(|i| r[i..].split('?').next().unwrap_or(default).to_owned())
        })
        .unwrap_or_else(|| default.to_owned())
}

type OutgoingSecurity = (Option<Arc<Signer>>, Option<Arc<VerifyPolicy>>);

/// The signer and the response check for dkd's own outgoing messages (routing, push), or
/// `(None, None)` with signing off.
fn outgoing_security(
    cfg: &Config,
    server_ca: &std::path::Path,
) -> Result<OutgoingSecurity, StartError> {
    if cfg.signing_mode() == SigningMode::Off {
        return Ok((None, None));
    }
    let s = &cfg.security;
    let signer = Signer::load(
        s.sign_cert.as_ref().unwrap_or(&cfg.tls.cert),
        s.sign_key.as_ref().unwrap_or(&cfg.tls.key),
    )?;
    let policy = VerifyPolicy::for_answers(
        tls::signer_trust(server_ca, &cfg.tls.crls)?,
        time::Duration::seconds(s.clock_skew_secs as i64),
        time::Duration::seconds(s.max_message_age_secs as i64),
    );
    Ok((Some(Arc::new(signer)), Some(Arc::new(policy))))
}

/// dkd's own OINs: those of its TLS certificate and of its signing certificate.
fn own_oins(cfg: &Config) -> Result<Vec<String>, StartError> {
    let mut oins = Vec::new();
    for path in std::iter::once(&cfg.tls.cert).chain(cfg.security.sign_cert.as_ref()) {
        let certs = tls::load_certs(path)?;
        if let Some(oin) = certs
            .first()
            .and_then(|c| crate::certs::oin_of(c).ok().flatten())
        {
            if !oins.contains(&oin) {
                oins.push(oin);
            }
        }
    }
    Ok(oins)
}

/// The IB role from `[ib]`; `public_url` is its GSDDossierReintegratie endpoint.
fn ib_role(cfg: &Config, service: &Service, public_url: &str) -> Result<crate::ib::Ib, StartError> {
    use crate::ib::Ib;
    let ca = cfg.ib.gemeente_ca.as_ref().unwrap_or(&cfg.tls.client_ca);
    let tls = tls::client_config(ca, &cfg.tls.cert, &cfg.tls.key)?;
    let (signer, verify) = outgoing_security(cfg, ca)?;
    let route_timeout = Duration::from_secs(cfg.ib.route_timeout_secs);
    Ok(Ib {
        store: service.store.clone(),
        settings: ib_settings(cfg),
        forward: Arc::new(crate::ib::forward::HttpForward {
            tls: Arc::new(tls),
            signer,
            verify,
            timeout: route_timeout,
            pool: crate::http::client::Pool::default(),
            own_address: public_url.to_owned(),
        }),
    })
}

/// The IB role's settings from `[ib]`.
pub fn ib_settings(cfg: &Config) -> crate::ib::IbSettings {
    use crate::ib::{Gemeente, IbSettings};
    IbSettings {
        gemeenten: cfg
            .ib
            .gemeenten
            .iter()
            .map(|g| Gemeente {
                code: g.code.clone(),
                name: if g.name.is_empty() {
                    format!("gemeente {}", g.code)
                } else {
                    g.name.clone()
                },
                oins: g.oins.clone(),
                url: g.url.clone(),
                delivery: g.delivery,
            })
            .collect(),
        clusters: cfg.ib.clusters.clone(),
        reintegratie_cluster: cfg.ib.reintegratie_cluster.clone(),
        dn: cfg.server.service_dn.clone(),
        window_days: cfg.retention.window_days,
        stale_after_days: cfg.ib.stale_after_days,
    }
}

/// The Toets LKS report fetcher from `[signals]`, when a portal is configured (gemeente role).
pub fn fetcher(
    cfg: &Config,
    store: &Store,
) -> Result<Option<crate::gemeente::fetch::Fetcher>, StartError> {
    if cfg.role != Role::Gemeente || cfg.signals.portal.is_empty() {
        return Ok(None);
    }
    let ca = cfg.signals.server_ca.as_ref().unwrap_or(&cfg.tls.client_ca);
    let tls = tls::client_config(ca, &cfg.tls.cert, &cfg.tls.key)?;
    Ok(Some(crate::gemeente::fetch::Fetcher {
        store: store.clone(),
        portal: cfg.signals.portal.clone(),
        gemeenten: cfg.signals.gemeenten.clone(),
        tls: Arc::new(tls),
        timeout: Duration::from_secs(30),
    }))
}

/// The outbox sender from `[push]`.
fn push_sender(cfg: &Config, store: &Store) -> Result<crate::gemeente::push::Sender, StartError> {
    let p = &cfg.push;
    let ca = p.server_ca.as_ref().unwrap_or(&cfg.tls.client_ca);
    let tls = tls::client_config(ca, &cfg.tls.cert, &cfg.tls.key)?;
    let (signer, verify) = outgoing_security(cfg, ca)?;
    let from_address = match &p.from_address {
        Some(a) => a.clone(),
        None => {
            let cert = tls::load_certs(&cfg.tls.cert)?;
            let oin = cert
                .first()
                .and_then(|c| crate::certs::oin_of(c).ok().flatten())
                .ok_or_else(|| {
                    StartError::Config(format!(
                        "push: {} carries no OIN in subject serialNumber; set push.from_address",
                        cfg.tls.cert.display()
                    ))
                })?;
            format!("https://{}/?oin={oin}", cfg.server.listen)
        }
    };
    Ok(crate::gemeente::push::Sender {
        store: store.clone(),
        url: p.url.clone(),
        cluster: p.cluster.clone(),
        ind_dkd_nee: p.ind_dkd_nee(),
        from_address,
        tls: Arc::new(tls),
        signer,
        verify,
        timeout: Duration::from_secs(p.timeout_secs),
        concurrency: p.concurrency,
        max_backoff: Duration::from_secs(p.max_backoff_secs),
        lease_secs: p.lease_secs,
        pool: crate::http::client::Pool::default(),
        scenario: None,
    })
}
