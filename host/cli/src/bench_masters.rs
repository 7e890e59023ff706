//! `tenken bench-masters FILE` (hidden): times master conversion of one SSK master file
//! through the converter components (decode, and the round-trip proof the server runs) and
//! through the native SSK reader/writer of `tenken-master` (the oracle), for
//! docs/PERFORMANCE.md ("Master conversion").
//!
//! What is timed is what the server does, step for step:
//! - converter validation (`plugins.rs::run_converter_validation`): decode with the file's
//!   format converter (`ssk-csv`), encode with the candidate, decode again with it, compare;
//!   timed here with `ssk-csv` itself as the candidate;
//! - `convert-for` (`masters.rs::convert_for`): the same with the other payer's format
//!   (`kokuho-fixed`) as the target.
//!
//! Component load (validate + compile + link + describe) is timed once and reported apart:
//! the server compiles a component once and caches the artifact, so it is not part of a
//! conversion's cost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tenken_master::canon;
use tenken_model::{CanonRow, MasterKind};
use tenken_runtime::{Converter, Runtime};

#[derive(clap::Args)]
pub struct BenchMastersArgs {
    /// An SSK master file (CSV, CP932); its kind comes from the first letter of its name, as
    /// on the server (`s_…` = 診療行為).
    file: PathBuf,
    /// Runs of every step (median and min–max are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Fail unless the file decodes to this many rows.
    #[arg(long)]
    expect_rows: Option<usize>,
}

/// One timed step: a label and its duration in every run.
struct Step {
    label: &'static str,
    times: Vec<Duration>,
}

/// Steps in print order, filled run by run.
struct Steps(Vec<Step>);

impl Steps {
    fn add(&mut self, label: &'static str, d: Duration) {
        match self.0.iter_mut().find(|s| s.label == label) {
            Some(s) => s.times.push(d),
            None => self.0.push(Step { label, times: vec![d] }),
        }
    }

    fn get(&self, label: &str) -> &[Duration] {
        self.0.iter().find(|s| s.label == label).map(|s| s.times.as_slice()).unwrap_or_default()
    }
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// Median (mean of the two middle values when the count is even), min, max.
fn stats(v: &[Duration]) -> (Duration, Duration, Duration) {
    let (lo, hi) = (v.iter().min().copied().unwrap_or_default(), v.iter().max().copied().unwrap_or_default());
    (crate::stats::median_duration(v), lo, hi)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The round-trip proof as the server runs it: encode with `target`, decode the output with
/// it again, compare field by field with the source rows. Fails the bench if not proven, as
/// the server would refuse the conversion (timing a failed proof would measure nothing).
fn component_proof(
    steps: &mut Steps,
    labels: [&'static str; 3],
    target: &Converter,
    kind: MasterKind,
    rows: &[CanonRow],
) -> Result<()> {
    // The server's limit on reported differences (5 or 20) does not matter when there are
    // none: every field of every row is compared either way.
    let proof = tenken_lifecycle::round_trip_through(target, kind, rows, 20)?;
    if let Some(d) = proof.diffs.first() {
        bail!(
            "round trip through {} NOT proven: {} difference(s), first {} {}: expected {:?}, got {:?}",
            target.info.name,
            proof.diffs.len(),
            d.code,
            d.field,
            d.expected,
            d.got
        );
    }
    for (label, t) in labels.into_iter().zip(proof.timings) {
        steps.add(label, t);
    }
    Ok(())
}

/// Loads a bundled converter, timing it.
fn load(runtime: &Arc<Runtime>, name: &str) -> Result<(Converter, Duration)> {
    let bytes = tenken_server::bundled_converter(name).with_context(|| format!("no bundled converter {name}"))?;
    let (c, t) = timed(|| Converter::load(runtime, bytes));
    Ok((c.with_context(|| format!("loading converter {name}"))?, t))
}

pub fn run(args: BenchMastersArgs) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let name = args.file.file_name().and_then(|n| n.to_str()).context("the file name is not UTF-8")?.to_owned();
    let kind = MasterKind::ALL
        .into_iter()
        .find(|k| name.starts_with(k.letter()))
        .with_context(|| format!("{name}: cannot tell the master kind from the name (s_ y_ t_ c_ b_ z_)"))?;

    // Load twice through one artifact cache (a fresh temporary one, so the first load really
    // compiles): first a cold compile that writes the cache, then a load from the cache, as
    // a restarted server does. The bench runs on the second runtime.
    let cache = tempfile::tempdir()?;
    let limits = tenken_limits::Limits::default();
    let mut cold = Vec::new();
    {
        let runtime = Arc::new(Runtime::new(&limits, Some(cache.path()))?);
        for n in ["ssk-csv", "kokuho-fixed"] {
            cold.push(load(&runtime, n)?.1);
        }
    }
    let runtime = Arc::new(Runtime::new(&limits, Some(cache.path()))?);
    let (ssk, warm_ssk) = load(&runtime, "ssk-csv")?;
    let (kokuho, warm_kokuho) = load(&runtime, "kokuho-fixed")?;

    // Correctness before timing: the component decodes the file exactly as the native reader.
    let native_rows = canon::decode_ssk(kind, &name, &bytes)?;
    let component_rows = ssk.decode(kind, &bytes)?;
    let disagree = canon::compare(&native_rows, &component_rows, 5);
    ensure!(disagree.is_empty(), "ssk-csv and the native reader disagree: {disagree:?}");
    if let Some(want) = args.expect_rows {
        ensure!(native_rows.len() == want, "{name}: {} rows, expected {want}", native_rows.len());
    }
    let columns: Vec<usize> =
        tenken_master::parse_ssk_named(kind, &name, &bytes)?.iter().map(|r| r.columns.len()).collect();
    let (cmin, cmax) = (columns.iter().min().copied().unwrap_or(0), columns.iter().max().copied().unwrap_or(0));
    drop((native_rows, component_rows));

    println!("file     {} ({} bytes, {:?})", args.file.display(), bytes.len(), kind);
    let cols = if cmin == cmax { cmin.to_string() } else { format!("{cmin}–{cmax}") };
    println!("rows     {} × {cols} columns; ssk-csv decodes them exactly as the native reader", columns.len());
    println!(
        "load     ssk-csv {} cold (compile + cache write), {} from the artifact cache; kokuho-fixed {} cold, {} cached",
        ms(cold[0]),
        ms(warm_ssk),
        ms(cold[1]),
        ms(warm_kokuho)
    );
    println!("runs     {} (component and native interleaved in every run)", args.runs);
    println!();

    let mut steps = Steps(Vec::new());
    for _ in 0..args.runs {
        let (rows, t) = timed(|| ssk.decode(kind, &bytes));
        let rows = rows?;
        steps.add("component decode (ssk-csv)", t);
        component_proof(
            &mut steps,
            ["  proof ssk-csv: encode", "  proof ssk-csv: decode again", "  proof ssk-csv: compare"],
            &ssk,
            kind,
            &rows,
        )?;
        component_proof(
            &mut steps,
            ["  proof kokuho-fixed: encode", "  proof kokuho-fixed: decode again", "  proof kokuho-fixed: compare"],
            &kokuho,
            kind,
            &rows,
        )?;
        drop(rows);

        let (rows, t) = timed(|| canon::decode_ssk(kind, &name, &bytes));
        let rows = rows?;
        steps.add("native decode_ssk", t);
        let oracle = |b: &[u8]| canon::decode_ssk(kind, &name, b).map_err(|e| e.to_string());
        let proof = tenken_lifecycle::round_trip("native ssk-csv", &rows, canon::encode_ssk, oracle, 20)?;
        ensure!(proof.proven(), "native round trip NOT proven: {:?}", proof.diffs.first());
        for (label, t) in ["  native proof: encode_ssk", "  native proof: decode_ssk again", "  native proof: compare"]
            .into_iter()
            .zip(proof.timings)
        {
            steps.add(label, t);
        }
    }

    // Totals per run (then their median), not sums of medians.
    let sum = |labels: &[&str]| -> Vec<Duration> {
        (0..args.runs).map(|i| labels.iter().map(|l| steps.get(l)[i]).sum()).collect()
    };
    let proof_ssk = sum(&["  proof ssk-csv: encode", "  proof ssk-csv: decode again", "  proof ssk-csv: compare"]);
    let proof_kok =
        sum(&["  proof kokuho-fixed: encode", "  proof kokuho-fixed: decode again", "  proof kokuho-fixed: compare"]);
    let proof_nat = sum(&["  native proof: encode_ssk", "  native proof: decode_ssk again", "  native proof: compare"]);
    let add = |a: &[Duration], b: &[Duration]| -> Vec<Duration> { a.iter().zip(b).map(|(x, y)| *x + *y).collect() };
    let dec_c = steps.get("component decode (ssk-csv)").to_vec();
    let dec_n = steps.get("native decode_ssk").to_vec();
    let total_ssk = add(&dec_c, &proof_ssk);
    let total_kok = add(&dec_c, &proof_kok);
    let total_nat = add(&dec_n, &proof_nat);

    let line = |label: &str, v: &[Duration]| {
        let (m, lo, hi) = stats(v);
        println!("{label:42} {:>10}   ({} – {})", ms(m), ms(lo), ms(hi));
    };
    println!("{:42} {:>10}   (min – max)", "step", "median");
    for s in &steps.0 {
        line(s.label, &s.times);
    }
    println!();
    line("component proof ssk-csv (enc+dec+cmp)", &proof_ssk);
    line("component proof kokuho-fixed (enc+dec+cmp)", &proof_kok);
    line("native proof (enc+dec+cmp)", &proof_nat);
    line("component decode + proof ssk-csv", &total_ssk);
    line("component decode + proof kokuho-fixed", &total_kok);
    line("native decode + proof", &total_nat);
    println!();

    let ratio = |c: &[Duration], n: &[Duration]| stats(c).0.as_secs_f64() / stats(n).0.as_secs_f64();
    println!(
        "component/native (medians): decode {:.2}×, proof {:.2}×, decode + proof {:.2}× (ssk-csv); decode + proof {:.2}× (kokuho-fixed)",
        ratio(&dec_c, &dec_n),
        ratio(&proof_ssk, &proof_nat),
        ratio(&total_ssk, &total_nat),
        ratio(&total_kok, &total_nat)
    );
    let aim = Duration::from_secs(1);
    for (what, v) in [("ssk-csv", &total_ssk), ("kokuho-fixed", &total_kok)] {
        let m = stats(v).0;
        println!(
            "aim ≤ 1 s for decode + round-trip proof ({what}): {} (median {})",
            if m <= aim { "met" } else { "NOT met" },
            ms(m)
        );
    }
    Ok(())
}
