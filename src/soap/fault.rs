//! Every way a request can be refused, and the one function that turns a refusal into a SOAP 1.1
//! Fault. Internal causes stay in the log; the wire gets a stable dkd code and a fixed text.

use crate::suwiml::fwi::{Level, Melding};

/// A refusal. Each variant knows its fault code, dkd code and wire text through [`describe`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// Not well-formed XML, a DTD, not a SOAP envelope, Body with other than one element.
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
    /// A SOAP 1.2 envelope or content type.
    #[error("SOAP version mismatch")]
    VersionMismatch,
    /// The TLS client certificate's OIN (or the signer's) is not on the allow-list.
    #[error("OIN not authorised: {0}")]
    NotAuthorised(String),
    /// HTTP SOAPAction neither empty nor equal to wsa:Action.
    #[error("SOAPAction {0:?} does not match")]
    BadSoapAction(String),
    /// The body does not conform to the schema.
    #[error("schema-invalid body: {0}")]
    SchemaInvalid(String),
    /// A required WS-Addressing header is absent.
    #[error("missing WS-Addressing header wsa:{0}")]
    AddressingHeaderRequired(&'static str),
    /// A WS-Addressing header has an unusable value or cardinality.
    #[error("invalid WS-Addressing header wsa:{header}: {reason}")]
    InvalidAddressingHeader {
        /// Which header.
        header: &'static str,
        /// What is wrong (logged and sent; it only repeats what the caller sent).
        reason: String,
    },
    /// wsa:Action names an operation this endpoint does not offer.
    #[error("action not supported: {0}")]
    ActionNotSupported(String),
    /// Not UTF-8.
    #[error("not UTF-8: {0}")]
    NotUtf8(String),
    /// A header block that claims to be WS-Addressing but is not one of WS-Addressing 1.0's.
    #[error("header block not allowed: {0}")]
    ForeignHeader(String),
    /// A header block with mustUnderstand="1" that dkd does not process.
    #[error("header block with mustUnderstand not understood: {0}")]
    MustUnderstand(String),
    /// Burgerservicenr fails the 11-test.
    #[error("Burgerservicenr fails the 11-test")]
    BsnElevenTest,
    /// Body larger than the configured limit.
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The body did not arrive within the configured time.
    #[error("request body not received within {0} s")]
    BodyTimeout(u64),
    /// Content-Type is not `text/xml`.
    #[error("unsupported Content-Type {0:?}")]
    ContentType(String),
    /// WS-Security refused the request.
    #[error("{0}")]
    Security(#[from] super::wssec::SecurityError),
    /// The response could not be signed. The string (the signer's reason) is logged, never sent.
    #[error("response signing failed: {0}")]
    Signing(String),
    /// A bug or an unexpected failure inside dkd. The string is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A dkd code: `fwi:Fout/Code` of a fault or an FWI answer (interface.md). The wire, the metric
/// labels and the audit trail carry [`DkdCode::as_str`]; dkd's code decides on the variant, never
/// on the digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DkdCode {
    /// 0001: not well-formed, a DTD, not a SOAP 1.1 envelope.
    InvalidEnvelope,
    /// 0002: the caller's OIN is not on the allow-list.
    NotAuthorised,
    /// 0003: SOAPAction neither empty nor wsa:Action.
    BadSoapAction,
    /// 0004: the body does not conform to the schema.
    SchemaInvalid,
    /// 0005: wsa:To.
    AddressingTo,
    /// 0006: wsa:Action (missing, invalid, or not offered).
    AddressingAction,
    /// 0007: wsa:MessageID.
    AddressingMessageId,
    /// 0008: wsa:RelatesTo.
    AddressingRelatesTo,
    /// 0009: not UTF-8.
    NotUtf8,
    /// 0010: a header block not allowed or not understood.
    HeaderBlock,
    /// 0011: any other WS-Addressing header (From, ReplyTo, FaultTo).
    AddressingOther,
    /// 0012: Burgerservicenr fails the 11-test.
    BsnElevenTest,
    /// 0013: the body exceeds the limit.
    TooLarge,
    /// 0014: the body did not arrive in time.
    BodyTimeout,
    /// 0015: Content-Type not text/xml.
    ContentType,
    /// 0020: wsse:Security missing or invalid.
    SecurityInvalid,
    /// 0021: a signature or digest does not verify.
    FailedCheck,
    /// 0022: the signing certificate is not usable or not trusted.
    SecurityToken,
    /// 0023: the timestamp is expired or not yet valid.
    MessageExpired,
    /// 0024: the signer's OIN is not allowed.
    SignerNotAllowed,
    /// 0025: the signer's OIN differs from the TLS client's.
    SignerMismatch,
    /// 0026: the MessageID was seen before.
    Replay,
    /// 0027: an algorithm is not allowed.
    Algorithm,
    /// 0028: the signature does not cover what it must.
    Coverage,
    /// 0051: the service cannot answer now (FWI).
    Unavailable,
    /// 0052: the IB could not ask a gemeente (FWI).
    GemeenteFailed,
    /// 0099: an internal error (the cause stays in the log).
    Internal,
    /// 0101: the gemeente in Bron is not registered at the IB (FWI).
    UnknownGemeente,
    /// 0102: the caller's OIN may not send updates for that gemeente (FWI).
    OinNotForGemeente,
    /// 0103: unknown CdClusteringIb (FWI).
    UnknownCluster,
    /// 0104: IndDkd other than 0, 1 or 2 (FWI).
    BadInd,
    /// 0105: Bron is not a gemeente (FWI).
    NotAGemeente,
}

impl DkdCode {
    /// Every code dkd emits, in numeric order.
    pub const ALL: [DkdCode; 32] = [
        DkdCode::InvalidEnvelope,
        DkdCode::NotAuthorised,
        DkdCode::BadSoapAction,
        DkdCode::SchemaInvalid,
        DkdCode::AddressingTo,
        DkdCode::AddressingAction,
        DkdCode::AddressingMessageId,
        DkdCode::AddressingRelatesTo,
        DkdCode::NotUtf8,
        DkdCode::HeaderBlock,
        DkdCode::AddressingOther,
        DkdCode::BsnElevenTest,
        DkdCode::TooLarge,
        DkdCode::BodyTimeout,
        DkdCode::ContentType,
        DkdCode::SecurityInvalid,
        DkdCode::FailedCheck,
        DkdCode::SecurityToken,
        DkdCode::MessageExpired,
        DkdCode::SignerNotAllowed,
        DkdCode::SignerMismatch,
        DkdCode::Replay,
        DkdCode::Algorithm,
        DkdCode::Coverage,
        DkdCode::Unavailable,
        DkdCode::GemeenteFailed,
        DkdCode::Internal,
        DkdCode::UnknownGemeente,
        DkdCode::OinNotForGemeente,
        DkdCode::UnknownCluster,
        DkdCode::BadInd,
        DkdCode::NotAGemeente,
    ];

    /// The code as it goes on the wire, in metric labels and in the audit trail.
    pub const fn as_str(self) -> &'static str {
        use crate::ib::{route, verwijsindex as vi};
        match self {
            DkdCode::InvalidEnvelope => "0001",
            DkdCode::NotAuthorised => "0002",
            DkdCode::BadSoapAction => "0003",
            DkdCode::SchemaInvalid => "0004",
            DkdCode::AddressingTo => "0005",
            DkdCode::AddressingAction => "0006",
            DkdCode::AddressingMessageId => "0007",
            DkdCode::AddressingRelatesTo => "0008",
            DkdCode::NotUtf8 => "0009",
            DkdCode::HeaderBlock => "0010",
            DkdCode::AddressingOther => "0011",
            DkdCode::BsnElevenTest => "0012",
            DkdCode::TooLarge => "0013",
            DkdCode::BodyTimeout => "0014",
            DkdCode::ContentType => "0015",
            DkdCode::SecurityInvalid => "0020",
            DkdCode::FailedCheck => "0021",
            DkdCode::SecurityToken => "0022",
            DkdCode::MessageExpired => "0023",
            DkdCode::SignerNotAllowed => "0024",
            DkdCode::SignerMismatch => "0025",
            DkdCode::Replay => "0026",
            DkdCode::Algorithm => "0027",
            DkdCode::Coverage => "0028",
            // The operations write these into FWI answers; `service` sits below `soap` and
            // cannot name this type, so its constants are the digits and this enum points at them.
            DkdCode::Unavailable => crate::suwiml::fwi::CODE_UNAVAILABLE,
            DkdCode::GemeenteFailed => route::CODE_GEMEENTE_FAILED,
            DkdCode::Internal => "0099",
            DkdCode::UnknownGemeente => vi::CODE_UNKNOWN_GEMEENTE,
            DkdCode::OinNotForGemeente => vi::CODE_OIN_NOT_FOR_GEMEENTE,
            DkdCode::UnknownCluster => vi::CODE_UNKNOWN_CLUSTER,
            DkdCode::BadInd => vi::CODE_BAD_IND,
            DkdCode::NotAGemeente => vi::CODE_NOT_A_GEMEENTE,
        }
    }

    /// The code a configuration or a peer's answer names; `None` for one dkd does not emit.
    pub fn parse(s: &str) -> Option<DkdCode> {
        DkdCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for DkdCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for DkdCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a refusal appears on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// `faultcode` QName, prefix included.
    pub faultcode: &'static str,
    /// dkd code in `fwi:Fout/Code`.
    pub code: DkdCode,
    /// `faultstring` and `fwi:Fout/Tekst`.
    pub text: String,
    /// Whether the WS-Addressing fault action applies (WS-A errors) instead of the service's.
    pub addressing_fault: bool,
}

/// The single mapping from a refusal to its wire form. HTTP status is always 500 for faults.
pub fn describe(e: &SoapError) -> FaultSpec {
    use DkdCode as C;
    let client = |code: DkdCode, text: String| FaultSpec {
        faultcode: "soapenv:Client",
        code,
        text,
        addressing_fault: false,
    };
    let wsa = |fc: &'static str, code: DkdCode, text: String| FaultSpec {
        faultcode: fc,
        code,
        text,
        addressing_fault: true,
    };
    match e {
        SoapError::InvalidEnvelope(why) => client(C::InvalidEnvelope, format!("Invalid SOAP envelope: {why}")),
        SoapError::VersionMismatch => FaultSpec {
            faultcode: "soapenv:VersionMismatch",
            code: C::InvalidEnvelope,
            text: "Only SOAP 1.1 (http://schemas.xmlsoap.org/soap/envelope/) is supported".into(),
            addressing_fault: false,
        },
        SoapError::NotAuthorised(_) => client(
            C::NotAuthorised,
            "Not authorised: the OIN of the caller is not allowed".into(),
        ),
        SoapError::BadSoapAction(v) => client(
            C::BadSoapAction,
            format!("SOAPAction {v:?} is not allowed: send \"\" or the value of wsa:Action"),
        ),
        SoapError::SchemaInvalid(why) => client(
            C::SchemaInvalid,
            format!("The request does not conform to the schema: {why}"),
        ),
        SoapError::AddressingHeaderRequired(h) => wsa(
            "wsa:MessageAddressingHeaderRequired",
            wsa_code(h),
            format!("Required WS-Addressing header wsa:{h} is missing"),
        ),
        SoapError::InvalidAddressingHeader { header, reason } => wsa(
            "wsa:InvalidAddressingHeader",
            wsa_code(header),
            format!("WS-Addressing header wsa:{header} is invalid: {reason}"),
        ),
        SoapError::ActionNotSupported(a) => wsa(
            "wsa:ActionNotSupported",
            C::AddressingAction,
            format!("wsa:Action {a:?} is not supported by this endpoint"),
        ),
        SoapError::NotUtf8(_) => client(C::NotUtf8, "The message must be UTF-8 encoded".into()),
        SoapError::ForeignHeader(h) => client(
            C::HeaderBlock,
            format!("Header block {h} is not allowed: only the WS-Addressing 1.0 headers are understood"),
        ),
        SoapError::MustUnderstand(h) => FaultSpec {
            faultcode: "soapenv:MustUnderstand",
            code: C::HeaderBlock,
            text: format!("Header block {h} is marked mustUnderstand but is not understood"),
            addressing_fault: false,
        },
        SoapError::BsnElevenTest => client(C::BsnElevenTest, "Burgerservicenr fails the 11-test".into()),
        SoapError::TooLarge(n) => client(
            C::TooLarge,
            format!("The request body exceeds the limit of {n} bytes"),
        ),
        SoapError::BodyTimeout(s) => client(
            C::BodyTimeout,
            format!("The request body was not received within {s} seconds"),
        ),
        SoapError::ContentType(ct) => client(
            C::ContentType,
            format!("Content-Type {ct:?} is not supported: send text/xml; charset=utf-8"),
        ),
        SoapError::Security(s) => security(s),
        SoapError::Signing(_) => FaultSpec {
            faultcode: "soapenv:Server",
            code: C::Internal,
            text: "Internal error: the response could not be signed".into(),
            addressing_fault: false,
        },
        SoapError::Internal(_) => FaultSpec {
            faultcode: "soapenv:Server",
            code: C::Internal,
            text: "Internal error".into(),
            addressing_fault: false,
        },
    }
}

/// WS-Security faults: fixed texts, so the wire says which rule failed but nothing about the
/// message (the log has the detail).
fn security(e: &super::wssec::SecurityError) -> FaultSpec {
    use super::wssec::SecurityError as S;
    use DkdCode as C;
    let (faultcode, code, text) = match e {
        S::Missing => (
            "wsse:InvalidSecurity",
            C::SecurityInvalid,
            "A signed wsse:Security header is required",
        ),
        S::Invalid(_) => (
            "wsse:InvalidSecurity",
            C::SecurityInvalid,
            "The wsse:Security header is invalid",
        ),
        S::FailedCheck(_) => (
            "wsse:FailedCheck",
            C::FailedCheck,
            "The signature or a digest does not verify",
        ),
        S::Token(_) => (
            "wsse:InvalidSecurityToken",
            C::SecurityToken,
            "The signing certificate is not usable or not trusted",
        ),
        S::Expired(_) => (
            "wsu:MessageExpired",
            C::MessageExpired,
            "The message timestamp is expired or not yet valid",
        ),
        S::SignerNotAllowed(_) => (
            "wsse:InvalidSecurityToken",
            C::SignerNotAllowed,
            "The OIN of the signing certificate is not allowed",
        ),
        S::SignerMismatch { .. } => (
            "wsse:InvalidSecurityToken",
            C::SignerMismatch,
            "The OIN of the signing certificate differs from the TLS client certificate",
        ),
        S::Replay(_) => (
            "wsse:InvalidSecurity",
            C::Replay,
            "The MessageID has been seen before",
        ),
        S::Algorithm(_) => (
            "wsse:InvalidSecurity",
            C::Algorithm,
            "An algorithm is not allowed: use exc-c14n, RSA-SHA256+ and SHA-256+",
        ),
        S::Coverage(_) => (
            "wsse:InvalidSecurity",
            C::Coverage,
            "The signature must cover the Body, the Timestamp and every WS-Addressing header",
        ),
    };
    FaultSpec {
        faultcode,
        code,
        text: text.into(),
        addressing_fault: false,
    }
}

fn wsa_code(header: &str) -> DkdCode {
    match header {
        "To" => DkdCode::AddressingTo,
        "Action" => DkdCode::AddressingAction,
        "MessageID" => DkdCode::AddressingMessageId,
        "RelatesTo" => DkdCode::AddressingRelatesTo,
        _ => DkdCode::AddressingOther,
    }
}

impl FaultSpec {
    /// The `fwi:Fout` detail.
    pub fn melding(&self, dn: &str) -> Melding {
        Melding {
            level: Level::Fout,
            code: self.code.as_str().into(),
            tekst: self.text.clone(),
            details: Vec::new(),
            dn: dn.into(),
        }
    }

    /// Writes the `soapenv:Fault` element.
    pub fn write(&self, dn: &str, out: &mut String) {
        use crate::xml::escape;
        // The faultcode's prefix (soapenv, wsa, wsse, wsu) is declared on the Envelope.
        out.push_str("<soapenv:Fault><faultcode>");
        out.push_str(self.faultcode);
        out.push_str("</faultcode><faultstring>");
        escape(&self.text, out);
        out.push_str("</faultstring><detail>");
        self.melding(dn).write_global_fout(out);
        out.push_str("</detail></soapenv:Fault>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_reach_the_wire() {
        let spec = describe(&SoapError::Internal("sled: /var/lib/dkd corrupt".into()));
        let mut s = String::new();
        spec.write("CN=test", &mut s);
        assert!(!s.contains("sled"), "{s}");
        assert!(s.contains("<faultcode>soapenv:Server</faultcode>"));
        assert!(s.contains("<Code>0099</Code>"));
    }

    #[test]
    fn every_dkd_code_reads_back_from_its_digits() {
        let digits: std::collections::HashSet<&str> =
            DkdCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(digits.len(), DkdCode::ALL.len(), "one code per variant");
        for c in DkdCode::ALL {
            assert_eq!(DkdCode::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(DkdCode::parse("0013"), Some(DkdCode::TooLarge));
        assert_eq!(DkdCode::parse("9999"), None);
        assert_eq!(DkdCode::parse(" 0013"), None);
    }

    #[test]
    fn the_readme_lists_every_dkd_code_and_no_other() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### dkd fault codes")
            .nth(1)
            .and_then(|s| s.split("\n#").next())
            .expect("README: ### dkd fault codes");
        let listed: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let mut emitted: Vec<&str> = DkdCode::ALL.iter().map(|c| c.as_str()).collect();
        let mut documented = listed.clone();
        emitted.sort_unstable();
        documented.sort_unstable();
        assert_eq!(documented, emitted, "README lists {listed:?}");
    }

    #[test]
    fn wsa_faults_use_the_wsa_fault_action() {
        let spec = describe(&SoapError::AddressingHeaderRequired("MessageID"));
        let mut s = String::new();
        spec.write("CN=test", &mut s);
        assert!(
            s.contains("<faultcode>wsa:MessageAddressingHeaderRequired</faultcode>"),
            "{s}"
        );
        assert_eq!(spec.code, "0007");
        assert!(spec.addressing_fault);
    }
}
