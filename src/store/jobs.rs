//! What the instances serving one store share besides the records: the replay cache (PostgreSQL
//! table `dkd_replay`) and the claims of the periodic jobs.
//!
//! Layout (in tree `meta`): `job:<name>` → interval start (i64 BE, unix seconds) ++ the
//! claiming instance's id: the last interval the job ran for, and who ran it.

use super::{kv, Store, StoreError};

const JOB_PREFIX: &[u8] = b"job:";

/// A periodic job's last run, as its claim records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRun {
    /// The job (`sweep`, `lksri_fetch`, `ib_stale_check`, `replay_prune`).
    pub job: String,
    /// Start of the interval it ran for (unix seconds).
    pub interval_start: i64,
    /// The store opening (instance) that ran it.
    pub instance: String,
}

fn job_key(job: &str) -> Vec<u8> {
    let mut k = JOB_PREFIX.to_vec();
    k.extend_from_slice(job.as_bytes());
    k
}

fn decode_run(k: &[u8], v: &[u8]) -> Option<JobRun> {
    let job = std::str::from_utf8(k.strip_prefix(JOB_PREFIX)?).ok()?;
    let (t, who) = v.split_first_chunk::<8>()?;
    Some(JobRun {
        job: job.to_owned(),
        interval_start: i64::from_be_bytes(*t),
        instance: String::from_utf8_lossy(who).into_owned(),
    })
}

impl Store {
    /// Records that `message_id` was answered, valid until `until` (unix seconds): `false` when
    /// another instance on this store answered it within its window (a replay). On sled (one
    /// process per store) the process's own replay cache is the whole memory: always `true`.
    pub fn replay_claim(&self, message_id: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        match &self.db {
            kv::Db::Pg(pg) => kv::pg::replay::claim(pg, message_id, now, until),
            kv::Db::Sled(_) => Ok(true),
        }
    }

    /// Deletes the shared replay rows whose window ended before `now`; returns how many.
    pub fn prune_replay(&self, now: i64) -> Result<u64, StoreError> {
        match &self.db {
            kv::Db::Pg(pg) => kv::pg::replay::prune(pg, now),
            kv::Db::Sled(_) => Ok(0),
        }
    }

    /// Claims `job`'s run for the interval starting at `interval_start`: `true` for the one
    /// instance that gets it, `false` for every other (and for this one asking again). A
    /// compare-and-set on `meta/job:<name>` in one transaction, so two instances on one
    /// PostgreSQL never both run a job for the same interval.
    pub fn job_claim(&self, job: &str, interval_start: i64) -> Result<bool, StoreError> {
        let key = job_key(job);
        let me = self.instance.as_bytes();
        self.meta.transaction(|tx| {
            let done = tx.get(&key)?.and_then(|v| {
                v.split_first_chunk::<8>()
                    .map(|(t, _)| i64::from_be_bytes(*t))
            });
            if done.is_some_and(|t| t >= interval_start) {
                return Ok(false);
            }
            let mut v = interval_start.to_be_bytes().to_vec();
            v.extend_from_slice(me);
            tx.put(&key, Some(&v))?;
            Ok(true)
        })
    }

    /// Every periodic job's last run, by name.
    pub fn job_runs(&self) -> Result<Vec<JobRun>, StoreError> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(JOB_PREFIX) {
            let (k, v) = item?;
            if let Some(r) = decode_run(&k, &v) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// This opening of the store (what [`JobRun::instance`] names).
    pub fn instance_id(&self) -> &str {
        &self.instance
    }
}

#[cfg(test)]
mod tests {
    on_both! {
        fn a_job_runs_once_per_interval(s) {
            let other = s.reopened_as_other_instance();
            assert!(s.job_claim("sweep", 3600).expect("claim"));
            assert!(!other.job_claim("sweep", 3600).expect("taken"), "the other instance waits");
            assert!(!s.job_claim("sweep", 3600).expect("taken"), "once, also for the claimer");
            assert!(!other.job_claim("sweep", 0).expect("older"), "an older interval is past");
            assert!(other.job_claim("sweep", 7200).expect("the next interval"));
            assert!(s.job_claim("fetch", 3600).expect("another job is claimed apart"));
            let mut runs = s.job_runs().expect("runs");
            runs.sort_by(|a, b| a.job.cmp(&b.job));
            assert_eq!(
                runs.iter().map(|r| (r.job.as_str(), r.interval_start)).collect::<Vec<_>>(),
                [("fetch", 3600), ("sweep", 7200)]
            );
            assert_eq!(runs[1].instance, other.instance_id());
        }
    }

    on_both! {
        fn replay_claims_are_shared_and_pruned(s) {
            let other = s.reopened_as_other_instance();
            assert!(s.replay_claim("urn:uuid:1", 100, 200).expect("first"));
            if !s.is_shared() {
                // One process per sled store: its in-memory cache is the whole memory.
                assert!(other.replay_claim("urn:uuid:1", 150, 250).expect("sled"));
                assert_eq!(s.prune_replay(1_000).expect("prune"), 0);
                return;
            }
            assert!(!other.replay_claim("urn:uuid:1", 150, 250).expect("a replay"));
            assert!(!s.replay_claim("urn:uuid:1", 200, 300).expect("until its end"));
            // After its window the MessageID is new again, pruned or not (as in the cache).
            assert!(other.replay_claim("urn:uuid:1", 201, 400).expect("expired: taken over"));
            assert!(s.replay_claim("urn:uuid:2", 100, 200).expect("another"));
            assert_eq!(s.prune_replay(300).expect("prune"), 1, "only urn:uuid:2 had ended");
            assert!(!s.replay_claim("urn:uuid:1", 300, 500).expect("still live"));
            assert!(s.replay_claim("urn:uuid:2", 300, 500).expect("pruned"));
        }
    }
}
