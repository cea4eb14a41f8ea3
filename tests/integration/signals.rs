//! Issue 8: a batch-delivery gemeente and a webservice gemeente answered together by the IB, the
//! "Toets LKS" signal the question leaves, the LKSRi portal and the gemeente fetching it.

use crate::chain::*;
use crate::common::*;
use dkd::config::IbGemeenteConfig;
use dkd::service::ib::Delivery;
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
    let ib = start(ib_dir, ib_cfg).await;

    let a_dir = tempfile::tempdir().expect("dir");
    let mut a_cfg = gemeente_config(a_dir.path(), a_port, ib_port);
    a_cfg.signals.portal = format!("http://{}/portal", ib.ops);
    a_cfg.signals.fetch_interval_secs = 0;
    let a = start(a_dir, a_cfg.clone()).await;

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
    assert!(!answer.contains("FWI"), "{answer}");
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
