//! `tenken replay`: re-runs a stored submission under exactly the plugin digests and master
//! version its decision records name, and compares with the stored findings.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use tenken_check::{Checker, Engine};
use tenken_model::{Digest, Finding};
use tenken_store::{DecisionRecord, Store};

use crate::Config;

pub struct ReplayOutcome {
    pub chunks: usize,
    pub findings: usize,
    /// (chunk, what differs)
    pub mismatches: Vec<(u32, String)>,
}

pub fn replay(config: &Config, id: i64) -> anyhow::Result<ReplayOutcome> {
    let store = crate::open_store(config)?;
    let s = store.get(id)?.with_context(|| format!("no submission {id}"))?;
    let bytes = store.bytes(&s.digest)?;
    let claim = Arc::new(tenken_claim::parse(&bytes, &config.limits));
    let cache = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("artifacts"));
    let runtime = Arc::new(tenken_runtime::Runtime::new(&config.limits, Some(&cache))?);
    let mut converters = HashMap::new();
    for (name, bytes) in tenken_bundled::DEFAULT_CONVERTERS {
        let c =
            tenken_runtime::Converter::load(&runtime, bytes).with_context(|| format!("loading converter {name}"))?;
        converters.insert(c.info.name.clone(), Arc::new(c));
    }
    let dyn_store: Arc<dyn Store> = store.clone();
    let loader = crate::master_loader(dyn_store, Arc::new(converters));
    let versions = store.master_versions(s.payer)?;
    let mut master_sets: HashMap<i64, Arc<tenken_master::MasterSet>> = HashMap::new();
    let mut plugins: HashMap<Digest, Arc<tenken_runtime::Plugin>> = HashMap::new();
    let stored: HashMap<u32, Vec<Finding>> = store.chunk_findings(id)?.into_iter().collect();
    let mut jobs: HashMap<(Vec<Digest>, i64), (Arc<Checker>, Arc<tenken_check::FileJob>)> = HashMap::new();
    let mut out = ReplayOutcome { chunks: 0, findings: 0, mismatches: Vec::new() };
    for (idx, decision) in store.decisions(id)? {
        let mut got: Vec<Finding> = Vec::new();
        if idx == 0 {
            got.extend(claim.parse_findings.iter().cloned());
        }
        for e in entries(idx, &decision)? {
            let mv = e.master_version;
            if !master_sets.contains_key(&mv) {
                let v = versions
                    .iter()
                    .find(|v| v.id == mv)
                    .with_context(|| format!("chunk {idx}: master version {mv} is not in the store"))?;
                let set = loader(&v.sources).map_err(|e| anyhow::anyhow!("chunk {idx}: master version {mv}: {e}"))?;
                if set.digest() != e.masters {
                    bail!("master version {mv} no longer has the recorded digest {}", e.masters);
                }
                master_sets.insert(mv, Arc::new(set));
            }
            let masters = master_sets[&mv].clone();
            let digests = e.plugins;
            let key = (digests.clone(), mv);
            if !jobs.contains_key(&key) {
                let mut list = Vec::new();
                for dg in &digests {
                    if !plugins.contains_key(dg) {
                        let b =
                            store.plugin_bytes(dg).with_context(|| format!("plugin {dg} is not in the registry"))?;
                        plugins.insert(*dg, Arc::new(tenken_runtime::Plugin::load(&runtime, &b)?));
                    }
                    list.push(plugins[dg].clone());
                }
                let checker = Arc::new(Checker::new(
                    Engine::Wasm { runtime: runtime.clone(), plugins: list },
                    masters.clone(),
                    config.limits.clone(),
                ));
                let job = Arc::new(checker.prepare(claim.clone(), Some(s.payer))?);
                jobs.insert(key.clone(), (checker, job));
            }
            let (checker, job) = &jobs[&key];
            match e.receipts {
                Some(r) => got.extend(checker.check_range(job, r)),
                None => got.extend(checker.check_file_level(job)),
            }
        }
        let want: &[Finding] = stored.get(&idx).map(Vec::as_slice).unwrap_or_default();
        out.chunks += 1;
        out.findings += got.len();
        // The same findings, counted (one definition of "the same finding": crate::delta).
        let d = tenken_lifecycle::delta(want, &got);
        if !d.is_empty() {
            out.mismatches.push((
                idx,
                format!("{} finding(s) not stored, {} stored finding(s) not reproduced", d.new.len(), d.vanished.len()),
            ));
        }
    }
    if out.chunks == 0 {
        bail!("submission {id} has no recorded chunks yet (state {})", s.state);
    }
    Ok(out)
}

/// One entry of a chunk's decision record: what to run on which receipts.
#[derive(Debug)]
struct Entry {
    master_version: i64,
    /// The master set's digest when the chunk ran.
    masters: Digest,
    plugins: Vec<Digest>,
    /// None: the file-level checks (chunk 0).
    receipts: Option<std::ops::Range<usize>>,
}

/// What a stored decision record asks to re-run. The store parsed its shape strictly; what
/// a shape cannot say (a record naming nothing, a backwards range) is an error naming the
/// chunk and the field, never a panic (and never silently skipped, which would
/// "reproduce" nothing).
fn entries(idx: u32, decision: &DecisionRecord) -> anyhow::Result<Vec<Entry>> {
    if decision.sets.is_empty() {
        bail!("chunk {idx}: the decision record names no release set (\"sets\" is empty)");
    }
    decision
        .sets
        .iter()
        .enumerate()
        .map(|(n, e)| {
            if e.plugins.is_empty() {
                bail!("chunk {idx}: decision entry {n}: \"plugins\" is empty");
            }
            let receipts = match e.receipts {
                None => None,
                Some((a, b)) if a <= b => Some(a as usize..b as usize),
                Some((a, b)) => bail!("chunk {idx}: decision entry {n}: \"receipts\" is [{a}, {b}], start after end"),
            };
            Ok(Entry { master_version: e.master_version, masters: e.masters, plugins: e.plugins.clone(), receipts })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2db32605c51a5595cd01b8214135037d4b6d81a25ecff10671304d62392a129d";

    /// A stored decision record is read as `DecisionRecord` (strict serde, as the store
    /// does); then `entries` checks what the shape cannot. Short, malformed or empty
    /// records are errors naming what is wrong, never a panic.
    #[test]
    fn a_short_or_malformed_decision_record_is_an_error_not_a_panic() {
        let entry = |receipts: &str| {
            format!(
                r#"{{"sets": [{{"release_set": 1, "started_ms": 0, "plugins": ["{D}"], "master_version": 1, "masters": "{D}", "receipts": {receipts}}}]}}"#
            )
        };
        let parse = |json: &str| -> anyhow::Result<Vec<Entry>> {
            let d: DecisionRecord = serde_json::from_str(json).context("the decision record does not parse")?;
            entries(4, &d)
        };
        for (bad, says) in [
            (entry("[3]"), "parse"),
            (entry("[]"), "parse"),
            (entry(r#"["a", 9]"#), "parse"),
            (entry("[1, 2, 3]"), "parse"),
            (entry("7"), "parse"),
            ("not json".to_owned(), "parse"),
            (r#"{"node": "n"}"#.to_owned(), "parse"),
            (entry("[5, 2]"), "start after end"),
            (r#"{"sets": []}"#.to_owned(), "names no release set"),
            (entry("null").replace(&format!(r#"["{D}"]"#), "[]"), "plugins"),
            (entry("null").replace(&format!(r#""masters": "{D}""#), r#""masters": "ab""#), "parse"),
        ] {
            let r = std::panic::catch_unwind(|| parse(&bad).map(|_| ()));
            let err = r.unwrap_or_else(|_| panic!("{bad}: panicked")).expect_err(&bad);
            assert!(format!("{err:#}").contains(says), "{bad}: {err:#}");
        }
        let ok = parse(&entry("[2, 5]")).unwrap();
        assert_eq!((ok[0].master_version, ok[0].receipts.clone()), (1, Some(2..5)));
        assert_eq!(parse(&entry("null")).unwrap()[0].receipts, None);
    }
}
