//! The "Toets LKS" signal files (`<Gemeente>_LKSRi_rapport_<YYYYMMDD>.csv`, one per gemeente and
//! day, served by the IB role's portal) and the Wvp milestones of a vangnetter case.
//!
//! Column layout (semicolon-separated, UTF-8, header row, one row per LKS provision):
//! `Burgerservicenr;CdPartijSuwi;DatumSignaal;TijdstipSignaal;MessageID;OINVrager;`
//! `RegistratienrRvGsd;CdTypeRvGsd;DatBRv;DatERv;PercLoonwaardeTovWml` — dates `YYYYMMDD`, the
//! time ISO 8601 UTC, the percentage as `45.50`.

use crate::store::signals::{Case, Signal};
use crate::suwiml::model::Provision;
use crate::suwiml::types::{Bsn, Datum, Percentage};

/// The header row.
pub const HEADER: [&str; 11] = [
    "Burgerservicenr",
    "CdPartijSuwi",
    "DatumSignaal",
    "TijdstipSignaal",
    "MessageID",
    "OINVrager",
    "RegistratienrRvGsd",
    "CdTypeRvGsd",
    "DatBRv",
    "DatERv",
    "PercLoonwaardeTovWml",
];

/// The Wvp milestones, in weeks from the first sick day (or the signal date).
pub const MILESTONE_WEEKS: [u8; 7] = [6, 8, 26, 52, 78, 91, 93];

/// The report's file name: the gemeente's name without spaces or path characters.
pub fn file_name(gemeente_name: &str, day: &str) -> String {
    let name: String = gemeente_name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}_LKSRi_rapport_{day}.csv")
}

/// The day (`YYYYMMDD`) in a report file name, if it is one.
pub fn day_of(file: &str) -> Option<&str> {
    let d = file.strip_suffix(".csv")?.rsplit_once("_LKSRi_rapport_")?.1;
    (d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit())).then_some(d)
}

/// Writes the CSV of a day's signals.
pub fn write_csv(signals: &[Signal]) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    let _ = w.write_record(HEADER);
    for s in signals {
        let t = time::OffsetDateTime::from_unix_timestamp(s.at)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let day = Datum::from_date(t.date());
        let when = crate::soap::wssec::format_time(t);
        for p in &s.provisions {
            let _ = w.write_record([
                s.bsn.as_str(),
                &s.gemeente,
                day.as_str(),
                &when,
                &s.message_id,
                &s.asking_oin,
                p.registratienr.as_deref().unwrap_or(""),
                p.type_code.as_deref().unwrap_or(""),
                p.start.as_str(),
                p.end.as_ref().map(Datum::as_str).unwrap_or(""),
                &p.loonwaarde
                    .map(|l| format!("{}.{:02}", l.hundredths() / 100, l.hundredths() % 100))
                    .unwrap_or_default(),
            ]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// One row of a report, checked.
struct Row {
    line: usize,
    bsn: Bsn,
    gemeente: String,
    day: Datum,
    tijdstip: String,
    message_id: String,
    asking_oin: String,
    provision: Provision,
}

/// Reads a report's rows: the header must be [`HEADER`], every row must parse. Every problem is
/// reported as `file:line: field: value: reason`; a file with any is refused whole.
fn read_rows(file: &str, bytes: &[u8]) -> Result<Vec<Row>, Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .from_reader(bytes);
    let mut errors = Vec::new();
    match r.headers() {
        Ok(h) if h.iter().eq(HEADER.iter().copied()) => {}
        Ok(h) => errors.push(format!(
            "{file}:1: header: {:?}: expected {}",
            h.iter().collect::<Vec<_>>().join(";"),
            HEADER.join(";")
        )),
        Err(e) => errors.push(format!("{file}:1: header: {e}")),
    }
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let get = |n: usize| rec.get(n).unwrap_or("").trim();
        let mut bad = |field: &str, value: &str, why: &str| {
            errors.push(format!("{file}:{line}: {field}: {value:?}: {why}"))
        };
        let bsn = Bsn::parse(get(0));
        let day = Datum::parse(get(2));
        let start = Datum::parse(get(8));
        let end = match get(9) {
            "" => Ok(None),
            v => Datum::parse(v).map(Some),
        };
        let pct = Percentage::parse_decimal(get(10));
        let gemeente = get(1);
        if crate::suwiml::types::check_four_digits("CdPartijSuwi", gemeente).is_err() {
            bad("CdPartijSuwi", gemeente, "must be 4 digits");
        }
        let (Ok(bsn), Ok(day), Ok(start), Ok(end), Ok(pct)) = (bsn, day, start, end, pct) else {
            for (n, name) in [
                (0, "Burgerservicenr"),
                (2, "DatumSignaal"),
                (8, "DatBRv"),
                (9, "DatERv"),
                (10, "PercLoonwaardeTovWml"),
            ] {
                let ok = match n {
                    0 => Bsn::parse(get(0)).is_ok(),
                    10 => Percentage::parse_decimal(get(10)).is_ok(),
                    9 if get(9).is_empty() => true,
                    _ => Datum::parse(get(n)).is_ok(),
                };
                if !ok {
                    bad(name, get(n), "invalid");
                }
            }
            continue;
        };
        rows.push(Row {
            line,
            bsn,
            gemeente: gemeente.to_owned(),
            day,
            tijdstip: get(3).to_owned(),
            message_id: get(4).to_owned(),
            asking_oin: get(5).to_owned(),
            provision: Provision {
                registratienr: Some(get(6).to_owned()).filter(|s| !s.is_empty()),
                start,
                end,
                type_code: Some(get(7).to_owned()).filter(|s| !s.is_empty()),
                description: None,
                loonwaarde: Some(pct),
            },
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Reads a report into cases (one per BSN and signal day, with their provisions). Every problem
/// is reported as `file:line: field: value: reason`; a file with any is refused whole.
pub fn read_csv(file: &str, bytes: &[u8]) -> Result<Vec<Case>, Vec<String>> {
    let mut cases: Vec<Case> = Vec::new();
    for row in read_rows(file, bytes)? {
        match cases
            .iter_mut()
            .find(|c| c.bsn == row.bsn && c.signal_date == row.day && c.gemeente == row.gemeente)
        {
            Some(c) => {
                if !c.provisions.contains(&row.provision) {
                    c.provisions.push(row.provision);
                }
            }
            None => cases.push(Case {
                bsn: row.bsn,
                gemeente: row.gemeente,
                signal_date: row.day,
                first_sick_day: None,
                provisions: vec![row.provision],
                source: file.to_owned(),
            }),
        }
    }
    Ok(cases)
}

/// Reads a report delivered from outside (`dkd signals publish`, e.g. UWV's "LKS overdracht
/// re-integratie" in this layout) into signals for `gemeente`, for the IB to serve as its own.
/// On top of [`read_csv`]'s checks, each row must be for `gemeente`, carry the time it was signalled
/// (`TijdstipSignaal`, ISO 8601, on `DatumSignaal`, not after `today`) and an `OINVrager` of 20
/// digits or none, because the portal writes the report again from exactly these fields. Rows of
/// one question (BSN, time, MessageID, OIN) make one signal. A file without rows is refused.
pub fn read_signals(
    file: &str,
    bytes: &[u8],
    gemeente: &str,
    today: time::Date,
) -> Result<Vec<Signal>, Vec<String>> {
    let rows = read_rows(file, bytes)?;
    let mut errors = Vec::new();
    if rows.is_empty() {
        errors.push(format!("{file}: no signal rows after the header"));
    }
    let mut signals: Vec<Signal> = Vec::new();
    for row in rows {
        let line = row.line;
        let mut bad = |field: &str, value: &str, why: String| {
            errors.push(format!("{file}:{line}: {field}: {value:?}: {why}"))
        };
        if row.gemeente != gemeente {
            bad(
                "CdPartijSuwi",
                &row.gemeente,
                format!("the file is published for gemeente {gemeente}"),
            );
        }
        if !(row.asking_oin.is_empty()
            || (row.asking_oin.len() == 20 && row.asking_oin.bytes().all(|b| b.is_ascii_digit())))
        {
            bad(
                "OINVrager",
                &row.asking_oin,
                "must be a 20-digit OIN or empty".into(),
            );
        }
        let at = time::OffsetDateTime::parse(
            &row.tijdstip,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.to_offset(time::UtcOffset::UTC));
        let at = match at {
            Ok(t) if Datum::from_date(t.date()) != row.day => {
                bad(
                    "TijdstipSignaal",
                    &row.tijdstip,
                    format!("is not on DatumSignaal {} (UTC)", row.day.as_str()),
                );
                continue;
            }
            Ok(t) if t.date() > today => {
                bad("TijdstipSignaal", &row.tijdstip, "is in the future".into());
                continue;
            }
            Ok(t) => t.unix_timestamp(),
            Err(_) => {
                bad(
                    "TijdstipSignaal",
                    &row.tijdstip,
                    "must be ISO 8601 with a zone, e.g. 2026-11-22T19:42:10.123Z".into(),
                );
                continue;
            }
        };
        match signals.iter_mut().find(|s| {
            s.bsn == row.bsn
                && s.at == at
                && s.message_id == row.message_id
                && s.asking_oin == row.asking_oin
        }) {
            Some(s) => {
                if !s.provisions.contains(&row.provision) {
                    s.provisions.push(row.provision);
                }
            }
            None => signals.push(Signal {
                bsn: row.bsn,
                gemeente: row.gemeente,
                at,
                message_id: row.message_id,
                asking_oin: row.asking_oin,
                provisions: vec![row.provision],
            }),
        }
    }
    if errors.is_empty() {
        Ok(signals)
    } else {
        Err(errors)
    }
}

/// Where a milestone stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilestoneState {
    /// Its date has passed.
    Overdue,
    /// The next one to come.
    Next,
    /// Later.
    Later,
}

/// One Wvp milestone of a case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Milestone {
    /// Weeks from the base date.
    pub week: u8,
    /// Its date (`YYYYMMDD`).
    pub date: String,
    /// Overdue, next or later.
    pub state: MilestoneState,
}

/// The milestones of a case: week 6, 8, 26, 52, 78, 91 and 93 counted from the first sick day
/// when known, else from the signal date. A milestone is overdue once its day has passed.
pub fn milestones(c: &Case, today: time::Date) -> Vec<Milestone> {
    let base = c
        .first_sick_day
        .as_ref()
        .and_then(Datum::to_date)
        .or_else(|| c.signal_date.to_date())
        .unwrap_or(today);
    let mut next_given = false;
    MILESTONE_WEEKS
        .iter()
        .map(|w| {
            let d = base
                .checked_add(time::Duration::weeks(i64::from(*w)))
                .unwrap_or(time::Date::MAX);
            let state = if d < today {
                MilestoneState::Overdue
            } else if !next_given {
                next_given = true;
                MilestoneState::Next
            } else {
                MilestoneState::Later
            };
            Milestone {
                week: *w,
                date: Datum::from_date(d).as_str().to_owned(),
                state,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn case(signal: &str, sick: Option<&str>) -> Case {
        Case {
            bsn: Bsn::parse("123456782").expect("bsn"),
            gemeente: "0363".into(),
            signal_date: Datum::parse(signal).expect("date"),
            first_sick_day: sick.map(|s| Datum::parse(s).expect("date")),
            provisions: vec![],
            source: "x".into(),
        }
    }

    #[test]
    fn milestones_count_weeks_from_sick_day_or_signal_and_flag_overdue() {
        // Signal on Monday 2026-01-05: week 6 is 2026-02-16, week 93 is 2027-10-18.
        let m = milestones(&case("20260105", None), date!(2026 - 02 - 16));
        assert_eq!(m[0].date, "20260216");
        assert_eq!(m[0].state, MilestoneState::Next, "due today is not overdue");
        assert_eq!(m[6].date, "20271018");
        let m = milestones(&case("20260105", None), date!(2026 - 02 - 17));
        assert_eq!(
            m.iter().map(|x| x.state).collect::<Vec<_>>()[..3],
            [
                MilestoneState::Overdue,
                MilestoneState::Next,
                MilestoneState::Later
            ]
        );
        // A known first sick day wins over the signal date.
        let m = milestones(&case("20260105", Some("20251201")), date!(2025 - 12 - 01));
        assert_eq!(m[0].date, "20260112");
        assert_eq!(m[1].date, "20260126");
    }

    #[test]
    fn file_names_carry_gemeente_and_day() {
        let f = file_name("Den Haag", "20261122");
        assert_eq!(f, "Den_Haag_LKSRi_rapport_20261122.csv");
        assert_eq!(day_of(&f), Some("20261122"));
        assert_eq!(day_of("../etc/passwd"), None);
        assert_eq!(
            file_name("../x", "20261122"),
            "___x_LKSRi_rapport_20261122.csv"
        );
    }

    #[test]
    fn csv_round_trips_and_bad_rows_are_named() {
        let p = Provision {
            registratienr: Some("R1".into()),
            start: Datum::parse("20250101").expect("d"),
            end: None,
            type_code: Some("24".into()),
            description: None,
            loonwaarde: Some(Percentage::from_hundredths(4550).expect("p")),
        };
        let s = Signal {
            bsn: Bsn::parse("123456782").expect("bsn"),
            gemeente: "0363".into(),
            at: 1_795_000_000,
            message_id: "urn:uuid:1".into(),
            asking_oin: "00000099000000000002".into(),
            provisions: vec![p.clone(), p.clone()],
        };
        let text = write_csv(&[s]);
        assert!(text.starts_with(&HEADER.join(";")), "{text}");
        assert!(text.contains(";45.50\n"), "{text}");
        let cases = read_csv("f.csv", text.as_bytes()).expect("reads");
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].provisions, vec![p], "duplicate rows fold");
        let bad = text.replace("123456782", "123456781");
        let e = read_csv("f.csv", bad.as_bytes()).expect_err("11-test");
        assert!(
            e[0].starts_with("f.csv:2: Burgerservicenr: \"123456781\""),
            "{e:?}"
        );
        assert!(read_csv("f.csv", b"a;b\n").is_err());
    }

    const ROW: &str = "123456782;0363;20261122;2026-11-22T09:15:00Z;uwv-1;00000001234567890000;LKS-77;24;20250101;;45.50";

    fn file(rows: &[&str]) -> String {
        let mut s = HEADER.join(";") + "\n";
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    #[test]
    fn a_published_file_becomes_signals_one_per_question() {
        let second = ROW.replace(
            "LKS-77;24;20250101;;45.50",
            "LKS-78;24;20250301;20251231;30.00",
        );
        let other = ROW
            .replace("123456782", "111222333")
            .replace("uwv-1", "uwv-2");
        let today = date!(2026 - 11 - 22);
        let got = read_signals(
            "u.csv",
            file(&[ROW, &second, ROW, &other]).as_bytes(),
            "0363",
            today,
        )
        .expect("valid");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].provisions.len(), 2, "a repeated row folds");
        assert_eq!(
            (got[0].message_id.as_str(), got[0].asking_oin.as_str()),
            ("uwv-1", "00000001234567890000")
        );
        // The portal writes it back in the same layout, day and time kept.
        let again = write_csv(&got);
        assert!(
            again.contains("123456782;0363;20261122;2026-11-22T09:15:00.000Z;uwv-1;"),
            "{again}"
        );
        assert_eq!(
            read_signals("u.csv", again.as_bytes(), "0363", today).expect("again"),
            got
        );
    }

    #[test]
    fn a_published_file_with_any_bad_row_is_refused_with_every_problem_named() {
        let today = date!(2026 - 11 - 22);
        for (rows, says) in [
            (vec![ROW, &ROW.replace("123456782", "123456781")], "u.csv:3: Burgerservicenr"),
            (vec![&ROW.replace(";0363;", ";0599;")], "u.csv:2: CdPartijSuwi: \"0599\": the file is published for gemeente 0363"),
            (vec![&ROW.replace("2026-11-22T09", "2026-11-21T09")], "u.csv:2: TijdstipSignaal: \"2026-11-21T09:15:00Z\": is not on DatumSignaal 20261122"),
            (vec![&ROW.replace("2026-11-22T09:15:00Z", "gisteren")], "TijdstipSignaal: \"gisteren\": must be ISO 8601"),
            (vec![&ROW.replace("00000001234567890000", "123")], "OINVrager: \"123\""),
            (vec![&ROW.replace(";45.50", ";")], "PercLoonwaardeTovWml"),
            (vec![], "no signal rows"),
        ] {
            let e = read_signals("u.csv", file(&rows).as_bytes(), "0363", today)
                .expect_err(says);
            assert!(e.iter().any(|l| l.contains(says)), "{says}: {e:?}");
        }
        let e = read_signals(
            "u.csv",
            file(&[ROW]).as_bytes(),
            "0363",
            date!(2026 - 11 - 21),
        )
        .expect_err("future");
        assert!(e[0].contains("in the future"), "{e:?}");
        let e = read_signals("u.csv", ROW.as_bytes(), "0363", today).expect_err("no header");
        assert!(e[0].starts_with("u.csv:1: header"), "{e:?}");
    }
}
