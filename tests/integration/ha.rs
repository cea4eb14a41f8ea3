//! Two nodes on one PostgreSQL database behind HAProxy, run from the files in `deploy/` as they
//! are (`node-a.toml`, `node-b.toml`, `haproxy.cfg`): the test only fills in addresses and file
//! paths, through the `DKD_*` overrides dkd reads and the `"${VAR}"`s HAProxy expands. The nodes
//! are the real `dkd serve` binary, so SIGKILL is a real crash.

use crate::chain::{free_port, ib_config, person, wait_until};
use crate::common::*;
use dkd::soap::wssec::Signer;
use dkd::store::Store;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

/// Every process the test started; all killed (SIGKILL) and reaped when dropped, on a panic too.
#[derive(Default)]
struct Procs {
    children: Vec<(String, Child)>,
}

impl Procs {
    fn add(&mut self, name: &str, child: Child) {
        self.children.push((name.to_owned(), child));
    }

    /// SIGKILL now (a crash: no shutdown, no flush), and reap it.
    fn kill(&mut self, name: &str) {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let (_, mut child) = self.children.remove(i);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// Panics, naming the process and its log, when one of them has exited.
    fn all_running(&mut self, logs: &Path) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
                panic!("{name} exited ({status}):\n{log}");
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One node's ports.
#[derive(Clone, Copy)]
struct Ports {
    service: u16,
    ops: u16,
    admin: u16,
}

impl Ports {
    fn free() -> Ports {
        Ports {
            service: free_port(),
            ops: free_port(),
            admin: free_port(),
        }
    }

    fn url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/GSDDossierReintegratie-v0200",
            self.service
        )
    }
}

/// `dkd` without the test's own `DKD_*` variables (DKD_TEST_PG_URL, DKD_REQUIRE_EXTERNAL).
fn dkd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DKD_") {
            c.env_remove(k);
        }
    }
    c
}

/// The database both nodes share: a schema of its own on the test server, dropped at the end.
struct Shared {
    url: String,
    store: Store,
    _schema: dkd::store::TempSchema,
}

fn shared_store() -> Shared {
    let (schema, url) =
        dkd::store::TempSchema::create(&pg_url().expect("DKD_TEST_PG_URL")).expect("schema");
    let store = Store::open_at(
        &dkd::store::Location::Postgres {
            url: url.clone(),
            ca: None,
        },
        true,
    )
    .expect("store");
    Shared {
        url,
        store,
        _schema: schema,
    }
}

/// What every two-node test starts from: a shared store holding `persons` demo persons, free
/// ports for both nodes and the balancer, the balancer's public URL, no process yet. Bound in
/// this order so that the processes go first and the logs last.
struct Pair {
    logs: tempfile::TempDir,
    shared: Shared,
    people: Vec<dkd::suwiml::model::Person>,
    a: Ports,
    b: Ports,
    lb: u16,
    public: String,
    procs: Procs,
}

fn pair(persons: usize) -> Pair {
    let logs = tempfile::tempdir().expect("dir");
    let shared = shared_store();
    let people = dkd::chain::demo::generate(persons, demo_date());
    shared.store.put_all(&people, "demo").expect("demo data");
    let (a, b, lb) = (Ports::free(), Ports::free(), free_port());
    let public = format!("https://127.0.0.1:{lb}/GSDDossierReintegratie-v0200");
    Pair {
        logs,
        shared,
        people,
        a,
        b,
        lb,
        public,
        procs: Procs::default(),
    }
}

/// The environment that puts a node's deploy/ configuration on this machine's test set-up.
fn node_env(ports: Ports, public_url: &str, store_url: &str) -> Vec<(String, String)> {
    let p = pki();
    let path = |n: &str| p.path(n).display().to_string();
    [
        ("DKD_SERVER__LISTEN", format!("127.0.0.1:{}", ports.service)),
        ("DKD_SERVER__PUBLIC_URL", public_url.to_owned()),
        ("DKD_TLS__CERT", path("server.pem")),
        ("DKD_TLS__KEY", path("server-key.pem")),
        ("DKD_TLS__CLIENT_CA", path("ca.pem")),
        ("DKD_AUTH__ALLOWED_OINS", ALLOWED_OIN.to_owned()),
        ("DKD_STORE__URL", store_url.to_owned()),
        // The test's server speaks no TLS; with a CA and without sslmode=require dkd tries TLS
        // and falls back to plain, as libpq's sslmode=prefer does.
        ("DKD_STORE__CA", path("ca.pem")),
        ("DKD_ADMIN__LISTEN", format!("127.0.0.1:{}", ports.admin)),
        ("DKD_OPS__LISTEN", format!("127.0.0.1:{}", ports.ops)),
        ("DKD_LOG__FORMAT", "human".to_owned()),
        // No IB in this test unless one is given below.
        ("DKD_PUSH__URL", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Starts `dkd serve --config deploy/node-NAME.toml` with `env` (later entries win).
fn spawn_node(procs: &mut Procs, logs: &Path, name: &str, env: &[(String, String)]) {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
    let mut c = dkd();
    c.arg("serve")
        .arg("--config")
        .arg(deploy(&format!("{name}.toml")))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    for (k, v) in env {
        c.env(k, v);
    }
    procs.add(name, c.spawn().expect("spawn dkd serve"));
}

/// The status of a plain-HTTP GET, or `None` when nothing answers (yet).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until a node's `/readyz` says 200.
async fn wait_ready(procs: &mut Procs, logs: &Path, name: &str, ports: Ports) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(ports.ops, "/readyz") != Some(200) {
        procs.all_running(logs);
        assert!(Instant::now() < deadline, "{name} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// HAProxy's log lines, each with the moment it was read.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// Starts `haproxy -db -f deploy/haproxy.cfg` in front of `a` and `b`, listening on `port`.
fn spawn_haproxy(procs: &mut Procs, port: u16, a: Ports, b: Ports) -> Lines {
    let mut child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(deploy("haproxy.cfg"))
        .env("DKD_LB_UNPRIVILEGED", "1")
        .env("DKD_LB_BIND", format!("127.0.0.1:{port}"))
        .env("DKD_NODE_A", format!("127.0.0.1:{}", a.service))
        .env("DKD_NODE_A_OPS_PORT", a.ops.to_string())
        .env("DKD_NODE_B", format!("127.0.0.1:{}", b.service))
        .env("DKD_NODE_B_OPS_PORT", b.ops.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn haproxy");
    let stderr = child.stderr.take().expect("stderr");
    procs.add("haproxy", child);
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("lines").push((Instant::now(), line));
        }
    });
    lines
}

fn signer() -> Signer {
    let p = pki();
    Signer::load(&p.path("client.pem"), &p.path("client-key.pem")).expect("signer")
}

/// A signed GSDReintegratieInfo from the IB (the test client) addressed to `to`, a new MessageID.
fn signed(signer: &Signer, to: &str, bsn: &str) -> String {
    dkd::soap::signed_request(
        signer,
        to,
        ALLOWED_OIN,
        bsn,
        &format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        time::OffsetDateTime::now_utc(),
    )
    .expect("sign")
}

/// The HTTP status of one request, `None` without an answer.
async fn post_soap_status(url: &str, body: &str) -> Option<u16> {
    dkd::http::client::post_soap(client_tls("client"), url, body, Duration::from_secs(10))
        .await
        .ok()
        .map(|r| r.status)
}

/// Posts `body` to `url` on a connection of its own: the answer's text when it is a person (HTTP
/// 200, ClientSuwi), else why not.
async fn answered(url: &str, body: &str) -> Result<String, String> {
    judge(
        dkd::http::client::post_soap(client_tls("client"), url, body, Duration::from_secs(10))
            .await,
    )
}

fn judge(
    resp: Result<dkd::http::client::Response, dkd::http::client::ClientError>,
) -> Result<String, String> {
    let resp = resp.map_err(|e| format!("no answer: {e}"))?;
    let text = resp.text();
    if resp.status == 200 && text.contains("<ClientSuwi>") {
        Ok(text)
    } else {
        Err(format!("HTTP {}: {text}", resp.status))
    }
}

/// An outcome short enough for a failure message (a signed answer is ~8 KB of signature).
fn brief(r: &Result<String, String>) -> String {
    match r {
        Ok(_) => "answered".into(),
        Err(e) if e.starts_with("HTTP") => match e.find("<soapenv:Body") {
            Some(i) => format!("{} ... {}", &e[..8], &e[i..]),
            None => e.clone(),
        },
        Err(e) => e.clone(),
    }
}

fn needs_pg() -> bool {
    if pg_url().is_none() {
        skip("two nodes need PostgreSQL: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)");
        return false;
    }
    true
}

fn needs_pg_and_haproxy() -> bool {
    if !needs_pg() {
        return false;
    }
    if Command::new("haproxy").arg("-v").output().is_err() {
        skip("two nodes behind HAProxy need haproxy (apt-get install haproxy)");
        return false;
    }
    true
}

/// Requests through the balancer, 20 a second, half on connections of their own, half on kept-alive
/// ones; node A is killed with SIGKILL a third of the way. Every request is
/// answered with the person except those on a connection to A at that moment, and none after
/// HAProxy has marked A down. An import written to the database is answered by B at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
#[cfg_attr(
    dkd_missing = "haproxy",
    ignore = "needs haproxy: apt-get install haproxy"
)]
async fn two_nodes_behind_haproxy_one_killed_the_survivor_answers_everything() {
    if !needs_pg_and_haproxy() {
        return;
    }
    let Pair {
        logs,
        shared,
        people,
        a,
        b,
        lb,
        public,
        mut procs,
    } = pair(50);
    spawn_node(
        &mut procs,
        logs.path(),
        "node-a",
        &node_env(a, &public, &shared.url),
    );
    wait_ready(&mut procs, logs.path(), "node-a", a).await;
    spawn_node(
        &mut procs,
        logs.path(),
        "node-b",
        &node_env(b, &public, &shared.url),
    );
    wait_ready(&mut procs, logs.path(), "node-b", b).await;
    let haproxy = spawn_haproxy(&mut procs, lb, a, b);
    let signer = Arc::new(signer());
    let deadline = Instant::now() + Duration::from_secs(30);
    while post_soap_status(&public, &signed(&signer, &public, "999999990")).await != Some(200) {
        procs.all_running(logs.path());
        assert!(
            Instant::now() < deadline,
            "HAProxy never passed a request on"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An import written straight to the database (as `dkd import` does on PostgreSQL, servers
    // running or not) is answered by the other node at once: no cache, no wait.
    let newcomer = person("123456782", &["0363"]);
    assert!(shared.store.get(&newcomer.bsn).expect("read").is_none());
    let mut csv = String::new();
    dkd::import::csv_format::write(std::slice::from_ref(&newcomer), &mut csv);
    let file = logs.path().join("newcomer.csv");
    std::fs::write(&file, csv).expect("write");
    let out = dkd()
        .arg("import")
        .arg(&file)
        .env("DKD_STORE__URL", &shared.url)
        .output()
        .expect("dkd import");
    assert!(
        out.status.success(),
        "dkd import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = answered(&b.url(), &signed(&signer, &public, "123456782")).await;
    assert!(
        first.is_ok_and(|t| t.contains("LKS-0363")),
        "node B answers the import at once"
    );

    // The persons the run asks about: those answered with data today (the demo set also holds
    // persons past the look-back, answered NietsGevonden).
    let mut asked = Vec::new();
    for p in &people {
        let bsn = p.bsn.to_string();
        if answered(&b.url(), &signed(&signer, &public, &bsn))
            .await
            .is_ok()
        {
            asked.push(bsn);
        }
    }
    assert!(asked.len() >= 10, "{} persons answered", asked.len());

    // The run: 200 requests at 20 a second, A killed before the 70th. Every other request goes
    // over a kept-alive connection (dkd's client pool), as the IB keeps its connections: one to A
    // breaks at the kill; the rest each open a connection of their own.
    let pool = dkd::http::client::Pool::default();
    let tls = client_tls("client");
    let total = 200usize;
    let kill_before = 70usize;
    let mut tasks = Vec::new();
    let mut killed_at = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for i in 0..total {
        tick.tick().await;
        if i == kill_before {
            procs.kill("node-a");
            killed_at = Some(Instant::now());
        }
        let body = signed(&signer, &public, &asked[i % asked.len()]);
        let url = public.clone();
        let pooled = (i % 2 == 1).then(|| (pool.clone(), tls.clone()));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = match pooled {
                Some((pool, tls)) => {
                    let resp = pool
                        .post_soap(tls, &url, &body, Duration::from_secs(10))
                        .await;
                    judge(resp)
                }
                None => answered(&url, &body).await,
            };
            (started, Instant::now(), r)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("request task"));
    }
    let killed_at = killed_at.expect("killed");
    wait_until("HAProxy marks node A down", 10, || {
        haproxy
            .lock()
            .expect("lines")
            .iter()
            .any(|(_, l)| l.contains("dkd_ready/node-a is DOWN"))
    })
    .await;
    let down_at = haproxy
        .lock()
        .expect("lines")
        .iter()
        .find(|(_, l)| l.contains("dkd_ready/node-a is DOWN"))
        .map(|(at, _)| *at)
        .expect("DOWN line");
    let in_flight_at_kill = results
        .iter()
        .filter(|(s, e, _)| *s < killed_at && *e >= killed_at)
        .count();
    let started_before_down = results
        .iter()
        .filter(|(s, _, _)| *s >= killed_at && *s < down_at)
        .count();
    let failed: Vec<_> = results.iter().filter(|(_, _, r)| r.is_err()).collect();
    let after_down: Vec<_> = results.iter().filter(|(s, _, _)| *s >= down_at).collect();
    eprintln!(
        "{} requests, {} failed; {in_flight_at_kill} in flight at the kill, {started_before_down} \
         started between the kill and HAProxy's DOWN, {} after it",
        results.len(),
        failed.len(),
        after_down.len()
    );
    assert!(
        after_down.len() >= 20,
        "the run must go on well past the DOWN ({} after it)",
        after_down.len()
    );
    for (_, _, r) in &after_down {
        assert!(
            r.is_ok(),
            "a request after A was marked down failed: {}",
            brief(r)
        );
    }
    for (s, _, r) in &failed {
        assert!(
            *s < down_at,
            "a request failed that started after A was marked down: {}",
            brief(r)
        );
    }
    assert!(
        results[..kill_before]
            .iter()
            .filter(|(_, e, r)| *e < killed_at && r.is_err())
            .count()
            == 0,
        "nothing fails before the kill"
    );
    assert!(
        failed.len() <= in_flight_at_kill + started_before_down,
        "{} failed, more than the {in_flight_at_kill} in flight at the kill and the \
         {started_before_down} started before HAProxy noticed: {:?}",
        failed.len(),
        failed.iter().map(|(_, _, r)| brief(r)).collect::<Vec<_>>()
    );
    procs.all_running(logs.path());
}

/// A MessageID is answered once by the pair, not once per node: a signed request answered by A
/// and replayed to B is refused (0026). Needs the replay cache in the shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn a_request_answered_by_one_node_is_refused_as_a_replay_by_the_other() {
    if !needs_pg() {
        return;
    }
    let Pair {
        logs,
        shared,
        people,
        a,
        b,
        lb: _,
        public,
        mut procs,
    } = pair(5);
    spawn_node(
        &mut procs,
        logs.path(),
        "node-a",
        &node_env(a, &public, &shared.url),
    );
    spawn_node(
        &mut procs,
        logs.path(),
        "node-b",
        &node_env(b, &public, &shared.url),
    );
    wait_ready(&mut procs, logs.path(), "node-a", a).await;
    wait_ready(&mut procs, logs.path(), "node-b", b).await;
    let request = signed(&signer(), &public, &people[0].bsn.to_string());
    answered(&a.url(), &request)
        .await
        .expect("node A answers the request");
    let replay = post(&b.url(), &request).await;
    let text = replay.text();
    assert_eq!(
        replay.status,
        500,
        "B must refuse the replay, but answered: {}",
        body_child(&text)
    );
    assert_eq!(
        fault_codes(&text),
        ("wsse:InvalidSecurity".to_owned(), "0026".to_owned()),
        "{text}"
    );
}

/// Two gemeente nodes on one outbox, an IB (in this process) receiving it. The node sending (it
/// holds the outbox lease) is killed mid-push; the other takes over once the lease has run out,
/// and the IB ends with every update, in order per BSN: each person's state at the IB is the
/// last one the gemeente queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
async fn the_outbox_sender_killed_mid_push_the_other_node_delivers_the_rest_in_order() {
    if !needs_pg() {
        return;
    }
    let logs = tempfile::tempdir().expect("dir");
    let shared = shared_store();
    shared.store.set_outbox(true);
    let (a, b, ib_port) = (Ports::free(), Ports::free(), free_port());
    let ib_dir = tempfile::tempdir().expect("dir");
    let ib_cfg = ib_config(ib_dir.path(), ib_port, &[("0363", a.service)]);
    let ib = crate::chain::start(ib_dir, ib_cfg).await;
    let public = format!(
        "https://127.0.0.1:{}/GSDDossierReintegratie-v0200",
        free_port()
    );
    let env = |ports: Ports| {
        let mut env = node_env(ports, &public, &shared.url);
        env.extend(
            [
                (
                    "DKD_PUSH__URL",
                    format!("https://127.0.0.1:{ib_port}/IBVerwijsindex-v0300"),
                ),
                // A short lease, so the take-over comes within the test; one delivery at a
                // time, so the push lasts long enough to be killed in the middle.
                ("DKD_PUSH__LEASE_SECS", "3".to_owned()),
                ("DKD_PUSH__TIMEOUT_SECS", "2".to_owned()),
                ("DKD_PUSH__CONCURRENCY", "1".to_owned()),
                ("DKD_PUSH__MAX_BACKOFF_SECS", "1".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    };
    let figures = || {
        ib.store
            .ib_index_figures()
            .expect("figures")
            .get(&("0363".to_owned(), "04".to_owned()))
            .map(|f| f.received)
            .unwrap_or(0)
    };
    let mut procs = Procs::default();
    spawn_node(&mut procs, logs.path(), "node-a", &env(a));
    wait_ready(&mut procs, logs.path(), "node-a", a).await;
    // A first update, delivered while A runs alone: from here on A holds the lease.
    let people: Vec<_> = dkd::chain::demo::generate(400, demo_date())
        .into_iter()
        .filter(|p| p.atl_relaties.len() == 1)
        .map(|mut p| {
            p.atl_relaties[0].bron = dkd::suwiml::model::Bron::gemeente("0363");
            p.bron = Some(dkd::suwiml::model::Bron::gemeente("0363"));
            p
        })
        .take(200)
        .collect();
    assert_eq!(people.len(), 200);
    shared
        .store
        .put_all(&people[..1], "test")
        .expect("first update");
    wait_until("node A delivered the first update", 30, || figures() >= 1).await;
    spawn_node(&mut procs, logs.path(), "node-b", &env(b));
    wait_ready(&mut procs, logs.path(), "node-b", b).await;

    // Every person enters, half of them leave again, a quarter come back: per BSN up to three
    // updates whose order decides the IB's final state.
    shared
        .store
        .put_all(&people[1..], "test")
        .expect("all enter");
    let mut c = shared.store.changes("test");
    for p in people.iter().step_by(2) {
        c.remove(&p.bsn, "0363", false).expect("remove");
    }
    c.commit().expect("half leave");
    let back: Vec<_> = people.iter().step_by(4).cloned().collect();
    shared
        .store
        .put_all(&back, "test")
        .expect("a quarter return");
    let queued: u64 = 200 + 100 + 50;

    wait_until("node A is pushing", 60, || figures() >= 40).await;
    procs.kill("node-a");
    let pending = shared.store.outbox_status().expect("status").pending;
    assert!(
        pending > 100,
        "the kill must land in the middle of the push ({pending} pending)"
    );
    wait_until("node B delivered the rest", 120, || {
        shared.store.outbox_status().is_ok_and(|s| s.pending == 0)
    })
    .await;
    let st = shared.store.outbox_status().expect("status");
    assert_eq!(
        (st.sent, st.parked),
        (queued, 0),
        "every update delivered, none refused"
    );
    // At least once: an update A had sent but not yet marked delivered went again, from B.
    assert!(figures() >= queued, "{} received of {queued}", figures());
    for (i, p) in people.iter().enumerate() {
        let at_ib = !ib
            .store
            .ib_gemeenten_for(&p.bsn, "04")
            .expect("lookup")
            .is_empty();
        let expected = i % 2 == 1 || i % 4 == 0;
        assert_eq!(
            at_ib, expected,
            "person {i}: the IB must hold the last state the gemeente queued"
        );
        assert_eq!(shared.store.get(&p.bsn).expect("read").is_some(), expected);
    }
    procs.all_running(logs.path());
}

/// When no node is ready for a reason they share (here: both hold a certificate with fewer days
/// left than `ops.min_cert_days`), HAProxy still passes requests to the nodes that are alive:
/// they answer, where a balancer with no server left would refuse the IB's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
#[cfg_attr(
    dkd_missing = "haproxy",
    ignore = "needs haproxy: apt-get install haproxy"
)]
async fn with_no_node_ready_haproxy_still_sends_to_the_live_ones() {
    if !needs_pg_and_haproxy() {
        return;
    }
    let Pair {
        logs,
        shared,
        people,
        a,
        b,
        lb,
        public,
        mut procs,
    } = pair(5);
    for (name, ports) in [("node-a", a), ("node-b", b)] {
        let mut env = node_env(ports, &public, &shared.url);
        // The test certificates are valid for 30 days.
        env.push(("DKD_OPS__MIN_CERT_DAYS".into(), "365".into()));
        spawn_node(&mut procs, logs.path(), name, &env);
    }
    for (name, ports) in [("node-a", a), ("node-b", b)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_status(ports.ops, "/healthz") != Some(200) {
            procs.all_running(logs.path());
            assert!(Instant::now() < deadline, "{name} never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(http_status(ports.ops, "/readyz"), Some(503), "{name}");
    }
    let haproxy = spawn_haproxy(&mut procs, lb, a, b);
    wait_until("HAProxy marks both nodes not ready", 20, || {
        let lines = haproxy.lock().expect("lines");
        ["node-a", "node-b"].iter().all(|n| {
            lines
                .iter()
                .any(|(_, l)| l.contains(&format!("dkd_ready/{n} is DOWN")))
        })
    })
    .await;
    let signer = signer();
    let bsn = people[0].bsn.to_string();
    for _ in 0..4 {
        let r = post(&public, &signed(&signer, &public, &bsn)).await;
        assert_eq!(r.status, 200, "answered through the balancer");
        assert!(r.text().contains("GSDReintegratieInfoResponse"));
    }
    procs.all_running(logs.path());
}

/// The two example configurations are valid and differ only where two nodes must: their ports.
#[test]
fn the_two_node_configurations_are_valid_and_differ_only_in_ports() {
    let load = |n: &str| {
        dkd::config::Config::load(Some(&deploy(n)), std::iter::empty())
            .unwrap_or_else(|e| panic!("{n}: {e}"))
    };
    let (a, b) = (load("node-a.toml"), load("node-b.toml"));
    assert_eq!(a.store.url, b.store.url, "one database");
    assert!(a.store.url.is_some());
    assert_eq!(
        a.server.public_url, b.server.public_url,
        "one address for the IB"
    );
    assert!(a.pushes() && b.pushes());
    let ports = |c: &dkd::config::Config| {
        [&c.server.listen, &c.ops.listen, &c.admin.listen].map(|l| l.clone())
    };
    let (pa, pb) = (ports(&a), ports(&b));
    for (x, y) in pa.iter().zip(&pb) {
        assert_ne!(x, y, "the nodes can share a host");
    }
    let mut b_as_a = b.clone();
    b_as_a.server.listen = a.server.listen.clone();
    b_as_a.ops.listen = a.ops.listen.clone();
    b_as_a.admin.listen = a.admin.listen.clone();
    assert_eq!(b_as_a, a, "nothing else differs");
}
