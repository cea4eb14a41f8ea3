//! The verwijsindex store: typed person records in sled. The only module that names sled.
//!
//! Layout (schema version 1):
//! - tree `persons`: key = the nine BSN digits, value = the JSON of a [`Person`];
//! - tree `meta`: `schema_version` = big-endian u32.
//!
//! Point lookups by BSN go straight to sled's B-tree, so answer time does not depend on how many
//! persons are stored. Records are validated before they are written: the store never holds a
//! person that cannot be written as a schema-valid ClientSuwi.

use crate::suwiml::model::{FieldError, Person};
use crate::suwiml::types::Bsn;
use std::path::Path;

/// The on-disk layout version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

const KEY_SCHEMA_VERSION: &[u8] = b"schema_version";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or corruption problem.
    #[error("store I/O error: {0}")]
    Io(String),
    /// The data directory was written by a newer or unknown dkd.
    #[error("store schema version {found} is not supported by this dkd (expects {SCHEMA_VERSION}); upgrade dkd or point it at another data directory")]
    SchemaVersion {
        /// What the store says.
        found: u32,
    },
    /// A stored record does not decode: corruption or a manual edit.
    #[error("stored record for BSN ******{suffix} cannot be read: {reason}")]
    Corrupt {
        /// Last three digits of the key.
        suffix: String,
        /// Decoder message.
        reason: String,
    },
    /// A record failed validation and was not written.
    #[error("record refused: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// The verwijsindex. Cheap to clone (sled handles are reference counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    persons: sled::Tree,
}

impl Store {
    /// Opens (creating if needed) the store in a directory.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(path).open().map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Io(format!(
                "{} is locked by another process (is another dkd running on this data directory?)",
                path.display()
            ))
            }
            other => StoreError::from(other),
        })?;
        Store::init(db)
    }

    /// A throwaway in-memory store for tests and benchmarks.
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Store::init(db)
    }

    fn init(db: sled::Db) -> Result<Store, StoreError> {
        let meta = db.open_tree("meta")?;
        match meta.get(KEY_SCHEMA_VERSION)? {
            None => {
                meta.insert(KEY_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaVersion { found });
                }
            }
        }
        let persons = db.open_tree("persons")?;
        Ok(Store { db, persons })
    }

    /// Looks a person up by BSN.
    pub fn get(&self, bsn: &Bsn) -> Result<Option<Person>, StoreError> {
        match self.persons.get(bsn.as_bytes())? {
            None => Ok(None),
            Some(raw) => decode(bsn.as_bytes(), &raw).map(Some),
        }
    }

    /// Validates and writes one person, replacing what was stored for that BSN.
    pub fn put(&self, p: &Person) -> Result<(), StoreError> {
        p.validate().map_err(StoreError::Invalid)?;
        let raw = encode(p)?;
        self.persons.insert(p.bsn.as_bytes(), raw)?;
        Ok(())
    }

    /// Validates all records, then writes them in one atomic batch: all or nothing.
    pub fn put_all(&self, people: &[Person]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for p in people {
            p.validate().map_err(StoreError::Invalid)?;
            batch.insert(p.bsn.as_bytes(), encode(p)?);
        }
        self.persons.apply_batch(batch)?;
        Ok(())
    }

    /// Removes a person; returns whether one was stored.
    pub fn remove(&self, bsn: &Bsn) -> Result<bool, StoreError> {
        Ok(self.persons.remove(bsn.as_bytes())?.is_some())
    }

    /// Number of persons stored. Walks the tree: for reports, not for the request path.
    pub fn len(&self) -> usize {
        self.persons.len()
    }

    /// Whether no person is stored.
    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
    }

    /// The first `n` persons in BSN order (for demo output and reports).
    pub fn first(&self, n: usize) -> Result<Vec<Person>, StoreError> {
        let mut out = Vec::with_capacity(n);
        for item in self.persons.iter().take(n) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Writes everything to disk. sled also flushes in the background; this makes it certain.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Checks that the store can be read and written (for readiness checks).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let meta = self.db.open_tree("meta")?;
        meta.insert(b"last_check", &[1u8])?;
        Ok(())
    }
}

#[cfg(test)]
impl Store {
    /// Writes raw bytes under a BSN, bypassing validation: for tests of corrupt records.
    pub(crate) fn put_raw(&self, bsn: &Bsn, raw: &[u8]) -> Result<(), StoreError> {
        self.persons.insert(bsn.as_bytes(), raw)?;
        Ok(())
    }
}

fn encode(p: &Person) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(p).map_err(|e| StoreError::Io(format!("cannot encode record: {e}")))
}

fn decode(key: &[u8], raw: &[u8]) -> Result<Person, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        suffix: String::from_utf8_lossy(key.get(6..).unwrap_or_default()).into_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suwiml::model::{AtlRelatie, Bron, Provision};
    use crate::suwiml::types::{Datum, Percentage};

    fn person(bsn: &str) -> Person {
        Person {
            bsn: Bsn::parse(bsn).expect("valid bsn"),
            voornamen: Some("Jan".into()),
            voorletters: Some("J".into()),
            voorvoegsel: None,
            achternaam: Some("Jansen".into()),
            geslacht: Some("1".into()),
            geboortedat: Some(Datum::parse("19800101").expect("date")),
            bron: Some(Bron::gemeente("0363")),
            atl_relaties: vec![AtlRelatie {
                arbeidsvermogen: None,
                doel_rv: None,
                provisions: vec![Provision {
                    registratienr: Some("R1".into()),
                    start: Datum::parse("20240101").expect("date"),
                    end: None,
                    type_code: Some("23".into()),
                    description: None,
                    loonwaarde: Some(Percentage::from_hundredths(4550).expect("pct")),
                }],
                bron: Bron::gemeente("0363"),
            }],
        }
    }

    #[test]
    fn put_then_get_round_trips() {
        let s = Store::temporary().expect("store");
        let p = person("123456782");
        s.put(&p).expect("put");
        assert_eq!(s.get(&p.bsn).expect("get"), Some(p));
        assert_eq!(
            s.get(&Bsn::parse("111222333").expect("bsn")).expect("get"),
            None
        );
    }

    #[test]
    fn invalid_record_is_refused_and_nothing_written() {
        let s = Store::temporary().expect("store");
        let mut p = person("123456782");
        p.atl_relaties[0].provisions[0].end = Some(Datum::parse("20230101").expect("date"));
        assert!(matches!(s.put(&p), Err(StoreError::Invalid(_))));
        assert!(s.is_empty());
        let good = person("111222333");
        assert!(s.put_all(&[good, p]).is_err());
        assert!(s.is_empty(), "a refused batch writes nothing");
    }

    #[test]
    fn reopen_keeps_data_and_refuses_foreign_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            s.put(&person("123456782")).expect("put");
            s.flush().expect("flush");
        }
        {
            let s = Store::open(dir.path()).expect("reopen");
            assert_eq!(s.len(), 1);
            s.db.open_tree("meta")
                .expect("meta")
                .insert(KEY_SCHEMA_VERSION, &99u32.to_be_bytes())
                .expect("set");
            s.flush().expect("flush");
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::SchemaVersion { found: 99 })
        ));
    }
}
