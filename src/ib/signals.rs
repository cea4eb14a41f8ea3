//! `dkd signals publish` at the IB: a Toets LKS signal file from outside, checked whole, then
//! stored in one atomic write.

use super::IbSettings;
use crate::store::Store;

/// What `dkd signals publish` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    /// The gemeente whose reports hold them.
    pub gemeente: String,
    /// Signals in the file (rows of one question are one signal).
    pub signals: u64,
    /// Of those, how many were new (a file published again adds nothing).
    pub added: u64,
    /// The portal's report files that now hold them.
    pub reports: Vec<String>,
}

/// Why `dkd signals publish` stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The gemeente is not configured: the portal would never serve its reports.
    #[error("gemeente {0:?} is not in ib.gemeenten (the portal serves only those)")]
    UnknownGemeente(String),
    /// The file is not a valid report: one line per problem.
    #[error("{}", .0.join("\n"))]
    File(Vec<String>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Adds a Toets LKS signal file delivered from outside the IB's own routing (in the real chain
/// the signal starts at UWV, "LKS overdracht re-integratie") to `gemeente`'s reports, so the
/// portal serves it and the gemeente's next fetch takes it. The file is checked whole first
/// (`signals::read_signals`); nothing is stored unless every row is good.
pub fn publish_signals(
    store: &Store,
    settings: &IbSettings,
    gemeente: &str,
    file: &str,
    bytes: &[u8],
    today: time::Date,
) -> Result<Published, PublishError> {
    let Some(g) = settings.gemeenten.iter().find(|g| g.code == gemeente) else {
        return Err(PublishError::UnknownGemeente(gemeente.to_owned()));
    };
    let signals =
        crate::signals::read_signals(file, bytes, &g.code, today).map_err(PublishError::File)?;
    let added = store.ib_publish_signals(&signals)?;
    let mut reports: Vec<String> = signals
        .iter()
        .filter_map(|s| time::OffsetDateTime::from_unix_timestamp(s.at).ok())
        .map(|t| {
            let day = crate::suwiml::types::Datum::from_date(t.date());
            crate::signals::file_name(&g.name, day.as_str())
        })
        .collect();
    reports.sort_unstable();
    reports.dedup();
    Ok(Published {
        gemeente: g.code.clone(),
        signals: signals.len() as u64,
        added,
        reports,
    })
}
