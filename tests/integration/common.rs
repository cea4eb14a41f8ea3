//! Test harness: a generated PKI, the real server on 127.0.0.1:0, a mutual-TLS client, request
//! builders, and validation against the official BKWI schemas.

use dkd::app::App;
use dkd::certs::{DevCa, Issued, SignerUsage};
use dkd::config::Config;
use dkd::http::{client, tls};
use dkd::store::Store;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const SERVER_OIN: &str = "00000099000000000001";
pub const ALLOWED_OIN: &str = "00000099000000000002";
pub const UNLISTED_OIN: &str = "00000099000000000003";
/// A second allowed OIN (for the signer-differs-from-TLS case).
pub const SECOND_OIN: &str = "00000099000000000004";
pub const NS_GSD: &str = "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie/v0200";
pub const ACTION: &str =
    "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/GSDReintegratieInfo";

/// The reference date of the demo set in tests, so golden files stay stable.
pub fn demo_date() -> time::Date {
    time::macros::date!(2026 - 01 - 15)
}

/// All certificates the tests use, generated once per test binary.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn write(dir: &Path, name: &str, issued: &Issued) {
    std::fs::write(dir.join(format!("{name}.pem")), &issued.cert_pem).expect("write cert");
    std::fs::write(dir.join(format!("{name}-key.pem")), &issued.key_pem).expect("write key");
}

/// Demo persons of one gemeente only, as a batch gemeente's verzamelbestand holds them (those of
/// `count` generated with a single AtlRelatie, moved to `gemeente`).
pub fn batch_people(count: usize, gemeente: &str) -> Vec<dkd::suwiml::model::Person> {
    let today = time::OffsetDateTime::now_utc().date();
    dkd::chain::demo::generate(count, today)
        .into_iter()
        .filter(|p| p.atl_relaties.len() == 1)
        .map(|mut p| {
            p.atl_relaties[0].bron = dkd::suwiml::model::Bron::gemeente(gemeente);
            p.bron = Some(dkd::suwiml::model::Bron::gemeente(gemeente));
            p
        })
        .collect()
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = DevCa::new("test CA").expect("ca");
        write(dir.path(), "ca", &ca.issued());
        write(
            dir.path(),
            "server",
            &ca.server(
                "localhost",
                &["localhost", "127.0.0.1"],
                Some(SERVER_OIN),
                30,
            )
            .expect("server"),
        );
        write(
            dir.path(),
            "client",
            &ca.client("allowed", Some(ALLOWED_OIN), 30).expect("client"),
        );
        write(
            dir.path(),
            "unlisted",
            &ca.client("unlisted", Some(UNLISTED_OIN), 30)
                .expect("client"),
        );
        write(
            dir.path(),
            "nooin",
            &ca.client("no oin", None, 30).expect("client"),
        );
        write(
            dir.path(),
            "second",
            &ca.client("second", Some(SECOND_OIN), 30).expect("client"),
        );
        // Message signers with the key usages seen in the field: a signer is judged as a
        // signer (keyUsage), never as a TLS client or server (EKU).
        for (name, oin, usage) in [
            (
                "signer-serverauth",
                ALLOWED_OIN,
                SignerUsage::ServerAuthOnly,
            ),
            (
                "signer-clientauth",
                ALLOWED_OIN,
                SignerUsage::ClientAuthOnly,
            ),
            ("signer-noeku", ALLOWED_OIN, SignerUsage::NoExtendedKeyUsage),
            (
                "signer-nodigsig",
                ALLOWED_OIN,
                SignerUsage::NoDigitalSignature,
            ),
            ("server-signer", SERVER_OIN, SignerUsage::ServerAuthOnly),
        ] {
            write(
                dir.path(),
                name,
                &ca.signer(name, Some(oin), 30, usage).expect("signer"),
            );
        }
        let foreign = DevCa::new("foreign CA").expect("ca");
        write(dir.path(), "foreign-ca", &foreign.issued());
        write(
            dir.path(),
            "foreign",
            &foreign
                .client("foreign", Some(ALLOWED_OIN), 30)
                .expect("client"),
        );
        Pki { dir }
    })
}

pub fn base_config(store_dir: &Path) -> Config {
    let p = pki();
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.tls.cert = p.path("server.pem");
    cfg.tls.key = p.path("server-key.pem");
    cfg.tls.client_ca = p.path("ca.pem");
    cfg.auth.allowed_oins = vec![ALLOWED_OIN.into()];
    cfg.store.path = store_dir.join("store");
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ops.listen = "127.0.0.1:0".into();
    // Unsigned requests are accepted, responses are signed: the behaviour tests of the endpoint
    // use plain requests; tests/integration/wssec.rs covers required signing.
    cfg.security.signing = Some(dkd::soap::wssec::SigningMode::Optional);
    cfg
}

/// The store backends a test runs on: sled, and PostgreSQL on the server `DKD_TEST_PG_URL` names
/// (a schema of its own per server, dropped after). Without that variable the PostgreSQL run is
/// skipped loudly, and is a failure with DKD_REQUIRE_EXTERNAL=1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

pub fn backends() -> Vec<Backend> {
    if pg_url().is_some() {
        return vec![Backend::Sled, Backend::Postgres];
    }
    skip(
        "the PostgreSQL run of this test needs DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)",
    );
    vec![Backend::Sled]
}

pub fn pg_url() -> Option<String> {
    std::env::var("DKD_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A throw-away store on `backend` (on PostgreSQL a schema of its own, dropped with the store).
pub fn temp_store(backend: Backend) -> Store {
    match backend {
        Backend::Sled => Store::temporary().expect("store"),
        Backend::Postgres => {
            Store::temporary_pg(&pg_url().expect("DKD_TEST_PG_URL")).expect("store")
        }
    }
}

/// Points `cfg` at a store on `backend` and opens it; the guard drops a PostgreSQL schema.
pub fn open_store(backend: Backend, cfg: &mut Config) -> (Store, Option<dkd::store::TempSchema>) {
    match backend {
        Backend::Sled => (Store::open(&cfg.store.path).expect("store"), None),
        // The test has pointed it at a database of its own (through a proxy, say).
        Backend::Postgres if cfg.store.url.is_some() => {
            let store = Store::open_at(&cfg.store.location(), true).expect("store");
            (store, None)
        }
        Backend::Postgres => {
            let url = pg_url().expect("DKD_TEST_PG_URL");
            let (schema, scoped) = dkd::store::TempSchema::create(&url).expect("schema");
            cfg.store.url = Some(scoped);
            let store = Store::open_at(&cfg.store.location(), true).expect("store");
            (store, Some(schema))
        }
    }
}

/// A running server; stops when dropped.
pub struct Server {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub store: Store,
    /// The admin API (plain HTTP on loopback).
    pub admin: std::net::SocketAddr,
    /// The ops listener.
    pub ops: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
    _schema: Option<dkd::store::TempSchema>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    /// Starts a server with the demo set (dated [`demo_date`]) and a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
        Server::start_on(Backend::Sled, tweak).await
    }

    /// [`Server::start_with`] on a store of `backend`.
    pub async fn start_on(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = base_config(dir.path());
        tweak(&mut cfg);
        let (store, schema) = open_store(backend, &mut cfg);
        store
            .put_all(&dkd::chain::demo::generate(1200, demo_date()), "demo")
            .expect("demo data");
        let app = App::bind_with_store(&cfg, store.clone())
            .await
            .expect("bind");
        let url = app.public_url().to_owned();
        let addr = app.local_addr();
        let admin = app.admin_addr().expect("admin API enabled in tests");
        let ops = app.ops_addr().expect("ops listener enabled in tests");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Server {
            url,
            addr,
            admin,
            ops,
            store,
            _stop: tx,
            _dir: dir,
            _schema: schema,
        }
    }

    /// A BSN in the demo set.
    pub fn known_bsn(&self) -> String {
        self.store.first(1).expect("first")[0].bsn.to_string()
    }
}

/// A client TLS config presenting `name.pem` (e.g. "client", "unlisted", "foreign").
pub fn client_tls(name: &str) -> Arc<rustls::ClientConfig> {
    let p = pki();
    Arc::new(
        tls::client_config(
            &p.path("ca.pem"),
            &p.path(&format!("{name}.pem")),
            &p.path(&format!("{name}-key.pem")),
        )
        .expect("client tls"),
    )
}

pub async fn post(url: &str, body: &str) -> client::Response {
    post_as("client", url, body).await
}

pub async fn post_as(cert: &str, url: &str, body: &str) -> client::Response {
    client::post_soap(client_tls(cert), url, body, Duration::from_secs(10))
        .await
        .expect("request completes")
}

pub async fn post_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> client::Response {
    client::request(
        client_tls("client"),
        "POST",
        url,
        headers,
        body.to_vec(),
        Duration::from_secs(10),
    )
    .await
    .expect("request completes")
}

/// Builds request envelopes with parts left out or replaced.
#[derive(Clone)]
pub struct Req {
    pub message_id: Option<String>,
    pub action: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub extra_headers: String,
    pub body: String,
}

impl Req {
    pub fn new(to: &str, bsn: &str) -> Req {
        Req {
            message_id: Some("urn:uuid:11111111-2222-4333-8444-555555555555".into()),
            action: Some(ACTION.into()),
            to: Some(to.into()),
            from: Some(format!("http://ib.example/dkd?oin={ALLOWED_OIN}")),
            extra_headers: String::new(),
            body: format!("<gsd:GSDReintegratieInfo xmlns:gsd=\"{NS_GSD}\"><Burgerservicenr>{bsn}</Burgerservicenr></gsd:GSDReintegratieInfo>"),
        }
    }

    pub fn xml(&self) -> String {
        let mut h = String::new();
        let wsa = "xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"";
        if let Some(v) = &self.message_id {
            h.push_str(&format!("<wsa:MessageID {wsa}>{v}</wsa:MessageID>"));
        }
        if let Some(v) = &self.action {
            h.push_str(&format!("<wsa:Action {wsa}>{v}</wsa:Action>"));
        }
        if let Some(v) = &self.to {
            h.push_str(&format!("<wsa:To {wsa}>{v}</wsa:To>"));
        }
        if let Some(v) = &self.from {
            h.push_str(&format!(
                "<wsa:From {wsa}><wsa:Address>{v}</wsa:Address></wsa:From>"
            ));
        }
        h.push_str(&self.extra_headers);
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header>{h}</soapenv:Header><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>",
            self.body
        )
    }
}

/// Text of the first element with this local name (any prefix).
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let doc = dkd::xml::parse(xml.as_bytes()).ok()?;
    find(&doc, local).map(|e| e.text())
}

fn find<'a>(e: &'a dkd::xml::Element, local: &str) -> Option<&'a dkd::xml::Element> {
    if e.local == local {
        return Some(e);
    }
    e.elements().find_map(|c| find(c, local))
}

/// The fault's (faultcode, fwi Code).
pub fn fault_codes(xml: &str) -> (String, String) {
    (
        element_text(xml, "faultcode").unwrap_or_else(|| panic!("no faultcode in {xml}")),
        element_text(xml, "Code").unwrap_or_else(|| panic!("no Code in {xml}")),
    )
}

/// The single element inside soapenv:Body, as a standalone document (dkd declares namespaces on it).
pub fn body_child(xml: &str) -> String {
    let open = xml.find("<soapenv:Body").expect("Body");
    let start = open + xml[open..].find('>').expect("Body start tag") + 1;
    let end = xml.rfind("</soapenv:Body>").expect("/Body");
    xml[start..end].to_owned()
}

pub fn fault_detail(xml: &str) -> String {
    let start = xml.find("<fwi:Fout").expect("fwi:Fout in detail");
    let end = xml.find("</fwi:Fout>").expect("/fwi:Fout") + "</fwi:Fout>".len();
    xml[start..end].to_owned()
}

/// Whether external tools must be present (CI sets this so a missing tool fails, not skips).
pub fn external_required() -> bool {
    std::env::var("DKD_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

pub fn skip(what: &str) {
    if external_required() {
        panic!("{what} (DKD_REQUIRE_EXTERNAL=1, so this is a failure)");
    }
    eprintln!("SKIPPED: {what}");
}

/// The official reference schemas, if `../shared` is beside the repository.
pub fn official_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DKD_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("reference/suwiml/GSDDossierReintegratie-v0200-b04");
    dir.is_dir().then_some(dir)
}

pub enum Schema {
    /// GSDReintegratieInfoResponse (BodyReaction.xsd).
    Response,
    /// GSDReintegratieInfo (BodyAction.xsd).
    Request,
    /// A standalone fwi:Fout (FWI.xsd).
    Fout,
    /// IBVerwijsindex (the IBVerwijsindex package's BodyAction.xsd).
    VerwijsindexRequest,
    /// IBVerwijsindexResponse (its BodyReaction.xsd).
    VerwijsindexResponse,
}

/// Validates a standalone document against the official BKWI schema with xmllint. Skips (loudly)
/// when ../shared or xmllint is missing, unless DKD_REQUIRE_EXTERNAL=1.
pub fn validate_official(doc: &str, schema: Schema) {
    let Some(dir) = official_dir() else {
        skip("official schema checks: ../shared/reference/suwiml not found");
        return;
    };
    let xsd = match schema {
        Schema::Response => dir.join("Diensten/GSDDossierReintegratie/v0200-b04/BodyReaction.xsd"),
        Schema::Request => dir.join("Diensten/GSDDossierReintegratie/v0200-b04/BodyAction.xsd"),
        Schema::Fout => dir.join("FWI/v0205/FWI.xsd"),
        Schema::VerwijsindexRequest => {
            dir.join("../IBVerwijsindex-v0300-b01/Diensten/IBVerwijsindex/v0300-b01/BodyAction.xsd")
        }
        Schema::VerwijsindexResponse => dir
            .join("../IBVerwijsindex-v0300-b01/Diensten/IBVerwijsindex/v0300-b01/BodyReaction.xsd"),
    };
    validate_with(doc, &xsd);
}

/// Validates against one of dkd's own schemas in wsdl/.
pub fn validate_own(doc: &str, xsd_name: &str) {
    validate_with(
        doc,
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("wsdl")
            .join(xsd_name),
    );
}

fn validate_with(doc: &str, xsd: &Path) {
    let tmp = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(tmp.path(), doc).expect("write");
    let out = match std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd)
        .arg(tmp.path())
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            skip("schema validation: xmllint not installed (apt-get install libxml2-utils)");
            return;
        }
    };
    assert!(
        out.status.success(),
        "schema {} refused the document:\n{}\n{}",
        xsd.display(),
        String::from_utf8_lossy(&out.stderr),
        doc
    );
}

/// Replaces the random parts of a response (MessageIDs, the test server's port) for golden files.
pub fn normalise(xml: &str, url: &str) -> String {
    let mut s = xml.replace(url, "https://127.0.0.1:PORT/GSDDossierReintegratie-v0200");
    // The signature changes with every response; its structure is checked in wssec.rs.
    if let (Some(a), Some(b)) = (s.find("<wsse:Security "), s.find("</wsse:Security>")) {
        s.replace_range(
            a..b + "</wsse:Security>".len(),
            "<wsse:Security><!-- signature --></wsse:Security>",
        );
    }
    while let Some(i) = s
        .find("urn:uuid:")
        .filter(|&i| !s[i..].starts_with("urn:uuid:RANDOM"))
    {
        let end = i + "urn:uuid:".len() + 36;
        if end > s.len() {
            break;
        }
        s.replace_range(i..end, "urn:uuid:RANDOM");
    }
    s
}

/// Compares with a golden file in tests/golden; `DKD_UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, actual: &str) {
    // One element per line, so a review sees which element changed.
    let actual = &actual.replace("><", ">\n<");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("DKD_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with DKD_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        &expected,
        "differs from golden file {} (DKD_UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

/// A plain-HTTP GET (ops listener): status and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = tx.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
