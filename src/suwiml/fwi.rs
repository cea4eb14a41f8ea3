//! The SuwiML FWI v0205 structures: `Fout`, `Waarschuwing`, `Informatie` and `NietsGevonden`.

use crate::xml::{element, NS_FWI};

/// dkd code for "the service cannot answer now" (interface.md §4: 0051): the same Fout from
/// the gemeente's answer, the IB's router and its verwijsindex.
pub const CODE_UNAVAILABLE: &str = "0051";

/// The kind of an FWI message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `Fout`: the request could not be answered.
    Fout,
    /// `Waarschuwing`: answered, but part of the data is missing.
    Waarschuwing,
    /// `Informatie`: answered; a remark.
    Informatie,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Fout => "Fout",
            Level::Waarschuwing => "Waarschuwing",
            Level::Informatie => "Informatie",
        }
    }
}

/// An FWI `Melding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Melding {
    /// Which of the three.
    pub level: Level,
    /// `Code`: a stable dkd code (see README).
    pub code: String,
    /// `Tekst`: a human explanation.
    pub tekst: String,
    /// `Detail`: zero or more further lines.
    pub details: Vec<String>,
    /// `Bron/DN`: who produced the message.
    pub dn: String,
}

impl Melding {
    /// Writes the unqualified children of a Melding.
    fn write_children(&self, out: &mut String) {
        element(out, "Code", &self.code);
        element(out, "Tekst", &self.tekst);
        for d in &self.details {
            element(out, "Detail", d);
        }
        out.push_str("<Bron>");
        element(out, "DN", &self.dn);
        out.push_str("</Bron>");
    }

    /// Writes a standalone global `fwi:Fout` element (the SOAP fault detail), declaring its own
    /// namespace so it can be lifted out of the envelope unchanged.
    pub fn write_global_fout(&self, out: &mut String) {
        out.push_str("<fwi:Fout xmlns:fwi=\"");
        out.push_str(NS_FWI);
        out.push_str("\">");
        self.write_children(out);
        out.push_str("</fwi:Fout>");
    }
}

/// Writes an `fwi:FWI` element with the given messages.
pub fn write_fwi(meldingen: &[Melding], out: &mut String) {
    out.push_str("<fwi:FWI xmlns:fwi=\"");
    out.push_str(NS_FWI);
    out.push_str("\">");
    write_meldingen(meldingen, out);
    out.push_str("</fwi:FWI>");
}

/// Writes the children of an FWI (each `Fout`, `Waarschuwing` or `Informatie`, unqualified):
/// shared by the global `fwi:FWI` and the IBVerwijsindex response's local `FWI`.
pub fn write_meldingen(meldingen: &[Melding], out: &mut String) {
    for m in meldingen {
        out.push('<');
        out.push_str(m.level.name());
        out.push('>');
        m.write_children(out);
        out.push_str("</");
        out.push_str(m.level.name());
        out.push('>');
    }
}

/// Writes an empty `fwi:NietsGevonden`.
pub fn write_niets_gevonden(out: &mut String) {
    out.push_str("<fwi:NietsGevonden xmlns:fwi=\"");
    out.push_str(NS_FWI);
    out.push_str("\"></fwi:NietsGevonden>");
}

/// Reads the meldingen of an `fwi:FWI` (or the unqualified `FWI` of the IBVerwijsindex response):
/// what another party answered. Unknown children are skipped: a reader of someone else's answer
/// keeps what it understands.
pub fn read_fwi(e: &crate::xml::Element) -> Vec<Melding> {
    e.elements()
        .filter_map(|m| {
            let level = match m.local.as_str() {
                "Fout" => Level::Fout,
                "Waarschuwing" => Level::Waarschuwing,
                "Informatie" => Level::Informatie,
                _ => return None,
            };
            Some(read_melding(m, level))
        })
        .collect()
}

/// Reads one Melding (`Code`, `Tekst`, `Detail`*, `Bron/DN`).
pub fn read_melding(m: &crate::xml::Element, level: Level) -> Melding {
    let child = |name: &str| m.elements().find(|c| c.local == name).map(|c| c.text());
    Melding {
        level,
        code: child("Code").unwrap_or_default(),
        tekst: child("Tekst").unwrap_or_default(),
        details: m
            .elements()
            .filter(|c| c.local == "Detail")
            .map(|c| c.text())
            .collect(),
        dn: m
            .elements()
            .find(|c| c.local == "Bron")
            .and_then(|b| b.elements().find(|c| c.local == "DN"))
            .map(|c| c.text())
            .unwrap_or_default(),
    }
}
