//! The client tools: call, check; config check and the demo file.

use super::exit::{Code, Failure, Outcome};
use crate::certs::{self, files, DEMO_CLIENT_OIN};
use crate::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) fn config_check(file: &Path) -> Outcome {
    match Config::load(Some(file), std::env::vars()) {
        Ok(mut cfg) => {
            // Paths of private keys are not secrets, but nothing else in the file is either; mask
            // the key paths anyway so the output can be pasted into a ticket.
            cfg.tls.key = PathBuf::from("********");
            if cfg.security.sign_key.is_some() {
                cfg.security.sign_key = Some(PathBuf::from("********"));
            }
            if let Some(u) = &cfg.store.url {
                cfg.store.url = Some(crate::store::mask_url(u));
            }
            say!(
                "# store: {}",
                match &cfg.store.url {
                    Some(u) => format!("PostgreSQL at {u}"),
                    None => format!("sled in {}", cfg.store.path.display()),
                }
            );
            say!(
                "# {} is valid. Effective settings (defaults and DKD_* overrides applied):",
                file.display()
            );
            put!("{}", cfg.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn demo_file(persons: usize, out: &Path) -> Outcome {
    let people = crate::chain::demo::generate(persons, time::OffsetDateTime::now_utc().date());
    let mut s = String::with_capacity(persons * 300);
    let xml = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
    if xml {
        crate::import::xml_format::write(&people, &mut s);
    } else {
        crate::import::csv_format::write(&people, &mut s);
    }
    match std::fs::write(out, s) {
        Ok(()) => {
            say!("wrote {persons} persons to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(source) => Err(Failure::File {
            path: out.to_path_buf(),
            source,
        }),
    }
}

#[derive(clap::Args)]
pub(super) struct CallArgs {
    /// Endpoint URL, e.g. https://127.0.0.1:8443/GSDDossierReintegratie-v0200 (also wsa:To).
    url: String,
    /// The BSN to ask about.
    #[arg(long)]
    bsn: String,
    #[command(flatten)]
    client: ClientTls,
    /// OIN for wsa:From; default: the one in the client certificate.
    #[arg(long)]
    from_oin: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// The caller's TLS and signing material, as `dkd call` and `dkd check` take it.
#[derive(clap::Args)]
pub(super) struct ClientTls {
    /// CA bundle to trust for the server's TLS and signing certificates.
    #[arg(long, default_value = "certs/dev/ca.pem")]
    ca: PathBuf,
    /// TLS client certificate (PEM) carrying the caller's OIN; also the signing certificate
    /// unless --sign-cert is given.
    #[arg(long, default_value = "certs/dev/client.pem")]
    cert: PathBuf,
    /// Its private key.
    #[arg(long, default_value = "certs/dev/client-key.pem")]
    key: PathBuf,
    /// Signing certificate, if it differs from the TLS one.
    #[arg(long, requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// Send unsigned (for endpoints with signing off or optional; `check` then skips the
    /// security checks).
    #[arg(long)]
    unsigned: bool,
}

/// `dkd call`: exit 0 for an answer (ClientSuwi or NietsGevonden) with a valid signed response,
/// 1 for a fault, an FWI Fout or a response that fails its checks, 4 for TLS material problems.
pub(super) fn call(a: CallArgs) -> Outcome {
    use crate::http::tls;
    let tls_cfg = std::sync::Arc::new(tls::client_config(
        &a.client.ca,
        &a.client.cert,
        &a.client.key,
    )?);
    let from_oin = a
        .from_oin
        .or_else(|| {
            tls::load_certs(&a.client.cert)
                .ok()
                .and_then(|c| c.first().and_then(|c| certs::oin_of(c).ok().flatten()))
        })
        .ok_or(Failure::NoOin)?;
    let signer = if a.client.unsigned {
        None
    } else {
        let (c, k) = (
            a.client.sign_cert.as_ref().unwrap_or(&a.client.cert),
            a.client.sign_key.as_ref().unwrap_or(&a.client.key),
        );
        Some(crate::soap::wssec::Signer::load(c, k)?)
    };
    let trust = tls::signer_trust(&a.client.ca, &[])?;
    let opts = crate::tools::call::CallOptions {
        url: a.url,
        bsn: a.bsn,
        from_oin,
        tls: tls_cfg,
        signer,
        response_trust: Some(trust),
        timeout: std::time::Duration::from_secs(a.timeout),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Err(Failure::Other(e.to_string())),
    };
    let r = match runtime.block_on(crate::tools::call::call(opts)) {
        Ok(r) => r,
        Err(e) => return Err(Failure::Other(e.to_string())),
    };
    say!("{}", r.body);
    let sig = match &r.signature {
        Some(Ok(v)) => format!("valid, signer OIN {}", v.signer_oin),
        Some(Err(e)) => format!("INVALID: {e}"),
        None => "not checked".into(),
    };
    tell!(
        "HTTP {} {}{}; response signature {sig}; RelatesTo {}",
        r.status,
        r.kind,
        r.code
            .as_deref()
            .map(|c| format!(" (code {c})"))
            .unwrap_or_default(),
        if r.relates_to_matches {
            "matches"
        } else {
            "DOES NOT MATCH"
        }
    );
    let ok = matches!(r.kind, "clientsuwi" | "nietsgevonden")
        && r.relates_to_matches
        && r.signature.as_ref().is_none_or(|s| s.is_ok());
    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(Code::Failure.into())
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum CheckFormat {
    Table,
    Json,
    Junit,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum CheckService {
    Gsd,
    Verwijsindex,
}

#[derive(clap::Args)]
pub(super) struct CheckArgs {
    /// Endpoint URL, e.g. https://dkd.gemeente.example:8443/GSDDossierReintegratie-v0200.
    url: String,
    /// The service offered at URL.
    #[arg(long, value_enum, default_value = "gsd")]
    service: CheckService,
    /// A BSN the endpoint holds data for (repeat, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    bsn: Vec<String>,
    /// A valid BSN the endpoint holds nothing for.
    #[arg(long, default_value = crate::tools::check::DEFAULT_UNKNOWN_BSN)]
    unknown_bsn: String,
    #[command(flatten)]
    client: ClientTls,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: CheckFormat,
    /// Write the report to FILE instead of standard output (a summary line goes to stderr).
    #[arg(long)]
    out: Option<PathBuf>,
    /// tls.days-left fails below this many days.
    #[arg(long, default_value_t = crate::tools::check::DEFAULT_MIN_DAYS)]
    min_days: i64,
    /// Requests measured by timing.latency (at most 1000).
    #[arg(long, default_value_t = crate::tools::check::DEFAULT_REQUESTS)]
    requests: usize,
    /// timing.latency warns when p99 exceeds this many milliseconds.
    #[arg(long, default_value_t = crate::tools::check::DEFAULT_SLOW_MS)]
    slow_ms: u64,
    /// Seconds each exchange may take.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Body size errors.oversized sends, in bytes.
    #[arg(long, default_value_t = crate::tools::check::DEFAULT_OVERSIZED)]
    oversized_bytes: usize,
    /// IBVerwijsindex: the gemeentecode the updates come from (Bron/CdPartijSuwi).
    #[arg(long, default_value = "")]
    gemeente: String,
    /// IBVerwijsindex: the cluster of the updates (CdClusteringIb).
    #[arg(long, default_value = "04")]
    cluster: String,
}

/// `dkd check`: exit 0 all passed, 1 a check failed, 2 usage (bad arguments or unreadable TLS
/// material), 3 could not connect.
pub(super) fn check(a: CheckArgs) -> Outcome {
    let sign = a
        .client
        .sign_cert
        .as_deref()
        .zip(a.client.sign_key.as_deref());
    let mut o = match crate::tools::check::CheckOptions::from_paths(
        &a.url,
        &a.client.cert,
        &a.client.key,
        &a.client.ca,
        sign,
        a.client.unsigned,
    ) {
        Ok(o) => o,
        Err(e) => return Err(Failure::Usage(e.to_string())),
    };
    o.service = match a.service {
        CheckService::Gsd => crate::tools::check::Service::Gsd,
        CheckService::Verwijsindex => crate::tools::check::Service::Verwijsindex,
    };
    o.bsns = a.bsn;
    o.unknown_bsn = a.unknown_bsn;
    o.min_days = a.min_days;
    o.requests = a.requests;
    o.slow = std::time::Duration::from_millis(a.slow_ms);
    o.timeout = std::time::Duration::from_secs(a.timeout);
    o.oversized_bytes = a.oversized_bytes;
    o.gemeente = a.gemeente;
    o.cluster = a.cluster;
    if let Err(e) = o.validate() {
        return Err(Failure::Usage(e.to_string()));
    }
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::tools::check::run(&o)),
        Err(e) => return Err(Failure::Other(e.to_string())),
    };
    let text = match a.format {
        CheckFormat::Table => crate::tools::check::table(&report),
        CheckFormat::Json => crate::tools::check::json(&report),
        CheckFormat::Junit => crate::tools::check::junit(&report),
    };
    match &a.out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|source| Failure::File {
                path: path.clone(),
                source,
            })?;
            match &report.connect_error {
                Some(e) if !report.connected => tell!("{e}"),
                _ => tell!("{}", crate::tools::check::summary(&report)),
            }
        }
        None => put!("{text}"),
    }
    Ok(ExitCode::from(report.exit_code()))
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum ProbeFormat {
    Nagios,
    Prometheus,
}

#[derive(clap::Args)]
pub(super) struct ProbeArgs {
    /// Endpoint URL of any 2W-be-S GSDDossierReintegratie-v0200 service.
    url: String,
    /// TLS client certificate (PEM) carrying the caller's OIN.
    #[arg(long)]
    cert: PathBuf,
    /// Its private key.
    #[arg(long)]
    key: PathBuf,
    /// CA bundle trusted for the server's TLS and signing certificates.
    #[arg(long)]
    ca: PathBuf,
    /// Signing certificate, if not the TLS one.
    #[arg(long)]
    sign_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long)]
    sign_key: Option<PathBuf>,
    /// BSN to ask about (a valid BSN without data answers NietsGevonden, which is healthy).
    #[arg(long)]
    bsn: Option<String>,
    /// Output: one Nagios status line with perfdata, or Prometheus metrics.
    #[arg(long, value_enum, default_value = "nagios")]
    format: ProbeFormat,
    /// WARNING when the server certificate has fewer days left.
    #[arg(long, default_value_t = crate::tools::probe::DEFAULT_WARNING_DAYS)]
    warning_days: i64,
    /// CRITICAL when the server certificate has fewer days left.
    #[arg(long, default_value_t = crate::tools::probe::DEFAULT_CRITICAL_DAYS)]
    critical_days: i64,
    /// Seconds before giving up (CRITICAL).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// `dkd probe`: the result on stdout, the Nagios state as the exit code (Prometheus output:
/// 0 unless UNKNOWN, the state is in the metrics).
pub(super) fn probe(a: ProbeArgs) -> Outcome {
    let opts = crate::tools::probe::ProbeOptions::from_paths(
        &a.url,
        &a.cert,
        &a.key,
        &a.ca,
        a.sign_cert.as_deref(),
        a.sign_key.as_deref(),
    )
    .map(|mut o| {
        if let Some(b) = a.bsn {
            o.bsn = b;
        }
        o.warning_days = a.warning_days;
        o.critical_days = a.critical_days;
        o.timeout = std::time::Duration::from_secs(a.timeout);
        o
    });
    let result = match opts {
        Ok(o) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(crate::tools::probe::probe(o)),
            Err(e) => crate::tools::probe::ProbeResult::unknown(e.to_string()),
        },
        Err(e) => crate::tools::probe::ProbeResult::unknown(e),
    };
    let out = match a.format {
        ProbeFormat::Nagios => crate::tools::probe::nagios_line(&result) + "\n",
        ProbeFormat::Prometheus => crate::tools::probe::prometheus(&result),
    };
    put!("{out}");
    Ok(match (a.format, result.status) {
        (ProbeFormat::Prometheus, s) if s != crate::tools::probe::Status::Unknown => {
            ExitCode::SUCCESS
        }
        (_, s) => ExitCode::from(s.exit_code()),
    })
}

/// `dkd certs`.
pub(super) fn dev_certs(dir: &Path) -> Outcome {
    certs::generate_dev_pki(dir)?;
    say!("Development PKI written to {}:", dir.display());
    say!(
        "  {}  CA (trust this; it is the client CA bundle in demo mode)",
        files::CA
    );
    say!(
        "  {} / {}  server, localhost and 127.0.0.1",
        files::SERVER,
        files::SERVER_KEY
    );
    say!(
        "  {} / {}  client, OIN {DEMO_CLIENT_OIN} (allowed in demo)",
        files::CLIENT,
        files::CLIENT_KEY
    );
    say!(
        "  {} / {}  client, OIN {} (not allowed)",
        files::UNLISTED,
        files::UNLISTED_KEY,
        certs::DEMO_UNLISTED_OIN
    );
    Ok(ExitCode::SUCCESS)
}
