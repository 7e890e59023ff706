//! The plugin lifecycle against a real server: upload, signatures, validation, approval by
//! someone else, release sets effective by 診療年月, hot swap under load, replay,
//! auto-rollback.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenken_model::{Payer, YearMonth};

use crate::common;
use crate::server_util::*;

fn bundled(name: &str) -> Vec<u8> {
    tenken_bundled::DEFAULT_PLUGINS.iter().find(|(n, _)| *n == name).unwrap().1.to_vec()
}

/// The same component with a custom section appended: a new digest, the same behaviour
/// (a rebuilt plugin whose rules did not change).
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let mut payload = vec![tag.len() as u8];
    payload.extend_from_slice(tag.as_bytes());
    payload.extend_from_slice(b"rebuilt");
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    let mut n = payload.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { b } else { b | 0x80 });
        if n == 0 {
            break;
        }
    }
    out.extend(payload);
    out
}

fn upload(url: &str, token: &str, payer: &str, bytes: &[u8], sig: Option<&str>) -> Resp {
    let mut req = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(format!("{url}/v1/payers/{payer}/plugins"))
        .header("Authorization", format!("Bearer {token}"));
    if let Some(s) = sig {
        req = req.header("X-Tenken-Signature", s);
    }
    let mut r = req.send(bytes).unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.body_mut().read_to_string().unwrap();
    Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)), headers }
}

fn digest_of(bytes: &[u8]) -> String {
    tenken_store::digest(bytes).to_string()
}

fn first_set(url: &str, staff: &str, payer: &str) -> Value {
    let (st, sets) = get(url, staff, &format!("/v1/payers/{payer}/releases"));
    assert_eq!(st, 200, "{sets}");
    sets.as_array().unwrap().last().unwrap().clone()
}

/// Upload by `a`, validate by `a`, approve by `b`; returns the digest.
fn approved(url: &str, a: &str, b: &str, payer: &str, bytes: &[u8]) -> String {
    let r = upload(url, a, payer, bytes, None);
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
    let d = digest_of(bytes);
    let (st, report) = job(url, a, post(url, a, &format!("/v1/payers/{payer}/plugins/{d}/validate")));
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    let (st, rec) = post(url, b, &format!("/v1/payers/{payer}/plugins/{d}/approve"));
    assert_eq!(st, 200, "{rec}");
    assert_eq!(rec["state"], "approved");
    d
}

#[test]
fn approvals_validation_and_signatures_are_enforced() {
    let server = Server::start(&[]);
    let url = &server.url;
    let (s1, s2) = (server.token(&["--staff", "ssk"]), server.token(&["--staff", "ssk"]));
    let kokuho = server.token(&["--staff", "kokuho"]);
    let inst = server.institution_token("1234567");
    let candidate = variant(&bundled("tenken-check-diagnosis"), "approval-test");
    let d = digest_of(&candidate);

    // Only the payer's staff upload.
    for t in [&kokuho, &inst] {
        let r = upload(url, t, "ssk", &candidate, None);
        assert_error(r.status, &r.body, 403, "forbidden");
    }
    let r = upload(url, &s1, "ssk", &candidate, None);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["state"], "uploaded");
    assert_eq!(r.body["name"], "tenken-diagnosis");
    // Not validated: cannot be approved, cannot be activated.
    let (st, body) = post(url, &s2, &format!("/v1/payers/ssk/plugins/{d}/approve"));
    assert_error(st, &body, 409, "not-validated");
    let base = first_set(url, &s1, "ssk");
    let mut plugins: Vec<String> =
        base["plugins"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let replaced = plugins.pop().unwrap();
    plugins.push(d.clone());
    let (st, body) = send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": plugins}));
    assert_error(st, &body, 409, "not-approved");

    // The regression corpus: the seeded generated files, plus the shared corpus claim file.
    if let Some(corpus) = common::corpus() {
        let bytes = std::fs::read(corpus.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE")).unwrap();
        let r = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .post(format!("{url}/v1/payers/ssk/regression?name=corpus-gairai"))
            .header("Authorization", format!("Bearer {s1}"))
            .send(&bytes[..])
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    // Validation against the regression corpus: the same rules, so no delta.
    let (st, report) = job(url, &s1, post(url, &s1, &format!("/v1/payers/ssk/plugins/{d}/validate")));
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["replaces"], replaced);
    assert!(report["cases"].as_u64().unwrap() >= 2, "seeded regression corpus: {report}");
    // The uploader cannot approve; the other payer's staff cannot; a colleague can.
    let (st, body) = post(url, &s1, &format!("/v1/payers/ssk/plugins/{d}/approve"));
    assert_error(st, &body, 403, "self-approval");
    let (st, body) = post(url, &kokuho, &format!("/v1/payers/ssk/plugins/{d}/approve"));
    assert_error(st, &body, 403, "forbidden");
    let (st, rec) = post(url, &s2, &format!("/v1/payers/ssk/plugins/{d}/approve"));
    assert_eq!(st, 200, "{rec}");
    assert_eq!(rec["state"], "approved");
    let (st, set) =
        send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": plugins, "reason": "rebuilt"}));
    assert_eq!(st, 201, "{set}");
    // A plugin in a live set cannot be retired; the replaced one can, and then it cannot
    // be activated again.
    let (st, body) = post(url, &s1, &format!("/v1/payers/ssk/plugins/{d}/retire"));
    assert_error(st, &body, 409, "in-use");
    let (st, body) = post(url, &s1, &format!("/v1/payers/ssk/plugins/{replaced}/retire"));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["state"], "retired");
    let (st, body) = send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": [replaced]}));
    assert_error(st, &body, 409, "not-approved");

    // A failing candidate (traps on every receipt) fails the plugin-failures gate and can
    // be neither approved nor activated.
    let trap = std::fs::read(tenken_test_artifacts::hostile_plugin_path("hostile-trap").unwrap()).unwrap();
    let td = digest_of(&trap);
    assert_eq!(upload(url, &s1, "ssk", &trap, None).status, 201);
    let (_, report) = job(url, &s1, post(url, &s1, &format!("/v1/payers/ssk/plugins/{td}/validate")));
    assert_eq!(report["passed"], false, "{report}");
    assert!(report["gates"].to_string().contains("plugin-failures"));
    let (_, rec) = get(url, &s1, &format!("/v1/payers/ssk/plugins/{td}"));
    assert_eq!(rec["state"], "failed");
    let (st, body) = post(url, &s2, &format!("/v1/payers/ssk/plugins/{td}/approve"));
    assert_error(st, &body, 409, "not-validated");
    let (st, body) = send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": [td]}));
    assert_error(st, &body, 409, "not-approved");

    // A component for another contract version is refused at upload, naming the versions.
    let v2 = std::fs::read(tenken_test_artifacts::hostile_plugin_path("fixture-contract-v2").unwrap()).unwrap();
    let r = upload(url, &s1, "ssk", &v2, None);
    let msg = assert_error(r.status, &r.body, 422, "plugin-refused");
    assert!(msg.contains("2.0.0"), "{msg}");

    // Signatures: once a key is registered, unsigned and wrongly signed uploads are refused.
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let (st, body) = send_json(
        url,
        &s1,
        "POST",
        "/v1/payers/ssk/signing-keys",
        json!({"public_key": hex::encode(key.verifying_key().to_bytes())}),
    );
    assert_eq!(st, 201, "{body}");
    let signed = variant(&bundled("tenken-check-diagnosis"), "signed");
    let sd = digest_of(&signed);
    let r = upload(url, &s1, "ssk", &signed, None);
    assert_error(r.status, &r.body, 403, "signature-required");
    let bad = hex::encode(other.sign(sd.as_bytes()).to_bytes());
    let r = upload(url, &s1, "ssk", &signed, Some(&bad));
    assert_error(r.status, &r.body, 403, "bad-signature");
    let good = hex::encode(key.sign(sd.as_bytes()).to_bytes());
    let r = upload(url, &s1, "ssk", &signed, Some(&good));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["signed_by"], hex::encode(key.verifying_key().to_bytes()));
    // kokuho has no keys: unsigned uploads still work there.
    assert_eq!(upload(url, &kokuho, "kokuho", &signed, None).status, 201);

    // Every step is in the audit log with its actor.
    let (_, audit) = get(url, &s2, "/v1/payers/ssk/audit");
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["upload", "validated", "approval", "approved", "activate", "failed", "signing-key", "retired"] {
        assert!(actions.contains(&a), "{a} missing from the audit log: {actions:?}");
    }
}

/// A generated file whose odd-numbered receipts are moved to the month before.
fn two_month_file(seed: u64) -> Vec<u8> {
    let opts = tenken_gen::GenOptions {
        receipts: 40,
        institutions: 1,
        seed,
        payer: Some(Payer::Ssk),
        inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, 0.5)],
        ..Default::default()
    };
    let f = tenken_gen::generate(&opts, &common::demo_masters()).unwrap().remove(0);
    let text = encoding_rs::SHIFT_JIS.decode(&f.bytes).0.into_owned();
    let moved: String = text
        .split_inclusive('\n')
        .map(|l| {
            let fields: Vec<&str> = l.splitn(5, ',').collect();
            if fields.len() == 5 && fields[0] == "RE" && fields[1].parse::<u32>().is_ok_and(|n| n % 2 == 1) {
                format!("RE,{},{},202109,{}", fields[1], fields[2], fields[4])
            } else {
                l.to_owned()
            }
        })
        .collect();
    encoding_rs::SHIFT_JIS.encode(&moved).0.into_owned()
}

#[test]
fn receipts_are_checked_by_the_release_set_of_their_service_month() {
    let server = Server::start(&[]);
    let url = &server.url;
    let s1 = server.token(&["--staff", "ssk"]);
    let base = first_set(url, &s1, "ssk");
    // From 2021-10: the defaults without the diagnosis plugin (all approved system plugins).
    let mut plugins: Vec<Value> = base["plugins"].as_array().unwrap().clone();
    plugins.pop();
    let (st, new) = send_json(
        url,
        &s1,
        "POST",
        "/v1/payers/ssk/releases",
        json!({"from": "2021-10", "plugins": plugins, "reason": "revision"}),
    );
    assert_eq!(st, 201, "{new}");
    let bytes = two_month_file(5);
    let token = server.institution_token(&institution_of(&bytes));
    let r = submit(url, &token, &bytes, None);
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["submission"]["id"].as_i64().unwrap();
    server.wait_checked(&token, id, Duration::from_secs(60));
    let findings = server.findings(&token, id);
    let diag: Vec<u64> = findings
        .iter()
        .filter(|f| f["rule"].as_str().unwrap().starts_with("diagnosis."))
        .filter_map(|f| f["receipt"].as_u64())
        .collect();
    assert!(!diag.is_empty(), "the old rules found nothing: {findings:?}");
    // Only the 2021-09 receipts (odd numbers) were checked by the old set with diagnosis rules.
    assert!(diag.iter().all(|n| n % 2 == 1), "diagnosis findings on 2021-10 receipts: {diag:?}");
    // The decision records name both sets, each for its receipts.
    let (_, decisions) = get(url, &token, &format!("/v1/submissions/{id}/decisions"));
    let sets: std::collections::BTreeSet<i64> = decisions
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["sets"].as_array().unwrap().iter().map(|e| e["release_set"].as_i64().unwrap()))
        .collect();
    assert_eq!(sets, [base["id"].as_i64().unwrap(), new["id"].as_i64().unwrap()].into_iter().collect());

    // The CLI shows the same release sets, as a table and as JSON.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(["plugin"])
            .args(args)
            .args(["--payer", "ssk", "--server", url, "--token", &s1])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["releases"]);
    assert!(table.starts_with("ID") && table.contains("2021-10") && table.contains("active"), "{table}");
    let json: Value = serde_json::from_str(&cli(&["releases", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let audit = cli(&["audit"]);
    assert!(audit.contains("activate"), "{audit}");
}

/// The sets in force at `t`, allowing `slack_ms` for the swap (the 100 ms promise).
fn in_force(timeline: &[(i64, i64)], t: i64, slack_ms: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut before = None;
    for &(at, set) in timeline {
        if at <= t - slack_ms {
            before = Some(set);
        } else if at <= t {
            out.push(set);
        }
    }
    out.extend(before);
    out
}

#[test]
fn hot_swap_under_load_with_replay() {
    let server = Server::start(&[("SCHEDULE__CHUNK_RECEIPTS", "16"), ("LIMITS__CHECK_BATCH_RECEIPTS_MAX", "16")]);
    let url = server.url.clone();
    let (s1, s2) = (server.token(&["--staff", "ssk"]), server.token(&["--staff", "ssk"]));
    let a = first_set(&url, &s1, "ssk");
    let a_id = a["id"].as_i64().unwrap();
    let rebuilt = approved(&url, &s1, &s2, "ssk", &variant(&bundled("tenken-check-diagnosis"), "swap"));
    let mut b_plugins: Vec<Value> = a["plugins"].as_array().unwrap().clone();
    *b_plugins.last_mut().unwrap() = Value::String(rebuilt);

    // Files: 5 institutions × 12 months, all ssk, each its own billing month.
    let masters = common::demo_masters();
    let checker = common::wasm_checker(masters.clone());
    let mut cases = Vec::new();
    for month in 1..=12u8 {
        let opts = tenken_gen::GenOptions {
            receipts: 5 * 40,
            institutions: 5,
            seed: 9,
            payer: Some(Payer::Ssk),
            billing_month: YearMonth { year: 2021, month },
            inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, 0.1)],
        };
        cases.extend(tenken_gen::generate(&opts, &masters).unwrap());
    }
    let mut tokens = BTreeMap::new();
    for c in &cases {
        tokens.entry(c.institution_code.clone()).or_insert_with(|| server.institution_token(&c.institution_code));
    }
    let submitter = {
        let (url, tokens) = (url.clone(), tokens.clone());
        let files: Vec<(String, Vec<u8>)> =
            cases.iter().map(|c| (c.institution_code.clone(), c.bytes.clone())).collect();
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for (inst, bytes) in files {
                let r = submit(&url, &tokens[&inst], &bytes, None);
                assert_eq!(r.status, 202, "{}", r.body);
                ids.push((inst, r.body["submission"]["id"].as_i64().unwrap()));
                // Pacing (not a wait for an event): files keep arriving across all 50 swaps.
                std::thread::sleep(Duration::from_millis(15));
            }
            ids
        })
    };
    // 50 swaps while the files flow: activate B (a new set each time), roll back to A.
    let t0 = Instant::now();
    for i in 0..50 {
        if i % 2 == 0 {
            let (st, body) = send_json(
                &url,
                &s1,
                "POST",
                "/v1/payers/ssk/releases",
                json!({"plugins": b_plugins, "reason": format!("swap {i}")}),
            );
            assert_eq!(st, 201, "{body}");
        } else {
            let (st, body) = send_json(
                &url,
                &s1,
                "POST",
                &format!("/v1/payers/ssk/releases/{a_id}/rollback"),
                json!({"reason": format!("swap {i}")}),
            );
            assert_eq!(st, 200, "{body}");
        }
        // Pacing: one swap per 20 ms while the files flow.
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every swap was requested after t0 and went live before its request was answered (the
    // registry swaps inside the request), so its request → live time is within this.
    let swaps_ms = t0.elapsed().as_secs_f64() * 1000.0;
    eprintln!("50 swaps in {swaps_ms:.0} ms");
    let ids = submitter.join().unwrap();
    assert_eq!(ids.len(), cases.len());

    // The swap record: each of the 50, in order, with request → live ≤ request → first use.
    let (st, swaps) = get(&url, &s1, "/v1/payers/ssk/swaps");
    assert_eq!(st, 200, "{swaps}");
    let swaps = swaps.as_array().unwrap();
    assert_eq!(swaps.len(), 50, "{swaps:?}");
    for (i, s) in swaps.iter().enumerate() {
        assert_eq!(s["action"], if i % 2 == 0 { "activate" } else { "rollback" }, "{s}");
        if i % 2 == 1 {
            assert_eq!(s["subject"].as_i64(), Some(a_id), "{s}");
        }
        let live = s["swapped_after_ms"].as_f64().unwrap();
        assert!(
            live.is_finite() && live <= swaps_ms,
            "request → live not within the {swaps_ms:.0} ms of the swaps: {s}"
        );
        if let Some(first) = s["first_use_after_ms"].as_f64() {
            assert!(first >= live, "{s}");
        }
    }
    assert!(swaps.iter().any(|s| s["first_use_after_ms"].is_f64()), "no swapped-in table was ever used: {swaps:?}");
    let (st, _) = get(&url, &tokens.values().next().unwrap().clone(), "/v1/payers/ssk/swaps");
    assert_eq!(st, 403, "institutions do not see swaps");

    // Every swap is in the audit log too (plus the first start's activation).
    let (_, audit) = get(&url, &s1, "/v1/payers/ssk/audit?limit=1000");
    let audited: Vec<i64> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "activate" || e["action"] == "rollback")
        .map(|e| e["release_set"].as_i64().unwrap())
        .collect();
    assert!(audited.len() >= 51, "{} activations/rollbacks", audited.len());
    assert!(swaps.iter().all(|s| audited.contains(&s["subject"].as_i64().unwrap())), "{audited:?}");
    // The timeline of what was in force: the start's set, then each swap at the moment its
    // table went live (request time + time to live). The audit's time is when the request
    // was recorded, which can precede the swap by a group commit and the checker build.
    let mut timeline: Vec<(i64, i64)> = vec![(0, a_id)];
    timeline.extend(swaps.iter().map(|s| {
        let live = s["requested_ms"].as_i64().unwrap() as f64 + s["swapped_after_ms"].as_f64().unwrap();
        // Both clocks are read in whole ms (floor), so floor here too.
        (live.floor() as i64, s["subject"].as_i64().unwrap())
    }));
    timeline.sort();

    for ((inst, id), case) in ids.iter().zip(&cases) {
        let token = &tokens[inst];
        let s = server.wait_checked(token, *id, Duration::from_secs(300));
        assert_eq!(s["state"], "checked", "{s}");
        // Zero failed checks, and the findings of an undisturbed check.
        let got = server.findings(token, *id);
        assert!(got.iter().all(|f| !f["rule"].as_str().unwrap().starts_with("plugin.")), "{got:?}");
        let want: Vec<Value> = checker
            .check_bytes(&case.bytes, None)
            .unwrap()
            .findings
            .iter()
            .map(|f| serde_json::to_value(f).unwrap())
            .collect();
        assert_eq!(got, want);
        // Each receipt is covered by exactly one decision entry, naming the set in force when
        // the file's checking started (its pin): one file, one set (issue 11, item 7), however
        // many swaps happened while its chunks ran.
        let (_, decisions) = get(&url, token, &format!("/v1/submissions/{id}/decisions"));
        let mut covered = vec![0u32; case.receipts];
        let mut sets_used = std::collections::BTreeSet::new();
        for d in decisions.as_array().unwrap() {
            for e in d["sets"].as_array().unwrap() {
                let set = e["release_set"].as_i64().unwrap();
                sets_used.insert(set);
                let pinned = e["pinned_ms"].as_i64().expect("decision entries name the pin");
                assert!(pinned <= e["started_ms"].as_i64().unwrap(), "{e}");
                let ok = in_force(&timeline, pinned, 100);
                assert!(
                    ok.contains(&set),
                    "set {set} was not in force at {pinned} (in force: {ok:?}); timeline {timeline:?}; swaps {swaps:?}"
                );
                if let Some(r) = e["receipts"].as_array() {
                    for i in r[0].as_u64().unwrap()..r[1].as_u64().unwrap() {
                        covered[i as usize] += 1;
                    }
                }
            }
        }
        assert!(covered.iter().all(|&c| c == 1), "receipt coverage {covered:?}");
        assert_eq!(sets_used.len(), 1, "submission {id} was checked with sets {sets_used:?}");
    }

    // Replay reproduces the stored findings exactly, under the recorded versions.
    for (_, id) in ids.iter().step_by(15) {
        let out = std::process::Command::new(bin())
            .args(["replay", &id.to_string(), "--data-dir"])
            .arg(server.dir.path())
            .env("TENKEN_CFG__CACHE_DIR", format!("{:?}", common::cache_dir().display().to_string()))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "replay {id}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("reproduced exactly"), "{stdout}");
    }
}

#[test]
fn a_plugin_that_traps_on_every_receipt_is_rolled_back_automatically() {
    check_auto_rollback("hostile-trap");
}

/// Issue 10, defect 4: auto-rollback counted only traps, timeouts and skips; a release set
/// whose plugin exhausts its memory on every receipt stayed in force.
#[test]
fn a_plugin_that_runs_out_of_memory_on_every_receipt_is_rolled_back_automatically() {
    check_auto_rollback("hostile-memory");
}

fn check_auto_rollback(hostile: &str) {
    let server = Server::start(&[
        ("KOKUHO__VALIDATION_PLUGIN_FAILURES_MAX", "1000000"),
        ("SCHEDULE__AUTO_ROLLBACK_WINDOW_RECEIPTS", "100"),
        ("SCHEDULE__CHUNK_RECEIPTS", "32"),
    ]);
    let url = &server.url;
    let (k1, k2) = (server.token(&["--staff", "kokuho"]), server.token(&["--staff", "kokuho"]));
    let good = first_set(url, &k1, "kokuho");
    let trap = std::fs::read(tenken_test_artifacts::hostile_plugin_path(hostile).unwrap()).unwrap();
    let td = approved(url, &k1, &k2, "kokuho", &trap);
    let mut plugins = good["plugins"].as_array().unwrap().clone();
    plugins.push(Value::String(td));
    let (st, bad) =
        send_json(url, &k1, "POST", "/v1/payers/kokuho/releases", json!({"plugins": plugins, "reason": "bad release"}));
    assert_eq!(st, 201, "{bad}");

    let mut last = None;
    for seed in 0..6 {
        let opts = tenken_gen::GenOptions {
            receipts: 100,
            institutions: 1,
            seed: 300 + seed,
            payer: Some(Payer::Kokuho),
            ..Default::default()
        };
        let f = tenken_gen::generate(&opts, &common::demo_masters()).unwrap().remove(0);
        let token = server.institution_token(&f.institution_code);
        let r = submit(url, &token, &f.bytes, None);
        assert_eq!(r.status, 202, "{}", r.body);
        let id = r.body["submission"]["id"].as_i64().unwrap();
        server.wait_checked(&token, id, Duration::from_secs(120));
        last = Some((token, id));
        let (_, sets) = get(url, &k1, "/v1/payers/kokuho/releases");
        if sets.as_array().unwrap().iter().any(|s| s["id"] == bad["id"] && s["state"] == "rolled-back") {
            break;
        }
    }
    let (_, sets) = get(url, &k1, "/v1/payers/kokuho/releases");
    let state = |id: &Value| sets.as_array().unwrap().iter().find(|s| &s["id"] == id).unwrap()["state"].clone();
    assert_eq!(state(&bad["id"]), "rolled-back", "{sets}");
    assert_eq!(state(&good["id"]), "active", "{sets}");
    let (_, audit) = get(url, &k1, "/v1/payers/kokuho/audit");
    let auto = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "rollback" && e["actor"] == 0)
        .expect("auto-rollback event");
    assert!(auto["reason"].as_str().unwrap().contains("auto-rollback"), "{auto}");
    let (_, notices) = get(url, &k1, "/v1/notices");
    assert!(notices.to_string().contains("rolled back automatically"), "{notices}");
    // Issue 10, defect 5: that notice is for staff; institutions never see it.
    let (institution, _) = last.as_ref().unwrap();
    let (_, theirs) = get(url, institution, "/v1/notices");
    assert!(!theirs.to_string().contains("rolled back automatically"), "{theirs}");
    // New work is checked by the good set again: no plugin failures.
    let opts = tenken_gen::GenOptions {
        receipts: 40,
        institutions: 1,
        seed: 399,
        payer: Some(Payer::Kokuho),
        ..Default::default()
    };
    let f = tenken_gen::generate(&opts, &common::demo_masters()).unwrap().remove(0);
    let token = server.institution_token(&f.institution_code);
    let r = submit(url, &token, &f.bytes, None);
    let id = r.body["submission"]["id"].as_i64().unwrap();
    server.wait_checked(&token, id, Duration::from_secs(60));
    let findings = server.findings(&token, id);
    assert!(findings.iter().all(|f| !f["rule"].as_str().unwrap().starts_with("plugin.")), "{findings:?}");
    drop(last);
}

/// Issue 10, defect 1: `from` was stored as typed, so `2024-6` and `2024-06` were two months
/// to the store's supersede and the older set could stay in force. Now only `YYYY-MM` is
/// accepted, and a second activation for the same month supersedes the first.
#[test]
fn a_month_has_one_spelling_and_the_newer_activation_wins() {
    let server = Server::start(&[]);
    let url = &server.url;
    let s1 = server.token(&["--staff", "ssk"]);
    let good = first_set(url, &s1, "ssk");
    let plugins = good["plugins"].clone();
    for bad in ["2024-6", "+2024-06", "2024-13", "202406"] {
        let (st, body) =
            send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": plugins, "from": bad}));
        let msg = assert_error(st, &body, 400, "bad-month");
        assert!(msg.contains("YYYY-MM"), "{bad}: {msg}");
    }
    let (st, a) =
        send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": plugins, "from": "2024-06"}));
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["from_month"], "2024-06");
    let (st, b) =
        send_json(url, &s1, "POST", "/v1/payers/ssk/releases", json!({"plugins": plugins, "from": "2024-06"}));
    assert_eq!(st, 201, "{b}");
    let (_, sets) = get(url, &s1, "/v1/payers/ssk/releases");
    let active: Vec<&Value> =
        sets.as_array().unwrap().iter().filter(|s| s["state"] == "active" && s["from_month"] == "2024-06").collect();
    assert_eq!(active.len(), 1, "{sets}");
    assert_eq!(active[0]["id"], b["id"], "the newer activation is in force: {sets}");
    let (_, older) = get(url, &s1, "/v1/payers/ssk/releases");
    assert!(older.as_array().unwrap().iter().any(|s| s["id"] == a["id"] && s["state"] == "superseded"), "{older}");
}
