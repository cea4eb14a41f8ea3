//! Interoperability with a real third-party SOAP toolkit: Python zeep, loading the WSDL dkd serves.
//! `.ci/run` installs it (tests/interop/setup-venv.sh) and sets DKD_INTEROP_PYTHON.

use crate::common::*;
use std::path::Path;

fn python() -> Option<String> {
    if let Ok(p) = std::env::var("DKD_INTEROP_PYTHON") {
        return Some(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    venv.is_file().then(|| venv.display().to_string())
}

async fn zeep(server: &Server, bsn: &str, cert: &str, expect: &str) -> serde_json::Value {
    let (url, bsn, cert, expect) = (
        server.url.clone(),
        bsn.to_owned(),
        cert.to_owned(),
        expect.to_owned(),
    );
    tokio::task::spawn_blocking(move || zeep_blocking(&url, &bsn, &cert, &expect))
        .await
        .expect("zeep task")
}

fn zeep_blocking(url: &str, bsn: &str, cert: &str, expect: &str) -> serde_json::Value {
    let Some(py) = python() else {
        skip("zeep interop: no venv (run tests/interop/setup-venv.sh or set DKD_INTEROP_PYTHON)");
        return serde_json::Value::Null;
    };
    let p = pki();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/zeep_gsd.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .arg("--wsdl")
        .arg(format!("{url}?wsdl"))
        .arg("--cert")
        .arg(p.path(&format!("{cert}.pem")))
        .arg("--key")
        .arg(p.path(&format!("{cert}-key.pem")))
        .arg("--ca")
        .arg(p.path("ca.pem"))
        .arg("--bsn")
        .arg(bsn)
        .arg("--from-oin")
        .arg(ALLOWED_OIN)
        .arg("--expect")
        .arg(expect)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zeep client failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "interop-venv",
    ignore = "needs the interop venv: bash tests/interop/setup-venv.sh (or DKD_INTEROP_PYTHON)"
)]
async fn zeep_reads_client_suwi_through_the_served_wsdl() {
    let server = Server::start().await;
    let bsn = server.known_bsn();
    let v = zeep(&server, &bsn, "client", "clientsuwi").await;
    if v.is_null() {
        return;
    }
    assert_eq!(v["bsn"], bsn.as_str());
    assert!(v["lks"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    assert_eq!(v["relates_to"], v["request_message_id"], "{v}");
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "interop-venv",
    ignore = "needs the interop venv: bash tests/interop/setup-venv.sh (or DKD_INTEROP_PYTHON)"
)]
async fn zeep_sees_niets_gevonden_and_faults() {
    let server = Server::start().await;
    let v = zeep(&server, "123456782", "client", "nietsgevonden").await;
    if v.is_null() {
        return;
    }
    let v = zeep(&server, "123456781", "client", "fault").await;
    assert_eq!(v["code"], "0012", "{v}");
    assert_eq!(v["faultcode"], "soapenv:Client", "{v}");
    let v = zeep(&server, "123456782", "unlisted", "fault").await;
    assert_eq!(v["code"], "0002", "{v}");
}
