use super::*;
use crate::store::{Location, Store};

fn server() -> String {
    std::env::var("DKD_TEST_PG_URL")
        .expect("DKD_TEST_PG_URL names the PostgreSQL server for the tests")
}

/// Two handles on one fresh schema, as two dkd instances would have.
fn two_instances() -> (TempSchema, Store, Store) {
    let (temp, url) = TempSchema::create(&server()).expect("schema");
    let loc = Location::Postgres { url, ca: None };
    let a = Store::open_at(&loc, true).expect("first instance migrates");
    let b = Store::open_at(&loc, false).expect("second instance finds it migrated");
    (temp, a, b)
}

#[test]
fn a_database_that_never_answers_is_unavailable_not_a_hang() {
    // Accepts connections and never says a word: connect must give up by itself.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "postgres://dkd@{}/dkd?sslmode=disable",
        silent.local_addr().expect("addr")
    );
    let e = Pg::connect(&url, None, Duration::from_millis(300), true)
        .err()
        .expect("no database there");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    let closed = "postgres://dkd@127.0.0.1:1/dkd?sslmode=disable";
    let e = Store::open_at(
        &Location::Postgres {
            url: closed.into(),
            ca: None,
        },
        true,
    )
    .err()
    .expect("nothing listens on port 1");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
}

#[test]
fn masked_urls_show_no_password() {
    assert_eq!(
        mask_url("postgres://dkd:geheim@db:5432/dkd?sslmode=require"),
        "postgres://dkd:****@db:5432/dkd?sslmode=require"
    );
    assert_eq!(mask_url("postgres://dkd@db/dkd"), "postgres://dkd@db/dkd");
    assert_eq!(
        mask_url("postgres://a:b@c@db/dkd"),
        "postgres://a:****@db/dkd"
    );
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let (temp, url) = TempSchema::create(&server()).expect("schema");
    let loc = Location::Postgres {
        url: url.clone(),
        ca: None,
    };
    // A command does not migrate: it says what to do.
    assert!(matches!(
        Store::open_at(&loc, false),
        Err(StoreError::SchemaBehind { found: 0, .. })
    ));
    assert_eq!(
        Store::migrate(&loc).expect("migrate"),
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    assert_eq!(Store::migrate(&loc).expect("again"), Vec::<u32>::new());
    let pg = Pg::connect(&url, None, Duration::from_secs(5), false).expect("connect");
    pg.execute(
        "INSERT INTO dkd_schema (version) VALUES ($1)",
        vec![Box::new(i32::try_from(SCHEMA_VERSION + 1).expect("small"))],
    )
    .expect("a later dkd's migration");
    for migrate in [false, true] {
        assert!(matches!(
            Store::open_at(&loc, migrate),
            Err(StoreError::SchemaAhead { .. })
        ));
    }
    drop(temp);
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn two_instances_share_identity_entries_outbox_and_audit_trail() {
    let (_temp, a, b) = two_instances();
    let a = a.with_outbox(true);
    assert_eq!(
        a.identity("gemeente").expect("id"),
        b.identity("ib").expect("the same id")
    );
    let p = crate::store::tests::person("123456782", &["0363"]);
    a.put(&p, "import:a.csv").expect("put on a");
    // Answered by the other at once: no lock, no detour.
    assert_eq!(b.get(&p.bsn).expect("get on b"), Some(p.clone()));
    assert_eq!(b.outbox_pending(10).expect("pending").len(), 1);
    let rec = |at: i64, id: &str| crate::store::AuditRecord {
        at,
        operation: "GSDReintegratieInfo".into(),
        tls_oin: None,
        from_oin: None,
        message_id: Some(id.into()),
        bsn: None,
        outcome: "found".into(),
        code: None,
    };
    assert!(a.queue_audit(rec(1_700_000_000, "from-a")));
    assert!(b.queue_audit(rec(1_700_000_001, "from-b")));
    b.flush_audit().expect("flush b");
    let ids: Vec<String> = a
        .audit_since(0)
        .map(|r| r.expect("record").message_id.unwrap_or_default())
        .collect();
    assert_eq!(ids, ["from-a", "from-b"]);
    assert_eq!(b.prune_audit(1_700_000_001).expect("prune"), 1);
    assert_eq!(a.audit_since(0).count(), 1);
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn one_instance_at_a_time_sends_the_outbox_until_its_lease_runs_out() {
    let (_temp, a, b) = two_instances();
    let secs = crate::store::outbox::LEASE_SECS;
    assert!(a.outbox_lease(secs).expect("a takes it"));
    assert!(!b.outbox_lease(secs).expect("b waits"));
    assert!(a.outbox_lease(secs).expect("a renews it"));
    // a died: once its lease has run out, b takes over (and a, back, waits).
    let later = time::OffsetDateTime::now_utc().unix_timestamp() + secs as i64 + 1;
    assert!(b.outbox_lease_at(later, 60).expect("b takes over"));
    assert!(!a.outbox_lease_at(later, 60).expect("a waits now"));
}

#[test]
#[cfg_attr(
    dkd_missing = "postgres",
    ignore = "needs postgres: DKD_TEST_PG_URL (bash .ci/pg-cluster.sh start DIR)"
)]
fn change_sets_of_two_instances_are_serialised_and_all_or_nothing() {
    let (_temp, a, b) = two_instances();
    let p = crate::store::tests::person("123456782", &["0363"]);
    let mut open = a.changes("import:a.csv");
    open.upsert(&p).expect("upsert");
    // The other instance's change set waits for this one's commit, then sees its entry
    // (without the lock both would count the person as added).
    let other = std::thread::spawn(move || {
        let c = b.put(&p, "import:b.csv").expect("put on b");
        (c, b)
    });
    // Longer than the store's deadline for a statement: a change set waits for another
    // instance's as long as that one takes (a large import), it does not fail.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!other.is_finished(), "b's change set must wait for a's");
    assert_eq!(open.commit().expect("commit").added, 1);
    let (c, b) = other.join().expect("join");
    assert_eq!((c.added, c.unchanged), (0, 1));
    // A change set that is dropped leaves nothing, in either instance's view.
    let q = crate::store::tests::person("111222333", &["0363"]);
    let mut dropped = b.changes("admin");
    dropped.upsert(&q).expect("upsert");
    drop(dropped);
    assert_eq!(a.get(&q.bsn).expect("get"), None);
    assert_eq!(b.len(), 1);
}
