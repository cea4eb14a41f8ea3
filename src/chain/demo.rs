//! The deterministic demo set: synthetic LKS recipients for `serve --demo`, tests and benchmarks.
//!
//! Same seed and reference date → same persons, so a demo BSN printed in the README stays valid.
//! BSNs come from the 9999xxxxx range (all passing the 11-test). Type codes and names are
//! illustrative, not an official code list.

use crate::suwiml::model::{AtlRelatie, Bron, Person, Provision, TYPE_LKS};
use crate::suwiml::types::{Bsn, Datum, Percentage};

/// How many persons `serve --demo` loads into an empty store.
pub const DEMO_PERSONS: usize = 1200;

/// A valid BSN that is never in the demo set (for a `NietsGevonden` example).
pub const UNKNOWN_BSN: &str = "123456782";

/// Gemeentecodes used in the demo (Amsterdam, Rotterdam, 's-Gravenhage, Utrecht, Groningen).
pub const DEMO_GEMEENTEN: [&str; 5] = ["0363", "0599", "0518", "0344", "0014"];

/// splitmix64: tiny, deterministic, and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const MALE: [&str; 10] = [
    "Jan", "Pieter", "Mohamed", "Daan", "Kees", "Ahmet", "Henk", "Sem", "Lucas", "Ricardo",
];
const FEMALE: [&str; 10] = [
    "Anna", "Fatima", "Sanne", "Emma", "Maria", "Yasmina", "Lotte", "Ingrid", "Priya", "Noor",
];
const SURNAMES: [(&str, &str); 14] = [
    ("", "Jansen"),
    ("de", "Vries"),
    ("van den", "Berg"),
    ("", "Bakker"),
    ("van", "Dijk"),
    ("", "Visser"),
    ("", "Smit"),
    ("", "Yilmaz"),
    ("el", "Amrani"),
    ("de", "Jong"),
    ("", "Mulder"),
    ("van der", "Meer"),
    ("", "Bos"),
    ("", "Kaya"),
];

/// Generates `n` persons, dated relative to `today`.
///
/// About 60 % have an LKS provision still running, 30 % one that ended within the last two years,
/// and 10 % one that ended two to four years ago (outside the LKS look-back).
pub fn generate(n: usize, today: time::Date) -> Vec<Person> {
    let mut rng = Rng(0x00D0_C0DE_2016_0701);
    let mut out = Vec::with_capacity(n);
    // The first ~9,000 come from 9999xxxxx (recognisable test numbers); larger sets (benchmarks)
    // continue from 10000000x, so up to ~80 million distinct valid BSNs can be generated.
    let mut prefix: u32 = 99_990_000;
    while out.len() < n {
        let candidate = prefix;
        prefix = if prefix >= 99_999_999 {
            10_000_000
        } else {
            prefix + 1
        };
        if let Some(bsn) = Bsn::from_prefix(candidate) {
            out.push(person(&mut rng, bsn, today));
        }
    }
    out
}

fn days_before(today: time::Date, days: i64) -> Datum {
    Datum::from_date(today - time::Duration::days(days))
}

fn person(rng: &mut Rng, bsn: Bsn, today: time::Date) -> Person {
    let male = rng.below(2) == 0;
    let first = if male {
        rng.pick(&MALE)
    } else {
        rng.pick(&FEMALE)
    };
    let second = if male {
        rng.pick(&MALE)
    } else {
        rng.pick(&FEMALE)
    };
    let voornamen = if rng.below(3) == 0 && first != second {
        format!("{first} {second}")
    } else {
        first.to_owned()
    };
    let voorletters: String = voornamen
        .split(' ')
        .filter_map(|w| w.chars().next())
        .collect();
    let (voorvoegsel, achternaam) = SURNAMES[rng.below(SURNAMES.len() as u64) as usize];
    let birth_year = 1962 + rng.below(40) as i32;
    let birth = Datum::from_ymd(birth_year, 1 + rng.below(12) as u8, 1 + rng.below(28) as u8);
    let gemeente = rng.pick(&DEMO_GEMEENTEN);
    let mut relaties = vec![relatie(rng, gemeente, today)];
    if rng.below(10) == 0 {
        // A move: an older relation with another gemeente.
        let other = DEMO_GEMEENTEN
            .iter()
            .copied()
            .find(|g| *g != gemeente)
            .unwrap_or("0014");
        relaties.push(relatie(rng, other, today));
    }
    Person {
        bsn,
        voornamen: Some(voornamen),
        voorletters: Some(voorletters),
        voorvoegsel: (!voorvoegsel.is_empty()).then(|| voorvoegsel.to_owned()),
        achternaam: Some(achternaam.to_owned()),
        geslacht: Some(if male { "1" } else { "2" }.to_owned()),
        geboortedat: Some(birth),
        bron: Some(Bron::gemeente(gemeente)),
        atl_relaties: relaties,
    }
}

fn relatie(rng: &mut Rng, gemeente: &str, today: time::Date) -> AtlRelatie {
    let roll = rng.below(10);
    // Start of the LKS period, and its end (None = running).
    let (lks_start, lks_end) = match roll {
        0..=5 => (200 + rng.below(1500) as i64, None),
        6..=8 => {
            let end = 1 + rng.below(700) as i64;
            (end + 90 + rng.below(900) as i64, Some(end))
        }
        _ => {
            let end = 731 + rng.below(700) as i64;
            (end + 90 + rng.below(900) as i64, Some(end))
        }
    };
    let mut provisions = Vec::new();
    let reg = |rng: &mut Rng| format!("RV{:08}", rng.below(100_000_000));
    // A trial placement determining loonwaarde usually precedes LKS (max two months).
    if rng.below(2) == 0 {
        provisions.push(Provision {
            registratienr: Some(reg(rng)),
            start: days_before(today, lks_start + 61),
            end: Some(days_before(today, lks_start + 1)),
            type_code: Some("23".into()),
            description: Some("Proefplaatsing loonwaardebepaling".into()),
            loonwaarde: None,
        });
    }
    let loonwaarde =
        Percentage::saturating(3000 + rng.below(50) as u32 * 100 + rng.below(4) as u32 * 25);
    provisions.push(Provision {
        registratienr: Some(reg(rng)),
        start: days_before(today, lks_start),
        end: lks_end.map(|d| days_before(today, d)),
        type_code: Some(TYPE_LKS.into()),
        description: Some("Loonkostensubsidie Participatiewet".into()),
        loonwaarde: Some(loonwaarde),
    });
    if rng.below(3) == 0 {
        provisions.push(Provision {
            registratienr: Some(reg(rng)),
            start: days_before(today, lks_start),
            end: lks_end.map(|d| days_before(today, d)),
            type_code: Some("30".into()),
            description: Some("Jobcoach".into()),
            loonwaarde: None,
        });
    }
    AtlRelatie {
        arbeidsvermogen: Some(if rng.below(2) == 0 { "01" } else { "02" }.into()),
        doel_rv: Some("1".into()),
        provisions,
        bron: Bron::gemeente(gemeente),
    }
}

/// The demo gemeente that delivers batch files to the IB instead of running a webservice.
pub const DEMO_BATCH_GEMEENTE: &str = "0014";

/// Splits the demo set into what the webservice gemeente holds and the batch gemeente's delivery.
pub fn split_batch(people: Vec<Person>) -> (Vec<Person>, Vec<Person>) {
    let mut webservice = Vec::new();
    let mut batch = Vec::new();
    for p in people {
        let (b, w): (Vec<_>, Vec<_>) = p
            .atl_relaties
            .iter()
            .cloned()
            .partition(|r| r.bron.partij == DEMO_BATCH_GEMEENTE);
        if !b.is_empty() {
            batch.push(Person {
                atl_relaties: b,
                ..p.clone()
            });
        }
        if !w.is_empty() {
            webservice.push(Person {
                atl_relaties: w,
                ..p
            });
        }
    }
    (webservice, batch)
}

/// Ports of `dkd demo`: the gemeente's service, admin and ops listeners, then the IB's.
pub const CHAIN_PORTS: [u16; 6] = [8443, 9443, 9090, 8444, 9444, 9091];

/// The two configurations `dkd demo` runs: a gemeente holding the demo set and pushing its
/// verwijsindex, and an IB routing to it, both with the development PKI in `certs/dev`. The
/// gemeente requires signed requests (only the IB calls it); the IB accepts unsigned ones too, so
/// a newcomer can try it with curl.
/// `shift` moves every port by the same amount (for a second demo, or tests).
pub fn chain_configs(
    data_dir: &std::path::Path,
    shift: u16,
) -> (crate::config::Config, crate::config::Config) {
    use crate::certs::{DEMO_CLIENT_OIN, DEMO_SERVER_OIN};
    use crate::config::{Config, IbGemeenteConfig, Role};
    use crate::soap::wssec::SigningMode;
    let [g_port, g_admin, g_ops, ib_port, ib_admin, ib_ops] =
        CHAIN_PORTS.map(|p| p.saturating_add(shift));
    let mut g = Config::default();
    g.server.listen = format!("127.0.0.1:{g_port}");
    g.server.service_dn = "CN=dkd demo gemeente".into();
    g.admin.listen = format!("127.0.0.1:{g_admin}");
    g.ops.listen = format!("127.0.0.1:{g_ops}");
    g.store.path = data_dir.join("gemeente.sled");
    // The IB calls with the development server certificate.
    g.auth.allowed_oins = vec![DEMO_SERVER_OIN.into(), DEMO_CLIENT_OIN.into()];
    g.security.signing = Some(SigningMode::Required);
    g.push.url = format!("https://127.0.0.1:{ib_port}/IBVerwijsindex-v0300");
    g.signals.portal = format!("http://127.0.0.1:{ib_ops}/portal");
    g.signals.fetch_interval_secs = 10;
    let mut ib = Config {
        role: Role::Ib,
        ..Config::default()
    };
    ib.server.listen = format!("127.0.0.1:{ib_port}");
    ib.server.service_dn = "CN=dkd demo IB".into();
    ib.admin.listen = format!("127.0.0.1:{ib_admin}");
    ib.ops.listen = format!("127.0.0.1:{ib_ops}");
    ib.store.path = data_dir.join("ib.sled");
    ib.auth.allowed_oins = vec![DEMO_CLIENT_OIN.into()];
    ib.security.signing = Some(SigningMode::Optional);
    ib.ib.gemeenten = DEMO_GEMEENTEN
        .iter()
        .map(|code| {
            let batch = *code == DEMO_BATCH_GEMEENTE;
            IbGemeenteConfig {
                code: (*code).into(),
                name: String::new(),
                oins: vec![DEMO_SERVER_OIN.into()],
                url: (!batch)
                    .then(|| format!("https://127.0.0.1:{g_port}{}", crate::config::GSD_PATH)),
                delivery: if batch {
                    crate::ib::Delivery::Batch
                } else {
                    crate::ib::Delivery::Webservice
                },
            }
        })
        .collect();
    (g, ib)
}

/// Persons each emulated gemeente of `dkd demo --gemeenten N` holds (a tenth of them also held
/// by the next gemeente, so the IB merges two answers and names a failing one in an FWI).
pub const MANY_PERSONS: usize = 20;

/// Most gemeenten `dkd demo --gemeenten` emulates.
pub const MANY_MAX: usize = 2000;

/// The (synthetic) gemeentecode of the `i`-th emulated gemeente: 1001, 1002, …
pub fn many_code(i: usize) -> String {
    format!("{:04}", 1001 + i)
}

/// The (synthetic) OIN of the `i`-th emulated gemeente, in its own certificate: the test OIN
/// range `00000099…`, ending in its gemeentecode (`00000099000000001001` for 1001).
pub fn many_oin(i: usize) -> String {
    format!("00000099{:012}", 1001 + i)
}

/// What the `k`-th unreliable gemeente does wrong: every scenario in turn, so a share of 12 or
/// more unreliable gemeenten shows each. The delay is longer than the IB's default route timeout.
pub fn unreliable_scenario(k: usize) -> crate::chain::scenario::ScenarioConfig {
    use crate::chain::scenario::{AnswerKind, PushKind, ScenarioConfig};
    let base = ScenarioConfig {
        enabled: true,
        delay_ms: 8000,
        ..ScenarioConfig::default()
    };
    let kinds = AnswerKind::ALL.len();
    match k % (kinds + 2) {
        i if i < kinds => ScenarioConfig {
            answer: Some(AnswerKind::ALL[i]),
            ..base
        },
        i if i == kinds => ScenarioConfig {
            push: Some(PushKind::Paused),
            ..base
        },
        _ => ScenarioConfig {
            push: Some(PushKind::Partial),
            ..base
        },
    }
}

/// The synthetic data of `n` emulated gemeenten, [`MANY_PERSONS`] each, every relation under its
/// own gemeente's Bron; every tenth person also at the next gemeente.
pub fn many_people(n: usize, today: time::Date) -> Vec<Vec<Person>> {
    let all = generate(n * MANY_PERSONS, today);
    let mut out: Vec<Vec<Person>> = vec![Vec::new(); n];
    let own = |p: &Person, code: &str| {
        let mut r = p.atl_relaties[0].clone();
        r.bron = Bron::gemeente(code);
        Person {
            bron: Some(Bron::gemeente(code)),
            atl_relaties: vec![r],
            ..p.clone()
        }
    };
    for (j, p) in all.iter().enumerate() {
        let i = j / MANY_PERSONS;
        out[i].push(own(p, &many_code(i)));
        if n > 1 && j % 10 == 0 {
            let next = (i + 1) % n;
            out[next].push(own(p, &many_code(next)));
        }
    }
    out
}

/// `dkd demo --gemeenten N`: the IB and N emulated gemeenten in one process.
pub struct Many {
    /// The IB.
    pub ib: crate::app::App,
    /// Each gemeente: its code, the running server, and its scenario (if unreliable).
    pub gemeenten: Vec<(
        String,
        crate::app::App,
        Option<crate::chain::scenario::ScenarioConfig>,
    )>,
    /// A BSN held by two reliable gemeenten (merged), if there is one.
    pub merged_bsn: Option<String>,
    /// A BSN whose gemeente is unreliable, if there is one.
    pub unreliable_bsn: Option<String>,
}

/// Binds the IB (configured as `ib`, its gemeenten replaced) and `n` gemeenten (each `gemeente`
/// with its own listener on a free port, store under `dir/gemeenten/`, data, push to the IB, and
/// for a share `unreliable` of them, spread evenly, a scenario), filling empty stores.
///
/// One listener per gemeente, each a whole [`crate::app::App`]: the IB routes to each over its
/// own URL exactly as to a real gemeente, with no second router in dkd. Each has a TLS and
/// signing certificate of its own with its own OIN ([`many_oin`]), issued by the CA of
/// `gemeente.tls.client_ca` (its key next to it, as `dkd certs` writes it) for the key of
/// `gemeente.tls.key`, which they all share: a certificate is one CA signature, while 340 RSA
/// key generations would take most of a minute.
pub async fn bind_many(
    dir: &std::path::Path,
    mut ib: crate::config::Config,
    gemeente: &crate::config::Config,
    n: usize,
    unreliable: f64,
    today: time::Date,
) -> Result<Many, crate::app::StartError> {
    use crate::app::{App, StartError};
    use crate::config::IbGemeenteConfig;
    use crate::store::Store;
    if n == 0 || n > MANY_MAX {
        return Err(StartError::Config(format!(
            "--gemeenten must be 1..={MANY_MAX}"
        )));
    }
    if !(0.0..=1.0).contains(&unreliable) {
        return Err(StartError::Config(
            "--unreliable must be a share between 0 and 1".into(),
        ));
    }
    let people = many_people(n, today);
    let rate_ppm = (unreliable * 1e6).round() as u64;
    let push_url = format!("https://{}{}", ib.server.listen, crate::config::VI_PATH);
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| {
            StartError::Config(format!(
                "--gemeenten issues each emulated gemeente its own certificate: {}: {e}",
                path.display()
            ))
        })
    };
    let ca_cert = &gemeente.tls.client_ca;
    let ca_key = ca_cert.with_file_name(crate::certs::files::CA_KEY);
    let ca = crate::certs::DevCa::load(&read(ca_cert)?, &read(&ca_key)?).map_err(|e| {
        StartError::Config(format!(
            "--gemeenten: the CA {} with key {}: {e}",
            ca_cert.display(),
            ca_key.display()
        ))
    })?;
    let shared_key = read(&gemeente.tls.key)?;
    let cert_dir = dir.join("gemeenten");
    std::fs::create_dir_all(&cert_dir)
        .map_err(|e| StartError::Config(format!("--gemeenten: {}: {e}", cert_dir.display())))?;
    let mut gemeenten = Vec::with_capacity(n);
    let mut registry = Vec::with_capacity(n);
    let mut k = 0;
    for (i, mine) in people.iter().enumerate() {
        let code = many_code(i);
        let oin = many_oin(i);
        let mut cfg = gemeente.clone();
        let cert = ca
            .server_for_key(
                &shared_key,
                &format!("dkd emulated gemeente {code}"),
                &["localhost", "127.0.0.1"],
                Some(&oin),
                825,
            )
            .map_err(|e| StartError::Config(format!("gemeente {code}: certificate: {e}")))?;
        cfg.tls.cert = cert_dir.join(format!("{code}.pem"));
        crate::certs::write_file(&cfg.tls.cert, &cert, false).map_err(|e| {
            StartError::Config(format!("gemeente {code}: {}: {e}", cfg.tls.cert.display()))
        })?;
        // It signs with the certificate that carries its OIN.
        cfg.security.sign_cert = None;
        cfg.security.sign_key = None;
        cfg.server.listen = "127.0.0.1:0".into();
        cfg.server.public_url = None;
        cfg.server.service_dn = format!("CN=dkd emulated gemeente {code}");
        // Per gemeente: no worker threads, admin API or ops listener of its own (the IB's monitor
        // shows them all), no Toets LKS fetching.
        cfg.server.crypto_threads = 0;
        cfg.admin.listen = String::new();
        cfg.ops.listen = String::new();
        cfg.signals.portal = String::new();
        cfg.store.path = dir.join("gemeenten").join(format!("{code}.sled"));
        cfg.push.url = push_url.clone();
        // One delivery in flight per gemeente: N × 4 signed updates at once would outrun the
        // push timeout on a small machine and only cause retries.
        cfg.push.concurrency = 1;
        cfg.push.from_address = Some(format!("https://127.0.0.1/gemeente/{code}?oin={oin}"));
        let scenario = crate::chain::scenario::picks(i as u64, rate_ppm).then(|| {
            k += 1;
            unreliable_scenario(k - 1)
        });
        cfg.scenario = scenario.clone().unwrap_or_default();
        cfg.validate()
            .map_err(|e| StartError::Config(format!("gemeente {code}: {e}")))?;
        let store = Store::open(&cfg.store.path)?.with_outbox(true);
        if store.is_empty() {
            store.put_all(mine, "demo")?;
        }
        let app = App::bind_with_store(&cfg, store).await?;
        registry.push(IbGemeenteConfig {
            code: code.clone(),
            name: format!("Emulated {code}"),
            oins: vec![oin],
            url: Some(app.public_url().to_owned()),
            delivery: crate::ib::Delivery::Webservice,
        });
        gemeenten.push((code, app, scenario));
    }
    ib.ib.gemeenten = registry;
    // Every gemeente keeps a connection to the IB for its push.
    ib.server.max_connections = ib.server.max_connections.max(2 * n + 64);
    ib.validate()
        .map_err(|e| StartError::Config(format!("IB: {e}")))?;
    let ib_store = Store::open(&ib.store.path)?;
    let ib_app = App::bind_with_store(&ib, ib_store).await?;
    let reliable = |i: usize| gemeenten.get(i).is_some_and(|g| g.2.is_none());
    let at = |i: usize, bsn: &crate::suwiml::types::Bsn| {
        people
            .get(i)
            .is_some_and(|v| v.iter().any(|p| &p.bsn == bsn))
    };
    let merged_bsn = (0..n.saturating_sub(1))
        .filter(|i| reliable(*i) && reliable(*i + 1))
        .find_map(|i| people[i].iter().find(|p| at(i + 1, &p.bsn)))
        .map(|p| p.bsn.to_string());
    let unreliable_bsn = (0..n)
        .filter(|i| gemeenten[*i].2.as_ref().is_some_and(|s| s.answer.is_some()))
        .find_map(|i| {
            people[i]
                .iter()
                .find(|p| (0..n).filter(|j| *j != i).all(|j| !at(j, &p.bsn)))
        })
        .map(|p| p.bsn.to_string());
    Ok(Many {
        ib: ib_app,
        gemeenten,
        merged_bsn,
        unreliable_bsn,
    })
}

impl Many {
    /// Runs every server until `stop` completes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let mut tasks = Vec::with_capacity(self.gemeenten.len() + 1);
        tasks.push(tokio::spawn(self.ib.run(stopped(rx.clone()))));
        for (_, app, _) in self.gemeenten {
            tasks.push(tokio::spawn(app.run(stopped(rx.clone()))));
        }
        stop.await;
        let _ = tx.send(true);
        let mut result = Ok(());
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(std::io::Error::other(e.to_string())),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> time::Date {
        time::macros::date!(2026 - 11 - 22)
    }

    #[test]
    fn many_gemeenten_each_hold_their_own_valid_data_and_every_scenario_is_used() {
        let people = many_people(30, today());
        assert_eq!(people.len(), 30);
        for (i, mine) in people.iter().enumerate() {
            let code = many_code(i);
            assert!(mine.len() >= MANY_PERSONS, "{code}");
            for p in mine {
                p.validate().unwrap_or_else(|e| panic!("{code}: {e:?}"));
                assert!(p.atl_relaties.iter().all(|r| r.bron.partij == code));
            }
        }
        let names: std::collections::HashSet<String> =
            (0..12).map(|k| unreliable_scenario(k).summary()).collect();
        assert_eq!(names.len(), 12, "{names:?}");
        for k in 0..12 {
            unreliable_scenario(k)
                .validate(|c| crate::soap::emulated_fault(c).is_some())
                .expect("valid");
        }
    }

    #[test]
    fn demo_set_is_deterministic_valid_and_large_enough() {
        let a = generate(DEMO_PERSONS, today());
        let b = generate(DEMO_PERSONS, today());
        assert_eq!(a, b);
        assert!(a.len() >= 1000);
        for p in &a {
            p.validate()
                .unwrap_or_else(|e| panic!("{:?}: {e:?}", p.bsn));
            assert!(p.has_lks());
        }
        let mut bsns: Vec<_> = a.iter().map(|p| p.bsn).collect();
        bsns.dedup();
        assert_eq!(bsns.len(), a.len(), "BSNs are unique");
        assert!(!bsns.iter().any(|b| b.as_str() == UNKNOWN_BSN));
    }

    #[test]
    fn large_sets_get_distinct_valid_bsns_beyond_the_9999_range() {
        let people = generate(20_000, today());
        let bsns: std::collections::HashSet<_> = people.iter().map(|p| p.bsn).collect();
        assert_eq!(bsns.len(), 20_000);
    }

    #[test]
    fn demo_set_has_running_recently_ended_and_old_lks() {
        let t = Datum::from_date(today());
        let two_years_ago = Datum::from_date(today() - time::Duration::days(730));
        let (mut running, mut recent, mut old) = (0, 0, 0);
        for p in generate(DEMO_PERSONS, today()) {
            let lks = &p.atl_relaties[0]
                .provisions
                .iter()
                .find(|v| v.loonwaarde.is_some())
                .cloned();
            match lks.as_ref().and_then(|v| v.end) {
                None => running += 1,
                Some(e) if e >= two_years_ago && e < t => recent += 1,
                Some(_) => old += 1,
            }
        }
        assert!(
            running > 500 && recent > 200 && old > 50,
            "{running} {recent} {old}"
        );
    }
}
