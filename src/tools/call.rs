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
    pub response_trust: Option<Arc<crate::soap::wssec::SignerTrust>>,
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
    let (kind, signature) = judge(
        &body,
        request_sig.as_deref(),
        opts.response_trust.clone(),
        now,
    );
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

/// The kind of an answer and, with `trust`, its signature check. Whether it is a Fault comes from
/// the parsed envelope's Body, never from the text: a Fault is accepted signed without
/// SignatureConfirmation, so ":Fault>" in a comment must not pass for one.
fn judge(
    body: &str,
    request_sig: Option<&str>,
    trust: Option<Arc<crate::soap::wssec::SignerTrust>>,
    now: time::OffsetDateTime,
) -> (&'static str, Option<Result<Verified, SecurityError>>) {
    let env = crate::soap::envelope::parse(body.as_bytes());
    let is_fault = env
        .as_ref()
        .is_ok_and(|e| e.body.is(Some(crate::xml::NS_SOAP11), "Fault"));
    let kind = match &env {
        Err(_) => "unknown",
        Ok(_) if is_fault => "fault",
        Ok(_) if body.contains("<ClientSuwi>") => "clientsuwi",
        Ok(_) if body.contains("NietsGevonden") => "nietsgevonden",
        Ok(_) if body.contains("FWI") => "fwi",
        Ok(_) => "unknown",
    };
    let signature = trust.map(|trust| match &env {
        Err(e) => Err(SecurityError::Invalid(format!(
            "the answer is not a SOAP envelope: {e}"
        ))),
        Ok(_) => VerifyPolicy::for_answers(
            trust,
            time::Duration::seconds(120),
            time::Duration::seconds(300),
        )
        .verify_answer(body, request_sig, is_fault, now),
    });
    (kind, signature)
}

#[cfg(test)]
mod tests {
    use crate::soap::client::{envelope, Outgoing};
    use crate::soap::wssec::tests::fixture;

    #[test]
    fn a_fault_named_in_a_comment_does_not_waive_the_signature_confirmation() {
        let f = fixture();
        let now = time::OffsetDateTime::now_utc();
        // Signed by a trusted key, but confirming nothing: acceptable only for a real Fault.
        let answer = |body: &str| {
            envelope(
                Some(&f.signer),
                &Outgoing {
                    to: "http://localhost/dkd",
                    from_address: "https://x/GSDDossierReintegratie-v0200",
                    action: crate::suwiml::gsd::ACTION_RESPONSE,
                    body,
                    message_id: "urn:uuid:answer",
                },
                now,
            )
            .expect("signed")
        };
        let trust = Some(f.policy.trust.clone());
        // The comment sits outside every signed part, so the signature itself is valid.
        let mut niets = String::new();
        crate::suwiml::gsd::write_response(
            &crate::suwiml::gsd::Reply::NietsGevonden,
            "",
            &mut niets,
        );
        let sneaky = answer(&niets).replacen("<soapenv:Body", "<!-- :Fault> --><soapenv:Body", 1);
        assert!(sneaky.contains("<!-- :Fault> --><soapenv:Body"), "{sneaky}");
        let plain = sneaky.replace("<!-- :Fault> -->", "");
        let (_, sig) = super::judge(&plain, None, trust.clone(), now);
        assert!(matches!(sig, Some(Ok(_))), "validly signed: {sig:?}");
        let (kind, sig) = super::judge(&sneaky, Some("cmVxdWVzdA=="), trust.clone(), now);
        assert_eq!(kind, "nietsgevonden");
        assert!(
            matches!(sig, Some(Err(_))),
            "an unconfirmed answer must fail: {sig:?}"
        );
        let fault = answer(
            "<soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>x</faultstring></soapenv:Fault>",
        );
        let (kind, sig) = super::judge(&fault, Some("cmVxdWVzdA=="), trust.clone(), now);
        assert_eq!(kind, "fault");
        assert!(matches!(sig, Some(Ok(_))), "{sig:?}");
        let (kind, sig) = super::judge("<not-soap/>", None, trust, now);
        assert_eq!(kind, "unknown");
        assert!(matches!(sig, Some(Err(_))), "{sig:?}");
    }
}
