//! WS-Security against a second, independent implementation: node-soap's client (npm `soap`,
//! `WSSecurityCert`), which signs with xml-crypto, where zeep, python-xmlsec and xmlsec1 all
//! rest on libxmlsec. `.ci/run` installs it (tests/interop/node/setup.sh) and sets
//! DKD_INTEROP_NODE_MODULES.

use crate::common::*;
use dkd::soap::wssec::SigningMode;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The installed packages, or `None` (the test then skips).
fn node_modules() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DKD_INTEROP_NODE_MODULES") {
        return Some(PathBuf::from(p));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-node");
    // The stamp is written only after a complete install.
    dir.join(".lock.sha256")
        .is_file()
        .then(|| dir.join("node_modules"))
}

fn node() -> Option<String> {
    let node = std::env::var("DKD_INTEROP_NODE").unwrap_or_else(|_| "node".into());
    Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(node)
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "node-soap",
    ignore = "needs node and the node-soap packages: bash tests/interop/node/setup.sh"
)]
async fn node_soap_signs_a_request_dkd_accepts_and_verifies_dkds_answer() {
    let (Some(node), Some(modules)) = (node(), node_modules()) else {
        skip("node-soap interop: no node or no packages (bash tests/interop/node/setup.sh)");
        return;
    };
    let server = Server::start_with(|c| c.security.signing = Some(SigningMode::Required)).await;
    let (url, bsn) = (server.url.clone(), server.known_bsn());
    let p = pki();
    // The server runs on this test's runtime: wait for the client off it.
    let o = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg("--no-deprecation")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/node/dkd_soap.js"))
            .env("NODE_PATH", modules)
            .arg("--wsdl")
            .arg(format!("{url}?wsdl"))
            .arg("--cert")
            .arg(p.path("client.pem"))
            .arg("--key")
            .arg(p.path("client-key.pem"))
            .arg("--ca")
            .arg(p.path("ca.pem"))
            .arg("--bsn")
            .arg(bsn)
            .arg("--from-oin")
            .arg(ALLOWED_OIN)
            .arg("--expect")
            .arg("clientsuwi")
            .output()
    })
    .await
    .expect("join")
    .expect("run node");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "node-soap client failed ({:?}):\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    // Accepted: dkd answered the signed request with the person.
    assert_eq!(v["kind"], "clientsuwi", "{v}");
    assert_eq!(v["relates_to"], v["request_message_id"], "{v}");
    // What node-soap signed: the Body, the Timestamp and every WS-Addressing header.
    let mut signed: Vec<&str> = v["request_signed"]
        .as_array()
        .expect("request_signed")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    signed.sort_unstable();
    assert_eq!(
        signed,
        [
            "Body",
            "Timestamp",
            "wsa:Action",
            "wsa:From",
            "wsa:MessageID",
            "wsa:To"
        ],
        "{v}"
    );
    // xml-crypto verified dkd's answer, covering what 2W-be-S requires.
    let covered = v["answer"]["covered"].as_array().expect("covered");
    for part in [
        "soap:Body",
        "wsu:Timestamp",
        "wsa:RelatesTo",
        "wsa:MessageID",
        "wsa:Action",
        "wsse11:SignatureConfirmation",
    ] {
        assert!(covered.iter().any(|c| c == part), "{part}: {v}");
    }
    assert!(
        v["answer"]["signer_subject"]
            .as_str()
            .is_some_and(|s| s.contains(SERVER_OIN)),
        "{v}"
    );
    // The Body changed after signing: refused by the signature check.
    assert_eq!(v["tampered"]["status"], 500, "{v}");
    assert_eq!(v["tampered"]["faultcode"], "wsse:FailedCheck", "{v}");
    assert_eq!(v["tampered"]["code"], "0021", "{v}");
}
