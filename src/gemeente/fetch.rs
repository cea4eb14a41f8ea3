//! `dkd signals fetch`: the gemeente downloads new "Toets LKS" reports from the IB's portal and
//! stores them as vangnetter cases. A report is stored with its cases in one write and never
//! fetched twice; a report with any unreadable row is refused whole (and retried next time).

use crate::http::client::{self, ClientError};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Where to fetch from.
pub struct Fetcher {
    /// The store.
    pub store: Store,
    /// The portal's base URL (`…/portal`).
    pub portal: String,
    /// The gemeenten to fetch for; empty: those in the store.
    pub gemeenten: Vec<String>,
    /// Mutual-TLS client configuration (unused for a plain-http loopback portal).
    pub tls: Arc<rustls::ClientConfig>,
    /// Per request.
    pub timeout: Duration,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchReport {
    /// Report files downloaded now.
    pub files: Vec<String>,
    /// New vangnetter cases.
    pub new_cases: u64,
    /// Problems (a gemeente's list unreachable, a refused file), one line each.
    pub errors: Vec<String>,
}

fn describe(e: &ClientError) -> String {
    e.to_string()
}

impl Fetcher {
    /// Fetches every report not fetched before.
    pub async fn fetch(&self) -> FetchReport {
        let mut report = FetchReport::default();
        let gemeenten = if self.gemeenten.is_empty() {
            match crate::report::build(&self.store, 1, time::OffsetDateTime::now_utc().date()) {
                Ok(rows) => rows.into_iter().map(|r| r.gemeente).collect(),
                Err(e) => {
                    report.errors.push(format!("store: {e}"));
                    return report;
                }
            }
        } else {
            self.gemeenten.clone()
        };
        let base = self.portal.trim_end_matches('/');
        for g in gemeenten {
            let list_url = format!("{base}/{g}/lksri");
            let list = match self.get(&list_url).await {
                Ok(b) => b,
                Err(e) => {
                    report.errors.push(format!("{list_url}: {e}"));
                    continue;
                }
            };
            let files: Vec<(String, u64)> = serde_json::from_slice::<serde_json::Value>(&list)
                .ok()
                .and_then(|v| {
                    v["reports"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|r| {
                                r["file"]
                                    .as_str()
                                    .map(|f| (f.to_owned(), r["signals"].as_u64().unwrap_or(0)))
                            })
                            .collect()
                    })
                })
                .unwrap_or_default();
            for (f, listed) in files {
                if crate::signals::day_of(&f).is_none() || f.contains('/') {
                    report
                        .errors
                        .push(format!("{list_url}: unexpected file name {f:?}"));
                    continue;
                }
                match self.store.fetched(&f) {
                    // Today's report grows during the day: fetched again when it lists more.
                    Ok(Some(seen)) if seen >= listed => continue,
                    Ok(_) => {}
                    Err(e) => {
                        report.errors.push(format!("store: {e}"));
                        return report;
                    }
                }
                let url = format!("{list_url}/{f}");
                let bytes = match self.get(&url).await {
                    Ok(b) => b,
                    Err(e) => {
                        report.errors.push(format!("{url}: {e}"));
                        continue;
                    }
                };
                match crate::signals::read_csv(&f, &bytes) {
                    Ok(cases) => match self.store.add_cases(&f, &cases, listed) {
                        Ok(n) => {
                            if n > 0 {
                                tracing::info!(file = %f, new_cases = n, "Toets LKS report fetched: vangnetter cases added");
                            }
                            report.new_cases += n;
                            report.files.push(f);
                        }
                        Err(e) => report.errors.push(format!("store: {e}")),
                    },
                    Err(errs) => report.errors.extend(errs),
                }
            }
        }
        report
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let r = client::request(self.tls.clone(), "GET", url, &[], Vec::new(), self.timeout)
            .await
            .map_err(|e| describe(&e))?;
        if r.status != 200 {
            return Err(format!("HTTP {}: {}", r.status, r.text().trim()));
        }
        Ok(r.body)
    }
}
