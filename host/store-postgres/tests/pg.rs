//! The PostgreSQL backend against a real PostgreSQL (`TENKEN_TEST_DATABASE_URL`; `.ci/run`
//! starts a throwaway cluster with `scripts/pg-test-cluster.sh`). Each test gets a database
//! of its own. Without the variable the tests return early, except under
//! `TENKEN_REQUIRE_POSTGRES=1` (set by `.ci/run`), where they fail.

use std::sync::Arc;

use tenken_store::{BlobStore, StoreError};
use tenken_store_postgres::{PgOptions, PgStore};

/// A fresh database on the test cluster: its URL.
fn fresh_database() -> Option<String> {
    let Ok(url) = std::env::var("TENKEN_TEST_DATABASE_URL") else {
        if std::env::var("TENKEN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!(
                "TENKEN_REQUIRE_POSTGRES=1 but TENKEN_TEST_DATABASE_URL is not set (scripts/pg-test-cluster.sh start)"
            );
        }
        eprintln!("note: TENKEN_TEST_DATABASE_URL is not set; PostgreSQL test skipped");
        return None;
    };
    let mut raw = [0u8; 6];
    getrandom::fill(&mut raw).unwrap();
    let name = format!("t_{}", hex::encode(raw));
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("the test cluster answers");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

#[test]
fn nodes_starting_together_migrate_once() {
    let Some(url) = fresh_database() else { return };
    let url = Arc::new(url);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url, PgOptions::default()).map(|s| s.schema_version()))
        })
        .collect();
    for t in threads {
        let v = t.join().unwrap().expect("every node opens").unwrap();
        assert_eq!(v, PgStore::migrations());
    }
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows: i64 = c.query_one("SELECT COUNT(*) FROM schema_version", &[]).unwrap().get(0);
    assert_eq!(rows, 1, "one schema_version row: the migrations ran once");
}

#[test]
fn access_conforms() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_access(&PgStore::open(&url, PgOptions::default()).unwrap());
}

#[test]
fn blobs_are_content_addressed_durable_and_checked() {
    let Some(url) = fresh_database() else { return };
    let store = PgStore::open(&url, PgOptions::default()).unwrap();
    tenken_store_conformance::check_blobs(&store);
    let claim = "IR,1,13,1,1234567,,テスト医院,202611,00,\r\n".as_bytes();
    let d = tenken_store::digest(claim);
    drop(store);
    // Another process's view (a second node): the bytes are there.
    let other = PgStore::open(&url, PgOptions::default()).unwrap();
    assert_eq!(other.get(&d).unwrap(), claim);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n: i64 = c.query_one("SELECT COUNT(*) FROM blobs WHERE digest = $1", &[&d.to_string()]).unwrap().get(0);
    assert_eq!(n, 1, "stored once");
    // Damaged bytes are an error naming the digest, never a wrong file.
    c.execute("UPDATE blobs SET bytes = 'x'::bytea WHERE digest = $1", &[&d.to_string()]).unwrap();
    let e = other.get(&d).unwrap_err();
    assert!(matches!(&e, StoreError::Blob(m) if m.contains("no longer match")), "{e}");
}

fn open(url: &str) -> PgStore {
    PgStore::open(url, PgOptions::default()).unwrap()
}

#[test]
fn acceptance_conforms_and_is_seen_by_another_node() {
    let Some(url) = fresh_database() else { return };
    let store = open(&url);
    tenken_store_conformance::check_acceptance(&store);
    let other = open(&url);
    let filter = tenken_store::ListFilter { limit: 10, ..Default::default() };
    use tenken_store::SubmissionStore;
    assert_eq!(other.list(&filter).unwrap(), store.list(&filter).unwrap());
}

#[test]
fn claims_conform() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_claims(&open(&url));
}

#[test]
fn dropped_work_conforms() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_dropped_work(&open(&url));
}

#[test]
fn fairness_conforms() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_fairness(&open(&url));
}

#[test]
fn concurrent_claims_conform() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_concurrent_claims(vec![Arc::new(open(&url))]);
}

/// The same, with each node on a store (a connection pool) of its own, as separate
/// processes are.
#[test]
fn concurrent_claims_from_separate_pools_conform() {
    let Some(url) = fresh_database() else { return };
    let stores: Vec<Arc<dyn tenken_store::Store>> = (0..4).map(|_| Arc::new(open(&url)) as _).collect();
    tenken_store_conformance::check_concurrent_claims(stores);
}

#[test]
fn release_conforms() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_release(&open(&url));
}

#[test]
fn heartbeats_conform() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_heartbeats(&open(&url));
}

#[test]
fn many_writers_conform() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_many_writers(Arc::new(open(&url)));
}

#[test]
fn retire_race_conforms() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_retire_race(Arc::new(open(&url)));
}

#[test]
fn master_documents_conform() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_master_documents(&open(&url));
}

#[test]
fn restart_pinned_conforms() {
    let Some(url) = fresh_database() else { return };
    tenken_store_conformance::check_restart_pinned(&open(&url));
}

/// A swap made through one node reaches another node's feed (NOTIFY at commit), and so
/// does new work.
#[test]
fn changes_reach_the_other_nodes_feed() {
    use tenken_store::{Change, Store, SubmissionStore};
    let Some(url) = fresh_database() else { return };
    let (a, b) = (open(&url), open(&url));
    let mut feed = b.subscribe().unwrap().expect("PostgreSQL has a feed");
    let t0 = std::time::Instant::now();
    tenken_store_conformance::approved_plugin(&a, tenken_model::Payer::Kokuho, "p");
    let mut seen = Vec::new();
    while !seen.contains(&Change::Swap(tenken_model::Payer::Kokuho)) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "no swap heard: {seen:?}");
        seen.extend(feed.wait(std::time::Duration::from_millis(500)).unwrap());
    }
    a.accept(tenken_store_conformance::new_sub("1234567", "2026-11", b"x", None)).unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&Change::Work(tenken_model::Payer::Ssk)) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "no work heard: {seen:?}");
        seen.extend(feed.wait(std::time::Duration::from_millis(500)).unwrap());
    }
    assert!(feed.wait(std::time::Duration::from_millis(50)).unwrap().is_empty(), "nothing else");
}

/// Claimable-chunk counts that drifted below the rows (issue 12: a withdrawal racing a claim
/// once counted a chunk off twice, and the file's last chunk was never claimed) are
/// recounted by the next claim instead of leaving work unclaimed for ever.
#[test]
fn drifted_counts_are_recounted_by_the_next_claim() {
    use tenken_store::SubmissionStore;
    let Some(url) = fresh_database() else { return };
    let store = open(&url);
    let s = store.accept(tenken_store_conformance::new_sub("1234567", "2026-11", b"x", None)).unwrap().submission;
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.execute("UPDATE tenants SET ready = 0", &[]).unwrap();
    let node = store.register_node("a", 0, 1_000_000).unwrap();
    let claims = store.claim_chunks(node, tenken_model::Payer::Ssk, 5, 1).unwrap();
    assert_eq!(claims.iter().map(|c| (c.submission, c.index)).collect::<Vec<_>>(), vec![(s.id, 0), (s.id, 1)]);
    let ready: i64 = c.query_one("SELECT SUM(ready)::BIGINT FROM tenants", &[]).unwrap().get(0);
    assert_eq!(ready, 0, "the counts agree with the rows again");
}
