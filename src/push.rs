//! The gemeente role's outbox sender: delivers queued IBVerwijsindex updates to the IB.
//!
//! Order: entries go in queue order, and never two for the same BSN and gemeente in one round, so
//! the IB sees each person's changes in the order they were made. An `Acknowledgement` removes
//! the entry; an FWI Fout (or a fault about the entry's own content) parks it with the reason;
//! anything else (unreachable, timeout, server fault, refused signature) leaves it first in line
//! and the sender backs off exponentially. The queue lives in the store, so a restart resumes
//! where it stopped; an update acknowledged just before a crash may be sent again, which the IB
//! takes as a repeat (it changes nothing there).

use crate::http::client::{self, ClientError};
use crate::http::forward::describe_client_error;
use crate::soap::client::{envelope, read_response, signature_value, Outgoing, ResponseError};
use crate::soap::wssec::{Signer, VerifyPolicy};
use crate::store::outbox::OutboxEntry;
use crate::store::Store;
use crate::suwiml::model::Bron;
use crate::suwiml::verwijsindex::{self as vi, Clustering};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Where and how to deliver.
pub struct Sender {
    /// The outbox.
    pub store: Store,
    /// The IB's IBVerwijsindex endpoint.
    pub url: String,
    /// `CdClusteringIb` for the entries.
    pub cluster: String,
    /// `wsa:From` address (with this gemeente's OIN).
    pub from_address: String,
    /// Mutual-TLS client configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// Signs each update; `None` with signing off.
    pub signer: Option<Arc<Signer>>,
    /// Checks the IB's signed answer; `None` with signing off.
    pub verify: Option<Arc<VerifyPolicy>>,
    /// Per attempt.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Acknowledged.
    Delivered,
    /// Refused on content: park it.
    Refused(String),
    /// Try again later.
    Retry(String),
}

/// Fault codes that are about the update itself; retrying the same bytes cannot help.
const CONTENT_FAULTS: [&str; 2] = ["0004", "0012"];

impl Sender {
    /// Delivers until `stop` completes. Store errors are logged and retried like network errors.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let first = Duration::from_secs(1);
        let mut backoff = first;
        loop {
            let wait = match self.round().await {
                Ok(0) => Duration::from_millis(500),
                Ok(_) => {
                    backoff = first;
                    Duration::ZERO
                }
                Err(why) => {
                    tracing::warn!(error = %why, retry_in = ?backoff, "verwijsindex push: IB not reachable, retrying");
                    let w = backoff;
                    backoff = (backoff * 2).min(self.max_backoff.max(first));
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => return,
            }
        }
    }

    /// One round: up to `concurrency × 8` entries, at most one per BSN and gemeente. Returns how
    /// many were delivered or parked, or the error that stopped the round (entries after it wait).
    pub async fn round(&self) -> Result<usize, String> {
        let batch = self
            .store
            .outbox_pending(self.concurrency * 8)
            .map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        let round: Vec<OutboxEntry> = batch
            .into_iter()
            .filter(|e| seen.insert((e.bsn, e.gemeente.clone())))
            .collect();
        let mut done = 0;
        for chunk in round.chunks(self.concurrency.max(1)) {
            let results = join_all(chunk.iter().map(|e| self.deliver(e))).await;
            let mut failure = None;
            for (e, r) in chunk.iter().zip(results) {
                let stored = match r {
                    Delivery::Delivered => {
                        done += 1;
                        self.store.outbox_delivered(e.seq)
                    }
                    Delivery::Refused(why) => {
                        tracing::warn!(bsn = %e.bsn.masked(), gemeente = %e.gemeente, reason = %why, "verwijsindex update refused by the IB; parked");
                        done += 1;
                        self.store.outbox_park(e.seq, &why)
                    }
                    Delivery::Retry(why) => {
                        let r = self.store.outbox_failed(e.seq, &why);
                        failure.get_or_insert(why);
                        r
                    }
                };
                if let Err(err) = stored {
                    return Err(format!("outbox: {err}"));
                }
            }
            if let Some(why) = failure {
                return Err(why);
            }
        }
        Ok(done)
    }

    /// One attempt for one entry.
    pub async fn deliver(&self, e: &OutboxEntry) -> Delivery {
        let request = vi::Request {
            bsn: e.bsn,
            clusters: vec![Clustering::new(&self.cluster, e.ind)],
            bron: Bron::gemeente(&e.gemeente),
        };
        let mut body = String::new();
        vi::write_request(&request, &mut body);
        let message_id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let now = time::OffsetDateTime::now_utc();
        let env = match envelope(
            self.signer.as_deref(),
            &Outgoing {
                to: &self.url,
                from_address: &self.from_address,
                action: vi::ACTION_REQUEST,
                body: &body,
                message_id: &message_id,
            },
            now,
        ) {
            Ok(env) => env,
            Err(err) => return Delivery::Retry(format!("cannot sign: {err}")),
        };
        let sig = signature_value(&env);
        let resp = match client::post_soap(self.tls.clone(), &self.url, &env, self.timeout).await {
            Ok(r) => r,
            Err(err @ ClientError::Url(_)) => return Delivery::Refused(err.to_string()),
            Err(err) => return Delivery::Retry(describe_client_error(&err)),
        };
        let text = String::from_utf8_lossy(&resp.body);
        let body = match read_response(
            &text,
            &message_id,
            sig.as_deref(),
            self.verify.as_deref(),
            time::OffsetDateTime::now_utc(),
        ) {
            Ok(b) => b,
            Err(ResponseError::Fault { code, text, .. })
                if CONTENT_FAULTS.contains(&code.as_str()) =>
            {
                return Delivery::Refused(format!("SOAP Fault {code}: {text}"))
            }
            Err(err) => return Delivery::Retry(format!("HTTP {}: {err}", resp.status)),
        };
        match vi::parse_response(&body) {
            Ok(vi::Answer::Acknowledgement) => Delivery::Delivered,
            Ok(vi::Answer::Fwi(m)) => Delivery::Refused(
                m.iter()
                    .map(|f| format!("FWI {}: {}", f.code, f.tekst))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(err) => Delivery::Retry(format!("unusable answer: {err}")),
        }
    }
}

/// Runs futures concurrently on this task, outputs in order.
async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    crate::service::ib::join_all(futs).await
}

/// What `dkd sync` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    /// Counts only.
    Status,
    /// Put parked entries back in the queue.
    RetryParked,
    /// Queue the whole current index.
    Full,
}

/// What `dkd sync` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    /// Entries queued (`--full`) or put back (`--retry-parked`).
    pub queued: u64,
    /// The outbox after the action.
    pub status: crate::store::outbox::OutboxStatus,
    /// The parked entries with their reasons.
    pub parked: Vec<OutboxEntry>,
}

/// Runs a `dkd sync` action on a store (locally, or in the server behind the admin API).
pub fn sync(store: &Store, action: SyncAction) -> Result<SyncReport, crate::store::StoreError> {
    let queued = match action {
        SyncAction::Status => 0,
        SyncAction::RetryParked => store.outbox_unpark_all()?,
        SyncAction::Full => store.outbox_enqueue_all()?,
    };
    Ok(SyncReport {
        queued,
        status: store.outbox_status()?,
        parked: store.outbox_parked()?,
    })
}
