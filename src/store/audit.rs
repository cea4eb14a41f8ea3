//! The audit trail's write queue: requests hand their record over without waiting for sled, one
//! thread writes what has queued up.
//!
//! A synchronous insert per request (plus its JSON) was ~12 % of an unsigned request's CPU and ran
//! on the async worker. Readers of the trail (`audit_since`, `prune_audit`) and `Store::flush`
//! drain the queue first, so they see every record handed over before they were called; a clean
//! shutdown (which flushes the store) loses nothing.

use super::{time_key, AuditRecord, StoreError, P_AUDIT};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::thread::JoinHandle;

/// Records waiting at most. Past this the writer is far behind the requests (a stalled disk):
/// records are dropped and counted rather than holding up answers or growing without bound.
const QUEUE_CAPACITY: usize = 16_384;
/// Records taken from the queue per wake-up at most.
const MAX_BATCH: usize = 1_024;
/// Pause after a wake-up that found less than `MAX_BATCH`; bounds how late a record is written
/// (a `flush` arriving during the pause waits for it, then is answered at once).
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

enum Msg {
    Record(AuditRecord),
    /// Acknowledged once everything queued before it is written.
    Flush(SyncSender<Result<(), String>>),
}

struct Writer {
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

/// Shared by all clones of a `Store`; the writer thread starts with the first record.
pub(super) struct AuditQueue {
    tree: sled::Tree,
    writer: OnceLock<Option<Writer>>,
}

impl AuditQueue {
    pub(super) fn new(tree: sled::Tree) -> AuditQueue {
        AuditQueue {
            tree,
            writer: OnceLock::new(),
        }
    }

    fn writer(&self) -> Option<&Writer> {
        self.writer
            .get_or_init(|| {
                let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
                let tree = self.tree.clone();
                match std::thread::Builder::new()
                    .name("dkd-audit".into())
                    .spawn(move || write_loop(&tree, &rx))
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

    /// Queues a record without blocking; false when it had to be dropped.
    pub(super) fn push(&self, r: AuditRecord) -> bool {
        self.writer().and_then(|w| w.tx.as_ref()).is_some_and(|tx| {
            match tx.try_send(Msg::Record(r)) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        })
    }

    /// Waits until every record queued before the call is written.
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        // Nothing was ever queued: nothing to wait for, and no thread to start.
        let Some(Some(w)) = self.writer.get() else {
            return Ok(());
        };
        let Some(tx) = &w.tx else { return Ok(()) };
        let (ack, done) = mpsc::sync_channel(1);
        let gone = || StoreError::Io("the audit writer has stopped".into());
        tx.send(Msg::Flush(ack)).map_err(|_| gone())?;
        done.recv().map_err(|_| gone())?.map_err(StoreError::Io)
    }
}

impl Drop for AuditQueue {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has written the rest; joining it releases
        // its handle on the database (a reopened store would otherwise find it locked).
        if let Some(Some(mut w)) = self.writer.take() {
            drop(w.tx.take());
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn write_loop(tree: &sled::Tree, rx: &mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Record(r) => batch.push(r),
                Msg::Flush(ack) => acks.push(ack),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let result = write(tree, &batch);
        if let Err(e) = &result {
            tracing::error!(error = %e, records = batch.len(), "audit records could not be written");
        }
        let full = batch.len() >= MAX_BATCH;
        batch.clear();
        let flushed = !acks.is_empty();
        for ack in acks.drain(..) {
            let _ = ack.send(result.as_ref().map_err(ToString::to_string).copied());
        }
        if !full && !flushed {
            // Let records gather instead of waking per request: a sender only wakes this thread
            // when it is blocked in recv, so a short pause turns a futex wake-up per request
            // into one per pause.
            std::thread::sleep(LINGER);
        }
    }
}

fn write(tree: &sled::Tree, records: &[AuditRecord]) -> Result<(), StoreError> {
    // One insert per record, not a sled::Batch: sled seals (writes out) its log buffer at the end
    // of every batch and takes a store-wide lock for it, which at one small batch per wake-up
    // cost more than the inserts (profiled: ~18 % of a signed request in sled's log writer).
    // Audit records need no atomicity with each other.
    for r in records {
        let v = serde_json::to_vec(r).map_err(|e| StoreError::Io(e.to_string()))?;
        tree.insert(time_key(P_AUDIT, i128::from(r.at) * 1_000_000_000), v)?;
    }
    Ok(())
}
