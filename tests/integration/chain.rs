//! The chain: dkd as the IB and dkd as gemeenten in one test. Gemeenten push their index to the
//! IB (outbox), the IB routes GSDReintegratieInfo to them and merges the answers.

use crate::common::*;
use dkd::app::App;
use dkd::config::{Config, IbGemeenteConfig, Role};
use dkd::ib::Delivery;
use dkd::soap::wssec::{Signer, SigningMode};
use dkd::store::Store;
use dkd::suwiml::model::{AtlRelatie, Bron, Person, Provision};
use dkd::suwiml::types::{Bsn, Datum, Percentage};
use dkd::suwiml::verwijsindex::{self as vi, Clustering, IndDkd};
use std::time::Duration;

/// A running instance; stops when dropped.
pub struct Node {
    pub url: String,
    pub vi_url: Option<String>,
    pub store: Store,
    pub ops: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
    _schema: Option<dkd::store::TempSchema>,
}

/// A port that was free a moment ago (for wiring instances that must know each other's URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub async fn start(dir: tempfile::TempDir, cfg: Config) -> Node {
    start_on(Backend::Sled, dir, cfg).await
}

/// [`start`] on a store of `backend`.
pub async fn start_on(backend: Backend, dir: tempfile::TempDir, mut cfg: Config) -> Node {
    let (store, schema) = crate::common::open_store(backend, &mut cfg);
    let app = App::bind_with_store(&cfg, store.clone())
        .await
        .expect("bind");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let node = Node {
        url: app.public_url().to_owned(),
        vi_url: app.verwijsindex_url().map(str::to_owned),
        store,
        ops: app.ops_addr().expect("ops"),
        _stop: tx,
        _dir: dir,
        _schema: schema,
    };
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    node
}

pub fn ib_config(dir: &std::path::Path, port: u16, gemeenten: &[(&str, u16)]) -> Config {
    let mut cfg = base_config(dir);
    cfg.role = Role::Ib;
    cfg.server.listen = format!("127.0.0.1:{port}");
    cfg.server.service_dn = "CN=IB test".into();
    cfg.security.signing = Some(SigningMode::Required);
    // Generous: a loaded test machine must not turn a slow gemeente into a failed one.
    cfg.ib.route_timeout_secs = 10;
    cfg.ib.gemeenten = gemeenten
        .iter()
        .map(|(code, port)| IbGemeenteConfig {
            code: (*code).into(),
            name: format!("Gemeente {code}"),
            oins: vec![SERVER_OIN.into()],
            url: Some(format!(
                "https://127.0.0.1:{port}/GSDDossierReintegratie-v0200"
            )),
            delivery: Delivery::Webservice,
        })
        .collect();
    cfg
}

pub fn gemeente_config(dir: &std::path::Path, port: u16, ib_port: u16) -> Config {
    let mut cfg = base_config(dir);
    cfg.server.listen = format!("127.0.0.1:{port}");
    cfg.security.signing = Some(SigningMode::Required);
    // The IB calls with its own certificate (the test PKI's server certificate).
    cfg.auth.allowed_oins = vec![SERVER_OIN.into()];
    cfg.push.url = format!("https://127.0.0.1:{ib_port}/IBVerwijsindex-v0300");
    cfg.push.max_backoff_secs = 1;
    cfg
}

pub fn person(bsn: &str, gemeenten: &[&str]) -> Person {
    Person {
        bsn: Bsn::parse(bsn).expect("bsn"),
        voornamen: Some("Anna".into()),
        voorletters: Some("A".into()),
        voorvoegsel: None,
        achternaam: Some("Visser".into()),
        geslacht: Some("2".into()),
        geboortedat: Some(Datum::parse("19750505").expect("date")),
        bron: Some(Bron::gemeente(gemeenten[0])),
        atl_relaties: gemeenten
            .iter()
            .map(|g| AtlRelatie {
                arbeidsvermogen: None,
                doel_rv: None,
                provisions: vec![Provision {
                    registratienr: Some(format!("LKS-{g}")),
                    start: Datum::from_date(demo_date() - time::Duration::days(100)),
                    end: None,
                    type_code: Some("24".into()),
                    description: None,
                    loonwaarde: Some(Percentage::from_hundredths(5000).expect("pct")),
                }],
                bron: Bron::gemeente(g),
            })
            .collect(),
    }
}

/// Polls `f` every 20 ms until it holds; panics with `what` after `secs`.
pub async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client_signer() -> Signer {
    let p = pki();
    Signer::load(&p.path("client.pem"), &p.path("client-key.pem")).expect("signer")
}

/// A signed GSDReintegratieInfo from "UWV" (the test client) to the IB.
async fn ask_ib(ib: &Node, bsn: &str) -> String {
    let req = dkd::soap::signed_request(
        &client_signer(),
        &ib.url,
        ALLOWED_OIN,
        bsn,
        &format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        time::OffsetDateTime::now_utc(),
    )
    .expect("sign");
    let resp = post(&ib.url, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
}

fn bsns(xml: &str, local: &str) -> Vec<String> {
    let doc = dkd::xml::parse(xml.as_bytes()).expect("xml");
    let mut out = Vec::new();
    collect(&doc, local, &mut out);
    out
}

fn collect(e: &dkd::xml::Element, local: &str, out: &mut Vec<String>) {
    if e.local == local {
        out.push(e.text());
    }
    for c in e.elements() {
        collect(c, local, out);
    }
}

fn outbox_empty(s: &Store) -> bool {
    s.outbox_status().is_ok_and(|st| st.pending == 0)
}

/// Both sides sign with a TLS server certificate (EKU serverAuth only): the gemeente accepts the
/// IB's routed request, and the IB's `Forward` accepts the gemeente's signed answer.
#[tokio::test]
async fn the_ib_routes_to_a_gemeente_when_both_sign_with_tls_server_certificates() {
    let (ib_port, a_port) = (free_port(), free_port());
    let p = pki();
    let server_signer = |cfg: &mut Config| {
        cfg.security.sign_cert = Some(p.path("server-signer.pem"));
        cfg.security.sign_key = Some(p.path("server-signer-key.pem"));
    };
    let ib_dir = tempfile::tempdir().expect("dir");
    let mut ib_cfg = ib_config(ib_dir.path(), ib_port, &[("0363", a_port)]);
    server_signer(&mut ib_cfg);
    let ib = start(ib_dir, ib_cfg).await;
    let a_dir = tempfile::tempdir().expect("dir");
    let mut a_cfg = gemeente_config(a_dir.path(), a_port, ib_port);
    server_signer(&mut a_cfg);
    let a = start(a_dir, a_cfg).await;
    a.store
        .put(&person("123456782", &["0363"]), "test")
        .expect("put");
    wait_until("the gemeente delivered its outbox", 30, || {
        outbox_empty(&a.store)
    })
    .await;
    let answer = ask_ib(&ib, "123456782").await;
    assert!(answer.contains("<ClientSuwi>"), "{answer}");
    // In the Body: the signature's base64 (the certificate, the values) may spell "FWI".
    assert!(!body_child(&answer).contains("FWI"), "{answer}");
    assert_eq!(
        bsns(&answer, "RegistratienrRvGsd"),
        ["LKS-0363"],
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_route_merge_and_a_gemeente_down() {
    for backend in backends() {
        let (ib_port, a_port, b_port) = (free_port(), free_port(), free_port());
        let ib_dir = tempfile::tempdir().expect("dir");
        let ib_cfg = ib_config(
            ib_dir.path(),
            ib_port,
            &[("0363", a_port), ("0599", b_port)],
        );
        let settings = dkd::app::ib_settings(&ib_cfg);
        let ib = start_on(backend, ib_dir, ib_cfg).await;
        let a_dir = tempfile::tempdir().expect("dir");
        let a_cfg = gemeente_config(a_dir.path(), a_port, ib_port);
        let a = start_on(backend, a_dir, a_cfg).await;
        let b_dir = tempfile::tempdir().expect("dir");
        let b_cfg = gemeente_config(b_dir.path(), b_port, ib_port);
        let b = start_on(backend, b_dir, b_cfg).await;

        // One person known in both gemeenten, one only in Amsterdam (0363).
        let both = "123456782";
        let only_a = "111222333";
        a.store.put(&person(both, &["0363"]), "test").expect("put");
        a.store
            .put(&person(only_a, &["0363"]), "test")
            .expect("put");
        b.store.put(&person(both, &["0599"]), "test").expect("put");
        wait_until("both gemeenten delivered their outbox", 30, || {
            outbox_empty(&a.store) && outbox_empty(&b.store)
        })
        .await;
        let bsn = Bsn::parse(both).expect("bsn");
        let at_ib = ib.store.ib_gemeenten_for(&bsn, "04").expect("lookup");
        let codes: Vec<&str> = at_ib.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(codes, ["0363", "0599"]);
        assert!(at_ib.iter().all(|(_, e)| e.oin == SERVER_OIN));

        // Routed and merged: one ClientSuwi, an AtlRelatie per gemeente, each with its own Bron.
        let answer = ask_ib(&ib, both).await;
        assert!(answer.contains("<ClientSuwi>"), "{answer}");
        assert_eq!(bsns(&answer, "CdPartijSuwi").len(), 3, "{answer}");
        assert_eq!(
            bsns(&answer, "RegistratienrRvGsd"),
            ["LKS-0363", "LKS-0599"]
        );
        // In the Body: the signature's base64 (the certificate, the values) may spell "FWI".
        assert!(!body_child(&answer).contains("FWI"), "{answer}");
        validate_official(&body_child(&answer), Schema::Response);
        assert!(
            element_text(&answer, "RelatesTo").is_some(),
            "the IB answers with WS-Addressing: {answer}"
        );
        assert!(answer.contains("<ds:SignatureValue>"), "signed: {answer}");

        // Not in the verwijsindex at all.
        let none = ask_ib(&ib, "999999990").await;
        assert!(none.contains("NietsGevonden"), "{none}");

        // Gemeente 0599 goes down: a partial answer naming it, and the failure is counted.
        drop(b);
        let partial = ask_ib(&ib, both).await;
        assert_eq!(
            bsns(&partial, "RegistratienrRvGsd"),
            ["LKS-0363"],
            "{partial}"
        );
        assert!(
            partial.contains("<Waarschuwing><Code>0052</Code>"),
            "{partial}"
        );
        assert!(partial.contains("Gemeente 0599"), "{partial}");
        validate_official(&body_child(&partial), Schema::Response);
        let days = ib.store.ib_day_figures("00000000").expect("figures");
        let b_days = &days[&("0599".to_owned(), "04".to_owned())];
        let failed: u64 = b_days.values().map(|d| d.failed).sum();
        let ok: u64 = b_days.values().map(|d| d.succeeded).sum();
        assert_eq!((ok, failed), (1, 1));
        assert!(!ib.store.ib_reachability().expect("reach")["0599"].ok);

        // The IB's Aanlevermonitor shows it all per gemeente.
        let report = dkd::report::build_ib(
            &ib.store,
            &settings,
            demo_date().max(time::OffsetDateTime::now_utc().date()),
        )
        .expect("report");
        let row = |g: &str| report.iter().find(|r| r.gemeente == g).expect("row");
        assert_eq!((row("0363").bsns, row("0363").updates_received), (2, 2));
        assert_eq!(
            (row("0599").queries_succeeded, row("0599").queries_failed),
            (1, 1)
        );
        assert!(
            row("0599").recent_errors[0].contains("niet bereikbaar"),
            "{report:?}"
        );
        let table = dkd::report::ib_table(&report);
        assert!(table.contains("FAILED"), "{table}");

        // Only Amsterdam holds the other person; Amsterdam goes down too: FWI Fout alone.
        drop(a);
        let failed = ask_ib(&ib, only_a).await;
        assert!(!failed.contains("ClientSuwi"), "{failed}");
        assert!(failed.contains("<Fout><Code>0052</Code>"), "{failed}");
        validate_official(&body_child(&failed), Schema::Response);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ib_down_during_a_push_then_up_every_update_arrives_once() {
    for backend in backends() {
        let (ib_port, g_port) = (free_port(), free_port());
        let g_dir = tempfile::tempdir().expect("dir");
        let g_cfg = gemeente_config(g_dir.path(), g_port, ib_port);
        let g = start_on(backend, g_dir, g_cfg).await;
        let people: Vec<Person> = dkd::chain::demo::generate(40, demo_date())
            .into_iter()
            .map(|mut p| {
                p.atl_relaties.truncate(1);
                p.atl_relaties[0].bron = Bron::gemeente("0363");
                p
            })
            .collect();
        g.store.put_all(&people, "test").expect("put");
        let mut c = g.store.changes("test");
        c.remove(&people[0].bsn, "0363", false).expect("remove");
        c.commit().expect("commit");
        // 40 entered, one left again: 41 updates, delivered in order per person.
        wait_until("the sender has failed against the absent IB", 20, || {
            g.store
                .outbox_status()
                .is_ok_and(|s| s.pending == 41 && s.last_error.is_some())
        })
        .await;
        // The operator sees it before the IB does: metrics and readiness.
        let (_, metrics) = http_get(g.ops, "/metrics").await;
        assert!(metrics.contains("dkd_outbox_pending 41\n"), "{metrics}");
        assert!(
            metrics.contains("dkd_outbox_delivered_total 0\n"),
            "{metrics}"
        );
        let (status, ready) = http_get(g.ops, "/readyz").await;
        assert_eq!(
            status, 200,
            "parked: none, and younger than the hour: {ready}"
        );
        assert!(ready.contains("41 pending"), "{ready}");
        let ib_dir = tempfile::tempdir().expect("dir");
        let ib_cfg = ib_config(ib_dir.path(), ib_port, &[("0363", g_port)]);
        let ib = start_on(backend, ib_dir, ib_cfg).await;
        wait_until("the outbox is delivered after the IB came up", 30, || {
            outbox_empty(&g.store)
        })
        .await;
        let st = g.store.outbox_status().expect("status");
        assert_eq!((st.sent, st.parked), (41, 0));
        let f = ib.store.ib_index_figures().expect("figures");
        let fig = &f[&("0363".to_owned(), "04".to_owned())];
        // Exactly once: 41 received, 41 changes, and the index holds what the gemeente holds.
        assert_eq!((fig.received, fig.changed, fig.bsns), (41, 41, 39));
        assert_eq!(fig.bsns as usize, g.store.len());
        assert!(ib
            .store
            .ib_gemeenten_for(&people[0].bsn, "04")
            .expect("lookup")
            .is_empty());
    }
}

/// Sends an IBVerwijsindex update to the IB as the test's server certificate (the gemeente OIN).
async fn send_update(ib: &Node, req: &vi::Request, signed: bool) -> String {
    let url = ib.vi_url.as_deref().expect("IB role");
    let mut body = String::new();
    vi::write_request(req, &mut body);
    let p = pki();
    let signer = Signer::load(&p.path("server.pem"), &p.path("server-key.pem")).expect("signer");
    let env = dkd::soap::client::envelope(
        signed.then_some(&signer),
        &dkd::soap::client::Outgoing {
            to: url,
            from_address: &format!("https://gemeente.example/?oin={SERVER_OIN}"),
            action: vi::ACTION_REQUEST,
            body: &body,
            message_id: &format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        },
        time::OffsetDateTime::now_utc(),
    )
    .expect("envelope");
    post_as("server", url, &env).await.text()
}

#[tokio::test]
async fn verwijsindex_updates_are_checked_against_the_configuration() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = ib_config(dir.path(), free_port(), &[("0363", 1)]);
    cfg.ib.gemeenten.push(IbGemeenteConfig {
        code: "0599".into(),
        name: "Rotterdam".into(),
        oins: vec![SECOND_OIN.into()],
        url: Some("https://127.0.0.1:1/GSDDossierReintegratie-v0200".into()),
        delivery: Delivery::Webservice,
    });
    let ib = start(dir, cfg).await;
    let good = vi::Request {
        bsn: Bsn::parse("123456782").expect("bsn"),
        clusters: vec![Clustering::new("04", IndDkd::Present)],
        bron: Bron::gemeente("0363"),
    };
    let mut request_doc = String::new();
    vi::write_request(&good, &mut request_doc);
    validate_official(&request_doc, Schema::VerwijsindexRequest);

    let ack = send_update(&ib, &good, true).await;
    assert!(ack.contains("<Acknowledgement></Acknowledgement>"), "{ack}");
    assert_eq!(
        element_text(&ack, "Action").as_deref(),
        Some(vi::ACTION_RESPONSE)
    );
    validate_official(&body_child(&ack), Schema::VerwijsindexResponse);
    let unsigned = send_update(&ib, &good, false).await;
    assert_eq!(
        fault_codes(&unsigned).1,
        "0020",
        "signing is required: {unsigned}"
    );

    let refusals: Vec<(vi::Request, &str)> = vec![
        (
            vi::Request {
                bron: Bron::gemeente("0014"),
                ..good.clone()
            },
            "0101",
        ),
        (
            vi::Request {
                bron: Bron::gemeente("0599"),
                ..good.clone()
            },
            "0102",
        ),
        (
            vi::Request {
                clusters: vec![Clustering::new("99", IndDkd::Present)],
                ..good.clone()
            },
            "0103",
        ),
        (
            vi::Request {
                clusters: vec![Clustering {
                    code: "04".into(),
                    ind: "3".into(),
                }],
                ..good.clone()
            },
            "0104",
        ),
        (
            vi::Request {
                bron: Bron {
                    kolom: 1,
                    ..Bron::gemeente("0363")
                },
                ..good.clone()
            },
            "0105",
        ),
    ];
    for (req, code) in refusals {
        let answer = send_update(&ib, &req, true).await;
        assert!(
            answer.contains(&format!(
                "<FWI xmlns:fwi=\"http://bkwi.nl/SuwiML/FWI/v0205\"><Fout><Code>{code}</Code>"
            )),
            "{code}: {answer}"
        );
        validate_official(&body_child(&answer), Schema::VerwijsindexResponse);
    }
    // Nothing refused was stored; the good one was.
    let f = ib.store.ib_index_figures().expect("figures");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[&("0363".to_owned(), "04".to_owned())].bsns, 1);

    // Unusable requests are SOAP Faults: the 11-test, and a caller not on any gemeente's list.
    let url = ib.vi_url.as_deref().expect("vi");
    let mut body = String::new();
    vi::write_request(&good, &mut body);
    let eleven = body.replace("123456782", "123456781");
    let env = dkd::soap::client::envelope(
        Some(&Signer::load(&pki().path("server.pem"), &pki().path("server-key.pem")).expect("s")),
        &dkd::soap::client::Outgoing {
            to: url,
            from_address: &format!("https://g.example/?oin={SERVER_OIN}"),
            action: vi::ACTION_REQUEST,
            body: &eleven,
            message_id: "urn:uuid:0e7c1a4e-0000-4000-8000-000000000001",
        },
        time::OffsetDateTime::now_utc(),
    )
    .expect("env");
    let refused = post_as("server", url, &env).await.text();
    assert_eq!(fault_codes(&refused).1, "0012");
    // The fault came after the request's signature was verified, so it carries a
    // SignatureConfirmation: the sender must read it as the fault it is (an update refused on its
    // content, parked), not as a bad signature (retried forever).
    assert!(refused.contains("SignatureConfirmation"), "{refused}");
    let policy = dkd::soap::wssec::VerifyPolicy::for_answers(
        dkd::http::tls::signer_trust(&pki().path("ca.pem"), &[]).expect("trust"),
        time::Duration::seconds(120),
        time::Duration::seconds(300),
    );
    let read = dkd::soap::client::read_response(
        &refused,
        "urn:uuid:0e7c1a4e-0000-4000-8000-000000000001",
        dkd::soap::client::signature_value(&env).as_deref(),
        Some(&policy),
        time::OffsetDateTime::now_utc(),
    );
    assert!(
        matches!(&read, Err(dkd::soap::client::ResponseError::Fault { code, .. }) if code == "0012"),
        "{read:?}"
    );
    let stranger = post_as("client", url, &env).await.text();
    assert_eq!(fault_codes(&stranger).1, "0002", "{stranger}");
}

/// One HTTPS request received with the test PKI's server certificate, answered with an empty 500:
/// the request's bytes (headers and body).
async fn capture_one(listener: tokio::net::TcpListener) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = pki();
    let cfg = dkd::http::tls::server_config(
        &p.path("server.pem"),
        &p.path("server-key.pem"),
        &p.path("ca.pem"),
        &[],
    )
    .expect("tls");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let (tcp, _) = listener.accept().await.expect("accept");
    let mut tls = acceptor.accept(tcp).await.expect("handshake");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Bounded: until the envelope's end, at most 1 MiB.
    while !String::from_utf8_lossy(&buf).contains("</soapenv:Envelope>") && buf.len() < 1 << 20 {
        let n = tls.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = tls
        .write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
    let _ = tls.shutdown().await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn the_ib_forwards_from_its_own_address_with_the_requesters_oin() {
    let gemeente = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = gemeente.local_addr().expect("addr").port();
    let captured = tokio::spawn(capture_one(gemeente));
    let dir = tempfile::tempdir().expect("dir");
    let cfg = ib_config(dir.path(), free_port(), &[("0363", port)]);
    let ib = start(dir, cfg).await;
    let update = vi::Request {
        bsn: Bsn::parse("123456782").expect("bsn"),
        clusters: vec![Clustering::new("04", IndDkd::Present)],
        bron: Bron::gemeente("0363"),
    };
    let ack = send_update(&ib, &update, true).await;
    assert!(ack.contains("<Acknowledgement>"), "{ack}");
    // UWV asks, From https://localhost/dkd?oin=<ALLOWED_OIN>; the gemeente fails, which the
    // answer names in an FWI.
    let answer = ask_ib(&ib, "123456782").await;
    assert!(answer.contains("<fwi:FWI"), "{answer}");
    let request = captured.await.expect("capture");
    let body = &request[request.find("<?xml").expect("envelope")..];
    assert_eq!(
        element_text(body, "Address"),
        Some(format!("{}?oin={ALLOWED_OIN}", ib.url)),
        "{body}"
    );
}

/// Issue 21: third-party SuwiML code lists give StdIndJN 0 = Nee, interface.md 2. Neither is
/// confirmed, so the IB takes both as "no longer present" (and only 1 as present).
#[tokio::test]
async fn verwijsindex_no_is_accepted_as_0_and_as_2() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = ib_config(dir.path(), free_port(), &[("0363", 1)]);
    let ib = start(dir, cfg).await;
    let bsn = Bsn::parse("123456782").expect("bsn");
    let update = |ind: &str| vi::Request {
        bsn,
        clusters: vec![Clustering {
            code: "04".into(),
            ind: ind.into(),
        }],
        bron: Bron::gemeente("0363"),
    };
    for no in ["0", "2"] {
        let mut doc = String::new();
        vi::write_request(&update(no), &mut doc);
        validate_official(&doc, Schema::VerwijsindexRequest);
        let ack = send_update(&ib, &update("1"), true).await;
        assert!(ack.contains("<Acknowledgement>"), "{ack}");
        assert_eq!(
            ib.store.ib_gemeenten_for(&bsn, "04").expect("lookup").len(),
            1
        );
        let ack = send_update(&ib, &update(no), true).await;
        assert!(ack.contains("<Acknowledgement>"), "IndDkd {no}: {ack}");
        assert!(
            ib.store
                .ib_gemeenten_for(&bsn, "04")
                .expect("lookup")
                .is_empty(),
            "IndDkd {no} removes the entry"
        );
    }
    let refused = send_update(&ib, &update("3"), true).await;
    assert!(refused.contains("<Fout><Code>0104</Code>"), "{refused}");
}
