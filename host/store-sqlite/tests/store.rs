//! The SQLite store against a real database in a temporary directory.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use tenken_model::{Digest, Finding, Payer, Severity};
use tenken_store::*;
use tenken_store_sqlite::{Faults, SqliteStore, StoreOptions};

fn new_sub(inst: &str, month: &str, bytes: &[u8], key: Option<&str>) -> NewSubmission {
    NewSubmission {
        payer: Payer::Ssk,
        institution: inst.into(),
        billing_month: Some(month.parse().unwrap()),
        bytes: bytes.to_vec(),
        idempotency_key: key.map(Into::into),
        token_id: 1,
        receipts: 3,
        chunks: 2,
        chunk_receipts: 256,
        now_ms: 1_764_000_000_000,
    }
}

#[test]
fn accept_is_durable_idempotent_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let a = store.accept(new_sub("1234567", "2026-11", b"first", Some("k1"))).unwrap();
    assert!(!a.replayed);
    assert!(a.submission.reception.starts_with("S20251124-") || a.submission.reception.starts_with('S'));
    let again = store.accept(new_sub("1234567", "2026-11", b"first", Some("k1"))).unwrap();
    assert!(again.replayed);
    assert_eq!(again.submission.id, a.submission.id);
    let conflict = store.accept(new_sub("1234567", "2026-11", b"other", Some("k1"))).unwrap_err();
    assert!(matches!(conflict, StoreError::IdempotencyConflict { .. }), "{conflict}");

    let b = store.accept(new_sub("1234567", "2026-11", b"second", None)).unwrap();
    assert_eq!(b.submission.supersedes, Some(a.submission.id));
    let old = store.get(a.submission.id).unwrap().unwrap();
    assert_eq!(old.state, State::Superseded);
    assert_eq!(old.superseded_by, Some(b.submission.id));
    let hist = store.history(b.submission.id).unwrap();
    assert_eq!(hist.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a.submission.id, b.submission.id]);
    assert_eq!(store.blobs().get(&b.submission.digest).unwrap(), b"second");
    drop(store);

    // Reopen: everything acknowledged is still there, byte for byte.
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.get(b.submission.id).unwrap().unwrap(), b.submission);
    assert_eq!(store.blobs().get(&a.submission.digest).unwrap(), b"first");
}

/// A finding that names its chunk, so a test can see whose result was recorded.
fn finding(chunk: u32) -> Finding {
    Finding::new("test.chunk", Severity::Error, format!("chunk {chunk}"))
}

fn result(s: SubmissionId, c: &ChunkClaim, node: NodeId, now_ms: i64) -> ChunkResult {
    ChunkResult {
        submission: s,
        index: c.index,
        node,
        fence: c.fence,
        findings: vec![finding(c.index)],
        decision: DecisionRecord::default(),
        counts: Counts { error: 1, warning: 0, info: 0 },
        now_ms,
        pin: None,
    }
}

#[test]
fn chunks_are_claimed_recorded_once_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let s = store.accept(new_sub("1234567", "2026-11", b"x", None)).unwrap().submission;
    let now = 1_000;
    let a = store.register_node("a", now, 10_000).unwrap();
    assert_eq!(store.backlog(Payer::Ssk, now).unwrap(), 2);
    assert!(store.claim_chunks(a, Payer::Kokuho, 5, now).unwrap().is_empty(), "the bulkhead: no kokuho work");
    let claims = store.claim_chunks(a, Payer::Ssk, 5, now).unwrap();
    assert_eq!(claims.iter().map(|c| c.index).collect::<Vec<_>>(), vec![0, 1]);
    assert!(claims[1].fence > claims[0].fence, "fences increase");
    assert!(store.claim_chunks(a, Payer::Ssk, 5, now).unwrap().is_empty(), "claimed chunks are not handed out twice");
    assert_eq!(store.backlog(Payer::Ssk, now).unwrap(), 0);

    assert_eq!(
        store.complete_chunk(result(s.id, &claims[0], a, now)).unwrap(),
        ChunkOutcome::Recorded { all_done: false }
    );
    assert_eq!(store.complete_chunk(result(s.id, &claims[0], a, now)).unwrap(), ChunkOutcome::Duplicate);

    // Node a stalls past its lease: node b claims chunk 1 again with a newer fence, and a's
    // late result is refused, while b's is recorded.
    let b = store.register_node("b", now + 20_000, 10_000).unwrap();
    let again = store.claim_chunks(b, Payer::Ssk, 5, now + 20_000).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].index, 1);
    assert!(again[0].fence > claims[1].fence);
    assert_eq!(store.complete_chunk(result(s.id, &claims[1], a, now + 20_001)).unwrap(), ChunkOutcome::Fenced);
    assert!(!store.renew_node(a, now + 20_000, 10_000).unwrap());
    assert!(store.claim_chunks(a, Payer::Ssk, 5, now + 20_000).unwrap().is_empty(), "a lapsed node claims nothing");
    assert_eq!(
        store.complete_chunk(result(s.id, &again[0], b, now + 20_001)).unwrap(),
        ChunkOutcome::Recorded { all_done: true }
    );
    assert_eq!(store.unfinalized().unwrap().iter().map(|s| s.id).collect::<Vec<_>>(), vec![s.id]);
    assert_eq!(store.chunk_findings(s.id).unwrap(), vec![(0, vec![finding(0)]), (1, vec![finding(1)])]);
    store.finalize(s.id, &[finding(0), finding(1)], Counts { error: 2, warning: 0, info: 0 }, 0, now).unwrap();
    let checked = store.get(s.id).unwrap().unwrap();
    assert_eq!(checked.state, State::Checked);
    assert_eq!(checked.counts.error, 2);
    assert_eq!(store.findings(s.id).unwrap(), Some(vec![finding(0), finding(1)]));
    assert!(store.unfinalized().unwrap().is_empty());
    let confirmed = store.confirm(s.id, now).unwrap();
    assert_eq!(confirmed.state, State::Confirmed);
    // A confirmed month cannot be replaced.
    let e = store.accept(new_sub("1234567", "2026-11", b"y", None)).unwrap_err();
    assert!(matches!(e, StoreError::AlreadyConfirmed { .. }), "{e}");
}

#[test]
fn withdrawn_and_superseded_work_is_not_claimed_and_its_results_are_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let node = store.register_node("n", 0, 1_000_000).unwrap();
    let first = store.accept(new_sub("1234567", "2026-11", b"one", None)).unwrap().submission;
    let held = store.claim_chunks(node, Payer::Ssk, 1, 1).unwrap();
    let second = store.accept(new_sub("1234567", "2026-11", b"two", None)).unwrap().submission;
    assert_eq!(store.complete_chunk(result(first.id, &held[0], node, 2)).unwrap(), ChunkOutcome::Fenced);
    let claims = store.claim_chunks(node, Payer::Ssk, 10, 3).unwrap();
    assert!(claims.iter().all(|c| c.submission == second.id), "{claims:?}");
    assert_eq!(claims.len(), 2);
    let third = store.accept(new_sub("7654321", "2026-11", b"three", None)).unwrap().submission;
    store.withdraw(third.id, 4).unwrap();
    assert!(store.claim_chunks(node, Payer::Ssk, 10, 5).unwrap().is_empty());
    assert_eq!(store.backlog(Payer::Ssk, 5).unwrap(), 0);
}

#[test]
fn claims_are_fair_across_institutions_by_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let node = store.register_node("n", 0, 1_000_000).unwrap();
    // A big institution queues 40 files of 10 chunks first; two small ones queue later.
    for i in 0..40 {
        let mut n = new_sub("1000001", &format!("20{:02}-01", i), format!("big {i}").as_bytes(), None);
        (n.receipts, n.chunks, n.chunk_receipts) = (900, 10, 100);
        store.accept(n).unwrap();
    }
    for inst in ["2000002", "3000003"] {
        for i in 0..3 {
            let mut n = new_sub(inst, &format!("20{:02}-02", i), format!("{inst} {i}").as_bytes(), None);
            (n.receipts, n.chunks, n.chunk_receipts) = (300, 4, 100);
            store.accept(n).unwrap();
        }
    }
    let mut served: std::collections::HashMap<String, u64> = Default::default();
    let subs: std::collections::HashMap<SubmissionId, String> = store
        .list(&ListFilter { limit: 1000, ..Default::default() })
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.institution))
        .collect();
    // While the small ones have work, each institution gets about the same receipts.
    for _ in 0..12 {
        for c in store.claim_chunks(node, Payer::Ssk, 1, 1).unwrap() {
            *served.entry(subs[&c.submission].clone()).or_default() += c.cost as u64;
        }
    }
    let (big, a, b) = (served["1000001"], served["2000002"], served["3000003"]);
    assert!(a >= 300 && b >= 300, "the small institutions were served: {served:?}");
    assert!(big <= a + 200 && big <= b + 200, "the big one did not starve them: {served:?}");
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
                    blobs.put_unsynced(&d_of(&bytes), &bytes).unwrap();
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

fn d_of(bytes: &[u8]) -> Digest {
    digest(bytes)
}

#[test]
fn group_commit_serves_many_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), StoreOptions::default()).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let body = format!("file {t} {i}");
                    store
                        .accept(new_sub(&format!("{t:07}"), &format!("2026-{:02}", i % 12 + 1), body.as_bytes(), None))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = store.list(&ListFilter { limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 320);
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
        let (a, b) = (d_of(b"a"), d_of(b"b"));
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

fn approved_plugin(store: &SqliteStore, payer: Payer, name: &str) -> Digest {
    let digest = d_of(name.as_bytes());
    store
        .put_plugin(NewPlugin {
            payer,
            digest,
            bytes: name.as_bytes().to_vec(),
            name: name.into(),
            version: "1.0.0".into(),
            contract: "tenken:check@1".into(),
            described: Described::Checker { rules: Vec::new() },
            uploaded_by: 1,
            signed_by: None,
            state: PluginState::Validated,
            now_ms: 0,
        })
        .unwrap();
    store.approve_plugin(payer, &digest, 2, payer, 1, 0).unwrap();
    digest
}

fn is_live(store: &SqliteStore, payer: Payer, digest: &Digest) -> bool {
    store
        .release_sets(payer)
        .unwrap()
        .iter()
        .any(|s| s.state == ReleaseState::Active && s.plugins.iter().any(|p| p == digest))
}

/// The retire-vs-activation race: the "in use" check used to live in the HTTP handler, so a
/// retire could pass it, an activation of the plugin commit, and the retire commit after:
/// a retired plugin checking claims. Both checks are in the store's transactions now.
#[test]
fn a_retire_racing_an_activation_never_leaves_a_retired_plugin_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), StoreOptions::default()).unwrap());
    let payer = Payer::Ssk;
    let base = approved_plugin(&store, payer, "base");

    // In order, each way round.
    let x = approved_plugin(&store, payer, "x-in-order");
    store.activate(payer, None, &[base.clone(), x.clone()], 2, "with x", 1).unwrap();
    let err = store.set_plugin_state(payer, &x, PluginState::Retired, None, 2, "retire", 2).unwrap_err();
    assert!(matches!(err, StoreError::Refused(Refusal::InUse { .. })), "{err}");
    store.activate(payer, None, std::slice::from_ref(&base), 2, "without x", 3).unwrap();
    store.set_plugin_state(payer, &x, PluginState::Retired, None, 2, "retire", 4).unwrap();
    let err = store.activate(payer, None, &[base.clone(), x.clone()], 2, "x again", 5).unwrap_err();
    assert!(matches!(err, StoreError::Refused(Refusal::NotApproved { .. })), "{err}");
    // Rolling back to the set that had x does not bring the retired plugin back either.
    let with_x = store.release_sets(payer).unwrap().into_iter().find(|s| s.plugins.contains(&x)).unwrap();
    let err = store.rollback(payer, with_x.id, 2, "back", 6).unwrap_err();
    assert!(matches!(err, StoreError::Refused(Refusal::NotApproved { .. })), "{err}");
    assert!(!is_live(&store, payer, &x));

    // Raced: the two start together, many times; whichever commits first, the other is refused.
    let (mut retired_first, mut activated_first) = (0, 0);
    for round in 0..40 {
        let x = approved_plugin(&store, payer, &format!("x-raced-{round}"));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let activation = {
            let (store, barrier, set) = (store.clone(), barrier.clone(), vec![base.clone(), x.clone()]);
            std::thread::spawn(move || {
                barrier.wait();
                store.activate(payer, None, &set, 2, "with x", 10)
            })
        };
        let retire = {
            let (store, barrier, x) = (store.clone(), barrier.clone(), x.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.set_plugin_state(payer, &x, PluginState::Retired, None, 3, "retire", 10)
            })
        };
        let (activated, retired) = (activation.join().unwrap(), retire.join().unwrap());
        assert!(activated.is_ok() != retired.is_ok(), "exactly one wins: {activated:?} / {retired:?}");
        let state = store.plugin(payer, &x).unwrap().unwrap().state;
        if retired.is_ok() {
            retired_first += 1;
            assert_eq!(state, PluginState::Retired);
            assert!(!is_live(&store, payer, &x), "round {round}: a retired plugin is live");
        } else {
            activated_first += 1;
            assert!(matches!(retired.unwrap_err(), StoreError::Refused(Refusal::InUse { .. })));
            assert_eq!(state, PluginState::Approved);
            assert!(is_live(&store, payer, &x));
            // Back to the base set so that the next round starts alike.
            store.activate(payer, None, std::slice::from_ref(&base), 2, "without x", 11).unwrap();
        }
    }
    eprintln!("race: retire first {retired_first}, activation first {activated_first}");
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

/// Master versions keep their documents typed: sources, state and report come back as they
/// went in (the store serializes at its edge, nobody else sees JSON).
#[test]
fn master_versions_keep_their_documents_typed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let blob = store.put_file(b"s_ALL rows").unwrap();
    let sources = vec![MasterSource { name: "s_ALL20260601.csv".into(), blob, format: "ssk-csv".into() }];
    let report = MasterReport {
        diff: Vec::new(),
        impact: Some(ImpactReport {
            cases: 2,
            sampled_submissions: 1,
            sampled_receipts: 30,
            changed: 3,
            threshold: 0,
            flagged: true,
            rules: vec![RuleImpact {
                rule: "master.procedure.points".into(),
                new: 3,
                vanished: 0,
                receipts: vec!["a#1".into()],
            }],
            as_of: Some("2026-06".parse().unwrap()),
            redated_files: 1,
        }),
        proof: Vec::new(),
        from_version: None,
        compared_with: Some(1),
    };
    let d = d_of(b"set");
    let month = Some("2026-06".parse().unwrap());
    let v = store.add_master_version(Payer::Kokuho, month, &d, &sources, None, &report, 5, "why", 1).unwrap();
    let back = store.master_version(Payer::Kokuho, v.id).unwrap().unwrap();
    assert_eq!((back.sources, back.report, back.state, back.digest), (sources, report, MasterState::Proposed, d));
    assert_eq!(store.bytes(&blob).unwrap(), b"s_ALL rows");
    let diff = MasterSource { name: "y_20260701.csv".into(), blob: d_of(b"x"), format: "kokuho-fixed".into() };
    assert_eq!(diff.kind(), Some(tenken_model::MasterKind::Drug));
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

/// A file pinned to a version that is rolled back starts over: its pin and chunk results are
/// gone, every chunk is claimable again, a result still in flight is fenced, and a finalize
/// computed from the old results changes nothing. Files pinned elsewhere are untouched.
#[test]
fn a_rollback_restarts_the_files_pinned_to_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let now = 1_000;
    let node = store.register_node("a", now, 60_000).unwrap();
    let s = store.accept(new_sub("1234567", "2026-11", b"x", None)).unwrap().submission;
    let other = store.accept(new_sub("7654321", "2026-11", b"y", None)).unwrap().submission;
    let pin = |master: i64| CheckPin {
        taken_ms: now,
        sets: vec![Pinned { id: 1, from: None }],
        masters: vec![Pinned { id: master, from: None }],
    };
    assert_eq!(store.pin_check(s.id, &pin(7)).unwrap(), pin(7));
    assert_eq!(store.pin_check(s.id, &pin(8)).unwrap(), pin(7), "the first pin wins");
    store.pin_check(other.id, &pin(8)).unwrap();
    let claims = store.claim_chunks(node, Payer::Ssk, 4, now).unwrap();
    let mine: Vec<&ChunkClaim> = claims.iter().filter(|c| c.submission == s.id).collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(
        store.complete_chunk(result(s.id, mine[0], node, now)).unwrap(),
        ChunkOutcome::Recorded { all_done: false }
    );

    assert_eq!(store.restart_pinned(Payer::Ssk, None, Some(7)).unwrap(), vec![s.id]);
    let again = store.get(s.id).unwrap().unwrap();
    assert_eq!((again.state, again.chunks_done), (State::Queued, 0));
    assert!(store.chunk_findings(s.id).unwrap().is_empty());
    assert_eq!(store.complete_chunk(result(s.id, mine[1], node, now)).unwrap(), ChunkOutcome::Fenced, "in flight");
    store.finalize(s.id, &[finding(0)], Counts { error: 1, warning: 0, info: 0 }, 0, now).unwrap();
    assert_eq!(store.get(s.id).unwrap().unwrap().state, State::Queued, "a stale finalize changes nothing");
    let reclaimed = store.claim_chunks(node, Payer::Ssk, 4, now).unwrap();
    assert_eq!(reclaimed.iter().filter(|c| c.submission == s.id).count(), 2, "every chunk claimable again");
    assert_eq!(store.pin_check(s.id, &pin(9)).unwrap(), pin(9), "a new pin is taken");
    // A chunk checked under the old pin (a worker that had it cached) is fenced; under the
    // file's pin it is recorded.
    let c = reclaimed.iter().find(|c| c.submission == s.id).unwrap();
    let stale = ChunkResult { pin: Some(pin(7)), ..result(s.id, c, node, now) };
    assert_eq!(store.complete_chunk(stale).unwrap(), ChunkOutcome::Fenced);
    let fresh = ChunkResult { pin: Some(pin(9)), ..result(s.id, c, node, now) };
    assert_eq!(store.complete_chunk(fresh).unwrap(), ChunkOutcome::Recorded { all_done: false });
    assert_eq!(store.get(other.id).unwrap().unwrap().chunks_done, 0);
    assert!(store.restart_pinned(Payer::Kokuho, None, Some(8)).unwrap().is_empty(), "per payer");
}
