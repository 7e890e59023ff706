//! Master versions whose sources are in more than one format: the first-start master is
//! stored as `ssk-csv`, while kokuho staff send 差分 in their own `kokuho-fixed`; a proposal
//! with `base` mixes both, and every source must be decoded by its own format's converter.

use serde_json::{Value, json};
use tenken_model::MasterKind;

use crate::common;
use crate::server_util::*;

/// A 差分 for the demo procedure master in kokuho's fixed-width format: the demo's revised
/// procedure at `points` 点 (the demo diff has it at 28), named as SSK names 差分 files.
fn kokuho_fixed_diff(points: &str) -> (String, Vec<u8>) {
    let (name, bytes) = tenken_master::demo::demo_files()
        .into_iter()
        .find(|(n, _)| n == tenken_master::demo::DIFF_FILE)
        .expect("the demo has a 差分");
    let mut rows = tenken_master::canon::decode_ssk(MasterKind::Procedure, &name, &bytes).unwrap();
    rows.retain(|r| r.code == tenken_master::demo::DIFF_REVISED_PROCEDURE);
    assert_eq!(rows.len(), 1, "the demo diff revises {}", tenken_master::demo::DIFF_REVISED_PROCEDURE);
    rows[0].value = points.into();
    let fixed = tenken_runtime::Converter::load(
        &common::runtime(),
        tenken_server::bundled_converter("kokuho-fixed").expect("bundled kokuho-fixed"),
    )
    .unwrap();
    ("s_20260615.csv".to_owned(), fixed.encode(MasterKind::Procedure, &rows).unwrap())
}

/// A kokuho proposal followed to its job's end: (status, version or error).
fn propose(url: &str, token: &str, body: Value) -> (u16, Value) {
    job(url, token, send_json(url, token, "POST", "/v1/payers/kokuho/masters", body))
}

#[test]
fn a_kokuho_diff_in_kokuho_fixed_applies_onto_the_first_start_master_in_ssk_csv() {
    // kokuho proposing files of its own is off by default (its masters come as ssk's proven
    // conversions); this test is about one version holding two formats, so it allows it.
    let server = Server::start(&[("KOKUHO__PROPOSES_MASTERS", "true")]);
    let url = server.url.clone();
    let (k1, k2) = (server.token(&["--staff", "kokuho"]), server.token(&["--staff", "kokuho"]));

    // The first-start master: the demo files, stored as ssk-csv.
    let (st, versions) = get(&url, &k1, "/v1/payers/kokuho/masters");
    assert_eq!(st, 200, "{versions}");
    let first =
        versions.as_array().unwrap().iter().find(|v| v["state"] == "active").expect("an active version").clone();
    let base: Vec<Value> = serde_json::from_value(first["sources"].clone()).unwrap();
    assert!(base.iter().all(|s| s["format"] == "ssk-csv"), "{base:?}");

    // The 差分 goes in as kokuho's own format (the server labels it with master_format).
    let (name, bytes) = kokuho_fixed_diff("31.00");
    assert!(bytes.starts_with(b"D"), "kokuho-fixed records start with D");
    let (st, b) = post_bytes(&url, &k1, "/v1/payers/kokuho/masters/files", &bytes);
    assert_eq!(st, 200, "{b}");
    // Issue 11, item 6: the same 差分 without a base used to become an empty master (the
    // digest of nothing), only flagged. It is refused, naming the file and the fix.
    let (st, refused) = propose(
        &url,
        &k1,
        json!({"from": "2026-06", "files": [{"name": name, "blob": b["blob"]}], "reason": "差分 without its base"}),
    );
    assert_eq!((st, refused["error"]["code"].as_str()), (422, Some("master-file-not-applied")), "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&name) && msg.contains("base"), "{msg}");
    let (_, after) = get(&url, &k1, "/v1/payers/kokuho/masters");
    assert_eq!(after.as_array().unwrap().len(), versions.as_array().unwrap().len(), "nothing was stored: {after}");
    let (st, v) = propose(
        &url,
        &k1,
        json!({"from": "2026-06", "base": first["id"], "files": [{"name": name, "blob": b["blob"]}], "reason": "点数改定 (差分)"}),
    );
    assert_eq!(st, 201, "a kokuho 差分 onto the ssk-csv base: {v}\n{}", server.log_tail());
    let sources: Vec<Value> = serde_json::from_value(v["sources"].clone()).unwrap();
    let formats: Vec<&str> = sources.iter().map(|s| s["format"].as_str().unwrap()).collect();
    assert!(formats.contains(&"ssk-csv") && formats.contains(&"kokuho-fixed"), "{formats:?}");

    // The diff against the version in force names exactly the revised procedure, 28 → 31.
    let report: Value = serde_json::from_value(v["report"].clone()).unwrap();
    let procedure = report["diff"].as_array().unwrap().iter().find(|d| d["kind"] == "procedure").unwrap().clone();
    assert_eq!(procedure["changed"], 1, "{report}");
    let example = procedure["examples"][0].to_string();
    assert!(example.contains(tenken_master::demo::DIFF_REVISED_PROCEDURE) && example.contains("31"), "{example}");
    for kind in ["drug", "material", "comment", "disease", "modifier"] {
        let d = report["diff"].as_array().unwrap().iter().find(|d| d["kind"] == kind);
        assert!(d.is_none_or(|d| d["changed"] == 0 && d["removed"] == 0 && d["added"] == 0), "{kind}: {report}");
    }

    // A second proposal is decoded from its own files too (not the first one's set again).
    let (name2, bytes2) = kokuho_fixed_diff("33.00");
    let (_, b2) = post_bytes(&url, &k1, "/v1/payers/kokuho/masters/files", &bytes2);
    let (st, v2) = propose(
        &url,
        &k1,
        json!({"from": "2026-07", "base": first["id"], "files": [{"name": name2, "blob": b2["blob"]}]}),
    );
    assert_eq!(st, 201, "{v2}");
    assert_ne!(v2["digest"], v["digest"], "two different 差分, two different master sets");
    let report2: Value = serde_json::from_value(v2["report"].clone()).unwrap();
    let example2 = report2["diff"].as_array().unwrap().iter().find(|d| d["kind"] == "procedure").unwrap()["examples"]
        [0]
    .to_string();
    assert!(example2.contains("33"), "{example2}");

    // Issue 11, item 6: a proposal can be taken back; then it can be neither approved nor
    // activated, and a second withdrawal says why it cannot.
    let id2 = v2["id"].as_i64().unwrap();
    let (st, w) = send_json(
        &url,
        &k1,
        "POST",
        &format!("/v1/payers/kokuho/masters/{id2}/withdraw"),
        json!({"reason": "proposed by mistake"}),
    );
    assert_eq!((st, w["state"].as_str()), (200, Some("withdrawn")), "{w}");
    let (st, b) = send_json(
        &url,
        &k2,
        "POST",
        &format!("/v1/payers/kokuho/masters/{id2}/approve"),
        json!({"accept_impact": true, "reason": "x"}),
    );
    assert_error(st, &b, 409, "wrong-state");
    let (st, b) = post(&url, &k2, &format!("/v1/payers/kokuho/masters/{id2}/activate"));
    assert_eq!(st, 409, "{b}");
    let (st, b) = post(&url, &k1, &format!("/v1/payers/kokuho/masters/{id2}/withdraw"));
    assert_error(st, &b, 409, "wrong-state");
    let (_, audit) = get(&url, &k1, "/v1/payers/kokuho/audit");
    assert!(audit.to_string().contains("master-withdraw"), "{audit}");

    // And it loads: approved by the other staff member, activated (the live table is rebuilt
    // from the stored sources), live without a restart.
    let id = v["id"].as_i64().unwrap();
    let (st, b) = send_json(
        &url,
        &k2,
        "POST",
        &format!("/v1/payers/kokuho/masters/{id}/approve"),
        json!({"accept_impact": true, "reason": "one procedure revised, as intended"}),
    );
    assert_eq!(st, 200, "{b}");
    let (st, b) =
        send_json(&url, &k1, "POST", &format!("/v1/payers/kokuho/masters/{id}/activate"), json!({"reason": "r"}));
    assert_eq!(st, 200, "{b}\n{}", server.log_tail());
    assert_eq!(b["state"], "active");

    // Issue 11, item 2: rolling back this revision (from 2026-06, the only version of that
    // month) takes it out of force, and the first-start version covers 2026-06 again.
    let (st, b) =
        send_json(&url, &k1, "POST", &format!("/v1/payers/kokuho/masters/{id}/rollback"), json!({"reason": "r"}));
    assert_eq!((st, b["state"].as_str()), (200, Some("rolled-back")), "{b}");
    let (_, list) = get(&url, &k1, "/v1/payers/kokuho/masters");
    let active: Vec<i64> =
        list.as_array().unwrap().iter().filter(|v| v["state"] == "active").map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(active, vec![first["id"].as_i64().unwrap()], "{list}");
    let (_, swaps) = get(&url, &k1, "/v1/payers/kokuho/swaps");
    assert!(
        swaps.as_array().unwrap().iter().any(|s| s["action"] == "master-rollback" && s["subject"] == id),
        "the live table was swapped: {swaps}"
    );
    let (_, audit) = get(&url, &k1, "/v1/payers/kokuho/audit");
    assert!(audit.to_string().contains("covered by the versions of earlier months again"), "{audit}");
    // The last version in force cannot be rolled back: nothing would check claims.
    let (st, b) = send_json(
        &url,
        &k1,
        "POST",
        &format!("/v1/payers/kokuho/masters/{}/rollback", first["id"]),
        json!({"reason": "r"}),
    );
    let msg = assert_error(st, &b, 409, "wrong-state");
    assert!(msg.contains("no other master version would be in force"), "{msg}");
}
