//! The SQLite store against a real database in a temporary directory: the behaviour every
//! backend shares (`tenken-store-conformance`), then what only this backend has (group
//! commit, blob files, migrations of data written by earlier releases).

use std::sync::Arc;

use std::sync::atomic::Ordering;

use tenken_model::Payer;
use tenken_store::*;
use tenken_store_conformance as conformance;
use tenken_store_conformance::new_sub;
use tenken_store_sqlite::{Faults, SqliteStore, StoreOptions};

fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    (dir, store)
}

#[test]
fn acceptance_conforms_and_survives_a_reopen() {
    let (dir, store) = fresh();
    conformance::check_acceptance(&store);
    let all = store.list(&ListFilter { limit: 10, ..Default::default() }).unwrap();
    drop(store);
    // Reopen: everything acknowledged is still there, byte for byte.
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.list(&ListFilter { limit: 10, ..Default::default() }).unwrap(), all);
    for s in &all {
        assert!(!store.bytes(&s.digest).unwrap().is_empty());
    }
}

#[test]
fn claims_conform() {
    conformance::check_claims(&fresh().1);
}

#[test]
fn dropped_work_conforms() {
    conformance::check_dropped_work(&fresh().1);
}

#[test]
fn fairness_conforms() {
    conformance::check_fairness(&fresh().1);
}

#[test]
fn concurrent_claims_conform() {
    let (_dir, store) = fresh();
    conformance::check_concurrent_claims(vec![Arc::new(store)]);
}

#[test]
fn release_conforms() {
    conformance::check_release(&fresh().1);
}

#[test]
fn heartbeats_conform() {
    conformance::check_heartbeats(&fresh().1);
}

#[test]
fn many_writers_conform() {
    let (_dir, store) = fresh();
    conformance::check_many_writers(Arc::new(store));
}

#[test]
fn retire_race_conforms() {
    let (_dir, store) = fresh();
    conformance::check_retire_race(Arc::new(store));
}

#[test]
fn master_documents_conform() {
    conformance::check_master_documents(&fresh().1);
}

#[test]
fn restart_pinned_conforms() {
    conformance::check_restart_pinned(&fresh().1);
}

#[test]
fn a_failed_group_commit_runs_none_of_its_writes() {
    // Issue 10, defect 2: when the blob sync or BEGIN failed, every write of the group ran
    // in autocommit anyway, so a submission became durable while its client got an error.
    for fault in ["blob-sync", "begin"] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::default());
        let options = StoreOptions { faults: faults.clone(), ..StoreOptions::default() };
        let store = SqliteStore::open(dir.path(), options).unwrap();
        match fault {
            "blob-sync" => faults.fail_blob_sync.store(1, Ordering::SeqCst),
            _ => faults.fail_begin.store(1, Ordering::SeqCst),
        }
        let e = store.accept(new_sub("1234567", "2026-11", b"refused", None)).unwrap_err();
        assert!(e.to_string().contains("injected"), "{fault}: {e}");
        let all = store.list(&ListFilter { limit: 10, ..Default::default() }).unwrap();
        assert!(all.is_empty(), "{fault}: a refused submission was stored: {all:?}");
        assert_eq!(store.backlog(Payer::Ssk, 0).unwrap(), 0, "{fault}: its chunks were stored");
        // The next group works.
        let ok = store.accept(new_sub("1234567", "2026-11", b"accepted", None)).unwrap();
        assert_eq!(store.get(ok.submission.id).unwrap().unwrap().state, State::Queued);
    }
}

#[test]
fn a_full_write_queue_is_refused_at_once_not_waited_for() {
    // Issue 10, defect 6: a full queue blocked the caller; now it is `Busy` (→ 503).
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { write_queue_max: 1, group_commit_max: 1, ..StoreOptions::default() };
    let store = Arc::new(SqliteStore::open(dir.path(), options).unwrap());
    let mut pending = Vec::new();
    let mut busy = 0;
    for i in 0..200 {
        match store.accept_start(new_sub(&format!("{i:07}"), "2026-11", format!("f{i}").as_bytes(), None)) {
            Ok(p) => pending.push(p),
            Err(StoreError::Busy { .. }) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy > 0, "a one-slot queue under 200 writes never refused one");
    let accepted = pending.into_iter().map(|p| p.wait().unwrap()).count();
    assert_eq!(accepted + busy, 200);
    assert_eq!(store.list(&ListFilter { limit: 1000, ..Default::default() }).unwrap().len(), accepted);
}

#[test]
fn identical_concurrent_uploads_never_replace_the_first_blob() {
    // Issue 10, defect 14: the second of two identical uploads renamed its unsynced file over
    // the first one's (maybe synced and acknowledged) file.
    use std::os::unix::fs::MetadataExt;
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(tenken_store_sqlite::FileBlobs::open(dir.path()).unwrap());
        let bytes = format!("the same claim file, round {round}").into_bytes();
        let d = digest(&bytes);
        let path = dir.path().join(&d.hex()[..2]).join(d.hex());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let inodes: Vec<u64> = (0..8)
            .map(|_| {
                let (blobs, bytes, path, barrier) = (blobs.clone(), bytes.clone(), path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    blobs.put_unsynced(&digest(&bytes), &bytes).unwrap();
                    std::fs::metadata(&path).unwrap().ino()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let last = std::fs::metadata(&path).unwrap().ino();
        assert!(inodes.iter().all(|&i| i == last), "round {round}: the blob file was replaced: {inodes:?} → {last}");
        assert_eq!(blobs.read(&d).unwrap(), bytes);
    }
}

#[test]
fn tokens_windows_notices() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    tenken_store_conformance::check_access(&store);
}

#[test]
fn blobs_conform() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    tenken_store_conformance::check_blobs(store.blobs());
}

#[test]
fn months_stored_in_two_spellings_are_merged_by_the_migration() {
    // Issue 10, defect 1, for data written by earlier releases: `2024-6` and `2024-06` were
    // both active; after the migration there is one month and the newer set is in force.
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path(), StoreOptions::default()).unwrap());
    {
        let conn = rusqlite::Connection::open(dir.path().join("tenken.db")).unwrap();
        let (a, b) = (digest(b"a"), digest(b"b"));
        conn.execute_batch(&format!(
            "INSERT INTO release_sets(payer, from_month, plugins, state, created_by, created_ms, reason) \
             VALUES ('ssk', '2024-06', '{a}', 'active', 1, 1, 'old'), ('ssk', '2024-6', '{b}', 'active', 1, 2, 'new'); \
             PRAGMA user_version = 4;",
        ))
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let sets = store.release_sets(Payer::Ssk).unwrap();
    let june = tenken_model::YearMonth::new(2024, 6);
    assert!(sets.iter().all(|s| s.from_month == june), "{sets:?}");
    let active: Vec<_> = sets.iter().filter(|s| s.state == ReleaseState::Active).collect();
    assert_eq!(active.len(), 1, "{sets:?}");
    assert_eq!(active[0].reason, "new");
}

/// Two processes opening a new data directory at once (`tenken serve` and `tenken token
/// create`) both used to run the first migration: "table submissions already exists".
#[test]
fn concurrent_opens_of_a_new_directory_migrate_once() {
    // 20 rounds: switching a new database to WAL answered SQLITE_BUSY at once in about half
    // of the runs of 5 rounds before open retried it.
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let (path, barrier) = (dir.path().to_path_buf(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteStore::open(&path, StoreOptions::default()).map(|_| ())
                })
            })
            .collect();
        for o in opens {
            o.join().unwrap().expect("every concurrent open succeeds");
        }
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(store.list_tokens().unwrap().is_empty(), "a usable, empty store");
    }
}

/// Reports stored before diff fields were typed (`"field old → new"`) are read into the
/// typed form; new ones go out typed, with the field in words.
#[test]
fn legacy_diff_fields_are_read_typed() {
    let legacy = serde_json::json!({
        "diff": [{"kind": "procedure", "added": 0, "changed": 1, "abolished": 0, "restored": 0, "removed": 0,
                  "examples": [{"code": "111000110", "fields": ["value 282.00 → 288.00"]}]}]
    });
    let r: MasterReport = serde_json::from_value(legacy).unwrap();
    let f = &r.diff[0].examples[0].fields[0];
    assert_eq!((f.field.as_str(), f.old.as_str(), f.new.as_str()), ("value", "282.00", "288.00"));
    let again: MasterReport = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
    assert_eq!(again, r);
}
