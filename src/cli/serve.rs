//! serve and demo: logging, the banners, the shutdown signal.

use super::exit::{Failure, Outcome};
use crate::app::{App, StartError};
use crate::certs::{self, files, DEMO_CLIENT_OIN};
use crate::config::Config;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Log lines go to stderr through tracing-appender's writer thread, off the request path; the
/// guard writes what is left when the command ends.
pub(super) fn init_logging(cfg: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DKD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    // Colour codes only help a person at a terminal; in a file or journald they are noise (and
    // bytes written per request line).
    let ansi = std::io::stderr().is_terminal();
    crate::ops::logging::dispatch(filter, cfg.log.format, ansi, writer).init();
    guard
}

pub(super) fn serve(config: Option<&Path>, demo: bool) -> Outcome {
    let mut cfg = Config::load(config, std::env::vars())?;
    let _log = init_logging(&cfg);
    if demo {
        let dev_dir = cfg
            .tls
            .cert
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("certs/dev"));
        ensure_dev_pki(&dev_dir)?;
        if cfg.auth.allowed_oins.is_empty() {
            cfg.auth.allowed_oins.push(DEMO_CLIENT_OIN.to_owned());
        }
        // So the printed curl command works unsigned; signed requests are still verified.
        cfg.security
            .signing
            .get_or_insert(crate::soap::wssec::SigningMode::Optional);
    } else if cfg.auth.allowed_oins.is_empty() {
        tracing::warn!("auth.allowed_oins is empty: every caller will be refused (code 0002)");
    }
    // Serving brings a PostgreSQL schema that is behind up to date (and refuses one ahead).
    let store = Store::open_at(&cfg.store.location(), true).map_err(|source| Failure::Store {
        at: cfg.store.location().to_string(),
        source,
    })?;
    store.set_outbox(cfg.pushes());
    if demo && store.is_empty() {
        let today = time::OffsetDateTime::now_utc().date();
        let people = crate::chain::demo::generate(crate::chain::demo::DEMO_PERSONS, today);
        store
            .put_all(&people, "demo")
            .and_then(|_| store.flush())
            .map_err(demo_set)?;
        say!(
            "Loaded {} demo persons into {}",
            people.len(),
            cfg.store.location()
        );
    }
    let runtime = runtime()?;
    runtime.block_on(async move {
        let app = match App::bind_with_store(&cfg, store).await {
            Ok(a) => a,
            Err(e @ StartError::Tls(_)) if !demo => return Err(Failure::NoTls(e)),
            Err(e) => return Err(e.into()),
        };
        print_banner(&app, &cfg, demo);
        tracing::info!(listen = %app.local_addr(), url = app.public_url(), "dkd serving");
        match app.run(shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("dkd stopped");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(Failure::Other(e.to_string())),
        }
    })
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))
}

fn demo_set(source: crate::store::StoreError) -> Failure {
    Failure::Store {
        at: "cannot load the demo set".into(),
        source,
    }
}

/// The development PKI the demo commands run on (`certs/dev`), generated when missing.
pub(super) fn ensure_dev_pki(dev_dir: &Path) -> Result<(), Failure> {
    if !certs::dev_pki_present(dev_dir) {
        say!("Generating a development PKI in {} ...", dev_dir.display());
        certs::generate_dev_pki(dev_dir)?;
    }
    Ok(())
}

/// `dkd demo`: both roles in one process.
pub(super) fn demo_chain(dir: &Path, shift: u16) -> Outcome {
    let (g_cfg, ib_cfg) = crate::chain::demo::chain_configs(dir, shift);
    let _log = init_logging(&g_cfg);
    ensure_dev_pki(Path::new("certs/dev"))?;
    let open = |cfg: &Config| match Store::open(&cfg.store.path) {
        Ok(s) => Ok(s.with_outbox(cfg.pushes())),
        Err(source) => Err(Failure::Store {
            at: cfg.store.path.display().to_string(),
            source,
        }),
    };
    let (g_store, ib_store) = (open(&g_cfg)?, open(&ib_cfg)?);
    let today = time::OffsetDateTime::now_utc().date();
    let (webservice, batch) = crate::chain::demo::split_batch(crate::chain::demo::generate(
        crate::chain::demo::DEMO_PERSONS,
        today,
    ));
    if g_store.is_empty() {
        // The outbox is on: every person entering the index queues an update for the IB.
        g_store
            .put_all(&webservice, "demo")
            .and_then(|_| g_store.flush())
            .map_err(demo_set)?;
    }
    if ib_store.imports().map(|i| i.is_empty()).unwrap_or(false) {
        // Gemeente 0014 delivers a verzamelbestand; the IB answers for it from that.
        let mut csv = String::new();
        crate::import::csv_format::write(&batch, &mut csv);
        let opts = crate::import::Options {
            format: crate::import::Format::Csv,
            mode: crate::import::Mode::Full,
            gemeente: Some(crate::chain::demo::DEMO_BATCH_GEMEENTE.into()),
            dry_run: false,
            strict: true,
            rules: crate::import::Rules {
                lks_type_codes: ib_cfg.import.lks_type_codes.clone(),
                max_future_days: ib_cfg.import.max_future_days,
            },
            purge: true,
            window_days: ib_cfg.retention.window_days,
            today,
        };
        let file = format!(
            "{}_verzamelbestand.csv",
            crate::chain::demo::DEMO_BATCH_GEMEENTE
        );
        crate::import::import(&ib_store, &file, csv.as_bytes(), &opts, &mut |_| {})
            .map_err(Failure::DemoBatch)?;
    }
    // A person known to a webservice gemeente and to the batch gemeente: the IB merges both.
    let merged_bsn = webservice
        .iter()
        .find(|p| batch.iter().any(|b| b.bsn == p.bsn))
        .map(|p| p.bsn.to_string());
    let runtime = runtime()?;
    runtime.block_on(async move {
        let ib = match App::bind_with_store(&ib_cfg, ib_store).await {
            Ok(a) => a,
            Err(e) => return Err(e.into()),
        };
        let gemeente = match App::bind_with_store(&g_cfg, g_store.clone()).await {
            Ok(a) => a,
            Err(e) => return Err(e.into()),
        };
        print_chain_banner(&gemeente, &ib, &g_cfg, &g_store, merged_bsn.as_deref());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let ib_task = tokio::spawn(ib.run(stop(rx.clone())));
        let g_task = tokio::spawn(gemeente.run(stop(rx)));
        shutdown_signal().await;
        let _ = tx.send(true);
        let (a, b) = (g_task.await, ib_task.await);
        match (a, b) {
            (Ok(Ok(())), Ok(Ok(()))) => Ok(ExitCode::SUCCESS),
            _ => Err(Failure::Other("a server stopped with an error".into())),
        }
    })
}

/// `dkd demo --gemeenten N [--unreliable P]`: the IB and N emulated gemeenten in one process.
pub(super) fn demo_many(dir: &Path, shift: u16, n: usize, unreliable: f64) -> Outcome {
    let started = std::time::Instant::now();
    let (g_cfg, ib_cfg) = crate::chain::demo::chain_configs(dir, shift);
    let _log = init_logging(&g_cfg);
    ensure_dev_pki(Path::new("certs/dev"))?;
    let runtime = runtime()?;
    let today = time::OffsetDateTime::now_utc().date();
    runtime.block_on(async move {
        let many =
            match crate::chain::demo::bind_many(dir, ib_cfg.clone(), &g_cfg, n, unreliable, today).await {
                Ok(m) => m,
                Err(e) => return Err(e.into()),
            };
        let ib_url = many.ib.public_url().to_owned();
        say!();
        say!(
            "dkd {} demo: the IB and {n} emulated gemeenten on this machine (bound in {:.1} s)",
            env!("CARGO_PKG_VERSION"),
            started.elapsed().as_secs_f64()
        );
        say!("  IB       : {ib_url}");
        if let Some(a) = many.ib.ops_addr() {
            say!("  status   : http://{a}/   (the IB's Aanlevermonitor: reachability, failures, BSNs per gemeente)");
        }
        let bad: Vec<_> = many
            .gemeenten
            .iter()
            .filter_map(|(code, _, s)| s.as_ref().map(|s| (code, s.summary())))
            .collect();
        say!(
            "  gemeenten: {} .. {} ({} persons each, pushing to the IB), {} of them unreliable:",
            crate::chain::demo::many_code(0),
            crate::chain::demo::many_code(n - 1),
            crate::chain::demo::MANY_PERSONS,
            bad.len()
        );
        for (code, summary) in bad.iter().take(14) {
            say!("    {code}  SCENARIO {summary}");
        }
        if bad.len() > 14 {
            say!("    … and {} more, every scenario in turn", bad.len() - 14);
        }
        let dir_dev = Path::new("certs/dev");
        let call = |bsn: &str| {
            format!(
                "cargo run --release -- call {ib_url} --bsn {bsn} --ca {} --cert {} --key {}",
                abs(&dir_dev.join(files::CA)),
                abs(&dir_dev.join(files::CLIENT)),
                abs(&dir_dev.join(files::CLIENT_KEY)),
            )
        };
        if let Some(bsn) = &many.merged_bsn {
            say!();
            say!("A person held by two gemeenten, merged by the IB:");
            say!("{}", call(bsn));
        }
        if let Some(bsn) = &many.unreliable_bsn {
            say!();
            say!("A person at an unreliable gemeente: answered within the route timeout, the gemeente named in an FWI:");
            say!("{}", call(bsn));
        }
        say!();
        say!("The IB's Aanlevermonitor as a table:");
        say!(
            "DKD_ROLE=ib DKD_ADMIN__LISTEN={} DKD_STORE__PATH={} cargo run --release -- report",
            ib_cfg.admin.listen,
            ib_cfg.store.path.display()
        );
        say!();
        match many.run(shutdown_signal()).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(Failure::Other(e.to_string())),
        }
    })
}

pub(super) fn print_chain_banner(
    g: &App,
    ib: &App,
    g_cfg: &Config,
    g_store: &Store,
    merged: Option<&str>,
) {
    let dir = Path::new("certs/dev");
    let bsn = merged.map(str::to_owned).unwrap_or_else(|| {
        g_store
            .first(1)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|p| p.bsn.to_string())
            .unwrap_or_else(|| crate::chain::demo::UNKNOWN_BSN.into())
    });
    let ib_url = ib.public_url();
    // Store commands find the running demo through its admin API; say where when it moved.
    let admin = if g_cfg.admin.listen == "127.0.0.1:9443" {
        String::new()
    } else {
        format!("DKD_ADMIN__LISTEN={} ", g_cfg.admin.listen)
    };
    say!();
    say!(
        "dkd {} demo: the DKD chain on this machine",
        env!("CARGO_PKG_VERSION")
    );
    say!(
        "  gemeente : {}   (demo set; pushes its verwijsindex to the IB)",
        g.public_url()
    );
    say!("  IB       : {ib_url}   (routes to the gemeenten in its verwijsindex)");
    say!(
        "             gemeente {} delivers a batch file instead: the IB answers for it",
        crate::chain::demo::DEMO_BATCH_GEMEENTE
    );
    if let Some(v) = ib.verwijsindex_url() {
        say!("             {v}   (the gemeente's updates arrive here)");
    }
    for (who, app) in [("gemeente", g), ("IB", ib)] {
        if let Some(a) = app.ops_addr() {
            say!("  status   : http://{a}/   ({who}: /healthz /readyz /metrics)");
        }
    }
    say!();
    say!(
        "Ask the IB as UWV does: signed, the answer's signature and SignatureConfirmation checked:"
    );
    say!();
    say!(
        "cargo run --release -- call {ib_url} --bsn {bsn} --ca {} --cert {} --key {}",
        abs(&dir.join(files::CA)),
        abs(&dir.join(files::CLIENT)),
        abs(&dir.join(files::CLIENT_KEY)),
    );
    say!();
    say!("The log then shows two requests: the IB's (oin=…0002, from you) and, routed, the");
    say!("gemeente's (oin=…0001, the IB's certificate, from_oin=…0002: asked on your behalf);");
    say!("the IB signs the routed request and checks the gemeente's signed answer, and merges");
    say!(
        "it with gemeente {}'s batch delivery into one ClientSuwi.",
        crate::chain::demo::DEMO_BATCH_GEMEENTE
    );
    say!();
    say!("The answer holds LKS, so the IB records a Toets LKS signal (portal:");
    if let Some(a) = ib.ops_addr() {
        say!("http://{a}/portal/<gemeente>/lksri); the gemeente fetches new reports every 10 s:");
    }
    if let Some(a) = g.ops_addr() {
        say!("the vangnetter case and its Wvp milestones appear on http://{a}/ and in");
    }
    say!(
        "  {admin}DKD_STORE__PATH={} cargo run --release -- signals list",
        g_cfg.store.path.display()
    );
    say!();
    say!("The push (the outbox): pending, parked and delivered updates:");
    say!();
    say!(
        "{admin}DKD_STORE__PATH={} cargo run --release -- sync --status",
        g_cfg.store.path.display()
    );
    say!();
}

pub(super) async fn shutdown_signal() {
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

pub(super) fn abs(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

pub(super) fn print_banner(app: &App, cfg: &Config, demo: bool) {
    let url = app.public_url();
    let bsn = app
        .store()
        .first(1)
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|p| p.bsn.to_string());
    say!();
    say!(
        "dkd {} serving GSDDossierReintegratie-v0200",
        env!("CARGO_PKG_VERSION")
    );
    say!("  endpoint : {url}");
    say!("  WSDL     : {url}?wsdl");
    if let Some(v) = app.verwijsindex_url() {
        say!("  IB role  : {v}   (IBVerwijsindex; GSDReintegratieInfo is routed to the gemeenten)");
    }
    if let Some(a) = app.ops_addr() {
        say!("  status   : http://{a}/   (/healthz /readyz /metrics)");
    }
    if let Some(a) = app.admin_addr() {
        say!("  admin    : http://{a}/persons/{{bsn}}   (JSON: GET, PUT, DELETE)");
    }
    // No count here: counting walks the whole index (seconds at 10^6 persons); `dkd report` and
    // the status page have the figures.
    say!("  store    : {}", cfg.store.location());
    say!("  allowed  : {}", cfg.auth.allowed_oins.join(", "));
    if cfg.scenario.enabled {
        say!();
        say!("  !!! SCENARIO: this gemeente answers wrongly ON PURPOSE, for chain tests only !!!");
        say!("  scenario : {}", cfg.scenario.summary());
        say!(
            "             switch it: PUT /scenario on the admin API; never run this in production"
        );
    }
    if let Some(bsn) = &bsn {
        say!(
            "  demo BSN : {bsn}   (unknown but valid: {})",
            crate::chain::demo::UNKNOWN_BSN
        );
    }
    if demo {
        let dir = cfg.tls.cert.parent().unwrap_or(Path::new("certs/dev"));
        let request = crate::soap::example_request(
            url,
            DEMO_CLIENT_OIN,
            bsn.as_deref().unwrap_or(crate::chain::demo::UNKNOWN_BSN),
            &crate::soap::new_message_id(),
        );
        say!();
        say!("Try it (paste into a shell):");
        say!();
        say!(
            "curl --cacert {} --cert {} --key {} \\\n  -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: \"\"' \\\n  --data-binary @- {url} <<'EOF'",
            abs(&dir.join(files::CA)),
            abs(&dir.join(files::CLIENT)),
            abs(&dir.join(files::CLIENT_KEY)),
        );
        say!("{}", request.trim_end_matches('\n'));
        say!("EOF");
        say!();
        say!("Signing is \"optional\" in demo mode, so that unsigned curl works; responses are signed.");
        say!(
            "A request signed per 2W-be-S (Body, Timestamp, every WS-Addressing header), with the"
        );
        say!("response's signature and SignatureConfirmation checked:");
        say!();
        say!(
            "cargo run --release -- call {url} --bsn {} --ca {} --cert {} --key {}",
            bsn.as_deref().unwrap_or(crate::chain::demo::UNKNOWN_BSN),
            abs(&dir.join(files::CA)),
            abs(&dir.join(files::CLIENT)),
            abs(&dir.join(files::CLIENT_KEY)),
        );
    }
    say!();
}
