//! `dkd store copy`: a whole store from one backend to the other (sled → PostgreSQL to move a
//! gemeente or IB over, PostgreSQL → sled so nobody is locked in). Both hold the same key space
//! (see [`super::kv`]), so the copy is the keys themselves: entries, mutation records, import
//! history, outbox and counters, the IB's tables, signals and cases; then the audit trail, the
//! identity and the id sequence. Re-runnable: the target ends as the source, whatever an earlier,
//! interrupted copy left (keys the source no longer has are removed, the audit trail replaced),
//! and it refuses a target that holds another store. The counts per record kind are compared
//! at the end.

use super::{identity, kv, AuditRecord, Store, StoreError};
use std::collections::BTreeMap;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Keys per record kind (the key's first byte) in the target, equal to the source's.
    pub kinds: BTreeMap<char, u64>,
    /// Keys the target had that the source does not (from an earlier copy): removed.
    pub removed: u64,
    /// Audit records copied.
    pub audit: u64,
}

/// Writes per batch: one sled batch or one PostgreSQL transaction each.
const BATCH: usize = 1024;
/// `meta` keys that belong to one backend or one process, never copied.
const LOCAL_META: &[&[u8]] = &[
    b"schema_version",
    b"journal",
    b"last_check",
    b"outbox_lease",
    identity::KEY,
];

fn kinds(t: &kv::Tree) -> Result<BTreeMap<char, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for k in t.iter().keys() {
        let k = k?;
        *out.entry(char::from(k.first().copied().unwrap_or(b'?')))
            .or_insert(0) += 1;
    }
    Ok(out)
}

impl Store {
    /// The identity, if the store has one (none is created).
    fn identity_if_any(&self) -> Result<Option<identity::Identity>, StoreError> {
        match (&self.db, &self.dir) {
            (kv::Db::Pg(_), _) => match self.meta.get(identity::KEY)? {
                Some(v) => serde_json::from_slice(&v)
                    .map(Some)
                    .map_err(|e| StoreError::Io(format!("the store's identity: {e}"))),
                None => Ok(None),
            },
            (_, Some(d)) => identity::read(d),
            (_, None) => Ok(self
                .identity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()),
        }
    }

    /// Gives the store `id` as its identity, unless it has one.
    fn adopt_identity(&self, id: identity::Identity) -> Result<identity::Identity, StoreError> {
        let i = match (&self.db, &self.dir) {
            (kv::Db::Pg(_), _) => identity::in_tree_or(&self.meta, id)?,
            (_, Some(d)) => identity::read_or_write(d, id)?,
            (_, None) => id,
        };
        *self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(i.clone());
        Ok(i)
    }

    /// Makes `to` a copy of this store (see the module doc).
    pub fn copy_to(&self, to: &Store) -> Result<CopyReport, StoreError> {
        let refuse = |why: String| Err(StoreError::Io(why));
        let (ours, theirs) = (self.identity_if_any()?, to.identity_if_any()?);
        match (&ours, &theirs) {
            (Some(a), Some(b)) if a.id != b.id => {
                return refuse(format!(
                    "the target is another store (identity {}, the source's is {}): copy into an empty store or into an earlier copy of this one",
                    b.id, a.id
                ))
            }
            (_, None) if !to.index.is_empty() => {
                return refuse("the target holds data but no identity: not an earlier copy of this store; copy into an empty one".into())
            }
            _ => {}
        }
        if let Some(id) = ours {
            to.adopt_identity(id)?;
        }
        let _serial = to.serial_lock();
        let mut batch = kv::Batch::default();
        for item in self.index.iter() {
            let (k, v) = item?;
            batch.insert(k, v);
            if batch.ops.len() == BATCH {
                to.index.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        to.index.apply_batch(std::mem::take(&mut batch))?;
        // What an earlier copy brought that the source no longer has.
        let mut removed = 0;
        for k in to.index.iter().keys() {
            let k = k?;
            if self.index.get(&k)?.is_none() {
                batch.remove(&k);
                removed += 1;
                if batch.ops.len() == BATCH {
                    to.index.apply_batch(std::mem::take(&mut batch))?;
                }
            }
        }
        to.index.apply_batch(std::mem::take(&mut batch))?;
        for item in self.meta.iter() {
            let (k, v) = item?;
            if !LOCAL_META.contains(&k.as_ref()) {
                batch.insert(k, v);
            }
        }
        to.meta.apply_batch(batch)?;
        // Outbox and signal keys hold ids: the target's next ones must come after them.
        to.db.advance_ids_past(self.db.generate_id()?)?;
        // The audit trail, replaced whole.
        to.prune_audit(i64::MAX)?;
        let mut audit = 0;
        let records: Vec<AuditRecord> = self.audit_since(0).collect::<Result<_, _>>()?;
        for r in records {
            while !to.queue_audit(r.clone()) {
                to.flush_audit()?;
            }
            audit += 1;
        }
        to.flush()?;
        let (want, got) = (kinds(&self.index)?, kinds(&to.index)?);
        if want != got {
            return refuse(format!(
                "the copy does not match the source: records per kind {got:?}, the source has {want:?}"
            ));
        }
        let copied = to.audit_since(0).count() as u64;
        if copied != audit {
            return refuse(format!(
                "the copy's audit trail has {copied} records, the source's {audit}"
            ));
        }
        Ok(CopyReport {
            kinds: got,
            removed,
            audit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::person;
    use crate::suwiml::verwijsindex::IndDkd;

    /// A store with every kind of record.
    fn fill(s: &Store) {
        let s = s.clone().with_outbox(true);
        s.identity("gemeente").expect("identity");
        s.put_all(
            &[
                person("123456782", &["0363"]),
                person("111222333", &["0363", "0599"]),
            ],
            "import:a.csv",
        )
        .expect("put");
        let mut c = s.changes("sweep");
        c.remove(
            &crate::suwiml::types::Bsn::parse("111222333").expect("bsn"),
            "0599",
            true,
        )
        .expect("remove");
        c.commit().expect("commit");
        s.record_import(&crate::store::ImportRecord {
            at: 1,
            file: "a.csv".into(),
            gemeenten: vec!["0363".into()],
            mode: "full".into(),
            rows: 2,
            rejected: 0,
            added: 3,
            changed: 0,
            removed: 0,
            unchanged: 0,
        })
        .expect("import record");
        let bsn = crate::suwiml::types::Bsn::parse("123456782").expect("bsn");
        s.ib_apply(
            "0363",
            &bsn,
            "04",
            IndDkd::Present,
            "00000001234567890000",
            5,
        )
        .expect("ib");
        s.ib_record_route("0363", "04", "20261201", None, 5)
            .expect("route");
        let parked = s.outbox_pending(1).expect("pending")[0].seq;
        s.outbox_park(parked, "refused").expect("park");
        assert!(s.queue_audit(crate::store::audit::tests::record(1_700_000_000, "m-1")));
        s.flush_audit().expect("flush");
    }

    fn same(a: &Store, b: &Store) {
        let all = |s: &Store| -> Vec<(Vec<u8>, Vec<u8>)> {
            s.index
                .iter()
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("read"))
                .collect()
        };
        assert!(all(a) == all(b), "the same keys and values");
        assert_eq!(a.outbox_status().expect("a"), b.outbox_status().expect("b"));
        assert_eq!(
            a.identity("x").expect("a").id,
            b.identity("x").expect("b").id
        );
        let ids = |s: &Store| -> Vec<Option<String>> {
            s.audit_since(0).map(|r| r.expect("r").message_id).collect()
        };
        assert_eq!(ids(a), ids(b));
    }

    #[test]
    #[cfg_attr(
        dkd_missing = "postgres",
        ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
    )]
    fn sled_to_postgres_and_back_copies_everything_and_can_run_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let sled = Store::open(&dir.path().join("a")).expect("sled");
        fill(&sled);
        let pg = crate::store::tests::pg_store();
        let r = sled.copy_to(&pg).expect("copy");
        assert_eq!(r.audit, 1);
        assert!(
            r.kinds.contains_key(&'r') && r.kinds.contains_key(&'v'),
            "{r:?}"
        );
        same(&sled, &pg);
        // Again, after the source changed: the target follows, nothing doubles.
        let mut c = sled.changes("admin");
        c.remove(
            &crate::suwiml::types::Bsn::parse("123456782").expect("bsn"),
            "0363",
            false,
        )
        .expect("remove");
        c.commit().expect("commit");
        let r = sled.copy_to(&pg).expect("copy again");
        assert_eq!((r.removed, r.audit), (1, 1));
        same(&sled, &pg);
        // New outbox entries on the copy queue after the copied ones.
        let last = pg
            .outbox_pending(100)
            .expect("pending")
            .last()
            .map(|e| e.seq);
        pg.clone()
            .with_outbox(true)
            .put(&person("100000009", &["0363"]), "admin")
            .expect("put");
        assert!(
            pg.outbox_pending(100)
                .expect("pending")
                .last()
                .map(|e| e.seq)
                > last
        );
        // And back into a fresh sled store.
        let back = Store::open(&dir.path().join("b")).expect("sled b");
        pg.copy_to(&back).expect("copy back");
        same(&pg, &back);
        // Never into another store.
        let other = crate::store::tests::pg_store();
        other.identity("gemeente").expect("identity");
        assert!(sled.copy_to(&other).is_err());
    }
}
