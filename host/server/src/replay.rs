//! `tenken replay`: re-runs a stored submission under exactly the plugin digests and master
//! version its decision records name, and compares with the stored findings.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use tenken_check::{Checker, Engine};
use tenken_model::Finding;
use tenken_store::Store;

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
    let mut plugins: HashMap<String, Arc<tenken_runtime::Plugin>> = HashMap::new();
    let stored: HashMap<u32, String> = store.chunk_findings(id)?.into_iter().collect();
    let mut jobs: HashMap<(Vec<String>, i64), (Arc<Checker>, Arc<tenken_check::FileJob>)> = HashMap::new();
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
                let set = loader(v).map_err(|e| anyhow::anyhow!("chunk {idx}: master version {mv}: {e}"))?;
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
                        plugins.insert(dg.clone(), Arc::new(tenken_runtime::Plugin::load(&runtime, &b)?));
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
        let want: Vec<Finding> = serde_json::from_str(stored.get(&idx).map(String::as_str).unwrap_or("[]"))
            .with_context(|| format!("chunk {idx}: the stored findings are unreadable"))?;
        out.chunks += 1;
        out.findings += got.len();
        // The same findings, counted (one definition of "the same finding": crate::delta).
        let d = tenken_lifecycle::delta(&want, &got);
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
    masters: String,
    plugins: Vec<String>,
    /// None: the file-level checks (chunk 0).
    receipts: Option<std::ops::Range<usize>>,
}

/// Reads a stored decision record. Stored data can be damaged or written by another
/// version: anything missing or malformed is an error naming the chunk and the field,
/// never a panic (and never silently skipped, which would "reproduce" nothing).
fn entries(idx: u32, decision: &str) -> anyhow::Result<Vec<Entry>> {
    let d: serde_json::Value =
        serde_json::from_str(decision).with_context(|| format!("chunk {idx}: the decision record is not JSON"))?;
    let sets = d["sets"].as_array().filter(|s| !s.is_empty()).with_context(|| {
        format!("chunk {idx}: the decision record names no release set (\"sets\" is {})", d["sets"])
    })?;
    sets.iter()
        .enumerate()
        .map(|(n, e)| {
            let field = |name: &str| format!("chunk {idx}: decision entry {n}: \"{name}\" is {}", e[name]);
            let master_version = e["master_version"].as_i64().with_context(|| field("master_version"))?;
            let masters = e["masters"].as_str().with_context(|| field("masters"))?.to_owned();
            let plugins = e["plugins"]
                .as_array()
                .filter(|p| !p.is_empty())
                .and_then(|p| p.iter().map(|d| d.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                .with_context(|| field("plugins"))?;
            Ok(Entry { master_version, masters, plugins, receipts: receipts(idx, e)? })
        })
        .collect()
}

/// The receipt range a decision entry names: `[start, end]` with start ≤ end, or null for
/// the file-level checks.
fn receipts(idx: u32, e: &serde_json::Value) -> anyhow::Result<Option<std::ops::Range<usize>>> {
    let r = &e["receipts"];
    if r.is_null() {
        return Ok(None);
    }
    match r.as_array().map(|a| a.iter().map(serde_json::Value::as_u64).collect::<Vec<_>>()).as_deref() {
        Some(&[Some(a), Some(b)]) if a <= b => Ok(Some(a as usize..b as usize)),
        _ => bail!("chunk {idx}: the decision record's \"receipts\" is {r}, not [start, end] with start ≤ end"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored decision records that are short or malformed are errors naming the chunk and
    /// what is wrong, never a panic.
    #[test]
    fn a_short_or_malformed_decision_entry_is_an_error_not_a_panic() {
        for (bad, says) in [
            (r#"{"receipts": [3]}"#, "receipts"),
            (r#"{"receipts": []}"#, "receipts"),
            (r#"{"receipts": [5, 2]}"#, "receipts"),
            (r#"{"receipts": ["a", 9]}"#, "receipts"),
            (r#"{"receipts": [1, 2, 3]}"#, "receipts"),
            (r#"{"receipts": 7}"#, "receipts"),
        ] {
            let e: serde_json::Value = serde_json::from_str(bad).unwrap();
            let r = std::panic::catch_unwind(|| receipts(4, &e));
            let err = r.unwrap_or_else(|_| panic!("{bad}: panicked")).expect_err(bad).to_string();
            assert!(err.contains("chunk 4") && err.contains(says), "{bad}: {err}");
        }
        let ok: serde_json::Value = serde_json::from_str(r#"{"receipts": [2, 5]}"#).unwrap();
        assert_eq!(receipts(1, &ok).unwrap(), Some(2..5));
        let file: serde_json::Value = serde_json::from_str(r#"{"receipts": null}"#).unwrap();
        assert_eq!(receipts(0, &file).unwrap(), None);
    }

    #[test]
    fn a_decision_record_missing_what_to_replay_is_an_error_naming_it() {
        let good = r#"{"master_version": 1, "masters": "ab", "plugins": ["sha256:1"], "receipts": [0, 4]}"#;
        let e = entries(2, &format!(r#"{{"node": "n", "sets": [{good}]}}"#)).unwrap();
        assert_eq!((e[0].master_version, e[0].receipts.clone()), (1, Some(0..4)));
        for (bad, says) in [
            ("not json".to_owned(), "not JSON"),
            (r#"{"node": "n"}"#.to_owned(), "sets"),
            (r#"{"sets": []}"#.to_owned(), "sets"),
            (r#"{"sets": [{"masters": "ab", "plugins": ["x"], "receipts": null}]}"#.to_owned(), "master_version"),
            (r#"{"sets": [{"master_version": 1, "plugins": ["x"]}]}"#.to_owned(), "masters"),
            (r#"{"sets": [{"master_version": 1, "masters": "ab", "plugins": []}]}"#.to_owned(), "plugins"),
            (r#"{"sets": [{"master_version": 1, "masters": "ab", "plugins": [3]}]}"#.to_owned(), "plugins"),
            (
                format!(
                    r#"{{"sets": [{good}, {{"master_version": 1, "masters": "ab", "plugins": ["x"], "receipts": [9]}}]}}"#
                ),
                "receipts",
            ),
        ] {
            let err = entries(2, &bad).expect_err(&bad).to_string();
            assert!(err.contains("chunk 2") && err.contains(says), "{bad}: {err}");
        }
    }
}
