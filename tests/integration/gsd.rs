//! GSDReintegratieInfo behaviour, end to end: answers, faults, WS-Addressing.

use crate::common::*;

async fn fault_of(server: &Server, req: &Req) -> (u16, String, String, String) {
    let r = post(&server.url, &req.xml()).await;
    let text = r.text();
    let (fc, code) = fault_codes(&text);
    (r.status, fc, code, text)
}

#[tokio::test]
async fn known_bsn_returns_client_suwi_with_reply_addressing() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let bsn = server.known_bsn();
        let req = Req::new(&server.url, &bsn);
        let r = post(&server.url, &req.xml()).await;
        let text = r.text();
        assert_eq!(r.status, 200, "{text}");
        assert_eq!(r.content_type.as_deref(), Some("text/xml; charset=utf-8"));
        assert_eq!(
            element_text(&text, "Burgerservicenr").as_deref(),
            Some(bsn.as_str())
        );
        assert!(
            text.contains("<PercLoonwaardeTovWml><Percentage>"),
            "LKS loonwaarde present: {text}"
        );
        // WS-Addressing reply rules (Transactiestandaard 4.0).
        assert_eq!(element_text(&text, "RelatesTo"), req.message_id);
        assert_eq!(
            element_text(&text, "Action").as_deref(),
            Some("http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/GSDReintegratieInfoResponse")
        );
        assert_eq!(element_text(&text, "To"), req.from);
        assert_eq!(
            element_text(&text, "Address").as_deref(),
            Some(server.url.as_str())
        );
        let mid = element_text(&text, "MessageID").expect("MessageID");
        assert!(
            mid.starts_with("urn:uuid:") && Some(&mid) != req.message_id.as_ref(),
            "new MessageID: {mid}"
        );
        let body = body_child(&text);
        validate_official(&body, Schema::Response);
        validate_own(&body, "GSDDossierReintegratie-v0200.xsd");
        golden("gsd-clientsuwi.xml", &normalise(&text, &server.url));
    }
}

#[tokio::test]
async fn each_answer_gets_a_fresh_message_id() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let req = Req::new(&server.url, &server.known_bsn());
        let a = element_text(&post(&server.url, &req.xml()).await.text(), "MessageID");
        let b = element_text(&post(&server.url, &req.xml()).await.text(), "MessageID");
        assert_ne!(a, b);
    }
}

#[tokio::test]
async fn valid_unknown_bsn_returns_niets_gevonden() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let r = post(&server.url, &Req::new(&server.url, "123456782").xml()).await;
        let text = r.text();
        assert_eq!(r.status, 200, "{text}");
        assert!(
            text.contains(
                "<fwi:NietsGevonden xmlns:fwi=\"http://bkwi.nl/SuwiML/FWI/v0205\"></fwi:NietsGevonden>"
            ),
            "{text}"
        );
        assert!(!text.contains("ClientSuwi"));
        let body = body_child(&text);
        validate_official(&body, Schema::Response);
        golden("gsd-nietsgevonden.xml", &normalise(&text, &server.url));
    }
}

#[tokio::test]
#[cfg_attr(
    any(dkd_missing = "shared", dkd_missing = "xmllint"),
    ignore = "needs ../shared/reference/suwiml (or DKD_SHARED_DIR) and xmllint (apt-get install libxml2-utils)"
)]
async fn request_built_by_harness_is_valid_against_official_schema() {
    // Guards the harness itself: the negative tests below must differ from a valid request only
    // in the part they break.
    let req = Req::new("https://x/GSDDossierReintegratie-v0200", "123456782");
    validate_official(&req.body, Schema::Request);
}

#[tokio::test]
async fn bsn_failing_eleven_test_is_a_client_fault() {
    let server = Server::start().await;
    let (status, fc, code, text) = fault_of(&server, &Req::new(&server.url, "123456781")).await;
    assert_eq!(
        (status, fc.as_str(), code.as_str()),
        (500, "soapenv:Client", "0012")
    );
    assert_eq!(
        element_text(&text, "RelatesTo").as_deref(),
        Some("urn:uuid:11111111-2222-4333-8444-555555555555")
    );
    assert_eq!(
        element_text(&text, "Action").as_deref(),
        Some("http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/Fout")
    );
    validate_official(&fault_detail(&text), Schema::Fout);
    golden("gsd-fault-elfproef.xml", &normalise(&text, &server.url));
}

#[tokio::test]
async fn schema_invalid_bodies_are_refused_with_0004() {
    let server = Server::start().await;
    for body in [
        // Qualified child: the classic interop bug.
        format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><gsd:Burgerservicenr>123456782</gsd:Burgerservicenr></gsd:GSDReintegratieInfo>"),
        format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>12345678</Burgerservicenr></gsd:GSDReintegratieInfo>"),
        format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"/>"),
        "<GSDReintegratieInfo><Burgerservicenr>123456782</Burgerservicenr></GSDReintegratieInfo>".to_string(),
        format!("<gsd:Other xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>123456782</Burgerservicenr></gsd:Other>"),
    ] {
        let mut req = Req::new(&server.url, "123456782");
        req.body = body.clone();
        let (status, fc, code, text) = fault_of(&server, &req).await;
        assert_eq!((status, fc.as_str(), code.as_str()), (500, "soapenv:Client", "0004"), "{body}\n{text}");
    }
}

#[tokio::test]
async fn unusable_envelopes_are_refused_with_0001() {
    let server = Server::start().await;
    let valid = Req::new(&server.url, "123456782").xml();
    let cases = [
        ("not xml", "this is not XML".to_owned()),
        ("truncated", valid[..valid.len() - 20].to_owned()),
        (
            "dtd",
            format!(
                "<!DOCTYPE x [<!ENTITY a \"b\">]>{}",
                valid.replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", "")
            ),
        ),
        ("not an envelope", "<x/>".to_owned()),
        (
            "two body elements",
            valid.replace("</soapenv:Body>", "<a/></soapenv:Body>"),
        ),
        (
            "empty body",
            Req {
                body: String::new(),
                ..Req::new(&server.url, "123456782")
            }
            .xml(),
        ),
    ];
    for (name, body) in cases {
        let r = post(&server.url, &body).await;
        let (fc, code) = fault_codes(&r.text());
        assert_eq!(
            (r.status, fc.as_str(), code.as_str()),
            (500, "soapenv:Client", "0001"),
            "{name}: {}",
            r.text()
        );
        validate_official(&fault_detail(&r.text()), Schema::Fout);
    }
}

#[tokio::test]
async fn soap_12_gets_version_mismatch() {
    let server = Server::start().await;
    let v12 = Req::new(&server.url, "123456782").xml().replace(
        "http://schemas.xmlsoap.org/soap/envelope/",
        "http://www.w3.org/2003/05/soap-envelope",
    );
    let r = post(&server.url, &v12).await;
    assert_eq!(
        fault_codes(&r.text()).0,
        "soapenv:VersionMismatch",
        "{}",
        r.text()
    );
    let r = post_with_headers(
        &server.url,
        &[("content-type", "application/soap+xml; charset=utf-8")],
        Req::new(&server.url, "123456782").xml().as_bytes(),
    )
    .await;
    assert_eq!(fault_codes(&r.text()).0, "soapenv:VersionMismatch");
}

#[tokio::test]
async fn wrong_soap_action_is_refused_and_matching_ones_accepted() {
    let server = Server::start().await;
    let body = Req::new(&server.url, "123456782").xml();
    let r = post_with_headers(
        &server.url,
        &[
            ("content-type", "text/xml"),
            ("soapaction", "\"urn:other\""),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(fault_codes(&r.text()).1, "0003");
    for ok in [
        None,
        Some("\"\""),
        Some(&*format!("\"{ACTION}\"")),
        Some(ACTION),
    ] {
        let mut h = vec![("content-type", "text/xml; charset=utf-8")];
        if let Some(v) = ok {
            h.push(("soapaction", v));
        }
        let r = post_with_headers(&server.url, &h, body.as_bytes()).await;
        assert_eq!(r.status, 200, "SOAPAction {ok:?}: {}", r.text());
    }
}

#[tokio::test]
async fn missing_addressing_headers_are_named() {
    let server = Server::start().await;
    let base = Req::new(&server.url, "123456782");
    type Case = (&'static str, fn(&mut Req), &'static str);
    let cases: [Case; 4] = [
        ("MessageID", |r| r.message_id = None, "0007"),
        ("Action", |r| r.action = None, "0006"),
        ("To", |r| r.to = None, "0005"),
        ("From", |r| r.from = None, "0011"),
    ];
    for (name, change, code) in cases {
        let mut req = base.clone();
        change(&mut req);
        let (status, fc, c, text) = fault_of(&server, &req).await;
        assert_eq!(status, 500);
        assert_eq!(
            (fc.as_str(), c.as_str()),
            ("wsa:MessageAddressingHeaderRequired", code),
            "{name}: {text}"
        );
        assert!(text.contains(&format!("wsa:{name}")), "{text}");
        assert_eq!(
            element_text(&text, "Action").as_deref(),
            Some("http://www.w3.org/2005/08/addressing/fault")
        );
        validate_official(&fault_detail(&text), Schema::Fout);
    }
}

#[tokio::test]
async fn invalid_addressing_headers_are_refused() {
    let server = Server::start().await;
    let base = Req::new(&server.url, "123456782");
    let wsa = "xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"";
    let cases: Vec<(&str, Req, &str, &str)> = vec![
        ("wrong To", Req { to: Some("https://elsewhere.example/GSDDossierReintegratie-v0200".into()), ..base.clone() }, "wsa:InvalidAddressingHeader", "0005"),
        ("MessageID not a URI", Req { message_id: Some("not a uri".into()), ..base.clone() }, "wsa:InvalidAddressingHeader", "0007"),
        ("From without OIN", Req { from: Some("http://ib.example/dkd".into()), ..base.clone() }, "wsa:InvalidAddressingHeader", "0011"),
        ("unknown Action", Req { action: Some("urn:other".into()), ..base.clone() }, "wsa:ActionNotSupported", "0006"),
        (
            "ReplyTo elsewhere",
            Req { extra_headers: format!("<wsa:ReplyTo {wsa}><wsa:Address>http://evil.example/</wsa:Address></wsa:ReplyTo>"), ..base.clone() },
            "wsa:InvalidAddressingHeader",
            "0011",
        ),
        (
            "duplicate MessageID",
            Req { extra_headers: format!("<wsa:MessageID {wsa}>urn:uuid:x</wsa:MessageID>"), ..base.clone() },
            "wsa:InvalidAddressingHeader",
            "0007",
        ),
    ];
    for (name, req, fc, code) in cases {
        let (status, f, c, text) = fault_of(&server, &req).await;
        assert_eq!(
            (status, f.as_str(), c.as_str()),
            (500, fc, code),
            "{name}: {text}"
        );
    }
    // ReplyTo anonymous and the upper-case OIN key are accepted.
    let ok = Req {
        from: Some(format!("http://ib.example/dkd?OIN={ALLOWED_OIN}")),
        extra_headers: format!("<wsa:ReplyTo {wsa}><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>"),
        ..base.clone()
    };
    assert_eq!(post(&server.url, &ok.xml()).await.status, 200);
}

/// Asserts that a fault is addressed to the caller: RelatesTo its MessageID, To its From, and
/// From the address it used (`from`).
fn assert_addressed(text: &str, req: &Req, from: &str, path: &str) {
    assert_eq!(
        element_text(text, "RelatesTo"),
        req.message_id,
        "{path}: {text}"
    );
    assert_eq!(element_text(text, "To"), req.from, "{path}: {text}");
    assert_eq!(
        element_text(text, "Address").as_deref(),
        Some(from),
        "{path}: {text}"
    );
}

/// The header a WCF client adds in debug builds.
const WCF_DEBUG: &str = "<VsDebuggerCausalityData xmlns=\"http://schemas.microsoft.com/vstudio/diagnostics/servicemodelsink\">uIDPo7m2bkZ0tq5Aq9C0XQAAAAAAAAA</VsDebuggerCausalityData>";

#[tokio::test]
async fn unknown_header_blocks_without_must_understand_are_ignored() {
    let server = Server::start().await;
    let bsn = server.known_bsn();
    let req = Req {
        extra_headers: format!(
            "{WCF_DEBUG}<x:Trace xmlns:x=\"urn:x\" xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" soapenv:mustUnderstand=\"0\">1</x:Trace><Plain>no namespace</Plain>"
        ),
        ..Req::new(&server.url, &bsn)
    };
    let r = post(&server.url, &req.xml()).await;
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    assert_eq!(
        element_text(&text, "Burgerservicenr").as_deref(),
        Some(bsn.as_str())
    );
    assert_eq!(element_text(&text, "RelatesTo"), req.message_id);
    let (_, metrics) = http_get(server.ops, "/metrics").await;
    for ns in [
        "http://schemas.microsoft.com/vstudio/diagnostics/servicemodelsink",
        "urn:x",
        "",
    ] {
        assert!(
            metrics.contains(&format!(
                "dkd_ignored_headers_total{{namespace=\"{ns}\"}} 1\n"
            )),
            "{ns}: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_must_understand_block_is_refused_and_the_fault_addressed() {
    let server = Server::start().await;
    let base = Req::new(&server.url, "123456782");
    // Before the WS-Addressing headers, so they are read after the block is refused.
    let xml = base.xml().replace(
        "<soapenv:Header>",
        "<soapenv:Header><x:Trace xmlns:x=\"urn:x\" soapenv:mustUnderstand=\"1\">1</x:Trace>",
    );
    let r = post(&server.url, &xml).await;
    let text = r.text();
    let (fc, code) = fault_codes(&text);
    assert_eq!(
        (r.status, fc.as_str(), code.as_str()),
        (500, "soapenv:MustUnderstand", "0010")
    );
    assert_addressed(&text, &base, &server.url, "MustUnderstand");
    // WS-Addressing of the 2004 draft is not foreign: it is refused, naming the right namespace.
    let old_wsa = Req {
        extra_headers:
            "<a:Action xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\">x</a:Action>"
                .into(),
        ..base.clone()
    };
    let (_, _, code, text) = fault_of(&server, &old_wsa).await;
    assert_eq!(code, "0010");
    assert!(
        text.contains("2005/08/addressing"),
        "the fault names the right namespace: {text}"
    );
    assert_addressed(&text, &base, &server.url, "2004 WS-Addressing");
}

#[tokio::test]
async fn schema_and_eleven_test_faults_are_addressed() {
    let server = Server::start().await;
    let mut schema = Req::new(&server.url, "123456782");
    schema.body = format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"/>");
    let (_, _, code, text) = fault_of(&server, &schema).await;
    assert_eq!(code, "0004");
    assert_addressed(&text, &schema, &server.url, "schema");
    let eleven = Req::new(&server.url, "123456781");
    let (_, _, code, text) = fault_of(&server, &eleven).await;
    assert_eq!(code, "0012");
    assert_addressed(&text, &eleven, &server.url, "11-test");
}

#[tokio::test]
async fn a_content_type_fault_is_addressed() {
    let server = Server::start().await;
    let req = Req::new(&server.url, "123456782");
    let r = post_with_headers(
        &server.url,
        &[("content-type", "application/x-www-form-urlencoded")],
        req.xml().as_bytes(),
    )
    .await;
    let text = r.text();
    assert_eq!(fault_codes(&text).1, "0015");
    assert_addressed(&text, &req, &server.url, "Content-Type");
}

#[tokio::test]
async fn wsa_to_may_carry_dkds_own_oin() {
    let server = Server::start().await;
    let bsn = server.known_bsn();
    for key in ["oin", "OIN"] {
        let to = format!("{}?{key}={SERVER_OIN}", server.url);
        let req = Req::new(&to, &bsn);
        let r = post(&server.url, &req.xml()).await;
        let text = r.text();
        assert_eq!(r.status, 200, "{key}: {text}");
        assert_eq!(
            element_text(&text, "Address").as_deref(),
            Some(to.as_str()),
            "the answer comes from the address the caller used"
        );
    }
    for to in [
        format!("{}?oin={UNLISTED_OIN}", server.url),
        format!("{}?oin={SERVER_OIN}&amp;x=1", server.url),
        format!("https://elsewhere.example/?oin={SERVER_OIN}"),
    ] {
        let (status, fc, code, text) = fault_of(&server, &Req::new(&to, &bsn)).await;
        assert_eq!(
            (status, fc.as_str(), code.as_str()),
            (500, "wsa:InvalidAddressingHeader", "0005"),
            "{to}"
        );
        // The To was refused: the fault comes from the service's own address.
        assert_eq!(
            element_text(&text, "Address").as_deref(),
            Some(server.url.as_str()),
            "{to}"
        );
    }
}

#[tokio::test]
async fn non_utf8_is_refused_with_0009() {
    let server = Server::start().await;
    let mut latin1 = Req::new(&server.url, "123456782").xml().into_bytes();
    latin1.extend_from_slice(b"<!-- caf\xe9 -->");
    let r = post_with_headers(&server.url, &[("content-type", "text/xml")], &latin1).await;
    assert_eq!(fault_codes(&r.text()).1, "0009");
    let r = post_with_headers(
        &server.url,
        &[("content-type", "text/xml; charset=ISO-8859-1")],
        Req::new(&server.url, "123456782").xml().as_bytes(),
    )
    .await;
    assert_eq!(fault_codes(&r.text()).1, "0009");
}

#[tokio::test]
async fn wrong_content_type_is_refused_with_0015() {
    let server = Server::start().await;
    let r = post_with_headers(
        &server.url,
        &[("content-type", "application/x-www-form-urlencoded")],
        Req::new(&server.url, "123456782").xml().as_bytes(),
    )
    .await;
    assert_eq!(fault_codes(&r.text()).1, "0015");
}

#[tokio::test]
async fn oin_not_on_allow_list_gets_not_authorised_fault() {
    let server = Server::start().await;
    for cert in ["unlisted", "nooin"] {
        let r = post_as(
            cert,
            &server.url,
            &Req::new(&server.url, &server.known_bsn()).xml(),
        )
        .await;
        let text = r.text();
        let (fc, code) = fault_codes(&text);
        assert_eq!(
            (r.status, fc.as_str(), code.as_str()),
            (500, "soapenv:Client", "0002"),
            "{cert}: {text}"
        );
        assert!(
            !text.contains("ClientSuwi"),
            "no data leaks to an unauthorised caller"
        );
        let req = Req::new(&server.url, &server.known_bsn());
        assert_addressed(&text, &req, &server.url, cert);
    }
}

#[tokio::test]
async fn oversized_body_is_refused_before_it_is_read() {
    let server = Server::start_with(|c| c.server.max_body_bytes = 4096).await;
    let mut req = Req::new(&server.url, "123456782");
    req.extra_headers = format!("<!-- {} -->", "x".repeat(8192));
    let r = post(&server.url, &req.xml()).await;
    assert_eq!(fault_codes(&r.text()).1, "0013", "{}", r.text());
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn wsdl_and_schemas_are_served_with_the_public_url() {
    let server = Server::start().await;
    let tls = client_tls("client");
    let get = |url: String| {
        let tls = tls.clone();
        async move {
            dkd::http::client::request(
                tls,
                "GET",
                &url,
                &[],
                Vec::new(),
                std::time::Duration::from_secs(5),
            )
            .await
            .expect("GET")
        }
    };
    let wsdl = get(format!("{}?wsdl", server.url)).await;
    assert_eq!(wsdl.status, 200);
    let text = wsdl.text();
    assert!(
        text.contains(&format!("location=\"{}\"", server.url)),
        "soap:address is the public URL"
    );
    assert!(text.contains("soapAction=\"\""));
    for name in [
        "GSDDossierReintegratie-v0200.xsd",
        "SuwiML-Basisschema-v0801.xsd",
        "FWI-v0205.xsd",
    ] {
        assert!(
            text.contains(&format!("{}?xsd={name}", server.url))
                || name != "GSDDossierReintegratie-v0200.xsd"
        );
        let x = get(format!("{}?xsd={name}", server.url)).await;
        assert_eq!(x.status, 200, "{name}");
        assert!(
            x.text().contains("<xsd:schema")
                || x.text().contains("<xs:schema")
                || x.text().contains("schema"),
            "{name}"
        );
    }
    assert_eq!(
        get(format!("{}?xsd=../../etc/passwd", server.url))
            .await
            .status,
        404
    );
    let base = server.url.trim_end_matches("/GSDDossierReintegratie-v0200");
    assert_eq!(get(format!("{base}/other")).await.status, 404);
}
