//! The report's formats: table, summary, JSON and JUnit XML.

use super::{Report, Service, Verdict};

/// The report as an aligned table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    if !r.connected {
        s.push_str(&format!(
            "dkd check {}: {}\n",
            r.url,
            r.connect_error.as_deref().unwrap_or("could not connect")
        ));
        return s;
    }
    let w = r.outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in &r.outcomes {
        s.push_str(&format!(
            "{:<w$}  {:<4}  {}\n",
            o.name,
            o.verdict.label().to_ascii_uppercase(),
            o.reason
        ));
    }
    s.push_str(&summary(r));
    s.push('\n');
    s
}

/// One line: `33 checks: 30 passed, 1 warning, 2 skipped, 0 failed`.
pub fn summary(r: &Report) -> String {
    let n = |v| r.outcomes.iter().filter(|o| o.verdict == v).count();
    format!(
        "{} checks: {} passed, {} warning(s), {} skipped, {} failed",
        r.outcomes.len(),
        n(Verdict::Pass),
        n(Verdict::Warn),
        n(Verdict::Skip),
        n(Verdict::Fail)
    )
}

/// The report as JSON.
pub fn json(r: &Report) -> String {
    let checks: Vec<serde_json::Value> = r
        .outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name,
                "verdict": o.verdict.label(),
                "reason": o.reason,
                "ms": o.duration.as_millis() as u64,
            })
        })
        .collect();
    let v = serde_json::json!({
        "url": r.url,
        "service": match r.service { Service::Gsd => "gsd", Service::Verwijsindex => "verwijsindex" },
        "connected": r.connected,
        "error": r.connect_error,
        "exit_code": r.exit_code(),
        "checks": checks,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// The report as JUnit XML: one testcase per check (class = its group), `failure` for a failed
/// check, `skipped` for a skipped one, a warning as `system-out` of a passed one. A run that could
/// not connect is one failed testcase `connect`.
pub fn junit(r: &Report) -> String {
    use crate::xml::{escape, escape_attr};
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let n = |v| r.outcomes.iter().filter(|o| o.verdict == v).count();
    let total: f64 = r.outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let (tests, failures) = if r.connected {
        (r.outcomes.len(), n(Verdict::Fail))
    } else {
        (1, 1)
    };
    s.push_str("<testsuites><testsuite name=\"dkd check ");
    escape_attr(&r.url, &mut s);
    s.push_str(&format!(
        "\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{}\" time=\"{total:.3}\">\n",
        n(Verdict::Skip)
    ));
    if !r.connected {
        s.push_str(
            "  <testcase classname=\"dkd.check\" name=\"connect\" time=\"0\"><failure message=\"",
        );
        escape_attr(
            r.connect_error.as_deref().unwrap_or("could not connect"),
            &mut s,
        );
        s.push_str("\"/></testcase>\n");
    }
    for o in &r.outcomes {
        let group = o.name.split('.').next().unwrap_or("");
        s.push_str(&format!(
            "  <testcase classname=\"dkd.check.{group}\" name=\""
        ));
        escape_attr(o.name, &mut s);
        s.push_str(&format!("\" time=\"{:.3}\">", o.duration.as_secs_f64()));
        match o.verdict {
            Verdict::Fail => {
                s.push_str("<failure message=\"");
                escape_attr(&o.reason, &mut s);
                s.push_str("\"/>");
            }
            Verdict::Skip => {
                s.push_str("<skipped message=\"");
                escape_attr(&o.reason, &mut s);
                s.push_str("\"/>");
            }
            Verdict::Warn => {
                s.push_str("<system-out>WARNING: ");
                escape(&o.reason, &mut s);
                s.push_str("</system-out>");
            }
            Verdict::Pass => {
                s.push_str("<system-out>");
                escape(&o.reason, &mut s);
                s.push_str("</system-out>");
            }
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("</testsuite></testsuites>\n");
    s
}
