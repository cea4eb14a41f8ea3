//! `dkd probe` against a healthy dkd, one with an almost-expired certificate, a stopped one, a
//! non-SOAP HTTPS server, a fault, an unsigned answer and a slow server; both output formats.

use crate::common::*;
use dkd::certs::{DevCa, Issued};
use dkd::soap::wssec::SigningMode;
use dkd::tools::probe::{
    nagios_line, probe, prometheus, Answer, ProbeOptions, ProbeResult, Status,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A PKI of its own: common.rs's server certificate lives 30 days, which is a WARNING already.
struct ProbePki {
    dir: tempfile::TempDir,
}

impl ProbePki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn write(dir: &Path, name: &str, issued: &Issued) {
    std::fs::write(dir.join(format!("{name}.pem")), &issued.cert_pem).expect("write cert");
    std::fs::write(dir.join(format!("{name}-key.pem")), &issued.key_pem).expect("write key");
}

/// Days of validity of the "short" server certificate: below 30 (WARNING), not below 7.
const SHORT_DAYS: i64 = 12;

fn probe_pki_blocking() -> &'static ProbePki {
    static PKI: OnceLock<ProbePki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = DevCa::new("probe test CA").expect("ca");
        write(dir.path(), "ca", &ca.issued());
        let names = ["localhost", "127.0.0.1"];
        write(
            dir.path(),
            "server",
            &ca.server("localhost", &names, Some(SERVER_OIN), 365)
                .expect("server"),
        );
        write(
            dir.path(),
            "short",
            &ca.server("localhost", &names, Some(SERVER_OIN), SHORT_DAYS)
                .expect("server"),
        );
        write(
            dir.path(),
            "client",
            &ca.client("probe", Some(ALLOWED_OIN), 365).expect("client"),
        );
        write(
            dir.path(),
            "nooin",
            &ca.client("no oin", None, 365).expect("client"),
        );
        // What many dkd installations sign with: their TLS server certificate, EKU serverAuth only.
        write(
            dir.path(),
            "signer-serverauth",
            &ca.signer(
                "localhost",
                Some(SERVER_OIN),
                365,
                dkd::certs::SignerUsage::ServerAuthOnly,
            )
            .expect("signer"),
        );
        ProbePki { dir }
    })
}

async fn probe_pki() -> &'static ProbePki {
    tokio::task::spawn_blocking(probe_pki_blocking)
        .await
        .expect("pki")
}

/// dkd with signing required, serving `server_cert` from the probe PKI.
async fn dkd(server_cert: &str, signing: SigningMode) -> Server {
    let p = probe_pki().await;
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
    })
    .await
}

async fn options(url: &str) -> ProbeOptions {
    let p = probe_pki().await;
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        ProbeOptions::from_paths(
            &url,
            &p.path("client.pem"),
            &p.path("client-key.pem"),
            &p.path("ca.pem"),
            None,
            None,
        )
    })
    .await
    .expect("join")
    .expect("options")
}

/// Probes and shows the status line (visible with --nocapture).
async fn run(opts: ProbeOptions) -> ProbeResult {
    let r = probe(opts).await;
    eprintln!("{}", nagios_line(&r));
    r
}

fn report(r: &ProbeResult) -> String {
    format!("{}\n{r:?}", nagios_line(r))
}

#[tokio::test]
async fn probe_is_ok_against_a_healthy_dkd() {
    let server = dkd("server", SigningMode::Required).await;
    let r = run(options(&server.url).await).await;
    let line = nagios_line(&r);
    assert_eq!(r.status, Status::Ok, "{}", report(&r));
    assert_eq!(r.status.exit_code(), 0);
    assert_eq!(r.answer, Some(Answer::NietsGevonden));
    assert_eq!(r.signature_valid, Some(true));
    assert_eq!(r.relates_to_matches, Some(true));
    assert_eq!(r.signer_oin.as_deref(), Some(SERVER_OIN));
    assert_eq!(r.server_oin.as_deref(), Some(SERVER_OIN));
    assert_eq!(r.http_status, Some(200));
    let days = r.cert_days_left.expect("cert days");
    assert!((363..=365).contains(&days), "{days}");
    assert!(
        line.starts_with("DKD OK - GSDReintegratieInfo answered NietsGevonden in "),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            " ms, signature valid, certificate {days} days left | time=0."
        )),
        "{line}"
    );
    let size = r.response_size.expect("size");
    assert!(
        line.ends_with(&format!("s;;;0 cert_days={days};30:;7: size={size}B;;;0")),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
}

#[tokio::test]
async fn probe_is_ok_when_dkd_signs_with_a_tls_server_certificate() {
    let p = probe_pki().await;
    let (cert, key, ca) = (
        p.path("server.pem"),
        p.path("server-key.pem"),
        p.path("ca.pem"),
    );
    let (sign_cert, sign_key) = (
        p.path("signer-serverauth.pem"),
        p.path("signer-serverauth-key.pem"),
    );
    let server = Server::start_with(move |c| {
        c.tls.cert = cert;
        c.tls.key = key;
        c.tls.client_ca = ca;
        c.security.signing = Some(SigningMode::Required);
        c.security.sign_cert = Some(sign_cert);
        c.security.sign_key = Some(sign_key);
    })
    .await;
    let r = run(options(&server.url).await).await;
    assert_eq!(r.status, Status::Ok, "{}", report(&r));
    assert_eq!(r.signature_valid, Some(true), "{}", report(&r));
    assert_eq!(r.signer_oin.as_deref(), Some(SERVER_OIN));
}

#[tokio::test]
async fn probe_reads_a_clientsuwi_answer() {
    let server = dkd("server", SigningMode::Required).await;
    let mut opts = options(&server.url).await;
    opts.bsn = server.known_bsn();
    let r = run(opts).await;
    assert_eq!(r.status, Status::Ok, "{}", report(&r));
    assert_eq!(r.answer, Some(Answer::ClientSuwi));
    assert!(
        r.summary
            .starts_with("GSDReintegratieInfo answered ClientSuwi in "),
        "{}",
        r.summary
    );
}

#[tokio::test]
async fn probe_warns_when_the_server_certificate_is_about_to_expire() {
    let server = dkd("short", SigningMode::Required).await;
    let r = run(options(&server.url).await).await;
    let days = r.cert_days_left.expect("cert days");
    assert!((SHORT_DAYS - 1..=SHORT_DAYS).contains(&days), "{days}");
    assert_eq!(r.status, Status::Warning, "{}", report(&r));
    assert_eq!(r.status.exit_code(), 1);
    assert_eq!(r.signature_valid, Some(true));
    let line = nagios_line(&r);
    assert!(
        line.starts_with(&format!(
            "DKD WARNING - certificate {days} days left (warning below 30), GSDReintegratieInfo answered NietsGevonden"
        )),
        "{line}"
    );
    assert!(line.contains(&format!("cert_days={days};30:;7:")), "{line}");

    let mut opts = options(&server.url).await;
    opts.critical_days = 20;
    let r = run(opts).await;
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert_eq!(r.status.exit_code(), 2);
    assert!(
        r.summary
            .starts_with(&format!("certificate {days} days left (critical below 20)")),
        "{}",
        r.summary
    );
    assert!(nagios_line(&r).contains(&format!("cert_days={days};30:;20:")));

    let mut opts = options(&server.url).await;
    opts.warning_days = 10;
    let r = run(opts).await;
    assert_eq!(r.status, Status::Ok, "{}", report(&r));
}

#[tokio::test]
async fn probe_is_critical_when_dkd_is_stopped() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = format!("https://{addr}/GSDDossierReintegratie-v0200");
    let r = run(options(&url).await).await;
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert_eq!(
        nagios_line(&r),
        format!("DKD CRITICAL - cannot connect to {addr}: Connection refused")
    );
    assert_eq!(r.cert_days_left, None);
    let p = prometheus(&r);
    assert!(p.lines().any(|l| l == "dkd_probe_success 0"), "{p}");
    assert!(
        p.lines()
            .any(|l| l == "dkd_probe_status{status=\"critical\"} 1"),
        "{p}"
    );
    assert!(!p.contains("dkd_probe_cert_days_left"), "{p}");
}

/// A tiny HTTPS server (no client certificate asked) answering every request with `status`,
/// `content_type` and `body`, after `delay`.
async fn fake_server(
    status: u16,
    content_type: &'static str,
    body: String,
    delay: Duration,
) -> (String, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::TokioIo;
    let p = probe_pki().await;
    let cfg = rustls::ServerConfig::builder_with_provider(dkd::http::tls::provider())
        .with_safe_default_protocol_versions()
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
    let body = Arc::new(body);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .body(http_body_util::Full::new(bytes::Bytes::from(
                                body.as_bytes().to_vec(),
                            )))
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
async fn probe_is_critical_for_a_non_soap_server() {
    let (url, task) = fake_server(
        200,
        "text/html; charset=utf-8",
        "<html><body><h1>Welcome to nginx!</h1></body></html>".into(),
        Duration::ZERO,
    )
    .await;
    let r = run(options(&url).await).await;
    task.abort();
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert!(
        r.summary
            .starts_with("not a SOAP response (HTTP 200, text/html)"),
        "{}",
        r.summary
    );
    assert_eq!(r.signature_valid, None);
    // The TLS side was fine, so its facts are still reported.
    assert!(r.cert_days_left.is_some());
    assert!(nagios_line(&r)
        .starts_with("DKD CRITICAL - not a SOAP response (HTTP 200, text/html), certificate "));
}

#[tokio::test]
async fn probe_is_critical_for_an_unsigned_uncorrelated_answer() {
    // Well-formed and schema-valid, but unsigned and answering another MessageID.
    let envelope = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"><soapenv:Header><wsa:RelatesTo>urn:uuid:00000000-0000-4000-8000-000000000000</wsa:RelatesTo></soapenv:Header><soapenv:Body><smls:GSDReintegratieInfoResponse xmlns:smls=\"{NS_GSD}\"><fwi:NietsGevonden xmlns:fwi=\"http://bkwi.nl/SuwiML/FWI/v0205\"/></smls:GSDReintegratieInfoResponse></soapenv:Body></soapenv:Envelope>"
    );
    let (url, task) = fake_server(200, "text/xml; charset=utf-8", envelope, Duration::ZERO).await;
    let r = run(options(&url).await).await;
    task.abort();
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert_eq!(r.answer, Some(Answer::NietsGevonden));
    assert_eq!(r.relates_to_matches, Some(false));
    assert_eq!(r.signature_valid, Some(false));
    assert!(
        r.summary.contains(
            "wsa:RelatesTo urn:uuid:00000000-0000-4000-8000-000000000000 is not our MessageID"
        ),
        "{}",
        r.summary
    );
    assert!(
        r.summary
            .contains("response signature invalid: no wsse:Security header"),
        "{}",
        r.summary
    );
}

#[tokio::test]
async fn probe_is_critical_when_dkd_does_not_sign() {
    let server = dkd("server", SigningMode::Off).await;
    let r = run(options(&server.url).await).await;
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert_eq!(r.answer, Some(Answer::NietsGevonden));
    assert_eq!(r.relates_to_matches, Some(true));
    assert_eq!(r.signature_valid, Some(false));
    assert!(
        nagios_line(&r).starts_with("DKD CRITICAL - response signature invalid: "),
        "{}",
        report(&r)
    );
}

#[tokio::test]
async fn probe_is_critical_for_a_fault() {
    let server = dkd("server", SigningMode::Required).await;
    let mut opts = options(&server.url).await;
    opts.bsn = "123456781".into(); // fails the 11-test
    let r = run(opts).await;
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert_eq!(r.answer, Some(Answer::Fault));
    assert_eq!(r.code.as_deref(), Some("0012"));
    assert_eq!(r.http_status, Some(500));
    // The fault is still a correctly signed, correlated answer.
    assert_eq!(r.signature_valid, Some(true), "{}", report(&r));
    assert_eq!(r.relates_to_matches, Some(true));
    let line = nagios_line(&r);
    assert!(
        line.starts_with("DKD CRITICAL - SOAP Fault soapenv:Client code 0012: "),
        "{line}"
    );
    assert!(line.contains("(HTTP 500, "), "{line}");
}

#[tokio::test]
async fn probe_is_critical_when_the_server_does_not_answer_in_time() {
    let (url, task) = fake_server(200, "text/xml", String::new(), Duration::from_secs(30)).await;
    let mut opts = options(&url).await;
    opts.timeout = Duration::from_millis(1500);
    let r = run(opts).await;
    task.abort();
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert!(
        r.summary.starts_with("no answer within 1.5 s ("),
        "{}",
        r.summary
    );
}

#[tokio::test]
async fn probe_prometheus_format() {
    let server = dkd("server", SigningMode::Required).await;
    let r = run(options(&server.url).await).await;
    assert_eq!(r.status, Status::Ok, "{}", report(&r));
    let p = prometheus(&r);
    let days = r.cert_days_left.expect("days");
    for line in [
        "dkd_probe_success 1".to_owned(),
        "dkd_probe_status{status=\"ok\"} 1".into(),
        "dkd_probe_status{status=\"warning\"} 0".into(),
        "dkd_probe_status{status=\"critical\"} 0".into(),
        "dkd_probe_status{status=\"unknown\"} 0".into(),
        "dkd_probe_exit_code 0".into(),
        format!("dkd_probe_cert_days_left {days}"),
        "dkd_probe_signature_valid 1".into(),
        "dkd_probe_relates_to_matches 1".into(),
        "dkd_probe_http_status_code 200".into(),
        format!(
            "dkd_probe_info{{url=\"{}\",answer=\"NietsGevonden\",code=\"\"}} 1",
            server.url
        ),
    ] {
        assert!(p.lines().any(|l| l == line), "{line} missing in\n{p}");
    }
    let duration: f64 = p
        .lines()
        .find_map(|l| l.strip_prefix("dkd_probe_duration_seconds "))
        .expect("duration")
        .parse()
        .expect("number");
    assert!(duration > 0.0 && duration < 10.0, "{duration}");
    // Every sample has HELP and TYPE lines.
    for l in p.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().expect("name");
        assert!(p.contains(&format!("# TYPE {name} gauge\n")), "{name}");
    }
}

#[tokio::test]
async fn probe_is_unknown_for_bad_arguments_and_unreadable_files() {
    let p = probe_pki().await;
    let err = ProbeOptions::from_paths(
        "https://127.0.0.1:1/x",
        &p.path("client.pem"),
        &p.path("client-key.pem"),
        &p.path("missing-ca.pem"),
        None,
        None,
    )
    .err()
    .expect("missing CA refused");
    assert!(err.contains("missing-ca.pem"), "{err}");
    let r = ProbeResult::unknown(err);
    assert_eq!(r.status.exit_code(), 3);
    assert!(
        nagios_line(&r).starts_with("DKD UNKNOWN - "),
        "{}",
        nagios_line(&r)
    );
    assert!(prometheus(&r).contains("dkd_probe_status{status=\"unknown\"} 1"));

    let err = ProbeOptions::from_paths(
        "http://127.0.0.1:1/x",
        &p.path("client.pem"),
        &p.path("client-key.pem"),
        &p.path("ca.pem"),
        None,
        None,
    )
    .err()
    .expect("http URL refused");
    assert!(err.contains("bad URL"), "{err}");

    let err = ProbeOptions::from_paths(
        "https://127.0.0.1:1/x",
        &p.path("nooin.pem"),
        &p.path("nooin-key.pem"),
        &p.path("ca.pem"),
        None,
        None,
    )
    .err()
    .expect("certificate without OIN refused");
    assert!(err.contains("no OIN"), "{err}");

    let mut opts = options("https://127.0.0.1:1/x").await;
    opts.bsn = "12345".into();
    let r = run(opts).await;
    assert_eq!(r.status, Status::Unknown, "{}", report(&r));
    assert!(r.summary.contains("--bsn"), "{}", r.summary);

    let mut opts = options("https://127.0.0.1:1/x").await;
    opts.warning_days = 5;
    let r = run(opts).await;
    assert_eq!(r.status, Status::Unknown, "{}", report(&r));
}

#[tokio::test]
async fn probe_is_critical_when_tls_fails() {
    // Harness server (other CA): the probe does not trust its certificate.
    let server = Server::start().await;
    let r = run(options(&server.url).await).await;
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert!(
        r.summary
            .starts_with(&format!("TLS handshake with {} failed: ", server.addr)),
        "{}",
        r.summary
    );
    assert_eq!(r.cert_days_left, None);

    // The server refuses our client certificate (another CA).
    let p = probe_pki().await;
    let opts = ProbeOptions::from_paths(
        &server.url,
        &p.path("client.pem"),
        &p.path("client-key.pem"),
        &pki().path("ca.pem"),
        None,
        None,
    )
    .expect("options");
    let r = run(opts).await;
    assert_eq!(r.status, Status::Critical, "{}", report(&r));
    assert!(
        r.summary
            .contains("(the server refused our client certificate)"),
        "{}",
        r.summary
    );
}
