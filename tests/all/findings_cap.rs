//! 請求確定 when the per-file findings cap (`check_findings_per_file_max`) cut findings from
//! the stored list: the cut ones may be errors on receipts nobody can see, so withdrawing
//! the receipts that are listed must not make the file confirmable.

use std::time::Duration;

use tenken_model::Payer;

use crate::common;
use crate::server_util::*;

#[test]
fn errors_cut_by_the_findings_cap_still_block_confirmation() {
    // Every receipt lacks its diagnosis (an error), far more errors than the 4 kept.
    let server = Server::start(&[("LIMITS__CHECK_FINDINGS_PER_FILE_MAX", "4")]);
    let opts = tenken_gen::GenOptions {
        receipts: 30,
        institutions: 1,
        seed: 91,
        payer: Some(Payer::Ssk),
        inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, 1.0)],
        ..Default::default()
    };
    let bytes = tenken_gen::generate(&opts, &common::demo_masters()).unwrap().remove(0).bytes;
    let token = server.institution_token(&institution_of(&bytes));
    let r = submit(&server.url, &token, &bytes, None);
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["submission"]["id"].as_i64().unwrap();
    let s = server.wait_checked(&token, id, Duration::from_secs(120));
    assert_eq!(s["state"], "checked", "{s}");
    assert!(s["findings_dropped"].as_u64().unwrap() > 0, "the cap cut findings: {s}");
    let findings = server.findings(&token, id);
    assert_eq!(findings.len(), 4, "{findings:?}");

    // Withdraw every receipt the stored list shows an error on (what the 409 says to do).
    assert!(findings.iter().all(|f| f["severity"] != "error" || f["receipt"].is_u64()), "file-level errors");
    let mut receipts: Vec<u64> =
        findings.iter().filter(|f| f["severity"] == "error").filter_map(|f| f["receipt"].as_u64()).collect();
    receipts.dedup();
    assert!(!receipts.is_empty(), "{findings:?}");
    for n in &receipts {
        let (st, body) = post(&server.url, &token, &format!("/v1/submissions/{id}/receipts/{n}/withdraw"));
        assert_eq!(st, 200, "{body}");
    }

    // The errors beyond the cap are on receipts that were not withdrawn: still refused, with
    // a message that says why withdrawing cannot help and what to do instead.
    let (st, body) = post(&server.url, &token, &format!("/v1/submissions/{id}/confirm"));
    let msg = assert_error(st, &body, 409, "errors-beyond-findings-cap");
    assert!(msg.contains("check_findings_per_file_max") && msg.contains("resubmit"), "{msg}");
    let (_, s) = get(&server.url, &token, &format!("/v1/submissions/{id}"));
    assert_eq!(s["state"], "checked", "not confirmed: {s}");
}
