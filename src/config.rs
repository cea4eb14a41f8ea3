//! Configuration: one TOML file, environment overrides, validated once and passed explicitly.
//!
//! Overrides use `DKD_<SECTION>__<KEY>` (double underscore between section and key), e.g.
//! `DKD_SERVER__LISTEN=0.0.0.0:8443` or `DKD_AUTH__ALLOWED_OINS=00000001234567890000,0000...`.
//! Unknown keys, in the file or in the environment, are errors: a typo must not silently fall back
//! to a default.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `gemeente` (default): answer GSDReintegratieInfo from the own store and push the index to
    /// the IB; `ib`: play the Inlichtingenbureau (verwijsindex + routing).
    pub role: Role,
    /// Listener, public address and limits.
    pub server: ServerConfig,
    /// TLS material.
    pub tls: TlsConfig,
    /// Who may call.
    pub auth: AuthConfig,
    /// Where the verwijsindex lives.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
    /// WS-Security (message signing).
    pub security: SecurityConfig,
    /// The LKS look-back and the sweep.
    pub retention: RetentionConfig,
    /// Backoffice imports.
    pub import: ImportConfig,
    /// The JSON admin API for real-time updates.
    pub admin: AdminConfig,
    /// The ops listener: health, readiness, metrics, status page.
    pub ops: OpsConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Gemeente role: pushing the verwijsindex to the IB (the outbox).
    pub push: PushConfig,
    /// IB role: clusters, gemeenten and routing.
    pub ib: IbConfig,
    /// Gemeente role: fetching the IB's "Toets LKS" reports (the LKSRi CSV layout is dkd's own;
    /// in the real chain the signal starts at UWV, and an IB running dkd takes such a file with
    /// `dkd signals publish`).
    pub signals: SignalsConfig,
    /// Gemeente role, for chain tests only: answer (or push) wrongly on purpose. Refused unless
    /// `scenario.enabled = true`.
    pub scenario: crate::chain::scenario::ScenarioConfig,
}

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

/// Which side of the chain this instance plays.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A gemeente's endpoint.
    #[default]
    Gemeente,
    /// The Inlichtingenbureau.
    Ib,
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

/// The path of the GSDDossierReintegratie endpoint.
pub const GSD_PATH: &str = "/GSDDossierReintegratie-v0200";
/// Where the IB role serves IBVerwijsindex.
pub const VI_PATH: &str = "/IBVerwijsindex-v0300";

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax or an unknown or mistyped key.
    #[error("{origin}: {message}")]
    Parse {
        /// The file or the environment variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads a file (if given), applies `DKD_*__*` overrides from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let t: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Parse {
                            origin: p.display().to_string(),
                            message: e.to_string(),
                        })?;
                (t, p.display().to_string())
            }
            None => (toml::Table::new(), "defaults".to_string()),
        };
        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("DKD_") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                if rest.eq_ignore_ascii_case("role") {
                    table.insert("role".into(), toml::Value::String(v.to_ascii_lowercase()));
                }
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let default = defaults.get(&section).and_then(|s| s.get(&key));
            let is_list = default.is_some_and(|d| d.is_array());
            // A text setting stays text even when it looks like a number (`push.ind_dkd_nee=0`).
            let value = match env_value(&v, is_list) {
                x if !x.is_str() && default.is_some_and(|d| d.is_str()) => {
                    toml::Value::String(v.clone())
                }
                x => x,
            };
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(sec) = entry.as_table_mut() else {
                return Err(ConfigError::Parse {
                    origin: k,
                    message: format!("[{section}] is not a table"),
                });
            };
            sec.insert(key, value);
        }
        if let Some(r) = table.get("role") {
            if !matches!(r.as_str(), Some("gemeente" | "ib")) {
                return Err(ConfigError::Invalid(format!(
                    "role {r} must be \"gemeente\" or \"ib\""
                )));
            }
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: format!("{origin} (with DKD_* environment overrides)"),
                message: e.message().to_owned(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that TOML types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "server.listen {:?} is not an address such as 127.0.0.1:8443",
                self.server.listen
            ));
        }
        if let Some(u) = &self.server.public_url {
            if !u.starts_with("https://") {
                return bad(format!("server.public_url {u:?} must be an https:// URL"));
            }
        }
        if let Some(u) = &self.store.url {
            if let Err(e) = crate::store::check_pg_url(u, self.store.ca.is_some()) {
                return bad(format!(
                    "store.url {:?} is not a PostgreSQL URL: {e}",
                    crate::store::mask_url(u)
                ));
            }
        }
        if self.store.ca.is_some() && self.store.url.is_none() {
            return bad("store.ca is for PostgreSQL over TLS and needs store.url".into());
        }
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes must be at least 1024".into());
        }
        for (name, v) in [
            (
                "header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", self.server.body_read_timeout_secs),
            (
                "tls_handshake_timeout_secs",
                self.server.tls_handshake_timeout_secs,
            ),
        ] {
            if v == 0 || v > 3600 {
                return bad(format!("server.{name} must be 1..=3600 seconds"));
            }
        }
        if self.server.max_connections == 0 {
            return bad("server.max_connections must be at least 1".into());
        }
        if self.audit.queue_records == 0 {
            return bad("audit.queue_records must be at least 1".into());
        }
        if self.audit.wait_ms > 60_000 {
            return bad("audit.wait_ms must be 0..=60000 milliseconds".into());
        }
        if self.server.max_handshakes == 0 {
            return bad("server.max_handshakes must be at least 1".into());
        }
        if self.server.max_handshakes_per_address == 0
            || self.server.max_handshakes_per_address > self.server.max_handshakes
        {
            return bad(format!(
                "server.max_handshakes_per_address must be 1..=server.max_handshakes ({})",
                self.server.max_handshakes
            ));
        }
        if self.security.replay_cache_size == 0 {
            return bad("security.replay_cache_size must be at least 1".into());
        }
        if self.security.max_message_age_secs == 0 || self.security.response_ttl_secs == 0 {
            return bad(
                "security.max_message_age_secs and security.response_ttl_secs must be at least 1"
                    .into(),
            );
        }
        for (name, addr) in [
            ("ops.listen", &self.ops.listen),
            ("admin.listen", &self.admin.listen),
        ] {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                return bad(format!("{name} {addr:?} is not an address such as 127.0.0.1:9090 (or empty to disable)"));
            }
        }
        if self.retention.window_days == 0 {
            return bad("retention.window_days must be at least 1".into());
        }
        for code in &self.import.lks_type_codes {
            if code.chars().count() != 2 {
                return bad(format!(
                    "import.lks_type_codes: {code:?} must be 2 characters (CdTypeRvGsd)"
                ));
            }
        }
        for oin in self
            .auth
            .allowed_oins
            .iter()
            .chain(&self.security.allowed_signer_oins)
            .chain(&self.admin.allowed_oins)
        {
            if oin.len() != 20 || !oin.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!("allowed OINs: {oin:?} is not a 20-digit OIN"));
            }
        }
        if !self.signals.portal.is_empty()
            && !self.signals.portal.starts_with("https://")
            && !self.signals.portal.starts_with("http://127.0.0.1")
            && !self.signals.portal.starts_with("http://localhost")
        {
            return bad(format!(
                "signals.portal {:?} must be an https:// URL (plain http only on 127.0.0.1)",
                self.signals.portal
            ));
        }
        if !self.push.url.is_empty() && !self.push.url.starts_with("https://") {
            return bad(format!(
                "push.url {:?} must be an https:// URL",
                self.push.url
            ));
        }
        if self.push.cluster.is_empty() || self.push.cluster.chars().count() > 2 {
            return bad("push.cluster must be 1-2 characters (CdClusteringIb)".into());
        }
        if crate::suwiml::verwijsindex::Nee::parse(&self.push.ind_dkd_nee).is_none() {
            return bad(format!(
                "push.ind_dkd_nee {:?} must be \"0\" or \"2\" (how IndDkd says no)",
                self.push.ind_dkd_nee
            ));
        }
        if self.push.concurrency == 0 || self.push.timeout_secs == 0 {
            return bad("push.concurrency and push.timeout_secs must be at least 1".into());
        }
        if self.push.lease_secs <= self.push.timeout_secs {
            return bad(format!(
                "push.lease_secs ({}) must be longer than push.timeout_secs ({}): a sender whose \
                 delivery is still waiting would lose its lease to another instance",
                self.push.lease_secs, self.push.timeout_secs
            ));
        }
        for c in &self.ib.clusters {
            if c.is_empty() || c.chars().count() > 2 {
                return bad(format!("ib.clusters: {c:?} must be 1-2 characters"));
            }
        }
        if !self.ib.clusters.contains(&self.ib.reintegratie_cluster) {
            return bad(format!(
                "ib.reintegratie_cluster {:?} is not in ib.clusters",
                self.ib.reintegratie_cluster
            ));
        }
        if self.ib.route_timeout_secs == 0 {
            return bad("ib.route_timeout_secs must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for g in &self.ib.gemeenten {
            if g.code.len() != 4 || !g.code.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!("ib.gemeenten: code {:?} must be 4 digits", g.code));
            }
            if !seen.insert(&g.code) {
                return bad(format!("ib.gemeenten: gemeente {} appears twice", g.code));
            }
            match (&g.url, g.delivery) {
                (Some(u), _) if !u.starts_with("https://") => {
                    return bad(format!(
                        "ib.gemeenten {}: url {u:?} must be https://",
                        g.code
                    ))
                }
                (None, crate::ib::Delivery::Webservice) => {
                    return bad(format!(
                        "ib.gemeenten {}: a webservice gemeente needs a url",
                        g.code
                    ))
                }
                _ => {}
            }
            for oin in &g.oins {
                if oin.len() != 20 || !oin.bytes().all(|b| b.is_ascii_digit()) {
                    return bad(format!(
                        "ib.gemeenten {}: {oin:?} is not a 20-digit OIN",
                        g.code
                    ));
                }
            }
        }
        self.scenario
            .validate(|c| crate::soap::emulated_fault(c).is_some())
            .map_err(ConfigError::Invalid)?;
        if self.scenario.enabled && self.role == Role::Ib {
            return bad(
                "scenario: only an emulated gemeente runs a scenario (role = \"gemeente\")".into(),
            );
        }
        if self.scenario.push.is_some() && self.push.url.is_empty() {
            return bad("scenario.push needs push.url: this gemeente does not push".into());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(format!(
                "log.level {:?} is not a valid filter",
                self.log.level
            ));
        }
        Ok(())
    }

    /// The signing mode in force (`required` unless configured).
    pub fn pushes(&self) -> bool {
        self.role == Role::Gemeente && !self.push.url.is_empty()
    }

    pub fn signing_mode(&self) -> crate::soap::wssec::SigningMode {
        self.security
            .signing
            .unwrap_or(crate::soap::wssec::SigningMode::Required)
    }

    /// The public URL of the GSDDossierReintegratie endpoint.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.clone(),
            None => format!("https://{}{GSD_PATH}", self.server.listen),
        }
    }

    /// The configuration as TOML, for `--print-config`-style output.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

fn env_value(v: &str, is_list: bool) -> toml::Value {
    let doc = format!("v = {v}");
    if let Ok(t) = doc.parse::<toml::Table>() {
        if let Some(val) = t.get("v") {
            if !is_list || val.is_array() {
                return val.clone();
            }
        }
    }
    if is_list {
        let items = v.split(',').map(str::trim).filter(|s| !s.is_empty());
        return toml::Value::Array(items.map(|s| toml::Value::String(s.to_owned())).collect());
    }
    toml::Value::String(v.to_owned())
}

#[cfg(test)]
mod tests;
