//! The gemeente role's outbox sender: delivers queued IBVerwijsindex updates to the IB.
//!
//! Order: entries go in queue order, and never two for the same BSN and gemeente in one round, so
//! the IB sees each person's changes in the order they were made. An `Acknowledgement` removes
//! the entry; an FWI Fout (or a fault about the entry's own content) parks it with the reason;
//! anything else (unreachable, timeout, server fault, refused signature) leaves it first in line
//! and the sender backs off exponentially. The queue lives in the store, so a restart resumes
//! where it stopped; an update acknowledged just before a crash may be sent again, which the IB
//! takes as a repeat (it changes nothing there).

use crate::http::client;
use crate::http::client::describe_client_error;
use crate::soap::client::{envelope, read_response, signature_value, Outgoing, ResponseError};
use crate::soap::fault::DkdCode;
use crate::soap::wssec::{Signer, VerifyPolicy};
use crate::store::outbox::OutboxEntry;
use crate::store::Store;
use crate::suwiml::model::Bron;
use crate::suwiml::verwijsindex::{self as vi, Clustering, Nee};
use futures_util::future::join_all;
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
    /// How `IndDkd` "no" is written (`push.ind_dkd_nee`).
    pub ind_dkd_nee: Nee,
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
    /// How long this sender's outbox lease lasts without renewal (`push.lease_secs`): another
    /// instance on the same store takes over that long after this one stopped renewing it.
    pub lease_secs: u64,
    /// Connections to the IB kept open between deliveries.
    pub pool: client::Pool,
    /// A scenario pausing the push or withholding a share of the updates.
    pub scenario: Option<Arc<crate::chain::scenario::Live>>,
}

/// Why an update withheld by `push = "partial"` is parked (`dkd sync --status` shows it).
pub const WITHHELD: &str = "withheld on purpose by scenario push = \"partial\"";

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Acknowledged.
    Delivered,
    /// Refused on content: park it.
    Refused(String),
    /// Try again later: the IB (or the way to it) is not available.
    Retry(String),
    /// An answer came, but not a usable one for this entry: retried, and parked after
    /// [`MAX_SUSPECT_ATTEMPTS`] so one entry cannot hold up the queue forever.
    Suspect(String),
    /// Never sent: withheld by a `push = "partial"` scenario, parked with [`WITHHELD`].
    Withheld,
}

/// Attempts after which an entry whose answers stay unusable is parked.
pub const MAX_SUSPECT_ATTEMPTS: u32 = 10;

/// Fault codes that are about the update itself; retrying the same bytes cannot help.
const CONTENT_FAULTS: [DkdCode; 2] = [DkdCode::SchemaInvalid, DkdCode::BsnElevenTest];

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
        if self.scenario.as_ref().is_some_and(|s| s.push_paused()) {
            return Ok(0);
        }
        // On a shared store another instance may be the sender now.
        if !self
            .store
            .outbox_lease(self.lease_secs)
            .map_err(|e| e.to_string())?
        {
            return Ok(0);
        }
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
            let results = join_all(chunk.iter().map(|e| async {
                match &self.scenario {
                    Some(s)
                        if s.push(e.bsn.as_str())
                            == crate::chain::scenario::PushDecision::Withhold =>
                    {
                        Delivery::Withheld
                    }
                    _ => self.deliver(e).await,
                }
            }))
            .await;
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
                    Delivery::Withheld => {
                        tracing::info!(bsn = %e.bsn.masked(), gemeente = %e.gemeente, "scenario: verwijsindex update withheld on purpose; parked");
                        done += 1;
                        self.store.outbox_park(e.seq, WITHHELD)
                    }
                    Delivery::Suspect(why) if e.attempts + 1 >= MAX_SUSPECT_ATTEMPTS => {
                        let why = format!("after {MAX_SUSPECT_ATTEMPTS} attempts: {why}");
                        tracing::warn!(bsn = %e.bsn.masked(), gemeente = %e.gemeente, reason = %why, "verwijsindex update keeps failing; parked");
                        done += 1;
                        self.store.outbox_park(e.seq, &why)
                    }
                    Delivery::Retry(why) | Delivery::Suspect(why) => {
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
            clusters: vec![Clustering::with_nee(&self.cluster, e.ind, self.ind_dkd_nee)],
            bron: Bron::gemeente(&e.gemeente),
        };
        let mut body = String::new();
        vi::write_request(&request, &mut body);
        let message_id = crate::soap::new_message_id();
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
        let resp = match self
            .pool
            .post_soap(self.tls.clone(), &self.url, &env, self.timeout)
            .await
        {
            Ok(r) => r,
            // A bad push.url is configuration, not this entry: retried until it is fixed.
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
                if DkdCode::parse(&code).is_some_and(|c| CONTENT_FAULTS.contains(&c)) =>
            {
                return Delivery::Refused(format!("SOAP Fault {code}: {text}"))
            }
            Err(err @ ResponseError::Fault { .. }) | Err(err @ ResponseError::Security(_)) => {
                // Server faults, authorisation and signature problems concern every entry.
                return Delivery::Retry(format!("HTTP {}: {err}", resp.status));
            }
            Err(err) => return Delivery::Suspect(format!("HTTP {}: {err}", resp.status)),
        };
        match vi::parse_response(&body) {
            Ok(vi::Answer::Acknowledgement) => Delivery::Delivered,
            Ok(vi::Answer::Fwi(m)) => {
                let why = m
                    .iter()
                    .map(|f| format!("FWI {}: {}", f.code, f.tekst))
                    .collect::<Vec<_>>()
                    .join("; ");
                // 0051: the IB cannot store it now; that passes.
                if m.iter().any(|f| f.code == DkdCode::Unavailable.as_str()) {
                    Delivery::Retry(why)
                } else {
                    Delivery::Refused(why)
                }
            }
            Err(err) => Delivery::Suspect(format!("unusable answer: {err}")),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suwiml::types::Bsn;
    use crate::suwiml::verwijsindex::IndDkd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake IB on plain HTTP answering each request with `answer` (with `{mid}` replaced by the
    /// request's MessageID), for `n` requests.
    async fn fake_ib(answer: &'static str, n: usize) -> String {
        fake_ib_seeing(answer, n).await.0
    }

    /// [`fake_ib`], handing over each request's text as it arrives.
    async fn fake_ib_seeing(
        answer: &'static str,
        n: usize,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for _ in 0..n {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 8192];
                // Bounded: a request is a few KB.
                for _ in 0..64 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                    if req.windows(19).any(|w| w == b"</soapenv:Envelope>") {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let _ = seen.send(text.clone().into_owned());
                let mid = text
                    .split_once("<wsa:MessageID")
                    .and_then(|(_, r)| r.split_once('>'))
                    .and_then(|(_, r)| r.split_once('<'))
                    .map(|(m, _)| m.to_owned())
                    .unwrap_or_default();
                let body = answer.replace("{mid}", &mid);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (format!("http://{addr}/IBVerwijsindex-v0300"), requests)
    }

    const ENVELOPE: &str = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header><wsa:RelatesTo xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">{mid}</wsa:RelatesTo></soapenv:Header><soapenv:Body><vi:IBVerwijsindexResponse xmlns:vi=\"http://bkwi.nl/SuwiML/Diensten/IBVerwijsindex/v0300\">BODY</vi:IBVerwijsindexResponse></soapenv:Body></soapenv:Envelope>";

    fn sender(url: String) -> Sender {
        let tls = crate::http::client::tests::plain_tls();
        Sender {
            store: Store::temporary().expect("store"),
            url,
            cluster: "04".into(),
            ind_dkd_nee: Nee::default(),
            from_address: "https://g/?oin=00000099000000000001".into(),
            tls,
            signer: None,
            verify: None,
            timeout: Duration::from_secs(5),
            concurrency: 1,
            max_backoff: Duration::from_secs(1),
            lease_secs: crate::store::outbox::LEASE_SECS,
            pool: client::Pool::default(),
            scenario: None,
        }
    }

    fn entry() -> OutboxEntry {
        OutboxEntry {
            seq: 1,
            bsn: Bsn::parse("123456782").expect("bsn"),
            gemeente: "0363".into(),
            ind: IndDkd::Present,
            at: 0,
            attempts: 0,
            last_error: None,
        }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[tokio::test]
    async fn answers_are_classified_deliver_park_retry_or_suspect() {
        let fwi = |code: &str| {
            leak(ENVELOPE.replace(
                "BODY",
                &format!("<FWI><Fout><Code>{code}</Code><Tekst>t</Tekst><Bron><DN>ib</DN></Bron></Fout></FWI>"),
            ))
        };
        let cases = [
            (
                leak(ENVELOPE.replace("BODY", "<Acknowledgement></Acknowledgement>")),
                "delivered",
            ),
            // The IB refuses this update: parked.
            (fwi("0101"), "refused"),
            // The IB cannot store now (0051): that passes, so retry, never park.
            (fwi("0051"), "retry"),
            // An answer to another message, or not an answer at all: suspect.
            (
                leak(
                    ENVELOPE
                        .replace("{mid}", "urn:uuid:other")
                        .replace("BODY", ""),
                ),
                "suspect",
            ),
            ("<html>proxy error</html>", "suspect"),
        ];
        for (answer, expect) in cases {
            let s = sender(fake_ib(answer, 1).await);
            let got = match s.deliver(&entry()).await {
                Delivery::Delivered => "delivered",
                Delivery::Refused(_) => "refused",
                Delivery::Retry(_) => "retry",
                Delivery::Suspect(_) => "suspect",
                Delivery::Withheld => "withheld",
            };
            assert_eq!(got, expect, "{answer}");
        }
        // A bad URL is configuration: retried, not parked.
        let s = sender("ftp://nowhere".into());
        assert!(matches!(s.deliver(&entry()).await, Delivery::Retry(_)));
    }

    #[tokio::test]
    async fn no_longer_present_is_sent_as_ind_dkd_0_unless_configured_2() {
        let ack = leak(ENVELOPE.replace("BODY", "<Acknowledgement></Acknowledgement>"));
        let absent = OutboxEntry {
            ind: IndDkd::Absent,
            ..entry()
        };
        for (nee, wire) in [(None, "0"), (Some(Nee::Two), "2"), (Some(Nee::Zero), "0")] {
            let (url, mut requests) = fake_ib_seeing(ack, 2).await;
            let mut s = sender(url);
            if let Some(n) = nee {
                s.ind_dkd_nee = n;
            }
            assert_eq!(s.deliver(&absent).await, Delivery::Delivered);
            let sent = requests.recv().await.expect("request");
            assert!(
                sent.contains(&format!("<IndDkd>{wire}</IndDkd>")),
                "{nee:?}: {sent}"
            );
            assert_eq!(s.deliver(&entry()).await, Delivery::Delivered);
            let sent = requests.recv().await.expect("request");
            assert!(sent.contains("<IndDkd>1</IndDkd>"), "{nee:?}: {sent}");
        }
    }

    #[tokio::test]
    async fn an_entry_whose_answers_stay_unusable_is_parked_after_the_limit() {
        let s = sender(fake_ib("<html>proxy error</html>", MAX_SUSPECT_ATTEMPTS as usize).await);
        s.store.set_outbox(true);
        s.store
            .put(&crate::store::tests::person("123456782", &["0363"]), "t")
            .expect("put");
        for _ in 0..MAX_SUSPECT_ATTEMPTS - 1 {
            assert!(s.round().await.is_err());
        }
        assert_eq!(s.store.outbox_status().expect("st").parked, 0);
        assert_eq!(s.round().await, Ok(1));
        let st = s.store.outbox_status().expect("st");
        assert_eq!((st.pending, st.parked), (0, 1));
    }
}
