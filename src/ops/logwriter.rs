//! Log output written by a thread of its own, in batches.
//!
//! `tracing`'s formatter hands over one finished line per event. Written straight to stderr that
//! is a `write` system call on the request's worker per answered request: ~7 % of an unsigned
//! answer's CPU at ~30k answers/s (BENCHMARKS.md, profiles). Here a line is appended to a buffer;
//! a thread wakes when the buffer stops being empty, lets lines gather for [`LINGER`] and writes
//! them in one go. An idle server costs nothing; a line reaches stderr at most ~[`LINGER`] late;
//! the [`Guard`] writes what is left when dropped. If the output stalls (a blocked pipe) lines
//! beyond [`MAX_BUFFERED`] are dropped and counted, never holding up answers, and the count is
//! written once the output moves again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long lines gather before a write.
pub const LINGER: Duration = Duration::from_millis(5);
/// Bytes waiting at most.
pub const MAX_BUFFERED: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    dropped: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What `tracing_subscriber::fmt().with_writer(..)` takes: cheap to clone, one per event.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread once everything buffered is written.
#[must_use = "dropping the guard stops the log writer"]
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread writing to `out`. Without a thread (the system refused one) lines go to
/// stderr directly, as after the guard.
pub fn start<W: Write + Send + 'static>(out: W) -> (LogWriter, Guard) {
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("dkd-log".into())
            .spawn(move || run(&shared, out))
            .ok()
    };
    if thread.is_none() {
        shared.lock().stop = true;
    }
    (
        LogWriter {
            shared: shared.clone(),
        },
        Guard { shared, thread },
    )
}

fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let (mut batch, dropped, stop) = {
            let mut st = shared.lock();
            while st.buf.is_empty() && !st.stop {
                st = shared
                    .ready
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !st.stop {
                drop(st);
                std::thread::sleep(LINGER);
                st = shared.lock();
            }
            (
                std::mem::replace(&mut st.buf, std::mem::take(&mut spare)),
                std::mem::take(&mut st.dropped),
                st.stop,
            )
        };
        // Nowhere left to report a failing stderr; the lines are lost either way.
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "dkd: {dropped} log lines dropped: the log output did not keep up"
            );
        }
        let _ = out.flush();
        batch.clear();
        spare = batch;
        if stop {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut st = self.shared.lock();
        if st.stop {
            // After the guard: nobody would write it; stderr directly keeps late lines.
            return std::io::stderr().write(b);
        }
        let was_empty = st.buf.is_empty();
        if st.buf.len() + b.len() > MAX_BUFFERED {
            st.dropped += 1;
        } else {
            st.buf.extend_from_slice(b);
        }
        drop(st);
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().expect("sink");
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_the_guard_writes_the_rest() {
        let sink = Sink::default();
        let (w, guard) = start(sink.clone());
        for i in 0..1000 {
            w.clone()
                .write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(guard);
        let (text, writes) = {
            let s = sink.0.lock().expect("sink");
            (String::from_utf8(s.0.clone()).expect("utf-8"), s.1)
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert!(lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("line {i}")));
        assert!(writes < 100, "{writes} writes for 1000 lines");
    }

    #[test]
    fn a_line_is_written_without_waiting_for_the_guard() {
        let sink = Sink::default();
        let (mut w, _guard) = start(sink.clone());
        w.write_all(b"hello\n").expect("write");
        for _ in 0..400 {
            if !sink.0.lock().expect("sink").0.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the line was not written within 2 s");
    }

    /// An output that blocks until released: a stalled pipe.
    struct Stalled(Arc<(Mutex<bool>, Condvar)>, Sink);

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut o = open.lock().expect("gate");
            while !*o {
                o = cv.wait(o).expect("gate");
            }
            self.1.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_drops_lines_past_the_bound_and_says_how_many() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (w, guard) = start(Stalled(gate.clone(), sink.clone()));
        let line = vec![b'x'; 1024 * 1024 - 1];
        let mut w2 = w.clone();
        // The first line is taken by the thread, which then blocks in write.
        w2.write_all(&[line.as_slice(), b"\n"].concat()).expect("w");
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..20 {
            w2.write_all(&[line.as_slice(), b"\n"].concat()).expect("w");
        }
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(sink.0.lock().expect("sink").0.clone()).expect("utf-8");
        // 1 written + 16 buffered (16 MiB) + 4 dropped.
        assert_eq!(text.lines().filter(|l| l.starts_with('x')).count(), 17);
        assert!(
            text.contains("dkd: 4 log lines dropped"),
            "{}",
            &text[text.len().saturating_sub(200)..]
        );
    }
}
