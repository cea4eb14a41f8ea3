//! The check order of a request, from its Content-Type to its body: each check refuses with the
//! `SoapError` that `fault::describe` words.

use super::envelope::{self, is_absolute_uri, oin_from_address, Addressing, WSA_ANONYMOUS};
use super::fault::SoapError;
use super::{remember, Endpoint, Inbound, ReplyContext, Request};
use crate::suwiml::gsd::{self, BodyError};
use crate::suwiml::verwijsindex as vi;

pub(super) fn process(
    ep: &Endpoint,
    req: Inbound<'_>,
    ctx: &mut ReplyContext,
) -> Result<Request, SoapError> {
    if let Err(e) = check_content_type(req.content_type) {
        // Refused either way; read what addressing there is so the fault reaches the caller.
        if let Ok(env) = envelope::parse(req.body) {
            remember(&envelope::read_headers(&env.headers).addressing, ctx);
        }
        return Err(e);
    }
    let env = envelope::parse(req.body)?;
    let headers = envelope::read_headers(&env.headers);
    remember(&headers.addressing, ctx);
    for ns in &headers.ignored {
        tracing::debug!(namespace = ?ns, "unknown header block ignored");
        ctx.ignored_headers.push((*ns).to_owned());
    }
    if let Some(e) = headers.refused {
        return Err(e);
    }
    let wsa = headers.addressing;
    authorise(ep, req.tls_oin)?;
    if let Some(sec) = &ep.security {
        // The bytes already parsed as UTF-8 in envelope::parse.
        let text = std::str::from_utf8(req.body).map_err(|e| SoapError::NotUtf8(e.to_string()))?;
        let now = time::OffsetDateTime::now_utc();
        if let Some(v) = sec
            .verify
            .verify(text, req.tls_oin, wsa.message_id.as_deref(), now)?
        {
            ctx.confirm = Some(v.signature_value);
            ctx.signer_oin = Some(v.signer_oin);
            ctx.replay_until = v.replay_until;
        }
    }
    check_addressing(ep, &wsa)?;
    check_soap_action(req.soap_action, wsa.action.as_deref())?;
    let body_error = |e| match e {
        BodyError::Schema(m) => SoapError::SchemaInvalid(m),
        BodyError::ElevenTest => SoapError::BsnElevenTest,
    };
    if ep.kind.is_verwijsindex() {
        vi::parse_request(&env.body)
            .map(Request::Verwijsindex)
            .map_err(body_error)
    } else {
        gsd::parse_request(&env.body)
            .map(Request::Gsd)
            .map_err(body_error)
    }
}

fn check_content_type(ct: Option<&str>) -> Result<(), SoapError> {
    let Some(ct) = ct else { return Ok(()) };
    let mut parts = ct.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("").to_ascii_lowercase();
    if mime == "application/soap+xml" {
        return Err(SoapError::VersionMismatch);
    }
    if mime != "text/xml" {
        return Err(SoapError::ContentType(ct.to_owned()));
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("charset") {
                let v = v.trim().trim_matches('"').to_ascii_lowercase();
                if v != "utf-8" && v != "utf8" {
                    return Err(SoapError::NotUtf8(format!("charset={v}")));
                }
            }
        }
    }
    Ok(())
}

fn authorise(ep: &Endpoint, tls_oin: Option<&str>) -> Result<(), SoapError> {
    match tls_oin {
        Some(oin) if ep.allowed_oins.contains(oin) => Ok(()),
        Some(oin) => Err(SoapError::NotAuthorised(format!(
            "TLS client OIN {oin} is not on the allow-list"
        ))),
        None => Err(SoapError::NotAuthorised(
            "the TLS client certificate carries no OIN in subject serialNumber".into(),
        )),
    }
}

fn check_addressing(ep: &Endpoint, wsa: &Addressing) -> Result<(), SoapError> {
    if let Some(h) = wsa.duplicate {
        return Err(SoapError::InvalidAddressingHeader {
            header: h,
            reason: "occurs more than once".into(),
        });
    }
    let message_id = wsa
        .message_id
        .as_deref()
        .ok_or(SoapError::AddressingHeaderRequired("MessageID"))?;
    if !is_absolute_uri(message_id) {
        return Err(SoapError::InvalidAddressingHeader {
            header: "MessageID",
            reason: "must be an absolute URI such as urn:uuid:…".into(),
        });
    }
    let action = wsa
        .action
        .as_deref()
        .ok_or(SoapError::AddressingHeaderRequired("Action"))?;
    if action != ep.request_action() {
        return Err(SoapError::ActionNotSupported(action.to_owned()));
    }
    let to = wsa
        .to
        .as_deref()
        .ok_or(SoapError::AddressingHeaderRequired("To"))?;
    if !ep.accepts_to(to) {
        return Err(SoapError::InvalidAddressingHeader {
            header: "To",
            reason: format!("this endpoint is {}", ep.public_url),
        });
    }
    if wsa.from_without_address {
        return Err(SoapError::InvalidAddressingHeader {
            header: "From",
            reason: "wsa:Address is missing".into(),
        });
    }
    let from = wsa
        .from
        .as_deref()
        .ok_or(SoapError::AddressingHeaderRequired("From"))?;
    if !is_absolute_uri(from) || oin_from_address(from).is_none() {
        return Err(SoapError::InvalidAddressingHeader {
            header: "From",
            reason:
                "wsa:Address must be an absolute URI carrying the caller's OIN as ?oin=<20 digits>"
                    .into(),
        });
    }
    for (name, v) in [("ReplyTo", &wsa.reply_to), ("FaultTo", &wsa.fault_to)] {
        if let Some(v) = v {
            if v != WSA_ANONYMOUS {
                return Err(SoapError::InvalidAddressingHeader {
                    header: if name == "ReplyTo" {
                        "ReplyTo"
                    } else {
                        "FaultTo"
                    },
                    reason: format!("only {WSA_ANONYMOUS} is supported"),
                });
            }
        }
    }
    Ok(())
}

fn check_soap_action(header: Option<&str>, action: Option<&str>) -> Result<(), SoapError> {
    let Some(raw) = header else { return Ok(()) };
    let v = raw.trim();
    let unquoted = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    if unquoted.is_empty() || Some(unquoted) == action {
        Ok(())
    } else {
        Err(SoapError::BadSoapAction(raw.to_owned()))
    }
}
