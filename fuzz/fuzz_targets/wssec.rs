//! The WS-Security verifier (`wssec::VerifyPolicy::verify`, signing required) on UTF-8 inputs:
//! structure, algorithms, token and chain, OIN, XML-DSig via bergshamra, coverage by node
//! identity, Timestamp and replay. Errors are expected; a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = dkd_fuzz::verify_policy();
    if let Ok(Some(v)) = policy.verify(
        text,
        Some(dkd_fuzz::OIN),
        Some(dkd_fuzz::MESSAGE_ID),
        dkd_fuzz::now(),
    ) {
        assert_eq!(
            v.signer_oin,
            dkd_fuzz::OIN,
            "accepted a signer that is not allowed"
        );
        assert!(
            !v.signature_value.is_empty(),
            "accepted an empty SignatureValue"
        );
    }
});
