//! The admin API's listener and state, bound from `[admin]`.

use super::{ib_settings, role_name, Admin, StartError};
use crate::config::{Config, Role};
use crate::http::admin::AdminState;
use crate::http::tls;
use crate::store::Store;
use std::sync::Arc;

/// Binds the admin API: plain HTTP on loopback, mutual TLS elsewhere.
pub(super) async fn bind_admin(
    cfg: &Config,
    store: &Store,
    fetcher: Option<Arc<crate::gemeente::fetch::Fetcher>>,
    scenario: Option<Arc<crate::chain::scenario::Live>>,
) -> Result<Option<Admin>, StartError> {
    if cfg.admin.listen.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&cfg.admin.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.admin.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.admin.listen.clone(),
        source,
    })?;
    let tls = if addr.ip().is_loopback() {
        None
    } else {
        if cfg.admin.allowed_oins.is_empty() {
            tracing::warn!(
                "admin.allowed_oins is empty: the admin API on {addr} refuses every client"
            );
        }
        let ca = cfg.admin.client_ca.as_ref().unwrap_or(&cfg.tls.client_ca);
        let c = tls::server_config(&cfg.tls.cert, &cfg.tls.key, ca, &cfg.tls.crls)?;
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(c)))
    };
    let state = Arc::new(AdminState {
        store: store.clone(),
        rules: crate::import::Rules {
            lks_type_codes: cfg.import.lks_type_codes.clone(),
            max_future_days: cfg.import.max_future_days,
        },
        purge: cfg.retention.purge,
        allowed_oins: cfg.admin.allowed_oins.iter().cloned().collect(),
        window_days: cfg.retention.window_days,
        ib: (cfg.role == Role::Ib).then(|| ib_settings(cfg)),
        fetcher,
        identity: store.identity(role_name(cfg.role))?,
        role: role_name(cfg.role),
        scenario,
    });
    Ok(Some(Admin {
        listener,
        tls,
        state,
        addr,
    }))
}
