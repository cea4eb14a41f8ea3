//! Scenarios: an emulated gemeente misbehaving on purpose. Each answer scenario on the wire (a
//! client checking the answer as the IB does), switched mid-run through `PUT /scenario`; dkd's IB
//! routing to a gemeente under each scenario (answered within the route timeout, the gemeente named
//! in an FWI, the Aanlevermonitor showing it); the push paused and partial; and the refusal to start
//! without `scenario.enabled = true`.

use crate::chain::{free_port, gemeente_config, ib_config, person, wait_until};
use crate::common::*;
use dkd::app::App;
use dkd::config::Config;
use dkd::http::client::{self, ClientError};
use dkd::soap::client::{read_response, ResponseError};
use dkd::soap::wssec::{ReplayCache, Signer, SigningMode, VerifyPolicy};
use dkd::store::Store;
use dkd::suwiml::gsd::{self, Reply};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// A running instance with its admin API; stops when dropped.
struct Node {
    url: String,
    store: Store,
    admin: std::net::SocketAddr,
    ops: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(dir: tempfile::TempDir, cfg: Config) -> Node {
    let store = Store::open(&cfg.store.path).expect("store");
    let app = App::bind_with_store(&cfg, store.clone())
        .await
        .expect("bind");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let node = Node {
        url: app.public_url().to_owned(),
        store,
        admin: app.admin_addr().expect("admin"),
        ops: app.ops_addr().expect("ops"),
        _stop: tx,
        _dir: dir,
    };
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    node
}

/// The admin API: status and JSON.
async fn admin(node: &Node, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let tcp = tokio::net::TcpStream::connect(node.admin)
        .await
        .expect("connect admin");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .expect("request");
    let resp = tx.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn set_scenario(node: &Node, json: &str) {
    let (status, body) = admin(node, "PUT", "/scenario", json).await;
    assert_eq!(status, 200, "PUT /scenario {json}: {body}");
}

fn client_signer() -> Signer {
    let p = pki();
    Signer::load(&p.path("client.pem"), &p.path("client-key.pem")).expect("signer")
}

/// How the IB checks a gemeente's answer: signed, by a trusted signer, confirming the request.
fn answer_policy() -> VerifyPolicy {
    VerifyPolicy {
        mode: SigningMode::Required,
        trust: dkd::http::tls::signer_trust(&pki().path("ca.pem"), &[]).expect("trust"),
        allowed_signer_oins: Default::default(),
        signer_must_match_tls: false,
        any_signer: true,
        clock_skew: time::Duration::seconds(60),
        max_age: time::Duration::seconds(300),
        replay: ReplayCache::new(1),
        trust_cache: Default::default(),
    }
}

/// What a client checking the answer as the IB does sees.
#[derive(Debug)]
enum Seen {
    /// A verified answer.
    Reply(Reply),
    /// Verified, but the body is not a GSDReintegratieInfoResponse the schema allows.
    Unreadable(String),
    /// The answer was refused by the client's checks.
    Refused(ResponseError),
    /// An HTTP answer that is not SOAP.
    Http(u16, String),
    /// No answer within the client's timeout.
    Timeout,
    /// The connection failed otherwise.
    Broken(String),
}

async fn ask(url: &str, bsn: &str, timeout: Duration) -> Seen {
    let mid = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let req = dkd::soap::signed_request(
        &client_signer(),
        url,
        ALLOWED_OIN,
        bsn,
        &mid,
        time::OffsetDateTime::now_utc(),
    )
    .expect("sign");
    let sv = dkd::soap::client::signature_value(&req);
    let resp = match client::post_soap(client_tls("client"), url, &req, timeout).await {
        Ok(r) => r,
        Err(ClientError::Timeout(_)) => return Seen::Timeout,
        Err(e) => return Seen::Broken(e.to_string()),
    };
    let text = resp.text();
    if !resp
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/xml"))
    {
        return Seen::Http(resp.status, text);
    }
    match read_response(
        &text,
        &mid,
        sv.as_deref(),
        Some(&answer_policy()),
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(body) => match gsd::parse_response(&body) {
            Ok(r) => Seen::Reply(r),
            Err(e) => Seen::Unreadable(e),
        },
        Err(e) => Seen::Refused(e),
    }
}

/// A gemeente with `scenario.enabled` (no scenario set yet), holding one person; the test client
/// may ask it directly.
async fn scenario_gemeente(bsn: &str) -> Node {
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = gemeente_config(dir.path(), free_port(), free_port());
    cfg.push.url = String::new();
    cfg.auth.allowed_oins.push(ALLOWED_OIN.into());
    cfg.scenario.enabled = true;
    let g = start(dir, cfg).await;
    g.store.put(&person(bsn, &["0363"]), "test").expect("put");
    g
}

const BSN: &str = "123456782";

fn found(s: &Seen) -> bool {
    matches!(s, Seen::Reply(Reply::Client(p, _)) if p.bsn.as_str() == BSN)
}

/// A gemeente answering correctly, switched to `json` through `PUT /scenario`: what a client
/// checking the answer as the IB does sees (with `timeout`). Cleared again, the answer is the one
/// from before: nothing was stored.
async fn on_the_wire(json: &str, timeout: Duration) -> Seen {
    let g = scenario_gemeente(BSN).await;
    let t = Duration::from_secs(10);
    let before = ask(&g.url, BSN, t).await;
    assert!(
        found(&before),
        "no scenario yet: the right answer: {before:?}"
    );
    set_scenario(&g, json).await;
    let seen = ask(&g.url, BSN, timeout).await;
    set_scenario(&g, "{}").await;
    let after = ask(&g.url, BSN, t).await;
    assert_eq!(format!("{before:?}"), format!("{after:?}"), "cleared");
    seen
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn scenario_delay_answers_right_but_late() {
    let s = on_the_wire(
        r#"{"answer": "delay", "delay_ms": 3000}"#,
        Duration::from_millis(500),
    )
    .await;
    assert!(
        matches!(s, Seen::Timeout),
        "too late for a short timeout: {s:?}"
    );
    let s = on_the_wire(r#"{"answer": "delay", "delay_ms": 300}"#, T).await;
    assert!(found(&s), "the right answer, late: {s:?}");
}

#[tokio::test]
async fn scenario_hang_never_answers() {
    let s = on_the_wire(r#"{"answer": "hang"}"#, Duration::from_secs(1)).await;
    assert!(matches!(s, Seen::Timeout), "{s:?}");
}

#[tokio::test]
async fn scenario_reset_closes_the_connection_unanswered() {
    let s = on_the_wire(r#"{"answer": "reset"}"#, T).await;
    assert!(
        matches!(&s, Seen::Broken(why) if !why.contains("timeout")),
        "no answer, no timeout: {s:?}"
    );
}

#[tokio::test]
async fn scenario_http_503_is_no_soap() {
    let s = on_the_wire(r#"{"answer": "http-503"}"#, T).await;
    assert!(
        matches!(&s, Seen::Http(503, body) if !body.contains("Envelope")),
        "{s:?}"
    );
}

#[tokio::test]
async fn scenario_fault_answers_the_chosen_code() {
    let s = on_the_wire(r#"{"answer": "fault", "fault_code": "0021"}"#, T).await;
    assert!(
        matches!(&s, Seen::Refused(ResponseError::Fault { code, faultcode, .. }) if code == "0021" && faultcode == "wsse:FailedCheck"),
        "{s:?}"
    );
}

#[tokio::test]
async fn scenario_unsigned_is_refused_by_the_signature_check() {
    let s = on_the_wire(r#"{"answer": "unsigned"}"#, T).await;
    assert!(
        matches!(s, Seen::Refused(ResponseError::Security(_))),
        "{s:?}"
    );
}

#[tokio::test]
async fn scenario_bad_signature_does_not_verify() {
    let s = on_the_wire(r#"{"answer": "bad-signature"}"#, T).await;
    assert!(
        matches!(&s, Seen::Refused(ResponseError::Security(why)) if why.contains("signature")),
        "{s:?}"
    );
}

#[tokio::test]
async fn scenario_no_confirmation_lacks_signature_confirmation() {
    let s = on_the_wire(r#"{"answer": "no-confirmation"}"#, T).await;
    assert!(
        matches!(&s, Seen::Refused(ResponseError::Security(why)) if why.contains("SignatureConfirmation")),
        "{s:?}"
    );
}

#[tokio::test]
async fn scenario_schema_invalid_is_signed_but_unreadable() {
    let s = on_the_wire(r#"{"answer": "schema-invalid"}"#, T).await;
    assert!(
        matches!(&s, Seen::Unreadable(why) if why.contains("Burgerservicenr")),
        "{s:?}"
    );
}

#[tokio::test]
async fn scenario_other_bsn_answers_about_someone_else() {
    let s = on_the_wire(r#"{"answer": "other-bsn"}"#, T).await;
    assert!(
        matches!(&s, Seen::Reply(Reply::Client(p, _)) if p.bsn.as_str() != BSN),
        "{s:?}"
    );
}

/// Under a transport scenario the client gets no SOAP answer at all, so the audit trail must not
/// say `found`: it names the scenario. A delay still delivers the answer, so it stays `found`.
#[tokio::test]
async fn the_audit_trail_names_a_transport_scenario_instead_of_found() {
    let g = scenario_gemeente(BSN).await;
    let cases = [
        (
            r#"{"answer": "hang"}"#,
            Duration::from_secs(1),
            "scenario:hang",
        ),
        (r#"{"answer": "reset"}"#, T, "scenario:reset"),
        (r#"{"answer": "http-503"}"#, T, "scenario:http-503"),
        (r#"{"answer": "delay", "delay_ms": 50}"#, T, "found"),
        ("{}", T, "found"),
    ];
    for (json, timeout, _) in cases {
        set_scenario(&g, json).await;
        let seen = ask(&g.url, BSN, timeout).await;
        assert_eq!(
            found(&seen),
            json.contains("delay") || json == "{}",
            "{json}: {seen:?}"
        );
    }
    let outcomes: Vec<String> = g
        .store
        .audit_since(0)
        .map(|r| r.expect("record").outcome)
        .collect();
    let expected: Vec<&str> = cases.iter().map(|c| c.2).collect();
    assert_eq!(outcomes, expected);
}

#[tokio::test]
async fn rate_and_listed_bsns_pick_the_requests_put_scenario_switches_mid_run() {
    let g = scenario_gemeente(BSN).await;
    let other = "111222333";
    g.store.put(&person(other, &["0363"]), "test").expect("put");
    let t = Duration::from_secs(10);
    set_scenario(
        &g,
        &format!(r#"{{"answer": "http-503", "rate": 0.5, "bsns": ["{BSN}"]}}"#),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(matches!(ask(&g.url, BSN, t).await, Seen::Http(503, _)));
        assert!(
            matches!(ask(&g.url, other, t).await, Seen::Reply(Reply::Client(..))),
            "a BSN not listed is answered"
        );
    }
    assert_eq!(
        got,
        [true, false, true, false],
        "rate 0.5: every second one"
    );

    let (status, body) = admin(&g, "GET", "/scenario", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["scenario"]["answer"], "http-503", "{body}");
    assert_eq!(body["active"], true);
    let (_, ready) = http_get(g.ops, "/readyz").await;
    assert!(
        ready.contains("scenario") && ready.contains("ACTIVE"),
        "{ready}"
    );
    let (_, page) = http_get(g.ops, "/").await;
    assert!(page.contains("SCENARIO ACTIVE"), "{page}");

    for (bad, says) in [
        (r#"{"answer": "slow"}"#, "unknown variant"),
        (r#"{"answer": "fault", "fault_code": "0051"}"#, "fault_code"),
        (r#"{"rate": 2}"#, "rate"),
        (r#"{"answr": "hang"}"#, "answr"),
        ("[]", "JSON object"),
    ] {
        let (status, body) = admin(&g, "PUT", "/scenario", bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains(says), "{bad}: {body}");
    }
    let (_, body) = admin(&g, "GET", "/scenario", "").await;
    assert_eq!(
        body["scenario"]["answer"], "http-503",
        "a refused PUT changes nothing"
    );

    set_scenario(&g, r#"{"enabled": false}"#).await;
    assert!(matches!(
        ask(&g.url, BSN, t).await,
        Seen::Reply(Reply::Client(..))
    ));
    let (_, page) = http_get(g.ops, "/").await;
    assert!(!page.contains("SCENARIO ACTIVE"), "cleared: {page}");

    // A server started without scenario.enabled takes no scenario at run time either.
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = gemeente_config(dir.path(), free_port(), free_port());
    cfg.push.url = String::new();
    let plain = start(dir, cfg).await;
    let (status, body) = admin(&plain, "PUT", "/scenario", r#"{"answer": "hang"}"#).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string().contains("scenario.enabled = true"),
        "{body}"
    );
    let (status, _) = admin(&plain, "GET", "/scenario", "").await;
    assert_eq!(status, 404);
    let (_, ready) = http_get(plain.ops, "/readyz").await;
    assert!(!ready.contains("scenario"), "{ready}");
}

/// dkd's IB routing to two gemeenten that both hold the person, one of them running each answer
/// scenario in turn: the question is answered within the route timeout, with the healthy
/// gemeente's data and an FWI naming the failing one, and the Aanlevermonitor counts the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ib_answers_within_its_route_timeout_naming_the_gemeente_under_each_scenario() {
    let (ib_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let ib_dir = tempfile::tempdir().expect("dir");
    let mut ib_cfg = ib_config(
        ib_dir.path(),
        ib_port,
        &[("0363", a_port), ("0599", b_port)],
    );
    ib_cfg.ib.route_timeout_secs = 2;
    let settings = dkd::app::ib_settings(&ib_cfg);
    let ib = start(ib_dir, ib_cfg).await;
    let a_dir = tempfile::tempdir().expect("dir");
    let mut a_cfg = gemeente_config(a_dir.path(), a_port, ib_port);
    a_cfg.scenario.enabled = true;
    let a = start(a_dir, a_cfg).await;
    let b_dir = tempfile::tempdir().expect("dir");
    let b_cfg = gemeente_config(b_dir.path(), b_port, ib_port);
    let b = start(b_dir, b_cfg).await;
    a.store.put(&person(BSN, &["0363"]), "test").expect("put");
    b.store.put(&person(BSN, &["0599"]), "test").expect("put");
    wait_until("both gemeenten delivered their outbox", 30, || {
        [&a.store, &b.store]
            .iter()
            .all(|s| s.outbox_status().is_ok_and(|st| st.pending == 0))
    })
    .await;
    let healthy = ask(&ib.url, BSN, Duration::from_secs(10)).await;
    assert!(
        matches!(&healthy, Seen::Reply(Reply::Client(p, m)) if p.atl_relaties.len() == 2 && m.is_empty()),
        "{healthy:?}"
    );

    let scenarios = [
        r#"{"answer": "delay", "delay_ms": 5000}"#,
        r#"{"answer": "hang"}"#,
        r#"{"answer": "reset"}"#,
        r#"{"answer": "http-503"}"#,
        r#"{"answer": "fault", "fault_code": "0099"}"#,
        r#"{"answer": "unsigned"}"#,
        r#"{"answer": "bad-signature"}"#,
        r#"{"answer": "no-confirmation"}"#,
        r#"{"answer": "schema-invalid"}"#,
        r#"{"answer": "other-bsn"}"#,
    ];
    for json in scenarios {
        set_scenario(&a, json).await;
        // Well within the client's 10 s: the IB gives a gemeente 2 s.
        let s = ask(&ib.url, BSN, Duration::from_secs(10)).await;
        let Seen::Reply(Reply::Client(p, meldingen)) = &s else {
            panic!("{json}: the IB answers with what the healthy gemeente sent: {s:?}");
        };
        let codes: Vec<&str> = p
            .atl_relaties
            .iter()
            .map(|r| r.bron.partij.as_str())
            .collect();
        assert_eq!(codes, ["0599"], "{json}: only the healthy gemeente's data");
        assert_eq!(meldingen.len(), 1, "{json}: {meldingen:?}");
        let m = &meldingen[0];
        assert_eq!(m.code, "0052", "{json}");
        assert!(
            m.tekst.contains("0363"),
            "{json}: the FWI names the gemeente: {m:?}"
        );
        assert_eq!(m.level, dkd::suwiml::fwi::Level::Waarschuwing, "{json}");
    }
    let today = time::OffsetDateTime::now_utc().date();
    let report = dkd::report::build_ib(&ib.store, &settings, today).expect("report");
    let row = |g: &str| {
        report
            .iter()
            .find(|r| r.gemeente == g)
            .expect("row")
            .clone()
    };
    let failing = row("0363");
    assert_eq!(
        failing.queries_failed,
        scenarios.len() as u64,
        "{failing:?}"
    );
    assert_eq!(failing.queries_succeeded, 1, "{failing:?}");
    let reach = failing.last_reachability.expect("reachability");
    assert!(!reach.ok && reach.error.is_some(), "{reach:?}");
    assert!(!failing.recent_errors.is_empty());
    let ok = row("0599");
    assert_eq!(ok.queries_failed, 0, "{ok:?}");
    assert!(ok.last_reachability.is_some_and(|r| r.ok));
    let table = dkd::report::ib_table(&report);
    assert!(table.contains("FAILED"), "{table}");
}

/// The push under `push = "paused"`, then `"partial"`: the IB's verwijsindex stays empty (stale),
/// then holds only part of the gemeente's (incomplete, the rest parked with the scenario's
/// reason); cleared, `dkd sync --retry-parked` completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_paused_leaves_the_ib_stale_and_partial_leaves_it_incomplete() {
    let (ib_port, a_port) = (free_port(), free_port());
    let ib_dir = tempfile::tempdir().expect("dir");
    let ib_cfg = ib_config(ib_dir.path(), ib_port, &[("0363", a_port)]);
    let settings = dkd::app::ib_settings(&ib_cfg);
    let ib = start(ib_dir, ib_cfg).await;
    let a_dir = tempfile::tempdir().expect("dir");
    let mut a_cfg = gemeente_config(a_dir.path(), a_port, ib_port);
    a_cfg.scenario.enabled = true;
    a_cfg.scenario.push = Some(dkd::chain::scenario::PushKind::Paused);
    let a = start(a_dir, a_cfg).await;
    let people: Vec<_> = dkd::chain::demo::generate(40, demo_date())
        .into_iter()
        .map(|p| person(p.bsn.as_str(), &["0363"]))
        .collect();
    a.store.put_all(&people, "test").expect("put");
    let ib_row = || {
        let today = time::OffsetDateTime::now_utc().date();
        dkd::report::build_ib(&ib.store, &settings, today)
            .expect("report")
            .into_iter()
            .find(|r| r.gemeente == "0363")
            .expect("row")
    };
    // Several sender rounds (one per 500 ms when idle) pass; nothing may arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = a.store.outbox_status().expect("status");
    assert_eq!(st.pending, 40, "paused: everything still queued");
    let r = ib_row();
    assert_eq!(
        (r.bsns, r.updates_received),
        (0, 0),
        "the IB heard nothing: {r:?}"
    );

    set_scenario(&a, r#"{"push": "partial", "push_share": 0.5}"#).await;
    wait_until("the outbox is worked off", 30, || {
        a.store.outbox_status().is_ok_and(|st| st.pending == 0)
    })
    .await;
    let st = a.store.outbox_status().expect("status");
    assert!(st.parked > 0 && st.parked < 40, "{st:?}");
    let parked = a.store.outbox_parked().expect("parked");
    assert!(parked
        .iter()
        .all(|e| e.last_error.as_deref() == Some(dkd::gemeente::push::WITHHELD)));
    let r = ib_row();
    assert_eq!(
        r.bsns,
        40 - st.parked,
        "the IB's index is incomplete: {r:?}"
    );
    assert_eq!(
        a.store.all_entries().count(),
        40,
        "the gemeente's own index is untouched"
    );

    set_scenario(&a, "{}").await;
    let (status, _) = admin(&a, "POST", "/sync/retry-parked", "").await;
    assert_eq!(status, 200);
    wait_until("the IB's index is complete", 30, || {
        dkd::report::build_ib(&ib.store, &settings, time::OffsetDateTime::now_utc().date())
            .is_ok_and(|rows| rows.iter().any(|r| r.gemeente == "0363" && r.bsns == 40))
    })
    .await;
}

/// `dkd serve` with a scenario but without `scenario.enabled = true` does not start: exit 3 (invalid
/// configuration), naming the key to set, before anything is bound.
#[test]
fn serve_refuses_a_scenario_without_enabled() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dkd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DKD_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["serve"])
        .current_dir(dir.path())
        .env("DKD_SERVER__LISTEN", "127.0.0.1:0")
        .env("DKD_ADMIN__LISTEN", "127.0.0.1:0")
        .env("DKD_OPS__LISTEN", "127.0.0.1:0")
        .env("DKD_SCENARIO__ANSWER", "bad-signature")
        .output()
        .expect("run dkd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("scenario.enabled = true"), "{stderr}");
    assert!(stderr.contains("bad-signature"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "no store was opened");
}

/// `dkd demo --gemeenten 5 --unreliable 0.4` in-process: every gemeente its own endpoint, store,
/// data and push, registered at the IB; two of them (the first and the third) unreliable. A person
/// of two reliable gemeenten comes back merged; one of an unreliable gemeente is answered within
/// the route timeout with an FWI naming it; the IB's monitor lists every gemeente.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_gemeenten_in_one_process_are_routed_merged_and_named_when_unreliable() {
    let dir = tempfile::tempdir().expect("dir");
    let ib_port = free_port();
    let mut ib_cfg = ib_config(&dir.path().join("ib"), ib_port, &[]);
    ib_cfg.ib.route_timeout_secs = 2;
    let g_cfg = gemeente_config(&dir.path().join("g"), 0, ib_port);
    let many = dkd::chain::demo::bind_many(dir.path(), ib_cfg, &g_cfg, 5, 0.4, demo_date())
        .await
        .expect("bind");
    let unreliable: Vec<&str> = many
        .gemeenten
        .iter()
        .filter(|g| g.2.is_some())
        .map(|g| g.0.as_str())
        .collect();
    assert_eq!(unreliable, ["1001", "1003"]);
    let stores: Vec<Store> = many.gemeenten.iter().map(|g| g.1.store().clone()).collect();
    let ib_store = many.ib.store().clone();
    let ib_url = many.ib.public_url().to_owned();
    let merged = many.merged_bsn.clone().expect("a merged BSN");
    let at_unreliable = many.unreliable_bsn.clone().expect("an unreliable BSN");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(many.run(async move {
        let _ = rx.await;
    }));
    wait_until("every gemeente delivered its outbox", 60, || {
        stores
            .iter()
            .all(|s| s.outbox_status().is_ok_and(|st| st.pending == 0))
    })
    .await;
    // Each gemeente pushed under its own OIN, in its TLS certificate and its wsa:From alike.
    let pushed: std::collections::BTreeSet<(Option<String>, Option<String>)> = ib_store
        .audit_since(0)
        .map(|r| r.expect("audit record"))
        .filter(|r| r.operation == "IBVerwijsindex")
        .map(|r| (r.tls_oin, r.from_oin))
        .collect();
    let own: std::collections::BTreeSet<(Option<String>, Option<String>)> = (0..5)
        .map(|i| {
            (
                Some(dkd::chain::demo::many_oin(i)),
                Some(dkd::chain::demo::many_oin(i)),
            )
        })
        .collect();
    assert_eq!(pushed, own);

    let s = ask(&ib_url, &merged, Duration::from_secs(10)).await;
    let Seen::Reply(Reply::Client(p, m)) = &s else {
        panic!("merged: {s:?}")
    };
    let codes: Vec<&str> = p
        .atl_relaties
        .iter()
        .map(|r| r.bron.partij.as_str())
        .collect();
    assert_eq!(codes, ["1004", "1005"], "{s:?}");
    assert!(m.is_empty(), "{m:?}");

    let s = ask(&ib_url, &at_unreliable, Duration::from_secs(10)).await;
    let Seen::Reply(Reply::Fwi(m)) = &s else {
        panic!("unreliable: {s:?}")
    };
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].code == "0052" && m[0].tekst.contains("1001"), "{m:?}");

    let settings = {
        let mut c = ib_config(dir.path(), ib_port, &[]);
        c.ib.gemeenten = (0..5)
            .map(|i| dkd::config::IbGemeenteConfig {
                code: dkd::chain::demo::many_code(i),
                name: String::new(),
                oins: vec![],
                url: Some("https://x/".into()),
                delivery: dkd::ib::Delivery::Webservice,
            })
            .collect();
        dkd::app::ib_settings(&c)
    };
    let report =
        dkd::report::build_ib(&ib_store, &settings, time::OffsetDateTime::now_utc().date())
            .expect("report");
    assert_eq!(report.len(), 5, "{report:?}");
    assert!(
        report
            .iter()
            .all(|r| r.bsns >= dkd::chain::demo::MANY_PERSONS as u64),
        "{report:?}"
    );
    let first = report.iter().find(|r| r.gemeente == "1001").expect("1001");
    assert_eq!(first.queries_failed, 1, "{first:?}");
    drop(tx);
}
