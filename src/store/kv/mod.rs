//! The ordered key-value space every store record lives in, on one of two backends: sled (the
//! embedded default) or PostgreSQL ([`pg`]). The record layouts (`r`, `m`, `o`, `v`, ... in
//! [`super`]) and their logic are written once over this facade, so both backends hold the same
//! keys and values and a change to a record kind cannot diverge between them. Only this module
//! and [`pg`] name sled or the PostgreSQL driver; [`super::journal`] is sled's change-set writer.

pub(crate) mod pg;
mod sled;

use super::StoreError;
use std::ops::Deref;

/// A stored value (sled's reference-counted buffer, or bytes read from PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// From sled, not copied.
    Sled(::sled::IVec),
    /// Owned bytes.
    Owned(Vec<u8>),
}

impl Deref for Val {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Val::Sled(v) => v,
            Val::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Val {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// The database: sled's, or a PostgreSQL pool.
#[derive(Clone)]
pub(crate) enum Db {
    Sled(::sled::Db),
    Pg(std::sync::Arc<pg::Pg>),
}

impl Db {
    /// A number that only grows, also across restarts (and, on PostgreSQL, across instances).
    pub(crate) fn generate_id(&self) -> Result<u64, StoreError> {
        match self {
            Db::Sled(d) => Ok(d.generate_id()?),
            Db::Pg(p) => p.generate_id(),
        }
    }

    /// `n` ids as [`Db::generate_id`] would give them one after the other (PostgreSQL: one query).
    pub(crate) fn generate_ids(&self, n: usize) -> Result<Vec<u64>, StoreError> {
        match self {
            Db::Sled(_) => (0..n).map(|_| self.generate_id()).collect(),
            Db::Pg(p) => p.generate_ids(n),
        }
    }

    /// Makes the next [`Db::generate_id`] larger than `n` (a copy brought keys holding ids).
    pub(crate) fn advance_ids_past(&self, n: u64) -> Result<(), StoreError> {
        match self {
            // sled's counter only counts up; ids are cheap (an atomic, persisted now and then).
            Db::Sled(d) => while d.generate_id()? < n {},
            Db::Pg(p) => p.advance_ids_past(n)?,
        }
        Ok(())
    }

    /// Makes what was written durable (PostgreSQL: every commit already is).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        match self {
            Db::Sled(d) => d.flush().map(|_| ())?,
            Db::Pg(_) => {}
        }
        Ok(())
    }
}

/// The writes of one change set: sled's journaled writer, or one PostgreSQL transaction.
pub(crate) enum Writes<'s> {
    Sled(super::journal::Writes<'s>),
    Pg(pg::Writes),
}

impl Writes<'_> {
    pub(crate) fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match self {
            Writes::Sled(w) => w.insert(key, value),
            Writes::Pg(w) => w.push(key, Some(value)),
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        match self {
            Writes::Sled(w) => w.remove(key),
            Writes::Pg(w) => w.push(key, None),
        }
    }

    pub(crate) fn insert_over(
        &mut self,
        key: &[u8],
        value: &[u8],
        stored: &super::journal::Stored,
    ) -> Result<(), StoreError> {
        match self {
            Writes::Sled(w) => w.insert_over(key, value, stored),
            Writes::Pg(w) => w.push_read(key, Some(value), stored.value.is_none()),
        }
    }

    pub(crate) fn remove_over(
        &mut self,
        key: &[u8],
        stored: &super::journal::Stored,
    ) -> Result<(), StoreError> {
        match self {
            Writes::Sled(w) => w.remove_over(key, stored),
            Writes::Pg(w) => w.push(key, None),
        }
    }

    pub(crate) fn get(&mut self, key: &[u8]) -> Result<super::journal::Stored, StoreError> {
        match self {
            Writes::Sled(w) => w.get(key),
            Writes::Pg(w) => Ok(super::journal::Stored::read(w.get(key)?.map(Val::Owned))),
        }
    }

    /// Whether a change set compares in blocks ([`Writes::get_many`]) rather than key by key:
    /// on PostgreSQL each read is a round trip, on sled a B-tree descent.
    pub(crate) fn reads_in_blocks(&self) -> bool {
        matches!(self, Writes::Pg(_))
    }

    /// Takes the change-set lock now (PostgreSQL: begins the transaction); sled's serial lock
    /// is held from [`super::Store::changes`] on.
    pub(crate) fn begin(&mut self) -> Result<(), StoreError> {
        match self {
            Writes::Sled(_) => Ok(()),
            Writes::Pg(w) => w.begin(),
        }
    }

    /// The stored values of `keys`, in their order: one query on PostgreSQL.
    pub(crate) fn get_many(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<super::journal::Stored>, StoreError> {
        match self {
            Writes::Sled(w) => keys.iter().map(|k| w.get(k)).collect(),
            Writes::Pg(w) => Ok(w
                .get_many(keys)?
                .into_iter()
                .map(|v| super::journal::Stored::read(v.map(Val::Owned)))
                .collect()),
        }
    }

    pub(crate) fn discard(&mut self) -> Result<(), StoreError> {
        match self {
            Writes::Sled(w) => w.discard(),
            Writes::Pg(w) => {
                w.discard();
                Ok(())
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), StoreError> {
        match self {
            Writes::Sled(w) => w.finish(),
            Writes::Pg(w) => w.finish(),
        }
    }
}

/// One tree of keys: sled's, or a PostgreSQL table of the same keys.
#[derive(Clone)]
pub(crate) enum Tree {
    Sled(::sled::Tree),
    Pg(pg::Table),
}

/// Writes applied together, all or nothing.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub(crate) fn insert(&mut self, k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) {
        self.ops
            .push((k.as_ref().to_vec(), Some(v.as_ref().to_vec())));
    }
    pub(crate) fn remove(&mut self, k: impl AsRef<[u8]>) {
        self.ops.push((k.as_ref().to_vec(), None));
    }
}

/// Keys in order: a lazy sled iterator, or pages fetched from PostgreSQL.
pub(crate) enum Scan {
    Sled(::sled::Iter),
    Pg(pg::Pages),
}

impl Iterator for Scan {
    type Item = Result<(Val, Val), StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Scan::Sled(i) => i.next().map(|r| {
                r.map(|(k, v)| (Val::Sled(k), Val::Sled(v)))
                    .map_err(StoreError::from)
            }),
            Scan::Pg(p) => p.next(),
        }
    }
}

impl DoubleEndedIterator for Scan {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Scan::Sled(i) => i.next_back().map(|r| {
                r.map(|(k, v)| (Val::Sled(k), Val::Sled(v)))
                    .map_err(StoreError::from)
            }),
            Scan::Pg(p) => p.next_back(),
        }
    }
}

impl Scan {
    pub(crate) fn keys(self) -> impl DoubleEndedIterator<Item = Result<Val, StoreError>> {
        self.map(|r| r.map(|(k, _)| k))
    }
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Tree {
    pub(crate) fn get(&self, k: impl AsRef<[u8]>) -> Result<Option<Val>, StoreError> {
        match self {
            Tree::Sled(t) => Ok(t.get(k)?.map(Val::Sled)),
            Tree::Pg(t) => Ok(t.get(k.as_ref())?.map(Val::Owned)),
        }
    }

    pub(crate) fn insert(
        &self,
        k: impl AsRef<[u8]>,
        v: impl AsRef<[u8]>,
    ) -> Result<(), StoreError> {
        match self {
            Tree::Sled(t) => t.insert(k.as_ref(), v.as_ref()).map(|_| ())?,
            Tree::Pg(t) => t.apply(vec![(k.as_ref().to_vec(), Some(v.as_ref().to_vec()))])?,
        }
        Ok(())
    }

    pub(crate) fn remove(&self, k: impl AsRef<[u8]>) -> Result<(), StoreError> {
        match self {
            Tree::Sled(t) => t.remove(k.as_ref()).map(|_| ())?,
            Tree::Pg(t) => t.apply(vec![(k.as_ref().to_vec(), None)])?,
        }
        Ok(())
    }

    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        match self {
            Tree::Sled(t) => Scan::Sled(t.scan_prefix(prefix)),
            Tree::Pg(t) => Scan::Pg(t.pages(prefix.as_ref().to_vec(), prefix_end(prefix.as_ref()))),
        }
    }

    pub(crate) fn range(&self, r: std::ops::Range<Vec<u8>>) -> Scan {
        match self {
            Tree::Sled(t) => Scan::Sled(t.range(r)),
            Tree::Pg(t) => Scan::Pg(t.pages(r.start, Some(r.end))),
        }
    }

    pub(crate) fn iter(&self) -> Scan {
        self.scan_prefix([])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }

    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        match self {
            Tree::Sled(t) => t.clear()?,
            Tree::Pg(t) => t.clear()?,
        }
        Ok(())
    }

    pub(crate) fn apply_batch(&self, b: Batch) -> Result<(), StoreError> {
        match self {
            Tree::Sled(t) => {
                let mut sb = ::sled::Batch::default();
                for (k, v) in b.ops {
                    match v {
                        Some(v) => sb.insert(k, v),
                        None => sb.remove(k),
                    }
                }
                t.apply_batch(sb)?;
            }
            Tree::Pg(t) => t.apply(b.ops)?,
        }
        Ok(())
    }

    /// Reads and writes some keys as one transaction, safe against concurrent writers (of this
    /// process and, on PostgreSQL, of every instance): `f` may run more than once, on a conflict.
    pub(crate) fn transaction<T>(
        &self,
        f: impl Fn(&mut Txn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Tree::Sled(t) => {
                use ::sled::transaction::{ConflictableTransactionError, TransactionError};
                let r = t.transaction(|tx| {
                    let mut txn = Txn::Sled(tx, None);
                    let out = f(&mut txn);
                    if let Txn::Sled(_, Some(e)) = txn {
                        return Err(e.into());
                    }
                    out.map_err(ConflictableTransactionError::Abort)
                });
                match r {
                    Ok(v) => Ok(v),
                    Err(TransactionError::Abort(e)) => Err(e),
                    Err(TransactionError::Storage(e)) => Err(e.into()),
                }
            }
            Tree::Pg(t) => t.transaction(|c| f(&mut Txn::Pg(c))),
        }
    }
}

/// The reads and writes of one [`Tree::transaction`].
pub(crate) enum Txn<'a> {
    /// The second field holds a conflict sled reported, so the closure is retried.
    Sled(
        &'a ::sled::transaction::TransactionalTree,
        Option<::sled::transaction::UnabortableTransactionError>,
    ),
    Pg(&'a mut pg::TxConn),
}

impl Txn<'_> {
    pub(crate) fn get(&mut self, k: &[u8]) -> Result<Option<Val>, StoreError> {
        match self {
            Txn::Sled(t, conflict) => match t.get(k) {
                Ok(v) => Ok(v.map(Val::Sled)),
                Err(e) => {
                    let msg = e.to_string();
                    *conflict = Some(e);
                    Err(StoreError::Io(msg))
                }
            },
            Txn::Pg(c) => Ok(c.get(k)?.map(Val::Owned)),
        }
    }

    pub(crate) fn put(&mut self, k: &[u8], v: Option<&[u8]>) -> Result<(), StoreError> {
        match self {
            Txn::Sled(t, conflict) => {
                let r = match v {
                    Some(v) => t.insert(k, v).map(|_| ()),
                    None => t.remove(k).map(|_| ()),
                };
                r.map_err(|e| {
                    let msg = e.to_string();
                    *conflict = Some(e);
                    StoreError::Io(msg)
                })
            }
            Txn::Pg(c) => c.write(vec![(k.to_vec(), v.map(<[u8]>::to_vec))]),
        }
    }
}
