//! `dkd report`: the gemeente's own Aanlevermonitor — what the IB will see, seen first.

use crate::service::retention::{keep_until, Keep};
use crate::store::{ImportRecord, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// The figures of one gemeente.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct GemeenteReport {
    /// The gemeentecode.
    pub gemeente: String,
    /// Persons in its verwijsindex.
    pub persons: u64,
    /// Oldest mutation date of an entry (unix seconds).
    pub oldest_mutation: Option<i64>,
    /// Newest mutation date of an entry (unix seconds).
    pub newest_mutation: Option<i64>,
    /// The last import for this gemeente.
    pub last_import: Option<ImportRecord>,
    /// Persons whose entry leaves the index within the next 30 days.
    pub leaving_30_days: u64,
}

/// Builds the report for every gemeente in the store (and every gemeente with an import).
pub fn build(
    store: &Store,
    window_days: u32,
    today: time::Date,
) -> Result<Vec<GemeenteReport>, StoreError> {
    let mut by: BTreeMap<String, GemeenteReport> = BTreeMap::new();
    let horizon = today + time::Duration::days(30);
    for e in store.all_entries() {
        let e = e?;
        let r = by
            .entry(e.gemeente.clone())
            .or_insert_with(|| GemeenteReport {
                gemeente: e.gemeente.clone(),
                ..Default::default()
            });
        r.persons += 1;
        r.oldest_mutation = Some(
            r.oldest_mutation
                .map_or(e.mutated_at, |o| o.min(e.mutated_at)),
        );
        r.newest_mutation = Some(
            r.newest_mutation
                .map_or(e.mutated_at, |o| o.max(e.mutated_at)),
        );
        if let Keep::Until(d) = keep_until(&e.person, window_days) {
            if d > today && d <= horizon {
                r.leaving_30_days += 1;
            }
        }
    }
    for i in store.imports()? {
        for g in &i.gemeenten {
            let r = by.entry(g.clone()).or_insert_with(|| GemeenteReport {
                gemeente: g.clone(),
                ..Default::default()
            });
            r.last_import = Some(i.clone());
        }
    }
    Ok(by.into_values().collect())
}

fn date(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()))
        .unwrap_or_else(|| "-".into())
}

/// As an aligned table.
pub fn table(rows: &[GemeenteReport]) -> String {
    let mut s = format!(
        "{:<9} {:>8} {:<11} {:<11} {:>9}  {}\n",
        "gemeente", "persons", "oldest", "newest", "leaving30", "last import"
    );
    for r in rows {
        let imp = r
            .last_import
            .as_ref()
            .map(|i| {
                format!(
                    "{} {} ({}): {} rows, +{} ~{} -{} ={}, {} rejected",
                    date(Some(i.at)),
                    i.file,
                    i.mode,
                    i.rows,
                    i.added,
                    i.changed,
                    i.removed,
                    i.unchanged,
                    i.rejected
                )
            })
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:<9} {:>8} {:<11} {:<11} {:>9}  {}\n",
            r.gemeente,
            r.persons,
            date(r.oldest_mutation),
            date(r.newest_mutation),
            r.leaving_30_days,
            imp
        ));
    }
    s
}

/// As CSV with a header row.
pub fn csv(rows: &[GemeenteReport]) -> String {
    let mut s = String::from("gemeente,persons,oldest_mutation,newest_mutation,leaving_30_days,last_import_at,last_import_file,last_import_mode,last_import_rows,last_import_rejected\n");
    for r in rows {
        let i = r.last_import.as_ref();
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.gemeente,
            r.persons,
            date(r.oldest_mutation),
            date(r.newest_mutation),
            r.leaving_30_days,
            date(i.map(|i| i.at)),
            i.map(|i| i.file.replace([',', '"', '\n'], "_"))
                .unwrap_or_default(),
            i.map(|i| i.mode.clone()).unwrap_or_default(),
            i.map(|i| i.rows.to_string()).unwrap_or_default(),
            i.map(|i| i.rejected.to_string()).unwrap_or_default(),
        ));
    }
    s
}
