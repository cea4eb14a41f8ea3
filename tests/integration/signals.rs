//! Issue 8: a batch-delivery gemeente and a webservice gemeente answered together by the IB, the
//! "Toets LKS" signal the question leaves, the LKSRi portal and the gemeente fetching it.

use crate::chain::*;
use crate::common::*;
use dkd::config::IbGemeenteConfig;
use dkd::ib::Delivery;
use dkd::store::Store;
use dkd::suwiml::types::Datum;
use std::time::Duration;

async fn ask(ib: &Node, bsn: &str, message_id: &str) -> String {
    let p = pki();
    let signer = dkd::soap::wssec::Signer::load(&p.path("client.pem"), &p.path("client-key.pem"))
        .expect("signer");
    let req = dkd::soap::signed_request(
        &signer,
        &ib.url,
        ALLOWED_OIN,
        bsn,
        message_id,
        time::OffsetDateTime::now_utc(),
    )
    .expect("sign");
    let r = post(&ib.url, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn batch_import(store: &Store, gemeente: &str, people: &[dkd::suwiml::model::Person]) {
    let mut csv = String::new();
    dkd::import::csv_format::write(people, &mut csv);
    let today = time::OffsetDateTime::now_utc().date();
    let opts = dkd::import::Options {
        format: dkd::import::Format::Csv,
        mode: dkd::import::Mode::Full,
        gemeente: Some(gemeente.into()),
        dry_run: false,
        strict: false,
        rules: dkd::import::Rules {
            lks_type_codes: vec!["24".into()],
            max_future_days: 366,
        },
        purge: true,
        window_days: 730,
        today,
    };
    let r = dkd::import::import(
        store,
        "verzamelbestand.csv",
        csv.as_bytes(),
        &opts,
        &mut |_| {},
    )
    .expect("batch import");
    assert!(r.rejected.is_empty(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_webservice_merged_signal_recorded_and_fetched_once() {
    for backend in backends() {
        let (ib_port, a_port) = (free_port(), free_port());
        let ib_dir = tempfile::tempdir().expect("dir");
        let mut ib_cfg = ib_config(ib_dir.path(), ib_port, &[("0363", a_port)]);
        for (code, name) in [("0599", "Rotterdam"), ("0518", "Den Haag")] {
            ib_cfg.ib.gemeenten.push(IbGemeenteConfig {
                code: code.into(),
                name: name.into(),
                oins: vec![SECOND_OIN.into()],
                url: None,
                delivery: Delivery::Batch,
            });
        }
        let settings = dkd::app::ib_settings(&ib_cfg);
        let ib = start_on(backend, ib_dir, ib_cfg).await;

        let a_dir = tempfile::tempdir().expect("dir");
        let mut a_cfg = gemeente_config(a_dir.path(), a_port, ib_port);
        a_cfg.signals.portal = format!("http://{}/portal", ib.ops);
        a_cfg.signals.fetch_interval_secs = 0;
        let a = start_on(backend, a_dir, a_cfg.clone()).await;

        let both = "123456782";
        a.store.put(&person(both, &["0363"]), "test").expect("put");
        // Rotterdam delivers a verzamelbestand to the IB instead of running a webservice.
        batch_import(&ib.store, "0599", &[person(both, &["0599"])]);
        wait_until("the webservice gemeente pushed", 30, || {
            a.store.outbox_status().is_ok_and(|s| s.pending == 0)
        })
        .await;

        let answer = ask(&ib, both, "urn:uuid:5e1c7a00-0000-4000-8000-0000000000aa").await;
        let doc = dkd::xml::parse(answer.as_bytes()).expect("xml");
        let mut regs = Vec::new();
        fn walk(e: &dkd::xml::Element, out: &mut Vec<String>) {
            if e.local == "RegistratienrRvGsd" {
                out.push(e.text());
            }
            e.elements().for_each(|c| walk(c, out));
        }
        walk(&doc, &mut regs);
        assert_eq!(regs, ["LKS-0363", "LKS-0599"], "{answer}");
        // In the Body: the signature's base64 (the certificate, the values) may spell "FWI".
        assert!(!body_child(&answer).contains("FWI"), "{answer}");
        validate_official(&body_child(&answer), Schema::Response);

        // The monitor: Rotterdam's delivery is current, Den Haag never delivered (stale).
        let today = time::OffsetDateTime::now_utc().date();
        let report = dkd::report::build_ib(&ib.store, &settings, today).expect("report");
        let row = |g: &str| {
            report
                .iter()
                .find(|r| r.gemeente == g)
                .expect("row")
                .clone()
        };
        assert_eq!((row("0599").bsns, row("0599").stale), (1, false));
        assert!(row("0599").last_delivery.is_some());
        assert_eq!(row("0599").newest_mutation, row("0599").last_delivery);
        assert!(row("0518").stale);
        assert!(dkd::report::ib_table(&report).contains("batch STALE"));

        // The question found running LKS: one signal per responsible gemeente.
        let day = Datum::from_date(today);
        for g in ["0363", "0599"] {
            let s = ib.store.ib_signals(g, day.as_str()).expect("signals");
            assert_eq!(s.len(), 1, "{g}");
            assert_eq!(s[0].asking_oin, ALLOWED_OIN);
            assert_eq!(
                s[0].message_id,
                "urn:uuid:5e1c7a00-0000-4000-8000-0000000000aa"
            );
        }

        // The portal on the ops listener (loopback): the list, then the CSV.
        let (status, list) = http_get(ib.ops, "/portal/0363/lksri").await;
        assert_eq!(status, 200, "{list}");
        let file = format!("Gemeente_0363_LKSRi_rapport_{}.csv", day.as_str());
        assert!(list.contains(&file), "{list}");
        let (status, csv) = http_get(ib.ops, &format!("/portal/0363/lksri/{file}")).await;
        assert_eq!(status, 200, "{csv}");
        let normalised: String = csv
            .lines()
            .map(|l| {
                let mut f: Vec<String> = l.split(';').map(str::to_owned).collect();
                if f[2] != "DatumSignaal" {
                    f[2] = "<today>".into();
                    f[3] = "<time>".into();
                    f[8] = "<start>".into();
                }
                f.join(";") + "\n"
            })
            .collect();
        golden("lksri_rapport.csv", &normalised);
        assert_eq!(
            http_get(ib.ops, "/portal/0363/lksri/other.csv").await.0,
            404
        );
        assert_eq!(http_get(ib.ops, "/portal/9999/lksri").await.0, 404);
        // Over mutual TLS only a certificate with the gemeente's OIN may read it.
        let url = format!("https://127.0.0.1:{ib_port}/portal/0363/lksri");
        let get_as = |cert: &'static str| {
            let url = url.clone();
            async move {
                dkd::http::client::request(
                    client_tls(cert),
                    "GET",
                    &url,
                    &[],
                    vec![],
                    Duration::from_secs(10),
                )
                .await
                .expect("portal")
                .status
            }
        };
        assert_eq!(get_as("server").await, 200);
        assert_eq!(get_as("client").await, 403);

        // The gemeente fetches it: one case, once.
        let f = dkd::app::fetcher(&a_cfg, &a.store)
            .expect("fetcher")
            .expect("portal configured");
        let first = f.fetch().await;
        assert_eq!((first.files.len(), first.new_cases), (1, 1), "{first:?}");
        assert!(first.errors.is_empty(), "{first:?}");
        let again = f.fetch().await;
        assert_eq!((again.files.len(), again.new_cases), (0, 0), "{again:?}");
        // Later the same day another question signals another person: today's report grows, and
        // the next fetch takes it again and adds only the new case.
        let later = "111222333";
        a.store.put(&person(later, &["0363"]), "test").expect("put");
        wait_until("pushed", 30, || {
            a.store.outbox_status().is_ok_and(|s| s.pending == 0)
        })
        .await;
        ask(&ib, later, "urn:uuid:5e1c7a00-0000-4000-8000-0000000000bb").await;
        let grown = f.fetch().await;
        assert_eq!((grown.files.len(), grown.new_cases), (1, 1), "{grown:?}");
        assert_eq!(a.store.cases().expect("cases").len(), 2);
        let cases: Vec<_> = a
            .store
            .cases()
            .expect("cases")
            .into_iter()
            .filter(|c| c.bsn.as_str() == both)
            .collect();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].gemeente, "0363");
        assert_eq!(cases[0].signal_date, day);
        let rows = dkd::report::cases(&cases, today);
        assert_eq!(
            rows[0].milestones[0].state,
            dkd::signals::MilestoneState::Next
        );
        assert_eq!(rows[0].overdue, 0);
        // With a first sick day ten weeks ago, weeks 6 and 8 are overdue.
        let sick = Datum::from_date(today - time::Duration::weeks(10));
        assert_eq!(
            a.store
                .set_first_sick_day(&cases[0].bsn, sick)
                .expect("set"),
            1
        );
        let rows = dkd::report::cases(&a.store.cases().expect("cases"), today);
        let row = rows
            .iter()
            .find(|r| r.case.bsn.as_str() == both)
            .expect("case");
        assert_eq!(row.overdue, 2);
        let (_, page) = http_get(a.ops, "/").await;
        assert!(page.contains("class=\"bad overdue\""), "{page}");
    }
}

/// `dkd signals publish FILE --gemeente CODE` as a user runs it.
fn publish(
    config: &std::path::Path,
    file: &std::path::Path,
    gemeente: &str,
) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dkd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DKD_") {
            c.env_remove(k);
        }
    }
    c.args(["signals", "publish"])
        .arg(file)
        .args(["--gemeente", gemeente, "--config"])
        .arg(config)
        .output()
        .expect("dkd signals publish")
}

async fn publish_async(
    config: &std::path::Path,
    file: &std::path::Path,
    gemeente: &str,
) -> std::process::Output {
    let (config, file, gemeente) = (config.to_owned(), file.to_owned(), gemeente.to_owned());
    tokio::task::spawn_blocking(move || publish(&config, &file, &gemeente))
        .await
        .expect("join")
}

/// Issue 21: in the real chain the Toets LKS signal starts at UWV, not in the IB's routing. The
/// IB role takes such a file in the report layout, checks it whole, and serves it as the
/// gemeente's report; the gemeente's fetch takes it like one the IB derived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_file_from_outside_is_published_served_and_fetched() {
    let (ib_port, admin_port) = (free_port(), free_port());
    let ib_dir = tempfile::tempdir().expect("dir");
    let mut ib_cfg = ib_config(ib_dir.path(), ib_port, &[("0363", free_port())]);
    ib_cfg.admin.listen = format!("127.0.0.1:{admin_port}");
    let files = tempfile::tempdir().expect("dir");
    let config = files.path().join("ib.toml");
    std::fs::write(&config, ib_cfg.to_toml()).expect("config");

    let today = time::OffsetDateTime::now_utc().date();
    let yesterday = today - time::Duration::days(1);
    let row = |bsn: &str, d: time::Date, mid: &str| {
        let day = Datum::from_date(d);
        format!(
            "{bsn};0363;{};{}T09:15:00Z;{mid};00000001234567890000;LKS-77;24;20250101;;45.50\n",
            day.as_str(),
            d
        )
    };
    let write = |name: &str, rows: &[String]| {
        let p = files.path().join(name);
        std::fs::write(&p, dkd::signals::HEADER.join(";") + "\n" + &rows.concat()).expect("write");
        p
    };
    let good = write(
        "lks-overdracht.csv",
        &[row("123456782", yesterday, "uwv-1")],
    );
    // One bad row refuses the whole file: the good row beside it is not stored either.
    let broken = write(
        "broken.csv",
        &[
            row("111222333", yesterday, "uwv-2"),
            row("123456781", yesterday, "uwv-3"),
        ],
    );
    let elsewhere = write(
        "elsewhere.csv",
        &[row("111222333", yesterday, "uwv-2").replace(";0363;", ";0599;")],
    );

    let out = publish(&config, &broken, "0363");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.csv:3: Burgerservicenr: \"123456781\""),
        "{err}"
    );
    assert!(err.contains("nothing stored"), "{err}");
    let out = publish(&config, &elsewhere, "0363");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("published for gemeente 0363"));
    let out = publish(&config, &good, "0599");
    assert_eq!(out.status.code(), Some(2), "unknown gemeente: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in ib.gemeenten"));
    let out = publish(&config, &files.path().join("missing.csv"), "0363");
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // The good file, locally (no server holds the store yet), twice: the second adds nothing.
    let report = format!(
        "Gemeente_0363_LKSRi_rapport_{}.csv",
        Datum::from_date(yesterday).as_str()
    );
    for new in ["1 new", "0 new"] {
        let out = publish(&config, &good, "0363");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            said.contains(&format!("1 signal(s) in lks-overdracht.csv, {new}")),
            "{said}"
        );
        assert!(said.contains(&report), "{said}");
    }

    let ib = start(ib_dir, ib_cfg).await;
    assert_eq!(
        ib.store.ib_signal_days("0363").expect("days"),
        [(Datum::from_date(yesterday).as_str().to_owned(), 1)],
        "only the good file was stored"
    );
    let (status, list) = http_get(ib.ops, "/portal/0363/lksri").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(&report), "{list}");
    let (status, csv) = http_get(ib.ops, &format!("/portal/0363/lksri/{report}")).await;
    assert_eq!(status, 200, "{csv}");
    assert!(
        csv.contains(";uwv-1;00000001234567890000;LKS-77;24;20250101;;45.50"),
        "{csv}"
    );

    // The gemeente's fetch takes it as a vangnetter case dated as the file says.
    let a_dir = tempfile::tempdir().expect("dir");
    let mut a_cfg = gemeente_config(a_dir.path(), free_port(), ib_port);
    a_cfg.signals.portal = format!("http://{}/portal", ib.ops);
    a_cfg.signals.gemeenten = vec!["0363".into()];
    let a_store = Store::temporary().expect("store");
    let f = dkd::app::fetcher(&a_cfg, &a_store)
        .expect("fetcher")
        .expect("portal configured");
    let first = f.fetch().await;
    assert_eq!(
        (first.files.as_slice(), first.new_cases),
        (&[report.clone()][..], 1),
        "{first:?}"
    );
    let cases = a_store.cases().expect("cases");
    assert_eq!(cases[0].bsn.as_str(), "123456782");
    assert_eq!(cases[0].signal_date, Datum::from_date(yesterday));

    // While the IB serves (it holds the store), publish goes through its admin API: same checks,
    // same answer; the next fetch takes the new report.
    let out = publish_async(&config, &broken, "0363").await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.csv:3: Burgerservicenr"));
    let todays = write("vandaag.csv", &[row("111222333", today, "uwv-4")]);
    let out = publish_async(&config, &todays, "0363").await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 new"),
        "{out:?}"
    );
    let next = f.fetch().await;
    assert_eq!((next.files.len(), next.new_cases), (1, 1), "{next:?}");
    assert_eq!(a_store.cases().expect("cases").len(), 2);
}
