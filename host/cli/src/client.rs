//! `tenken submit | status | confirm | findings`: the institution's side of the HTTP API.
//!
//! `submit` retries a 503/429 after its Retry-After (bounded by `--retries`), always with
//! the same Idempotency-Key, so a retry after a lost answer never stores the file twice.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tenken_model::{Finding, Payer};

#[derive(clap::Args, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(long, env = "TENKEN_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub(crate) server: String,
    /// API token (`tenken token create`).
    #[arg(long, env = "TENKEN_TOKEN", hide_env_values = true, default_value = "", global = true)]
    pub(crate) token: String,
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    file: PathBuf,
    #[command(flatten)]
    conn: Conn,
    /// Send to this payer (refused if the IR record names the other one).
    #[arg(long)]
    payer: Option<Payer>,
    /// Wait for the check, with a progress bar, and print the findings like `tenken check`.
    #[arg(long)]
    wait: bool,
    /// Most seconds to wait for the check.
    #[arg(long, default_value_t = 3600)]
    wait_s_max: u64,
    /// Most retries of a refused (503/429) or failed request.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Idempotency-Key (default: a random one, reused for this command's retries).
    #[arg(long)]
    idempotency_key: Option<String>,
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// Submission id.
    id: i64,
    #[command(flatten)]
    conn: Conn,
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, JSON body)
pub(crate) fn call(req: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(u16, Value)> {
    let mut resp = req.context("the server did not answer")?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, json))
}

pub(crate) fn error_text(status: u16, body: &Value) -> String {
    match body.get("error") {
        Some(e) => format!(
            "{status} {}: {} (request {})",
            e["code"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or(""),
            e["request_id"].as_str().unwrap_or("?")
        ),
        None => format!("{status}: {body}"),
    }
}

pub(crate) fn get(conn: &Conn, path: &str) -> Result<Value> {
    let (status, body) = call(
        agent().get(format!("{}{path}", conn.server)).header("Authorization", format!("Bearer {}", conn.token)).call(),
    )?;
    if status >= 400 {
        bail!("{}", error_text(status, &body));
    }
    Ok(body)
}

fn post(conn: &Conn, path: &str) -> Result<Value> {
    let (status, body) = call(
        agent()
            .post(format!("{}{path}", conn.server))
            .header("Authorization", format!("Bearer {}", conn.token))
            .send_empty(),
    )?;
    if status >= 400 {
        bail!("{}", error_text(status, &body));
    }
    Ok(body)
}

pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let key = args.idempotency_key.clone().unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let path = match args.payer {
        Some(p) => format!("/v1/payers/{p}/submissions"),
        None => "/v1/submissions".into(),
    };
    let mut attempt = 0;
    let body = loop {
        let result = call(
            agent()
                .post(format!("{}{path}", args.conn.server))
                .header("Authorization", format!("Bearer {}", args.conn.token))
                .header("Idempotency-Key", &key)
                .header("Content-Type", "application/octet-stream")
                .send(&bytes[..]),
        );
        match result {
            Ok((202, body)) => break body,
            Ok((status @ (429 | 503), body)) if attempt < args.retries => {
                let wait = 2u64.pow(attempt.min(6));
                eprintln!("{}; retrying in {wait} s", error_text(status, &body));
                std::thread::sleep(Duration::from_secs(wait));
            }
            Ok((status, body)) => bail!("{}", error_text(status, &body)),
            Err(e) if attempt < args.retries => {
                eprintln!("{e:#}; retrying with the same Idempotency-Key");
                std::thread::sleep(Duration::from_secs(1 << attempt.min(5)));
            }
            Err(e) => return Err(e),
        }
        attempt += 1;
    };
    let s = &body["submission"];
    let id = s["id"].as_i64().context("no submission id in the answer")?;
    eprintln!(
        "accepted: submission {id}, 受付番号 {} ({} receipts for {}){}",
        s["reception"].as_str().unwrap_or("?"),
        s["receipts"],
        s["payer"].as_str().unwrap_or("?"),
        if body["replayed"].as_bool() == Some(true) { " — already submitted with this Idempotency-Key" } else { "" }
    );
    for n in body["notices"].as_array().into_iter().flatten() {
        eprintln!("notice from {}: {}", n["payer"].as_str().unwrap_or("all"), n["message"].as_str().unwrap_or(""));
    }
    if !args.wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let status = wait_checked(&args.conn, id, Duration::from_secs(args.wait_s_max))?;
    print_findings(&args.conn, &status, &args.file, args.format)
}

fn wait_checked(conn: &Conn, id: i64, max: Duration) -> Result<Value> {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} checking [{bar:30}] {pos}/{len} chunks {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let s = get(conn, &format!("/v1/submissions/{id}"))?;
        bar.set_length(s["progress"]["chunks"].as_u64().unwrap_or(1));
        bar.set_position(s["progress"]["chunks_done"].as_u64().unwrap_or(0));
        match s["state"].as_str() {
            Some("queued" | "checking") => {}
            _ => {
                bar.finish_and_clear();
                return Ok(s);
            }
        }
        if t0.elapsed() > max {
            bar.abandon();
            bail!(
                "submission {id} was not checked within {} s; `tenken status {id}` shows its progress",
                max.as_secs()
            );
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

fn fetch_findings(conn: &Conn, id: i64) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    loop {
        let page = get(conn, &format!("/v1/submissions/{id}/findings?offset={}", out.len()))?;
        let list: Vec<Finding> = serde_json::from_value(page["findings"].clone())?;
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let empty = list.is_empty();
        out.extend(list);
        if out.len() >= total || empty {
            return Ok(out);
        }
    }
}

fn print_findings(conn: &Conn, status: &Value, file: &std::path::Path, format: crate::Format) -> Result<ExitCode> {
    let id = status["id"].as_i64().unwrap_or(0);
    if status["state"] != "checked" && status["state"] != "confirmed" {
        eprintln!("submission {id} is {}", status["state"]);
        return Ok(ExitCode::SUCCESS);
    }
    let findings = fetch_findings(conn, id)?;
    let report = tenken_check::Report {
        file: tenken_check::FileSummary {
            payer: status["payer"].as_str().unwrap_or("ssk").parse().map_err(anyhow::Error::msg)?,
            institution: status["institution"].as_str().map(str::to_owned),
            billing_month: status["billing_month"].as_str().map(str::to_owned),
            receipts: status["receipts"].as_u64().unwrap_or(0) as usize,
        },
        plugins: Vec::new(),
        findings,
        findings_dropped: status["findings_dropped"].as_u64().unwrap_or(0),
        timings: Default::default(),
    };
    match format {
        crate::Format::Json => println!("{}", serde_json::to_string_pretty(&crate::output::json_report(&report))?),
        crate::Format::Text => {
            crate::output::print_text(&report, file)?;
            // Which master and rules checked it (a swap may be in between two files).
            for w in status["checked_with"].as_array().into_iter().flatten() {
                println!(
                    "checked with release set {} and master version {} ({} receipt(s))",
                    w["release_set"], w["master_version"], w["receipts"]
                );
            }
        }
    }
    Ok(if report.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn status(args: IdArgs) -> Result<ExitCode> {
    let s = get(&args.conn, &format!("/v1/submissions/{}", args.id))?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(ExitCode::SUCCESS)
}

pub fn findings(args: IdArgs, format: crate::Format) -> Result<ExitCode> {
    let s = get(&args.conn, &format!("/v1/submissions/{}", args.id))?;
    let name = PathBuf::from(s["reception"].as_str().unwrap_or("submission"));
    print_findings(&args.conn, &s, &name, format)
}

pub fn confirm(args: IdArgs) -> Result<ExitCode> {
    let s = post(&args.conn, &format!("/v1/submissions/{}/confirm", args.id))?;
    eprintln!("submission {} confirmed (請求確定) at {}", args.id, s["confirmed_at"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

/// Follows a job the server answered 202 with (`GET /v1/payers/{payer}/jobs/{id}`) until
/// it finishes, showing its progress on `bar`; its result, or its error as the request
/// would have answered it.
pub fn follow_job(conn: &Conn, job: &Value, bar: &indicatif::ProgressBar) -> Result<Value> {
    let (payer, id) = (job["payer"].as_str().context("a job names its payer")?, job["id"].as_u64().context("job id")?);
    let path = format!("/v1/payers/{payer}/jobs/{id}");
    loop {
        let j = get(conn, &path)?;
        bar.set_length(j["total"].as_u64().unwrap_or(0).max(1));
        bar.set_position(j["done"].as_u64().unwrap_or(0));
        match j["state"].as_str() {
            Some("done") => return Ok(j["result"].clone()),
            Some("failed") => {
                let status = j["status"].as_u64().unwrap_or(500) as u16;
                let e = &j["error"];
                bail!(
                    "{status} {}: {} (job {id})",
                    e["code"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                );
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
