//! The JSON admin API: real-time updates from the backoffice, one person at a time, with the same
//! validation and change records as `dkd import`.
//!
//! - `GET /persons/{bsn}` → the person as served (all gemeenten) plus each entry's mutation time;
//! - `PUT /persons/{bsn}` with a person as JSON (the format of `dkd import`'s model, see README) →
//!   the entries of the gemeenten in its AtlRelaties are replaced;
//! - `DELETE /persons/{bsn}[?gemeente=CODE]` → out of that gemeente's index (or every gemeente's).
//!
//! On a loopback address it speaks plain HTTP; anywhere else only mutual TLS with an allowed admin
//! OIN (enforced in `serve`).

use crate::http::serve::{serve, Handler, Options, Peer};
use crate::import::{domain_checks, Rules};
use crate::store::Store;
use crate::suwiml::model::Person;
use crate::suwiml::types::Bsn;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

/// What the admin API needs.
pub struct AdminState {
    /// The verwijsindex.
    pub store: Store,
    /// The import rules.
    pub rules: Rules,
    /// Whether removals purge data.
    pub purge: bool,
    /// With TLS: OINs allowed to administer.
    pub allowed_oins: HashSet<String>,
    /// The LKS look-back.
    pub window_days: u32,
    /// IB role: its settings (for the IB report).
    pub ib: Option<crate::ib::IbSettings>,
    /// Gemeente role with `[signals]`: fetches the IB's Toets LKS reports.
    pub fetcher: Option<Arc<crate::gemeente::fetch::Fetcher>>,
    /// Which store this server holds (`GET /identity`).
    pub identity: crate::store::identity::Identity,
    /// The role this server plays (`gemeente`, `ib`).
    pub role: &'static str,
    /// Started with `scenario.enabled = true`: the scenario `GET/PUT /scenario` read and switch.
    pub scenario: Option<Arc<crate::chain::scenario::Live>>,
}

/// `GET /identity`: which store the server holds and which role it plays, so a command that found
/// a store locked can tell whether this server is the one holding it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// The store's identity.
    pub store: crate::store::identity::Identity,
    /// The store directory as the server was configured with it.
    pub path: String,
    /// The role the server plays.
    pub role: String,
}

/// Largest import file accepted through `POST /imports`.
const MAX_IMPORT: usize = 1 << 30;

/// Largest signal file accepted through `POST /signals/publish` (a day's report is kilobytes).
const MAX_SIGNAL_FILE: usize = 64 << 20;

fn query<'q>(q: Option<&'q str>, key: &str) -> Option<&'q str> {
    q?.split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

const NO_SCENARIO: &str =
    "this server was not started with scenario.enabled = true: it runs no scenario";

fn scenario_json(live: &crate::chain::scenario::Live) -> serde_json::Value {
    json!({"scenario": live.get(), "active": live.is_active(), "summary": live.summary()})
}

/// A `PUT /scenario` body: the `[scenario]` keys as JSON. `enabled` may be left out (the server
/// was started with it); `"enabled": false` or `{}` clears the scenario.
fn parse_scenario(body: &[u8]) -> Result<crate::chain::scenario::ScenarioConfig, String> {
    let mut v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(obj) = v.as_object_mut() else {
        return Err("the body must be a JSON object with [scenario] keys".into());
    };
    let clear = obj.is_empty() || obj.get("enabled") == Some(&serde_json::Value::Bool(false));
    obj.insert("enabled".into(), serde_json::Value::Bool(true));
    let cfg: crate::chain::scenario::ScenarioConfig =
        serde_json::from_value(v).map_err(|e| format!("scenario: {e}"))?;
    if clear {
        return Ok(crate::chain::scenario::ScenarioConfig::default());
    }
    cfg.validate(|c| crate::soap::emulated_fault(c).is_some())?;
    Ok(cfg)
}

fn flag(q: Option<&str>, key: &str) -> bool {
    matches!(query(q, key), Some("1") | Some("true"))
}

/// The commands `dkd import|report|toets|sweep|audit|sync|signals` forward here while `dkd serve` holds the
/// store (sled allows one process per store).
async fn control(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let q = req.uri().query().map(str::to_owned);
    let q = q.as_deref();
    let today = time::OffsetDateTime::now_utc().date();
    match (req.method().clone(), path.as_str()) {
        (hyper::Method::GET, "/identity") => reply(
            StatusCode::OK,
            json!(Served {
                store: state.identity.clone(),
                path: state
                    .store
                    .dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                role: state.role.to_owned(),
            }),
        ),
        (hyper::Method::GET, "/report") => {
            match crate::report::build(&state.store, state.window_days, today) {
                Ok(r) => reply(StatusCode::OK, json!(r)),
                Err(e) => internal(&e),
            }
        }
        (hyper::Method::GET, "/report/ib") => match &state.ib {
            None => error(StatusCode::NOT_FOUND, "this dkd does not play the IB role"),
            Some(settings) => match crate::report::build_ib(&state.store, settings, today) {
                Ok(r) => reply(StatusCode::OK, json!(r)),
                Err(e) => internal(&e),
            },
        },
        (hyper::Method::GET, "/scenario") => match &state.scenario {
            None => error(StatusCode::NOT_FOUND, NO_SCENARIO),
            Some(live) => reply(StatusCode::OK, scenario_json(live)),
        },
        (hyper::Method::PUT, "/scenario") => {
            let Some(live) = &state.scenario else {
                return error(StatusCode::CONFLICT, NO_SCENARIO);
            };
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    )
                }
            };
            match parse_scenario(&body) {
                Ok(cfg) => {
                    live.set(cfg);
                    tracing::warn!(scenario = %live.summary(), "scenario switched through the admin API");
                    reply(StatusCode::OK, scenario_json(live))
                }
                Err(why) => error(StatusCode::BAD_REQUEST, &why),
            }
        }
        (hyper::Method::POST, "/sweep") => {
            let (store, window, purge, dry) = (
                state.store.clone(),
                state.window_days,
                state.purge,
                flag(q, "dry_run"),
            );
            blocking(move || {
                match crate::gemeente::service::sweep(&store, window, purge, today, dry) {
                    Ok(r) => reply(StatusCode::OK, json!(r)),
                    Err(e) => internal(&e),
                }
            })
            .await
        }
        (method, p) if p == "/sync" || p.starts_with("/sync/") => {
            use crate::gemeente::push::SyncAction;
            let action = match (method, p) {
                (hyper::Method::GET, "/sync") => SyncAction::Status,
                (hyper::Method::POST, "/sync/retry-parked") => SyncAction::RetryParked,
                (hyper::Method::POST, "/sync/full") => SyncAction::Full,
                _ => {
                    return error(
                        StatusCode::NOT_FOUND,
                        "use GET /sync, POST /sync/retry-parked or POST /sync/full",
                    )
                }
            };
            let store = state.store.clone();
            match tokio::task::spawn_blocking(move || crate::gemeente::push::sync(&store, action))
                .await
            {
                Ok(Ok(r)) => reply(StatusCode::OK, json!(r)),
                Ok(Err(e)) => internal(&e),
                Err(e) => internal(&e),
            }
        }
        (hyper::Method::POST, "/signals/fetch") => match &state.fetcher {
            None => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "signals.portal is not configured",
            ),
            Some(f) => reply(StatusCode::OK, json!(f.fetch().await)),
        },
        (hyper::Method::GET, "/signals") => match state.store.cases() {
            Ok(c) => reply(StatusCode::OK, json!(c)),
            Err(e) => internal(&e),
        },
        (hyper::Method::POST, "/signals/sick-day") => {
            let bsn = query(q, "bsn").and_then(|b| Bsn::parse(b).ok());
            let day = query(q, "datum").and_then(|d| {
                crate::suwiml::types::Datum::parse(d)
                    .ok()
                    .filter(|x| x.to_date().is_some())
            });
            match (bsn, day) {
                (Some(b), Some(d)) => match state.store.set_first_sick_day(&b, d) {
                    Ok(n) => reply(StatusCode::OK, json!({ "cases": n })),
                    Err(e) => internal(&e),
                },
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "bsn (9 digits, 11-test) and datum (YYYYMMDD) are required",
                ),
            }
        }
        (hyper::Method::POST, "/signals/publish") => {
            let Some(settings) = state.ib.clone() else {
                return error(StatusCode::NOT_FOUND, "this dkd does not play the IB role");
            };
            let Some(gemeente) = query(q, "gemeente").map(str::to_owned) else {
                return error(StatusCode::BAD_REQUEST, "gemeente is required");
            };
            let name = query(q, "name").unwrap_or("upload").to_owned();
            let body = match Limited::new(req.into_body(), MAX_SIGNAL_FILE)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "signal file larger than 64 MiB",
                    )
                }
            };
            let store = state.store.clone();
            blocking(move || {
                use crate::ib::signals::{publish_signals, PublishError};
                match publish_signals(&store, &settings, &gemeente, &name, &body, today) {
                    Ok(p) => reply(StatusCode::OK, json!(p)),
                    Err(e @ PublishError::UnknownGemeente(_)) => {
                        error(StatusCode::NOT_FOUND, e.to_string())
                    }
                    Err(e @ PublishError::File(_)) => {
                        error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                    }
                    Err(PublishError::Store(e)) => internal(&e),
                }
            })
            .await
        }
        (hyper::Method::GET, "/audit") => {
            let since = query(q, "since").and_then(|s| s.parse().ok()).unwrap_or(0);
            match state
                .store
                .audit_since(since)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(r) => reply(StatusCode::OK, json!(r)),
                Err(e) => internal(&e),
            }
        }
        (hyper::Method::GET, p) if p.starts_with("/toets/") => {
            let Ok(bsn) = Bsn::parse(&p["/toets/".len()..]) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "not a valid BSN (9 digits, 11-test)",
                );
            };
            let datum = match query(q, "datum") {
                None => today,
                Some(d) => match crate::suwiml::types::Datum::parse(d)
                    .ok()
                    .and_then(|d| d.to_date())
                {
                    Some(d) => d,
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "datum must be a calendar date YYYYMMDD",
                        )
                    }
                },
            };
            match crate::gemeente::service::toets(&state.store, &bsn, datum, state.window_days) {
                Ok(hits) => reply(StatusCode::OK, json!(hits)),
                Err(e) => internal(&e),
            }
        }
        (hyper::Method::POST, "/imports") => {
            use crate::import::{Format, Mode, Options};
            let format = match query(q, "format") {
                Some("xml") => Format::Xml,
                _ => Format::Csv,
            };
            let mode = match query(q, "mode") {
                Some("full") => Mode::Full,
                _ => Mode::Delta,
            };
            let name = query(q, "name").unwrap_or("upload").to_owned();
            let body = match Limited::new(req.into_body(), MAX_IMPORT).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "import file larger than 1 GiB",
                    )
                }
            };
            let opts = Options {
                format,
                mode,
                gemeente: query(q, "gemeente").map(str::to_owned),
                dry_run: flag(q, "dry_run"),
                strict: flag(q, "strict"),
                rules: state.rules.clone(),
                purge: state.purge,
                window_days: state.window_days,
                today,
            };
            let store = state.store.clone();
            let result = tokio::task::spawn_blocking(move || {
                crate::import::import(&store, &name, &body, &opts, &mut |_| {})
            })
            .await;
            match result {
                Ok(Ok(report)) => reply(StatusCode::OK, json!(report)),
                Ok(Err(crate::import::ImportError::Usage(m)))
                | Ok(Err(crate::import::ImportError::Structure(m))) => {
                    error(StatusCode::UNPROCESSABLE_ENTITY, m)
                }
                Ok(Err(e)) => internal(&e),
                Err(e) => internal(&e),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "use /persons/{bsn}, /identity, /imports, /report, /toets/{bsn}, /sweep, /audit, /sync",
        ),
    }
}

const MAX_BODY: usize = 256 * 1024;

fn reply(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string() + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, json!({ "error": msg.into() }))
}

/// Serves the admin API on `listener` until `shutdown`; `tls` is required off loopback.
pub async fn run(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(listener, Options::operator("admin", tls), state, shutdown).await
}

impl Handler for AdminState {
    type Error = std::convert::Infallible;

    async fn call(
        self: Arc<Self>,
        peer: Arc<Peer>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Self::Error> {
        // Plain HTTP only on loopback (`app` binds it so); over TLS the certificate's OIN must
        // be an admin OIN.
        let allowed = !peer.tls
            || peer
                .oin
                .as_deref()
                .is_some_and(|o| self.allowed_oins.contains(o));
        Ok(if allowed {
            handle(&self, req).await
        } else {
            error(
                StatusCode::FORBIDDEN,
                "the client certificate's OIN is not an allowed admin OIN",
            )
        })
    }
}

fn internal(e: &dyn std::fmt::Display) -> Response<Full<Bytes>> {
    tracing::error!(error = %e, "admin control request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}"))
}

/// Runs store work off the async workers: a change set waits while another (an import, the
/// sweep) is open, which can take seconds.
async fn blocking(
    f: impl FnOnce() -> Response<Full<Bytes>> + Send + 'static,
) -> Response<Full<Bytes>> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| internal(&e))
}

async fn handle(state: &Arc<AdminState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let Some(bsn_s) = path.strip_prefix("/persons/") else {
        return control(state, req).await;
    };
    let bsn = match Bsn::parse(bsn_s) {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{bsn_s:?} is not a valid BSN (9 digits, 11-test)"),
            )
        }
    };
    let gemeente = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("gemeente=")))
        .map(str::to_owned);
    let st = state.clone();
    match *req.method() {
        hyper::Method::GET => blocking(move || get(&st, &bsn)).await,
        hyper::Method::PUT => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body larger than {MAX_BODY} bytes"),
                    )
                }
            };
            blocking(move || put(&st, &bsn, &body)).await
        }
        hyper::Method::DELETE => blocking(move || delete(&st, &bsn, gemeente.as_deref())).await,
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "GET, PUT or DELETE"),
    }
}

fn get(state: &AdminState, bsn: &Bsn) -> Response<Full<Bytes>> {
    match state.store.entries(bsn) {
        Ok(entries) if entries.is_empty() => {
            error(StatusCode::NOT_FOUND, "not in the verwijsindex")
        }
        Ok(entries) => {
            let mutated: Vec<_> = entries
                .iter()
                .map(|e| json!({ "gemeente": e.gemeente, "mutated_at": e.mutated_at }))
                .collect();
            let person = crate::store::merge(entries);
            reply(
                StatusCode::OK,
                json!({ "person": person, "entries": mutated }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "admin GET failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store failure")
        }
    }
}

fn put(state: &AdminState, bsn: &Bsn, body: &[u8]) -> Response<Full<Bytes>> {
    let person: Person = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a person record: {e}")),
    };
    if person.bsn != *bsn {
        return error(
            StatusCode::BAD_REQUEST,
            "the BSN in the body differs from the one in the path",
        );
    }
    let mut problems: Vec<serde_json::Value> = Vec::new();
    if let Err(errs) = person.validate() {
        problems.extend(
            errs.into_iter()
                .map(|e| json!({ "field": e.field, "value": e.value, "reason": e.reason })),
        );
    }
    let today = time::OffsetDateTime::now_utc().date();
    for (field, value, reason) in domain_checks(&person, &state.rules, today) {
        problems.push(json!({ "field": field, "value": value, "reason": reason }));
    }
    if !problems.is_empty() {
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "the record was refused", "problems": problems }),
        );
    }
    match state
        .store
        .put(&person, "admin")
        .and_then(|c| state.store.flush().map(|_| c))
    {
        Ok(c) => reply(StatusCode::OK, json!(c)),
        Err(e) => {
            tracing::error!(error = %e, "admin PUT failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store failure")
        }
    }
}

fn delete(state: &AdminState, bsn: &Bsn, gemeente: Option<&str>) -> Response<Full<Bytes>> {
    let entries = match state.store.entries(bsn) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "admin DELETE failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "store failure");
        }
    };
    let mut changes = state.store.changes("admin");
    let mut removed = 0u64;
    for e in entries
        .iter()
        .filter(|e| gemeente.is_none_or(|g| g == e.gemeente))
    {
        match changes.remove(bsn, &e.gemeente, !state.purge) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "admin DELETE failed");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "store failure");
            }
        }
    }
    if removed == 0 {
        return error(StatusCode::NOT_FOUND, "not in the verwijsindex");
    }
    match changes
        .commit()
        .and_then(|c| state.store.flush().map(|_| c))
    {
        Ok(c) => reply(StatusCode::OK, json!(c)),
        Err(e) => {
            tracing::error!(error = %e, "admin DELETE failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "store failure")
        }
    }
}
