//! The `tls.*` and `wsdl.*` checks.

use super::{fail, pass, skip, tls, Ctx};
use crate::http::inspect::{self, Progress, Stage};
use std::time::Instant;

pub(super) async fn check_tls(cx: &mut Ctx<'_>) {
    let o = cx.o;
    // tls.versions
    let t = Instant::now();
    let mut problems = Vec::new();
    for (v, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        match tls::legacy_hello(&cx.host, cx.port, v, o.timeout).await {
            Ok(tls::Legacy::Refused(_)) => {}
            Ok(tls::Legacy::Accepted) => {
                problems.push(format!("{name} is accepted (it must be refused)"))
            }
            Err(e) => problems.push(format!("{name} could not be tried: {e}")),
        }
    }
    for (v, name) in [
        (&rustls::version::TLS12, "TLS 1.2"),
        (&rustls::version::TLS13, "TLS 1.3"),
    ] {
        let n = tls::Narrow {
            versions: &[v],
            suite: None,
            client_auth: true,
        };
        match handshake(cx, &n).await {
            Ok(_) => {}
            Err(e) => problems.push(format!("{name} is not accepted ({e})")),
        }
    }
    let v = if problems.is_empty() {
        pass("TLS 1.0 and 1.1 refused, TLS 1.2 and 1.3 accepted")
    } else {
        fail(problems.join("; "))
    };
    cx.record("tls.versions", t, v);

    // tls.cipher
    let t = Instant::now();
    let n = tls::Narrow {
        versions: &[&rustls::version::TLS12],
        suite: Some(tls::REQUIRED_SUITE),
        client_auth: true,
    };
    let v = match handshake(cx, &n).await {
        Ok(_) => pass("ECDHE-RSA-AES128-GCM-SHA256 accepted over TLS 1.2"),
        Err(e) => fail(format!(
            "a TLS 1.2 client offering only ECDHE-RSA-AES128-GCM-SHA256 is refused ({e}); enable this suite (it needs an RSA server key)"
        )),
    };
    cx.record("tls.cipher", t, v);

    // tls.client-cert: the refusal may come in the handshake (TLS 1.2) or as an alert after it
    // (TLS 1.3), so a request is sent and nothing but an HTTP answer counts as acceptance.
    let t = Instant::now();
    let n = tls::Narrow {
        versions: &[&rustls::version::TLS13, &rustls::version::TLS12],
        suite: None,
        client_auth: false,
    };
    let v = match tls::client_config(&o.roots, &o.client_chain, &o.client_key, &n) {
        Err(e) => skip(format!("cannot build a client without certificate: {e}")),
        Ok(cfg) => {
            let mut p = Progress::default();
            let wsdl = format!("{}?wsdl", cx.path);
            match cx.send(cfg, "GET", &wsdl, &[], Vec::new(), &mut p).await {
                Ok(a) => fail(format!(
                    "a client without a certificate got HTTP {} for GET ?wsdl: require a client certificate chaining to the chain's CA in the TLS handshake",
                    a.status
                )),
                Err(_) => pass("a client without a certificate is refused"),
            }
        }
    };
    cx.record("tls.client-cert", t, v);

    // tls.chain, tls.days-left, tls.oin: from one normal handshake.
    let t = Instant::now();
    let mut p = Progress::default();
    let wsdl = format!("{}?wsdl", cx.path);
    let r = cx
        .send(cx.tls.clone(), "GET", &wsdl, &[], Vec::new(), &mut p)
        .await;
    let leaf = p.peer_leaf.clone();
    let v = match (&r, &leaf) {
        (_, Some(_)) => pass("the server certificate chains to the trusted CA and names the host"),
        (Err(e), None) if e.stage == Stage::Handshake => fail(format!(
            "{}: the server certificate must chain to the PKIoverheid CA given with --ca and name the host in the URL",
            e.text
        )),
        (Err(e), None) => fail(e.text.clone()),
        (Ok(_), None) => fail("the server sent no certificate"),
    };
    cx.record("tls.chain", t, v);
    let t = Instant::now();
    let v = match &leaf {
        None => skip("no server certificate was seen (see tls.chain)"),
        Some(l) => match crate::certs::days_left(l, time::OffsetDateTime::now_utc()) {
            Ok(d) if d >= o.min_days => pass(format!("{d} days left")),
            Ok(d) if d < 0 => fail(format!("the server certificate expired {} days ago", -d)),
            Ok(d) => fail(format!(
                "the server certificate has {d} days left (fewer than {}): renew it now",
                o.min_days
            )),
            Err(e) => fail(format!("the server certificate cannot be read: {e}")),
        },
    };
    cx.record("tls.days-left", t, v);
    let t = Instant::now();
    let v = match &leaf {
        None => skip("no server certificate was seen (see tls.chain)"),
        Some(l) => match crate::certs::oin_of(l) {
            Ok(Some(oin)) => {
                let v = pass(format!("OIN {oin}"));
                cx.server_oin = Some(oin);
                v
            }
            Ok(None) => fail("the server certificate's subject has no serialNumber with the organisation's OIN: request a PKIoverheid certificate carrying the OIN"),
            Err(e) => fail(format!("the server certificate cannot be read: {e}")),
        },
    };
    cx.record("tls.oin", t, v);
}

pub(super) async fn handshake(cx: &Ctx<'_>, n: &tls::Narrow<'_>) -> Result<(), String> {
    let cfg = tls::client_config(&cx.o.roots, &cx.o.client_chain, &cx.o.client_key, n)?;
    let mut p = Progress::default();
    match tokio::time::timeout(
        cx.o.timeout,
        inspect::connect(cfg, &cx.host, cx.port, &mut p),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.text),
        Err(_) => Err("no handshake within the timeout".into()),
    }
}

pub(super) async fn check_wsdl(cx: &mut Ctx<'_>) {
    let t = Instant::now();
    let mut p = Progress::default();
    let path = format!("{}?wsdl", cx.path);
    let r = cx
        .send(cx.tls.clone(), "GET", &path, &[], Vec::new(), &mut p)
        .await;
    let doc = match r {
        Err(e) => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!("GET ?wsdl failed: {}", e.text)),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
        Ok(a) if a.status != 200 => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!(
                    "GET ?wsdl answered HTTP {}: serve the WSDL at URL?wsdl",
                    a.status
                )),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
        Ok(a) => crate::xml::parse_with(&a.body, &crate::xml::ParseLimits::FILE),
    };
    const NS_WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
    const NS_WSDL_SOAP: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
    let doc = match doc {
        Ok(d) if d.is(Some(NS_WSDL), "definitions") => d,
        Ok(d) => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!(
                    "?wsdl is XML but its root is {}, not wsdl:definitions",
                    d.qname()
                )),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
        Err(e) => {
            cx.record(
                "wsdl.parses",
                t,
                fail(format!("?wsdl is not well-formed XML: {e}")),
            );
            cx.record("wsdl.operation", t, skip("no WSDL (see wsdl.parses)"));
            cx.record("wsdl.address", t, skip("no WSDL (see wsdl.parses)"));
            return;
        }
    };
    cx.record("wsdl.parses", t, pass("a well-formed WSDL 1.1 document"));
    let op = cx.o.service.operation();
    let named = doc
        .elements()
        .filter(|e| e.is(Some(NS_WSDL), "portType"))
        .flat_map(|pt| pt.elements())
        .any(|e| e.is(Some(NS_WSDL), "operation") && e.attr(None, "name") == Some(op));
    let v = if named {
        pass(format!("portType operation {op}"))
    } else {
        fail(format!("the WSDL's portType has no operation named {op}"))
    };
    cx.record("wsdl.operation", t, v);
    let locations: Vec<String> = doc
        .elements()
        .filter(|e| e.is(Some(NS_WSDL), "service"))
        .flat_map(|s| s.elements())
        .flat_map(|port| port.elements())
        .filter(|a| a.is(Some(NS_WSDL_SOAP), "address"))
        .filter_map(|a| a.attr(None, "location").map(str::to_owned))
        .collect();
    let v = if locations.contains(&cx.o.url) {
        pass(format!("soap:address {}", cx.o.url))
    } else if locations.is_empty() {
        fail("the WSDL has no soap:address")
    } else {
        fail(format!(
            "the WSDL's soap:address is {} but the endpoint is {}: set the public URL the IB calls",
            locations.join(", "),
            cx.o.url
        ))
    };
    cx.record("wsdl.address", t, v);
}
