//! The requests `dkd check` sends: the proper one, signed per 2W-be-S by
//! [`crate::soap::client::envelope`], and the broken ones, each made from a proper request by the
//! one change its check is about.

use super::{CheckOptions, Ctx, Service};
use crate::http::inspect::HttpAnswer;
use crate::soap::client::{envelope_without, signature_value, Outgoing};
use crate::xml::{escape, NS_SOAP12, NS_WSU};

/// One request, ready to send.
pub struct Built {
    /// The envelope.
    pub text: String,
    /// Its `wsa:MessageID`.
    pub message_id: String,
    /// Its `ds:SignatureValue`, when signed (the answer must confirm it).
    pub signature: Option<String>,
    /// `Content-Type`.
    pub content_type: String,
    /// `SOAPAction`.
    pub soap_action: String,
}

/// What is wrong with a request, on purpose.
#[derive(Debug, Clone, Copy)]
pub enum Variant {
    /// Nothing.
    Normal,
    /// This Burgerservicenr instead.
    Bsn(&'static str),
    /// Not XML at all.
    NotXml,
    /// A SOAP 1.2 envelope.
    Soap12,
    /// A SOAPAction that is neither `""` nor the wsa:Action.
    SoapAction,
    /// Another operation's wsa:Action.
    WrongAction,
    /// No wsa:MessageID (properly signed otherwise).
    NoMessageId,
    /// No signature.
    Unsigned,
    /// The BSN changed after signing.
    TamperedBody,
    /// wsa:To changed after signing.
    TamperedTo,
    /// A Reference naming SHA-1.
    Sha1,
    /// Signed an hour ago.
    Expired,
    /// Signed an hour from now.
    Future,
    /// The Timestamp removed after signing.
    NoTimestamp,
    /// The signed Body moved into the Security header, another Body in its place.
    Wrapping,
    /// A second element with the Body's wsu:Id.
    DuplicateId,
    /// Signed by a certificate from a CA nobody trusts.
    UntrustedCa,
}

const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
/// Another valid BSN (11-test) for the tampered copies.
const OTHER_BSN: &str = "111222333";

/// Our `wsa:From` address: `…?oin=<our OIN>`.
pub fn from_address(oin: &str) -> String {
    format!("http://localhost/dkd-check?oin={oin}")
}

fn body(o: &CheckOptions, bsn: &str) -> String {
    match o.service {
        Service::Gsd => {
            let mut s = String::new();
            crate::suwiml::gsd::write_request(bsn, &mut s);
            s
        }
        Service::Verwijsindex => {
            // Written here rather than by suwiml::verwijsindex::write_request, which takes a
            // checked Bsn: the error cases need a malformed one.
            let mut s = format!(
                "<vi:IBVerwijsindex xmlns:vi=\"{}\"><Burgerservicenr>",
                crate::xml::NS_VI
            );
            escape(bsn, &mut s);
            s.push_str("</Burgerservicenr><ClusteringIb><CdClusteringIb>");
            escape(&o.cluster, &mut s);
            s.push_str("</CdClusteringIb><IndDkd>1</IndDkd></ClusteringIb><Bron><CdKolomSuwi>3</CdKolomSuwi><CdPartijSuwi>");
            escape(&o.gemeente, &mut s);
            s.push_str("</CdPartijSuwi></Bron></vi:IBVerwijsindex>");
            s
        }
    }
}

/// Builds the request for `bsn` with `v` wrong.
pub fn build(o: &CheckOptions, bsn: &str, v: Variant) -> Result<Built, String> {
    build_to(o, bsn, v, &o.url)
}

/// As [`build`], addressed (`wsa:To`) to `to` instead of the checked URL.
pub fn build_to(o: &CheckOptions, bsn: &str, v: Variant, to: &str) -> Result<Built, String> {
    let message_id = crate::soap::new_message_id();
    let now = time::OffsetDateTime::now_utc();
    let from = from_address(&o.from_oin);
    let bsn = match v {
        Variant::Bsn(b) => b,
        _ => bsn,
    };
    let body = body(o, bsn);
    let wrong_action = format!("{}Wrong", o.service.action());
    let action = match v {
        Variant::WrongAction => wrong_action.as_str(),
        _ => o.service.action(),
    };
    let out = Outgoing {
        to,
        from_address: &from,
        action,
        body: &body,
        message_id: &message_id,
    };
    let untrusted;
    let signer = match v {
        Variant::Unsigned | Variant::NotXml | Variant::Soap12 => None,
        Variant::UntrustedCa => {
            untrusted = untrusted_signer(&o.from_oin)?;
            Some(&untrusted)
        }
        _ => o.signer.as_deref(),
    };
    let at = match v {
        Variant::Expired => now - time::Duration::hours(1),
        Variant::Future => now + time::Duration::hours(1),
        _ => now,
    };
    let omit: &[&str] = match v {
        Variant::NoMessageId => &["MessageID"],
        _ => &[],
    };
    let mut text = envelope_without(signer, &out, omit, at).map_err(|e| e.to_string())?;
    let signature = signer.and(signature_value(&text));
    let mut content_type = "text/xml; charset=utf-8".to_owned();
    let mut soap_action = "\"\"".to_owned();
    let must = |text: &str, what: &str| -> Result<(), String> {
        if text.is_empty() {
            Err(format!("could not make the {what} variant"))
        } else {
            Ok(())
        }
    };
    match v {
        Variant::NotXml => text = "this is not XML\n".into(),
        Variant::Soap12 => {
            text = text.replace(crate::xml::NS_SOAP11, NS_SOAP12);
            content_type = format!(
                "application/soap+xml; charset=utf-8; action=\"{}\"",
                o.service.action()
            );
        }
        Variant::SoapAction => soap_action = format!("\"{}Other\"", o.service.action()),
        Variant::TamperedBody => {
            let other = if bsn == OTHER_BSN {
                "123456782"
            } else {
                OTHER_BSN
            };
            text = replace_once(
                &text,
                &format!("<Burgerservicenr>{bsn}<"),
                &format!("<Burgerservicenr>{other}<"),
            );
        }
        Variant::TamperedTo => {
            let mut to = String::new();
            escape(&o.url, &mut to);
            text = replace_once(
                &text,
                &format!(">{to}</wsa:To>"),
                &format!(">{to}/tampered</wsa:To>"),
            );
        }
        Variant::Sha1 => text = replace_once(&text, SHA256, SHA1),
        Variant::NoTimestamp => text = cut(&text, "<wsu:Timestamp", "</wsu:Timestamp>"),
        Variant::Wrapping => text = wrap(&text, o, bsn),
        Variant::DuplicateId => {
            let open = match o.service {
                Service::Gsd => "<gsd:GSDReintegratieInfo ",
                Service::Verwijsindex => "<vi:IBVerwijsindex ",
            };
            text = replace_once(
                &text,
                open,
                &format!("{open}xmlns:wsu=\"{NS_WSU}\" wsu:Id=\"_Body\" "),
            );
        }
        _ => {}
    }
    must(&text, &format!("{v:?}"))?;
    Ok(Built {
        text,
        message_id,
        signature,
        content_type,
        soap_action,
    })
}

/// `s` with the first `from` replaced, or empty when `from` does not occur.
fn replace_once(s: &str, from: &str, to: &str) -> String {
    if s.contains(from) {
        s.replacen(from, to, 1)
    } else {
        String::new()
    }
}

/// `s` without the first element from `open` to `close`, or empty.
fn cut(s: &str, open: &str, close: &str) -> String {
    match (s.find(open), s.find(close)) {
        (Some(i), Some(j)) if j > i => format!("{}{}", &s[..i], &s[j + close.len()..]),
        _ => String::new(),
    }
}

/// The signature-wrapping attack: the signed Body goes, unchanged (its digest still matches),
/// into the Security header, and an unsigned Body about another BSN takes its place. Only a
/// verifier that checks *which* element each Reference resolves to refuses it.
fn wrap(s: &str, o: &CheckOptions, bsn: &str) -> String {
    let (Some(i), Some(j)) = (s.find("<soapenv:Body"), s.rfind("</soapenv:Body>")) else {
        return String::new();
    };
    let signed_body = &s[i..j + "</soapenv:Body>".len()];
    let Some(sec_end) = s.find("</wsse:Security>").filter(|e| *e < i) else {
        return String::new();
    };
    let other = if bsn == OTHER_BSN {
        "123456782"
    } else {
        OTHER_BSN
    };
    let forged = format!("<soapenv:Body>{}</soapenv:Body>", body(o, other));
    format!(
        "{}{}{}{}{}",
        &s[..sec_end],
        signed_body,
        &s[sec_end..i],
        forged,
        &s[j + "</soapenv:Body>".len()..]
    )
}

/// A signer whose certificate comes from a CA made on the spot, carrying our OIN: everything
/// right except the trust.
fn untrusted_signer(oin: &str) -> Result<crate::soap::wssec::Signer, String> {
    let ca = crate::certs::DevCa::new("dkd check untrusted CA").map_err(|e| e.to_string())?;
    let issued = ca
        .signer(
            "dkd check untrusted signer",
            Some(oin),
            2,
            crate::certs::SignerUsage::NoExtendedKeyUsage,
        )
        .map_err(|e| e.to_string())?;
    crate::soap::wssec::Signer::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())
        .map_err(|(_, e)| e)
}

/// Sends `b` padded to `--oversized-bytes` and reads what comes back. Written by hand on the TLS
/// stream instead of through hyper: a server may answer (and close) as soon as it sees the
/// Content-Length, before the body is sent, and that answer is the one to judge.
pub async fn oversized(cx: &Ctx<'_>, b: &Built) -> Result<HttpAnswer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let total = cx.o.oversized_bytes.max(b.text.len() + 64);
    // The padding is an XML comment after the envelope: still one well-formed document.
    let pad_len = total - b.text.len() - 7;
    let run = async {
        let mut p = crate::http::inspect::Progress::default();
        let stream = crate::http::inspect::connect(cx.tls.clone(), &cx.host, cx.port, &mut p)
            .await
            .map_err(|e| e.text)?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: {}\r\nsoapaction: {}\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n",
            cx.path,
            crate::http::inspect::authority(&cx.host, cx.port),
            b.content_type,
            b.soap_action
        );
        let text = b.text.clone();
        let writer = tokio::spawn(async move {
            // Errors are expected here: the server may stop reading once it has refused.
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(text.as_bytes()).await?;
            wr.write_all(b"<!--").await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut left = pad_len;
            while left > 0 {
                let n = left.min(chunk.len());
                wr.write_all(&chunk[..n]).await?;
                left -= n;
            }
            wr.write_all(b"-->").await?;
            wr.flush().await?;
            Ok::<_, std::io::Error>(wr)
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() > super::MAX_RESPONSE || complete(&got) {
                        break;
                    }
                }
                // A reset after the answer arrived (the server closed with our body unread).
                Err(_) => break,
            }
        }
        writer.abort();
        parse_http(&got)
    };
    match tokio::time::timeout(cx.o.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", cx.o.timeout.as_secs_f64())),
    }
}

/// Whether `b` holds a whole response with a Content-Length.
fn complete(b: &[u8]) -> bool {
    let Some(end) = find(b, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| b.len() >= end + 4 + n)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A raw HTTP/1.1 response: status line, headers, body (Content-Length, chunked or to the end).
fn parse_http(b: &[u8]) -> Result<HttpAnswer, String> {
    let end = find(b, b"\r\n\r\n").ok_or_else(|| {
        if b.is_empty() {
            "the server closed the connection without an answer".to_owned()
        } else {
            "the answer is not HTTP".to_owned()
        }
    })?;
    let head = String::from_utf8_lossy(&b[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("the answer has no HTTP status line")?;
    let mut content_type = None;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-type" => content_type = Some(v.to_owned()),
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let rest = &b[end + 4..];
    let body = if chunked {
        dechunk(rest)
    } else if let Some(n) = length {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpAnswer {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = std::str::from_utf8(&b[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(n) = size.filter(|n| *n > 0) else {
            break;
        };
        let start = i + 2;
        let stop = (start + n).min(b.len());
        out.extend_from_slice(&b[start..stop]);
        b = b.get(stop + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_answers_are_read_with_length_or_chunks() {
        let a = parse_http(
            b"HTTP/1.1 500 Internal\r\ncontent-type: text/xml\r\ncontent-length: 3\r\n\r\nabcdef",
        )
        .expect("http");
        assert_eq!((a.status, a.body.as_slice()), (500, &b"abc"[..]));
        let a = parse_http(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .expect("http");
        assert_eq!(a.body, b"abcde");
        assert!(parse_http(b"").is_err());
        assert!(complete(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nab"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab"));
    }
}
