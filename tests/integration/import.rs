//! `dkd import`: formats, validation (one failing row per rule), full vs delta, idempotence,
//! atomicity (including SIGKILL mid-import), retention and the toets at their boundaries.

use crate::common::{backends, temp_store};
use dkd::import::{csv_format, import, Format, Mode, Options, Report, Rules};
use dkd::store::Store;
use dkd::suwiml::model::Person;
use dkd::suwiml::types::Bsn;
use std::collections::BTreeSet;

fn opts(mode: Mode, gemeente: Option<&str>) -> Options {
    Options {
        format: Format::Csv,
        mode,
        gemeente: gemeente.map(str::to_owned),
        dry_run: false,
        strict: false,
        rules: Rules {
            lks_type_codes: vec!["24".into()],
            max_future_days: 366,
        },
        purge: true,
        window_days: 730,
        today: time::macros::date!(2026 - 01 - 15),
    }
}

fn run(store: &Store, csv: &str, o: &Options) -> Report {
    import(store, "test.csv", csv.as_bytes(), o, &mut |_| {}).expect("import runs")
}

const HEADER: &str = "bsn,gemeentecode,voornamen,voorletters,voorvoegsel,achternaam,geslacht,geboortedatum,cd_arbeidsvermogen,cd_doel_rv,cd_vestiging,registratienr,datum_begin,datum_einde,cd_type,omschrijving,loonwaarde,actie\n";

fn row(bsn: &str, start: &str, end: &str, lw: &str) -> String {
    format!("{bsn},0363,Jan,J,,Jansen,1,19800101,01,1,,R{bsn},{start},{end},24,Loonkostensubsidie,{lw},\n")
}

fn demo_csv(n: usize) -> (Vec<Person>, String) {
    let people = dkd::chain::demo::generate(n, time::macros::date!(2026 - 01 - 15));
    let mut s = String::new();
    csv_format::write(&people, &mut s);
    (people, s)
}

fn relaties(p: &Person) -> BTreeSet<String> {
    p.atl_relaties
        .iter()
        .map(|r| serde_json::to_string(r).expect("json"))
        .collect()
}

#[test]
fn csv_round_trip_restores_every_person() {
    for backend in backends() {
        let store = temp_store(backend);
        let (people, csv) = demo_csv(200);
        let r = run(&store, &csv, &opts(Mode::Delta, None));
        assert!(r.rejected.is_empty(), "{:?}", r.rejected.first());
        assert!(r.applied);
        assert!(
            r.expired > 0,
            "the demo set has persons outside the look-back"
        );
        let today = time::macros::date!(2026 - 01 - 15);
        for p in &people {
            let got = store.get(&p.bsn).expect("get");
            if p.atl_relaties.iter().all(|r| {
                let one = Person {
                    atl_relaties: vec![r.clone()],
                    ..p.clone()
                };
                !dkd::retention::in_index(&one, 730, today)
            }) {
                assert!(got.is_none(), "expired persons are not entered");
                continue;
            }
            let got = got.expect("present");
            let p = &Person {
                atl_relaties: p
                    .atl_relaties
                    .iter()
                    .filter(|r| {
                        dkd::retention::in_index(
                            &Person {
                                atl_relaties: vec![(*r).clone()],
                                ..p.clone()
                            },
                            730,
                            today,
                        )
                    })
                    .cloned()
                    .collect(),
                ..p.clone()
            };
            assert_eq!(
                (got.bsn, &got.achternaam, got.geboortedat),
                (p.bsn, &p.achternaam, p.geboortedat)
            );
            assert_eq!(relaties(&got), relaties(p));
        }
    }
}

#[test]
fn importing_the_same_file_twice_changes_nothing() {
    for backend in backends() {
        let store = temp_store(backend);
        let (_, csv) = demo_csv(100);
        let first = run(&store, &csv, &opts(Mode::Delta, None));
        let mutations = store.mutations_since(0).count();
        let second = run(&store, &csv, &opts(Mode::Delta, None));
        assert_eq!(
            (
                second.counts.added,
                second.counts.changed,
                second.counts.removed
            ),
            (0, 0, 0)
        );
        assert_eq!(second.counts.unchanged, first.counts.added);
        assert_eq!(
            store.mutations_since(0).count(),
            mutations,
            "no new change records"
        );
    }
}

#[test]
fn full_mode_replaces_the_gemeente_set_but_keeps_rejected_persons() {
    for backend in backends() {
        let store = temp_store(backend);
        let a = format!(
            "{HEADER}{}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("111222333", "20240101", "", "50"),
            row("999999990", "20240101", "", "50")
        );
        run(&store, &a, &opts(Mode::Full, Some("0363")));
        assert_eq!(store.gemeente_bsns("0363").expect("bsns").len(), 3);
        // 111222333 is gone from the file; 999999990's row is broken (loonwaarde 101).
        let b = format!(
            "{HEADER}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("999999990", "20240101", "", "101")
        );
        let r = run(&store, &b, &opts(Mode::Full, Some("0363")));
        assert_eq!(r.counts.removed, 1);
        assert_eq!(r.rejected.len(), 1);
        let left: Vec<String> = store
            .gemeente_bsns("0363")
            .expect("bsns")
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            left,
            vec!["123456782", "999999990"],
            "a rejected person keeps its entry"
        );
        let m = store
            .mutations_since(0)
            .filter_map(Result::ok)
            .filter(|m| m.change == dkd::store::Change::Removed)
            .count();
        assert_eq!(m, 1, "the removal is recorded");
    }
}

#[test]
fn full_mode_needs_a_single_gemeente() {
    for backend in backends() {
        let store = temp_store(backend);
        let (_, csv) = demo_csv(50);
        let e = import(
            &store,
            "t.csv",
            csv.as_bytes(),
            &opts(Mode::Full, None),
            &mut |_| {},
        )
        .expect_err("refused");
        assert!(e.to_string().contains("--gemeente"), "{e}");
        assert!(store.is_empty());
    }
}

#[test]
fn delta_mode_upserts_and_deletes() {
    for backend in backends() {
        let store = temp_store(backend);
        let a = format!(
            "{HEADER}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("111222333", "20240101", "", "50")
        );
        run(&store, &a, &opts(Mode::Delta, None));
        let b = format!(
            "{HEADER}{}111222333,0363,,,,,,,,,,,,,,,,delete\n",
            row("123456782", "20240101", "20250101", "45.50")
        );
        let r = run(&store, &b, &opts(Mode::Delta, None));
        assert_eq!(
            (r.counts.changed, r.counts.removed),
            (1, 1),
            "{:?}",
            r.rejected
        );
        assert!(store
            .get(&Bsn::parse("111222333").expect("bsn"))
            .expect("get")
            .is_none());
    }
}

#[test]
fn strict_and_dry_run_write_nothing() {
    for backend in backends() {
        let store = temp_store(backend);
        let f = format!(
            "{HEADER}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("123456781", "20240101", "", "50")
        );
        let mut o = opts(Mode::Delta, None);
        o.strict = true;
        let r = run(&store, &f, &o);
        assert!(!r.applied && store.is_empty() && r.rejected.len() == 1);
        let mut o = opts(Mode::Delta, None);
        o.dry_run = true;
        let r = run(&store, &f, &o);
        assert!(!r.applied && store.is_empty());
        assert_eq!(r.counts.added, 1, "a dry run still counts");
        assert!(store.imports().expect("history").is_empty());
    }
}

/// Large enough that the change set writes while it is built: the last person fails the domain
/// checks after chunks were written, and a strict import must roll them back.
#[test]
fn a_large_strict_import_rejected_at_its_last_person_writes_nothing() {
    for backend in backends() {
        let store = temp_store(backend);
        let (_, csv) = demo_csv(3000);
        let f = format!("{csv}{}", row("123456782", "20240101", "", ""));
        let mut o = opts(Mode::Delta, None);
        o.strict = true;
        let r = run(&store, &f, &o);
        assert!(!r.applied && !r.rejected.is_empty());
        assert!(r.counts.added > 1024, "must be journaled: {:?}", r.counts);
        assert!(store.is_empty());
        assert_eq!(store.mutations_since(0).count(), 0);
        let mut o = opts(Mode::Delta, None);
        o.dry_run = true;
        let r = run(&store, &csv, &o);
        assert!(!r.applied && store.is_empty() && r.counts.added > 1024);
        assert!(store.imports().expect("history").is_empty());
    }
}

#[test]
fn every_validation_rule_rejects_its_row_with_a_precise_message() {
    for backend in backends() {
        let store = temp_store(backend);
        let ok = |bsn: &str| row(bsn, "20240101", "", "45.50");
        let cases: Vec<(String, &str, &str)> = vec![
            (ok("123456781"), "bsn", "11-test"),
            (ok("12345678"), "bsn", "9 digits"),
            (
                row("123456782", "20230230", "", "45.50"),
                "datum_begin",
                "does not exist",
            ),
            (
                row("123456782", "20240101", "20231231", "45.50"),
                "datum_einde",
                "before datum_begin",
            ),
            (
                row("123456782", "20990101", "", "45.50"),
                "datum_begin",
                "in the future",
            ),
            (
                row("123456782", "20240101", "", "100.01"),
                "loonwaarde",
                "0.00 and 100.00",
            ),
            (
                row("123456782", "20240101", "", "45.505"),
                "loonwaarde",
                "two decimals",
            ),
            (
                row("123456782", "20240101", "", ""),
                "loonwaarde",
                "must carry its loonwaarde",
            ),
            (
                ok("123456782").replace(",J,,", ",j,,"),
                "voorletters",
                "capitals",
            ),
            (
                ok("123456782").replace("Jansen", "Jansen2"),
                "achternaam",
                "digits",
            ),
            (
                ok("123456782").replace(",0363,", ",363,"),
                "gemeentecode",
                "4 digits",
            ),
            (
                ok("123456782").replace(",24,", ",2,"),
                "cd_type",
                "exactly 2",
            ),
            (
                ok("123456782").replace(",19800101,", ",19800132,"),
                "geboortedatum",
                "day must be",
            ),
            (
                ok("123456782").replace(
                    "Loonkostensubsidie,45.50,",
                    "Loonkostensubsidie,45.50,remove",
                ),
                "actie",
                "delete",
            ),
        ];
        for (line, field, reason) in cases {
            let r = run(&store, &format!("{HEADER}{line}"), &opts(Mode::Delta, None));
            let rej = r
                .rejected
                .first()
                .unwrap_or_else(|| panic!("not rejected: {line}"));
            assert_eq!(
                (rej.line, rej.field.as_str()),
                (2, field),
                "{line}: {rej:?}"
            );
            assert!(rej.reason.contains(reason), "{line}: {rej:?}");
            assert!(
                store.is_empty(),
                "{line}: nothing written for a rejected person"
            );
        }
    }
}

#[test]
fn a_bad_row_rejects_the_whole_person_and_conflicting_rows_are_named() {
    for backend in backends() {
        let store = temp_store(backend);
        let f = format!(
            "{HEADER}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("123456782", "20240101", "20231231", "45.50")
        );
        let r = run(&store, &f, &opts(Mode::Delta, None));
        assert!(store.is_empty(), "no half person");
        assert_eq!(r.rejected.len(), 2, "{:?}", r.rejected);
        let f = format!(
            "{HEADER}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("123456782", "20240201", "", "45.50").replace("Jansen", "Janssen")
        );
        let r = run(&store, &f, &opts(Mode::Delta, None));
        assert!(
            r.rejected
                .iter()
                .any(|x| x.line == 3 && x.field == "achternaam" && x.reason.contains("line 2")),
            "{:?}",
            r.rejected
        );
    }
}

#[test]
fn unknown_columns_refuse_the_file() {
    for backend in backends() {
        let store = temp_store(backend);
        let e = import(
            &store,
            "t.csv",
            b"bsn,gemeentecode,loonwaarden\n123456782,0363,50\n",
            &opts(Mode::Delta, None),
            &mut |_| {},
        )
        .expect_err("refused");
        assert!(e.to_string().contains("loonwaarden"), "{e}");
    }
}

#[test]
fn semicolon_files_and_bom_are_read() {
    for backend in backends() {
        let store = temp_store(backend);
        let f = format!(
            "\u{feff}{}{}",
            HEADER.replace(',', ";"),
            row("123456782", "20240101", "", "45,50")
                .replace(',', ";")
                .replace("45;50", "45,50")
        );
        let r = run(&store, &f, &opts(Mode::Delta, None));
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        let p = store
            .get(&Bsn::parse("123456782").expect("bsn"))
            .expect("get")
            .expect("present");
        assert_eq!(
            p.atl_relaties[0].provisions[0].loonwaarde.map(|l| l.wire()),
            Some("04550".into())
        );
    }
}

#[test]
fn xml_import_equals_csv_import() {
    let (people, csv) = demo_csv(60);
    let a = Store::temporary().expect("store");
    run(&a, &csv, &opts(Mode::Delta, None));
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dkd:Aanlevering xmlns:dkd=\"urn:dkd:aanlevering:v1\">\n");
    for p in &people {
        let mut body = String::new();
        dkd::suwiml::gsd::write_response(
            &dkd::suwiml::gsd::Reply::Client(Box::new(p.clone()), vec![]),
            "",
            &mut body,
        );
        let start = body.find("<ClientSuwi>").expect("client");
        let end = body.find("</ClientSuwi>").expect("/client") + "</ClientSuwi>".len();
        xml.push_str(&body[start..end]);
        xml.push('\n');
    }
    xml.push_str("</dkd:Aanlevering>\n");
    let b = Store::temporary().expect("store");
    let mut o = opts(Mode::Delta, None);
    o.format = Format::Xml;
    let r = import(&b, "t.xml", xml.as_bytes(), &o, &mut |_| {}).expect("xml import");
    assert!(r.rejected.is_empty(), "{:?}", r.rejected.first());
    for p in &people {
        assert_eq!(
            a.get(&p.bsn).expect("a").map(|x| relaties(&x)),
            b.get(&p.bsn).expect("b").map(|x| relaties(&x))
        );
    }
    // A broken element is reported with its line.
    let bad = xml.replacen("<Burgerservicenr>9999", "<Burgerservicenr>8999", 1);
    let r = import(
        &Store::temporary().expect("store"),
        "t.xml",
        bad.as_bytes(),
        &o,
        &mut |_| {},
    )
    .expect("runs");
    assert_eq!(
        r.rejected.first().map(|x| (x.line, x.field.as_str())),
        Some((3, "Burgerservicenr")),
        "{:?}",
        r.rejected.first()
    );
}

#[test]
fn sweep_and_answers_follow_the_same_clock_at_the_boundary() {
    for backend in backends() {
        let store = temp_store(backend);
        let today = time::OffsetDateTime::now_utc().date();
        let ended = |days: i64| {
            dkd::suwiml::types::Datum::from_date(today - time::Duration::days(days))
                .as_str()
                .to_owned()
        };
        // Ended exactly 730 days ago: out today. Ended 729 days ago: in until tomorrow.
        let f = format!(
            "{HEADER}{}{}",
            row("123456782", "20200101", &ended(730), "45.50"),
            row("111222333", "20200101", &ended(729), "45.50")
        );
        let mut o = opts(Mode::Delta, None);
        // Imported yesterday, when both were still inside the look-back.
        o.today = today - time::Duration::days(1);
        run(&store, &f, &o);
        let svc = dkd::gemeente::service::Service {
            store: store.clone(),
            dn: "CN=t".into(),
            window_days: 730,
        };
        let gone = Bsn::parse("123456782").expect("bsn");
        let kept = Bsn::parse("111222333").expect("bsn");
        assert_eq!(
            svc.reintegratie_info(&gone),
            dkd::suwiml::gsd::Reply::NietsGevonden,
            "not answered, even before the sweep"
        );
        assert!(matches!(
            svc.reintegratie_info(&kept),
            dkd::suwiml::gsd::Reply::Client(..)
        ));
        let r = dkd::gemeente::service::sweep(&store, 730, true, today, false).expect("sweep");
        assert_eq!((r.examined, r.removed), (2, 1));
        assert!(store.entries(&gone).expect("e").is_empty());
        let r = dkd::gemeente::service::sweep(
            &store,
            730,
            true,
            today + time::Duration::days(1),
            false,
        )
        .expect("sweep");
        assert_eq!(r.removed, 1, "the other leaves one day later");
    }
}

// Regression tests for problems found by trying the importer on realistic files.

#[test]
fn rows_after_a_rejected_first_row_are_not_reported_as_conflicts() {
    for backend in backends() {
        let store = temp_store(backend);
        let f = format!(
            "{HEADER}{}{}",
            row("123456782", "20241331", "", "45.50"),
            row("123456782", "20240101", "", "45.50")
        );
        let r = run(&store, &f, &opts(Mode::Delta, None));
        let second = r
            .rejected
            .iter()
            .find(|x| x.line == 3)
            .expect("line 3 reported");
        assert!(
            second.reason.contains("another row of this person"),
            "{second:?}"
        );
    }
}

#[test]
fn full_mode_ignores_a_mistyped_gemeentecode_when_choosing_the_gemeente() {
    for backend in backends() {
        let store = temp_store(backend);
        let f = format!(
            "{HEADER}{}{}",
            row("123456782", "20240101", "", "45.50"),
            row("111222333", "20240101", "", "45.50").replace(",0363,", ",363,")
        );
        let r = run(&store, &f, &opts(Mode::Full, None));
        assert!(r.applied);
        assert_eq!(
            r.rejected
                .iter()
                .map(|x| (x.line, x.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(3, "gemeentecode")]
        );
    }
}

fn xml_opts(mode: Mode) -> Options {
    Options {
        format: Format::Xml,
        ..opts(mode, None)
    }
}

#[test]
fn xml_gemeentecode_attribute_governs_a_full_import() {
    for backend in backends() {
        let store = temp_store(backend);
        let (people, _) = demo_csv(30);
        let mine: Vec<&Person> = people
            .iter()
            .filter(|p| p.atl_relaties.iter().all(|r| r.bron.partij == "0599"))
            .collect();
        let other = people
            .iter()
            .find(|p| p.atl_relaties.iter().all(|r| r.bron.partij == "0363"))
            .expect("a 0363 person");
        let mut xml = String::from(
            "<dkd:Aanlevering xmlns:dkd=\"urn:dkd:aanlevering:v1\" gemeentecode=\"0599\">\n",
        );
        for p in mine.iter().copied().chain(std::iter::once(other)) {
            let mut body = String::new();
            dkd::suwiml::gsd::write_response(
                &dkd::suwiml::gsd::Reply::Client(Box::new(p.clone()), vec![]),
                "",
                &mut body,
            );
            let (a, b) = (
                body.find("<ClientSuwi>").expect("a"),
                body.find("</ClientSuwi>").expect("b"),
            );
            xml.push_str(&body[a..b + 13]);
            xml.push('\n');
        }
        xml.push_str("</dkd:Aanlevering>\n");
        let r = import(
            &store,
            "t.xml",
            xml.as_bytes(),
            &xml_opts(Mode::Full),
            &mut |_| {},
        )
        .expect("no --gemeente needed");
        assert!(
            r.rejected
                .iter()
                .any(|x| x.field.contains("CdPartijSuwi") && x.value == "0363"),
            "{:?}",
            r.rejected
        );
        assert!(
            store.gemeente_bsns("0363").expect("bsns").is_empty(),
            "another gemeente's person is not imported"
        );
        let empty = "<dkd:Aanlevering xmlns:dkd=\"urn:dkd:aanlevering:v1\" gemeentecode=\"0599\"/>";
        let r = import(
            &store,
            "e.xml",
            empty.as_bytes(),
            &xml_opts(Mode::Full),
            &mut |_| {},
        )
        .expect("empty full file for 0599");
        assert!(r.counts.removed > 0 && store.gemeente_bsns("0599").expect("bsns").is_empty());
    }
}

#[test]
fn full_mode_keeps_an_xml_person_that_was_rejected() {
    for backend in backends() {
        let store = temp_store(backend);
        run(
            &store,
            &format!("{HEADER}{}", row("123456782", "20240101", "", "45.50")),
            &opts(Mode::Full, Some("0363")),
        );
        let xml = "<dkd:Aanlevering xmlns:dkd=\"urn:dkd:aanlevering:v1\" gemeentecode=\"0363\"><ClientSuwi><Burgerservicenr>123456782</Burgerservicenr><Voorletters>jw</Voorletters></ClientSuwi></dkd:Aanlevering>";
        let r = import(
            &store,
            "t.xml",
            xml.as_bytes(),
            &xml_opts(Mode::Full),
            &mut |_| {},
        )
        .expect("runs");
        assert!(!r.rejected.is_empty());
        assert_eq!(r.counts.removed, 0, "{:?}", r.rejected);
        assert_eq!(store.gemeente_bsns("0363").expect("bsns").len(), 1);
    }
}

#[test]
fn a_delta_import_without_gemeente_shows_in_the_report() {
    for backend in backends() {
        let store = temp_store(backend);
        run(
            &store,
            &format!("{HEADER}{}", row("123456782", "20240101", "", "45.50")),
            &opts(Mode::Delta, None),
        );
        let rep = dkd::report::build(&store, 730, time::OffsetDateTime::now_utc().date())
            .expect("report");
        assert_eq!(rep.len(), 1);
        assert_eq!(
            rep[0].last_import.as_ref().map(|i| i.file.as_str()),
            Some("test.csv")
        );
    }
}

#[test]
fn a_loonwaarde_on_a_non_lks_type_and_a_foreign_kolom_are_refused() {
    for backend in backends() {
        let store = temp_store(backend);
        let r = run(
            &store,
            &format!(
                "{HEADER}{}",
                row("123456782", "20240101", "", "45").replace(",24,", ",30,")
            ),
            &opts(Mode::Delta, None),
        );
        assert_eq!(
            r.rejected.first().map(|x| x.field.as_str()),
            Some("loonwaarde"),
            "{:?}",
            r.rejected
        );
        let (people, _) = demo_csv(1);
        let mut p = people[0].clone();
        for r in &mut p.atl_relaties {
            r.bron.kolom = 1;
        }
        let rules = Rules {
            lks_type_codes: vec!["24".into()],
            max_future_days: 366,
        };
        let problems = dkd::import::domain_checks(&p, &rules, time::macros::date!(2026 - 01 - 15));
        assert!(
            problems.iter().any(|(f, _, _)| f == "CdKolomSuwi"),
            "{problems:?}"
        );
    }
}
