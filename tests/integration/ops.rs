//! The ops listener: health, readiness (each check failing on its own), metrics that move, the
//! audit trail, the status page in a real browser, and graceful shutdown.

use crate::common::*;
use std::sync::Arc;

#[tokio::test]
async fn health_and_readiness_pass_on_a_healthy_instance() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        assert_eq!(http_get(server.ops, "/healthz").await.0, 200);
        let (status, body) = http_get(server.ops, "/readyz").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let names: Vec<&str> = v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, vec!["store", "audit", "certificate"]);
    }
}

#[tokio::test]
async fn readiness_fails_on_a_certificate_about_to_expire() {
    // The test server certificate is valid for 30 days.
    let server = Server::start_with(|c| c.ops.min_cert_days = 60).await;
    let (status, body) = http_get(server.ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let cert = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "certificate")
        .expect("certificate check");
    assert_eq!(cert["ok"], false);
    assert!(
        cert["detail"]
            .as_str()
            .is_some_and(|d| d.contains("fewer than 60")),
        "{cert}"
    );
    let store = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "store")
        .expect("store");
    assert_eq!(store["ok"], true, "only the failing check fails");
}

#[tokio::test]
async fn readiness_fails_when_the_last_import_is_too_old() {
    let server = Server::start_with(|c| c.ops.max_import_age_hours = 24).await;
    let (status, body) = http_get(server.ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no import recorded"), "{body}");
    // An import now makes it pass.
    let rec = dkd::store::ImportRecord {
        at: time::OffsetDateTime::now_utc().unix_timestamp(),
        file: "x.csv".into(),
        gemeenten: vec!["0363".into()],
        mode: "full".into(),
        rows: 1,
        rejected: 0,
        added: 1,
        changed: 0,
        removed: 0,
        unchanged: 0,
    };
    server.store.record_import(&rec).expect("record");
    assert_eq!(http_get(server.ops, "/readyz").await.0, 200);
}

#[tokio::test]
async fn metrics_move_with_requests() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let before = http_get(server.ops, "/metrics").await.1;
        assert!(before.contains("dkd_build_info{version=\""), "{before}");
        assert!(before.contains("dkd_certificate_expiry_seconds "));
        assert!(
            before.contains("dkd_persons_in_index{gemeente=\"0363\"}"),
            "{before}"
        );
        post(
            &server.url,
            &Req::new(&server.url, &server.known_bsn()).xml(),
        )
        .await;
        post(&server.url, &Req::new(&server.url, "123456781").xml()).await;
        let after = http_get(server.ops, "/metrics").await.1;
        assert!(
            after.contains(
                "dkd_requests_total{operation=\"GSDReintegratieInfo\",outcome=\"found\"} 1\n"
            ),
            "{after}"
        );
        assert!(
            after.contains("dkd_faults_total{code=\"0012\"} 1\n"),
            "{after}"
        );
        assert!(
            after.contains("dkd_request_duration_seconds_count 2\n"),
            "{after}"
        );
    }
}

#[tokio::test]
async fn every_answer_is_in_the_audit_trail() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let bsn = server.known_bsn();
        let req = Req::new(&server.url, &bsn);
        post(&server.url, &req.xml()).await;
        post_as("unlisted", &server.url, &Req::new(&server.url, &bsn).xml()).await;
        let rows: Vec<_> = server
            .store
            .audit_since(0)
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].bsn.map(|b| b.to_string()), Some(bsn.clone()));
        assert_eq!(rows[0].tls_oin.as_deref(), Some(ALLOWED_OIN));
        assert_eq!(rows[0].from_oin.as_deref(), Some(ALLOWED_OIN));
        assert_eq!(rows[0].message_id, req.message_id);
        assert_eq!(rows[0].outcome, "found");
        assert_eq!(
            (rows[1].tls_oin.as_deref(), rows[1].code.as_deref()),
            (Some(UNLISTED_OIN), Some("0002"))
        );
        let pruned = server
            .store
            .prune_audit(time::OffsetDateTime::now_utc().unix_timestamp() + 1)
            .expect("prune");
        assert_eq!(pruned, 2);
        assert_eq!(server.store.audit_since(0).count(), 0);
    }
}

/// The DOM of `url` as headless Chromium renders it; `None` (skipped) without chromium.
async fn chromium_dom(url: String) -> Option<String> {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
    else {
        skip("status page test: no chromium (apt-get install chromium)");
        return None;
    };
    let dir = tempfile::tempdir().expect("profile");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", dir.path().display()))
            .arg("--virtual-time-budget=3000")
            .arg("--dump-dom")
            .arg(url)
            .output()
    })
    .await
    .expect("join")
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("id=\"overall\""),
        "page rendered: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dom)
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "chromium",
    ignore = "needs chromium (apt-get install chromium)"
)]
async fn the_status_page_shows_figures_in_a_real_browser() {
    let server = Server::start().await;
    post(&server.url, &Req::new(&server.url, "123456781").xml()).await;
    let Some(dom) = chromium_dom(format!("http://{}/", server.ops)).await else {
        return;
    };
    assert!(dom.contains(">Ready<"), "{dom}");
    assert!(
        dom.contains("<td>0363</td>"),
        "Aanlevermonitor row for 0363: {dom}"
    );
    assert!(dom.contains("<td>0012</td>"), "recent fault shown: {dom}");
    assert!(dom.contains("days left"), "certificate expiry shown: {dom}");
}

/// An IB with a webservice gemeente (0363: two BSNs pushed, one routed query answered, then one
/// failed) and a batch gemeente that has delivered nothing (0014).
async fn ib_with_figures() -> crate::chain::Node {
    use crate::chain::{free_port, ib_config, start};
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = ib_config(dir.path(), free_port(), &[("0363", free_port())]);
    cfg.ib.gemeenten.push(dkd::config::IbGemeenteConfig {
        code: "0014".into(),
        name: "Gemeente Groningen".into(),
        oins: vec![SERVER_OIN.into()],
        url: None,
        delivery: dkd::ib::Delivery::Batch,
    });
    let node = start(dir, cfg).await;
    let now = time::OffsetDateTime::now_utc();
    let day = dkd::suwiml::types::Datum::from_date(now.date());
    let t = now.unix_timestamp();
    for bsn in ["123456782", "999900006"] {
        let bsn = dkd::suwiml::types::Bsn::parse(bsn).expect("bsn");
        node.store
            .ib_apply(
                "0363",
                &bsn,
                "04",
                dkd::suwiml::verwijsindex::IndDkd::Present,
                SERVER_OIN,
                t,
            )
            .expect("verwijsindex");
    }
    node.store
        .ib_record_route("0363", "04", day.as_str(), None, t)
        .expect("route");
    node.store
        .ib_record_route("0363", "04", day.as_str(), Some("connection refused"), t)
        .expect("route");
    node
}

/// What the IB's page must show of [`ib_with_figures`]: the IB's Aanlevermonitor, not the
/// gemeente's table of batch deliveries.
fn assert_ib_monitor(page: &str) {
    assert!(page.contains("id=\"ib-monitor\""), "{page}");
    assert!(
        !page.contains("id=\"monitor\""),
        "the gemeente's table: {page}"
    );
    for (what, needle) in [
        ("webservice gemeente", "<td>0363</td><td>Gemeente 0363</td><td>webservice</td><td>04</td><td>2</td>"),
        ("updates received", "<td>2 (2)</td>"),
        ("routed queries ok / failed", "<td>1</td><td class=\"bad\">1</td>"),
        ("last reachability", "FAILED: connection refused"),
        ("batch gemeente, stale", "<td>0014</td><td>Gemeente Groningen</td><td>batch <span class=\"bad stale\">STALE</span></td>"),
    ] {
        assert!(page.contains(needle), "{what} ({needle}) not on the page: {page}");
    }
}

#[tokio::test]
async fn the_ib_status_page_shows_the_ib_aanlevermonitor() {
    let ib = ib_with_figures().await;
    let (status, page) = http_get(ib.ops, "/").await;
    assert_eq!(status, 200);
    assert_ib_monitor(&page);
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "chromium",
    ignore = "needs chromium (apt-get install chromium)"
)]
async fn the_ib_status_page_shows_the_ib_aanlevermonitor_in_a_real_browser() {
    let ib = ib_with_figures().await;
    let Some(dom) = chromium_dom(format!("http://{}/", ib.ops)).await else {
        return;
    };
    assert_ib_monitor(&dom);
}

/// A TCP proxy to the PostgreSQL server that can be cut: then it drops every connection and
/// refuses new ones, as a database host that went away would.
pub(crate) struct Cuttable {
    pub(crate) addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _rt: tokio::runtime::Runtime,
}

impl Cuttable {
    /// On a runtime of its own: the server's workers wait for the database inline (the store's
    /// bridge), and must not be the ones the proxy needs to answer them.
    pub(crate) fn to(target: String) -> Cuttable {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("listener");
            while let Ok((mut inbound, _)) = l.accept().await {
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = (inbound.set_nodelay(true), out.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns2.lock().expect("lock").push(h);
            }
        });
        Cuttable {
            addr,
            up,
            conns,
            _rt: rt,
        }
    }

    pub(crate) fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().expect("lock").drain(..) {
            h.abort();
        }
    }

    pub(crate) fn mend(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// host:port of a PostgreSQL URL, for a proxy in front of the server.
fn pg_authority(url: &str) -> String {
    let rest = url.split_once("://").expect("scheme").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split(['/', '?']).next().expect("host").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn while_postgres_is_unreachable_requests_get_0051_and_readyz_says_why_then_it_recovers() {
    let Some(url) = pg_url() else {
        skip("needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)");
        return;
    };
    let (_schema, scoped) = dkd::store::TempSchema::create(&url).expect("schema");
    let proxy = Cuttable::to(pg_authority(&url));
    let proxied = scoped.replacen(&pg_authority(&url), &proxy.addr.to_string(), 1);
    let server = Server::start_on(Backend::Postgres, |c| c.store.url = Some(proxied)).await;
    let bsn = server.known_bsn();
    let ask = || async {
        post(&server.url, &Req::new(&server.url, &bsn).xml())
            .await
            .text()
    };
    assert!(ask().await.contains("ClientSuwi"));
    assert_eq!(http_get(server.ops, "/readyz").await.0, 200);

    proxy.cut();
    let text = ask().await;
    assert!(
        text.contains("<Fout><Code>0051</Code>"),
        "the database is gone: {text}"
    );
    let (status, body) = http_get(server.ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("PostgreSQL"), "names the reason: {body}");

    // dkd reconnects by itself.
    proxy.mend();
    assert!(ask().await.contains("ClientSuwi"));
    let (status, body) = http_get(server.ops, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    // A runtime is not dropped inside another one.
    std::thread::spawn(move || drop(proxy))
        .join()
        .expect("proxy stops");
}

/// Forwards connections to `target` from a listener served by the current runtime.
fn proxy_here(target: String) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).expect("listener");
        while let Ok((mut inbound, _)) = l.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                    let _ = (inbound.set_nodelay(true), out.set_nodelay(true));
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

/// One async worker, which the path to PostgreSQL (a proxy) needs too: a lookup that waited for
/// the database on that worker would stall it, and with it the proxy, until the deadline (0051).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn a_lookup_waiting_for_postgres_does_not_hold_up_the_async_workers() {
    let Some(url) = pg_url() else {
        skip("needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)");
        return;
    };
    let (_schema, scoped) = dkd::store::TempSchema::create(&url).expect("schema");
    let proxy = proxy_here(pg_authority(&url));
    let proxied = scoped.replacen(&pg_authority(&url), &proxy.to_string(), 1);
    let server = Server::start_on(Backend::Postgres, |c| {
        c.store.url = Some(proxied);
        // Lookups on the async worker that serves the connection, unless they may wait.
        c.server.crypto_threads = 0;
    })
    .await;
    let bsn = server.known_bsn();
    for _ in 0..3 {
        let text = post(&server.url, &Req::new(&server.url, &bsn).xml())
            .await
            .text();
        assert!(text.contains("ClientSuwi"), "{text}");
    }
}
