//! What the store commands (`import`, `report`, `toets`, `sweep`, `audit`, `sync`, `signals`) run
//! against: the store itself, or — when a running `dkd serve` holds it (sled allows one process
//! per store) — that server's admin API on loopback, once its `GET /identity` names the same store.
//! Either way the user gets the same result and output.

use crate::gemeente::service::{SweepReport, ToetsHit};
use crate::import::{ImportError, Options, Report};
use crate::report::GemeenteReport;
use crate::store::{AuditRecord, Store, StoreError};
use crate::suwiml::types::Bsn;
use std::net::SocketAddr;

/// Where commands run.
pub enum Backend {
    /// This process opened the store.
    Local(Store),
    /// A running server's admin API.
    Remote(SocketAddr),
}

/// Why a store command failed; the variant decides the exit code (`cli::exit`).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The command or its options do not fit (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The input was refused on its content, line by line in the message (exit 1).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store is held by a running server this command cannot reach (exit 5).
    #[error("{0}")]
    InUse(String),
    /// The server reached holds another store than the one configured, or cannot say which
    /// (exit 5).
    #[error("{0}")]
    OtherStore(String),
    /// The import could not run at all.
    #[error("{name}: {source}")]
    Import {
        /// The file.
        name: String,
        /// Why.
        source: ImportError,
    },
    /// Anything else: the admin API's answer, the runtime (exit 1).
    #[error("{0}")]
    Failure(String),
}

fn failure(m: impl Into<String>) -> ControlError {
    ControlError::Failure(m.into())
}

impl Backend {
    /// Opens the store, or finds the server that holds it — and makes sure it is that server:
    /// the admin API on `admin.listen` may belong to another dkd (another store on this machine),
    /// whose answers would look right and be about the wrong store.
    pub fn open(cfg: &crate::config::Config) -> Result<Backend, ControlError> {
        // PostgreSQL has no lock: commands work on it directly while servers run.
        match Store::open_at(&cfg.store.location(), false) {
            Ok(s) => {
                s.identity(crate::app::role_name(cfg.role))?;
                Ok(Backend::Local(s.with_outbox(cfg.pushes())))
            }
            Err(StoreError::Locked(p)) => match cfg.admin.listen.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() && a.port() != 0 => {
                    check_holder(a, &p, &cfg.store.path)?;
                    Ok(Backend::Remote(a))
                }
                _ => Err(ControlError::InUse(format!(
                    "{p} is in use by a running dkd serve, and its admin API is not on a loopback address this command can use (admin.listen {:?})",
                    cfg.admin.listen
                ))),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Whether commands go through a running server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// Imports a file.
    pub fn import(
        &self,
        name: &str,
        bytes: Vec<u8>,
        opts: &Options,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Report, ControlError> {
        match self {
            Backend::Local(s) => {
                crate::import::import(s, name, &bytes, opts, progress).map_err(|e| match e {
                    ImportError::Usage(m) => ControlError::Usage(m),
                    ImportError::Store(e) => e.into(),
                    source => ControlError::Import {
                        name: name.to_owned(),
                        source,
                    },
                })
            }
            Backend::Remote(a) => {
                let mut q = format!(
                    "/imports?format={}&mode={}&name={}",
                    if opts.format == crate::import::Format::Xml {
                        "xml"
                    } else {
                        "csv"
                    },
                    if opts.mode == crate::import::Mode::Full {
                        "full"
                    } else {
                        "delta"
                    },
                    encode(name)
                );
                if let Some(g) = &opts.gemeente {
                    q.push_str(&format!("&gemeente={g}"));
                }
                if opts.dry_run {
                    q.push_str("&dry_run=1");
                }
                if opts.strict {
                    q.push_str("&strict=1");
                }
                let (status, body) = call(*a, "POST", &q, bytes)?;
                match status {
                    200 => serde_json::from_slice(&body)
                        .map_err(|e| failure(format!("unexpected answer from the server: {e}"))),
                    422 => Err(ControlError::Usage(error_text(&body))),
                    _ => Err(failure(error_text(&body))),
                }
            }
        }
    }

    /// The Aanlevermonitor figures.
    pub fn report(
        &self,
        window_days: u32,
        today: time::Date,
    ) -> Result<Vec<GemeenteReport>, ControlError> {
        match self {
            Backend::Local(s) => Ok(crate::report::build(s, window_days, today)?),
            Backend::Remote(a) => json(*a, "GET", "/report"),
        }
    }

    /// The IB's Aanlevermonitor (IB role).
    pub fn report_ib(
        &self,
        settings: &crate::ib::IbSettings,
        today: time::Date,
    ) -> Result<Vec<crate::report::IbReport>, ControlError> {
        match self {
            Backend::Local(s) => Ok(crate::report::build_ib(s, settings, today)?),
            Backend::Remote(a) => json(*a, "GET", "/report/ib"),
        }
    }

    /// The Toets LKS.
    pub fn toets(
        &self,
        bsn: &Bsn,
        datum: time::Date,
        window_days: u32,
    ) -> Result<Vec<ToetsHit>, ControlError> {
        match self {
            Backend::Local(s) => Ok(crate::gemeente::service::toets(s, bsn, datum, window_days)?),
            Backend::Remote(a) => json(
                *a,
                "GET",
                &format!(
                    "/toets/{bsn}?datum={}",
                    crate::suwiml::types::Datum::from_date(datum).as_str()
                ),
            ),
        }
    }

    /// The retention sweep.
    pub fn sweep(
        &self,
        window_days: u32,
        purge: bool,
        today: time::Date,
        dry_run: bool,
    ) -> Result<SweepReport, ControlError> {
        match self {
            Backend::Local(s) => Ok(crate::gemeente::service::sweep(
                s,
                window_days,
                purge,
                today,
                dry_run,
            )?),
            Backend::Remote(a) => json(
                *a,
                "POST",
                if dry_run {
                    "/sweep?dry_run=1"
                } else {
                    "/sweep"
                },
            ),
        }
    }

    /// `dkd sync`: the outbox status, or one of its actions.
    pub fn sync(
        &self,
        action: crate::gemeente::push::SyncAction,
    ) -> Result<crate::gemeente::push::SyncReport, ControlError> {
        use crate::gemeente::push::SyncAction;
        match self {
            Backend::Local(s) => Ok(crate::gemeente::push::sync(s, action)?),
            Backend::Remote(a) => match action {
                SyncAction::Status => json(*a, "GET", "/sync"),
                SyncAction::RetryParked => json(*a, "POST", "/sync/retry-parked"),
                SyncAction::Full => json(*a, "POST", "/sync/full"),
            },
        }
    }

    /// `dkd signals fetch`: new Toets LKS reports from the IB portal into vangnetter cases.
    pub fn signals_fetch(
        &self,
        cfg: &crate::config::Config,
    ) -> Result<crate::gemeente::fetch::FetchReport, ControlError> {
        match self {
            Backend::Local(s) => {
                let f = crate::app::fetcher(cfg, s)
                    .map_err(|e| failure(e.to_string()))?
                    .ok_or_else(|| {
                        ControlError::Usage(
                            "signals.portal is not configured (gemeente role)".into(),
                        )
                    })?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| failure(e.to_string()))?;
                Ok(rt.block_on(f.fetch()))
            }
            Backend::Remote(a) => json(*a, "POST", "/signals/fetch"),
        }
    }

    /// `dkd signals publish` (IB role): a Toets LKS signal file from outside into `gemeente`'s
    /// reports. A file with any bad row is refused whole ([`ControlError::Invalid`]), nothing stored.
    pub fn signals_publish(
        &self,
        cfg: &crate::config::Config,
        gemeente: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<crate::ib::signals::Published, ControlError> {
        use crate::ib::signals::PublishError;
        match self {
            Backend::Local(s) => {
                if cfg.role != crate::config::Role::Ib {
                    return Err(ControlError::Usage(
                        "signals publish is for the IB role (role = \"ib\")".into(),
                    ));
                }
                let settings = crate::app::ib_settings(cfg);
                let today = time::OffsetDateTime::now_utc().date();
                crate::ib::signals::publish_signals(s, &settings, gemeente, name, &bytes, today)
                    .map_err(|e| match e {
                        PublishError::UnknownGemeente(_) => ControlError::Usage(e.to_string()),
                        PublishError::File(_) => ControlError::Invalid(e.to_string()),
                        PublishError::Store(e) => e.into(),
                    })
            }
            Backend::Remote(a) => {
                let q = format!(
                    "/signals/publish?gemeente={}&name={}",
                    encode(gemeente),
                    encode(name)
                );
                let (status, body) = call(*a, "POST", &q, bytes)?;
                let kind = match status {
                    200 => {
                        return serde_json::from_slice(&body).map_err(|e| {
                            failure(format!("unexpected answer from the server: {e}"))
                        })
                    }
                    422 => ControlError::Invalid,
                    400 | 404 => ControlError::Usage,
                    _ => ControlError::Failure,
                };
                Err(kind(error_text(&body)))
            }
        }
    }

    /// The vangnetter cases.
    pub fn cases(&self) -> Result<Vec<crate::store::signals::Case>, ControlError> {
        match self {
            Backend::Local(s) => Ok(s.cases()?),
            Backend::Remote(a) => json(*a, "GET", "/signals"),
        }
    }

    /// Records a first sick day for a BSN's cases; returns how many.
    pub fn sick_day(
        &self,
        bsn: &Bsn,
        day: &crate::suwiml::types::Datum,
    ) -> Result<u64, ControlError> {
        match self {
            Backend::Local(s) => Ok(s.set_first_sick_day(bsn, *day)?),
            Backend::Remote(a) => {
                let v: serde_json::Value = json(
                    *a,
                    "POST",
                    &format!("/signals/sick-day?bsn={bsn}&datum={}", day.as_str()),
                )?;
                Ok(v["cases"].as_u64().unwrap_or(0))
            }
        }
    }

    /// Audit records since a time.
    pub fn audit(&self, since: i64) -> Result<Vec<AuditRecord>, ControlError> {
        match self {
            Backend::Local(s) => Ok(s.audit_since(since).collect::<Result<Vec<_>, _>>()?),
            Backend::Remote(a) => json(*a, "GET", &format!("/audit?since={since}")),
        }
    }
}

/// Refuses unless the server whose admin API is at `a` holds the store at `path` (same identity).
fn check_holder(a: SocketAddr, shown: &str, path: &std::path::Path) -> Result<(), ControlError> {
    let other = ControlError::OtherStore;
    let Some(ours) = crate::store::identity::read(path)? else {
        return Err(other(format!(
            "{shown} is in use by another process, and has no store identity ({}), so this command cannot tell whether the server at {a} holds it; stop that process, or upgrade it to this dkd",
            crate::store::identity::FILE
        )));
    };
    let (status, body) = call(a, "GET", "/identity", Vec::new())?;
    if status != 200 {
        return Err(other(format!(
            "{shown} is in use, and the server at {a} (admin.listen) does not say which store it holds (HTTP {status}: {}); refusing to run against it",
            error_text(&body)
        )));
    }
    let served: crate::http::admin::Served = serde_json::from_slice(&body).map_err(|e| {
        other(format!(
            "unexpected identity answer from the server at {a}: {e}"
        ))
    })?;
    if served.store.id != ours.id {
        return Err(other(format!(
            "{shown} is in use by another process, but the server at {a} (admin.listen) holds another store: {} (role {}, store {}), not {shown} (role {}, store {}); set admin.listen to the admin API of the server that holds {shown}",
            served.path, served.role, served.store.id, ours.role, ours.id
        )));
    }
    Ok(())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

fn json<T: serde::de::DeserializeOwned>(
    a: SocketAddr,
    method: &str,
    path: &str,
) -> Result<T, ControlError> {
    let (status, body) = call(a, method, path, Vec::new())?;
    if status != 200 {
        return Err(failure(error_text(&body)));
    }
    serde_json::from_slice(&body)
        .map_err(|e| failure(format!("unexpected answer from the server: {e}")))
}

/// One plain-HTTP request to the admin API on loopback.
fn call(
    a: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), ControlError> {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(e.to_string()))?;
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(a)
            .await
            .map_err(|e| failure(format!("the store is in use, and the running server's admin API at {a} cannot be reached: {e}")))?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| failure(e.to_string()))?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| failure(e.to_string()))?;
        let resp = tx.send_request(req).await.map_err(|e| failure(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| failure(e.to_string()))?.to_bytes().to_vec();
        Ok((status, body))
    })
}
