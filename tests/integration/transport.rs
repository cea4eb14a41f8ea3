//! Mutual TLS and the listener's limits.

use crate::common::*;
use dkd::http::{client, tls};
use std::sync::Arc;
use std::time::Duration;

fn config_without_client_cert() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_certs(&pki().path("ca.pem")).expect("ca") {
        roots.add(c).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn handshake_fails_without_a_client_certificate() {
    let server = Server::start().await;
    let r = client::post_soap(
        config_without_client_cert(),
        &server.url,
        &Req::new(&server.url, "123456782").xml(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        r.is_err(),
        "no client certificate must not get an HTTP answer: {r:?}"
    );
}

#[tokio::test]
async fn handshake_fails_for_a_certificate_from_a_foreign_ca() {
    let server = Server::start().await;
    let p = pki();
    // Trusts the right server CA, but presents a client certificate from another CA (with an
    // allowed OIN, so only the chain check can stop it).
    let cfg = tls::client_config(
        &p.path("ca.pem"),
        &p.path("foreign.pem"),
        &p.path("foreign-key.pem"),
    )
    .expect("tls");
    let r = client::post_soap(
        Arc::new(cfg),
        &server.url,
        &Req::new(&server.url, "123456782").xml(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        r.is_err(),
        "foreign CA must be refused at the handshake: {r:?}"
    );
}

#[tokio::test]
async fn tls12_with_ecdhe_rsa_aes128_gcm_sha256_is_offered() {
    let server = Server::start().await;
    let p = pki();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites =
        vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_certs(&p.path("ca.pem")).expect("ca") {
        roots.add(c).expect("root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            tls::load_certs(&p.path("client.pem")).expect("c"),
            tls::load_key(&p.path("client-key.pem")).expect("k"),
        )
        .expect("client auth");
    let r = client::post_soap(
        Arc::new(cfg),
        &server.url,
        &Req::new(&server.url, &server.known_bsn()).xml(),
        Duration::from_secs(5),
    )
    .await
    .expect("TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256 works");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn unknown_methods_get_405() {
    let server = Server::start().await;
    let r = client::request(
        client_tls("client"),
        "PUT",
        &server.url,
        &[],
        Vec::new(),
        Duration::from_secs(5),
    )
    .await
    .expect("PUT");
    assert_eq!(r.status, 405);
}
