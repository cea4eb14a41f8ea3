use super::transaction::Findings;
use super::*;

fn result() -> ProbeResult {
    let mut r = ProbeResult::new("https://127.0.0.1:1/x", 30, 7);
    r.summary =
        "GSDReintegratieInfo answered NietsGevonden in 12 ms, signature valid, certificate 300 days left".into();
    r.duration = Some(Duration::from_millis(12));
    r.cert_days_left = Some(300);
    r.response_size = Some(4321);
    r.signature_valid = Some(true);
    r.answer = Some(Answer::NietsGevonden);
    r
}

#[test]
fn nagios_line_has_summary_and_perfdata() {
    assert_eq!(
        nagios_line(&result()),
        "DKD OK - GSDReintegratieInfo answered NietsGevonden in 12 ms, signature valid, \
         certificate 300 days left | time=0.012s;;;0 cert_days=300;30:;7: size=4321B;;;0"
    );
    let u = ProbeResult::unknown("ca.pem: no such file | x\ny");
    assert_eq!(nagios_line(&u), "DKD UNKNOWN - ca.pem: no such file / x y");
    assert_eq!(u.status.exit_code(), 3);
}

/// Compile-time: the probe can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn probe_future_is_send(o: ProbeOptions) {
    fn send<T: Send>(_: &T) {}
    send(&probe(o));
}

#[test]
fn findings_are_sorted_worst_first() {
    let mut r = ProbeResult::new("u", 30, 7);
    let mut f = Findings(Vec::new());
    f.add(Status::Ok, "a");
    f.add(Status::Warning, "b");
    f.add(Status::Critical, "c");
    f.add(Status::Ok, "d");
    f.finish(&mut r);
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.summary, "c, b, a, d");
}

#[test]
fn prometheus_output_has_the_metrics() {
    let p = prometheus(&result());
    for line in [
        "dkd_probe_success 1",
        "dkd_probe_status{status=\"ok\"} 1",
        "dkd_probe_status{status=\"critical\"} 0",
        "dkd_probe_duration_seconds 0.012000",
        "dkd_probe_cert_days_left 300",
        "dkd_probe_signature_valid 1",
        "dkd_probe_info{url=\"https://127.0.0.1:1/x\",answer=\"NietsGevonden\",code=\"\"} 1",
    ] {
        assert!(p.lines().any(|l| l == line), "{line} missing in\n{p}");
    }
    assert!(!p.contains("dkd_probe_http_status_code"));
}

#[test]
fn io_text_drops_the_os_error_number() {
    let e = std::io::Error::from_raw_os_error(111);
    let t = crate::http::inspect::io_text(&e);
    assert!(!t.contains("os error"), "{t}");
    assert_eq!(one_line("a|b\r\nc"), "a/b  c");
    assert_eq!(quoted(&"x".repeat(300)).chars().count(), MAX_QUOTED + 1);
}
