//! Differential: the XML-DSig verification `soap::wssec` does with its own exclusive C14N
//! (`soap::dsig`) against the same checks with bergshamra doing the arithmetic
//! (`VerifyPolicy::verify_with_bergshamra`, dkd's verifier before `soap::dsig`). Both must accept
//! or refuse alike, with the same result. And for every element of the document (the first 64),
//! `soap::dsig::exc_c14n` must write exactly bergshamra-c14n's exclusive-C14N bytes, with no
//! PrefixList and with the document's first InclusiveNamespaces PrefixList.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = dkd_fuzz::now();
    let oin = Some(dkd_fuzz::OIN);
    let ours = dkd_fuzz::verify_policy().verify(text, oin, None, now);
    let reference = dkd_fuzz::verify_policy().verify_with_bergshamra(text, oin, None, now);
    // dkd refuses, before any digest, what bergshamra would still work through: more References
    // than a 2W-be-S message has parts, two References to one element, a long PrefixList.
    let bounded = matches!(&ours, Err(dkd::soap::wssec::SecurityError::Invalid(m))
        if m.contains("References") || m.contains("same element") || m.contains("PrefixList"));
    match (&ours, &reference) {
        _ if bounded => {}
        (Ok(a), Ok(b)) => assert_eq!(a, b, "both accepted, with different results"),
        (Err(_), Err(_)) => {}
        _ => panic!("verdicts differ: soap::dsig {ours:?}, bergshamra {reference:?}"),
    }

    let Ok(doc) = uppsala::parse(text) else {
        return;
    };
    let listed: Vec<&str> = doc
        .descendants(doc.root())
        .into_iter()
        .find_map(|n| {
            let e = doc.element(n)?;
            (&*e.name.local_name == "InclusiveNamespaces")
                .then(|| e.get_attribute("PrefixList"))
                .flatten()
        })
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let elements = doc
        .descendants(doc.root())
        .into_iter()
        .filter(|n| doc.element(*n).is_some())
        .take(64);
    for n in elements {
        for prefixes in [&[][..], &listed[..]] {
            let set = bergshamra_xml::NodeSet::tree_without_comments(n, &doc);
            let Ok(reference) = bergshamra_c14n::canonicalize_doc(
                &doc,
                bergshamra_c14n::C14nMode::Exclusive,
                Some(&set),
                prefixes,
            ) else {
                continue;
            };
            let mut ours = Vec::new();
            dkd::soap::dsig::exc_c14n(&doc, n, false, prefixes, &mut ours);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&reference),
                "exclusive C14N of {n:?} with PrefixList {prefixes:?}"
            );
        }
    }
});
