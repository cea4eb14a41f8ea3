//! Whole GSDReintegratieInfo requests, unsigned and signed, for the banner, `dkd call`, the probe
//! and tests.

use super::{client, wssec};
use crate::suwiml::gsd;
use crate::xml::{escape, NS_SOAP11, NS_WSA};

/// A complete, unsigned GSDReintegratieInfo request: for the start-up banner's curl example, the
/// probe and tests.
pub fn example_request(to: &str, from_oin: &str, bsn: &str, message_id: &str) -> String {
    let mut s = String::with_capacity(1024);
    s.push_str("<soapenv:Envelope xmlns:soapenv=\"");
    s.push_str(NS_SOAP11);
    s.push_str("\" xmlns:wsa=\"");
    s.push_str(NS_WSA);
    s.push_str("\" xmlns:gsd=\"");
    s.push_str(crate::xml::NS_GSD);
    s.push_str("\">\n  <soapenv:Header>\n    <wsa:MessageID>");
    escape(message_id, &mut s);
    s.push_str("</wsa:MessageID>\n    <wsa:Action>");
    s.push_str(gsd::ACTION_REQUEST);
    s.push_str("</wsa:Action>\n    <wsa:To>");
    escape(to, &mut s);
    s.push_str("</wsa:To>\n    <wsa:From><wsa:Address>http://localhost/client?oin=");
    escape(from_oin, &mut s);
    s.push_str("</wsa:Address></wsa:From>\n  </soapenv:Header>\n  <soapenv:Body>\n    <gsd:GSDReintegratieInfo><Burgerservicenr>");
    escape(bsn, &mut s);
    s.push_str(
        "</Burgerservicenr></gsd:GSDReintegratieInfo>\n  </soapenv:Body>\n</soapenv:Envelope>\n",
    );
    s
}

/// A complete GSDReintegratieInfo request signed per 2W-be-S (Body, Timestamp and every
/// WS-Addressing header), as a client of any 2W-be-S endpoint sends it: for `dkd call`, the probe
/// and tests.
pub fn signed_request(
    signer: &wssec::Signer,
    to: &str,
    from_oin: &str,
    bsn: &str,
    message_id: &str,
    now: time::OffsetDateTime,
) -> Result<String, wssec::SecurityError> {
    let from = format!("http://localhost/dkd?oin={from_oin}");
    let mut body = String::new();
    gsd::write_request(bsn, &mut body);
    client::envelope(
        Some(signer),
        &client::Outgoing {
            to,
            from_address: &from,
            action: gsd::ACTION_REQUEST,
            body: &body,
            message_id,
        },
        now,
    )
}
