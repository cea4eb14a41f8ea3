//! Writes the generated seeds into `fuzz/corpus/<target>/seed-*` and, when absent, the
//! development PKI the `wssec` target trusts (`fuzz/pki`).
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//!
//! The signed seeds are signed at `dkd_fuzz::now()` with `fuzz/pki/client*.pem`, and checked here
//! to verify under the `wssec` target's policy, so the fuzzer starts from a message that passes
//! every check. Regenerating the PKI invalidates the committed signed seeds: regenerate both.

use dkd::certs::DevCa;
use dkd::soap::{example_request, signed_request, wssec::Signer};
use dkd_fuzz::{MESSAGE_ID, OIN, URL};
use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, content: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    let path = dir.join(format!("seed-{name}"));
    fs::write(&path, content).expect("write seed");
    println!("{} ({} bytes)", path.display(), content.len());
}

fn main() {
    let pki = dkd_fuzz::pki_dir();
    if !pki.join("ca.pem").exists() {
        fs::create_dir_all(&pki).expect("pki dir");
        let ca = DevCa::new("dkd-fuzz CA").expect("ca");
        let client = ca
            .client("dkd-fuzz client", Some(OIN), 3650)
            .expect("client certificate");
        fs::write(pki.join("ca.pem"), ca.issued().cert_pem).expect("write");
        fs::write(pki.join("client.pem"), &client.cert_pem).expect("write");
        fs::write(pki.join("client-key.pem"), &client.key_pem).expect("write");
        println!("wrote {}", pki.display());
    }
    let signer = Signer::load(&pki.join("client.pem"), &pki.join("client-key.pem"))
        .expect("signer from fuzz/pki");

    let bsns = dkd_fuzz::demo_bsns();
    let found = bsns.first().expect("demo persons");

    // envelope: answered, not found, 11-test refused, and a signed request (signing is off there).
    write(
        "envelope",
        "found.xml",
        &example_request(URL, OIN, found, "urn:uuid:7"),
    );
    write(
        "envelope",
        "notfound.xml",
        &example_request(URL, OIN, "123456782", "urn:uuid:8"),
    );
    write(
        "envelope",
        "elfproef.xml",
        &example_request(URL, OIN, "123456789", "urn:uuid:9"),
    );
    let signed =
        signed_request(&signer, URL, OIN, found, MESSAGE_ID, dkd_fuzz::now()).expect("sign");
    write("envelope", "signed.xml", &signed);

    // wssec: signed requests that verify at dkd_fuzz::now().
    let policy = dkd_fuzz::verify_policy();
    let v = policy
        .verify(&signed, Some(OIN), Some(MESSAGE_ID), dkd_fuzz::now())
        .expect("the signed seed verifies")
        .expect("signed");
    assert_eq!(v.signer_oin, OIN);
    write("wssec", "signed-found.xml", &signed);
    let signed2 =
        signed_request(&signer, URL, OIN, "123456782", MESSAGE_ID, dkd_fuzz::now()).expect("sign");
    dkd_fuzz::verify_policy()
        .verify(&signed2, Some(OIN), Some(MESSAGE_ID), dkd_fuzz::now())
        .expect("the second signed seed verifies");
    write("wssec", "signed-notfound.xml", &signed2);
    // Unsigned: the "no Security header" refusal.
    write(
        "wssec",
        "unsigned.xml",
        &example_request(URL, OIN, found, MESSAGE_ID),
    );
}
