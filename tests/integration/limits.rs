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

/// Longer than any test: a connection the server keeps must not be closed by a timeout, so a
/// client answered while such connections are held was answered because they made room, not
/// because a deadline reaped them.
const FOREVER_SECS: u64 = 3600;

/// How long a real client may take to be answered while the attack is held. The server's
/// deadlines are [`FOREVER_SECS`]: without room made for it, the client is not answered at all.
const CEILING: Duration = Duration::from_secs(30);

/// Idle or half-open sockets held by the attack.
const IDLE: usize = 1000;

/// Makes sure the process may hold `IDLE` sockets on both ends, raising the soft limit of open
/// files when it is lower (and saying so).
fn room_for_idle_sockets() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let want = (2 * IDLE + 512) as u64;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < want) {
        let raised = limit.maximum.map_or(want, |m| m.min(want));
        eprintln!(
            "raising the soft RLIMIT_NOFILE from {:?} to {raised} for {IDLE} idle connections",
            limit.current
        );
        setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        )
        .expect("raise RLIMIT_NOFILE");
    }
}

/// Opens `IDLE` connections from `sources` in turn, none of which finishes a TLS handshake: two
/// thirds send nothing, a third the first bytes of a ClientHello. They stay open on this side
/// until the returned sockets are dropped. Those not connected within [`GUARD`] (a server that
/// lets the kernel's accept queue fill) are left out; the caller asserts how many it holds
/// after the real client's turn, so such a server fails on the real client.
async fn hold_idle(server: &Server, sources: &[std::net::IpAddr]) -> Vec<tokio::net::TcpStream> {
    room_for_idle_sockets();
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..IDLE {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(sources[i % sources.len()], 0))
            .expect("bind a loopback source address");
        let addr = server.addr;
        connecting.spawn(async move {
            let mut tcp = socket.connect(addr).await.expect("connect");
            if i % 3 == 2 {
                // The server may have closed it already; what it sends back is not the point.
                let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
            }
            tcp
        });
    }
    let mut held = Vec::with_capacity(IDLE);
    let deadline = tokio::time::Instant::now() + GUARD;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, connecting.join_next()).await {
        held.push(r.expect("connect task"));
    }
    // Still connecting: abandoned, not held.
    connecting.detach_all();
    held
}

/// A signed request for a known person, answered with a ClientSuwi within [`CEILING`].
async fn real_client_answered(server: &Server) {
    let r = tokio::time::timeout(
        CEILING,
        dkd::http::client::post_soap(
            client_tls("client"),
            &server.url,
            &Req::new(&server.url, &server.known_bsn()).xml(),
            CEILING,
        ),
    )
    .await
    .expect("the real client is answered while the idle connections are held")
    .expect("request");
    assert_eq!(r.status, 200, "{}", text_of(&r));
    assert!(text_of(&r).contains("ClientSuwi"), "{}", text_of(&r));
}

async fn shed_total(server: &Server) -> u64 {
    let (_, metrics) = http_get(server.ops, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("dkd_connections_shed_total "))
        .and_then(|v| v.parse().ok())
        .expect("dkd_connections_shed_total in /metrics")
}

fn patient(c: &mut dkd::config::Config) {
    c.server.tls_handshake_timeout_secs = FOREVER_SECS;
    c.server.header_read_timeout_secs = FOREVER_SECS;
    c.server.body_read_timeout_secs = FOREVER_SECS;
}

#[tokio::test]
async fn a_thousand_idle_connections_from_the_clients_own_address_cannot_keep_it_out() {
    let server = Server::start_with(patient).await;
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let held = hold_idle(&server, &[loopback]).await;
    real_client_answered(&server).await;
    assert!(shed_total(&server).await > 0);
    assert_eq!(held.len(), IDLE, "still held while the client was answered");
    drop(held);
    well_behaved(&server).await;
}

#[tokio::test]
async fn a_thousand_idle_connections_from_ten_addresses_cannot_keep_a_client_out() {
    let server = Server::start_with(patient).await;
    let sources: Vec<std::net::IpAddr> = (2..12).map(|i| [127, 0, 0, i].into()).collect();
    let held = hold_idle(&server, &sources).await;
    real_client_answered(&server).await;
    assert!(shed_total(&server).await > 0);
    assert_eq!(held.len(), IDLE, "still held while the client was answered");
    drop(held);
    well_behaved(&server).await;
}

type KeptAlive = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// An authenticated keep-alive connection that has been answered once.
async fn kept_alive(server: &Server) -> KeptAlive {
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        tls_stream(server).await,
    ))
    .await
    .expect("http handshake");
    tokio::spawn(conn);
    ask(server, &mut tx).await.expect("first answer");
    tx
}

async fn ask(server: &Server, tx: &mut KeptAlive) -> Result<u16, hyper::Error> {
    use http_body_util::BodyExt;
    let path = server
        .url
        .split_once("//")
        .map_or("/", |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let req = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "text/xml; charset=utf-8")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            Req::new(&server.url, &server.known_bsn()).xml(),
        )))
        .expect("request");
    let resp = tx.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

#[tokio::test]
async fn idle_keep_alive_connections_make_room_for_a_new_client() {
    const CAP: usize = 4;
    let server = Server::start_with(|c| {
        patient(c);
        c.server.max_connections = CAP;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(kept_alive(&server).await);
    }
    real_client_answered(&server).await;
    // Only the connection idle the longest (the first) made room; the others still serve.
    let mut still_served = Vec::new();
    for tx in &mut idle {
        still_served.push(ask(&server, tx).await.is_ok_and(|s| s == 200));
    }
    assert_eq!(still_served, [false, true, true, true]);
}

/// A request whose body never comes: in flight until the connection drops.
async fn busy_connection(
    server: &Server,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = tls_stream(server).await;
    let path = server
        .url
        .split_once("//")
        .map_or("/", |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    tls.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write head");
    // hyper says 100 Continue when the request is read: from then on it is in flight.
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(GUARD, tls.read(&mut buf))
            .await
            .expect("100 Continue within the guard")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tls
}

#[tokio::test]
async fn clients_wait_while_every_connection_has_a_request_in_flight_and_are_served_after() {
    const CAP: usize = 4;
    let server = Server::start_with(|c| {
        patient(c);
        c.server.max_connections = CAP;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(busy_connection(&server).await);
    }
    // Twice the cap of well-behaved clients: their handshakes finish, but no connection slot
    // frees while every one has a request in flight.
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
        "no client may be served while every connection is busy"
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
async fn a_silent_connection_takes_no_connection_slot_and_is_dropped_at_the_handshake_timeout() {
    let server = Server::start_with(|c| {
        c.server.max_connections = 1;
        c.server.tls_handshake_timeout_secs = 1;
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let r = dkd::http::client::post_soap(
        client_tls("client"),
        &server.url,
        &Req::new(&server.url, &server.known_bsn()).xml(),
        GUARD,
    )
    .await
    .expect("answered beside the silent connection");
    assert_eq!(r.status, 200);
    let (_, closed) = read_until_closed(&mut silent).await;
    assert!(closed);
}

// ---------------------------------------------------------------------------------------------
// Audit trail

fn readyz_audit(body: &str) -> bool {
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "audit")
        .and_then(|c| c["ok"].as_bool())
        .expect("an audit check")
}

#[tokio::test]
async fn with_the_audit_writer_stalled_nobody_is_answered_without_a_record() {
    const ROOM: usize = 3;
    for backend in backends() {
        stalled_audit_writer(backend, ROOM).await;
    }
}

async fn stalled_audit_writer(backend: Backend, room: usize) {
    let server = Server::start_on(backend, |c| {
        c.audit.queue_records = room;
        c.audit.wait_ms = 50;
    })
    .await;
    let bsn = server.known_bsn();
    let ask = |id: String| {
        let mut req = Req::new(&server.url, &bsn);
        req.message_id = Some(id);
        let url = server.url.clone();
        async move { post(&url, &req.xml()).await }
    };
    let id = |i: usize| format!("urn:uuid:00000000-0000-4000-8000-{i:012}");
    // A stalled disk: the writer takes nothing until released.
    let hold = server.store.hold_audit_writer();
    for i in 0..room {
        let r = ask(id(i)).await;
        assert_eq!(r.status, 200);
        assert!(text_of(&r).contains("ClientSuwi"), "{}", text_of(&r));
    }
    let (status, ready) = http_get(server.ops, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(!readyz_audit(&ready), "{ready}");
    // No room left: the answer says the service is unavailable, and nothing about the person.
    let refused = ask(id(room)).await;
    let body = text_of(&refused);
    assert_eq!(refused.status, 200, "{body}");
    assert_eq!(
        element_text(&body, "Code").as_deref(),
        Some("0051"),
        "{body}"
    );
    assert!(!body.contains("ClientSuwi"), "{body}");
    let (_, metrics) = http_get(server.ops, "/metrics").await;
    assert!(metrics.contains("dkd_audit_refused_total 1\n"), "{metrics}");
    drop(hold);
    let store = server.store.clone();
    let recorded: Vec<String> = tokio::task::spawn_blocking(move || {
        store
            .audit_since(0)
            .map(|r| r.expect("record").message_id.unwrap_or_default())
            .collect()
    })
    .await
    .expect("read the trail");
    // Every answer given is in the trail; the refusal is not (there was no room), only logged.
    assert_eq!(recorded, (0..room).map(id).collect::<Vec<_>>());
    let (status, ready) = http_get(server.ops, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    well_behaved(&server).await;
}
