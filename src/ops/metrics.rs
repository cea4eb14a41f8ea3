//! Request metrics in Prometheus text format: counts by operation and outcome, faults by code, a
//! latency histogram. Written by the transport after each request; read by `/metrics` and `/`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Histogram bucket bounds in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How many recent faults the status page shows.
const RECENT: usize = 20;

/// How many distinct namespaces of ignored header blocks get a label of their own; the rest, and
/// any namespace longer than [`MAX_NAMESPACE_LABEL`], count as `other`. The namespaces come from
/// the clients: unbounded, they would grow the registry and `/metrics` without limit.
pub const MAX_IGNORED_NAMESPACES: usize = 16;
/// The longest namespace that gets a label of its own, in bytes.
pub const MAX_NAMESPACE_LABEL: usize = 200;

/// A recent fault, for the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentFault {
    /// Unix seconds.
    pub at: i64,
    /// dkd code.
    pub code: String,
    /// TLS client OIN.
    pub oin: String,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String), u64>,
    faults: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    recent: std::collections::VecDeque<RecentFault>,
    ignored_headers: BTreeMap<String, u64>,
    ignored_other: u64,
    periodic_runs: BTreeMap<&'static str, u64>,
    /// Set by the IB's stale check once it has run here.
    ib_stale: Option<u64>,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    audit_refused: std::sync::atomic::AtomicU64,
    connections_shed: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Records one request.
    pub fn record(
        &self,
        operation: &str,
        outcome: &str,
        fault_code: Option<&str>,
        oin: &str,
        seconds: f64,
    ) {
        let Ok(mut g) = self.inner.lock() else { return };
        *g.requests
            .entry((operation.to_owned(), outcome.to_owned()))
            .or_default() += 1;
        if let Some(code) = fault_code {
            *g.faults.entry(code.to_owned()).or_default() += 1;
            if g.recent.len() == RECENT {
                g.recent.pop_front();
            }
            g.recent.push_back(RecentFault {
                at: time::OffsetDateTime::now_utc().unix_timestamp(),
                code: code.to_owned(),
                oin: oin.to_owned(),
            });
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                g.buckets[i] += 1;
            }
        }
        g.count += 1;
        g.sum += seconds;
    }

    /// Counts unknown header blocks that were ignored, by namespace (`""`: none).
    pub fn ignored_headers<S: AsRef<str>>(&self, namespaces: &[S]) {
        if namespaces.is_empty() {
            return;
        }
        let Ok(mut g) = self.inner.lock() else { return };
        for ns in namespaces {
            let ns = ns.as_ref();
            let known = g.ignored_headers.len();
            match g.ignored_headers.get_mut(ns) {
                Some(n) => *n += 1,
                // A namespace named "other" would repeat the overflow's series.
                None if known < MAX_IGNORED_NAMESPACES
                    && ns.len() <= MAX_NAMESPACE_LABEL
                    && ns != "other" =>
                {
                    g.ignored_headers.insert(ns.to_owned(), 1);
                }
                None => g.ignored_other += 1,
            }
        }
    }

    /// The most recent faults, newest first.
    pub fn recent_faults(&self) -> Vec<RecentFault> {
        self.inner
            .lock()
            .map(|g| g.recent.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Requests answered per outcome (for the status page).
    pub fn totals(&self) -> Vec<(String, String, u64)> {
        self.inner
            .lock()
            .map(|g| {
                g.requests
                    .iter()
                    .map(|((o, r), n)| (o.clone(), r.clone(), *n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Counts a request answered 0051 because the audit queue had no room; returns the total.
    pub fn audit_refused(&self) -> u64 {
        self.audit_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Counts a periodic job run by this instance (the one that claimed its interval).
    pub fn periodic_run(&self, job: &'static str) {
        let Ok(mut g) = self.inner.lock() else { return };
        *g.periodic_runs.entry(job).or_default() += 1;
    }

    /// The periodic jobs this instance ran, by name.
    pub fn periodic_runs(&self) -> Vec<(&'static str, u64)> {
        self.inner
            .lock()
            .map(|g| g.periodic_runs.iter().map(|(j, n)| (*j, *n)).collect())
            .unwrap_or_default()
    }

    /// The IB's stale check found this many gemeenten stale.
    pub fn set_ib_stale(&self, n: u64) {
        if let Ok(mut g) = self.inner.lock() {
            g.ib_stale = Some(n);
        }
    }

    /// Counts a connection shed (or refused) to make room under the connection budget.
    pub fn connection_shed(&self) {
        self.connections_shed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Appends the request metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(g) = self.inner.lock() else { return };
        out.push_str("# HELP dkd_requests_total SOAP requests answered, by operation and outcome.\n# TYPE dkd_requests_total counter\n");
        for ((op, outcome), n) in &g.requests {
            out.push_str(&format!(
                "dkd_requests_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP dkd_faults_total SOAP faults sent, by dkd fault code.\n# TYPE dkd_faults_total counter\n");
        for (code, n) in &g.faults {
            out.push_str(&format!("dkd_faults_total{{code=\"{code}\"}} {n}\n"));
        }
        out.push_str("# HELP dkd_ignored_headers_total Unknown SOAP header blocks ignored (no mustUnderstand), by namespace; namespaces beyond the first 16 count as \"other\".\n# TYPE dkd_ignored_headers_total counter\n");
        for (ns, n) in &g.ignored_headers {
            out.push_str("dkd_ignored_headers_total{namespace=\"");
            label_value(ns, out);
            out.push_str(&format!("\"}} {n}\n"));
        }
        if g.ignored_other > 0 {
            out.push_str(&format!(
                "dkd_ignored_headers_total{{namespace=\"other\"}} {}\n",
                g.ignored_other
            ));
        }
        out.push_str("# HELP dkd_request_duration_seconds Time from request headers to response.\n# TYPE dkd_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            out.push_str(&format!(
                "dkd_request_duration_seconds_bucket{{le=\"{b}\"}} {}\n",
                g.buckets[i]
            ));
        }
        out.push_str(&format!(
            "dkd_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            g.count
        ));
        out.push_str(&format!(
            "dkd_request_duration_seconds_sum {}\ndkd_request_duration_seconds_count {}\n",
            g.sum, g.count
        ));
        out.push_str(&format!(
            "# HELP dkd_audit_refused_total Requests answered 0051 (service unavailable) because the audit queue had no room for their record.\n# TYPE dkd_audit_refused_total counter\ndkd_audit_refused_total {}\n",
            self.audit_refused.load(std::sync::atomic::Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP dkd_connections_shed_total Connections closed to make room: still in the TLS handshake when the handshake budget was full, or idle when the connection slots were.\n# TYPE dkd_connections_shed_total counter\ndkd_connections_shed_total {}\n",
            self.connections_shed.load(std::sync::atomic::Ordering::Relaxed)
        ));
        out.push_str("# HELP dkd_periodic_runs_total Periodic jobs run by this instance (one instance per interval across those sharing the store), by job.\n# TYPE dkd_periodic_runs_total counter\n");
        for (job, n) in &g.periodic_runs {
            out.push_str(&format!("dkd_periodic_runs_total{{job=\"{job}\"}} {n}\n"));
        }
        if let Some(n) = g.ib_stale {
            out.push_str(&format!(
                "# HELP dkd_ib_stale_gemeenten Configured gemeenten whose delivery is older than ib.stale_after_days, at the last stale check.\n# TYPE dkd_ib_stale_gemeenten gauge\ndkd_ib_stale_gemeenten {n}\n"
            ));
        }
    }
}

/// A Prometheus label value: backslash, double quote and line feed escaped (the text format's
/// rules); other control characters cannot occur in a namespace name XML accepted.
fn label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_faults() {
        let m = Metrics::default();
        m.record("GSDReintegratieInfo", "found", None, "o", 0.002);
        m.record("GSDReintegratieInfo", "fault", Some("0012"), "o", 0.2);
        let mut s = String::new();
        m.render(&mut s);
        assert!(
            s.contains("dkd_request_duration_seconds_bucket{le=\"0.0025\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("dkd_request_duration_seconds_bucket{le=\"0.25\"} 2\n"),
            "{s}"
        );
        assert!(s.contains("dkd_faults_total{code=\"0012\"} 1\n"), "{s}");
        assert!(
            s.contains(
                "dkd_requests_total{operation=\"GSDReintegratieInfo\",outcome=\"found\"} 1\n"
            ),
            "{s}"
        );
        assert_eq!(m.recent_faults().len(), 1);
    }

    #[test]
    fn ignored_header_namespaces_are_a_bounded_label_set() {
        let m = Metrics::default();
        let many: Vec<String> = (0..100).map(|i| format!("urn:x:{i}")).collect();
        m.ignored_headers(&many);
        m.ignored_headers(&["urn:x:0", "a\"b\\c\nd"]);
        m.ignored_headers(&["x".repeat(MAX_NAMESPACE_LABEL + 1)]);
        let mut s = String::new();
        m.render(&mut s);
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("dkd_ignored_headers_total{"))
            .collect();
        assert_eq!(lines.len(), MAX_IGNORED_NAMESPACES + 1, "{s}");
        assert!(
            s.contains("dkd_ignored_headers_total{namespace=\"urn:x:0\"} 2\n"),
            "{s}"
        );
        // 84 beyond the cap, the quoted one and the over-long one.
        assert!(
            s.contains("dkd_ignored_headers_total{namespace=\"other\"} 86\n"),
            "{s}"
        );
        let m = Metrics::default();
        m.ignored_headers(&["a\"b\\c\nd", "other", ""]);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("{namespace=\"a\\\"b\\\\c\\nd\"} 1\n"), "{s}");
        assert!(s.contains("{namespace=\"\"} 1\n"), "{s}");
        assert!(s.contains("{namespace=\"other\"} 1\n"), "{s}");
    }
}
