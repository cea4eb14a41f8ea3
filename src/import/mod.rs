//! `dkd import`: a backoffice file (CSV or XML) into the verwijsindex, validated row by row,
//! applied in one atomic step.
//!
//! Reading builds one person per (BSN, gemeente) from all their rows; a person with any rejected
//! row is left out entirely (and, in full mode, keeps what the index had), so a half-read person
//! never reaches the index. Writing is one `store::ChangeSet`, compared entry by entry with what
//! is stored: importing the same file twice changes nothing the second time.

pub mod csv_format;
pub mod xml_format;

use crate::store::{Counts, ImportRecord, Store, StoreError};
use crate::suwiml::model::{FieldError, Person};
use crate::suwiml::types::{Bsn, Datum};
use std::collections::HashMap;
use std::time::Instant;

/// How many times `b` occurs (a cheap upper bound for the rows of a file).
fn memchr_count(bytes: &[u8], b: u8) -> usize {
    bytes.iter().filter(|&&x| x == b).count()
}

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One row per provision, header row, UTF-8 (see README).
    Csv,
    /// A dkd `Aanlevering` document of ClientSuwi elements (wsdl/dkd-aanlevering-v1.xsd).
    Xml,
}

/// Import modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The file is the gemeente's complete set: persons absent from it leave the index.
    Full,
    /// The file holds upserts and explicit deletions.
    Delta,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    /// File format.
    pub format: Format,
    /// Full or delta.
    pub mode: Mode,
    /// The gemeente the file is for (required for full mode unless the file names exactly one).
    pub gemeente: Option<String>,
    /// Validate and count, write nothing.
    pub dry_run: bool,
    /// Any rejected row rejects the whole file.
    pub strict: bool,
    /// The domain rules beyond the SuwiML types.
    pub rules: Rules,
    /// Whether removed entries are purged (true) or kept aside unserved.
    pub purge: bool,
    /// The LKS look-back: persons already outside it are not (re)entered into the index.
    pub window_days: u32,
    /// The reference date for "far future".
    pub today: time::Date,
}

/// The domain rules every way in (import, admin API) applies.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Type codes that are LKS (must carry a loonwaarde).
    pub lks_type_codes: Vec<String>,
    /// Dates more than this many days after today are refused.
    pub max_future_days: u32,
}

/// A rejected row: printed as `file:line: field: value: reason`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// 1-based line in the file.
    pub line: usize,
    /// Column or element.
    pub field: String,
    /// The value as given.
    pub value: String,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Data rows (CSV) or ClientSuwi/Verwijderen elements (XML) read.
    pub rows: u64,
    /// Persons (BSN × gemeente) in the file.
    pub persons: u64,
    /// Rejected rows.
    pub rejected: Vec<Rejection>,
    /// What changed in the index (or would, in a dry run).
    pub counts: Counts,
    /// Whether anything was written.
    pub applied: bool,
    /// Valid persons left out because their provisions ended before the LKS look-back.
    pub expired: u64,
    /// Wall time.
    pub seconds: f64,
}

impl Report {
    /// The summary line.
    pub fn summary(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        };
        format!(
            "{} rows read, {} persons: {} added, {} changed, {} removed, {} unchanged, {} outside the look-back; {} rows rejected; {:.2} s, {:.0} rows/s{}",
            self.rows,
            self.persons,
            self.counts.added,
            self.counts.changed,
            self.counts.removed,
            self.counts.unchanged,
            self.expired,
            self.rejected.len(),
            self.seconds,
            rate,
            if self.applied { "" } else { " (nothing written)" }
        )
    }
}

/// Why an import could not run at all (as opposed to rejected rows).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file's structure is unusable (header, root element, encoding).
    #[error("{0}")]
    Structure(String),
    /// Options do not fit the file.
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Why the IB does not take a batch delivery (verzamelbestand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// No gemeente named: a delivery replaces one gemeente's previous one, so it must say whose.
    #[error("an IB batch import needs --gemeente CODE (a gemeente with delivery = \"batch\")")]
    NoGemeente,
    /// The gemeente runs its own webservice: the IB routes questions to it and holds no data.
    #[error("gemeente {0} delivers by webservice ([[ib.gemeenten]] delivery), not by batch")]
    Webservice(String),
    /// The gemeente is not one the IB knows.
    #[error("gemeente {0} is not in [[ib.gemeenten]] of this configuration")]
    Unknown(String),
}

/// The mode of a batch gemeente's delivery into the IB's store, whatever mode was asked for:
/// full, since a verzamelbestand is the gemeente's complete delivery and replaces its previous
/// one. Only a gemeente of `gemeenten` with `delivery = "batch"` delivers one.
pub fn ib_batch_mode(
    gemeente: Option<&str>,
    gemeenten: &[crate::ib::Gemeente],
) -> Result<Mode, BatchError> {
    use crate::ib::Delivery;
    let g = gemeente.ok_or(BatchError::NoGemeente)?;
    match gemeenten.iter().find(|x| x.code == g).map(|x| x.delivery) {
        Some(Delivery::Batch) => Ok(Mode::Full),
        Some(Delivery::Webservice) => Err(BatchError::Webservice(g.to_owned())),
        None => Err(BatchError::Unknown(g.to_owned())),
    }
}

/// One parsed item of a file: a person's data from one row/element, or a deletion.
pub(crate) enum Item {
    /// Person data (for CSV: identity + at most one provision, merged by [`Collector`]).
    Person { line: usize, person: Person },
    /// Explicit deletion of (BSN, gemeente).
    Delete {
        line: usize,
        bsn: Bsn,
        gemeente: String,
    },
    /// A row that could not be read; the BSN/gemeente, when known, rejects the whole person.
    Rejected {
        key: Option<(Bsn, String)>,
        rejection: Rejection,
    },
    /// A row with several problems, each reported on its own line.
    RejectedAll {
        key: Option<(Bsn, String)>,
        rejections: Vec<Rejection>,
    },
}

/// Collects items into persons keyed by (BSN, gemeente), in file order.
///
/// The persons live in a vector in file order and the map holds only their positions: with
/// ~500,000 persons, growing a map of whole persons moved each of them at every resize (10 % of an
/// import's time, and page faults for the copies).
#[derive(Default)]
pub(crate) struct Collector {
    persons: Vec<Collected>,
    index: HashMap<(Bsn, String), usize>,
    rejected_lines: Vec<Rejection>,
    deletes: Vec<(usize, Bsn, String)>,
}

pub(crate) struct Collected {
    key: (Bsn, String),
    first_line: usize,
    lines: Vec<usize>,
    person: Person,
    rejected: bool,
}

impl Collector {
    /// A collector for about `rows` rows (one person per row at most). The map gets room for half
    /// of them (files have one to three rows per person): a map sized for every row touched ~100 MB
    /// more for a 10^6-row file, and growing it once moves only small entries.
    pub(crate) fn with_capacity(rows: usize) -> Collector {
        Collector {
            persons: Vec::with_capacity(rows),
            index: HashMap::with_capacity(rows / 2),
            ..Collector::default()
        }
    }

    fn get(&self, key: &(Bsn, String)) -> Option<&Collected> {
        self.index.get(key).and_then(|&i| self.persons.get(i))
    }

    fn get_mut(&mut self, key: &(Bsn, String)) -> Option<&mut Collected> {
        self.index.get(key).and_then(|&i| self.persons.get_mut(i))
    }

    fn push(&mut self, c: Collected) {
        self.index.insert(c.key.clone(), self.persons.len());
        self.persons.push(c);
    }

    pub(crate) fn add(&mut self, item: Item) {
        match item {
            Item::Rejected { key, rejection } => {
                if let Some(k) = key {
                    self.entry_rejected(k, rejection.line);
                }
                self.rejected_lines.push(rejection);
            }
            Item::RejectedAll { key, rejections } => {
                for rejection in rejections {
                    self.add(Item::Rejected {
                        key: key.clone(),
                        rejection,
                    });
                }
            }
            Item::Delete {
                line,
                bsn,
                gemeente,
            } => self.deletes.push((line, bsn, gemeente)),
            Item::Person { line, person } => {
                let Some(gemeente) = person.atl_relaties.first().map(|r| r.bron.partij.clone())
                else {
                    return;
                };
                let key = (person.bsn, gemeente);
                let known = self.index.get(&key).copied();
                match known.and_then(|i| self.persons.get_mut(i)) {
                    None => {
                        self.push(Collected {
                            key,
                            first_line: line,
                            lines: vec![line],
                            person,
                            rejected: false,
                        });
                    }
                    Some(c) => {
                        c.lines.push(line);
                        if c.rejected {
                            // Already rejected (possibly a placeholder): this row is reported as
                            // "another row of this person was rejected", not compared.
                            return;
                        }
                        if let Some(conflict) = identity_conflict(&c.person, &person) {
                            c.rejected = true;
                            self.rejected_lines.push(Rejection {
                                line,
                                field: conflict.0.into(),
                                value: conflict.1,
                                reason: format!(
                                    "differs from line {} of the same person",
                                    c.first_line
                                ),
                            });
                            return;
                        }
                        if let (Some(r), Some(new)) = (
                            c.person.atl_relaties.first_mut(),
                            person.atl_relaties.into_iter().next(),
                        ) {
                            r.provisions.extend(new.provisions);
                        }
                    }
                }
            }
        }
    }

    /// Marks a person rejected without a message of its own.
    pub(crate) fn mark_rejected(&mut self, key: (Bsn, String), line: usize) {
        self.entry_rejected(key, line);
    }

    fn entry_rejected(&mut self, key: (Bsn, String), line: usize) {
        match self.get_mut(&key) {
            Some(c) => {
                c.rejected = true;
                c.lines.push(line);
            }
            None => {
                let placeholder = placeholder(key.0, &key.1);
                self.push(Collected {
                    key,
                    first_line: line,
                    lines: vec![line],
                    person: placeholder,
                    rejected: true,
                });
            }
        }
    }
}

fn placeholder(bsn: Bsn, gemeente: &str) -> Person {
    Person::with_relaties(
        bsn,
        vec![crate::suwiml::model::AtlRelatie {
            arbeidsvermogen: None,
            doel_rv: None,
            provisions: Vec::new(),
            bron: crate::suwiml::model::Bron::gemeente(gemeente),
        }],
    )
}

/// Person-level fields must be the same on every row of a person.
fn identity_conflict(a: &Person, b: &Person) -> Option<(&'static str, String)> {
    let ra = a.atl_relaties.first();
    let rb = b.atl_relaties.first();
    let checks: [(&str, Option<String>, Option<String>); 9] = [
        ("voornamen", a.voornamen.clone(), b.voornamen.clone()),
        ("voorletters", a.voorletters.clone(), b.voorletters.clone()),
        ("voorvoegsel", a.voorvoegsel.clone(), b.voorvoegsel.clone()),
        ("achternaam", a.achternaam.clone(), b.achternaam.clone()),
        ("geslacht", a.geslacht.clone(), b.geslacht.clone()),
        (
            "geboortedatum",
            a.geboortedat.map(|d| d.as_str().to_owned()),
            b.geboortedat.map(|d| d.as_str().to_owned()),
        ),
        (
            "cd_arbeidsvermogen",
            ra.and_then(|r| r.arbeidsvermogen.clone()),
            rb.and_then(|r| r.arbeidsvermogen.clone()),
        ),
        (
            "cd_doel_rv",
            ra.and_then(|r| r.doel_rv.clone()),
            rb.and_then(|r| r.doel_rv.clone()),
        ),
        (
            "vestiging",
            ra.and_then(|r| r.bron.vestiging.clone()),
            rb.and_then(|r| r.bron.vestiging.clone()),
        ),
    ];
    checks
        .into_iter()
        .find(|(_, x, y)| x != y)
        .map(|(f, _, y)| (f, y.unwrap_or_default()))
}

/// The domain checks beyond the SuwiML types: an LKS type carries a loonwaarde; no far-future
/// dates. Returns (field, value, reason).
pub fn domain_checks(
    p: &Person,
    rules: &Rules,
    today: time::Date,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let limit = Datum::from_date(today + time::Duration::days(i64::from(rules.max_future_days)));
    let today = Datum::from_date(today);
    if let Some(b) = p.geboortedat {
        if b.to_date().is_some() && b > today {
            out.push((
                "geboortedatum".into(),
                b.as_str().into(),
                "birth date is in the future".into(),
            ));
        }
    }
    for r in &p.atl_relaties {
        if r.bron.kolom != crate::suwiml::model::KOLOM_GEMEENTE {
            out.push((
                "CdKolomSuwi".into(),
                r.bron.kolom.to_string(),
                format!(
                    "a gemeente's data has CdKolomSuwi {}",
                    crate::suwiml::model::KOLOM_GEMEENTE
                ),
            ));
        }
    }
    for v in p.atl_relaties.iter().flat_map(|r| &r.provisions) {
        for (field, d) in [("datum_begin", Some(v.start)), ("datum_einde", v.end)] {
            if let Some(d) = d {
                if d > limit {
                    out.push((
                        field.into(),
                        d.as_str().into(),
                        format!("more than {} days in the future", rules.max_future_days),
                    ));
                }
            }
        }
        let is_lks_type = v
            .type_code
            .as_ref()
            .is_some_and(|t| rules.lks_type_codes.contains(t));
        if let (Some(t), Some(l), false) = (&v.type_code, v.loonwaarde, is_lks_type) {
            out.push((
                "loonwaarde".into(),
                l.to_string(),
                format!("a loonwaarde makes this an LKS provision, but cd_type {t} is not an LKS type (import.lks_type_codes)"),
            ));
        }
        if is_lks_type && v.loonwaarde.is_none() {
            out.push((
                "loonwaarde".into(),
                String::new(),
                format!(
                    "an LKS provision (cd_type {}) must carry its loonwaarde",
                    v.type_code.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    out
}

/// Reads a CSV file into `collector`: parsing and checking rows runs on a second thread while this
/// one groups them into persons (a quarter of an import's time each). The items arrive in file
/// order, so the result is exactly that of reading on one thread.
fn read_csv(
    bytes: &[u8],
    opts: &Options,
    collector: &mut Collector,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, ImportError> {
    enum Msg {
        Items(Vec<Item>),
        Rows(u64),
    }
    const BATCH: usize = 4096;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(16);
        let reader = scope.spawn(move || {
            let batch = std::cell::RefCell::new(Vec::with_capacity(BATCH));
            // A closed channel means the receiving side is gone (it panicked): stop sending.
            let flush = || {
                let items = std::mem::replace(&mut *batch.borrow_mut(), Vec::with_capacity(BATCH));
                if !items.is_empty() {
                    let _ = tx.send(Msg::Items(items));
                }
            };
            let rows = csv_format::read(
                bytes,
                opts,
                &mut |item| {
                    let full = {
                        let mut b = batch.borrow_mut();
                        b.push(item);
                        b.len() >= BATCH
                    };
                    if full {
                        flush();
                    }
                },
                &mut |rows| {
                    flush();
                    let _ = tx.send(Msg::Rows(rows));
                },
            );
            flush();
            rows
        });
        for msg in rx {
            match msg {
                Msg::Items(items) => items.into_iter().for_each(|i| collector.add(i)),
                Msg::Rows(n) => progress(n),
            }
        }
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Imports a file's bytes. `name` is used in messages and the import history; `progress` is called
/// with the number of rows read so far.
pub fn import(
    store: &Store,
    name: &str,
    bytes: &[u8],
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, ImportError> {
    let started = Instant::now();
    // One person per row at most: sized once, the collector never grows (nor copies) while reading.
    let mut collector = Collector::with_capacity(memchr_count(bytes, b'\n'));
    let (rows, file_gemeente) = match opts.format {
        Format::Csv => (read_csv(bytes, opts, &mut collector, progress)?, None),
        Format::Xml => xml_format::read(bytes, opts, &mut collector, progress)?,
    };
    // Which gemeente a full import replaces: --gemeente, what the file says, or the one gemeente
    // of its well-formed rows (a mistyped code is rejected below, not counted as a second gemeente).
    let gemeente = match (opts.mode, opts.gemeente.as_ref().or(file_gemeente.as_ref())) {
        (_, Some(g)) => Some(g.clone()),
        (Mode::Full, None) => {
            let mut gs: Vec<&String> = collector
                .persons
                .iter()
                .filter(|c| !c.rejected)
                .map(|c| &c.key.1)
                .filter(|g| crate::suwiml::types::check_four_digits("gemeentecode", g).is_ok())
                .collect();
            gs.sort();
            gs.dedup();
            match gs.as_slice() {
                [one] => Some((*one).clone()),
                [] => {
                    return Err(ImportError::Usage(
                        "a full import of an empty file needs --gemeente CODE".into(),
                    ))
                }
                _ => {
                    return Err(ImportError::Usage(
                        "the file holds several gemeenten: a full import needs --gemeente CODE"
                            .into(),
                    ))
                }
            }
        }
        (Mode::Delta, None) => None,
    };
    let mut report = Report {
        rows,
        persons: collector.persons.len() as u64,
        ..Report::default()
    };
    let mut rejected = std::mem::take(&mut collector.rejected_lines);
    let mut reported: std::collections::HashSet<usize> = rejected.iter().map(|r| r.line).collect();
    // A full import's absences, found before this change set writes anything: once it has
    // started (a large one writes while it is built), the walk would also meet its own new entries.
    // In full mode every entry the change set touches is named in the file (deletions are
    // refused), so naming alone decides.
    let mut absent = Vec::new();
    if opts.mode == Mode::Full {
        if let Some(g) = &gemeente {
            for bsn in store.gemeente_bsns(g)? {
                // Keep persons the file names, even when their rows were rejected: a typo must not
                // take someone out of the index.
                if collector.get(&(bsn, g.clone())).is_none() {
                    absent.push(bsn);
                }
            }
        }
    }
    let mut changes = store.changes(&format!("import:{name}"));
    // A large change set writes while it is built; a dry run, and a strict import at its first
    // rejection, must not (what was written is rolled back at once).
    let mut writing = !(opts.dry_run || opts.strict && !rejected.is_empty());
    if !writing {
        changes.discard_writes()?;
    }
    // Persons: validate, then upsert.
    let mut gemeenten: std::collections::BTreeSet<String> = gemeente.iter().cloned().collect();
    for c in &collector.persons {
        if writing && opts.strict && !rejected.is_empty() {
            changes.discard_writes()?;
            writing = false;
        }
        let key = &c.key;
        if c.rejected {
            for &line in &c.lines {
                if reported.insert(line) {
                    rejected.push(Rejection {
                        line,
                        field: "bsn".into(),
                        value: key.0.masked(),
                        reason:
                            "another row of this person was rejected; the person is left as it was"
                                .into(),
                    });
                }
            }
            continue;
        }
        if let Some(g) = &gemeente {
            if &key.1 != g {
                rejected.push(Rejection {
                    line: c.first_line,
                    field: "gemeentecode".into(),
                    value: key.1.clone(),
                    reason: format!("this import is for gemeente {g}"),
                });
                continue;
            }
        }
        let mut problems: Vec<(String, String, String)> = Vec::new();
        if let Err(errs) = c.person.validate() {
            problems.extend(errs.into_iter().map(
                |FieldError {
                     field,
                     value,
                     reason,
                 }| (field, value, reason),
            ));
        }
        problems.extend(domain_checks(&c.person, &opts.rules, opts.today));
        if !problems.is_empty() {
            for (field, value, reason) in problems {
                rejected.push(Rejection {
                    line: c.first_line,
                    field,
                    value,
                    reason,
                });
            }
            continue;
        }
        if !crate::retention::in_index(&c.person, opts.window_days, opts.today) {
            // Outside the LKS look-back already: it does not belong in the index (and leaves it).
            report.expired += 1;
            changes.remove_later(&key.0, &key.1, !opts.purge)?;
            continue;
        }
        changes.upsert_validated(&c.person)?;
        gemeenten.insert(key.1.clone());
    }
    // Deletions (delta) and absences (full).
    for (line, bsn, g) in &collector.deletes {
        if opts.mode == Mode::Full {
            rejected.push(Rejection {
                line: *line,
                field: "actie".into(),
                value: "delete".into(),
                reason: "deletions belong in delta mode; a full import removes by absence".into(),
            });
            continue;
        }
        if gemeente.as_ref().is_some_and(|x| x != g) {
            rejected.push(Rejection {
                line: *line,
                field: "gemeentecode".into(),
                value: g.clone(),
                reason: "this import is for another gemeente".into(),
            });
            continue;
        }
        changes.remove_later(bsn, g, !opts.purge)?;
        gemeenten.insert(g.clone());
    }
    if let Some(g) = &gemeente {
        for bsn in &absent {
            changes.remove_later(bsn, g, !opts.purge)?;
        }
    }
    rejected.sort_by_key(|r| r.line);
    report.rejected = rejected;
    report.counts = changes.counts()?;
    let refuse_all = opts.strict && !report.rejected.is_empty();
    if opts.dry_run || refuse_all {
        changes.discard_writes()?;
    } else {
        changes.commit()?;
        report.applied = true;
        store.record_import(&ImportRecord {
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            file: name.to_owned(),
            gemeenten: gemeenten.into_iter().collect(),
            mode: if opts.mode == Mode::Full {
                "full"
            } else {
                "delta"
            }
            .into(),
            rows: report.rows,
            rejected: report.rejected.len() as u64,
            added: report.counts.added,
            changed: report.counts.changed,
            removed: report.counts.removed,
            unchanged: report.counts.unchanged,
        })?;
        store.flush()?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ib::{Delivery, Gemeente};

    fn gemeente(code: &str, delivery: Delivery) -> Gemeente {
        Gemeente {
            code: code.into(),
            name: String::new(),
            oins: vec![],
            url: None,
            delivery,
        }
    }

    #[test]
    fn only_a_batch_gemeente_delivers_a_batch_and_it_replaces_the_previous_one() {
        let known = [
            gemeente("0014", Delivery::Batch),
            gemeente("0363", Delivery::Webservice),
        ];
        assert_eq!(ib_batch_mode(Some("0014"), &known), Ok(Mode::Full));
        assert_eq!(
            ib_batch_mode(Some("0363"), &known),
            Err(BatchError::Webservice("0363".into()))
        );
        assert_eq!(
            ib_batch_mode(Some("0599"), &known),
            Err(BatchError::Unknown("0599".into()))
        );
        assert_eq!(ib_batch_mode(None, &known), Err(BatchError::NoGemeente));
    }
}
