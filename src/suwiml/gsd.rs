//! The GSDDossierReintegratie-v0200 bodies: reading `GSDReintegratieInfo`, writing
//! `GSDReintegratieInfoResponse`.
//!
//! The reader enforces the official schema for the request (that is the "schema-invalid" check);
//! the writer emits children unqualified and in the schema's sequence order, with no insignificant
//! whitespace, so the output is schema-valid by construction and already canonical.

use super::fwi::{write_fwi, write_niets_gevonden, Melding};
use super::model::{AtlRelatie, Bron, Person, Provision};
use super::types::{Bsn, BsnError};
use crate::xml::{element, Element, NS_GSD};

/// The WS-Addressing action of the request.
pub const ACTION_REQUEST: &str =
    "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/GSDReintegratieInfo";
/// The WS-Addressing action of the response.
pub const ACTION_RESPONSE: &str =
    "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/GSDReintegratieInfoResponse";
/// The WS-Addressing action of a business fault.
pub const ACTION_FAULT: &str = "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/Fout";

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body does not conform to the schema.
    #[error("{0}")]
    Schema(String),
    /// The Burgerservicenr has nine digits but fails the 11-test.
    #[error("Burgerservicenr fails the 11-test")]
    ElevenTest,
}

/// Reads a `GSDReintegratieInfo` body element.
pub fn parse_request(body: &Element) -> Result<Bsn, BodyError> {
    let schema = |m: String| Err(BodyError::Schema(m));
    if !body.is(Some(NS_GSD), "GSDReintegratieInfo") {
        return schema(format!(
            "expected {{{NS_GSD}}}GSDReintegratieInfo, found {}",
            body.qname()
        ));
    }
    if body.has_text() {
        return schema("GSDReintegratieInfo must not contain text".into());
    }
    if let Some(a) = body.attrs.iter().find(|a| !is_permitted_body_attr(a)) {
        return schema(format!(
            "attribute '{}' is not allowed on GSDReintegratieInfo",
            a.local
        ));
    }
    let mut children = body.elements();
    let Some(b) = children.next() else {
        return schema("GSDReintegratieInfo must contain Burgerservicenr".into());
    };
    if !b.is(None, "Burgerservicenr") {
        let hint = if b.local == "Burgerservicenr" {
            " (it must be unqualified)"
        } else {
            ""
        };
        return schema(format!(
            "expected unqualified Burgerservicenr, found {}{hint}",
            b.qname()
        ));
    }
    if let Some(extra) = children.next() {
        return schema(format!(
            "unexpected element {} after Burgerservicenr",
            extra.qname()
        ));
    }
    if b.elements().next().is_some() || !b.attrs.is_empty() {
        return schema("Burgerservicenr must be a simple value".into());
    }
    match Bsn::parse(&b.text()) {
        Ok(bsn) => Ok(bsn),
        Err(BsnError::Format) => schema("Burgerservicenr must be exactly 9 digits".into()),
        Err(BsnError::ElevenTest) => Err(BodyError::ElevenTest),
    }
}

/// The body may carry a `wsu:Id` (for signing) and nothing else.
fn is_permitted_body_attr(a: &crate::xml::Attr) -> bool {
    a.local == "Id" && a.ns.as_deref() == Some(crate::xml::NS_WSU)
}

/// What the operation answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ClientSuwi`, optionally with FWI messages about data that could not be supplied.
    Client(Box<Person>, Vec<Melding>),
    /// `fwi:NietsGevonden`: a valid BSN without data.
    NietsGevonden,
    /// `fwi:FWI` alone: a valid request dkd could not answer.
    Fwi(Vec<Melding>),
}

/// Writes the `GSDReintegratieInfoResponse` element. `id_attr` adds ` wsu:Id="..."` support for
/// signing: the caller passes the complete attribute text (with its namespace declaration).
pub fn write_response(reply: &Reply, id_attr: &str, out: &mut String) {
    out.push_str("<smls:GSDReintegratieInfoResponse xmlns:smls=\"");
    out.push_str(NS_GSD);
    out.push('"');
    out.push_str(id_attr);
    out.push('>');
    match reply {
        Reply::Client(p, fwi) => {
            write_client(p, out);
            if !fwi.is_empty() {
                write_fwi(fwi, out);
            }
        }
        Reply::NietsGevonden => write_niets_gevonden(out),
        Reply::Fwi(m) => write_fwi(m, out),
    }
    out.push_str("</smls:GSDReintegratieInfoResponse>");
}

fn opt(out: &mut String, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        element(out, name, v);
    }
}

fn write_bron(b: &Bron, out: &mut String) {
    out.push_str("<Bron>");
    element(out, "CdKolomSuwi", &b.kolom.to_string());
    element(out, "CdPartijSuwi", &b.partij);
    opt(out, "CdVestigingSuwi", &b.vestiging);
    out.push_str("</Bron>");
}

fn write_client(p: &Person, out: &mut String) {
    out.push_str("<ClientSuwi>");
    element(out, "Burgerservicenr", p.bsn.as_str());
    opt(out, "Voornamen", &p.voornamen);
    opt(out, "Voorletters", &p.voorletters);
    opt(out, "Voorvoegsel", &p.voorvoegsel);
    opt(out, "SignificantDeelVanDeAchternaam", &p.achternaam);
    opt(out, "Geslacht", &p.geslacht);
    if let Some(d) = &p.geboortedat {
        element(out, "Geboortedat", d.as_str());
    }
    if let Some(b) = &p.bron {
        write_bron(b, out);
    }
    for r in &p.atl_relaties {
        write_atl(r, out);
    }
    out.push_str("</ClientSuwi>");
}

fn write_atl(r: &AtlRelatie, out: &mut String) {
    out.push_str("<AtlRelatie>");
    if let Some(c) = &r.arbeidsvermogen {
        out.push_str("<Arbeidsvermogen>");
        element(out, "CdArbeidsvermogen", c);
        out.push_str("</Arbeidsvermogen>");
    }
    if let Some(c) = &r.doel_rv {
        out.push_str("<DoelReintegratievoorziening>");
        element(out, "CdDoelRv", c);
        out.push_str("</DoelReintegratievoorziening>");
    }
    for v in &r.provisions {
        write_provision(v, out);
    }
    write_bron(&r.bron, out);
    out.push_str("</AtlRelatie>");
}

fn write_provision(v: &Provision, out: &mut String) {
    out.push_str("<ReIntegratievoorziening>");
    opt(out, "RegistratienrRvGsd", &v.registratienr);
    element(out, "DatBRv", v.start.as_str());
    if let Some(e) = &v.end {
        element(out, "DatERv", e.as_str());
    }
    opt(out, "CdTypeRvGsd", &v.type_code);
    opt(out, "OmsRv", &v.description);
    if let Some(p) = &v.loonwaarde {
        out.push_str("<Loonkostensubsidie><PercLoonwaardeTovWml>");
        element(out, "Percentage", &p.wire());
        out.push_str("</PercLoonwaardeTovWml></Loonkostensubsidie>");
    }
    out.push_str("</ReIntegratievoorziening>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn body(inner: &str) -> Element {
        let doc =
            format!("<s:GSDReintegratieInfo xmlns:s=\"{NS_GSD}\">{inner}</s:GSDReintegratieInfo>");
        parse(doc.as_bytes()).expect("well-formed")
    }

    #[test]
    fn request_with_unqualified_bsn_parses() {
        let bsn =
            parse_request(&body("<Burgerservicenr>123456782</Burgerservicenr>")).expect("valid");
        assert_eq!(bsn.as_str(), "123456782");
    }

    #[test]
    fn request_with_qualified_child_is_schema_invalid() {
        let e = body(&format!(
            "<s:Burgerservicenr xmlns:s=\"{NS_GSD}\">123456782</s:Burgerservicenr>"
        ));
        match parse_request(&e) {
            Err(BodyError::Schema(m)) => assert!(m.contains("unqualified"), "{m}"),
            other => panic!("expected schema error, got {other:?}"),
        }
    }

    #[test]
    fn request_shape_violations_are_schema_errors() {
        for inner in [
            "",
            "<Burgerservicenr>12345678</Burgerservicenr>",
            "<Burgerservicenr> 123456782</Burgerservicenr>",
            "<Burgerservicenr>123456782</Burgerservicenr><Burgerservicenr>123456782</Burgerservicenr>",
            "<Bsn>123456782</Bsn>",
            "x<Burgerservicenr>123456782</Burgerservicenr>",
            "<Burgerservicenr><a/></Burgerservicenr>",
        ] {
            assert!(matches!(parse_request(&body(inner)), Err(BodyError::Schema(_))), "{inner}");
        }
    }

    #[test]
    fn request_failing_eleven_test_is_its_own_error() {
        assert_eq!(
            parse_request(&body("<Burgerservicenr>123456781</Burgerservicenr>")),
            Err(BodyError::ElevenTest)
        );
    }

    #[test]
    fn wrong_operation_element_is_schema_error() {
        let e = parse(format!("<s:Other xmlns:s=\"{NS_GSD}\"/>").as_bytes()).expect("xml");
        assert!(matches!(parse_request(&e), Err(BodyError::Schema(_))));
    }
}
