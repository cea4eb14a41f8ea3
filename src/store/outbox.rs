//! The outbox: IBVerwijsindex updates waiting to be delivered to the IB.
//!
//! Layout (in tree `index`): `o` seq(u64 BE) → JSON [`OutboxEntry`] pending; `p` seq → parked (the
//! IB refused it with an FWI Fout); `c` name → u64 BE counters. The sequence comes from
//! `sled::Db::generate_id`, which only grows, also across restarts, so key order is queue order.
//! An entry is written in the same change set as the index change it reports ([`ChangeSet`],
//! all or nothing, journaled when large), so a crash cannot keep one without the other; the
//! readers below never see the entries of a change set still being applied.

use super::{ChangeSet, Store, StoreError};
use crate::suwiml::types::Bsn;
use crate::suwiml::verwijsindex::IndDkd;
use serde::{Deserialize, Serialize};

const P_PENDING: u8 = b'o';
const P_PARKED: u8 = b'p';
const P_COUNTER: u8 = b'c';
const COUNTER_SENT: &str = "outbox_sent";
/// The sender's lease (in `meta`): until (i64 BE unix seconds) ++ the holder's instance id.
const KEY_LEASE: &[u8] = b"outbox_lease";
/// How long a sender's lease lasts without renewal by default (`push.lease_secs`): longer than a
/// round with its timeouts.
pub const LEASE_SECS: u64 = 60;

/// One queued IBVerwijsindex update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Queue position (from the key).
    #[serde(skip)]
    pub seq: u64,
    /// The person.
    pub bsn: Bsn,
    /// The gemeente whose index changed (the request's Bron).
    pub gemeente: String,
    /// Present (entered the index) or absent (left it).
    pub ind: IndDkd,
    /// When the change was made (unix seconds).
    pub at: i64,
    /// Delivery attempts that failed so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure, or the reason it was parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The outbox at a glance, for `dkd sync --status`, the ops listener and the probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Entries waiting to be delivered.
    pub pending: u64,
    /// Entries the IB refused, waiting for `dkd sync --retry-parked`.
    pub parked: u64,
    /// Change time of the oldest pending entry (unix seconds).
    pub oldest_pending_at: Option<i64>,
    /// Entries delivered (acknowledged by the IB) since the store was created.
    pub sent: u64,
    /// The last delivery failure of the oldest pending entry.
    pub last_error: Option<String>,
}

fn key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [prefix; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn decode(k: &[u8], v: &[u8]) -> Result<OutboxEntry, StoreError> {
    let mut e: OutboxEntry =
        serde_json::from_slice(v).map_err(|e| StoreError::Io(format!("outbox entry: {e}")))?;
    e.seq = k
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    Ok(e)
}

fn encode(e: &OutboxEntry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(e).map_err(|e| StoreError::Io(e.to_string()))
}

impl ChangeSet<'_> {
    /// Queues the IBVerwijsindex update for an index change, in this change set's batch.
    pub(super) fn enqueue(
        &mut self,
        bsn: &Bsn,
        gemeente: &str,
        ind: IndDkd,
    ) -> Result<(), StoreError> {
        if !self.store.outbox_enabled() {
            return Ok(());
        }
        let e = OutboxEntry {
            seq: 0,
            bsn: *bsn,
            gemeente: gemeente.to_owned(),
            ind,
            at: self.now.unix_timestamp(),
            attempts: 0,
            last_error: None,
        };
        let seq = self.next_id()?;
        self.writes.insert(&key(P_PENDING, seq), &encode(&e)?)?;
        Ok(())
    }
}

impl Store {
    /// The first `limit` pending entries, in queue order.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        // Never the entries of a change set still being applied: a roll-back could undo them
        // after the IB has heard of them.
        let _shared = self.read_gate();
        let mut out = Vec::new();
        for item in self.index.scan_prefix([P_PENDING]).take(limit) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Parked entries, in queue order.
    pub fn outbox_parked(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let _shared = self.read_gate();
        let mut out = Vec::new();
        for item in self.index.scan_prefix([P_PARKED]) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Removes a delivered entry and counts it.
    pub fn outbox_delivered(&self, seq: u64) -> Result<(), StoreError> {
        let mut b = super::kv::Batch::default();
        b.remove(&key(P_PENDING, seq)[..]);
        // One sender per store, so this read-then-write of the counter does not race.
        let sent = self.counter(COUNTER_SENT)? + 1;
        b.insert(counter_key(COUNTER_SENT), sent.to_be_bytes());
        self.index.apply_batch(b)?;
        Ok(())
    }

    /// Records a failed attempt on a pending entry (it stays first in line).
    pub fn outbox_failed(&self, seq: u64, error: &str) -> Result<(), StoreError> {
        let k = key(P_PENDING, seq);
        if let Some(v) = self.index.get(k)? {
            let mut e = decode(&k, &v)?;
            e.attempts = e.attempts.saturating_add(1);
            e.last_error = Some(error.to_owned());
            self.index.insert(k, encode(&e)?)?;
        }
        Ok(())
    }

    /// Moves a pending entry aside with the reason the IB gave.
    pub fn outbox_park(&self, seq: u64, reason: &str) -> Result<(), StoreError> {
        let k = key(P_PENDING, seq);
        let Some(v) = self.index.get(k)? else {
            return Ok(());
        };
        let mut e = decode(&k, &v)?;
        e.attempts = e.attempts.saturating_add(1);
        e.last_error = Some(reason.to_owned());
        let mut b = super::kv::Batch::default();
        b.remove(&k[..]);
        b.insert(&key(P_PARKED, seq)[..], encode(&e)?);
        self.index.apply_batch(b)?;
        Ok(())
    }

    /// Puts every parked entry back in the queue, as what the index says *now* about that BSN and
    /// gemeente (present or absent), at the end of the queue: a parked update may be older than
    /// one delivered after it, and must not overwrite it. Returns how many.
    pub fn outbox_unpark_all(&self) -> Result<u64, StoreError> {
        // Like a change set, it decides what to write from what it reads.
        let _serial = self.serial_lock();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut b = self.writes("outbox:unpark");
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for item in self.index.scan_prefix([P_PARKED]) {
            let (k, v) = item?;
            let e = decode(&k, &v)?;
            b.remove(&k)?;
            if !seen.insert((e.bsn, e.gemeente.clone())) {
                continue;
            }
            let present = self
                .index
                .get(super::record_key(&e.bsn, &e.gemeente))?
                .is_some();
            let fresh = OutboxEntry {
                ind: if present {
                    IndDkd::Present
                } else {
                    IndDkd::Absent
                },
                at: now,
                attempts: 0,
                last_error: None,
                ..e
            };
            b.insert(&key(P_PENDING, self.db.generate_id()?), &encode(&fresh)?)?;
            n += 1;
        }
        b.finish()?;
        Ok(n)
    }

    /// Queues "present" for every entry in the index (the reconciliation after the IB reports an
    /// incomplete index), in one atomic write; returns how many. Works with the outbox off too:
    /// asking for it is the operator's decision.
    pub fn outbox_enqueue_all(&self) -> Result<u64, StoreError> {
        // No change set may be half-written while the index is walked.
        let _serial = self.serial_lock();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // One entry per index entry: with 10^6 persons a single sled batch would hold gigabytes,
        // so this is journaled like a large change set.
        let mut b = self.writes("outbox:enqueue-all");
        let mut n = 0;
        for entry in self.all_entries() {
            let entry = entry?;
            let e = OutboxEntry {
                seq: 0,
                bsn: entry.person.bsn,
                gemeente: entry.gemeente,
                ind: IndDkd::Present,
                at: now,
                attempts: 0,
                last_error: None,
            };
            b.insert(&key(P_PENDING, self.db.generate_id()?), &encode(&e)?)?;
            n += 1;
        }
        b.finish()?;
        Ok(n)
    }

    /// Whether this store handle may send the outbox now: one sender across every instance on a
    /// shared (PostgreSQL) store, so per BSN × gemeente updates still go out one at a time and in
    /// queue order. A lease of `secs` (`push.lease_secs`, default [`LEASE_SECS`]) in the store,
    /// renewed by its holder every round and
    /// taken over by another instance once it has run out (its holder died or hangs). With sled
    /// (one process) the handle always has it.
    pub fn outbox_lease(&self, secs: u64) -> Result<bool, StoreError> {
        if !self.is_shared() {
            return Ok(true);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.outbox_lease_at(now, i64::try_from(secs).unwrap_or(i64::MAX))
    }

    pub(crate) fn outbox_lease_at(&self, now: i64, secs: i64) -> Result<bool, StoreError> {
        let me = self.instance.as_bytes();
        self.meta.transaction(|tx| {
            let held = tx.get(KEY_LEASE)?;
            let (holder, until) = match held.as_deref().map(|v| v.split_at_checked(8)) {
                Some(Some((t, h))) => (
                    h.to_vec(),
                    <[u8; 8]>::try_from(t).map(i64::from_be_bytes).unwrap_or(0),
                ),
                _ => (Vec::new(), 0),
            };
            if holder != me && until > now {
                return Ok(false);
            }
            let mut v = now.saturating_add(secs).to_be_bytes().to_vec();
            v.extend_from_slice(me);
            tx.put(KEY_LEASE, Some(&v))?;
            Ok(true)
        })
    }

    /// Counts and the oldest pending entry.
    pub fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let _shared = self.read_gate();
        let mut s = OutboxStatus {
            sent: self.counter(COUNTER_SENT)?,
            ..OutboxStatus::default()
        };
        for (i, item) in self.index.scan_prefix([P_PENDING]).enumerate() {
            let (k, v) = item?;
            if i == 0 {
                let e = decode(&k, &v)?;
                s.oldest_pending_at = Some(e.at);
                s.last_error = e.last_error;
            }
            s.pending += 1;
        }
        s.parked = self.index.scan_prefix([P_PARKED]).count() as u64;
        Ok(s)
    }

    pub(super) fn counter(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .index
            .get(counter_key(name))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }
}

pub(super) fn counter_key(name: &str) -> Vec<u8> {
    let mut k = vec![P_COUNTER];
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::person;

    on_both! {
        fn index_changes_queue_updates_in_the_same_write(s) {
            let s = s.with_outbox(true);
            let p = person("123456782", &["0363", "0599"]);
            s.put(&p, "t").expect("put");
            // Unchanged data and changed data queue nothing; only entering and leaving the index do.
            s.put(&p, "t").expect("again");
            let mut q = p.clone();
            q.voornamen = Some("Piet".into());
            s.put(&q, "t").expect("changed");
            let mut c = s.changes("sweep");
            c.remove(&p.bsn, "0363", false).expect("remove");
            c.commit().expect("commit");
            let pending = s.outbox_pending(10).expect("pending");
            let got: Vec<(&str, IndDkd)> = pending
                .iter()
                .map(|e| (e.gemeente.as_str(), e.ind))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("0363", IndDkd::Present),
                    ("0599", IndDkd::Present),
                    ("0363", IndDkd::Absent)
                ]
            );
            assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
        }
    }

    on_both! {
        fn park_unpark_keeps_queue_order_and_counts(s) {
            let s = s.with_outbox(true);
            s.put(&person("123456782", &["0363"]), "t").expect("put");
            s.put(&person("111222333", &["0363"]), "t").expect("put");
            let q = s.outbox_pending(10).expect("pending");
            s.outbox_park(q[0].seq, "refused").expect("park");
            s.outbox_failed(q[1].seq, "unreachable").expect("fail");
            let st = s.outbox_status().expect("status");
            assert_eq!((st.pending, st.parked), (1, 1));
            assert_eq!(st.last_error.as_deref(), Some("unreachable"));
            s.outbox_delivered(q[1].seq).expect("done");
            // Meanwhile the parked person left the index: the retry sends what is true now.
            let mut c = s.changes("sweep");
            c.remove(&q[0].bsn, "0363", false).expect("remove");
            c.commit().expect("commit");
            let queued = s.outbox_pending(10).expect("pending");
            s.outbox_delivered(queued[0].seq).expect("done");
            assert_eq!(s.outbox_unpark_all().expect("unpark"), 1);
            let again = s.outbox_pending(10).expect("pending");
            assert_eq!(again.len(), 1);
            assert_eq!((again[0].bsn, again[0].ind), (q[0].bsn, IndDkd::Absent));
            assert!(again[0].seq > q[1].seq);
            assert_eq!(s.outbox_status().expect("status").sent, 2);
        }
    }

    on_both! {
        fn outbox_off_queues_nothing_but_full_resend_works(s) {
            let s = s;
            s.put(&person("123456782", &["0363", "0599"]), "t")
                .expect("put");
            assert!(s.outbox_pending(10).expect("pending").is_empty());
            assert_eq!(s.outbox_enqueue_all().expect("full"), 2);
            assert_eq!(s.outbox_status().expect("status").pending, 2);
        }
    }
}
