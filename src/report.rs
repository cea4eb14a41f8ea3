//! `dkd report`: the gemeente's own Aanlevermonitor — what the IB will see, seen first.

use crate::retention::{keep_until, Keep};
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

/// One line of the IB's Aanlevermonitor: a gemeente and a cluster.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct IbReport {
    /// The gemeentecode.
    pub gemeente: String,
    /// Its name.
    pub name: String,
    /// `webservice` or `batch`; empty for a gemeente not (or no longer) configured.
    pub delivery: String,
    /// The registered URL.
    pub url: Option<String>,
    /// `CdClusteringIb`.
    pub cluster: String,
    /// BSNs in the verwijsindex.
    pub bsns: u64,
    /// Oldest mutation (unix seconds).
    pub oldest_mutation: Option<i64>,
    /// Newest mutation (unix seconds).
    pub newest_mutation: Option<i64>,
    /// IBVerwijsindex updates received / that changed the index.
    pub updates_received: u64,
    /// See `updates_received`.
    pub updates_changed: u64,
    /// Routed queries answered in the last 31 days.
    pub queries_succeeded: u64,
    /// Routed queries that failed in the last 31 days.
    pub queries_failed: u64,
    /// The last routing attempt: reachable or not, when, why not.
    pub last_reachability: Option<crate::store::ib::Reachability>,
    /// The most recent errors (newest day first, at most 5).
    pub recent_errors: Vec<String>,
    /// Batch gemeenten: when the last delivery was imported (unix seconds).
    pub last_delivery: Option<i64>,
    /// Batch gemeenten: rows in the last delivery.
    pub delivery_rows: Option<u64>,
    /// Batch gemeenten: no delivery, or the last is older than `ib.stale_after_days`.
    pub stale: bool,
}

/// The IB's Aanlevermonitor: every configured gemeente (for the re-integratie cluster at least)
/// and every gemeente/cluster the index or the figures mention, over the last 31 days.
pub fn build_ib(
    store: &Store,
    settings: &crate::ib::IbSettings,
    today: time::Date,
) -> Result<Vec<IbReport>, StoreError> {
    let mut by: BTreeMap<(String, String), IbReport> = BTreeMap::new();
    for g in &settings.gemeenten {
        by.insert(
            (g.code.clone(), settings.reintegratie_cluster.clone()),
            IbReport::default(),
        );
    }
    for ((g, c), f) in store.ib_index_figures()? {
        let r = by.entry((g, c)).or_default();
        r.bsns = f.bsns;
        r.oldest_mutation = f.oldest;
        r.newest_mutation = f.newest;
        r.updates_received = f.received;
        r.updates_changed = f.changed;
    }
    let since = crate::suwiml::types::Datum::from_date(today - time::Duration::days(30));
    for ((g, c), days) in store.ib_day_figures(since.as_str())? {
        let r = by.entry((g, c)).or_default();
        for f in days.values() {
            r.queries_succeeded += f.succeeded;
            r.queries_failed += f.failed;
        }
        r.recent_errors = days
            .values()
            .rev()
            .flat_map(|f| f.errors.iter().cloned())
            .take(5)
            .collect();
    }
    // Batch gemeenten: the verwijsindex is their last delivery, every entry dated by it.
    let imports = store.imports()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for g in settings
        .gemeenten
        .iter()
        .filter(|g| g.delivery == crate::ib::Delivery::Batch)
    {
        let r = by
            .entry((g.code.clone(), settings.reintegratie_cluster.clone()))
            .or_default();
        let last = imports
            .iter()
            .filter(|i| i.gemeenten.contains(&g.code) && i.mode == "full")
            .max_by_key(|i| i.at);
        r.bsns = store.gemeente_bsns(&g.code)?.len() as u64;
        r.last_delivery = last.map(|i| i.at);
        r.delivery_rows = last.map(|i| i.rows);
        r.oldest_mutation = r.last_delivery.filter(|_| r.bsns > 0);
        r.newest_mutation = r.oldest_mutation;
        r.stale = last.is_none_or(|i| now - i.at > i64::from(settings.stale_after_days) * 86_400);
    }
    let reach = store.ib_reachability()?;
    Ok(by
        .into_iter()
        .map(|((g, c), mut r)| {
            let conf = settings.gemeenten.iter().find(|x| x.code == g);
            r.name = conf.map(|x| x.name.clone()).unwrap_or_default();
            r.delivery = conf
                .map(|x| match x.delivery {
                    crate::ib::Delivery::Webservice => "webservice".to_owned(),
                    crate::ib::Delivery::Batch => "batch".to_owned(),
                })
                .unwrap_or_default();
            r.url = conf.and_then(|x| x.url.clone());
            r.last_reachability = reach.get(&g).cloned();
            r.gemeente = g;
            r.cluster = c;
            r
        })
        .collect())
}

/// A configured gemeente whose delivery is stale (the IB's periodic check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleGemeente {
    /// The gemeentecode.
    pub gemeente: String,
    /// `webservice` or `batch`.
    pub delivery: String,
    /// The last delivery (batch: the last full import; webservice: the newest mutation an
    /// IBVerwijsindex update brought), unix seconds; `None`: never.
    pub last: Option<i64>,
}

/// The configured gemeenten of an IB report whose delivery is older than `stale_after_days` at
/// `now`, or missing: a batch gemeente by the rule [`build_ib`] applies (`stale`), a webservice
/// gemeente by the same rule over its newest mutation in any cluster.
pub fn ib_stale(rows: &[IbReport], stale_after_days: u32, now: i64) -> Vec<StaleGemeente> {
    let limit = i64::from(stale_after_days) * 86_400;
    let mut out: Vec<StaleGemeente> = Vec::new();
    for r in rows.iter().filter(|r| !r.delivery.is_empty()) {
        if out.iter().any(|s| s.gemeente == r.gemeente) {
            continue;
        }
        let (stale, last) = if r.delivery == "batch" {
            (r.stale, r.last_delivery)
        } else {
            let last = rows
                .iter()
                .filter(|x| x.gemeente == r.gemeente)
                .filter_map(|x| x.newest_mutation)
                .max();
            (last.is_none_or(|t| now - t > limit), last)
        };
        if stale {
            out.push(StaleGemeente {
                gemeente: r.gemeente.clone(),
                delivery: r.delivery.clone(),
                last,
            });
        }
    }
    out
}

fn ratio(ok: u64, failed: u64) -> String {
    match ok + failed {
        0 => "-".into(),
        n => format!("{:.0}%", 100.0 * ok as f64 / n as f64),
    }
}

/// The IB report as an aligned table.
pub fn ib_table(rows: &[IbReport]) -> String {
    let mut s = format!(
        "{:<9} {:<20} {:<16} {:>2} {:>8} {:<11} {:<11} {:>9} {:>6} {:>6} {:>5}  {}\n",
        "gemeente",
        "name",
        "delivery",
        "cl",
        "bsns",
        "oldest",
        "newest",
        "updates",
        "ok31",
        "fail31",
        "ratio",
        "last reachability"
    );
    for r in rows {
        let reach = r
            .last_reachability
            .as_ref()
            .map(|x| {
                let when = time::OffsetDateTime::from_unix_timestamp(x.at)
                    .map(|t| {
                        format!(
                            "{:04}-{:02}-{:02} {:02}:{:02}",
                            t.year(),
                            t.month() as u8,
                            t.day(),
                            t.hour(),
                            t.minute()
                        )
                    })
                    .unwrap_or_default();
                match &x.error {
                    None => format!("{when} reachable"),
                    Some(e) => format!("{when} FAILED: {e}"),
                }
            })
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:<9} {:<20} {:<16} {:>2} {:>8} {:<11} {:<11} {:>9} {:>6} {:>6} {:>5}  {}\n",
            r.gemeente,
            r.name.chars().take(20).collect::<String>(),
            if r.stale {
                format!("{} STALE", r.delivery)
            } else {
                r.delivery.clone()
            },
            r.cluster,
            r.bsns,
            date(r.oldest_mutation),
            date(r.newest_mutation),
            r.updates_received,
            r.queries_succeeded,
            r.queries_failed,
            ratio(r.queries_succeeded, r.queries_failed),
            reach
        ));
    }
    s
}

/// The IB report as CSV with a header row.
pub fn ib_csv(rows: &[IbReport]) -> String {
    let clean = |s: &str| s.replace([',', '"', '\n', '\r'], "_");
    let mut s = String::from("gemeente,name,delivery,url,cluster,bsns,oldest_mutation,newest_mutation,updates_received,updates_changed,queries_succeeded_31d,queries_failed_31d,last_reachable,last_error,last_delivery,stale\n");
    for r in rows {
        let reach = r.last_reachability.as_ref();
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.gemeente,
            clean(&r.name),
            r.delivery,
            clean(r.url.as_deref().unwrap_or("")),
            clean(&r.cluster),
            r.bsns,
            date(r.oldest_mutation),
            date(r.newest_mutation),
            r.updates_received,
            r.updates_changed,
            r.queries_succeeded,
            r.queries_failed,
            reach.map(|x| x.ok.to_string()).unwrap_or_default(),
            clean(reach.and_then(|x| x.error.as_deref()).unwrap_or("")),
            date(r.last_delivery),
            r.stale,
        ));
    }
    s
}

/// A vangnetter case with its milestones, for `dkd signals list`, `dkd report` and the status page.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CaseRow {
    /// The case.
    pub case: crate::store::signals::Case,
    /// Its milestones.
    pub milestones: Vec<crate::signals::Milestone>,
    /// How many are overdue.
    pub overdue: usize,
}

/// The cases with their milestones as of `today`.
pub fn cases(cases: &[crate::store::signals::Case], today: time::Date) -> Vec<CaseRow> {
    cases
        .iter()
        .map(|c| {
            let milestones = crate::signals::milestones(c, today);
            let overdue = milestones
                .iter()
                .filter(|m| m.state == crate::signals::MilestoneState::Overdue)
                .count();
            CaseRow {
                case: c.clone(),
                milestones,
                overdue,
            }
        })
        .collect()
}

/// The cases as an aligned table; overdue milestones are marked `!`, the next one `>`.
pub fn cases_table(rows: &[CaseRow]) -> String {
    use crate::signals::MilestoneState;
    let mut s = format!(
        "{:<11} {:<9} {:<9} {:<9}  {}\n",
        "BSN", "gemeente", "signal", "sick", "milestones (week: date; ! overdue, > next)"
    );
    for r in rows {
        let ms: Vec<String> = r
            .milestones
            .iter()
            .map(|m| {
                let mark = match m.state {
                    MilestoneState::Overdue => "!",
                    MilestoneState::Next => ">",
                    MilestoneState::Later => "",
                };
                format!("{mark}{}: {}", m.week, m.date)
            })
            .collect();
        s.push_str(&format!(
            "{:<11} {:<9} {:<9} {:<9}  {}\n",
            r.case.bsn.masked(),
            r.case.gemeente,
            r.case.signal_date.as_str(),
            r.case
                .first_sick_day
                .as_ref()
                .map(|d| d.as_str().to_owned())
                .unwrap_or_else(|| "-".into()),
            ms.join("  ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gemeente: &str, delivery: &str, cluster: &str) -> IbReport {
        IbReport {
            gemeente: gemeente.into(),
            delivery: delivery.into(),
            cluster: cluster.into(),
            ..IbReport::default()
        }
    }

    #[test]
    fn stale_gemeenten_are_batch_by_their_delivery_and_webservice_by_their_newest_update() {
        let day = 86_400;
        let now = 100 * day;
        let mut fresh_ws = row("0001", "webservice", "04");
        fresh_ws.newest_mutation = Some(now - 2 * day);
        // Old in one cluster, fresh in another: not stale.
        let mut old_ws_other_cluster = row("0001", "webservice", "01");
        old_ws_other_cluster.newest_mutation = Some(now - 90 * day);
        let mut old_ws = row("0002", "webservice", "04");
        old_ws.newest_mutation = Some(now - 36 * day);
        let never_ws = row("0003", "webservice", "04");
        let mut stale_batch = row("0004", "batch", "04");
        stale_batch.stale = true;
        stale_batch.last_delivery = Some(now - 40 * day);
        let fresh_batch = row("0005", "batch", "04");
        // In the index, no longer configured: not the check's business.
        let unconfigured = row("0006", "", "04");
        let rows = [
            fresh_ws,
            old_ws_other_cluster,
            old_ws,
            never_ws,
            stale_batch,
            fresh_batch,
            unconfigured,
        ];
        let stale = ib_stale(&rows, 35, now);
        assert_eq!(
            stale
                .iter()
                .map(|s| (s.gemeente.as_str(), s.delivery.as_str(), s.last))
                .collect::<Vec<_>>(),
            [
                ("0002", "webservice", Some(now - 36 * day)),
                ("0003", "webservice", None),
                ("0004", "batch", Some(now - 40 * day)),
            ]
        );
    }
}
