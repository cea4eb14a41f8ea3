//! Several instances on one PostgreSQL database serve one verwijsindex: they share the replay
//! cache and run the periodic work once per interval between them.

use crate::common::*;
use crate::ops::Cuttable;
use dkd::config::{Config, IbGemeenteConfig, Role};
use dkd::ib::Delivery;
use dkd::soap::wssec::{Signer, SigningMode};
use time::OffsetDateTime;

/// The one name both instances are reached by, as two nodes behind a load balancer are.
const FRONT: &str = "https://verwijsindex.example/GSDDossierReintegratie-v0200";

const NEEDS_PG: &str = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)";

fn pg_schema() -> Option<(dkd::store::TempSchema, String)> {
    let Some(url) = pg_url() else {
        skip(NEEDS_PG);
        return None;
    };
    Some(dkd::store::TempSchema::create(&url).expect("a schema on DKD_TEST_PG_URL"))
}

/// An instance on the database at `url`, signing required, reachable as [`FRONT`] too.
async fn instance(url: &str, tweak: impl FnOnce(&mut Config)) -> Server {
    Server::start_on(Backend::Postgres, |c| {
        c.store.url = Some(url.to_owned());
        c.security.signing = Some(SigningMode::Required);
        c.server.to_aliases = vec![FRONT.into()];
        tweak(c);
    })
    .await
}

fn signed_to_front(bsn: &str, created: OffsetDateTime) -> String {
    let p = pki();
    let signer =
        Signer::load(&p.path("client.pem"), &p.path("client-key.pem")).expect("client signer");
    let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    dkd::soap::signed_request(&signer, FRONT, ALLOWED_OIN, bsn, &id, created).expect("sign")
}

async fn fault_code(url: &str, xml: &str) -> (String, String) {
    let r = post(url, xml).await;
    assert_eq!(r.status, 500, "{}", r.text());
    fault_codes(&r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn a_message_id_answered_by_one_instance_is_refused_by_the_other_within_its_window() {
    let Some((_schema, url)) = pg_schema() else {
        return;
    };
    // A short replay window (a loaded machine must still answer within it): max age 5 s, skew
    // 1 s, so a MessageID is remembered for 7 s.
    let short = |c: &mut Config| {
        c.security.max_message_age_secs = 5;
        c.security.clock_skew_secs = 1;
    };
    let a = instance(&url, short).await;
    let b = instance(&url, short).await;
    let bsn = a.known_bsn();
    let created = OffsetDateTime::now_utc();
    let req = signed_to_front(&bsn, created);
    let first = post(&a.url, &req).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("ClientSuwi"), "{}", first.text());
    // The same bytes to the other instance: the replay fault, as the first instance gives.
    let replay = ("wsse:InvalidSecurity".to_owned(), "0026".to_owned());
    assert_eq!(fault_code(&b.url, &req).await, replay);
    assert_eq!(fault_code(&a.url, &req).await, replay);
    // The other instance answers requests of its own.
    let own = post(&b.url, &signed_to_front(&bsn, OffsetDateTime::now_utc())).await;
    assert_eq!(own.status, 200, "{}", own.text());

    // Once the window has passed, today's rule speaks: the message is too old, not a replay.
    let past = created + time::Duration::seconds(8);
    while OffsetDateTime::now_utc() < past {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let expired = ("wsu:MessageExpired".to_owned(), "0023".to_owned());
    assert_eq!(fault_code(&b.url, &req).await, expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn without_the_database_a_signed_request_gets_0051_and_is_judged_afresh_when_it_is_back() {
    let Some((_schema, url)) = pg_schema() else {
        return;
    };
    let authority = |u: &str| -> String {
        let rest = u.split_once("://").expect("scheme").1;
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        rest.split(['/', '?']).next().expect("host").to_owned()
    };
    let proxy = Cuttable::to(authority(&url));
    let proxied = url.replacen(&authority(&url), &proxy.addr.to_string(), 1);
    let server = instance(&proxied, |_| {}).await;
    let bsn = server.known_bsn();
    let req = signed_to_front(&bsn, OffsetDateTime::now_utc());

    proxy.cut();
    // Refused (fail closed) within the store's deadline: never answered without the check.
    let r = post(&server.url, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<Fout><Code>0051</Code>"), "{}", r.text());

    // The request was not answered: back online, the same message is judged afresh (not taken
    // for a replay of itself), and from then on it is one.
    proxy.mend();
    let r = post(&server.url, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("ClientSuwi"), "{}", r.text());
    let (_, code) = fault_code(&server.url, &req).await;
    assert_eq!(code, "0026");
    drop(server);
    // A runtime is not dropped inside another one.
    std::thread::spawn(move || drop(proxy))
        .join()
        .expect("proxy stops");
}

/// `dkd_periodic_runs_total{job}` of one instance (0 before its first run).
async fn runs(server: &Server, job: &str) -> u64 {
    let (_, metrics) = http_get(server.ops, "/metrics").await;
    let series = format!("dkd_periodic_runs_total{{job=\"{job}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.parse().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn two_instances_run_the_sweep_once_per_interval_between_them() {
    let Some((_schema, url)) = pg_schema() else {
        return;
    };
    let every_second = |c: &mut Config| c.retention.sweep_interval_secs = Some(1);
    let started = OffsetDateTime::now_utc().unix_timestamp();
    let a = instance(&url, every_second).await;
    let b = instance(&url, every_second).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (total, read_at) = loop {
        let total = runs(&a, "sweep").await + runs(&b, "sweep").await;
        let read_at = OffsetDateTime::now_utc().unix_timestamp();
        if total >= 4 {
            break (total, read_at);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep ran {total} times in a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // An interval starts each second; each is claimed by one instance. Both running every
    // interval would have counted twice the intervals begun (4 after two of them).
    let intervals = read_at - started + 1;
    assert!(
        total <= u64::try_from(intervals).expect("positive"),
        "{total} sweeps in {intervals} intervals"
    );
    // Who ran the last one is in the store, for either instance to see.
    let last = a.store.job_runs().expect("runs");
    let sweep = last.iter().find(|r| r.job == "sweep").expect("sweep ran");
    assert!(sweep.interval_start > started, "{sweep:?}");
}

#[tokio::test]
async fn the_ib_counts_its_stale_gemeenten_in_metrics() {
    let server = Server::start_with(|c| {
        c.role = Role::Ib;
        c.ib.stale_check_interval_secs = 1;
        let gemeente = |code: &str, delivery| IbGemeenteConfig {
            code: code.into(),
            name: String::new(),
            oins: vec![SERVER_OIN.into()],
            url: (delivery == Delivery::Webservice)
                .then(|| "https://127.0.0.1:1/GSDDossierReintegratie-v0200".into()),
            delivery,
        };
        // Neither ever delivered: both stale.
        c.ib.gemeenten = vec![
            gemeente("0363", Delivery::Webservice),
            gemeente("0599", Delivery::Batch),
        ];
    })
    .await;
    let mut metrics = String::new();
    let found = || async { http_get(server.ops, "/metrics").await.1 };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !metrics.contains("dkd_ib_stale_gemeenten 2\n") {
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = found().await;
    }
    assert!(
        metrics.contains("dkd_periodic_runs_total{job=\"ib_stale_check\"} "),
        "{metrics}"
    );
}
