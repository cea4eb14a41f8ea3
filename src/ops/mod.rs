//! The ops listener (plain HTTP, default 127.0.0.1:9090): `/healthz`, `/readyz`, `/metrics` and a
//! status page at `/` for people. Tells operators they are unreachable, incomplete or out of
//! date before the IB does.

pub mod logging;
pub mod metrics;

use crate::http::serve::{serve, Handler, Options, Peer};
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use metrics::Metrics;
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the readiness checks compare against.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// The server certificate must be valid for at least this many more days.
    pub min_cert_days: i64,
    /// The last import must be at most this many hours old; 0 disables the check.
    pub max_import_age_hours: u64,
    /// The LKS look-back (for the status page figures).
    pub window_days: u32,
    /// With push on: the oldest undelivered update may be at most this old (0: not checked).
    pub max_outbox_age_secs: i64,
}

/// Shared state of the ops listener.
pub struct OpsState {
    /// The verwijsindex.
    pub store: Store,
    /// Request metrics, written by the service listener.
    pub metrics: Arc<Metrics>,
    /// DER of the server certificate in use.
    pub server_cert: Vec<u8>,
    /// Thresholds for `/readyz`.
    pub thresholds: Thresholds,
    /// The public URL (for the status page).
    pub public_url: String,
    /// Process start.
    pub started: Instant,
    /// IB role: its settings (the portal).
    pub ib: Option<crate::ib::IbSettings>,
    /// Gemeente role with `scenario.enabled`: shown on `/readyz` and the status page.
    pub scenario: Option<Arc<crate::chain::scenario::Live>>,
    cache: Mutex<Option<(Instant, Vec<crate::report::GemeenteReport>)>>,
    ib_cache: Mutex<Option<(Instant, Vec<crate::report::IbReport>)>>,
}

impl OpsState {
    /// New state.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        server_cert: Vec<u8>,
        thresholds: Thresholds,
        public_url: String,
    ) -> OpsState {
        OpsState {
            store,
            metrics,
            server_cert,
            thresholds,
            public_url,
            started: Instant::now(),
            ib: None,
            scenario: None,
            cache: Mutex::new(None),
            ib_cache: Mutex::new(None),
        }
    }

    /// The Aanlevermonitor figures, computed at most once a minute (they walk the index).
    fn figures(&self) -> Vec<crate::report::GemeenteReport> {
        if let Ok(g) = self.cache.lock() {
            if let Some((at, v)) = g.as_ref() {
                if at.elapsed() < Duration::from_secs(60) {
                    return v.clone();
                }
            }
        }
        let today = time::OffsetDateTime::now_utc().date();
        let v = crate::report::build(&self.store, self.thresholds.window_days, today)
            .unwrap_or_default();
        if let Ok(mut g) = self.cache.lock() {
            *g = Some((Instant::now(), v.clone()));
        }
        v
    }

    /// IB role: the IB's Aanlevermonitor (`dkd report` in the IB role), at most once a minute.
    fn ib_figures(&self, settings: &crate::ib::IbSettings) -> Vec<crate::report::IbReport> {
        if let Ok(g) = self.ib_cache.lock() {
            if let Some((at, v)) = g.as_ref() {
                if at.elapsed() < Duration::from_secs(60) {
                    return v.clone();
                }
            }
        }
        let today = time::OffsetDateTime::now_utc().date();
        let v = crate::report::build_ib(&self.store, settings, today).unwrap_or_default();
        if let Ok(mut g) = self.ib_cache.lock() {
            *g = Some((Instant::now(), v.clone()));
        }
        v
    }

    /// The outbox, when this instance pushes its index to the IB.
    fn outbox(&self) -> Option<crate::store::outbox::OutboxStatus> {
        if !self.store.outbox_enabled() {
            return None;
        }
        self.store.outbox_status().ok()
    }

    fn cert_days(&self) -> Option<i64> {
        crate::certs::days_left(&self.server_cert, time::OffsetDateTime::now_utc()).ok()
    }

    fn last_import_age(&self) -> Option<i64> {
        let last = self.store.imports().ok()?.into_iter().map(|i| i.at).max()?;
        Some(time::OffsetDateTime::now_utc().unix_timestamp() - last)
    }

    /// The readiness checks: name, ok, detail.
    pub fn checks(&self) -> Vec<(&'static str, bool, String)> {
        let mut out = Vec::new();
        match self.store.check_writable() {
            Ok(()) => out.push(("store", true, "readable and writable".to_owned())),
            Err(e) => out.push(("store", false, e.to_string())),
        }
        let audit = self.store.audit_status();
        let mut detail = format!(
            "{} of {} records queued for the writer",
            audit.queued, audit.capacity
        );
        if let Some(e) = &audit.failing {
            detail.push_str(&format!("; writing fails: {e}"));
        } else if !audit.keeps_up() {
            detail.push_str(": the trail does not keep up");
        }
        out.push(("audit", audit.keeps_up(), detail));
        match self.cert_days() {
            Some(d) if d >= self.thresholds.min_cert_days => {
                out.push(("certificate", true, format!("{d} days left")))
            }
            Some(d) => out.push((
                "certificate",
                false,
                format!(
                    "{d} days left, fewer than {}",
                    self.thresholds.min_cert_days
                ),
            )),
            None => out.push((
                "certificate",
                false,
                "the server certificate cannot be read".to_owned(),
            )),
        }
        if let Some(o) = self.outbox() {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let age = o.oldest_pending_at.map(|t| now - t).unwrap_or(0);
            let max = self.thresholds.max_outbox_age_secs;
            let ok = o.parked == 0 && (max == 0 || age <= max);
            let mut detail = format!("{} pending, {} parked", o.pending, o.parked);
            if age > 0 {
                detail.push_str(&format!(", oldest {age} s"));
            }
            if let (false, Some(e)) = (ok, &o.last_error) {
                detail.push_str(&format!(": {e}"));
            }
            out.push(("push", ok, detail));
        }
        if let Some(live) = &self.scenario {
            // Ready (a test waits for it), but never mistakable for a well-behaved gemeente.
            let detail = if live.is_active() {
                format!("ACTIVE, answers wrongly on purpose: {}", live.summary())
            } else {
                "enabled, none active (PUT /scenario on the admin API sets one)".to_owned()
            };
            out.push(("scenario", true, detail));
        }
        if self.thresholds.max_import_age_hours > 0 {
            let max = self.thresholds.max_import_age_hours as i64 * 3600;
            match self.last_import_age() {
                Some(age) if age <= max => {
                    out.push(("last_import", true, format!("{} hours ago", age / 3600)))
                }
                Some(age) => out.push((
                    "last_import",
                    false,
                    format!(
                        "{} hours ago, more than {}",
                        age / 3600,
                        self.thresholds.max_import_age_hours
                    ),
                )),
                None => out.push(("last_import", false, "no import recorded".to_owned())),
            }
        }
        out
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Serves the ops endpoints until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<OpsState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(listener, Options::operator("ops", None), state, shutdown).await
}

impl Handler for OpsState {
    type Error = std::convert::Infallible;

    async fn call(
        self: Arc<Self>,
        peer: Arc<Peer>,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Self::Error> {
        Ok(route(&self, peer.addr, req))
    }
}

fn route(
    state: &OpsState,
    peer: std::net::SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        p if p.starts_with("/portal/") => match &state.ib {
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "the portal is served in the IB role\n".into(),
            ),
            // Plain HTTP carries no identity: only a process on this machine may read it here;
            // gemeenten use the service listener (mutual TLS, their OIN).
            Some(_) if !peer.ip().is_loopback() => reply(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                "the portal on the ops listener is for 127.0.0.1; use the service listener with mutual TLS\n".into(),
            ),
            Some(settings) => crate::ib::portal::serve(&state.store, settings, p, crate::ib::portal::Caller::Local),
        },
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            json!({ "status": "ok" }).to_string() + "\n",
        ),
        "/readyz" => {
            let checks = state.checks();
            let ready = checks.iter().all(|(_, ok, _)| *ok);
            let body = json!({
                "status": if ready { "ready" } else { "not ready" },
                "checks": checks.iter().map(|(n, ok, d)| json!({ "name": n, "ok": ok, "detail": d })).collect::<Vec<_>>(),
            });
            reply(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                "application/json",
                body.to_string() + "\n",
            )
        }
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(state),
        ),
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page(state),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: /healthz /readyz /metrics /\n".into(),
        ),
    }
}

fn metrics_text(state: &OpsState) -> String {
    let mut s = String::with_capacity(4096);
    state.metrics.render(&mut s);
    s.push_str(&format!(
        "# HELP dkd_audit_queued Audit records waiting for the writer (room taken in the queue).\n# TYPE dkd_audit_queued gauge\ndkd_audit_queued {}\n",
        state.store.audit_status().queued
    ));
    s.push_str("# HELP dkd_persons_in_index Persons in the verwijsindex, per gemeente.\n# TYPE dkd_persons_in_index gauge\n");
    for g in state.figures() {
        s.push_str(&format!(
            "dkd_persons_in_index{{gemeente=\"{}\"}} {}\n",
            g.gemeente, g.persons
        ));
    }
    if let Some(age) = state.last_import_age() {
        s.push_str(&format!("# HELP dkd_last_import_age_seconds Seconds since the last import.\n# TYPE dkd_last_import_age_seconds gauge\ndkd_last_import_age_seconds {age}\n"));
    }
    if let Ok(secs) =
        crate::certs::seconds_left(&state.server_cert, time::OffsetDateTime::now_utc())
    {
        s.push_str(&format!("# HELP dkd_certificate_expiry_seconds Seconds until the server certificate expires.\n# TYPE dkd_certificate_expiry_seconds gauge\ndkd_certificate_expiry_seconds {secs}\n"));
    }
    if let Some(o) = state.outbox() {
        let age = o
            .oldest_pending_at
            .map(|t| (time::OffsetDateTime::now_utc().unix_timestamp() - t).max(0))
            .unwrap_or(0);
        s.push_str(&format!(
            "# HELP dkd_outbox_pending IBVerwijsindex updates waiting to be delivered to the IB.\n# TYPE dkd_outbox_pending gauge\ndkd_outbox_pending {}\n\
             # HELP dkd_outbox_parked Updates the IB refused (see dkd sync --status).\n# TYPE dkd_outbox_parked gauge\ndkd_outbox_parked {}\n\
             # HELP dkd_outbox_oldest_pending_age_seconds Age of the oldest undelivered update (0 when none).\n# TYPE dkd_outbox_oldest_pending_age_seconds gauge\ndkd_outbox_oldest_pending_age_seconds {age}\n\
             # HELP dkd_outbox_delivered_total Updates the IB acknowledged.\n# TYPE dkd_outbox_delivered_total counter\ndkd_outbox_delivered_total {}\n",
            o.pending, o.parked, o.sent
        ));
    }
    let ready = state.checks().iter().all(|(_, ok, _)| *ok);
    s.push_str(&format!(
        "# HELP dkd_ready Whether /readyz passes.\n# TYPE dkd_ready gauge\ndkd_ready {}\n",
        u8::from(ready)
    ));
    s.push_str(&format!(
        "# HELP dkd_build_info Build information.\n# TYPE dkd_build_info gauge\ndkd_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(&format!("# HELP dkd_uptime_seconds Seconds since start.\n# TYPE dkd_uptime_seconds gauge\ndkd_uptime_seconds {}\n", state.started.elapsed().as_secs()));
    s
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

fn date(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                d.year(),
                d.month() as u8,
                d.day(),
                d.hour(),
                d.minute()
            )
        })
        .unwrap_or_else(|| "–".into())
}

/// The gemeente's own Aanlevermonitor: what the IB will see, per gemeente in this store.
fn gemeente_monitor(h: &mut String, rows: &[crate::report::GemeenteReport]) {
    h.push_str("<h2>Aanlevermonitor</h2><table id=\"monitor\"><tr><th>gemeente</th><th>persons in index</th><th>oldest mutation</th><th>newest mutation</th><th>leaving in 30 days</th><th>last import</th></tr>");
    for g in rows {
        let imp = g
            .last_import
            .as_ref()
            .map(|i| {
                format!(
                    "{} {} ({} rows, {} rejected)",
                    date(Some(i.at)),
                    esc(&i.file),
                    i.rows,
                    i.rejected
                )
            })
            .unwrap_or_else(|| "–".into());
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.gemeente),
            g.persons,
            date(g.oldest_mutation),
            date(g.newest_mutation),
            g.leaving_30_days,
            imp
        ));
    }
    h.push_str("</table>");
}

/// The IB's Aanlevermonitor: per gemeente and cluster how it delivers, what the verwijsindex
/// holds, and whether routing to it works (the figures of `dkd report` in the IB role).
fn ib_monitor(h: &mut String, rows: &[crate::report::IbReport]) {
    h.push_str("<h2>Aanlevermonitor</h2><table id=\"ib-monitor\"><tr><th>gemeente</th><th>name</th><th>delivery</th><th>cluster</th><th>BSNs in verwijsindex</th><th>oldest mutation</th><th>newest mutation</th><th>updates received (changed)</th><th>routed queries 31 days: ok</th><th>failed</th><th>last reachability</th><th>last delivery</th><th>recent errors</th></tr>");
    for r in rows {
        let delivery = if r.stale {
            format!(
                "{} <span class=\"bad stale\">STALE</span>",
                esc(&r.delivery)
            )
        } else {
            esc(&r.delivery)
        };
        let reach = match &r.last_reachability {
            None => "–".to_owned(),
            Some(x) => match &x.error {
                None => format!("<span class=\"ok\">{} reachable</span>", date(Some(x.at))),
                Some(e) => format!(
                    "<span class=\"bad\">{} FAILED: {}</span>",
                    date(Some(x.at)),
                    esc(e)
                ),
            },
        };
        let delivered = match (r.last_delivery, r.delivery_rows) {
            (Some(at), Some(n)) => format!("{} ({n} rows)", date(Some(at))),
            (Some(at), None) => date(Some(at)),
            _ => "–".to_owned(),
        };
        let errors: Vec<String> = r.recent_errors.iter().map(|e| esc(e)).collect();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{delivery}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td{}>{}</td><td>{reach}</td><td>{delivered}</td><td>{}</td></tr>",
            esc(&r.gemeente),
            esc(&r.name),
            esc(&r.cluster),
            r.bsns,
            date(r.oldest_mutation),
            date(r.newest_mutation),
            r.updates_received,
            r.updates_changed,
            r.queries_succeeded,
            if r.queries_failed > 0 { " class=\"bad\"" } else { "" },
            r.queries_failed,
            if errors.is_empty() { "–".to_owned() } else { errors.join("<br>") }
        ));
    }
    h.push_str("</table>");
}

fn status_page(state: &OpsState) -> String {
    let checks = state.checks();
    let ready = checks.iter().all(|(_, ok, _)| *ok);
    let mut h = String::with_capacity(8192);
    h.push_str("<!DOCTYPE html><html lang=\"nl\"><head><meta charset=\"utf-8\"><title>dkd status</title><style>");
    h.push_str("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.ok{color:#176b2c}.bad{color:#b00020;font-weight:bold}h1 small{font-weight:normal;color:#666}");
    h.push_str("</style></head><body>");
    h.push_str(&format!(
        "<h1>dkd <small>{}</small></h1>",
        env!("CARGO_PKG_VERSION")
    ));
    if let Some(live) = state.scenario.as_ref().filter(|l| l.is_active()) {
        h.push_str(&format!(
            "<p id=\"scenario\" class=\"bad\" style=\"background:#fde7ea;padding:.6em\">SCENARIO ACTIVE: this gemeente answers wrongly on purpose ({})</p>",
            esc(&live.summary())
        ));
    }
    h.push_str(&format!(
        "<p id=\"overall\" class=\"{}\">{}</p>",
        if ready { "ok" } else { "bad" },
        if ready { "Ready" } else { "NOT READY" }
    ));
    h.push_str(&format!(
        "<p>Endpoint: <code>{}</code> · up {} s</p>",
        esc(&state.public_url),
        state.started.elapsed().as_secs()
    ));
    h.push_str(
        "<h2>Checks</h2><table id=\"checks\"><tr><th>check</th><th>result</th><th>detail</th></tr>",
    );
    for (n, ok, d) in &checks {
        h.push_str(&format!(
            "<tr><td>{n}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            if *ok { "ok" } else { "bad" },
            if *ok { "ok" } else { "FAILED" },
            esc(d)
        ));
    }
    h.push_str("</table>");
    if let Some(d) = state.cert_days() {
        h.push_str(&format!(
            "<p id=\"cert\">Server certificate: {d} days left</p>"
        ));
    }
    match &state.ib {
        Some(settings) => ib_monitor(&mut h, &state.ib_figures(settings)),
        None => gemeente_monitor(&mut h, &state.figures()),
    }
    h.push_str("<h2>Requests</h2><table id=\"requests\"><tr><th>operation</th><th>outcome</th><th>count</th></tr>");
    for (op, outcome, n) in state.metrics.totals() {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
            esc(&op),
            esc(&outcome)
        ));
    }
    h.push_str("</table><h2>Recent faults</h2><table id=\"faults\"><tr><th>time</th><th>code</th><th>caller OIN</th></tr>");
    for f in state.metrics.recent_faults() {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            date(Some(f.at)),
            esc(&f.code),
            esc(&f.oin)
        ));
    }
    h.push_str("</table>");
    let cases = state.store.cases().unwrap_or_default();
    if !cases.is_empty() {
        let today = time::OffsetDateTime::now_utc().date();
        h.push_str("<h2>Vangnetters (Toets LKS signals)</h2><table id=\"cases\"><tr><th>BSN</th><th>gemeente</th><th>signal</th><th>first sick day</th><th>milestones</th></tr>");
        for r in crate::report::cases(&cases, today) {
            let ms: Vec<String> = r
                .milestones
                .iter()
                .map(|m| {
                    let class = match m.state {
                        crate::signals::MilestoneState::Overdue => " class=\"bad overdue\"",
                        crate::signals::MilestoneState::Next => " class=\"next\"",
                        crate::signals::MilestoneState::Later => "",
                    };
                    format!("<span{class}>week {}: {}</span>", m.week, esc(&m.date))
                })
                .collect();
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.case.bsn.masked()),
                esc(&r.case.gemeente),
                esc(r.case.signal_date.as_str()),
                r.case
                    .first_sick_day
                    .as_ref()
                    .map(|d| esc(d.as_str()))
                    .unwrap_or_else(|| "–".into()),
                ms.join(" · ")
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}
