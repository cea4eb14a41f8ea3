//! The IB role's outgoing questions: a GSDReintegratieInfo to a gemeente over mutual TLS, signed,
//! with the answer's signature, SignatureConfirmation and RelatesTo checked before it is merged.

use crate::http::client::{self, describe_client_error, ClientError};
use crate::ib::route::{Forward, ForwardError};
use crate::ib::Gemeente;
use crate::soap::client::{envelope, read_response, signature_value, Outgoing, ResponseError};
use crate::soap::wssec::{Signer, VerifyPolicy};
use crate::suwiml::gsd::{self, Reply};
use crate::suwiml::types::Bsn;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Routes over HTTPS with dkd's client certificate.
pub struct HttpForward {
    /// Mutual-TLS client configuration (trusting the gemeenten's server CA).
    pub tls: Arc<rustls::ClientConfig>,
    /// Signs the forwarded request; `None` with signing off.
    pub signer: Option<Arc<Signer>>,
    /// Checks the gemeente's signed answer; `None` with signing off.
    pub verify: Option<Arc<VerifyPolicy>>,
    /// The route timeout: the whole question, from connecting to the checked answer.
    pub timeout: Duration,
    /// Connections to the gemeenten kept open between questions.
    pub pool: client::Pool,
    /// The IB's own address (its GSDDossierReintegratie endpoint): the forwarded question's
    /// `wsa:From`, with the original requester's OIN.
    pub own_address: String,
}

/// The `wsa:From` of a forwarded question: the IB asks, on behalf of the requester whose OIN it
/// names (the gemeente answers to the IB, and records whom it answered for).
pub fn forwarded_from(own_address: &str, requester: &str) -> String {
    match crate::soap::envelope::oin_from_address(requester) {
        Some(oin) => {
            let sep = if own_address.contains('?') { '&' } else { '?' };
            format!("{own_address}{sep}oin={oin}")
        }
        // Not reached: the router only forwards a request whose From carries an OIN.
        None => requester.to_owned(),
    }
}

impl Forward for HttpForward {
    fn forward<'a>(
        &'a self,
        gemeente: &'a Gemeente,
        bsn: &'a Bsn,
        from_address: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Reply, ForwardError>> + Send + 'a>> {
        Box::pin(async move {
            // The router waits for every gemeente at once and needs each answer, or its
            // failure, within the route timeout: the deadline covers the whole question.
            match tokio::time::timeout(self.timeout, self.ask(gemeente, bsn, from_address)).await {
                Ok(r) => r,
                Err(_) => Err(describe_client_error(&ClientError::Timeout(self.timeout))),
            }
        })
    }
}

impl HttpForward {
    async fn ask(
        &self,
        gemeente: &Gemeente,
        bsn: &Bsn,
        from_address: &str,
    ) -> Result<Reply, ForwardError> {
        let url = gemeente
            .url
            .as_deref()
            .ok_or_else(|| "geen URL geconfigureerd".to_owned())?;
        let message_id = crate::soap::new_message_id();
        let from_address = forwarded_from(&self.own_address, from_address);
        let mut body = String::new();
        gsd::write_request(bsn.as_str(), &mut body);
        let now = time::OffsetDateTime::now_utc();
        let request = envelope(
            self.signer.as_deref(),
            &Outgoing {
                to: url,
                from_address: &from_address,
                action: gsd::ACTION_REQUEST,
                body: &body,
                message_id: &message_id,
            },
            now,
        )
        .map_err(|e| format!("ondertekenen mislukt: {e}"))?;
        let sig = signature_value(&request);
        let resp = self
            .pool
            .post_soap(self.tls.clone(), url, &request, self.timeout)
            .await
            .map_err(|e| describe_client_error(&e))?;
        let text = String::from_utf8(resp.body).map_err(|_| "antwoord is geen UTF-8".to_owned())?;
        let body = read_response(
            &text,
            &message_id,
            sig.as_deref(),
            self.verify.as_deref(),
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| match e {
            ResponseError::Fault { code, text, .. } => format!("SOAP Fault {code}: {text}"),
            other => other.to_string(),
        })?;
        gsd::parse_response(&body).map_err(|e| format!("ongeldig antwoord: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::forwarded_from;

    #[test]
    fn a_forwarded_question_comes_from_the_ib_for_the_requester() {
        let ib = "https://ib.example/GSDDossierReintegratie-v0200";
        assert_eq!(
            forwarded_from(ib, "https://uwv.example/x?OIN=00000099000000000002"),
            "https://ib.example/GSDDossierReintegratie-v0200?oin=00000099000000000002"
        );
        assert_eq!(
            forwarded_from(
                "https://ib.example/p?a=1",
                "https://u/?oin=00000099000000000002"
            ),
            "https://ib.example/p?a=1&oin=00000099000000000002"
        );
    }
}
