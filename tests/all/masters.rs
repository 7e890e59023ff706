//! Master versions against a real server (the 2022 replay): a changed master provided by SSK
//! is converted for kokuho (proven by a round trip), approved jointly, and swapped in while
//! claims for both payers keep being checked — zero failed checks, no restart.

use std::time::Duration;

use serde_json::{Value, json};
use tenken_model::Payer;

use crate::common;
use crate::server_util::*;

fn claim(seed: u64, payer: Payer) -> Vec<u8> {
    let opts = tenken_gen::GenOptions { receipts: 40, institutions: 1, seed, payer: Some(payer), ..Default::default() };
    tenken_gen::generate(&opts, &common::demo_masters()).unwrap().remove(0).bytes
}

#[test]
fn a_master_provided_by_ssk_is_converted_proven_approved_jointly_and_swapped_without_restart() {
    let server = Server::start(&[]);
    let url = server.url.clone();
    let (s1, s2) = (server.token(&["--staff", "ssk"]), server.token(&["--staff", "ssk"]));
    let (k1, k2) = (server.token(&["--staff", "kokuho"]), server.token(&["--staff", "kokuho"]));

    // A claim an institution already sent (checked): the impact check samples it too.
    let sent = claim(400, Payer::Ssk);
    let sent_token = server.institution_token(&institution_of(&sent));
    let r = submit(&url, &sent_token, &sent, None);
    assert_eq!(r.status, 202, "{}", r.body);
    let sent_id = r.body["submission"]["id"].as_i64().unwrap();
    let sent_reception = r.body["submission"]["reception"].as_str().unwrap().to_owned();
    server.wait_checked(&sent_token, sent_id, Duration::from_secs(60));

    // The new master: the demo set with +3 点 on every procedure (a points revision).
    let mut files = Vec::new();
    for (name, bytes) in tenken_master::demo::demo_files() {
        let bytes = if name.starts_with("s_ALL") {
            let mut rows =
                tenken_master::canon::decode_ssk(tenken_model::MasterKind::Procedure, &name, &bytes).unwrap();
            for r in &mut rows {
                if let Ok(v) = r.value.parse::<f64>() {
                    r.value = format!("{:.2}", v + 3.0);
                }
            }
            tenken_master::canon::encode_ssk(&rows).unwrap()
        } else {
            bytes
        };
        let (st, b) = post_bytes(&url, &s1, "/v1/payers/ssk/masters/files", &bytes);
        assert_eq!(st, 200, "{b}");
        files.push(json!({"name": name, "blob": b["blob"]}));
    }
    // Issue 11, item 3: kokuho staff cannot put the same files in force as a master of
    // their own (the May 2022 route: hand-supplied files, converted wrongly, one payer's
    // approval); kokuho's masters come only as ssk's proven conversion.
    let (st, own) =
        send_json(&url, &k1, "POST", "/v1/payers/kokuho/masters", json!({"files": files, "reason": "手作業"}));
    let msg = assert_error(st, &own, 409, "masters-converted-only");
    assert!(msg.contains("convert-for/kokuho") && msg.contains("both payers"), "{msg}");
    let (st, ssk_v) = job(
        &url,
        &s1,
        send_json(&url, &s1, "POST", "/v1/payers/ssk/masters", json!({"files": files, "reason": "点数改定"})),
    );
    assert_eq!(st, 201, "{ssk_v}");
    assert_eq!(ssk_v["state"], "proposed");
    let report: Value = serde_json::from_value(ssk_v["report"].clone()).unwrap();
    let procedure = report["diff"].as_array().unwrap().iter().find(|d| d["kind"] == "procedure").unwrap().clone();
    assert!(procedure["changed"].as_u64().unwrap() > 0, "{report}");
    // The impact check re-checked what institutions really sent: the points rule now fires,
    // flagged. Issue 11, item 5: the generated seed cases (demo data) count only while the
    // payer has no real submission; here it has one, so they are left out.
    let impact = &report["impact"];
    assert_eq!(impact["cases"], 0, "{impact}");
    let points = impact["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "master.procedure.points")
        .expect("points rule in the impact");
    assert!(points["new"].as_u64().unwrap() > 0 && !points["receipts"].as_array().unwrap().is_empty(), "{impact}");
    assert_eq!(impact["flagged"], true, "{impact}");
    assert_eq!(impact["sampled_submissions"], 1, "{impact}");
    assert!(
        points["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with(&format!("submission {sent_reception}#"))),
        "the sampled submission's receipts are named: {impact}"
    );
    let id = ssk_v["id"].as_i64().unwrap();

    // Converters are plugins too: a faulty one (names truncated) uploaded to kokuho's
    // registry fails validation by the round-trip proof, naming the field, and can be
    // neither approved nor used.
    let faulty = std::fs::read(tenken_test_artifacts::hostile_plugin_path("fixture-converter-shift").unwrap()).unwrap();
    let (st, rec) = post_bytes(&url, &k1, "/v1/payers/kokuho/plugins", &faulty);
    assert_eq!(st, 201, "{rec}");
    let fd = rec["digest"].as_str().unwrap().to_owned();
    let (st, report) = job(&url, &k1, post(&url, &k1, &format!("/v1/payers/kokuho/plugins/{fd}/validate")));
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["passed"], false, "{report}");
    assert!(report["by_rule"]["field name"]["new"].as_u64().unwrap() > 0, "{report}");
    let (st, b) = post(&url, &k2, &format!("/v1/payers/kokuho/plugins/{fd}/approve"));
    assert_error(st, &b, 409, "not-validated");
    let (st, b) =
        job(&url, &s1, post(&url, &s1, &format!("/v1/payers/ssk/masters/{id}/convert-for/kokuho?converter={fd}")));
    assert_error(st, &b, 409, "not-approved");
    // The correct converter passes the same proof and, once approved, is used.
    let good = tenken_server::bundled_converter("kokuho-fixed").unwrap();
    let (st, rec) = post_bytes(&url, &k1, "/v1/payers/kokuho/plugins", good);
    assert_eq!(st, 201, "{rec}");
    let gd = rec["digest"].as_str().unwrap().to_owned();
    let (_, report) = job(&url, &k1, post(&url, &k1, &format!("/v1/payers/kokuho/plugins/{gd}/validate")));
    assert_eq!(report["passed"], true, "{report}");
    let (st, b) = post(&url, &k2, &format!("/v1/payers/kokuho/plugins/{gd}/approve"));
    assert_eq!(st, 200, "{b}");

    // Convert it for kokuho: encoded in kokuho-fixed, proven, proposed as provided by ssk.
    let (st, kv) =
        job(&url, &s1, post(&url, &s1, &format!("/v1/payers/ssk/masters/{id}/convert-for/kokuho?converter={gd}")));
    assert_eq!(st, 201, "{kv}");
    assert_eq!(kv["provided_by"], "ssk");
    assert_eq!(kv["payer"], "kokuho");
    let kid = kv["id"].as_i64().unwrap();
    let sources: Vec<Value> = serde_json::from_value(kv["sources"].clone()).unwrap();
    assert!(sources.iter().all(|s| s["format"] == "kokuho-fixed"), "{sources:?}");
    // The receiving payer's staff download the converted file with its digest.
    let name = sources[0]["name"].as_str().unwrap();
    let r = get_raw(
        &url,
        &[("Authorization", &format!("Bearer {k1}"))],
        &format!("/v1/payers/kokuho/masters/{kid}/files/{name}"),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers.get("x-tenken-digest").unwrap().to_str().unwrap().starts_with("sha256:"));

    // The same through the CLI: the versions as a table, and the file exported with its
    // digest checked.
    let cli = |args: &[&str]| {
        let out =
            std::process::Command::new(bin()).args(args).args(["--server", &url, "--token", &k1]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["master", "list", "--payer", "kokuho"]);
    assert!(table.contains("proposed") && table.contains("ssk"), "{table}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    cli(&["master", "export", "--payer", "kokuho", &kid.to_string(), name, out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap().starts_with(b"D"), "kokuho-fixed records start with D");

    // The impact check flagged it (points +3 make the points rule fire), so an approval
    // without accepting the impact is refused, and accepting needs a reason.
    let kreport: Value = serde_json::from_value(kv["report"].clone()).unwrap();
    assert_eq!(kreport["impact"]["flagged"], true, "{kreport}");
    let approve = format!("/v1/payers/kokuho/masters/{kid}/approve");
    let (st, b) = post(&url, &k1, &approve);
    assert_error(st, &b, 409, "impact-flagged");
    let (st, b) = send_json(&url, &k1, "POST", &approve, json!({"accept_impact": true}));
    assert_error(st, &b, 400, "reason-required");
    // Joint approval: kokuho alone cannot activate a master ssk provided.
    let (st, b) = send_json(
        &url,
        &k1,
        "POST",
        &approve,
        json!({"accept_impact": true, "reason": "点数改定: the points rule is meant to fire"}),
    );
    assert_eq!(st, 200, "{b}");
    let (st, b) = post(&url, &k2, &format!("/v1/payers/kokuho/masters/{kid}/activate"));
    assert_error(st, &b, 409, "not-approved");
    // The proposer cannot approve; another ssk staff member can (the joint check).
    let (st, b) = send_json(&url, &s1, "POST", &approve, json!({"accept_impact": true, "reason": "x"}));
    assert_error(st, &b, 403, "self-approval");
    // (through `tenken master approve`, the CLI's name for the same call)
    let out = std::process::Command::new(bin())
        .args([
            "master",
            "approve",
            "--payer",
            "kokuho",
            &kid.to_string(),
            "--accept-impact",
            "--reason",
            "joint check done",
        ])
        .args(["--server", &url, "--token", &s2])
        .output()
        .unwrap();
    assert!(out.status.success(), "master approve: {}", String::from_utf8_lossy(&out.stderr));

    // Claims for both payers keep flowing while the masters are swapped.
    let files: Vec<(Payer, Vec<u8>)> = (0..16)
        .map(|i| {
            (
                if i % 2 == 0 { Payer::Ssk } else { Payer::Kokuho },
                claim(500 + i, if i % 2 == 0 { Payer::Ssk } else { Payer::Kokuho }),
            )
        })
        .collect();
    let tokens: Vec<String> = files.iter().map(|(_, f)| server.institution_token(&institution_of(f))).collect();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let submitter = {
        let (url, files, tokens, sent) = (url.clone(), files.clone(), tokens.clone(), sent.clone());
        std::thread::spawn(move || {
            files
                .iter()
                .zip(&tokens)
                .map(|((_, f), t)| {
                    let r = submit(&url, t, f, None);
                    assert_eq!(r.status, 202, "{}", r.body);
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Paced, so the swap below lands while claims are still arriving.
                    std::thread::sleep(Duration::from_millis(30));
                    r.body["submission"]["id"].as_i64().unwrap()
                })
                .collect::<Vec<_>>()
        })
    };
    // Swap once claims of both payers are in flight.
    wait_for("four claims accepted", Duration::from_secs(60), || {
        let n = sent.load(std::sync::atomic::Ordering::SeqCst);
        if n >= 4 { Ok(()) } else { Err(format!("{n} accepted")) }
    });
    // Issue 11, item 7: claims are arriving (the window is open): swapping now is deliberate.
    let (st, b) = post(&url, &k2, &format!("/v1/payers/kokuho/masters/{kid}/activate"));
    let msg = assert_error(st, &b, 409, "window-open");
    assert!(msg.contains("reason") && msg.contains("started with"), "{msg}");
    let (st, b) = send_json(
        &url,
        &k2,
        "POST",
        &format!("/v1/payers/kokuho/masters/{kid}/activate"),
        json!({"reason": "点数改定、両支払機関承認済み"}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["state"], "active");
    assert!(b["warnings"].to_string().contains("swapped with the reason given"), "{b}");
    let (_, swaps) = get(&url, &k2, "/v1/payers/kokuho/swaps");
    assert!(
        swaps.as_array().unwrap().iter().any(|s| s["action"] == "master-activate" && s["subject"] == kid),
        "the master swap is recorded: {swaps}"
    );
    let ids = submitter.join().unwrap();
    for (id, t) in ids.iter().zip(&tokens) {
        let s = server.wait_checked(t, *id, Duration::from_secs(120));
        assert_eq!(s["state"], "checked", "{s}");
        let f = server.findings(t, *id);
        assert!(f.iter().all(|f| !f["rule"].as_str().unwrap().starts_with("plugin.")), "failed checks: {f:?}");
    }
    // After the swap, a kokuho claim is checked with the new master (its points now differ)
    // and its decision record names the new version; ssk still uses its own.
    let kfile = claim(600, Payer::Kokuho);
    let kt = server.institution_token(&institution_of(&kfile));
    let r = submit(&url, &kt, &kfile, None);
    let kid_sub = r.body["submission"]["id"].as_i64().unwrap();
    server.wait_checked(&kt, kid_sub, Duration::from_secs(60));
    let f = server.findings(&kt, kid_sub);
    assert!(f.iter().any(|f| f["rule"] == "master.procedure.points"), "{f:?}");
    let (_, d) = get(&url, &kt, &format!("/v1/submissions/{kid_sub}/decisions"));
    assert!(d.as_array().unwrap().iter().all(|c| c["sets"][0]["master_version"] == kid), "{d}");
    let sfile = claim(601, Payer::Ssk);
    let st_tok = server.institution_token(&institution_of(&sfile));
    let r = submit(&url, &st_tok, &sfile, None);
    let sid = r.body["submission"]["id"].as_i64().unwrap();
    server.wait_checked(&st_tok, sid, Duration::from_secs(60));
    assert!(server.findings(&st_tok, sid).iter().all(|f| f["rule"] != "master.procedure.points"));

    // Rollback to the first kokuho master, in one call, without a restart.
    let (_, versions) = get(&url, &k1, "/v1/payers/kokuho/masters");
    let first =
        versions.as_array().unwrap().iter().find(|v| v["provided_by"].is_null()).unwrap()["id"].as_i64().unwrap();
    let (st, b) = send_json(
        &url,
        &k1,
        "POST",
        &format!("/v1/payers/kokuho/masters/{first}/rollback"),
        json!({"reason": "back to the first master"}),
    );
    assert_eq!(st, 200, "{b}");
    let back = claim(602, Payer::Kokuho);
    let bt = server.institution_token(&institution_of(&back));
    let r = submit(&url, &bt, &back, None);
    let bid = r.body["submission"]["id"].as_i64().unwrap();
    server.wait_checked(&bt, bid, Duration::from_secs(60));
    assert!(
        server.findings(&bt, bid).iter().all(|f| f["rule"] != "master.procedure.points"),
        "rollback did not take effect"
    );
    // Replay reproduces findings under the recorded master version.
    let out = std::process::Command::new(bin())
        .args(["replay", &kid_sub.to_string(), "--data-dir"])
        .arg(server.dir.path())
        .env("TENKEN_CFG__CACHE_DIR", format!("{:?}", common::cache_dir().display().to_string()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Every step is audited.
    let (_, audit) = get(&url, &k1, "/v1/payers/kokuho/audit");
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["master-version", "master-approval", "master-activate", "master-rollback"] {
        assert!(actions.contains(&a), "{a} missing: {actions:?}");
    }
}
