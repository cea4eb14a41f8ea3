//! The IB role: what only the Inlichtingenbureau does. It keeps the verwijsindex the gemeenten
//! push (`verwijsindex`: IBVerwijsindex, checked against the configuration and stored), routes a
//! `GSDReintegratieInfo` question to the gemeenten that hold the BSN and merges their answers
//! (`route`, over the `Forward` trait; `forward`: the signed call to one gemeente), takes Toets
//! LKS signal files from outside (`signals`: `dkd signals publish`) and serves each gemeente its
//! Toets LKS reports (`portal`). This module holds what they share: `Ib` and its settings.

pub mod forward;
pub mod portal;
pub mod route;
pub mod signals;
pub mod verwijsindex;

use crate::store::Store;
use crate::suwiml::fwi::{Level, Melding};
use route::Forward;
use std::sync::Arc;

/// How a gemeente delivers its DKD data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// It runs GSDDossierReintegratie; the IB routes questions to it.
    Webservice,
    /// It uploads batch files; the IB answers from them.
    Batch,
}

/// One gemeente as the IB knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gemeente {
    /// CBS gemeentecode (`CdPartijSuwi`).
    pub code: String,
    /// Its name, for reports and FWI texts.
    pub name: String,
    /// OINs allowed to send IBVerwijsindex updates for it.
    pub oins: Vec<String>,
    /// Its GSDDossierReintegratie endpoint (webservice delivery).
    pub url: Option<String>,
    /// Webservice or batch.
    pub delivery: Delivery,
}

/// The IB role's settings.
#[derive(Debug, Clone)]
pub struct IbSettings {
    /// The gemeenten.
    pub gemeenten: Vec<Gemeente>,
    /// Known `CdClusteringIb` codes.
    pub clusters: Vec<String>,
    /// The cluster whose entries route GSDReintegratieInfo.
    pub reintegratie_cluster: String,
    /// The IB's DN for FWI `Bron/DN`.
    pub dn: String,
    /// The LKS look-back in days (for batch deliveries and the Toets LKS signal).
    pub window_days: u32,
    /// A batch delivery older than this many days is stale.
    pub stale_after_days: u32,
}

/// The IB role.
pub struct Ib {
    /// Its verwijsindex and figures.
    pub store: Store,
    /// Its settings.
    pub settings: IbSettings,
    /// How questions reach the gemeenten.
    pub forward: Arc<dyn Forward>,
}

impl Ib {
    fn gemeente(&self, code: &str) -> Option<&Gemeente> {
        self.settings.gemeenten.iter().find(|g| g.code == code)
    }

    fn fout(&self, code: &str, tekst: String, details: Vec<String>) -> Melding {
        Melding {
            level: Level::Fout,
            code: code.into(),
            tekst,
            details,
            dn: self.settings.dn.clone(),
        }
    }
}
