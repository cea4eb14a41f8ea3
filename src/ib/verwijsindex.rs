//! The IB's IBVerwijsindex operation: an update from a gemeente, checked against the
//! configuration (Bron, the caller's OIN, the clusters) and stored.

use super::Ib;
use crate::suwiml::model::KOLOM_GEMEENTE;
use crate::suwiml::verwijsindex::{self as vi, IndDkd};

/// dkd code: the gemeente in Bron is not registered at this IB.
pub const CODE_UNKNOWN_GEMEENTE: &str = "0101";
/// dkd code: the caller's OIN may not send updates for that gemeente.
pub const CODE_OIN_NOT_FOR_GEMEENTE: &str = "0102";
/// dkd code: unknown CdClusteringIb.
pub const CODE_UNKNOWN_CLUSTER: &str = "0103";
/// dkd code: IndDkd other than 1 (ja), 0 or 2 (nee).
pub const CODE_BAD_IND: &str = "0104";
/// dkd code: Bron is not a gemeente (CdKolomSuwi ≠ 3).
pub const CODE_NOT_A_GEMEENTE: &str = "0105";

impl Ib {
    /// The IBVerwijsindex answer when the update cannot be processed now: `FWI/Fout` 0051.
    pub fn update_unavailable(&self) -> vi::Answer {
        vi::Answer::Fwi(vec![self.fout(
            crate::suwiml::fwi::CODE_UNAVAILABLE,
            "De melding kan op dit moment niet worden verwerkt (service unavailable)".into(),
            vec![],
        )])
    }

    /// IBVerwijsindex: checks the update against the configuration and stores it. A refusal on
    /// content is an FWI Fout (the request itself was fine).
    pub fn verwijsindex(&self, caller_oin: &str, r: &vi::Request) -> vi::Answer {
        let refuse =
            |code: &str, tekst: String| vi::Answer::Fwi(vec![self.fout(code, tekst, vec![])]);
        if r.bron.kolom != KOLOM_GEMEENTE {
            return refuse(
                CODE_NOT_A_GEMEENTE,
                format!(
                    "Bron/CdKolomSuwi {} is geen gemeente (verwacht {KOLOM_GEMEENTE})",
                    r.bron.kolom
                ),
            );
        }
        let Some(g) = self.gemeente(&r.bron.partij) else {
            return refuse(
                CODE_UNKNOWN_GEMEENTE,
                format!(
                    "Gemeente {} is niet aangesloten bij deze verwijsindex",
                    r.bron.partij
                ),
            );
        };
        if !g.oins.iter().any(|o| o == caller_oin) {
            return refuse(
                CODE_OIN_NOT_FOR_GEMEENTE,
                format!(
                    "OIN {caller_oin} mag niet aanleveren voor gemeente {}",
                    g.code
                ),
            );
        }
        for c in &r.clusters {
            if !self.settings.clusters.contains(&c.code) {
                return refuse(
                    CODE_UNKNOWN_CLUSTER,
                    format!("CdClusteringIb {:?} is onbekend", c.code),
                );
            }
            if c.ind().is_none() {
                return refuse(
                    CODE_BAD_IND,
                    format!(
                        "IndDkd {:?} moet 1 (aanwezig) of 0 of 2 (niet aanwezig) zijn",
                        c.ind
                    ),
                );
            }
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for c in &r.clusters {
            let ind = c.ind().unwrap_or(IndDkd::Absent);
            if let Err(e) = self
                .store
                .ib_apply(&g.code, &r.bsn, &c.code, ind, caller_oin, now)
            {
                tracing::error!(error = %e, "verwijsindex update could not be stored");
                return self.update_unavailable();
            }
        }
        vi::Answer::Acknowledgement
    }
}
