//! The "Toets LKS" signals: recorded by the IB role when a question finds LKS in the look-back,
//! and, on the gemeente side, the vangnetter cases fetched from the IB's portal.
//!
//! Layout (in tree `index`):
//! - `s` gemeente(4) day(YYYYMMDD) seq(u64 BE) → JSON [`Signal`] (IB role);
//! - `w` BSN(9) signal day(YYYYMMDD) → JSON [`Case`] (gemeente role);
//! - `f` report file name → fetch time (i64 BE): reports already fetched.

use super::{Store, StoreError};
use crate::suwiml::model::Provision;
use crate::suwiml::types::{Bsn, Datum};
use serde::{Deserialize, Serialize};

const P_SIGNAL: u8 = b's';
const P_CASE: u8 = b'w';
const P_FETCHED: u8 = b'f';

/// One signal: UWV's question found LKS granted or paid by this gemeente in the look-back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The person.
    pub bsn: Bsn,
    /// The responsible gemeente.
    pub gemeente: String,
    /// When the question was answered (unix seconds).
    pub at: i64,
    /// The question's `wsa:MessageID`.
    pub message_id: String,
    /// The asking party's OIN (`wsa:From`, else the TLS client's).
    pub asking_oin: String,
    /// The LKS provisions that decided it.
    pub provisions: Vec<Provision>,
}

/// A vangnetter case at the gemeente: a person for whom the gemeente takes over the
/// re-integration duty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// The person.
    pub bsn: Bsn,
    /// The gemeente the signal was for.
    pub gemeente: String,
    /// The signal's date: the milestones count from here unless a first sick day is known.
    pub signal_date: Datum,
    /// The first day of sickness, when supplied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sick_day: Option<Datum>,
    /// The LKS provisions the IB reported.
    pub provisions: Vec<Provision>,
    /// The report file it came from.
    pub source: String,
}

fn day_key(prefix: u8, a: &[u8], day: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + a.len() + 8 + 8);
    k.push(prefix);
    k.extend_from_slice(a);
    k.extend_from_slice(day.as_bytes());
    k
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Io(e.to_string()))
}

impl Store {
    /// Records a signal under its gemeente and day.
    pub fn ib_record_signal(&self, s: &Signal) -> Result<(), StoreError> {
        let day = time::OffsetDateTime::from_unix_timestamp(s.at)
            .map(|t| Datum::from_date(t.date()))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let mut k = day_key(P_SIGNAL, s.gemeente.as_bytes(), day.as_str());
        k.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.index.insert(k, json(s)?)?;
        Ok(())
    }

    /// Adds signals delivered from outside (`dkd signals publish`) under their gemeente and day,
    /// in one atomic write: all of them or, on an error, none. A signal equal to one already stored
    /// (or earlier in `signals`) is skipped, so publishing a file again changes nothing. Returns
    /// how many were added.
    pub fn ib_publish_signals(&self, signals: &[Signal]) -> Result<u64, StoreError> {
        let mut b = super::kv::Batch::default();
        let mut known: std::collections::HashMap<(&str, Datum), Vec<Signal>> =
            std::collections::HashMap::new();
        let mut added = 0;
        for s in signals {
            let day = time::OffsetDateTime::from_unix_timestamp(s.at)
                .map(|t| Datum::from_date(t.date()))
                .map_err(|e| StoreError::Io(e.to_string()))?;
            let there = match known.entry((s.gemeente.as_str(), day)) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(self.ib_signals(&s.gemeente, day.as_str())?)
                }
            };
            if there.contains(s) {
                continue;
            }
            let mut k = day_key(P_SIGNAL, s.gemeente.as_bytes(), day.as_str());
            k.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
            b.insert(k, json(s)?);
            there.push(s.clone());
            added += 1;
        }
        self.index.apply_batch(b)?;
        Ok(added)
    }

    /// The days with signals for a gemeente, oldest first, with their counts.
    pub fn ib_signal_days(&self, gemeente: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for k in self
            .index
            .scan_prefix(day_key(P_SIGNAL, gemeente.as_bytes(), ""))
            .keys()
        {
            let k = k?;
            let day = String::from_utf8_lossy(k.get(5..13).unwrap_or_default()).into_owned();
            match out.last_mut() {
                Some((d, n)) if *d == day => *n += 1,
                _ => out.push((day, 1)),
            }
        }
        Ok(out)
    }

    /// The signals of one gemeente on one day, in the order they were recorded.
    pub fn ib_signals(&self, gemeente: &str, day: &str) -> Result<Vec<Signal>, StoreError> {
        let mut out = Vec::new();
        if day.len() != 8 {
            return Ok(out);
        }
        for item in self
            .index
            .scan_prefix(day_key(P_SIGNAL, gemeente.as_bytes(), day))
        {
            let (_, v) = item?;
            out.push(
                serde_json::from_slice(&v).map_err(|e| StoreError::Io(format!("signal: {e}")))?,
            );
        }
        Ok(out)
    }

    /// How many signals a report held when it was last fetched (`None`: never fetched). A
    /// day's report grows while the day lasts, so it is fetched again when the portal lists more.
    pub fn fetched(&self, file: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .index
            .get(day_key(P_FETCHED, file.as_bytes(), ""))?
            .map(|v| {
                v.get(8..16)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0)
            }))
    }

    /// Stores the cases of one fetched report and marks it fetched with the number of signals
    /// the portal listed for it, in one atomic write. A case
    /// already known (same BSN and signal day) is kept as it is. Returns how many were new.
    pub fn add_cases(&self, file: &str, cases: &[Case], signals: u64) -> Result<u64, StoreError> {
        let mut b = super::kv::Batch::default();
        let mut new = 0;
        let mut seen = std::collections::HashSet::new();
        for c in cases {
            let k = day_key(P_CASE, c.bsn.as_bytes(), c.signal_date.as_str());
            if self.index.get(&k)?.is_some() || !seen.insert(k.clone()) {
                continue;
            }
            b.insert(k, json(c)?);
            new += 1;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut v = now.to_be_bytes().to_vec();
        v.extend_from_slice(&signals.to_be_bytes());
        b.insert(day_key(P_FETCHED, file.as_bytes(), ""), v);
        self.index.apply_batch(b)?;
        Ok(new)
    }

    /// Every vangnetter case, by BSN then signal day.
    pub fn cases(&self) -> Result<Vec<Case>, StoreError> {
        let mut out = Vec::new();
        for item in self.index.scan_prefix([P_CASE]) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Io(format!("case: {e}")))?);
        }
        Ok(out)
    }

    /// Records the first sick day on every case of a BSN; returns how many cases it changed.
    pub fn set_first_sick_day(&self, bsn: &Bsn, day: Datum) -> Result<u64, StoreError> {
        let mut b = super::kv::Batch::default();
        let mut n = 0;
        for item in self.index.scan_prefix(day_key(P_CASE, bsn.as_bytes(), "")) {
            let (k, v) = item?;
            let mut c: Case =
                serde_json::from_slice(&v).map_err(|e| StoreError::Io(format!("case: {e}")))?;
            c.first_sick_day = Some(day);
            b.insert(k, json(&c)?);
            n += 1;
        }
        self.index.apply_batch(b)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(bsn: &str, at: i64, id: &str) -> Signal {
        Signal {
            bsn: Bsn::parse(bsn).expect("bsn"),
            gemeente: "0363".into(),
            at,
            message_id: id.into(),
            asking_oin: "00000001234567890000".into(),
            provisions: Vec::new(),
        }
    }

    on_both! {
        fn signals_by_gemeente_and_day_and_cases_once_each(s) {
            let s = s;
            // 2026-11-21 and 2026-11-22, UTC noon.
            let (d1, d2) = (1_795_262_400, 1_795_348_800);
            s.ib_record_signal(&signal("123456782", d1, "m-1")).expect("record");
            let published = [signal("111222333", d2, "m-2"), signal("123456782", d2, "m-3")];
            assert_eq!(s.ib_publish_signals(&published).expect("publish"), 2);
            assert_eq!(s.ib_publish_signals(&published).expect("again"), 0, "a repeat adds nothing");
            assert_eq!(
                s.ib_signal_days("0363").expect("days"),
                [("20261121".to_owned(), 1), ("20261122".to_owned(), 2)]
            );
            let ids: Vec<String> = s
                .ib_signals("0363", "20261122")
                .expect("signals")
                .into_iter()
                .map(|x| x.message_id)
                .collect();
            assert_eq!(ids, ["m-2", "m-3"], "in the order recorded");

            let case = |bsn: &str, day: &str| Case {
                bsn: Bsn::parse(bsn).expect("bsn"),
                gemeente: "0363".into(),
                signal_date: Datum::parse(day).expect("day"),
                first_sick_day: None,
                provisions: Vec::new(),
                source: "0363_LKSRi_rapport_20261122.csv".into(),
            };
            let file = "0363_LKSRi_rapport_20261122.csv";
            assert_eq!(s.fetched(file).expect("fetched"), None);
            let cases = [case("123456782", "20261122"), case("111222333", "20261122")];
            assert_eq!(s.add_cases(file, &cases, 2).expect("add"), 2);
            assert_eq!(s.add_cases(file, &cases, 3).expect("again"), 0);
            assert_eq!(s.fetched(file).expect("fetched"), Some(3));
            let sick = Datum::parse("20261101").expect("day");
            assert_eq!(s.set_first_sick_day(&cases[0].bsn, sick).expect("sick day"), 1);
            let stored = s.cases().expect("cases");
            assert_eq!(stored.len(), 2);
            assert_eq!(
                stored.iter().find(|c| c.bsn == cases[0].bsn).and_then(|c| c.first_sick_day),
                Some(sick)
            );
        }
    }
}
