//! The PostgreSQL backend: the store's key space in tables (`dkd_index`, `dkd_meta`), shared by
//! any number of dkd processes.
//!
//! Driver: tokio-postgres with a deadpool pool, behind a synchronous bridge. The store's API is
//! synchronous and is called from async workers (a lookup), blocking threads, CLI commands and
//! tests; the sync `postgres` crate would panic when called on a runtime thread. Here every
//! statement runs as a task on one process-wide runtime of its own (never dropped, so dropping a
//! store inside an async context is fine) and the caller waits on a channel: one code path for
//! every caller, no panic, and every wait bounded by [`Pg::timeout`], so an unreachable database
//! is a [`StoreError::Unavailable`] within the deadline, never a hang. The pool reconnects by
//! itself: a broken connection is dropped and the next checkout opens a new one.
//!
//! A change set is one transaction that first takes a transaction-level advisory lock: change
//! sets of all instances are serialised, as sled's are within its one process, since each
//! decides what to write from what it reads.

use super::super::StoreError;
use super::Val;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod audit;
pub(crate) use audit::{AuditMsg, AuditWriter};
mod bridge;
pub(crate) use bridge::TxConn;
use bridge::{db_err, pool_err, runtime, CHANGE_SET_WAIT};
mod migrate;
pub use migrate::SCHEMA_VERSION;
mod writes;
pub(crate) use writes::Writes;
#[cfg(test)]
mod tests;

/// Keys per page of a scan: bounded memory for walks over millions of entries.
const PAGE: i64 = 1000;
/// The first page is small: most scans (a BSN's entries, "is it empty") want a few keys.
const FIRST_PAGE: i64 = 16;

/// A connected database (shared by every handle of one store).
pub(crate) struct Pg {
    pool: Pool,
    /// The longest any store call waits for the database.
    timeout: Duration,
    /// Where the URL points, password masked (for messages).
    shown: String,
    /// The migrations this handle applied when it connected.
    applied: std::sync::Mutex<Vec<u32>>,
    round_trips: std::sync::atomic::AtomicU64,
}

/// The URL with its password masked, for logs and `dkd config check`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    match auth {
        Some(a) => match a.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
            None => format!("{scheme}://{a}@{host}"),
        },
        None => url.to_owned(),
    }
}

/// Checks a URL without connecting: what `dkd config check` refuses.
pub fn check_url(url: &str, has_ca: bool) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    let cfg: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    if cfg.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    if cfg.get_dbname().is_none() {
        return Err("names no database (postgres://user@host:port/DATABASE)".into());
    }
    if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Require && !has_ca {
        return Err(
            "sslmode=require needs store.ca, the CA that signed the server's certificate (dkd checks it)"
                .into(),
        );
    }
    Ok(())
}

impl Pg {
    /// How often a caller has waited for the database so far (tests count round trips).
    #[cfg(test)]
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The migrations applied when this handle connected.
    pub(crate) fn applied(&self) -> Vec<u32> {
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Where the store is, password masked.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The next value of the shared sequence.
    pub(crate) fn generate_id(&self) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let v: i64 = c
                .query_one("SELECT nextval('dkd_ids')", &[])
                .await
                .map_err(db_err)?
                .get(0);
            Ok(u64::try_from(v).unwrap_or(0))
        })
    }

    /// The next `n` values of the shared sequence, in the order they were drawn.
    pub(crate) fn generate_ids(&self, n: usize) -> Result<Vec<u64>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT nextval('dkd_ids') FROM generate_series(1, $1::bigint) AS g(i) ORDER BY i",
            vec![Box::new(n)],
        )?;
        Ok(rows
            .iter()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .collect())
    }

    /// Makes the next id larger than `n`.
    pub(crate) fn advance_ids_past(&self, n: u64) -> Result<(), StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.query(
            "SELECT setval('dkd_ids', greatest($1, (SELECT last_value FROM dkd_ids)))",
            vec![Box::new(n)],
        )
        .map(|_| ())
    }

    /// Runs one statement for its effect.
    pub(crate) fn execute(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p.as_ref() as _).collect();
            c.execute(sql, &refs).await.map_err(db_err)
        })
    }

    /// Runs one query, returning its rows.
    pub(crate) fn query(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p.as_ref() as _).collect();
            c.query(sql, &refs).await.map_err(db_err)
        })
    }

    /// A connection in a transaction of its own (rolled back unless committed).
    pub(crate) fn begin(self: &Arc<Pg>, serialise_change_sets: bool) -> Result<TxConn, StoreError> {
        let pool = self.pool.clone();
        let wait = self.timeout;
        let run = async move {
            // Only the connection is bounded by the store's deadline: the lock may be held by a
            // large import of another instance, which a change set waits for, as on sled.
            let c = tokio::time::timeout(wait, pool.get())
                .await
                .map_err(|_| StoreError::Unavailable("PostgreSQL: no connection in time".into()))?
                .map_err(pool_err)?;
            let sql = if serialise_change_sets {
                "BEGIN; SET LOCAL statement_timeout = 0;                  SELECT pg_advisory_xact_lock(hashtext(current_schema()), 1);                  SET LOCAL statement_timeout TO DEFAULT"
            } else {
                "BEGIN ISOLATION LEVEL SERIALIZABLE"
            };
            c.batch_execute(sql).await.map_err(db_err)?;
            Ok(c)
        };
        let conn = if serialise_change_sets {
            self.wait(CHANGE_SET_WAIT, run)
        } else {
            self.run(run)
        }?;
        Ok(TxConn {
            pg: self.clone(),
            conn: Some(Arc::new(conn)),
            sql: None,
        })
    }
}

/// One table of keys.
#[derive(Clone)]
pub(crate) struct Table {
    pg: Arc<Pg>,
    sql: Arc<Sql>,
}

/// The statements of one table (the name is a constant, never input).
struct Sql {
    get: String,
    page: String,
    page_open: String,
    upsert: String,
    delete: String,
    clear: String,
}

impl Sql {
    fn new(t: &str) -> Sql {
        Sql {
            get: format!("SELECT v FROM {t} WHERE k = $1"),
            page: format!("SELECT k, v FROM {t} WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3"),
            page_open: format!("SELECT k, v FROM {t} WHERE k >= $1 ORDER BY k LIMIT $2"),
            upsert: format!(
                "INSERT INTO {t} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
            ),
            delete: format!("DELETE FROM {t} WHERE k = ANY($1::bytea[])"),
            clear: format!("DELETE FROM {t}"),
        }
    }
}

type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;
/// Keys and values in order.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;
/// Keys to upsert, their values, keys to delete.
type Collapsed = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Writes in order collapse to the last one per key; the upserts and deletes of distinct keys
/// then commute (and one statement may not upsert a key twice).
fn collapse(ops: Ops) -> Collapsed {
    let mut last: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>> =
        std::collections::HashMap::with_capacity(ops.len());
    for (k, v) in ops {
        last.insert(k, v);
    }
    let (mut ks, mut vs, mut dels) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in last {
        match v {
            Some(v) => {
                ks.push(k);
                vs.push(v);
            }
            None => dels.push(k),
        }
    }
    (ks, vs, dels)
}

async fn write_ops(
    c: &impl deadpool_postgres::GenericClient,
    sql: &Sql,
    ops: Ops,
) -> Result<(), StoreError> {
    let (ks, vs, dels) = collapse(ops);
    if !dels.is_empty() {
        c.execute(sql.delete.as_str(), &[&dels])
            .await
            .map_err(db_err)?;
    }
    if !ks.is_empty() {
        c.execute(sql.upsert.as_str(), &[&ks, &vs])
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

impl Table {
    pub(crate) fn new(pg: &Arc<Pg>, name: &str) -> Table {
        Table {
            pg: pg.clone(),
            sql: Arc::new(Sql::new(name)),
        }
    }

    pub(crate) fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (pool, sql, k) = (self.pg.pool.clone(), self.sql.clone(), k.to_vec());
        self.pg.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let row = c.query_opt(sql.get.as_str(), &[&k]).await.map_err(db_err)?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    /// Applies writes as one transaction.
    pub(crate) fn apply(&self, ops: Ops) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (pool, sql) = (self.pg.pool.clone(), self.sql.clone());
        self.pg.run(async move {
            let mut c = pool.get().await.map_err(pool_err)?;
            if ops.len() == 1 || ops.iter().all(|(_, v)| v.is_some()) {
                // One statement is a transaction by itself.
                return write_ops(&c, &sql, ops).await;
            }
            let tx = c.transaction().await.map_err(db_err)?;
            write_ops(&tx, &sql, ops).await?;
            tx.commit().await.map_err(db_err)
        })
    }

    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        let (pool, sql) = (self.pg.pool.clone(), self.sql.clone());
        self.pg.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            c.execute(sql.clear.as_str(), &[]).await.map_err(db_err)?;
            Ok(())
        })
    }

    pub(crate) fn pages(&self, start: Vec<u8>, end: Option<Vec<u8>>) -> Pages {
        Pages {
            table: self.clone(),
            next: Some(start),
            end,
            buf: VecDeque::new(),
            failed: false,
            limit: FIRST_PAGE,
        }
    }

    fn page(&self, from: Vec<u8>, end: Option<Vec<u8>>, limit: i64) -> Result<Rows, StoreError> {
        let (pool, sql) = (self.pg.pool.clone(), self.sql.clone());
        self.pg.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let rows = match &end {
                Some(e) => c.query(sql.page.as_str(), &[&from, e, &limit]).await,
                None => c.query(sql.page_open.as_str(), &[&from, &limit]).await,
            }
            .map_err(db_err)?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    /// Runs `f` in a serialisable transaction, again on a serialisation failure.
    pub(crate) fn transaction<T>(
        &self,
        f: impl Fn(&mut TxConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut tx = self.pg.begin(false)?;
            tx.sql = Some(self.sql.clone());
            let out = f(&mut tx).and_then(|v| tx.commit().map(|()| v));
            match out {
                Err(StoreError::Conflict(_)) if tries < 50 => {
                    // Apart again, a little later each time: the same counters are hot.
                    let spread = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 5;
                    std::thread::sleep(Duration::from_millis(tries + spread));
                    continue;
                }
                other => return other,
            }
        }
    }
}

/// A scan, one page at a time.
pub(crate) struct Pages {
    table: Table,
    /// The first key of the next page (`None`: the scan is done).
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    failed: bool,
    /// Keys the next page asks for.
    limit: i64,
}

impl Pages {
    fn fill(&mut self) -> Result<(), StoreError> {
        let Some(from) = self.next.take() else {
            return Ok(());
        };
        let limit = self.limit;
        self.limit = PAGE;
        let rows = self.table.page(from, self.end.clone(), limit)?;
        if rows.len() as i64 == limit {
            if let Some((k, _)) = rows.last() {
                let mut n = k.clone();
                n.push(0);
                self.next = Some(n);
            }
        }
        self.buf.extend(rows);
        Ok(())
    }

    fn step(&mut self, back: bool) -> Option<Result<(Val, Val), StoreError>> {
        if self.failed {
            return None;
        }
        let fill = if back {
            // Reading from the end: the rest of the scan at once (only small trees do this).
            loop {
                if self.next.is_none() {
                    break Ok(());
                }
                if let Err(e) = self.fill() {
                    break Err(e);
                }
            }
        } else if self.buf.is_empty() {
            self.fill()
        } else {
            Ok(())
        };
        if let Err(e) = fill {
            self.failed = true;
            return Some(Err(e));
        }
        let item = if back {
            self.buf.pop_back()
        } else {
            self.buf.pop_front()
        };
        item.map(|(k, v)| Ok((Val::Owned(k), Val::Owned(v))))
    }
}

impl Iterator for Pages {
    type Item = Result<(Val, Val), StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl DoubleEndedIterator for Pages {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

/// A schema of its own in the database at `url`, dropped when the last handle goes: for tests.
pub struct TempSchema {
    admin: Arc<Pg>,
    name: String,
}

impl TempSchema {
    /// Creates the schema; returns it and the URL of a connection that works in it.
    pub fn create(url: &str) -> Result<(TempSchema, String), StoreError> {
        let admin = Pg::connect_raw(url)?;
        let name = format!("dkd_t_{}", uuid::Uuid::new_v4().simple());
        let sql = format!("CREATE SCHEMA {name}");
        let pool = admin.pool.clone();
        admin.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            c.batch_execute(&sql).await.map_err(db_err)
        })?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options=-csearch_path%3D{name}");
        Ok((TempSchema { admin, name }, scoped))
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let pool = self.admin.pool.clone();
        let _ = self.admin.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            c.batch_execute(&sql).await.map_err(db_err)
        });
    }
}

impl Pg {
    /// A pool without the schema check (for [`TempSchema`]).
    fn connect_raw(url: &str) -> Result<Arc<Pg>, StoreError> {
        let shown = mask_url(url);
        let cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Io(format!("{shown}: {e}")))?;
        let mgr = Manager::from_config(
            cfg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(2)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Arc::new(Pg {
            pool,
            timeout: Duration::from_secs(30),
            shown,
            applied: Default::default(),
            round_trips: Default::default(),
        }))
    }
}

/// The shared replay cache's table (`dkd_replay`).
pub(crate) mod replay {
    use super::*;

    /// One statement: a new MessageID is inserted, an expired row (not yet pruned) is taken
    /// over, a live one is left alone and counts as the replay it is.
    pub(crate) fn claim(pg: &Pg, id: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        let n = pg.execute(
            "INSERT INTO dkd_replay (message_id, expires_at) VALUES ($1, $2) \
             ON CONFLICT (message_id) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE dkd_replay.expires_at < $3",
            vec![Box::new(id.to_owned()), Box::new(until), Box::new(now)],
        )?;
        Ok(n == 1)
    }

    pub(crate) fn prune(pg: &Pg, now: i64) -> Result<u64, StoreError> {
        pg.execute(
            "DELETE FROM dkd_replay WHERE expires_at < $1",
            vec![Box::new(now)],
        )
    }
}
