//! The IBVerwijsindex request parser (`suwiml::verwijsindex::parse_request`, after `xml::parse`)
//! and its writer: whatever the parser accepts must be written back to a document that parses to
//! the same request (what the IB role stores is what it was sent). A panic or a difference is a bug.
#![no_main]

use dkd::suwiml::verwijsindex::{parse_request, write_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = dkd::xml::parse(data) else {
        return;
    };
    let Ok(req) = parse_request(&doc) else {
        return;
    };
    let mut again = String::new();
    write_request(&req, &mut again);
    let doc2 = dkd::xml::parse(again.as_bytes()).expect("dkd's own request parses");
    let req2 = parse_request(&doc2).expect("dkd's own request is accepted");
    assert_eq!(req, req2, "round trip changed the request");
});
