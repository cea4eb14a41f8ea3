//! `dkd call`: one GSDReintegratieInfo against any 2W-be-S endpoint, signed, with the response's
//! signature, SignatureConfirmation and RelatesTo checked. The building block of the probe.

use crate::http::client::{self, ClientError};
use crate::soap::wssec::{SecurityError, Signer, Verified, VerifyPolicy};
use std::sync::Arc;
use std::time::Duration;

/// What to send.
pub struct CallOptions {
    /// The endpoint URL (also `wsa:To`).
    pub url: String,
    /// The BSN to ask about.
    pub bsn: String,
    /// Our OIN, for `wsa:From`.
    pub from_oin: String,
    /// Mutual-TLS client configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// Signs the request; `None` sends it unsigned.
    pub signer: Option<Signer>,
    /// Verifies the response's signature (its certificate must chain to these CAs).
    pub response_trust: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// Gives up after this.
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug)]
pub struct CallResult {
    /// HTTP status.
    pub status: u16,
    /// The response envelope.
    pub body: String,
    /// The MessageID we sent.
    pub message_id: String,
    /// Whether `wsa:RelatesTo` equals our MessageID.
    pub relates_to_matches: bool,
    /// The response signature check, when one was asked for.
    pub signature: Option<Result<Verified, SecurityError>>,
    /// `clientsuwi`, `nietsgevonden`, `fwi`, `fault` or `unknown`.
    pub kind: &'static str,
    /// The `fwi:Fout/Code` of a fault or FWI answer.
    pub code: Option<String>,
}

/// Sends the request and checks the answer.
pub async fn call(opts: CallOptions) -> Result<CallResult, ClientError> {
    let message_id = crate::soap::new_message_id();
    let now = time::OffsetDateTime::now_utc();
    let request = match &opts.signer {
        Some(s) => {
            crate::soap::signed_request(s, &opts.url, &opts.from_oin, &opts.bsn, &message_id, now)
                .map_err(|e| ClientError::Http(format!("cannot sign the request: {e}")))?
        }
        None => crate::soap::example_request(&opts.url, &opts.from_oin, &opts.bsn, &message_id),
    };
    let request_sig = crate::soap::client::signature_value(&request);
    let resp = client::post_soap(opts.tls.clone(), &opts.url, &request, opts.timeout).await?;
    let body = resp.text();
    let doc = crate::xml::parse(body.as_bytes()).ok();
    let find = |local: &str| {
        doc.as_ref()
            .and_then(|d| crate::soap::client::find_text(d, local))
    };
    let relates_to_matches = find("RelatesTo").as_deref() == Some(message_id.as_str());
    let kind = if body.contains("<ClientSuwi>") {
        "clientsuwi"
    } else if body.contains("NietsGevonden") {
        "nietsgevonden"
    } else if body.contains(":Fault>") {
        "fault"
    } else if body.contains("FWI") {
        "fwi"
    } else {
        "unknown"
    };
    let signature = opts.response_trust.clone().map(|trust| {
        VerifyPolicy::for_answers(
            trust,
            time::Duration::seconds(120),
            time::Duration::seconds(300),
        )
        .verify_answer(&body, request_sig.as_deref(), kind == "fault", now)
    });
    Ok(CallResult {
        status: resp.status,
        code: find("Code"),
        body,
        message_id,
        relates_to_matches,
        signature,
        kind,
    })
}
