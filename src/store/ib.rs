//! The IB role's records: the verwijsindex as the IB keeps it (who holds data for which BSN, per
//! cluster) and the Aanlevermonitor figures.
//!
//! Layout (in tree `index`):
//! - `v` BSN(9) cluster(2, space-padded) gemeente(4) → JSON [`IbEntry`]: one BSN's lookup is one
//!   prefix scan;
//! - `d` gemeente(4) cluster(2) day(YYYYMMDD) → JSON [`DayFigures`]: routed queries per day;
//! - `l` gemeente(4) → JSON [`Reachability`]: the last routing attempt;
//! - `c` `ib:<gemeente>:<cluster>:<name>` → u64 BE: updates received / that changed the index.

use super::outbox::counter_key;
use super::{Store, StoreError};
use crate::suwiml::types::Bsn;
use crate::suwiml::verwijsindex::IndDkd;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const P_VERWIJS: u8 = b'v';
const P_DAY: u8 = b'd';
const P_REACH: u8 = b'l';
/// Errors kept per gemeente, cluster and day.
const ERRORS_PER_DAY: usize = 10;

/// One line of the IB's verwijsindex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IbEntry {
    /// When the entry last changed (unix seconds): the Aanlevermonitor's mutation date.
    pub mutated_at: i64,
    /// When the last update for it arrived (unix seconds).
    pub received_at: i64,
    /// OIN of the party that sent it.
    pub oin: String,
}

/// Routed queries to one gemeente for one cluster on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFigures {
    /// Answered (ClientSuwi or NietsGevonden).
    pub succeeded: u64,
    /// Timed out, unreachable, refused or unusable.
    pub failed: u64,
    /// The first errors of the day, for the monitor.
    pub errors: Vec<String>,
}

/// The last routing attempt to a gemeente.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    /// Unix seconds.
    pub at: i64,
    /// Whether it answered.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// Routed-query figures per (gemeente, cluster), then per day (YYYYMMDD).
pub type DayFiguresMap = BTreeMap<(String, String), BTreeMap<String, DayFigures>>;

/// The verwijsindex figures of one gemeente and cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFigures {
    /// BSNs in the index.
    pub bsns: u64,
    /// Oldest and newest mutation (unix seconds).
    pub oldest: Option<i64>,
    /// See `oldest`.
    pub newest: Option<i64>,
    /// IBVerwijsindex updates received.
    pub received: u64,
    /// Updates that changed the index (the rest repeated what it already said).
    pub changed: u64,
}

fn pad_cluster(c: &str) -> [u8; 2] {
    let b = c.as_bytes();
    [
        b.first().copied().unwrap_or(b' '),
        b.get(1).copied().unwrap_or(b' '),
    ]
}

fn unpad(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_owned()
}

fn verwijs_key(bsn: &Bsn, cluster: &str, gemeente: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.push(P_VERWIJS);
    k.extend_from_slice(bsn.as_bytes());
    k.extend_from_slice(&pad_cluster(cluster));
    k.extend_from_slice(gemeente.as_bytes());
    k
}

fn counter_name(gemeente: &str, cluster: &str, what: &str) -> String {
    format!("ib:{gemeente}:{cluster}:{what}")
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Io(e.to_string()))
}

impl Store {
    /// Applies one IBVerwijsindex update for a gemeente: present inserts (or refreshes) the entry,
    /// absent removes it. Returns whether the index changed. Atomic with its counters, and safe
    /// with concurrent requests (a sled transaction).
    pub fn ib_apply(
        &self,
        gemeente: &str,
        bsn: &Bsn,
        cluster: &str,
        ind: IndDkd,
        oin: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let k = verwijs_key(bsn, cluster, gemeente);
        let received = counter_key(&counter_name(gemeente, cluster, "received"));
        let changed_key = counter_key(&counter_name(gemeente, cluster, "changed"));
        let bump = |tx: &mut super::kv::Txn<'_>, key: &[u8]| -> Result<(), StoreError> {
            let n = tx
                .get(key)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            tx.put(key, Some(&(n + 1).to_be_bytes()))
        };
        self.index.transaction(|tx| {
            let old = tx.get(&k)?;
            let changed = match ind {
                IndDkd::Present => {
                    let mutated_at = match &old {
                        Some(v) => serde_json::from_slice::<IbEntry>(v)
                            .map(|e| e.mutated_at)
                            .unwrap_or(now),
                        None => now,
                    };
                    let e = IbEntry {
                        mutated_at,
                        received_at: now,
                        oin: oin.to_owned(),
                    };
                    tx.put(&k, Some(&json(&e)?))?;
                    old.is_none()
                }
                IndDkd::Absent => {
                    tx.put(&k, None)?;
                    old.is_some()
                }
            };
            bump(tx, &received)?;
            if changed {
                bump(tx, &changed_key)?;
            }
            Ok(changed)
        })
    }

    /// The gemeenten that hold data for a BSN in a cluster, in gemeentecode order.
    pub fn ib_gemeenten_for(
        &self,
        bsn: &Bsn,
        cluster: &str,
    ) -> Result<Vec<(String, IbEntry)>, StoreError> {
        let mut prefix = vec![P_VERWIJS];
        prefix.extend_from_slice(bsn.as_bytes());
        prefix.extend_from_slice(&pad_cluster(cluster));
        let mut out = Vec::new();
        for item in self.index.scan_prefix(&prefix) {
            let (k, v) = item?;
            let e: IbEntry = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Io(format!("verwijsindex entry: {e}")))?;
            out.push((String::from_utf8_lossy(&k[12..]).into_owned(), e));
        }
        Ok(out)
    }

    /// The verwijsindex figures per (gemeente, cluster). Walks the index: for reports.
    pub fn ib_index_figures(&self) -> Result<BTreeMap<(String, String), IndexFigures>, StoreError> {
        let mut out: BTreeMap<(String, String), IndexFigures> = BTreeMap::new();
        for item in self.index.scan_prefix([P_VERWIJS]) {
            let (k, v) = item?;
            let (Some(c), Some(g)) = (k.get(10..12), k.get(12..)) else {
                continue;
            };
            let e: IbEntry = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Io(format!("verwijsindex entry: {e}")))?;
            let f = out
                .entry((String::from_utf8_lossy(g).into_owned(), unpad(c)))
                .or_default();
            f.bsns += 1;
            f.oldest = Some(f.oldest.map_or(e.mutated_at, |o| o.min(e.mutated_at)));
            f.newest = Some(f.newest.map_or(e.mutated_at, |o| o.max(e.mutated_at)));
        }
        // Counters exist also for gemeente/cluster pairs whose index is empty now.
        let mut prefix = counter_key("ib:");
        let plen = prefix.len();
        for item in self.index.scan_prefix(&prefix) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[plen..]).into_owned();
            let mut parts = name.splitn(3, ':');
            let (Some(g), Some(c), Some(what)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let n = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let f = out.entry((g.to_owned(), c.to_owned())).or_default();
            match what {
                "received" => f.received = n,
                "changed" => f.changed = n,
                _ => {}
            }
        }
        prefix.clear();
        Ok(out)
    }

    /// Counts one routed query (and its error) for the day.
    pub fn ib_record_route(
        &self,
        gemeente: &str,
        cluster: &str,
        day: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut k = vec![P_DAY];
        k.extend_from_slice(gemeente.as_bytes());
        k.extend_from_slice(&pad_cluster(cluster));
        k.extend_from_slice(day.as_bytes());
        // A transaction, retried on a concurrent update, so no count is lost.
        self.index.transaction(|tx| {
            let mut f: DayFigures = tx
                .get(&k)?
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            match error {
                None => f.succeeded += 1,
                Some(e) => {
                    f.failed += 1;
                    if f.errors.len() < ERRORS_PER_DAY {
                        f.errors.push(e.to_owned());
                    }
                }
            }
            tx.put(&k, Some(&json(&f)?))
        })?;
        let r = Reachability {
            at: now,
            ok: error.is_none(),
            error: error.map(str::to_owned),
        };
        let mut lk = vec![P_REACH];
        lk.extend_from_slice(gemeente.as_bytes());
        self.index.insert(lk, json(&r)?)?;
        Ok(())
    }

    /// Routed-query figures per (gemeente, cluster) and day (YYYYMMDD) from `since_day` on.
    pub fn ib_day_figures(&self, since_day: &str) -> Result<DayFiguresMap, StoreError> {
        let mut out = DayFiguresMap::new();
        for item in self.index.scan_prefix([P_DAY]) {
            let (k, v) = item?;
            let (Some(g), Some(c), Some(d)) = (k.get(1..5), k.get(5..7), k.get(7..)) else {
                continue;
            };
            let day = String::from_utf8_lossy(d).into_owned();
            if day.as_str() < since_day {
                continue;
            }
            let f: DayFigures = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Io(format!("day figures: {e}")))?;
            out.entry((String::from_utf8_lossy(g).into_owned(), unpad(c)))
                .or_default()
                .insert(day, f);
        }
        Ok(out)
    }

    /// The last routing attempt per gemeente.
    pub fn ib_reachability(&self) -> Result<BTreeMap<String, Reachability>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.index.scan_prefix([P_REACH]) {
            let (k, v) = item?;
            let r: Reachability = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Io(format!("reachability: {e}")))?;
            out.insert(String::from_utf8_lossy(&k[1..]).into_owned(), r);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    on_both! {
        fn apply_counts_changes_once_and_lists_per_bsn(s) {
            let s = s;
            let b = Bsn::parse("123456782").expect("bsn");
            let oin = "00000099000000000002";
            assert!(s
                .ib_apply("0363", &b, "04", IndDkd::Present, oin, 100)
                .expect("a"));
            assert!(!s
                .ib_apply("0363", &b, "04", IndDkd::Present, oin, 200)
                .expect("b"));
            assert!(s
                .ib_apply("0599", &b, "04", IndDkd::Present, oin, 300)
                .expect("c"));
            let g = s.ib_gemeenten_for(&b, "04").expect("for");
            assert_eq!(g.len(), 2);
            assert_eq!(
                (g[0].0.as_str(), g[0].1.mutated_at, g[0].1.received_at),
                ("0363", 100, 200)
            );
            assert!(s.ib_gemeenten_for(&b, "01").expect("other").is_empty());
            assert!(s
                .ib_apply("0363", &b, "04", IndDkd::Absent, oin, 400)
                .expect("d"));
            assert!(!s
                .ib_apply("0363", &b, "04", IndDkd::Absent, oin, 500)
                .expect("e"));
            let f = s.ib_index_figures().expect("figures");
            let a = &f[&("0363".to_owned(), "04".to_owned())];
            assert_eq!((a.bsns, a.received, a.changed), (0, 4, 2));
            let m = &f[&("0599".to_owned(), "04".to_owned())];
            assert_eq!((m.bsns, m.oldest, m.newest), (1, Some(300), Some(300)));
        }
    }

    on_both! {
        fn concurrent_updates_and_routed_queries_lose_no_count(s) {
            let s = s;
            let bsns: Vec<Bsn> = (100_000_000u64..100_001_000)
                .filter_map(|n| Bsn::parse(&n.to_string()).ok())
                .take(24)
                .collect();
            assert!(bsns.len() >= 20);
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (s, bsns) = (s.clone(), bsns.clone());
                    std::thread::spawn(move || {
                        for (i, b) in bsns.iter().enumerate().filter(|(i, _)| i % 4 == t) {
                            s.ib_apply("0363", b, "04", IndDkd::Present, "00000001234567890000", 7)
                                .expect("apply");
                            s.ib_record_route("0363", "04", "20261121", (i % 2 == 0).then_some("x"), 7)
                                .expect("route");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("thread");
            }
            let f = s.ib_index_figures().expect("figures")[&("0363".to_owned(), "04".to_owned())].clone();
            let n = bsns.len() as u64;
            assert_eq!((f.bsns, f.received, f.changed), (n, n, n));
            let d = s.ib_day_figures("20261121").expect("days")[&("0363".to_owned(), "04".to_owned())]["20261121"].clone();
            assert_eq!(d.succeeded + d.failed, n);
        }
    }

    on_both! {
        fn route_figures_per_day(s) {
            let s = s;
            s.ib_record_route("0363", "04", "20261121", None, 1)
                .expect("r");
            s.ib_record_route("0363", "04", "20261122", None, 2)
                .expect("r");
            s.ib_record_route("0363", "04", "20261122", Some("timeout"), 3)
                .expect("r");
            let f = s.ib_day_figures("20261122").expect("f");
            let days = &f[&("0363".to_owned(), "04".to_owned())];
            assert_eq!(days.len(), 1);
            assert_eq!(
                (days["20261122"].succeeded, days["20261122"].failed),
                (1, 1)
            );
            let r = s.ib_reachability().expect("reach");
            assert!(!r["0363"].ok);
        }
    }
}
