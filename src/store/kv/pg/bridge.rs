//! The synchronous bridge: the PostgreSQL runtime, every wait bounded by a deadline, the pool
//! (which reconnects by itself), TLS, and a transaction's connection.

use super::*;
use std::future::Future;
use std::sync::OnceLock;

pub(super) fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
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

pub(super) fn db_err(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() || e.as_db_error().is_none() {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    } else {
        StoreError::Io(format!("PostgreSQL: {e}"))
    }
}

pub(super) fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {e}"))
}

impl Pg {
    /// Runs one database task on the PostgreSQL runtime and waits for it, at most the timeout.
    pub(super) fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.wait(self.timeout, fut)
    }

    /// [`Pg::run`] with a deadline of its own; every wait for the database goes through here.
    pub(super) fn wait<T, F>(&self, timeout: Duration, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run(timeout, fut)
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
}

/// How long a change set waits for another instance's to commit (a large import).
pub(super) const CHANGE_SET_WAIT: Duration = Duration::from_secs(3600);

/// Waits at most `timeout` for `fut` run on the PostgreSQL runtime.
pub(super) fn run<T, F>(timeout: Duration, fut: F) -> Result<T, StoreError>
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

pub(super) fn tls(
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

/// A connection inside a transaction; rolled back when dropped uncommitted.
pub(crate) struct TxConn {
    pub(super) pg: Arc<Pg>,
    pub(super) conn: Option<Arc<deadpool_postgres::Object>>,
    pub(super) sql: Option<Arc<Sql>>,
}

pub(super) fn tx_err(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) {
        StoreError::Conflict(e.to_string())
    } else {
        db_err(e)
    }
}

impl TxConn {
    pub(super) fn conn(&self) -> Result<Arc<deadpool_postgres::Object>, StoreError> {
        self.conn
            .clone()
            .ok_or_else(|| StoreError::Io("PostgreSQL transaction already ended".into()))
    }

    pub(super) fn table(&self) -> Arc<Sql> {
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

    pub(super) fn on_error<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
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
