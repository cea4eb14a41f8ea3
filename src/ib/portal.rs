//! The IB role's portal for gemeenten: `GET /portal/{gemeente}/lksri` lists the daily "Toets LKS"
//! reports (JSON), `GET /portal/{gemeente}/lksri/{file}` serves one as CSV (layout in
//! `crate::signals`). Served on the ops listener to a loopback peer, and on the service listener
//! (mutual TLS) to a client whose OIN may deliver for that gemeente.

use crate::ib::IbSettings;
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A process on this machine (ops listener, loopback peer).
    Local,
    /// A mutual-TLS client with this OIN (if its certificate carried one).
    Tls(Option<&'a str>),
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

fn text(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

/// Answers a `/portal/...` path.
pub fn serve(
    store: &Store,
    settings: &IbSettings,
    path: &str,
    caller: Caller<'_>,
) -> Response<Full<Bytes>> {
    let rest = path.strip_prefix("/portal/").unwrap_or("");
    let mut parts = rest.splitn(3, '/');
    let (Some(code), Some("lksri")) = (parts.next(), parts.next()) else {
        return text(
            StatusCode::NOT_FOUND,
            "use /portal/{gemeente}/lksri and /portal/{gemeente}/lksri/{file}",
        );
    };
    let file = parts.next().filter(|f| !f.is_empty());
    let Some(g) = settings.gemeenten.iter().find(|g| g.code == code) else {
        return text(StatusCode::NOT_FOUND, "unknown gemeente");
    };
    if let Caller::Tls(oin) = caller {
        if !oin.is_some_and(|o| g.oins.iter().any(|x| x == o)) {
            return text(
                StatusCode::FORBIDDEN,
                "the client certificate's OIN may not read this gemeente's reports",
            );
        }
    }
    let days = match store.ib_signal_days(&g.code) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "portal: signals unreadable");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reports cannot be read now",
            );
        }
    };
    match file {
        None => {
            let list: Vec<serde_json::Value> = days
                .iter()
                .map(|(day, n)| {
                    serde_json::json!({
                        "file": crate::signals::file_name(&g.name, day),
                        "date": day,
                        "signals": n,
                    })
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "gemeente": g.code, "reports": list }).to_string() + "\n",
            )
        }
        Some(f) => {
            let day = crate::signals::day_of(f).filter(|d| {
                crate::signals::file_name(&g.name, d) == f && days.iter().any(|(x, _)| x == d)
            });
            let Some(day) = day else {
                return text(StatusCode::NOT_FOUND, "no such report");
            };
            match store.ib_signals(&g.code, day) {
                Ok(signals) => {
                    let mut r = reply(
                        StatusCode::OK,
                        "text/csv; charset=utf-8",
                        crate::signals::write_csv(&signals),
                    );
                    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!(
                        "attachment; filename=\"{f}\""
                    )) {
                        r.headers_mut().insert("content-disposition", v);
                    }
                    r
                }
                Err(e) => {
                    tracing::error!(error = %e, "portal: signals unreadable");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "reports cannot be read now",
                    )
                }
            }
        }
    }
}
