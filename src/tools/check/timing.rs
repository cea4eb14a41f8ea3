//! The `timing.*` check.

use super::answers::read;
use super::requests::{self, Variant};
use super::{fail, pass, Ctx, Verdict};
use std::time::Instant;

pub(super) async fn check_timing(cx: &mut Ctx<'_>) {
    let t = Instant::now();
    let mut times = Vec::with_capacity(cx.o.requests);
    let bsn = cx.o.bsns.first().unwrap_or(&cx.o.unknown_bsn).clone();
    for _ in 0..cx.o.requests {
        let b = match requests::build(cx.o, &bsn, Variant::Normal) {
            Ok(b) => b,
            Err(e) => {
                cx.record(
                    "timing.latency",
                    t,
                    fail(format!("cannot build the request: {e}")),
                );
                return;
            }
        };
        let started = Instant::now();
        // Only a SOAP answer is timed: a quick 503 or error page is no answer the IB can use.
        match cx.post(&b).await.and_then(|a| read(&a)) {
            Ok(_) => times.push(started.elapsed()),
            Err(e) => {
                cx.record(
                    "timing.latency",
                    t,
                    fail(format!(
                        "request {} of {} failed: {e}",
                        times.len() + 1,
                        cx.o.requests
                    )),
                );
                return;
            }
        }
    }
    times.sort();
    let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let (p50, p99) = (at(0.50), at(0.99));
    let text = format!(
        "p50 {} ms, p99 {} ms over {} requests (each on a new connection)",
        p50.as_millis(),
        p99.as_millis(),
        times.len()
    );
    let v = if p99 > cx.o.slow {
        (
            Verdict::Warn,
            format!(
                "{text}: p99 above {} ms; the IB gives up after its route timeout",
                cx.o.slow.as_millis()
            ),
        )
    } else {
        pass(text)
    };
    cx.record("timing.latency", t, v);
}
