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

#[test]
fn serve_demo_prints_a_curl_command_that_returns_a_client_suwi() {
    let dir = tempfile::tempdir().expect("tmp");
    let child = dkd()
        .args(["serve", "--demo"])
        .current_dir(dir.path())
        .env("DKD_SERVER__LISTEN", "127.0.0.1:0")
        .env("DKD_ADMIN__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dkd");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
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
    assert!(banner.contains("?wsdl"), "{banner}");
    assert!(banner.contains("demo BSN"), "{banner}");
    assert!(
        dir.path().join("certs/dev/client.pem").is_file(),
        "dev PKI generated under certs/dev"
    );
    if Command::new("curl").arg("--version").output().is_err() {
        skip("curl not installed: cannot run the printed command");
        return;
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&curl)
        .arg("-s")
        .output()
        .expect("bash");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        body.contains("<ClientSuwi>") && body.contains("GSDReintegratieInfoResponse"),
        "{body}"
    );
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
