//! The audit trail: one JSON line per answered request in daily append-only files,
//! `audit/YYYY-MM-DD.jsonl` inside the store directory, written by one thread.
//!
//! Why files and not sled: an audit trail is written once, read by time range and dropped by age,
//! which is what an append-only file does for the price of a `write` per batch. As sled records
//! (one insert per request, before 2026-11-23) it cost ~14 % of an unsigned request's CPU (node
//! splits, sled's flusher) and its pages filled sled's cache: the resident memory of a busy server
//! grew with the trail (BENCHMARKS.md, "Soak"). Records sled still holds from then are read and
//! pruned as before ([`super::Store::audit_since`]), so upgrading loses nothing.
//!
//! A request takes a [`Slot`] in the queue before it is answered and hands its record over in it,
//! so no record is ever dropped for want of room: when the queue is full (the writer is far
//! behind, a stalled disk) the request waits a bounded time for a slot and, past that, the
//! transport answers "service unavailable" instead of answering without a record. A slot is
//! freed once its record is written to the file (handed to the kernel). Readers and
//! [`super::Store::flush`] drain the queue first, so they see every record handed over before they
//! were called. A record reaches the disk within [`SYNC_EVERY`] (sled's own flush interval is of
//! the same order) or at a flush. A line torn by a crash is cut off before the next append.
//!
//! What a crash can lose: a killed process, the records still queued (normally the last
//! [`LINGER`]; with a stalled disk, up to the whole queue); a power or kernel failure, also those
//! written in the last [`SYNC_EVERY`] but not yet synced. Their answers have gone out.

use super::{AuditRecord, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records waiting at most, unless configured (`audit.queue_records`). Past this the writer is far
/// behind the requests (a stalled disk): requests wait for room, then are refused, rather than
/// being answered without a record or the queue growing without bound.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Records taken from the queue per wake-up at most.
const MAX_BATCH: usize = 1_024;
/// Pause after a wake-up that found less than `MAX_BATCH`; bounds how late a record is written
/// (a `flush` arriving during the pause waits for it, then is answered at once).
const LINGER: Duration = Duration::from_millis(5);
/// Longest time a written record may stay in the page cache only.
const SYNC_EVERY: Duration = Duration::from_millis(500);
const SUFFIX: &str = ".jsonl";

pub(crate) enum Msg {
    Record(AuditRecord),
    /// Acknowledged once everything queued before it is written and synced.
    Flush(SyncSender<Result<(), String>>),
    /// Deletes the records before the time (unix seconds) in the files of that day and later;
    /// acknowledged with how many.
    Prune(i64, time::Date, SyncSender<Result<u64, String>>),
}

struct Writer {
    // Unbounded: records are bounded by the slots, control messages by their callers.
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

/// The queue's room: slots free, and whether the writer is being held (tests: a stalled disk).
/// Shared by both writers (the daily files here, the PostgreSQL table in `kv::pg`), so a
/// request is never answered without room for its record on either backend.
pub(crate) struct Room {
    state: Mutex<RoomState>,
    /// Signalled when slots free or a hold ends.
    changed: Condvar,
}

struct RoomState {
    capacity: usize,
    /// Slots taken: records reserved, queued or being written.
    taken: usize,
    held: bool,
    /// The last write failed (and why); cleared by the next that succeeds.
    failing: Option<String>,
}

impl Room {
    pub(crate) fn new() -> Arc<Room> {
        Arc::new(Room {
            state: Mutex::new(RoomState {
                capacity: QUEUE_CAPACITY,
                taken: 0,
                held: false,
                failing: None,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // Plain counters, consistent after every statement: a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one slot, waiting up to `wait` for one to free; false when the queue stayed full.
    fn take(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        while st.taken >= st.capacity {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        st.taken += 1;
        true
    }

    pub(crate) fn set_capacity(&self, capacity: usize) {
        self.lock().capacity = capacity.max(1);
        self.changed.notify_all();
    }

    pub(crate) fn status(&self) -> AuditStatus {
        let st = self.lock();
        AuditStatus {
            queued: st.taken,
            capacity: st.capacity,
            failing: st.failing.clone(),
        }
    }

    pub(crate) fn hold(self: &Arc<Room>) -> Hold {
        self.lock().held = true;
        Hold(self.clone())
    }

    /// The writer's side: waits while the writer is held (a stalled disk, in tests).
    pub(crate) fn wait_while_held(&self) {
        let mut st = self.lock();
        while st.held {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The writer's side: `n` records are written (or failed with `failing`), their slots free.
    pub(crate) fn written(&self, n: usize, failing: Option<String>) {
        self.release(n);
        self.lock().failing = failing;
    }

    /// A slot for one record that goes to the writer through `tx`.
    pub(crate) fn slot(self: &Arc<Room>, tx: SlotTx, wait: Duration) -> Option<Slot> {
        self.take(wait).then(|| Slot {
            room: self.clone(),
            tx,
            used: false,
        })
    }

    fn release(&self, n: usize) {
        if n > 0 {
            let mut st = self.lock();
            st.taken = st.taken.saturating_sub(n);
            drop(st);
            self.changed.notify_all();
        }
    }
}

/// Room for one record in the queue, taken before the request is answered; see the module.
pub struct Slot {
    room: Arc<Room>,
    tx: SlotTx,
    used: bool,
}

/// Where a slot's record goes: this module's file writer, or the PostgreSQL writer.
pub(crate) enum SlotTx {
    Files(Sender<Msg>),
    Pg(Sender<crate::store::kv::pg::AuditMsg>),
}

impl Slot {
    /// Hands the record to the writer. It cannot be refused: the room was reserved.
    pub fn record(mut self, r: AuditRecord) {
        let sent = match &self.tx {
            SlotTx::Files(tx) => tx.send(Msg::Record(r)).is_ok(),
            SlotTx::Pg(tx) => tx.send(crate::store::kv::pg::AuditMsg::Record(r)).is_ok(),
        };
        if sent {
            // The writer frees the slot once the record is written.
            self.used = true;
        } else {
            tracing::error!("the audit writer has stopped: an audit record is lost");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.used {
            self.room.release(1);
        }
    }
}

/// How the queue keeps up, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStatus {
    /// Slots taken.
    pub queued: usize,
    /// Slots in all.
    pub capacity: usize,
    /// Why the last write failed, while writes fail.
    pub failing: Option<String>,
}

impl AuditStatus {
    /// Whether the trail keeps up: under half full, and writing.
    pub fn keeps_up(&self) -> bool {
        self.failing.is_none() && self.queued * 2 < self.capacity
    }
}

/// Holds the writer until dropped: it takes no record meanwhile, as with a stalled disk.
pub struct Hold(Arc<Room>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.lock().held = false;
        self.0.changed.notify_all();
    }
}

/// Shared by all clones of a `Store`; the writer thread starts with the first message.
pub(super) struct AuditQueue {
    dir: PathBuf,
    /// `fsync`s done, for the tests.
    syncs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    writer: OnceLock<Option<Writer>>,
    room: Arc<Room>,
    /// A temporary store's trail lives (and goes) with it.
    _temporary: Option<tempfile::TempDir>,
}

impl AuditQueue {
    /// The trail of the store in `store_dir`; `None`: a temporary directory.
    pub(super) fn new(store_dir: Option<&Path>) -> Result<AuditQueue, StoreError> {
        let io = |e: std::io::Error| StoreError::Io(format!("audit trail: {e}"));
        let (dir, temporary) = match store_dir {
            Some(d) => (d.join("audit"), None),
            None => {
                let t = tempfile::tempdir().map_err(io)?;
                (t.path().join("audit"), Some(t))
            }
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Io(format!("audit trail {}: {e}", dir.display())))?;
        Ok(AuditQueue {
            dir,
            syncs: Default::default(),
            writer: OnceLock::new(),
            room: Room::new(),
            _temporary: temporary,
        })
    }

    fn writer(&self) -> Option<&Writer> {
        self.writer
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel();
                let files = Files::new(self.dir.clone(), self.syncs.clone());
                let room = self.room.clone();
                match std::thread::Builder::new()
                    .name("dkd-audit".into())
                    .spawn(move || write_loop(files, &rx, &room))
                {
                    Ok(t) => Some(Writer {
                        tx: Some(tx),
                        thread: Some(t),
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "audit writer thread could not be started");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn sender(&self) -> Result<&Sender<Msg>, StoreError> {
        self.writer().and_then(|w| w.tx.as_ref()).ok_or_else(gone)
    }

    /// Sets how many records may wait (`audit.queue_records`, at least 1).
    pub(super) fn set_capacity(&self, capacity: usize) {
        self.room.set_capacity(capacity);
    }

    /// A slot for one record, waiting up to `wait` for one to free; `None` when the queue stayed
    /// full (or the writer cannot run).
    pub(super) fn slot(&self, wait: Duration) -> Option<Slot> {
        let tx = self.writer()?.tx.as_ref()?.clone();
        self.room.slot(SlotTx::Files(tx), wait)
    }

    /// Queues a record if there is room now; false when there is none (nothing queued).
    pub(super) fn push(&self, r: AuditRecord) -> bool {
        match self.slot(Duration::ZERO) {
            Some(s) => {
                s.record(r);
                true
            }
            None => false,
        }
    }

    pub(super) fn status(&self) -> AuditStatus {
        self.room.status()
    }

    pub(super) fn hold(&self) -> Hold {
        self.room.hold()
    }

    /// Waits until every record queued before the call is written and on disk.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        // Nothing was ever queued: nothing to wait for, and no thread to start.
        let Some(Some(w)) = self.writer.get() else {
            return Ok(());
        };
        let Some(tx) = &w.tx else { return Ok(()) };
        let (ack, done) = mpsc::sync_channel(1);
        tx.send(Msg::Flush(ack)).map_err(|_| gone())?;
        done.recv().map_err(|_| gone())?.map_err(StoreError::Io)
    }

    /// Deletes the records before `before` (unix seconds); returns how many. Days the writer
    /// can no longer append to (before yesterday) are pruned here, so a daily retention run that
    /// rewrites a long day file does not hold up the writer (whose queue would fill and drop
    /// records meanwhile); yesterday and today, which only a retention of a day or less reaches,
    /// the writer prunes itself, so a file is never rewritten while it is appended to.
    pub(super) fn prune(&self, before: i64) -> Result<u64, StoreError> {
        // Everything queued is written first, and the writer has no file open.
        self.flush()?;
        let io = |e: std::io::Error| StoreError::Io(format!("audit trail: {e}"));
        let today = day_of(time::OffsetDateTime::now_utc().unix_timestamp());
        let recent = today.previous_day().unwrap_or(today);
        let mut n = prune_files(&self.dir, before, |d| d < recent).map_err(io)?;
        if before > day_start(recent) {
            let (ack, done) = mpsc::sync_channel(1);
            self.sender()?
                .send(Msg::Prune(before, recent, ack))
                .map_err(|_| gone())?;
            n += done.recv().map_err(|_| gone())?.map_err(StoreError::Io)?;
        }
        Ok(n)
    }

    /// The records at or after `since` (unix seconds), oldest first, read as the iterator goes.
    /// Call [`AuditQueue::flush`] first to include what is still queued.
    pub(super) fn read_since(&self, since: i64) -> Result<Records, StoreError> {
        let first = day_of(since);
        let mut files: Vec<(time::Date, PathBuf)> = list(&self.dir)
            .map_err(|e| StoreError::Io(format!("audit trail {}: {e}", self.dir.display())))?
            .into_iter()
            .filter(|(d, _)| *d >= first)
            .collect();
        files.sort();
        Ok(Records {
            files: files.into_iter().map(|(_, p)| p).collect(),
            current: None,
            since,
        })
    }
}

fn gone() -> StoreError {
    StoreError::Io("the audit writer has stopped".into())
}

impl Drop for AuditQueue {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has written (and synced) the rest.
        if let Some(Some(mut w)) = self.writer.take() {
            drop(w.tx.take());
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn day_of(unix: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date()
}

fn day_start(d: time::Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp()
}

fn file_name(d: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}{SUFFIX}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

fn parse_name(name: &str) -> Option<time::Date> {
    let stem = name.strip_suffix(SUFFIX)?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(stem, &fmt).ok()
}

/// The trail's daily files; anything else in the directory is left alone.
fn list(dir: &Path) -> std::io::Result<Vec<(time::Date, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(d) = e.file_name().to_str().and_then(parse_name) {
            out.push((d, e.path()));
        }
    }
    Ok(out)
}

/// Cuts a file back to its last complete line: what a crash tore off mid-write was never
/// acknowledged, and appending after it would glue the next record onto the fragment.
fn trim_torn_tail(f: &mut File) -> std::io::Result<()> {
    let len = f.metadata()?.len();
    let mut end = len;
    let mut block = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(block.len());
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                f.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    if len > 0 {
        f.set_len(0)?;
    }
    Ok(())
}

/// The writer thread's side: the day's file open for appending.
struct Files {
    dir: PathBuf,
    syncs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    open: Option<(time::Date, BufWriter<File>)>,
    unsynced: bool,
    last_sync: Instant,
}

impl Files {
    fn new(dir: PathBuf, syncs: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Files {
        Files {
            dir,
            syncs,
            open: None,
            unsynced: false,
            last_sync: Instant::now(),
        }
    }

    fn append(&mut self, r: &AuditRecord) -> std::io::Result<()> {
        let day = day_of(r.at);
        if self.open.as_ref().map(|(d, _)| *d) != Some(day) {
            self.close()?;
            let mut f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(self.dir.join(file_name(day)))?;
            trim_torn_tail(&mut f)?;
            f.seek(SeekFrom::End(0))?;
            self.open = Some((day, BufWriter::with_capacity(64 * 1024, f)));
        }
        if let Some((_, w)) = &mut self.open {
            serde_json::to_writer(&mut *w, r).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
            self.unsynced = true;
        }
        Ok(())
    }

    /// Hands what is buffered to the kernel; to the disk too when `sync` or when it is due.
    fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        if let Some((_, w)) = &mut self.open {
            w.flush()?;
            if self.unsynced && (sync || self.last_sync.elapsed() >= SYNC_EVERY) {
                w.get_ref().sync_data()?;
                self.syncs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        self.flush(true)?;
        self.open = None;
        Ok(())
    }

    fn prune(&mut self, before: i64, from: time::Date) -> std::io::Result<u64> {
        // Rewriting the open file under the writer's feet is avoided by closing it first.
        self.close()?;
        prune_files(&self.dir, before, |d| d >= from)
    }
}

/// Deletes the records before `before` from the day files `which` selects: whole files when the
/// day is over by then, else the file rewritten without them.
fn prune_files(
    dir: &Path,
    before: i64,
    which: impl Fn(time::Date) -> bool,
) -> std::io::Result<u64> {
    let mut n = 0;
    for (day, path) in list(dir)? {
        if !which(day) || day_start(day) >= before {
            continue;
        }
        if day_start(day.next_day().unwrap_or(day)) <= before {
            n += count_lines(&path)?;
            std::fs::remove_file(&path)?;
        } else {
            n += rewrite_from(&path, before)?;
        }
    }
    Ok(n)
}

fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Keeps a file's records at or after `before` (a new file renamed over the old one, so a
/// crash leaves one or the other); returns how many were dropped. Lines that do not decode are
/// kept: pruning deletes by age only.
fn rewrite_from(path: &Path, before: i64) -> std::io::Result<u64> {
    let tmp = path.with_extension("prune.tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    let mut dropped = 0u64;
    let mut line = Vec::new();
    let mut input = BufReader::new(File::open(path)?);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        match serde_json::from_slice::<AuditRecord>(&line) {
            Ok(r) if r.at < before => dropped += 1,
            _ => out.write_all(&line)?,
        }
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(dropped)
}

fn write_loop(mut files: Files, rx: &mpsc::Receiver<Msg>, room: &Room) {
    let mut acks = Vec::new();
    let mut prunes = Vec::new();
    // Records lost to a write error since the last flush, and why: the next flush reports them.
    let mut lost: Option<(u64, String)> = None;
    loop {
        // Written but not yet synced: wake when the sync is due even if nothing else arrives.
        let first = if files.unsynced {
            match rx.recv_timeout(SYNC_EVERY.saturating_sub(files.last_sync.elapsed())) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = files.flush(true) {
                        tracing::error!(error = %e, "audit records could not be synced");
                        files.open = None;
                        files.unsynced = false;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        room.wait_while_held();
        let mut next = Some(first);
        let mut taken = 0;
        let mut result = Ok(());
        let mut skipped = 0u64;
        while let Some(m) = next.take() {
            match m {
                Msg::Record(r) => {
                    taken += 1;
                    if result.is_ok() {
                        result = files.append(&r);
                    }
                    if result.is_err() {
                        skipped += 1;
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
                Msg::Prune(before, from, ack) => prunes.push((before, from, ack)),
            }
            if taken < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let flushed = !acks.is_empty();
        if result.is_ok() {
            // A flush also closes the file: `prune` may then rewrite it from another thread.
            result = if flushed {
                files.close()
            } else {
                files.flush(false)
            };
        }
        // Written (or lost to an error, reported at the next flush): the slots are free.
        room.written(taken, result.as_ref().err().map(|e| e.to_string()));
        if let Err(e) = &result {
            tracing::error!(error = %e, records = skipped, "audit records could not be written");
            // Start over with a freshly opened file at the next record.
            files.open = None;
            files.unsynced = false;
            let l = lost.get_or_insert((0, String::new()));
            l.0 += skipped.max(1);
            l.1 = e.to_string();
        }
        if !acks.is_empty() {
            let answer = match lost.take() {
                Some((n, why)) => Err(format!("{n} audit records could not be written: {why}")),
                None => Ok(()),
            };
            for ack in acks.drain(..) {
                let _ = ack.send(answer.clone());
            }
        }
        for (before, from, ack) in prunes.drain(..) {
            let _ = ack.send(files.prune(before, from).map_err(|e| e.to_string()));
        }
        if taken < MAX_BATCH && !flushed {
            // Let records gather instead of waking per request: a sender only wakes this thread
            // when it is blocked in recv, so a short pause turns a futex wake-up per request
            // into one per pause.
            std::thread::sleep(LINGER);
        }
    }
    if let Err(e) = files.close() {
        tracing::error!(error = %e, "audit records could not be written");
    }
}

/// Records read lazily, file by file.
pub(super) struct Records {
    files: std::collections::VecDeque<PathBuf>,
    current: Option<(PathBuf, BufReader<File>, u64)>,
    since: i64,
}

impl Iterator for Records {
    type Item = Result<AuditRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        loop {
            let Some((path, reader, n)) = &mut self.current else {
                let path = self.files.pop_front()?;
                match File::open(&path) {
                    Ok(f) => self.current = Some((path, BufReader::new(f), 0)),
                    // Pruned meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Some(Err(StoreError::Io(format!(
                            "audit trail {}: {e}",
                            path.display()
                        ))))
                    }
                }
                continue;
            };
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => self.current = None,
                // A line still being written (or torn by a crash) is not a record yet.
                Ok(_) if line.last() != Some(&b'\n') => self.current = None,
                Ok(_) => {
                    *n += 1;
                    match serde_json::from_slice::<AuditRecord>(&line) {
                        Ok(r) if r.at < self.since => {}
                        Ok(r) => return Some(Ok(r)),
                        Err(e) => {
                            return Some(Err(StoreError::Io(format!(
                                "audit trail {} line {n}: {e}",
                                path.display()
                            ))))
                        }
                    }
                }
                Err(e) => {
                    let msg = format!("audit trail {}: {e}", path.display());
                    self.current = None;
                    return Some(Err(StoreError::Io(msg)));
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
