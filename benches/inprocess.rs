//! In-process micro-benchmarks (criterion): `cargo bench --bench inprocess`.
//!
//! What each figure is (BENCHMARKS.md has the results):
//! - `request/envelope_parse`, `request/envelope_parse_signed`: `soap::envelope::parse` of an
//!   unsigned and of a signed GSDReintegratieInfo request;
//! - `floor/quick_xml_scan`, `floor/sled_scan_prefix_1e3`, `floor/sled_get_1e3`: the least the
//!   fixed crates cost per unsigned answer (tokenizing the request; finding one record);
//! - `request/handle_unsigned`: `soap::handle`, signing off, a known BSN (parse, WS-A checks, OIN,
//!   store lookup, response written) — issue 7's "envelope parse + response write" end to end;
//! - `request/handle_sign_only`: the same unsigned request with signing on (`optional`): the
//!   difference to `handle_unsigned` is what signing the response costs inside `handle`;
//! - `request/handle_signed`: a signed request with signing `required` (verify + sign);
//! - `response/service_lookup` and `response/write_clientsuwi`: the operation (store lookup +
//!   retention filter) and `suwiml::gsd::write_response` alone;
//! - `wssec/verify`: `VerifyPolicy::verify` of a signed request (each iteration a different
//!   pre-signed request, so the replay cache never refuses);
//! - `wssec/security_header`: `Signer::security_header` on the parts of a ClientSuwi response;
//! - `rsa/sign`, `rsa/verify`: raw RSA-2048 PKCS#1 v1.5 SHA-256 with aws-lc-rs (the ceiling);
//! - `store/get_1e3`, `store/get_1e6`: `Store::get` of a stored BSN at 10^3 and 10^6 persons.
//!
//! `DKD_BENCH_SKIP_1E6=1` skips the 10^6-person store (its first build takes minutes); so does
//! test mode (`cargo test --benches`, which runs each benchmark once).

#[path = "common/mod.rs"]
mod common;

// The allocator `dkd` runs with (src/main.rs): allocation is a visible share of a parse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::CLIENT_OIN;
use criterion::{criterion_group, criterion_main, Criterion};
use dkd::certs::files;
use dkd::gemeente::service::Service;
use dkd::soap::wssec::{ReplayCache, Signer, SigningMode, VerifyPolicy};
use dkd::soap::{handle, Endpoint, Inbound, Outcome, Security};
use dkd::store::Store;
use dkd::suwiml::types::Bsn;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const URL: &str = "https://127.0.0.1:8443/GSDDossierReintegratie-v0200";
/// Pre-signed requests per replay-cache generation (see `bench_signed_pool`).
const POOL: usize = 1_000;

struct Fixture {
    pki: tempfile::TempDir,
    store: Store,
    bsns: Vec<Bsn>,
}

impl Fixture {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.pki.path().join(name)
    }

    fn signer(&self) -> Signer {
        Signer::load(&self.path(files::SERVER), &self.path(files::SERVER_KEY)).expect("signer")
    }

    fn client_signer(&self) -> Signer {
        Signer::load(&self.path(files::CLIENT), &self.path(files::CLIENT_KEY)).expect("signer")
    }

    fn policy(&self, mode: SigningMode, cache: usize) -> VerifyPolicy {
        VerifyPolicy {
            mode,
            trust: dkd::http::tls::signer_trust(&self.path(files::CA), &[]).expect("trust"),
            allowed_signer_oins: [CLIENT_OIN.to_owned()].into_iter().collect(),
            signer_must_match_tls: true,
            any_signer: false,
            clock_skew: time::Duration::seconds(120),
            max_age: time::Duration::seconds(300),
            replay: ReplayCache::new(cache),
            trust_cache: Default::default(),
        }
    }

    fn endpoint(&self, security: Option<Security>) -> Endpoint {
        Endpoint {
            service: Service {
                store: self.store.clone(),
                dn: "CN=dkd,O=Gemeente".into(),
                window_days: dkd::retention::DEFAULT_WINDOW_DAYS,
            },
            public_url: URL.into(),
            to_aliases: vec![],
            own_oins: vec![],
            allowed_oins: [CLIENT_OIN.to_owned()].into_iter().collect(),
            security: security.map(Arc::new),
            kind: dkd::soap::EndpointKind::Gemeente,
        }
    }

    fn secured(&self, mode: SigningMode) -> Endpoint {
        self.endpoint(Some(Security {
            verify: self.policy(mode, 10 * POOL),
            signer: self.signer(),
        }))
    }
}

fn inbound(body: &str) -> Inbound<'_> {
    Inbound {
        body: body.as_bytes(),
        content_type: Some("text/xml; charset=utf-8"),
        soap_action: Some("\"\""),
        tls_oin: Some(CLIENT_OIN),
    }
}

fn unsigned_request(bsn: &Bsn) -> String {
    dkd::soap::example_request(URL, CLIENT_OIN, bsn.as_str(), "urn:uuid:bench-unsigned")
}

fn signed_pool(f: &Fixture, bsn: &Bsn, n: usize, now: time::OffsetDateTime) -> Vec<String> {
    let signer = f.client_signer();
    (0..n)
        .map(|i| {
            dkd::soap::signed_request(
                &signer,
                URL,
                CLIENT_OIN,
                bsn.as_str(),
                &message_id(i, now),
                now,
            )
            .expect("signed request")
        })
        .collect()
}

fn message_id(i: usize, now: time::OffsetDateTime) -> String {
    format!("urn:uuid:bench-{}-{i}", now.unix_timestamp_nanos())
}

/// Runs `op` over a pool of pre-signed requests, building fresh state (an empty replay cache)
/// outside the timed part each time the pool is used up.
fn bench_signed_pool<S>(
    iters: u64,
    pool: &[String],
    mut fresh: impl FnMut() -> S,
    mut op: impl FnMut(&S, usize, &str),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let state = fresh();
        let chunk = (iters - done).min(pool.len() as u64) as usize;
        let t = Instant::now();
        for (i, req) in pool.iter().enumerate().take(chunk) {
            op(&state, i, req);
        }
        total += t.elapsed();
        done += chunk as u64;
    }
    total
}

fn fixture() -> Fixture {
    let store = Store::temporary().expect("store");
    let people = dkd::chain::demo::generate(1_000, common::today());
    store.put_all(&people, "bench").expect("put_all");
    let pki = common::dev_pki();
    let mut f = Fixture {
        pki,
        store,
        bsns: Vec::new(),
    };
    // Keep the BSNs answered with a ClientSuwi (the retention window may hide some).
    let ep = f.endpoint(None);
    f.bsns = people
        .iter()
        .map(|p| p.bsn)
        .filter(|b| handle(&ep, inbound(&unsigned_request(b))).outcome == Outcome::Found)
        .collect();
    assert!(
        !f.bsns.is_empty(),
        "no demo BSN is answered with ClientSuwi"
    );
    f
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let bsn = f.bsns[f.bsns.len() / 2];
    let unsigned = unsigned_request(&bsn);

    // (a) the request path, signing off; envelope parse alone.
    {
        let ep = f.endpoint(None);
        let out = handle(&ep, inbound(&unsigned));
        assert_eq!(out.outcome, Outcome::Found, "{}", out.body);
        eprintln!(
            "unsigned request {} bytes, unsigned ClientSuwi response {} bytes",
            unsigned.len(),
            out.body.len()
        );
        let mut g = c.benchmark_group("request");
        g.bench_function("envelope_parse", |b| {
            b.iter(|| dkd::soap::envelope::parse(black_box(unsigned.as_bytes())).is_ok())
        });
        g.bench_function("handle_unsigned", |b| {
            b.iter(|| handle(&ep, inbound(black_box(&unsigned))).body.len())
        });
        // (d) signing on, unsigned request (mode optional): handle + response signing.
        let ep_sign = f.secured(SigningMode::Optional);
        let out = handle(&ep_sign, inbound(&unsigned));
        assert_eq!(out.outcome, Outcome::Found, "{}", out.body);
        eprintln!("signed ClientSuwi response {} bytes", out.body.len());
        g.bench_function("handle_sign_only", |b| {
            b.iter(|| handle(&ep_sign, inbound(black_box(&unsigned))).body.len())
        });
        // Signed request, signing required: verify + answer + sign. handle() verifies against the
        // wall clock, so the pool is signed now and used within the run (well inside 5 minutes).
        let pool = signed_pool(&f, &bsn, POOL, time::OffsetDateTime::now_utc());
        eprintln!("signed request {} bytes", pool[0].len());
        g.bench_function("envelope_parse_signed", |b| {
            b.iter(|| dkd::soap::envelope::parse(black_box(pool[0].as_bytes())).is_ok())
        });
        let check = f.secured(SigningMode::Required);
        let out = handle(&check, inbound(&pool[0]));
        assert_eq!(out.outcome, Outcome::Found, "{}", out.body);
        g.bench_function("handle_signed", |b| {
            b.iter_custom(|iters| {
                bench_signed_pool(
                    iters,
                    &pool,
                    || f.secured(SigningMode::Required),
                    |ep, _, req| {
                        let out = handle(ep, inbound(req));
                        debug_assert_eq!(out.outcome, Outcome::Found);
                        black_box(out.body.len());
                    },
                )
            })
        });
        g.finish();
    }

    // (b) the operation and the response body writer alone.
    {
        let ep = f.endpoint(None);
        let reply = ep.service.reintegratie_info(&bsn);
        let mut g = c.benchmark_group("response");
        g.bench_function("service_lookup", |b| {
            b.iter(|| ep.service.reintegratie_info(black_box(&bsn)))
        });
        g.bench_function("write_clientsuwi", |b| {
            let mut s = String::with_capacity(4096);
            b.iter(|| {
                s.clear();
                dkd::suwiml::gsd::write_response(black_box(&reply), "", &mut s);
                s.len()
            })
        });
        g.finish();
    }

    // (c) verification, (d) the security header.
    {
        let now = time::OffsetDateTime::now_utc();
        let pool = signed_pool(&f, &bsn, POOL, now);
        let ids: Vec<String> = (0..POOL).map(|i| message_id(i, now)).collect();
        let at = now + time::Duration::seconds(1);
        let mut g = c.benchmark_group("wssec");
        g.bench_function("verify", |b| {
            b.iter_custom(|iters| {
                bench_signed_pool(
                    iters,
                    &pool,
                    || f.policy(SigningMode::Required, 10 * POOL),
                    |p, i, req| {
                        let v = p.verify(req, Some(CLIENT_OIN), Some(&ids[i]), at);
                        debug_assert!(matches!(v, Ok(Some(_))), "{v:?}");
                        black_box(v.is_ok());
                    },
                )
            })
        });
        // The parts dkd signs for a ClientSuwi answer: five WS-A headers and the Body (the
        // Timestamp and SignatureConfirmation are added by security_header itself).
        let signer = f.signer();
        let ep = f.endpoint(None);
        let mut body = String::new();
        dkd::suwiml::gsd::write_response(&ep.service.reintegratie_info(&bsn), "", &mut body);
        let mut parts_owned: Vec<(&str, String)> = Vec::new();
        for (name, id, value) in [
            ("MessageID", "_MessageID", "urn:uuid:6f1e3c9a-3d5b-4c1e-9a57-0b8d2f3e4a11"),
            ("RelatesTo", "_RelatesTo", "urn:uuid:bench-request"),
            (
                "Action",
                "_Action",
                "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/GSDReintegratieInfoResponse",
            ),
            ("To", "_To", "http://localhost/dkd?oin=00000099000000000002"),
        ] {
            let mut h = String::new();
            dkd::soap::wssec::wsa_header(name, Some(id), |o| o.push_str(value), &mut h);
            parts_owned.push((id, h));
        }
        let mut h = String::new();
        dkd::soap::wssec::wsa_header(
            "From",
            Some("_From"),
            |o| {
                o.push_str("<wsa:Address>");
                o.push_str(URL);
                o.push_str("</wsa:Address>");
            },
            &mut h,
        );
        parts_owned.push(("_From", h));
        parts_owned.push(("_Body", dkd::soap::wssec::canonical_body("_Body", &body)));
        let parts: Vec<(&str, &str)> = parts_owned.iter().map(|(i, s)| (*i, s.as_str())).collect();
        let confirm = "A".repeat(344); // the base64 of a 2048-bit SignatureValue
        g.bench_function("security_header", |b| {
            b.iter(|| {
                signer
                    .security_header(black_box(&parts), Some(&confirm), now)
                    .map(|s| s.len())
            })
        });
        g.finish();
    }

    // (e) the ceiling: raw RSA-2048 PKCS#1 v1.5 SHA-256.
    {
        let common::RsaFixture {
            key,
            msg,
            sig,
            public,
        } = common::RsaFixture::load(&f.path(files::SERVER_KEY));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut g = c.benchmark_group("rsa");
        g.bench_function("sign", |b| {
            let mut out = vec![0u8; key.public_modulus_len()];
            b.iter(|| {
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    black_box(&msg),
                    &mut out,
                )
                .is_ok()
            })
        });
        g.bench_function("verify", |b| {
            b.iter(|| public.verify_sig(black_box(&msg), black_box(&sig)).is_ok())
        });
        g.finish();
    }

    // (f) store point lookups.
    {
        let mut g = c.benchmark_group("store");
        let keys = common::spread(&f.bsns, 1024);
        let mut i = 0usize;
        g.bench_function("get_1e3", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                f.store.get(black_box(&keys[i])).ok().flatten().is_some()
            })
        });
        // Under `cargo test --benches` (no --bench argument) criterion runs each benchmark once:
        // do not build the large store for that.
        let bench_mode = std::env::args().any(|a| a == "--bench");
        if bench_mode && std::env::var_os("DKD_BENCH_SKIP_1E6").is_none() {
            let big = common::open_big_store(common::BIG_N);
            let keys = common::spread(&common::big_bsns(common::BIG_N), 4096);
            assert!(big.get(&keys[0]).expect("get").is_some(), "large store");
            let mut i = 0usize;
            g.bench_function("get_1e6", |b| {
                b.iter(|| {
                    i = (i + 1) % keys.len();
                    big.get(black_box(&keys[i])).ok().flatten().is_some()
                })
            });
        }
        g.finish();
    }

    // (f) Floors: what the crates the design card fixes cost for one unsigned answer before any
    // of dkd's own work. quick-xml tokenizing the request with namespaces resolved (what any
    // reader built on it does at least) and sled finding one record among 10^3 by prefix scan
    // and by exact key, without decoding it.
    {
        let mut g = c.benchmark_group("floor");
        g.bench_function("quick_xml_scan", |b| {
            b.iter(|| {
                let mut r = quick_xml::NsReader::from_str(black_box(&unsigned));
                let mut n = 0usize;
                loop {
                    match r.read_resolved_event() {
                        Ok((_, quick_xml::events::Event::Eof)) | Err(_) => break,
                        Ok(_) => n += 1,
                    }
                }
                n
            })
        });
        // Written out like the one above, not through a shared helper: the loop's shape moves
        // these figures by ~0.15 µs.
        g.bench_function("quick_xml_scan_plain", |b| {
            b.iter(|| {
                let mut r = quick_xml::Reader::from_str(black_box(&unsigned));
                let mut n = 0usize;
                loop {
                    match r.read_event() {
                        Ok(quick_xml::events::Event::Eof) | Err(_) => break,
                        Ok(_) => n += 1,
                    }
                }
                n
            })
        });
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("index").expect("tree");
        let key = |b: &Bsn| {
            let mut k = vec![1u8];
            k.extend_from_slice(b.as_bytes());
            k.extend_from_slice(b"0363");
            k
        };
        for b in &f.bsns {
            tree.insert(key(b), vec![7u8; 300]).expect("insert");
        }
        let keys: Vec<Vec<u8>> = common::spread(&f.bsns, 1024).iter().map(key).collect();
        let mut i = 0usize;
        g.bench_function("sled_scan_prefix_1e3", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                tree.scan_prefix(black_box(&keys[i][..10]))
                    .map(|kv| kv.map(|(_, v)| v.len()).unwrap_or(0))
                    .sum::<usize>()
            })
        });
        g.bench_function("sled_scan_prefix_first_1e3", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                tree.scan_prefix(black_box(&keys[i][..10]))
                    .next()
                    .map(|kv| kv.map(|(_, v)| v.len()).unwrap_or(0))
            })
        });
        g.bench_function("sled_get_gt_1e3", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                let prefix = black_box(&keys[i][..10]);
                let mut n = 0;
                let mut at = prefix.to_vec();
                while let Ok(Some((k, v))) = tree.get_gt(&at) {
                    if !k.starts_with(prefix) {
                        break;
                    }
                    n += v.len();
                    at = k.to_vec();
                }
                n
            })
        });
        g.bench_function("sled_get_1e3", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                tree.get(black_box(&keys[i]))
                    .ok()
                    .flatten()
                    .map(|v| v.len())
            })
        });
        g.finish();
    }
    {
        // The per-request info line of `dkd serve` (written to a sink), human and JSON.
        let mut g = c.benchmark_group("log");
        let filter = || tracing_subscriber::EnvFilter::new("info");
        let dkd_format =
            |format| dkd::ops::logging::dispatch(filter(), format, false, std::io::sink);
        let ours = dkd_format(dkd::config::LogFormat::Human);
        let json = dkd_format(dkd::config::LogFormat::Json);
        for (name, d) in [("request_line", &ours), ("request_line_json", &json)] {
            tracing::dispatcher::with_default(d, || {
                g.bench_function(name, |b| {
                    b.iter(|| {
                        tracing::info!(
                            target: "dkd::http::server",
                            operation = "GSDReintegratieInfo",
                            oin = "00000001234567890000",
                            from_oin = "00000001234567890000",
                            message_id = black_box("urn:uuid:0b6f0a38-3f1c-4d7e-9a51-8f1e2c3b4d5e"),
                            bsn = "*****0006",
                            outcome = "answered",
                            code = "",
                            status = 200u16,
                            duration_ms = black_box(0.412),
                            "request"
                        )
                    })
                });
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = benches
}
criterion_main!(group);
