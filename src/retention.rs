//! The LKS look-back: how long an entry stays in the verwijsindex, and the "Toets LKS".
//!
//! One clock rule for everything: an entry stays while any of its provisions runs or ended less
//! than the window (default two years) before today. The sweep, GSDReintegratieInfo and
//! `dkd report` all ask [`keep_until`], so they never disagree.

use crate::suwiml::model::{Person, Provision};
use crate::suwiml::types::Datum;
use time::{Date, Duration, Month};

/// The default look-back: two years, per the LKS rule.
pub const DEFAULT_WINDOW_DAYS: u32 = 730;

/// How long an entry stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A provision is still running (or its end is unknown): no end in sight.
    Open,
    /// The entry leaves the index on this day.
    Until(Date),
    /// No provisions: nothing keeps it.
    Never,
}

/// The latest calendar day a `Datum` can stand for (unknown parts at their maximum).
pub fn last_day(d: Datum) -> Option<Date> {
    let s = d.as_str();
    let y: i32 = s[0..4].parse().ok()?;
    if y == 0 {
        return None;
    }
    let m: u8 = s[4..6].parse().ok()?;
    let month = Month::try_from(if m == 0 { 12 } else { m }).ok()?;
    let day: u8 = s[6..8].parse().ok()?;
    let last = time::util::days_in_month(month, y);
    Date::from_calendar_date(y, month, if day == 0 { last } else { day.min(last) }).ok()
}

/// The earliest calendar day a `Datum` can stand for (unknown parts at their minimum).
pub fn first_day(d: Datum) -> Option<Date> {
    let s = d.as_str();
    let y: i32 = s[0..4].parse().ok()?;
    if y == 0 {
        return None;
    }
    let m: u8 = s[4..6].parse().ok()?;
    let day: u8 = s[6..8].parse().ok()?;
    let month = Month::try_from(m.max(1)).ok()?;
    Date::from_calendar_date(y, month, day.max(1)).ok()
}

/// Until when an entry stays in the index, given the window in days.
pub fn keep_until(p: &Person, window_days: u32) -> Keep {
    let mut latest: Option<Date> = None;
    let mut any = false;
    for v in p.atl_relaties.iter().flat_map(|r| &r.provisions) {
        any = true;
        match v.end.map(last_day) {
            None | Some(None) => return Keep::Open,
            Some(Some(e)) => latest = Some(latest.map_or(e, |l| l.max(e))),
        }
    }
    match latest {
        Some(e) => Keep::Until(e + Duration::days(i64::from(window_days))),
        None if any => Keep::Open,
        None => Keep::Never,
    }
}

/// Whether an entry is in the index on `today`.
pub fn in_index(p: &Person, window_days: u32, today: Date) -> bool {
    match keep_until(p, window_days) {
        Keep::Open => true,
        Keep::Until(d) => today < d,
        Keep::Never => false,
    }
}

/// The "Toets LKS": the LKS provisions granted or paid in the `window_days` before `datum`
/// (start on or before the date, and running then or ended at most the window before). Empty
/// means no.
pub fn toets(p: &Person, datum: Date, window_days: u32) -> Vec<&Provision> {
    let from = datum - Duration::days(i64::from(window_days));
    p.atl_relaties
        .iter()
        .flat_map(|r| &r.provisions)
        .filter(|v| v.loonwaarde.is_some())
        .filter(|v| first_day(v.start).is_none_or(|s| s <= datum))
        .filter(|v| match v.end.map(last_day) {
            None | Some(None) => true,
            Some(Some(e)) => e >= from,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suwiml::model::{AtlRelatie, Bron};
    use crate::suwiml::types::{Bsn, Percentage};
    use time::macros::date;

    fn person(provisions: &[(&str, Option<&str>, bool)]) -> Person {
        Person::with_relaties(
            Bsn::parse("123456782").expect("bsn"),
            vec![AtlRelatie {
                arbeidsvermogen: None,
                doel_rv: None,
                provisions: provisions
                    .iter()
                    .map(|(s, e, lks)| Provision {
                        registratienr: None,
                        start: Datum::parse(s).expect("start"),
                        end: e.map(|e| Datum::parse(e).expect("end")),
                        type_code: None,
                        description: None,
                        loonwaarde: lks.then(|| Percentage::saturating(5000)),
                    })
                    .collect(),
                bron: Bron::gemeente("0363"),
            }],
        )
    }

    #[test]
    fn entry_stays_exactly_until_the_window_has_passed() {
        let p = person(&[("20200101", Some("20240315"), true)]);
        assert_eq!(keep_until(&p, 730), Keep::Until(date!(2026 - 03 - 15)));
        assert!(in_index(&p, 730, date!(2026 - 03 - 14)));
        assert!(!in_index(&p, 730, date!(2026 - 03 - 15)));
    }

    #[test]
    fn running_provision_keeps_the_entry_and_the_latest_end_counts() {
        assert_eq!(
            keep_until(
                &person(&[
                    ("20200101", None, true),
                    ("20200101", Some("20200201"), false)
                ]),
                730
            ),
            Keep::Open
        );
        let p = person(&[
            ("20200101", Some("20210101"), true),
            ("20200101", Some("20230601"), false),
        ]);
        assert_eq!(
            keep_until(&p, 730),
            Keep::Until(date!(2025 - 05 - 31)),
            "730 days, across 29 February 2024"
        );
        assert_eq!(keep_until(&person(&[]), 730), Keep::Never);
    }

    #[test]
    fn unknown_date_parts_count_at_their_latest() {
        assert_eq!(
            last_day(Datum::parse("20230000").expect("d")),
            Some(date!(2023 - 12 - 31))
        );
        assert_eq!(
            last_day(Datum::parse("20240200").expect("d")),
            Some(date!(2024 - 02 - 29))
        );
        assert_eq!(
            first_day(Datum::parse("20240200").expect("d")),
            Some(date!(2024 - 02 - 01))
        );
        assert_eq!(
            keep_until(&person(&[("20200101", Some("00000000"), true)]), 730),
            Keep::Open
        );
    }

    #[test]
    fn toets_at_the_boundaries() {
        let p = person(&[("20220101", Some("20240315"), true)]);
        // Ended exactly two years (730 days) before the date: still within the look-back.
        assert_eq!(
            toets(&p, date!(2024 - 03 - 15) + Duration::days(730), 730).len(),
            1
        );
        assert!(toets(&p, date!(2024 - 03 - 15) + Duration::days(731), 730).is_empty());
        // Started after the date: not yet granted then.
        assert!(toets(&p, date!(2021 - 12 - 31), 730).is_empty());
        assert_eq!(toets(&p, date!(2022 - 01 - 01), 730).len(), 1);
        // Only LKS provisions decide.
        assert!(toets(
            &person(&[("20220101", None, false)]),
            date!(2023 - 01 - 01),
            730
        )
        .is_empty());
    }
}
