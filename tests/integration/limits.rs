//! Each limit of the listener and the parser, one at a time: the exact refusal on the wire (the
//! SOAP fault, or the connection closed where there is no HTTP yet), and a well-behaved client
//! answered while the attack goes on and after it.
//!
//! Timeouts are set to 1 s through the harness's configuration; a refusal must come within that
//! plus a generous margin ([`GUARD`]); how much sooner is never asserted.

use crate::common::*;
use dkd::xml::ParseLimits;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for something that must happen within a 1 s limit: the limit plus a
/// margin wide enough for a loaded CI machine.
const GUARD: Duration = Duration::from_secs(10);

const LIMITS: ParseLimits = ParseLimits::MESSAGE;

fn text_of(r: &dkd::http::client::Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A well-behaved client: a plain request for a known BSN, answered with a ClientSuwi.
async fn well_behaved(server: &Server) {
    let r = post(
        &server.url,
        &Req::new(&server.url, &server.known_bsn()).xml(),
    )
    .await;
    let body = text_of(&r);
    assert_eq!(
        r.status, 200,
        "the well-behaved client was not answered: {body}"
    );
    assert!(body.contains("ClientSuwi"), "{body}");
}

/// Asserts a refusal: HTTP 500, `soapenv:Client`, the dkd code, and a faultstring naming why.
fn assert_fault(r: &dkd::http::client::Response, code: &str, why: &str) {
    let body = text_of(r);
    assert_eq!(r.status, 500, "{body}");
    assert_eq!(
        fault_codes(&body),
        ("soapenv:Client".to_owned(), code.to_owned()),
        "{body}"
    );
    let fs = element_text(&body, "faultstring").unwrap_or_default();
    assert!(fs.contains(why), "faultstring {fs:?} does not say {why:?}");
}

/// Sends the hostile envelope four times at once while a well-behaved client asks its question,
/// checks each refusal, and then the well-behaved client once more.
async fn attack(server: &Server, hostile: String, code: &str, why: &str) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (url, body) = (server.url.clone(), hostile.clone());
        set.spawn(async move { post(&url, &body).await });
    }
    well_behaved(server).await;
    while let Some(r) = set.join_next().await {
        assert_fault(&r.expect("attack task"), code, why);
    }
    well_behaved(server).await;
}

/// An envelope with `inner` after the Burgerservicenr of a known person.
fn envelope_with(server: &Server, inner: &str) -> String {
    let mut req = Req::new(&server.url, &server.known_bsn());
    req.body = format!(
        "<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>{}</Burgerservicenr>{inner}</gsd:GSDReintegratieInfo>",
        server.known_bsn()
    );
    req.xml()
}

/// A mutual-TLS stream for hand-written HTTP.
async fn tls_stream(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(client_tls("client"))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// Reads until the server closes (or the guard passes): what was received, and whether it closed.
async fn read_until_closed<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    // Ok(Err(_)) counts as closed too: a reset or an unclean TLS close ends the connection.
    let closed = tokio::time::timeout(GUARD, r.read_to_end(&mut buf))
        .await
        .is_ok();
    (buf, closed)
}

// ---------------------------------------------------------------------------------------------
// Body size

#[tokio::test]
async fn content_length_over_the_limit_is_refused_before_the_body_with_0013() {
    let server = Server::start_with(|c| c.server.max_body_bytes = 4096).await;
    // Declares a gigabyte and sends nothing of it: the answer must not wait for the body.
    let mut s = tls_stream(&server).await;
    let head = "POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: 1000000000\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("write");
    let ((buf, closed), ()) = tokio::join!(read_until_closed(&mut s), well_behaved(&server));
    let text = String::from_utf8_lossy(&buf);
    assert!(closed, "the connection must be closed after the refusal");
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains("<Code>0013</Code>"), "{text}");

    // Through an ordinary client: a body one byte over the limit.
    let r = post_with_headers(
        &server.url,
        &[("content-type", "text/xml; charset=utf-8")],
        &[b' '; 4097],
    )
    .await;
    assert_fault(&r, "0013", "4096 bytes");
    well_behaved(&server).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_with_0013() {
    let server = Server::start_with(|c| c.server.max_body_bytes = 4096).await;
    let mut s = tls_stream(&server).await;
    let head = "POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 1024, " ".repeat(1024));
    // Bounded: 64 KiB at most, and the server stops reading after 4 KiB.
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let ((buf, closed), ()) = tokio::join!(read_until_closed(&mut s), well_behaved(&server));
    let text = String::from_utf8_lossy(&buf);
    assert!(closed, "the connection must be closed after the refusal");
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(text.contains("<Code>0013</Code>"), "{text}");
    well_behaved(&server).await;
}

/// The request's envelope up to inside its Body: what arrives of a body cut off by a limit.
fn envelope_start(req: &Req) -> String {
    let xml = req.xml();
    let cut = xml.find("<soapenv:Body>").expect("Body") + "<soapenv:Body>".len();
    xml[..cut].to_owned()
}

/// Asserts that a fault answers the request: RelatesTo its MessageID, To its From, From its To.
fn assert_addressed(text: &str, req: &Req, server: &Server) {
    let fault = &text[text.find("<?xml").unwrap_or(0)..];
    assert_eq!(element_text(fault, "RelatesTo"), req.message_id, "{text}");
    assert_eq!(element_text(fault, "To"), req.from, "{text}");
    assert_eq!(
        element_text(fault, "Address").as_deref(),
        Some(server.url.as_str()),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_addressed_from_its_headers() {
    let server = Server::start_with(|c| c.server.max_body_bytes = 4096).await;
    let req = Req::new(&server.url, "123456782");
    let mut s = tls_stream(&server).await;
    let head = "POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("write");
    let start = envelope_start(&req);
    s.write_all(format!("{:x}\r\n{start}\r\n", start.len()).as_bytes())
        .await
        .expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 1024, " ".repeat(1024));
    // Bounded: 64 KiB at most, and the server stops reading after 4 KiB.
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let (buf, closed) = read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(closed, "the connection must be closed after the refusal");
    assert!(text.contains("<Code>0013</Code>"), "{text}");
    assert_addressed(&text, &req, &server);
}

#[tokio::test]
async fn a_body_cut_off_by_the_read_timeout_is_addressed_from_its_headers() {
    let server = Server::start_with(|c| c.server.body_read_timeout_secs = 1).await;
    let req = Req::new(&server.url, "123456782");
    let start = envelope_start(&req);
    let s = tls_stream(&server).await;
    let (mut rd, mut wr) = tokio::io::split(s);
    let head = format!("POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: {}\r\n\r\n{start}", start.len() + 1000);
    // The headers, then nothing: the rest never comes.
    wr.write_all(head.as_bytes()).await.expect("write");
    wr.flush().await.expect("flush");
    let (buf, closed) = read_until_closed(&mut rd).await;
    drop(wr);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        closed,
        "a stalled body must be answered and closed within {GUARD:?}"
    );
    assert!(text.contains("<Code>0014</Code>"), "{text}");
    assert_addressed(&text, &req, &server);
}

#[tokio::test]
async fn request_headers_that_do_not_fit_the_read_buffer_get_431_and_the_connection_closes() {
    let server = Server::start().await;
    let s = tls_stream(&server).await;
    let (mut rd, mut wr) = tokio::io::split(s);
    // The read buffer is 64 KiB (hyper's `max_buf_size`); hyper checks it between reads, so a
    // head is refused somewhere between 64 and 128 KiB. 256 KiB is past any read pattern.
    let head = format!(
        "POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    // In its own task: once the server stops reading, the write may never finish.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        wr
    });
    let ((buf, closed), ()) = tokio::join!(read_until_closed(&mut rd), well_behaved(&server));
    writer.abort();
    let text = String::from_utf8_lossy(&buf);
    assert!(closed, "not closed; received {text}");
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    well_behaved(&server).await;
}

// ---------------------------------------------------------------------------------------------
// The parser's limits (xml::ParseLimits::MESSAGE), all fault 0001

#[tokio::test]
async fn nesting_deeper_than_64_is_0001() {
    let server = Server::start().await;
    let deep = "<x>".repeat(LIMITS.max_depth) + &"</x>".repeat(LIMITS.max_depth);
    let hostile = envelope_with(&server, &deep);
    attack(&server, hostile, "0001", "deeper than 64 levels").await;
}

/// Elements in the base envelope, counted by the parser itself.
fn count_elements(e: &dkd::xml::Element) -> usize {
    1 + e.elements().map(count_elements).sum::<usize>()
}

#[tokio::test]
async fn more_than_10000_elements_is_0001_and_exactly_10000_is_read() {
    let server = Server::start().await;
    let base = envelope_with(&server, "");
    let n = count_elements(&dkd::xml::parse(base.as_bytes()).expect("base parses"));
    let at_limit = envelope_with(&server, &"<e/>".repeat(LIMITS.max_elements - n));
    // Read in full: refused only by the schema (unexpected elements in the body), not the limit.
    let r = post(&server.url, &at_limit).await;
    assert_fault(&r, "0004", "");
    let hostile = envelope_with(&server, &"<e/>".repeat(LIMITS.max_elements - n + 1));
    attack(
        &server,
        hostile,
        "0001",
        "elements in the document (at most 10000)",
    )
    .await;
}

fn attrs(n: usize) -> String {
    (0..n).map(|i| format!(" a{i}=\"\"")).collect()
}

#[tokio::test]
async fn more_than_64_attributes_on_one_element_is_0001() {
    let server = Server::start().await;
    let hostile = envelope_with(
        &server,
        &format!("<e{}/>", attrs(LIMITS.max_attributes_per_element + 1)),
    );
    attack(
        &server,
        hostile,
        "0001",
        "attributes on one element (at most 64)",
    )
    .await;
    // Namespace declarations are attributes too.
    let decls: String = (0..=LIMITS.max_attributes_per_element)
        .map(|i| format!(" xmlns:p{i}=\"urn:p{i}\""))
        .collect();
    let hostile = envelope_with(&server, &format!("<e{decls}/>"));
    attack(&server, hostile, "0001", "attributes on one element").await;
}

#[tokio::test]
async fn more_than_10000_attributes_in_the_document_is_0001() {
    let server = Server::start().await;
    let per = LIMITS.max_attributes_per_element;
    let hostile = envelope_with(
        &server,
        &format!("<e{}/>", attrs(per)).repeat(LIMITS.max_attributes / per + 1),
    );
    attack(
        &server,
        hostile,
        "0001",
        "attributes in the document (at most 10000)",
    )
    .await;
}

#[tokio::test]
async fn dtds_and_entity_declarations_are_0001() {
    let server = Server::start().await;
    let body = Req::new(&server.url, &server.known_bsn()).xml();
    let after_decl = body
        .split_once("?>")
        .map(|(_, rest)| rest.to_owned())
        .expect("declaration");
    let laughs = "<!DOCTYPE soapenv:Envelope [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]>";
    let external = "<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>";
    let plain = "<!DOCTYPE soapenv:Envelope>";
    for dtd in [laughs, external, plain] {
        let uses = if dtd == laughs {
            "&d;"
        } else if dtd == external {
            "&xxe;"
        } else {
            ""
        };
        let hostile = format!("<?xml version=\"1.0\"?>{dtd}{after_decl}")
            .replace("</Burgerservicenr>", &format!("{uses}</Burgerservicenr>"));
        let r = post(&server.url, &hostile).await;
        assert!(!text_of(&r).contains("root:"), "{}", text_of(&r));
        attack(&server, hostile, "0001", "DOCTYPE is not allowed").await;
    }
    // An entity used without a declaration is not expanded either.
    let hostile = body.replace("</Burgerservicenr>", "&xxe;</Burgerservicenr>");
    attack(&server, hostile, "0001", "undefined entity").await;
}

#[tokio::test]
async fn a_text_node_over_64_kib_is_0001() {
    let server = Server::start().await;
    let mut req = Req::new(&server.url, &server.known_bsn());
    // Exactly the limit is read (and the 11-digit check refuses it as schema-invalid)...
    req.body = format!(
        "<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>{}</Burgerservicenr></gsd:GSDReintegratieInfo>",
        "1".repeat(LIMITS.max_text_bytes)
    );
    let r = post(&server.url, &req.xml()).await;
    assert_fault(&r, "0004", "");
    // ...one byte more is not, in one piece or joined from pieces.
    req.body = req
        .body
        .replace("</Burgerservicenr>", "1</Burgerservicenr>");
    attack(
        &server,
        req.xml(),
        "0001",
        "bytes in a text node (at most 65536)",
    )
    .await;
    let pieces = format!(
        "{}&amp;<![CDATA[{}]]>",
        "1".repeat(LIMITS.max_text_bytes / 2),
        "1".repeat(LIMITS.max_text_bytes / 2)
    );
    let hostile = envelope_with(&server, &format!("<e>{pieces}</e>"));
    attack(&server, hostile, "0001", "bytes in a text node").await;
}

#[tokio::test]
async fn long_attribute_values_and_names_are_0001() {
    let server = Server::start().await;
    let value = "v".repeat(LIMITS.max_attr_value_bytes + 1);
    let hostile = envelope_with(&server, &format!("<e a=\"{value}\"/>"));
    attack(
        &server,
        hostile,
        "0001",
        "bytes in an attribute value (at most 8192)",
    )
    .await;
    let hostile = envelope_with(&server, &format!("<e xmlns:p=\"urn:{value}\"/>"));
    attack(&server, hostile, "0001", "bytes in an attribute value").await;

    let name = "n".repeat(LIMITS.max_name_bytes + 1);
    let hostile = envelope_with(&server, &format!("<{name}/>"));
    attack(&server, hostile, "0001", "bytes in a name (at most 256)").await;
    let hostile = envelope_with(&server, &format!("<e {name}=\"\"/>"));
    attack(&server, hostile, "0001", "bytes in a name").await;
}

// ---------------------------------------------------------------------------------------------
// Slow clients

#[tokio::test]
async fn slow_loris_headers_are_cut_off_at_the_header_read_timeout() {
    let server = Server::start_with(|c| c.server.header_read_timeout_secs = 1).await;
    let s = tls_stream(&server).await;
    let (mut rd, mut wr) = tokio::io::split(s);
    // One byte of headers every 100 ms, never finishing them (bounded: 20 s at most).
    let trickle = tokio::spawn(async move {
        let _ = wr
            .write_all(b"POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\n")
            .await;
        for _ in 0..200 {
            if wr.write_all(b"x").await.is_err() || wr.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let ((buf, closed), ()) = tokio::join!(read_until_closed(&mut rd), well_behaved(&server));
    trickle.abort();
    assert!(
        closed,
        "a client trickling headers must be dropped within {GUARD:?}"
    );
    assert!(started.elapsed() < GUARD);
    assert!(
        buf.is_empty(),
        "no HTTP answer to unfinished headers: {}",
        String::from_utf8_lossy(&buf)
    );
    well_behaved(&server).await;
}

#[tokio::test]
async fn a_slow_body_gets_0014_at_the_body_read_timeout() {
    let server = Server::start_with(|c| c.server.body_read_timeout_secs = 1).await;
    let s = tls_stream(&server).await;
    let (mut rd, mut wr) = tokio::io::split(s);
    let trickle = tokio::spawn(async move {
        let _ = wr
            .write_all(b"POST /GSDDossierReintegratie-v0200 HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: 500\r\n\r\n")
            .await;
        // One body byte every 100 ms: 500 bytes would take 50 s.
        for _ in 0..200 {
            if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let ((buf, closed), ()) = tokio::join!(read_until_closed(&mut rd), well_behaved(&server));
    trickle.abort();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        closed,
        "a slow body must be answered and closed within {GUARD:?}"
    );
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(text.contains("<Code>0014</Code>"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    well_behaved(&server).await;
}

// ---------------------------------------------------------------------------------------------
// Connections

#[tokio::test]
async fn a_connection_flood_waits_in_the_backlog_and_is_served_when_slots_free() {
    const CAP: usize = 4;
    let server = Server::start_with(|c| {
        c.server.max_connections = CAP;
        // Longer than the test: the held connections must not be closed for being idle.
        c.server.header_read_timeout_secs = 60;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(tls_stream(&server).await);
    }
    // Twice the cap of well-behaved clients: they connect (the kernel queues them) but get no
    // TLS answer while every slot is taken.
    let url = server.url.clone();
    let bsn = server.known_bsn();
    let waiting: Vec<_> = (0..2 * CAP)
        .map(|_| {
            let (url, bsn) = (url.clone(), bsn.clone());
            tokio::spawn(async move {
                dkd::http::client::post_soap(
                    client_tls("client"),
                    &url,
                    &Req::new(&url, &bsn).xml(),
                    Duration::from_secs(60),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        waiting.iter().all(|h| !h.is_finished()),
        "no client may be served while the connection cap is full"
    );
    drop(held);
    for h in waiting {
        let r = tokio::time::timeout(GUARD, h)
            .await
            .expect("served once slots are free")
            .expect("task")
            .expect("request");
        assert_eq!(r.status, 200);
        assert!(text_of(&r).contains("ClientSuwi"));
    }
    well_behaved(&server).await;
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_dropped_at_the_handshake_timeout() {
    let server = Server::start_with(|c| c.server.tls_handshake_timeout_secs = 1).await;
    // Silent, and one that sends the first bytes of a TLS record and stalls.
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut partial = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    let started = Instant::now();
    let ((a, closed_a), (b, closed_b), ()) = tokio::join!(
        read_until_closed(&mut silent),
        read_until_closed(&mut partial),
        well_behaved(&server)
    );
    assert!(closed_a && closed_b, "dropped within {GUARD:?}");
    assert!(started.elapsed() < GUARD);
    assert!(
        a.is_empty(),
        "nothing is sent to a client that sent nothing"
    );
    // rustls may answer a broken record with an alert; never with anything more.
    assert!(b.len() < 16, "{b:?}");
    well_behaved(&server).await;
}

#[tokio::test]
async fn a_silent_connection_frees_its_slot_at_the_handshake_timeout() {
    let server = Server::start_with(|c| {
        c.server.max_connections = 1;
        c.server.tls_handshake_timeout_secs = 1;
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // Give the server time to accept it into the only slot before the real client queues.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = dkd::http::client::post_soap(
        client_tls("client"),
        &server.url,
        &Req::new(&server.url, &server.known_bsn()).xml(),
        GUARD,
    )
    .await
    .expect("answered once the silent connection is dropped");
    assert_eq!(r.status, 200);
    let (_, closed) = read_until_closed(&mut silent).await;
    assert!(closed);
}
