//! The JSON admin API: put, get and delete one person, with the import's validation and change
//! records; and a GSDReintegratieInfo reflecting the change at once.

use crate::common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let tcp = tokio::net::TcpStream::connect(server.admin)
        .await
        .expect("connect admin");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or("").to_owned())))
        .expect("request");
    let resp = tx.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

const PERSON: &str = r#"{
  "bsn": "123456782",
  "voornamen": "Fatima",
  "voorletters": "F",
  "achternaam": "Amrani",
  "voorvoegsel": "el",
  "geslacht": "2",
  "geboortedat": "19850312",
  "bron": {"kolom": 3, "partij": "0363"},
  "atl_relaties": [{
    "provisions": [{"registratienr": "LKS-77", "start": "20250101", "type_code": "24", "loonwaarde": 5250}],
    "bron": {"kolom": 3, "partij": "0363"}
  }]
}"#;

#[tokio::test]
async fn put_get_delete_round_trip_is_served_and_recorded() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let (status, v) = call(&server, "PUT", "/persons/123456782", Some(PERSON)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["added"], 1);
        let (status, v) = call(&server, "GET", "/persons/123456782", None).await;
        assert_eq!(status, 200);
        assert_eq!(v["person"]["achternaam"], "Amrani");
        assert!(v["entries"][0]["mutated_at"]
            .as_i64()
            .is_some_and(|t| t > 0));
        // The endpoint answers with the new data at once.
        let r = post(&server.url, &Req::new(&server.url, "123456782").xml()).await;
        assert!(
            r.text().contains("<Percentage>05250</Percentage>"),
            "{}",
            r.text()
        );
        // Same data again: nothing changes, nothing is recorded.
        let (_, v) = call(&server, "PUT", "/persons/123456782", Some(PERSON)).await;
        assert_eq!(v["unchanged"], 1, "{v}");
        let (status, v) = call(&server, "DELETE", "/persons/123456782?gemeente=0363", None).await;
        assert_eq!((status, v["removed"].as_u64()), (200, Some(1)));
        assert_eq!(
            call(&server, "GET", "/persons/123456782", None).await.0,
            404
        );
        let r = post(&server.url, &Req::new(&server.url, "123456782").xml()).await;
        assert!(r.text().contains("NietsGevonden"));
        let kinds: Vec<_> = server
            .store
            .mutations_since(0)
            .filter_map(Result::ok)
            .filter(|m| m.bsn.as_str() == "123456782")
            .map(|m| (m.change, m.source))
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(kinds.iter().all(|(_, s)| s == "admin"));
    }
}

#[tokio::test]
async fn invalid_records_are_refused_with_every_problem() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let bad = PERSON
            .replace("\"F\"", "\"f\"")
            .replace(", \"loonwaarde\": 5250", "")
            .replace("20250101", "20250230");
        let (status, v) = call(&server, "PUT", "/persons/123456782", Some(&bad)).await;
        assert!(status == 400 || status == 422, "{status} {v}");
        let text = v.to_string();
        assert!(
            status == 400 && text.contains("day does not exist"),
            "{text}"
        );
        let bad = PERSON
            .replace("\"F\"", "\"f\"")
            .replace(", \"loonwaarde\": 5250", "");
        let (status, v) = call(&server, "PUT", "/persons/123456782", Some(&bad)).await;
        assert_eq!(status, 422, "{v}");
        let fields: Vec<&str> = v["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .filter_map(|p| p["field"].as_str())
            .collect();
        assert!(
            fields.contains(&"voorletters") && fields.contains(&"loonwaarde"),
            "{fields:?}"
        );
        assert_eq!(
            call(&server, "GET", "/persons/123456782", None).await.0,
            404,
            "nothing written"
        );
        let (status, _) = call(&server, "PUT", "/persons/111222333", Some(PERSON)).await;
        assert_eq!(status, 400, "BSN in path and body must agree");
        assert_eq!(
            call(&server, "GET", "/persons/123456781", None).await.0,
            400,
            "11-test"
        );
        assert_eq!(
            call(&server, "PUT", "/persons/123456782", Some("{not json"))
                .await
                .0,
            400
        );
    }
}

#[tokio::test]
async fn unknown_json_fields_are_refused_not_dropped() {
    for backend in backends() {
        let server = Server::start_on(backend, |_| {}).await;
        let typo = PERSON.replace("\"voornamen\"", "\"voornaam\"");
        let (status, v) = call(&server, "PUT", "/persons/123456782", Some(&typo)).await;
        assert_eq!(status, 400, "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("voornaam")),
            "{v}"
        );
    }
}

#[tokio::test]
async fn over_mutual_tls_only_an_allowed_admin_oin_is_served() {
    // `app` speaks TLS on the admin API off loopback; the listener is the same either way, so
    // the TLS variant is started here on 127.0.0.1.
    let p = pki();
    let tls = dkd::http::tls::server_config(
        &p.path("server.pem"),
        &p.path("server-key.pem"),
        &p.path("ca.pem"),
        &[],
    )
    .expect("server tls");
    let store = dkd::store::Store::temporary().expect("store");
    let state = std::sync::Arc::new(dkd::http::admin::AdminState {
        identity: store.identity("gemeente").expect("identity"),
        store,
        rules: dkd::import::Rules {
            lks_type_codes: vec!["24".into()],
            max_future_days: 366,
        },
        purge: false,
        allowed_oins: [ALLOWED_OIN.to_owned()].into_iter().collect(),
        window_days: 730,
        ib: None,
        fetcher: None,
        role: "gemeente",
        scenario: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}/identity", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dkd::http::admin::run(
        listener,
        Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls))),
        state,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let get_as = |cert: &'static str| {
        let url = url.clone();
        async move {
            dkd::http::client::request(
                client_tls(cert),
                "GET",
                &url,
                &[],
                vec![],
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("admin over TLS")
        }
    };
    let allowed = get_as("client").await;
    assert_eq!(allowed.status, 200, "{:?}", allowed.body);
    let v: serde_json::Value = serde_json::from_slice(&allowed.body).expect("json");
    assert_eq!(v["role"], "gemeente", "{v}");
    let other = get_as("unlisted").await;
    assert_eq!(other.status, 403);
    assert!(
        String::from_utf8_lossy(&other.body).contains("not an allowed admin OIN"),
        "{:?}",
        other.body
    );
    let _ = stop_tx.send(());
    server.await.expect("joined").expect("served");
}
