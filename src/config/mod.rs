//! Configuration: one TOML file, environment overrides, validated once and passed explicitly.
//!
//! Overrides use `DKD_<SECTION>__<KEY>` (double underscore between section and key), e.g.
//! `DKD_SERVER__LISTEN=0.0.0.0:8443` or `DKD_AUTH__ALLOWED_OINS=00000001234567890000,0000...`.
//! Unknown keys, in the file or in the environment, are errors: a typo must not silently fall back
//! to a default.

mod sections;

pub use sections::{
    AdminConfig, AuditConfig, AuthConfig, IbConfig, IbGemeenteConfig, ImportConfig, LogConfig,
    LogFormat, OpsConfig, PushConfig, RetentionConfig, SecurityConfig, ServerConfig, SignalsConfig,
    StoreConfig, TlsConfig,
};
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
