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

// First: `on_both!` and `on_sled!` are defined there, for the tests of the modules below.
#[cfg(test)]
#[macro_use]
pub(crate) mod tests;

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

use crate::suwiml::model::Person;
use crate::suwiml::types::Bsn;
mod changes;
use changes::Touched;
pub use changes::{Change, ChangeSet, Counts, Mutation};
mod error;
pub use error::StoreError;
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
