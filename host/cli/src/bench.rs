//! `tenken bench`: receipts/s end to end (parse + all rules) through the wasm plugins and
//! through the native build of the same rules, measured in the same run, with their ratio.
//!
//! Why medians of several runs: the machine is shared and noisy; one run proves nothing.

use std::time::Instant;

use anyhow::Result;
use tenken_check::{Checker, Engine};
use tenken_limits::Limits;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Receipts in the generated file.
    #[arg(long, default_value_t = 100_000)]
    receipts: usize,
    /// Runs per engine (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Receipts per plugin call (check_batch_receipts_max).
    #[arg(long)]
    batch: Option<u32>,
    /// Worker threads (0 = CPUs).
    #[arg(long)]
    workers: Option<u32>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[command(flatten)]
    plugins: crate::PluginArgs,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut limits = Limits::default();
    if let Some(b) = args.batch {
        limits.check_batch_receipts_max = b;
    }
    if let Some(w) = args.workers {
        limits.check_workers_max = w;
    }
    let masters = crate::load_masters(args.plugins.masters.as_deref())?;
    let t = Instant::now();
    let opts = tenken_gen::GenOptions {
        receipts: args.receipts,
        institutions: 1,
        seed: args.seed,
        ..tenken_gen::GenOptions::default()
    };
    let file = tenken_gen::generate(&opts, &masters)?.remove(0);
    eprintln!("generated {} receipts ({} bytes) in {:.2?}", file.receipts, file.bytes.len(), t.elapsed());

    let t = Instant::now();
    let wasm_engine = crate::build_engine(&crate::PluginArgs { native: false, ..args.plugins.clone() }, &limits)?;
    eprintln!("loaded wasm plugins in {:.2?}", t.elapsed());
    let engines = [("native", Engine::native()), ("wasm", wasm_engine)];
    let mut results = Vec::new();
    for (label, engine) in engines {
        let checker = Checker::new(engine, masters.clone(), limits.clone());
        let mut totals = Vec::new();
        let mut parses = Vec::new();
        let mut findings = 0;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            let report = checker.check_bytes(&file.bytes, None)?;
            totals.push(t.elapsed());
            parses.push(report.timings.parse);
            findings = report.findings.len();
        }
        let total = crate::stats::median_duration(&totals);
        let rate = file.receipts as f64 / total.as_secs_f64();
        println!(
            "{label:7} median {:>9.1} ms  (parse {:>7.1} ms)  {:>10.0} receipts/s  findings {findings}",
            total.as_secs_f64() * 1e3,
            crate::stats::ms(crate::stats::median_duration(&parses)),
            rate
        );
        results.push(rate);
    }
    println!(
        "ratio wasm/native = {:.3}   ({} receipts, {} runs each, batch {}, workers {})",
        results[1] / results[0],
        file.receipts,
        args.runs,
        limits.check_batch_receipts_max,
        if limits.check_workers_max == 0 { "auto".to_string() } else { limits.check_workers_max.to_string() }
    );
    Ok(())
}
