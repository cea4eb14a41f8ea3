//! Fixtures shared by the fuzz targets and the seed generator (`examples/gen_seeds.rs`).
//!
//! Everything expensive (the sled store, the demo persons, the CA trust anchor) is built once per
//! process; everything that remembers state between inputs (the replay cache) is built per input,
//! so an input behaves the same whether it runs first or after a million others.

use dkd::import::{Format, Mode, Options, Rules};
use dkd::gemeente::service::Service;
use dkd::soap::wssec::{ReplayCache, SigningMode, VerifyPolicy};
use dkd::soap::Endpoint;
use dkd::store::Store;
use std::path::PathBuf;
use std::sync::OnceLock;
use time::OffsetDateTime;

/// The OIN of the TLS client and of the signing certificate in `fuzz/pki`.
pub const OIN: &str = "00000099000000000002";
/// The endpoint's public URL (the expected `wsa:To`).
pub const URL: &str = "https://127.0.0.1:8443/GSDDossierReintegratie-v0200";
/// The MessageID the wssec target passes to `verify` (and the generated signed seeds carry).
pub const MESSAGE_ID: &str = "urn:uuid:x";

/// The wssec target's clock: the moment the committed signed seeds were signed. Fixed, so a seed
/// passes the Timestamp check today and in a year, and a crash reproduces on any day. The
/// certificates in `fuzz/pki` are valid from 2026-11-22T15:30Z for ten years.
pub fn now() -> OffsetDateTime {
    time::macros::datetime!(2026-11-22 17:00 UTC)
}

/// `fuzz/pki`: a development CA and a client certificate with [`OIN`] (made by `gen_seeds`;
/// test keys, not for anything else).
pub fn pki_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pki")
}

/// The endpoint of the `envelope` target: signing off, 20 demo persons, the one allowed OIN.
pub fn endpoint() -> &'static Endpoint {
    static EP: OnceLock<Endpoint> = OnceLock::new();
    EP.get_or_init(|| {
        let store = Store::temporary().expect("temporary store");
        let today = OffsetDateTime::now_utc().date();
        store
            .put_all(&dkd::chain::demo::generate(20, today), "fuzz")
            .expect("demo persons");
        Endpoint {
            service: Service {
                store,
                dn: "CN=dkd-fuzz".into(),
                window_days: 730,
            },
            public_url: URL.into(),
            to_aliases: vec![],
            own_oins: vec![],
            allowed_oins: [OIN.to_owned()].into_iter().collect(),
            security: None,
            kind: dkd::soap::EndpointKind::Gemeente,
        }
    })
}

/// BSNs of the endpoint's demo persons (for seeds that reach the `ClientSuwi` answer).
pub fn demo_bsns() -> Vec<String> {
    let today = OffsetDateTime::now_utc().date();
    dkd::chain::demo::generate(20, today)
        .iter()
        .map(|p| p.bsn.as_str().to_owned())
        .collect()
}

fn policy_template() -> &'static VerifyPolicy {
    static P: OnceLock<VerifyPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let ca = pki_dir().join("ca.pem");
        assert!(
            ca.exists(),
            "{} missing: run `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds`",
            ca.display()
        );
        VerifyPolicy {
            mode: SigningMode::Required,
            trust: dkd::http::tls::signer_trust(&ca, &[]).expect("trust anchor"),
            allowed_signer_oins: [OIN.to_owned()].into_iter().collect(),
            signer_must_match_tls: true,
            any_signer: false,
            clock_skew: time::Duration::seconds(60),
            max_age: time::Duration::seconds(300),
            replay: ReplayCache::new(1),
            trust_cache: Default::default(),
        }
    })
}

/// The verification policy of the `wssec` target (signing required, as `dkd serve` with
/// `signing = "required"`), with an empty replay cache.
pub fn verify_policy() -> VerifyPolicy {
    let t = policy_template();
    VerifyPolicy {
        mode: t.mode,
        trust: t.trust.clone(),
        allowed_signer_oins: t.allowed_signer_oins.clone(),
        signer_must_match_tls: t.signer_must_match_tls,
        any_signer: t.any_signer,
        clock_skew: t.clock_skew,
        max_age: t.max_age,
        replay: ReplayCache::new(16),
        trust_cache: Default::default(),
    }
}

/// The store the import targets read against (dry runs: it stays empty).
pub fn import_store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(|| Store::temporary().expect("temporary store"))
}

/// Import options: dry run, not strict, LKS type 24, purge, 730-day window, today 2026-01-15.
pub fn import_options(format: Format, mode: Mode) -> Options {
    Options {
        format,
        mode,
        gemeente: None,
        dry_run: true,
        strict: false,
        rules: Rules {
            lks_type_codes: vec!["24".into()],
            max_future_days: 366,
        },
        purge: true,
        window_days: 730,
        today: time::macros::date!(2026 - 01 - 15),
    }
}

/// Runs one import target input: delta mode (as asked) and full mode (which adds the
/// gemeente-selection paths), both dry runs. Errors are fine; panics are not, and a dry run must
/// write nothing.
pub fn run_import(format: Format, data: &[u8]) {
    let store = import_store();
    for mode in [Mode::Delta, Mode::Full] {
        let opts = import_options(format, mode);
        if let Ok(report) = dkd::import::import(store, "f", data, &opts, &mut |_| {}) {
            assert!(!report.applied, "a dry run reported it applied changes");
        }
        assert!(store.is_empty(), "a dry run wrote to the store");
    }
}

/// Whether `c` is a `Char` of XML 1.0 (§2.2): what may appear in a well-formed document at all,
/// literally or as a character reference.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first character of `s` that no XML 1.0 document may contain, with its byte offset.
pub fn first_non_xml_char(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| !is_xml_char(c))
}

/// One element as both parsers can describe it: `{ns}local`, attributes sorted, and children
/// with adjacent text merged (comments dropped, CDATA as text). Compared exactly: no
/// normalisation on either side.
#[derive(Debug, PartialEq, Eq)]
pub struct Shape {
    pub ns: Option<String>,
    pub local: String,
    pub attrs: Vec<(Option<String>, String, String)>,
    pub children: Vec<ShapeNode>,
}

/// A child of a [`Shape`].
#[derive(Debug, PartialEq, Eq)]
pub enum ShapeNode {
    Element(Shape),
    Text(String),
}

/// Appends one text node, merged with a preceding one (text around a comment is one run).
fn push_text(children: &mut Vec<ShapeNode>, t: &str) {
    if t.is_empty() {
        return;
    }
    if let Some(ShapeNode::Text(prev)) = children.last_mut() {
        prev.push_str(t);
    } else {
        children.push(ShapeNode::Text(t.to_owned()));
    }
}

/// The shape of a `dkd::xml` element.
pub fn shape_dkd(e: &dkd::xml::Element) -> Shape {
    let mut attrs: Vec<_> = e
        .attrs
        .iter()
        .map(|a| {
            (
                a.ns.as_deref().map(str::to_owned),
                a.local.clone(),
                a.value.clone(),
            )
        })
        .collect();
    attrs.sort();
    let mut children = Vec::new();
    for n in &e.children {
        match n {
            dkd::xml::Node::Element(c) => children.push(ShapeNode::Element(shape_dkd(c))),
            dkd::xml::Node::Text(t) => push_text(&mut children, t),
        }
    }
    Shape {
        ns: e.ns.as_deref().map(str::to_owned),
        local: e.local.clone(),
        attrs,
        children,
    }
}

/// The shape of an uppsala element (`None` if `id` is not an element).
pub fn shape_uppsala(doc: &uppsala::Document<'_>, id: uppsala::NodeId) -> Option<Shape> {
    let e = doc.element(id)?;
    let mut attrs: Vec<_> = e
        .attributes
        .iter()
        .map(|a| {
            (
                a.name.namespace_uri.as_ref().map(|n| n.to_string()),
                a.name.local_name.to_string(),
                a.value.to_string(),
            )
        })
        .collect();
    attrs.sort();
    let mut children = Vec::new();
    for c in doc.children(id) {
        match doc.node_kind(c) {
            Some(uppsala::NodeKind::Element(_)) => {
                children.push(ShapeNode::Element(shape_uppsala(doc, c)?))
            }
            Some(uppsala::NodeKind::Text(t)) | Some(uppsala::NodeKind::CData(t)) => {
                push_text(&mut children, t)
            }
            _ => {}
        }
    }
    Some(Shape {
        ns: e.name.namespace_uri.as_ref().map(|n| n.to_string()),
        local: e.name.local_name.to_string(),
        attrs,
        children,
    })
}
