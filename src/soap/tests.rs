#[test]
fn message_ids_are_distinct_version_4_uuids() {
    let ids: std::collections::HashSet<String> =
        (0..1000).map(|_| super::new_message_id()).collect();
    assert_eq!(ids.len(), 1000);
    for id in ids.iter().take(20) {
        let u = uuid::Uuid::parse_str(id.strip_prefix("urn:uuid:").expect("urn:uuid:"))
            .expect("a UUID");
        assert_eq!(u.get_version(), Some(uuid::Version::Random), "{id}");
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
    }
}

use super::*;
use crate::store::Store;
use crate::suwiml::types::Bsn;

const URL: &str = "https://127.0.0.1:8443/GSDDossierReintegratie-v0200";
const OIN: &str = "00000099000000000002";

fn endpoint(store: Store) -> Endpoint {
    Endpoint {
        service: Service {
            store,
            dn: "CN=test".into(),
            window_days: 730,
        },
        public_url: URL.into(),
        to_aliases: vec![],
        own_oins: vec![],
        allowed_oins: [OIN.to_owned()].into_iter().collect(),
        security: None,
        kind: EndpointKind::Gemeente,
    }
}

fn call(ep: &Endpoint, bsn: &str) -> Outbound {
    let body = example_request(URL, OIN, bsn, "urn:uuid:7");
    handle(
        ep,
        Inbound {
            body: body.as_bytes(),
            content_type: Some("text/xml"),
            soap_action: None,
            tls_oin: Some(OIN),
        },
    )
}

#[test]
fn unreadable_store_record_is_an_fwi_fout_answer_not_a_fault() {
    let store = Store::temporary().expect("store");
    let bsn = Bsn::parse("123456782").expect("bsn");
    store.put_raw(&bsn, "0363", b"{not json").expect("raw");
    let out = call(&endpoint(store), "123456782");
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(out.outcome, Outcome::FwiFout);
    assert!(
        out.body.contains(
            "<fwi:FWI xmlns:fwi=\"http://bkwi.nl/SuwiML/FWI/v0205\"><Fout><Code>0051</Code>"
        ),
        "{}",
        out.body
    );
    assert!(
        !out.body.contains("json"),
        "no internals on the wire: {}",
        out.body
    );
    assert!(out.body.contains("<DN>CN=test</DN>"));
}

#[test]
fn fuzz_regressions_always_get_well_formed_answers() {
    // fuzz/regressions/envelope: control characters echoed into RelatesTo/To or a fault text
    // made the response unparseable.
    let ep = endpoint(Store::temporary().expect("store"));
    let mid = example_request(URL, OIN, "123456782", "urn:uuid:8")
        .replace("urn:uuid:8", "urn:uuid:8&#x1;");
    let from =
        example_request(URL, OIN, "123456782", "urn:uuid:9").replace("?oin=", "?x=&#x2;&amp;oin=");
    for body in [mid.as_bytes(), from.as_bytes(), b"</\x00>", b"<a>\x01</a>"] {
        let out = handle(
            &ep,
            Inbound {
                body,
                content_type: Some("text/xml"),
                soap_action: None,
                tls_oin: Some(OIN),
            },
        );
        assert!(
            crate::xml::parse(out.body.as_bytes()).is_ok(),
            "{}",
            out.body
        );
        assert_eq!(out.status, 500);
    }
}

#[test]
fn wsa_to_is_the_public_url_an_alias_or_either_naming_dkds_own_oin() {
    let mut ep = endpoint(Store::temporary().expect("store"));
    ep.to_aliases = vec!["https://proxy/x".into()];
    ep.own_oins = vec!["00000001000000000001".into()];
    for ok in [
        URL.to_owned(),
        "https://proxy/x".to_owned(),
        format!("{URL}?oin=00000001000000000001"),
        format!("{URL}?OIN=00000001000000000001"),
        "https://proxy/x?oin=00000001000000000001".to_owned(),
    ] {
        assert!(ep.accepts_to(&ok), "{ok}");
    }
    for bad in [
        format!("{URL}?oin=00000001000000000002"),
        format!("{URL}?oin=00000001000000000001&a=b"),
        format!("{URL}?Oin=00000001000000000001"),
        format!("{URL}?oin="),
        format!("{URL}?"),
        "https://other/?oin=00000001000000000001".to_owned(),
    ] {
        assert!(!ep.accepts_to(&bad), "{bad}");
    }
}

/// A signer whose key cannot sign.
struct CannotSign;

impl SignResponse for CannotSign {
    fn security_header(
        &self,
        _: &[(&str, &str)],
        _: Option<&str>,
        _: time::OffsetDateTime,
    ) -> Result<String, wssec::SecurityError> {
        Err(wssec::SecurityError::FailedCheck(
            "RSA signing failed: key /etc/dkd/sign.key".into(),
        ))
    }
}

#[test]
fn a_response_that_cannot_be_signed_is_an_unsigned_0099_fault_addressed_to_the_caller() {
    let ep = endpoint(Store::temporary().expect("store"));
    let from = format!("http://localhost/client?oin={OIN}");
    let ctx = ReplyContext {
        message_id: Some("urn:uuid:7".into()),
        from: Some(from.clone()),
        to: Some(URL.into()),
        from_oin: Some(OIN.into()),
        confirm: Some("c2lnbmF0dXJl".into()),
        ..ReplyContext::default()
    };
    let mut answer = String::new();
    gsd::write_response(&Reply::NietsGevonden, "", &mut answer);
    let out = envelope_signed_by(
        &ep,
        Some(&CannotSign),
        &ctx,
        Written {
            action: ep.response_action(),
            body: &answer,
            status: 200,
            outcome: Outcome::NotFound,
        },
        Look::Proper,
    );
    assert_eq!(out.status, 500);
    assert_eq!(out.outcome, Outcome::Fault(DkdCode::Internal));
    assert_eq!(out.message_id.as_deref(), Some("urn:uuid:7"));
    assert_eq!(out.from_oin.as_deref(), Some(OIN));
    let doc = crate::xml::parse(out.body.as_bytes()).expect("a well-formed envelope");
    drop(doc);
    for part in [
        "<faultcode>soapenv:Server</faultcode>",
        "<faultstring>Internal error: the response could not be signed</faultstring>",
        "<Code>0099</Code>",
        "<DN>CN=test</DN>",
        "urn:uuid:7</wsa:RelatesTo>",
        gsd::ACTION_FAULT,
        &format!("{from}</wsa:To>"),
    ] {
        assert!(out.body.contains(part), "{part}: {}", out.body);
    }
    // Unsigned, since signing is what failed; the answer it replaces does not go out, and
    // the cause stays in the log.
    for absent in [
        "wsse:Security",
        "wsu:Id",
        "NietsGevonden",
        "RSA",
        "sign.key",
    ] {
        assert!(!out.body.contains(absent), "{absent}: {}", out.body);
    }
}

#[test]
fn example_request_is_answered() {
    let out = call(&endpoint(Store::temporary().expect("store")), "123456782");
    assert_eq!(out.outcome, Outcome::NotFound, "{}", out.body);
    assert_eq!(out.from_oin.as_deref(), Some(OIN));
}
