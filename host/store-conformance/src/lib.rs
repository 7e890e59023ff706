//! Dev-only: what every store backend must do, written once as functions over the store
//! traits, so that the SQLite and the PostgreSQL backends are held to the same behaviour
//! (each backend's tests call these on a fresh store of its own).

#![forbid(unsafe_code)]

use std::sync::Arc;

use tenken_model::{Digest, Finding, Payer, Severity};
use tenken_store::*;

/// A submission of 3 receipts in 2 chunks for institution `inst`, 請求年月 `month`.
pub fn new_sub(inst: &str, month: &str, bytes: &[u8], key: Option<&str>) -> NewSubmission {
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

/// A finding that names its chunk, so a test can see whose result was recorded.
pub fn finding(chunk: u32) -> Finding {
    Finding::new("test.chunk", Severity::Error, format!("chunk {chunk}"))
}

/// The result of chunk `c` of submission `s`, as node `node` hands it in.
pub fn result(s: SubmissionId, c: &ChunkClaim, node: NodeId, now_ms: i64) -> ChunkResult {
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

/// Acceptance: idempotent by key (same bytes replay, other bytes conflict), a new file for
/// the same month supersedes the pending one, history is kept, bytes come back.
pub fn check_acceptance(store: &dyn Store) {
    let a = store.accept(new_sub("1234567", "2026-11", b"first", Some("k1"))).unwrap();
    assert!(!a.replayed);
    assert!(a.submission.reception.starts_with('S'), "{}", a.submission.reception);
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
    assert_eq!(store.bytes(&a.submission.digest).unwrap(), b"first");
    let w = store.withdraw_receipt(b.submission.id, 2).unwrap();
    assert_eq!(w.withdrawn_receipts, vec![2]);
    assert_eq!(store.get(b.submission.id).unwrap().unwrap(), w, "what is read is what was returned");
}

pub fn check_claims(store: &dyn Store) {
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
    assert!(!store.renew_node(a, now + 20_000, 10_000, &NodeStats::default()).unwrap());
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

pub fn check_dropped_work(store: &dyn Store) {
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

pub fn check_fairness(store: &dyn Store) {
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

pub fn check_many_writers(store: Arc<dyn Store>) {
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

pub fn approved_plugin(store: &dyn Store, payer: Payer, name: &str) -> Digest {
    let digest = digest(name.as_bytes());
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

fn is_live(store: &dyn Store, payer: Payer, digest: &Digest) -> bool {
    store
        .release_sets(payer)
        .unwrap()
        .iter()
        .any(|s| s.state == ReleaseState::Active && s.plugins.iter().any(|p| p == digest))
}

/// The retire-vs-activation race: the "in use" check used to live in the HTTP handler, so a
/// retire could pass it, an activation of the plugin commit, and the retire commit after:
/// a retired plugin checking claims. Both checks are in the store's transactions now.
pub fn check_retire_race(store: Arc<dyn Store>) {
    let payer = Payer::Ssk;
    let base = approved_plugin(&*store, payer, "base");

    // In order, each way round.
    let x = approved_plugin(&*store, payer, "x-in-order");
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
    assert!(!is_live(&*store, payer, &x));

    // Raced: the two start together, many times; whichever commits first, the other is refused.
    let (mut retired_first, mut activated_first) = (0, 0);
    for round in 0..40 {
        let x = approved_plugin(&*store, payer, &format!("x-raced-{round}"));
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
            assert!(!is_live(&*store, payer, &x), "round {round}: a retired plugin is live");
        } else {
            activated_first += 1;
            assert!(matches!(retired.unwrap_err(), StoreError::Refused(Refusal::InUse { .. })));
            assert_eq!(state, PluginState::Approved);
            assert!(is_live(&*store, payer, &x));
            // Back to the base set so that the next round starts alike.
            store.activate(payer, None, std::slice::from_ref(&base), 2, "without x", 11).unwrap();
        }
    }
    eprintln!("race: retire first {retired_first}, activation first {activated_first}");
}

/// Master versions keep their documents typed: sources, state and report come back as they
/// went in (the store serializes at its edge, nobody else sees JSON).
pub fn check_master_documents(store: &dyn Store) {
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
    let d = digest(b"set");
    let month = Some("2026-06".parse().unwrap());
    let v = store.add_master_version(Payer::Kokuho, month, &d, &sources, None, &report, 5, "why", 1).unwrap();
    let back = store.master_version(Payer::Kokuho, v.id).unwrap().unwrap();
    assert_eq!((back.sources, back.report, back.state, back.digest), (sources, report, MasterState::Proposed, d));
    assert_eq!(store.bytes(&blob).unwrap(), b"s_ALL rows");
    let diff = MasterSource { name: "y_20260701.csv".into(), blob: digest(b"x"), format: "kokuho-fixed".into() };
    assert_eq!(diff.kind(), Some(tenken_model::MasterKind::Drug));
}

/// A file pinned to a version that is rolled back starts over: its pin and chunk results are
/// gone, every chunk is claimable again, a result still in flight is fenced, and a finalize
/// computed from the old results changes nothing. Files pinned elsewhere are untouched.
pub fn check_restart_pinned(store: &dyn Store) {
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

/// Tokens (found by secret, revocable), window overrides (replaced per payer and month),
/// notices (per payer and audience: a staff notice never reaches institutions).
pub fn check_access(store: &dyn AccessStore) {
    let (id, secret) = store.create_token(Role::Staff { payer: Payer::Kokuho }, "staff", 5).unwrap();
    let (inst, _) = store.create_token(Role::Institution { institution: "1234567".into() }, "医院", 6).unwrap();
    let info = store.find_token(&secret).unwrap().unwrap();
    assert_eq!((info.id, &info.role, info.label.as_str()), (id, &Role::Staff { payer: Payer::Kokuho }, "staff"));
    assert!(store.find_token("tk_wrong").unwrap().is_none());
    assert!(store.revoke_token(id).unwrap());
    assert!(store.find_token(&secret).unwrap().unwrap().revoked);
    assert!(!store.revoke_token(999_999).unwrap(), "no such token");
    let all = store.list_tokens().unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), vec![id, inst]);
    assert_eq!(all[1].role, Role::Institution { institution: "1234567".into() });

    let month = "2026-11".parse().unwrap();
    assert!(store.window(Payer::Ssk, month).unwrap().is_none());
    let w = WindowOverride {
        payer: Payer::Ssk,
        billing_month: month,
        opens_ms: 1,
        closes_ms: 2,
        updated_by: id,
        updated_ms: 3,
    };
    store.set_window(w.clone()).unwrap();
    assert_eq!(store.window(Payer::Ssk, month).unwrap(), Some(w.clone()));
    let later = WindowOverride { closes_ms: 9, updated_ms: 4, ..w };
    store.set_window(later.clone()).unwrap();
    assert_eq!(store.window(Payer::Ssk, month).unwrap(), Some(later), "replaced, not added");
    assert!(store.window(Payer::Kokuho, month).unwrap().is_none(), "per payer");

    store.add_notice(Some(Payer::Ssk), Audience::Institutions, "ssk only", id, 1).unwrap();
    store.add_notice(None, Audience::Institutions, "everyone", id, 2).unwrap();
    let n = store.add_notice(Some(Payer::Ssk), Audience::Staff, "ssk staff only", 0, 3).unwrap();
    assert_eq!((n.payer, n.audience, n.created_by), (Some(Payer::Ssk), Audience::Staff, 0));
    assert_eq!(store.notices(Some(Payer::Kokuho), Audience::Institutions, 10).unwrap().len(), 1);
    let ssk = store.notices(Some(Payer::Ssk), Audience::Institutions, 10).unwrap();
    assert_eq!(
        ssk.iter().map(|n| n.message.as_str()).collect::<Vec<_>>(),
        vec!["everyone", "ssk only"],
        "newest first"
    );
    assert_eq!(store.notices(Some(Payer::Ssk), Audience::Institutions, 1).unwrap().len(), 1, "bounded");
    // Issue 10, defect 5: a staff notice never reaches institutions.
    let staff = store.notices(Some(Payer::Ssk), Audience::Staff, 10).unwrap();
    assert_eq!(staff.iter().map(|n| n.message.as_str()).collect::<Vec<_>>(), vec!["ssk staff only"]);
}

/// Content addressing: the same bytes give the same digest and are stored once; what comes
/// back is what went in; an unknown digest is an error, never empty bytes.
pub fn check_blobs(store: &dyn BlobStore) {
    let claim = "IR,1,13,1,1234567,,テスト医院,202611,00,\r\n".as_bytes();
    let d = store.put(claim).unwrap();
    assert_eq!(d, tenken_store::digest(claim));
    assert_eq!(store.put(claim).unwrap(), d, "the same bytes, the same digest");
    assert_eq!(store.get(&d).unwrap(), claim);
    let empty = store.put(b"").unwrap();
    assert_eq!(store.get(&empty).unwrap(), b"");
    let missing = tenken_store::digest(b"never stored");
    assert!(matches!(store.get(&missing), Err(StoreError::Blob(_)) | Err(StoreError::Io(_))));
}

/// Several nodes claiming one payer's work at once (threads, each its own node): no chunk
/// is handed to two nodes, every chunk is recorded exactly once, and every file finishes.
/// On PostgreSQL this is the cross-node claim path (row locks, `SKIP LOCKED`). Node `k`
/// uses `stores[k % stores.len()]`: one store shared, or one per node as separate
/// processes have.
pub fn check_concurrent_claims(stores: Vec<Arc<dyn Store>>) {
    let store = stores[0].clone();
    let files = 30;
    let mut ids = Vec::new();
    for i in 0..files {
        let mut n =
            new_sub(&format!("{:07}", 1000 + i % 7), &format!("20{:02}-03", i), format!("f{i}").as_bytes(), None);
        (n.receipts, n.chunks, n.chunk_receipts) = (40, 5, 10);
        ids.push(store.accept(n).unwrap().submission.id);
    }
    let nodes = 4;
    let recorded: Vec<Vec<(SubmissionId, u32)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..nodes)
            .map(|k| {
                let store = stores[k % stores.len()].clone();
                scope.spawn(move || {
                    let node = store.register_node(&format!("node-{k}"), 0, 10_000_000).unwrap();
                    let mut mine = Vec::new();
                    loop {
                        let claims = store.claim_chunks(node, Payer::Ssk, 2, 1).unwrap();
                        if claims.is_empty() {
                            break;
                        }
                        for c in claims {
                            match store.complete_chunk(result(c.submission, &c, node, 2)).unwrap() {
                                ChunkOutcome::Recorded { .. } => mine.push((c.submission, c.index)),
                                other => panic!("a claimed chunk was not recorded: {other:?}"),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<(SubmissionId, u32)> = recorded.iter().flatten().copied().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "a chunk was recorded twice");
    assert_eq!(total, files * 5, "every chunk recorded once");
    assert!(
        recorded.iter().filter(|r| !r.is_empty()).count() >= 2,
        "the work was shared: {:?}",
        recorded.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for id in ids {
        assert_eq!(store.get(id).unwrap().unwrap().chunks_done, 5);
    }
    assert_eq!(store.backlog(Payer::Ssk, 3).unwrap(), 0);
}

/// A node's heartbeat carries what it reports; the node list shows it.
pub fn check_heartbeats(store: &dyn Store) {
    let a = store.register_node("node-a", 1_000, 5_000).unwrap();
    let stats = NodeStats {
        window_ms: 60_000,
        payers: vec![PayerLoad { payer: Payer::Kokuho, workers: 2, chunks: 7, receipts: 300, busy: 0.5 }],
    };
    assert!(store.renew_node(a, 2_000, 5_000, &stats).unwrap());
    let info = store.nodes().unwrap().into_iter().find(|n| n.id == a).unwrap();
    assert_eq!((info.name.as_str(), info.heartbeat_ms, info.expires_ms), ("node-a", 2_000, 7_000));
    assert_eq!(info.stats, stats);
    assert!(!store.renew_node(a, 8_000, 5_000, &stats).unwrap(), "a lapsed lease is not renewed");
}

/// A chunk whose check failed on a live node is given back: claimable again at once with a
/// new fence; giving back under a stale fence, or another node's claim, does nothing.
pub fn check_release(store: &dyn Store) {
    let s = store.accept(new_sub("1234567", "2026-11", b"x", None)).unwrap().submission;
    let (a, b) = (store.register_node("a", 0, 1_000_000).unwrap(), store.register_node("b", 0, 1_000_000).unwrap());
    let held = store.claim_chunks(a, Payer::Ssk, 1, 1).unwrap().remove(0);
    assert!(!store.release_chunk(b, s.id, held.index, held.fence).unwrap(), "not b's claim");
    assert!(store.release_chunk(a, s.id, held.index, held.fence).unwrap());
    assert!(!store.release_chunk(a, s.id, held.index, held.fence).unwrap(), "released once");
    let again = store.claim_chunks(b, Payer::Ssk, 1, 2).unwrap().remove(0);
    assert_eq!((again.submission, again.index), (s.id, held.index), "claimable again at once, first in line");
    assert!(again.fence > held.fence);
    assert_eq!(store.complete_chunk(result(s.id, &held, a, 3)).unwrap(), ChunkOutcome::Fenced);
    assert_eq!(store.complete_chunk(result(s.id, &again, b, 3)).unwrap(), ChunkOutcome::Recorded { all_done: false });
}
