//! The verwijsindex store: typed records in sled. The only module that names sled.
//!
//! Layout (schema version 5): one tree `index` holding every kind of record under a one-byte
//! prefix. One import, one admin call or one sweep is one [`ChangeSet`], applied all or nothing:
//! small ones as one `sled::Batch`, large ones in chunks under an undo journal that
//! [`Store::open`] rolls back if the process died half-way ([`journal`]):
//! - `r` BSN(9) gemeente(4) → mutation time (i64 BE, unix seconds) ++ [`Person`] restricted
//!   to that gemeente's AtlRelaties: the entry in that gemeente's verwijsindex. The person is
//!   written in the binary encoding of [`record`] (tag byte 0x01), decoded on every lookup;
//!   entries written before schema 5 are JSON (first byte `{`) and still read, until a change
//!   rewrites them;
//! - `m` time(i64 BE ns) seq(u32 BE) → JSON list of [`Mutation`]s: every change, with its time,
//!   packed per change set (one write per thousands of changes, not one per change);
//! - `i` time(i64 BE ns) → JSON [`ImportRecord`]: the import history;
//! - `a` BSN(9) gemeente(4) → the `r` value as it was: expired entries kept when purging is off.
//!
//! Tree `meta`: `schema_version` = big-endian u32; `journal` = the source of a change set being
//! applied (present only while it is). Tree `journal`: its undo records (see [`journal`]).
//!
//! A lookup by BSN is one prefix scan of `r` + BSN (one B-tree descent), so answer time does not
//! depend on the number of persons. Records are validated before they are written: the store never
//! holds a person that cannot be written as a schema-valid ClientSuwi.

/// Defines a store test once and runs it on both backends, `NAME::sled` and `NAME::pg` (the
/// latter ignored without `DKD_TEST_PG_URL`, a failure with `DKD_REQUIRE_EXTERNAL=1`).
#[cfg(test)]
macro_rules! on_both {
    (fn $name:ident($s:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($s: $crate::store::Store) $body
            #[test]
            fn sled() {
                body($crate::store::Store::temporary().expect("store"))
            }
            #[test]
            #[cfg_attr(
                dkd_missing = "postgres",
                ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
            )]
            fn pg() {
                body($crate::store::tests::pg_store())
            }
        }
    };
}

/// A store test for sled only (what PostgreSQL does not have: the undo journal, the file lock).
#[cfg(test)]
macro_rules! on_sled {
    (fn $name:ident($s:ident) $body:block) => {
        #[test]
        fn $name() {
            let $s = $crate::store::Store::temporary().expect("store");
            $body
        }
    };
}

mod audit;
pub use audit::{
    AuditStatus, Hold as AuditHold, Slot as AuditSlot, QUEUE_CAPACITY as AUDIT_QUEUE_RECORDS,
};
mod copy;
pub use copy::CopyReport;
pub mod ib;
pub mod identity;
mod jobs;
pub use jobs::JobRun;
pub mod outbox;
pub mod signals;

use crate::suwiml::model::{FieldError, Person};
use crate::suwiml::types::Bsn;
use crate::suwiml::verwijsindex::IndDkd;
mod journal;
pub(crate) mod kv;
mod record;

/// For tests: a throw-away schema on a PostgreSQL server (dropped with the guard).
#[doc(hidden)]
pub use kv::pg::TempSchema;
/// The schema version of the PostgreSQL tables this build writes (its migrations, compiled in).
pub use kv::pg::SCHEMA_VERSION as PG_SCHEMA_VERSION;
pub use kv::pg::{check_url as check_pg_url, mask_url};

use journal::Writes;
#[cfg(test)]
use journal::KEY_JOURNAL;
#[cfg(test)]
use journal::SMALL_OPS;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// The on-disk layout version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 5;
/// Versions this build opens in place by writing [`SCHEMA_VERSION`] over theirs, rewriting no
/// record: it reads everything they wrote (4: JSON entries; 3: the same without the undo
/// journal). The new number is what makes the older dkd refuse the store from then on, with its
/// clear message: a v4 dkd would report the binary entries as corrupt, and a v3 dkd would also
/// ignore an unfinished journal.
const UPGRADABLE_FROM: &[u32] = &[3, 4];

const KEY_SCHEMA_VERSION: &[u8] = b"schema_version";
/// The longest a store call waits for PostgreSQL (connect, pool, statement): a request whose
/// database is unreachable is answered (0051) well within the IB's deadline, never left hanging.
const PG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// sled page cache size.
const CACHE_BYTES: u64 = 160 * 1024 * 1024;
const P_RECORD: u8 = b'r';
const P_MUTATION: u8 = b'm';
const P_IMPORT: u8 = b'i';
const P_ARCHIVE: u8 = b'a';
/// Audit records written before the trail moved to files (store::audit); read and pruned only.
const P_AUDIT: u8 = b'x';

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or corruption problem.
    #[error("store I/O error: {0}")]
    Io(String),
    /// Another process (a running `dkd serve`) holds the store.
    #[error("{0} is in use by another dkd process (a running `dkd serve`?)")]
    Locked(String),
    /// The data directory was written by another dkd version.
    #[error("store schema version {found} is not supported by this dkd (expects {SCHEMA_VERSION}); use another data directory, or re-import into a fresh one")]
    SchemaVersion {
        /// What the store says.
        found: u32,
    },
    /// A stored record does not decode: corruption or a manual edit.
    #[error("stored record for BSN ******{suffix} cannot be read: {reason}")]
    Corrupt {
        /// Last three digits of the BSN.
        suffix: String,
        /// Decoder message.
        reason: String,
    },
    /// A record failed validation and was not written.
    #[error("record refused: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// The database cannot be reached now (or did not answer in time); dkd reconnects by itself.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The PostgreSQL schema is newer than this dkd: another instance runs a later version.
    #[error("the PostgreSQL schema is at version {found}, newer than this dkd knows ({known}); run the dkd that migrated it, or a later one")]
    SchemaAhead {
        /// What the database says.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// The PostgreSQL schema is older than this dkd and was not migrated.
    #[error("the PostgreSQL schema is at version {found}, this dkd needs {known}: run `dkd store migrate` (or `dkd serve`, which migrates)")]
    SchemaBehind {
        /// What the database says.
        found: u32,
        /// What this build needs.
        known: u32,
    },
    /// A transaction lost against a concurrent one (retried by the store).
    #[error("store conflict: {0}")]
    Conflict(String),
}

/// What happened to a person's entry in a gemeente's verwijsindex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Entered the index.
    Added,
    /// Its data changed.
    Changed,
    /// Left the index.
    Removed,
}

/// One recorded change (the mutation dates the IB's Aanlevermonitor shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// Unix seconds.
    pub at: i64,
    /// The person.
    pub bsn: Bsn,
    /// The gemeente whose index changed.
    pub gemeente: String,
    /// What changed.
    pub change: Change,
    /// Who changed it: `import:<file>`, `admin`, `sweep`, `demo`.
    pub source: String,
}

/// One import, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// Unix seconds.
    pub at: i64,
    /// The file name as given.
    pub file: String,
    /// The gemeenten the import touched (or was for).
    pub gemeenten: Vec<String>,
    /// `full` or `delta`.
    pub mode: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Entries added, changed, removed, unchanged.
    pub added: u64,
    /// See `added`.
    pub changed: u64,
    /// See `added`.
    pub removed: u64,
    /// See `added`.
    pub unchanged: u64,
}

/// One answered request, for "who asked about this person".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub at: i64,
    /// The operation.
    pub operation: String,
    /// OIN of the TLS client certificate.
    pub tls_oin: Option<String>,
    /// OIN in the request's wsa:From (the party the IB asks for).
    pub from_oin: Option<String>,
    /// The request's wsa:MessageID.
    pub message_id: Option<String>,
    /// The BSN asked about, when the request got that far.
    pub bsn: Option<Bsn>,
    /// found, not_found, fwi_fout, fault.
    pub outcome: String,
    /// The dkd fault code, for faults.
    pub code: Option<String>,
}

/// A person's entry in one gemeente's verwijsindex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The gemeente.
    pub gemeente: String,
    /// The person with only this gemeente's AtlRelaties.
    pub person: Person,
    /// When the entry last changed (unix seconds).
    pub mutated_at: i64,
}

/// What [`Store::open`] found of a change set that had not finished (the process died while
/// applying it) and rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The change set's source: `import:<file>`, `admin`, `sweep`, ...
    pub source: String,
    /// Journal records (chunks of writes) undone.
    pub chunks: u64,
}

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A sled directory (the embedded default).
    Sled(std::path::PathBuf),
    /// A PostgreSQL database, shared by any number of dkd instances.
    Postgres {
        /// `postgres://user@host:port/db[?sslmode=...]`.
        url: String,
        /// The CA that signed the server's certificate (TLS, sslmode other than disable).
        ca: Option<std::path::PathBuf>,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sled(p) => write!(f, "{}", p.display()),
            Location::Postgres { url, .. } => f.write_str(&mask_url(url)),
        }
    }
}

/// The audit trail's writer: daily files beside sled, or the PostgreSQL table.
enum Audit {
    Files(audit::AuditQueue),
    Pg(kv::pg::AuditWriter, Arc<kv::pg::Pg>),
}

/// The verwijsindex. Cheap to clone (sled handles are reference counted).
#[derive(Clone)]
pub struct Store {
    db: kv::Db,
    index: kv::Tree,
    /// Whether index changes queue an IBVerwijsindex update (see [`outbox`]); shared by all
    /// handles of the same database, like the data.
    outbox: std::sync::Arc<std::sync::atomic::AtomicBool>,
    audit: std::sync::Arc<Audit>,
    meta: kv::Tree,
    journal: kv::Tree,
    /// Commits (a journaled change set: from its marker to its commit point) take it
    /// exclusively, lookups and change-set comparisons shared: a journaled change set is written
    /// in many sled operations, and nobody in this process may see it half-way (nor may another
    /// commit interleave, whose writes a roll-back would then undo).
    gate: Arc<RwLock<()>>,
    /// Held by a change set from its first read to its commit (or drop): a change set decides
    /// what to write (added, removed, which outbox entries) from what it reads, so two built at
    /// once in this process (the daily sweep and an import renewing the same person) would each
    /// decide from the state before the other's commit — a lost update, and an outbox telling the
    /// IB the opposite of the index.
    serial: Arc<Mutex<()>>,
    recovery: Option<Recovery>,
    /// The store directory (`None`: temporary).
    dir: Option<Arc<std::path::PathBuf>>,
    /// The identity, once claimed (shared by all handles).
    identity: Arc<Mutex<Option<identity::Identity>>>,
    /// A test's own PostgreSQL schema, dropped with the last handle.
    _temp: Option<Arc<kv::pg::TempSchema>>,
    /// This opening of the store (random): who holds the outbox lease.
    instance: Arc<str>,
}

fn record_key(bsn: &Bsn, gemeente: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(14);
    k.push(P_RECORD);
    k.extend_from_slice(bsn.as_bytes());
    k.extend_from_slice(gemeente.as_bytes());
    k
}

/// Mutations packed into one stored value (~6 KB of JSON). sled 0.34 writes a node over 128 KiB
/// (a leaf holds up to 16 values) as a separate blob file each time it changes: 4,096 per value
/// (~400 KB) made every new record rewrite megabytes.
const MUTATIONS_PER_CHUNK: usize = 64;

/// Splits a stored record value into (mutation time, payload).
fn split_value(v: &[u8]) -> (i64, &[u8]) {
    match v.split_first_chunk::<8>() {
        Some((t, rest)) => (i64::from_be_bytes(*t), rest),
        None => (0, v),
    }
}

fn time_key(prefix: u8, nanos: i128) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(prefix);
    k.extend_from_slice(&(nanos as i64).to_be_bytes());
    k.extend_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    k
}

fn now_nanos() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

/// Splits a person into one record per gemeente (by each AtlRelatie's Bron).
pub fn split_by_gemeente(p: &Person) -> Vec<(String, Person)> {
    let mut out: Vec<(String, Person)> = Vec::new();
    for r in &p.atl_relaties {
        let g = r.bron.partij.clone();
        match out.iter_mut().find(|(k, _)| *k == g) {
            Some((_, q)) => q.atl_relaties.push(r.clone()),
            None => {
                let mut q = p.clone();
                q.atl_relaties = vec![r.clone()];
                out.push((g, q));
            }
        }
    }
    out
}

impl Store {
    /// Opens the store at a location. On PostgreSQL, `migrate` brings an older schema up to
    /// date first (`dkd serve`, `dkd store migrate`); without it an older schema is an error.
    /// A schema newer than this build is always refused.
    pub fn open_at(loc: &Location, migrate: bool) -> Result<Store, StoreError> {
        match loc {
            Location::Sled(p) => Store::open(p),
            Location::Postgres { url, ca } => {
                let pg = kv::pg::Pg::connect(url, ca.as_deref(), PG_TIMEOUT, migrate)?;
                Store::init_pg(pg, None)
            }
        }
    }

    /// Applies the PostgreSQL migrations the database lacks; returns the versions applied.
    pub fn migrate(loc: &Location) -> Result<Vec<u32>, StoreError> {
        match loc {
            Location::Sled(p) => Store::open(p).map(|_| Vec::new()),
            Location::Postgres { url, ca } => {
                let pg = kv::pg::Pg::connect(url, ca.as_deref(), PG_TIMEOUT, true)?;
                Ok(pg.applied())
            }
        }
    }

    /// A throwaway store in a schema of its own on the PostgreSQL server at `url`, dropped with
    /// the last handle: for tests.
    pub fn temporary_pg(url: &str) -> Result<Store, StoreError> {
        let (temp, scoped) = kv::pg::TempSchema::create(url)?;
        let pg = kv::pg::Pg::connect(&scoped, None, PG_TIMEOUT, true)?;
        Store::init_pg(pg, Some(Arc::new(temp)))
    }

    fn init_pg(
        pg: Arc<kv::pg::Pg>,
        temp: Option<Arc<kv::pg::TempSchema>>,
    ) -> Result<Store, StoreError> {
        let audit = Audit::Pg(kv::pg::AuditWriter::start(&pg)?, pg.clone());
        Ok(Store {
            db: kv::Db::Pg(pg.clone()),
            index: kv::Tree::Pg(kv::pg::Table::new(&pg, "dkd_index")),
            outbox: Default::default(),
            audit: Arc::new(audit),
            meta: kv::Tree::Pg(kv::pg::Table::new(&pg, "dkd_meta")),
            journal: kv::Tree::Pg(kv::pg::Table::new(&pg, "dkd_journal")),
            gate: Arc::new(RwLock::new(())),
            serial: Arc::new(Mutex::new(())),
            recovery: None,
            dir: None,
            identity: Arc::new(Mutex::new(None)),
            _temp: temp,
            instance: uuid::Uuid::new_v4().to_string().into(),
        })
    }

    /// Where the store is: its directory, or the PostgreSQL URL with the password masked.
    pub fn describe(&self) -> String {
        match (&self.db, &self.dir) {
            (kv::Db::Pg(pg), _) => pg.shown().to_owned(),
            (kv::Db::Sled(_), Some(d)) => d.display().to_string(),
            (kv::Db::Sled(_), None) => "(temporary)".to_owned(),
        }
    }

    /// Another handle on the same database as a second instance would hold it (its own id).
    #[cfg(test)]
    pub(crate) fn reopened_as_other_instance(&self) -> Store {
        let mut s = self.clone();
        s.instance = uuid::Uuid::new_v4().to_string().into();
        s
    }

    /// Whether the store is on PostgreSQL (shared by instances: no lock, no admin-API detour).
    pub fn is_shared(&self) -> bool {
        matches!(self.db, kv::Db::Pg(_))
    }

    /// The store's identity; a store without one (new, or opened before stores had one) gets
    /// one for `role` now. Called by whoever opens the store to serve or change it.
    pub fn identity(&self, role: &str) -> Result<identity::Identity, StoreError> {
        let mut slot = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = slot.as_ref() {
            return Ok(i.clone());
        }
        let i = match (&self.db, &self.dir) {
            (kv::Db::Pg(_), _) => identity::in_tree(&self.meta, role)?,
            (_, Some(d)) => identity::read_or_create(d, role)?,
            (_, None) => identity::ephemeral(role),
        };
        *slot = Some(i.clone());
        Ok(i)
    }

    /// The store directory (`None`: temporary).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref().map(|d| d.as_path())
    }

    /// What opening the store rolled back, if a change set had been interrupted.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    fn read_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The process-wide change-set lock (see `serial`); taken before the gate.
    pub(crate) fn serial_lock(&self) -> MutexGuard<'_, ()> {
        self.serial.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writes of something applied like a change set (all or nothing, of any size), but
    /// outside one: the outbox's re-queueing.
    pub(crate) fn writes(&self, source: &str) -> kv::Writes<'_> {
        match &self.db {
            kv::Db::Pg(pg) => kv::Writes::Pg(kv::pg::Writes::new(pg)),
            kv::Db::Sled(_) => kv::Writes::Sled(Writes::new(self, source)),
        }
    }

    /// Whether a read may have to wait now: for a large change set's commit (sled), or always
    /// for a network round trip (PostgreSQL). Async code then reads off its worker, so one slow
    /// read cannot hold up every other connection.
    pub fn reads_may_wait(&self) -> bool {
        self.is_shared() || self.is_writing()
    }

    /// Runs `read` from async code. When it may wait ([`Store::reads_may_wait`]: a large change
    /// set's commit, or a PostgreSQL round trip) and the runtime is multi-threaded (as `dkd serve`
    /// always is), in a blocking section, so the worker's other connections carry on. Here, not in
    /// `service`, because only the store knows when its reads wait.
    pub fn read_may_block<T>(&self, read: impl FnOnce() -> T) -> T {
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded && self.reads_may_wait() {
            tokio::task::block_in_place(read)
        } else {
            read()
        }
    }

    /// Whether a change set holds the store exclusively now (lookups would wait for its commit).
    pub fn is_writing(&self) -> bool {
        matches!(
            self.gate.try_read(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    /// The entries of a BSN, one per gemeente, in gemeentecode order.
    pub fn entries(&self, bsn: &Bsn) -> Result<Vec<Entry>, StoreError> {
        let _shared = self.read_gate();
        let mut prefix = Vec::with_capacity(10);
        prefix.push(P_RECORD);
        prefix.extend_from_slice(bsn.as_bytes());
        let mut out = Vec::new();
        for item in self.index.scan_prefix(&prefix) {
            let (k, v) = item?;
            let gemeente = String::from_utf8_lossy(&k[10..]).into_owned();
            let (mutated_at, payload) = split_value(&v);
            let person = decode(bsn, payload)?;
            out.push(Entry {
                gemeente,
                person,
                mutated_at,
            });
        }
        Ok(out)
    }

    /// The person as the index knows them across all gemeenten: identity from the most recently
    /// changed entry, AtlRelaties of every gemeente.
    pub fn get(&self, bsn: &Bsn) -> Result<Option<Person>, StoreError> {
        Ok(merge(self.entries(bsn)?))
    }

    /// BSNs in a gemeente's index.
    pub fn gemeente_bsns(&self, gemeente: &str) -> Result<Vec<Bsn>, StoreError> {
        // A walk over the keys: only full imports and reports need it.
        let mut out = Vec::new();
        for k in self.index.scan_prefix([P_RECORD]).keys() {
            let k = k?;
            if k.get(10..) == Some(gemeente.as_bytes()) {
                if let Ok(b) = Bsn::parse(&String::from_utf8_lossy(&k[1..10])) {
                    out.push(b);
                }
            }
        }
        Ok(out)
    }

    /// Every entry, in BSN order (for sweeps and reports).
    pub fn all_entries(&self) -> impl Iterator<Item = Result<Entry, StoreError>> + '_ {
        self.index.scan_prefix([P_RECORD]).map(move |item| {
            let (k, v) = item?;
            let bsn = key_bsn(&k)?;
            let gemeente = String::from_utf8_lossy(k.get(10..).unwrap_or_default()).into_owned();
            let (mutated_at, payload) = split_value(&v);
            let person = decode(&bsn, payload)?;
            Ok(Entry {
                gemeente,
                person,
                mutated_at,
            })
        })
    }

    /// Starts a set of changes that is applied atomically by [`ChangeSet::commit`]. Waits while
    /// another change set of this process is open: they are built and committed one at a time.
    pub fn changes(&self, source: &str) -> ChangeSet<'_> {
        let writes = match &self.db {
            kv::Db::Pg(pg) => kv::Writes::Pg(kv::pg::Writes::new(pg)),
            kv::Db::Sled(_) => kv::Writes::Sled(Writes::new(self, source)),
        };
        ChangeSet {
            _serial: self.serial_lock(),
            store: self,
            writes,
            source: source.to_owned(),
            now: time::OffsetDateTime::now_utc(),
            counts: Counts::default(),
            touched: Touched::default(),
            mutations: Vec::new(),
            pending: Vec::new(),
            removing: Touched::default(),
            ids: Vec::new(),
        }
    }

    /// The same store with the outbox on or off: when on, every entry that enters or leaves a
    /// gemeente's index queues an IBVerwijsindex update in the same atomic write.
    pub fn with_outbox(self, on: bool) -> Store {
        self.set_outbox(on);
        self
    }

    /// Turns the outbox on or off for every handle of this store.
    pub fn set_outbox(&self, on: bool) {
        self.outbox.store(on, Ordering::Relaxed);
    }

    /// Whether index changes queue IBVerwijsindex updates.
    pub fn outbox_enabled(&self) -> bool {
        self.outbox.load(Ordering::Relaxed)
    }

    /// Validates and writes one person (all gemeenten in it) atomically.
    pub fn put(&self, p: &Person, source: &str) -> Result<Counts, StoreError> {
        let mut c = self.changes(source);
        c.upsert(p)?;
        c.commit()
    }

    /// Validates all records, then writes them as one change set: all or nothing.
    pub fn put_all(&self, people: &[Person], source: &str) -> Result<Counts, StoreError> {
        let mut c = self.changes(source);
        for p in people {
            c.upsert(p)?;
        }
        c.commit()
    }

    /// Number of entries (person × gemeente) in the index. Walks the index: for reports.
    pub fn len(&self) -> usize {
        self.index.scan_prefix([P_RECORD]).keys().count()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.index.scan_prefix([P_RECORD]).next().is_none()
    }

    /// The first `n` persons in BSN order (for demo output and reports).
    pub fn first(&self, n: usize) -> Result<Vec<Person>, StoreError> {
        let mut out: Vec<Person> = Vec::with_capacity(n);
        for e in self.all_entries() {
            let e = e?;
            if out.last().is_some_and(|p| p.bsn == e.person.bsn) {
                continue;
            }
            if out.len() == n {
                break;
            }
            if let Some(p) = self.get(&e.person.bsn)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Mutations at or after `since` (unix seconds), oldest first.
    pub fn mutations_since(
        &self,
        since: i64,
    ) -> impl Iterator<Item = Result<Mutation, StoreError>> + '_ {
        let mut start = vec![P_MUTATION];
        start.extend_from_slice(
            &(i128::from(since) * 1_000_000_000)
                .clamp(0, i128::from(i64::MAX))
                .to_be_bytes()[8..],
        );
        self.index
            .range(start..[P_MUTATION + 1].to_vec())
            .flat_map(|item| {
                let chunk: Result<Vec<Mutation>, StoreError> = item.and_then(|(_, v)| {
                    serde_json::from_slice(&v)
                        .map_err(|e| StoreError::Io(format!("mutation record: {e}")))
                });
                match chunk {
                    Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                }
            })
    }

    /// Records an import in the history.
    pub fn record_import(&self, r: &ImportRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(r).map_err(|e| StoreError::Io(e.to_string()))?;
        // The sequence keeps two instances' records in one nanosecond apart.
        let mut k = time_key(P_IMPORT, now_nanos());
        if let kv::Db::Pg(pg) = &self.db {
            k.truncate(9);
            k.extend_from_slice(&pg.generate_id()?.to_be_bytes());
        }
        self.index.insert(k, v)?;
        Ok(())
    }

    /// The import history, oldest first.
    pub fn imports(&self) -> Result<Vec<ImportRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.index.scan_prefix([P_IMPORT]) {
            let (_, v) = item?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Io(format!("import record: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Hands an audit record to the background writer if there is room now. False when there is
    /// none (the queue is full: the writer is far behind); nothing is queued then. A request takes
    /// its [`AuditSlot`] before it is answered instead ([`Store::audit_slot`]).
    #[must_use]
    pub fn queue_audit(&self, r: AuditRecord) -> bool {
        match self.audit.as_ref() {
            Audit::Files(q) => q.push(r),
            Audit::Pg(w, _) => w.push(r),
        }
    }

    /// Room in the audit queue for one record, waiting up to `wait` for it (a blocking wait: call
    /// it off the async workers when `wait` is not zero). `None`: the trail cannot keep up, and
    /// the request must not be answered about anyone.
    pub fn audit_slot(&self, wait: std::time::Duration) -> Option<AuditSlot> {
        match self.audit.as_ref() {
            Audit::Files(q) => q.slot(wait),
            Audit::Pg(w, _) => w.slot(wait),
        }
    }

    /// How many audit records may wait for the writer (`audit.queue_records`).
    pub fn set_audit_queue(&self, records: usize) {
        match self.audit.as_ref() {
            Audit::Files(q) => q.set_capacity(records),
            Audit::Pg(w, _) => w.room().set_capacity(records),
        }
    }

    /// Whether the audit trail keeps up (`/readyz`).
    pub fn audit_status(&self) -> AuditStatus {
        match self.audit.as_ref() {
            Audit::Files(q) => q.status(),
            Audit::Pg(w, _) => w.room().status(),
        }
    }

    /// Holds the audit writer until the guard is dropped, as a stalled disk would: for tests of
    /// what the service does when the trail cannot keep up.
    #[doc(hidden)]
    pub fn hold_audit_writer(&self) -> AuditHold {
        match self.audit.as_ref() {
            Audit::Files(q) => q.hold(),
            Audit::Pg(w, _) => w.room().hold(),
        }
    }

    /// Waits until every queued audit record is written.
    pub fn flush_audit(&self) -> Result<(), StoreError> {
        match self.audit.as_ref() {
            Audit::Files(q) => q.flush(),
            Audit::Pg(w, _) => w.flush(),
        }
    }

    /// Audit records at or after `since` (unix seconds), oldest first.
    pub fn audit_since(
        &self,
        since: i64,
    ) -> impl Iterator<Item = Result<AuditRecord, StoreError>> + '_ {
        // What was answered before this call is in the trail, queued or not.
        type Records = Box<dyn Iterator<Item = Result<AuditRecord, StoreError>>>;
        let files = self.flush_audit().and_then(|()| match self.audit.as_ref() {
            Audit::Files(q) => q.read_since(since).map(|r| Box::new(r) as Records),
            // Every instance's records, from the shared table.
            Audit::Pg(_, pg) => {
                kv::pg::audit::since(pg, since).map(|v| Box::new(v.into_iter().map(Ok)) as Records)
            }
        });
        let (failed, files) = match files {
            Ok(f) => (None, Some(f)),
            Err(e) => (Some(Err(e)), None),
        };
        // Records from before the trail moved to files (see `audit`) are older than any file's.
        let mut start = vec![P_AUDIT];
        start.extend_from_slice(&since.saturating_mul(1_000_000_000).max(0).to_be_bytes());
        let legacy = self.index.range(start..vec![P_AUDIT + 1]).map(|item| {
            let (_, v) = item?;
            serde_json::from_slice(&v).map_err(|e| StoreError::Io(format!("audit record: {e}")))
        });
        failed
            .into_iter()
            .chain(legacy)
            .chain(files.into_iter().flatten())
    }

    /// Deletes audit records older than `before` (unix seconds); returns how many.
    pub fn prune_audit(&self, before: i64) -> Result<u64, StoreError> {
        let mut n = match self.audit.as_ref() {
            Audit::Files(q) => q.prune(before)?,
            Audit::Pg(_, pg) => kv::pg::audit::prune(pg, before)?,
        };
        let mut end = vec![P_AUDIT];
        end.extend_from_slice(&before.saturating_mul(1_000_000_000).max(0).to_be_bytes());
        let mut batch = kv::Batch::default();
        for item in self.index.range(vec![P_AUDIT]..end) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        self.index.apply_batch(batch)?;
        Ok(n)
    }

    /// Writes everything to disk. sled also flushes in the background; this makes it certain.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_audit()?;
        self.db.flush()?;
        Ok(())
    }

    /// Checks that the store can be read and written (for readiness checks).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.meta
            .insert(b"last_check", &now_nanos().to_be_bytes()[8..])?;
        Ok(())
    }
}

/// Merges a BSN's entries into one ClientSuwi-shaped person.
pub fn merge(mut entries: Vec<Entry>) -> Option<Person> {
    // Moved, not cloned: nearly every person has one entry, which is then the answer as it is.
    let (newest, _) = entries
        .iter()
        .enumerate()
        .max_by_key(|(_, e)| e.mutated_at)?;
    if entries.len() == 1 {
        return entries.pop().map(|e| e.person);
    }
    let relaties = entries
        .iter_mut()
        .flat_map(|e| std::mem::take(&mut e.person.atl_relaties))
        .collect();
    let mut p = entries.swap_remove(newest).person;
    p.atl_relaties = relaties;
    Some(p)
}

/// Counts of what a change set did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Entries that entered the index.
    pub added: u64,
    /// Entries whose data changed.
    pub changed: u64,
    /// Entries that left the index.
    pub removed: u64,
    /// Entries written with identical data (no mutation recorded).
    pub unchanged: u64,
}

/// Changes collected for one atomic write. Each change is compared with what is stored, so
/// re-applying the same data records nothing (idempotence).
pub struct ChangeSet<'s> {
    _serial: MutexGuard<'s, ()>,
    store: &'s Store,
    writes: kv::Writes<'s>,
    source: String,
    now: time::OffsetDateTime,
    counts: Counts,
    touched: Touched,
    mutations: Vec<Mutation>,
    /// Upserts and removals that wait for the next block read (PostgreSQL), in call order.
    pending: Vec<Pending>,
    /// The entries of the removals among them.
    removing: Touched,
    /// Outbox numbers fetched for the block being settled, last first.
    ids: Vec<u64>,
}

/// A change held back for a block read, with its entry's key.
struct Pending {
    bsn: Bsn,
    gemeente: String,
    key: Vec<u8>,
    op: Held,
}

enum Held {
    /// The value the upsert would write.
    Upsert(Vec<u8>),
    Remove {
        archive: bool,
    },
}

/// Upserts compared per read on PostgreSQL: one query for their stored values (~1 MB of keys and
/// new values held meanwhile), instead of one round trip each.
const COMPARE_BLOCK: usize = 4096;

impl ChangeSet<'_> {
    fn mutation(&mut self, bsn: &Bsn, gemeente: &str, change: Change) -> Result<(), StoreError> {
        let m = Mutation {
            at: self.now.unix_timestamp(),
            bsn: *bsn,
            gemeente: gemeente.to_owned(),
            change,
            source: self.source.clone(),
        };
        self.mutations.push(m);
        if self.mutations.len() == MUTATIONS_PER_CHUNK {
            self.pack_mutations()?;
        }
        Ok(())
    }

    fn pack_mutations(&mut self) -> Result<(), StoreError> {
        if self.mutations.is_empty() {
            return Ok(());
        }
        let v = serde_json::to_vec(&self.mutations).map_err(|e| StoreError::Io(e.to_string()))?;
        self.mutations.clear();
        self.writes
            .insert(&time_key(P_MUTATION, self.now.unix_timestamp_nanos()), &v)
    }

    /// Inserts or replaces a person's entries (one per gemeente in their AtlRelaties).
    pub fn upsert(&mut self, p: &Person) -> Result<(), StoreError> {
        p.validate().map_err(StoreError::Invalid)?;
        self.upsert_validated(p)
    }

    /// [`ChangeSet::upsert`] for a person the caller has just validated (the import does, row by
    /// row, with better messages): skips the second validation.
    pub fn upsert_validated(&mut self, p: &Person) -> Result<(), StoreError> {
        // Nearly every person is in one gemeente: then the person is its own part, no copy.
        let parts: Vec<(String, std::borrow::Cow<'_, Person>)> = match p.atl_relaties.split_first()
        {
            Some((first, rest)) if rest.iter().all(|r| r.bron.partij == first.bron.partij) => {
                vec![(first.bron.partij.clone(), std::borrow::Cow::Borrowed(p))]
            }
            _ => split_by_gemeente(p)
                .into_iter()
                .map(|(g, part)| (g, std::borrow::Cow::Owned(part)))
                .collect(),
        };
        for (gemeente, part) in parts {
            // The stored value: mutation time, then the payload (compared with what is stored).
            let mut value = Vec::with_capacity(256);
            value.extend_from_slice(&self.now.unix_timestamp().to_be_bytes());
            encode_into(&mut value, &part)?;
            let key = record_key(&p.bsn, &gemeente);
            if self.removing.contains(&p.bsn, &gemeente) {
                // Removed earlier in this change set, or not: the removal decides.
                self.settle()?;
            }
            if !self.touched.insert(&p.bsn, &gemeente) {
                return Err(StoreError::Invalid(vec![FieldError {
                    field: "bsn".into(),
                    value: p.bsn.masked(),
                    reason: format!("appears twice for gemeente {gemeente} in one change set"),
                }]));
            }
            if self.writes.reads_in_blocks() {
                if self.pending.is_empty() {
                    // The change-set lock from the first upsert on, as if it were compared now.
                    self.writes.begin()?;
                }
                self.pending.push(Pending {
                    bsn: p.bsn,
                    gemeente,
                    key,
                    op: Held::Upsert(value),
                });
                if self.pending.len() >= COMPARE_BLOCK {
                    self.settle()?;
                }
                continue;
            }
            let stored = self.writes.get(&key)?;
            self.compared(&p.bsn, &gemeente, &key, &value, stored, Some(&part))?;
        }
        Ok(())
    }

    /// Compares the upserts and removals held back with what is stored, read in one go, and
    /// applies them as [`ChangeSet::upsert_validated`] and [`ChangeSet::remove`] would have one
    /// by one: same order, same decisions, same mutation records and outbox entries.
    fn settle(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.removing = Touched::default();
        let stored = self
            .writes
            .get_many(pending.iter().map(|p| p.key.clone()).collect())?;
        if self.store.outbox_enabled() {
            // Every entry that enters or leaves the index takes an outbox number: fetched
            // together, in order (at most one per held change; a removal found handled already
            // leaves a gap, as numbers of other instances do).
            let n = pending
                .iter()
                .zip(&stored)
                .filter(|(p, s)| matches!(p.op, Held::Upsert(_)) != s.value.is_some())
                .count();
            self.ids = self.store.db.generate_ids(n)?;
            self.ids.reverse();
        }
        for (p, stored) in pending.into_iter().zip(stored) {
            match p.op {
                Held::Upsert(value) => {
                    self.compared(&p.bsn, &p.gemeente, &p.key, &value, stored, None)?
                }
                Held::Remove { archive } => {
                    self.removed(&p.bsn, &p.gemeente, p.key, archive, stored)?;
                }
            }
        }
        self.ids.clear();
        Ok(())
    }

    /// The next outbox number: one fetched by [`ChangeSet::settle`], else a fresh one.
    pub(crate) fn next_id(&mut self) -> Result<u64, StoreError> {
        match self.ids.pop() {
            Some(id) => Ok(id),
            None => self.store.db.generate_id(),
        }
    }

    /// Writes one upsert after its comparison with `stored` (`part`: the person encoded in
    /// `value`, when at hand; only a JSON-era stored entry needs it, and decoding `value` gives it).
    fn compared(
        &mut self,
        bsn: &Bsn,
        gemeente: &str,
        key: &[u8],
        value: &[u8],
        stored: journal::Stored,
        part: Option<&Person>,
    ) -> Result<(), StoreError> {
        let payload = value.get(8..).unwrap_or_default();
        let change = match stored.value.as_deref() {
            Some(old) if same_person(bsn, split_value(old).1, payload, part) => {
                self.counts.unchanged += 1;
                return Ok(());
            }
            Some(_) => Change::Changed,
            None => Change::Added,
        };
        match change {
            Change::Added => self.counts.added += 1,
            _ => self.counts.changed += 1,
        }
        self.writes.insert_over(key, value, &stored)?;
        if change == Change::Added {
            self.enqueue(bsn, gemeente, IndDkd::Present)?;
        }
        self.mutation(bsn, gemeente, change)
    }

    /// Takes a person out of a gemeente's index. With `archive`, the data is kept aside (not
    /// served); otherwise it is purged. Returns whether an entry existed.
    pub fn remove(&mut self, bsn: &Bsn, gemeente: &str, archive: bool) -> Result<bool, StoreError> {
        // The upserts held back come first: mutation records and outbox numbers in call order.
        self.settle()?;
        let key = record_key(bsn, gemeente);
        let stored = self.writes.get(&key)?;
        self.removed(bsn, gemeente, key, archive, stored)
    }

    /// [`ChangeSet::remove`] for a caller that does not need to know whether there was an entry
    /// (an import): on PostgreSQL it is held back and read with the next block of upserts, not
    /// in a round trip of its own. Counted in [`ChangeSet::counts`].
    pub fn remove_later(
        &mut self,
        bsn: &Bsn,
        gemeente: &str,
        archive: bool,
    ) -> Result<(), StoreError> {
        if !self.writes.reads_in_blocks() {
            return self.remove(bsn, gemeente, archive).map(|_| ());
        }
        if self.pending.is_empty() {
            self.writes.begin()?;
        }
        self.removing.insert(bsn, gemeente);
        self.pending.push(Pending {
            bsn: *bsn,
            gemeente: gemeente.to_owned(),
            key: record_key(bsn, gemeente),
            op: Held::Remove { archive },
        });
        if self.pending.len() >= COMPARE_BLOCK {
            self.settle()?;
        }
        Ok(())
    }

    /// Removes an entry whose stored value was read as `stored`; whether there was one.
    fn removed(
        &mut self,
        bsn: &Bsn,
        gemeente: &str,
        key: Vec<u8>,
        archive: bool,
        stored: journal::Stored,
    ) -> Result<bool, StoreError> {
        let Some(old) = stored.value.as_deref() else {
            return Ok(false);
        };
        if !self.touched.insert(bsn, gemeente) {
            return Ok(false);
        }
        if archive {
            let mut a = key.clone();
            a[0] = P_ARCHIVE;
            self.writes.insert(&a, old)?;
        }
        self.writes.remove_over(&key, &stored)?;
        self.enqueue(bsn, gemeente, IndDkd::Absent)?;
        self.counts.removed += 1;
        self.mutation(bsn, gemeente, Change::Removed)?;
        Ok(true)
    }

    /// Whether an entry was already handled in this change set.
    pub fn touched(&self, bsn: &Bsn, gemeente: &str) -> bool {
        self.touched.contains(bsn, gemeente)
    }

    /// What the change set does so far (on PostgreSQL, upserts held back are compared first).
    pub fn counts(&mut self) -> Result<Counts, StoreError> {
        self.settle()?;
        Ok(self.counts)
    }

    /// From here on the change set writes nothing, and what it has written already is rolled
    /// back now; it still compares and counts. For dry runs (call it first) and for imports
    /// refused half-way. [`ChangeSet::commit`] then returns the counts only.
    pub fn discard_writes(&mut self) -> Result<(), StoreError> {
        self.writes.discard()
    }

    /// Applies everything atomically and returns the counts. A large change set has been
    /// written while it was built (under the journal, invisible to the rest of the process);
    /// this is its commit point. Dropping a change set instead rolls back what it wrote.
    pub fn commit(mut self) -> Result<Counts, StoreError> {
        self.settle()?;
        self.pack_mutations()?;
        self.writes.finish()?;
        Ok(self.counts)
    }
}

/// Whether a stored payload holds `part`, whose binary encoding is `encoded`. A JSON payload (an
/// entry no import has changed since before schema 5) is decoded and compared as a person:
/// otherwise the first import after an upgrade would record every entry as changed (a mutation
/// each, wrong mutation dates in the Aanlevermonitor). One that does not decode counts as
/// changed, so it is overwritten.
fn same_person(bsn: &Bsn, stored: &[u8], encoded: &[u8], part: Option<&Person>) -> bool {
    if stored.first() == Some(&b'{') {
        let Ok(old) = decode(bsn, stored) else {
            return false;
        };
        match part {
            Some(p) => old == *p,
            None => decode(bsn, encoded).is_ok_and(|p| old == p),
        }
    } else {
        stored == encoded
    }
}

/// Appends a person's stored payload: always the binary encoding ([`record`]).
fn encode_into(out: &mut Vec<u8>, p: &Person) -> Result<(), StoreError> {
    record::encode_into(out, p).map_err(|e| StoreError::Io(format!("cannot encode record: {e}")))
}

/// The (BSN, gemeente) pairs a change set has handled. With a four-digit gemeentecode (always,
/// after validation) the pair is one integer: no allocation per entry in a 500,000-entry import.
#[derive(Default)]
struct Touched {
    codes: std::collections::HashSet<u64>,
    other: std::collections::HashSet<(Bsn, String)>,
}

impl Touched {
    fn code(bsn: &Bsn, gemeente: &str) -> Option<u64> {
        let g = gemeente.as_bytes();
        if g.len() != 4 || !g.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            bsn.as_bytes()
                .iter()
                .chain(g)
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
        )
    }

    /// Whether the pair is new.
    fn insert(&mut self, bsn: &Bsn, gemeente: &str) -> bool {
        match Touched::code(bsn, gemeente) {
            Some(c) => self.codes.insert(c),
            None => self.other.insert((*bsn, gemeente.to_owned())),
        }
    }

    fn contains(&self, bsn: &Bsn, gemeente: &str) -> bool {
        match Touched::code(bsn, gemeente) {
            Some(c) => self.codes.contains(&c),
            None => self.other.contains(&(*bsn, gemeente.to_owned())),
        }
    }
}

/// Decodes a stored payload of the entry keyed by `bsn`, in either format: the first byte tells
/// them apart, since JSON (every record written before schema 5) starts with `{`.
fn decode(bsn: &Bsn, payload: &[u8]) -> Result<Person, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        suffix: bsn.as_str().get(6..).unwrap_or_default().to_owned(),
        reason,
    };
    match payload.first() {
        Some(&record::TAG_V1) => record::decode(*bsn, payload).map_err(|e| corrupt(e.to_string())),
        Some(b'{') => {
            serde_json::from_slice(payload).map_err(|e| corrupt(format!("JSON record: {e}")))
        }
        Some(&b) => Err(corrupt(format!(
            "unknown record format (first byte {b:#04x}; this dkd reads JSON and binary format 1)"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}

/// The BSN of an `r` key (`r` BSN(9) gemeente(4)).
fn key_bsn(k: &[u8]) -> Result<Bsn, StoreError> {
    k.get(1..10)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| Bsn::parse(d).ok())
        .ok_or_else(|| StoreError::Corrupt {
            suffix: String::from_utf8_lossy(k.get(7..10).unwrap_or_default()).into_owned(),
            reason: "the entry's key holds no valid BSN".into(),
        })
}

#[cfg(test)]
impl Store {
    /// Writes raw bytes as a record, bypassing validation: for tests of corrupt records.
    pub(crate) fn put_raw(&self, bsn: &Bsn, gemeente: &str, raw: &[u8]) -> Result<(), StoreError> {
        let mut v = 0i64.to_be_bytes().to_vec();
        v.extend_from_slice(raw);
        self.index.insert(record_key(bsn, gemeente), v)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn queued_audit_records_are_read_back_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let record = |i: i64| audit::tests::record(1_700_000_000 + i, &format!("urn:uuid:{i}"));
        {
            let store = open_when_free(dir.path()).expect("open");
            for i in 0..3 {
                assert!(store.queue_audit(record(i)));
            }
            // A reader sees what was queued before it asked.
            assert_eq!(store.audit_since(0).count(), 3);
            for i in 3..5 {
                assert!(store.queue_audit(record(i)));
            }
            // Dropped without a flush: the writer finishes its queue and lets go of the files.
        }
        let store = open_when_free(dir.path()).expect("reopen: not locked");
        let ids: Vec<_> = store
            .audit_since(0)
            .map(|r| r.expect("record").message_id.unwrap_or_default())
            .collect();
        assert_eq!(
            ids,
            (0..5).map(|i| format!("urn:uuid:{i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn audit_records_an_older_dkd_kept_in_sled_are_read_first_and_pruned() {
        let dir = tempfile::tempdir().expect("tmp");
        let record = audit::tests::record;
        let store = open_when_free(dir.path()).expect("open");
        let old = record(1_600_000_000, "legacy");
        store
            .index
            .insert(
                time_key(P_AUDIT, i128::from(old.at) * 1_000_000_000),
                serde_json::to_vec(&old).expect("json"),
            )
            .expect("insert");
        assert!(store.queue_audit(record(1_700_000_000, "file")));
        let ids = |s: &Store| -> Vec<String> {
            s.audit_since(0)
                .map(|r| r.expect("record").message_id.unwrap_or_default())
                .collect()
        };
        assert_eq!(ids(&store), ["legacy", "file"]);
        assert_eq!(store.prune_audit(1_650_000_000).expect("prune"), 1);
        assert_eq!(ids(&store), ["file"]);
    }

    on_both! {
        fn a_sweep_waits_for_an_open_import_instead_of_undoing_its_renewal(s) {
            let s = s.with_outbox(true);
            let mut old = person("123456782", &["0363"]);
            for r in &mut old.atl_relaties {
                for p in &mut r.provisions {
                    p.start = Datum::parse("20180101").expect("date");
                    p.end = Some(Datum::parse("20200101").expect("date"));
                }
            }
            s.put(&old, "t").expect("put");
            let renewed = person("123456782", &["0363"]);
            let import = {
                let mut c = s.changes("import:renewal.csv");
                c.upsert(&renewed).expect("upsert");
                c
            };
            let sweeper = {
                let s = s.clone();
                std::thread::spawn(move || {
                    let today = time::macros::date!(2026 - 11 - 22);
                    crate::gemeente::service::sweep(&s, 730, true, today, false).expect("sweep")
                })
            };
            // Without serialisation the sweep reads the expired entry now and removes it after the
            // renewal is committed.
            std::thread::sleep(std::time::Duration::from_millis(200));
            import.commit().expect("commit");
            let report = sweeper.join().expect("join");
            assert_eq!(report.removed, 0);
            assert_eq!(s.get(&renewed.bsn).expect("get"), Some(renewed.clone()));
            let last = s
                .outbox_pending(10)
                .expect("pending")
                .pop()
                .expect("queued");
            assert_eq!(last.ind, IndDkd::Present);
        }
    }

    use super::*;
    use crate::suwiml::model::{AtlRelatie, Bron, Provision};

    /// A store in a fresh schema on the test server (`DKD_TEST_PG_URL`), dropped afterwards.
    pub(crate) fn pg_store() -> Store {
        let url = std::env::var("DKD_TEST_PG_URL")
            .expect("DKD_TEST_PG_URL names the PostgreSQL server for the tests");
        Store::temporary_pg(&url).expect("a temporary schema on DKD_TEST_PG_URL")
    }
    use crate::suwiml::types::{Datum, Percentage};

    /// Opens the store at `path` once an earlier handle in this process has let go of it: sled
    /// releases its file lock when the last of its background threads ends, which can be just
    /// after the handle is dropped (a reopen in CI found it still locked).
    fn open_when_free(path: &Path) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(path) {
                Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    pub(crate) fn person(bsn: &str, gemeenten: &[&str]) -> Person {
        Person {
            bsn: Bsn::parse(bsn).expect("valid bsn"),
            voornamen: Some("Jan".into()),
            voorletters: Some("J".into()),
            voorvoegsel: None,
            achternaam: Some("Jansen".into()),
            geslacht: Some("1".into()),
            geboortedat: Some(Datum::parse("19800101").expect("date")),
            bron: Some(Bron::gemeente(gemeenten[0])),
            atl_relaties: gemeenten
                .iter()
                .map(|g| AtlRelatie {
                    arbeidsvermogen: None,
                    doel_rv: None,
                    provisions: vec![Provision {
                        registratienr: Some("R1".into()),
                        start: Datum::parse("20240101").expect("date"),
                        end: None,
                        type_code: Some("24".into()),
                        description: None,
                        loonwaarde: Some(Percentage::from_hundredths(4550).expect("pct")),
                    }],
                    bron: Bron::gemeente(g),
                })
                .collect(),
        }
    }

    #[test]
    fn merge_takes_identity_from_the_newest_entry_and_relaties_from_all() {
        let entry = |g: &str, at: i64, name: &str| {
            let mut p = person("123456782", &[g]);
            p.achternaam = Some(name.into());
            Entry {
                gemeente: g.into(),
                person: p,
                mutated_at: at,
            }
        };
        assert_eq!(merge(Vec::new()), None);
        let one = entry("0363", 5, "Alleen");
        assert_eq!(merge(vec![one.clone()]), Some(one.person));
        let merged = merge(vec![
            entry("0001", 10, "Oud"),
            entry("0002", 30, "Nieuwst"),
            entry("0003", 20, "Tussen"),
        ])
        .expect("merged");
        assert_eq!(merged.achternaam.as_deref(), Some("Nieuwst"));
        let partijen: Vec<_> = merged
            .atl_relaties
            .iter()
            .map(|r| r.bron.partij.as_str())
            .collect();
        assert_eq!(partijen, ["0001", "0002", "0003"]);
        // Equal times: the later entry in gemeentecode order, as before.
        let tie = merge(vec![entry("0001", 7, "Eerste"), entry("0002", 7, "Tweede")]).expect("tie");
        assert_eq!(tie.achternaam.as_deref(), Some("Tweede"));
    }

    on_both! {
        fn put_then_get_round_trips_across_gemeenten(s) {
            let s = s;
            let p = person("123456782", &["0363", "0599"]);
            let c = s.put(&p, "test").expect("put");
            assert_eq!(c.added, 2);
            assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
            assert_eq!(s.entries(&p.bsn).expect("entries").len(), 2);
            assert_eq!(s.gemeente_bsns("0599").expect("bsns"), vec![p.bsn]);
            assert_eq!(
                s.get(&Bsn::parse("111222333").expect("bsn")).expect("get"),
                None
            );
        }
    }

    on_both! {
        fn same_data_twice_records_no_mutation(s) {
            let s = s;
            let p = person("123456782", &["0363"]);
            s.put(&p, "a").expect("put");
            let c = s.put(&p, "b").expect("put again");
            assert_eq!((c.added, c.changed, c.unchanged), (0, 0, 1));
            assert_eq!(s.mutations_since(0).count(), 1);
        }
    }

    on_both! {
        fn invalid_record_is_refused_and_nothing_written(s) {
            let s = s;
            let mut p = person("123456782", &["0363"]);
            p.atl_relaties[0].provisions[0].end = Some(Datum::parse("20230101").expect("date"));
            assert!(matches!(s.put(&p, "t"), Err(StoreError::Invalid(_))));
            assert!(s.is_empty());
            let good = person("111222333", &["0363"]);
            assert!(s.put_all(&[good, p], "t").is_err());
            assert!(s.is_empty(), "a refused batch writes nothing");
        }
    }

    on_both! {
        fn remove_archives_or_purges_and_records_the_change(s) {
            let s = s;
            let p = person("123456782", &["0363", "0599"]);
            s.put(&p, "t").expect("put");
            let mut c = s.changes("sweep");
            assert!(c.remove(&p.bsn, "0363", true).expect("remove"));
            c.commit().expect("commit");
            let left = s.get(&p.bsn).expect("get").expect("still in 0599");
            assert_eq!(left.atl_relaties.len(), 1);
            assert_eq!(s.index.scan_prefix([P_ARCHIVE]).count(), 1);
            let kinds: Vec<Change> = s.mutations_since(0).map(|m| m.expect("m").change).collect();
            assert_eq!(kinds, vec![Change::Added, Change::Added, Change::Removed]);
        }
    }

    fn dump(s: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        s.index
            .iter()
            .map(|kv| {
                let (k, v) = kv.expect("read");
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }

    fn demo(n: usize) -> Vec<Person> {
        crate::chain::demo::generate(n, time::macros::date!(2026 - 11 - 22))
    }

    /// A change set over a filled store that adds, changes, purges and archives: every kind of key.
    /// With `stop`, its writer stops after that many chunks, as a crash would.
    fn big_change_set<'s>(s: &'s Store, people: &[Person], stop: Option<u64>) -> ChangeSet<'s> {
        let mut c = s.changes("import:big.csv");
        if let Some(n) = stop {
            if let kv::Writes::Sled(w) = &mut c.writes {
                w.stop_after(n);
            }
        }
        for (i, p) in people.iter().enumerate() {
            match i % 4 {
                0 => {
                    let mut q = p.clone();
                    q.voornamen = Some("Anders".into());
                    c.upsert(&q).expect("upsert");
                }
                1 => {
                    for (g, _) in split_by_gemeente(p) {
                        if i % 3 == 0 {
                            c.remove_later(&p.bsn, &g, i % 8 == 1).expect("remove");
                        } else {
                            c.remove(&p.bsn, &g, i % 8 == 1).expect("remove");
                        }
                    }
                }
                _ => c.upsert(p).expect("upsert"),
            }
        }
        for p in demo(people.len() + 1500).iter().skip(people.len()) {
            c.upsert(p).expect("upsert new");
        }
        c
    }

    /// The index with what depends on the clock or the id sequence taken out: mutation times in
    /// entry values and in mutation and outbox records, and the keys of those records (time,
    /// sequence number), which become their position.
    fn normalised(s: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        let untimed = |v: &[u8]| {
            let mut j: serde_json::Value = serde_json::from_slice(v).expect("JSON record");
            match j.as_array_mut() {
                Some(list) => list.iter_mut().for_each(|m| m["at"] = 0.into()),
                None => j["at"] = 0.into(),
            }
            serde_json::to_vec(&j).expect("json")
        };
        let mut seq = std::collections::HashMap::<u8, u64>::new();
        dump(s)
            .into_iter()
            .map(|(k, v)| match k[0] {
                P_RECORD | P_ARCHIVE => {
                    let mut v = v;
                    v[..8].fill(0);
                    (k, v)
                }
                // `o`: pending outbox entries.
                P_MUTATION | b'o' => {
                    let n = seq.entry(k[0]).or_default();
                    *n += 1;
                    (vec![k[0], *n as u8, (*n >> 8) as u8], untimed(&v))
                }
                _ => (k, v),
            })
            .collect()
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn a_large_change_set_on_postgres_takes_a_round_trip_per_block_not_per_row() {
        let s = pg_store().with_outbox(true);
        let kv::Db::Pg(pg) = &s.db else {
            unreachable!("a PostgreSQL store")
        };
        let people = demo(6000);
        let entries: usize = people.iter().map(|p| split_by_gemeente(p).len()).sum();
        let removed = std::cell::Cell::new(0);
        let trips = |f: &dyn Fn()| {
            let before = pg.round_trips();
            f();
            pg.round_trips() - before
        };
        // Every person new: compare, write, queue an outbox entry for each.
        let first = trips(&|| {
            let c = s.put_all(&people, "t").expect("put_all");
            assert_eq!(c.added as usize, entries);
        });
        // Half changed, a quarter removed (as an import removes: held back with the upserts).
        let second = trips(&|| {
            let mut c = s.changes("import:again.csv");
            for (i, p) in people.iter().enumerate() {
                match i % 4 {
                    0 => {
                        for (g, _) in split_by_gemeente(p) {
                            c.remove_later(&p.bsn, &g, true).expect("remove");
                        }
                    }
                    1 | 2 => {
                        let mut q = p.clone();
                        q.voornamen = Some("Anders".into());
                        c.upsert(&q).expect("upsert");
                    }
                    _ => c.upsert(p).expect("upsert"),
                }
            }
            let n = c.commit().expect("commit");
            assert!(n.removed > 1000 && n.changed > 2000 && n.unchanged > 1000);
            removed.set(n.removed as usize);
        });
        // Row at a time this was over 6,000 each (a read per entry, an outbox number per entry).
        assert!(first < 40, "{first} round trips");
        assert!(second < 40, "{second} round trips");
        assert_eq!(
            s.outbox_pending(20_000).expect("outbox").len(),
            entries + removed.get()
        );
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn both_backends_turn_the_same_import_into_the_same_keys_and_values() {
        // Large enough for several compare blocks and staged segments on PostgreSQL, with JSON-era
        // entries (compared as persons), changes, removals with and without archive, newcomers.
        let people = demo(9000);
        let apply = |s: Store| {
            let s = s.with_outbox(true);
            s.put_all(&people, "t").expect("put_all");
            for p in people.iter().take(40) {
                for (g, part) in split_by_gemeente(p) {
                    put_json_era(&s, &part, &g);
                }
            }
            let mut c = big_change_set(&s, &people, None);
            // Removed after its upsert: nothing. Removed before it, not stored: added.
            let extra = demo(people.len() + 1600).pop().expect("one more");
            for (who, g) in [(&people[6], "remove_later"), (&extra, "then upsert")] {
                for (gemeente, _) in split_by_gemeente(who) {
                    c.remove_later(&who.bsn, &gemeente, true).expect(g);
                }
            }
            c.upsert(&extra)
                .expect("upsert after a removal that found nothing");
            let counts = c.commit().expect("commit");
            (counts, normalised(&s))
        };
        let (sled_counts, sled) = apply(Store::temporary().expect("store"));
        let (pg_counts, pg) = apply(pg_store());
        assert!(sled_counts.added >= 1500 && sled_counts.changed > 0 && sled_counts.removed > 0);
        assert!(sled_counts.unchanged > 0);
        assert_eq!(sled_counts, pg_counts);
        assert!(sled.iter().any(|(k, _)| k[0] == b'o'));
        assert!(sled.iter().any(|(k, _)| k[0] == P_ARCHIVE));
        assert_eq!(sled.len(), pg.len());
        for (a, b) in sled.iter().zip(&pg) {
            assert_eq!(a, b, "key {:?}", String::from_utf8_lossy(&a.0));
        }
    }

    #[test]
    fn a_large_change_set_is_applied_whole_and_leaves_no_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open_when_free(dir.path()).expect("open");
        let people = demo(3000);
        let c = s.put_all(&people, "t").expect("put_all");
        assert!(c.added > SMALL_OPS, "must take the journaled path");
        assert_eq!(s.len() as u64, c.added);
        let counts = big_change_set(&s, &people, None).commit().expect("commit");
        assert!(counts.added >= 1500 && counts.changed > 0 && counts.removed > 0);
        assert!(s.journal.is_empty());
        assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
        let anders = &people[0];
        assert_eq!(
            s.get(&anders.bsn).expect("get").and_then(|p| p.voornamen),
            Some("Anders".into())
        );
        assert!(s.index.scan_prefix([P_ARCHIVE]).count() > 0);
    }

    // sled only: PostgreSQL has no undo journal (a change set is a transaction).
    on_sled! {
        fn a_change_set_after_an_unfinished_roll_back_finishes_it_first(s) {
            let s = s;
            let people = demo(3000);
            s.put_all(&people, "t").expect("put_all");
            let before: Vec<_> = people.iter().map(|p| s.get(&p.bsn).expect("get")).collect();
            // What a run-time roll-back that failed half-way leaves: the marker and undo records.
            assert!(crash_big_change_set(&s, &people, Some(2)) > 0);
            assert!(s.meta.get(KEY_JOURNAL).expect("meta").is_some());
            let newcomer = demo(3001).pop().expect("one more");
            s.put(&newcomer, "admin").expect("put");
            assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
            for (p, was) in people.iter().zip(before) {
                assert_eq!(s.get(&p.bsn).expect("get"), was, "{:?} not restored", p.bsn);
            }
            assert_eq!(s.get(&newcomer.bsn).expect("get"), Some(newcomer.clone()));
        }
    }

    on_both! {
        fn a_large_change_set_shows_as_writing_and_holds_off_a_resend_until_its_commit(s) {
            let s = s.with_outbox(true);
            let people = demo(3000);
            s.put_all(&people, "t").expect("put_all");
            assert!(!s.is_writing());
            let c = big_change_set(&s, &people, None);
            // Journaled: lookups would wait for the commit, so the server must not do them inline.
            // On PostgreSQL lookups read the last commit meanwhile: nothing waits.
            assert_eq!(s.is_writing(), !s.is_shared());
            let resend = {
                let s = s.clone();
                std::thread::spawn(move || s.outbox_enqueue_all().expect("enqueue all"))
            };
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(
                !resend.is_finished(),
                "a full resend must wait for the open change set"
            );
            c.commit().expect("commit");
            assert!(!s.is_writing());
            // It walked the committed index: as many "present" updates as entries.
            assert_eq!(resend.join().expect("join"), s.len() as u64);
        }
    }

    /// Builds the big change set and ends it as a crash would; returns the chunks written.
    fn crash_big_change_set(s: &Store, people: &[Person], stop: Option<u64>) -> u64 {
        let mut c = big_change_set(s, people, stop);
        c.pack_mutations().expect("pack");
        match std::mem::replace(&mut c.writes, kv::Writes::Pg(kv::pg::Writes::inert())) {
            kv::Writes::Sled(w) => w.crash(),
            kv::Writes::Pg(_) => 0,
        }
    }

    #[test]
    fn an_interrupted_commit_is_rolled_back_at_open_whatever_chunk_it_reached() {
        let people = demo(2500);
        let total_chunks = {
            let s = Store::temporary().expect("store");
            s.put_all(&people, "t").expect("put_all");
            crash_big_change_set(&s, &people, None)
        };
        assert!(total_chunks >= 4, "{total_chunks}");
        for stop in [0, 1, total_chunks / 2, total_chunks] {
            let dir = tempfile::tempdir().expect("tempdir");
            let before = {
                let s = open_when_free(dir.path()).expect("open");
                s.put_all(&people, "t").expect("put_all");
                let before = dump(&s);
                let done = crash_big_change_set(&s, &people, Some(stop));
                assert_eq!(done, stop);
                if stop > 0 {
                    assert_ne!(dump(&s), before, "chunks were written");
                }
                s.flush().expect("flush");
                before
            };
            let s = open_when_free(dir.path()).expect("reopen");
            assert_eq!(
                s.recovery(),
                Some(&Recovery {
                    source: "import:big.csv".into(),
                    chunks: stop
                })
            );
            assert!(
                dump(&s) == before,
                "stopped after {stop} chunks: not the old state"
            );
            assert!(s.journal.is_empty());
            drop(s);
            let again = open_when_free(dir.path()).expect("third open");
            assert_eq!(again.recovery(), None);
            assert!(dump(&again) == before);
        }
    }

    on_both! {
        fn a_change_set_that_fails_half_way_is_rolled_back_at_once(s) {
            let s = s;
            let people = demo(2500);
            s.put_all(&people, "t").expect("put_all");
            let before = dump(&s);
            let mut c = big_change_set(&s, &people, None);
            // Chunks were written while it was built (the writer may still be at work; on
            // PostgreSQL into its open transaction).
            assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta").is_some(), !s.is_shared());
            // people[2] was upserted already: a second time is an error.
            assert!(matches!(c.upsert(&people[2]), Err(StoreError::Invalid(_))));
            drop(c);
            assert!(dump(&s) == before, "not the old state");
            assert!(s.journal.is_empty());
            assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
            // The gate is free again.
            assert!(s.get(&people[0].bsn).expect("get").is_some());
        }
    }

    on_both! {
        fn discarded_writes_are_rolled_back_and_the_counts_stay(s) {
            let s = s;
            let people = demo(2500);
            s.put_all(&people, "t").expect("put_all");
            let before = dump(&s);
            let mut c = big_change_set(&s, &people, None);
            let counts = c.counts().expect("counts");
            c.discard_writes().expect("discard");
            assert!(dump(&s) == before, "rolled back at once");
            c.upsert(&demo(4100)[4050]).expect("upsert after discard");
            let after = c.commit().expect("commit writes nothing");
            assert_eq!(after.added, counts.added + 1);
            assert!(dump(&s) == before, "nothing written");
            assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
        }
    }

    on_both! {
        fn a_key_written_twice_rolls_back_to_its_value_before_the_commit(s) {
            let s = s;
            s.index.insert(b"zkey", b"original").expect("insert");
            let mut w = Writes::new(&s, "test");
            w.insert(b"zkey", b"first").expect("op");
            for i in 0..3000u32 {
                w.insert(&i.to_be_bytes(), b"x").expect("op");
            }
            w.remove(b"zkey").expect("op");
            let chunks = w.crash();
            assert!(chunks >= 3);
            assert_eq!(s.index.get(b"zkey").expect("get"), None);
            s.roll_back().expect("roll back");
            assert_eq!(
                s.index.get(b"zkey").expect("get").as_deref(),
                Some(&b"original"[..])
            );
            assert_eq!(s.index.len(), 1);
        }
    }

    #[test]
    fn a_version_3_store_is_upgraded_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open_when_free(dir.path()).expect("open");
            put_json_era(&s, &person("123456782", &["0363"]), "0363");
            s.meta
                .insert(KEY_SCHEMA_VERSION, 3u32.to_be_bytes())
                .expect("set");
            s.flush().expect("flush");
        }
        let s = open_when_free(dir.path()).expect("v3 opens");
        assert_eq!(s.len(), 1);
        let p = person("123456782", &["0363"]);
        assert_eq!(s.get(&p.bsn).expect("get"), Some(p));
        assert_eq!(
            s.meta.get(KEY_SCHEMA_VERSION).expect("get").as_deref(),
            Some(&SCHEMA_VERSION.to_be_bytes()[..])
        );
    }

    /// The payload of an entry as stored, without its mutation time.
    fn stored_payload(s: &Store, bsn: &Bsn, gemeente: &str) -> Vec<u8> {
        let v = s
            .index
            .get(record_key(bsn, gemeente))
            .expect("read")
            .expect("stored");
        split_value(&v).1.to_vec()
    }

    /// An entry as a dkd before schema 5 wrote it: JSON, with its mutation time.
    fn put_json_era(s: &Store, p: &Person, gemeente: &str) {
        s.put_raw(&p.bsn, gemeente, &serde_json::to_vec(p).expect("json"))
            .expect("raw");
    }

    on_both! {
        fn entries_are_written_in_the_binary_format(s) {
            let s = s;
            let p = person("123456782", &["0363", "0599"]);
            s.put(&p, "t").expect("put");
            for g in ["0363", "0599"] {
                let payload = stored_payload(&s, &p.bsn, g);
                assert_eq!(payload.first(), Some(&record::TAG_V1), "{g}");
            }
            // What a large (journaled) change set writes, too.
            let people = demo(1500);
            s.put_all(&people, "t").expect("put_all");
            for e in s.index.scan_prefix([P_RECORD]) {
                let (_, v) = e.expect("read");
                assert_eq!(split_value(&v).1.first(), Some(&record::TAG_V1));
            }
        }
    }

    on_both! {
        fn a_json_entry_of_an_older_dkd_still_reads(s) {
            let s = s;
            let p = person("123456782", &["0363"]);
            let mut q = person("111222333", &["0599"]);
            q.voornamen = Some("Zoë 😀".into());
            q.atl_relaties[0].provisions[0].end = Some(Datum::parse("20261231").expect("date"));
            put_json_era(&s, &p, "0363");
            put_json_era(&s, &q, "0599");
            assert_eq!(stored_payload(&s, &p.bsn, "0363").first(), Some(&b'{'));
            assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
            assert_eq!(s.get(&q.bsn).expect("get"), Some(q.clone()));
            let all: Vec<Person> = s.all_entries().map(|e| e.expect("entry").person).collect();
            assert_eq!(all, vec![q, p]);
        }
    }

    on_both! {
        fn a_payload_of_neither_format_is_corrupt_and_says_why(s) {
            let s = s;
            let bsn = Bsn::parse("123456782").expect("bsn");
            for (raw, why) in [
                (&b"\x02abc"[..], "unknown record format (first byte 0x02"),
                (&b""[..], "empty record"),
                (&br#"{"bsn":"#[..], "JSON record"),
                (&b"\x01\x05"[..], "binary record: option tag 0x05 at byte 1"),
            ] {
                s.put_raw(&bsn, "0363", raw).expect("raw");
                match s.get(&bsn) {
                    Err(StoreError::Corrupt { suffix, reason }) => {
                        assert_eq!(suffix, "782");
                        assert!(reason.contains(why), "{reason:?} lacks {why:?}");
                    }
                    other => panic!("{raw:?}: {other:?}"),
                }
                assert!(s.all_entries().next().is_some_and(|e| e.is_err()));
            }
        }
    }

    on_both! {
        fn a_json_entry_reimported_unchanged_records_nothing(s) {
            let s = s.with_outbox(true);
            let p = person("123456782", &["0363", "0599"]);
            for (g, part) in split_by_gemeente(&p) {
                put_json_era(&s, &part, &g);
            }
            let c = s.put(&p, "import:same.csv").expect("put");
            assert_eq!((c.added, c.changed, c.unchanged), (0, 0, 2));
            assert_eq!(s.mutations_since(0).count(), 0, "no mutation recorded");
            assert!(s.outbox_pending(10).expect("outbox").is_empty());
            // Left as it was: nothing was written.
            assert_eq!(stored_payload(&s, &p.bsn, "0363").first(), Some(&b'{'));
            assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
        }
    }

    on_both! {
        fn a_json_entry_with_other_content_is_changed_and_rewritten_in_binary(s) {
            let s = s.with_outbox(true);
            let p = person("123456782", &["0363"]);
            put_json_era(&s, &p, "0363");
            let mut q = p.clone();
            q.achternaam = Some("Pietersen".into());
            let c = s.put(&q, "import:changed.csv").expect("put");
            assert_eq!((c.added, c.changed, c.unchanged), (0, 1, 0));
            assert_eq!(
                stored_payload(&s, &p.bsn, "0363").first(),
                Some(&record::TAG_V1)
            );
            assert_eq!(s.get(&p.bsn).expect("get"), Some(q.clone()));
            // And from now on the byte comparison finds it unchanged.
            let c = s.put(&q, "import:changed.csv").expect("put");
            assert_eq!(c.unchanged, 1);
            assert_eq!(s.mutations_since(0).count(), 1);
        }
    }

    #[test]
    fn a_version_4_store_opens_in_place_and_its_json_entries_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = person("123456782", &["0363"]);
        let before = {
            let s = open_when_free(dir.path()).expect("open");
            put_json_era(&s, &p, "0363");
            s.meta
                .insert(KEY_SCHEMA_VERSION, 4u32.to_be_bytes())
                .expect("set");
            s.flush().expect("flush");
            dump(&s)
        };
        let s = open_when_free(dir.path()).expect("v4 opens");
        assert!(dump(&s) == before, "no entry rewritten");
        assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
        // A v4 dkd, which would take the binary entries for corrupt ones, now refuses the store.
        assert_eq!(
            s.meta.get(KEY_SCHEMA_VERSION).expect("get").as_deref(),
            Some(&5u32.to_be_bytes()[..])
        );
    }

    #[test]
    fn reopen_keeps_data_and_refuses_foreign_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open_when_free(dir.path()).expect("open");
            s.put(&person("123456782", &["0363"]), "t").expect("put");
            s.flush().expect("flush");
        }
        {
            let s = open_when_free(dir.path()).expect("reopen");
            assert_eq!(s.len(), 1);
            s.meta
                .insert(KEY_SCHEMA_VERSION, 99u32.to_be_bytes())
                .expect("set");
            s.flush().expect("flush");
        }
        assert!(matches!(
            open_when_free(dir.path()),
            Err(StoreError::SchemaVersion { found: 99 })
        ));
        // Nor does it open a store of the next version, or of one before the upgradable ones.
        for found in [SCHEMA_VERSION + 1, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = open_when_free(dir.path()).expect("open");
            s.meta
                .insert(KEY_SCHEMA_VERSION, found.to_be_bytes())
                .expect("set");
            s.flush().expect("flush");
            drop(s);
            match open_when_free(dir.path()) {
                Err(e @ StoreError::SchemaVersion { .. }) => assert!(
                    e.to_string()
                        .contains(&format!("version {found} is not supported")),
                    "{e}"
                ),
                Err(e) => panic!("{found}: {e}"),
                Ok(_) => panic!("version {found} opened"),
            }
        }
    }
}
