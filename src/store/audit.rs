//! The audit trail's write queue: requests hand their record over without waiting for sled, one
//! thread writes what has queued up as one batch.
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
/// Records written per sled batch at most.
const MAX_BATCH: usize = 1_024;

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
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(result.as_ref().map_err(ToString::to_string).copied());
        }
    }
}

fn write(tree: &sled::Tree, records: &[AuditRecord]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for r in records {
        let v = serde_json::to_vec(r).map_err(|e| StoreError::Io(e.to_string()))?;
        batch.insert(time_key(P_AUDIT, i128::from(r.at) * 1_000_000_000), v);
    }
    tree.apply_batch(batch)?;
    Ok(())
}
