//! The May 2022 path, replayed end to end against a real server with the real 2022-04
//! revision (`s_ALL20220218.csv` plus its 13 real 差分 files) while claims flow: every
//! mistake of May tried on purpose, each refused or correct, with the message a staff
//! member needs (issue 11). Before the fixes this test failed at items 1–4, 6 and 7.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenken_model::{Payer, YearMonth};

use crate::common;
use crate::server_util::*;

/// Uploads files (name, bytes) as `who` of `payer`: the `files` list of a proposal.
fn upload(url: &str, who: &str, payer: &str, files: &[(String, Vec<u8>)]) -> Vec<Value> {
    files
        .iter()
        .map(|(name, bytes)| {
            let (st, b) = post_bytes(url, who, &format!("/v1/payers/{payer}/masters/files"), bytes);
            assert_eq!(st, 200, "{b}");
            json!({"name": name, "blob": b["blob"]})
        })
        .collect()
}

/// A proposal followed to its job's end: (status, version or error).
fn propose(url: &str, who: &str, payer: &str, body: Value) -> (u16, Value) {
    job(url, who, send_json(url, who, "POST", &format!("/v1/payers/{payer}/masters"), body))
}

/// A job's refusal: its status, code and message (job errors carry no request id).
fn refused(status: u16, body: &Value, want_status: u16, want_code: &str) -> String {
    assert_eq!((status, body["error"]["code"].as_str()), (want_status, Some(want_code)), "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

fn act(url: &str, who: &str, payer: &str, id: i64, action: &str, body: Value) -> (u16, Value) {
    send_json(url, who, "POST", &format!("/v1/payers/{payer}/masters/{id}/{action}"), body)
}

fn diff_files(corpus: &Path, take: usize) -> Vec<(String, Vec<u8>)> {
    let dir = corpus.join("ssk-master/diff-2022");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 13, "{names:?}");
    names.into_iter().take(take).map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap())).collect()
}

fn procedure(v: &Value) -> Value {
    v["report"]["diff"].as_array().unwrap().iter().find(|d| d["kind"] == "procedure").unwrap().clone()
}

/// A claim file of `receipts` receipts for 診療年月 2022-04 (billed 2022-05), to ssk.
fn april_claim(receipts: usize, seed: u64) -> Vec<u8> {
    let opts = tenken_gen::GenOptions {
        receipts,
        institutions: 1,
        seed,
        payer: Some(Payer::Ssk),
        billing_month: YearMonth { year: 2022, month: 5 },
        ..Default::default()
    };
    tenken_gen::generate(&opts, &common::demo_masters()).unwrap().remove(0).bytes
}

/// `tenken master import --payer P ARGS… DIR --data-dir D`: (succeeded, stderr).
fn import(payer: &str, args: &[&str], masters: &Path, data_dir: &Path) -> (bool, String) {
    let out = std::process::Command::new(bin())
        .args(["master", "import", "--payer", payer])
        .args(args)
        .arg(masters)
        .arg("--data-dir")
        .arg(data_dir)
        .env("TENKEN_CFG__CACHE_DIR", format!("{:?}", common::cache_dir().display().to_string()))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The master versions a submission's decision records name, and their chunks' start times.
fn masters_used(url: &str, token: &str, id: i64) -> (BTreeSet<i64>, Vec<i64>) {
    let (st, d) = get(url, token, &format!("/v1/submissions/{id}/decisions"));
    assert_eq!(st, 200, "{d}");
    let mut versions = BTreeSet::new();
    let mut started = Vec::new();
    for rec in d.as_array().unwrap() {
        for e in rec["sets"].as_array().unwrap() {
            versions.insert(e["master_version"].as_i64().unwrap());
            started.push(e["started_ms"].as_i64().unwrap());
        }
    }
    (versions, started)
}

#[test]
fn the_may_2022_path_is_closed() {
    let Some(corpus) = common::corpus() else { return };
    // Both payers start from the real pre-revision masters, installed by the operator on an
    // empty data directory (the one route `master import` still has).
    let dir = tempfile::tempdir().unwrap();
    for payer in ["ssk", "kokuho"] {
        let (ok, err) = import(payer, &[], &corpus.join("ssk-master/full"), dir.path());
        assert!(ok, "{err}");
    }
    let mut server =
        Server::start_in(dir, &[("DEMO_MASTERS", "false"), ("SCHEDULE__CHUNK_RECEIPTS", "16"), ("SSK__WORKERS", "1")]);
    let url = server.url.clone();
    let s1 = server.token(&["--staff", "ssk", "--label", "ssk 佐藤"]);
    let s2 = server.token(&["--staff", "ssk", "--label", "ssk 鈴木"]);
    let k1 = server.token(&["--staff", "kokuho", "--label", "kokuho 高橋"]);
    let k2 = server.token(&["--staff", "kokuho", "--label", "kokuho 田中"]);
    let versions = |who: &str, payer: &str| get(&url, who, &format!("/v1/payers/{payer}/masters")).1;
    let base = versions(&s1, "ssk")[0]["id"].as_i64().unwrap();
    let kokuho_base = versions(&k1, "kokuho")[0]["id"].as_i64().unwrap();

    // A real claim (診療年月 2021-10) already checked: the impact check re-checks it.
    let real = std::fs::read(corpus.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE")).unwrap();
    let inst = server.institution_token(&institution_of(&real));
    let r = submit(&url, &inst, &real, None);
    assert_eq!(r.status, 202, "{}", r.body);
    server.wait_checked(&inst, r.body["submission"]["id"].as_i64().unwrap(), Duration::from_secs(120));

    // Item 3: a live `master import` would make a version active with no approval.
    let full = corpus.join("ssk-master/full");
    let (ok, err) = import("ssk", &[], &full, server.dir.path());
    assert!(!ok && err.contains("master propose") && err.contains("--force"), "{err}");
    // Forced, it is audited and only proposed: approving it needs its check, run on request.
    let (ok, err) = import("ssk", &["--force", "--reason", "server down on a holiday"], &full, server.dir.path());
    assert!(ok && err.contains("PROPOSED") && err.contains("recheck"), "{err}");
    let forced = versions(&s1, "ssk")[0].clone();
    assert_eq!(
        (forced["state"].as_str(), forced["proposed_by"]["token"].as_i64()),
        (Some("proposed"), Some(0)),
        "{forced}"
    );
    let forced_id = forced["id"].as_i64().unwrap();
    let (st, b) = act(&url, &s2, "ssk", forced_id, "approve", json!({}));
    let msg = assert_error(st, &b, 409, "impact-report-unreadable");
    assert!(msg.contains("recheck"), "{msg}");
    let (st, rechecked) = job(&url, &s1, post(&url, &s1, &format!("/v1/payers/ssk/masters/{forced_id}/recheck")));
    assert_eq!(st, 200, "{rechecked}");
    assert_eq!(procedure(&rechecked)["changed"], 0, "the same files as the version in force: {}", rechecked["report"]);
    assert!(rechecked["report"]["impact"].is_object(), "{rechecked}");
    let (_, audit) = get(&url, &s1, "/v1/payers/ssk/audit");
    assert!(audit.to_string().contains("master-import-forced"), "{audit}");
    act(&url, &s1, "ssk", forced_id, "withdraw", json!({"reason": "not needed"}));

    let all = diff_files(&corpus, 13);
    let ssk_files = upload(&url, &s1, "ssk", &all);

    // Item 3: kokuho staff cannot put 支払基金's files in force themselves.
    let kokuho_files = upload(&url, &k1, "kokuho", &all);
    let (st, b) = propose(&url, &k1, "kokuho", json!({"from": "2022-04", "base": kokuho_base, "files": kokuho_files}));
    let msg = assert_error(st, &b, 409, "masters-converted-only");
    assert!(msg.contains("convert-for/kokuho"), "{msg}");

    // Item 6: a 差分 without a base, and a month in a second spelling.
    let (st, b) = propose(&url, &s1, "ssk", json!({"from": "2022-04", "files": ssk_files}));
    let msg = refused(st, &b, 422, "master-file-not-applied");
    assert!(msg.contains("s_20220304.csv") && msg.contains("base"), "{msg}");
    let (st, b) = propose(&url, &s1, "ssk", json!({"from": "2022-4", "base": base, "files": ssk_files}));
    let msg = assert_error(st, &b, 400, "bad-month");
    assert!(msg.contains("YYYY-MM"), "{msg}");

    // Item 4: the first 差分 with one column too many (151): refused, naming the file.
    let shifted: Vec<u8> = {
        // Byte-level (the file is CP932): every line gets one more empty field.
        let mut out = Vec::new();
        for line in all[0].1.split_inclusive(|b| *b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            out.extend_from_slice(body);
            out.extend_from_slice(b",\"\"\n");
        }
        out
    };
    let shifted_files = upload(&url, &s1, "ssk", &[("s_20220304.csv".into(), shifted)]);
    let (st, b) = propose(&url, &s1, "ssk", json!({"from": "2022-04", "base": base, "files": shifted_files}));
    let msg = refused(st, &b, 422, "master-refused");
    assert!(msg.contains("s_20220304.csv") && msg.contains("151"), "{msg}");

    // The real revision, proposed: its diff reads as staff want it.
    let (st, a) = propose(
        &url,
        &s1,
        "ssk",
        json!({"from": "2022-04", "base": base, "files": ssk_files, "reason": "令和4年度診療報酬改定"}),
    );
    assert_eq!(st, 201, "{a}\n{}", server.log_tail());
    let a_id = a["id"].as_i64().unwrap();
    let p = procedure(&a);
    assert_eq!(
        (p["added"].as_u64(), p["changed"].as_u64(), p["abolished"].as_u64()),
        (Some(975), Some(1868), Some(144))
    );
    assert_eq!(p["value_changed"], 626, "点数 changes among the changed");
    assert_eq!(p["added_codes"].as_array().unwrap().len(), 975, "every new code listed");
    let new_code = &p["added_codes"][0];
    assert_eq!((new_code["code"].as_str(), new_code["date"].as_str()), (Some("111014210"), Some("2022-04-01")));
    assert_eq!(new_code["name"], "初診料（情報通信機器）");
    let abolished = &p["abolished_codes"][0];
    assert_eq!((abolished["code"].as_str(), abolished["date"].as_str()), (Some("111013970"), Some("2022-03-31")));
    let example = &p["examples"][0];
    assert_eq!(example["fields"][0]["label"], "変更年月日", "{example}");
    assert_eq!(
        (example["fields"][0]["old"].as_str(), example["fields"][0]["new"].as_str()),
        (Some("2020-04-01"), Some("2022-04-01"))
    );
    assert!(!a.to_string().contains("Some(Date"), "dates read as dates");
    assert_eq!(a["report"]["compared_with"], base);
    assert_eq!(a["proposed_by"]["label"], "ssk 佐藤");
    // Item 5: the real 2021-10 claim was re-checked as if of 2022-04, so the revision shows
    // in advance (codes abolished on 2022-03-31, new 点数), not "0 changes".
    let impact = &a["report"]["impact"];
    assert_eq!((impact["as_of"].as_str(), impact["redated_files"].as_u64()), (Some("2022-04"), Some(1)), "{impact}");
    assert!(impact["changed"].as_u64().unwrap() > 0, "{impact}");
    assert_eq!(impact["sampled_submissions"], 1, "{impact}");

    // Item 1: a second proposal in the same process is evaluated as itself.
    let (st, b2) = propose(
        &url,
        &s1,
        "ssk",
        json!({"from": "2022-04", "base": base, "files": ssk_files[..5].to_vec(), "reason": "3月分のみ"}),
    );
    assert_eq!(st, 201, "{b2}");
    assert_ne!(b2["digest"], a["digest"]);
    let p2 = procedure(&b2);
    assert!(p2["added"].as_u64().unwrap() > 0 && p2["added"] != p["added"], "{p2}");

    // Approval by a second person (the impact is flagged or not; either way deliberate).
    let (st, ok) = act(&url, &s2, "ssk", a_id, "approve", json!({"accept_impact": true, "reason": "改定内容どおり"}));
    assert_eq!(st, 200, "{ok}");
    assert_eq!(ok["approved_by"][0]["label"], "ssk 鈴木", "approvals by name: {ok}");

    // Item 7: a swap while large files are being checked (one ssk worker, so they take a
    // while): each is checked with one master, whatever happens while it is checked.
    let mut ids = Vec::new();
    for seed in 0..3 {
        let bytes = april_claim(5000, seed);
        let token = server.institution_token(&institution_of(&bytes));
        let r = submit(&url, &token, &bytes, None);
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push((r.body["submission"]["id"].as_i64().unwrap(), token));
    }
    wait_for("a large file being checked", Duration::from_secs(120), || {
        let (_, s) = get(&url, &ids[0].1, &format!("/v1/submissions/{}", ids[0].0));
        if s["progress"]["chunks_done"].as_u64().unwrap_or(0) > 0 { Ok(()) } else { Err(s.to_string()) }
    });
    let (st, b) = act(&url, &s1, "ssk", a_id, "activate", json!({}));
    let msg = assert_error(st, &b, 409, "window-open");
    assert!(msg.contains("reason"), "{msg}");
    let t_swap = Instant::now();
    let (st, live) = act(&url, &s1, "ssk", a_id, "activate", json!({"reason": "改定施行"}));
    assert_eq!(st, 200, "{live}");
    eprintln!("activation with real masters answered in {:?}", t_swap.elapsed());
    let (_, swaps) = get(&url, &s1, "/v1/payers/ssk/swaps");
    let s = swaps.as_array().unwrap().iter().rev().find(|s| s["subject"] == a_id).unwrap().clone();
    let live_ms = s["requested_ms"].as_i64().unwrap() + s["swapped_after_ms"].as_f64().unwrap() as i64;
    let mut spanned = 0;
    for (id, token) in &ids {
        server.wait_checked(token, *id, Duration::from_secs(300));
        let (used, started) = masters_used(&url, token, *id);
        assert_eq!(used.len(), 1, "submission {id} was checked with master versions {used:?}");
        if started.iter().any(|t| *t < live_ms) && started.iter().any(|t| *t > live_ms + 100) {
            spanned += 1;
        }
    }
    eprintln!("{} file(s) sent before the swap, {spanned} checked across it", ids.len());
    assert!(spanned > 0, "no file was being checked across the swap: the test proved nothing");
    // Item 8: the second proposal's report was computed against the old master; since the
    // revision went live it is stale, and approving it waits for a re-check.
    let b2_id = b2["id"].as_i64().unwrap();
    let (st, b) = act(&url, &s2, "ssk", b2_id, "approve", json!({"accept_impact": true, "reason": "r"}));
    let msg = assert_error(st, &b, 409, "report-stale");
    assert!(msg.contains("recheck") && msg.contains(&format!("version {a_id}")), "{msg}");
    let (st, b) = job(&url, &s1, post(&url, &s1, &format!("/v1/payers/ssk/masters/{b2_id}/recheck")));
    assert_eq!((st, b["report"]["compared_with"].as_i64()), (200, Some(a_id)), "{b}");
    let (st, _) = act(&url, &s1, "ssk", b2_id, "withdraw", json!({"reason": "superseded by the whole revision"}));
    assert_eq!(st, 200);
    // Institutions were told.
    let claim_token = ids[0].1.clone();
    let (_, notices) = get(&url, &claim_token, "/v1/notices");
    assert!(notices.to_string().contains(&format!("master version {a_id} is in force")), "{notices}");

    // Item 8: ssk checks 2022-04 with the revision, kokuho still with the old master.
    let (_, list) = get(&url, &s1, "/v1/payers/ssk/masters");
    let warned = list.to_string();
    assert!(warned.contains("different masters") && warned.contains("2022-04"), "{list}");
    // The proven conversion, twice: one version converted twice is the same files (item 1).
    let convert =
        |who: &str| job(&url, who, post(&url, who, &format!("/v1/payers/ssk/masters/{a_id}/convert-for/kokuho")));
    let (st, ka) = convert(&s1);
    assert_eq!(st, 201, "{ka}\n{}", server.log_tail());
    let (st, ka2) = convert(&s2);
    assert_eq!(st, 201, "{ka2}");
    assert_eq!(ka["digest"], ka2["digest"], "two conversions of one version are one master");
    assert_ne!(ka["digest"], a["digest"], "kokuho's files are in its own format");
    assert_eq!(procedure(&ka)["added"], 975, "kokuho's diff is the revision's: {}", ka["report"]);
    let ka_id = ka["id"].as_i64().unwrap();
    act(&url, &k1, "kokuho", ka2["id"].as_i64().unwrap(), "withdraw", json!({}));
    for who in [&k2, &s2] {
        let (st, b) =
            act(&url, who, "kokuho", ka_id, "approve", json!({"accept_impact": true, "reason": "正規ルート"}));
        assert_eq!(st, 200, "{b}");
    }
    let (st, b) = act(&url, &k1, "kokuho", ka_id, "activate", json!({"reason": "改定施行"}));
    assert_eq!(st, 200, "{b}");
    let (_, list) = get(&url, &s1, "/v1/payers/ssk/masters");
    assert!(!list.to_string().contains("different masters"), "the payers agree again: {list}");

    // Item 2: rolling back the revision (it starts in a new month) really rolls it back —
    // also for a file that was being checked with it: that one starts over on the old
    // master rather than finishing with the version taken back.
    let big = april_claim(5000, 77);
    let big_token = server.institution_token(&institution_of(&big));
    let r = submit(&url, &big_token, &big, None);
    let big_id = r.body["submission"]["id"].as_i64().unwrap();
    wait_for("the large file being checked with the revision", Duration::from_secs(120), || {
        let (_, s) = get(&url, &big_token, &format!("/v1/submissions/{big_id}"));
        if s["progress"]["chunks_done"].as_u64().unwrap_or(0) > 0 { Ok(()) } else { Err(s.to_string()) }
    });
    let (_, before) = get(&url, &big_token, &format!("/v1/submissions/{big_id}"));
    let early = before["progress"]["fraction"].as_f64().unwrap() < 0.5;
    let (st, b) = act(&url, &s1, "ssk", a_id, "rollback", json!({"reason": "設定誤り"}));
    assert_eq!((st, b["state"].as_str()), (200, Some("rolled-back")), "{b}");
    let s = server.wait_checked(&big_token, big_id, Duration::from_secs(300));
    assert_eq!(s["state"], "checked", "{s}");
    let (used, _) = masters_used(&url, &big_token, big_id);
    let restarted = used == BTreeSet::from([base]);
    eprintln!("large file during the rollback: checked with {used:?}");
    assert!(used.len() == 1 && (restarted || used == BTreeSet::from([a_id])), "{used:?}");
    // Less than half checked when the rollback came (313 chunks on one worker): restarted.
    assert!(restarted || !early, "a file being checked with the rolled-back master finished with it: {before}");
    if restarted {
        let (_, notices) = get(&url, &big_token, "/v1/notices");
        assert!(notices.to_string().contains("checked again from the start"), "{notices}");
    }
    let bytes = april_claim(20, 99);
    let claim_token = server.institution_token(&institution_of(&bytes));
    let r = submit(&url, &claim_token, &bytes, None);
    let id = r.body["submission"]["id"].as_i64().unwrap();
    server.wait_checked(&claim_token, id, Duration::from_secs(60));
    assert_eq!(
        masters_used(&url, &claim_token, id).0,
        BTreeSet::from([base]),
        "2022-04 is checked with the old master again"
    );
    // Item 9: the status says which version checked it, without reading decision records.
    let (_, status) = get(&url, &claim_token, &format!("/v1/submissions/{id}"));
    assert_eq!(status["checked_with"][0]["master_version"], base, "{status}");
    assert_eq!(status["checked_with"][0]["receipts"], 20, "{status}");
    // …and the payers now differ for 2022-04, which staff see.
    let (_, list) = get(&url, &k1, "/v1/payers/kokuho/masters");
    assert!(list.to_string().contains("different masters"), "{list}");

    // Item 9: the CLI prints the version for people.
    let out = std::process::Command::new(bin())
        .args(["master", "show", "--payer", "ssk", "--server", &url, "--token", &s1, &a_id.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "ssk 佐藤",
        "ssk 鈴木",
        "first 10 of 975",
        "初診料（情報通信機器）",
        "変更年月日 2020-04-01 → 2022-04-01",
        "re-checked as if of 2022-04",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    server.kill();
}
