//! Crash test: `tenken serve` is killed with SIGKILL at random moments while submissions
//! are arriving and chunks are being checked, then restarted. Every acknowledged submission
//! must come back byte-identical and be checked to completion exactly once, with the same
//! findings as an uninterrupted check.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::Value;
use tenken_model::{Payer, YearMonth};

use crate::common;
use crate::server_util::*;

/// At least 20 kills (the floor); `TENKEN_CRASH_KILLS` raises it.
fn kills() -> usize {
    std::env::var("TENKEN_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20).max(20)
}

struct Case {
    key: String,
    bytes: Vec<u8>,
    token: String,
    expected: Vec<Value>,
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged_and_checks_everything_once() {
    // Small chunks so that every file is several chunks and kills land mid-file.
    let mut server = Server::start(&[("SCHEDULE__CHUNK_RECEIPTS", "16"), ("LIMITS__CHECK_BATCH_RECEIPTS_MAX", "16")]);
    let masters = common::demo_masters();
    let checker = common::wasm_checker(masters.clone());

    // 6 institutions × 24 billing months, both payers: every file its own (payer, institution,
    // month), so none supersedes another.
    let mut cases = Vec::new();
    let mut tokens: HashMap<String, String> = HashMap::new();
    for m in 0..24u8 {
        let (year, month) = (2020 + (m / 12) as u16, m % 12 + 1);
        let opts = tenken_gen::GenOptions {
            receipts: 6 * 60,
            institutions: 6,
            seed: 7,
            payer: Some(if month % 2 == 0 { Payer::Ssk } else { Payer::Kokuho }),
            billing_month: YearMonth { year, month },
            inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, 0.05)],
        };
        for f in tenken_gen::generate(&opts, &masters).unwrap() {
            let token = tokens
                .entry(f.institution_code.clone())
                .or_insert_with(|| server.institution_token(&f.institution_code))
                .clone();
            let report = checker.check_bytes(&f.bytes, None).unwrap();
            let expected = report.findings.iter().map(|x| serde_json::to_value(x).unwrap()).collect();
            cases.push(Case {
                key: format!("crash-{year}-{month}-{}", f.institution_code),
                bytes: f.bytes,
                token,
                expected,
            });
        }
    }
    assert!(cases.iter().any(|c| tenken_claim::scan(&c.bytes).payer() == Some(Payer::Kokuho)));
    let cases = Arc::new(cases);
    // key → (submission id, digest) as acknowledged by the server.
    let acked: Arc<Mutex<BTreeMap<String, (i64, String)>>> = Arc::default();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(20221);
    let n_kills = kills();
    let in_flight_kills = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    for round in 0..n_kills {
        let url = server.url.clone();
        // Submit what is not acknowledged yet (retries keep their Idempotency-Key), paced so
        // that submissions are still arriving in the later rounds.
        let todo: Vec<usize> = {
            let acked = acked.lock().unwrap();
            (0..cases.len()).filter(|&i| !acked.contains_key(&cases[i].key)).collect()
        };
        let pace = rng.random_range(5..40u64);
        let submitter = {
            let (cases, acked, url, hits) = (cases.clone(), acked.clone(), url.clone(), in_flight_kills.clone());
            std::thread::spawn(move || {
                for i in todo {
                    std::thread::sleep(Duration::from_millis(pace));
                    let c = &cases[i];
                    match try_submit(&url, &c.token, "/v1/submissions", &c.bytes, Some(&c.key)) {
                        Ok(r) if r.status == 202 => {
                            let s = &r.body["submission"];
                            let id = s["id"].as_i64().unwrap();
                            let digest = s["digest"].as_str().unwrap().to_owned();
                            let mut a = acked.lock().unwrap();
                            if let Some((old, _)) = a.get(&c.key) {
                                assert_eq!(*old, id, "a retry with the same key got a different submission");
                            }
                            a.insert(c.key.clone(), (id, digest));
                        }
                        Ok(r) => panic!("unexpected answer {}: {}", r.status, r.body),
                        // Killed mid-request (or before it): not acknowledged, retried next round.
                        Err(_) => {
                            hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                    }
                }
            })
        };
        // Kill at a random moment: during acceptance, during checking, or in between.
        std::thread::sleep(Duration::from_millis(rng.random_range(30..500)));
        server.kill();
        submitter.join().expect("submitter");
        eprintln!("crash round {round}: {} acknowledged so far", acked.lock().unwrap().len());
        server.spawn();
    }
    // Submit whatever is left without kills, then let everything finish.
    for c in cases.iter() {
        if acked.lock().unwrap().contains_key(&c.key) {
            continue;
        }
        let r = submit(&server.url, &c.token, &c.bytes, Some(&c.key));
        assert_eq!(r.status, 202, "{}", r.body);
        acked.lock().unwrap().insert(
            c.key.clone(),
            (r.body["submission"]["id"].as_i64().unwrap(), r.body["submission"]["digest"].as_str().unwrap().to_owned()),
        );
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), cases.len());
    for c in cases.iter() {
        let (id, digest) = &acked[&c.key];
        let sent = tenken_store::digest(&c.bytes);
        // The acknowledgement named the sha256 of what was sent.
        assert_eq!(*digest, sent.to_string(), "{}", c.key);
        let s = server.wait_checked(&c.token, *id, Duration::from_secs(300));
        assert_eq!(s["state"], "checked", "{s}");
        assert_eq!(s["digest"].as_str(), Some(sent.to_string().as_str()), "{}", c.key);
        // Byte-identical after the kills: the digest the server reports is only its record of
        // what it received, so hash the bytes it actually kept. Blobs are content-addressed
        // files in the data directory (`blobs/<first 2 hex>/<sha256>`, tenken-store-sqlite).
        let blob = server.dir.path().join("blobs").join(&sent.hex()[..2]).join(sent.hex());
        let stored = std::fs::read(&blob).unwrap_or_else(|e| panic!("{}: blob {}: {e}", c.key, blob.display()));
        assert_eq!(tenken_store::digest(&stored), sent, "{}: the stored bytes differ from the bytes sent", c.key);
        // Exactly once: every chunk recorded once, and the findings equal an uninterrupted
        // check (a chunk recorded twice would duplicate its findings).
        assert_eq!(s["progress"]["chunks_done"], s["progress"]["chunks"], "{s}");
        let got = server.findings(&c.token, *id);
        assert_eq!(got, c.expected, "findings of {} differ from an uninterrupted check", c.key);
    }
    // Nothing half-visible: the store holds exactly the acknowledged submissions (a request
    // killed after its commit but before its answer was retried with its key and matched).
    let admin = server.token(&["--admin"]);
    let (_, list) = get(&server.url, &admin, "/v1/submissions?limit=1000");
    let listed: Vec<i64> = list.as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect();
    let mut want: Vec<i64> = acked.values().map(|(id, _)| *id).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, want);
    eprintln!(
        "crash test: {n_kills} kills ({} with a submission in flight), {} submissions, all checked once",
        in_flight_kills.load(std::sync::atomic::Ordering::Relaxed),
        cases.len()
    );
}
