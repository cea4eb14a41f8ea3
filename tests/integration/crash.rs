//! Crash safety: `dkd import` killed with SIGKILL at several points leaves the store with either
//! the previous or the new state, never a mix.

use dkd::store::Store;
use std::process::{Command, Stdio};
use std::time::Instant;

fn dkd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DKD_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn sigkill_during_import_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let people = dkd::demo::generate(20_000, time::OffsetDateTime::now_utc().date());
    let mut csv = String::new();
    dkd::import::csv_format::write(&people, &mut csv);
    let file = dir.path().join("big.csv");
    std::fs::write(&file, csv).expect("write");
    let import = |store: &std::path::Path| {
        dkd()
            .arg("import")
            .arg(&file)
            .env("DKD_STORE__PATH", store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // The complete result, and how long it takes.
    let reference = dir.path().join("reference");
    let started = Instant::now();
    let status = import(&reference).wait().expect("wait");
    let full = started.elapsed();
    assert!(status.success(), "reference import: {status:?}");
    let expected = Store::open(&reference).expect("open").len();
    assert!(expected > 15_000, "{expected}");

    let mut killed_mid_run = 0;
    for (i, frac) in [0.2, 0.5, 0.8, 0.9, 0.97].iter().enumerate() {
        let store_dir = dir.path().join(format!("s{i}"));
        let mut child = import(&store_dir);
        std::thread::sleep(full.mul_f64(*frac));
        if child.try_wait().expect("try_wait").is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        let store = match Store::open(&store_dir) {
            Ok(s) => s,
            // Killed before the store was even created.
            Err(_) if !store_dir.exists() => continue,
            Err(e) => panic!("store unreadable after SIGKILL at {frac}: {e}"),
        };
        let n = store.len();
        assert!(
            n == 0 || n == expected,
            "SIGKILL at {frac} of the run left {n} entries (expected 0 or {expected})"
        );
        if n == expected {
            for p in people.iter().step_by(997) {
                assert!(store.get(&p.bsn).expect("readable").is_some());
            }
        }
        let mutations = store.mutations_since(0).count();
        assert!(
            mutations == 0 || mutations == expected,
            "mutations {mutations} do not match entries {n}"
        );
    }
    assert!(
        killed_mid_run >= 2,
        "the kills must land while the import runs (only {killed_mid_run} did)"
    );
}
