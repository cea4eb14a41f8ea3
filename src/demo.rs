//! The deterministic demo set: synthetic LKS recipients for `serve --demo`, tests and benchmarks.
//!
//! Same seed and reference date → same persons, so a demo BSN printed in the README stays valid.
//! BSNs come from the 9999xxxxx range (all passing the 11-test). Type codes and names are
//! illustrative, not an official code list.

use crate::suwiml::model::{AtlRelatie, Bron, Person, Provision};
use crate::suwiml::types::{Bsn, Datum, Percentage};

/// How many persons `serve --demo` loads into an empty store.
pub const DEMO_PERSONS: usize = 1200;

/// A valid BSN that is never in the demo set (for a `NietsGevonden` example).
pub const UNKNOWN_BSN: &str = "123456782";

/// Gemeentecodes used in the demo (Amsterdam, Rotterdam, 's-Gravenhage, Utrecht, Groningen).
pub const DEMO_GEMEENTEN: [&str; 5] = ["0363", "0599", "0518", "0344", "0014"];

/// `CdTypeRvGsd` the demo uses for loonkostensubsidie.
pub const TYPE_LKS: &str = "24";

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
                    crate::service::ib::Delivery::Batch
                } else {
                    crate::service::ib::Delivery::Webservice
                },
            }
        })
        .collect();
    (g, ib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> time::Date {
        time::macros::date!(2026 - 11 - 22)
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
