//! The sled backend: opening a store directory (its file lock, page cache and schema version),
//! and rolling back a change set that a crash interrupted (its undo journal is
//! [`super::super::journal`]). The trees themselves are [`super::Tree::Sled`].

use super::super::journal::{pause_point, Ops, KEY_JOURNAL};
use super::super::{
    audit, kv, Audit, Recovery, Store, StoreError, CACHE_BYTES, KEY_SCHEMA_VERSION, SCHEMA_VERSION,
    UPGRADABLE_FROM,
};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

impl Store {
    /// Opens (creating if needed) the store in a directory.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // sled's default page cache is 1 GiB; point lookups need far less, and the RSS of a
        // 10^6-person instance stays under 300 MB with this.
        let db = ::sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                ::sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::from(other),
            })?;
        Store::init(db, Some(path))
    }

    /// A throwaway in-memory store for tests and benchmarks.
    pub fn temporary() -> Result<Store, StoreError> {
        let db = ::sled::Config::new().temporary(true).open()?;
        Store::init(db, None)
    }

    /// `dir`: where the store lives (`None`: temporary); the audit trail has its files there.
    pub(crate) fn init(db: ::sled::Db, dir: Option<&Path>) -> Result<Store, StoreError> {
        let meta = kv::Tree::Sled(db.open_tree("meta")?);
        match meta.get(KEY_SCHEMA_VERSION)? {
            None => {
                meta.insert(KEY_SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if UPGRADABLE_FROM.contains(&found) {
                    meta.insert(KEY_SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes())?;
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion { found });
                }
            }
        }
        let index = kv::Tree::Sled(db.open_tree("index")?);
        let audit = std::sync::Arc::new(Audit::Files(audit::AuditQueue::new(dir)?));
        let journal = kv::Tree::Sled(db.open_tree("journal")?);
        let mut store = Store {
            db: kv::Db::Sled(db),
            index,
            outbox: Default::default(),
            audit,
            meta,
            journal,
            gate: Arc::new(RwLock::new(())),
            serial: Arc::new(Mutex::new(())),
            recovery: None,
            dir: dir.map(|d| Arc::new(d.to_path_buf())),
            identity: Arc::new(Mutex::new(None)),
            _temp: None,
            instance: uuid::Uuid::new_v4().to_string().into(),
        };
        if let Some(source) = store.meta.get(KEY_JOURNAL)? {
            let chunks = store.roll_back()?;
            let source = String::from_utf8_lossy(&source).into_owned();
            tracing::warn!(%source, chunks, "rolled back a change set that was being applied when dkd stopped");
            store.recovery = Some(Recovery { source, chunks });
        } else if !store.journal.is_empty() {
            // A commit finished but died before clearing its journal: garbage.
            store.journal.clear()?;
        }
        Ok(store)
    }

    /// Undoes an unfinished commit: journal records newest first, each record's keys last to
    /// first, so a key written twice ends with the value it had before the commit.
    pub(crate) fn roll_back(&self) -> Result<u64, StoreError> {
        let mut chunks = 0u64;
        for item in self.journal.iter().rev() {
            let (_, record) = item?;
            let olds = Ops::new(&record)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Io(format!("journal record: {e}")))?;
            for (k, old, _) in olds.into_iter().rev() {
                match old {
                    Some(v) => self.index.insert(k, v)?,
                    None => self.index.remove(k)?,
                };
            }
            chunks += 1;
            pause_point(format_args!("rollback-{chunks}"), || self.flush_quietly());
        }
        self.meta.remove(KEY_JOURNAL)?;
        self.journal.clear()?;
        self.db.flush()?;
        Ok(chunks)
    }

    /// A roll-back at run time that failed half-way (a full disk) leaves the marker and its undo
    /// records: finish it before the next change set, which would otherwise clear them and leave
    /// the half-applied writes for good. Called with the gate held exclusively.
    pub(crate) fn finish_failed_roll_back(&self) -> Result<(), StoreError> {
        if self.meta.get(KEY_JOURNAL)?.is_some() {
            let chunks = self.roll_back()?;
            tracing::warn!(chunks, "finished the roll-back of an earlier change set");
        }
        Ok(())
    }

    pub(crate) fn flush_quietly(&self) {
        let _ = self.db.flush();
    }
}
