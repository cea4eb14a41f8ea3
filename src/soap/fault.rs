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
    /// A bug or an unexpected failure inside dkd. The string is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a refusal appears on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// `faultcode` QName, prefix included.
    pub faultcode: &'static str,
    /// dkd code in `fwi:Fout/Code`.
    pub code: &'static str,
    /// `faultstring` and `fwi:Fout/Tekst`.
    pub text: String,
    /// Whether the WS-Addressing fault action applies (WS-A errors) instead of the service's.
    pub addressing_fault: bool,
}

/// The single mapping from a refusal to its wire form. HTTP status is always 500 for faults.
pub fn describe(e: &SoapError) -> FaultSpec {
    let client = |code: &'static str, text: String| FaultSpec {
        faultcode: "soapenv:Client",
        code,
        text,
        addressing_fault: false,
    };
    let wsa = |fc: &'static str, code: &'static str, text: String| FaultSpec {
        faultcode: fc,
        code,
        text,
        addressing_fault: true,
    };
    match e {
        SoapError::InvalidEnvelope(why) => client("0001", format!("Invalid SOAP envelope: {why}")),
        SoapError::VersionMismatch => FaultSpec {
            faultcode: "soapenv:VersionMismatch",
            code: "0001",
            text: "Only SOAP 1.1 (http://schemas.xmlsoap.org/soap/envelope/) is supported".into(),
            addressing_fault: false,
        },
        SoapError::NotAuthorised(_) => client(
            "0002",
            "Not authorised: the OIN of the caller is not allowed".into(),
        ),
        SoapError::BadSoapAction(v) => client(
            "0003",
            format!("SOAPAction {v:?} is not allowed: send \"\" or the value of wsa:Action"),
        ),
        SoapError::SchemaInvalid(why) => client(
            "0004",
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
            "0006",
            format!("wsa:Action {a:?} is not supported by this endpoint"),
        ),
        SoapError::NotUtf8(_) => client("0009", "The message must be UTF-8 encoded".into()),
        SoapError::ForeignHeader(h) => client(
            "0010",
            format!("Header block {h} is not allowed: only the WS-Addressing 1.0 headers are understood"),
        ),
        SoapError::MustUnderstand(h) => FaultSpec {
            faultcode: "soapenv:MustUnderstand",
            code: "0010",
            text: format!("Header block {h} is marked mustUnderstand but is not understood"),
            addressing_fault: false,
        },
        SoapError::BsnElevenTest => client("0012", "Burgerservicenr fails the 11-test".into()),
        SoapError::TooLarge(n) => client(
            "0013",
            format!("The request body exceeds the limit of {n} bytes"),
        ),
        SoapError::BodyTimeout(s) => client(
            "0014",
            format!("The request body was not received within {s} seconds"),
        ),
        SoapError::ContentType(ct) => client(
            "0015",
            format!("Content-Type {ct:?} is not supported: send text/xml; charset=utf-8"),
        ),
        SoapError::Security(s) => security(s),
        SoapError::Internal(_) => FaultSpec {
            faultcode: "soapenv:Server",
            code: "0099",
            text: "Internal error".into(),
            addressing_fault: false,
        },
    }
}

/// WS-Security faults: fixed texts, so the wire says which rule failed but nothing about the
/// message (the log has the detail).
fn security(e: &super::wssec::SecurityError) -> FaultSpec {
    use super::wssec::SecurityError as S;
    let (faultcode, code, text) = match e {
        S::Missing => (
            "wsse:InvalidSecurity",
            "0020",
            "A signed wsse:Security header is required",
        ),
        S::Invalid(_) => (
            "wsse:InvalidSecurity",
            "0020",
            "The wsse:Security header is invalid",
        ),
        S::FailedCheck(_) => (
            "wsse:FailedCheck",
            "0021",
            "The signature or a digest does not verify",
        ),
        S::Token(_) => (
            "wsse:InvalidSecurityToken",
            "0022",
            "The signing certificate is not usable or not trusted",
        ),
        S::Expired(_) => (
            "wsu:MessageExpired",
            "0023",
            "The message timestamp is expired or not yet valid",
        ),
        S::SignerNotAllowed(_) => (
            "wsse:InvalidSecurityToken",
            "0024",
            "The OIN of the signing certificate is not allowed",
        ),
        S::SignerMismatch { .. } => (
            "wsse:InvalidSecurityToken",
            "0025",
            "The OIN of the signing certificate differs from the TLS client certificate",
        ),
        S::Replay(_) => (
            "wsse:InvalidSecurity",
            "0026",
            "The MessageID has been seen before",
        ),
        S::Algorithm(_) => (
            "wsse:InvalidSecurity",
            "0027",
            "An algorithm is not allowed: use exc-c14n, RSA-SHA256+ and SHA-256+",
        ),
        S::Coverage(_) => (
            "wsse:InvalidSecurity",
            "0028",
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

fn wsa_code(header: &str) -> &'static str {
    match header {
        "To" => "0005",
        "Action" => "0006",
        "MessageID" => "0007",
        "RelatesTo" => "0008",
        _ => "0011",
    }
}

impl FaultSpec {
    /// The `fwi:Fout` detail.
    pub fn melding(&self, dn: &str) -> Melding {
        Melding {
            level: Level::Fout,
            code: self.code.into(),
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
