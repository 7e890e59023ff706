//! The `tenken` binary: a thin clap front end over the library crates.
//!
//! Exit codes (`tenken check`): 0 = no `error` finding, 1 = at least one, 2 = usage or I/O
//! error (clap's own usage errors also exit 2).

mod bench;
mod bench_masters;
mod bench_server;
mod bench_swap;
mod client;
mod master_view;
mod output;
mod plugin_cmd;
mod plugin_test;
mod server_cmd;
mod stats;

/// A faster allocator than glibc's for this workload (tens of millions of small strings per
/// big file): glibc malloc/free led the native profile at ~35 %. Measured in
/// docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_model::Payer;

#[derive(Parser)]
#[command(name = "tenken", version, about = "Online medical-claims (レセプト) acceptance and office checks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a claim file (RECEIPTC.UKE) with the payer's rule plugins.
    Check(CheckArgs),
    /// Generate valid claim files (optionally with injected errors), or the demo masters.
    Gen(GenArgs),
    /// Measure receipts/s through the wasm plugins and the native build of the same rules.
    Bench(bench::BenchArgs),
    /// List the rules the plugins implement.
    Rules(PluginArgs),
    /// List every limit with its default value and unit.
    Limits,
    /// Run the server (HTTP API, durable store, per-payer checking).
    Serve(server_cmd::ServeArgs),
    /// Submit a claim file to a server; `--wait` shows progress and prints the findings.
    Submit(client::SubmitArgs),
    /// Show a submission's status.
    Status(client::IdArgs),
    /// Print a checked submission's findings.
    Findings {
        #[command(flatten)]
        id: client::IdArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Confirm (請求確定) a checked submission.
    Confirm(client::IdArgs),
    /// Manage API tokens in a data directory.
    #[command(subcommand)]
    Token(server_cmd::TokenCommand),
    /// The plugin lifecycle (payer staff): upload, validate, approve, activate, rollback, audit.
    Plugin(plugin_cmd::PluginCmd),
    /// Re-run a submission under the exact versions its decision records name.
    Replay(plugin_cmd::ReplayArgs),
    /// Manage a data directory's masters.
    #[command(subcommand)]
    Master(server_cmd::MasterCommand),
    /// Baselines of bench/server.sh: bare HTTP endpoint, fsync-one-by-one loop, claim body.
    #[command(subcommand, hide = true)]
    BenchServer(bench_server::BenchServerCommand),
    /// Master conversion timings (docs/PERFORMANCE.md): converter components vs the native
    /// SSK reader/writer, decode and round-trip proof of one master file.
    #[command(hide = true)]
    BenchMasters(bench_masters::BenchMastersArgs),
}

#[derive(clap::Args, Clone)]
pub(crate) struct PluginArgs {
    /// Directory of SSK master files (s_/y_/t_/c_/b_/z_); default: the built-in demo masters.
    #[arg(long)]
    masters: Option<PathBuf>,
    /// Directory of plugin components (*.wasm) to run instead of the bundled defaults.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Run the rules natively instead of in the sandbox (baseline; bundled rules only).
    #[arg(long)]
    native: bool,
    /// Where compiled plugin artifacts are cached.
    #[arg(long, env = "TENKEN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The claim file.
    file: PathBuf,
    /// The receiving payer; default: from the IR record's 審査支払機関.
    #[arg(long)]
    payer: Option<Payer>,
    #[command(flatten)]
    plugins: PluginArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
struct GenArgs {
    /// Number of receipts in all.
    #[arg(long, default_value_t = 100)]
    receipts: usize,
    /// Number of institutions (one file each).
    #[arg(long, default_value_t = 1)]
    institutions: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Inject known errors, e.g. `--inject insurer-check-digit=0.01` (repeatable).
    #[arg(long, value_parser = tenken_gen::parse_inject)]
    inject: Vec<(tenken_gen::InjectKind, f64)>,
    /// The payer of every generated file; default: a mix.
    #[arg(long)]
    payer: Option<Payer>,
    /// Master set the claims must be consistent with; default: the demo masters.
    #[arg(long)]
    masters: Option<PathBuf>,
    /// Output: a file when one institution, else a directory (one RECEIPTC.UKE per
    /// institution, plus injections.json).
    #[arg(long, short, required_unless_present = "demo_masters")]
    out: Option<PathBuf>,
    /// Write the demo master set (the project's own, labelled demo data) into this directory.
    #[arg(long)]
    demo_masters: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; the one-shot commands only warnings.
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENKEN_LOG").unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Check(args) => check(args),
        Command::Gen(args) => generate(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Rules(args) => rules(args).map(|()| ExitCode::SUCCESS),
        Command::Limits => {
            for (name, value, meaning) in Limits::describe() {
                println!("{name:32} {value:>12}  {meaning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => server_cmd::serve(args).map(|()| ExitCode::SUCCESS),
        Command::Submit(args) => client::submit(args),
        Command::Status(args) => client::status(args),
        Command::Findings { id, format } => client::findings(id, format),
        Command::Confirm(args) => client::confirm(args),
        Command::Plugin(cmd) => plugin_cmd::run(cmd),
        Command::Replay(args) => plugin_cmd::replay(args),
        Command::Token(cmd) => server_cmd::token(cmd).map(|()| ExitCode::SUCCESS),
        Command::Master(cmd) => server_cmd::master(cmd),
        Command::BenchServer(cmd) => bench_server::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::BenchMasters(args) => bench_masters::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        // `tenken check … | head` closes the pipe early: not an error worth reporting.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn load_masters(dir: Option<&Path>) -> Result<Arc<tenken_master::MasterSet>> {
    Ok(Arc::new(match dir {
        Some(dir) => tenken_master::MasterSet::load_dir(dir)
            .with_context(|| format!("loading masters from {}", dir.display()))?,
        None => tenken_master::demo::demo_master_set(),
    }))
}

pub(crate) fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("tenken").join("artifacts"))
}

pub(crate) fn build_engine(args: &PluginArgs, limits: &Limits) -> Result<Engine> {
    if args.native {
        anyhow::ensure!(args.plugins.is_none(), "--native runs the bundled rules only; drop --plugins or --native");
        return Ok(Engine::native());
    }
    let cache = args.cache_dir.clone().or_else(default_cache_dir);
    let runtime = Arc::new(tenken_runtime::Runtime::new(limits, cache.as_deref())?);
    match &args.plugins {
        None => Ok(Engine::bundled(runtime)?),
        Some(dir) => {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading plugin directory {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            paths.sort();
            anyhow::ensure!(!paths.is_empty(), "no *.wasm components in {}", dir.display());
            let mut plugins = Vec::new();
            for p in paths {
                let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                let plugin = tenken_runtime::Plugin::load(&runtime, &bytes)
                    .with_context(|| format!("loading plugin {}", p.display()))?;
                plugins.push(Arc::new(plugin));
            }
            Ok(Engine::Wasm { runtime, plugins })
        }
    }
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let limits = Limits::default();
    let meta = std::fs::metadata(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    anyhow::ensure!(
        meta.len() <= limits.claim_bytes_max,
        "{} is {} bytes; the limit is {} (claim_bytes_max)",
        args.file.display(),
        meta.len(),
        limits.claim_bytes_max
    );
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let masters = load_masters(args.plugins.masters.as_deref())?;
    let engine = build_engine(&args.plugins, &limits)?;
    let checker = Checker::new(engine, masters, limits);
    let report = checker.check_bytes(&bytes, args.payer)?;
    match args.format {
        Format::Json => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            serde_json::to_writer_pretty(&mut lock, &output::json_report(&report))?;
            use std::io::Write;
            writeln!(lock)?;
        }
        Format::Text => output::print_text(&report, &args.file)?,
    }
    Ok(if report.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn generate(args: GenArgs) -> Result<()> {
    if let Some(dir) = &args.demo_masters {
        tenken_master::demo::write_demo_masters(dir)
            .with_context(|| format!("writing demo masters to {}", dir.display()))?;
        eprintln!("wrote the demo master set (demo data, not real masters) to {}", dir.display());
        if args.out.is_none() {
            return Ok(());
        }
    }
    let out = args.out.clone().expect("clap requires --out");
    let masters = load_masters(args.masters.as_deref())?;
    let opts = tenken_gen::GenOptions {
        receipts: args.receipts,
        institutions: args.institutions.max(1),
        seed: args.seed,
        payer: args.payer,
        inject: args.inject.clone(),
        ..tenken_gen::GenOptions::default()
    };
    let files = tenken_gen::generate(&opts, &masters)?;
    let mut manifest = Vec::new();
    if files.len() == 1 && !out.is_dir() {
        std::fs::write(&out, &files[0].bytes).with_context(|| format!("writing {}", out.display()))?;
        manifest.push((out.display().to_string(), &files[0]));
        eprintln!(
            "wrote {} ({} receipts, institution {}, payer {})",
            out.display(),
            files[0].receipts,
            files[0].institution_code,
            files[0].payer
        );
    } else {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for f in &files {
            let dir = out.join(&f.institution_code);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("RECEIPTC.UKE");
            std::fs::write(&path, &f.bytes).with_context(|| format!("writing {}", path.display()))?;
            manifest.push((path.display().to_string(), f));
        }
        eprintln!(
            "wrote {} files, {} receipts, under {}",
            files.len(),
            files.iter().map(|f| f.receipts).sum::<usize>(),
            out.display()
        );
    }
    if manifest.iter().any(|(_, f)| !f.injections.is_empty()) {
        let json: Vec<_> = manifest
            .iter()
            .map(|(path, f)| {
                serde_json::json!({
                    "file": path,
                    "payer": f.payer,
                    "injections": f.injections.iter().map(|i| serde_json::json!({
                        "kind": i.kind, "receipt": i.receipt, "line": i.line, "rule": i.expected_rule,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let path = if out.is_dir() { out.join("injections.json") } else { out.with_extension("injections.json") };
        std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
        eprintln!("injected errors are listed in {}", path.display());
    }
    Ok(())
}

fn rules(args: PluginArgs) -> Result<()> {
    let engine = build_engine(&args, &Limits::default())?;
    for (plugin, rule) in engine.rules() {
        println!("{:40} {:8} {:18} {}", rule.id, rule.severity.as_str(), plugin, rule.description);
    }
    Ok(())
}
