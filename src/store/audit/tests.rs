use super::*;

/// An answered GSDReintegratieInfo at `at` with MessageID `id`.
pub(crate) fn record(at: i64, id: &str) -> AuditRecord {
    AuditRecord {
        at,
        operation: "GSDReintegratieInfo".into(),
        tls_oin: None,
        from_oin: None,
        message_id: Some(id.into()),
        bsn: None,
        outcome: "found".into(),
        code: None,
    }
}

fn ids(q: &AuditQueue, since: i64) -> Vec<String> {
    q.flush().expect("flush");
    q.read_since(since)
        .expect("read")
        .map(|r| r.expect("record").message_id.unwrap_or_default())
        .collect()
}

const DAY: i64 = 86_400;
const T0: i64 = 1_700_006_400; // 2023-11-15 00:00:00 UTC

#[test]
fn records_go_to_daily_files_and_are_read_by_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let q = AuditQueue::new(Some(dir.path())).expect("queue");
    for (i, at) in [T0 + 10, T0 + DAY - 1, T0 + DAY, T0 + 2 * DAY + 5]
        .iter()
        .enumerate()
    {
        assert!(q.push(record(*at, &i.to_string())));
    }
    assert_eq!(ids(&q, 0), ["0", "1", "2", "3"]);
    assert_eq!(ids(&q, T0 + DAY - 1), ["1", "2", "3"]);
    assert_eq!(ids(&q, T0 + DAY + 1), ["3"]);
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("audit"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["2023-11-15.jsonl", "2023-11-16.jsonl", "2023-11-17.jsonl"]
    );
}

#[test]
fn a_full_queue_refuses_room_and_loses_nothing_while_the_writer_stalls() {
    let dir = tempfile::tempdir().expect("tmp");
    let q = AuditQueue::new(Some(dir.path())).expect("queue");
    q.set_capacity(3);
    let hold = q.hold();
    for i in 0..3 {
        q.slot(Duration::ZERO)
            .expect("room")
            .record(record(T0 + i, &i.to_string()));
    }
    assert!(!q.status().keeps_up());
    // No room while the writer stalls, however often asked: nothing is queued past the room.
    assert!(q.slot(Duration::from_millis(10)).is_none());
    assert!(!q.push(record(T0 + 9, "refused")));
    // A slot taken and given back unused frees its room.
    drop(hold);
    let unused = q
        .slot(Duration::from_secs(60))
        .expect("room once the writer runs");
    drop(unused);
    assert_eq!(ids(&q, 0), ["0", "1", "2"]);
    assert_eq!(q.status().queued, 0);
    assert!(q.status().keeps_up());
}

#[test]
fn a_record_reaches_the_disk_without_further_traffic() {
    let dir = tempfile::tempdir().expect("tmp");
    let q = AuditQueue::new(Some(dir.path())).expect("queue");
    let synced = || q.syncs.load(std::sync::atomic::Ordering::Relaxed);
    assert!(q.push(record(T0, "a")));
    for _ in 0..100 {
        if synced() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing followed the record: the writer synced it when due, unprompted.
    let after_first = synced();
    assert!(after_first > 0, "an idle writer left a record unsynced");
    // A record within SYNC_EVERY of that sync waits for its turn...
    assert!(q.push(record(T0 + 1, "b")));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(synced(), after_first, "synced before it was due");
    // ... which comes without further traffic too.
    std::thread::sleep(SYNC_EVERY + Duration::from_millis(300));
    assert!(
        synced() > after_first,
        "an idle writer left a record unsynced"
    );
}

#[test]
fn prune_deletes_exactly_what_is_older() {
    let dir = tempfile::tempdir().expect("tmp");
    let q = AuditQueue::new(Some(dir.path())).expect("queue");
    for (i, at) in [T0 + 10, T0 + DAY + 5, T0 + DAY + 50, T0 + 2 * DAY]
        .iter()
        .enumerate()
    {
        assert!(q.push(record(*at, &i.to_string())));
    }
    // Mid-day: the first day's file goes, the second is rewritten without its first record.
    assert_eq!(q.prune(T0 + DAY + 6).expect("prune"), 2);
    assert_eq!(ids(&q, 0), ["2", "3"]);
    // Appending goes on after a prune.
    assert!(q.push(record(T0 + 2 * DAY + 1, "4")));
    assert_eq!(ids(&q, 0), ["2", "3", "4"]);
    assert_eq!(q.prune(T0 + 3 * DAY).expect("prune"), 3);
    assert!(ids(&q, 0).is_empty());
}

#[test]
fn a_line_torn_by_a_crash_is_skipped_and_cut_off_before_the_next_append() {
    let dir = tempfile::tempdir().expect("tmp");
    let audit = dir.path().join("audit");
    std::fs::create_dir_all(&audit).expect("dir");
    let full = serde_json::to_string(&record(T0 + 1, "a")).expect("json");
    std::fs::write(
        audit.join("2023-11-15.jsonl"),
        format!("{full}\n{{\"at\":17000"),
    )
    .expect("write");
    let q = AuditQueue::new(Some(dir.path())).expect("queue");
    assert_eq!(ids(&q, 0), ["a"]);
    assert!(q.push(record(T0 + 2, "b")));
    assert_eq!(ids(&q, 0), ["a", "b"]);
    let text = std::fs::read_to_string(audit.join("2023-11-15.jsonl")).expect("read");
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn a_corrupt_line_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let audit = dir.path().join("audit");
    std::fs::create_dir_all(&audit).expect("dir");
    std::fs::write(audit.join("2023-11-15.jsonl"), "not json\n").expect("write");
    let q = AuditQueue::new(Some(dir.path())).expect("queue");
    let err = q
        .read_since(0)
        .expect("read")
        .next()
        .expect("one item")
        .expect_err("corrupt");
    assert!(err.to_string().contains("2023-11-15.jsonl line 1"), "{err}");
}
