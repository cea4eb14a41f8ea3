//! The operations: typed request in, typed reply out. No XML, no sockets; the store is the only
//! dependency.

use crate::store::Store;
use crate::suwiml::fwi::{Level, Melding};
use crate::suwiml::gsd::Reply;
use crate::suwiml::types::Bsn;

/// What an operation needs: the store, and the identity dkd puts in FWI `Bron/DN`.
#[derive(Clone)]
pub struct Service {
    /// The verwijsindex.
    pub store: Store,
    /// This service's distinguished name, for `fwi:*/Bron/DN`.
    pub dn: String,
}

/// dkd code for "the service cannot answer now" (interface.md §4: 0051).
pub const CODE_UNAVAILABLE: &str = "0051";

impl Service {
    /// `GSDReintegratieInfo`: the ClientSuwi of a BSN, `NietsGevonden`, or an FWI Fout when the
    /// store cannot be read. A store failure is the gemeente's problem, not the caller's, so it is an
    /// answer (HTTP 200 with `fwi:FWI`), not a SOAP Fault.
    pub fn reintegratie_info(&self, bsn: &Bsn) -> Reply {
        match self.store.get(bsn) {
            Ok(Some(person)) => Reply::Client(Box::new(person), Vec::new()),
            Ok(None) => Reply::NietsGevonden,
            Err(e) => {
                tracing::error!(error = %e, bsn = %bsn.masked(), "store lookup failed");
                Reply::Fwi(vec![Melding {
                    level: Level::Fout,
                    code: CODE_UNAVAILABLE.into(),
                    tekst: "De gegevens kunnen op dit moment niet worden geleverd (service unavailable)"
                        .into(),
                    details: Vec::new(),
                    dn: self.dn.clone(),
                }])
            }
        }
    }
}
