//! A fixed set of threads for the CPU-bound part of a signed request (verification and signing).
//!
//! `spawn_blocking` per request started up to one blocking thread per in-flight request: with 32
//! connections, 32 threads time-sharing two cores (futex wake-ups, long tail latency) and each
//! with its own allocator heap (the signed server's RSS). Here there is one thread per core and a
//! short queue; a request that finds the queue full waits on the async side for a slot, which
//! costs no thread and no memory beyond the request itself (backpressure, not growth).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs queued per thread beyond the one it runs: enough that a thread finds its next job
/// without a round trip through the async side, small enough that waiting happens before the
/// queue (where a dropped request costs nothing) rather than in it.
const QUEUED_PER_THREAD: usize = 2;

/// The worker set. Dropping it lets the threads finish their queue and end.
pub struct CryptoPool {
    tx: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    threads: usize,
}

impl CryptoPool {
    /// Starts `threads` workers (at least one); `None` picks one per available core.
    pub fn new(threads: Option<usize>) -> std::io::Result<CryptoPool> {
        let threads = threads
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("dkd-crypto-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(CryptoPool {
            tx,
            slots: Arc::new(Semaphore::new(threads * (1 + QUEUED_PER_THREAD))),
            threads,
        })
    }

    /// How many worker threads run.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a worker once a slot is free. `None` if it panicked or the pool is gone; the
    /// caller answers that as an internal error.
    pub async fn run<R, F>(&self, f: F) -> Option<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            // The slot is free as soon as the work is, even if the requester has gone away.
            drop(permit);
            if let Ok(r) = r {
                let _ = done.send(r);
            }
        });
        self.tx.send(job).ok()?;
        result.await.ok()
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while taking one job, never while running it.
        let job = match rx.lock() {
            Ok(g) => g.recv(),
            Err(_) => return,
        };
        match job {
            // `run` already catches panics; this keeps the thread alive whatever a job does.
            Ok(job) => {
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_turns_a_panic_into_none() {
        let pool = CryptoPool::new(Some(2)).expect("pool");
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
        assert_eq!(pool.run(|| -> u32 { panic!("boom") }).await, None);
        // The worker that caught the panic still serves.
        for i in 0..20 {
            assert_eq!(pool.run(move || i).await, Some(i));
        }
    }

    #[tokio::test]
    async fn more_requests_than_slots_wait_instead_of_failing() {
        let pool = Arc::new(CryptoPool::new(Some(1)).expect("pool"));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut handles = Vec::new();
        for i in 0..10 {
            let (p, g) = (pool.clone(), gate.clone());
            handles.push(tokio::spawn(async move {
                p.run(move || {
                    let _ = g.lock().map(|r| r.recv());
                    i
                })
                .await
            }));
        }
        for _ in 0..10 {
            let _ = release.send(());
        }
        let mut got = Vec::new();
        for h in handles {
            got.push(h.await.expect("join"));
        }
        assert_eq!(got, (0..10).map(Some).collect::<Vec<_>>());
    }
}
