//! The SOAP layer end to end: `soap::handle` (Content-Type, XML parse, envelope structure, header
//! policy, WS-Addressing, OIN allow-list, SOAPAction, body and 11-test, the store lookup, the
//! response envelope), plus `xml::parse` and `soap::envelope::parse` on the same bytes. Asserts:
//! no panic; status 200 or 500 and 500 exactly for faults; the response is well-formed XML
//! (`dkd::xml::parse` reads it) and contains only XML 1.0 characters.
#![no_main]

use dkd::soap::{handle, Inbound, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dkd::xml::parse(data);
    let _ = dkd::soap::envelope::parse(data);

    let out = handle(
        dkd_fuzz::endpoint(),
        Inbound {
            body: data,
            content_type: Some("text/xml"),
            soap_action: None,
            tls_oin: Some(dkd_fuzz::OIN),
        },
    );
    assert!(
        out.status == 200 || out.status == 500,
        "status {} for outcome {:?}",
        out.status,
        out.outcome
    );
    assert_eq!(
        out.status == 500,
        matches!(out.outcome, Outcome::Fault(_)),
        "status {} does not fit outcome {:?}",
        out.status,
        out.outcome
    );
    if let Some((at, c)) = dkd_fuzz::first_non_xml_char(&out.body) {
        panic!(
            "response contains {c:?} at byte {at}, which no XML 1.0 document may contain:\n{}",
            out.body
        );
    }
    if let Err(e) = dkd::xml::parse(out.body.as_bytes()) {
        panic!("response is not well-formed XML ({e}):\n{}", out.body);
    }
});
