//! The `dkd` command line: parse arguments, set up logging, dispatch, map errors to exit codes.

use clap::{Parser, Subcommand};
use dkd::app::{App, StartError};
use dkd::certs::{self, files, DEMO_CLIENT_OIN};
use dkd::config::Config;
use dkd::control::{Backend, ControlError};
use dkd::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// mimalloc: imports allocate and free millions of small strings; glibc's malloc spent ~40 % of an
// import in malloc/free/consolidate (perf), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (documented in README.md).
mod exit {
    /// Runtime failure.
    pub const FAILURE: u8 = 1;
    /// Command-line usage error (as clap's own).
    pub const USAGE: u8 = 2;
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

/// Options every store command takes.
#[derive(clap::Args)]
struct Common {
    /// TOML configuration file (see dkd.example.toml). Environment overrides: DKD_<SECTION>__<KEY>.
    #[arg(long, short = 'c', env = "DKD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProbeFormat {
    Nagios,
    Prometheus,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AuditFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a configuration file (with DKD_* overrides) and print the effective settings,
    /// secrets masked. Exit 0 valid, 3 invalid.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Bring the PostgreSQL schema up to this dkd's version (`dkd serve` does it at start-up
    /// too). Refuses a schema newer than this dkd. With sled there is nothing to migrate.
    /// Exit 0 up to date, 5 store error.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Copy a whole store to another backend: a sled directory to a PostgreSQL URL or back
    /// (entries, mutations, import history, outbox, audit trail, IB tables, signals, cases, the
    /// identity). Re-runnable: the target ends as the source; refuses a target holding another
    /// store; compares the counts per record kind. Stop the servers of the source first.
    /// Exit 0 copied, 5 store error.
    Copy {
        /// Source: a sled directory, or postgres://...
        #[arg(long)]
        from: String,
        /// Target: a postgres://... URL, or a sled directory.
        #[arg(long)]
        to: String,
        /// The CA of a PostgreSQL server reached over TLS.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SignalsAction {
    /// Download new <Gemeente>_LKSRi_rapport_<YYYYMMDD>.csv reports from `signals.portal` and
    /// store their cases (a report is fetched once). Exit 0; 1 when a report or list failed.
    Fetch {
        #[command(flatten)]
        common: Common,
    },
    /// The vangnetter cases with their milestones (week 6, 8, 26, 52, 78, 91, 93); overdue ones
    /// marked. Exit 0; 1 when any milestone is overdue.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: AuditFormat,
        #[command(flatten)]
        common: Common,
    },
    /// IB role: publish a Toets LKS signal file delivered from outside (e.g. UWV's "LKS
    /// overdracht re-integratie", in the LKSRi report layout) as the gemeente's report: the
    /// portal serves it and the gemeente's next fetch takes it. Checked whole first; a bad row
    /// stores nothing. Exit 0; 1 when the file is refused.
    Publish {
        /// The CSV file (header and columns as the portal's reports).
        file: PathBuf,
        /// The gemeente (CdPartijSuwi, as in ib.gemeenten) whose report it becomes.
        #[arg(long)]
        gemeente: String,
        #[command(flatten)]
        common: Common,
    },
    /// Record the first day of sickness for a BSN's cases: the milestones count from it.
    SickDay {
        /// The BSN.
        bsn: String,
        /// The first sick day, YYYYMMDD.
        #[arg(long)]
        datum: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Serve GSDDossierReintegratie-v0200 over mutual TLS (with `role = "ib"`: the IB's
    /// IBVerwijsindex-v0300 too, routing GSDReintegratieInfo to the gemeenten).
    Serve {
        /// TOML configuration file (see dkd.example.toml). Environment overrides: DKD_<SECTION>__<KEY>.
        #[arg(long, short = 'c', env = "DKD_CONFIG")]
        config: Option<PathBuf>,
        /// Zero-config demo: generate a dev PKI under certs/dev if missing, allow the demo client OIN,
        /// and fill an empty store with the deterministic demo set.
        #[arg(long)]
        demo: bool,
    },
    /// The whole chain on 127.0.0.1: a gemeente with the demo set that pushes its verwijsindex,
    /// and an IB that routes GSDReintegratieInfo to it, signed both ways (dev PKI in certs/dev).
    /// Ports 8443/9443/9090 (gemeente) and 8444/9444/9091 (IB).
    Demo {
        /// Where the two stores live.
        #[arg(long, default_value = "data/demo")]
        dir: PathBuf,
        /// Add this to every port (to run beside another demo).
        #[arg(long, default_value_t = 0)]
        port_shift: u16,
        /// Emulate this many gemeenten (each its own endpoint, data and push) registered at the
        /// IB, instead of the one demo gemeente.
        #[arg(long, value_name = "N")]
        gemeenten: Option<usize>,
        /// With --gemeenten: the share (0..1) of them running a scenario (answering wrongly on
        /// purpose, every scenario in turn).
        #[arg(long, value_name = "P", default_value_t = 0.0, requires = "gemeenten")]
        unreliable: f64,
    },
    /// Send one GSDReintegratieInfo to any 2W-be-S endpoint, signed, and check the signed answer.
    Call(CallArgs),
    /// Compliance run against any GSDDossierReintegratie-v0200 (or IBVerwijsindex-v0300) endpoint:
    /// TLS, WSDL, answers, errors, security and timing, each check named. Exit 0 all passed, 1 a
    /// check failed, 2 usage, 3 could not connect.
    Check(CheckArgs),
    /// Import a backoffice file (CSV or XML) into the verwijsindex, atomically.
    Import {
        /// The file.
        file: PathBuf,
        /// File format (default: from the extension).
        #[arg(long, value_enum)]
        format: Option<dkd::import::Format>,
        /// full: the file is the gemeente's complete set; delta: upserts and explicit deletions.
        #[arg(long, value_enum, default_value = "delta")]
        mode: dkd::import::Mode,
        /// The gemeente the file is for (needed for full mode when the file does not say).
        #[arg(long)]
        gemeente: Option<String>,
        /// Validate and count; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Reject the whole file when any row is rejected.
        #[arg(long)]
        strict: bool,
        /// `ib`: a batch gemeente's delivery (verzamelbestand) into the IB's store; it replaces
        /// that gemeente's previous delivery (full mode) and needs --gemeente.
        #[arg(long, value_enum)]
        role: Option<dkd::config::Role>,
        #[command(flatten)]
        common: Common,
    },
    /// Take entries outside the LKS look-back out of the index now (serve does it daily).
    Sweep {
        /// Show what would leave; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// The Toets LKS for one person: LKS in the two years before a date? Exit 0 yes, 1 no, 2 error.
    Toets {
        /// The BSN.
        bsn: String,
        /// The reference date, YYYYMMDD (e.g. the day employment ended). Default: today.
        #[arg(long)]
        datum: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The outbox of IBVerwijsindex updates to the IB: status (default), retry parked entries, or
    /// queue the whole index again. Exit 0; 1 when entries are parked (with --status).
    Sync {
        /// Print pending, parked and the oldest pending age (the default).
        #[arg(long, conflicts_with_all = ["retry_parked", "full"])]
        status: bool,
        /// Put every parked entry back in the queue (as what the index says now).
        #[arg(long, conflicts_with = "full")]
        retry_parked: bool,
        /// Queue "present" for every entry in the index: the reconciliation to run when the IB
        /// reports an incomplete index.
        #[arg(long)]
        full: bool,
        /// Output as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// The IB's "Toets LKS" signals at the gemeente: fetch new reports from the IB portal, list
    /// the vangnetter cases with their Wvp milestones, record a first sick day. At the IB:
    /// publish a signal file delivered from outside as a gemeente's report.
    Signals {
        #[command(subcommand)]
        action: SignalsAction,
    },
    /// The gemeente's own Aanlevermonitor: persons, mutation dates, last import, leaving soon,
    /// vangnetter cases. In the IB role (`role = "ib"`): the IB's, per gemeente and cluster.
    Report {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        #[command(flatten)]
        common: Common,
    },
    /// Who asked about a person: the audit trail of answered requests.
    Audit {
        /// Only requests about this BSN.
        #[arg(long)]
        bsn: Option<String>,
        /// Only requests from this OIN (TLS client or wsa:From).
        #[arg(long)]
        oin: Option<String>,
        /// Only requests on or after this date (YYYY-MM-DD or YYYYMMDD). Default: all kept.
        #[arg(long)]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: AuditFormat,
        #[command(flatten)]
        common: Common,
    },
    /// Monitoring probe: a real, signed GSDReintegratieInfo over mutual TLS, judged on TLS,
    /// certificate days left, WS-Addressing correlation, the response signature and the schema.
    /// Nagios plugin exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Probe {
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
        #[arg(long, default_value_t = dkd::tools::probe::DEFAULT_WARNING_DAYS)]
        warning_days: i64,
        /// CRITICAL when the server certificate has fewer days left.
        #[arg(long, default_value_t = dkd::tools::probe::DEFAULT_CRITICAL_DAYS)]
        critical_days: i64,
        /// Seconds before giving up (CRITICAL).
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Store tools.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Write the deterministic synthetic demo set as an import file (to try `dkd import`, and for
    /// benchmarks).
    DemoFile {
        /// Number of persons.
        #[arg(long, default_value_t = dkd::chain::demo::DEMO_PERSONS)]
        persons: usize,
        /// Output file; its extension (.csv or .xml) chooses the format.
        #[arg(long)]
        out: PathBuf,
    },
    /// (Re)generate the development PKI: CA, server and client certificates with test OINs.
    Certs {
        /// Output directory.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
    },
}

/// `println!` without its panic: a stdout that went away (`dkd report | head`, a server's banner
/// nobody reads) or cannot be written (a full disk) must not abort a command halfway, after its
/// store work or in a running server. The first failure is kept and [`finish`] reports it.
macro_rules! say {
    () => {
        put(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        put(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` without its panic: a message about a failure must not become another failure
/// (stderr on a full disk).
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` likewise.
macro_rules! put {
    ($($arg:tt)*) => {
        put(format_args!($($arg)*))
    };
}

/// Why stdout could not be written, the first time it could not.
static STDOUT_FAILED: std::sync::OnceLock<std::io::Error> = std::sync::OnceLock::new();

fn put(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if STDOUT_FAILED.get().is_some() {
        return;
    }
    if let Err(e) = std::io::stdout().write_fmt(text) {
        let _ = STDOUT_FAILED.set(e);
    }
}

/// What becomes of a command's exit code when its output was lost (not to a closed pipe: a
/// reader that stopped reading, as `head` does, got what it wanted).
#[derive(Clone, Copy)]
enum Lost {
    /// A successful command fails with `exit::FAILURE`, so a script that redirected the output
    /// into a file learns that the file is incomplete; a failed one keeps its own code.
    Fails,
    /// The exit code is the answer (`toets`: JA/NEE, `probe`: a Nagios state): it becomes the
    /// command's own code for "no answer" (`toets` 2, `probe` 3 UNKNOWN), whatever it was.
    Unanswered(u8),
    /// A server's banner: said on stderr; the exit code stays that of the shutdown, which a
    /// service manager would otherwise take for a failure days later.
    Said,
}

fn finish(code: ExitCode, lost: Lost) -> ExitCode {
    let Some(e) = STDOUT_FAILED
        .get()
        .filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe)
    else {
        return code;
    };
    let msg = format!("cannot write to standard output: {e}");
    match lost {
        Lost::Fails if code == ExitCode::SUCCESS => fail(exit::FAILURE, &msg),
        Lost::Unanswered(c) => fail(c, &msg),
        Lost::Fails | Lost::Said => {
            let _ = fail(exit::FAILURE, &msg);
            code
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let lost = match &cli.command {
        Command::Serve { .. } | Command::Demo { .. } => Lost::Said,
        Command::Toets { .. } => Lost::Unanswered(TOETS_ERROR),
        Command::Probe { .. } => Lost::Unanswered(dkd::tools::probe::Status::Unknown.exit_code()),
        _ => Lost::Fails,
    };
    finish(run(cli), lost)
}

fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config, demo } => serve(config.as_deref(), demo),
        Command::Demo {
            dir,
            port_shift,
            gemeenten: Some(n),
            unreliable,
        } => demo_many(&dir, port_shift, n, unreliable),
        Command::Demo {
            dir, port_shift, ..
        } => demo_chain(&dir, port_shift),
        Command::Call(args) => call(args),
        Command::Check(args) => check(args),
        Command::Import {
            file,
            format,
            mode,
            gemeente,
            dry_run,
            strict,
            role,
            common,
        } => import(
            &file, format, mode, gemeente, dry_run, strict, role, &common,
        ),
        Command::Sweep { dry_run, common } => sweep(dry_run, &common),
        Command::Signals { action } => signals(action),
        Command::Sync {
            status: _,
            retry_parked,
            full,
            json,
            common,
        } => sync(retry_parked, full, json, &common),
        Command::Toets { bsn, datum, common } => toets(&bsn, datum.as_deref(), &common),
        Command::Report { format, common } => report(format, &common),
        Command::DemoFile { persons, out } => demo_file(persons, &out),
        Command::Audit {
            bsn,
            oin,
            since,
            format,
            common,
        } => audit(
            bsn.as_deref(),
            oin.as_deref(),
            since.as_deref(),
            format,
            &common,
        ),
        Command::Probe {
            url,
            cert,
            key,
            ca,
            sign_cert,
            sign_key,
            bsn,
            format,
            warning_days,
            critical_days,
            timeout,
        } => {
            let opts = dkd::tools::probe::ProbeOptions::from_paths(
                &url,
                &cert,
                &key,
                &ca,
                sign_cert.as_deref(),
                sign_key.as_deref(),
            )
            .map(|mut o| {
                if let Some(b) = bsn {
                    o.bsn = b;
                }
                o.warning_days = warning_days;
                o.critical_days = critical_days;
                o.timeout = std::time::Duration::from_secs(timeout);
                o
            });
            let result = match opts {
                Ok(o) => match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(dkd::tools::probe::probe(o)),
                    Err(e) => dkd::tools::probe::ProbeResult::unknown(e.to_string()),
                },
                Err(e) => dkd::tools::probe::ProbeResult::unknown(e),
            };
            let out = match format {
                ProbeFormat::Nagios => dkd::tools::probe::nagios_line(&result) + "\n",
                ProbeFormat::Prometheus => dkd::tools::probe::prometheus(&result),
            };
            put!("{out}");
            match (format, result.status) {
                (ProbeFormat::Prometheus, s) if s != dkd::tools::probe::Status::Unknown => {
                    ExitCode::SUCCESS
                }
                (_, s) => ExitCode::from(s.exit_code()),
            }
        }
        Command::Config {
            action: ConfigAction::Check { file },
        } => config_check(&file),
        Command::Store {
            action: StoreAction::Migrate { common },
        } => store_migrate(&common),
        Command::Store {
            action: StoreAction::Copy { from, to, ca },
        } => store_copy(&from, &to, ca),
        Command::Certs { dir } => match certs::generate_dev_pki(&dir) {
            Ok(()) => {
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
                ExitCode::SUCCESS
            }
            Err(e) => fail(
                exit::TLS,
                &format!("cannot generate the development PKI: {e}"),
            ),
        },
    }
}

fn store_copy(from: &str, to: &str, ca: Option<PathBuf>) -> ExitCode {
    let loc = |s: &str| {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            dkd::store::Location::Postgres {
                url: s.to_owned(),
                ca: ca.clone(),
            }
        } else {
            dkd::store::Location::Sled(PathBuf::from(s))
        }
    };
    let (from, to) = (loc(from), loc(to));
    if from == to {
        return fail(exit::USAGE, "--from and --to are the same store");
    }
    let open = |l: &dkd::store::Location, migrate: bool| {
        Store::open_at(l, migrate).map_err(|e| fail(exit::STORE, &format!("{l}: {e}")))
    };
    let (source, target) = match (open(&from, false), open(&to, true)) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match source.copy_to(&target) {
        Ok(r) => {
            let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            say!(
                "copied {from} to {to}: records per kind {}, {} audit records, {} stale records removed; counts verified",
                kinds.join(" "),
                r.audit,
                r.removed
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::STORE, &format!("copy {from} to {to}: {e}")),
    }
}

fn store_migrate(common: &Common) -> ExitCode {
    let cfg = match Config::load(common.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(exit::CONFIG, &e.to_string()),
    };
    let loc = cfg.store.location();
    match Store::migrate(&loc) {
        Ok(applied) if applied.is_empty() => {
            say!("{loc}: schema up to date");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            say!("{loc}: applied migrations {applied:?}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::STORE, &format!("{loc}: {e}")),
    }
}

/// Loads the configuration and opens the store — or, when a running `dkd serve` holds it, finds
/// that server's admin API — or says why not (with the exit code to use).
fn open_store(common: &Common) -> Result<(Config, Backend), ExitCode> {
    let cfg = Config::load(common.config.as_deref(), std::env::vars())
        .map_err(|e| fail(exit::CONFIG, &e.to_string()))?;
    let backend = Backend::open(&cfg).map_err(|e| control_fail(&e))?;
    Ok((cfg, backend))
}

fn control_fail(e: &ControlError) -> ExitCode {
    let code = match e.kind {
        "usage" => exit::USAGE,
        "store" | dkd::control::OTHER_STORE => exit::STORE,
        _ => exit::FAILURE,
    };
    fail(code, &e.message)
}

/// Exit code of `dkd import` when rows were rejected.
const EXIT_ROWS_REJECTED: u8 = 7;

#[allow(clippy::too_many_arguments)]
fn import(
    file: &Path,
    format: Option<dkd::import::Format>,
    mode: dkd::import::Mode,
    gemeente: Option<String>,
    dry_run: bool,
    strict: bool,
    role: Option<dkd::config::Role>,
    common: &Common,
) -> ExitCode {
    use dkd::import::{Format, Options};
    let format = format.unwrap_or_else(|| {
        match file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("xml") => Format::Xml,
            _ => Format::Csv,
        }
    });
    if let Some(g) = &gemeente {
        if dkd::suwiml::types::check_four_digits("--gemeente", g).is_err() {
            return fail(
                exit::USAGE,
                &format!("--gemeente {g:?} must be a 4-digit gemeentecode"),
            );
        }
    }
    let (cfg, backend) = match open_store(common) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let ib = role == Some(dkd::config::Role::Ib) || cfg.role == dkd::config::Role::Ib;
    let mode = if ib {
        // A verzamelbestand is the gemeente's complete delivery: it replaces the previous one.
        let Some(g) = &gemeente else {
            return fail(
                exit::USAGE,
                "an IB batch import needs --gemeente CODE (a gemeente with delivery = \"batch\")",
            );
        };
        match cfg.ib.gemeenten.iter().find(|x| &x.code == g) {
            Some(x) if x.delivery == dkd::ib::service::Delivery::Batch => {}
            Some(_) => {
                return fail(
                    exit::USAGE,
                    &format!(
                    "gemeente {g} delivers by webservice ([[ib.gemeenten]] delivery), not by batch"
                ),
                )
            }
            None => {
                return fail(
                    exit::USAGE,
                    &format!("gemeente {g} is not in [[ib.gemeenten]] of this configuration"),
                )
            }
        }
        dkd::import::Mode::Full
    } else {
        mode
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return fail(exit::FAILURE, &format!("{}: {e}", file.display())),
    };
    let opts = Options {
        format,
        mode,
        gemeente,
        dry_run,
        strict,
        rules: dkd::import::Rules {
            lks_type_codes: cfg.import.lks_type_codes.clone(),
            max_future_days: cfg.import.max_future_days,
        },
        purge: cfg.retention.purge,
        window_days: cfg.retention.window_days,
        today: time::OffsetDateTime::now_utc().date(),
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos} rows read ({per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Some(b)
    } else {
        None
    };
    let name = file.display().to_string();
    if backend.is_remote() {
        tell!("dkd: the store is in use by a running dkd serve; importing through its admin API");
    }
    let result = backend.import(&name, bytes, &opts, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(report) => {
            for r in &report.rejected {
                tell!(
                    "{name}:{}: {}: {:?}: {}",
                    r.line,
                    r.field,
                    r.value,
                    r.reason
                );
            }
            if strict && !report.rejected.is_empty() {
                tell!("dkd: --strict: the whole file is rejected; nothing was written");
            }
            say!("{}", report.summary());
            if report.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_ROWS_REJECTED)
            }
        }
        Err(e) => control_fail(&e),
    }
}

fn audit(
    bsn: Option<&str>,
    oin: Option<&str>,
    since: Option<&str>,
    format: AuditFormat,
    common: &Common,
) -> ExitCode {
    let bsn = match bsn.map(dkd::suwiml::types::Bsn::parse) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => return fail(exit::USAGE, "--bsn is not a valid BSN (9 digits, 11-test)"),
    };
    let since = match since {
        None => 0,
        Some(s) => match dkd::suwiml::types::Datum::parse(&s.replace('-', ""))
            .ok()
            .and_then(|d| d.to_date())
        {
            Some(d) => d.midnight().assume_utc().unix_timestamp(),
            None => {
                return fail(
                    exit::USAGE,
                    &format!("--since {s:?} is not a date (YYYY-MM-DD)"),
                )
            }
        },
    };
    let (_, backend) = match open_store(common) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let all = match backend.audit(since) {
        Ok(r) => r,
        Err(e) => return control_fail(&e),
    };
    let mut rows = Vec::new();
    for r in all {
        if bsn.is_some_and(|b| r.bsn != Some(b)) {
            continue;
        }
        if oin.is_some_and(|o| r.tls_oin.as_deref() != Some(o) && r.from_oin.as_deref() != Some(o))
        {
            continue;
        }
        rows.push(r);
    }
    match format {
        AuditFormat::Json => {
            say!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        AuditFormat::Table => {
            say!(
                "{:<20} {:<9} {:<20} {:<20} {:<10} {:<6} message_id",
                "time (UTC)",
                "bsn",
                "tls_oin",
                "from_oin",
                "outcome",
                "code"
            );
            for r in &rows {
                let t = time::OffsetDateTime::from_unix_timestamp(r.at)
                    .map(|d| {
                        format!(
                            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                            d.year(),
                            d.month() as u8,
                            d.day(),
                            d.hour(),
                            d.minute(),
                            d.second()
                        )
                    })
                    .unwrap_or_default();
                say!(
                    "{t:<20} {:<9} {:<20} {:<20} {:<10} {:<6} {}",
                    r.bsn.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
                    r.tls_oin.as_deref().unwrap_or("-"),
                    r.from_oin.as_deref().unwrap_or("-"),
                    r.outcome,
                    r.code.as_deref().unwrap_or("-"),
                    r.message_id.as_deref().unwrap_or("-")
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn config_check(file: &Path) -> ExitCode {
    match Config::load(Some(file), std::env::vars()) {
        Ok(mut cfg) => {
            // Paths of private keys are not secrets, but nothing else in the file is either; mask
            // the key paths anyway so the output can be pasted into a ticket.
            cfg.tls.key = PathBuf::from("********");
            if cfg.security.sign_key.is_some() {
                cfg.security.sign_key = Some(PathBuf::from("********"));
            }
            if let Some(u) = &cfg.store.url {
                cfg.store.url = Some(dkd::store::mask_url(u));
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
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::CONFIG, &e.to_string()),
    }
}

fn demo_file(persons: usize, out: &Path) -> ExitCode {
    let people = dkd::chain::demo::generate(persons, time::OffsetDateTime::now_utc().date());
    let mut s = String::with_capacity(persons * 300);
    let xml = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
    if xml {
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dkd:Aanlevering xmlns:dkd=\"urn:dkd:aanlevering:v1\">\n");
        for p in people {
            let mut body = String::new();
            dkd::suwiml::gsd::write_response(
                &dkd::suwiml::gsd::Reply::Client(Box::new(p), vec![]),
                "",
                &mut body,
            );
            if let (Some(a), Some(b)) = (body.find("<ClientSuwi>"), body.find("</ClientSuwi>")) {
                s.push_str(&body[a..b + "</ClientSuwi>".len()]);
                s.push('\n');
            }
        }
        s.push_str("</dkd:Aanlevering>\n");
    } else {
        dkd::import::csv_format::write(&people, &mut s);
    }
    match std::fs::write(out, s) {
        Ok(()) => {
            say!("wrote {persons} persons to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::FAILURE, &format!("{}: {e}", out.display())),
    }
}

fn sweep(dry_run: bool, common: &Common) -> ExitCode {
    let (cfg, backend) = match open_store(common) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let today = time::OffsetDateTime::now_utc().date();
    match backend.sweep(
        cfg.retention.window_days,
        cfg.retention.purge,
        today,
        dry_run,
    ) {
        Ok(r) => {
            say!(
                "{} entries examined, {} {} the index ({})",
                r.examined,
                r.removed,
                if dry_run { "would leave" } else { "left" },
                if cfg.retention.purge {
                    "data purged"
                } else {
                    "data kept aside, not served"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => control_fail(&e),
    }
}

fn sync(retry_parked: bool, full: bool, as_json: bool, common: &Common) -> ExitCode {
    use dkd::gemeente::push::SyncAction;
    let (cfg, backend) = match open_store(common) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let action = if retry_parked {
        SyncAction::RetryParked
    } else if full {
        SyncAction::Full
    } else {
        SyncAction::Status
    };
    let r = match backend.sync(action) {
        Ok(r) => r,
        Err(e) => return control_fail(&e),
    };
    if as_json {
        say!("{}", serde_json::json!(r));
    } else {
        match action {
            SyncAction::RetryParked => say!("{} parked entries queued again", r.queued),
            SyncAction::Full => say!(
                "{} entries queued: the whole index will be sent again",
                r.queued
            ),
            SyncAction::Status => {}
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let age = r
            .status
            .oldest_pending_at
            .map(|t| format!("{} s", (now - t).max(0)))
            .unwrap_or_else(|| "-".into());
        say!(
            "pending {}   parked {}   oldest pending {}   delivered {}",
            r.status.pending,
            r.status.parked,
            age,
            r.status.sent
        );
        if let Some(e) = &r.status.last_error {
            say!("last error: {e}");
        }
        if !cfg.pushes() {
            say!("note: push.url is not set: nothing is sent (and index changes are not queued)");
        }
        for p in &r.parked {
            say!(
                "parked: BSN {} gemeente {} IndDkd {}: {}",
                p.bsn.masked(),
                p.gemeente,
                p.ind.code(),
                p.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    if action == SyncAction::Status && r.status.parked > 0 {
        ExitCode::from(exit::FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn signals(action: SignalsAction) -> ExitCode {
    match action {
        SignalsAction::Fetch { common } => {
            let (cfg, backend) = match open_store(&common) {
                Ok(x) => x,
                Err(code) => return code,
            };
            match backend.signals_fetch(&cfg) {
                Ok(r) => {
                    say!(
                        "{} report(s) fetched, {} new vangnetter case(s)",
                        r.files.len(),
                        r.new_cases
                    );
                    for f in &r.files {
                        say!("  {f}");
                    }
                    for e in &r.errors {
                        tell!("error: {e}");
                    }
                    if r.errors.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(exit::FAILURE)
                    }
                }
                Err(e) => control_fail(&e),
            }
        }
        SignalsAction::List { format, common } => {
            let (_, backend) = match open_store(&common) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let cases = match backend.cases() {
                Ok(c) => c,
                Err(e) => return control_fail(&e),
            };
            let today = time::OffsetDateTime::now_utc().date();
            let rows = dkd::report::cases(&cases, today);
            let overdue = rows.iter().any(|r| r.overdue > 0);
            match format {
                AuditFormat::Json => say!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                ),
                AuditFormat::Table => put!("{}", dkd::report::cases_table(&rows)),
            }
            if overdue {
                ExitCode::from(exit::FAILURE)
            } else {
                ExitCode::SUCCESS
            }
        }
        SignalsAction::Publish {
            file,
            gemeente,
            common,
        } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => return fail(exit::FAILURE, &format!("{}: {e}", file.display())),
            };
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string());
            let (cfg, backend) = match open_store(&common) {
                Ok(x) => x,
                Err(code) => return code,
            };
            match backend.signals_publish(&cfg, &gemeente, &name, bytes) {
                Ok(p) => {
                    say!(
                        "{} signal(s) in {name}, {} new, for gemeente {}",
                        p.signals,
                        p.added,
                        p.gemeente
                    );
                    for r in &p.reports {
                        say!("  {r}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) if e.kind == "invalid" => {
                    for line in e.message.lines() {
                        tell!("error: {line}");
                    }
                    tell!("{name}: refused, nothing stored");
                    ExitCode::from(exit::FAILURE)
                }
                Err(e) => control_fail(&e),
            }
        }
        SignalsAction::SickDay { bsn, datum, common } => {
            let Ok(b) = dkd::suwiml::types::Bsn::parse(&bsn) else {
                return fail(
                    exit::USAGE,
                    &format!("{bsn:?} is not a valid BSN (9 digits, 11-test)"),
                );
            };
            let Some(d) = dkd::suwiml::types::Datum::parse(&datum)
                .ok()
                .filter(|d| d.to_date().is_some())
            else {
                return fail(
                    exit::USAGE,
                    &format!("--datum {datum:?} is not a calendar date YYYYMMDD"),
                );
            };
            let (_, backend) = match open_store(&common) {
                Ok(x) => x,
                Err(code) => return code,
            };
            match backend.sick_day(&b, &d) {
                Ok(0) => fail(
                    exit::FAILURE,
                    &format!("no vangnetter case for BSN {}", b.masked()),
                ),
                Ok(n) => {
                    say!("first sick day {} recorded on {n} case(s)", d.as_str());
                    ExitCode::SUCCESS
                }
                Err(e) => control_fail(&e),
            }
        }
    }
}

/// `toets`'s exit code when it has no answer (0 is JA, 1 NEE).
const TOETS_ERROR: u8 = 2;

fn toets(bsn: &str, datum: Option<&str>, common: &Common) -> ExitCode {
    const ERROR: u8 = TOETS_ERROR;
    let bsn = match dkd::suwiml::types::Bsn::parse(bsn) {
        Ok(b) => b,
        Err(_) => {
            return fail(
                ERROR,
                &format!("{bsn:?} is not a valid BSN (9 digits, 11-test)"),
            )
        }
    };
    let date = match datum {
        None => time::OffsetDateTime::now_utc().date(),
        Some(d) => match dkd::suwiml::types::Datum::parse(d)
            .ok()
            .and_then(|d| d.to_date())
        {
            Some(d) => d,
            None => {
                return fail(
                    ERROR,
                    &format!("--datum {d:?} is not a calendar date YYYYMMDD"),
                )
            }
        },
    };
    let cfg = match Config::load(common.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(ERROR, &e.to_string()),
    };
    // Like every store command, 5 when the server reached holds another store: no answer
    // (2) would do, since a JA/NEE about the wrong store must never be taken for one.
    let backend = match Backend::open(&cfg) {
        Ok(b) => b,
        Err(e) if e.kind == dkd::control::OTHER_STORE => return fail(exit::STORE, &e.message),
        Err(e) => return fail(ERROR, &e.message),
    };
    let hits = match backend.toets(&bsn, date, cfg.retention.window_days) {
        Ok(h) => h,
        Err(e) => return fail(ERROR, &e.message),
    };
    let yes = !hits.is_empty();
    for h in &hits {
        let v = &h.provision;
        {
            say!(
                "gemeente {}: LKS {} from {} to {}, loonwaarde {}",
                h.gemeente,
                v.registratienr.as_deref().unwrap_or("-"),
                v.start.as_str(),
                v.end
                    .map(|d| d.as_str().to_owned())
                    .unwrap_or_else(|| "(running)".into()),
                v.loonwaarde.map(|l| l.to_string()).unwrap_or_default()
            );
        }
    }
    let d = dkd::suwiml::types::Datum::from_date(date);
    if yes {
        say!(
            "JA: LKS granted or paid in the {} days before {}",
            cfg.retention.window_days,
            d.as_str()
        );
        ExitCode::SUCCESS
    } else {
        say!(
            "NEE: no LKS in the {} days before {}",
            cfg.retention.window_days,
            d.as_str()
        );
        ExitCode::from(1)
    }
}

fn report(format: ReportFormat, common: &Common) -> ExitCode {
    let (cfg, backend) = match open_store(common) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let today = time::OffsetDateTime::now_utc().date();
    if cfg.role == dkd::config::Role::Ib {
        let rows = match backend.report_ib(&dkd::app::ib_settings(&cfg), today) {
            Ok(r) => r,
            Err(e) => return control_fail(&e),
        };
        let out = match format {
            ReportFormat::Table => dkd::report::ib_table(&rows),
            ReportFormat::Csv => dkd::report::ib_csv(&rows),
            ReportFormat::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
        };
        put!("{out}");
        return ExitCode::SUCCESS;
    }
    let rows = match backend.report(cfg.retention.window_days, today) {
        Ok(r) => r,
        Err(e) => return control_fail(&e),
    };
    let mut out = match format {
        ReportFormat::Table => dkd::report::table(&rows),
        ReportFormat::Csv => dkd::report::csv(&rows),
        ReportFormat::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
    };
    if let (ReportFormat::Table, Ok(cases)) = (format, backend.cases()) {
        if !cases.is_empty() {
            out.push_str("\nVangnetter cases (Toets LKS signals from the IB):\n");
            out.push_str(&dkd::report::cases_table(&dkd::report::cases(
                &cases, today,
            )));
        }
    }
    put!("{out}");
    ExitCode::SUCCESS
}

#[derive(clap::Args)]
struct CallArgs {
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
struct ClientTls {
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
fn call(a: CallArgs) -> ExitCode {
    use dkd::http::tls;
    let tls_cfg = match tls::client_config(&a.client.ca, &a.client.cert, &a.client.key) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => return fail(exit::TLS, &e.to_string()),
    };
    let from_oin = match a.from_oin.or_else(|| {
        tls::load_certs(&a.client.cert)
            .ok()
            .and_then(|c| c.first().and_then(|c| certs::oin_of(c).ok().flatten()))
    }) {
        Some(o) => o,
        None => {
            return fail(
                exit::TLS,
                "the client certificate carries no OIN: pass --from-oin",
            )
        }
    };
    let signer = if a.client.unsigned {
        None
    } else {
        let (c, k) = (
            a.client.sign_cert.as_ref().unwrap_or(&a.client.cert),
            a.client.sign_key.as_ref().unwrap_or(&a.client.key),
        );
        match dkd::soap::wssec::Signer::load(c, k) {
            Ok(s) => Some(s),
            Err(e) => return fail(exit::TLS, &e.to_string()),
        }
    };
    let trust = match tls::signer_trust(&a.client.ca, &[]) {
        Ok(t) => t,
        Err(e) => return fail(exit::TLS, &e.to_string()),
    };
    let opts = dkd::tools::call::CallOptions {
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
        Err(e) => return fail(exit::FAILURE, &e.to_string()),
    };
    let r = match runtime.block_on(dkd::tools::call::call(opts)) {
        Ok(r) => r,
        Err(e) => return fail(exit::FAILURE, &e.to_string()),
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
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    }
}

fn fail(code: u8, msg: &str) -> ExitCode {
    tell!("dkd: error: {msg}");
    ExitCode::from(code)
}

/// Log lines go to stderr through tracing-appender's writer thread, off the request path; the
/// guard writes what is left when the command ends.
fn init_logging(cfg: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DKD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    // Colour codes only help a person at a terminal; in a file or journald they are noise (and
    // bytes written per request line).
    let ansi = std::io::stderr().is_terminal();
    dkd::ops::logging::dispatch(filter, cfg.log.format, ansi, writer).init();
    guard
}

fn serve(config: Option<&Path>, demo: bool) -> ExitCode {
    let mut cfg = match Config::load(config, std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(exit::CONFIG, &e.to_string()),
    };
    let _log = init_logging(&cfg);
    if demo {
        let dev_dir = cfg
            .tls
            .cert
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("certs/dev"));
        if let Err(code) = ensure_dev_pki(&dev_dir) {
            return code;
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
    // Serving brings a PostgreSQL schema that is behind up to date (and refuses one ahead).
    let store = match Store::open_at(&cfg.store.location(), true) {
        Ok(s) => s,
        Err(e) => return fail(exit::STORE, &format!("{}: {e}", cfg.store.location())),
    };
    store.set_outbox(cfg.pushes());
    if demo && store.is_empty() {
        let today = time::OffsetDateTime::now_utc().date();
        let people = dkd::chain::demo::generate(dkd::chain::demo::DEMO_PERSONS, today);
        if let Err(e) = store.put_all(&people, "demo").and_then(|_| store.flush()) {
            return fail(exit::STORE, &format!("cannot load the demo set: {e}"));
        }
        say!(
            "Loaded {} demo persons into {}",
            people.len(),
            cfg.store.location()
        );
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
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
            Err(e) => return start_error(e),
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                exit::FAILURE,
                &format!("cannot start the async runtime: {e}"),
            )
        })
}

fn start_error(e: StartError) -> ExitCode {
    match e {
        e @ (StartError::Tls(_) | StartError::Signer(_)) => fail(exit::TLS, &e.to_string()),
        e @ StartError::Store(_) => fail(exit::STORE, &e.to_string()),
        e @ StartError::Bind { .. } => fail(exit::BIND, &e.to_string()),
        e @ StartError::Config(_) => fail(exit::CONFIG, &e.to_string()),
        e @ StartError::Threads(_) => fail(exit::FAILURE, &e.to_string()),
    }
}

/// The development PKI the demo commands run on (`certs/dev`), generated when missing.
fn ensure_dev_pki(dev_dir: &Path) -> Result<(), ExitCode> {
    if !certs::dev_pki_present(dev_dir) {
        say!("Generating a development PKI in {} ...", dev_dir.display());
        certs::generate_dev_pki(dev_dir).map_err(|e| {
            fail(
                exit::TLS,
                &format!("cannot generate the development PKI: {e}"),
            )
        })?;
    }
    Ok(())
}

/// `dkd demo`: both roles in one process.
fn demo_chain(dir: &Path, shift: u16) -> ExitCode {
    let (g_cfg, ib_cfg) = dkd::chain::demo::chain_configs(dir, shift);
    let _log = init_logging(&g_cfg);
    if let Err(code) = ensure_dev_pki(Path::new("certs/dev")) {
        return code;
    }
    let open = |cfg: &Config| match Store::open(&cfg.store.path) {
        Ok(s) => Ok(s.with_outbox(cfg.pushes())),
        Err(e) => Err(fail(
            exit::STORE,
            &format!("{}: {e}", cfg.store.path.display()),
        )),
    };
    let (g_store, ib_store) = match (open(&g_cfg), open(&ib_cfg)) {
        (Ok(g), Ok(i)) => (g, i),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let today = time::OffsetDateTime::now_utc().date();
    let (webservice, batch) = dkd::chain::demo::split_batch(dkd::chain::demo::generate(
        dkd::chain::demo::DEMO_PERSONS,
        today,
    ));
    if g_store.is_empty() {
        // The outbox is on: every person entering the index queues an update for the IB.
        if let Err(e) = g_store
            .put_all(&webservice, "demo")
            .and_then(|_| g_store.flush())
        {
            return fail(exit::STORE, &format!("cannot load the demo set: {e}"));
        }
    }
    if ib_store.imports().map(|i| i.is_empty()).unwrap_or(false) {
        // Gemeente 0014 delivers a verzamelbestand; the IB answers for it from that.
        let mut csv = String::new();
        dkd::import::csv_format::write(&batch, &mut csv);
        let opts = dkd::import::Options {
            format: dkd::import::Format::Csv,
            mode: dkd::import::Mode::Full,
            gemeente: Some(dkd::chain::demo::DEMO_BATCH_GEMEENTE.into()),
            dry_run: false,
            strict: true,
            rules: dkd::import::Rules {
                lks_type_codes: ib_cfg.import.lks_type_codes.clone(),
                max_future_days: ib_cfg.import.max_future_days,
            },
            purge: true,
            window_days: ib_cfg.retention.window_days,
            today,
        };
        let file = format!(
            "{}_verzamelbestand.csv",
            dkd::chain::demo::DEMO_BATCH_GEMEENTE
        );
        if let Err(e) = dkd::import::import(&ib_store, &file, csv.as_bytes(), &opts, &mut |_| {}) {
            return fail(
                exit::STORE,
                &format!("cannot load the demo batch delivery: {e}"),
            );
        }
    }
    // A person known to a webservice gemeente and to the batch gemeente: the IB merges both.
    let merged_bsn = webservice
        .iter()
        .find(|p| batch.iter().any(|b| b.bsn == p.bsn))
        .map(|p| p.bsn.to_string());
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let ib = match App::bind_with_store(&ib_cfg, ib_store).await {
            Ok(a) => a,
            Err(e) => return start_error(e),
        };
        let gemeente = match App::bind_with_store(&g_cfg, g_store.clone()).await {
            Ok(a) => a,
            Err(e) => return start_error(e),
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
            (Ok(Ok(())), Ok(Ok(()))) => ExitCode::SUCCESS,
            _ => fail(exit::FAILURE, "a server stopped with an error"),
        }
    })
}

/// `dkd demo --gemeenten N [--unreliable P]`: the IB and N emulated gemeenten in one process.
fn demo_many(dir: &Path, shift: u16, n: usize, unreliable: f64) -> ExitCode {
    let started = std::time::Instant::now();
    let (g_cfg, ib_cfg) = dkd::chain::demo::chain_configs(dir, shift);
    let _log = init_logging(&g_cfg);
    if let Err(code) = ensure_dev_pki(Path::new("certs/dev")) {
        return code;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let today = time::OffsetDateTime::now_utc().date();
    runtime.block_on(async move {
        let many =
            match dkd::chain::demo::bind_many(dir, ib_cfg.clone(), &g_cfg, n, unreliable, today).await {
                Ok(m) => m,
                Err(e) => return start_error(e),
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
            dkd::chain::demo::many_code(0),
            dkd::chain::demo::many_code(n - 1),
            dkd::chain::demo::MANY_PERSONS,
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
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(exit::FAILURE, &e.to_string()),
        }
    })
}

fn print_chain_banner(g: &App, ib: &App, g_cfg: &Config, g_store: &Store, merged: Option<&str>) {
    let dir = Path::new("certs/dev");
    let bsn = merged.map(str::to_owned).unwrap_or_else(|| {
        g_store
            .first(1)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|p| p.bsn.to_string())
            .unwrap_or_else(|| dkd::chain::demo::UNKNOWN_BSN.into())
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
        dkd::chain::demo::DEMO_BATCH_GEMEENTE
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
        dkd::chain::demo::DEMO_BATCH_GEMEENTE
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
            dkd::chain::demo::UNKNOWN_BSN
        );
    }
    if demo {
        let dir = cfg.tls.cert.parent().unwrap_or(Path::new("certs/dev"));
        let request = dkd::soap::example_request(
            url,
            DEMO_CLIENT_OIN,
            bsn.as_deref().unwrap_or(dkd::chain::demo::UNKNOWN_BSN),
            &dkd::soap::new_message_id(),
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
            bsn.as_deref().unwrap_or(dkd::chain::demo::UNKNOWN_BSN),
            abs(&dir.join(files::CA)),
            abs(&dir.join(files::CLIENT)),
            abs(&dir.join(files::CLIENT_KEY)),
        );
    }
    say!();
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Table,
    Json,
    Junit,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckService {
    Gsd,
    Verwijsindex,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Endpoint URL, e.g. https://dkd.gemeente.example:8443/GSDDossierReintegratie-v0200.
    url: String,
    /// The service offered at URL.
    #[arg(long, value_enum, default_value = "gsd")]
    service: CheckService,
    /// A BSN the endpoint holds data for (repeat, or comma-separated).
    #[arg(long, value_delimiter = ',')]
    bsn: Vec<String>,
    /// A valid BSN the endpoint holds nothing for.
    #[arg(long, default_value = dkd::tools::check::DEFAULT_UNKNOWN_BSN)]
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
    #[arg(long, default_value_t = dkd::tools::check::DEFAULT_MIN_DAYS)]
    min_days: i64,
    /// Requests measured by timing.latency (at most 1000).
    #[arg(long, default_value_t = dkd::tools::check::DEFAULT_REQUESTS)]
    requests: usize,
    /// timing.latency warns when p99 exceeds this many milliseconds.
    #[arg(long, default_value_t = dkd::tools::check::DEFAULT_SLOW_MS)]
    slow_ms: u64,
    /// Seconds each exchange may take.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Body size errors.oversized sends, in bytes.
    #[arg(long, default_value_t = dkd::tools::check::DEFAULT_OVERSIZED)]
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
fn check(a: CheckArgs) -> ExitCode {
    let sign = a
        .client
        .sign_cert
        .as_deref()
        .zip(a.client.sign_key.as_deref());
    let mut o = match dkd::tools::check::CheckOptions::from_paths(
        &a.url,
        &a.client.cert,
        &a.client.key,
        &a.client.ca,
        sign,
        a.client.unsigned,
    ) {
        Ok(o) => o,
        Err(e) => return fail(exit::USAGE, &e),
    };
    o.service = match a.service {
        CheckService::Gsd => dkd::tools::check::Service::Gsd,
        CheckService::Verwijsindex => dkd::tools::check::Service::Verwijsindex,
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
        return fail(exit::USAGE, &e);
    }
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dkd::tools::check::run(&o)),
        Err(e) => return fail(exit::FAILURE, &e.to_string()),
    };
    let text = match a.format {
        CheckFormat::Table => dkd::tools::check::table(&report),
        CheckFormat::Json => dkd::tools::check::json(&report),
        CheckFormat::Junit => dkd::tools::check::junit(&report),
    };
    match &a.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                return fail(exit::FAILURE, &format!("{}: {e}", path.display()));
            }
            match &report.connect_error {
                Some(e) if !report.connected => tell!("{e}"),
                _ => tell!("{}", dkd::tools::check::summary(&report)),
            }
        }
        None => put!("{text}"),
    }
    ExitCode::from(report.exit_code())
}
