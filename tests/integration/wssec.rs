//! WS-Security 2W-be-S end to end: signed requests accepted, every rule's violation refused with
//! its fault, responses signed with SignatureConfirmation.

use crate::common::*;
use dkd::soap::wssec::{Signer, SigningMode};
use time::{Duration, OffsetDateTime};

async fn required() -> Server {
    Server::start_with(|c| {
        c.security.signing = Some(SigningMode::Required);
        c.auth.allowed_oins.push(SECOND_OIN.into());
    })
    .await
}

fn signer(name: &str) -> Signer {
    let p = pki();
    Signer::load(
        &p.path(&format!("{name}.pem")),
        &p.path(&format!("{name}-key.pem")),
    )
    .expect("signer")
}

fn signed_at(server: &Server, who: &str, bsn: &str, now: OffsetDateTime) -> String {
    let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    dkd::soap::signed_request(&signer(who), &server.url, ALLOWED_OIN, bsn, &id, now).expect("sign")
}

fn signed(server: &Server, bsn: &str) -> String {
    signed_at(server, "client", bsn, OffsetDateTime::now_utc())
}

async fn fault(server: &Server, xml: &str) -> (String, String) {
    let r = post(&server.url, xml).await;
    assert_eq!(r.status, 500, "{}", r.text());
    fault_codes(&r.text())
}

fn between(s: &str, a: &str, b: &str) -> String {
    let i = s.find(a).expect(a) + a.len();
    let j = s[i..].find(b).expect(b) + i;
    s[i..j].to_owned()
}

#[tokio::test]
async fn signed_request_is_answered_with_a_signed_confirming_response() {
    signed_answer_confirms(&required().await).await;
}

#[tokio::test]
async fn with_crypto_threads_0_the_async_workers_verify_and_sign() {
    let server = Server::start_with(|c| {
        c.security.signing = Some(SigningMode::Required);
        c.server.crypto_threads = 0;
    })
    .await;
    signed_answer_confirms(&server).await;
    let (fc, _) = fault(&server, &Req::new(&server.url, "123456782").xml()).await;
    assert_eq!(fc, "wsse:InvalidSecurity");
}

async fn signed_answer_confirms(server: &Server) {
    let req = signed(server, &server.known_bsn());
    let r = post(&server.url, &req).await;
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains("<ClientSuwi>"));
    let sv = between(&req, "<ds:SignatureValue>", "</ds:SignatureValue>");
    // dkd's own client-side check: signature, coverage, SignatureConfirmation.
    let trust = dkd::http::tls::signer_trust(&pki().path("ca.pem"), &[]).expect("trust");
    let policy = dkd::soap::wssec::VerifyPolicy {
        mode: SigningMode::Required,
        trust,
        allowed_signer_oins: Default::default(),
        signer_must_match_tls: false,
        any_signer: true,
        clock_skew: Duration::seconds(60),
        max_age: Duration::seconds(300),
        replay: dkd::soap::wssec::ReplayCache::new(1),
        trust_cache: Default::default(),
    };
    policy
        .verify_response(&text, &sv, OffsetDateTime::now_utc())
        .expect("response verifies")
        .expect("signed");
    validate_official(&body_child(&text), Schema::Response);
}

#[tokio::test]
async fn signers_are_judged_by_key_usage_not_by_tls_extended_key_usage() {
    let server = required().await;
    for who in ["signer-serverauth", "signer-clientauth", "signer-noeku"] {
        let req = signed_at(&server, who, "123456782", OffsetDateTime::now_utc());
        let r = post(&server.url, &req).await;
        assert_eq!(r.status, 200, "{who}: {}", r.text());
        assert!(r.text().contains("NietsGevonden"), "{who}: {}", r.text());
    }
    let req = signed_at(
        &server,
        "signer-nodigsig",
        "123456782",
        OffsetDateTime::now_utc(),
    );
    let (fc, code) = fault(&server, &req).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurityToken", "0022"),
        "keyUsage without digitalSignature"
    );
}

#[tokio::test]
async fn dkd_call_accepts_an_answer_signed_with_a_tls_server_certificate() {
    let p = pki();
    let server = Server::start_with(|c| {
        c.security.signing = Some(SigningMode::Required);
        c.security.sign_cert = Some(p.path("server-signer.pem"));
        c.security.sign_key = Some(p.path("server-signer-key.pem"));
    })
    .await;
    let r = dkd::tools::call::call(dkd::tools::call::CallOptions {
        url: server.url.clone(),
        bsn: server.known_bsn(),
        from_oin: ALLOWED_OIN.into(),
        tls: client_tls("client"),
        signer: Some(signer("signer-serverauth")),
        response_trust: Some(dkd::http::tls::signer_trust(&p.path("ca.pem"), &[]).expect("trust")),
        timeout: std::time::Duration::from_secs(10),
    })
    .await
    .expect("call");
    assert_eq!((r.status, r.kind), (200, "clientsuwi"), "{}", r.body);
    let v = r
        .signature
        .expect("checked")
        .expect("the signature verifies");
    assert_eq!(v.signer_oin, SERVER_OIN);
    assert!(r.relates_to_matches);
}

#[tokio::test]
async fn unsigned_request_is_refused_when_signing_is_required() {
    let server = required().await;
    let (fc, code) = fault(&server, &Req::new(&server.url, "123456782").xml()).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurity", "0020")
    );
}

#[tokio::test]
async fn tampered_body_or_addressing_fails_the_check() {
    let server = required().await;
    let req = signed(&server, "123456782");
    let (fc, code) = fault(
        &server,
        &req.replace("<Burgerservicenr>123456782", "<Burgerservicenr>111222333"),
    )
    .await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:FailedCheck", "0021"),
        "tampered Body"
    );
    let req = signed(&server, "123456782");
    let tampered = req.replace(
        &format!(">{}</wsa:To>", server.url),
        ">https://evil.example/GSDDossierReintegratie-v0200</wsa:To>",
    );
    assert_ne!(tampered, req);
    let (fc, code) = fault(&server, &tampered).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:FailedCheck", "0021"),
        "tampered wsa:To"
    );
}

#[tokio::test]
async fn signature_wrapping_is_refused_by_node_identity() {
    let server = required().await;
    let req = signed(&server, "123456782");
    // Move the signed Body into ds:Object inside the Signature (where a plain verifier still finds
    // it by Id) and put an unsigned Body asking about someone else in its place.
    let body_start = req.find("<soapenv:Body").expect("body");
    let body_end = req.find("</soapenv:Body>").expect("/body") + "</soapenv:Body>".len();
    let signed_body = req[body_start..body_end].replace(
        "<soapenv:Body ",
        "<soapenv:Body xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" ",
    );
    let mut evil = req.clone();
    evil.replace_range(
        body_start..body_end,
        &format!("<soapenv:Body><gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>{}</Burgerservicenr></gsd:GSDReintegratieInfo></soapenv:Body>", server.known_bsn()),
    );
    evil = evil.replace(
        "</ds:KeyInfo></ds:Signature>",
        &format!("</ds:KeyInfo><ds:Object>{signed_body}</ds:Object></ds:Signature>"),
    );
    let (fc, code) = fault(&server, &evil).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurity", "0028")
    );
}

#[tokio::test]
async fn duplicate_ids_are_refused() {
    let server = required().await;
    let req = signed(&server, "123456782").replace("<wsu:Created>", "<wsu:Created wsu:Id=\"_To\">");
    let (fc, code) = fault(&server, &req).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurity", "0020")
    );
}

#[tokio::test]
async fn weak_or_foreign_algorithms_are_refused() {
    let server = required().await;
    let req = signed(&server, "123456782");
    for (from, to) in [
        ("http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1"),
        ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
        (
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\">",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\">",
        ),
    ] {
        let (fc, code) = fault(&server, &req.replacen(from, to, 1)).await;
        assert_eq!((fc.as_str(), code.as_str()), ("wsse:InvalidSecurity", "0027"), "{to}");
    }
}

#[tokio::test]
async fn missing_timestamp_is_refused() {
    let server = required().await;
    let req = signed(&server, "123456782");
    let a = req.find("<wsu:Timestamp").expect("ts");
    let b = req.find("</wsu:Timestamp>").expect("/ts") + "</wsu:Timestamp>".len();
    let mut no_ts = req.clone();
    no_ts.replace_range(a..b, "");
    let (fc, code) = fault(&server, &no_ts).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurity", "0020")
    );
}

#[tokio::test]
async fn expired_and_future_timestamps_are_refused() {
    let server = required().await;
    let now = OffsetDateTime::now_utc();
    for (name, at) in [
        ("expired", now - Duration::minutes(30)),
        ("future beyond skew", now + Duration::minutes(10)),
    ] {
        let (fc, code) = fault(&server, &signed_at(&server, "client", "123456782", at)).await;
        assert_eq!(
            (fc.as_str(), code.as_str()),
            ("wsu:MessageExpired", "0023"),
            "{name}"
        );
    }
    // Within the skew is fine.
    let ok = signed_at(&server, "client", "123456782", now + Duration::seconds(30));
    assert_eq!(post(&server.url, &ok).await.status, 200);
}

#[tokio::test]
async fn an_unsigned_addressing_header_is_refused() {
    let server = required().await;
    let req = signed(&server, "123456782").replace(
        "</soapenv:Header>",
        "<wsa:ReplyTo xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo></soapenv:Header>",
    );
    let (fc, code) = fault(&server, &req).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurity", "0028")
    );
}

#[tokio::test]
async fn an_unsigned_foreign_header_in_a_signed_request_is_ignored() {
    let server = required().await;
    let req = signed(&server, &server.known_bsn()).replace(
        "</soapenv:Header>",
        "<x:Trace xmlns:x=\"urn:x\">1</x:Trace></soapenv:Header>",
    );
    let r = post(&server.url, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<ClientSuwi>"));
}

#[tokio::test]
async fn a_signed_body_moved_into_a_foreign_header_is_refused() {
    let server = required().await;
    let req = signed(&server, "123456782");
    // The signed Body goes into a foreign wrapper header (ignored by the header policy, and
    // where a verifier that finds parts by Id alone still finds it); an unsigned Body asking
    // about someone else takes its place.
    let body_start = req.find("<soapenv:Body").expect("body");
    let body_end = req.find("</soapenv:Body>").expect("/body") + "</soapenv:Body>".len();
    let signed_body = req[body_start..body_end].to_owned();
    let mut evil = req.clone();
    evil.replace_range(
        body_start..body_end,
        &format!("<soapenv:Body><gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>{}</Burgerservicenr></gsd:GSDReintegratieInfo></soapenv:Body>", server.known_bsn()),
    );
    evil = evil.replace(
        "</soapenv:Header>",
        &format!("<x:Wrapper xmlns:x=\"urn:x\">{signed_body}</x:Wrapper></soapenv:Header>"),
    );
    let r = post(&server.url, &evil).await;
    let text = r.text();
    assert_eq!(r.status, 500, "{text}");
    assert!(!text.contains("ClientSuwi"), "{text}");
    assert_eq!(
        fault_codes(&text),
        ("wsse:InvalidSecurity".to_owned(), "0028".to_owned())
    );
}

#[tokio::test]
async fn a_signed_foreign_header_is_accepted_and_ignored() {
    use dkd::soap::wssec::{canonical_body, wsa_header};
    let server = required().await;
    let bsn = server.known_bsn();
    let wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
    // Written in its exclusive-C14N form, so the bytes sent are the bytes digested.
    let trace =
        format!("<x:Trace xmlns:wsu=\"{wsu}\" xmlns:x=\"urn:x\" wsu:Id=\"_Trace\">1</x:Trace>");
    let from = format!("http://localhost/dkd?oin={ALLOWED_OIN}");
    let message_id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let mut headers: Vec<(&str, String)> = Vec::new();
    for (name, id, value) in [
        ("MessageID", "_MessageID", message_id.as_str()),
        ("Action", "_Action", ACTION),
        ("To", "_To", server.url.as_str()),
    ] {
        let mut h = String::new();
        wsa_header(name, Some(id), |o| o.push_str(value), &mut h);
        headers.push((id, h));
    }
    let mut h = String::new();
    wsa_header(
        "From",
        Some("_From"),
        |o| o.push_str(&format!("<wsa:Address>{from}</wsa:Address>")),
        &mut h,
    );
    headers.push(("_From", h));
    headers.push(("_Trace", trace));
    let body = format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>{bsn}</Burgerservicenr></gsd:GSDReintegratieInfo>");
    let canonical = canonical_body("_Body", &body);
    let mut parts: Vec<(&str, &str)> = headers.iter().map(|(i, h)| (*i, h.as_str())).collect();
    parts.push(("_Body", &canonical));
    let security = signer("client")
        .security_header(&parts, None, OffsetDateTime::now_utc())
        .expect("sign");
    let all: String = headers.iter().map(|(_, h)| h.as_str()).collect();
    let xml = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header>{security}{all}</soapenv:Header>{}</soapenv:Envelope>",
        canonical
    );
    assert!(
        xml.contains("URI=\"#_Trace\""),
        "the foreign block is signed"
    );
    let r = post(&server.url, &xml).await;
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert_eq!(
        element_text(&text, "Burgerservicenr").as_deref(),
        Some(bsn.as_str())
    );
}

#[tokio::test]
async fn a_security_fault_is_addressed() {
    let server = required().await;
    let req = Req::new(&server.url, "123456782");
    let r = post(&server.url, &req.xml()).await;
    let text = r.text();
    assert_eq!(fault_codes(&text).1, "0020", "{text}");
    assert_eq!(element_text(&text, "RelatesTo"), req.message_id, "{text}");
    assert_eq!(element_text(&text, "To"), req.from, "{text}");
    assert_eq!(
        element_text(&text, "Address").as_deref(),
        Some(server.url.as_str())
    );
}

#[tokio::test]
async fn signing_certificates_are_checked_for_chain_and_oin() {
    let server = required().await;
    let now = OffsetDateTime::now_utc();
    let cases = [
        ("foreign", "wsse:InvalidSecurityToken", "0022"),
        ("unlisted", "wsse:InvalidSecurityToken", "0024"),
        ("second", "wsse:InvalidSecurityToken", "0025"),
    ];
    for (who, fc, code) in cases {
        let got = fault(&server, &signed_at(&server, who, "123456782", now)).await;
        assert_eq!(
            (got.0.as_str(), got.1.as_str()),
            (fc, code),
            "signed by {who}"
        );
    }
}

#[tokio::test]
async fn an_intermediary_may_sign_when_configured() {
    let server = Server::start_with(|c| {
        c.security.signing = Some(SigningMode::Required);
        c.security.signer_must_match_tls = false;
        c.security.allowed_signer_oins = vec![SECOND_OIN.into()];
    })
    .await;
    let r = post(
        &server.url,
        &signed_at(&server, "second", "123456782", OffsetDateTime::now_utc()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_replayed_message_id_is_refused() {
    let server = required().await;
    let req = signed(&server, "123456782");
    assert_eq!(post(&server.url, &req).await.status, 200);
    let (fc, code) = fault(&server, &req).await;
    assert_eq!(
        (fc.as_str(), code.as_str()),
        ("wsse:InvalidSecurity", "0026")
    );
}

#[tokio::test]
async fn faults_are_signed_too() {
    let server = required().await;
    let r = post(&server.url, &Req::new(&server.url, "123456782").xml()).await;
    let text = r.text();
    assert!(
        text.contains("<ds:SignatureValue>") && text.contains("wsu:Id=\"_Body\""),
        "{text}"
    );
    assert!(
        !text.contains("SignatureConfirmation"),
        "nothing to confirm for an unsigned request"
    );
}
