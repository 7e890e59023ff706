//! `tenken bench-server` (hidden): the baselines of the server acceptance benchmark
//! (`bench/server.sh`, docs/PERFORMANCE.md): a bare axum endpoint on the server's hyper stack
//! that answers 202 without storing anything (the HTTP ceiling), a plain loop that writes
//! files durably one by one (the naive durability floor), and the ~40 KB claim body posted;
//! also the hot-swap driver (`swap`, in `bench_swap`).
//!
//! Why here and not in a separate binary: the ceiling must run on the same axum/hyper/tokio
//! versions and allocator (mimalloc) as `tenken serve`, which the `tenken` binary guarantees.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tenken_model::Payer;

/// Largest body the bare endpoint reads (as `submission_bytes_max` by default).
const BARE_BODY_MAX: usize = 64 * 1024 * 1024;

#[derive(clap::Subcommand)]
pub enum BenchServerCommand {
    /// HTTP ceiling: POST /v1/submissions reads the body and answers 202 with a small JSON,
    /// on the same hyper HTTP/1 connection setup as `tenken serve`; nothing is stored.
    Bare {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Also write the bound address to this file (tmp + rename), like `serve.addr`.
        #[arg(long)]
        addr_file: Option<PathBuf>,
    },
    /// Durability floor: write files one by one (tmp, fsync, rename, fsync dir) and print
    /// files/s and per-file latency.
    Naive {
        /// Directory to write into (created; `tmp/` and `files/` inside).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 2000)]
        files: usize,
        /// Size of each file (ignored with --body).
        #[arg(long, default_value_t = 40960)]
        bytes: usize,
        /// Write this file's bytes instead of generated ones.
        #[arg(long)]
        body: Option<PathBuf>,
        /// Writer threads, each one by one (1 = the naive floor).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Hot-swap benchmark against a running server: activation-to-first-use and the check
    /// throughput dip while a release set is activated every second (bench/server.sh swap).
    Swap(crate::bench_swap::SwapArgs),
    /// Write a valid claim file of about --bytes bytes (or --receipts receipts) for one
    /// institution; prints `<institution code> <receipts> <bytes>`.
    Body {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 40960)]
        bytes: usize,
        /// Receipts in the file (overrides --bytes).
        #[arg(long)]
        receipts: Option<usize>,
        #[arg(long, default_value = "ssk")]
        payer: Payer,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

pub fn run(cmd: BenchServerCommand) -> Result<()> {
    match cmd {
        BenchServerCommand::Swap(args) => crate::bench_swap::run(args),
        BenchServerCommand::Bare { listen, addr_file } => bare(listen, addr_file),
        BenchServerCommand::Naive { dir, files, bytes, body, threads } => {
            naive(&dir, files, bytes, body.as_deref(), threads)
        }
        BenchServerCommand::Body { out, bytes, receipts, payer, seed } => body(&out, bytes, receipts, payer, seed),
    }
}

// ---------------------------------------------------------------------------------------
// The HTTP ceiling

async fn bare_accept(State(next): State<Arc<AtomicU64>>, body: Body) -> Response {
    match axum::body::to_bytes(body, BARE_BODY_MAX).await {
        Ok(b) if !b.is_empty() => {
            let id = next.fetch_add(1, Ordering::Relaxed) + 1;
            let json = serde_json::json!({
                "submission": {"id": id, "state": "queued", "bytes": b.len()},
                "replayed": false,
                "status_url": format!("/v1/submissions/{id}"),
            });
            (StatusCode::ACCEPTED, axum::Json(json)).into_response()
        }
        Ok(_) => StatusCode::BAD_REQUEST.into_response(),
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    }
}

fn bare(listen: SocketAddr, addr_file: Option<PathBuf>) -> Result<()> {
    // The same runtime as `tenken serve` (multi-thread, one worker per CPU).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("bench-bare-http").build()?;
    rt.block_on(bare_serve(listen, addr_file))
}

/// Serves until the process is killed (SIGTERM/SIGINT end it; there is nothing to flush).
async fn bare_serve(listen: SocketAddr, addr_file: Option<PathBuf>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(f) = &addr_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{addr}\n"))?;
        std::fs::rename(&tmp, f)?;
    }
    println!("bare endpoint listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let routes = axum::Router::new()
        .route("/v1/submissions", post(bare_accept))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(AtomicU64::new(0)));
    // As serve.rs: HTTP/1, keep-alive, header read timeout, TCP_NODELAY.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).keep_alive(true);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(routes.clone()));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// The durability floor

/// One durable write as the blob store does it: tmp file, fsync, rename, fsync the directory.
fn write_durably(tmp_dir: &Path, dest_dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dest_dir.join(name))?;
    std::fs::File::open(dest_dir)?.sync_all()
}

fn naive(dir: &Path, files: usize, bytes: usize, body: Option<&Path>, threads: usize) -> Result<()> {
    let base: Vec<u8> = match body {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        // Claim-like text, not zeros (no file system here compresses, but be safe).
        None => (0..bytes).map(|i| b"0123456789,ABCDEFGHIJ\r\n"[(i * 7 + i / 13) % 23]).collect(),
    };
    let tmp_dir = dir.join("tmp");
    let dest_dir = dir.join("files");
    std::fs::create_dir_all(&tmp_dir)?;
    std::fs::create_dir_all(&dest_dir)?;
    let threads = threads.max(1);
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| -> Result<Vec<Duration>> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (base, tmp_dir, dest_dir) = (&base, &tmp_dir, &dest_dir);
                s.spawn(move || -> std::io::Result<Vec<Duration>> {
                    let mut lat = Vec::new();
                    let mut bytes = base.clone();
                    for i in (t..files).step_by(threads) {
                        // Every file differs (as every submission does).
                        let tag = format!("{i:016}");
                        let n = tag.len().min(bytes.len());
                        bytes[..n].copy_from_slice(&tag.as_bytes()[..n]);
                        let t0 = Instant::now();
                        write_durably(tmp_dir, dest_dir, &format!("f{i:08}"), &bytes)?;
                        lat.push(t0.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(files);
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow::anyhow!("writer thread panicked"))??);
        }
        Ok(all)
    })?;
    let elapsed = started.elapsed();
    let latencies_ms: Vec<f64> = latencies.iter().copied().map(crate::stats::ms).collect();
    let rate = files as f64 / elapsed.as_secs_f64();
    let pct = |p| crate::stats::percentile(&latencies_ms, p);
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    println!(
        "naive: {files} files of {} bytes, {threads} writer(s), tmp+fsync+rename+fsync dir each: {rate:.0} files/s in {:.2} s; per file p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        base.len(),
        elapsed.as_secs_f64(),
        p50,
        p99,
        max
    );
    println!("RESULT files_per_s={rate:.1} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The claim body

fn body(out: &Path, target: usize, receipts: Option<usize>, payer: Payer, seed: u64) -> Result<()> {
    let masters = tenken_master::demo::demo_master_set();
    let gen_file = |n: usize| -> Result<tenken_gen::GeneratedFile> {
        let opts = tenken_gen::GenOptions { receipts: n, payer: Some(payer), seed, ..Default::default() };
        let mut files = tenken_gen::generate(&opts, &masters)?;
        anyhow::ensure!(files.len() == 1, "expected one file, got {}", files.len());
        Ok(files.remove(0))
    };
    let file = match receipts {
        Some(n) => gen_file(n.max(1))?,
        None => {
            // Scale the receipt count by target/size until it settles, then try the neighbours
            // of the closest; sizes per receipt vary, so a few steps are needed.
            let mut best: Option<(usize, tenken_gen::GeneratedFile)> = None;
            let closer = |best: &Option<(usize, tenken_gen::GeneratedFile)>, f: &tenken_gen::GeneratedFile| {
                best.as_ref().is_none_or(|(_, b)| b.bytes.len().abs_diff(target) > f.bytes.len().abs_diff(target))
            };
            let mut n = 64;
            for _ in 0..8 {
                let f = gen_file(n)?;
                let next = ((n as f64 * target as f64 / f.bytes.len() as f64).round() as usize).max(1);
                if closer(&best, &f) {
                    best = Some((n, f));
                }
                if next == n {
                    break;
                }
                n = next;
            }
            let center = best.as_ref().map(|(n, _)| *n).unwrap_or(1);
            for n in [center.saturating_sub(1).max(1), center + 1] {
                let f = gen_file(n)?;
                if closer(&best, &f) {
                    best = Some((n, f));
                }
            }
            best.expect("at least one candidate").1
        }
    };
    std::fs::write(out, &file.bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("{} {} {}", file.institution_code, file.receipts, file.bytes.len());
    Ok(())
}
