//! The schema's migrations, compiled in, and its version in the database.

use super::*;

/// Versioned migrations, compiled in: index + 1 is the version.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_replay.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

impl Pg {
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
}
