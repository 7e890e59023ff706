//! `tenken plugin …` (the staff side of the plugin lifecycle, over HTTP) and `tenken replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tenken_model::Payer;

use crate::client::{Conn, agent, call, error_text, get};

#[derive(clap::Args)]
pub struct PluginCmd {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    conn: Conn,
    /// The payer whose registry is used.
    #[arg(long, global = true, default_value = "ssk")]
    payer: Payer,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Upload a component (compiled and contract-checked by the server).
    Upload {
        file: PathBuf,
        /// ed25519 secret key file (64 hex chars) to sign the upload with.
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// List the payer's plugins.
    List,
    /// Show one plugin (what it declares, state, validation, approvals).
    Show { digest: String },
    /// Validate against the payer's regression corpus.
    Validate { digest: String },
    /// Approve (someone other than the uploader).
    Approve { digest: String },
    /// Activate a release set: these plugins, for 診療年月 from `--from`.
    Activate {
        #[arg(required = true)]
        digests: Vec<String>,
        /// First 診療年月 (YYYY-MM); default: from the beginning.
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Make an earlier release set active again.
    Rollback {
        release_set: i64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The payer's release sets.
    Releases,
    /// The payer's audit log.
    Audit,
    /// Register a public key (hex); from then on uploads must be signed.
    TrustKey { public_key: String },
    /// Make an ed25519 key pair: the secret key goes to FILE, the public key is printed.
    Keygen { out: PathBuf },
    /// Offline: what a component declares (name, version, rules, imports, exports) and
    /// whether it fits this host's contract version (exit 1 if not).
    Describe(crate::plugin_test::DescribeArgs),
    /// Offline: run a component over fixtures (NAME.uke + NAME.expected.json), print
    /// PASS/FAIL with a diff and the per-receipt cost; exit 1 on any failure.
    Test(crate::plugin_test::TestArgs),
}

fn send(conn: &Conn, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = format!("{}{path}", conn.server);
    let auth = format!("Bearer {}", conn.token);
    let a = agent();
    let r = match (method, body) {
        ("GET", _) => a.get(&url).header("Authorization", &auth).call(),
        (_, Some(b)) => a.post(&url).header("Authorization", &auth).send_json(b),
        (_, None) => a.post(&url).header("Authorization", &auth).send_empty(),
    };
    let (status, body) = call(r)?;
    if status >= 400 {
        bail!("{}", error_text(status, &body));
    }
    Ok(body)
}

/// A progress bar for a server job (hidden when stderr is not a terminal).
fn job_bar(what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:20}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what);
    bar
}

fn secret_key(path: &PathBuf) -> Result<ed25519_dalek::SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim()).context("the key file must hold 64 hex characters")?;
    let arr: [u8; 32] = bytes.as_slice().try_into().context("the key file must hold a 32-byte key")?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&arr))
}

fn table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, |r| r.len()))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn short(d: &Value) -> String {
    let d = s(d);
    d.strip_prefix("sha256:").map(|h| format!("sha256:{}", &h[..12.min(h.len())])).unwrap_or(d)
}

pub fn run(cmd: PluginCmd) -> Result<ExitCode> {
    // The offline commands first: no server, no token.
    let action = match cmd.action {
        Action::Describe(args) => return crate::plugin_test::describe(args, cmd.json),
        Action::Test(args) => return crate::plugin_test::test(args),
        other => other,
    };
    let p = cmd.payer;
    let c = &cmd.conn;
    let out = match action {
        Action::Keygen { out } => {
            let mut seed = [0u8; 32];
            seed.iter_mut().for_each(|b| *b = rand::random());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            std::fs::write(&out, hex::encode(seed)).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
            eprintln!(
                "secret key written to {}; register the public key above with `tenken plugin trust-key`",
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Action::Upload { file, sign_key } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let digest = tenken_store::digest(&bytes).to_string();
            let mut req = agent()
                .post(format!("{}/v1/payers/{p}/plugins", c.server))
                .header("Authorization", format!("Bearer {}", c.token));
            if let Some(k) = sign_key {
                use ed25519_dalek::Signer;
                let sig = secret_key(&k)?.sign(digest.as_bytes());
                req = req.header("X-Tenken-Signature", hex::encode(sig.to_bytes()));
            }
            let (status, body) = call(req.send(&bytes[..]))?;
            if status >= 400 {
                bail!("{}", error_text(status, &body));
            }
            body
        }
        Action::Describe(_) | Action::Test(_) => unreachable!("dispatched above"),
        Action::List => get(c, &format!("/v1/payers/{p}/plugins"))?,
        Action::Show { digest } => get(c, &format!("/v1/payers/{p}/plugins/{digest}"))?,
        Action::Validate { digest } => {
            let job = send(c, "POST", &format!("/v1/payers/{p}/plugins/{digest}/validate"), None)?;
            crate::client::follow_job(c, &job, &job_bar("validating on the server"))?
        }
        Action::Approve { digest } => send(c, "POST", &format!("/v1/payers/{p}/plugins/{digest}/approve"), None)?,
        Action::Activate { digests, from, reason } => send(
            c,
            "POST",
            &format!("/v1/payers/{p}/releases"),
            Some(json!({"from": from, "plugins": digests, "reason": reason})),
        )?,
        Action::Rollback { release_set, reason } => send(
            c,
            "POST",
            &format!("/v1/payers/{p}/releases/{release_set}/rollback"),
            Some(json!({"reason": reason})),
        )?,
        Action::Releases => get(c, &format!("/v1/payers/{p}/releases"))?,
        Action::Audit => get(c, &format!("/v1/payers/{p}/audit"))?,
        Action::TrustKey { public_key } => {
            send(c, "POST", &format!("/v1/payers/{p}/signing-keys"), Some(json!({"public_key": public_key})))?;
            json!({"trusted": public_key})
        }
    };
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &out {
        Value::Array(list) if list.first().is_some_and(|v| v.get("approvals").is_some()) => {
            let mut rows =
                vec![vec!["DIGEST".into(), "NAME".into(), "VERSION".into(), "STATE".into(), "APPROVALS".into()]];
            for v in list {
                let n = v["approvals"].as_array().map_or(0, |a| a.len());
                rows.push(vec![short(&v["digest"]), s(&v["name"]), s(&v["version"]), s(&v["state"]), n.to_string()]);
            }
            table(&rows);
        }
        Value::Array(list) if list.first().is_some_and(|v| v.get("from_month").is_some()) => {
            let mut rows = vec![vec!["ID".into(), "FROM".into(), "STATE".into(), "PLUGINS".into(), "REASON".into()]];
            for v in list {
                let n = v["plugins"].as_array().map_or(0, |a| a.len());
                rows.push(vec![s(&v["id"]), s(&v["from_month"]), s(&v["state"]), n.to_string(), s(&v["reason"])]);
            }
            table(&rows);
        }
        Value::Array(list) if list.first().is_some_and(|v| v.get("action").is_some()) => {
            let mut rows = vec![vec![
                "ID".into(),
                "AT(ms)".into(),
                "ACTOR".into(),
                "ACTION".into(),
                "DIGEST".into(),
                "SET".into(),
                "REASON".into(),
            ]];
            for v in list {
                rows.push(vec![
                    s(&v["id"]),
                    s(&v["at_ms"]),
                    s(&v["actor"]),
                    s(&v["action"]),
                    short(&v["digest"]),
                    s(&v["release_set"]),
                    s(&v["reason"]),
                ]);
            }
            table(&rows);
        }
        Value::Object(o) if o.contains_key("gates") => {
            for g in o["gates"].as_array().into_iter().flatten() {
                println!(
                    "{} {:20} {}",
                    if g["passed"] == true { "PASS" } else { "FAIL" },
                    s(&g["name"]),
                    s(&g["detail"])
                );
            }
            for (rule, d) in o["by_rule"].as_object().into_iter().flatten() {
                println!("  {rule:40} +{} -{}", d["new"], d["vanished"]);
                for e in d["examples"].as_array().into_iter().flatten() {
                    println!("      {}", s(e));
                }
            }
            println!("{}", if o["passed"] == true { "validation passed" } else { "validation FAILED" });
            if o["passed"] != true {
                return Ok(ExitCode::from(1));
            }
        }
        other => println!("{}", serde_json::to_string_pretty(other)?),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Submission id.
    id: i64,
    #[command(flatten)]
    config: crate::server_cmd::ConfigArgs,
}

pub fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let config = args.config.load()?;
    let out = tenken_server::replay::replay(&config, args.id)?;
    if out.mismatches.is_empty() {
        println!("submission {}: {} chunk(s), {} finding(s) reproduced exactly", args.id, out.chunks, out.findings);
        Ok(ExitCode::SUCCESS)
    } else {
        for (chunk, what) in &out.mismatches {
            println!("chunk {chunk}: {what}");
        }
        println!("submission {}: {} of {} chunk(s) differ", args.id, out.mismatches.len(), out.chunks);
        Ok(ExitCode::from(1))
    }
}
