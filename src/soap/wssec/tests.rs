use super::*;
use crate::certs::DevCa;

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) signer: Signer,
    pub(crate) policy: VerifyPolicy,
}

pub(crate) const OIN: &str = "00000099000000000002";

pub(crate) fn fixture() -> Fixture {
    fixture_signed_by(|ca| ca.client("c", Some(OIN), 10))
}

/// A fixture whose signer's certificate `make` issues under the trusted CA.
pub(crate) fn fixture_signed_by(
    make: impl FnOnce(&DevCa) -> Result<crate::certs::Issued, crate::certs::CertError>,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = DevCa::new("ca").expect("ca");
    let c = make(&ca).expect("signer certificate");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca.issued().cert_pem).expect("w");
    std::fs::write(p("c.pem"), &c.cert_pem).expect("w");
    std::fs::write(p("c-key.pem"), &c.key_pem).expect("w");
    let signer = Signer::load(&p("c.pem"), &p("c-key.pem")).expect("signer");
    let policy = VerifyPolicy {
        mode: SigningMode::Required,
        trust: crate::http::tls::signer_trust(&p("ca.pem"), &[]).expect("trust"),
        allowed_signer_oins: [OIN.to_owned()].into_iter().collect(),
        signer_must_match_tls: true,
        any_signer: false,
        clock_skew: time::Duration::seconds(60),
        max_age: time::Duration::seconds(300),
        replay: ReplayCache::new(10),
        trust_cache: Default::default(),
    };
    Fixture {
        _dir: dir,
        signer,
        policy,
    }
}

pub(crate) fn request(f: &Fixture, id: &str, now: OffsetDateTime) -> String {
    crate::soap::signed_request(
        &f.signer,
        "https://x/GSDDossierReintegratie-v0200",
        OIN,
        "123456782",
        id,
        now,
    )
    .expect("sign")
}

fn invalid_message(r: Result<Option<Verified>, SecurityError>) -> String {
    match r {
        Err(SecurityError::Invalid(m)) => m,
        other => panic!("expected InvalidSecurity, got {other:?}"),
    }
}

#[test]
fn reference_count_repeats_and_prefix_lists_are_bounded_before_any_digest() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:bounds", now);
    let start = req.find("<ds:Reference ").expect("a Reference");
    let end = start + req[start..].find("</ds:Reference>").expect("its end") + 15;
    let one = &req[start..end];
    // The same Reference twice: both resolve to one element.
    let twice = format!("{}{one}{}", &req[..end], &req[end..]);
    let m = invalid_message(f.policy.verify(&twice, Some(OIN), None, now));
    assert!(m.contains("same element"), "{m}");
    // More References than a 2W-be-S message has parts.
    let many = format!("{}{}{}", &req[..end], one.repeat(16), &req[end..]);
    let m = invalid_message(f.policy.verify(&many, Some(OIN), None, now));
    assert!(m.contains("at most 16"), "{m}");
    // A PrefixList of thousands made every canonicalised element quadratic.
    let list: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
    let c14n = format!(
        "<ds:CanonicalizationMethod Algorithm=\"{ALG_EXC_C14N}\"></ds:CanonicalizationMethod>"
    );
    assert!(req.contains(&c14n), "{req}");
    let long = req.replace(
        &c14n,
        &format!(
            "<ds:CanonicalizationMethod Algorithm=\"{ALG_EXC_C14N}\"><ec:InclusiveNamespaces xmlns:ec=\"{ALG_EXC_C14N}\" PrefixList=\"{}\"/></ds:CanonicalizationMethod>",
            list.join(" ")
        ),
    );
    let m = invalid_message(f.policy.verify(&long, Some(OIN), None, now));
    assert!(m.contains("PrefixList"), "{m}");
    // Sixteen prefixes, repeated, are fine for the bound (the changed SignedInfo then fails
    // the signature check, as any change does).
    let ok_list = format!("{} {}", list[..16].join(" "), list[..16].join(" "));
    let within = long.replace(&list.join(" "), &ok_list);
    assert!(matches!(
        f.policy.verify(&within, Some(OIN), None, now),
        Err(SecurityError::FailedCheck(_))
    ));
}

#[test]
fn an_expires_at_the_end_of_time_is_not_a_panic() {
    let mut f = fixture();
    let now = OffsetDateTime::now_utc();
    f.signer.ttl = time::macros::datetime!(9999-12-31 23:59:59 UTC) - now;
    let req = request(&f, "urn:uuid:late", now);
    assert!(req.contains("9999-12-31T23:59:59"), "{req}");
    let v = f
        .policy
        .verify(&req, Some(OIN), Some("urn:uuid:late"), now)
        .expect("valid")
        .expect("signed");
    assert_eq!(v.signer_oin, OIN);
}

#[test]
fn the_confirmed_signature_value_is_the_verified_one() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:sv", now);
    let at = req.find("</ds:SignatureValue>").expect("SignatureValue");
    // The verifier reads the first text node (as bergshamra does); what dkd echoes in its
    // SignatureConfirmation must be that value, not the text of every node.
    let padded = format!("{}<!---->JUNK{}", &req[..at], &req[at..]);
    let clean = f
        .policy
        .verify(&req, Some(OIN), None, now)
        .expect("valid")
        .expect("signed");
    let v = f
        .policy
        .verify(&padded, Some(OIN), None, now)
        .expect("valid")
        .expect("signed");
    assert_eq!(v.signature_value, clean.signature_value);
    assert!(!v.signature_value.contains("JUNK"));
}

#[test]
fn own_signature_verifies_with_independent_c14n() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:1", now);
    let v = f
        .policy
        .verify(&req, Some(OIN), Some("urn:uuid:1"), now)
        .expect("valid")
        .expect("signed");
    assert_eq!(v.signer_oin, OIN);
    assert!(!v.signature_value.is_empty());
}

#[test]
fn replayed_message_id_is_refused_and_cache_is_bounded() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:2", now);
    f.policy
        .verify(&req, Some(OIN), Some("urn:uuid:2"), now)
        .expect("first");
    assert!(matches!(
        f.policy.verify(&req, Some(OIN), Some("urn:uuid:2"), now),
        Err(SecurityError::Replay(_))
    ));
    let cache = ReplayCache::new(3);
    for i in 0..10 {
        assert!(cache.check_and_insert(&format!("m{i}"), 0, 100));
    }
    assert!(cache.inner.lock().map(|g| g.seen.len()).unwrap_or(99) <= 3);
}

#[test]
fn tampering_after_signing_fails_the_check() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:3", now).replace("123456782", "111222333");
    assert!(
        matches!(
            f.policy.verify(&req, Some(OIN), Some("urn:uuid:3"), now),
            Err(SecurityError::FailedCheck(_))
        ),
        "tampered body"
    );
}

#[test]
fn timestamps_outside_the_window_are_refused() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let old = request(&f, "urn:uuid:4", now - time::Duration::minutes(20));
    assert!(matches!(
        f.policy.verify(&old, Some(OIN), Some("urn:uuid:4"), now),
        Err(SecurityError::Expired(_))
    ));
    let future = request(&f, "urn:uuid:5", now + time::Duration::minutes(5));
    assert!(matches!(
        f.policy.verify(&future, Some(OIN), Some("urn:uuid:5"), now),
        Err(SecurityError::Expired(_))
    ));
}

#[test]
fn signer_must_match_tls_oin() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:6", now);
    assert!(matches!(
        f.policy
            .verify(&req, Some("00000099000000000009"), Some("urn:uuid:6"), now),
        Err(SecurityError::SignerMismatch { .. })
    ));
}

#[test]
fn a_cached_trust_decision_ends_with_the_certificate() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:7", now);
    f.policy
        .verify(&req, Some(OIN), Some("urn:uuid:7"), now)
        .expect("valid");
    assert_eq!(f.policy.trust_cache.len(), 1);
    // The fixture's client certificate is valid for 10 days: a request signed (and checked)
    // after that must fail the token check even though its certificate is cached.
    let later = now + time::Duration::days(11);
    let late = request(&f, "urn:uuid:8", later);
    assert!(matches!(
        f.policy.verify(&late, Some(OIN), Some("urn:uuid:8"), later),
        Err(SecurityError::Token(_))
    ));
}

#[test]
fn a_signer_needs_no_tls_extended_key_usage_but_must_allow_signatures() {
    use crate::certs::SignerUsage as U;
    let now = OffsetDateTime::now_utc();
    for usage in [
        U::ServerAuthOnly,
        U::ClientAuthOnly,
        U::NoExtendedKeyUsage,
        U::NonRepudiationOnly,
    ] {
        let f = fixture_signed_by(|ca| ca.signer("s", Some(OIN), 10, usage));
        let req = request(&f, "urn:uuid:eku", now);
        let v = f
            .policy
            .verify(&req, Some(OIN), Some("urn:uuid:eku"), now)
            .unwrap_or_else(|e| panic!("{usage:?}: {e}"))
            .expect("signed");
        assert_eq!(v.signer_oin, OIN, "{usage:?}");
    }
    let f = fixture_signed_by(|ca| ca.signer("s", Some(OIN), 10, U::NoDigitalSignature));
    let req = request(&f, "urn:uuid:ku", now);
    match f.policy.verify(&req, Some(OIN), None, now) {
        Err(SecurityError::Token(m)) => assert!(m.contains("digitalSignature"), "{m}"),
        other => panic!("keyEncipherment only must be refused: {other:?}"),
    }
    assert!(f.policy.trust_cache.is_empty(), "a refusal is not cached");
}

#[test]
fn a_signer_from_another_ca_or_expired_is_still_refused() {
    let now = OffsetDateTime::now_utc();
    let f = fixture();
    let foreign = fixture_signed_by(|ca| {
        ca.signer(
            "s",
            Some(OIN),
            10,
            crate::certs::SignerUsage::ServerAuthOnly,
        )
    });
    let req = request(&foreign, "urn:uuid:foreign", now);
    match f.policy.verify(&req, Some(OIN), None, now) {
        Err(SecurityError::Token(m)) => assert!(m.contains("trusted CA"), "{m}"),
        other => panic!("another CA's signer must be refused: {other:?}"),
    }
    let later = now + time::Duration::days(11);
    let late = request(&f, "urn:uuid:late-eku", later);
    match f.policy.verify(&late, Some(OIN), None, later) {
        Err(SecurityError::Token(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("an expired signer must be refused: {other:?}"),
    }
}

#[test]
fn a_revoked_signer_is_refused_and_one_the_crl_does_not_name_is_not() {
    use crate::certs::SignerUsage as U;
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = DevCa::new("ca").expect("ca");
    let revoked = ca
        .signer("r", Some(OIN), 10, U::ServerAuthOnly)
        .expect("signer");
    let kept = ca
        .signer("k", Some(OIN), 10, U::ServerAuthOnly)
        .expect("signer");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca.issued().cert_pem).expect("w");
    std::fs::write(p("crl.pem"), ca.crl_pem(&[&revoked.cert_pem]).expect("crl")).expect("w");
    let trust = crate::http::tls::signer_trust(&p("ca.pem"), &[p("crl.pem")]).expect("trust");
    for (name, issued, ok) in [("revoked", &revoked, false), ("kept", &kept, true)] {
        std::fs::write(p("s.pem"), &issued.cert_pem).expect("w");
        std::fs::write(p("s-key.pem"), &issued.key_pem).expect("w");
        let mut f = fixture();
        f.signer = Signer::load(&p("s.pem"), &p("s-key.pem")).expect("signer");
        f.policy.trust = trust.clone();
        let req = request(&f, &format!("urn:uuid:crl-{name}"), now);
        match f.policy.verify(&req, Some(OIN), None, now) {
            Ok(Some(_)) if ok => {}
            Err(SecurityError::Token(m)) if !ok => assert!(m.contains("revoked"), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn sha224_digests_and_rsa_sha224_signatures_are_refused_as_algorithms() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let req = request(&f, "urn:uuid:224", now);
    let sha256 = format!("<ds:DigestMethod Algorithm=\"{ALG_SHA256}\">");
    assert!(req.contains(&sha256), "{req}");
    // Refused by the allow-list before any digest is compared: an Algorithm refusal (fault
    // 0027), not a failed check.
    let sha224 = req.replacen(
        &sha256,
        "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#sha224\">",
        1,
    );
    match f.policy.verify(&sha224, Some(OIN), None, now) {
        Err(SecurityError::Algorithm(m)) => assert!(m.contains("sha224"), "{m}"),
        other => panic!("SHA-224 must be refused: {other:?}"),
    }
    let rsa224 = req.replace(
        ALG_RSA_SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha224",
    );
    match f.policy.verify(&rsa224, Some(OIN), None, now) {
        Err(SecurityError::Algorithm(m)) => assert!(m.contains("rsa-sha224"), "{m}"),
        other => panic!("RSA-SHA224 must be refused: {other:?}"),
    }
}

#[test]
fn format_time_is_utc_with_milliseconds() {
    let t = time::macros::datetime!(2026-11-22 15:04:05.123 +01:00);
    assert_eq!(format_time(t), "2026-11-22T14:04:05.123Z");
}
