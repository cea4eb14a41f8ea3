//! Scenarios: an emulated gemeente that answers wrongly on purpose, so the IB side (dkd's own IB
//! role, or the real one) can be tested against what happens in production.
//!
//! One decision per request ([`Live::decide`]), taken once the request is accepted (so listed
//! BSNs can be matched), then applied where it belongs: the soap layer writes faults, unsigned or
//! badly signed answers and broken bodies; the transport delays, hangs, closes or answers 503
//! ([`Wire`]). The push reads [`Live::push`]. Nothing here touches the index: every effect is on
//! the wire only. Which requests a `rate` picks is a deterministic counter (see [`picks`]), so a
//! test sees the same pattern on every run.

use crate::soap::fault::DkdCode;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How the answer goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerKind {
    /// The right answer, `delay_ms` late.
    #[serde(rename = "delay")]
    Delay,
    /// No answer until the client gives up (or the server stops).
    #[serde(rename = "hang")]
    Hang,
    /// The connection closed after the request, without an answer.
    #[serde(rename = "reset")]
    Reset,
    /// HTTP 503 with a plain-text body: no SOAP at all.
    #[serde(rename = "http-503")]
    Http503,
    /// A SOAP Fault with dkd code `fault_code`.
    #[serde(rename = "fault")]
    Fault,
    /// The right answer without `wsse:Security`.
    #[serde(rename = "unsigned")]
    Unsigned,
    /// The right answer, signed, with a SignatureValue that does not verify.
    #[serde(rename = "bad-signature")]
    BadSignature,
    /// The right answer, signed, without `wsse11:SignatureConfirmation`.
    #[serde(rename = "no-confirmation")]
    NoConfirmation,
    /// A signed answer that the schema refuses (ClientSuwi without Burgerservicenr; an unexpected
    /// element in any other answer).
    #[serde(rename = "schema-invalid")]
    SchemaInvalid,
    /// A signed ClientSuwi about another BSN than the one asked.
    #[serde(rename = "other-bsn")]
    OtherBsn,
}

impl AnswerKind {
    /// Every scenario, for documentation and tests.
    pub const ALL: [AnswerKind; 10] = [
        AnswerKind::Delay,
        AnswerKind::Hang,
        AnswerKind::Reset,
        AnswerKind::Http503,
        AnswerKind::Fault,
        AnswerKind::Unsigned,
        AnswerKind::BadSignature,
        AnswerKind::NoConfirmation,
        AnswerKind::SchemaInvalid,
        AnswerKind::OtherBsn,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            AnswerKind::Delay => "delay",
            AnswerKind::Hang => "hang",
            AnswerKind::Reset => "reset",
            AnswerKind::Http503 => "http-503",
            AnswerKind::Fault => "fault",
            AnswerKind::Unsigned => "unsigned",
            AnswerKind::BadSignature => "bad-signature",
            AnswerKind::NoConfirmation => "no-confirmation",
            AnswerKind::SchemaInvalid => "schema-invalid",
            AnswerKind::OtherBsn => "other-bsn",
        }
    }
}

/// How the push to the IB goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// Nothing is sent: the IB's verwijsindex goes stale.
    Paused,
    /// A share (`push_share`) of the updates is never sent: the IB's verwijsindex is incomplete.
    Partial,
}

/// `[scenario]`, and the JSON body of `PUT /scenario`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScenarioConfig {
    /// Must be `true` for a server to start with a scenario (and for `PUT /scenario`).
    pub enabled: bool,
    /// How answers go wrong; none: answered correctly.
    pub answer: Option<AnswerKind>,
    /// Share of the (matching) requests affected, 0..=1; picked by a deterministic counter.
    pub rate: f64,
    /// Only requests about these BSNs (empty: every BSN).
    pub bsns: Vec<String>,
    /// `delay`: how late.
    pub delay_ms: u64,
    /// `fault`: the dkd code of the fault (see `soap::emulated_fault` for the codes).
    pub fault_code: String,
    /// How the push goes wrong; none: pushed correctly.
    pub push: Option<PushKind>,
    /// `push = "partial"`: share of the updates never sent, 0..=1 (chosen by BSN, so the same
    /// persons are missing every time).
    pub push_share: f64,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            enabled: false,
            answer: None,
            rate: 1.0,
            bsns: Vec::new(),
            delay_ms: 2000,
            fault_code: DkdCode::Internal.as_str().into(),
            push: None,
            push_share: 0.5,
        }
    }
}

impl ScenarioConfig {
    /// Whether anything goes wrong.
    pub fn is_active(&self) -> bool {
        self.answer.is_some() || self.push.is_some()
    }

    /// Checks the values; `fault_code_known` says whether a dkd fault code can be emulated.
    pub fn validate(&self, fault_code_known: impl Fn(&str) -> bool) -> Result<(), String> {
        if self.is_active() && !self.enabled {
            return Err(format!(
                "[scenario] {} makes this server answer wrongly on purpose: set scenario.enabled = true to run it",
                self.summary()
            ));
        }
        for (name, v) in [("rate", self.rate), ("push_share", self.push_share)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("scenario.{name} {v} must be between 0 and 1"));
            }
        }
        for b in &self.bsns {
            if crate::suwiml::types::Bsn::parse(b).is_err() {
                return Err(format!("scenario.bsns: {b:?} is not a valid BSN"));
            }
        }
        if self.answer == Some(AnswerKind::Fault) && !fault_code_known(&self.fault_code) {
            return Err(format!(
                "scenario.fault_code {:?} is not a dkd fault code dkd can emulate ({})",
                self.fault_code,
                crate::soap::EMULATED_FAULTS.map(DkdCode::as_str).join(", ")
            ));
        }
        if self.delay_ms > 600_000 {
            return Err("scenario.delay_ms must be at most 600000 (10 minutes)".into());
        }
        Ok(())
    }

    /// One line saying what goes wrong, for the banner, the log, `/readyz` and the status page.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = self.answer {
            let mut s = format!("answer = {}", a.name());
            match a {
                AnswerKind::Delay => s.push_str(&format!(" ({} ms)", self.delay_ms)),
                AnswerKind::Fault => s.push_str(&format!(" ({})", self.fault_code)),
                _ => {}
            }
            if self.rate < 1.0 {
                s.push_str(&format!(", rate {}", self.rate));
            }
            if !self.bsns.is_empty() {
                s.push_str(&format!(", {} listed BSNs", self.bsns.len()));
            }
            parts.push(s);
        }
        match self.push {
            Some(PushKind::Paused) => parts.push("push = paused".into()),
            Some(PushKind::Partial) => {
                parts.push(format!("push = partial ({} withheld)", self.push_share))
            }
            None => {}
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }
}

/// What one request gets, decided once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// See [`AnswerKind::Delay`].
    Delay(Duration),
    /// See [`AnswerKind::Hang`].
    Hang,
    /// See [`AnswerKind::Reset`].
    Reset,
    /// See [`AnswerKind::Http503`].
    Unavailable,
    /// A SOAP Fault with this dkd code.
    Fault(DkdCode),
    /// See [`AnswerKind::Unsigned`].
    Unsigned,
    /// See [`AnswerKind::BadSignature`].
    BadSignature,
    /// See [`AnswerKind::NoConfirmation`].
    NoConfirmation,
    /// See [`AnswerKind::SchemaInvalid`].
    SchemaInvalid,
    /// See [`AnswerKind::OtherBsn`].
    OtherBsn,
}

impl Effect {
    /// The transport's part of the effect, if it has one.
    pub fn wire(&self) -> Option<Wire> {
        match self {
            Effect::Delay(d) => Some(Wire::Delay(*d)),
            Effect::Hang => Some(Wire::Hang),
            Effect::Reset => Some(Wire::Reset),
            Effect::Unavailable => Some(Wire::Unavailable),
            _ => None,
        }
    }
}

/// What the transport does instead of (or before) sending the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Wait, then send the answer.
    Delay(Duration),
    /// Send nothing until the client gives up (bounded by [`HANG_LIMIT`] and the shutdown).
    Hang,
    /// Close the connection without an answer.
    Reset,
    /// HTTP 503, no SOAP.
    Unavailable,
}

impl Wire {
    /// The outcome recorded (audit trail, log, metrics) when the client gets no SOAP answer at
    /// all; `None` for a delay, which still delivers the answer.
    pub fn unanswered(self) -> Option<&'static str> {
        match self {
            Wire::Delay(_) => None,
            Wire::Hang => Some("scenario:hang"),
            Wire::Reset => Some("scenario:reset"),
            Wire::Unavailable => Some("scenario:http-503"),
        }
    }
}

/// The longest a `hang` holds a request: the client has given up long before, and the task must
/// end some time.
pub const HANG_LIMIT: Duration = Duration::from_secs(600);

/// How often a server whose scenario is active says so in its log ([`warn_if_active`]), the
/// first time at start-up.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The log line that keeps anyone reading the log from mistaking this server for a well-behaved
/// gemeente: a warning naming the endpoint and what goes wrong, only while something does.
/// Whether it was written.
pub fn warn_if_active(live: &Live, url: &str) -> bool {
    if !live.is_active() {
        return false;
    }
    tracing::warn!(%url, scenario = %live.summary(), "SCENARIO ACTIVE: this gemeente answers wrongly on purpose");
    true
}

/// What the push does with one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDecision {
    /// Deliver it.
    Send,
    /// Send nothing now (paused).
    Hold,
    /// Never send it (partial): parked with a reason naming the scenario.
    Withhold,
}

/// The scenario of a running server, switchable (`PUT /scenario`).
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<Active>>,
    /// Matching requests seen since the scenario was set: what `rate` counts.
    seen: AtomicU64,
}

#[derive(Debug)]
struct Active {
    cfg: ScenarioConfig,
    /// `cfg.fault_code` read (`validate` refused an unknown one; 0099 should one slip through).
    fault: DkdCode,
    bsns: HashSet<String>,
    rate_ppm: u64,
    push_ppm: u64,
}

impl Active {
    fn new(cfg: ScenarioConfig) -> Active {
        Active {
            fault: DkdCode::parse(&cfg.fault_code).unwrap_or(DkdCode::Internal),
            bsns: cfg.bsns.iter().cloned().collect(),
            rate_ppm: ppm(cfg.rate),
            push_ppm: ppm(cfg.push_share),
            cfg,
        }
    }
}

fn ppm(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * 1e6).round() as u64
}

/// Whether the `n`-th matching request (from 0) is picked at `rate_ppm`: exactly the requests
/// where the running count of picks, `ceil(n × rate)`, goes up. Rate 0.5 picks requests 0, 2,
/// 4…; 0.25 picks 0, 4, 8…; 1 every one. The first matching request is always picked (rate > 0),
/// so a test needs no warm-up.
pub fn picks(n: u64, rate_ppm: u64) -> bool {
    let ceil = |k: u64| (u128::from(k) * u128::from(rate_ppm)).div_ceil(1_000_000);
    ceil(n + 1) > ceil(n)
}

/// A stable share of the BSNs: FNV-1a of the digits, against `ppm`.
fn in_share(bsn: &str, ppm: u64) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bsn.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 1_000_000 < ppm
}

impl Live {
    /// The scenario of a server configured with `cfg`; `None` unless `cfg.enabled`.
    pub fn new(cfg: &ScenarioConfig) -> Option<Arc<Live>> {
        cfg.enabled.then(|| {
            Arc::new(Live {
                current: RwLock::new(Arc::new(Active::new(cfg.clone()))),
                seen: AtomicU64::new(0),
            })
        })
    }

    fn active(&self) -> Arc<Active> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The scenario in force.
    pub fn get(&self) -> ScenarioConfig {
        self.active().cfg.clone()
    }

    /// Switches to `cfg` (validated by the caller); the rate counter starts again.
    /// `enabled = false` in `cfg` clears the scenario (the server stays able to take a new one).
    pub fn set(&self, mut cfg: ScenarioConfig) {
        if !cfg.enabled {
            cfg = ScenarioConfig::default();
        }
        cfg.enabled = true;
        let next = Arc::new(Active::new(cfg));
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        self.seen.store(0, Ordering::Relaxed);
    }

    /// What the request about `bsn` gets; `None`: the right answer.
    pub fn decide(&self, bsn: &str) -> Option<Effect> {
        let a = self.active();
        let kind = a.cfg.answer?;
        if !a.bsns.is_empty() && !a.bsns.contains(bsn) {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if !picks(n, a.rate_ppm) {
            return None;
        }
        Some(match kind {
            AnswerKind::Delay => Effect::Delay(Duration::from_millis(a.cfg.delay_ms)),
            AnswerKind::Hang => Effect::Hang,
            AnswerKind::Reset => Effect::Reset,
            AnswerKind::Http503 => Effect::Unavailable,
            AnswerKind::Fault => Effect::Fault(a.fault),
            AnswerKind::Unsigned => Effect::Unsigned,
            AnswerKind::BadSignature => Effect::BadSignature,
            AnswerKind::NoConfirmation => Effect::NoConfirmation,
            AnswerKind::SchemaInvalid => Effect::SchemaInvalid,
            AnswerKind::OtherBsn => Effect::OtherBsn,
        })
    }

    /// What the push does with the update about `bsn`.
    pub fn push(&self, bsn: &str) -> PushDecision {
        let a = self.active();
        match a.cfg.push {
            None => PushDecision::Send,
            Some(PushKind::Paused) => PushDecision::Hold,
            Some(PushKind::Partial) if in_share(bsn, a.push_ppm) => PushDecision::Withhold,
            Some(PushKind::Partial) => PushDecision::Send,
        }
    }

    /// Whether the push is paused.
    pub fn push_paused(&self) -> bool {
        self.active().cfg.push == Some(PushKind::Paused)
    }

    /// Whether anything goes wrong now.
    pub fn is_active(&self) -> bool {
        self.active().cfg.is_active()
    }

    /// One line saying what goes wrong.
    pub fn summary(&self) -> String {
        self.active().cfg.summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_picks_the_same_requests_every_time() {
        let picked = |rate: f64| -> Vec<u64> { (0..12).filter(|n| picks(*n, ppm(rate))).collect() };
        assert_eq!(picked(1.0), (0..12).collect::<Vec<_>>());
        assert_eq!(picked(0.5), [0, 2, 4, 6, 8, 10]);
        assert_eq!(picked(0.25), [0, 4, 8]);
        assert_eq!(picked(0.0), Vec::<u64>::new());
        assert_eq!(
            (0..1000).filter(|n| picks(*n, ppm(0.3))).count(),
            300,
            "exactly the share over a whole number of periods"
        );
    }

    #[test]
    fn listed_bsns_are_the_only_ones_affected_and_set_restarts_the_count() {
        let cfg = ScenarioConfig {
            enabled: true,
            answer: Some(AnswerKind::Http503),
            rate: 0.5,
            bsns: vec!["123456782".into()],
            ..ScenarioConfig::default()
        };
        let live = Live::new(&cfg).expect("enabled");
        assert_eq!(live.decide("111222333"), None, "not listed");
        assert_eq!(live.decide("123456782"), Some(Effect::Unavailable));
        assert_eq!(live.decide("123456782"), None);
        assert_eq!(live.decide("123456782"), Some(Effect::Unavailable));
        live.set(cfg.clone());
        assert_eq!(live.decide("123456782"), Some(Effect::Unavailable));
        live.set(ScenarioConfig::default());
        assert_eq!(live.decide("123456782"), None, "cleared");
        assert!(!live.is_active());
        assert!(live.get().enabled, "a cleared scenario can be set again");
    }

    #[test]
    fn a_scenario_without_enabled_is_refused_by_name() {
        let cfg = ScenarioConfig {
            answer: Some(AnswerKind::Unsigned),
            ..ScenarioConfig::default()
        };
        let e = cfg.validate(|_| true).expect_err("not enabled");
        assert!(e.contains("scenario.enabled = true"), "{e}");
        assert!(e.contains("unsigned"), "{e}");
        assert!(Live::new(&cfg).is_none());
        let ok = ScenarioConfig {
            enabled: true,
            ..cfg
        };
        ok.validate(|_| true).expect("enabled");
        for bad in [
            ScenarioConfig {
                rate: 1.5,
                ..ok.clone()
            },
            ScenarioConfig {
                bsns: vec!["123456789".into()],
                ..ok.clone()
            },
            ScenarioConfig {
                answer: Some(AnswerKind::Fault),
                fault_code: "9999".into(),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate(|c| c == "0099").is_err(), "{bad:?}");
        }
    }

    /// Collects what a `tracing` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_periodic_warning_names_the_scenario_only_while_one_is_active() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let live = Live::new(&ScenarioConfig {
            enabled: true,
            answer: Some(AnswerKind::Fault),
            fault_code: "0021".into(),
            ..ScenarioConfig::default()
        })
        .expect("enabled");
        let url = "https://127.0.0.1:8443/GSDDossierReintegratie-v0200";
        tracing::subscriber::with_default(subscriber, || {
            assert!(warn_if_active(&live, url));
            live.set(ScenarioConfig::default());
            assert!(
                !warn_if_active(&live, url),
                "cleared: nothing to warn about"
            );
        });
        let text = String::from_utf8(out.0.lock().expect("log").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        for part in ["WARN", "SCENARIO ACTIVE", url, "answer = fault (0021)"] {
            assert!(lines[0].contains(part), "{part}: {text}");
        }
        assert_eq!(WARN_EVERY, Duration::from_secs(60));
    }

    #[test]
    fn partial_push_withholds_a_stable_share_by_bsn() {
        let live = Live::new(&ScenarioConfig {
            enabled: true,
            push: Some(PushKind::Partial),
            push_share: 0.5,
            ..ScenarioConfig::default()
        })
        .expect("enabled");
        let people = crate::chain::demo::generate(400, time::macros::date!(2026 - 11 - 22));
        let withheld: Vec<bool> = people
            .iter()
            .map(|p| live.push(p.bsn.as_str()) == PushDecision::Withhold)
            .collect();
        let n = withheld.iter().filter(|w| **w).count();
        assert!((120..=280).contains(&n), "about half: {n}");
        let again: Vec<bool> = people
            .iter()
            .map(|p| live.push(p.bsn.as_str()) == PushDecision::Withhold)
            .collect();
        assert_eq!(withheld, again);
    }
}
