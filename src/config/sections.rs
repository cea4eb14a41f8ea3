//! The configuration's sections (`[server]`, `[tls]`, `[push]`, `[ib]`, …) and their defaults.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[signals]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// The IB portal's base URL (`…/portal`); empty: not fetched.
    pub portal: String,
    /// The gemeenten whose reports are fetched. Default: those in the store.
    pub gemeenten: Vec<String>,
    /// Seconds between automatic fetches while serving (0: only `dkd signals fetch`).
    pub fetch_interval_secs: u64,
    /// CA bundle the portal's server certificate must chain to. Default: `tls.client_ca`.
    pub server_ca: Option<PathBuf>,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            portal: String::new(),
            gemeenten: Vec::new(),
            fetch_interval_secs: 3600,
            server_ca: None,
        }
    }
}

/// `[push]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// The IB's IBVerwijsindex-v0300 endpoint; empty: no push (and no outbox).
    pub url: String,
    /// `CdClusteringIb` of the re-integratie cluster. dkd's own choice (the codes are not public):
    /// confirm it against the IB's documents.
    pub cluster: String,
    /// How `IndDkd` "no (longer) data" is written: `"0"` (default; the Nee of third-party SuwiML
    /// code lists for StdIndJN) or `"2"` (interface.md §5). Unconfirmed either way: the official
    /// XSD only says "one digit". The IB role reads both.
    pub ind_dkd_nee: String,
    /// Per delivery attempt.
    pub timeout_secs: u64,
    /// Deliveries in flight at once (never two for the same BSN and gemeente).
    pub concurrency: usize,
    /// The longest wait between retries while the IB is unreachable.
    pub max_backoff_secs: u64,
    /// On a shared (PostgreSQL) store one instance sends at a time, under a lease it renews every
    /// round: how long a dead sender's lease keeps the others waiting. Longer than
    /// `timeout_secs`, so a live sender's slow delivery does not lose it.
    pub lease_secs: u64,
    /// CA bundle the IB's server (and signing) certificate must chain to. Default: `tls.client_ca`.
    pub server_ca: Option<PathBuf>,
    /// `wsa:From` address on updates. Default: `https://<server.listen>/?oin=<OIN of tls.cert>`.
    pub from_address: Option<String>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            url: String::new(),
            cluster: "04".into(),
            ind_dkd_nee: "0".into(),
            timeout_secs: 10,
            concurrency: 4,
            max_backoff_secs: 300,
            lease_secs: crate::store::outbox::LEASE_SECS,
            server_ca: None,
            from_address: None,
        }
    }
}

/// `[ib]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IbConfig {
    /// Known `CdClusteringIb` codes: dkd's own choice (the codes are not public), confirm
    /// against the IB's documents.
    pub clusters: Vec<String>,
    /// The cluster whose entries route GSDReintegratieInfo.
    pub reintegratie_cluster: String,
    /// How long one gemeente may take to answer a routed question.
    pub route_timeout_secs: u64,
    /// CA bundle the gemeenten's server and signing certificates must chain to. Default: `tls.client_ca`.
    pub gemeente_ca: Option<PathBuf>,
    /// The URL gemeenten use for IBVerwijsindex. Default: `https://<server.listen>/IBVerwijsindex-v0300`.
    pub verwijsindex_url: Option<String>,
    /// A delivery older than this many days is flagged stale (a batch gemeente's last full
    /// import, a webservice gemeente's newest update).
    pub stale_after_days: u32,
    /// Seconds between the stale checks while serving: a WARN per stale gemeente and the gauge
    /// `dkd_ib_stale_gemeenten` (0 = off). Once per interval across the instances on one store.
    pub stale_check_interval_secs: u64,
    /// The gemeenten.
    pub gemeenten: Vec<IbGemeenteConfig>,
}

impl Default for IbConfig {
    fn default() -> Self {
        IbConfig {
            clusters: ["01", "02", "03", "04", "05"].map(String::from).to_vec(),
            reintegratie_cluster: "04".into(),
            route_timeout_secs: 5,
            gemeente_ca: None,
            verwijsindex_url: None,
            stale_after_days: 35,
            stale_check_interval_secs: 3600,
            gemeenten: Vec::new(),
        }
    }
}

/// `[[ib.gemeenten]]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IbGemeenteConfig {
    /// CBS gemeentecode, four digits.
    pub code: String,
    /// Name, for reports.
    #[serde(default)]
    pub name: String,
    /// OINs allowed to send IBVerwijsindex updates for it.
    #[serde(default)]
    pub oins: Vec<String>,
    /// Its GSDDossierReintegratie endpoint (webservice delivery).
    #[serde(default)]
    pub url: Option<String>,
    /// `webservice` (default) or `batch`.
    #[serde(default = "default_delivery")]
    pub delivery: crate::ib::Delivery,
}

impl PushConfig {
    /// `ind_dkd_nee` as the sender writes it (validated at load; the default otherwise).
    pub fn ind_dkd_nee(&self) -> crate::suwiml::verwijsindex::Nee {
        crate::suwiml::verwijsindex::Nee::parse(&self.ind_dkd_nee).unwrap_or_default()
    }
}

fn default_delivery() -> crate::ib::Delivery {
    crate::ib::Delivery::Webservice
}

/// `[ops]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address of the ops listener (plain HTTP); empty to disable.
    pub listen: String,
    /// `/readyz` fails when the server certificate has fewer days left.
    pub min_cert_days: i64,
    /// `/readyz` fails when the last import is older than this many hours (0: not checked).
    pub max_import_age_hours: u64,
    /// With push on, `/readyz` fails when an update waits longer than this for the IB (0: not
    /// checked), or when the IB refused one (parked).
    pub max_outbox_age_secs: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: "127.0.0.1:9090".into(),
            min_cert_days: 14,
            max_import_age_hours: 0,
            max_outbox_age_secs: 3600,
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days audit records are kept (then deleted by the daily sweep).
    pub retention_days: u32,
    /// Records that may wait for the audit writer. A request takes room before it is answered;
    /// `/readyz` fails while over half of it is taken.
    pub queue_records: usize,
    /// How long a request waits for room when the queue is full; past that it is answered
    /// `fwi:FWI/Fout` 0051 (service unavailable) instead of without an audit record.
    pub wait_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 365,
            queue_records: crate::store::AUDIT_QUEUE_RECORDS,
            wait_ms: 1000,
        }
    }
}

/// `[retention]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days an entry stays after its last provision ended (LKS rule: two years).
    pub window_days: u32,
    /// Delete expired entries' data (data minimisation); `false` keeps it aside, unserved.
    pub purge: bool,
    /// Hours between sweeps while serving (0 = no automatic sweep).
    pub sweep_interval_hours: u64,
    /// Seconds between sweeps, when set: overrides `sweep_interval_hours` (0 = no automatic sweep).
    pub sweep_interval_secs: Option<u64>,
}

impl RetentionConfig {
    /// The time between automatic sweeps; zero: none.
    pub fn sweep_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.sweep_interval_secs
                .unwrap_or(self.sweep_interval_hours.saturating_mul(3600)),
        )
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            window_days: crate::retention::DEFAULT_WINDOW_DAYS,
            purge: true,
            sweep_interval_hours: 24,
            sweep_interval_secs: None,
        }
    }
}

/// `[import]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// `CdTypeRvGsd` values that are loonkostensubsidie: such a provision must carry a loonwaarde.
    /// The default `24` is dkd's own choice, not a published code.
    pub lks_type_codes: Vec<String>,
    /// Dates later than this many days from today are refused as typos.
    pub max_future_days: u32,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            lks_type_codes: vec![crate::suwiml::model::TYPE_LKS.to_owned()],
            max_future_days: 366,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin API; empty to disable. Loopback: plain HTTP. Elsewhere: mutual TLS.
    pub listen: String,
    /// CA bundle admin client certificates must chain to (when not on loopback). Default: `tls.client_ca`.
    pub client_ca: Option<PathBuf>,
    /// OINs of admin client certificates allowed (when not on loopback).
    pub allowed_oins: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9443".into(),
            client_ca: None,
            allowed_oins: Vec::new(),
        }
    }
}

/// `[security]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `required`, `optional` or `off`. Default: `required` (`optional` under `serve --demo`).
    pub signing: Option<crate::soap::wssec::SigningMode>,
    /// Certificate dkd signs responses with (PEM). Default: `tls.cert`.
    pub sign_cert: Option<PathBuf>,
    /// Its RSA private key (PEM). Default: `tls.key`.
    pub sign_key: Option<PathBuf>,
    /// CA bundle signing certificates must chain to. Default: `tls.client_ca`.
    pub trusted_ca: Option<PathBuf>,
    /// OINs allowed to sign besides `auth.allowed_oins` (e.g. a party the IB forwards for).
    pub allowed_signer_oins: Vec<String>,
    /// Whether the signing certificate's OIN must equal the TLS client certificate's. Set false
    /// behind a non-transparent intermediary.
    pub signer_must_match_tls: bool,
    /// Allowed clock difference with the caller.
    pub clock_skew_secs: u64,
    /// The oldest wsu:Created accepted; also the replay window.
    pub max_message_age_secs: u64,
    /// Validity of the Timestamp on dkd's responses.
    pub response_ttl_secs: u64,
    /// MessageIDs remembered for replay detection.
    pub replay_cache_size: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            signing: None,
            sign_cert: None,
            sign_key: None,
            trusted_ca: None,
            allowed_signer_oins: Vec::new(),
            signer_must_match_tls: true,
            clock_skew_secs: 120,
            max_message_age_secs: 300,
            response_ttl_secs: 300,
            replay_cache_size: 100_000,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind, e.g. `127.0.0.1:8443`.
    pub listen: String,
    /// The URL callers use (wsa:To, WSDL soap:address). Default: `https://<listen>/GSDDossierReintegratie-v0200`.
    pub public_url: Option<String>,
    /// Further accepted wsa:To values.
    pub to_aliases: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time allowed for a request's headers to arrive (also the keep-alive idle limit).
    pub header_read_timeout_secs: u64,
    /// Time allowed for a request's body to arrive.
    pub body_read_timeout_secs: u64,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Authenticated connections served at once; when all are taken the one idle the longest is
    /// closed for a newcomer, which waits only while every one has a request in flight.
    pub max_connections: usize,
    /// Connections still in the TLS handshake at once; when full, a new connection sheds the
    /// oldest one still in its handshake.
    pub max_handshakes: usize,
    /// The same per peer address (IPv6: per /64); a new connection from a full address sheds
    /// that address's oldest handshake.
    pub max_handshakes_per_address: usize,
    /// This service's identity in `fwi:*/Bron/DN`.
    pub service_dn: String,
    /// On SIGTERM: how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Threads set aside to verify and sign (signing on); by default one per CPU core. Off the
    /// async workers, a 0.2 ms signature cannot hold up reading and writing other connections:
    /// p99 at half load 1.80 against 2.35 ms (BENCHMARKS.md, round 4). 0: the async workers do it
    /// themselves, without a hand-over between threads (~6 % more signed answers per second at
    /// full load on two cores).
    pub crypto_threads: usize,
}

/// `[tls]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM or DER), optional.
    pub crls: Vec<PathBuf>,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// OINs (20 digits) allowed to call.
    pub allowed_oins: Vec<String>,
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the sled store (used when `url` is not set).
    pub path: PathBuf,
    /// A PostgreSQL database instead of sled: `postgres://user[:password]@host:port/db`
    /// (`?sslmode=require` for TLS, with `ca`). Any number of dkd instances may share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The CA (PEM) that signed the PostgreSQL server's certificate, for TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

impl StoreConfig {
    /// Where the store is: PostgreSQL when `url` is set, else the sled directory `path`.
    pub fn location(&self) -> crate::store::Location {
        match &self.url {
            Some(url) => crate::store::Location::Postgres {
                url: url.clone(),
                ca: self.ca.clone(),
            },
            None => crate::store::Location::Sled(self.path.clone()),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `dkd=debug`.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8443".into(),
            public_url: None,
            to_aliases: Vec::new(),
            max_body_bytes: 1024 * 1024,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            tls_handshake_timeout_secs: 10,
            max_connections: 256,
            max_handshakes: 128,
            max_handshakes_per_address: 32,
            service_dn: "CN=dkd,O=Gemeente".into(),
            shutdown_grace_secs: 10,
            crypto_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::from("certs/dev/server.pem"),
            key: PathBuf::from("certs/dev/server-key.pem"),
            client_ca: PathBuf::from("certs/dev/ca.pem"),
            crls: Vec::new(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data/dkd.sled"),
            url: None,
            ca: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}
