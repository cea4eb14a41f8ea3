//! The store commands: import, report, toets, sweep, sync, audit, signals, store copy/migrate.

use super::exit::{Code, Failure, Outcome};
use super::*;
use crate::config::Config;
use crate::control::{Backend, ControlError};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) fn store_copy(from: &str, to: &str, ca: Option<PathBuf>) -> Outcome {
    let loc = |s: &str| {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            crate::store::Location::Postgres {
                url: s.to_owned(),
                ca: ca.clone(),
            }
        } else {
            crate::store::Location::Sled(PathBuf::from(s))
        }
    };
    let (from, to) = (loc(from), loc(to));
    if from == to {
        return Err(Failure::Usage("--from and --to are the same store".into()));
    }
    let open = |l: &crate::store::Location, migrate: bool| {
        Store::open_at(l, migrate).map_err(|source| Failure::Store {
            at: l.to_string(),
            source,
        })
    };
    let (source, target) = (open(&from, false)?, open(&to, true)?);
    match source.copy_to(&target) {
        Ok(r) => {
            let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            say!(
                "copied {from} to {to}: records per kind {}, {} audit records, {} stale records removed; counts verified",
                kinds.join(" "),
                r.audit,
                r.removed
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(source) => Err(Failure::Store {
            at: format!("copy {from} to {to}"),
            source,
        }),
    }
}

pub(super) fn store_migrate(common: &Common) -> Outcome {
    let cfg = Config::load(common.config.as_deref(), std::env::vars())?;
    let loc = cfg.store.location();
    match Store::migrate(&loc) {
        Ok(applied) if applied.is_empty() => {
            say!("{loc}: schema up to date");
            Ok(ExitCode::SUCCESS)
        }
        Ok(applied) => {
            say!("{loc}: applied migrations {applied:?}");
            Ok(ExitCode::SUCCESS)
        }
        Err(source) => Err(Failure::Store {
            at: loc.to_string(),
            source,
        }),
    }
}

/// Loads the configuration and opens the store — or, when a running `dkd serve` holds it, finds
/// that server's admin API — or says why not.
pub(super) fn open_store(common: &Common) -> Result<(Config, Backend), Failure> {
    let cfg = Config::load(common.config.as_deref(), std::env::vars())?;
    let backend = Backend::open(&cfg)?;
    Ok((cfg, backend))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn import(
    file: &Path,
    format: Option<crate::import::Format>,
    mode: crate::import::Mode,
    gemeente: Option<String>,
    dry_run: bool,
    strict: bool,
    role: Option<crate::config::Role>,
    common: &Common,
) -> Outcome {
    use crate::import::{Format, Options};
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
        if crate::suwiml::types::check_four_digits("--gemeente", g).is_err() {
            return Err(Failure::Usage(format!(
                "--gemeente {g:?} must be a 4-digit gemeentecode"
            )));
        }
    }
    let (cfg, backend) = open_store(common)?;
    let ib = role == Some(crate::config::Role::Ib) || cfg.role == crate::config::Role::Ib;
    let mode = if ib {
        crate::import::ib_batch_mode(
            gemeente.as_deref(),
            &crate::app::ib_settings(&cfg).gemeenten,
        )?
    } else {
        mode
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(source) => {
            return Err(Failure::File {
                path: file.to_path_buf(),
                source,
            })
        }
    };
    let opts = Options {
        format,
        mode,
        gemeente,
        dry_run,
        strict,
        rules: crate::import::Rules {
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
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(Code::RowsRejected.into())
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn audit(
    bsn: Option<&str>,
    oin: Option<&str>,
    since: Option<&str>,
    format: AuditFormat,
    common: &Common,
) -> Outcome {
    let bsn = match bsn.map(crate::suwiml::types::Bsn::parse) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(_)) => {
            return Err(Failure::Usage(
                "--bsn is not a valid BSN (9 digits, 11-test)".into(),
            ))
        }
    };
    let since = match since {
        None => 0,
        Some(s) => match crate::suwiml::types::Datum::parse(&s.replace('-', ""))
            .ok()
            .and_then(|d| d.to_date())
        {
            Some(d) => d.midnight().assume_utc().unix_timestamp(),
            None => {
                return Err(Failure::Usage(format!(
                    "--since {s:?} is not a date (YYYY-MM-DD)"
                )))
            }
        },
    };
    let (_, backend) = open_store(common)?;
    let all = backend.audit(since)?;
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
    Ok(ExitCode::SUCCESS)
}

pub(super) fn sweep(dry_run: bool, common: &Common) -> Outcome {
    let (cfg, backend) = open_store(common)?;
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
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn sync(retry_parked: bool, full: bool, as_json: bool, common: &Common) -> Outcome {
    use crate::gemeente::push::SyncAction;
    let (cfg, backend) = open_store(common)?;
    let action = if retry_parked {
        SyncAction::RetryParked
    } else if full {
        SyncAction::Full
    } else {
        SyncAction::Status
    };
    let r = backend.sync(action)?;
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
        Ok(Code::Failure.into())
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

pub(super) fn signals(action: SignalsAction) -> Outcome {
    match action {
        SignalsAction::Fetch { common } => {
            let (cfg, backend) = open_store(&common)?;
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
                        Ok(ExitCode::SUCCESS)
                    } else {
                        Ok(Code::Failure.into())
                    }
                }
                Err(e) => Err(e.into()),
            }
        }
        SignalsAction::List { format, common } => {
            let (_, backend) = open_store(&common)?;
            let cases = backend.cases()?;
            let today = time::OffsetDateTime::now_utc().date();
            let rows = crate::report::cases(&cases, today);
            let overdue = rows.iter().any(|r| r.overdue > 0);
            match format {
                AuditFormat::Json => say!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                ),
                AuditFormat::Table => put!("{}", crate::report::cases_table(&rows)),
            }
            if overdue {
                Ok(Code::Failure.into())
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        SignalsAction::Publish {
            file,
            gemeente,
            common,
        } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(source) => {
                    return Err(Failure::File {
                        path: file.to_path_buf(),
                        source,
                    })
                }
            };
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string());
            let (cfg, backend) = open_store(&common)?;
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
                    Ok(ExitCode::SUCCESS)
                }
                Err(ControlError::Invalid(message)) => {
                    for line in message.lines() {
                        tell!("error: {line}");
                    }
                    tell!("{name}: refused, nothing stored");
                    Ok(Code::Failure.into())
                }
                Err(e) => Err(e.into()),
            }
        }
        SignalsAction::SickDay { bsn, datum, common } => {
            let Ok(b) = crate::suwiml::types::Bsn::parse(&bsn) else {
                return Err(Failure::Usage(format!(
                    "{bsn:?} is not a valid BSN (9 digits, 11-test)"
                )));
            };
            let Some(d) = crate::suwiml::types::Datum::parse(&datum)
                .ok()
                .filter(|d| d.to_date().is_some())
            else {
                return Err(Failure::Usage(format!(
                    "--datum {datum:?} is not a calendar date YYYYMMDD"
                )));
            };
            let (_, backend) = open_store(&common)?;
            match backend.sick_day(&b, &d) {
                Ok(0) => Err(Failure::Other(format!(
                    "no vangnetter case for BSN {}",
                    b.masked()
                ))),
                Ok(n) => {
                    say!("first sick day {} recorded on {n} case(s)", d.as_str());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

pub(super) fn toets(bsn: &str, datum: Option<&str>, common: &Common) -> Outcome {
    let (cfg, date, hits) = toets_hits(bsn, datum, common).map_err(Failure::unanswered)?;
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
    let d = crate::suwiml::types::Datum::from_date(date);
    if yes {
        say!(
            "JA: LKS granted or paid in the {} days before {}",
            cfg.retention.window_days,
            d.as_str()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        say!(
            "NEE: no LKS in the {} days before {}",
            cfg.retention.window_days,
            d.as_str()
        );
        Ok(ExitCode::from(1))
    }
}

/// The Toets LKS's hits: whatever stops it is no answer (see [`Failure::unanswered`]).
fn toets_hits(
    bsn: &str,
    datum: Option<&str>,
    common: &Common,
) -> Result<(Config, time::Date, Vec<crate::gemeente::service::ToetsHit>), Failure> {
    let bsn = crate::suwiml::types::Bsn::parse(bsn)
        .map_err(|_| Failure::Usage(format!("{bsn:?} is not a valid BSN (9 digits, 11-test)")))?;
    let date = match datum {
        None => time::OffsetDateTime::now_utc().date(),
        Some(d) => crate::suwiml::types::Datum::parse(d)
            .ok()
            .and_then(|d| d.to_date())
            .ok_or_else(|| {
                Failure::Usage(format!("--datum {d:?} is not a calendar date YYYYMMDD"))
            })?,
    };
    let cfg = Config::load(common.config.as_deref(), std::env::vars())?;
    let hits = Backend::open(&cfg)?.toets(&bsn, date, cfg.retention.window_days)?;
    Ok((cfg, date, hits))
}

pub(super) fn report(format: ReportFormat, common: &Common) -> Outcome {
    let (cfg, backend) = open_store(common)?;
    let today = time::OffsetDateTime::now_utc().date();
    if cfg.role == crate::config::Role::Ib {
        let rows = backend.report_ib(&crate::app::ib_settings(&cfg), today)?;
        let out = match format {
            ReportFormat::Table => crate::report::ib_table(&rows),
            ReportFormat::Csv => crate::report::ib_csv(&rows),
            ReportFormat::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
        };
        put!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows = backend.report(cfg.retention.window_days, today)?;
    let mut out = match format {
        ReportFormat::Table => crate::report::table(&rows),
        ReportFormat::Csv => crate::report::csv(&rows),
        ReportFormat::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
    };
    if let (ReportFormat::Table, Ok(cases)) = (format, backend.cases()) {
        if !cases.is_empty() {
            out.push_str("\nVangnetter cases (Toets LKS signals from the IB):\n");
            out.push_str(&crate::report::cases_table(&crate::report::cases(
                &cases, today,
            )));
        }
    }
    put!("{out}");
    Ok(ExitCode::SUCCESS)
}
