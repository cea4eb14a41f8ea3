//! `load -- soak`: a long run at a fixed rate (or closed loop, to measure capacity first) that
//! samples the server every `--sample` seconds — RSS and peak RSS (`/proc/PID/status`), open file
//! descriptors, threads, CPU shares, answers, errors and latency of the interval — into a CSV,
//! and prints one JSON summary line at the end. Driven by `benches/soak.sh` (BENCHMARKS.md, Soak).
//!
//! Unlike `run`, signed requests are signed *while* the run goes on, by `--signers` threads, each
//! with a fresh MessageID and `Created` = now: a pool signed beforehand would be older than
//! `security.max_message_age_secs` (300 s) halfway through a 10-minute soak, and would need
//! gigabytes for one. Client signing therefore shares the two cores with the server, so the
//! capacity the soak is set against must be measured with the same `soak` command (closed loop,
//! `--rate 0`), not taken from a `run` figure.

use super::{
    answered, candidates, client_tls, common, contains, cpu_json, cpu_now, runtime, send,
    split_url, unsigned_body, Opts, Target,
};
use bytes::Bytes;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request may take this long before it counts as a connection error: a soak must end by
/// itself even if the server stops answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    status_errors: AtomicU64,
    body_errors: AtomicU64,
    io_errors: AtomicU64,
    late: AtomicU64,
    /// Latencies (µs) of the current interval; the sampler takes them.
    lat_us: Mutex<Vec<u32>>,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, counter: &AtomicU64, e: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first_error.lock() {
            if f.is_none() {
                *f = Some(e);
            }
        }
    }
}

/// Where request bodies come from: cycled (unsigned) or signed on demand.
enum Bodies {
    Cycle(Vec<Bytes>),
    Signed(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Bytes>>),
}

struct Shared {
    target: Target,
    bodies: Bodies,
    next: AtomicUsize,
    rate: f64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    c: Counters,
}

fn status_kib(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn loadavg1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

async fn connection(shared: Arc<Shared>) {
    let mut sender = None;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if shared.rate > 0.0 {
            let at = shared.start + Duration::from_secs_f64(i as f64 / shared.rate);
            if at >= shared.end {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            if Instant::now().saturating_duration_since(at) > Duration::from_millis(2) {
                shared.c.late.fetch_add(1, Ordering::Relaxed);
            }
        } else if Instant::now() >= shared.end {
            break;
        }
        let body = match &shared.bodies {
            Bodies::Cycle(v) => v[i % v.len()].clone(),
            Bodies::Signed(rx) => match rx.lock().await.recv().await {
                Some(b) => b,
                None => break,
            },
        };
        let mut s = match sender.take() {
            Some(s) => s,
            None => match shared.target.connect().await {
                Ok(s) => s,
                Err(e) => {
                    if Instant::now() >= shared.measure_from {
                        shared.c.error(&shared.c.io_errors, e);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        let r = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut s, shared.target.request(body)))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
        let t1 = Instant::now();
        let counted = t1 >= shared.measure_from && t1 < shared.end;
        let c = &shared.c;
        match r {
            Ok((status, body)) => {
                sender = Some(s);
                if !counted {
                    continue;
                }
                let excerpt = || String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
                if status != 200 {
                    c.error(&c.status_errors, format!("HTTP {status}: {}", excerpt()));
                } else if !contains(&body, "ClientSuwi") {
                    c.error(&c.body_errors, format!("no ClientSuwi in: {}", excerpt()));
                } else {
                    c.ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = c.lat_us.lock() {
                        l.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                    }
                }
            }
            Err(e) => {
                if counted {
                    c.error(&c.io_errors, e);
                }
            }
        }
    }
}

fn ms(sorted: &[u32], p: f64) -> f64 {
    super::pct(sorted, p)
}

pub fn soak(o: &Opts) {
    let url = o.req("url");
    let certs = o.certs();
    let signed = o.str("mode", "signed") == "signed";
    let store = o.str("store", "demo");
    let conns: usize = o.num("conns", 32);
    let secs: f64 = o.num("secs", 600.0);
    let warmup: f64 = o.num("warmup", 5.0);
    let rate: f64 = o.num("rate", 0.0);
    let signers: usize = o.num("signers", 2);
    let sample: f64 = o.num("sample", 10.0);
    let label = o.str("label", "soak");
    let pid = o.str("server-pid", "");
    let csv_path = o.str("csv", "");
    let (addr, path) = split_url(&url);
    let rt = runtime(o.num("threads", 2));
    let target = Target::new(addr, path, client_tls(&certs));
    let signer = Arc::new(
        dkd::soap::wssec::Signer::load(
            &certs.join(dkd::certs::files::CLIENT),
            &certs.join(dkd::certs::files::CLIENT_KEY),
        )
        .expect("client signer"),
    );
    let sign = |bsn: &dkd::suwiml::types::Bsn| -> Bytes {
        let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let now = time::OffsetDateTime::now_utc();
        Bytes::from(
            dkd::soap::signed_request(&signer, &url, common::CLIENT_OIN, bsn.as_str(), &id, now)
                .expect("sign"),
        )
    };

    // The BSNs answered with a ClientSuwi, probed once before the clock starts.
    let probes: Vec<_> = candidates(&store)
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let body = if signed {
                sign(b)
            } else {
                unsigned_body(&url, b, i)
            };
            (*b, body)
        })
        .collect();
    let good: Vec<dkd::suwiml::types::Bsn> = rt.block_on(answered(&target, probes));

    let stop = Arc::new(AtomicBool::new(false));
    let mut signer_threads = Vec::new();
    let bodies = if signed {
        // A few seconds' worth queued: enough to ride out scheduling hiccups, small enough that
        // no request waits long enough to age.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2048);
        for t in 0..signers.max(1) {
            let (tx, stop, good) = (tx.clone(), stop.clone(), good.clone());
            let (signer, url) = (signer.clone(), url.clone());
            signer_threads.push(std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let bsn = &good[i % good.len()];
                    i += signers.max(1);
                    let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
                    let now = time::OffsetDateTime::now_utc();
                    let Ok(b) = dkd::soap::signed_request(
                        &signer,
                        &url,
                        common::CLIENT_OIN,
                        bsn.as_str(),
                        &id,
                        now,
                    ) else {
                        eprintln!("signing a request failed");
                        return;
                    };
                    if tx.blocking_send(Bytes::from(b)).is_err() {
                        return;
                    }
                }
            }));
        }
        Bodies::Signed(tokio::sync::Mutex::new(rx))
    } else {
        Bodies::Cycle(
            good.iter()
                .enumerate()
                .map(|(i, b)| unsigned_body(&url, b, i))
                .collect(),
        )
    };

    let mut csv: Option<std::fs::File> =
        (!csv_path.is_empty()).then(|| std::fs::File::create(&csv_path).expect("CSV file"));
    if let Some(f) = csv.as_mut() {
        writeln!(
            f,
            "t_s,rss_kib,hwm_kib,fds,threads,ok,rps,errors_status,errors_body,errors_io,late_2ms,p50_ms,p99_ms,max_ms,server_cores,client_cores,other_cores,loadavg1"
        )
        .expect("CSV header");
    }

    let started = Instant::now();
    let summary = rt.block_on(async move {
        let start = Instant::now() + Duration::from_millis(50);
        let measure_from = start + Duration::from_secs_f64(warmup);
        let end = measure_from + Duration::from_secs_f64(secs);
        let shared = Arc::new(Shared {
            target,
            bodies,
            next: AtomicUsize::new(0),
            rate,
            start,
            measure_from,
            end,
            c: Counters::default(),
        });
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(connection(shared.clone())))
            .collect();

        // The sampler: one CSV row per interval from the end of the warm-up on.
        tokio::time::sleep_until(measure_from.into()).await;
        let rss0 = status_kib(&pid, "VmRSS:");
        let (mut rss_min, mut rss_max, mut rss_last) = (rss0, rss0, rss0);
        let mut rss_rows: Vec<(f64, u64)> = vec![(0.0, rss0)];
        let mut fds_max = open_fds(&pid);
        let mut cpu_a = cpu_now(&pid);
        let cpu_first = cpu_a;
        let mut prev = [0u64; 5];
        let mut at = measure_from;
        while at < end {
            at = (at + Duration::from_secs_f64(sample)).min(end);
            tokio::time::sleep_until(at.into()).await;
            let cpu_b = cpu_now(&pid);
            let cpu = cpu_json(cpu_a, cpu_b);
            cpu_a = cpu_b;
            let c = &shared.c;
            let now = [
                c.ok.load(Ordering::Relaxed),
                c.status_errors.load(Ordering::Relaxed),
                c.body_errors.load(Ordering::Relaxed),
                c.io_errors.load(Ordering::Relaxed),
                c.late.load(Ordering::Relaxed),
            ];
            let mut lat = c
                .lat_us
                .lock()
                .map(|mut l| std::mem::take(&mut *l))
                .unwrap_or_default();
            lat.sort_unstable();
            let t = (at - measure_from).as_secs_f64();
            let interval = sample.min(t.max(0.001));
            let (rss, hwm, fds) = (
                status_kib(&pid, "VmRSS:"),
                status_kib(&pid, "VmHWM:"),
                open_fds(&pid),
            );
            let threads = status_kib(&pid, "Threads:");
            rss_min = rss_min.min(rss);
            rss_max = rss_max.max(rss);
            rss_last = rss;
            rss_rows.push((t, rss));
            fds_max = fds_max.max(fds);
            let row = format!(
                "{t:.0},{rss},{hwm},{fds},{threads},{},{:.1},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{}",
                now[0] - prev[0],
                (now[0] - prev[0]) as f64 / interval,
                now[1] - prev[1],
                now[2] - prev[2],
                now[3] - prev[3],
                now[4] - prev[4],
                ms(&lat, 50.0),
                ms(&lat, 99.0),
                ms(&lat, 100.0),
                cpu["server_cores"].as_f64().unwrap_or(f64::NAN),
                cpu["client_cores"].as_f64().unwrap_or(f64::NAN),
                cpu["other_cores"].as_f64().unwrap_or(f64::NAN),
                loadavg1(),
            );
            eprintln!("{label}: {row}");
            if let Some(f) = csv.as_mut() {
                let _ = writeln!(f, "{row}");
            }
            prev = now;
        }
        for t in tasks {
            let _ = t.await;
        }
        let cpu = cpu_json(cpu_first, cpu_now(&pid));
        let c = &shared.c;
        // Growth over the second half, where caches have filled: a leak shows as a steady slope.
        let half: Vec<&(f64, u64)> = rss_rows.iter().filter(|(t, _)| *t >= secs / 2.0).collect();
        let slope = match (half.first(), half.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                (b.1 as f64 - a.1 as f64) / 1024.0 / ((b.0 - a.0) / 60.0)
            }
            _ => f64::NAN,
        };
        let ok = c.ok.load(Ordering::Relaxed);
        serde_json::json!({
            "label": label,
            "mode": if signed { "signed" } else { "unsigned" },
            "conns": conns,
            "rate_target": rate,
            "secs": secs,
            "ok": ok,
            "rps": ok as f64 / secs,
            "errors_status": c.status_errors.load(Ordering::Relaxed),
            "errors_body": c.body_errors.load(Ordering::Relaxed),
            "errors_io": c.io_errors.load(Ordering::Relaxed),
            "late_2ms": c.late.load(Ordering::Relaxed),
            "issued": shared.next.load(Ordering::Relaxed),
            "first_error": c.first_error.lock().ok().and_then(|f| f.clone()),
            "rss_start_mib": rss0 as f64 / 1024.0,
            "rss_min_mib": rss_min as f64 / 1024.0,
            "rss_max_mib": rss_max as f64 / 1024.0,
            "rss_end_mib": rss_last as f64 / 1024.0,
            "rss_slope_second_half_mib_per_min": slope,
            "hwm_end_mib": status_kib(&pid, "VmHWM:") as f64 / 1024.0,
            "fds_max": fds_max,
            "cpu": cpu,
        })
    });
    stop.store(true, Ordering::Relaxed);
    // The signers block on a full queue; the runtime (and with it the receiver) is gone after
    // block_on, so their next send fails and they end.
    drop(rt);
    for t in signer_threads {
        let _ = t.join();
    }
    eprintln!(
        "{}: finished in {:.0} s",
        o.str("label", "soak"),
        started.elapsed().as_secs_f64()
    );
    println!("{summary}");
}
