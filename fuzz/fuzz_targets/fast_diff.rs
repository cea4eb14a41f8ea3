//! Differential: `soap::fast::read` (the one-pass reader of the common unsigned request) against
//! the full path (`soap::envelope::parse`, `read_headers`, `suwiml::gsd::parse_request`). The
//! fast reader may give up on anything, but whatever it accepts the full path must accept with
//! the same WS-Addressing values and the same BSN; otherwise an answer would depend on which path
//! read the request.
#![no_main]

use dkd::soap::fast::{read, read_fully};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fast) = read(data) {
        let full = read_fully(data);
        assert_eq!(
            Some(&fast),
            full.as_ref(),
            "the fast path read {:?}",
            String::from_utf8_lossy(data)
        );
    }
});
