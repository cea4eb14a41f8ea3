//! Applying a change set of any size as one step, while it is being built: the first
//! [`SMALL_OPS`] writes are held in memory; a change set that stays that small is one sled batch.
//! Beyond that the undo journal is opened and every full block of [`CHUNK_OPS`] writes goes to a
//! writer thread (a queue [`QUEUE_BLOCKS`] deep) that applies it in chunks under the journal, so
//! comparing and encoding the next persons on one core overlaps the sled writes on the other, and
//! nothing waits in memory or in a file for the commit.
//!
//! Why not one `sled::Batch`: sled 0.34 pins its epoch for a whole batch, so nothing it replaces
//! is freed until the batch ends; a 500,000-entry batch peaked at 4.5 GB and ran at ~40-60k
//! entries/s, against ~200-270k/s for plain inserts in the same tree (BENCHMARKS.md, "Import").
//!
//! Protocol of a journaled change set (every step a sled write, so sled's prefix recovery orders
//! them):
//! 1. `meta/journal` := marker (the change set's source), written by the building thread when the
//!    change set outgrows [`SMALL_OPS`], before any of its writes;
//! 2. per chunk of at most [`CHUNK_OPS`] writes (and ~[`CHUNK_UNDO_BYTES`] of undo data), on the
//!    writer thread, in the order the change set made them: first one journal record holding, for
//!    every key the chunk writes, the value it has now (or that it is absent), then the chunk's
//!    writes as plain inserts/removes;
//! 3. at commit, once the writer has applied the last block: remove `meta/journal`, the commit
//!    point;
//! 4. clear the journal tree (garbage from here on).
//!
//! From step 1 to step 4 the change set holds the store's gate exclusively: nobody else in the
//! process reads a half-applied change set, and no other commit interleaves. Its own comparisons
//! read without the gate; they never read a key the writer has yet to write, since a change set
//! writes each entry once (and mutation and outbox keys are new). For the same reasons a value a
//! comparison read while the gate was held is still the key's value when the writer gets to it:
//! it travels with the write ([`Stored`]) and goes into the undo record without a second read.
//!
//! sled recovers a prefix of its log after a crash, so a recovered data write implies its undo
//! record and the marker. [`Store::open`](super::Store::open) therefore rolls back whenever the
//! marker is there: the journal records, newest first, restore every key they name; then the
//! marker goes, then the records. Restoring is idempotent, so a crash during the roll-back is
//! rolled back again at the next open. A change set that fails or is given up half-way (an error,
//! a strict import's first rejection, a panic: [`Writes`] is dropped) stops the writer and rolls
//! back the same way at once. The journal is generic over keys: whatever a change set writes
//! (entries, mutation records, archive, outbox, anything added later) is covered.

use super::{Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, PoisonError, RwLockWriteGuard};

/// Writes per chunk: what a chunk holds in memory (its keys and their old values are read before
/// its first write). Also the size up to which a change set is one sled batch: batches of ~1,000
/// still insert at about the plain rate, batches of 10,000 at a third of it.
pub(crate) const CHUNK_OPS: usize = 1024;
/// Undo bytes per journal record (old values of changed entries make it grow). sled writes a
/// node over 128 KiB as a blob file at every change, and a leaf holds up to 16 records.
const CHUNK_UNDO_BYTES: usize = 6 * 1024;
/// Change sets up to this many writes skip the journal: one sled batch is atomic by itself.
pub(crate) const SMALL_OPS: u64 = CHUNK_OPS as u64;
/// Blocks handed to the writer and not yet applied (~0.4 MB each for import entries): enough to
/// ride out a slow sled write or a slow stretch of the input, small enough not to matter for
/// memory.
const QUEUE_BLOCKS: usize = 4;

pub(crate) const KEY_JOURNAL: &[u8] = b"journal";

/// Tag bits of an encoded write.
const TAG_INSERT: u8 = 1;
const TAG_OLD_KNOWN: u8 = 2;
const TAG_OLD_PRESENT: u8 = 4;

/// `old`: the key's current value when the caller knows it (`Some(None)`: absent), which spares
/// the writer reading it again for the undo record.
fn put_op(buf: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>, old: Option<Option<&[u8]>>) {
    put_bytes(buf, key);
    let mut tag = if value.is_some() { TAG_INSERT } else { 0 };
    match old {
        Some(Some(_)) => tag |= TAG_OLD_KNOWN | TAG_OLD_PRESENT,
        Some(None) => tag |= TAG_OLD_KNOWN,
        None => {}
    }
    buf.push(tag);
    if let Some(v) = value {
        put_bytes(buf, v);
    }
    if let Some(Some(o)) = old {
        put_bytes(buf, o);
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(b);
}

/// The writes of a change set, as it makes them. Blocks are encoded as
/// `klen u32 | key | tag u8 | [vlen u32 | value] | [olen u32 | old value]` per write (tag bits:
/// insert, old value known, old value present), the encoding of undo records too (tag 1 or 0:
/// the old value, or absent), so [`Ops`] reads both.
pub(crate) struct Writes<'s> {
    store: &'s Store,
    source: String,
    /// Writes not yet handed on (all of them while the change set is small).
    block: Vec<u8>,
    block_ops: usize,
    state: State<'s>,
    #[cfg(test)]
    stop_after: Option<u64>,
}

/// A value as [`Writes::get`] read it.
pub(crate) struct Stored {
    pub(crate) value: Option<super::kv::Val>,
    /// Read while this change set held the gate: nothing else in the process can write the key
    /// before the writer gets to it (and a change set writes an entry once), so the value can go
    /// into the undo record as it is. A value read under the shared gate may be stale by then.
    exclusive: bool,
}

impl Stored {
    /// A value read outside sled's gate (PostgreSQL: in the change set's own transaction).
    pub(crate) fn read(value: Option<super::kv::Val>) -> Stored {
        Stored {
            value,
            exclusive: false,
        }
    }

    fn known(&self) -> Option<Option<&[u8]>> {
        self.exclusive.then_some(self.value.as_deref())
    }
}

enum State<'s> {
    /// At most [`SMALL_OPS`] writes so far, all in `block`.
    Small,
    /// The journal is open and a writer thread applies the blocks.
    Journaled(Journaled<'s>),
    /// A dry run or a refused change set: nothing is (or stays) written.
    Discard,
    /// Committed (or left as a crash would leave it, in tests).
    Done,
}

struct Journaled<'s> {
    /// Held from the marker to the commit point or the roll-back (see the module doc).
    _exclusive: RwLockWriteGuard<'s, ()>,
    /// `None` once closed: the writer ends when it has applied what it was sent.
    tx: Option<SyncSender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<Result<u64, StoreError>>>,
    /// Set when giving up: the writer skips what is still queued (it is rolled back anyway).
    stop: Arc<AtomicBool>,
}

impl Journaled<'_> {
    fn send(&mut self, block: Vec<u8>) -> Result<(), StoreError> {
        if let Some(tx) = &self.tx {
            if tx.send(block).is_ok() {
                return Ok(());
            }
        }
        // The writer has stopped, which it only does on an error: report that one.
        Err(self
            .join()
            .err()
            .unwrap_or_else(|| StoreError::Io("change set writer stopped early".into())))
    }

    /// Lets the writer finish what it was sent; returns the chunks it wrote.
    fn join(&mut self) -> Result<u64, StoreError> {
        self.tx = None;
        match self.writer.take() {
            Some(w) => w
                .join()
                .unwrap_or_else(|_| Err(StoreError::Io("change set writer panicked".into()))),
            None => Err(StoreError::Io("change set writer already stopped".into())),
        }
    }

    /// Stops the writer and undoes everything the change set wrote.
    fn abort(&mut self, store: &Store) -> Result<(), StoreError> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
        store.roll_back().map(|_| ())
    }
}

impl<'s> Writes<'s> {
    pub(crate) fn new(store: &'s Store, source: &str) -> Writes<'s> {
        Writes {
            store,
            source: source.to_owned(),
            block: Vec::new(),
            block_ops: 0,
            state: State::Small,
            #[cfg(test)]
            stop_after: None,
        }
    }

    pub(crate) fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.push(key, Some(value), None)
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.push(key, None, None)
    }

    /// Inserts over what [`Writes::get`] returned for the same key.
    pub(crate) fn insert_over(
        &mut self,
        key: &[u8],
        value: &[u8],
        stored: &Stored,
    ) -> Result<(), StoreError> {
        self.push(key, Some(value), stored.known())
    }

    /// Removes what [`Writes::get`] returned for the same key.
    pub(crate) fn remove_over(&mut self, key: &[u8], stored: &Stored) -> Result<(), StoreError> {
        self.push(key, None, stored.known())
    }

    fn push(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        old: Option<Option<&[u8]>>,
    ) -> Result<(), StoreError> {
        match self.state {
            State::Discard => return Ok(()),
            State::Done => {
                return Err(StoreError::Io("change set written after its commit".into()))
            }
            State::Small | State::Journaled(_) => {}
        }
        let full = match self.state {
            State::Small => self.block_ops as u64 == SMALL_OPS,
            _ => self.block_ops == CHUNK_OPS,
        };
        if full {
            self.hand_on()?;
        }
        put_op(&mut self.block, key, value, old);
        self.block_ops += 1;
        Ok(())
    }

    /// Sends the full block to the writer, opening the journal first if this is the first.
    fn hand_on(&mut self) -> Result<(), StoreError> {
        if matches!(self.state, State::Small) {
            self.state = State::Journaled(self.open()?);
        }
        let State::Journaled(j) = &mut self.state else {
            return Ok(());
        };
        let capacity = self.block.len();
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(capacity));
        self.block_ops = 0;
        j.send(block)
    }

    /// Step 1 of the protocol, and the writer thread.
    fn open(&self) -> Result<Journaled<'s>, StoreError> {
        let store = self.store;
        pause_point(format_args!("apply"), || store.flush_quietly());
        let exclusive = store.gate.write().unwrap_or_else(PoisonError::into_inner);
        let opened = (|| {
            store.finish_failed_roll_back()?;
            if !store.journal.is_empty() {
                // Left by a commit that finished: replaying it in a later roll-back would be wrong.
                store.journal.clear()?;
            }
            store.meta.insert(KEY_JOURNAL, self.source.as_bytes())?;
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BLOCKS);
            let stop = Arc::new(AtomicBool::new(false));
            let (writer_store, writer_stop) = (store.clone(), stop.clone());
            #[cfg(test)]
            let stop_after = self.stop_after;
            #[cfg(not(test))]
            let stop_after = None;
            let writer = std::thread::Builder::new()
                .name("dkd-change-set".into())
                .spawn(move || write_blocks(&writer_store, &rx, &writer_stop, stop_after))
                .map_err(|e| StoreError::Io(format!("change set writer: {e}")))?;
            Ok(Journaled {
                _exclusive: exclusive,
                tx: Some(tx),
                writer: Some(writer),
                stop,
            })
        })();
        if opened.is_err() {
            if let Err(e) = store.roll_back() {
                tracing::error!(error = %e, "removing the journal marker failed; the next open rolls back");
            }
        }
        opened
    }

    /// A stored value, read as the change set's comparisons must: under the shared gate, unless
    /// this change set holds it exclusively itself.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Stored, StoreError> {
        if matches!(self.state, State::Journaled(_)) {
            return Ok(Stored {
                value: self.store.index.get(key)?,
                exclusive: true,
            });
        }
        let _shared = self.store.read_gate();
        Ok(Stored {
            value: self.store.index.get(key)?,
            exclusive: false,
        })
    }

    /// From here on nothing is written, and what was written is rolled back now.
    pub(crate) fn discard(&mut self) -> Result<(), StoreError> {
        let undone = match &mut self.state {
            State::Journaled(j) => j.abort(self.store),
            _ => Ok(()),
        };
        self.state = State::Discard;
        self.block = Vec::new();
        self.block_ops = 0;
        undone
    }

    /// Applies what is left: a small change set as one batch; otherwise the last block, then
    /// (once the writer has finished) steps 3 and 4 of the protocol. On an error, everything the
    /// change set wrote is rolled back.
    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        let store = self.store;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Discard | State::Done => Ok(()),
            State::Small => {
                pause_point(format_args!("apply"), || store.flush_quietly());
                let _exclusive = store.gate.write().unwrap_or_else(PoisonError::into_inner);
                store.finish_failed_roll_back()?;
                let mut batch = super::kv::Batch::default();
                for op in Ops::new(&self.block) {
                    match op? {
                        (k, Some(v), _) => batch.insert(k, v),
                        (k, None, _) => batch.remove(k),
                    }
                }
                store.index.apply_batch(batch)?;
                Ok(())
            }
            State::Journaled(mut j) => {
                let block = std::mem::take(&mut self.block);
                let written = (if block.is_empty() {
                    Ok(())
                } else {
                    j.send(block)
                })
                .and_then(|()| j.join())
                .and_then(|_| {
                    pause_point(format_args!("commit-point"), || store.flush_quietly());
                    store.meta.remove(KEY_JOURNAL)?;
                    Ok(())
                });
                if let Err(e) = written {
                    if let Err(undo_err) = j.abort(store) {
                        tracing::error!(error = %undo_err, "rolling back a failed commit failed; the next open retries");
                    }
                    return Err(e);
                }
                pause_point(format_args!("committed"), || store.flush_quietly());
                // Committed: the records are garbage now, and the next open or commit clears
                // them anyway.
                if let Err(e) = store.journal.clear() {
                    tracing::warn!(error = %e, "clearing the journal after a commit failed");
                }
                Ok(())
            }
        }
    }
}

impl Drop for Writes<'_> {
    /// A change set dropped half-way (an error, a panic) leaves nothing behind.
    fn drop(&mut self) {
        if let State::Journaled(j) = &mut self.state {
            if let Err(e) = j.abort(self.store) {
                tracing::error!(error = %e, "rolling back an abandoned change set failed; the next open retries");
            }
        }
    }
}

#[cfg(test)]
impl Writes<'_> {
    /// The writer stops after this many chunks, as a crash would.
    pub(crate) fn stop_after(&mut self, chunks: u64) {
        self.stop_after = Some(chunks);
    }

    /// Ends as a crash would: the writer applies what it was sent, the marker and the journal
    /// stay. Returns the chunks written.
    pub(crate) fn crash(mut self) -> u64 {
        let State::Journaled(mut j) = std::mem::replace(&mut self.state, State::Done) else {
            return 0;
        };
        let block = std::mem::take(&mut self.block);
        if !block.is_empty() {
            j.send(block).expect("send the last block");
        }
        j.join().expect("writer")
    }
}

/// The writer thread: step 2 of the protocol for every block it receives, in order.
fn write_blocks(
    store: &Store,
    rx: &Receiver<Vec<u8>>,
    stop: &AtomicBool,
    stop_after: Option<u64>,
) -> Result<u64, StoreError> {
    let mut seq = 0u64;
    let stop_after = stop_after.unwrap_or(u64::MAX);
    let mut undo = Undo::new();
    for block in rx {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut chunk: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(CHUNK_OPS);
        for op in Ops::new(&block) {
            if seq >= stop_after {
                break;
            }
            let (k, v, known) = op?;
            match known {
                Some(old) => undo.push(k, old),
                None => undo.push(k, store.index.get(k)?.as_deref()),
            }
            chunk.push((k, v));
            if chunk.len() == CHUNK_OPS || undo.full() {
                write_chunk(store, &mut seq, &mut undo, &mut chunk)?;
            }
        }
        if !chunk.is_empty() && seq < stop_after {
            write_chunk(store, &mut seq, &mut undo, &mut chunk)?;
        }
        // A chunk never spans blocks (a block's memory goes when it is done).
        undo.take();
    }
    Ok(seq)
}

/// One journal record (the chunk's keys with their current values), then the chunk's writes.
fn write_chunk(
    store: &Store,
    seq: &mut u64,
    undo: &mut Undo,
    chunk: &mut Vec<(&[u8], Option<&[u8]>)>,
) -> Result<(), StoreError> {
    store.journal.insert(seq.to_be_bytes(), undo.take())?;
    *seq += 1;
    let half = chunk.len() / 2;
    for (i, (k, v)) in chunk.drain(..).enumerate() {
        if i == half {
            // The crash tests kill the process here, with the chunk's undo record and half its
            // writes on disk and the change set still being built.
            pause_point(format_args!("chunk-{seq}-mid"), || store.flush_quietly());
        }
        match v {
            Some(v) => store.index.insert(k, v)?,
            None => store.index.remove(k)?,
        };
    }
    pause_point(format_args!("chunk-{seq}"), || store.flush_quietly());
    Ok(())
}

/// Reads the writes of one encoded block.
pub(crate) struct Ops<'a> {
    rest: &'a [u8],
}

impl<'a> Ops<'a> {
    pub(crate) fn new(block: &'a [u8]) -> Ops<'a> {
        Ops { rest: block }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let (b, rest) = (rest.get(..len)?, rest.get(len..)?);
        self.rest = rest;
        Some(b)
    }
}

/// One encoded write: key, new value (`None`: remove), old value when known (`Some(None)`:
/// absent). In an undo record the second is the value to restore and the third is `None`.
pub(crate) type Op<'a> = (&'a [u8], Option<&'a [u8]>, Option<Option<&'a [u8]>>);

impl<'a> Ops<'a> {
    fn op(&mut self) -> Option<Op<'a>> {
        let key = self.bytes()?;
        let (&tag, rest) = self.rest.split_first()?;
        self.rest = rest;
        let value = if tag & TAG_INSERT != 0 {
            Some(self.bytes()?)
        } else {
            None
        };
        let old = match (tag & TAG_OLD_KNOWN != 0, tag & TAG_OLD_PRESENT != 0) {
            (false, _) => None,
            (true, false) => Some(None),
            (true, true) => Some(Some(self.bytes()?)),
        };
        Some((key, value, old))
    }
}

impl<'a> Iterator for Ops<'a> {
    /// `Err` when the block is malformed (it never leaves this process, so that is a bug).
    type Item = Result<Op<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match self.op() {
            Some(op) => Some(Ok(op)),
            None => {
                self.rest = &[];
                Some(Err(StoreError::Io(
                    "change set: malformed pending write".into(),
                )))
            }
        }
    }
}

/// Undo record: per key `klen u32 | key | tag u8 | [vlen u32 | old value]` (tag 0: the key was
/// absent), the encoding of [`Writes`]' blocks, so [`Ops`] reads both.
pub(crate) struct Undo {
    buf: Vec<u8>,
}

impl Undo {
    pub(crate) fn new() -> Undo {
        Undo { buf: Vec::new() }
    }
    pub(crate) fn push(&mut self, key: &[u8], old: Option<&[u8]>) {
        put_op(&mut self.buf, key, old, None);
    }
    pub(crate) fn full(&self) -> bool {
        self.buf.len() >= CHUNK_UNDO_BYTES
    }
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A test hook: with `DKD_TEST_PAUSE_AT=<phase>` the process makes what it wrote so far durable,
/// prints `dkd-test-pause <phase>` on stderr and waits to be killed. The crash tests use it to
/// SIGKILL an import in a given phase instead of guessing with timers. Without the variable it
/// costs one comparison.
pub(crate) fn pause_point(phase: std::fmt::Arguments<'_>, flush: impl FnOnce()) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(at) = AT.get_or_init(|| std::env::var("DKD_TEST_PAUSE_AT").ok()) else {
        return;
    };
    let phase = phase.to_string();
    if *at == phase {
        flush();
        eprintln!("dkd-test-pause {phase}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_writes_read_back_in_order() {
        let mut block = Vec::new();
        let old = |i: u32| match i % 3 {
            0 => None,
            1 => Some(None),
            _ => Some(Some(vec![b'o'; (i % 40) as usize])),
        };
        for i in 0..5000u32 {
            let k = i.to_be_bytes();
            let o = old(i);
            let o = o.as_ref().map(|o| o.as_deref());
            if i % 7 == 0 {
                put_op(&mut block, &k, None, o);
            } else {
                put_op(&mut block, &k, Some(&vec![b'v'; (i % 50) as usize]), o);
            }
        }
        let mut seen = 0u32;
        for op in Ops::new(&block) {
            let (k, v, o) = op.expect("well-formed");
            assert_eq!(k, seen.to_be_bytes());
            if seen % 7 == 0 {
                assert_eq!(v, None);
            } else {
                assert_eq!(v, Some(vec![b'v'; (seen % 50) as usize].as_slice()));
            }
            let want = old(seen);
            assert_eq!(o, want.as_ref().map(|o| o.as_deref()));
            seen += 1;
        }
        assert_eq!(seen, 5000);
    }

    #[test]
    fn a_truncated_block_is_an_error_not_a_panic() {
        let mut block = Vec::new();
        put_op(&mut block, b"key", Some(b"value"), Some(Some(b"old")));
        for cut in 0..block.len() {
            let r: Result<Vec<_>, _> = Ops::new(&block[..cut]).collect();
            assert!(cut == 0 || r.is_err(), "cut at {cut}");
        }
    }
}
