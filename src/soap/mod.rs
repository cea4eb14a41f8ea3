//! The SOAP layer: bytes of a request in, bytes of a response out. Envelope structure,
//! WS-Addressing, the header policy, authorisation by OIN and faults live here; the operation is
//! delegated to `service`. No sockets, no hyper, no sled.

mod checks;
pub mod client;
pub mod dsig;
pub mod envelope;
pub mod fault;
mod requests;
pub mod security_error;
#[cfg(test)]
mod tests;
pub mod wssec;

use crate::chain::scenario::Effect;
use crate::gemeente::service::Service;
use crate::ib::Ib;
use crate::suwiml::gsd::{self, Reply};
use crate::suwiml::types::Bsn;
use crate::suwiml::verwijsindex as vi;
use crate::xml::{escape, NS_SOAP11, NS_WSA, NS_WSSE, NS_WSU};
use checks::process;
use envelope::{is_absolute_uri, oin_from_address, Addressing, WSA_ANONYMOUS};
use fault::{describe, DkdCode, SoapError};
pub use requests::{example_request, signed_request};
use std::collections::HashSet;

/// The WS-Addressing action used on WS-Addressing faults.
pub const ACTION_WSA_FAULT: &str = "http://www.w3.org/2005/08/addressing/fault";

/// The endpoint's fixed settings, built once from the configuration.
#[derive(Clone)]
pub struct Endpoint {
    /// The operations and the store.
    pub service: Service,
    /// The public URL of this endpoint: the expected `wsa:To`, and `wsa:From` on responses.
    pub public_url: String,
    /// Further accepted `wsa:To` values (e.g. the address behind a reverse proxy).
    pub to_aliases: Vec<String>,
    /// dkd's own (sub-)OINs: `wsa:To` may be the public URL with `?oin=` naming one of them.
    pub own_oins: Vec<String>,
    /// OINs allowed to call.
    pub allowed_oins: HashSet<String>,
    /// WS-Security: request verification and response signing; `None` when signing is off.
    pub security: Option<std::sync::Arc<Security>>,
    /// Which service this endpoint is, in which role.
    pub kind: EndpointKind,
}

/// What an endpoint serves.
#[derive(Clone)]
pub enum EndpointKind {
    /// The gemeente's GSDDossierReintegratie: answered from its own store.
    Gemeente,
    /// The IB's GSDDossierReintegratie: routed to the gemeenten. The operation waits on the
    /// network, so the transport runs it between [`accept`] and [`respond`].
    IbRouter(std::sync::Arc<Ib>),
    /// The IB's IBVerwijsindex: the gemeenten's updates.
    IbVerwijsindex(std::sync::Arc<Ib>),
}

impl EndpointKind {
    fn is_verwijsindex(&self) -> bool {
        matches!(self, EndpointKind::IbVerwijsindex(_))
    }
}

impl Endpoint {
    /// The answer "cannot answer now" (0051) to `request`, in its operation's own words: no
    /// room for the audit record, or the shared replay cache out of reach.
    pub fn unavailable(&self, request: &Request) -> Answer {
        match (request, &self.kind) {
            (Request::Verwijsindex(_), EndpointKind::IbVerwijsindex(ib)) => {
                Answer::Verwijsindex(ib.update_unavailable())
            }
            _ => Answer::Gsd(self.service.unavailable()),
        }
    }

    /// Whether a request's `wsa:To` names this endpoint: the public URL or an alias, exactly, or
    /// either with a query of only `oin`/`OIN` naming dkd's own OIN (TS 4.0, WUS WA001: Suwinet
    /// clients put the provider's OIN there).
    pub fn accepts_to(&self, to: &str) -> bool {
        let names_this =
            |url: &str| url == self.public_url || self.to_aliases.iter().any(|a| a == url);
        if names_this(to) {
            return true;
        }
        let Some((url, query)) = to.split_once('?') else {
            return false;
        };
        let Some((key, oin)) = query.split_once('=') else {
            return false;
        };
        names_this(url) && (key == "oin" || key == "OIN") && self.own_oins.iter().any(|o| o == oin)
    }

    /// The operation's name, for logs, metrics and the audit trail.
    pub fn operation(&self) -> &'static str {
        if self.kind.is_verwijsindex() {
            "IBVerwijsindex"
        } else {
            "GSDReintegratieInfo"
        }
    }

    fn request_action(&self) -> &'static str {
        if self.kind.is_verwijsindex() {
            vi::ACTION_REQUEST
        } else {
            gsd::ACTION_REQUEST
        }
    }

    fn response_action(&self) -> &'static str {
        if self.kind.is_verwijsindex() {
            vi::ACTION_RESPONSE
        } else {
            gsd::ACTION_RESPONSE
        }
    }

    fn fault_action(&self) -> &'static str {
        if self.kind.is_verwijsindex() {
            vi::ACTION_FAULT
        } else {
            gsd::ACTION_FAULT
        }
    }
}

/// A request body that passed every envelope, addressing and security check.
#[derive(Debug, Clone)]
pub enum Request {
    /// `GSDReintegratieInfo`.
    Gsd(Bsn),
    /// `IBVerwijsindex`.
    Verwijsindex(vi::Request),
}

impl Request {
    /// The BSN asked about or reported.
    pub fn bsn(&self) -> Bsn {
        match self {
            Request::Gsd(b) => *b,
            Request::Verwijsindex(r) => r.bsn,
        }
    }
}

/// What the operation answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The GSDReintegratieInfo reply.
    Gsd(Reply),
    /// The IBVerwijsindex reply.
    Verwijsindex(vi::Answer),
}

/// A request accepted by [`accept`], waiting for its answer.
#[derive(Debug)]
pub struct Accepted {
    ctx: ReplyContext,
    /// The request.
    pub request: Request,
    /// OIN of the TLS client certificate (authorised by [`accept`]).
    pub tls_oin: String,
}

impl Accepted {
    /// The request's `wsa:From` address (carries the OIN of the party asked for).
    pub fn from_address(&self) -> Option<&str> {
        self.ctx.from.as_deref()
    }

    /// The request's `wsa:MessageID`.
    pub fn message_id(&self) -> Option<&str> {
        self.ctx.message_id.as_deref()
    }

    /// The OIN in the request's `wsa:From`.
    pub fn from_oin(&self) -> Option<&str> {
        self.ctx.from_oin.as_deref()
    }
}

/// The WS-Security setup of an endpoint.
pub struct Security {
    /// How requests are verified.
    pub verify: wssec::VerifyPolicy,
    /// How responses are signed.
    pub signer: wssec::Signer,
}

/// A request as the transport saw it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The HTTP body.
    pub body: &'a [u8],
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `SOAPAction` header, quotes included.
    pub soap_action: Option<&'a str>,
    /// The OIN from the TLS client certificate, if the certificate carried one.
    pub tls_oin: Option<&'a str>,
}

/// What happened, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A ClientSuwi was returned.
    Found,
    /// An IBVerwijsindex update was stored (`Acknowledgement`).
    Acknowledged,
    /// `fwi:NietsGevonden`.
    NotFound,
    /// `fwi:FWI` Fout (HTTP 200).
    FwiFout,
    /// A SOAP Fault with this dkd code.
    Fault(DkdCode),
    /// Nothing usable reached the client: a scenario hung, closed or answered 503 instead
    /// (`scenario:hang`, `scenario:reset`, `scenario:http-503`).
    Scenario(&'static str),
}

impl Outcome {
    /// A short label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Found => "found",
            Outcome::Acknowledged => "acknowledged",
            Outcome::NotFound => "not_found",
            Outcome::FwiFout => "fwi_fout",
            Outcome::Fault(_) => "fault",
            Outcome::Scenario(label) => label,
        }
    }
}

/// A response ready for the transport.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// HTTP status: 200 for answers, 500 for faults.
    pub status: u16,
    /// The complete envelope.
    pub body: String,
    /// For logs and metrics.
    pub outcome: Outcome,
    /// Request `wsa:MessageID`, when read.
    pub message_id: Option<String>,
    /// OIN in the request's `wsa:From`, when read.
    pub from_oin: Option<String>,
    /// The BSN asked about, masked, when read.
    pub bsn: Option<crate::suwiml::types::Bsn>,
    /// OIN of the request's signing certificate, when verified.
    pub signer_oin: Option<String>,
    /// The namespace of each unknown header block ignored (`""` for none), for the metrics.
    pub ignored_headers: Vec<String>,
    /// A scenario's part for the transport (delay, hang, reset, 503); `None` normally.
    pub wire: Option<crate::chain::scenario::Wire>,
}

/// Handles one request whose operation needs no network: everything but the IB's routing. Never
/// panics on input; every refusal becomes a fault via [`fault::describe`].
pub fn handle(ep: &Endpoint, req: Inbound<'_>) -> Outbound {
    handle_as(ep, req, None)
}

/// [`handle`] for a gemeente that may run a scenario: once the request is accepted, the scenario
/// decides (once) what this answer gets; the soap layer applies its own part here and hands the
/// transport's part on in [`Outbound::wire`]. Refusals of bad requests are never affected.
pub fn handle_as(
    ep: &Endpoint,
    req: Inbound<'_>,
    scenario: Option<&crate::chain::scenario::Live>,
) -> Outbound {
    let acc = match accept(ep, req) {
        Ok(a) => a,
        Err(out) => return *out,
    };
    let answer = match (&acc.request, &ep.kind) {
        (Request::Gsd(bsn), EndpointKind::Gemeente) => {
            Answer::Gsd(ep.service.reintegratie_info(bsn))
        }
        (Request::Verwijsindex(r), EndpointKind::IbVerwijsindex(ib)) => {
            Answer::Verwijsindex(ib.verwijsindex(&acc.tls_oin, r))
        }
        _ => {
            return fault_response(
                ep,
                &acc.ctx,
                &SoapError::Internal("this endpoint's operation is asynchronous".into()),
            )
        }
    };
    let effect = match (&ep.kind, scenario) {
        (EndpointKind::Gemeente, Some(s)) => s.decide(acc.request.bsn().as_str()),
        _ => None,
    };
    match effect {
        None => respond(ep, acc, answer),
        Some(e) => respond_as(ep, acc, answer, &e),
    }
}

/// The dkd fault codes a `fault` scenario can answer with.
pub const EMULATED_FAULTS: [DkdCode; 9] = [
    DkdCode::InvalidEnvelope,
    DkdCode::NotAuthorised,
    DkdCode::SchemaInvalid,
    DkdCode::BsnElevenTest,
    DkdCode::SecurityInvalid,
    DkdCode::FailedCheck,
    DkdCode::SecurityToken,
    DkdCode::Replay,
    DkdCode::Internal,
];

/// The refusal a `fault` scenario configured with dkd code `code` answers (see [`emulation`]);
/// `None` for a code that is not one of [`EMULATED_FAULTS`].
pub fn emulated_fault(code: &str) -> Option<SoapError> {
    DkdCode::parse(code).and_then(emulation)
}

/// The refusal a `fault` scenario with dkd code `code` answers, worded by [`fault::describe`]
/// like the real one; `None` for a code not in [`EMULATED_FAULTS`].
pub fn emulation(code: DkdCode) -> Option<SoapError> {
    use wssec::SecurityError as S;
    let why = || "emulated by a scenario".to_owned();
    Some(match code {
        DkdCode::InvalidEnvelope => SoapError::InvalidEnvelope(why()),
        DkdCode::NotAuthorised => SoapError::NotAuthorised(why()),
        DkdCode::SchemaInvalid => SoapError::SchemaInvalid(why()),
        DkdCode::BsnElevenTest => SoapError::BsnElevenTest,
        DkdCode::SecurityInvalid => SoapError::Security(S::Invalid(why())),
        DkdCode::FailedCheck => SoapError::Security(S::FailedCheck(why())),
        DkdCode::SecurityToken => SoapError::Security(S::Token(why())),
        DkdCode::Replay => SoapError::Security(S::Replay(why())),
        DkdCode::Internal => SoapError::Internal(why()),
        _ => return None,
    })
}

/// How a response is written: as it should be, or broken by a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Proper,
    Unsigned,
    BadSignature,
    NoConfirmation,
}

/// [`respond`] under a scenario's effect. Every change is made to the answer being written, never
/// to what the store holds.
fn respond_as(ep: &Endpoint, acc: Accepted, answer: Answer, effect: &Effect) -> Outbound {
    let look = match effect {
        Effect::Unsigned => Look::Unsigned,
        Effect::BadSignature => Look::BadSignature,
        Effect::NoConfirmation => Look::NoConfirmation,
        _ => Look::Proper,
    };
    let bsn = acc.request.bsn();
    let mut out = match (effect, answer) {
        (Effect::Fault(code), _) => {
            let e = emulation(*code).unwrap_or(SoapError::Internal(format!(
                "scenario fault code {code} cannot be emulated"
            )));
            tracing::warn!(code = %code, "scenario: answered with a fault on purpose");
            fault_response(ep, &acc.ctx, &e)
        }
        (Effect::OtherBsn, Answer::Gsd(reply)) => {
            let other = other_bsn(&bsn);
            let person = match reply {
                Reply::Client(p, _) => crate::suwiml::model::Person { bsn: other, ..*p },
                _ => crate::suwiml::model::Person {
                    bsn: other,
                    voornamen: None,
                    voorletters: None,
                    voorvoegsel: None,
                    achternaam: None,
                    geslacht: None,
                    geboortedat: None,
                    bron: None,
                    atl_relaties: Vec::new(),
                },
            };
            write_answer(
                ep,
                &acc,
                &Answer::Gsd(Reply::Client(Box::new(person), Vec::new())),
                look,
                |_| {},
            )
        }
        (Effect::SchemaInvalid, answer) => write_answer(ep, &acc, &answer, look, break_schema),
        (_, answer) => write_answer(ep, &acc, &answer, look, |_| {}),
    };
    out.bsn = Some(bsn);
    out.wire = effect.wire();
    // The audit trail and the log say what the client got, not what was written and withheld.
    if let Some(label) = out.wire.and_then(crate::chain::scenario::Wire::unanswered) {
        out.outcome = Outcome::Scenario(label);
    }
    out
}

/// A valid BSN other than `bsn` (the next one up that passes the 11-test).
fn other_bsn(bsn: &Bsn) -> Bsn {
    let prefix: u32 = bsn.as_str()[..8].parse().unwrap_or(0);
    (1..=20)
        .filter_map(|d| Bsn::from_prefix((prefix + d) % 100_000_000))
        .find(|b| b != bsn)
        .unwrap_or(*bsn)
}

/// Makes a written GSDReintegratieInfoResponse schema-invalid: a ClientSuwi loses its required
/// Burgerservicenr; any other answer gets an element the schema does not know.
fn break_schema(body: &mut String) {
    if let (Some(start), Some(end)) = (
        body.find("<Burgerservicenr>"),
        body.find("</Burgerservicenr>"),
    ) {
        body.replace_range(start..end + "</Burgerservicenr>".len(), "");
    } else if let Some(i) = body.find('>') {
        body.insert_str(i + 1, "<Onverwacht>scenario</Onverwacht>");
    }
}

/// The first half of [`handle`]: every check on the request, up to the parsed body.
pub fn accept(ep: &Endpoint, req: Inbound<'_>) -> Result<Accepted, Box<Outbound>> {
    let mut ctx = ReplyContext::default();
    match process(ep, req, &mut ctx) {
        Ok(request) => {
            let acc = Accepted {
                ctx,
                request,
                tls_oin: req.tls_oin.unwrap_or_default().to_owned(),
            };
            shared_replay_check(ep, acc)
        }
        Err(e) => Err(Box::new(fault_response(ep, &ctx, &e))),
    }
}

/// The replay check across instances (PostgreSQL), after this process's own cache let the
/// MessageID pass: a MessageID another instance answered within its window gets the same fault
/// as a replay here; when the shared memory cannot be asked the request is answered 0051,
/// never without its replay check.
fn shared_replay_check(ep: &Endpoint, acc: Accepted) -> Result<Accepted, Box<Outbound>> {
    let Some(sec) = &ep.security else {
        return Ok(acc);
    };
    let (Some(shared), Some(id), Some(until)) = (
        sec.verify.replay.shared(),
        acc.ctx.message_id.as_deref(),
        acc.ctx.replay_until,
    ) else {
        return Ok(acc);
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match shared.claim(id, now, until) {
        Ok(true) => Ok(acc),
        Ok(false) => Err(Box::new(fault_response(
            ep,
            &acc.ctx,
            &SoapError::Security(wssec::SecurityError::Replay(id.to_owned())),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "shared replay check failed: answered 0051");
            sec.verify.replay.forget(id);
            let answer = ep.unavailable(&acc.request);
            Err(Box::new(respond(ep, acc, answer)))
        }
    }
}

/// The second half of [`handle`]: the answer written, addressed and signed.
pub fn respond(ep: &Endpoint, acc: Accepted, answer: Answer) -> Outbound {
    let mut out = write_answer(ep, &acc, &answer, Look::Proper, |_| {});
    out.bsn = Some(acc.request.bsn());
    out
}

fn write_answer(
    ep: &Endpoint,
    acc: &Accepted,
    answer: &Answer,
    look: Look,
    mutate: impl FnOnce(&mut String),
) -> Outbound {
    let mut body = String::with_capacity(2048);
    let outcome = match answer {
        Answer::Gsd(reply) => {
            gsd::write_response(reply, "", &mut body);
            match reply {
                Reply::Client(..) => Outcome::Found,
                Reply::NietsGevonden => Outcome::NotFound,
                Reply::Fwi(_) => Outcome::FwiFout,
            }
        }
        Answer::Verwijsindex(a) => {
            vi::write_response(a, &mut body);
            match a {
                vi::Answer::Acknowledgement => Outcome::Acknowledged,
                vi::Answer::Fwi(_) => Outcome::FwiFout,
            }
        }
    };
    mutate(&mut body);
    envelope_as(
        ep,
        &acc.ctx,
        ep.response_action(),
        &body,
        200,
        outcome,
        look,
    )
}

/// A fresh `urn:uuid:` WS-Addressing MessageID (a version 4 UUID).
pub fn new_message_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// Builds the fault response for a refusal detected outside [`handle`] (body too large, read
/// timeout), so the transport uses the same mapping.
pub fn reject(ep: &Endpoint, e: &SoapError) -> Outbound {
    fault_response(ep, &ReplyContext::default(), e)
}

/// [`reject`] for a request refused after part of it arrived (over the body limit, or not in
/// time): the fault is addressed from the WS-Addressing headers in that part, when it holds them.
pub fn reject_read(ep: &Endpoint, e: &SoapError, prefix: &[u8]) -> Outbound {
    let mut ctx = ReplyContext::default();
    remember(&envelope::addressing_of_prefix(prefix), &mut ctx);
    fault_response(ep, &ctx, e)
}

/// What is known about the request when the reply is written.
#[derive(Debug, Default)]
struct ReplyContext {
    message_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    from_oin: Option<String>,
    /// The verified request's SignatureValue, echoed in SignatureConfirmation.
    confirm: Option<String>,
    signer_oin: Option<String>,
    ignored_headers: Vec<String>,
    /// Until when the verified MessageID counts as seen (see [`wssec::Verified`]).
    replay_until: Option<i64>,
}

fn remember(wsa: &Addressing, ctx: &mut ReplyContext) {
    ctx.message_id = wsa.message_id.clone().filter(|m| is_absolute_uri(m));
    ctx.from = wsa.from.clone().filter(|f| is_absolute_uri(f));
    ctx.to = wsa.to.clone();
    ctx.from_oin = wsa
        .from
        .as_deref()
        .and_then(oin_from_address)
        .map(str::to_owned);
}

fn fault_response(ep: &Endpoint, ctx: &ReplyContext, e: &SoapError) -> Outbound {
    fault_written(ep, ctx, e, |ep, ctx, written| {
        envelope_signed_by(ep, signer_for(ep, Look::Proper), ctx, written, Look::Proper)
    })
}

/// The fault for `e`, worded by [`describe`], put in an envelope by `envelope`.
fn fault_written(
    ep: &Endpoint,
    ctx: &ReplyContext,
    e: &SoapError,
    envelope: impl FnOnce(&Endpoint, &ReplyContext, Written<'_>) -> Outbound,
) -> Outbound {
    let spec = describe(e);
    match e {
        SoapError::Internal(why) | SoapError::Signing(why) => {
            tracing::error!(error = %why, "internal error answered as soapenv:Server")
        }
        other => tracing::info!(code = spec.code.as_str(), reason = %other, "request refused"),
    }
    let mut body = String::with_capacity(1024);
    spec.write(&ep.service.dn, &mut body);
    let action = if spec.addressing_fault {
        ACTION_WSA_FAULT
    } else {
        ep.fault_action()
    };
    envelope(
        ep,
        ctx,
        Written {
            action,
            body: &body,
            status: 500,
            outcome: Outcome::Fault(spec.code),
        },
    )
}

/// What signs a response: the endpoint's [`wssec::Signer`]. A seam, so that the answer when
/// signing fails (which a loaded RSA key does not) can be tested.
trait SignResponse {
    fn security_header(
        &self,
        parts: &[(&str, &str)],
        confirm: Option<&str>,
        now: time::OffsetDateTime,
    ) -> Result<String, wssec::SecurityError>;
}

impl SignResponse for wssec::Signer {
    fn security_header(
        &self,
        parts: &[(&str, &str)],
        confirm: Option<&str>,
        now: time::OffsetDateTime,
    ) -> Result<String, wssec::SecurityError> {
        wssec::Signer::security_header(self, parts, confirm, now)
    }
}

fn envelope_as(
    ep: &Endpoint,
    ctx: &ReplyContext,
    action: &str,
    body: &str,
    status: u16,
    outcome: Outcome,
    look: Look,
) -> Outbound {
    let written = Written {
        action,
        body,
        status,
        outcome,
    };
    envelope_signed_by(ep, signer_for(ep, look), ctx, written, look)
}

/// The endpoint's signer, unless signing is off or the scenario withholds the signature.
fn signer_for(ep: &Endpoint, look: Look) -> Option<&dyn SignResponse> {
    ep.security
        .as_deref()
        .filter(|_| look != Look::Unsigned)
        .map(|sec| &sec.signer as &dyn SignResponse)
}

/// A response's content, before the envelope.
struct Written<'a> {
    action: &'a str,
    body: &'a str,
    status: u16,
    outcome: Outcome,
}

fn envelope_signed_by(
    ep: &Endpoint,
    signing: Option<&dyn SignResponse>,
    ctx: &ReplyContext,
    written: Written<'_>,
    look: Look,
) -> Outbound {
    let Written {
        action,
        body,
        status,
        outcome,
    } = written;
    let confirm = ctx
        .confirm
        .as_deref()
        .filter(|_| look != Look::NoConfirmation);
    let id = |name: &'static str| signing.map(|_| name);
    let message_id = new_message_id();
    // The response's From is the address the caller used, so a caller behind an alias sees its own.
    let from = ctx
        .to
        .as_deref()
        .filter(|t| ep.accepts_to(t))
        .unwrap_or(&ep.public_url);
    let to = ctx.from.as_deref().unwrap_or(WSA_ANONYMOUS);
    // Each header is written in its exclusive-C14N form, so the same bytes are digested; all in
    // one string, each remembered by its span (a string and a boxed writer per header were ~14
    // allocations per answer).
    let mut headers = String::with_capacity(1024);
    let mut spans: Vec<(&'static str, std::ops::Range<usize>)> = Vec::with_capacity(5);
    let mut push = |name: &'static str, ids: &'static str, value: &str, address: bool| {
        let start = headers.len();
        wssec::wsa_header(
            name,
            id(ids),
            |out| {
                if address {
                    out.push_str("<wsa:Address>");
                    escape(value, out);
                    out.push_str("</wsa:Address>");
                } else {
                    escape(value, out);
                }
            },
            &mut headers,
        );
        spans.push((ids, start..headers.len()));
    };
    push("MessageID", "_MessageID", &message_id, false);
    if let Some(r) = &ctx.message_id {
        push("RelatesTo", "_RelatesTo", r, false);
    }
    push("Action", "_Action", action, false);
    push("To", "_To", to, false);
    push("From", "_From", from, true);
    let security_header = signing.map(|signer| {
        let canonical_body = wssec::canonical_body("_Body", body);
        let mut parts: Vec<(&str, &str)> = spans
            .iter()
            .map(|(i, span)| (*i, &headers[span.clone()]))
            .collect();
        parts.push(("_Body", &canonical_body));
        signer
            .security_header(&parts, confirm, time::OffsetDateTime::now_utc())
            .map(|h| match look {
                Look::BadSignature => break_signature(h),
                _ => h,
            })
    });
    let security_header = match security_header {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            // Signing cannot fail for a loaded RSA key; if it does, the caller gets a fault like
            // any other, unsigned since signing is what failed, rather than an unsigned answer.
            let e = SoapError::Signing(e.to_string());
            return fault_written(ep, ctx, &e, |ep, ctx, written| {
                envelope_signed_by(ep, None, ctx, written, Look::Proper)
            });
        }
    };
    let mut s = String::with_capacity(body.len() + 4096);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    s.push_str("<soapenv:Envelope xmlns:soapenv=\"");
    s.push_str(NS_SOAP11);
    // Fault codes are QNames in these namespaces; declaring them here (not on faultcode) keeps the
    // Body's canonical form equal to its bytes.
    s.push_str("\" xmlns:wsa=\"");
    s.push_str(NS_WSA);
    s.push_str("\" xmlns:wsse=\"");
    s.push_str(NS_WSSE);
    s.push_str("\" xmlns:wsu=\"");
    s.push_str(NS_WSU);
    s.push_str("\"><soapenv:Header>");
    if let Some(h) = &security_header {
        s.push_str(h);
    }
    s.push_str(&headers);
    s.push_str("</soapenv:Header>");
    if signing.is_some() {
        s.push_str("<soapenv:Body wsu:Id=\"_Body\">");
    } else {
        s.push_str("<soapenv:Body>");
    }
    s.push_str(body);
    s.push_str("</soapenv:Body></soapenv:Envelope>");
    Outbound {
        status,
        body: s,
        outcome,
        message_id: ctx.message_id.clone(),
        from_oin: ctx.from_oin.clone(),
        bsn: None,
        signer_oin: ctx.signer_oin.clone(),
        ignored_headers: ctx.ignored_headers.clone(),
        wire: None,
    }
}

/// A signature that no longer verifies: one base64 character of the SignatureValue changed (the
/// header stays well-formed, every digest still matches).
fn break_signature(mut header: String) -> String {
    const TAG: &str = "<ds:SignatureValue>";
    if let Some(i) = header.find(TAG).map(|i| i + TAG.len()) {
        let c = header.as_bytes().get(i).copied().unwrap_or(b'A');
        let swapped = if c == b'A' { "B" } else { "A" };
        header.replace_range(i..i + 1, swapped);
    }
    header
}
