//! Shared by the bench targets (`inprocess`, `load`): the benchmark data sets.
//!
//! - the **demo set** (`dkd::chain::demo::generate`, 10^3 persons), exactly what `dkd serve --demo` loads;
//! - the **large set** (10^6 persons): `demo::generate(1_000_000, today)` (BSNs `9999xxxx`, then
//!   `10000000`.., each with its check digit), written with `Store::open` + `put_all` in batches
//!   of 10,000 and cached in `target/bench-store-1e6` (a marker file says it is complete).

#![allow(dead_code)]

use dkd::store::Store;
use dkd::suwiml::types::Bsn;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The OIN of the demo client certificate (`dkd certs`), allowed by `serve --demo`.
pub const CLIENT_OIN: &str = dkd::certs::DEMO_CLIENT_OIN;

/// Persons in the large store.
pub const BIG_N: usize = 1_000_000;

/// Where the large store is cached, relative to the repository root.
pub fn big_store_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-store-1e6")
}

/// The reference date for generated persons: today, like `serve --demo`.
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// The demo set's BSNs (as `serve --demo` loads them).
pub fn demo_bsns(n: usize) -> Vec<Bsn> {
    dkd::chain::demo::generate(n, today())
        .into_iter()
        .map(|p| p.bsn)
        .collect()
}

/// The BSNs `demo::generate(n, _)` gives, without generating the persons: the eight-digit
/// prefixes 99990000..=99999999, then from 10000000 on, each with its check digit (if any).
pub fn big_bsns(n: usize) -> Vec<Bsn> {
    let mut out = Vec::with_capacity(n);
    let mut prefix: u32 = 99_990_000;
    while out.len() < n {
        if let Some(b) = Bsn::from_prefix(prefix) {
            out.push(b);
        }
        prefix = if prefix >= 99_999_999 {
            10_000_000
        } else {
            prefix + 1
        };
    }
    out
}

/// `k` BSNs spread evenly over `all`, in a scrambled order (so consecutive requests do not hit
/// neighbouring keys).
pub fn spread(all: &[Bsn], k: usize) -> Vec<Bsn> {
    let k = k.min(all.len()).max(1);
    let step = all.len() / k;
    let v: Vec<Bsn> = (0..k).map(|i| all[i * step]).collect();
    // A fixed permutation: multiply by a number coprime to k.
    let mut out = Vec::with_capacity(k);
    let m = (0..)
        .map(|i| 7919 + i)
        .find(|m| gcd(*m, k) == 1)
        .unwrap_or(1);
    for i in 0..k {
        out.push(v[(i * m) % k]);
    }
    out
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Opens the cached large store, building it first if it is missing or incomplete.
pub fn open_big_store(n: usize) -> Store {
    let dir = big_store_dir();
    // The marker names the schema version, so a store written by another layout is rebuilt.
    let marker = dir.join(format!(
        "bench-complete-{n}-generate-v{}",
        dkd::store::SCHEMA_VERSION
    ));
    if marker.exists() {
        return Store::open(&dir).expect("open the cached large store");
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove an incomplete large store");
    }
    eprintln!(
        "building the {n}-person store in {} (once; cached) ...",
        dir.display()
    );
    let started = Instant::now();
    let store = Store::open(&dir).expect("create the large store");
    let people = dkd::chain::demo::generate(n, today());
    let expected = big_bsns(n);
    assert!(
        people.len() == n && people.iter().zip(&expected).all(|(p, b)| p.bsn == *b),
        "demo::generate's BSN sequence changed: update common::big_bsns"
    );
    eprintln!("  generated in {:.1} s", started.elapsed().as_secs_f64());
    for (i, batch) in people.chunks(10_000).enumerate() {
        store.put_all(batch, "bench").expect("put_all");
        if (i + 1) % 10 == 0 {
            eprintln!(
                "  {} persons, {:.0} s",
                (i + 1) * 10_000,
                started.elapsed().as_secs_f64()
            );
        }
    }
    store.flush().expect("flush");
    std::fs::write(&marker, format!("{n}\n")).expect("marker");
    eprintln!(
        "built {n} persons in {:.1} s ({:.0} persons/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    store
}

/// A development PKI (`dkd certs`) in a fresh temporary directory.
pub fn dev_pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    dkd::certs::generate_dev_pki(dir.path()).expect("dev PKI");
    dir
}

/// The server's RSA key (PEM, PKCS#8 or PKCS#1) as aws-lc-rs signs with it.
pub fn rsa_key(path: &Path) -> aws_lc_rs::signature::RsaKeyPair {
    use rustls_pki_types::pem::PemObject;
    match rustls_pki_types::PrivateKeyDer::from_pem_file(path).expect("key pem") {
        rustls_pki_types::PrivateKeyDer::Pkcs8(k) => {
            aws_lc_rs::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).expect("rsa")
        }
        rustls_pki_types::PrivateKeyDer::Pkcs1(k) => {
            aws_lc_rs::signature::RsaKeyPair::from_der(k.secret_pkcs1_der()).expect("rsa")
        }
        _ => panic!("not an RSA key"),
    }
}

/// What the RSA ceilings sign and verify: the server's key, a message of about a response's
/// SignedInfo (2,048 bytes), its RSA-SHA256 signature, and the public key parsed once, as
/// `soap::dsig` keeps a signer's key in the trust cache.
pub struct RsaFixture {
    pub key: aws_lc_rs::signature::RsaKeyPair,
    pub msg: Vec<u8>,
    pub sig: Vec<u8>,
    pub public: aws_lc_rs::signature::ParsedPublicKey,
}

impl RsaFixture {
    pub fn load(key_path: &Path) -> RsaFixture {
        let key = rsa_key(key_path);
        let msg = vec![b'x'; 2048];
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            &msg,
            &mut sig,
        )
        .expect("sign");
        use aws_lc_rs::signature::KeyPair as _;
        let public = aws_lc_rs::signature::ParsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public_key().as_ref(),
        )
        .expect("public key");
        RsaFixture {
            key,
            msg,
            sig,
            public,
        }
    }
}
