//! `dkd check` against dkd itself (every check passes, signed both ways), against dkd with
//! settings that break a check, and against small misbehaving responders: each check that can
//! break is seen failing by its name.

use crate::common::*;
use dkd::certs::DevCa;
use dkd::chain::scenario::{AnswerKind, ScenarioConfig};
use dkd::config::Config;
use dkd::soap::wssec::SigningMode;
use dkd::tools::check::{run, CheckOptions, Report, Verdict, CHECKS};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A PKI of its own: a server certificate with a year left, one with 5 days, one without OIN.
struct CheckPki {
    dir: tempfile::TempDir,
}

impl CheckPki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn check_pki_blocking() -> &'static CheckPki {
    static PKI: OnceLock<CheckPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, i: &dkd::certs::Issued| {
            std::fs::write(dir.path().join(format!("{name}.pem")), &i.cert_pem).expect("cert");
            std::fs::write(dir.path().join(format!("{name}-key.pem")), &i.key_pem).expect("key");
        };
        let ca = DevCa::new("check test CA").expect("ca");
        write("ca", &ca.issued());
        let names = ["localhost", "127.0.0.1"];
        for (name, oin, days) in [
            ("server", Some(SERVER_OIN), 365),
            ("short", Some(SERVER_OIN), 5),
            ("nooin", None, 365),
        ] {
            write(
                name,
                &ca.server("localhost", &names, oin, days).expect("server"),
            );
        }
        write(
            "client",
            &ca.client("check", Some(ALLOWED_OIN), 365).expect("client"),
        );
        CheckPki { dir }
    })
}

async fn check_pki() -> &'static CheckPki {
    tokio::task::spawn_blocking(check_pki_blocking)
        .await
        .expect("pki")
}

/// dkd serving `server_cert` from the check PKI, with `signing`, tweaked further by `tweak`.
async fn dkd(server_cert: &str, signing: SigningMode, tweak: impl FnOnce(&mut Config)) -> Server {
    let p = check_pki().await;
    let (cert, key, ca) = (
        p.path(&format!("{server_cert}.pem")),
        p.path(&format!("{server_cert}-key.pem")),
        p.path("ca.pem"),
    );
    Server::start_with(move |c| {
        c.tls.cert = cert;
        c.tls.key = key;
        c.tls.client_ca = ca;
        c.security.signing = Some(signing);
        tweak(c);
    })
    .await
}

async fn options(url: &str) -> CheckOptions {
    let p = check_pki().await;
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut o = CheckOptions::from_paths(
            &url,
            &p.path("client.pem"),
            &p.path("client-key.pem"),
            &p.path("ca.pem"),
            None,
            false,
        )
        .expect("options");
        o.requests = 5;
        o
    })
    .await
    .expect("join")
}

fn show(r: &Report) -> String {
    dkd::tools::check::table(r)
}

fn verdict(r: &Report, name: &str) -> Verdict {
    r.get(name)
        .unwrap_or_else(|| panic!("{name} missing\n{}", show(r)))
        .verdict
}

/// Asserts that check `name`'s reason says `needle`: the sentence a supplier acts on.
fn assert_reason(r: &Report, name: &str, needle: &str) {
    let reason = &r
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing\n{}", show(r)))
        .reason;
    assert!(reason.contains(needle), "{name}: {reason:?}\n{}", show(r));
}

/// Asserts that exactly `names` failed: a check breaks by its own name, and only its own.
fn only_failed(r: &Report, names: &[&str]) {
    assert!(r.connected, "{}", show(r));
    for (n, _) in CHECKS {
        let v = verdict(r, n);
        if names.contains(n) {
            assert_eq!(v, Verdict::Fail, "{n} should fail\n{}", show(r));
        } else {
            assert_ne!(v, Verdict::Fail, "{n} should not fail\n{}", show(r));
        }
    }
    assert_eq!(r.exit_code(), 1);
}

#[tokio::test]
async fn dkd_itself_passes_every_check_signed_both_ways() {
    let server = dkd("server", SigningMode::Required, |_| {}).await;
    let mut o = options(&server.url).await;
    o.bsns = vec![server.known_bsn()];
    let r = run(&o).await;
    eprintln!("{}", show(&r));
    assert!(r.connected, "{}", show(&r));
    assert_eq!(r.outcomes.len(), CHECKS.len(), "{}", show(&r));
    for o in &r.outcomes {
        assert_eq!(
            o.verdict,
            Verdict::Pass,
            "{}: {}\n{}",
            o.name,
            o.reason,
            show(&r)
        );
    }
    assert_eq!(r.exit_code(), 0);
    let x = dkd::tools::check::junit(&r);
    assert!(
        x.contains(&format!("tests=\"{}\" failures=\"0\"", CHECKS.len())),
        "{x}"
    );
}

#[tokio::test]
async fn signing_off_fails_the_signature_and_every_security_check() {
    let server = dkd("server", SigningMode::Off, |_| {}).await;
    let mut o = options(&server.url).await;
    o.bsns = vec![server.known_bsn()];
    let r = run(&o).await;
    only_failed(
        &r,
        &[
            "answers.signed",
            "errors.malformed-bsn",
            "errors.eleven-test",
            "errors.not-xml",
            "errors.soap12",
            "errors.soapaction",
            "errors.action",
            "errors.message-id",
            "errors.oversized",
            "security.unsigned",
            "security.tampered-body",
            "security.sha1",
            "security.expired",
            "security.future",
            "security.no-timestamp",
            "security.wrapping",
            "security.duplicate-id",
            "security.replay",
            "security.untrusted-ca",
        ],
    );
    // wsa:To is checked with or without signatures, so tampering with it is still refused.
    assert_eq!(
        verdict(&r, "security.tampered-to"),
        Verdict::Pass,
        "{}",
        show(&r)
    );
    assert_reason(&r, "errors.eleven-test", "signature");
}

#[tokio::test]
async fn optional_signing_fails_only_security_unsigned_and_slow_answers_warn() {
    let server = dkd("server", SigningMode::Optional, |_| {}).await;
    let mut o = options(&server.url).await;
    o.slow = Duration::ZERO;
    let r = run(&o).await;
    only_failed(&r, &["security.unsigned"]);
    assert_eq!(
        verdict(&r, "answers.known-bsn"),
        Verdict::Skip,
        "no --bsn: {}",
        show(&r)
    );
    assert_eq!(verdict(&r, "timing.latency"), Verdict::Warn, "{}", show(&r));
}

#[tokio::test]
async fn a_short_certificate_fails_days_left_and_one_without_oin_fails_oin() {
    let short = dkd("short", SigningMode::Required, |_| {}).await;
    let r = run(&options(&short.url).await).await;
    only_failed(&r, &["tls.days-left"]);
    assert_reason(&r, "tls.days-left", "renew");

    // Signing with a certificate that does carry the OIN: a signer without one is refused anyway
    // (answers.signed), and that is not what this case is about.
    let p = check_pki().await;
    let (sc, sk) = (p.path("server.pem"), p.path("server-key.pem"));
    let nooin = dkd("nooin", SigningMode::Required, move |c| {
        c.security.sign_cert = Some(sc);
        c.security.sign_key = Some(sk);
    })
    .await;
    let r = run(&options(&nooin.url).await).await;
    only_failed(&r, &["tls.oin"]);
}

#[tokio::test]
async fn a_wrong_public_url_fails_wsdl_address() {
    // The endpoint is reached as localhost, while dkd believes it is 127.0.0.1 (and accepts the
    // localhost URL as wsa:To): only the WSDL's soap:address gives it away.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let seen = format!("https://localhost:{port}/GSDDossierReintegratie-v0200");
    let alias = seen.clone();
    let server = dkd("server", SigningMode::Required, move |c| {
        c.server.listen = format!("127.0.0.1:{port}");
        c.server.public_url = Some(format!(
            "https://127.0.0.1:{port}/GSDDossierReintegratie-v0200"
        ));
        c.server.to_aliases = vec![alias];
    })
    .await;
    let r = run(&options(&seen).await).await;
    only_failed(&r, &["wsdl.address"]);
    assert_reason(&r, "wsdl.address", "127.0.0.1");
    drop(server);
}

#[tokio::test]
async fn a_stopped_endpoint_cannot_be_connected_to() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let r = run(&options(&format!("https://{addr}/GSDDossierReintegratie-v0200")).await).await;
    assert!(!r.connected);
    assert_eq!(r.exit_code(), 3);
    assert!(dkd::tools::check::junit(&r).contains("name=\"connect\""));
}

/// An HTTPS responder that gets everything wrong at once: TLS 1.3 only, no client certificate
/// asked, and every request (a WSDL GET included) answered 200 with one fixed, unsigned
/// NietsGevonden about another message.
async fn fixed_responder(wsdl: Option<String>) -> (String, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::TokioIo;
    let p = check_pki().await;
    let cfg = rustls::ServerConfig::builder_with_provider(dkd::http::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            dkd::http::tls::load_certs(&p.path("server.pem")).expect("cert"),
            dkd::http::tls::load_key(&p.path("server-key.pem")).expect("key"),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header><wsa:RelatesTo xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">urn:uuid:fixed</wsa:RelatesTo></soapenv:Header><soapenv:Body><gsd:GSDReintegratieInfoResponse xmlns:gsd=\"{NS_GSD}\"><fwi:NietsGevonden xmlns:fwi=\"http://bkwi.nl/SuwiML/FWI/v0205\"/></gsd:GSDReintegratieInfoResponse></soapenv:Body></soapenv:Envelope>"
    );
    let body = Arc::new(body);
    let wsdl = Arc::new(wsdl);
    let task = tokio::spawn(async move {
        // Bounded: the check makes a few dozen connections.
        for _ in 0..500 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, body, wsdl) = (acceptor.clone(), body.clone(), wsdl.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let text = match wsdl.as_ref() {
                        Some(w) if req.method() == hyper::Method::GET => w.clone(),
                        _ => body.as_ref().clone(),
                    };
                    async move {
                        hyper::Response::builder()
                            .status(200)
                            .header("content-type", "text/xml; charset=utf-8")
                            .body(http_body_util::Full::new(bytes::Bytes::from(text)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://{addr}/GSDDossierReintegratie-v0200"), task)
}

#[tokio::test]
async fn a_responder_with_a_fixed_unsigned_answer_fails_by_name() {
    let (url, task) = fixed_responder(None).await;
    let mut o = options(&url).await;
    o.bsns = vec!["999900006".into()];
    let r = run(&o).await;
    task.abort();
    let mut broken = vec![
        "tls.versions",
        "tls.cipher",
        "tls.client-cert",
        "wsdl.parses",
        "answers.known-bsn",
        "answers.addressing",
        // Its fixed answer's wsa:From is not the ?oin= address it was sent to.
        "answers.to-oin",
        "answers.signed",
    ];
    broken.extend(
        CHECKS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| n.starts_with("errors.") || n.starts_with("security.")),
    );
    only_failed(&r, &broken);
    let reason = |n: &str| r.get(n).expect("check").reason.clone();
    assert!(
        reason("tls.versions").contains("TLS 1.2 is not accepted"),
        "{}",
        show(&r)
    );
    assert!(
        reason("answers.addressing").contains("RelatesTo"),
        "{}",
        show(&r)
    );
    assert!(reason("answers.to-oin").contains("?oin="), "{}", show(&r));
    assert!(
        reason("errors.not-xml").contains("instead of a SOAP 1.1 Fault"),
        "{}",
        show(&r)
    );
    let x = dkd::tools::check::junit(&r);
    assert!(x.contains("name=\"security.replay\" time="), "{x}");
    assert!(x.contains(&format!("failures=\"{}\"", broken.len())), "{x}");
}

#[tokio::test]
async fn a_server_answering_a_tls_1_0_hello_is_seen_accepting_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        for _ in 0..2 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            // A ServerHello for TLS 1.0: record header, handshake type 2, version 3.1.
            let mut hello = vec![0x16, 3, 1, 0, 42, 2, 0, 0, 38, 3, 1];
            hello.extend([0u8; 36]);
            let _ = tcp.write_all(&hello).await;
        }
    });
    let t = Duration::from_secs(5);
    let legacy = dkd::tools::check::tls::legacy_hello("127.0.0.1", addr.port(), 0x0301, t)
        .await
        .expect("hello");
    assert_eq!(legacy, dkd::tools::check::tls::Legacy::Accepted);
    let tls11 = dkd::tools::check::tls::legacy_hello("127.0.0.1", addr.port(), 0x0302, t)
        .await
        .expect("hello");
    assert!(
        matches!(tls11, dkd::tools::check::tls::Legacy::Refused(_)),
        "{tls11:?}"
    );
    task.abort();

    let server = dkd("server", SigningMode::Required, |_| {}).await;
    let refused = dkd::tools::check::tls::legacy_hello("127.0.0.1", server.addr.port(), 0x0301, t)
        .await
        .expect("hello");
    assert!(
        matches!(refused, dkd::tools::check::tls::Legacy::Refused(ref w) if w.contains("alert")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn swapped_bsns_fail_the_two_answer_checks() {
    let server = dkd("server", SigningMode::Required, |_| {}).await;
    let mut o = options(&server.url).await;
    o.bsns = vec![dkd::tools::check::DEFAULT_UNKNOWN_BSN.into()];
    o.unknown_bsn = server.known_bsn();
    let r = run(&o).await;
    only_failed(&r, &["answers.known-bsn", "answers.unknown-bsn"]);
    assert_reason(&r, "answers.known-bsn", "NietsGevonden");
}

#[tokio::test]
async fn a_server_the_ca_does_not_vouch_for_fails_the_chain() {
    // dkd serving the common test PKI's certificate; the check trusts only its own CA.
    let server = Server::start_with(|c| c.security.signing = Some(SigningMode::Required)).await;
    let r = run(&options(&server.url).await).await;
    assert!(r.connected, "{}", show(&r));
    assert_eq!(verdict(&r, "tls.chain"), Verdict::Fail, "{}", show(&r));
    assert!(
        r.get("tls.chain").expect("check").reason.contains("--ca"),
        "{}",
        show(&r)
    );
    assert_eq!(r.exit_code(), 1);
}

#[tokio::test]
async fn the_ib_verwijsindex_endpoint_passes_as_service_verwijsindex() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = crate::chain::free_port();
    let mut cfg = crate::chain::ib_config(dir.path(), port, &[("0363", crate::chain::free_port())]);
    cfg.ib.gemeenten[0].oins = vec![ALLOWED_OIN.into()];
    let ib = crate::chain::start(dir, cfg).await;
    let url = ib.vi_url.clone().expect("IB role");
    let p = pki();
    let mut o = CheckOptions::from_paths(
        &url,
        &p.path("client.pem"),
        &p.path("client-key.pem"),
        &p.path("ca.pem"),
        None,
        false,
    )
    .expect("options");
    o.service = dkd::tools::check::Service::Verwijsindex;
    o.gemeente = "0363".into();
    o.bsns = vec!["999900006".into()];
    o.requests = 3;
    let r = run(&o).await;
    eprintln!("{}", show(&r));
    for c in &r.outcomes {
        let expected = if c.name == "answers.unknown-bsn" {
            Verdict::Skip
        } else {
            Verdict::Pass
        };
        assert_eq!(
            c.verdict,
            expected,
            "{}: {}\n{}",
            c.name,
            c.reason,
            show(&r)
        );
    }
    // The same checks name what is wrong: an unregistered gemeente's update is refused.
    o.gemeente = "9999".into();
    let r = run(&o).await;
    assert_eq!(
        verdict(&r, "answers.known-bsn"),
        Verdict::Fail,
        "{}",
        show(&r)
    );
    assert_reason(&r, "answers.known-bsn", "0101");
}

#[tokio::test]
async fn a_wsdl_for_another_service_fails_operation_and_address() {
    let wsdl = dkd::http::wsdl::Documents::verwijsindex("https://ib.example/IBVerwijsindex-v0300")
        .wsdl
        .clone();
    let (url, task) = fixed_responder(Some(wsdl)).await;
    let r = run(&options(&url).await).await;
    task.abort();
    assert_eq!(verdict(&r, "wsdl.parses"), Verdict::Pass, "{}", show(&r));
    assert_eq!(verdict(&r, "wsdl.operation"), Verdict::Fail, "{}", show(&r));
    assert_eq!(verdict(&r, "wsdl.address"), Verdict::Fail, "{}", show(&r));
    assert_reason(&r, "wsdl.operation", "GSDReintegratieInfo");
}

/// `dkd check …` as a CI job runs it: its exit code and stdout.
async fn cli(args: Vec<String>) -> (i32, String, String) {
    let p = check_pki().await;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dkd"));
    c.arg("check")
        .args(args)
        .arg("--ca")
        .arg(p.path("ca.pem"))
        .arg("--cert")
        .arg(p.path("client.pem"))
        .arg("--key")
        .arg(p.path("client-key.pem"))
        .args(["--requests", "2"]);
    let out = tokio::task::spawn_blocking(move || c.output())
        .await
        .expect("join")
        .expect("run dkd check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_command_writes_junit_and_exits_0_1_2_or_3() {
    let server = dkd("server", SigningMode::Required, |_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dkd-check.xml");
    let (code, _, err) = cli(vec![
        server.url.clone(),
        "--bsn".into(),
        server.known_bsn(),
        "--format".into(),
        "junit".into(),
        "--out".into(),
        file.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 failed"), "{err}");
    let x = std::fs::read_to_string(&file).expect("junit file");
    assert!(x.contains("failures=\"0\""), "{x}");
    assert!(
        x.contains("<testcase classname=\"dkd.check.security\" name=\"security.replay\""),
        "{x}"
    );

    let optional = dkd("server", SigningMode::Optional, |_| {}).await;
    let (code, out, err) = cli(vec![optional.url.clone(), "--format".into(), "json".into()]).await;
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let unsigned = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "security.unsigned")
        .expect("security.unsigned");
    assert_eq!(unsigned["verdict"], "fail", "{out}");

    let (code, _, err) = cli(vec![server.url.clone(), "--bsn".into(), "12345".into()]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(vec!["http://not-https".into()]).await;
    assert_eq!(code, 2, "{err}");

    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let (code, out, _) = cli(vec![format!("https://{addr}/GSDDossierReintegratie-v0200")]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("cannot connect"), "{out}");
}

/// dkd (signing required) running the scenario `answer` for every request it accepts, checked
/// with its known BSN and `tune`d options: the proof that each scenario is seen by `dkd check`,
/// by the name of the check it breaks. Requests the endpoint must refuse (errors.*, security.*)
/// are refused before a scenario decides anything, so those checks keep passing.
async fn under_scenario(
    answer: AnswerKind,
    scenario: impl FnOnce(&mut ScenarioConfig),
    tune: impl FnOnce(&mut CheckOptions),
) -> Report {
    let mut cfg = ScenarioConfig {
        enabled: true,
        answer: Some(answer),
        ..ScenarioConfig::default()
    };
    scenario(&mut cfg);
    let server = dkd("server", SigningMode::Required, move |c| c.scenario = cfg).await;
    let mut o = options(&server.url).await;
    o.bsns = vec![server.known_bsn()];
    o.requests = 2;
    tune(&mut o);
    let r = run(&o).await;
    eprintln!("scenario {}:\n{}", answer.name(), show(&r));
    assert_eq!(
        r.outcomes.len(),
        CHECKS.len(),
        "scenario {}: every check is reported\n{}",
        answer.name(),
        show(&r)
    );
    r
}

/// Asserts that under scenario `answer` exactly `names` failed, naming the scenario otherwise.
fn scenario_fails(answer: AnswerKind, r: &Report, names: &[&str]) {
    let s = answer.name();
    assert!(r.connected, "scenario {s}:\n{}", show(r));
    for (n, _) in CHECKS {
        let v = verdict(r, n);
        if names.contains(n) {
            assert_eq!(
                v,
                Verdict::Fail,
                "scenario {s}: {n} should fail\n{}",
                show(r)
            );
        } else {
            assert_ne!(
                v,
                Verdict::Fail,
                "scenario {s}: {n} should not fail\n{}",
                show(r)
            );
        }
    }
    assert_eq!(r.exit_code(), 1, "scenario {s}");
}

/// Every check that sends a request dkd accepts and answers about a BSN: each is hit by a
/// transport scenario (nothing SOAP comes back). answers.addressing and answers.signed judge
/// the last answer that arrived, so with none they are skipped, not failed.
const ANSWERED: [&str; 5] = [
    "answers.known-bsn",
    "answers.unknown-bsn",
    "answers.to-oin",
    "security.replay",
    "timing.latency",
];

#[tokio::test]
async fn check_under_scenario_delay_warns_on_timing_latency() {
    // 300 ms late against a 100 ms threshold: every answer is right, only slow.
    let a = AnswerKind::Delay;
    let r = under_scenario(
        a,
        |s| s.delay_ms = 300,
        |o| o.slow = Duration::from_millis(100),
    )
    .await;
    assert!(r.connected, "{}", show(&r));
    assert_eq!(verdict(&r, "timing.latency"), Verdict::Warn, "{}", show(&r));
    assert_reason(&r, "timing.latency", "above 100 ms");
    assert!(
        r.outcomes.iter().all(|o| o.verdict != Verdict::Fail),
        "a late right answer breaks nothing else\n{}",
        show(&r)
    );
}

#[tokio::test]
async fn check_under_scenario_hang_fails_every_answered_check() {
    // No answer within the 1 s --timeout, for each request dkd accepts.
    let a = AnswerKind::Hang;
    let r = under_scenario(a, |_| {}, |o| o.timeout = Duration::from_secs(1)).await;
    scenario_fails(a, &r, &ANSWERED);
    assert_eq!(verdict(&r, "answers.signed"), Verdict::Skip, "{}", show(&r));
    assert_reason(&r, "answers.known-bsn", "no answer within");
}

#[tokio::test]
async fn check_under_scenario_reset_fails_every_answered_check() {
    // The connection closes after each accepted request: no answer at all.
    let a = AnswerKind::Reset;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &ANSWERED);
    assert_eq!(
        verdict(&r, "answers.addressing"),
        Verdict::Skip,
        "{}",
        show(&r)
    );
}

#[tokio::test]
async fn check_under_scenario_http_503_fails_every_answered_check() {
    // HTTP 503 with plain text: an answer, but no SOAP. timing.latency must not time it as one.
    let a = AnswerKind::Http503;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &ANSWERED);
    assert_reason(&r, "timing.latency", "503");
}

#[tokio::test]
async fn check_under_scenario_fault_fails_the_answer_checks() {
    // Every accepted request answered with a (proper, signed) Fault 0021: nothing is answered.
    let a = AnswerKind::Fault;
    let r = under_scenario(a, |s| s.fault_code = "0021".into(), |_| {}).await;
    scenario_fails(
        a,
        &r,
        &[
            "answers.known-bsn",
            "answers.unknown-bsn",
            "answers.to-oin",
            "security.replay",
        ],
    );
    assert_reason(&r, "answers.known-bsn", "0021");
}

#[tokio::test]
async fn check_under_scenario_unsigned_fails_answers_signed() {
    // The right answer without wsse:Security.
    let a = AnswerKind::Unsigned;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &["answers.signed"]);
}

#[tokio::test]
async fn check_under_scenario_bad_signature_fails_answers_signed() {
    // Signed, but the SignatureValue does not verify.
    let a = AnswerKind::BadSignature;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &["answers.signed"]);
}

#[tokio::test]
async fn check_under_scenario_no_confirmation_fails_answers_signed() {
    // Signed, without the SignatureConfirmation of the (signed) request.
    let a = AnswerKind::NoConfirmation;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &["answers.signed"]);
    assert_reason(&r, "answers.signed", "SignatureConfirmation");
}

#[tokio::test]
async fn check_under_scenario_schema_invalid_fails_known_and_unknown_bsn() {
    // The ClientSuwi loses its Burgerservicenr; NietsGevonden gets an element the schema lacks.
    let a = AnswerKind::SchemaInvalid;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &["answers.known-bsn", "answers.unknown-bsn"]);
    assert_reason(&r, "answers.known-bsn", "schema");
}

#[tokio::test]
async fn check_under_scenario_other_bsn_fails_known_and_unknown_bsn() {
    // A ClientSuwi about someone else: for the known BSN and, instead of NietsGevonden, for the
    // unknown one.
    let a = AnswerKind::OtherBsn;
    let r = under_scenario(a, |_| {}, |_| {}).await;
    scenario_fails(a, &r, &["answers.known-bsn", "answers.unknown-bsn"]);
    assert_reason(&r, "answers.known-bsn", "another BSN");
}
