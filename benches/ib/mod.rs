//! Issue 19's routed-IB benchmark (`benches/ib.sh`): the IB's big verwijsindex and the emulated
//! gemeenten it routes to.
//!
//! - `build-ib-store --to DIR --entries N --gemeenten G`: a sled IB store of about N BSN × cluster
//!   entries over G gemeenten, written through `Store::ib_apply` (what the IBVerwijsindex service
//!   writes for each update: one transaction per entry, so memory stays flat at any N). First the
//!   entries of what the emulated gemeenten of `dkd demo --gemeenten G` hold (cluster 04, their
//!   own gemeente), so those questions are routed and answered; then filler BSNs, each in cluster
//!   04 and one other cluster, round-robin over the G gemeenten. Cached: a marker in DIR names
//!   N and G, and a matching DIR is reused. PostgreSQL gets it through `dkd store copy`.
//! - `ib-gemeenten --n G --certs DIR --dir D --config FILE`: the G emulated gemeenten of
//!   `dkd demo --gemeenten G` (`chain::demo::bind_many`, the same code path), in this process, so
//!   that a separate `dkd serve` IB can be measured alone. Writes FILE, the IB's configuration
//!   (role, caller, `[[ib.gemeenten]]` with their URLs), once every gemeente's start-up push has
//!   drained, then prints `READY` and serves until killed.

use dkd::chain::demo;
use dkd::suwiml::types::Bsn;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The cluster whose entries route GSDReintegratieInfo (`ib.reintegratie_cluster`'s default).
const CLUSTER: &str = "04";
/// The other clusters the IB accepts by default (`ib.clusters`).
const OTHER_CLUSTERS: [&str; 4] = ["01", "02", "03", "05"];
/// Filler BSNs start far from what `demo::generate` hands out for G × 22 persons.
const FILLER_FROM: u32 = 30_000_000;

fn marker(entries: usize, gemeenten: usize) -> String {
    format!("dkd-bench-ib entries={entries} gemeenten={gemeenten}\n")
}

/// The BSNs the emulated gemeenten hold, deduplicated (the probe candidates of `run --store ib:G`).
pub fn held_bsns(gemeenten: usize) -> Vec<Bsn> {
    let mut out: Vec<Bsn> = demo::many_people(gemeenten, super::common::today())
        .into_iter()
        .flatten()
        .map(|p| p.bsn)
        .collect();
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup();
    out
}

pub fn build_ib_store(to: &str, entries: usize, gemeenten: usize) {
    let dir = PathBuf::from(to);
    let mark = dir.join("BENCH-IB");
    if std::fs::read_to_string(&mark).ok().as_deref() == Some(marker(entries, gemeenten).as_str()) {
        eprintln!("build-ib-store: cached {}", dir.display());
        println!("{{\"label\":\"build-ib-store\",\"cached\":true,\"entries\":{entries},\"gemeenten\":{gemeenten}}}");
        return;
    }
    if gemeenten == 0 || gemeenten > demo::MANY_MAX {
        eprintln!("--gemeenten must be 1..={}", demo::MANY_MAX);
        std::process::exit(2);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store = dkd::store::Store::open(&dir).expect("open the IB store");
    let start = Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut n = 0usize;
    let progress = |n: usize| {
        if n % 200_000 == 0 {
            eprintln!(
                "build-ib-store: {n} entries, {:.0} s",
                start.elapsed().as_secs_f64()
            );
        }
    };
    let apply = |g: usize, bsn: &Bsn, cluster: &str| {
        store
            .ib_apply(
                &demo::many_code(g),
                bsn,
                cluster,
                dkd::suwiml::verwijsindex::IndDkd::Present,
                &demo::many_oin(g),
                now,
            )
            .expect("ib_apply");
    };
    for (g, mine) in demo::many_people(gemeenten, super::common::today())
        .iter()
        .enumerate()
    {
        for p in mine {
            apply(g, &p.bsn, CLUSTER);
            n += 1;
            progress(n);
        }
    }
    let mut prefix = FILLER_FROM;
    let mut k = 0usize;
    while n < entries {
        let Some(bsn) = Bsn::from_prefix(prefix) else {
            prefix += 1;
            continue;
        };
        prefix += 1;
        let g = k % gemeenten;
        apply(g, &bsn, CLUSTER);
        n += 1;
        progress(n);
        if n < entries {
            apply(g, &bsn, OTHER_CLUSTERS[k % OTHER_CLUSTERS.len()]);
            n += 1;
            progress(n);
        }
        k += 1;
    }
    store.flush().expect("flush");
    drop(store);
    std::fs::write(&mark, marker(entries, gemeenten)).expect("marker");
    let secs = start.elapsed().as_secs_f64();
    eprintln!("build-ib-store: {n} entries in {secs:.1} s");
    println!(
        "{}",
        serde_json::json!({
            "label": "build-ib-store",
            "cached": false,
            "entries": n,
            "gemeenten": gemeenten,
            "secs": secs,
        })
    );
}

pub fn ib_gemeenten(n: usize, certs: PathBuf, dir: PathBuf, config: PathBuf) {
    use dkd::certs::files;
    let (mut g_cfg, mut ib_cfg) = demo::chain_configs(&dir, 0);
    g_cfg.tls.cert = certs.join(files::SERVER);
    g_cfg.tls.key = certs.join(files::SERVER_KEY);
    g_cfg.tls.client_ca = certs.join(files::CA);
    ib_cfg.tls = g_cfg.tls.clone();
    // The IB that `bind_many` binds here only takes the gemeenten's start-up pushes; the one
    // measured is the `dkd serve` of ib.sh, with the big store.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    ib_cfg.server.listen = format!("127.0.0.1:{port}");
    ib_cfg.admin.listen = String::new();
    ib_cfg.ops.listen = String::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let many = demo::bind_many(&dir, ib_cfg, &g_cfg, n, 0.0, super::common::today())
            .await
            .unwrap_or_else(|e| {
                eprintln!("ib-gemeenten: {e}");
                std::process::exit(1)
            });
        let mut table = toml::Table::new();
        table.insert("role".into(), "ib".into());
        let mut auth = toml::Table::new();
        auth.insert(
            "allowed_oins".into(),
            toml::Value::Array(vec![super::common::CLIENT_OIN.into()]),
        );
        table.insert("auth".into(), auth.into());
        let mut reg = Vec::with_capacity(n);
        for (i, (code, app, _)) in many.gemeenten.iter().enumerate() {
            let mut g = toml::Table::new();
            g.insert("code".into(), code.as_str().into());
            g.insert(
                "oins".into(),
                toml::Value::Array(vec![demo::many_oin(i).into()]),
            );
            g.insert("url".into(), app.public_url().into());
            reg.push(toml::Value::Table(g));
        }
        let mut ib = toml::Table::new();
        ib.insert("gemeenten".into(), toml::Value::Array(reg));
        table.insert("ib".into(), ib.into());
        let stores: Vec<_> = many
            .gemeenten
            .iter()
            .map(|(_, app, _)| app.store().clone())
            .collect();
        let serve = tokio::spawn(many.run(std::future::pending::<()>()));
        // The start-up pushes are not part of what is measured: the IB's config (which ib.sh
        // waits for) is written only once they are done.
        let done = tokio::task::spawn_blocking(move || drained(&stores, Duration::from_secs(300)))
            .await
            .unwrap_or(false);
        if !done {
            eprintln!("ib-gemeenten: start-up pushes still queued after 300 s; measuring anyway");
        }
        std::fs::write(&config, toml::to_string(&table).expect("toml")).expect("IB config");
        println!("READY");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = serve.await;
    });
}

/// Waits (bounded) until no gemeente has an update queued for its push.
pub fn drained(stores: &[dkd::store::Store], timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if stores
            .iter()
            .all(|s| s.outbox_pending(1).map(|v| v.is_empty()).unwrap_or(false))
        {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
