//! `tenken plugin describe` and `tenken plugin test`: a plugin author's offline tools (no
//! server). `describe` says what a component declares and whether it fits this host's
//! contract; `test` runs it in the real sandbox over a directory of fixtures (the project's
//! fixture format, `tenken-fixtures`: `NAME.uke` + `NAME.expected.json` [+ `NAME.payer`]),
//! prints PASS/FAIL per fixture with a diff of missing and unexpected findings and the
//! per-receipt cost, and exits 1 on any failure. `--bless` (or `TENKEN_BLESS=1`) rewrites
//! the expectations from what the plugin reports instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_model::Finding;
use tenken_runtime::{CONTRACT_PACKAGE, CONTRACT_VERSION, Plugin, Runtime, RuntimeError};

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// The component (`.wasm`).
    file: PathBuf,
    /// Where compiled plugin artifacts are cached.
    #[arg(long, env = "TENKEN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile afresh (no artifact cache), e.g. to measure the compile time.
    #[arg(long)]
    no_cache: bool,
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// The component (`.wasm`).
    file: PathBuf,
    /// Directory of fixtures: `NAME.uke` (claim file) + `NAME.expected.json` (the findings the
    /// plugin must report, messages excluded) [+ `NAME.payer`: ssk|kokuho, else the IR's].
    #[arg(long)]
    fixtures: PathBuf,
    /// Rewrite every `NAME.expected.json` from what the plugin reports (also `TENKEN_BLESS=1`);
    /// review the diff before committing it.
    #[arg(long)]
    bless: bool,
    /// Directory of SSK master files the `master` import answers from; default: the demo masters.
    #[arg(long)]
    masters: Option<PathBuf>,
    /// Where compiled plugin artifacts are cached.
    #[arg(long, env = "TENKEN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

fn runtime(cache_dir: Option<PathBuf>) -> Result<Arc<Runtime>> {
    let cache = cache_dir.or_else(crate::default_cache_dir);
    Ok(Arc::new(Runtime::new(&Limits::default(), cache.as_deref())?))
}

fn read_component(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn sha256(bytes: &[u8]) -> String {
    tenken_store::digest(bytes).to_string()
}

/// `tenken plugin describe FILE`: exit 0 when the component fits this host, 1 when not.
pub fn describe(args: DescribeArgs, json: bool) -> Result<ExitCode> {
    let bytes = read_component(&args.file)?;
    // --no-cache: a cache of this run only, so the component is compiled once, afresh.
    let scratch = if args.no_cache { Some(tempfile::tempdir().context("a scratch cache directory")?) } else { None };
    let rt = runtime(scratch.as_ref().map(|d| d.path().to_path_buf()).or(args.cache_dir))?;
    let host = format!("{CONTRACT_PACKAGE}@{CONTRACT_VERSION}");
    let t0 = Instant::now();
    let shape = rt.component_interfaces(&bytes);
    let compile = t0.elapsed();
    let t1 = Instant::now();
    let loaded = match &shape {
        Ok(_) => Some(Plugin::load(&rt, &bytes)),
        Err(_) => None,
    };
    let link = t1.elapsed();
    let error = match (&shape, &loaded) {
        (Err(e), _) | (_, Some(Err(e))) => Some(e),
        _ => None,
    };
    let plugin = loaded.as_ref().and_then(|l| l.as_ref().ok());
    let (imports, exports) = shape.as_ref().map(|(i, e)| (i.clone(), e.clone())).unwrap_or_default();
    if json {
        let v = serde_json::json!({
            "file": args.file.display().to_string(),
            "bytes": bytes.len(),
            "digest": sha256(&bytes),
            "host_contract": host,
            "fits": error.is_none(),
            "error": error.map(|e| e.to_string()),
            "contract": plugin.map(|p| format!("{CONTRACT_PACKAGE}@{}", p.contract)),
            "name": plugin.map(|p| p.info.name.clone()),
            "version": plugin.map(|p| p.info.version.clone()),
            "rules": plugin.map(|p| p.info.rules.iter().map(|r| serde_json::json!({
                "id": r.id, "severity": r.severity.as_str(), "description": r.description,
            })).collect::<Vec<_>>()),
            "imports": imports,
            "exports": exports,
            "compile_ms": compile.as_millis() as u64,
            "load_ms": link.as_millis() as u64,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("component  {} ({} bytes, {})", args.file.display(), bytes.len(), sha256(&bytes));
        if let Some(p) = plugin {
            println!("plugin     {} {}", p.info.name, p.info.version);
        }
        for i in &imports {
            println!("imports    {i}");
        }
        for e in &exports {
            println!("exports    {e}");
        }
        if let Some(p) = plugin {
            println!("rules");
            for r in &p.info.rules {
                println!("  {:40} {:8} {}", r.id, r.severity.as_str(), r.description);
            }
        }
        println!(
            "compiled   in {:.2} s{}, linked and described in {:.2} s",
            compile.as_secs_f64(),
            if args.no_cache { "" } else { " (or loaded from the artifact cache)" },
            link.as_secs_f64()
        );
        match (error, plugin) {
            (None, Some(p)) => println!(
                "contract   {CONTRACT_PACKAGE}@{}: fits this host ({host}; same major, minor not newer)",
                p.contract
            ),
            (Some(e @ RuntimeError::IncompatibleContract { .. }), _) => println!("contract   DOES NOT FIT: {e}"),
            (Some(e), _) => println!("DOES NOT FIT this host ({host}): {e}"),
            (None, None) => unreachable!("either loaded or failed"),
        }
    }
    Ok(if error.is_none() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What one fixture cost.
#[derive(Clone, Copy, Default)]
struct Cost {
    receipts: usize,
    calls: usize,
    /// File-level call plus every receipt batch, run one after another on one thread.
    time: Duration,
    /// Time of the receipt batches alone.
    receipts_time: Duration,
    /// The longest single call (to compare with `plugin_call_ms_max`).
    slowest_call: Duration,
    peak_memory: u64,
}

impl Cost {
    fn per_receipt(&self) -> Option<Duration> {
        (self.receipts > 0).then(|| self.receipts_time / self.receipts as u32)
    }
}

fn per_receipt_text(c: &Cost) -> String {
    match c.per_receipt() {
        Some(d) => format!("{:>9.1} µs/receipt", d.as_secs_f64() * 1e6),
        None => format!("{:>19}", "no receipts"),
    }
}

/// `tenken plugin test FILE --fixtures DIR`.
pub fn test(args: TestArgs) -> Result<ExitCode> {
    let bless = args.bless || std::env::var("TENKEN_BLESS").is_ok_and(|v| v == "1");
    anyhow::ensure!(args.fixtures.is_dir(), "{} is not a directory of fixtures", args.fixtures.display());
    let bytes = read_component(&args.file)?;
    let rt = runtime(args.cache_dir)?;
    let limits = rt.limits().clone();
    let t0 = Instant::now();
    let plugin =
        Arc::new(Plugin::load(&rt, &bytes).with_context(|| format!("loading plugin {}", args.file.display()))?);
    let load = t0.elapsed();
    println!(
        "plugin   {} {} ({}, {}, contract {CONTRACT_PACKAGE}@{}), loaded in {:.2} s",
        plugin.info.name,
        plugin.info.version,
        sha256(&bytes),
        mib(bytes.len() as u64),
        plugin.contract,
        load.as_secs_f64()
    );
    println!(
        "fixtures {} (masters: {}; batches of {} receipts, one thread){}",
        args.fixtures.display(),
        args.masters.as_ref().map_or("demo".to_string(), |m| m.display().to_string()),
        limits.check_batch_receipts_max,
        if bless { "; blessing" } else { "" }
    );
    let masters = crate::load_masters(args.masters.as_deref())?;
    let checker = Checker::new(Engine::Wasm { runtime: rt.clone(), plugins: vec![plugin.clone()] }, masters, limits);
    let declared: Vec<String> = plugin.info.rules.iter().map(|r| r.id.clone()).collect();

    let costs: Mutex<HashMap<String, Cost>> = Mutex::new(HashMap::new());
    let report = tenken_fixtures::check_dir_quiet(&args.fixtures, bless, |fx| {
        let claim = Arc::new(tenken_claim::parse(&fx.bytes, checker.limits()));
        let job = match checker.prepare(claim, fx.payer) {
            Ok(job) => job,
            // Shown as an unexpected finding in the diff.
            Err(e) => return vec![Finding::error("harness.error", e.to_string())],
        };
        let n = job.claim().receipts.len();
        plugin.take_peak_memory_bytes();
        let t = Instant::now();
        let mut out = checker.check_file_level(&job);
        let mut slowest = t.elapsed();
        let t_receipts = Instant::now();
        // One call per batch, as the server makes them, each timed against the deadline.
        let batch = checker.limits().check_batch_receipts_max.max(1) as usize;
        for start in (0..n).step_by(batch) {
            let tb = Instant::now();
            out.extend(checker.check_range(&job, start..(start + batch).min(n)));
            slowest = slowest.max(tb.elapsed());
        }
        let cost = Cost {
            receipts: n,
            calls: 1 + n.div_ceil(batch),
            time: t.elapsed(),
            receipts_time: t_receipts.elapsed(),
            slowest_call: slowest,
            peak_memory: plugin.take_peak_memory_bytes(),
        };
        costs.lock().unwrap().insert(fx.name.clone(), cost);
        // A rule id the plugin did not declare is a bug in the plugin: make it visible.
        for f in &out {
            if !f.rule.starts_with("plugin.") && !declared.contains(&f.rule) {
                eprintln!("warning: {} reported rule `{}`, which its describe() does not declare", fx.name, f.rule);
            }
        }
        out
    });
    let costs = costs.into_inner().unwrap();

    let width = report.fixtures.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut passed = 0;
    println!();
    for name in &report.fixtures {
        let cost = costs.get(name).copied().unwrap_or_default();
        let failure = report.failures.iter().find(|f| &f.fixture == name);
        let verdict = if report.blessed.contains(name) {
            "BLESSED"
        } else if failure.is_some() {
            "FAIL"
        } else {
            passed += 1;
            "PASS"
        };
        println!(
            "{verdict:7}  {name:width$}  {:>6} receipts  {:>3} calls  {:>9.2} ms  {}  slowest call {:.1} ms  peak {}",
            cost.receipts,
            cost.calls,
            cost.time.as_secs_f64() * 1e3,
            per_receipt_text(&cost),
            cost.slowest_call.as_secs_f64() * 1e3,
            mib(cost.peak_memory)
        );
        if let Some(f) = failure {
            // The diff: `-` expected but not reported, `+` reported but not expected.
            for line in f.to_string().lines().skip(1) {
                println!("         {line}");
            }
        }
    }
    // Problems not tied to a fixture that ran (an expected file without its claim, an
    // unreadable directory).
    for f in report.failures.iter().filter(|f| !report.fixtures.contains(&f.fixture)) {
        println!("FAIL     {}", f.fixture);
        for line in f.to_string().lines().skip(1) {
            println!("         {line}");
        }
    }
    let total = costs.values().fold(Cost::default(), |a, c| Cost {
        receipts: a.receipts + c.receipts,
        calls: a.calls + c.calls,
        time: a.time + c.time,
        receipts_time: a.receipts_time + c.receipts_time,
        slowest_call: a.slowest_call.max(c.slowest_call),
        peak_memory: a.peak_memory.max(c.peak_memory),
    });
    let limits = checker.limits();
    println!();
    println!(
        "cost     {} receipts, {} calls in {:.2} ms: {}; slowest call {:.1} ms (deadline {} ms); peak memory {} (limit {})",
        total.receipts,
        total.calls,
        total.time.as_secs_f64() * 1e3,
        per_receipt_text(&total).trim_start(),
        total.slowest_call.as_secs_f64() * 1e3,
        limits.plugin_call_ms_max,
        mib(total.peak_memory),
        mib(limits.plugin_memory_bytes_max)
    );
    if report.fixtures.is_empty() {
        println!("no fixtures in {} (expected NAME.uke + NAME.expected.json)", args.fixtures.display());
        return Ok(ExitCode::from(1));
    }
    if bless {
        println!(
            "blessed {} fixture(s): review the changes to {}/*.expected.json",
            report.blessed.len(),
            args.fixtures.display()
        );
    }
    let failed = report.failures.len();
    println!("{} fixtures: {passed} passed, {failed} failed", report.fixtures.len());
    if failed > 0 {
        println!("(a wrong expectation? rerun with --bless or TENKEN_BLESS=1, then review the diff)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
