//! `tenken bench-server swap` (hidden): the hot-swap benchmark of the plugin lifecycle
//! (docs/PERFORMANCE.md, "Hot swap"): activation-to-first-use latency, and the check
//! throughput while a release set is activated every second under load, against the same
//! load without swaps measured in the same run.
//!
//! Why alternate phases (off, on, off, on, …) instead of one long run of each: the machine is
//! shared and noisy, so each "on" phase is compared with the "off" phases next to it.
//! Why measure checks, not acceptance: a swap changes which checker the workers use, never
//! the acceptance path; the workers' receipts/s is what a swap could dent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::client::{agent, call, error_text};
use crate::stats::{median, percentile};

#[derive(clap::Args)]
pub struct SwapArgs {
    /// The server, e.g. http://127.0.0.1:8080 (a fresh `tenken serve`).
    #[arg(long)]
    server: String,
    /// An institution token of the body's institution.
    #[arg(long)]
    institution_token: String,
    /// A staff token of the body's payer (activates release sets).
    #[arg(long)]
    staff_token: String,
    /// The claim file to submit (each submission gets its own 請求年月, so none supersedes another).
    #[arg(long)]
    body: std::path::PathBuf,
    #[arg(long, default_value = "ssk")]
    payer: tenken_model::Payer,
    /// Length of each phase.
    #[arg(long, default_value_t = 10)]
    phase_s: u64,
    /// (off, on) phase pairs after the warm-up.
    #[arg(long, default_value_t = 3)]
    pairs: u32,
    /// Time between activations in an "on" phase.
    #[arg(long, default_value_t = 1000)]
    swap_every_ms: u64,
    /// Concurrent submitters; each submits, waits until its file is checked, and repeats, so
    /// the workers always have queued chunks without the queue growing without bound.
    #[arg(long, default_value_t = 6)]
    submitters: usize,
}

/// The IR record's 請求年月 (field 8, 1-based) rewritten to `month` months after 2021-11
/// (the generated receipts are for 2021-10, so no month-order finding appears).
fn with_month(body: &[u8], month: u64) -> Result<Vec<u8>> {
    let end = body.iter().position(|&b| b == b'\r' || b == b'\n').context("the body has no record end")?;
    let fields: Vec<&[u8]> = body[..end].split(|&b| b == b',').collect();
    if fields.len() < 8 || fields[0] != b"IR" {
        bail!("the body's first record is not an IR record with 8 fields");
    }
    let m = 2021 * 12 + 10 + month;
    let mut out = Vec::with_capacity(body.len());
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if i == 7 {
            out.extend_from_slice(format!("{:04}{:02}", m / 12, m % 12 + 1).as_bytes());
        } else {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(&body[end..]);
    Ok(out)
}

/// The sum of the samples of `/metrics` whose name and labels start with `prefix`.
fn metric_sum(server: &str, prefix: &str) -> Result<f64> {
    let mut resp = agent().get(format!("{server}/metrics")).call().context("GET /metrics")?;
    let text = resp.body_mut().read_to_string()?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum())
}

fn receipts_checked(server: &str, payer: &str) -> Result<f64> {
    metric_sum(server, &format!("tenken_receipts_checked_total{{payer=\"{payer}\"}}"))
}

pub fn run(a: SwapArgs) -> Result<()> {
    let server = a.server.trim_end_matches('/').to_owned();
    let payer = a.payer.to_string();
    let body = std::fs::read(&a.body).with_context(|| format!("reading {}", a.body.display()))?;
    let receipts_per_file = tenken_claim::scan(&body).receipts;
    let staff = format!("Bearer {}", a.staff_token);
    // The plugins of the payer's live set: every activation re-activates them (a new release
    // set each time, loaded, recorded and swapped in like any other).
    let (status, sets) =
        call(agent().get(format!("{server}/v1/payers/{payer}/releases")).header("Authorization", &staff).call())?;
    if status != 200 {
        bail!("listing release sets: {}", error_text(status, &sets));
    }
    let plugins = sets
        .as_array()
        .and_then(|l| l.iter().rev().find(|s| s["state"] == "active"))
        .map(|s| s["plugins"].clone())
        .context("the payer has no active release set")?;

    let stop = Arc::new(AtomicBool::new(false));
    let month = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let first_counts: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let checked_files = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for _ in 0..a.submitters.max(1) {
        let (stop, month, mismatches, checked_files, first_counts) =
            (stop.clone(), month.clone(), mismatches.clone(), checked_files.clone(), first_counts.clone());
        let (server, body, token) = (server.clone(), body.clone(), format!("Bearer {}", a.institution_token));
        submitters.push(std::thread::spawn(move || -> Result<()> {
            let agent = agent();
            while !stop.load(Ordering::Relaxed) {
                let bytes = with_month(&body, month.fetch_add(1, Ordering::Relaxed))?;
                let (status, v) = call(
                    agent.post(format!("{server}/v1/submissions")).header("Authorization", &token).send(&bytes[..]),
                )?;
                if status != 202 {
                    bail!("submitting: {}", error_text(status, &v));
                }
                let id = v["submission"]["id"].as_i64().context("no submission id")?;
                // Bounded: a file not checked within 120 s fails the benchmark.
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let (status, s) = call(
                        agent.get(format!("{server}/v1/submissions/{id}")).header("Authorization", &token).call(),
                    )?;
                    if status != 200 {
                        bail!("status of {id}: {}", error_text(status, &s));
                    }
                    if s["state"] == "checked" {
                        // Every file is the same claim but for its 請求年月, so every check
                        // must find the same: a different count is a failed check.
                        let counts = s["counts"].to_string();
                        let mut first = first_counts.lock().unwrap();
                        if first.get_or_insert_with(|| counts.clone()) != &counts {
                            mismatches.fetch_add(1, Ordering::Relaxed);
                        }
                        checked_files.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("submission {id} was not checked within 120 s");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(())
        }));
    }

    let swapping = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, swapping, server, staff, payer, plugins) =
            (stop.clone(), swapping.clone(), server.clone(), staff.clone(), payer.clone(), plugins.clone());
        let every = Duration::from_millis(a.swap_every_ms.max(10));
        std::thread::spawn(move || -> Result<Vec<(i64, f64)>> {
            let agent = agent();
            let mut done = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
                if Instant::now() < next {
                    continue;
                }
                next += every;
                if !swapping.load(Ordering::Relaxed) {
                    next = Instant::now() + every;
                    continue;
                }
                let t0 = Instant::now();
                let req = serde_json::json!({ "plugins": plugins, "reason": format!("bench swap {}", done.len() + 1) });
                let (status, v) = call(
                    agent
                        .post(format!("{server}/v1/payers/{payer}/releases"))
                        .header("Authorization", &staff)
                        .header("Content-Type", "application/json")
                        .send(req.to_string().as_bytes()),
                )?;
                if status != 201 {
                    bail!("activating: {}", error_text(status, &v));
                }
                done.push((v["id"].as_i64().context("no release set id")?, t0.elapsed().as_secs_f64() * 1000.0));
            }
            Ok(done)
        })
    };

    let phase = Duration::from_secs(a.phase_s.max(1));
    let plugin_failures_before = metric_sum(&server, &format!("tenken_plugin_failures_total{{payer=\"{payer}\""))?;
    eprintln!(
        "warm-up {} s, then {} × ({} s without swaps, {} s with an activation every {} ms); {} submitters, {} receipts per file",
        a.phase_s, a.pairs, a.phase_s, a.phase_s, a.swap_every_ms, a.submitters, receipts_per_file
    );
    std::thread::sleep(phase);
    let mut rates: Vec<(bool, f64)> = Vec::new();
    for _ in 0..a.pairs {
        for on in [false, true] {
            swapping.store(on, Ordering::Relaxed);
            let (c0, t0) = (receipts_checked(&server, &payer)?, Instant::now());
            std::thread::sleep(phase);
            let (c1, dt) = (receipts_checked(&server, &payer)?, t0.elapsed().as_secs_f64());
            let rate = (c1 - c0) / dt;
            eprintln!("  {:4} {:8.0} receipts/s", if on { "on" } else { "off" }, rate);
            rates.push((on, rate));
        }
    }
    swapping.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let plugin_failures =
        metric_sum(&server, &format!("tenken_plugin_failures_total{{payer=\"{payer}\""))? - plugin_failures_before;
    let activations = swapper.join().map_err(|_| anyhow::anyhow!("the swapper panicked"))??;
    for s in submitters {
        s.join().map_err(|_| anyhow::anyhow!("a submitter panicked"))??;
    }

    // First use, as the server recorded it: activation request → first chunk on the new table.
    let (status, swaps) =
        call(agent().get(format!("{server}/v1/payers/{payer}/swaps")).header("Authorization", &staff).call())?;
    if status != 200 {
        bail!("listing swaps: {}", error_text(status, &swaps));
    }
    let ids: std::collections::HashSet<i64> = activations.iter().map(|(id, _)| *id).collect();
    let mut first_use: Vec<f64> = Vec::new();
    let mut swapped: Vec<f64> = Vec::new();
    let mut never_used = 0;
    for s in swaps.as_array().into_iter().flatten() {
        if s["action"] != "activate" || !s["subject"].as_i64().is_some_and(|id| ids.contains(&id)) {
            continue;
        }
        if let Some(ms) = s["swapped_after_ms"].as_f64() {
            swapped.push(ms);
        }
        match s["first_use_after_ms"].as_f64() {
            Some(ms) => first_use.push(ms),
            None => never_used += 1,
        }
    }
    let api: Vec<f64> = activations.iter().map(|(_, ms)| *ms).collect();

    // The dip of each "on" phase against the mean of the "off" phases beside it.
    let mut dips = Vec::new();
    for (i, (on, rate)) in rates.iter().enumerate() {
        if !on {
            continue;
        }
        let beside: Vec<f64> = [i.checked_sub(1), Some(i + 1)]
            .into_iter()
            .flatten()
            .filter_map(|j| rates.get(j))
            .filter(|(o, _)| !o)
            .map(|(_, r)| *r)
            .collect();
        let base = beside.iter().sum::<f64>() / beside.len() as f64;
        dips.push((1.0 - rate / base) * 100.0);
    }
    let off: Vec<f64> = rates.iter().filter(|(o, _)| !o).map(|(_, r)| *r).collect();
    let on: Vec<f64> = rates.iter().filter(|(o, _)| *o).map(|(_, r)| *r).collect();
    println!(
        "RESULT activations={} files_checked={} findings_mismatches={} plugin_failure_findings={} off_receipts_per_s_median={:.0} on_receipts_per_s_median={:.0} dip_pct_per_pair={} dip_pct_median={:.1}",
        activations.len(),
        checked_files.load(Ordering::Relaxed),
        mismatches.load(Ordering::Relaxed),
        plugin_failures,
        median(&off),
        median(&on),
        dips.iter().map(|d| format!("{d:.1}")).collect::<Vec<_>>().join("/"),
        median(&dips),
    );
    println!(
        "RESULT activate_api_ms_p50={:.1} p99={:.1} max={:.1} swapped_after_ms_p50={:.1} max={:.1} first_use_after_ms_p50={:.1} p99={:.1} max={:.1} never_used={}",
        percentile(&api, 0.5),
        percentile(&api, 0.99),
        percentile(&api, 1.0),
        percentile(&swapped, 0.5),
        percentile(&swapped, 1.0),
        percentile(&first_use, 0.5),
        percentile(&first_use, 0.99),
        percentile(&first_use, 1.0),
        never_used
    );
    Ok(())
}
