//! The `dkd` command line: parse arguments, set up logging, dispatch, map errors to exit codes.

use clap::{Parser, Subcommand};
use dkd::app::{App, StartError};
use dkd::certs::{self, files, DEMO_CLIENT_OIN};
use dkd::config::{Config, LogFormat};
use dkd::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit codes (documented in README.md).
mod exit {
    /// Runtime failure.
    pub const FAILURE: u8 = 1;
    /// Invalid configuration.
    pub const CONFIG: u8 = 3;
    /// TLS material or certificate problem.
    pub const TLS: u8 = 4;
    /// Store cannot be opened or written.
    pub const STORE: u8 = 5;
    /// Address cannot be bound.
    pub const BIND: u8 = 6;
}

#[derive(Parser)]
#[command(name = "dkd", version, about = "Digitaal Klantdossier (DKD) re-integration service for gemeenten", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve GSDDossierReintegratie-v0200 over mutual TLS.
    Serve {
        /// TOML configuration file (see dkd.example.toml). Environment overrides: DKD_<SECTION>__<KEY>.
        #[arg(long, short = 'c', env = "DKD_CONFIG")]
        config: Option<PathBuf>,
        /// Zero-config demo: generate a dev PKI under certs/dev if missing, allow the demo client OIN,
        /// and fill an empty store with the deterministic demo set.
        #[arg(long)]
        demo: bool,
    },
    /// (Re)generate the development PKI: CA, server and client certificates with test OINs.
    Certs {
        /// Output directory.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, demo } => serve(config.as_deref(), demo),
        Command::Certs { dir } => match certs::generate_dev_pki(&dir) {
            Ok(()) => {
                println!("Development PKI written to {}:", dir.display());
                println!(
                    "  {}  CA (trust this; it is the client CA bundle in demo mode)",
                    files::CA
                );
                println!(
                    "  {} / {}  server, localhost and 127.0.0.1",
                    files::SERVER,
                    files::SERVER_KEY
                );
                println!(
                    "  {} / {}  client, OIN {DEMO_CLIENT_OIN} (allowed in demo)",
                    files::CLIENT,
                    files::CLIENT_KEY
                );
                println!(
                    "  {} / {}  client, OIN {} (not allowed)",
                    files::UNLISTED,
                    files::UNLISTED_KEY,
                    certs::DEMO_UNLISTED_OIN
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(
                exit::TLS,
                &format!("cannot generate the development PKI: {e}"),
            ),
        },
    }
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("dkd: error: {msg}");
    ExitCode::from(code)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DKD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.init(),
    }
}

fn serve(config: Option<&Path>, demo: bool) -> ExitCode {
    let mut cfg = match Config::load(config, std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(exit::CONFIG, &e.to_string()),
    };
    init_logging(&cfg);
    if demo {
        let dev_dir = cfg
            .tls
            .cert
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("certs/dev"));
        if !certs::dev_pki_present(&dev_dir) {
            println!("Generating a development PKI in {} ...", dev_dir.display());
            if let Err(e) = certs::generate_dev_pki(&dev_dir) {
                return fail(
                    exit::TLS,
                    &format!("cannot generate the development PKI: {e}"),
                );
            }
        }
        if cfg.auth.allowed_oins.is_empty() {
            cfg.auth.allowed_oins.push(DEMO_CLIENT_OIN.to_owned());
        }
        // So the printed curl command works unsigned; signed requests are still verified.
        cfg.security
            .signing
            .get_or_insert(dkd::soap::wssec::SigningMode::Optional);
    } else if cfg.auth.allowed_oins.is_empty() {
        tracing::warn!("auth.allowed_oins is empty: every caller will be refused (code 0002)");
    }
    let store = match Store::open(&cfg.store.path) {
        Ok(s) => s,
        Err(e) => return fail(exit::STORE, &format!("{}: {e}", cfg.store.path.display())),
    };
    if demo && store.is_empty() {
        let today = time::OffsetDateTime::now_utc().date();
        let people = dkd::demo::generate(dkd::demo::DEMO_PERSONS, today);
        if let Err(e) = store.put_all(&people).and_then(|_| store.flush()) {
            return fail(exit::STORE, &format!("cannot load the demo set: {e}"));
        }
        println!(
            "Loaded {} demo persons into {}",
            people.len(),
            cfg.store.path.display()
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                exit::FAILURE,
                &format!("cannot start the async runtime: {e}"),
            )
        }
    };
    runtime.block_on(async move {
        let app = match App::bind_with_store(&cfg, store).await {
            Ok(a) => a,
            Err(e @ StartError::Tls(_)) => {
                let hint = if demo {
                    ""
                } else {
                    " (run `dkd certs` for a development PKI, or `dkd serve --demo`)"
                };
                return fail(exit::TLS, &format!("{e}{hint}"));
            }
            Err(e @ StartError::Signer(_)) => return fail(exit::TLS, &e.to_string()),
            Err(e @ StartError::Store(_)) => return fail(exit::STORE, &e.to_string()),
            Err(e @ StartError::Bind { .. }) => return fail(exit::BIND, &e.to_string()),
        };
        print_banner(&app, &cfg, demo);
        tracing::info!(listen = %app.local_addr(), url = app.public_url(), "dkd serving");
        match app.run(shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("dkd stopped");
                ExitCode::SUCCESS
            }
            Err(e) => fail(exit::FAILURE, &e.to_string()),
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn abs(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn print_banner(app: &App, cfg: &Config, demo: bool) {
    let url = app.public_url();
    let bsn = app
        .store()
        .first(1)
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|p| p.bsn.to_string());
    println!();
    println!(
        "dkd {} serving GSDDossierReintegratie-v0200",
        env!("CARGO_PKG_VERSION")
    );
    println!("  endpoint : {url}");
    println!("  WSDL     : {url}?wsdl");
    println!(
        "  store    : {} ({} persons)",
        cfg.store.path.display(),
        app.store().len()
    );
    println!("  allowed  : {}", cfg.auth.allowed_oins.join(", "));
    if let Some(bsn) = &bsn {
        println!(
            "  demo BSN : {bsn}   (unknown but valid: {})",
            dkd::demo::UNKNOWN_BSN
        );
    }
    if demo {
        let dir = cfg.tls.cert.parent().unwrap_or(Path::new("certs/dev"));
        let request = dkd::soap::example_request(
            url,
            DEMO_CLIENT_OIN,
            bsn.as_deref().unwrap_or(dkd::demo::UNKNOWN_BSN),
        );
        println!();
        println!("Try it (paste into a shell):");
        println!();
        println!(
            "curl --cacert {} --cert {} --key {} \\\n  -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: \"\"' \\\n  --data-binary @- {url} <<'EOF'",
            abs(&dir.join(files::CA)),
            abs(&dir.join(files::CLIENT)),
            abs(&dir.join(files::CLIENT_KEY)),
        );
        print!("{request}");
        println!("EOF");
    }
    println!();
}
