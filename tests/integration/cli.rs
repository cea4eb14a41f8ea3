//! The `dkd` binary as a user runs it: `serve --demo` and its printed curl command, `certs`, and
//! exit codes for bad configuration.

use crate::common::skip;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn dkd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkd"));
    // Keep the developer's own DKD_* settings out of these tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("DKD_") {
            c.env_remove(k);
        }
    }
    c
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dkd serve --demo` in `dir`, every listener on a free port (later `env` calls override).
fn serve_demo_command(dir: &std::path::Path) -> Command {
    let mut c = dkd();
    c.args(["serve", "--demo"])
        .current_dir(dir)
        .env("DKD_SERVER__LISTEN", "127.0.0.1:0")
        .env("DKD_ADMIN__LISTEN", "127.0.0.1:0")
        .env("DKD_OPS__LISTEN", "127.0.0.1:0");
    c
}

/// `dkd serve --demo` in `dir` with `env` set and stderr to `stderr`, until its banner has printed
/// the curl command: the server, the banner and the command.
fn serve_demo(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> (Killed, String, String) {
    let child = serve_demo_command(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start dkd");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Drains stdout for as long as the server runs, also once nobody listens: a closed pipe
    // would fail the server's next line to stdout.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    let mut in_curl = false;
    let mut curl = String::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        banner.push(line.clone());
        if line.starts_with("curl ") {
            in_curl = true;
        }
        if in_curl {
            curl.push_str(&line);
            curl.push('\n');
            if line == "EOF" {
                break;
            }
        }
    }
    let banner = banner.join("\n");
    assert!(
        curl.ends_with("EOF\n"),
        "no complete curl command in the banner:\n{banner}"
    );
    (child, banner, curl)
}

/// Runs the banner's curl command: the response body, or `None` (skipped) without curl.
fn run_curl(curl: &str) -> Option<String> {
    if Command::new("curl").arg("--version").output().is_err() {
        skip("curl not installed: cannot run the printed command");
        return None;
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(curl)
        .arg("-s")
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
#[cfg_attr(dkd_missing = "curl", ignore = "needs curl (apt-get install curl)")]
fn serve_demo_prints_a_curl_command_that_returns_a_client_suwi() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_server, banner, curl) = serve_demo(dir.path(), &[], Stdio::null());
    assert!(banner.contains("?wsdl"), "{banner}");
    assert!(banner.contains("demo BSN"), "{banner}");
    assert!(
        dir.path().join("certs/dev/client.pem").is_file(),
        "dev PKI generated under certs/dev"
    );
    let Some(body) = run_curl(&curl) else { return };
    assert!(
        body.contains("<ClientSuwi>") && body.contains("GSDReintegratieInfoResponse"),
        "{body}"
    );
}

/// A server started with a scenario says so in its start-up banner, loudly, with what goes wrong
/// and how to switch it; one without a scenario says nothing of the kind.
#[test]
fn the_banner_of_a_server_with_a_scenario_says_it_answers_wrongly_on_purpose() {
    let dir = tempfile::tempdir().expect("tmp");
    let (server, banner, _) = serve_demo(
        dir.path(),
        &[
            ("DKD_SCENARIO__ENABLED", "true"),
            ("DKD_SCENARIO__ANSWER", "fault"),
            ("DKD_SCENARIO__FAULT_CODE", "0021"),
        ],
        Stdio::null(),
    );
    drop(server);
    for part in [
        "SCENARIO: this gemeente answers wrongly ON PURPOSE",
        "scenario : answer = fault (0021)",
        "PUT /scenario",
        "never run this in production",
    ] {
        assert!(banner.contains(part), "{part}:\n{banner}");
    }
    let plain = tempfile::tempdir().expect("tmp");
    let (_server, banner, _) = serve_demo(plain.path(), &[], Stdio::null());
    assert!(!banner.contains("SCENARIO"), "{banner}");
}

/// The ops listener's `/healthz` answer, once `dkd serve` (`child`) listens on `ops`; panics if
/// it exits first or does not answer within a minute.
fn healthz_once_up(ops: &str, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dkd exited ({status}) before /healthz answered");
        }
        let got = std::net::TcpStream::connect(ops).and_then(|mut c| {
            use std::io::{Read, Write};
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
            let mut r = String::new();
            c.read_to_string(&mut r)?;
            Ok(r)
        });
        match got {
            Ok(r) => return r,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("/healthz never answered: {e}"),
        }
    }
}

#[test]
fn serve_keeps_running_when_its_stdout_is_closed() {
    let dir = tempfile::tempdir().expect("tmp");
    let ops = format!("127.0.0.1:{}", free_port());
    let mut child = Killed(
        serve_demo_command(dir.path())
            .env("DKD_OPS__LISTEN", &ops)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dkd"),
    );
    // Nobody reads the banner: every line of it meets a closed pipe.
    drop(child.0.stdout.take());
    let answer = healthz_once_up(&ops, &mut child.0);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(child.0.try_wait(), Ok(None)),
        "dkd still runs after its banner"
    );
}

#[test]
#[cfg_attr(dkd_missing = "curl", ignore = "needs curl (apt-get install curl)")]
fn json_logs_hold_one_object_per_line_with_the_request_facts() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).expect("log file");
    let (_server, _, curl) = serve_demo(dir.path(), &[("DKD_LOG__FORMAT", "json")], file.into());
    if run_curl(&curl).is_none() {
        return;
    }
    // Lines reach stderr within milliseconds (tracing-appender's writer thread).
    let deadline = Instant::now() + Duration::from_secs(10);
    let request = loop {
        let text = std::fs::read_to_string(&log).expect("read log");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if let Some(r) = lines
            .into_iter()
            .find(|v| v["message"] == "request" && v["operation"] == "GSDReintegratieInfo")
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no request line in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(request["level"], "INFO", "{request}");
    assert_eq!(request["target"], "dkd::http::server", "{request}");
    assert_eq!(request["outcome"], "found", "{request}");
    assert_eq!(request["status"], 200, "{request}");
    let bsn = request["bsn"].as_str().expect("bsn");
    assert!(
        bsn.starts_with("******") && bsn.len() == 9,
        "masked: {request}"
    );
    assert!(request["duration_ms"].is_f64(), "{request}");
    let t = request["timestamp"].as_str().expect("timestamp");
    assert!(t.ends_with('Z') && t.len() == 27, "{request}");
}

#[test]
fn certs_command_writes_a_dev_pki_with_test_oins() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dkd()
        .args(["certs", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "client.pem",
        "client-key.pem",
        "client-unlisted.pem",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let pem = std::fs::read(dir.path().join("client.pem")).expect("read");
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("pem");
    assert_eq!(
        dkd::certs::oin_of(&der).expect("parse").as_deref(),
        Some(dkd::certs::DEMO_CLIENT_OIN)
    );
}

#[test]
fn bad_configuration_exits_with_code_3_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("dkd.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_bdy_bytes = 5\n",
    )
    .expect("write");
    let out = dkd()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_bdy_bytes"));
}

#[test]
fn missing_tls_material_exits_with_code_4_and_a_hint() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dkd()
        .args(["serve"])
        .current_dir(dir.path())
        .env("DKD_SERVER__LISTEN", "127.0.0.1:0")
        .env("DKD_ADMIN__LISTEN", "127.0.0.1:0")
        .env("DKD_OPS__LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certs/dev/") && err.contains("dkd certs"),
        "{err}"
    );
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_path_buf();
    let (mut child, banner, _) =
        tokio::task::spawn_blocking(move || serve_demo(&d, &[], Stdio::null()))
            .await
            .expect("join");
    let url = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("endpoint : "))
        .unwrap_or_else(|| panic!("no endpoint line in the banner:\n{banner}"))
        .to_owned();
    let dev = dir.path().join("certs/dev");
    let tls = dkd::http::tls::client_config(
        &dev.join("ca.pem"),
        &dev.join("client.pem"),
        &dev.join("client-key.pem"),
    )
    .expect("tls");
    let (host, port, path) = dkd::http::client::split_url(&url).expect("url");
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from(host.clone()).expect("name");
    let mut s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let body = dkd::soap::example_request(
        &url,
        dkd::certs::DEMO_CLIENT_OIN,
        "999900006",
        "urn:uuid:00000000-0000-4000-8000-000000000001",
    );
    let head = format!("POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body.as_bytes()[..100])
        .await
        .expect("part of the body");
    s.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.0.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&body.as_bytes()[100..])
        .await
        .expect("rest of the body after SIGTERM");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "the in-flight request is answered: {text}"
    );
    assert!(text.contains("<ClientSuwi>"), "{text}");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.0.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join")
    .expect("dkd exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    // The store is flushed and free again: the audit trail shows the answered request.
    let out = dkd()
        .args(["audit", "--bsn", "999900006"])
        .current_dir(dir.path())
        .output()
        .expect("audit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("urn:uuid:00000000-0000-4000-8000-000000000001") && text.contains("found"),
        "{text}"
    );
}

#[test]
fn config_check_prints_effective_settings_or_names_the_problem() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"0.0.0.0:8443\"\n[tls]\nkey = \"/etc/dkd/secret-key.pem\"\n",
    )
    .expect("write");
    let out = dkd()
        .args(["config", "check"])
        .arg(&good)
        .env("DKD_AUTH__ALLOWED_OINS", "00000001234567890000")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("listen = \"0.0.0.0:8443\"") && text.contains("00000001234567890000"),
        "{text}"
    );
    assert!(
        !text.contains("secret-key.pem"),
        "key paths are masked: {text}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[ops]\nlisten = \"nowhere\"\n").expect("write");
    let out = dkd()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ops.listen"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn store_commands_work_while_serving_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("tmp");
    let admin = format!("127.0.0.1:{}", free_port());
    let child = serve_demo_command(dir.path())
        .env("DKD_ADMIN__LISTEN", &admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dkd");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains("endpoint :") => break,
            Some(_) => continue,
            None => panic!("dkd serve ended early"),
        }
    }
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lks-0363.csv");
    let run = |args: &[&str]| {
        dkd()
            .args(args)
            .current_dir(dir.path())
            .env("DKD_ADMIN__LISTEN", &admin)
            .output()
            .expect("run")
    };
    let out = run(&[
        "import",
        example.to_str().expect("path"),
        "--mode",
        "full",
        "--gemeente",
        "0363",
    ]);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{so}\n{se}");
    assert!(
        se.contains("through its admin API") && so.contains("rows read"),
        "{so}\n{se}"
    );
    let g = report_row(&run(&["report", "--format", "json"]).stdout, "0363");
    assert_eq!(g["last_import"]["mode"], "full", "{g}");
    let out = run(&["sweep", "--dry-run"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("examined"));
    let out = run(&["audit"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["toets", "123456782"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not in the index: NEE, {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn probe_command_follows_the_nagios_plugin_convention() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dkd()
        .args(["certs", "--dir"])
        .arg(dir.path())
        .output()
        .expect("certs");
    assert!(out.status.success());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/GSDDossierReintegratie-v0200");
    let probe = |cert: &str| {
        let mut c = dkd();
        c.args([
            "probe",
            &url,
            "--cert",
            cert,
            "--key",
            &p("client-key.pem"),
            "--ca",
            &p("ca.pem"),
        ]);
        c
    };
    let out = probe(&p("client.pem")).output().expect("probe");
    assert_eq!(out.status.code(), Some(2), "stopped endpoint: CRITICAL");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("DKD CRITICAL - cannot connect"), "{line}");
    let out = probe("/nonexistent.pem").output().expect("probe");
    assert_eq!(
        out.status.code(),
        Some(3),
        "unreadable certificate: UNKNOWN"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("DKD UNKNOWN"));
    // A CRITICAL whose status line cannot be written is no state Nagios could show: UNKNOWN.
    let out = probe(&p("client.pem"))
        .stdout(dev_full())
        .output()
        .expect("probe");
    assert_eq!(out.status.code(), Some(3), "lost status line: UNKNOWN");
}

/// A gemeente's row in `dkd report --format json`'s output.
fn report_row(stdout: &[u8], gemeente: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("json report");
    v.as_array()
        .expect("rows")
        .iter()
        .find(|r| r["gemeente"] == gemeente)
        .unwrap_or_else(|| panic!("no row for {gemeente} in {v}"))
        .clone()
}

/// A stdout on which every write fails as on a full disk (ENOSPC).
fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
}

/// `dkd demo`: both roles start, the gemeente's index reaches the IB, and the printed `dkd call`
/// command asks the IB, which routes to the gemeente: a signed ClientSuwi comes back.
#[test]
fn demo_runs_the_chain_and_its_printed_call_is_answered_via_the_ib() {
    let dir = tempfile::tempdir().expect("tmp");
    // Six ports from a free one (the demo's ports shifted together).
    let shift = (0..50)
        .map(|_| crate::chain::free_port())
        .find(|p| {
            (*p as u32) > 9091 + 10
                && (*p as u32) + 1000 < 65_000
                && dkd::chain::demo::CHAIN_PORTS
                    .iter()
                    .all(|q| std::net::TcpListener::bind(("127.0.0.1", q + (p - 9091))).is_ok())
        })
        .map(|p| p - 9091)
        .expect("free ports");
    let child = dkd()
        .args(["demo", "--port-shift", &shift.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dkd demo");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut call = None;
    let mut sync = None;
    let mut signals = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && sync.is_none() {
        let Some(Ok(line)) = lines.next() else { break };
        if line.starts_with("cargo run --release -- call ") {
            call = Some(line.clone());
        }
        if line.contains("-- signals list") {
            signals = Some(line.trim().to_owned());
        }
        if line.contains("-- sync --status") {
            sync = Some(line.clone());
        }
    }
    let signals = signals.expect("the banner prints a dkd signals list command");
    let call = call.expect("the banner prints a dkd call command");
    let sync = sync.expect("the banner prints a dkd sync command");
    // Run the printed commands with the binary under test instead of cargo run.
    let args: Vec<&str> = call
        .trim_start_matches("cargo run --release -- ")
        .split_whitespace()
        .collect();
    let printed = |line: &str| {
        let (env, rest) = line
            .split_once("cargo run --release -- ")
            .expect("command line");
        let mut c = dkd();
        c.current_dir(dir.path());
        for kv in env.split_whitespace() {
            let (k, v) = kv.split_once('=').expect("K=V");
            c.env(k, v);
        }
        c.args(rest.split_whitespace());
        c.output().expect("dkd")
    };
    let sync_cmd = || printed(&sync);
    // The gemeente pushes its index first; then the IB can route.
    let pushed = Instant::now() + Duration::from_secs(60);
    loop {
        let out = sync_cmd();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("pending 0 ") && !text.contains("delivered 0") {
            break;
        }
        assert!(Instant::now() < pushed, "the push did not finish: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The IB gives a gemeente 5 s; on a loaded machine a debug-build hop can exceed it, which the
    // answer then says (FWI Waarschuwing 0052). Ask again rather than judge the machine.
    let mut out = dkd()
        .current_dir(dir.path())
        .args(&args)
        .output()
        .expect("dkd call");
    // The gemeente's push reaches the IB moments after start: until then the IB answers with the
    // batch gemeente's relation alone (or 0052 while the gemeente is still starting).
    for _ in 0..20 {
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("<Code>0052</Code>") && text.matches("<AtlRelatie>").count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        out = dkd()
            .current_dir(dir.path())
            .args(&args)
            .output()
            .expect("dkd call");
    }
    let (text, summary) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{summary}");
    assert!(text.contains("<ClientSuwi>"), "{text}");
    assert!(summary.contains("response signature valid"), "{summary}");
    // Merged: the webservice gemeente's relation and the batch gemeente 0014's.
    assert!(text.contains("<CdPartijSuwi>0014</CdPartijSuwi>"), "{text}");
    assert!(text.matches("<AtlRelatie>").count() >= 2, "{text}");
    // The answer held LKS: the signal reaches the gemeente with its next fetch (every 10 s).
    let fetched = Instant::now() + Duration::from_secs(40);
    loop {
        let out = printed(&signals);
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        if list.lines().count() >= 2 {
            assert!(
                list.contains(">6: "),
                "the next milestone is week 6: {list}"
            );
            break;
        }
        assert!(
            Instant::now() < fetched,
            "no vangnetter case arrived: {list}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `dkd import --role ib`: a batch gemeente's verzamelbestand replaces its previous delivery;
/// refused (exit 2) for a webservice gemeente, an unknown one, or without --gemeente.
#[test]
fn ib_batch_import_replaces_the_delivery_and_refuses_other_gemeenten() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("ib.toml");
    std::fs::write(
        &cfg,
        format!(
            "role = \"ib\"\n[store]\npath = {:?}\n[admin]\nlisten = \"\"\n[[ib.gemeenten]]\ncode = \"0014\"\ndelivery = \"batch\"\n[[ib.gemeenten]]\ncode = \"0363\"\nurl = \"https://127.0.0.1:1/GSDDossierReintegratie-v0200\"\n",
            dir.path().join("ib.sled")
        ),
    )
    .expect("config");
    let people = crate::common::batch_people(60, "0014");
    let write = |name: &str, people: &[dkd::suwiml::model::Person]| {
        let mut csv = String::new();
        dkd::import::csv_format::write(people, &mut csv);
        let f = dir.path().join(name);
        std::fs::write(&f, csv).expect("write");
        f
    };
    let first = write("week1.csv", &people);
    let second = write("week2.csv", &people[..10]);
    let import = |file: &std::path::Path, gemeente: Option<&str>| {
        let mut c = dkd();
        c.arg("import").arg(file).arg("--config").arg(&cfg);
        if let Some(g) = gemeente {
            c.args(["--gemeente", g]);
        }
        c.output().expect("dkd import")
    };
    let out = import(&first, Some("0014"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = import(&second, Some("0014"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The second delivery replaced the first (full mode, although none was asked for).
    let store = dkd::store::Store::open(&dir.path().join("ib.sled")).expect("store");
    assert_eq!(store.gemeente_bsns("0014").expect("bsns").len(), 10);
    drop(store);
    for (gemeente, says) in [
        (Some("0363"), "delivers by webservice"),
        (Some("0599"), "not in [[ib.gemeenten]]"),
        (None, "needs --gemeente"),
    ] {
        let out = import(&first, gemeente);
        assert_eq!(out.status.code(), Some(2), "{gemeente:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{gemeente:?}: {err}");
    }
}

#[test]
fn one_shot_commands_finish_their_work_when_stdout_is_closed_or_full() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lks-0363.csv");
    let cmd = |args: &[&str]| {
        let mut c = dkd();
        c.args(args)
            .current_dir(dir.path())
            .env("DKD_STORE__PATH", &store);
        c
    };
    // The reader went away before the summary (`dkd import … | head -c0`): the import still
    // commits, exits 0 as `head` expects, and does not panic.
    let mut child = cmd(&[
        "import",
        example.to_str().expect("path"),
        "--mode",
        "full",
        "--gemeente",
        "0363",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start dkd import");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("import");
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {se}", out.status);
    assert!(!se.contains("panicked"), "{se}");
    let out = cmd(&["report", "--format", "json"])
        .output()
        .expect("report");
    let g = report_row(&out.stdout, "0363");
    assert_eq!(
        g["last_import"]["mode"], "full",
        "the import was committed: {g}"
    );
    // Output that cannot be written (a full disk) is a failure the caller must see.
    let out = cmd(&["report"])
        .stdout(dev_full())
        .output()
        .expect("report");
    let se = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(
        se.contains("cannot write to standard output") && !se.contains("panicked"),
        "{se}"
    );
    // Where the exit code is the answer, a lost answer is no answer: `toets` exits 2, not the 0
    // (JA) it found, nor the 1 that would read as NEE.
    let out = cmd(&["toets", "328246827"]).output().expect("toets");
    assert_eq!(out.status.code(), Some(0), "JA with its output");
    for bsn in ["328246827", "123456782"] {
        let out = cmd(&["toets", bsn])
            .stdout(dev_full())
            .output()
            .expect("toets");
        let se = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bsn}: {se}");
        assert!(se.contains("cannot write to standard output"), "{se}");
    }
}

#[test]
fn a_server_whose_banner_met_a_full_disk_still_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let ops = format!("127.0.0.1:{}", free_port());
    let mut child = Killed(
        serve_demo_command(dir.path())
            .env("DKD_OPS__LISTEN", &ops)
            .stdout(dev_full())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dkd"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let drained = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let answer = healthz_once_up(&ops, &mut child.0);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = child.0.wait().expect("dkd exits after SIGTERM");
    let se = drained.join().expect("stderr");
    assert_eq!(status.code(), Some(0), "{se}");
    assert!(
        se.contains("cannot write to standard output") && !se.contains("panicked"),
        "{se}"
    );
}

/// `dkd serve --demo` in `dir` with its admin API on `admin`; [`wait_up`] waits for its banner.
fn spawn_serving(
    dir: &std::path::Path,
    admin: &str,
) -> (Killed, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let child = serve_demo_command(dir)
        .env("DKD_ADMIN__LISTEN", admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dkd");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout");
    (child, BufReader::new(stdout).lines())
}

fn wait_up(mut lines: std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains("endpoint :") => break,
            Some(_) => continue,
            None => panic!("dkd serve ended early"),
        }
    }
    std::thread::spawn(move || for _ in lines.by_ref() {});
}

#[test]
fn a_store_command_refuses_a_server_that_holds_another_store() {
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let (admin_a, admin_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (_server_a, lines_a) = spawn_serving(a.path(), &admin_a);
    let (_server_b, lines_b) = spawn_serving(b.path(), &admin_b);
    wait_up(lines_a);
    wait_up(lines_b);
    let run = |dir: &std::path::Path, admin: &str, args: &[&str]| {
        dkd()
            .args(args)
            .current_dir(dir)
            .env("DKD_ADMIN__LISTEN", admin)
            .output()
            .expect("run")
    };
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lks-0363.csv");
    let example = example.to_str().expect("path");
    // The store in `a`, held by server A, but admin.listen pointing at server B: every store
    // command refuses, with exit 5, and says which store B holds.
    let commands: [&[&str]; 7] = [
        &["report", "--format", "json"],
        &["toets", "123456782"],
        &["sweep", "--dry-run"],
        &["audit"],
        &["sync"],
        &["signals", "list"],
        &["import", example, "--mode", "full", "--gemeente", "0363"],
    ];
    for args in commands {
        let out = run(a.path(), &admin_b, args);
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(5), "{args:?}: {so}\n{se}");
        assert!(
            se.contains("holds another store") && se.contains(&admin_b),
            "{args:?}: {se}"
        );
        assert!(so.trim().is_empty(), "{args:?} answered anyway: {so}");
    }
    // B's store was not imported into.
    let g = report_row(
        &run(b.path(), &admin_b, &["report", "--format", "json"]).stdout,
        "0363",
    );
    assert!(g["last_import"].is_null(), "{g}");
    // With the admin API of the server that holds it, the same command works.
    let out = run(a.path(), &admin_a, &["report", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report_row(&out.stdout, "0363")["persons"].as_u64() > Some(0));
}

/// A fresh schema on the test server (`DKD_TEST_PG_URL`) and its URL; `None` (skipped, or a
/// failure with DKD_REQUIRE_EXTERNAL=1) without one.
fn pg_schema() -> Option<(dkd::store::TempSchema, String)> {
    match std::env::var("DKD_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => {
            Some(dkd::store::TempSchema::create(&url).expect("a schema on DKD_TEST_PG_URL"))
        }
        _ => {
            skip("needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)");
            None
        }
    }
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn on_postgres_store_commands_work_directly_while_two_servers_run() {
    let Some((_schema, url)) = pg_schema() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str]| {
        dkd()
            .args(args)
            .current_dir(dir.path())
            .env("DKD_STORE__URL", &url)
            .output()
            .expect("run")
    };
    // A command does not create the schema; `dkd store migrate` does.
    let out = run(&["report", "--format", "json"]);
    assert_eq!(out.status.code(), Some(5), "schema behind: a store error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("dkd store migrate"));
    let out = run(&["store", "migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut servers = Vec::new();
    for _ in 0..2 {
        let child = serve_demo_command(dir.path())
            .env("DKD_STORE__URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dkd");
        let mut child = Killed(child);
        let stdout = child.0.stdout.take().expect("stdout");
        wait_up(BufReader::new(stdout).lines());
        servers.push(child);
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lks-0363.csv");
    let out = run(&[
        "import",
        example.to_str().expect("path"),
        "--mode",
        "full",
        "--gemeente",
        "0363",
    ]);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{so}\n{se}");
    assert!(
        so.contains("rows read") && !se.contains("admin API"),
        "directly, not through a server: {so}\n{se}"
    );
    let g = report_row(&run(&["report", "--format", "json"]).stdout, "0363");
    assert_eq!(g["last_import"]["mode"], "full", "{g}");
    let out = run(&["audit"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["config", "check", "/dev/null"]);
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(so.contains("PostgreSQL at postgres://"), "{so}");
    drop(servers);
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn store_copy_moves_a_sled_store_to_postgres_and_may_run_again() {
    let Some((_schema, url)) = pg_schema() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let sled = dir.path().join("gemeente.sled");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lks-0363.csv");
    let out = dkd()
        .arg("import")
        .arg(&example)
        .env("DKD_STORE__PATH", &sled)
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = |env: (&str, &str)| {
        dkd()
            .args(["report", "--format", "json"])
            .env(env.0, env.1)
            .output()
            .expect("report")
    };
    let before = report_row(
        &report(("DKD_STORE__PATH", sled.to_str().expect("path"))).stdout,
        "0363",
    );
    for _ in 0..2 {
        let out = dkd()
            .args(["store", "copy", "--from"])
            .arg(&sled)
            .args(["--to", &url])
            .output()
            .expect("copy");
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{so}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(so.contains("counts verified"), "{so}");
    }
    let after = report_row(&report(("DKD_STORE__URL", &url)).stdout, "0363");
    assert_eq!(before, after, "the same Aanlevermonitor on PostgreSQL");
}
