//! A change set: changes collected, compared with what is stored, and written all or nothing.

use super::{
    decode, journal, kv, record, record_key, split_by_gemeente, split_value, time_key, Store,
    StoreError, P_ARCHIVE, P_MUTATION,
};
use crate::suwiml::model::{FieldError, Person};
use crate::suwiml::types::Bsn;
use crate::suwiml::verwijsindex::IndDkd;
use serde::{Deserialize, Serialize};
use std::sync::MutexGuard;

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

/// Mutations packed into one stored value (~6 KB of JSON). sled 0.34 writes a node over 128 KiB
/// (a leaf holds up to 16 values) as a separate blob file each time it changes: 4,096 per value
/// (~400 KB) made every new record rewrite megabytes.
pub(super) const MUTATIONS_PER_CHUNK: usize = 64;

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
    pub(super) _serial: MutexGuard<'s, ()>,
    pub(super) store: &'s Store,
    pub(super) writes: kv::Writes<'s>,
    pub(super) source: String,
    pub(super) now: time::OffsetDateTime,
    pub(super) counts: Counts,
    pub(super) touched: Touched,
    pub(super) mutations: Vec<Mutation>,
    /// Upserts and removals that wait for the next block read (PostgreSQL), in call order.
    pub(super) pending: Vec<Pending>,
    /// The entries of the removals among them.
    pub(super) removing: Touched,
    /// Outbox numbers fetched for the block being settled, last first.
    pub(super) ids: Vec<u64>,
}

/// A change held back for a block read, with its entry's key.
pub(super) struct Pending {
    bsn: Bsn,
    gemeente: String,
    key: Vec<u8>,
    op: Held,
}

pub(super) enum Held {
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

    pub(super) fn pack_mutations(&mut self) -> Result<(), StoreError> {
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
pub(super) struct Touched {
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
