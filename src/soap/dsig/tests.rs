//! bergshamra is the reference: the canonical bytes of every element must equal
//! bergshamra-c14n's, and the verdict on every document must equal the bergshamra path's.
use super::*;
use crate::soap::wssec::tests::{fixture, request, Fixture, OIN};
use crate::soap::wssec::{format_time, ALG_EXC_C14N, ALG_RSA_SHA256, ALG_SHA256};
use crate::xml::{NS_SOAP11, NS_WSA, NS_WSSE, NS_WSU};
use time::OffsetDateTime;

const PREFIX_LISTS: [&[&str]; 5] = [
    &[],
    &["#default"],
    &["p", "a", "#default"],
    &["xml", "unused", "b", "xmlns"],
    &["soapenv", "wsu", "ds", "wsa"],
];

fn reference_c14n(doc: &Document<'_>, node: NodeId, prefixes: &[&str]) -> Vec<u8> {
    let set = bergshamra_xml::NodeSet::tree_without_comments(node, doc);
    bergshamra_c14n::canonicalize_doc(
        doc,
        bergshamra_c14n::C14nMode::Exclusive,
        Some(&set),
        prefixes,
    )
    .expect("bergshamra c14n")
}

fn assert_same_c14n(xml: &str) {
    let doc = uppsala::parse(xml).expect("parse");
    let mut elements = 0;
    for n in doc.descendants(doc.root()) {
        if doc.element(n).is_none() {
            continue;
        }
        elements += 1;
        for prefixes in PREFIX_LISTS {
            let mut ours = Vec::new();
            exc_c14n(&doc, n, false, prefixes, &mut ours);
            let reference = reference_c14n(&doc, n, prefixes);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&reference),
                "element {n:?} with PrefixList {prefixes:?} of {xml}"
            );
            // The digest sink sees the same bytes, however they are split.
            let mut buf = Vec::new();
            let mut sink = DigestSink::new(&digest::SHA256, &mut buf);
            exc_c14n(&doc, n, false, prefixes, &mut sink);
            assert_eq!(
                sink.finish().as_ref(),
                digest::digest(&digest::SHA256, &reference).as_ref()
            );
        }
    }
    assert!(elements > 0);
}

#[test]
fn whitespace_is_stripped_as_char_is_whitespace_does() {
    for s in [
        "",
        " ",
        "ab",
        " a\tb\nc\r\x0b\x0cd ",
        "AB\n\nCD\n",
        "a\u{a0}b\u{2003}c d",
        "\u{e9} x",
    ] {
        let expected: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(strip_whitespace(s), expected, "{s:?}");
    }
}

#[test]
fn canonical_bytes_equal_bergshamras() {
    let docs = [
        r#"<r xmlns="urn:root" xmlns:p="urn:one" xmlns:unused="urn:u"><p:a p:x="1" b="2" a="3" xml:lang="nl"><x xmlns:p="urn:two"><p:b/></x></p:a><p:c/><plain xmlns=""><child/><d xmlns="urn:d"/></plain></r>"#,
        "<a t=\"&quot;&amp;&lt;>&#9;&#10;&#13;'\" u='\"'><![CDATA[x<&>]]>t&amp;&lt;&gt;&#13;<!--c--><?pi data\r?><?pi2?>\u{e9}\u{1F600}</a>",
        r#"<e xmlns:b="urn:a" xmlns:a="urn:b" a:z="1" b:y="2" z="3" a="4" b:a="5"><a:f/></e>"#,
        r#"<d xmlns="urn:x"><p:e xmlns:p="urn:p"><f/><p:g xmlns=""/></p:e></d>"#,
        r#"<r xmlns:a="urn:same" xmlns:b="urn:same"><a:x b:y="1"/></r>"#,
        r#"<a:r xmlns:a="urn:a"><a:s xmlns:a="urn:a"><a:t xmlns:a="urn:other"><a:u xmlns:a="urn:a"/></a:t></a:s></a:r>"#,
        "<r>\n  <s>  x  </s>\r\n\t<t\n  a = 'v'\n/></r>",
        r#"<r xmlns="urn:r"><s xmlns=""><t/><u xmlns="urn:r"/></s></r>"#,
        r#"<x:r xmlns:x="urn:x" xmlns="urn:d"><x:s><t xmlns:x="urn:y" x:a="1"/></x:s></x:r>"#,
    ];
    for d in docs {
        assert_same_c14n(d);
    }
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    assert_same_c14n(&request(&f, "urn:uuid:c14n", now));
    for (_, doc) in signed_documents(&f, now) {
        assert_same_c14n(&doc);
    }
}

struct Shape {
    /// Extra attributes on soapenv:Envelope (namespace declarations).
    envelope: &'static str,
    /// Extra attributes on soapenv:Body.
    body: &'static str,
    /// The Body's content.
    content: &'static str,
    /// InclusiveNamespaces of CanonicalizationMethod and of each Transform.
    signed_info_prefixes: Option<&'static str>,
    transform_prefixes: Option<&'static str>,
    /// Between SignedInfo's children.
    space: &'static str,
    /// Line-wrap SignatureValue at 64 characters, as xmlsec does.
    wrap: bool,
    /// Before the SecurityTokenReference in KeyInfo.
    key_info: &'static str,
}

const BASE: Shape = Shape {
    envelope: "",
    body: "",
    content: r#"<m:Q xmlns:m="urn:m" b="2" a="1"><m:x>t&amp;&lt;</m:x><y xmlns="urn:d" m:z="3"/></m:Q>"#,
    signed_info_prefixes: None,
    transform_prefixes: None,
    space: "",
    wrap: false,
    key_info: "",
};

fn inclusive(list: Option<&str>) -> String {
    list.map(|l| format!(r#"<ec:InclusiveNamespaces xmlns:ec="{ALG_EXC_C14N}" PrefixList="{l}"/>"#))
        .unwrap_or_default()
}

/// A request of `shape`, signed over bergshamra's canonical bytes (so its own verdict is the
/// reference, not an assumption).
fn sign_shape(f: &Fixture, shape: &Shape, now: OffsetDateTime) -> String {
    sign_shape_with(f, &f.signer, shape, now)
}

fn sign_shape_with(
    f: &Fixture,
    signer: &crate::soap::wssec::Signer,
    shape: &Shape,
    now: OffsetDateTime,
) -> String {
    let sp = shape.space;
    let mut refs = String::new();
    for id in ["_To", "_TS", "_Body"] {
        refs.push_str(&format!(
            r##"<ds:Reference URI="#{id}">{sp}<ds:Transforms><ds:Transform Algorithm="{ALG_EXC_C14N}">{}</ds:Transform></ds:Transforms>{sp}<ds:DigestMethod Algorithm="{ALG_SHA256}"/>{sp}<ds:DigestValue>DIGEST({id})</ds:DigestValue>{sp}</ds:Reference>{sp}"##,
            inclusive(shape.transform_prefixes)
        ));
    }
    let template = format!(
        r##"<soapenv:Envelope xmlns:soapenv="{NS_SOAP11}"{env}><soapenv:Header><wsa:To xmlns:wsa="{NS_WSA}" xmlns:wsu="{NS_WSU}" wsu:Id="_To">https://x/</wsa:To><wsse:Security xmlns:wsse="{NS_WSSE}" xmlns:wsu="{NS_WSU}" soapenv:mustUnderstand="1"><wsu:Timestamp wsu:Id="_TS"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:BinarySecurityToken EncodingType="{enc}" ValueType="{vt}" wsu:Id="_X509">{cert}</wsse:BinarySecurityToken><ds:Signature xmlns:ds="{NS_DS}"><ds:SignedInfo>{sp}<ds:CanonicalizationMethod Algorithm="{ALG_EXC_C14N}">{si}</ds:CanonicalizationMethod>{sp}<ds:SignatureMethod Algorithm="{ALG_RSA_SHA256}"/>{sp}{refs}</ds:SignedInfo><ds:SignatureValue>SIGVALUE</ds:SignatureValue><ds:KeyInfo>{key_info}<wsse:SecurityTokenReference><wsse:Reference URI="#_X509" ValueType="{vt}"/></wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature></wsse:Security></soapenv:Header><soapenv:Body xmlns:wsu="{NS_WSU}" wsu:Id="_Body"{body}>{content}</soapenv:Body></soapenv:Envelope>"##,
        env = shape.envelope,
        created = format_time(now),
        expires = format_time(now + time::Duration::minutes(5)),
        enc = crate::soap::wssec::ENCODING_BASE64,
        vt = crate::soap::wssec::VALUE_TYPE_X509,
        cert = f.signer.cert_b64(),
        si = inclusive(shape.signed_info_prefixes),
        body = shape.body,
        content = shape.content,
        key_info = shape.key_info.replace("EVIL", signer.cert_b64()),
    );
    let mut xml = template.clone();
    {
        let doc = uppsala::parse(&template).expect("template");
        let (ids, _) = IdMap::build(&doc).expect("ids");
        for r in doc.descendants(doc.root()) {
            if !is_ds(&doc, r, "Reference") {
                continue;
            }
            let uri = doc
                .element(r)
                .and_then(|e| e.get_attribute("URI"))
                .expect("URI");
            let id = uri.trim_start_matches('#');
            let target = ids.get(id).expect("target");
            let transform = doc
                .descendants(r)
                .into_iter()
                .find(|t| is_ds(&doc, *t, "Transform"))
                .expect("transform");
            let bytes = reference_c14n(&doc, target, &inclusive_prefixes(&doc, transform));
            let d = digest::digest(&digest::SHA256, &bytes);
            xml = xml.replace(
                &format!("DIGEST({id})"),
                &base64::engine::general_purpose::STANDARD.encode(d.as_ref()),
            );
        }
    }
    let doc = uppsala::parse(&xml).expect("digested");
    let signed_info = doc
        .descendants(doc.root())
        .into_iter()
        .find(|n| is_ds(&doc, *n, "SignedInfo"))
        .expect("SignedInfo");
    let method = first_ds_child(&doc, signed_info, "CanonicalizationMethod").expect("c14n");
    let bytes = reference_c14n(&doc, signed_info, &inclusive_prefixes(&doc, method));
    let mut value = base64::engine::general_purpose::STANDARD.encode(signer.sign_for_test(&bytes));
    if shape.wrap {
        value = value
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
    }
    xml.replace("SIGVALUE", &value)
}

fn signed_documents(f: &Fixture, now: OffsetDateTime) -> Vec<(&'static str, String)> {
    let shapes = [
        ("plain", BASE),
        (
            "PrefixList on transforms and SignedInfo",
            Shape {
                transform_prefixes: Some("soapenv wsu #default m"),
                signed_info_prefixes: Some("wsse soapenv"),
                ..BASE
            },
        ),
        (
            "default namespace and unused declarations on the Envelope",
            Shape {
                envelope: r#" xmlns="urn:env-default" xmlns:m="urn:m" xmlns:unused="urn:u""#,
                ..BASE
            },
        ),
        (
            "default namespace in scope and PrefixList #default",
            Shape {
                envelope: r#" xmlns="urn:env-default""#,
                transform_prefixes: Some("#default"),
                content: r#"<Q xmlns="" a="1"><x>1</x></Q><R>2</R>"#,
                ..BASE
            },
        ),
        (
            "whitespace in SignedInfo, wrapped SignatureValue",
            Shape {
                space: "\n      ",
                wrap: true,
                ..BASE
            },
        ),
        (
            "attributes, escapes, comments and CDATA in the Body",
            Shape {
                body: r#" z="1" xml:lang="nl" a="&quot;&#9;""#,
                content: "<m:Q xmlns:m=\"urn:m\" xmlns:n=\"urn:n\" n:b=\"2\" m:a=\"1\"><!-- note -->x<![CDATA[<&>]]>&#13;\n</m:Q>",
                ..BASE
            },
        ),
    ];
    shapes
        .iter()
        .map(|(name, s)| (*name, sign_shape(f, s, now)))
        .collect()
}

fn verdicts(f: &Fixture, xml: &str, now: OffsetDateTime) -> (bool, bool) {
    let ours = f.policy.verify(xml, Some(OIN), None, now);
    let reference = f.policy.verify_with_bergshamra(xml, Some(OIN), None, now);
    (ours.is_ok(), reference.is_ok())
}

#[test]
fn verdicts_equal_bergshamras() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let mut documents = signed_documents(&f, now);
    documents.push(("signed_request", request(&f, "urn:uuid:diff", now)));
    let mutations: [(&str, &str, &str); 14] = [
        ("tampered body text", "123456782", "111222333"),
        ("tampered text", "t&amp;&lt;", "t&amp;&gt;"),
        ("tampered attribute", r#"b="2""#, r#"b="3""#),
        ("reordered attributes", r#"b="2" a="1""#, r#"a="1" b="2""#),
        (
            "unused declaration on an ancestor",
            "<soapenv:Header>",
            r#"<soapenv:Header xmlns:zz="urn:zz" xmlns:m="urn:m">"#,
        ),
        (
            "default namespace on an ancestor",
            "<soapenv:Header>",
            r#"<soapenv:Header xmlns="urn:new-default">"#,
        ),
        (
            "default namespace on the Envelope",
            "<soapenv:Envelope ",
            r#"<soapenv:Envelope xmlns="urn:d2" "#,
        ),
        (
            "redeclared prefix on the Envelope",
            "<soapenv:Envelope ",
            r#"<soapenv:Envelope xmlns:m="urn:other" "#,
        ),
        (
            "whitespace in SignedInfo",
            "<ds:SignedInfo>",
            "<ds:SignedInfo> ",
        ),
        (
            "whitespace in the Body",
            "</soapenv:Body>",
            " </soapenv:Body>",
        ),
        (
            "comment in the Body",
            "</soapenv:Body>",
            "<!--x--></soapenv:Body>",
        ),
        (
            "PrefixList dropped",
            r#"PrefixList="soapenv wsu #default m""#,
            r#"PrefixList="""#,
        ),
        ("digest altered", "<ds:DigestValue>", "<ds:DigestValue>AAAA"),
        (
            "xpointer reference",
            r##"URI="#_Body""##,
            r##"URI="#xpointer(id('_Body'))""##,
        ),
    ];
    let mut accepted = 0;
    let (mut same, mut refused) = (0, 0);
    for (name, doc) in &documents {
        let (ours, reference) = verdicts(&f, doc, now);
        assert!(reference, "bergshamra refuses the {name} document");
        assert_eq!(ours, reference, "{name}");
        accepted += 1;
        for (what, from, to) in mutations {
            if !doc.contains(from) {
                continue;
            }
            let mutated = doc.replacen(from, to, 1);
            let (ours, reference) = verdicts(&f, &mutated, now);
            assert_eq!(
                ours, reference,
                "{name}, {what}: ours {ours}, bergshamra {reference}"
            );
            if ours {
                same += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert_eq!(accepted, documents.len());
    // Both kinds of mutation occur: ones C14N absorbs, ones that break the signature.
    assert!(
        same >= 6 && refused >= 30,
        "{same} accepted, {refused} refused"
    );
}

/// A forger signing with their own key, next to a reference to a trusted token copied from
/// any signed request and their certificate inline in KeyInfo, is refused by both: only the
/// key of the token `wssec` trusted is used.
#[test]
fn key_material_inline_in_key_info_is_not_used() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().expect("tmp");
    let evil = crate::certs::DevCa::new("evil")
        .and_then(|ca| ca.client("evil", Some(OIN), 10))
        .expect("evil");
    std::fs::write(dir.path().join("e.pem"), &evil.cert_pem).expect("w");
    std::fs::write(dir.path().join("e-key.pem"), &evil.key_pem).expect("w");
    let signer =
        crate::soap::wssec::Signer::load(&dir.path().join("e.pem"), &dir.path().join("e-key.pem"))
            .expect("signer");
    let shape = Shape {
        key_info: "<ds:X509Data><ds:X509Certificate>EVIL</ds:X509Certificate></ds:X509Data>",
        ..BASE
    };
    let forged = sign_shape_with(&f, &signer, &shape, now);
    for verdict in [
        f.policy.verify(&forged, Some(OIN), None, now),
        f.policy
            .verify_with_bergshamra(&forged, Some(OIN), None, now),
    ] {
        assert!(matches!(verdict, Err(SecurityError::FailedCheck(_))));
    }
}
