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
