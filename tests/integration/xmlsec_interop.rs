//! WS-Security against independent implementations: requests signed by python-xmlsec (through
//! tests/interop/wssec.py) and zeep, and dkd's responses verified by python-xmlsec and by Debian's
//! `xmlsec1` command line.

use crate::common::*;
use dkd::soap::wssec::SigningMode;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DKD_INTEROP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    venv.is_file().then_some(venv)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/wssec.py")
}

/// Signs an envelope with python-xmlsec; extra args select algorithms and defects.
fn py_sign(py: &Path, envelope: &str, who: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let (inp, out) = (dir.path().join("in.xml"), dir.path().join("out.xml"));
    std::fs::write(&inp, envelope).expect("write");
    let p = pki();
    let o = Command::new(py)
        .arg(script())
        .arg("sign")
        .arg("--in")
        .arg(&inp)
        .arg("--out")
        .arg(&out)
        .arg("--cert")
        .arg(p.path(&format!("{who}.pem")))
        .arg("--key")
        .arg(p.path(&format!("{who}-key.pem")))
        .args(extra)
        .output()
        .expect("run wssec.py");
    assert!(
        o.status.success(),
        "wssec.py sign failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(out).expect("signed")
}

/// Verifies a response with python-xmlsec (or xmlsec1); returns the JSON verdict.
fn py_verify(
    py: &Path,
    response: &str,
    request_sig: Option<&str>,
    xmlsec1: bool,
) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("resp.xml");
    std::fs::write(&f, response).expect("write");
    let mut c = Command::new(py);
    c.arg(script())
        .arg("verify")
        .arg("--in")
        .arg(&f)
        .arg("--ca")
        .arg(pki().path("ca.pem"));
    if let Some(sv) = request_sig {
        c.arg("--request-signature-value").arg(sv);
    }
    if xmlsec1 {
        c.arg("--xmlsec1");
    }
    let o = c.output().expect("run wssec.py verify");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON from verify: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn signature_value(xml: &str) -> String {
    let doc = dkd::xml::parse(xml.as_bytes()).expect("xml");
    fn find(e: &dkd::xml::Element) -> Option<String> {
        if e.local == "SignatureValue" {
            return Some(e.text().split_whitespace().collect());
        }
        e.elements().find_map(find)
    }
    find(&doc).expect("SignatureValue")
}

async fn required() -> Server {
    Server::start_with(|c| c.security.signing = Some(SigningMode::Required)).await
}

#[tokio::test]
#[cfg_attr(
    any(dkd_missing = "interop-venv", dkd_missing = "xmlsec1"),
    ignore = "needs the interop venv (bash tests/interop/setup-venv.sh) and xmlsec1 (apt-get install xmlsec1)"
)]
async fn python_xmlsec_signed_request_is_accepted_and_the_response_verifies_independently() {
    let Some(py) = python() else {
        skip("xmlsec interop: no venv (bash tests/interop/setup-venv.sh)");
        return;
    };
    let server = required().await;
    let req = py_sign(
        &py,
        &Req::new(&server.url, &server.known_bsn()).xml(),
        "client",
        &[],
    );
    let r = post(&server.url, &req).await;
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains("<ClientSuwi>"));
    let sv = signature_value(&req);
    let v = py_verify(&py, &text, Some(&sv), false);
    assert_eq!(
        v["ok"], true,
        "python-xmlsec verdict on dkd's response: {v}"
    );
    assert_eq!(v["signer_oin"], SERVER_OIN, "{v}");
    if Command::new("xmlsec1").arg("--version").output().is_err() {
        skip("xmlsec1 not installed (apt-get install xmlsec1)");
        return;
    }
    let v = py_verify(&py, &text, Some(&sv), true);
    assert_eq!(v["ok"], true, "xmlsec1 verdict on dkd's response: {v}");
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "interop-venv",
    ignore = "needs the interop venv: bash tests/interop/setup-venv.sh (or DKD_INTEROP_PYTHON)"
)]
async fn python_xmlsec_signed_defects_are_refused_with_their_codes() {
    let Some(py) = python() else {
        skip("xmlsec interop: no venv (bash tests/interop/setup-venv.sh)");
        return;
    };
    let server = required().await;
    let cases: [(&[&str], &str, &str); 10] = [
        (&["--digest", "sha1"], "wsse:InvalidSecurity", "0027"),
        // Digikoppeling's signing rules (SIGN001-004) allow SHA-256/384/512 only.
        (&["--digest", "sha224"], "wsse:InvalidSecurity", "0027"),
        (&["--sig", "rsa-sha1"], "wsse:InvalidSecurity", "0027"),
        (&["--sig", "rsa-sha224"], "wsse:InvalidSecurity", "0027"),
        (&["--c14n", "inclusive"], "wsse:InvalidSecurity", "0027"),
        (&["--no-timestamp"], "wsse:InvalidSecurity", "0020"),
        (&["--skip", "To"], "wsse:InvalidSecurity", "0028"),
        (&["--skip", "body"], "wsse:InvalidSecurity", "0028"),
        (
            &["--created-offset", "-1200", "--expires-offset", "-900"],
            "wsu:MessageExpired",
            "0023",
        ),
        (&["--created-offset", "900"], "wsu:MessageExpired", "0023"),
    ];
    for (args, fc, code) in cases {
        let mut req = Req::new(&server.url, "123456782");
        req.message_id = Some(format!("urn:uuid:{}", uuid::Uuid::new_v4()));
        let signed = py_sign(&py, &req.xml(), "client", args);
        let r = post(&server.url, &signed).await;
        let got = fault_codes(&r.text());
        assert_eq!((got.0.as_str(), got.1.as_str()), (fc, code), "{args:?}");
    }
    // The stronger digests are accepted.
    for digest in ["sha384", "sha512"] {
        let mut req = Req::new(&server.url, "123456782");
        req.message_id = Some(format!("urn:uuid:{}", uuid::Uuid::new_v4()));
        let signed = py_sign(&py, &req.xml(), "client", &["--digest", digest]);
        assert_eq!(post(&server.url, &signed).await.status, 200, "{digest}");
    }
}

#[tokio::test]
#[cfg_attr(
    dkd_missing = "interop-venv",
    ignore = "needs the interop venv: bash tests/interop/setup-venv.sh (or DKD_INTEROP_PYTHON)"
)]
async fn zeep_signs_with_signing_required_and_verifies_the_response() {
    let Some(py) = python() else {
        skip("zeep interop: no venv (bash tests/interop/setup-venv.sh)");
        return;
    };
    let server = required().await;
    let p = pki();
    let (url, bsn) = (server.url.clone(), server.known_bsn());
    // The server runs on this test's runtime: wait for the client off it.
    let o = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/zeep_gsd.py"))
            .arg("--wsdl")
            .arg(format!("{url}?wsdl"))
            .arg("--cert")
            .arg(p.path("client.pem"))
            .arg("--key")
            .arg(p.path("client-key.pem"))
            .arg("--ca")
            .arg(p.path("ca.pem"))
            .arg("--sign-cert")
            .arg(p.path("client.pem"))
            .arg("--sign-key")
            .arg(p.path("client-key.pem"))
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
    .expect("run zeep");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "zeep failed: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(v["response_signed"], true, "{v}");
    assert_eq!(v["response_signer_oin"], SERVER_OIN, "{v}");
}
