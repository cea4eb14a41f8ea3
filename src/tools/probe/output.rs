//! The verdict as a Nagios status line or as Prometheus metrics.

use super::{Answer, ProbeResult, Status};

/// The Nagios status line: `DKD OK - summary | perfdata`. Perfdata (`time`, `cert_days` with its
/// thresholds in Nagios range syntax, `size`) is given for what was measured.
pub fn nagios_line(r: &ProbeResult) -> String {
    let mut s = format!("DKD {} - {}", r.status.label(), r.summary);
    let mut perf = Vec::new();
    if let Some(d) = r.duration {
        perf.push(format!("time={:.3}s;;;0", d.as_secs_f64()));
    }
    if let Some(days) = r.cert_days_left {
        // "30:" = alert when below 30 (Nagios range syntax).
        perf.push(format!(
            "cert_days={days};{}:;{}:",
            r.warning_days, r.critical_days
        ));
    }
    if let Some(n) = r.response_size {
        perf.push(format!("size={n}B;;;0"));
    }
    if !perf.is_empty() {
        s.push_str(" | ");
        s.push_str(&perf.join(" "));
    }
    s
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// The result as Prometheus text-format metrics (e.g. for node_exporter's textfile collector).
/// Metrics whose value was not measured are left out.
pub fn prometheus(r: &ProbeResult) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(o, "{name}{labels} {value}");
        }
    };
    let one = |v: &str| vec![(String::new(), v.to_owned())];
    let flag = |b: bool| if b { "1" } else { "0" };
    gauge(
        "dkd_probe_success",
        "Whether the GSDReintegratieInfo transaction succeeded (status OK or WARNING).",
        &one(flag(r.success())),
    );
    let statuses: Vec<(String, String)> = Status::ALL
        .iter()
        .map(|s| {
            (
                format!("{{status=\"{}\"}}", s.label().to_ascii_lowercase()),
                flag(*s == r.status).to_owned(),
            )
        })
        .collect();
    gauge(
        "dkd_probe_status",
        "The probe's verdict: 1 for the current status.",
        &statuses,
    );
    gauge(
        "dkd_probe_exit_code",
        "The Nagios exit code of the verdict (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).",
        &one(&r.status.exit_code().to_string()),
    );
    if let Some(d) = r.duration {
        gauge(
            "dkd_probe_duration_seconds",
            "From connecting to the last byte of the response.",
            &one(&format!("{:.6}", d.as_secs_f64())),
        );
    }
    if let Some(d) = r.cert_days_left {
        gauge(
            "dkd_probe_cert_days_left",
            "Whole days until the server's TLS certificate expires.",
            &one(&d.to_string()),
        );
    }
    if let Some(d) = r.client_cert_days_left {
        gauge(
            "dkd_probe_client_cert_days_left",
            "Whole days until the probe's own TLS client certificate expires.",
            &one(&d.to_string()),
        );
    }
    if let Some(v) = r.signature_valid {
        gauge(
            "dkd_probe_signature_valid",
            "Whether the response's WS-Security signature and SignatureConfirmation verified.",
            &one(flag(v)),
        );
    }
    if let Some(v) = r.relates_to_matches {
        gauge(
            "dkd_probe_relates_to_matches",
            "Whether wsa:RelatesTo equals the request's MessageID.",
            &one(flag(v)),
        );
    }
    if let Some(v) = r.http_status {
        gauge(
            "dkd_probe_http_status_code",
            "HTTP status of the response.",
            &one(&v.to_string()),
        );
    }
    if let Some(v) = r.response_size {
        gauge(
            "dkd_probe_response_size_bytes",
            "Size of the response body.",
            &one(&v.to_string()),
        );
    }
    gauge(
        "dkd_probe_info",
        "The probed URL, the kind of answer and its fault or FWI code.",
        &[(
            format!(
                "{{url=\"{}\",answer=\"{}\",code=\"{}\"}}",
                label(&r.url),
                r.answer.map_or("", Answer::name),
                label(r.code.as_deref().unwrap_or(""))
            ),
            "1".to_owned(),
        )],
    );
    o
}
