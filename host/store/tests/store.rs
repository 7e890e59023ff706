//! The SQLite store against a real database in a temporary directory.

use std::sync::Arc;

use tenken_model::Payer;
use tenken_store::*;

fn new_sub(inst: &str, month: &str, bytes: &[u8], key: Option<&str>) -> NewSubmission {
    NewSubmission {
        payer: Payer::Ssk,
        institution: inst.into(),
        billing_month: month.into(),
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
    assert_eq!(store.bytes(&b.submission.digest).unwrap(), b"second");
    drop(store);

    // Reopen: everything acknowledged is still there, byte for byte.
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.get(b.submission.id).unwrap().unwrap(), b.submission);
    assert_eq!(store.bytes(&a.submission.digest).unwrap(), b"first");
}

#[test]
fn chunks_are_recorded_once_and_fenced_by_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
    let s = store.accept(new_sub("1234567", "2026-11", b"x", None)).unwrap().submission;
    let now = 1_000;
    let owner = store.register_node(now, 10_000).unwrap();
    let r = |index, owner, now_ms| ChunkResult {
        submission: s.id,
        index,
        owner,
        findings: format!("[{index}]"),
        decision: String::new(),
        counts: Counts { error: 1, warning: 0, info: 0 },
        now_ms,
    };
    assert_eq!(store.complete_chunk(r(0, owner, now)).unwrap(), ChunkOutcome::Recorded { all_done: false });
    assert_eq!(store.complete_chunk(r(0, owner, now)).unwrap(), ChunkOutcome::Duplicate);
    // An expired lease cannot record.
    assert_eq!(store.complete_chunk(r(1, owner, now + 20_000)).unwrap(), ChunkOutcome::Fenced);
    assert!(!store.renew_node(owner, now + 20_000, 10_000).unwrap());
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1, vec![1]);
    let owner2 = store.register_node(now + 20_000, 10_000).unwrap();
    assert_eq!(store.complete_chunk(r(1, owner2, now + 20_001)).unwrap(), ChunkOutcome::Recorded { all_done: true });
    assert_eq!(store.chunk_findings(s.id).unwrap(), vec![(0, "[0]".into()), (1, "[1]".into())]);
    store.finalize(s.id, "[0,1]".into(), Counts { error: 2, warning: 0, info: 0 }, 0, now).unwrap();
    let checked = store.get(s.id).unwrap().unwrap();
    assert_eq!(checked.state, State::Checked);
    assert_eq!(checked.counts.error, 2);
    assert_eq!(store.findings(s.id).unwrap().as_deref(), Some("[0,1]"));
    assert!(store.pending().unwrap().is_empty());
    let confirmed = store.confirm(s.id, now).unwrap();
    assert_eq!(confirmed.state, State::Confirmed);
    // A confirmed month cannot be replaced.
    let e = store.accept(new_sub("1234567", "2026-11", b"y", None)).unwrap_err();
    assert!(matches!(e, StoreError::AlreadyConfirmed { .. }), "{e}");
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
    let (id, secret) = store.create_token(Role::Staff { payer: Payer::Kokuho }, "staff", 5).unwrap();
    let info = store.find_token(&secret).unwrap().unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.role, Role::Staff { payer: Payer::Kokuho });
    assert!(store.find_token("tk_wrong").unwrap().is_none());
    assert!(store.revoke_token(id).unwrap());
    assert!(store.find_token(&secret).unwrap().unwrap().revoked);

    assert!(store.window(Payer::Ssk, "2026-11").unwrap().is_none());
    let w = WindowOverride {
        payer: Payer::Ssk,
        billing_month: "2026-11".into(),
        opens_ms: 1,
        closes_ms: 2,
        updated_by: id,
        updated_ms: 3,
    };
    store.set_window(w.clone()).unwrap();
    assert_eq!(store.window(Payer::Ssk, "2026-11").unwrap(), Some(w));
    store.add_notice(Some(Payer::Ssk), "ssk only", id, 1).unwrap();
    store.add_notice(None, "everyone", id, 2).unwrap();
    assert_eq!(store.notices(Some(Payer::Kokuho), 10).unwrap().len(), 1);
    assert_eq!(store.notices(Some(Payer::Ssk), 10).unwrap().len(), 2);
}
