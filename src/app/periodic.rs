//! The periodic jobs: the retention sweep (with the audit prune), the shared replay cache's prune,
//! the Toets LKS fetch and the IB's stale check, each claimed per interval in the store so that
//! one instance runs it.

use super::App;
use crate::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

impl App {
    /// Starts the configured periodic jobs; each ends when `stop_rx` turns true.
    pub(super) fn spawn_periodic(
        &self,
        store: &Store,
        stop_rx: &tokio::sync::watch::Receiver<bool>,
    ) {
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let metrics = self.state.metrics.clone();
        let every = self.retention.sweep_interval();
        if !every.is_zero() {
            let (ret, audit_days) = (self.retention.clone(), self.audit_days);
            let st = store.clone();
            tokio::spawn(periodic(
                Job::new("sweep", every, store, &metrics),
                stopped(stop_rx.clone()),
                move || {
                    let (s, r) = (st.clone(), ret.clone());
                    async move {
                        let today = time::OffsetDateTime::now_utc().date();
                        let cutoff = time::OffsetDateTime::now_utc().unix_timestamp()
                            - i64::from(audit_days) * 86_400;
                        match tokio::task::spawn_blocking(move || {
                            let pruned = s.prune_audit(cutoff)?;
                            tracing::info!(pruned, "audit records past retention deleted");
                            crate::gemeente::service::sweep(
                                &s,
                                r.window_days,
                                r.purge,
                                today,
                                false,
                            )
                        })
                        .await
                        {
                            Ok(Ok(rep)) => tracing::info!(
                                examined = rep.examined,
                                removed = rep.removed,
                                "retention sweep"
                            ),
                            Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                            Err(e) => tracing::error!(error = %e, "retention sweep panicked"),
                        }
                    }
                },
            ));
        }
        if let Some(every) = self.replay_prune {
            let st = store.clone();
            tokio::spawn(periodic(
                Job::new("replay_prune", every, store, &metrics),
                stopped(stop_rx.clone()),
                move || {
                    let s = st.clone();
                    async move {
                        let now = time::OffsetDateTime::now_utc().unix_timestamp();
                        match tokio::task::spawn_blocking(move || s.prune_replay(now)).await {
                            Ok(Ok(n)) => tracing::debug!(pruned = n, "expired MessageIDs deleted"),
                            Ok(Err(e)) => tracing::warn!(error = %e, "replay prune failed"),
                            Err(e) => tracing::error!(error = %e, "replay prune panicked"),
                        }
                    }
                },
            ));
        }
        if let Some((f, every)) = self.fetcher.clone().filter(|(_, every)| *every > 0) {
            tokio::spawn(periodic(
                Job::new("lksri_fetch", Duration::from_secs(every), store, &metrics),
                stopped(stop_rx.clone()),
                move || {
                    let f = f.clone();
                    async move {
                        let r = f.fetch().await;
                        for e in &r.errors {
                            tracing::warn!(error = %e, "Toets LKS reports: fetch problem");
                        }
                    }
                },
            ));
        }
        if let Some((settings, every)) = self.ib_stale.clone() {
            let (st, m) = (store.clone(), metrics.clone());
            tokio::spawn(periodic(
                Job::new("ib_stale_check", every, store, &metrics),
                stopped(stop_rx.clone()),
                move || {
                    let (s, settings, m) = (st.clone(), settings.clone(), m.clone());
                    async move {
                        match tokio::task::spawn_blocking(move || ib_stale_check(&s, &settings))
                            .await
                        {
                            Ok(Ok(n)) => m.set_ib_stale(n),
                            Ok(Err(e)) => tracing::warn!(error = %e, "IB stale check failed"),
                            Err(e) => tracing::error!(error = %e, "IB stale check panicked"),
                        }
                    }
                },
            ));
        }
    }
}

/// A periodic job: its name (its claim in the store, its `dkd_periodic_runs_total` label) and
/// interval.
struct Job {
    name: &'static str,
    every: Duration,
    store: Store,
    metrics: Arc<crate::ops::metrics::Metrics>,
}

impl Job {
    fn new(
        name: &'static str,
        every: Duration,
        store: &Store,
        metrics: &Arc<crate::ops::metrics::Metrics>,
    ) -> Job {
        Job {
            name,
            every,
            store: store.clone(),
            metrics: metrics.clone(),
        }
    }
}

/// Runs `run` once per interval across every instance on the store. Intervals are aligned to
/// the clock (multiples of the interval since 1970-01-01 UTC), so every instance names the same
/// one; each wakes at an interval's start and claims it in the store, and only the one whose
/// claim succeeds runs the job. The first run is at the first interval start after start-up
/// (answers already apply the look-back: a sweep racing start-up gains nothing). A claimer that
/// dies during its run loses that interval's run, not the next.
async fn periodic<F, Fut>(job: Job, stop: impl Future<Output = ()>, mut run: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let secs = i64::try_from(job.every.as_secs().max(1)).unwrap_or(i64::MAX);
    tokio::pin!(stop);
    let mut last: Option<i64> = None;
    loop {
        let now = time::OffsetDateTime::now_utc();
        let mut next = now
            .unix_timestamp()
            .div_euclid(secs)
            .saturating_add(1)
            .saturating_mul(secs);
        if let Some(l) = last {
            // Woken a little early (timers and the clock differ): not the same interval again.
            next = next.max(l.saturating_add(secs));
        }
        let wait = i128::from(next) * 1_000_000_000 - now.unix_timestamp_nanos();
        let wait = Duration::from_nanos(u64::try_from(wait.max(0)).unwrap_or(u64::MAX));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => return,
        }
        last = Some(next);
        let (s, name) = (job.store.clone(), job.name);
        match tokio::task::spawn_blocking(move || s.job_claim(name, next)).await {
            Ok(Ok(true)) => {
                job.metrics.periodic_run(job.name);
                run().await;
            }
            Ok(Ok(false)) => {
                tracing::debug!(
                    job = job.name,
                    "periodic job: another instance runs this interval"
                )
            }
            Ok(Err(e)) => tracing::warn!(
                job = job.name,
                error = %e,
                "periodic job: its interval could not be claimed, not run"
            ),
            Err(e) => tracing::error!(job = job.name, error = %e, "periodic job claim panicked"),
        }
    }
}

/// The IB's stale check: a WARN per configured gemeente whose delivery is stale; returns how
/// many are.
fn ib_stale_check(
    store: &Store,
    settings: &crate::ib::IbSettings,
) -> Result<u64, crate::store::StoreError> {
    let now = time::OffsetDateTime::now_utc();
    let rows = crate::report::build_ib(store, settings, now.date())?;
    let stale = crate::report::ib_stale(&rows, settings.stale_after_days, now.unix_timestamp());
    for g in &stale {
        tracing::warn!(
            gemeente = %g.gemeente,
            delivery = %g.delivery,
            last = g.last.unwrap_or(0),
            stale_after_days = settings.stale_after_days,
            "IB: delivery stale"
        );
    }
    Ok(stale.len() as u64)
}
