//! The real `tenken` binary: `gen`, `check` (JSON shape, text, exit codes), error messages.

use std::path::Path;
use std::process::{Command, Output};

use crate::common;

fn tenken(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenken"))
        .args(args)
        .env("TENKEN_CACHE_DIR", common::cache_dir())
        .env("NO_COLOR", "1")
        .output()
        .expect("run tenken")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn gen_then_check_json_shape_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.UKE");
    let out = tenken(&["gen", "--receipts", "40", "--seed", "5", "--payer", "kokuho", "--out", path(&clean)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = tenken(&["check", path(&clean), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["file"]["payer"], "kokuho");
    assert_eq!(json["file"]["receipts"], 40);
    assert!(json["file"]["billing_month"].as_str().unwrap().len() == 7);
    let plugins = json["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 5);
    assert!(plugins.iter().all(|p| p["digest"].as_str().unwrap().starts_with("sha256:") && p["name"].is_string()));
    assert!(json["findings"].as_array().unwrap().iter().all(|f| f["severity"] != "error"));

    // With injected errors: exit 1 and findings in the documented shape.
    let bad = dir.path().join("bad.UKE");
    let out =
        tenken(&["gen", "--receipts", "40", "--seed", "5", "--inject", "insurer-check-digit=0.2", "--out", path(&bad)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = tenken(&["check", path(&bad), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"].as_str().unwrap().starts_with("id."))
        .expect("an id. finding");
    for key in ["receipt", "line", "record", "field", "rule", "severity", "message"] {
        assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
    }
    assert!(f["receipt"].is_u64() && f["line"].is_u64());

    // Text output for people: grouped by receipt.
    let out = tenken(&["check", path(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("receipt ") && text.contains("errors"), "{text}");
}

#[test]
fn usage_and_io_errors_exit_2_with_a_message() {
    let out = tenken(&["check", "/definitely/not/here.UKE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not/here.UKE"));

    let out = tenken(&["check", "x.UKE", "--payer", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ssk"));

    // Garbage: without a payer it cannot be routed (exit 2, says to pass --payer) ...
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.UKE");
    std::fs::write(&junk, [0xffu8, 0x00, 0x81, 0x1a, b'\n', 0x80, 0x80]).unwrap();
    let out = tenken(&["check", path(&junk)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--payer"));
    // ... with one it gets file-level format. findings and exit 1, never a panic.
    let out = tenken(&["check", path(&junk), "--payer", "ssk", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"].as_str().unwrap().starts_with("format.") && f["receipt"].is_null())
    );
}

#[test]
fn demo_masters_written_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let masters = dir.path().join("masters");
    let out = tenken(&["gen", "--demo-masters", path(&masters)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(&masters).unwrap().collect();
    assert!(files.len() >= 6, "one file per master kind");
    let claim = dir.path().join("c.UKE");
    assert!(tenken(&["gen", "--receipts", "20", "--masters", path(&masters), "--out", path(&claim)]).status.success());
    let out = tenken(&["check", path(&claim), "--masters", path(&masters)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Issue 11, item 3: `tenken master import` on a data directory that has masters made an
/// active version with no approval at all (in force at the next swap): the May 2022 path
/// around the proposal, the impact check and the joint check. It installs the first master
/// only; later it is refused, saying which route to take, and nothing changes.
#[test]
fn master_import_installs_only_the_first_master() {
    let dir = tempfile::tempdir().unwrap();
    let masters = dir.path().join("masters");
    let data = dir.path().join("data");
    assert!(tenken(&["gen", "--demo-masters", path(&masters)]).status.success());
    let import = || tenken(&["master", "import", "--payer", "kokuho", "--data-dir", path(&data), path(&masters)]);
    let first = import();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = import();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second import is refused: {err}");
    assert!(err.contains("already has 1 master version") && err.contains("tenken master propose"), "{err}");
    assert!(err.contains("convert-for-kokuho"), "kokuho is told the conversion route: {err}");
    let config = tenken_server::Config { data_dir: data.clone(), ..Default::default() };
    let store = tenken_server::open_store(&config).unwrap();
    let versions = store.master_versions(tenken_model::Payer::Kokuho).unwrap();
    assert_eq!(versions.len(), 1, "nothing was added: {versions:?}");
}

#[test]
fn corpus_claim_via_cli_matches_the_library() {
    let Some(corpus) = common::corpus() else { return };
    let file = corpus.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE");
    let out = tenken(&["check", path(&file), "--masters", path(&corpus.join("ssk-master/full")), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lib = common::wasm_checker(common::corpus_masters(&corpus))
        .check_bytes(&std::fs::read(&file).unwrap(), None)
        .unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), lib.findings.len());
    assert_eq!(json["file"]["receipts"], 75);
}
