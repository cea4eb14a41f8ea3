//! The namespace names dkd reads and writes.

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace: recognised only to answer `VersionMismatch`.
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing 1.0.
pub const NS_WSA: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Security 1.0 secext.
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Security 1.0 utility.
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// WS-Security 1.1 secext.
pub const NS_WSSE11: &str = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
/// XML-DSig namespace.
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// SuwiML FWI v0205.
pub const NS_FWI: &str = "http://bkwi.nl/SuwiML/FWI/v0205";
/// GSDDossierReintegratie v0200 body namespace.
pub const NS_GSD: &str = "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie/v0200";
/// IBVerwijsindex v0300 body namespace.
pub const NS_VI: &str = "http://bkwi.nl/SuwiML/Diensten/IBVerwijsindex/v0300";
