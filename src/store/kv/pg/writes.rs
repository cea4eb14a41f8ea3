//! A change set's writes on PostgreSQL: COPY into a staging table, merged set-based.

use super::bridge::tx_err;
use super::*;
use crate::store::journal::pause_point;

/// The writes of one change set on PostgreSQL: one transaction from its first read (under the
/// change-set advisory lock) to its commit. They stream with `COPY ... FROM STDIN (FORMAT binary)`
/// into a temporary staging table on the transaction's connection, and every [`SEGMENT_ROWS`]
/// rows (and at the end) set-based statements apply the staged segment to `dkd_index` and empty
/// it: a handful of round trips per segment instead of one per row, and the staging table stays
/// small enough for the server's temporary buffers. The builder hands blocks to a task on the
/// PostgreSQL runtime through a queue [`STAGE_QUEUE`] blocks deep, so encoding the next persons
/// overlaps the database's work; memory is the queue, whatever the change set's size.
pub(crate) struct Writes {
    pg: Arc<Pg>,
    tx: Option<TxConn>,
    stage: Option<Stage>,
    block: Staged,
    discard: bool,
    /// Blocks sent so far (the crash tests stop after one).
    blocks: u64,
}

/// The staging task of one change set: blocks in, the task's outcome at the end.
struct Stage {
    /// `None` once closed: the task applies what it holds and ends.
    blocks: Option<tokio::sync::mpsc::Sender<Staged>>,
    task: Option<tokio::task::JoinHandle<Result<u64, StoreError>>>,
}

/// Writes in order: key, value (`None`: remove), and whether the change set read the key as
/// absent under its lock. Such keys go to `dkd_index` with a plain COPY (no staging, no merge:
/// nothing else writes them before the commit; a key that is there after all fails the change
/// set on the primary key, it is never overwritten unseen).
type Staged = Vec<(Vec<u8>, Option<Vec<u8>>, bool)>;

/// Writes per block handed to the staging task.
const BLOCK_OPS: usize = 1024;
/// Blocks queued for the staging task and not yet in the COPY stream.
const STAGE_QUEUE: usize = 8;
/// Rows staged before they are applied: ~10 MB of entries, inside the default `temp_buffers`
/// (8 MB) give or take, so the staging table is mostly never written to disk.
const SEGMENT_ROWS: usize = 32 * 1024;
/// The longest a change set waits for one step of its staged writes (a block taken into the
/// queue, the last segment applied): far above a segment's work, so only a database that has
/// stopped answering trips it, while the 3 s statement deadline would cut a busy one off.
const STAGE_WAIT: Duration = Duration::from_secs(60);

/// Runs in the change set's transaction, on its connection: stages the blocks it is sent and
/// applies them segment by segment. Returns the rows applied.
async fn stage(
    c: Arc<deadpool_postgres::Object>,
    mut blocks: tokio::sync::mpsc::Receiver<Staged>,
) -> Result<u64, StoreError> {
    use std::hash::{BuildHasher, BuildHasherDefault};
    // The COPY stays open while the change set is built, which can take longer than the
    // statement deadline; each wait of the builder on this task is bounded instead (STAGE_WAIT).
    c.batch_execute(
        "SET LOCAL statement_timeout = 0;
         CREATE TEMP TABLE dkd_stage (ord bigint NOT NULL, k bytea NOT NULL, v bytea) ON COMMIT DROP",
    )
    .await
    .map_err(tx_err)?;
    let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let (mut ord, mut applied, mut open) = (0i64, 0u64, true);
    while open {
        // One segment, held here while it is sent (bounded: SEGMENT_ROWS).
        let (mut new, mut staged) = (Vec::new(), Vec::new());
        // Whether a staged key comes twice (by hash: a collision only costs the statement that
        // keeps the last write per key), and whether any staged write removes.
        let mut seen = std::collections::HashSet::with_capacity(SEGMENT_ROWS);
        let (mut twice, mut removes) = (false, false);
        while new.len() + staged.len() < SEGMENT_ROWS {
            let Some(block) = blocks.recv().await else {
                open = false;
                break;
            };
            for (k, v, absent) in block {
                match (v, absent) {
                    (Some(v), true) => new.push((k, v)),
                    (v, _) => {
                        twice |= !seen.insert(hasher.hash_one(&k));
                        removes |= v.is_none();
                        staged.push((ord, k, v));
                        ord += 1;
                    }
                }
            }
        }
        if !new.is_empty() {
            copy_rows(
                &c,
                "COPY dkd_index (k, v) FROM STDIN (FORMAT binary)",
                &[tokio_postgres::types::Type::BYTEA; 2],
                new.iter().map(|(k, v)| [k as _, v as _]),
            )
            .await?;
            applied += new.len() as u64;
        }
        if staged.is_empty() {
            continue;
        }
        use tokio_postgres::types::Type;
        copy_rows(
            &c,
            "COPY dkd_stage (ord, k, v) FROM STDIN (FORMAT binary)",
            &[Type::INT8, Type::BYTEA, Type::BYTEA],
            staged.iter().map(|(o, k, v)| [o as _, k as _, v as _]),
        )
        .await?;
        // Writes in order collapse to the last one per key; removes and upserts of distinct
        // keys then commute, and one INSERT may not upsert a key twice.
        let mut sql = String::new();
        if twice {
            sql.push_str(
                "DELETE FROM dkd_stage a USING dkd_stage b WHERE a.k = b.k AND a.ord < b.ord;",
            );
        }
        if removes {
            sql.push_str(
                "DELETE FROM dkd_index i USING dkd_stage s WHERE s.v IS NULL AND i.k = s.k;",
            );
        }
        sql.push_str(
            "INSERT INTO dkd_index (k, v) SELECT k, v FROM dkd_stage WHERE v IS NOT NULL
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
             TRUNCATE dkd_stage",
        );
        c.batch_execute(&sql).await.map_err(tx_err)?;
        applied += staged.len() as u64;
    }
    Ok(applied)
}

/// Sends rows with one `COPY ... FROM STDIN (FORMAT binary)`.
async fn copy_rows<'a, const N: usize>(
    c: &deadpool_postgres::Object,
    sql: &str,
    types: &[tokio_postgres::types::Type; N],
    rows: impl Iterator<Item = [&'a (dyn tokio_postgres::types::ToSql + Sync); N]>,
) -> Result<(), StoreError> {
    let sink = c.copy_in(sql).await.map_err(tx_err)?;
    let mut w = std::pin::pin!(tokio_postgres::binary_copy::BinaryCopyInWriter::new(
        sink, types
    ));
    for row in rows {
        w.as_mut().write(&row).await.map_err(tx_err)?;
    }
    w.as_mut().finish().await.map_err(tx_err)?;
    Ok(())
}

impl Writes {
    pub(crate) fn new(pg: &Arc<Pg>) -> Writes {
        Writes {
            pg: pg.clone(),
            tx: None,
            stage: None,
            block: Vec::new(),
            discard: false,
            blocks: 0,
        }
    }

    /// Writes that were never begun and write nothing: a placeholder (tests).
    #[cfg(test)]
    pub(crate) fn inert() -> Writes {
        Writes {
            pg: Pg::connect_raw("postgres://localhost/none").expect("lazy pool"),
            tx: None,
            stage: None,
            block: Vec::new(),
            discard: true,
            blocks: 0,
        }
    }

    fn tx(&mut self) -> Result<&mut TxConn, StoreError> {
        if self.tx.is_none() {
            self.tx = Some(self.pg.begin(true)?);
        }
        self.tx
            .as_mut()
            .ok_or_else(|| StoreError::Io("PostgreSQL transaction missing".into()))
    }

    /// Begins the transaction (under the change-set lock), if it has not begun yet.
    pub(crate) fn begin(&mut self) -> Result<(), StoreError> {
        self.tx().map(|_| ())
    }

    /// The stored values of `keys`, in their order, as the change set found them: one query for
    /// all. Read on a connection of the pool, outside the transaction (whose connection carries
    /// the COPY stream), once the transaction holds the change-set lock: no other change set can
    /// commit until this one has, and a change set never decides from its own writes — it writes
    /// an entry once ([`super::super::ChangeSet`] refuses a second upsert, and a second remove
    /// finds the entry handled), so the last commit is exactly what it has to compare with.
    pub(crate) fn get_many(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.tx()?;
        let pool = self.pg.pool.clone();
        self.pg.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let rows = c
                .query("SELECT k, v FROM dkd_index WHERE k = ANY($1)", &[&keys])
                .await
                .map_err(db_err)?;
            let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> = rows
                .into_iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect();
            Ok(keys.iter().map(|k| found.remove(k)).collect())
        })
    }

    /// The stored value (see [`Writes::get_many`]).
    pub(crate) fn get(&mut self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(vec![k.to_vec()])?.pop().flatten())
    }

    pub(crate) fn push(&mut self, k: &[u8], v: Option<&[u8]>) -> Result<(), StoreError> {
        self.push_read(k, v, false)
    }

    /// [`Writes::push`] of a key this change set read as absent (`absent`).
    pub(crate) fn push_read(
        &mut self,
        k: &[u8],
        v: Option<&[u8]>,
        absent: bool,
    ) -> Result<(), StoreError> {
        if self.discard {
            return Ok(());
        }
        self.block.push((k.to_vec(), v.map(<[u8]>::to_vec), absent));
        if self.block.len() >= BLOCK_OPS {
            let block = std::mem::take(&mut self.block);
            self.send(block)?;
            self.blocks += 1;
            // The crash tests kill the process here: blocks written, the transaction open.
            pause_point(format_args!("pg-block-{}", self.blocks), || {});
        }
        Ok(())
    }

    /// Hands a block to the staging task (started with the first one).
    fn send(&mut self, block: Staged) -> Result<(), StoreError> {
        if self.stage.is_none() {
            let conn = self.tx()?.conn()?;
            let (blocks, rx) = tokio::sync::mpsc::channel(STAGE_QUEUE);
            let task = runtime()?.spawn(stage(conn, rx));
            self.stage = Some(Stage {
                blocks: Some(blocks),
                task: Some(task),
            });
        }
        let sender = self.stage.as_ref().and_then(|s| s.blocks.clone());
        let sent = match sender {
            Some(s) => self.pg.wait(STAGE_WAIT, async move {
                s.send(block)
                    .await
                    .map_err(|_| StoreError::Io("PostgreSQL staging stopped".into()))
            }),
            None => Err(StoreError::Io("PostgreSQL staging already closed".into())),
        };
        match sent {
            Ok(()) => Ok(()),
            // The task has stopped, which it only does on an error: report that one.
            Err(e) => Err(self.end_stage().err().unwrap_or(e)),
        }
    }

    /// Closes the queue and waits for the staging task to apply what it was sent.
    fn end_stage(&mut self) -> Result<(), StoreError> {
        let Some(mut stage) = self.stage.take() else {
            return Ok(());
        };
        stage.blocks = None;
        let Some(task) = stage.task.take() else {
            return Ok(());
        };
        let r = self
            .pg
            .wait(STAGE_WAIT, async move {
                task.await
                    .unwrap_or_else(|e| Err(StoreError::Io(format!("PostgreSQL staging: {e}"))))
            })
            .map(|_| ());
        if r.is_err() {
            if let Some(tx) = self.tx.as_mut() {
                tx.rollback();
            }
        }
        r
    }

    /// Stops the staging task where it is (its COPY is aborted), so the connection is free for
    /// the roll-back.
    fn abort_stage(&mut self) {
        let Some(mut stage) = self.stage.take() else {
            return;
        };
        stage.blocks = None;
        if let Some(task) = stage.task.take() {
            task.abort();
            let _ = self.pg.wait(self.pg.timeout, async move {
                let _ = task.await;
                Ok(())
            });
        }
    }

    pub(crate) fn discard(&mut self) {
        self.discard = true;
        self.block.clear();
        self.abort_stage();
        if let Some(mut tx) = self.tx.take() {
            tx.rollback();
        }
    }

    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        if self.discard {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block);
        if block.is_empty() && self.tx.is_none() {
            return Ok(());
        }
        if !block.is_empty() {
            self.send(block)?;
        }
        self.end_stage()?;
        pause_point(format_args!("commit-point"), || {});
        self.tx()?.commit()?;
        pause_point(format_args!("committed"), || {});
        Ok(())
    }
}

impl Drop for Writes {
    /// A change set given up half-way: its COPY is aborted before the transaction is rolled back.
    fn drop(&mut self) {
        self.abort_stage();
    }
}
