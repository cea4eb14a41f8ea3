//! Mutual TLS and the listener's limits.

use crate::common::*;
use dkd::http::{client, tls};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Opens a mutual-TLS stream to the server for hand-written HTTP.
async fn raw_stream(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(client_tls("client"))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

#[tokio::test]
async fn a_stalled_body_gets_fault_0014_within_the_read_timeout() {
    let server = Server::start_with(|c| c.server.body_read_timeout_secs = 1).await;
    let mut s = raw_stream(&server).await;
    let head = "POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ncontent-length: 500\r\n\r\n<soapenv:Envelope";
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        read.is_ok(),
        "the server answers and closes instead of waiting forever"
    );
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(text.contains("<Code>0014</Code>"), "{text}");
}

#[tokio::test]
async fn an_oversized_chunked_body_is_cut_off_with_0013() {
    let server = Server::start_with(|c| c.server.max_body_bytes = 2048).await;
    let mut s = raw_stream(&server).await;
    let head = "POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 1024, "x".repeat(1024));
    for _ in 0..4 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains("<Code>0013</Code>"), "{text}");
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
