//! The audit trail's table, and its writer.

use super::*;
use crate::store::AuditRecord;

pub(crate) fn insert(pg: &Pg, records: Vec<AuditRecord>) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut days = Vec::with_capacity(records.len());
    let mut ats = Vec::with_capacity(records.len());
    let mut js = Vec::with_capacity(records.len());
    for r in &records {
        let day = time::OffsetDateTime::from_unix_timestamp(r.at)
            .map(|t| t.date())
            .unwrap_or(time::Date::MIN);
        days.push(day.to_string());
        ats.push(r.at);
        js.push(serde_json::to_string(r).map_err(|e| StoreError::Io(e.to_string()))?);
    }
    pg.execute(
        "INSERT INTO dkd_audit (day, at, record) \
         SELECT d::date, a, r::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(d, a, r)",
        vec![Box::new(days), Box::new(ats), Box::new(js)],
    )
    .map(|_| ())
}

pub(crate) fn since(pg: &Pg, since: i64) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = pg.query(
        "SELECT record::text FROM dkd_audit WHERE at >= $1 ORDER BY at, id",
        vec![Box::new(since)],
    )?;
    rows.into_iter()
        .map(|r| {
            serde_json::from_str(r.get::<_, &str>(0))
                .map_err(|e| StoreError::Io(format!("audit record: {e}")))
        })
        .collect()
}

pub(crate) fn prune(pg: &Pg, before: i64) -> Result<u64, StoreError> {
    pg.execute(
        "DELETE FROM dkd_audit WHERE at < $1",
        vec![Box::new(before)],
    )
}

/// The audit trail on PostgreSQL: records queued, written in batches by a thread of its own, so
/// an answer never waits for the database.
pub(crate) struct AuditWriter {
    // Unbounded: records are bounded by the room's slots, flushes by their callers.
    tx: std::sync::Mutex<Option<std::sync::mpsc::Sender<AuditMsg>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    room: Arc<crate::store::audit::Room>,
}

pub(crate) enum AuditMsg {
    Record(crate::store::AuditRecord),
    Flush(std::sync::mpsc::SyncSender<Result<(), String>>),
}

impl AuditWriter {
    pub(crate) fn start(pg: &Arc<Pg>) -> Result<AuditWriter, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<AuditMsg>();
        let pg = pg.clone();
        let room = crate::store::audit::Room::new();
        let writer_room = room.clone();
        let thread = std::thread::Builder::new()
            .name("dkd-audit-pg".into())
            .spawn(move || {
                let mut last: Result<(), String> = Ok(());
                while let Ok(first) = rx.recv() {
                    let mut batch = Vec::new();
                    let mut acks = Vec::new();
                    let mut msg = Some(first);
                    while let Some(m) = msg.take() {
                        match m {
                            AuditMsg::Record(r) => batch.push(r),
                            AuditMsg::Flush(ack) => acks.push(ack),
                        }
                        if batch.len() < 1000 {
                            msg = rx.try_recv().ok();
                        }
                    }
                    writer_room.wait_while_held();
                    let n = batch.len();
                    let failing = match audit::insert(&pg, batch) {
                        Ok(()) => None,
                        Err(e) => {
                            tracing::error!(error = %e, "writing audit records to PostgreSQL failed");
                            last = Err(e.to_string());
                            Some(e.to_string())
                        }
                    };
                    writer_room.written(n, failing);
                    for ack in acks {
                        let _ = ack.send(std::mem::replace(&mut last, Ok(())));
                    }
                }
            })
            .map_err(|e| StoreError::Io(format!("audit writer: {e}")))?;
        Ok(AuditWriter {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
            room,
        })
    }

    fn sender(&self) -> Option<std::sync::mpsc::Sender<AuditMsg>> {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The writer's room: slots taken before an answer, freed once written.
    pub(crate) fn room(&self) -> &Arc<crate::store::audit::Room> {
        &self.room
    }

    /// A slot for one record, waiting up to `wait`; `None` when the queue stayed full.
    pub(crate) fn slot(&self, wait: std::time::Duration) -> Option<crate::store::AuditSlot> {
        let tx = self.sender()?;
        self.room.slot(crate::store::audit::SlotTx::Pg(tx), wait)
    }

    pub(crate) fn push(&self, r: crate::store::AuditRecord) -> bool {
        match self.slot(std::time::Duration::ZERO) {
            Some(s) => {
                s.record(r);
                true
            }
            None => false,
        }
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let Some(tx) = self.sender() else {
            return Ok(());
        };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        tx.send(AuditMsg::Flush(ack))
            .map_err(|_| StoreError::Io("audit writer stopped".into()))?;
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(e)),
            Err(_) => Err(StoreError::Io("audit writer stopped".into())),
        }
    }
}

impl Drop for AuditWriter {
    /// Writes what is queued before the store goes.
    fn drop(&mut self) {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}
