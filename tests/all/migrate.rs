//! A data directory written by the previous release (schema 3, `tests/fixtures/datadir-v0`)
//! opens with today's code, migrates, keeps everything it held, and works on.

use std::path::Path;
use std::time::Duration;

use crate::server_util::{Server, get, submit};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "README.md" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The fixture's token secrets, from its README (test data only).
fn fixture_token(n: usize) -> String {
    let readme = std::fs::read_to_string(crate::common::root().join("tests/fixtures/datadir-v0/README.md")).unwrap();
    let line = readme.lines().find(|l| l.starts_with(&format!("- token {n} "))).expect("token line");
    line.split('`').nth(1).unwrap().to_owned()
}

#[test]
fn a_data_directory_of_the_previous_release_opens_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&crate::common::root().join("tests/fixtures/datadir-v0"), dir.path());
    let server = Server::start_in(dir, &[]);
    let (ssk, kokuho, staff) = (fixture_token(1), fixture_token(2), fixture_token(3));

    // What the old release acknowledged is all there: the confirmed ssk file, the checked
    // kokuho file, their findings and bytes, the staff notice.
    let (status, list) = get(&server.url, &ssk, "/v1/submissions");
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "confirmed");
    assert_eq!(list[0]["receipts"], 30);
    assert_eq!(list[0]["institution"], "6900193");
    let findings = server.findings(&ssk, list[0]["id"].as_i64().unwrap());
    assert_eq!(findings.len() as u64, list[0]["counts"]["info"].as_u64().unwrap());
    let (status, k) = get(&server.url, &kokuho, "/v1/submissions/2");
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["state"], "checked");
    assert_eq!(k["payer"], "kokuho");
    let (_, notices) = get(&server.url, &ssk, "/v1/notices");
    assert!(notices.as_array().unwrap().iter().any(|n| n["message"] == "demo notice"), "{notices}");
    let (status, versions) = get(&server.url, &staff, "/v1/payers/ssk/masters");
    assert_eq!(status, 200, "{versions}");
    assert!(!versions.as_array().map(|v| v.is_empty()).unwrap_or(true), "{versions}");
    // Stored documents now have their types: master sources name blobs in the one digest
    // spelling (the old release stored bare hex), plugins say their kind, decision records
    // and submission digests read back typed.
    for v in versions.as_array().unwrap() {
        for src in v["sources"].as_array().expect("sources are a list, not a string") {
            let blob = src["blob"].as_str().unwrap();
            assert!(blob.parse::<tenken_model::Digest>().is_ok(), "{blob}");
        }
    }
    let (status, plugins) = get(&server.url, &staff, "/v1/payers/ssk/plugins");
    assert_eq!(status, 200, "{plugins}");
    assert!(plugins.as_array().unwrap().iter().all(|p| p["described"]["kind"] == "checker"), "{plugins}");
    assert!(list[0]["digest"].as_str().unwrap().starts_with("sha256:"), "{}", list[0]);
    let id0 = list[0]["id"].as_i64().unwrap();
    let (status, decisions) = get(&server.url, &staff, &format!("/v1/submissions/{id0}/decisions"));
    assert_eq!(status, 200, "{decisions}");
    assert!(decisions.as_array().unwrap().iter().all(|d| d["sets"][0]["masters"].as_str().is_some()), "{decisions}");

    // And it works on: a new file for the same institution is claimed, checked and listed.
    let out = std::process::Command::new(crate::server_util::bin())
        .args(["gen", "--receipts", "12", "--payer", "ssk", "--seed", "7", "--out"])
        .arg(server.dir.path().join("new.UKE"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(server.dir.path().join("new.UKE")).unwrap();
    let code = crate::server_util::institution_of(&bytes);
    let token = server.institution_token(&code);
    let r = submit(&server.url, &token, &bytes, None);
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["submission"]["id"].as_i64().unwrap();
    assert!(id > 2, "ids continue after the old ones: {id}");
    let s = server.wait_checked(&token, id, Duration::from_secs(120));
    assert_eq!(s["state"], "checked", "{s}");
}
