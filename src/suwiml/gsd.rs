//! The GSDDossierReintegratie-v0200 bodies: reading `GSDReintegratieInfo`, writing
//! `GSDReintegratieInfoResponse`.
//!
//! The reader enforces the official schema for the request (that is the "schema-invalid" check);
//! the writer emits children unqualified and in the schema's sequence order, with no insignificant
//! whitespace, so the output is schema-valid by construction and already canonical.

use super::fwi::{write_fwi, write_niets_gevonden, Melding};
use super::model::{AtlRelatie, Bron, FieldError, Person, Provision};
use super::types::{Bsn, BsnError, Datum, Percentage};
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

/// Writes one `ClientSuwi` element (unqualified, as inside a response): also the element of
/// dkd's XML import format.
pub fn write_client(p: &Person, out: &mut String) {
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

/// Reads a `ClientSuwi` element (unqualified children in schema order) into a [`Person`],
/// reporting every problem with the element's byte offset. Used by the XML import (and by the IB
/// role to read gemeente answers). Field values are checked by [`Person::validate`] afterwards.
pub fn read_client(e: &Element) -> Result<Person, Vec<(usize, FieldError)>> {
    let mut r = Reader { errs: Vec::new() };
    let mut seq = Seq::new(e);
    let bsn_el = seq.take("Burgerservicenr");
    let voornamen = seq.take("Voornamen").map(|x| x.text());
    let voorletters = seq.take("Voorletters").map(|x| x.text());
    let voorvoegsel = seq.take("Voorvoegsel").map(|x| x.text());
    let achternaam = seq.take("SignificantDeelVanDeAchternaam").map(|x| x.text());
    let geslacht = seq.take("Geslacht").map(|x| x.text());
    let geboortedat = seq
        .take("Geboortedat")
        .and_then(|x| r.date(x, "Geboortedat"));
    let bron = seq.take("Bron").and_then(|x| r.bron(x));
    let mut atl_relaties = Vec::new();
    while let Some(x) = seq.take("AtlRelatie") {
        if let Some(rel) = r.relatie(x) {
            atl_relaties.push(rel);
        }
    }
    r.rest(&seq, "ClientSuwi");
    let bsn = match bsn_el {
        None => {
            r.err(e.pos, "Burgerservicenr", "", "missing");
            None
        }
        Some(b) => match Bsn::parse(&b.text()) {
            Ok(bsn) => Some(bsn),
            Err(BsnError::Format) => {
                r.err(
                    b.pos,
                    "Burgerservicenr",
                    &b.text(),
                    "must be exactly 9 digits",
                );
                None
            }
            Err(BsnError::ElevenTest) => {
                r.err(b.pos, "Burgerservicenr", &b.text(), "fails the 11-test");
                None
            }
        },
    };
    match bsn {
        Some(bsn) if r.errs.is_empty() => Ok(Person {
            bsn,
            voornamen,
            voorletters,
            voorvoegsel,
            achternaam,
            geslacht,
            geboortedat,
            bron,
            atl_relaties,
        }),
        _ => Err(r.errs),
    }
}

/// Walks an element's children in schema order.
struct Seq<'e> {
    kids: Vec<&'e Element>,
    i: usize,
}

impl<'e> Seq<'e> {
    fn new(e: &'e Element) -> Self {
        Seq {
            kids: e.elements().collect(),
            i: 0,
        }
    }
    fn take(&mut self, name: &str) -> Option<&'e Element> {
        let k = self.kids.get(self.i).filter(|k| k.is(None, name)).copied();
        if k.is_some() {
            self.i += 1;
        }
        k
    }
}

struct Reader {
    errs: Vec<(usize, FieldError)>,
}

impl Reader {
    fn err(&mut self, pos: usize, field: &str, value: &str, reason: &str) {
        self.errs.push((
            pos,
            FieldError {
                field: field.into(),
                value: value.into(),
                reason: reason.into(),
            },
        ));
    }

    fn rest(&mut self, seq: &Seq<'_>, parent: &str) {
        if let Some(extra) = seq.kids.get(seq.i) {
            self.err(
                extra.pos,
                parent,
                &extra.qname(),
                "unexpected element (wrong name, order or namespace)",
            );
        }
    }

    fn date(&mut self, el: &Element, field: &str) -> Option<Datum> {
        match Datum::parse(&el.text()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(el.pos, field, &el.text(), &e.0);
                None
            }
        }
    }

    fn bron(&mut self, el: &Element) -> Option<Bron> {
        let mut seq = Seq::new(el);
        let kolom = seq.take("CdKolomSuwi");
        let partij = seq.take("CdPartijSuwi");
        let vestiging = seq.take("CdVestigingSuwi").map(|x| x.text());
        self.rest(&seq, "Bron");
        let kolom = match kolom.map(|k| (k.pos, k.text())) {
            Some((pos, t)) => match t.trim().parse::<u8>() {
                Ok(v) if v <= 99 => Some(v),
                _ => {
                    self.err(pos, "CdKolomSuwi", &t, "must be a number 0-99");
                    None
                }
            },
            None => {
                self.err(el.pos, "CdKolomSuwi", "", "missing");
                None
            }
        };
        let Some(partij) = partij.map(|p| p.text()) else {
            self.err(el.pos, "CdPartijSuwi", "", "missing");
            return None;
        };
        Some(Bron {
            kolom: kolom?,
            partij,
            vestiging,
        })
    }

    fn relatie(&mut self, el: &Element) -> Option<AtlRelatie> {
        let mut seq = Seq::new(el);
        let arbeidsvermogen = seq
            .take("Arbeidsvermogen")
            .and_then(|x| self.code_in(x, "CdArbeidsvermogen"));
        let doel_rv = seq
            .take("DoelReintegratievoorziening")
            .and_then(|x| self.code_in(x, "CdDoelRv"));
        let mut provisions = Vec::new();
        while let Some(x) = seq.take("ReIntegratievoorziening") {
            if let Some(p) = self.provision(x) {
                provisions.push(p);
            }
        }
        let bron = match seq.take("Bron") {
            Some(b) => self.bron(b),
            None => {
                self.err(el.pos, "AtlRelatie/Bron", "", "missing");
                None
            }
        };
        self.rest(&seq, "AtlRelatie");
        Some(AtlRelatie {
            arbeidsvermogen,
            doel_rv,
            provisions,
            bron: bron?,
        })
    }

    fn code_in(&mut self, el: &Element, name: &str) -> Option<String> {
        let mut seq = Seq::new(el);
        let v = seq.take(name).map(|x| x.text());
        self.rest(&seq, &el.local);
        if v.is_none() {
            self.err(el.pos, name, "", "missing");
        }
        v
    }

    fn provision(&mut self, el: &Element) -> Option<Provision> {
        let mut seq = Seq::new(el);
        let registratienr = seq.take("RegistratienrRvGsd").map(|x| x.text());
        let start_el = seq.take("DatBRv");
        let end = seq.take("DatERv").and_then(|x| self.date(x, "DatERv"));
        let type_code = seq.take("CdTypeRvGsd").map(|x| x.text());
        let description = seq.take("OmsRv").map(|x| x.text());
        let loonwaarde = match seq.take("Loonkostensubsidie") {
            None => None,
            Some(l) => {
                let mut ls = Seq::new(l);
                let perc = ls.take("PercLoonwaardeTovWml");
                self.rest(&ls, "Loonkostensubsidie");
                let pct = perc.and_then(|p| {
                    let mut ps = Seq::new(p);
                    let _sign = ps.take("CdPositiefNegatief");
                    let v = ps.take("Percentage");
                    self.rest(&ps, "PercLoonwaardeTovWml");
                    v
                });
                match pct {
                    Some(p) => match Percentage::parse_wire(&p.text()) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            self.err(p.pos, "Percentage", &p.text(), &e.0);
                            None
                        }
                    },
                    None => {
                        self.err(
                            l.pos,
                            "PercLoonwaardeTovWml/Percentage",
                            "",
                            "an LKS provision must carry its loonwaarde",
                        );
                        None
                    }
                }
            }
        };
        self.rest(&seq, "ReIntegratievoorziening");
        let start = match start_el {
            Some(s) => self.date(s, "DatBRv"),
            None => {
                self.err(el.pos, "DatBRv", "", "missing");
                None
            }
        };
        Some(Provision {
            registratienr,
            start: start?,
            end,
            type_code,
            description,
            loonwaarde,
        })
    }
}

/// Reads a `Bron` (`CdKolomSuwi`, `CdPartijSuwi`, `CdVestigingSuwi`?), with the first problem as
/// the error. Shared with the IBVerwijsindex request, which has the same Bron.
pub(crate) fn read_bron(el: &Element) -> Result<Bron, String> {
    let mut r = Reader { errs: Vec::new() };
    let b = r.bron(el);
    match (b, r.errs.first()) {
        (Some(b), None) => Ok(b),
        (_, Some((_, e))) => Err(e.to_string()),
        (None, None) => Err("Bron is invalid".into()),
    }
}

/// Writes the body of a `GSDReintegratieInfo` request (declaring its own namespace).
pub fn write_request(bsn: &str, out: &mut String) {
    out.push_str("<gsd:GSDReintegratieInfo xmlns:gsd=\"");
    out.push_str(NS_GSD);
    out.push_str("\"><Burgerservicenr>");
    crate::xml::escape(bsn, out);
    out.push_str("</Burgerservicenr></gsd:GSDReintegratieInfo>");
}

/// Reads a `GSDReintegratieInfoResponse` body element: what a gemeente answered (the IB role
/// merges these). A ClientSuwi must pass [`Person::validate`], so what is passed on stays
/// schema-valid.
pub fn parse_response(body: &Element) -> Result<Reply, String> {
    if !body.is(Some(NS_GSD), "GSDReintegratieInfoResponse") {
        return Err(format!(
            "expected {{{NS_GSD}}}GSDReintegratieInfoResponse, found {}",
            body.qname()
        ));
    }
    let mut kids = body.elements();
    let first = kids.next().ok_or("GSDReintegratieInfoResponse is empty")?;
    let fwi_ns = Some(crate::xml::NS_FWI);
    if first.is(fwi_ns, "NietsGevonden") {
        return Ok(Reply::NietsGevonden);
    }
    if first.is(fwi_ns, "FWI") {
        return Ok(Reply::Fwi(super::fwi::read_fwi(first)));
    }
    if !first.is(None, "ClientSuwi") {
        return Err(format!(
            "unexpected element {} in the response",
            first.qname()
        ));
    }
    let person = read_client(first).map_err(|errs| {
        errs.first()
            .map(|(_, e)| format!("ClientSuwi: {e}"))
            .unwrap_or_else(|| "ClientSuwi is invalid".into())
    })?;
    person.validate().map_err(|errs| {
        errs.first()
            .map(|e| format!("ClientSuwi: {e}"))
            .unwrap_or_else(|| "ClientSuwi is invalid".into())
    })?;
    let meldingen = kids
        .find(|k| k.is(fwi_ns, "FWI"))
        .map(super::fwi::read_fwi)
        .unwrap_or_default();
    Ok(Reply::Client(Box::new(person), meldingen))
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
