//! The `dkd` command line: parse arguments, dispatch, map errors to exit codes.
//!
//! In the library rather than the binary crate, so that tests reach it; `main.rs` only calls
//! [`main`].

#[macro_use]
mod output;
mod exit;
mod serve;
mod store_cmds;
mod tools;

use clap::{Parser, Subcommand};
use exit::TOETS_ERROR;
use output::{finish, Lost};
use serve::*;
use std::path::PathBuf;
use std::process::ExitCode;
use store_cmds::*;
use tools::*;

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
        format: Option<crate::import::Format>,
        /// full: the file is the gemeente's complete set; delta: upserts and explicit deletions.
        #[arg(long, value_enum, default_value = "delta")]
        mode: crate::import::Mode,
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
        role: Option<crate::config::Role>,
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
    Probe(ProbeArgs),
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
        #[arg(long, default_value_t = crate::chain::demo::DEMO_PERSONS)]
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

/// The `dkd` command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let lost = match &cli.command {
        Command::Serve { .. } | Command::Demo { .. } => Lost::Said,
        Command::Toets { .. } => Lost::Unanswered(TOETS_ERROR),
        Command::Probe { .. } => Lost::Unanswered(crate::tools::probe::Status::Unknown.exit_code()),
        _ => Lost::Fails,
    };
    finish(exit::exit_code(run(cli)), lost)
}

fn run(cli: Cli) -> exit::Outcome {
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
        Command::Probe(args) => probe(args),
        Command::Config {
            action: ConfigAction::Check { file },
        } => config_check(&file),
        Command::Store {
            action: StoreAction::Migrate { common },
        } => store_migrate(&common),
        Command::Store {
            action: StoreAction::Copy { from, to, ca },
        } => store_copy(&from, &to, ca),
        Command::Certs { dir } => dev_certs(&dir),
    }
}
