//! End-to-end benchmark tools over mutual TLS, driven by `benches/run.sh` (see BENCHMARKS.md).
//!
//! `cargo bench --bench load -- <command> [options]`:
//!
//! - `run`: the load generator. N keep-alive connections (hyper HTTP/1.1 over tokio-rustls, client
//!   certificate from `dkd certs`), for a fixed time after a warm-up, closed loop (full load) or
//!   at a fixed rate (`--rate`, half load). Signed requests are all signed **before** the timed
//!   run, each with its own MessageID (replay detection) and used once. Prints one JSON line:
//!   req/s, p50/p90/p99/max latency (send → whole response), errors.
//! - `responder`: the ceiling of issue 7 — a bare hyper + rustls server with dkd's own TLS
//!   configuration (mutual TLS, same verifier, same provider) that reads the request body and
//!   returns a fixed body of `--size` bytes. Not part of the product. With `--sign 1` it also does,
//!   per request, what no signed answer can avoid: one RSA-2048 signature (as `rsa`) and one RSA
//!   verification, on the async worker as `dkd serve` does — the end-to-end ceiling for signed
//!   traffic on this machine, load generator included.
//! - `rsa`: the signing ceiling — raw RSA-2048 PKCS#1 v1.5 SHA-256 signatures/s (aws-lc-rs, the
//!   key dkd signs with) on `--threads` threads.
//! - `wait`: polls `GET ?wsdl` over mutual TLS until dkd answers; prints the milliseconds.
//! - `build-store`: builds (or finds cached) the 10^6-person store in `target/bench-store-1e6`.
//! - `summary`: reads the JSON lines of a run and the criterion estimates, prints the tables.
//! - `build-ib-store`, `ib-gemeenten`: the routed-IB benchmark's store and gemeenten (`ib/`).
//! - `soak`: a long run at a fixed rate, sampling the server's memory and the errors (`soak/`).
//!
//! Run without a command (e.g. by a plain `cargo bench`) it prints this usage and exits.

#[path = "common/mod.rs"]
mod common;
#[path = "ib/mod.rs"]
mod ib;
#[path = "soak/mod.rs"]
mod soak;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo bench --bench load -- <command> [--key value ...]
  run        --url URL --certs DIR [--mode unsigned|signed|raw|signed-raw] [--store demo|big|ib:G] [--conns 32]
             [--secs 10] [--warmup 2] [--rate 0] [--pool N] [--threads 2] [--label L]
             [--connect HOST:PORT,HOST:PORT] [--server-pid PID[,PID...]]
  responder  --certs DIR --size BYTES [--sign 1] [--listen 127.0.0.1:0]   (prints LISTENING <addr>)
  rsa        --certs DIR [--threads 2] [--secs 5] [--label L]
  wait       --url URL --certs DIR [--timeout 120]
  build-store                                    (the cached 10^6-person store)
  summary    --results FILE [--criterion DIR]
  oha-import --file OHA_JSON --label L [--conns N] (oha's JSON as a result line)
  body       --url URL --bsn BSN                   (the unsigned request the generator sends)
  free-port
  build-ib-store --to DIR [--entries 2000000] [--gemeenten 340]   (the IB's cached big sled store)
  ib-gemeenten --certs DIR --dir DIR --config FILE [--n 340]      (prints READY; serves until killed)
  soak       --url URL --certs DIR [--mode signed|unsigned] [--secs 600] [--warmup 5] [--rate 0]
             [--conns 32] [--signers 2] [--sample 10] [--server-pid PID] [--csv FILE] [--label L]";

fn main() {
    // cargo bench appends --bench; criterion-style filters are not used here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(cmd) = args.first().cloned() else {
        println!("{USAGE}");
        return;
    };
    let opts = Opts::parse(&args[1..]);
    match cmd.as_str() {
        "run" => run(&opts),
        "responder" => responder(&opts),
        "rsa" => rsa(&opts),
        "wait" => wait(&opts),
        "build-store" => {
            let s = common::open_big_store(common::BIG_N);
            drop(s);
            println!("{}", common::big_store_dir().display());
        }
        "summary" => summary(&opts),
        "oha-import" => oha_import(&opts),
        "soak" => soak::soak(&opts),
        "build-ib-store" => ib::build_ib_store(
            &opts.req("to"),
            opts.num("entries", 2_000_000),
            opts.num("gemeenten", 340),
        ),
        "ib-gemeenten" => ib::ib_gemeenten(
            opts.num("n", 340),
            opts.certs(),
            PathBuf::from(opts.req("dir")),
            PathBuf::from(opts.req("config")),
        ),
        "body" => print!(
            "{}",
            dkd::soap::example_request(
                &opts.req("url"),
                common::CLIENT_OIN,
                &opts.req("bsn"),
                "urn:uuid:00000000-0000-4000-8000-000000000001",
            )
        ),
        "free-port" => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            println!("{}", l.local_addr().expect("addr").port());
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// `--key value` pairs.
struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut m = BTreeMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let Some(k) = k.strip_prefix("--") else {
                eprintln!("unexpected argument {k}\n{USAGE}");
                std::process::exit(2);
            };
            let v = it.next().cloned().unwrap_or_default();
            m.insert(k.to_owned(), v);
        }
        Opts(m)
    }

    fn str(&self, k: &str, default: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| default.to_owned())
    }

    fn req(&self, k: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| {
            eprintln!("--{k} is required\n{USAGE}");
            std::process::exit(2)
        })
    }

    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        match self.0.get(k) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{k}: not a number: {v}");
                std::process::exit(2)
            }),
        }
    }

    fn certs(&self) -> PathBuf {
        PathBuf::from(self.req("certs"))
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn client_tls(certs: &Path) -> Arc<rustls::ClientConfig> {
    use dkd::certs::files;
    Arc::new(
        dkd::http::tls::client_config(
            &certs.join(files::CA),
            &certs.join(files::CLIENT),
            &certs.join(files::CLIENT_KEY),
        )
        .expect("client TLS config"),
    )
}

// ---------------------------------------------------------------------------------------------
// The load generator

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unsigned,
    Signed,
    Raw,
    /// Signed requests to the signing responder: nothing to probe, any answer counts.
    SignedRaw,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Target {
    addr: String,
    /// Other instances serving the same public URL (`--connect`): connections go round-robin
    /// over `addr` and these, as a balancer in front of them would spread them.
    more: Vec<String>,
    next: AtomicUsize,
    path: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Target {
    fn new(addr: String, path: String, tls: Arc<rustls::ClientConfig>) -> Target {
        Target {
            addr,
            more: Vec::new(),
            next: AtomicUsize::new(0),
            path,
            tls,
        }
    }

    async fn connect(&self) -> Result<Sender, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % (1 + self.more.len());
        let addr = if i == 0 {
            &self.addr
        } else {
            &self.more[i - 1]
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
        let name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(&self, body: Bytes) -> hyper::Request<Full<Bytes>> {
        hyper::Request::builder()
            .method("POST")
            .uri(&self.path)
            .header("host", &self.addr)
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(Full::new(body))
            .expect("request")
    }
}

/// One request: status and body, or a transport error.
async fn send(
    sender: &mut Sender,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn contains(body: &[u8], needle: &str) -> bool {
    needle.is_empty() || std::str::from_utf8(body).is_ok_and(|s| s.contains(needle))
}

fn split_url(url: &str) -> (String, String) {
    let (h, p, path) = dkd::http::client::split_url(url).expect("https URL");
    (format!("{h}:{p}"), path)
}

/// The BSNs of a store, spread over it.
/// The BSNs answered with a ClientSuwi, probed once with the given requests before the clock
/// starts. Exits when none is: nothing could be measured.
async fn answered(
    target: &Target,
    probes: impl IntoIterator<Item = (dkd::suwiml::types::Bsn, Bytes)>,
) -> Vec<dkd::suwiml::types::Bsn> {
    let mut s = target.connect().await.expect("probe connection");
    let mut good = Vec::new();
    let mut last = String::new();
    for (b, req) in probes {
        match send(&mut s, target.request(req)).await {
            Ok((200, body)) if contains(&body, "ClientSuwi") => good.push(b),
            Ok((st, body)) => last = format!("HTTP {st}: {}", String::from_utf8_lossy(&body)),
            Err(e) => {
                last = e;
                s = target.connect().await.expect("probe reconnection");
            }
        }
    }
    if good.is_empty() {
        eprintln!("no candidate BSN answered with a ClientSuwi; last answer: {last}");
        std::process::exit(1);
    }
    good
}

fn candidates(store: &str) -> Vec<dkd::suwiml::types::Bsn> {
    match store {
        "big" => common::spread(&common::big_bsns(common::BIG_N), 512),
        // `ib:G`: what the G emulated gemeenten of `ib-gemeenten` hold (routed by the IB).
        s if s.starts_with("ib:") => {
            let g = s[3..].parse().unwrap_or_else(|_| {
                eprintln!("--store ib:G: G is the number of gemeenten");
                std::process::exit(2)
            });
            common::spread(&ib::held_bsns(g), 512)
        }
        _ => common::spread(&common::demo_bsns(dkd::chain::demo::DEMO_PERSONS), 512),
    }
}

fn signed_bodies(
    signer: &dkd::soap::wssec::Signer,
    url: &str,
    bsns: &[dkd::suwiml::types::Bsn],
    n: usize,
    threads: usize,
) -> Vec<Bytes> {
    let now = time::OffsetDateTime::now_utc();
    let per = n.div_ceil(threads.max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let bsn = &bsns[i % bsns.len()];
                            let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
                            Bytes::from(
                                dkd::soap::signed_request(
                                    signer,
                                    url,
                                    common::CLIENT_OIN,
                                    bsn.as_str(),
                                    &id,
                                    now,
                                )
                                .expect("sign"),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}

fn unsigned_body(url: &str, bsn: &dkd::suwiml::types::Bsn, i: usize) -> Bytes {
    Bytes::from(dkd::soap::example_request(
        url,
        common::CLIENT_OIN,
        bsn.as_str(),
        &format!("urn:uuid:00000000-0000-4000-8000-{i:012}"),
    ))
}

struct Shared {
    target: Target,
    bodies: Vec<Bytes>,
    /// Each body used once (signed) or cycled (unsigned).
    once: bool,
    next: AtomicUsize,
    exhausted: AtomicBool,
    expect: String,
    rate: f64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

#[derive(Default)]
struct Stats {
    lat_us: Vec<u32>,
    /// Open loop only: from each request's scheduled start to its whole answer, so that a request
    /// sent late (a backlog behind busy connections) counts its wait (no coordinated omission).
    sched_us: Vec<u32>,
    bytes: u64,
    status_errors: u64,
    body_errors: u64,
    io_errors: u64,
    late: u64,
    issued: u64,
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, e: String) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

async fn connection(shared: Arc<Shared>, mut sender: Option<Sender>) -> Stats {
    let mut st = Stats::default();
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let mut scheduled = None;
        if shared.rate > 0.0 {
            let at = shared.start + Duration::from_secs_f64(i as f64 / shared.rate);
            scheduled = Some(at);
            if at >= shared.end {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            if Instant::now().saturating_duration_since(at) > Duration::from_millis(2) {
                st.late += 1;
            }
        } else if Instant::now() >= shared.end {
            break;
        }
        let body = if shared.once {
            match shared.bodies.get(i) {
                Some(b) => b.clone(),
                None => {
                    shared.exhausted.store(true, Ordering::Relaxed);
                    break;
                }
            }
        } else {
            shared.bodies[i % shared.bodies.len()].clone()
        };
        let mut s = match sender.take() {
            Some(s) => s,
            None => match shared.target.connect().await {
                Ok(s) => s,
                Err(e) => {
                    st.io_errors += 1;
                    st.error(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        st.issued += 1;
        let t0 = Instant::now();
        let r = send(&mut s, shared.target.request(body)).await;
        let t1 = Instant::now();
        let counted = t1 >= shared.measure_from && t1 < shared.end;
        match r {
            Ok((status, body)) => {
                sender = Some(s);
                if !counted {
                    continue;
                }
                if status != 200 {
                    st.status_errors += 1;
                    st.error(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(600)])
                    ));
                } else if !contains(&body, &shared.expect) {
                    st.body_errors += 1;
                    st.error(format!(
                        "no {:?} in: {}",
                        shared.expect,
                        String::from_utf8_lossy(&body[..body.len().min(600)])
                    ));
                } else {
                    let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
                    st.lat_us.push(us(t1 - t0));
                    if let Some(at) = scheduled {
                        st.sched_us.push(us(t1.saturating_duration_since(at)));
                    }
                    st.bytes += body.len() as u64;
                }
            }
            Err(e) => {
                if counted {
                    st.io_errors += 1;
                    st.error(e);
                }
            }
        }
    }
    st
}

/// CPU accounting from /proc, in clock ticks: (machine busy, machine total, this process,
/// the server process). Lets a run say how much of the two cores went to dkd, to the load
/// generator, and to anything else (e.g. a compiler running beside the benchmark).
#[derive(Clone, Copy, Default)]
struct Cpu {
    busy: u64,
    nice: u64,
    total: u64,
    me: u64,
    server: u64,
}

fn proc_ticks(pid: &str) -> u64 {
    let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let rest = t.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // After the comm: state(0) ppid(1) ... utime(11) stime(12).
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn cpu_now(server_pid: &str) -> Cpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = g(0) + g(1) + g(2) + g(5) + g(6) + g(7);
    Cpu {
        busy,
        nice: g(1),
        total: busy + g(3) + g(4),
        me: proc_ticks("self"),
        // Several pids (`--server-pid A,B,...`): two dkd instances and their database count as one server.
        server: server_pid
            .split(',')
            .filter(|p| !p.is_empty())
            .map(proc_ticks)
            .sum(),
    }
}

/// Shares of the machine (in cores) between two snapshots.
fn cpu_json(a: Cpu, b: Cpu) -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let total = (b.total - a.total).max(1) as f64;
    let share = |x: u64| x as f64 / total * cores;
    let busy = b.busy - a.busy;
    let me = b.me - a.me;
    let server = b.server.saturating_sub(a.server);
    let other = busy.saturating_sub(me + server);
    // Our processes run at nice 0, so the `nice` column is other processes at a lower priority
    // (e.g. a fuzzer at nice 10). With autogroup scheduling they still take a fair share.
    let nice = (b.nice - a.nice).min(other);
    serde_json::json!({
        "busy_cores": share(busy),
        "server_cores": share(server),
        "client_cores": share(me),
        "other_cores": share(other),
        "other_niced_cores": share(nice),
        "other_normal_cores": share(other - nice),
    })
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn run(o: &Opts) {
    let url = o.req("url");
    let certs = o.certs();
    let mode = match o.str("mode", "unsigned").as_str() {
        "signed" => Mode::Signed,
        "raw" => Mode::Raw,
        "signed-raw" => Mode::SignedRaw,
        _ => Mode::Unsigned,
    };
    let store = o.str("store", "demo");
    let conns: usize = o.num("conns", 32);
    let secs: f64 = o.num("secs", 10.0);
    let warmup: f64 = o.num("warmup", 2.0);
    let rate: f64 = o.num("rate", 0.0);
    let threads: usize = o.num("threads", 2);
    let label = o.str("label", "run");
    let (addr, path) = split_url(&url);
    let tls = client_tls(&certs);
    let rt = runtime(threads);
    let mut target = Target::new(addr.clone(), path, tls);
    // --connect A,B: the instances behind one public URL (the signed requests name the URL).
    let connect = o.str("connect", "");
    if !connect.is_empty() {
        let mut all: Vec<String> = connect.split(',').map(str::to_owned).collect();
        target.addr = all.remove(0);
        target.more = all;
    }
    let client_signer = || {
        dkd::soap::wssec::Signer::load(
            &certs.join(dkd::certs::files::CLIENT),
            &certs.join(dkd::certs::files::CLIENT_KEY),
        )
        .expect("client signer")
    };

    // Which BSNs are answered with a ClientSuwi: probe the candidates once, outside the timing.
    let cands = candidates(&store);
    let good: Vec<dkd::suwiml::types::Bsn> = if matches!(mode, Mode::Raw | Mode::SignedRaw) {
        cands
    } else {
        let probes: Vec<Bytes> = match mode {
            Mode::Signed => signed_bodies(&client_signer(), &url, &cands, cands.len(), 2),
            _ => cands
                .iter()
                .enumerate()
                .map(|(i, b)| unsigned_body(&url, b, i))
                .collect(),
        };
        rt.block_on(answered(&target, cands.iter().copied().zip(probes)))
    };

    let (bodies, once) = match mode {
        Mode::Signed | Mode::SignedRaw => {
            // Enough for the whole run: the caller passes --pool from the RSA ceiling.
            let n: usize = o.num(
                "pool",
                ((if rate > 0.0 { rate } else { 3000.0 }) * (secs + warmup) * 1.2) as usize + 100,
            );
            let t = Instant::now();
            let v = signed_bodies(&client_signer(), &url, &good, n, 2);
            eprintln!(
                "{label}: {n} signed requests prepared in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            (v, true)
        }
        _ => (
            good.iter()
                .enumerate()
                .map(|(i, b)| unsigned_body(&url, b, i))
                .collect(),
            false,
        ),
    };
    let n_bsns = good.len();
    let bsn_sample = good.first().map(|b| b.as_str().to_owned());
    let req_bytes = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len().max(1);
    let expect = match mode {
        Mode::Raw | Mode::SignedRaw => String::new(),
        _ => "ClientSuwi".to_owned(),
    };

    let server_pid = o.str("server-pid", "");
    let (stats, exhausted, elapsed, cpu) = rt.block_on(async move {
        // Handshakes first, outside the timing.
        let mut senders = Vec::with_capacity(conns);
        for _ in 0..conns {
            senders.push(target.connect().await.expect("connection"));
        }
        let start = Instant::now() + Duration::from_millis(50);
        let measure_from = start + Duration::from_secs_f64(warmup);
        let end = measure_from + Duration::from_secs_f64(secs);
        let shared = Arc::new(Shared {
            target,
            bodies,
            once,
            next: AtomicUsize::new(0),
            exhausted: AtomicBool::new(false),
            expect,
            rate,
            start,
            measure_from,
            end,
        });
        let cpu_task = tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let a = cpu_now(&server_pid);
            tokio::time::sleep_until(end.into()).await;
            cpu_json(a, cpu_now(&server_pid))
        });
        tokio::time::sleep_until(start.into()).await;
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|s| tokio::spawn(connection(shared.clone(), Some(s))))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("connection task"));
        }
        let elapsed = end.min(Instant::now()) - measure_from;
        let cpu = cpu_task.await.expect("cpu task");
        (all, shared.exhausted.load(Ordering::Relaxed), elapsed, cpu)
    });

    let mut lat: Vec<u32> = stats
        .iter()
        .flat_map(|s| s.lat_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let mut sched: Vec<u32> = stats
        .iter()
        .flat_map(|s| s.sched_us.iter().copied())
        .collect();
    sched.sort_unstable();
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let ok = lat.len() as u64;
    let secs_measured = elapsed.as_secs_f64();
    let first_error = stats.iter().find_map(|s| s.first_error.clone());
    let mean = if lat.is_empty() {
        f64::NAN
    } else {
        lat.iter().map(|v| *v as f64).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    let out = serde_json::json!({
        "label": label,
        "mode": o.str("mode", "unsigned"),
        "store": store,
        "conns": conns,
        "threads": threads,
        "rate_target": rate,
        "secs": secs_measured,
        "ok": ok,
        "rps": ok as f64 / secs_measured,
        "p50_ms": pct(&lat, 50.0),
        "p90_ms": pct(&lat, 90.0),
        "p99_ms": pct(&lat, 99.0),
        "max_ms": pct(&lat, 100.0),
        "mean_ms": mean,
        // Open loop: the same, counted from each request's scheduled start.
        "p50_sched_ms": (rate > 0.0).then(|| pct(&sched, 50.0)),
        "p99_sched_ms": (rate > 0.0).then(|| pct(&sched, 99.0)),
        "errors_status": sum(|s| s.status_errors),
        "errors_body": sum(|s| s.body_errors),
        "errors_io": sum(|s| s.io_errors),
        "late_2ms": sum(|s| s.late),
        "issued": sum(|s| s.issued),
        "req_bytes": req_bytes,
        "resp_bytes": sum(|s| s.bytes).checked_div(ok).unwrap_or(0),
        "bsns": n_bsns,
        "bsn_sample": bsn_sample,
        "pool_exhausted": exhausted,
        "first_error": first_error,
        "cpu": cpu,
    });
    println!("{out}");
}

// ---------------------------------------------------------------------------------------------
// The bare responder (issue 7's ceiling)

fn responder(o: &Opts) {
    use dkd::certs::files;
    let certs = o.certs();
    let size: usize = o.num("size", 2000);
    let listen = o.str("listen", "127.0.0.1:0");
    let cfg = dkd::http::tls::server_config(
        &certs.join(files::SERVER),
        &certs.join(files::SERVER_KEY),
        &certs.join(files::CA),
        &[],
    )
    .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    // A body of exactly `size` bytes that looks like XML.
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><r>");
    while body.len() + 4 < size {
        body.push('x');
    }
    body.push_str("</r>");
    let body = Bytes::from(body);
    let crypto = (o.num::<u8>("sign", 0) == 1)
        .then(|| Arc::new(common::RsaFixture::load(&certs.join(files::SERVER_KEY))));
    // The same runtime as `dkd serve`: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!("LISTENING {}", listener.local_addr().expect("addr"));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let body = body.clone();
            let crypto = crypto.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = body.clone();
                        let crypto = crypto.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            if let Some(common::RsaFixture {
                                key,
                                msg,
                                sig,
                                public,
                            }) = crypto.as_deref()
                            {
                                use aws_lc_rs::signature as s;
                                public.verify_sig(msg, sig).expect("verify");
                                let mut out = vec![0u8; key.public_modulus_len()];
                                key.sign(
                                    &s::RSA_PKCS1_SHA256,
                                    &aws_lc_rs::rand::SystemRandom::new(),
                                    msg,
                                    &mut out,
                                )
                                .expect("sign");
                            }
                            let mut r = hyper::Response::new(Full::new(body));
                            r.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static("text/xml; charset=utf-8"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .max_buf_size(64 * 1024);
                let _ = b.serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The RSA signing ceiling

fn rsa(o: &Opts) {
    let certs = o.certs();
    let threads: usize = o.num("threads", 2);
    let secs: f64 = o.num("secs", 5.0);
    let common::RsaFixture { key, msg, .. } =
        common::RsaFixture::load(&certs.join(dkd::certs::files::SERVER_KEY));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let cpu0 = cpu_now("");
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let (key, msg) = (&key, &msg);
                s.spawn(move || {
                    let rng = aws_lc_rs::rand::SystemRandom::new();
                    let mut sig = vec![0u8; key.public_modulus_len()];
                    let mut n = 0u64;
                    while Instant::now() < end {
                        for _ in 0..16 {
                            key.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                                .expect("sign");
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let el = start.elapsed().as_secs_f64();
    let cpu = cpu_json(cpu0, cpu_now(""));
    println!(
        "{}",
        serde_json::json!({
            "label": o.str("label", "rsa"),
            "threads": threads,
            "secs": el,
            "signs": total,
            "rps": total as f64 / el,
            "cpu": cpu,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Start-up: wait until the WSDL is served over mutual TLS

fn wait(o: &Opts) {
    let url = o.req("url");
    let tls = client_tls(&o.certs());
    let timeout: f64 = o.num("timeout", 120.0);
    let start = Instant::now();
    let rt = runtime(1);
    rt.block_on(async {
        loop {
            let r = dkd::http::client::request(
                tls.clone(),
                "GET",
                &format!("{url}?wsdl"),
                &[],
                Vec::new(),
                Duration::from_secs(2),
            )
            .await;
            if matches!(&r, Ok(resp) if resp.status == 200) {
                println!("{:.0}", start.elapsed().as_secs_f64() * 1000.0);
                return;
            }
            if start.elapsed().as_secs_f64() > timeout {
                eprintln!("dkd did not answer within {timeout} s: {r:?}");
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// oha's JSON output (the standard-tool cross-check) in this tool's format

fn oha_import(o: &Opts) {
    let text = std::fs::read_to_string(o.req("file")).expect("oha output");
    let v: serde_json::Value = serde_json::from_str(&text).expect("oha JSON");
    let ms = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let codes = &v["statusCodeDistribution"];
    let ok = codes["200"].as_u64().unwrap_or(0);
    let all: u64 = codes
        .as_object()
        .map(|m| m.values().filter_map(|x| x.as_u64()).sum())
        .unwrap_or(0);
    let errors: u64 = v["errorDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(|x| x.as_u64()).sum())
        .unwrap_or(0);
    let secs = v["summary"]["total"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{}",
        serde_json::json!({
            "label": o.req("label"),
            "tool": "oha",
            "conns": o.num("conns", 0),
            "rate_target": o.num("rate", 0.0),
            "secs": secs,
            "ok": ok,
            "rps": ok as f64 / secs,
            "p50_ms": ms("p50"),
            "p90_ms": ms("p90"),
            "p99_ms": ms("p99"),
            "max_ms": v["summary"]["slowest"].as_f64().unwrap_or(f64::NAN) * 1000.0,
            "errors_status": all - ok,
            "errors_body": 0,
            "errors_io": errors,
            "resp_bytes": v["summary"]["sizePerRequest"],
            "cpu": serde_json::Value::Null,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// The summary

fn summary(o: &Opts) {
    let text = std::fs::read_to_string(o.req("results")).expect("results file");
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut order = Vec::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            let label = v["label"].as_str().unwrap_or("?").to_owned();
            if !rows.contains_key(&label) {
                order.push(label.clone());
            }
            rows.insert(label, v);
        }
    }
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let rps = |l: &str| rows.get(l).map(|v| f(v, "rps")).unwrap_or(f64::NAN);
    let p99 = |l: &str| rows.get(l).map(|v| f(v, "p99_ms")).unwrap_or(f64::NAN);
    println!("End to end over mutual TLS (load generator benches/load.rs):\n");
    println!("| run | conns | rate | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | resp bytes | CPU cores dkd/client/other | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for l in &order {
        let v = &rows[l];
        if v.get("p50_ms").is_none() {
            continue;
        }
        let base = if l.starts_with("oha/") {
            "oha/ceiling/full"
        } else {
            "ceiling/full"
        };
        let ratio = if l.ends_with("/half") {
            String::new()
        } else if l.contains("/unsigned") {
            let r = f(v, "rps") / rps(base);
            format!("{:.0} % of bare responder", r * 100.0)
        } else if l.contains("/signed/") || l.contains("/signed-") {
            format!(
                "{:.0} % of RSA sign ceiling",
                f(v, "rps") / rps("rsa/2") * 100.0
            )
        } else {
            String::new()
        };
        let errors = v["errors_status"].as_u64().unwrap_or(0)
            + v["errors_body"].as_u64().unwrap_or(0)
            + v["errors_io"].as_u64().unwrap_or(0);
        let rate = f(v, "rate_target");
        let cpu = if v["cpu"].is_object() {
            format!(
                "{:.2}/{:.2}/{:.2}",
                f(&v["cpu"], "server_cores"),
                f(&v["cpu"], "client_cores"),
                f(&v["cpu"], "other_cores"),
            )
        } else {
            "–".to_owned()
        };
        println!(
            "| {l} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {errors}{} | {} | {cpu} | {ratio} |",
            v["conns"],
            if rate > 0.0 { format!("{rate:.0}/s") } else { "closed loop".into() },
            f(v, "rps"),
            f(v, "p50_ms"),
            f(v, "p90_ms"),
            f(v, "p99_ms"),
            f(v, "max_ms"),
            if v["pool_exhausted"].as_bool() == Some(true) { " (pool exhausted)" } else { "" },
            v["resp_bytes"],
        );
    }
    for l in &order {
        let v = &rows[l];
        if l.starts_with("rsa/") {
            println!(
                "\nRSA-2048 sign ceiling ({} threads): {:.0} signatures/s",
                v["threads"],
                f(v, "rps")
            );
        }
        if l.starts_with("startup/") || l.starts_with("rss/") || l.starts_with("idle-before/") {
            println!("{l}: {}", v["value"]);
        }
    }
    // Targets (issues 3 and 7).
    println!("\nTargets:");
    for store in ["1e3", "1e6"] {
        if !rows.contains_key(&format!("{store}/unsigned/full")) {
            continue;
        }
        let u = rps(&format!("{store}/unsigned/full")) / rps("ceiling/full");
        let s = rps(&format!("{store}/signed/full")) / rps("rsa/2");
        let p = p99(&format!("{store}/unsigned/full")) / p99("ceiling/full");
        println!(
            "  {store}: unsigned {:.0} % of ceiling (target >= 75 %): {}",
            u * 100.0,
            if u >= 0.75 { "met" } else { "MISSED" }
        );
        println!(
            "  {store}: signed {:.0} % of RSA ceiling (target >= 80 %): {}",
            s * 100.0,
            if s >= 0.80 { "met" } else { "MISSED" }
        );
        if rows.contains_key("ceiling/signed/full") {
            println!(
                "  {store}: signed {:.0} % of the signing responder, which itself reaches {:.0} % of the RSA ceiling",
                rps(&format!("{store}/signed/full")) / rps("ceiling/signed/full") * 100.0,
                rps("ceiling/signed/full") / rps("rsa/2") * 100.0
            );
        }
        println!(
            "  {store}: unsigned full-load p99 {:.2} ms = {:.2}x ceiling p99 (target <= 1.5x): {}",
            p99(&format!("{store}/unsigned/full")),
            p,
            if p <= 1.5 { "met" } else { "MISSED" }
        );
        for m in ["unsigned", "signed"] {
            let h = p99(&format!("{store}/{m}/half"));
            if h.is_finite() {
                println!(
                    "  {store}: {m} half-load p99 {h:.2} ms (target <= 2 ms): {}",
                    if h <= 2.0 { "met" } else { "MISSED" }
                );
            }
        }
    }
    if let Some(dir) = o.0.get("criterion") {
        println!("\nIn process (criterion, median [95 % CI of the mean]):\n");
        println!("| benchmark | median | mean 95 % CI |");
        println!("|---|---|---|");
        let mut found = Vec::new();
        collect_estimates(Path::new(dir), &mut found);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, med, lo, hi) in found {
            println!(
                "| {name} | {} | {} – {} |",
                human(med),
                human(lo),
                human(hi)
            );
        }
    }
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn collect_estimates(dir: &Path, out: &mut Vec<(String, f64, f64, f64)>) {
    for group in ["request", "response", "wssec", "rsa", "store"] {
        let Ok(rd) = std::fs::read_dir(dir.join(group)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path().join("new/estimates.json");
            let Ok(t) = std::fs::read_to_string(&p) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                continue;
            };
            let g = |a: &str, b: &str| v[a][b].as_f64().unwrap_or(f64::NAN);
            out.push((
                format!("{group}/{}", e.file_name().to_string_lossy()),
                g("median", "point_estimate"),
                v["mean"]["confidence_interval"]["lower_bound"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                v["mean"]["confidence_interval"]["upper_bound"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            ));
        }
    }
}
