/// Defines a store test once and runs it on both backends, `NAME::sled` and `NAME::pg` (the
/// latter ignored without `DKD_TEST_PG_URL`, a failure with `DKD_REQUIRE_EXTERNAL=1`).
#[cfg(test)]
macro_rules! on_both {
    (fn $name:ident($s:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($s: $crate::store::Store) $body
            #[test]
            fn sled() {
                body($crate::store::Store::temporary().expect("store"))
            }
            #[test]
            #[cfg_attr(
                dkd_missing = "postgres",
                ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
            )]
            fn pg() {
                body($crate::store::tests::pg_store())
            }
        }
    };
}

/// A store test for sled only (what PostgreSQL does not have: the undo journal, the file lock).
#[cfg(test)]
macro_rules! on_sled {
    (fn $name:ident($s:ident) $body:block) => {
        #[test]
        fn $name() {
            let $s = $crate::store::Store::temporary().expect("store");
            $body
        }
    };
}

#[test]
fn queued_audit_records_are_read_back_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let record = |i: i64| audit::tests::record(1_700_000_000 + i, &format!("urn:uuid:{i}"));
    {
        let store = open_when_free(dir.path()).expect("open");
        for i in 0..3 {
            assert!(store.queue_audit(record(i)));
        }
        // A reader sees what was queued before it asked.
        assert_eq!(store.audit_since(0).count(), 3);
        for i in 3..5 {
            assert!(store.queue_audit(record(i)));
        }
        // Dropped without a flush: the writer finishes its queue and lets go of the files.
    }
    let store = open_when_free(dir.path()).expect("reopen: not locked");
    let ids: Vec<_> = store
        .audit_since(0)
        .map(|r| r.expect("record").message_id.unwrap_or_default())
        .collect();
    assert_eq!(
        ids,
        (0..5).map(|i| format!("urn:uuid:{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn audit_records_an_older_dkd_kept_in_sled_are_read_first_and_pruned() {
    let dir = tempfile::tempdir().expect("tmp");
    let record = audit::tests::record;
    let store = open_when_free(dir.path()).expect("open");
    let old = record(1_600_000_000, "legacy");
    store
        .index
        .insert(
            time_key(P_AUDIT, i128::from(old.at) * 1_000_000_000),
            serde_json::to_vec(&old).expect("json"),
        )
        .expect("insert");
    assert!(store.queue_audit(record(1_700_000_000, "file")));
    let ids = |s: &Store| -> Vec<String> {
        s.audit_since(0)
            .map(|r| r.expect("record").message_id.unwrap_or_default())
            .collect()
    };
    assert_eq!(ids(&store), ["legacy", "file"]);
    assert_eq!(store.prune_audit(1_650_000_000).expect("prune"), 1);
    assert_eq!(ids(&store), ["file"]);
}

on_both! {
    fn a_sweep_waits_for_an_open_import_instead_of_undoing_its_renewal(s) {
        let s = s.with_outbox(true);
        let mut old = person("123456782", &["0363"]);
        for r in &mut old.atl_relaties {
            for p in &mut r.provisions {
                p.start = Datum::parse("20180101").expect("date");
                p.end = Some(Datum::parse("20200101").expect("date"));
            }
        }
        s.put(&old, "t").expect("put");
        let renewed = person("123456782", &["0363"]);
        let import = {
            let mut c = s.changes("import:renewal.csv");
            c.upsert(&renewed).expect("upsert");
            c
        };
        let sweeper = {
            let s = s.clone();
            std::thread::spawn(move || {
                let today = time::macros::date!(2026 - 11 - 22);
                crate::gemeente::service::sweep(&s, 730, true, today, false).expect("sweep")
            })
        };
        // Without serialisation the sweep reads the expired entry now and removes it after the
        // renewal is committed.
        std::thread::sleep(std::time::Duration::from_millis(200));
        import.commit().expect("commit");
        let report = sweeper.join().expect("join");
        assert_eq!(report.removed, 0);
        assert_eq!(s.get(&renewed.bsn).expect("get"), Some(renewed.clone()));
        let last = s
            .outbox_pending(10)
            .expect("pending")
            .pop()
            .expect("queued");
        assert_eq!(last.ind, IndDkd::Present);
    }
}

use super::*;
use crate::suwiml::model::{AtlRelatie, Bron, Provision};
use crate::suwiml::verwijsindex::IndDkd;

/// A store in a fresh schema on the test server (`DKD_TEST_PG_URL`), dropped afterwards.
pub(crate) fn pg_store() -> Store {
    let url = std::env::var("DKD_TEST_PG_URL")
        .expect("DKD_TEST_PG_URL names the PostgreSQL server for the tests");
    Store::temporary_pg(&url).expect("a temporary schema on DKD_TEST_PG_URL")
}
use crate::suwiml::types::{Datum, Percentage};

/// Opens the store at `path` once an earlier handle in this process has let go of it: sled
/// releases its file lock when the last of its background threads ends, which can be just
/// after the handle is dropped (a reopen in CI found it still locked).
fn open_when_free(path: &Path) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(crate) fn person(bsn: &str, gemeenten: &[&str]) -> Person {
    Person {
        bsn: Bsn::parse(bsn).expect("valid bsn"),
        voornamen: Some("Jan".into()),
        voorletters: Some("J".into()),
        voorvoegsel: None,
        achternaam: Some("Jansen".into()),
        geslacht: Some("1".into()),
        geboortedat: Some(Datum::parse("19800101").expect("date")),
        bron: Some(Bron::gemeente(gemeenten[0])),
        atl_relaties: gemeenten
            .iter()
            .map(|g| AtlRelatie {
                arbeidsvermogen: None,
                doel_rv: None,
                provisions: vec![Provision {
                    registratienr: Some("R1".into()),
                    start: Datum::parse("20240101").expect("date"),
                    end: None,
                    type_code: Some("24".into()),
                    description: None,
                    loonwaarde: Some(Percentage::from_hundredths(4550).expect("pct")),
                }],
                bron: Bron::gemeente(g),
            })
            .collect(),
    }
}

#[test]
fn merge_takes_identity_from_the_newest_entry_and_relaties_from_all() {
    let entry = |g: &str, at: i64, name: &str| {
        let mut p = person("123456782", &[g]);
        p.achternaam = Some(name.into());
        Entry {
            gemeente: g.into(),
            person: p,
            mutated_at: at,
        }
    };
    assert_eq!(merge(Vec::new()), None);
    let one = entry("0363", 5, "Alleen");
    assert_eq!(merge(vec![one.clone()]), Some(one.person));
    let merged = merge(vec![
        entry("0001", 10, "Oud"),
        entry("0002", 30, "Nieuwst"),
        entry("0003", 20, "Tussen"),
    ])
    .expect("merged");
    assert_eq!(merged.achternaam.as_deref(), Some("Nieuwst"));
    let partijen: Vec<_> = merged
        .atl_relaties
        .iter()
        .map(|r| r.bron.partij.as_str())
        .collect();
    assert_eq!(partijen, ["0001", "0002", "0003"]);
    // Equal times: the later entry in gemeentecode order, as before.
    let tie = merge(vec![entry("0001", 7, "Eerste"), entry("0002", 7, "Tweede")]).expect("tie");
    assert_eq!(tie.achternaam.as_deref(), Some("Tweede"));
}

on_both! {
    fn put_then_get_round_trips_across_gemeenten(s) {
        let s = s;
        let p = person("123456782", &["0363", "0599"]);
        let c = s.put(&p, "test").expect("put");
        assert_eq!(c.added, 2);
        assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
        assert_eq!(s.entries(&p.bsn).expect("entries").len(), 2);
        assert_eq!(s.gemeente_bsns("0599").expect("bsns"), vec![p.bsn]);
        assert_eq!(
            s.get(&Bsn::parse("111222333").expect("bsn")).expect("get"),
            None
        );
    }
}

on_both! {
    fn same_data_twice_records_no_mutation(s) {
        let s = s;
        let p = person("123456782", &["0363"]);
        s.put(&p, "a").expect("put");
        let c = s.put(&p, "b").expect("put again");
        assert_eq!((c.added, c.changed, c.unchanged), (0, 0, 1));
        assert_eq!(s.mutations_since(0).count(), 1);
    }
}

on_both! {
    fn invalid_record_is_refused_and_nothing_written(s) {
        let s = s;
        let mut p = person("123456782", &["0363"]);
        p.atl_relaties[0].provisions[0].end = Some(Datum::parse("20230101").expect("date"));
        assert!(matches!(s.put(&p, "t"), Err(StoreError::Invalid(_))));
        assert!(s.is_empty());
        let good = person("111222333", &["0363"]);
        assert!(s.put_all(&[good, p], "t").is_err());
        assert!(s.is_empty(), "a refused batch writes nothing");
    }
}

on_both! {
    fn remove_archives_or_purges_and_records_the_change(s) {
        let s = s;
        let p = person("123456782", &["0363", "0599"]);
        s.put(&p, "t").expect("put");
        let mut c = s.changes("sweep");
        assert!(c.remove(&p.bsn, "0363", true).expect("remove"));
        c.commit().expect("commit");
        let left = s.get(&p.bsn).expect("get").expect("still in 0599");
        assert_eq!(left.atl_relaties.len(), 1);
        assert_eq!(s.index.scan_prefix([P_ARCHIVE]).count(), 1);
        let kinds: Vec<Change> = s.mutations_since(0).map(|m| m.expect("m").change).collect();
        assert_eq!(kinds, vec![Change::Added, Change::Added, Change::Removed]);
    }
}

fn dump(s: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    s.index
        .iter()
        .map(|kv| {
            let (k, v) = kv.expect("read");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn demo(n: usize) -> Vec<Person> {
    crate::chain::demo::generate(n, time::macros::date!(2026 - 11 - 22))
}

/// A change set over a filled store that adds, changes, purges and archives: every kind of key.
/// With `stop`, its writer stops after that many chunks, as a crash would.
fn big_change_set<'s>(s: &'s Store, people: &[Person], stop: Option<u64>) -> ChangeSet<'s> {
    let mut c = s.changes("import:big.csv");
    if let Some(n) = stop {
        if let kv::Writes::Sled(w) = &mut c.writes {
            w.stop_after(n);
        }
    }
    for (i, p) in people.iter().enumerate() {
        match i % 4 {
            0 => {
                let mut q = p.clone();
                q.voornamen = Some("Anders".into());
                c.upsert(&q).expect("upsert");
            }
            1 => {
                for (g, _) in split_by_gemeente(p) {
                    if i % 3 == 0 {
                        c.remove_later(&p.bsn, &g, i % 8 == 1).expect("remove");
                    } else {
                        c.remove(&p.bsn, &g, i % 8 == 1).expect("remove");
                    }
                }
            }
            _ => c.upsert(p).expect("upsert"),
        }
    }
    for p in demo(people.len() + 1500).iter().skip(people.len()) {
        c.upsert(p).expect("upsert new");
    }
    c
}

/// The index with what depends on the clock or the id sequence taken out: mutation times in
/// entry values and in mutation and outbox records, and the keys of those records (time,
/// sequence number), which become their position.
fn normalised(s: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let untimed = |v: &[u8]| {
        let mut j: serde_json::Value = serde_json::from_slice(v).expect("JSON record");
        match j.as_array_mut() {
            Some(list) => list.iter_mut().for_each(|m| m["at"] = 0.into()),
            None => j["at"] = 0.into(),
        }
        serde_json::to_vec(&j).expect("json")
    };
    let mut seq = std::collections::HashMap::<u8, u64>::new();
    dump(s)
        .into_iter()
        .map(|(k, v)| match k[0] {
            P_RECORD | P_ARCHIVE => {
                let mut v = v;
                v[..8].fill(0);
                (k, v)
            }
            // `o`: pending outbox entries.
            P_MUTATION | b'o' => {
                let n = seq.entry(k[0]).or_default();
                *n += 1;
                (vec![k[0], *n as u8, (*n >> 8) as u8], untimed(&v))
            }
            _ => (k, v),
        })
        .collect()
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn a_large_change_set_on_postgres_takes_a_round_trip_per_block_not_per_row() {
    let s = pg_store().with_outbox(true);
    let kv::Db::Pg(pg) = &s.db else {
        unreachable!("a PostgreSQL store")
    };
    let people = demo(6000);
    let entries: usize = people.iter().map(|p| split_by_gemeente(p).len()).sum();
    let removed = std::cell::Cell::new(0);
    let trips = |f: &dyn Fn()| {
        let before = pg.round_trips();
        f();
        pg.round_trips() - before
    };
    // Every person new: compare, write, queue an outbox entry for each.
    let first = trips(&|| {
        let c = s.put_all(&people, "t").expect("put_all");
        assert_eq!(c.added as usize, entries);
    });
    // Half changed, a quarter removed (as an import removes: held back with the upserts).
    let second = trips(&|| {
        let mut c = s.changes("import:again.csv");
        for (i, p) in people.iter().enumerate() {
            match i % 4 {
                0 => {
                    for (g, _) in split_by_gemeente(p) {
                        c.remove_later(&p.bsn, &g, true).expect("remove");
                    }
                }
                1 | 2 => {
                    let mut q = p.clone();
                    q.voornamen = Some("Anders".into());
                    c.upsert(&q).expect("upsert");
                }
                _ => c.upsert(p).expect("upsert"),
            }
        }
        let n = c.commit().expect("commit");
        assert!(n.removed > 1000 && n.changed > 2000 && n.unchanged > 1000);
        removed.set(n.removed as usize);
    });
    // Row at a time this was over 6,000 each (a read per entry, an outbox number per entry).
    assert!(first < 40, "{first} round trips");
    assert!(second < 40, "{second} round trips");
    assert_eq!(
        s.outbox_pending(20_000).expect("outbox").len(),
        entries + removed.get()
    );
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn both_backends_turn_the_same_import_into_the_same_keys_and_values() {
    // Large enough for several compare blocks and staged segments on PostgreSQL, with JSON-era
    // entries (compared as persons), changes, removals with and without archive, newcomers.
    let people = demo(9000);
    let apply = |s: Store| {
        let s = s.with_outbox(true);
        s.put_all(&people, "t").expect("put_all");
        for p in people.iter().take(40) {
            for (g, part) in split_by_gemeente(p) {
                put_json_era(&s, &part, &g);
            }
        }
        let mut c = big_change_set(&s, &people, None);
        // Removed after its upsert: nothing. Removed before it, not stored: added.
        let extra = demo(people.len() + 1600).pop().expect("one more");
        for (who, g) in [(&people[6], "remove_later"), (&extra, "then upsert")] {
            for (gemeente, _) in split_by_gemeente(who) {
                c.remove_later(&who.bsn, &gemeente, true).expect(g);
            }
        }
        c.upsert(&extra)
            .expect("upsert after a removal that found nothing");
        let counts = c.commit().expect("commit");
        (counts, normalised(&s))
    };
    let (sled_counts, sled) = apply(Store::temporary().expect("store"));
    let (pg_counts, pg) = apply(pg_store());
    assert!(sled_counts.added >= 1500 && sled_counts.changed > 0 && sled_counts.removed > 0);
    assert!(sled_counts.unchanged > 0);
    assert_eq!(sled_counts, pg_counts);
    assert!(sled.iter().any(|(k, _)| k[0] == b'o'));
    assert!(sled.iter().any(|(k, _)| k[0] == P_ARCHIVE));
    assert_eq!(sled.len(), pg.len());
    for (a, b) in sled.iter().zip(&pg) {
        assert_eq!(a, b, "key {:?}", String::from_utf8_lossy(&a.0));
    }
}

#[test]
fn a_large_change_set_is_applied_whole_and_leaves_no_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open_when_free(dir.path()).expect("open");
    let people = demo(3000);
    let c = s.put_all(&people, "t").expect("put_all");
    assert!(c.added > SMALL_OPS, "must take the journaled path");
    assert_eq!(s.len() as u64, c.added);
    let counts = big_change_set(&s, &people, None).commit().expect("commit");
    assert!(counts.added >= 1500 && counts.changed > 0 && counts.removed > 0);
    assert!(s.journal.is_empty());
    assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
    let anders = &people[0];
    assert_eq!(
        s.get(&anders.bsn).expect("get").and_then(|p| p.voornamen),
        Some("Anders".into())
    );
    assert!(s.index.scan_prefix([P_ARCHIVE]).count() > 0);
}

// sled only: PostgreSQL has no undo journal (a change set is a transaction).
on_sled! {
    fn a_change_set_after_an_unfinished_roll_back_finishes_it_first(s) {
        let s = s;
        let people = demo(3000);
        s.put_all(&people, "t").expect("put_all");
        let before: Vec<_> = people.iter().map(|p| s.get(&p.bsn).expect("get")).collect();
        // What a run-time roll-back that failed half-way leaves: the marker and undo records.
        assert!(crash_big_change_set(&s, &people, Some(2)) > 0);
        assert!(s.meta.get(KEY_JOURNAL).expect("meta").is_some());
        let newcomer = demo(3001).pop().expect("one more");
        s.put(&newcomer, "admin").expect("put");
        assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
        for (p, was) in people.iter().zip(before) {
            assert_eq!(s.get(&p.bsn).expect("get"), was, "{:?} not restored", p.bsn);
        }
        assert_eq!(s.get(&newcomer.bsn).expect("get"), Some(newcomer.clone()));
    }
}

on_both! {
    fn a_large_change_set_shows_as_writing_and_holds_off_a_resend_until_its_commit(s) {
        let s = s.with_outbox(true);
        let people = demo(3000);
        s.put_all(&people, "t").expect("put_all");
        assert!(!s.is_writing());
        let c = big_change_set(&s, &people, None);
        // Journaled: lookups would wait for the commit, so the server must not do them inline.
        // On PostgreSQL lookups read the last commit meanwhile: nothing waits.
        assert_eq!(s.is_writing(), !s.is_shared());
        let resend = {
            let s = s.clone();
            std::thread::spawn(move || s.outbox_enqueue_all().expect("enqueue all"))
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !resend.is_finished(),
            "a full resend must wait for the open change set"
        );
        c.commit().expect("commit");
        assert!(!s.is_writing());
        // It walked the committed index: as many "present" updates as entries.
        assert_eq!(resend.join().expect("join"), s.len() as u64);
    }
}

/// Builds the big change set and ends it as a crash would; returns the chunks written.
fn crash_big_change_set(s: &Store, people: &[Person], stop: Option<u64>) -> u64 {
    let mut c = big_change_set(s, people, stop);
    c.pack_mutations().expect("pack");
    match std::mem::replace(&mut c.writes, kv::Writes::Pg(kv::pg::Writes::inert())) {
        kv::Writes::Sled(w) => w.crash(),
        kv::Writes::Pg(_) => 0,
    }
}

#[test]
fn an_interrupted_commit_is_rolled_back_at_open_whatever_chunk_it_reached() {
    let people = demo(2500);
    let total_chunks = {
        let s = Store::temporary().expect("store");
        s.put_all(&people, "t").expect("put_all");
        crash_big_change_set(&s, &people, None)
    };
    assert!(total_chunks >= 4, "{total_chunks}");
    for stop in [0, 1, total_chunks / 2, total_chunks] {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = {
            let s = open_when_free(dir.path()).expect("open");
            s.put_all(&people, "t").expect("put_all");
            let before = dump(&s);
            let done = crash_big_change_set(&s, &people, Some(stop));
            assert_eq!(done, stop);
            if stop > 0 {
                assert_ne!(dump(&s), before, "chunks were written");
            }
            s.flush().expect("flush");
            before
        };
        let s = open_when_free(dir.path()).expect("reopen");
        assert_eq!(
            s.recovery(),
            Some(&Recovery {
                source: "import:big.csv".into(),
                chunks: stop
            })
        );
        assert!(
            dump(&s) == before,
            "stopped after {stop} chunks: not the old state"
        );
        assert!(s.journal.is_empty());
        drop(s);
        let again = open_when_free(dir.path()).expect("third open");
        assert_eq!(again.recovery(), None);
        assert!(dump(&again) == before);
    }
}

on_both! {
    fn a_change_set_that_fails_half_way_is_rolled_back_at_once(s) {
        let s = s;
        let people = demo(2500);
        s.put_all(&people, "t").expect("put_all");
        let before = dump(&s);
        let mut c = big_change_set(&s, &people, None);
        // Chunks were written while it was built (the writer may still be at work; on
        // PostgreSQL into its open transaction).
        assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta").is_some(), !s.is_shared());
        // people[2] was upserted already: a second time is an error.
        assert!(matches!(c.upsert(&people[2]), Err(StoreError::Invalid(_))));
        drop(c);
        assert!(dump(&s) == before, "not the old state");
        assert!(s.journal.is_empty());
        assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
        // The gate is free again.
        assert!(s.get(&people[0].bsn).expect("get").is_some());
    }
}

on_both! {
    fn discarded_writes_are_rolled_back_and_the_counts_stay(s) {
        let s = s;
        let people = demo(2500);
        s.put_all(&people, "t").expect("put_all");
        let before = dump(&s);
        let mut c = big_change_set(&s, &people, None);
        let counts = c.counts().expect("counts");
        c.discard_writes().expect("discard");
        assert!(dump(&s) == before, "rolled back at once");
        c.upsert(&demo(4100)[4050]).expect("upsert after discard");
        let after = c.commit().expect("commit writes nothing");
        assert_eq!(after.added, counts.added + 1);
        assert!(dump(&s) == before, "nothing written");
        assert_eq!(s.meta.get(KEY_JOURNAL).expect("meta"), None);
    }
}

on_both! {
    fn a_key_written_twice_rolls_back_to_its_value_before_the_commit(s) {
        let s = s;
        s.index.insert(b"zkey", b"original").expect("insert");
        let mut w = Writes::new(&s, "test");
        w.insert(b"zkey", b"first").expect("op");
        for i in 0..3000u32 {
            w.insert(&i.to_be_bytes(), b"x").expect("op");
        }
        w.remove(b"zkey").expect("op");
        let chunks = w.crash();
        assert!(chunks >= 3);
        assert_eq!(s.index.get(b"zkey").expect("get"), None);
        s.roll_back().expect("roll back");
        assert_eq!(
            s.index.get(b"zkey").expect("get").as_deref(),
            Some(&b"original"[..])
        );
        assert_eq!(s.index.len(), 1);
    }
}

#[test]
fn a_version_3_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open_when_free(dir.path()).expect("open");
        put_json_era(&s, &person("123456782", &["0363"]), "0363");
        s.meta
            .insert(KEY_SCHEMA_VERSION, 3u32.to_be_bytes())
            .expect("set");
        s.flush().expect("flush");
    }
    let s = open_when_free(dir.path()).expect("v3 opens");
    assert_eq!(s.len(), 1);
    let p = person("123456782", &["0363"]);
    assert_eq!(s.get(&p.bsn).expect("get"), Some(p));
    assert_eq!(
        s.meta.get(KEY_SCHEMA_VERSION).expect("get").as_deref(),
        Some(&SCHEMA_VERSION.to_be_bytes()[..])
    );
}

/// The payload of an entry as stored, without its mutation time.
fn stored_payload(s: &Store, bsn: &Bsn, gemeente: &str) -> Vec<u8> {
    let v = s
        .index
        .get(record_key(bsn, gemeente))
        .expect("read")
        .expect("stored");
    split_value(&v).1.to_vec()
}

/// An entry as a dkd before schema 5 wrote it: JSON, with its mutation time.
fn put_json_era(s: &Store, p: &Person, gemeente: &str) {
    s.put_raw(&p.bsn, gemeente, &serde_json::to_vec(p).expect("json"))
        .expect("raw");
}

on_both! {
    fn entries_are_written_in_the_binary_format(s) {
        let s = s;
        let p = person("123456782", &["0363", "0599"]);
        s.put(&p, "t").expect("put");
        for g in ["0363", "0599"] {
            let payload = stored_payload(&s, &p.bsn, g);
            assert_eq!(payload.first(), Some(&record::TAG_V1), "{g}");
        }
        // What a large (journaled) change set writes, too.
        let people = demo(1500);
        s.put_all(&people, "t").expect("put_all");
        for e in s.index.scan_prefix([P_RECORD]) {
            let (_, v) = e.expect("read");
            assert_eq!(split_value(&v).1.first(), Some(&record::TAG_V1));
        }
    }
}

on_both! {
    fn a_json_entry_of_an_older_dkd_still_reads(s) {
        let s = s;
        let p = person("123456782", &["0363"]);
        let mut q = person("111222333", &["0599"]);
        q.voornamen = Some("Zoë 😀".into());
        q.atl_relaties[0].provisions[0].end = Some(Datum::parse("20261231").expect("date"));
        put_json_era(&s, &p, "0363");
        put_json_era(&s, &q, "0599");
        assert_eq!(stored_payload(&s, &p.bsn, "0363").first(), Some(&b'{'));
        assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
        assert_eq!(s.get(&q.bsn).expect("get"), Some(q.clone()));
        let all: Vec<Person> = s.all_entries().map(|e| e.expect("entry").person).collect();
        assert_eq!(all, vec![q, p]);
    }
}

on_both! {
    fn a_payload_of_neither_format_is_corrupt_and_says_why(s) {
        let s = s;
        let bsn = Bsn::parse("123456782").expect("bsn");
        for (raw, why) in [
            (&b"\x02abc"[..], "unknown record format (first byte 0x02"),
            (&b""[..], "empty record"),
            (&br#"{"bsn":"#[..], "JSON record"),
            (&b"\x01\x05"[..], "binary record: option tag 0x05 at byte 1"),
        ] {
            s.put_raw(&bsn, "0363", raw).expect("raw");
            match s.get(&bsn) {
                Err(StoreError::Corrupt { suffix, reason }) => {
                    assert_eq!(suffix, "782");
                    assert!(reason.contains(why), "{reason:?} lacks {why:?}");
                }
                other => panic!("{raw:?}: {other:?}"),
            }
            assert!(s.all_entries().next().is_some_and(|e| e.is_err()));
        }
    }
}

on_both! {
    fn a_json_entry_reimported_unchanged_records_nothing(s) {
        let s = s.with_outbox(true);
        let p = person("123456782", &["0363", "0599"]);
        for (g, part) in split_by_gemeente(&p) {
            put_json_era(&s, &part, &g);
        }
        let c = s.put(&p, "import:same.csv").expect("put");
        assert_eq!((c.added, c.changed, c.unchanged), (0, 0, 2));
        assert_eq!(s.mutations_since(0).count(), 0, "no mutation recorded");
        assert!(s.outbox_pending(10).expect("outbox").is_empty());
        // Left as it was: nothing was written.
        assert_eq!(stored_payload(&s, &p.bsn, "0363").first(), Some(&b'{'));
        assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
    }
}

on_both! {
    fn a_json_entry_with_other_content_is_changed_and_rewritten_in_binary(s) {
        let s = s.with_outbox(true);
        let p = person("123456782", &["0363"]);
        put_json_era(&s, &p, "0363");
        let mut q = p.clone();
        q.achternaam = Some("Pietersen".into());
        let c = s.put(&q, "import:changed.csv").expect("put");
        assert_eq!((c.added, c.changed, c.unchanged), (0, 1, 0));
        assert_eq!(
            stored_payload(&s, &p.bsn, "0363").first(),
            Some(&record::TAG_V1)
        );
        assert_eq!(s.get(&p.bsn).expect("get"), Some(q.clone()));
        // And from now on the byte comparison finds it unchanged.
        let c = s.put(&q, "import:changed.csv").expect("put");
        assert_eq!(c.unchanged, 1);
        assert_eq!(s.mutations_since(0).count(), 1);
    }
}

#[test]
fn a_version_4_store_opens_in_place_and_its_json_entries_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = person("123456782", &["0363"]);
    let before = {
        let s = open_when_free(dir.path()).expect("open");
        put_json_era(&s, &p, "0363");
        s.meta
            .insert(KEY_SCHEMA_VERSION, 4u32.to_be_bytes())
            .expect("set");
        s.flush().expect("flush");
        dump(&s)
    };
    let s = open_when_free(dir.path()).expect("v4 opens");
    assert!(dump(&s) == before, "no entry rewritten");
    assert_eq!(s.get(&p.bsn).expect("get"), Some(p.clone()));
    // A v4 dkd, which would take the binary entries for corrupt ones, now refuses the store.
    assert_eq!(
        s.meta.get(KEY_SCHEMA_VERSION).expect("get").as_deref(),
        Some(&5u32.to_be_bytes()[..])
    );
}

#[test]
fn reopen_keeps_data_and_refuses_foreign_schema_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open_when_free(dir.path()).expect("open");
        s.put(&person("123456782", &["0363"]), "t").expect("put");
        s.flush().expect("flush");
    }
    {
        let s = open_when_free(dir.path()).expect("reopen");
        assert_eq!(s.len(), 1);
        s.meta
            .insert(KEY_SCHEMA_VERSION, 99u32.to_be_bytes())
            .expect("set");
        s.flush().expect("flush");
    }
    assert!(matches!(
        open_when_free(dir.path()),
        Err(StoreError::SchemaVersion { found: 99 })
    ));
    // Nor does it open a store of the next version, or of one before the upgradable ones.
    for found in [SCHEMA_VERSION + 1, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open_when_free(dir.path()).expect("open");
        s.meta
            .insert(KEY_SCHEMA_VERSION, found.to_be_bytes())
            .expect("set");
        s.flush().expect("flush");
        drop(s);
        match open_when_free(dir.path()) {
            Err(e @ StoreError::SchemaVersion { .. }) => assert!(
                e.to_string()
                    .contains(&format!("version {found} is not supported")),
                "{e}"
            ),
            Err(e) => panic!("{found}: {e}"),
            Ok(_) => panic!("version {found} opened"),
        }
    }
}
