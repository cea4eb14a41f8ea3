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

use super::super::journal::pause_point;
use super::super::StoreError;
use super::Val;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Versioned migrations, compiled in: index + 1 is the version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_replay.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Keys per page of a scan: bounded memory for walks over millions of entries.
const PAGE: i64 = 1000;
/// The first page is small: most scans (a BSN's entries, "is it empty") want a few keys.
const FIRST_PAGE: i64 = 16;

fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dkd-pg")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError::Io(format!("PostgreSQL runtime: {e}")))
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    } else {
        StoreError::Io(format!("PostgreSQL: {e}"))
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

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
    /// Runs one database task on the PostgreSQL runtime and waits for it, at most the timeout.
    fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.wait(self.timeout, fut)
    }

    /// [`Pg::run`] with a deadline of its own; every wait for the database goes through here.
    fn wait<T, F>(&self, timeout: Duration, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run(timeout, fut)
    }

    /// How often a caller has waited for the database so far (tests count round trips).
    #[cfg(test)]
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connects (lazily: the pool opens connections when they are needed) and brings the schema
    /// up to date when `migrate`; refuses a database whose schema is newer than this build.
    pub(crate) fn connect(
        url: &str,
        ca: Option<&std::path::Path>,
        timeout: Duration,
        migrate: bool,
    ) -> Result<Arc<Pg>, StoreError> {
        let shown = mask_url(url);
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Io(format!("{shown}: {e}")))?;
        cfg.connect_timeout(timeout);
        cfg.application_name("dkd");
        // The server gives up on a statement shortly after dkd stops waiting for it.
        let options = format!(
            "{} -c statement_timeout={}",
            cfg.get_options().unwrap_or_default(),
            timeout.as_millis() + 1000
        );
        cfg.options(options.trim());
        let mgr_cfg = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // libpq's default `prefer` without a CA to check the server against: plain, as libpq
        // would end up without one; `require` always TLS, and it needs the CA.
        use tokio_postgres::config::SslMode;
        let mgr = match (cfg.get_ssl_mode(), ca) {
            (SslMode::Disable, _) | (SslMode::Prefer, None) => {
                Manager::from_config(cfg, tokio_postgres::NoTls, mgr_cfg)
            }
            _ => Manager::from_config(cfg, tls(ca, &shown)?, mgr_cfg),
        };
        let pool = Pool::builder(mgr)
            .max_size(32)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Io(format!("{shown}: {e}")))?;
        let pg = Arc::new(Pg {
            pool,
            timeout,
            shown,
            applied: Default::default(),
            round_trips: Default::default(),
        });
        let found = pg.version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaAhead {
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            if !migrate {
                return Err(StoreError::SchemaBehind {
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            let applied = pg.migrate()?;
            *pg.applied
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = applied;
        }
        Ok(pg)
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

    /// The schema version in the database (0: none yet).
    pub(crate) fn version(&self) -> Result<u32, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let c = pool.get().await.map_err(pool_err)?;
            let exists = c
                .query_one("SELECT to_regclass('dkd_schema') IS NOT NULL", &[])
                .await
                .map_err(db_err)?
                .get::<_, bool>(0);
            if !exists {
                return Ok(0);
            }
            let v: i32 = c
                .query_one("SELECT coalesce(max(version), 0) FROM dkd_schema", &[])
                .await
                .map_err(db_err)?
                .get(0);
            Ok(u32::try_from(v).unwrap_or(0))
        })
    }

    /// Applies the migrations the database lacks, each in a transaction of its own, under an
    /// advisory lock so two instances starting at once do not both apply one. Returns the
    /// versions applied.
    pub(crate) fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let mut c = pool.get().await.map_err(pool_err)?;
            let tx = c.transaction().await.map_err(db_err)?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema()), 0);
                 CREATE TABLE IF NOT EXISTS dkd_schema (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(db_err)?;
            let found: i32 = tx
                .query_one("SELECT coalesce(max(version), 0) FROM dkd_schema", &[])
                .await
                .map_err(db_err)?
                .get(0);
            let mut applied = Vec::new();
            for (i, sql) in MIGRATIONS.iter().enumerate() {
                let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
                if v <= found {
                    continue;
                }
                tx.batch_execute(sql).await.map_err(db_err)?;
                tx.execute("INSERT INTO dkd_schema (version) VALUES ($1)", &[&v])
                    .await
                    .map_err(db_err)?;
                applied.push(u32::try_from(v).unwrap_or(0));
            }
            tx.commit().await.map_err(db_err)?;
            Ok(applied)
        })
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

/// How long a change set waits for another instance's to commit (a large import).
const CHANGE_SET_WAIT: Duration = Duration::from_secs(3600);

/// Waits at most `timeout` for `fut` run on the PostgreSQL runtime.
fn run<T, F>(timeout: Duration, fut: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {} ms",
                timeout.as_millis()
            ))),
        };
        let _ = tx.send(r);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Io(
            "PostgreSQL task ended without an answer".into(),
        ))
    })
}

fn tls(
    ca: Option<&std::path::Path>,
    shown: &str,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let Some(ca) = ca else {
        return Err(StoreError::Io(format!(
            "{shown}: TLS to PostgreSQL needs [store] ca (the CA that signed the server's certificate), or sslmode=disable"
        )));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| StoreError::Io(format!("{}: {e}", ca.display())))?
    {
        let cert = cert.map_err(|e| StoreError::Io(format!("{}: {e}", ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| StoreError::Io(format!("{}: {e}", ca.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Io(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
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

/// A connection inside a transaction; rolled back when dropped uncommitted.
pub(crate) struct TxConn {
    pg: Arc<Pg>,
    conn: Option<Arc<deadpool_postgres::Object>>,
    sql: Option<Arc<Sql>>,
}

fn tx_err(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) {
        StoreError::Conflict(e.to_string())
    } else {
        db_err(e)
    }
}

impl TxConn {
    fn conn(&self) -> Result<Arc<deadpool_postgres::Object>, StoreError> {
        self.conn
            .clone()
            .ok_or_else(|| StoreError::Io("PostgreSQL transaction already ended".into()))
    }

    fn table(&self) -> Arc<Sql> {
        self.sql
            .clone()
            .unwrap_or_else(|| Arc::new(Sql::new("dkd_index")))
    }

    pub(crate) fn get(&mut self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (c, sql, k) = (self.conn()?, self.table(), k.to_vec());
        let r = self.pg.run(async move {
            let row = c.query_opt(sql.get.as_str(), &[&k]).await.map_err(tx_err)?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        });
        self.on_error(r)
    }

    pub(crate) fn write(&mut self, ops: Ops) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (c, sql) = (self.conn()?, self.table());
        let r = self.pg.run(async move {
            let (ks, vs, dels) = collapse(ops);
            if !dels.is_empty() {
                c.execute(sql.delete.as_str(), &[&dels])
                    .await
                    .map_err(tx_err)?;
            }
            if !ks.is_empty() {
                c.execute(sql.upsert.as_str(), &[&ks, &vs])
                    .await
                    .map_err(tx_err)?;
            }
            Ok(())
        });
        self.on_error(r)
    }

    fn on_error<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.rollback();
        }
        r
    }

    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        let c = self.conn()?;
        let r = self
            .pg
            .run(async move { c.batch_execute("COMMIT").await.map_err(tx_err) });
        match r {
            Ok(()) => {
                self.conn = None;
                Ok(())
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Ends the transaction without its writes. A connection whose roll-back failed (or timed
    /// out) is not given back to the pool: it could still be inside the transaction.
    pub(crate) fn rollback(&mut self) {
        let Some(c) = self.conn.take() else {
            return;
        };
        let probe = c.clone();
        let r = self
            .pg
            .run(async move { probe.batch_execute("ROLLBACK").await.map_err(db_err) });
        if r.is_err() {
            if let Ok(obj) = Arc::try_unwrap(c) {
                let _ = deadpool_postgres::Object::take(obj);
            }
        }
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        self.rollback();
    }
}

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

/// The audit trail's table.
pub(crate) mod audit {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Location, Store};

    fn server() -> String {
        std::env::var("DKD_TEST_PG_URL")
            .expect("DKD_TEST_PG_URL names the PostgreSQL server for the tests")
    }

    /// Two handles on one fresh schema, as two dkd instances would have.
    fn two_instances() -> (TempSchema, Store, Store) {
        let (temp, url) = TempSchema::create(&server()).expect("schema");
        let loc = Location::Postgres { url, ca: None };
        let a = Store::open_at(&loc, true).expect("first instance migrates");
        let b = Store::open_at(&loc, false).expect("second instance finds it migrated");
        (temp, a, b)
    }

    #[test]
    fn a_database_that_never_answers_is_unavailable_not_a_hang() {
        // Accepts connections and never says a word: connect must give up by itself.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "postgres://dkd@{}/dkd?sslmode=disable",
            silent.local_addr().expect("addr")
        );
        let e = Pg::connect(&url, None, Duration::from_millis(300), true)
            .err()
            .expect("no database there");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        let closed = "postgres://dkd@127.0.0.1:1/dkd?sslmode=disable";
        let e = Store::open_at(
            &Location::Postgres {
                url: closed.into(),
                ca: None,
            },
            true,
        )
        .err()
        .expect("nothing listens on port 1");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn masked_urls_show_no_password() {
        assert_eq!(
            mask_url("postgres://dkd:geheim@db:5432/dkd?sslmode=require"),
            "postgres://dkd:****@db:5432/dkd?sslmode=require"
        );
        assert_eq!(mask_url("postgres://dkd@db/dkd"), "postgres://dkd@db/dkd");
        assert_eq!(
            mask_url("postgres://a:b@c@db/dkd"),
            "postgres://a:****@db/dkd"
        );
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn migrations_are_versioned_and_a_newer_schema_is_refused() {
        let (temp, url) = TempSchema::create(&server()).expect("schema");
        let loc = Location::Postgres {
            url: url.clone(),
            ca: None,
        };
        // A command does not migrate: it says what to do.
        assert!(matches!(
            Store::open_at(&loc, false),
            Err(StoreError::SchemaBehind { found: 0, .. })
        ));
        assert_eq!(
            Store::migrate(&loc).expect("migrate"),
            (1..=SCHEMA_VERSION).collect::<Vec<_>>()
        );
        assert_eq!(Store::migrate(&loc).expect("again"), Vec::<u32>::new());
        let pg = Pg::connect(&url, None, Duration::from_secs(5), false).expect("connect");
        pg.execute(
            "INSERT INTO dkd_schema (version) VALUES ($1)",
            vec![Box::new(i32::try_from(SCHEMA_VERSION + 1).expect("small"))],
        )
        .expect("a later dkd's migration");
        for migrate in [false, true] {
            assert!(matches!(
                Store::open_at(&loc, migrate),
                Err(StoreError::SchemaAhead { .. })
            ));
        }
        drop(temp);
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn two_instances_share_identity_entries_outbox_and_audit_trail() {
        let (_temp, a, b) = two_instances();
        let a = a.with_outbox(true);
        assert_eq!(
            a.identity("gemeente").expect("id"),
            b.identity("ib").expect("the same id")
        );
        let p = crate::store::tests::person("123456782", &["0363"]);
        a.put(&p, "import:a.csv").expect("put on a");
        // Answered by the other at once: no lock, no detour.
        assert_eq!(b.get(&p.bsn).expect("get on b"), Some(p.clone()));
        assert_eq!(b.outbox_pending(10).expect("pending").len(), 1);
        let rec = |at: i64, id: &str| crate::store::AuditRecord {
            at,
            operation: "GSDReintegratieInfo".into(),
            tls_oin: None,
            from_oin: None,
            message_id: Some(id.into()),
            bsn: None,
            outcome: "found".into(),
            code: None,
        };
        assert!(a.queue_audit(rec(1_700_000_000, "from-a")));
        assert!(b.queue_audit(rec(1_700_000_001, "from-b")));
        b.flush_audit().expect("flush b");
        let ids: Vec<String> = a
            .audit_since(0)
            .map(|r| r.expect("record").message_id.unwrap_or_default())
            .collect();
        assert_eq!(ids, ["from-a", "from-b"]);
        assert_eq!(b.prune_audit(1_700_000_001).expect("prune"), 1);
        assert_eq!(a.audit_since(0).count(), 1);
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn one_instance_at_a_time_sends_the_outbox_until_its_lease_runs_out() {
        let (_temp, a, b) = two_instances();
        let secs = crate::store::outbox::LEASE_SECS;
        assert!(a.outbox_lease(secs).expect("a takes it"));
        assert!(!b.outbox_lease(secs).expect("b waits"));
        assert!(a.outbox_lease(secs).expect("a renews it"));
        // a died: once its lease has run out, b takes over (and a, back, waits).
        let later = time::OffsetDateTime::now_utc().unix_timestamp() + secs as i64 + 1;
        assert!(b.outbox_lease_at(later, 60).expect("b takes over"));
        assert!(!a.outbox_lease_at(later, 60).expect("a waits now"));
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn change_sets_of_two_instances_are_serialised_and_all_or_nothing() {
        let (_temp, a, b) = two_instances();
        let p = crate::store::tests::person("123456782", &["0363"]);
        let mut open = a.changes("import:a.csv");
        open.upsert(&p).expect("upsert");
        // The other instance's change set waits for this one's commit, then sees its entry
        // (without the lock both would count the person as added).
        let other = std::thread::spawn(move || {
            let c = b.put(&p, "import:b.csv").expect("put on b");
            (c, b)
        });
        // Longer than the store's deadline for a statement: a change set waits for another
        // instance's as long as that one takes (a large import), it does not fail.
        std::thread::sleep(Duration::from_millis(3500));
        assert!(!other.is_finished(), "b's change set must wait for a's");
        assert_eq!(open.commit().expect("commit").added, 1);
        let (c, b) = other.join().expect("join");
        assert_eq!((c.added, c.unchanged), (0, 1));
        // A change set that is dropped leaves nothing, in either instance's view.
        let q = crate::store::tests::person("111222333", &["0363"]);
        let mut dropped = b.changes("admin");
        dropped.upsert(&q).expect("upsert");
        drop(dropped);
        assert_eq!(a.get(&q.bsn).expect("get"), None);
        assert_eq!(b.len(), 1);
    }
}
