//! The IBVerwijsindex-v0300 bodies: a gemeente tells the IB, per BSN and cluster, whether it holds
//! DKD data (`IndDkd` 1) or no longer does (0, or 2: see [`Nee`]). dkd writes the request in the
//! gemeente role (the outbox sender) and reads it in the IB role; the response is an empty
//! `Acknowledgement` and/or an unqualified local `FWI` (not the global `fwi:FWI`: see
//! wsdl/README.md).

use super::fwi::{read_fwi, Level, Melding};
use super::gsd::{read_bron, BodyError};
use super::model::Bron;
use super::types::{check_four_digits, Bsn, BsnError};
use crate::xml::{element, escape, Element, NS_FWI, NS_VI};

/// The WS-Addressing action of the request.
pub const ACTION_REQUEST: &str =
    "http://bkwi.nl/SuwiML/Diensten/IBVerwijsindex-v0300/IBVerwijsindex";
/// The WS-Addressing action of the response.
pub const ACTION_RESPONSE: &str =
    "http://bkwi.nl/SuwiML/Diensten/IBVerwijsindex-v0300/IBVerwijsindexResponse";
/// The WS-Addressing action of a business fault.
pub const ACTION_FAULT: &str = "http://bkwi.nl/SuwiML/Diensten/IBVerwijsindex-v0300/Fout";

/// `IndDkd`: whether the sender holds DKD data for the BSN in that cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IndDkd {
    /// `1`: data present.
    Present,
    /// "No (longer) data": `0` or `2` on the wire ([`Nee`]).
    Absent,
}

impl IndDkd {
    /// The wire value, "no" written as the default [`Nee`].
    pub fn code(self) -> &'static str {
        self.wire(Nee::default())
    }

    /// The wire value, "no" written as `nee`.
    pub fn wire(self, nee: Nee) -> &'static str {
        match self {
            IndDkd::Present => "1",
            IndDkd::Absent => nee.code(),
        }
    }
}

/// How "no" is written in `IndDkd` (`push.ind_dkd_nee`). The official `StdIndJN` type is only
/// "one digit" (no enumeration); interface.md says 2 = no, while third-party SuwiML code lists
/// give 1 = Ja, 0 = Nee. Neither is confirmed by the IB, so dkd reads both and writes the
/// configured one, `0` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nee {
    /// `0` (the code lists' Nee).
    #[default]
    Zero,
    /// `2` (interface.md §5).
    Two,
}

impl Nee {
    /// `"0"` or `"2"`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Nee> {
        match s {
            "0" => Some(Nee::Zero),
            "2" => Some(Nee::Two),
            _ => None,
        }
    }

    /// The wire value.
    pub fn code(self) -> &'static str {
        match self {
            Nee::Zero => "0",
            Nee::Two => "2",
        }
    }
}

/// One `ClusteringIb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clustering {
    /// `CdClusteringIb`: at most two characters.
    pub code: String,
    /// `IndDkd` as sent: one digit (the schema allows any; only 1, 0 and 2 mean something,
    /// which the IB checks as content, answering an FWI Fout).
    pub ind: String,
}

impl Clustering {
    /// A cluster entry with a meaningful IndDkd, "no" written as the default [`Nee`].
    pub fn new(code: &str, ind: IndDkd) -> Clustering {
        Clustering::with_nee(code, ind, Nee::default())
    }

    /// A cluster entry with a meaningful IndDkd, "no" written as `nee`.
    pub fn with_nee(code: &str, ind: IndDkd, nee: Nee) -> Clustering {
        Clustering {
            code: code.to_owned(),
            ind: ind.wire(nee).to_owned(),
        }
    }

    /// The IndDkd, when it is 1, 0 or 2: "no" is read in both spellings, whichever the sender
    /// was configured with.
    pub fn ind(&self) -> Option<IndDkd> {
        match self.ind.as_str() {
            "1" => Some(IndDkd::Present),
            "0" | "2" => Some(IndDkd::Absent),
            _ => None,
        }
    }
}

/// An `IBVerwijsindex` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Burgerservicenr`.
    pub bsn: Bsn,
    /// `ClusteringIb`, one or more.
    pub clusters: Vec<Clustering>,
    /// `Bron`: the sending gemeente (`CdPartijSuwi` = gemeentecode).
    pub bron: Bron,
}

/// What the IB answers to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An empty `Acknowledgement`: stored.
    Acknowledgement,
    /// `FWI` with a Fout: refused on its content (unknown cluster, gemeente not allowed, ...).
    Fwi(Vec<Melding>),
}

/// Reads an `IBVerwijsindex` body element, enforcing the official schema (the cluster codes and
/// the gemeente are checked against configuration by the IB role, not here).
pub fn parse_request(body: &Element) -> Result<Request, BodyError> {
    let schema = |m: String| BodyError::Schema(m);
    if !body.is(Some(NS_VI), "IBVerwijsindex") {
        return Err(schema(format!(
            "expected {{{NS_VI}}}IBVerwijsindex, found {}",
            body.qname()
        )));
    }
    if body.has_text() {
        return Err(schema("IBVerwijsindex must not contain text".into()));
    }
    if let Some(a) = body
        .attrs
        .iter()
        .find(|a| !(a.local == "Id" && a.ns.as_deref() == Some(crate::xml::NS_WSU)))
    {
        return Err(schema(format!(
            "attribute '{}' is not allowed on IBVerwijsindex",
            a.local
        )));
    }
    let kids: Vec<&Element> = body.elements().collect();
    let mut i = 0;
    let expect = |i: usize, name: &str| -> Result<&Element, BodyError> {
        match kids.get(i) {
            Some(k) if k.is(None, name) => Ok(k),
            Some(k) if k.local == name => Err(schema(format!(
                "expected unqualified {name}, found {} (children are unqualified)",
                k.qname()
            ))),
            Some(k) => Err(schema(format!("expected {name}, found {}", k.qname()))),
            None => Err(schema(format!("IBVerwijsindex must contain {name}"))),
        }
    };
    let b = expect(i, "Burgerservicenr")?;
    simple(b)?;
    let bsn = match Bsn::parse(&b.text()) {
        Ok(v) => v,
        Err(BsnError::Format) => {
            return Err(schema("Burgerservicenr must be exactly 9 digits".into()))
        }
        Err(BsnError::ElevenTest) => return Err(BodyError::ElevenTest),
    };
    i += 1;
    let mut clusters = Vec::new();
    while kids.get(i).is_some_and(|k| k.is(None, "ClusteringIb")) {
        let c = kids[i];
        let parts: Vec<&Element> = c.elements().collect();
        let (code, ind) = match parts.as_slice() {
            [a, b] if a.is(None, "CdClusteringIb") && b.is(None, "IndDkd") => (*a, *b),
            _ => {
                return Err(schema(
                    "ClusteringIb must contain CdClusteringIb then IndDkd".into(),
                ))
            }
        };
        simple(code)?;
        simple(ind)?;
        let code = code.text();
        if code.chars().count() > 2 {
            return Err(schema(format!(
                "CdClusteringIb {code:?} is longer than 2 characters"
            )));
        }
        let ind = ind.text();
        if ind.len() != 1 || !ind.bytes().all(|b| b.is_ascii_digit()) {
            return Err(schema(format!("IndDkd {ind:?} must be one digit")));
        }
        clusters.push(Clustering { code, ind });
        i += 1;
    }
    if clusters.is_empty() {
        return Err(schema(
            "IBVerwijsindex must contain at least one ClusteringIb".into(),
        ));
    }
    let bron_el = expect(i, "Bron")?;
    let bron = read_bron(bron_el).map_err(|e| schema(format!("Bron: {e}")))?;
    for (field, v) in [
        ("CdPartijSuwi", Some(&bron.partij)),
        ("CdVestigingSuwi", bron.vestiging.as_ref()),
    ] {
        if let Some(v) = v {
            check_four_digits(field, v).map_err(|e| schema(format!("Bron: {}", e.0)))?;
        }
    }
    i += 1;
    if let Some(extra) = kids.get(i) {
        return Err(schema(format!(
            "unexpected element {} after Bron",
            extra.qname()
        )));
    }
    Ok(Request {
        bsn,
        clusters,
        bron,
    })
}

fn simple(e: &Element) -> Result<(), BodyError> {
    if e.elements().next().is_some() || !e.attrs.is_empty() {
        return Err(BodyError::Schema(format!(
            "{} must be a simple value",
            e.local
        )));
    }
    Ok(())
}

/// Writes the body of an `IBVerwijsindex` request (declaring its own namespace).
pub fn write_request(r: &Request, out: &mut String) {
    out.push_str("<vi:IBVerwijsindex xmlns:vi=\"");
    out.push_str(NS_VI);
    out.push_str("\">");
    element(out, "Burgerservicenr", r.bsn.as_str());
    for c in &r.clusters {
        out.push_str("<ClusteringIb>");
        element(out, "CdClusteringIb", &c.code);
        element(out, "IndDkd", &c.ind);
        out.push_str("</ClusteringIb>");
    }
    out.push_str("<Bron>");
    element(out, "CdKolomSuwi", &r.bron.kolom.to_string());
    element(out, "CdPartijSuwi", &r.bron.partij);
    if let Some(v) = &r.bron.vestiging {
        element(out, "CdVestigingSuwi", v);
    }
    out.push_str("</Bron></vi:IBVerwijsindex>");
}

/// Writes the `IBVerwijsindexResponse` element.
pub fn write_response(a: &Answer, out: &mut String) {
    out.push_str("<vi:IBVerwijsindexResponse xmlns:vi=\"");
    out.push_str(NS_VI);
    out.push_str("\">");
    match a {
        Answer::Acknowledgement => out.push_str("<Acknowledgement></Acknowledgement>"),
        Answer::Fwi(meldingen) => {
            // The local FWI element is unqualified; its children (Fout, ...) are unqualified in
            // the FWI schema as well, so no fwi prefix is needed — but it is declared for tools
            // that resolve the type.
            out.push_str("<FWI xmlns:fwi=\"");
            out.push_str(NS_FWI);
            out.push_str("\">");
            super::fwi::write_meldingen(meldingen, out);
            out.push_str("</FWI>");
        }
    }
    out.push_str("</vi:IBVerwijsindexResponse>");
}

/// Reads an `IBVerwijsindexResponse` (what the IB answered the outbox sender). An empty response
/// element is schema-valid and is taken as accepted; an FWI with a Fout is a refusal.
pub fn parse_response(body: &Element) -> Result<Answer, String> {
    if !body.is(Some(NS_VI), "IBVerwijsindexResponse") {
        return Err(format!(
            "expected {{{NS_VI}}}IBVerwijsindexResponse, found {}",
            body.qname()
        ));
    }
    let fwi = body
        .elements()
        .find(|k| k.local == "FWI")
        .map(read_fwi)
        .unwrap_or_default();
    if fwi.iter().any(|m| m.level == Level::Fout) {
        return Ok(Answer::Fwi(fwi));
    }
    Ok(Answer::Acknowledgement)
}

/// A request's text for logs: `BSN ******782, 04=1`.
pub fn describe(r: &Request) -> String {
    let mut s = format!("BSN {}", r.bsn.masked());
    for c in &r.clusters {
        s.push_str(", ");
        escape(&c.code, &mut s);
        s.push('=');
        escape(&c.ind, &mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            bsn: Bsn::parse("123456782").expect("bsn"),
            clusters: vec![Clustering::new("04", IndDkd::Present)],
            bron: Bron::gemeente("0363"),
        }
    }

    #[test]
    fn request_round_trips() {
        let mut s = String::new();
        write_request(&request(), &mut s);
        let e = crate::xml::parse(s.as_bytes()).expect("xml");
        assert_eq!(parse_request(&e).expect("parse"), request());
    }

    #[test]
    fn request_refusals_name_the_problem() {
        let mut good = String::new();
        write_request(&request(), &mut good);
        for (from, to, expect) in [
            ("123456782", "123456781", "11-test"),
            ("123456782", "12345678", "9 digits"),
            ("<IndDkd>1</IndDkd>", "<IndDkd>J</IndDkd>", "must be one digit"),
            ("<CdClusteringIb>04</CdClusteringIb>", "<CdClusteringIb>004</CdClusteringIb>", "longer than 2"),
            ("<ClusteringIb><CdClusteringIb>04</CdClusteringIb><IndDkd>1</IndDkd></ClusteringIb>", "", "at least one ClusteringIb"),
            ("<CdPartijSuwi>0363</CdPartijSuwi>", "<CdPartijSuwi>363</CdPartijSuwi>", "Bron"),
            ("<Burgerservicenr>", "<vi:Burgerservicenr>", "unqualified"),
        ] {
            let bad = good.replace(from, to).replace(
                "</vi:Burgerservicenr>",
                "</Burgerservicenr>",
            );
            let bad = if to == "<vi:Burgerservicenr>" {
                bad.replacen("</Burgerservicenr>", "</vi:Burgerservicenr>", 1)
            } else {
                bad
            };
            let e = crate::xml::parse(bad.as_bytes()).expect("xml");
            let err = parse_request(&e).expect_err(&bad).to_string();
            assert!(err.contains(expect), "{expect}: {err}");
        }
    }

    #[test]
    fn no_is_read_as_0_and_2_and_written_as_configured() {
        for (wire, ind) in [
            ("1", Some(IndDkd::Present)),
            ("0", Some(IndDkd::Absent)),
            ("2", Some(IndDkd::Absent)),
            ("3", None),
            ("9", None),
        ] {
            let c = Clustering {
                code: "04".into(),
                ind: wire.into(),
            };
            assert_eq!(c.ind(), ind, "IndDkd {wire}");
        }
        assert_eq!(Clustering::new("04", IndDkd::Absent).ind, "0", "default");
        assert_eq!(
            Clustering::with_nee("04", IndDkd::Absent, Nee::Two).ind,
            "2"
        );
        assert_eq!(
            Clustering::with_nee("04", IndDkd::Present, Nee::Two).ind,
            "1"
        );
        assert_eq!(Nee::parse("0"), Some(Nee::Zero));
        assert_eq!(Nee::parse("2"), Some(Nee::Two));
        assert_eq!(Nee::parse("N"), None);
        // A "0" goes through the schema check of the reader too.
        let mut s = String::new();
        let mut r = request();
        r.clusters = vec![Clustering::new("04", IndDkd::Absent)];
        write_request(&r, &mut s);
        assert!(s.contains("<IndDkd>0</IndDkd>"), "{s}");
        let e = crate::xml::parse(s.as_bytes()).expect("xml");
        assert_eq!(parse_request(&e).expect("parse"), r);
    }

    #[test]
    fn response_round_trips_both_ways() {
        for a in [
            Answer::Acknowledgement,
            Answer::Fwi(vec![Melding {
                level: Level::Fout,
                code: "0102".into(),
                tekst: "onbekende cluster".into(),
                details: vec!["CdClusteringIb 99".into()],
                dn: "CN=ib".into(),
            }]),
        ] {
            let mut s = String::new();
            write_response(&a, &mut s);
            let e = crate::xml::parse(s.as_bytes()).expect("xml");
            assert_eq!(parse_response(&e).expect("parse"), a);
        }
    }
}
