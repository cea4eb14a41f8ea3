//! The CSV format: UTF-8, a header row, one row per provision (a person without provisions is one
//! row with the provision columns empty). Comma or semicolon separated (detected from the header).
//! The columns are listed in [`COLUMNS`] and documented in the README.

use super::{ImportError, Item, Options, Rejection};
use crate::suwiml::model::{AtlRelatie, Bron, Person, Provision};
use crate::suwiml::types::{
    check_code, check_four_digits, check_text, check_voorletters, Bsn, BsnError, Datum, Percentage,
};

/// The known columns, in the order dkd writes them.
pub const COLUMNS: [&str; 18] = [
    "bsn",
    "gemeentecode",
    "voornamen",
    "voorletters",
    "voorvoegsel",
    "achternaam",
    "geslacht",
    "geboortedatum",
    "cd_arbeidsvermogen",
    "cd_doel_rv",
    "cd_vestiging",
    "registratienr",
    "datum_begin",
    "datum_einde",
    "cd_type",
    "omschrijving",
    "loonwaarde",
    "actie",
];

struct Cols([Option<usize>; COLUMNS.len()]);

impl Cols {
    fn get<'r>(&self, rec: &'r csv::StringRecord, name: &str) -> &'r str {
        COLUMNS
            .iter()
            .position(|c| *c == name)
            .and_then(|i| self.0[i])
            .and_then(|i| rec.get(i))
            .unwrap_or("")
    }
}

/// Reads the file, passing each row's item to `sink` in file order; returns the number of data
/// rows.
pub(crate) fn read(
    bytes: &[u8],
    opts: &Options,
    sink: &mut dyn FnMut(Item),
    progress: &mut dyn FnMut(u64),
) -> Result<u64, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let delimiter = if first_line.contains(&b';') && !first_line.contains(&b',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Structure(format!("line 1: cannot read the header row: {e}")))?
        .clone();
    let mut cols = Cols([None; COLUMNS.len()]);
    for (i, h) in headers.iter().enumerate() {
        let h = h.to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == h) {
            Some(p) => cols.0[p] = Some(i),
            None => {
                return Err(ImportError::Structure(format!(
                    "line 1: unknown column {h:?} (known: {})",
                    COLUMNS.join(", ")
                )))
            }
        }
    }
    if cols.0[0].is_none() {
        return Err(ImportError::Structure(
            "line 1: the header row has no \"bsn\" column".into(),
        ));
    }
    let mut rows = 0u64;
    let mut rec = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                rows += 1;
                let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
                if rec.len() != headers.len() {
                    sink(Item::Rejected {
                        key: key_of(&cols, &rec, opts),
                        rejection: Rejection {
                            line,
                            field: "row".into(),
                            value: format!("{} fields", rec.len()),
                            reason: format!("the header has {} columns", headers.len()),
                        },
                    });
                    continue;
                }
                sink(row(&cols, &rec, line, opts));
            }
            Err(e) => {
                rows += 1;
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                sink(Item::Rejected {
                    key: None,
                    rejection: Rejection {
                        line,
                        field: "row".into(),
                        value: String::new(),
                        reason: format!("unreadable: {e}"),
                    },
                });
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    return Err(ImportError::Structure(format!("line {line}: {e}")));
                }
            }
        }
        if rows % 65_536 == 0 {
            progress(rows);
        }
    }
    progress(rows);
    Ok(rows)
}

fn key_of(cols: &Cols, rec: &csv::StringRecord, opts: &Options) -> Option<(Bsn, String)> {
    let bsn = Bsn::parse(cols.get(rec, "bsn")).ok()?;
    let g = cols.get(rec, "gemeentecode");
    let g = if g.is_empty() {
        opts.gemeente.clone()?
    } else {
        g.to_owned()
    };
    Some((bsn, g))
}

struct RowErrors {
    line: usize,
    errs: Vec<Rejection>,
}

impl RowErrors {
    fn push(&mut self, field: &str, value: &str, reason: impl Into<String>) {
        self.errs.push(Rejection {
            line: self.line,
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        });
    }
    fn check(&mut self, field: &str, value: &str, r: Result<(), crate::suwiml::types::TypeError>) {
        if let Err(e) = r {
            self.push(field, value, e.0);
        }
    }
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn row(cols: &Cols, rec: &csv::StringRecord, line: usize, opts: &Options) -> Item {
    let mut e = RowErrors {
        line,
        errs: Vec::new(),
    };
    let get = |n: &str| cols.get(rec, n);
    let bsn_s = get("bsn");
    let bsn = match Bsn::parse(bsn_s) {
        Ok(b) => Some(b),
        Err(BsnError::Format) => {
            e.push("bsn", bsn_s, "must be exactly 9 digits");
            None
        }
        Err(BsnError::ElevenTest) => {
            e.push("bsn", bsn_s, "fails the 11-test");
            None
        }
    };
    let g_col = get("gemeentecode");
    let gemeente = match (g_col, &opts.gemeente) {
        ("", Some(g)) => Some(g.clone()),
        ("", None) => {
            e.push(
                "gemeentecode",
                "",
                "missing: fill the column or pass --gemeente",
            );
            None
        }
        (g, Some(o)) if g != o => {
            e.push("gemeentecode", g, format!("differs from --gemeente {o}"));
            None
        }
        (g, _) => {
            e.check("gemeentecode", g, check_four_digits("gemeentecode", g));
            Some(g.to_owned())
        }
    };
    let key = bsn.zip(gemeente.clone());
    let actie = get("actie").to_ascii_lowercase();
    match actie.as_str() {
        "" | "upsert" => {}
        "delete" => {
            if let (Some((bsn, g)), true) = (key.clone(), e.errs.is_empty()) {
                return Item::Delete {
                    line,
                    bsn,
                    gemeente: g,
                };
            }
        }
        other => e.push("actie", other, "must be empty, \"upsert\" or \"delete\""),
    }
    for (field, max, no_digits) in [
        ("voornamen", 200, true),
        ("voorvoegsel", 10, true),
        ("achternaam", 200, true),
        ("omschrijving", 100, false),
        ("registratienr", 15, false),
    ] {
        let v = get(field);
        if !v.is_empty() {
            e.check(field, v, check_text(field, v, max, no_digits));
        }
    }
    let vl = get("voorletters");
    if !vl.is_empty() {
        e.check("voorletters", vl, check_voorletters(vl));
    }
    let geslacht = get("geslacht");
    let geslacht_ok = geslacht.is_empty()
        || (geslacht.len() == 1 && geslacht.bytes().all(|b| b.is_ascii_digit()));
    if !geslacht_ok {
        e.push(
            "geslacht",
            geslacht,
            "must be one digit (0 unknown, 1 male, 2 female, 9 not specified)",
        );
    }
    for (field, len) in [("cd_arbeidsvermogen", 2), ("cd_doel_rv", 1), ("cd_type", 2)] {
        let v = get(field);
        if !v.is_empty() {
            e.check(field, v, check_code(field, v, len));
        }
    }
    let vest = get("cd_vestiging");
    if !vest.is_empty() {
        e.check(
            "cd_vestiging",
            vest,
            check_four_digits("cd_vestiging", vest),
        );
    }
    let mut date = |field: &str| -> Option<Datum> {
        let v = get(field);
        if v.is_empty() {
            return None;
        }
        match Datum::parse(v) {
            Ok(d) => Some(d),
            Err(err) => {
                e.push(field, v, err.0);
                None
            }
        }
    };
    let geboortedat = date("geboortedatum");
    let start = date("datum_begin");
    let end = date("datum_einde");
    let lw = get("loonwaarde");
    let loonwaarde = if lw.is_empty() {
        None
    } else {
        match Percentage::parse_decimal(lw) {
            Ok(p) => Some(p),
            Err(err) => {
                e.push("loonwaarde", lw, err.0);
                None
            }
        }
    };
    let has_provision = [
        "registratienr",
        "datum_begin",
        "datum_einde",
        "cd_type",
        "omschrijving",
        "loonwaarde",
    ]
    .iter()
    .any(|c| !get(c).is_empty());
    if has_provision && get("datum_begin").is_empty() {
        e.push("datum_begin", "", "a provision needs its start date");
    }
    if let (Some(s), Some(en)) = (start, end) {
        if en < s {
            e.push(
                "datum_einde",
                en.as_str(),
                format!("before datum_begin {}", s.as_str()),
            );
        }
    }
    if !e.errs.is_empty() {
        return Item::RejectedAll {
            key,
            rejections: e.errs,
        };
    }
    let (Some(bsn), Some(gemeente)) = (bsn, gemeente) else {
        return Item::Rejected {
            key: None,
            rejection: Rejection {
                line,
                field: "bsn".into(),
                value: bsn_s.into(),
                reason: "unusable".into(),
            },
        };
    };
    let provisions = match (has_provision, start) {
        (true, Some(start)) => vec![Provision {
            registratienr: opt(get("registratienr")),
            start,
            end,
            type_code: opt(get("cd_type")),
            description: opt(get("omschrijving")),
            loonwaarde,
        }],
        _ => Vec::new(),
    };
    let mut bron = Bron::gemeente(&gemeente);
    bron.vestiging = opt(vest);
    Item::Person {
        line,
        person: Person {
            bsn,
            voornamen: opt(get("voornamen")),
            voorletters: opt(vl),
            voorvoegsel: opt(get("voorvoegsel")),
            achternaam: opt(get("achternaam")),
            geslacht: opt(geslacht),
            geboortedat,
            bron: Some(bron.clone()),
            atl_relaties: vec![AtlRelatie {
                arbeidsvermogen: opt(get("cd_arbeidsvermogen")),
                doel_rv: opt(get("cd_doel_rv")),
                provisions,
                bron,
            }],
        },
    }
}

/// Writes persons as CSV in this format (for demo files, exports and benchmarks).
pub fn write(people: &[Person], out: &mut String) {
    out.push_str(&COLUMNS.join(","));
    out.push('\n');
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    for p in people {
        for r in &p.atl_relaties {
            let provisions: Vec<Option<&Provision>> = if r.provisions.is_empty() {
                vec![None]
            } else {
                r.provisions.iter().map(Some).collect()
            };
            for v in provisions {
                let fields = [
                    p.bsn.as_str().to_owned(),
                    r.bron.partij.clone(),
                    p.voornamen.clone().unwrap_or_default(),
                    p.voorletters.clone().unwrap_or_default(),
                    p.voorvoegsel.clone().unwrap_or_default(),
                    p.achternaam.clone().unwrap_or_default(),
                    p.geslacht.clone().unwrap_or_default(),
                    p.geboortedat
                        .map(|d| d.as_str().to_owned())
                        .unwrap_or_default(),
                    r.arbeidsvermogen.clone().unwrap_or_default(),
                    r.doel_rv.clone().unwrap_or_default(),
                    r.bron.vestiging.clone().unwrap_or_default(),
                    v.and_then(|v| v.registratienr.clone()).unwrap_or_default(),
                    v.map(|v| v.start.as_str().to_owned()).unwrap_or_default(),
                    v.and_then(|v| v.end)
                        .map(|d| d.as_str().to_owned())
                        .unwrap_or_default(),
                    v.and_then(|v| v.type_code.clone()).unwrap_or_default(),
                    v.and_then(|v| v.description.clone()).unwrap_or_default(),
                    v.and_then(|v| v.loonwaarde)
                        .map(|l| format!("{}.{:02}", l.hundredths() / 100, l.hundredths() % 100))
                        .unwrap_or_default(),
                    String::new(),
                ];
                let line: Vec<String> = fields.iter().map(|f| q(f)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
    }
}
