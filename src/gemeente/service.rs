//! The gemeente's operations: typed request in, typed reply out. No XML, no sockets; the store is
//! the only dependency.

use crate::retention;
use crate::store::Store;
use crate::suwiml::fwi::{Level, Melding};
use crate::suwiml::gsd::Reply;
use crate::suwiml::types::Bsn;

/// What an operation needs: the store, the identity dkd puts in FWI `Bron/DN`, and the look-back.
#[derive(Clone)]
pub struct Service {
    /// The verwijsindex.
    pub store: Store,
    /// This service's distinguished name, for `fwi:*/Bron/DN`.
    pub dn: String,
    /// The LKS look-back in days: entries outside it are not answered, even before the sweep.
    pub window_days: u32,
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepReport {
    /// Entries examined.
    pub examined: u64,
    /// Entries taken out of the index.
    pub removed: u64,
}

/// Takes every entry outside the look-back out of the index, in one atomic change, recorded as
/// mutations with source `sweep`. With `purge` the data is deleted, otherwise kept aside unserved.
pub fn sweep(
    store: &Store,
    window_days: u32,
    purge: bool,
    today: time::Date,
    dry_run: bool,
) -> Result<SweepReport, crate::store::StoreError> {
    let mut changes = store.changes("sweep");
    if dry_run {
        // A large change set writes while it is built.
        changes.discard_writes()?;
    }
    let mut report = SweepReport::default();
    for entry in store.all_entries() {
        let entry = entry?;
        report.examined += 1;
        if !retention::in_index(&entry.person, window_days, today)
            && changes.remove(&entry.person.bsn, &entry.gemeente, !purge)?
        {
            report.removed += 1;
        }
    }
    if !dry_run && report.removed > 0 {
        changes.commit()?;
        store.flush()?;
    }
    Ok(report)
}

/// One provision that decides the Toets LKS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToetsHit {
    /// The gemeente that granted it.
    pub gemeente: String,
    /// The provision.
    pub provision: crate::suwiml::model::Provision,
}

/// The Toets LKS for a BSN and a reference date: the deciding provisions (empty means no).
pub fn toets(
    store: &Store,
    bsn: &Bsn,
    datum: time::Date,
    window_days: u32,
) -> Result<Vec<ToetsHit>, crate::store::StoreError> {
    let mut hits = Vec::new();
    for e in store.entries(bsn)? {
        for v in retention::toets(&e.person, datum, window_days) {
            hits.push(ToetsHit {
                gemeente: e.gemeente.clone(),
                provision: v.clone(),
            });
        }
    }
    Ok(hits)
}

impl Service {
    /// `GSDReintegratieInfo`: the ClientSuwi of a BSN, `NietsGevonden`, or an FWI Fout when the
    /// store cannot be read. A store failure is the gemeente's problem, not the caller's, so it is an
    /// answer (HTTP 200 with `fwi:FWI`), not a SOAP Fault.
    pub fn reintegratie_info(&self, bsn: &Bsn) -> Reply {
        let today = time::OffsetDateTime::now_utc().date();
        match self.store.entries(bsn) {
            Ok(entries) => {
                let current: Vec<_> = entries
                    .into_iter()
                    .filter(|e| retention::in_index(&e.person, self.window_days, today))
                    .collect();
                match crate::store::merge(current) {
                    Some(person) => Reply::Client(Box::new(person), Vec::new()),
                    None => Reply::NietsGevonden,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, bsn = %bsn.masked(), "store lookup failed");
                self.unavailable()
            }
        }
    }

    /// The answer when the service cannot answer now (the store cannot be read, the audit trail
    /// cannot record the answer): `fwi:FWI/Fout` 0051, an answer (HTTP 200), not a SOAP Fault.
    pub fn unavailable(&self) -> Reply {
        Reply::Fwi(vec![Melding {
            level: Level::Fout,
            code: crate::suwiml::fwi::CODE_UNAVAILABLE.into(),
            tekst: "De gegevens kunnen op dit moment niet worden geleverd (service unavailable)"
                .into(),
            details: Vec::new(),
            dn: self.dn.clone(),
        }])
    }
}
