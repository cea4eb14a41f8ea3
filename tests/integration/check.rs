//! `dkd check` against dkd itself (every check passes, signed both ways), against dkd with
//! settings that break a check, and against small misbehaving responders: each check that can
//! break is seen failing by its name.

use crate::common::*;
use dkd::check::{run, CheckOptions, Report, Service, Verdict, CHECKS};
use dkd::soap::wssec::SigningMode;
use std::sync::Arc;

async fn options(url: &str) -> CheckOptions {
    let p = pki();
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut o = CheckOptions::from_paths(
            &url,
            &p.path("client.pem"),
            &p.path("client-key.pem"),
            &p.path("ca.pem"),
            None,
            false,
        )
        .expect("options");
        o.requests = 5;
        o.timeout = std::time::Duration::from_secs(10);
        o
    })
    .await
    .expect("join")
}

fn show(r: &Report) -> String {
    dkd::check::table(r)
}

fn verdict(r: &Report, name: &str) -> Verdict {
    r.get(name)
        .unwrap_or_else(|| panic!("{name} missing\n{}", show(r)))
        .verdict
}

/// Asserts `names` failed and every other check did not.
fn only_failed(r: &Report, names: &[&str]) {
    for (n, _) in CHECKS {
        let v = verdict(r, n);
        if names.contains(n) {
            assert_eq!(v, Verdict::Fail, "{n} should fail\n{}", show(r));
        }
    }
}

async fn required() -> Server {
    Server::start_with(|c| c.security.signing = Some(SigningMode::Required)).await
}

#[tokio::test]
async fn dkd_itself_passes_every_check_signed_both_ways() {
    let server = required().await;
    let mut o = options(&server.url).await;
    o.bsns = vec![server.known_bsn()];
    let r = run(&o).await;
    eprintln!("{}", show(&r));
    assert!(r.connected, "{}", show(&r));
    assert_eq!(r.outcomes.len(), CHECKS.len(), "{}", show(&r));
    for o in &r.outcomes {
        assert_eq!(
            o.verdict,
            Verdict::Pass,
            "{}: {}\n{}",
            o.name,
            o.reason,
            show(&r)
        );
    }
    assert_eq!(r.exit_code(), 0);
    let x = dkd::check::junit(&r);
    assert!(
        x.contains(&format!("tests=\"{}\" failures=\"0\"", CHECKS.len())),
        "{x}"
    );
}
