//! Crash safety: `dkd import` killed with SIGKILL at several points leaves the store with either
//! the previous or the new state, never a mix.

use dkd::store::Store;
use std::process::{Command, Stdio};
use std::time::Instant;

fn dkd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DKD_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn sigkill_during_import_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let people = dkd::chain::demo::generate(20_000, time::OffsetDateTime::now_utc().date());
    let mut csv = String::new();
    dkd::import::csv_format::write(&people, &mut csv);
    let file = dir.path().join("big.csv");
    std::fs::write(&file, csv).expect("write");
    let import = |store: &std::path::Path| {
        dkd()
            .arg("import")
            .arg(&file)
            .env("DKD_STORE__PATH", store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // The complete result, and how long it takes.
    let reference = dir.path().join("reference");
    let started = Instant::now();
    let status = import(&reference).wait().expect("wait");
    let full = started.elapsed();
    assert!(status.success(), "reference import: {status:?}");
    let expected = Store::open(&reference).expect("open").len();
    assert!(expected > 15_000, "{expected}");

    let mut killed_mid_run = 0;
    for (i, frac) in [0.2, 0.5, 0.8, 0.9, 0.97].iter().enumerate() {
        let store_dir = dir.path().join(format!("s{i}"));
        let mut child = import(&store_dir);
        std::thread::sleep(full.mul_f64(*frac));
        if child.try_wait().expect("try_wait").is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        let store = match Store::open(&store_dir) {
            Ok(s) => s,
            // Killed before the store was even created.
            Err(_) if !store_dir.exists() => continue,
            Err(e) => panic!("store unreadable after SIGKILL at {frac}: {e}"),
        };
        let n = store.len();
        assert!(
            n == 0 || n == expected,
            "SIGKILL at {frac} of the run left {n} entries (expected 0 or {expected})"
        );
        if n == expected {
            for p in people.iter().step_by(997) {
                assert!(store.get(&p.bsn).expect("readable").is_some());
            }
        }
        let mutations = store.mutations_since(0).count();
        assert!(
            mutations == 0 || mutations == expected,
            "mutations {mutations} do not match entries {n}"
        );
    }
    assert!(
        killed_mid_run >= 2,
        "the kills must land while the import runs (only {killed_mid_run} did)"
    );
}

/// Environment for a gemeente `dkd` that pushes to the IB at `ib_port`, with the test PKI.
fn gemeente_env(c: &mut Command, store: &std::path::Path, port: u16, ib_port: u16) {
    let p = crate::common::pki();
    c.env("DKD_STORE__PATH", store)
        .env("DKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        // The admin port is derived so `dkd sync` finds the running server.
        .env("DKD_ADMIN__LISTEN", format!("127.0.0.1:{}", port + 1))
        .env("DKD_OPS__LISTEN", "127.0.0.1:0")
        .env("DKD_TLS__CERT", p.path("server.pem"))
        .env("DKD_TLS__KEY", p.path("server-key.pem"))
        .env("DKD_TLS__CLIENT_CA", p.path("ca.pem"))
        .env("DKD_AUTH__ALLOWED_OINS", crate::common::SERVER_OIN)
        .env("DKD_SECURITY__SIGNING", "required")
        .env(
            "DKD_PUSH__URL",
            format!("https://127.0.0.1:{ib_port}/IBVerwijsindex-v0300"),
        )
        .env("DKD_PUSH__CONCURRENCY", "1")
        .env("DKD_PUSH__MAX_BACKOFF_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// Two consecutive free ports (service and admin).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let p = crate::chain::free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_push_loses_no_update() {
    use crate::chain::{free_port, ib_config, start, wait_until};
    let dir = tempfile::tempdir().expect("tmp");
    let (ib_port, g_port) = (free_port(), free_port_pair());
    let store_dir = dir.path().join("gemeente");
    // The backoffice file: imported while the server is down, so every entry waits in the outbox.
    let people = dkd::chain::demo::generate(400, crate::common::demo_date());
    let mut csv = String::new();
    dkd::import::csv_format::write(&people, &mut csv);
    let file = dir.path().join("lks.csv");
    std::fs::write(&file, csv).expect("write");
    let (f, s) = (file.clone(), store_dir.clone());
    let status = tokio::task::spawn_blocking(move || {
        let mut c = dkd();
        c.arg("import").arg(&f);
        gemeente_env(&mut c, &s, g_port, ib_port);
        c.status()
    })
    .await
    .expect("join")
    .expect("import runs");
    assert!(status.success(), "{status:?}");
    let (entries, pending) = {
        let s = Store::open(&store_dir).expect("open");
        let entries: Vec<(dkd::suwiml::types::Bsn, String)> = s
            .all_entries()
            .map(|e| e.map(|e| (e.person.bsn, e.gemeente)).expect("entry"))
            .collect();
        (entries, s.outbox_status().expect("status").pending)
    };
    assert_eq!(
        pending as usize,
        entries.len(),
        "one queued update per entry"
    );

    let ib_dir = tempfile::tempdir().expect("dir");
    let gemeenten: Vec<(&str, u16)> = dkd::chain::demo::DEMO_GEMEENTEN
        .iter()
        .map(|g| (*g, g_port))
        .collect();
    let ib_cfg = ib_config(ib_dir.path(), ib_port, &gemeenten);
    let ib = start(ib_dir, ib_cfg).await;
    let received = |ib: &crate::chain::Node| -> u64 {
        ib.store
            .ib_index_figures()
            .map(|f| f.values().map(|x| x.received).sum())
            .unwrap_or(0)
    };
    let serve = || {
        let mut c = dkd();
        c.arg("serve");
        gemeente_env(&mut c, &store_dir, g_port, ib_port);
        Killed(c.spawn().expect("serve"))
    };
    let mut first = serve();
    wait_until("the push has started", 60, || received(&ib) >= 20).await;
    let _ = first.0.kill(); // SIGKILL
    let _ = first.0.wait();
    let at_kill = received(&ib);
    assert!(
        (at_kill as usize) < entries.len(),
        "the kill must land mid-push ({at_kill} of {} delivered)",
        entries.len()
    );
    drop(first);
    let second = serve();
    let total = entries.len() as u64;
    wait_until("every entry is at the IB after the restart", 120, || {
        ib.store
            .ib_index_figures()
            .map(|f| f.values().map(|x| x.bsns).sum::<u64>() == total)
            .unwrap_or(false)
    })
    .await;
    // `dkd sync` reaches the running server through its admin API.
    let sync_status = move |store_dir: std::path::PathBuf| {
        let mut c = dkd();
        c.args(["sync", "--json"]);
        gemeente_env(&mut c, &store_dir, g_port, ib_port);
        c.stdout(Stdio::piped());
        let out = c.output().expect("dkd sync");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let sd = store_dir.clone();
        let v = tokio::task::spawn_blocking(move || sync_status(sd))
            .await
            .expect("join");
        if v["status"]["pending"] == 0 {
            assert_eq!(v["status"]["parked"], 0, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "outbox not emptied: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A clean stop (SIGTERM) flushes the store.
    let pid = second.0.id().to_string();
    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(term.success());
    let mut second = second;
    let _ = tokio::task::spawn_blocking(move || {
        let r = second.0.wait();
        drop(second);
        r
    })
    .await;
    // Nothing lost, nothing applied twice. Updates the IB acknowledged shortly before the kill
    // (in flight, or whose removal from the outbox sled had not yet written to disk) are sent
    // again: repeats, which change nothing at the IB.
    let f = ib.store.ib_index_figures().expect("figures");
    let changed: u64 = f.values().map(|x| x.changed).sum();
    assert_eq!(changed, total, "every entry applied exactly once");
    assert!(received(&ib) >= total);
    for (bsn, g) in &entries {
        let at_ib = ib.store.ib_gemeenten_for(bsn, "04").expect("lookup");
        assert!(
            at_ib.iter().any(|(code, _)| code == g),
            "{} {g} missing",
            bsn.masked()
        );
    }
    let s = Store::open(&store_dir).expect("reopen after the second server stopped");
    let st = s.outbox_status().expect("status");
    assert_eq!((st.pending, st.parked), (0, 0));
}

/// What an import leaves that matters: every entry (without its mutation time, which differs
/// between runs), how many mutation and import records there are, and the outbox (BSN, gemeente
/// and present/absent of each pending update; sequence numbers differ between runs).
type State = (Vec<(String, String)>, usize, usize, Vec<String>);

fn state(store: &Store) -> State {
    let entries = store
        .all_entries()
        .map(|e| {
            let e = e.expect("readable entry");
            (e.gemeente, serde_json::to_string(&e.person).expect("json"))
        })
        .collect();
    let mutations = store.mutations_since(0).count();
    let imports = store.imports().expect("imports").len();
    let outbox = store
        .outbox_pending(usize::MAX)
        .expect("outbox")
        .into_iter()
        .map(|e| format!("{} {} {:?}", e.bsn.as_str(), e.gemeente, e.ind))
        .collect();
    (entries, mutations, imports, outbox)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Runs `dkd` with `DKD_TEST_PAUSE_AT=phase`, waits until it reports that it stopped there (with
/// what it wrote made durable), and SIGKILLs it. Returns false when it finished without reaching
/// the phase.
fn kill_at(mut cmd: Command, phase: &str) -> bool {
    use std::io::BufRead;
    let mut child = cmd
        .env("DKD_TEST_PAUSE_AT", phase)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut reached = false;
    for line in std::io::BufReader::new(stderr).lines() {
        if line.expect("stderr line") == format!("dkd-test-pause {phase}") {
            reached = true;
            break;
        }
    }
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    reached
}

/// Kills a journaled import (an existing store, a file that changes, adds and deletes entries,
/// with the outbox on, so entries, mutation records and outbox updates are all in the change set)
/// in every phase: before anything is written, after the first and a middle chunk (written by the
/// writer thread while the change set is still being built), with the writer half-way through a
/// chunk's writes, once every chunk is written (before the commit point), just after the commit
/// point, and during the roll-back that the next open performs. Each time the store holds exactly
/// the old state, or exactly the new one once the commit point has passed.
#[test]
fn sigkill_in_each_phase_of_an_import_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let today = time::OffsetDateTime::now_utc().date();
    let before = dkd::chain::demo::generate(5000, today);
    let mut csv = String::new();
    dkd::import::csv_format::write(&before, &mut csv);
    let old_file = dir.path().join("old.csv");
    std::fs::write(&old_file, csv).expect("write");
    // The new file: every other person renamed, every fifth deleted, 3,000 new persons.
    let mut after: Vec<_> = dkd::chain::demo::generate(8000, today);
    let mut deletes = String::new();
    for (i, p) in after.iter_mut().take(5000).enumerate() {
        if i % 2 == 0 {
            p.voornamen = Some("Anders".into());
        }
        if i % 5 == 1 {
            for r in &p.atl_relaties {
                deletes.push_str(&format!(
                    "{},{},{}delete\n",
                    p.bsn.as_str(),
                    r.bron.partij,
                    ",".repeat(15)
                ));
            }
        }
    }
    let after: Vec<_> = after
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i >= 5000 || i % 5 != 1)
        .map(|(_, p)| p)
        .collect();
    let mut csv = String::new();
    dkd::import::csv_format::write(&after, &mut csv);
    csv.push_str(&deletes);
    let new_file = dir.path().join("new.csv");
    std::fs::write(&new_file, csv).expect("write");

    let import = |file: &std::path::Path, store: &std::path::Path| {
        let mut c = dkd();
        c.arg("import")
            .arg(file)
            .env("DKD_STORE__PATH", store)
            // Turns the outbox on (nothing is sent: the import only queues).
            .env("DKD_PUSH__URL", "https://127.0.0.1:9/IBVerwijsindex-v0300");
        c
    };
    let base = dir.path().join("base");
    assert!(import(&old_file, &base)
        .stdout(Stdio::null())
        .status()
        .expect("run")
        .success());
    let old_state = state(&Store::open(&base).expect("open base"));
    let reference = dir.path().join("reference");
    copy_dir(&base, &reference);
    let out = import(&new_file, &reference).output().expect("run");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let new_state = state(&Store::open(&reference).expect("open reference"));
    assert_ne!(old_state.0, new_state.0);
    assert!(
        new_state.1 > old_state.1 + 4000,
        "the change is several chunks of writes"
    );
    assert!(
        new_state.3.len() > old_state.3.len() + 2000,
        "the outbox is in it"
    );

    // (phase, whether the new state must be there afterwards)
    let phases = [
        ("apply", false),
        ("chunk-1", false),
        ("chunk-2-mid", false),
        ("chunk-3", false),
        ("commit-point", false),
        ("committed", true),
    ];
    for (i, (phase, is_new)) in phases.iter().enumerate() {
        let store_dir = dir.path().join(format!("p{i}"));
        copy_dir(&base, &store_dir);
        assert!(
            kill_at(import(&new_file, &store_dir), phase),
            "the import never reached {phase}"
        );
        let store = Store::open(&store_dir).expect("readable after SIGKILL");
        let rolled_back = store.recovery().is_some();
        assert_eq!(
            rolled_back,
            *phase != "apply" && !is_new,
            "roll-back at open after a kill at {phase}"
        );
        let got = state(&store);
        let expected = if *is_new { &new_state } else { &old_state };
        // The import history is written after the commit: a kill at "committed" precedes it.
        assert!(
            got.0 == expected.0 && got.1 == expected.1 && got.3 == expected.3,
            "SIGKILL at {phase}: {} entries, {} mutations, {} outbox; expected {}, {}, {}",
            got.0.len(),
            got.1,
            got.3.len(),
            expected.0.len(),
            expected.1,
            expected.3.len()
        );
    }

    // A kill during the roll-back itself: the next open rolls back again.
    let store_dir = dir.path().join("rollback");
    copy_dir(&base, &store_dir);
    assert!(kill_at(import(&new_file, &store_dir), "chunk-3"));
    let mut report = dkd();
    report.arg("report").env("DKD_STORE__PATH", &store_dir);
    assert!(
        kill_at(report, "rollback-2"),
        "opening the store did not roll back"
    );
    let store = Store::open(&store_dir).expect("readable after two kills");
    assert!(store.recovery().is_some());
    let got = state(&store);
    assert!(got.0 == old_state.0 && got.1 == old_state.1 && got.3 == old_state.3);
}

/// While an import holds the store (here: paused for good half-way through writing), requests
/// that need the store wait for its commit on blocking threads; the async workers go on serving
/// everything else. Answered inline, enough waiting requests would take every worker and the
/// server would stop answering even `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_an_open_import_do_not_stall_the_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("big.csv");
    let made = dkd()
        .args(["demo-file", "--persons", "3000", "--out"])
        .arg(&csv)
        .stdout(Stdio::null())
        .status()
        .expect("demo-file");
    assert!(made.success());
    let body = std::fs::read(&csv).expect("csv");
    keeps_serving_while_an_import_is_open(dkd(), dir.path(), body, "name=big.csv").await;
}

/// The same in the IB role: the router looks up batch gemeenten' deliveries in the store while a
/// large delivery is being imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ib_router_waiting_for_an_open_delivery_does_not_stall_the_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("ib.toml");
    std::fs::write(
        &cfg,
        "role = \"ib\"\n[[ib.gemeenten]]\ncode = \"0014\"\ndelivery = \"batch\"\n",
    )
    .expect("config");
    let people = crate::common::batch_people(3000, "0014");
    assert!(people.len() > 2000, "enough for a journaled change set");
    let mut csv = String::new();
    dkd::import::csv_format::write(&people, &mut csv);
    let mut cmd = dkd();
    cmd.env("DKD_CONFIG", &cfg);
    keeps_serving_while_an_import_is_open(
        cmd,
        dir.path(),
        csv.into_bytes(),
        "name=week.csv&gemeente=0014&mode=full",
    )
    .await;
}

/// Starts `dkd serve` (with what `cmd` already has set), pauses an admin-API import after its first
/// chunk, sends more GSDReintegratieInfo requests than the server has async workers, and checks
/// that none is answered (they wait for the import) while `/healthz` still is.
async fn keeps_serving_while_an_import_is_open(
    mut cmd: Command,
    dir: &std::path::Path,
    import: Vec<u8>,
    query: &str,
) {
    use std::io::BufRead;
    use std::time::Duration;
    let port = free_port_pair();
    let ops = crate::chain::free_port();
    let p = crate::common::pki();
    cmd.arg("serve")
        .env("DKD_STORE__PATH", dir.join("store"))
        .env("DKD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("DKD_ADMIN__LISTEN", format!("127.0.0.1:{}", port + 1))
        .env("DKD_OPS__LISTEN", format!("127.0.0.1:{ops}"))
        .env("DKD_TLS__CERT", p.path("server.pem"))
        .env("DKD_TLS__KEY", p.path("server-key.pem"))
        .env("DKD_TLS__CLIENT_CA", p.path("ca.pem"))
        .env("DKD_AUTH__ALLOWED_OINS", crate::common::ALLOWED_OIN)
        .env("DKD_SECURITY__SIGNING", "off")
        .env("DKD_TEST_PAUSE_AT", "chunk-1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Killed(child);
    let (paused_tx, paused) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Drained to the end, so the server never blocks on a full pipe.
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line == "dkd-test-pause chunk-1" {
                let _ = paused_tx.send(());
            }
        }
    });
    let tls = crate::common::client_tls("client");
    let healthz = format!("http://127.0.0.1:{ops}/healthz");
    let get = |url: String, secs: u64| {
        let tls = tls.clone();
        async move {
            dkd::http::client::request(tls, "GET", &url, &[], Vec::new(), Duration::from_secs(secs))
                .await
        }
    };
    let mut up = false;
    for _ in 0..300 {
        if get(healthz.clone(), 1).await.is_ok_and(|r| r.status == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "dkd serve did not come up");
    // The import pauses for good after its first chunk, holding the store.
    let admin = format!("http://127.0.0.1:{}/imports?{query}", port + 1);
    let import = {
        let tls = tls.clone();
        tokio::spawn(async move {
            dkd::http::client::request(tls, "POST", &admin, &[], import, Duration::from_secs(120))
                .await
        })
    };
    let reached = tokio::task::spawn_blocking(move || paused.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("join");
    assert!(
        reached.is_ok(),
        "the import did not reach chunk 1: {:?}",
        import.is_finished()
    );
    // More requests for the store than the server has async workers.
    let url = format!("https://127.0.0.1:{port}/GSDDossierReintegratie-v0200");
    let waiting: Vec<_> = (0..16)
        .map(|_| {
            let (tls, url) = (tls.clone(), url.clone());
            tokio::spawn(async move {
                let xml = crate::common::Req::new(&url, "123456782").xml();
                dkd::http::client::post_soap(tls, &url, &xml, Duration::from_secs(30)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiting.iter().all(|h| !h.is_finished()),
        "no lookup can be answered before the import commits"
    );
    let r = get(healthz, 3)
        .await
        .expect("/healthz answers while requests wait for the import");
    assert_eq!(r.status, 200);
    import.abort();
    for h in waiting {
        h.abort();
    }
}

/// The same on PostgreSQL: an import killed with blocks of its change set written into its open
/// transaction, just before its COMMIT, and just after it; each time the database holds exactly
/// the old state, or the new one once the commit has passed, and nothing needs rolling back.
#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn sigkill_in_each_phase_of_an_import_on_postgres_leaves_old_or_new_state() {
    let Some(server) = crate::common::pg_url() else {
        crate::common::skip("needs postgres: DKD_TEST_PG_URL");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let today = time::OffsetDateTime::now_utc().date();
    let before = dkd::chain::demo::generate(3000, today);
    let mut csv = String::new();
    dkd::import::csv_format::write(&before, &mut csv);
    let old_file = dir.path().join("old.csv");
    std::fs::write(&old_file, csv).expect("write");
    let mut after = dkd::chain::demo::generate(5000, today);
    for p in after.iter_mut().step_by(2) {
        p.voornamen = Some("Anders".into());
    }
    let mut csv = String::new();
    dkd::import::csv_format::write(&after, &mut csv);
    let new_file = dir.path().join("new.csv");
    std::fs::write(&new_file, csv).expect("write");
    let import = |file: &std::path::Path, url: &str| {
        let mut c = dkd();
        c.arg("import")
            .arg(file)
            .env("DKD_STORE__URL", url)
            .env("DKD_PUSH__URL", "https://127.0.0.1:9/IBVerwijsindex-v0300");
        c
    };
    // A schema holding the old state.
    let base = || {
        let (schema, url) = dkd::store::TempSchema::create(&server).expect("schema");
        let loc = dkd::store::Location::Postgres {
            url: url.clone(),
            ca: None,
        };
        Store::migrate(&loc).expect("migrate");
        assert!(import(&old_file, &url)
            .stdout(Stdio::null())
            .status()
            .expect("run")
            .success());
        (schema, url, loc)
    };
    let (_s0, url0, loc0) = base();
    let old_state = state(&Store::open_at(&loc0, false).expect("open"));
    let out = import(&new_file, &url0).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_state = state(&Store::open_at(&loc0, false).expect("open"));
    assert_ne!(old_state.0, new_state.0);
    assert!(
        new_state.3.len() > old_state.3.len() + 1000,
        "the outbox is in it"
    );
    for (phase, is_new) in [
        ("pg-block-1", false),
        ("pg-block-3", false),
        ("commit-point", false),
        ("committed", true),
    ] {
        let (_schema, url, loc) = base();
        assert!(
            kill_at(import(&new_file, &url), phase),
            "the import never reached {phase}"
        );
        let store = Store::open_at(&loc, false).expect("readable after SIGKILL");
        assert_eq!(store.recovery(), None, "nothing to roll back on PostgreSQL");
        let got = state(&store);
        let want = if is_new { &new_state } else { &old_state };
        // The import history is written after the commit: a kill just after it has none.
        assert_eq!(
            (&got.0, got.1, &got.3),
            (&want.0, want.1, &want.3),
            "SIGKILL at {phase}"
        );
    }
}
