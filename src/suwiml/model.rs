//! What dkd knows about a person: the ClientSuwi of GSDDossierReintegratie-v0200 as typed records.
//!
//! One model serves the wire, the store and (later) the import, so a value that passes
//! [`Person::validate`] can always be written as a schema-valid message. Field names are English;
//! the doc comment of each names the SuwiML element it becomes.

use super::types::{
    check_code, check_four_digits, check_text, check_voorletters, Bsn, Datum, Percentage, TypeError,
};
use serde::{Deserialize, Serialize};

/// A `Bron`: which Suwi column and party (for gemeenten: the gemeentecode) supplied the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bron {
    /// `CdKolomSuwi`: 0–99. Gemeenten are column 3 in SuwiML code lists.
    pub kolom: u8,
    /// `CdPartijSuwi`: four digits, the CBS gemeentecode for a gemeente.
    pub partij: String,
    /// `CdVestigingSuwi`: four digits, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vestiging: Option<String>,
}

impl Bron {
    /// The Bron of a gemeente's own data.
    pub fn gemeente(gemeentecode: &str) -> Bron {
        Bron {
            kolom: KOLOM_GEMEENTE,
            partij: gemeentecode.to_owned(),
            vestiging: None,
        }
    }
}

/// `CdKolomSuwi` of the gemeenten (SuwiML: 1 UWV, 2 SVB, 3 gemeenten).
pub const KOLOM_GEMEENTE: u8 = 3;

/// `CdTypeRvGsd` dkd takes for loonkostensubsidie: the default of `import.lks_type_codes` and
/// the demo's.
pub const TYPE_LKS: &str = "24";

/// A `ReIntegratievoorziening`: one re-integration provision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    /// `RegistratienrRvGsd`: the backoffice's registration number, at most 15 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registratienr: Option<String>,
    /// `DatBRv`: start date.
    pub start: Datum,
    /// `DatERv`: end date; absent while the provision runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Datum>,
    /// `CdTypeRvGsd`: two characters, the CBS SRG "type voorziening" code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_code: Option<String>,
    /// `OmsRv`: description, at most 100 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `Loonkostensubsidie/PercLoonwaardeTovWml`: present exactly when this is an LKS provision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loonwaarde: Option<Percentage>,
}

/// An `AtlRelatie`: the person's re-integration relation with one gemeente.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtlRelatie {
    /// `Arbeidsvermogen/CdArbeidsvermogen`: two characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbeidsvermogen: Option<String>,
    /// `DoelReintegratievoorziening/CdDoelRv`: one character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doel_rv: Option<String>,
    /// `ReIntegratievoorziening`, in the order the backoffice delivered them.
    #[serde(default)]
    pub provisions: Vec<Provision>,
    /// `Bron`: required; names the gemeente responsible for this relation.
    pub bron: Bron,
}

/// A `ClientSuwi`: the person and their re-integration relations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// `Burgerservicenr`.
    pub bsn: Bsn,
    /// `Voornamen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voornamen: Option<String>,
    /// `Voorletters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voorletters: Option<String>,
    /// `Voorvoegsel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voorvoegsel: Option<String>,
    /// `SignificantDeelVanDeAchternaam`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achternaam: Option<String>,
    /// `Geslacht`: one digit (SuwiML: 0 unknown, 1 male, 2 female, 9 not specified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geslacht: Option<String>,
    /// `Geboortedat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geboortedat: Option<Datum>,
    /// `Bron` of the person data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bron: Option<Bron>,
    /// `AtlRelatie`, one per responsible gemeente.
    #[serde(default)]
    pub atl_relaties: Vec<AtlRelatie>,
}

/// One invalid field of a person record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `atl_relaties[0].provisions[1].end`.
    pub field: String,
    /// The offending value, as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}: {}", self.field, self.value, self.reason)
    }
}

struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    // Field paths are built only for failures: validation runs once per imported person.
    fn add(&mut self, field: impl FnOnce() -> String, value: &str, r: Result<(), TypeError>) {
        if let Err(e) = r {
            self.errors.push(FieldError {
                field: field(),
                value: value.to_owned(),
                reason: e.0,
            });
        }
    }
    fn opt(
        &mut self,
        field: impl FnOnce() -> String,
        value: &Option<String>,
        f: impl Fn(&str) -> Result<(), TypeError>,
    ) {
        if let Some(v) = value {
            self.add(field, v, f(v));
        }
    }
    fn bron(&mut self, prefix: impl Fn() -> String, b: &Bron) {
        if b.kolom > 99 {
            self.errors.push(FieldError {
                field: format!("{}.kolom", prefix()),
                value: b.kolom.to_string(),
                reason: "CdKolomSuwi must be 0-99".into(),
            });
        }
        self.add(
            || format!("{}.partij", prefix()),
            &b.partij,
            check_four_digits("CdPartijSuwi", &b.partij),
        );
        if let Some(v) = &b.vestiging {
            self.add(
                || format!("{}.vestiging", prefix()),
                v,
                check_four_digits("CdVestigingSuwi", v),
            );
        }
    }
}

impl Person {
    /// A person known by BSN and AtlRelaties only, without identity details (as a removal or a
    /// batch delivery names them).
    pub fn with_relaties(bsn: Bsn, atl_relaties: Vec<AtlRelatie>) -> Person {
        Person {
            bsn,
            voornamen: None,
            voorletters: None,
            voorvoegsel: None,
            achternaam: None,
            geslacht: None,
            geboortedat: None,
            bron: None,
            atl_relaties,
        }
    }

    /// Checks every field against the SuwiML types and dkd's own rules (end ≥ start, an LKS
    /// provision carries its loonwaarde, at least one AtlRelatie). Returns all problems at once so
    /// an integrator can fix a record in one go.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check { errors: Vec::new() };
        c.opt(
            || "voornamen".into(),
            &self.voornamen,
            |v| check_text("Voornamen", v, 200, true),
        );
        c.opt(
            || "voorletters".into(),
            &self.voorletters,
            check_voorletters,
        );
        c.opt(
            || "voorvoegsel".into(),
            &self.voorvoegsel,
            |v| check_text("Voorvoegsel", v, 10, true),
        );
        c.opt(
            || "achternaam".into(),
            &self.achternaam,
            |v| check_text("SignificantDeelVanDeAchternaam", v, 200, true),
        );
        c.opt(
            || "geslacht".into(),
            &self.geslacht,
            |v| {
                if v.len() == 1 && v.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(())
                } else {
                    Err(TypeError("Geslacht must be one digit".into()))
                }
            },
        );
        if let Some(b) = &self.bron {
            c.bron(|| "bron".into(), b);
        }
        if self.atl_relaties.is_empty() {
            c.errors.push(FieldError {
                field: "atl_relaties".into(),
                value: String::new(),
                reason: "a person in the verwijsindex needs at least one AtlRelatie".into(),
            });
        }
        for (i, r) in self.atl_relaties.iter().enumerate() {
            let p = || format!("atl_relaties[{i}]");
            c.opt(
                || format!("{}.arbeidsvermogen", p()),
                &r.arbeidsvermogen,
                |v| check_code("CdArbeidsvermogen", v, 2),
            );
            c.opt(
                || format!("{}.doel_rv", p()),
                &r.doel_rv,
                |v| check_code("CdDoelRv", v, 1),
            );
            c.bron(|| format!("{}.bron", p()), &r.bron);
            for (j, v) in r.provisions.iter().enumerate() {
                let q = || format!("{}.provisions[{j}]", p());
                c.opt(
                    || format!("{}.registratienr", q()),
                    &v.registratienr,
                    |x| check_text("RegistratienrRvGsd", x, 15, false),
                );
                c.opt(
                    || format!("{}.type_code", q()),
                    &v.type_code,
                    |x| check_code("CdTypeRvGsd", x, 2),
                );
                c.opt(
                    || format!("{}.description", q()),
                    &v.description,
                    |x| check_text("OmsRv", x, 100, false),
                );
                if let Some(e) = v.end {
                    if e < v.start {
                        c.errors.push(FieldError {
                            field: format!("{}.end", q()),
                            value: e.as_str().into(),
                            reason: format!("end date is before start date {}", v.start.as_str()),
                        });
                    }
                }
            }
        }
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors)
        }
    }

    /// Whether any provision is an LKS provision.
    pub fn has_lks(&self) -> bool {
        self.atl_relaties
            .iter()
            .flat_map(|r| &r.provisions)
            .any(|p| p.loonwaarde.is_some())
    }
}
