//! Several `tenken serve` nodes on one real PostgreSQL (issue 12): work claimed across the
//! nodes, a SIGKILLed node's chunks taken over, a frozen node's late result refused, swaps
//! through one node in force on the others within a second, and a database outage answered
//! 503 + Retry-After and recovered from without restarting anything. Real processes, real
//! PostgreSQL (the test cluster of `scripts/pg-test-cluster.sh`); the tests return early
//! without one, except under `TENKEN_REQUIRE_POSTGRES=1` (`.ci/run`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenken_model::Payer;

use crate::common;
use crate::server_util::*;

/// One claim file of the cluster tests and what `tenken check` finds in it.
struct File {
    bytes: Vec<u8>,
    institution: String,
    expected: Value,
}

/// `institutions` institutions (alternating payers), `per` files each (one per billing
/// month, so none supersedes another), of mixed sizes; expected findings from the checker
/// in this process (the wasm plugins and the demo masters the nodes use).
fn files(institutions: usize, per: usize, sizes: &[usize]) -> Vec<File> {
    let masters = common::demo_masters();
    let checker = common::wasm_checker(masters.clone());
    let mut out = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    let mut seed = 7_000;
    for i in 0..institutions {
        let payer = if i % 2 == 0 { Payer::Ssk } else { Payer::Kokuho };
        let gen_one = |seed: u64, j: usize| {
            let opts = tenken_gen::GenOptions {
                receipts: sizes[(i + j) % sizes.len()],
                institutions: 1,
                seed,
                billing_month: tenken_model::YearMonth { year: 2021, month: 11 - j as u8 },
                payer: Some(payer),
                inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, 0.1)],
            };
            tenken_gen::generate(&opts, &masters).unwrap().remove(0)
        };
        // The code follows from the seed alone: skip seeds whose code is taken.
        while !used.insert(gen_one(seed, 0).institution_code) {
            seed += 1;
        }
        for j in 0..per {
            let f = gen_one(seed, j);
            let report = checker.check_bytes(&f.bytes, Some(payer)).unwrap();
            out.push(File {
                institution: f.institution_code,
                expected: serde_json::to_value(&report.findings).unwrap(),
                bytes: f.bytes,
            });
        }
        seed += 1;
    }
    let codes: std::collections::BTreeSet<&str> = out.iter().map(|f| f.institution.as_str()).collect();
    assert_eq!(codes.len(), institutions, "one institution code per institution");
    out
}

/// Tokens for every institution of `files`, created through `node`'s API with an admin token.
fn institution_tokens(node: &Server, admin: &str, files: &[File]) -> HashMap<String, String> {
    let mut tokens = HashMap::new();
    for f in files {
        if tokens.contains_key(&f.institution) {
            continue;
        }
        let (st, body) = send_json(
            &node.url,
            admin,
            "POST",
            "/v1/tokens",
            json!({"role": "institution", "institution": f.institution, "label": "cluster test"}),
        );
        assert_eq!(st, 201, "{body}");
        tokens.insert(f.institution.clone(), body["token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// Starts `names` nodes on `url` together (they migrate and bootstrap the empty database
/// at once).
fn start_nodes(url: &str, names: &[&str], env: &[(&str, &str)]) -> Vec<Server> {
    std::thread::scope(|s| {
        let handles: Vec<_> = names.iter().map(|n| s.spawn(move || Server::node(url, n, env))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Chunks the node named `name` holds right now (read from the database).
fn held_by(db: &mut postgres::Client, name: &str) -> Vec<(i64, i64, i64)> {
    db.query(
        "SELECT c.submission, c.idx, c.fence FROM chunks c JOIN nodes n ON n.owner = c.node WHERE n.name = $1",
        &[&name],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Waits until submission `id` is checked (through `node`), then asserts it was checked
/// exactly once — one decision record per chunk, every chunk done — with the findings
/// `tenken check` gives; returns its decision records.
fn assert_checked_once(node: &Server, token: &str, id: i64, f: &File) -> Vec<Value> {
    let s = node.wait_checked(token, id, Duration::from_secs(180));
    assert_eq!(s["state"], "checked", "{s}");
    assert_eq!(s["progress"]["chunks_done"], s["progress"]["chunks"], "{s}");
    let findings = node.findings(token, id);
    assert_eq!(Value::Array(findings), f.expected, "submission {id}: the cluster and `tenken check` disagree");
    let (st, d) = get(&node.url, token, &format!("/v1/submissions/{id}/decisions"));
    assert_eq!(st, 200, "{d}");
    let records = d["chunks"].as_array().or(d.as_array()).cloned().unwrap_or_default();
    assert_eq!(records.len() as u64, s["progress"]["chunks"].as_u64().unwrap(), "one record per chunk: {d}");
    records
}

/// Three nodes, 300 files from 50 institutions of both payers submitted round-robin to
/// every node; one node SIGKILLed while it holds claims. Every acknowledged submission is
/// checked exactly once with `tenken check`'s findings; the nodes alive throughout shared
/// each payer's work within busy max/mean ≤ 1.15.
#[test]
fn three_nodes_share_the_work_and_a_killed_nodes_chunks_are_taken_over() {
    let Some(url) = fresh_database() else { return };
    let env = [
        ("SCHEDULE__LEASE_MS", "3000"),
        ("SCHEDULE__CHUNK_RECEIPTS", "32"),
        ("STORE__STATS_WINDOW_MS", "900000"),
        ("ADMISSION__SUBMISSIONS_PER_INSTITUTION_BURST_MAX", "100"),
    ];
    let mut nodes = start_nodes(&url, &["a", "b", "c"], &env);
    let admin = nodes[0].token(&["--admin"]);
    let files = files(50, 6, &[3, 12, 30, 60, 90, 140]);
    let tokens = institution_tokens(&nodes[0], &admin, &files);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();

    // Submitted round-robin to the three nodes; C is killed once it holds claims, after
    // two thirds were submitted; the rest go round-robin to A and B.
    let mut accepted: Vec<(i64, usize)> = Vec::new();
    let mut killed_at = None;
    for (k, f) in files.iter().enumerate() {
        let alive = if killed_at.is_some() { 2 } else { 3 };
        let node = &nodes[k % alive];
        let r = submit(&node.url, &tokens[&f.institution], &f.bytes, Some(&format!("f{k}")));
        assert_eq!(r.status, 202, "{}", r.body);
        accepted.push((r.body["submission"]["id"].as_i64().unwrap(), k));
        if killed_at.is_none() && k >= files.len() * 2 / 3 && !held_by(&mut db, "c").is_empty() {
            nodes[2].kill();
            killed_at = Some(Instant::now());
        }
    }
    if killed_at.is_none() {
        // C held nothing at the moments looked: wait for it to hold a claim, then kill.
        wait_for("node c holds a claim", Duration::from_secs(60), || {
            if held_by(&mut db, "c").is_empty() { Err("none".into()) } else { Ok(()) }
        });
        nodes[2].kill();
        killed_at = Some(Instant::now());
    }
    let killed_at = killed_at.unwrap();
    let held = held_by(&mut db, "c");
    let taken_over = wait_for("C's chunks are claimed again", Duration::from_secs(60), || {
        if held_by(&mut db, "c").is_empty() { Ok(killed_at.elapsed()) } else { Err(format!("{held:?}")) }
    });
    eprintln!("cluster: node c killed holding {} chunk(s); claimed elsewhere after {taken_over:?}", held.len());

    let t0 = Instant::now();
    let mut recorded_by: BTreeMap<String, usize> = BTreeMap::new();
    for (id, k) in &accepted {
        let f = &files[*k];
        for r in assert_checked_once(&nodes[0], &tokens[&f.institution], *id, f) {
            *recorded_by.entry(r["node"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
    }
    let done = Instant::now();
    eprintln!(
        "cluster: all {} submissions checked {:?} after the last one; chunks recorded by {recorded_by:?}",
        accepted.len(),
        t0.elapsed()
    );
    assert!(recorded_by.len() >= 3, "every node recorded chunks: {recorded_by:?}");

    // Balance over the nodes alive throughout, once each has reported after the end.
    let staff = nodes[0].token(&["--staff", "ssk"]);
    let view = wait_for("a heartbeat from A and B after the work ended", Duration::from_secs(30), || {
        let (st, v) = get(&nodes[1].url, &staff, "/v1/cluster");
        assert_eq!(st, 200, "{v}");
        let fresh = v["nodes"].as_array().unwrap().iter().filter(|n| n["alive"] == true).all(|n| {
            n["heartbeat_ms"].as_i64().unwrap() > v["now_ms"].as_i64().unwrap() - done.elapsed().as_millis() as i64
        });
        if fresh { Ok(v) } else { Err(v.to_string()) }
    });
    assert_eq!(view["backend"], "postgres");
    let alive: Vec<&Value> = view["nodes"].as_array().unwrap().iter().filter(|n| n["alive"] == true).collect();
    let names: Vec<&str> = alive.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "a and b alive, c dead: {view}");
    assert!(view["nodes"].as_array().unwrap().iter().any(|n| n["name"] == "c" && n["alive"] == false), "{view}");
    for b in view["balance"].as_array().unwrap() {
        let ratio = b["max_over_mean"].as_f64().expect("both payers had work");
        eprintln!(
            "cluster: {} busy mean {:.3} max {:.3} max/mean {ratio:.3}",
            b["payer"], b["busy_mean"], b["busy_max"]
        );
        assert!(ratio <= 1.15, "{} unbalanced across the nodes alive throughout: {b}", b["payer"]);
    }
    let (st, metrics) = (200, get_raw(&nodes[1].url, &[], "/metrics"));
    assert_eq!(metrics.status, st);
    assert!(metrics.body.as_str().unwrap().contains("node=\"b\""), "metrics carry the node label");
}

/// A node frozen (SIGSTOP) past its lease while it holds a claim: another node checks the
/// chunk; when the frozen node resumes (SIGCONT) its late result is refused, so the chunk
/// is recorded once, by the other node.
#[test]
fn a_node_frozen_past_its_lease_cannot_record_its_stale_result() {
    let Some(url) = fresh_database() else { return };
    let env = [("SCHEDULE__LEASE_MS", "2000"), ("SCHEDULE__CHUNK_RECEIPTS", "16")];
    let nodes = start_nodes(&url, &["a", "b"], &env);
    let admin = nodes[0].token(&["--admin"]);
    let files = files(6, 4, &[40, 80, 120]);
    let tokens = institution_tokens(&nodes[0], &admin, &files);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut accepted = Vec::new();
    let mut frozen: Vec<(i64, i64, i64)> = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let r = submit(&nodes[0].url, &tokens[&f.institution], &f.bytes, None);
        assert_eq!(r.status, 202, "{}", r.body);
        accepted.push((r.body["submission"]["id"].as_i64().unwrap(), k));
        if frozen.is_empty() && !held_by(&mut db, "b").is_empty() {
            nodes[1].signal("STOP");
            frozen = held_by(&mut db, "b");
            if frozen.is_empty() {
                nodes[1].signal("CONT");
            }
        }
    }
    assert!(!frozen.is_empty(), "node b was frozen while holding a claim");
    // A checks everything, b's chunks included once b's lease has lapsed.
    for (id, k) in &accepted {
        let f = &files[*k];
        let records = assert_checked_once(&nodes[0], &tokens[&f.institution], *id, f);
        for (sub, idx, _) in &frozen {
            if sub == id {
                assert_eq!(records[*idx as usize]["node"], "a", "b's chunk was taken over: {records:?}");
            }
        }
    }
    nodes[1].signal("CONT");
    wait_for("b resumes and its late result is refused", Duration::from_secs(60), || {
        let log = nodes[1].log();
        if log.contains("chunk result fenced") || log.contains("chunk result dropped") {
            Ok(())
        } else {
            Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    });
    // Still exactly once after b's attempt.
    for (id, k) in &accepted {
        let f = &files[*k];
        assert_checked_once(&nodes[0], &tokens[&f.institution], *id, f);
    }
}

/// 20 activations through node A while B and C check: every one in force on B and C within
/// a second (their own swap records), zero failed checks, and every file checked by one
/// release set (per 診療年月) throughout, whichever nodes checked its chunks.
#[test]
fn activations_through_one_node_are_in_force_on_the_others_within_a_second() {
    let Some(url) = fresh_database() else { return };
    let env = [("SCHEDULE__LEASE_MS", "3000"), ("SCHEDULE__CHUNK_RECEIPTS", "16")];
    let nodes = start_nodes(&url, &["a", "b", "c"], &env);
    let admin = nodes[0].token(&["--admin"]);
    let staff = nodes[0].token(&["--staff", "ssk"]);
    let files: Vec<File> = files(8, 5, &[20, 50, 90]).into_iter().collect();
    let tokens = institution_tokens(&nodes[0], &admin, &files);
    let (st, sets) = get(&nodes[0].url, &staff, "/v1/payers/ssk/releases");
    assert_eq!(st, 200, "{sets}");
    let plugins: Vec<Value> = sets[0]["plugins"].as_array().unwrap().clone();
    let reversed: Vec<Value> = plugins.iter().rev().cloned().collect();

    let submitter = {
        let (urls, files, tokens) = (
            vec![nodes[1].url.clone(), nodes[2].url.clone()],
            files.iter().map(|f| (f.bytes.clone(), f.institution.clone())).collect::<Vec<_>>(),
            tokens.clone(),
        );
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for (k, (bytes, inst)) in files.iter().enumerate() {
                let r = submit(&urls[k % 2], &tokens[inst], bytes, None);
                assert_eq!(r.status, 202, "{}", r.body);
                ids.push((r.body["submission"]["id"].as_i64().unwrap(), k));
                std::thread::sleep(Duration::from_millis(50));
            }
            ids
        })
    };
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let list = if i % 2 == 0 { &reversed } else { &plugins };
        let (st, set) = send_json(
            &nodes[0].url,
            &staff,
            "POST",
            "/v1/payers/ssk/releases",
            json!({"plugins": list, "reason": format!("cluster test activation {i}")}),
        );
        assert_eq!(st, 201, "{set}");
        let id = set["id"].as_i64().unwrap();
        let t0 = Instant::now();
        for node in &nodes[1..] {
            wait_for("the activation is in force on the other node", Duration::from_secs(10), || {
                let (st, swaps) = get(&node.url, &staff, "/v1/payers/ssk/swaps");
                assert_eq!(st, 200, "{swaps}");
                if swaps.as_array().unwrap().iter().any(|s| s["subject"].as_i64() >= Some(id)) {
                    Ok(())
                } else {
                    Err(swaps.to_string())
                }
            });
        }
        slowest = slowest.max(t0.elapsed());
    }
    eprintln!("cluster: 20 activations through a; in force on b and c after at most {slowest:?}");
    assert!(slowest <= Duration::from_secs(1), "an activation took {slowest:?} to be in force elsewhere");

    let ids = submitter.join().unwrap();
    for (id, k) in ids {
        let f = &files[k];
        let records = assert_checked_once(&nodes[0], &tokens[&f.institution], id, f);
        let sets: std::collections::BTreeSet<i64> = records
            .iter()
            .flat_map(|r| r["sets"].as_array().cloned().unwrap_or_default())
            .map(|e| e["release_set"].as_i64().unwrap())
            .collect();
        assert_eq!(sets.len(), 1, "submission {id} was checked by one release set: {records:?}");
        let text = serde_json::to_string(&f.expected).unwrap();
        assert!(!text.contains("\"plugin."), "no plugin failure: {text}");
    }
}

/// PostgreSQL stopped and started under load: meanwhile submissions are answered 503 with
/// Retry-After (never 500, never a hang), `/healthz` names the trouble; afterwards the
/// nodes accept again by themselves and every acknowledged submission is checked.
#[test]
fn a_database_outage_is_answered_503_and_recovered_from_without_a_restart() {
    let Some(_) = fresh_database() else { return };
    // A cluster of this test's own: it is stopped and started.
    let script = common::root().join("scripts/pg-test-cluster.sh");
    let out = std::process::Command::new(&script).arg("start").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let var = |name: &str| text.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).unwrap().to_owned();
    let (dir, base) = (var("PG_TEST_DIR"), var("TENKEN_TEST_DATABASE_URL"));
    struct Cleanup(std::path::PathBuf, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0).args(["stop", &self.1]).status();
        }
    }
    let _cleanup = Cleanup(script.clone(), dir.clone());
    let url = create_database(&base);
    let env = [("SCHEDULE__LEASE_MS", "3000"), ("STORE__CONNECTION_WAIT_MS_MAX", "1000")];
    let nodes = start_nodes(&url, &["a", "b"], &env);
    let admin = nodes[0].token(&["--admin"]);
    let files = files(6, 8, &[10, 30, 60]);
    let tokens = institution_tokens(&nodes[0], &admin, &files);

    // The load: every file in turn, to the two nodes alternately, each retried after a 503
    // until it is acknowledged; every answer is 202 or 503 + Retry-After, and quick.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (acked, refused) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicUsize::new(0)));
    let load = {
        let urls = [nodes[0].url.clone(), nodes[1].url.clone()];
        let work: Vec<(Vec<u8>, String)> =
            files.iter().map(|f| (f.bytes.clone(), tokens[&f.institution].clone())).collect();
        let (acked, refused) = (acked.clone(), refused.clone());
        std::thread::spawn(move || {
            let mut out = Vec::new();
            for (k, (bytes, token)) in work.iter().enumerate() {
                loop {
                    let t0 = Instant::now();
                    let r = submit(&urls[k % 2], token, bytes, Some(&format!("k{k}")));
                    assert!(t0.elapsed() < Duration::from_secs(10), "answered within the request timeout");
                    match r.status {
                        202 => {
                            out.push((r.body["submission"]["id"].as_i64().unwrap(), k));
                            acked.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        503 => {
                            assert!(r.headers.get("retry-after").is_some(), "503 carries Retry-After: {}", r.body);
                            refused.fetch_add(1, Ordering::SeqCst);
                            // Sooner than Retry-After asks: the test wants to see recovery.
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        other => panic!("a submission answered {other}: {}", r.body),
                    }
                }
            }
            out
        })
    };
    wait_for("a few acknowledged before the outage", Duration::from_secs(60), || {
        if acked.load(Ordering::SeqCst) >= 8 { Ok(()) } else { Err(acked.load(Ordering::SeqCst).to_string()) }
    });
    let down = std::process::Command::new(&script).args(["down", &dir]).status().unwrap();
    assert!(down.success());
    let during = acked.load(Ordering::SeqCst);
    wait_for("submissions are refused 503 while the database is down", Duration::from_secs(30), || {
        if refused.load(Ordering::SeqCst) >= 5 { Ok(()) } else { Err(refused.load(Ordering::SeqCst).to_string()) }
    });
    wait_for("healthz names the database", Duration::from_secs(15), || {
        let h = get_raw(&nodes[1].url, &[], "/healthz");
        let body = h.body.as_str().unwrap_or("").to_owned();
        if h.status == 200 && body.contains("database: unavailable") { Ok(()) } else { Err(body) }
    });
    assert!(acked.load(Ordering::SeqCst) <= during + 1, "nothing acknowledged while the database was down");
    let up = std::process::Command::new(&script).args(["up", &dir]).status().unwrap();
    assert!(up.success());
    let acknowledged = load.join().expect("the load ran through the outage");
    eprintln!(
        "cluster: outage: {} acknowledged, {} refused 503 meanwhile",
        acknowledged.len(),
        refused.load(Ordering::SeqCst)
    );
    assert_eq!(acknowledged.len(), files.len());
    for (id, k) in &acknowledged {
        let f = &files[*k];
        assert_checked_once(&nodes[1], &tokens[&f.institution], *id, f);
    }
    // The next heartbeat of each node finds the database again.
    for node in &nodes {
        wait_for("healthz says the trouble is over", Duration::from_secs(15), || {
            let h = get_raw(&node.url, &[], "/healthz");
            let body = h.body.as_str().unwrap_or("").to_owned();
            if body == "ok\n" { Ok(()) } else { Err(body) }
        });
    }
}
