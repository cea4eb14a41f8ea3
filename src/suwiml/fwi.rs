//! The SuwiML FWI v0205 structures: `Fout`, `Waarschuwing`, `Informatie` and `NietsGevonden`.

use crate::xml::{element, NS_FWI};

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
    for m in meldingen {
        out.push('<');
        out.push_str(m.level.name());
        out.push('>');
        m.write_children(out);
        out.push_str("</");
        out.push_str(m.level.name());
        out.push('>');
    }
    out.push_str("</fwi:FWI>");
}

/// Writes an empty `fwi:NietsGevonden`.
pub fn write_niets_gevonden(out: &mut String) {
    out.push_str("<fwi:NietsGevonden xmlns:fwi=\"");
    out.push_str(NS_FWI);
    out.push_str("\"></fwi:NietsGevonden>");
}
