//! Differential: `dkd::xml::parse` (quick-xml; what `soap::handle` reads the Body and the
//! WS-Addressing headers from) against `uppsala::parse` (what `soap::wssec` resolves signature
//! References and digests in). When both accept a document they must see the same tree: element
//! names and namespaces, attributes, and text. A disagreement means a signature can be checked
//! over one tree while the request is answered from another (signature wrapping by parser
//! differential). Line ends in text are normalised on both sides; comments are dropped and CDATA
//! counts as text. `DKD_FUZZ_KNOWN=ns-refs,qname,cr` skips the reported differences (see
//! FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Differences already reported, skipped so a run can look for others: `DKD_FUZZ_KNOWN` is a
/// comma-separated list of `ns-refs` (references in namespace URIs), `qname` (names that are
/// not QNames) and `cr` (inputs with a carriage return are skipped: line ends in text).
struct Known {
    ns_refs: bool,
    qname: bool,
    cr: bool,
}

fn known() -> &'static Known {
    static K: std::sync::OnceLock<Known> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let mut k = Known {
            ns_refs: false,
            qname: false,
            cr: false,
        };
        let v = std::env::var("DKD_FUZZ_KNOWN").unwrap_or_default();
        for item in v.split(',').filter(|i| !i.is_empty()) {
            match item {
                "ns-refs" => k.ns_refs = true,
                "qname" => k.qname = true,
                "cr" => k.cr = true,
                other => panic!("DKD_FUZZ_KNOWN: unknown {other}; expected ns-refs, qname, cr"),
            }
        }
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if known().cr && data.contains(&b'\r') {
        return;
    }
    let Ok(ours) = dkd::xml::parse(data) else {
        return;
    };
    let Ok(doc) = uppsala::parse(text) else {
        return;
    };
    let Some(root) = doc.document_element() else {
        panic!("uppsala accepted a document without a root element; dkd::xml saw {}", ours.qname());
    };
    let theirs = dkd_fuzz::shape_uppsala(&doc, root).expect("document element is an element");
    let ours = dkd_fuzz::shape_dkd(&ours, known().ns_refs);
    if known().qname && (dkd_fuzz::has_bad_qname(&ours) || dkd_fuzz::has_bad_qname(&theirs)) {
        return;
    }
    assert_eq!(ours, theirs, "dkd::xml (left) and uppsala (right) disagree");
});
