//! `tenken serve`, `tenken token …` and `tenken master import`: the commands that run or
//! administer a server's data directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tenken_model::Payer;
use tenken_server::Config;
use tenken_store::{Role, Store};

#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file (see docs/SERVER.md); `TENKEN_CFG__SECTION__KEY` env vars
    /// override it, and the flags below override both.
    #[arg(long, env = "TENKEN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite and blobs unless --database-url, masters, artifact cache).
    #[arg(long, env = "TENKEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL for a cluster of nodes (`postgresql://USER@HOST:PORT/DB`) instead of the
    /// embedded SQLite store; see docs/CLUSTER.md.
    #[arg(long, env = "TENKEN_DATABASE_URL")]
    database_url: Option<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> Result<Config> {
        let mut c = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            c.store.url = u.clone();
        } else if c.store.url.is_empty()
            && let Some(u) = tenken_server::recorded_database_url(&c.data_dir)
        {
            // A cluster node's data directory: its rows are in PostgreSQL, not here.
            eprintln!("note: {} is a cluster node's data directory; using its database", c.data_dir.display());
            c.store.url = u;
        }
        Ok(c)
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (port 0: any free port; the address is printed and written to
    /// <data-dir>/serve.addr).
    #[arg(long, env = "TENKEN_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// This node's name in the cluster view, decision records and logs (default
    /// `node-<pid>`).
    #[arg(long, env = "TENKEN_NODE_NAME")]
    node_name: Option<String>,
    /// `calendar` (5th–10th of the billing month, JST, staff may extend) or `always-open`
    /// (demos and development).
    #[arg(long)]
    windows: Option<String>,
    /// Install the project's demo masters (made-up tariffs) for a payer without masters:
    /// for trying tenken out. Without it, claims to a payer without masters are refused
    /// until `tenken master import` installs real ones.
    #[arg(long)]
    demo_masters: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut config = args.config.load()?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(n) = &args.node_name {
        config.schedule.node_name = n.clone();
    }
    if args.demo_masters {
        config.demo_masters = true;
    }
    if let Some(w) = &args.windows {
        config.windows.mode = match w.as_str() {
            "calendar" => tenken_server::config::WindowMode::Calendar,
            "always-open" => tenken_server::config::WindowMode::AlwaysOpen,
            other => anyhow::bail!("--windows {other:?}: expected calendar or always-open"),
        };
    }
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tenken-http").build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (is another server running there?)", config.listen))?;
        // Connections wait in the backlog until the registry is built and serving starts.
        println!("tenken starting on http://{}", listener.local_addr()?);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tenken_server::run(config, listener, tenken_server::shutdown_signal()).await
    })
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once (only a hash is stored).
    Create(TokenCreate),
    /// List tokens.
    List(ConfigArgs),
    /// Revoke a token by id.
    Revoke {
        id: i64,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(clap::Args)]
#[group(id = "role", required = true, multiple = false)]
pub struct TokenCreate {
    /// For an institution (7-digit 医療機関コード): it may submit and see its own files.
    #[arg(long, group = "role")]
    institution: Option<String>,
    /// For a payer's staff (ssk or kokuho): windows, notices, that payer's submissions.
    #[arg(long, group = "role")]
    staff: Option<Payer>,
    /// For an administrator: manages tokens.
    #[arg(long, group = "role")]
    admin: bool,
    #[arg(long, default_value = "")]
    label: String,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn token(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create(a) => {
            let role = match (&a.institution, a.staff, a.admin) {
                (Some(i), _, _) => {
                    tenken_server::access::parse_role("institution", Some(i), None).map_err(anyhow::Error::msg)?
                }
                (_, Some(p), _) => Role::Staff { payer: p },
                _ => Role::Admin,
            };
            let config = a.config.load()?;
            let store = tenken_server::open_store(&config)?;
            let (id, secret) = store.create_token(role, &a.label, tenken_server::work::now_ms())?;
            eprintln!("token {id} created; keep it secret, it is not shown again:");
            println!("{secret}");
        }
        TokenCommand::List(c) => {
            let store = tenken_server::open_store(&c.load()?)?;
            for t in store.list_tokens()? {
                let who = match &t.role {
                    Role::Institution { institution } => format!("institution {institution}"),
                    Role::Staff { payer } => format!("staff {payer}"),
                    Role::Admin => "admin".into(),
                };
                println!("{:>5}  {:24} {:8} {}", t.id, who, if t.revoked { "revoked" } else { "active" }, t.label);
            }
        }
        TokenCommand::Revoke { id, config } => {
            let store = tenken_server::open_store(&config.load()?)?;
            anyhow::ensure!(store.revoke_token(id)?, "no token {id}");
            eprintln!("token {id} revoked (servers stop accepting it within token_cache_ms)");
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum MasterCommand {
    /// Install SSK master files (s_/y_/t_/c_/b_/z_ CSV, full and 差分) for a payer as its
    /// active master version (validated first). A running server uses it after its next
    /// start; staff swap masters without a restart through the master API.
    Import {
        #[arg(long)]
        payer: Payer,
        /// On a store that has masters already: store the files as a *proposed* version
        /// (audited), which staff then re-check (`master act recheck ID`) and approve like
        /// any proposal — never active without approval. Needs --reason.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "")]
        reason: String,
        /// Master files, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Semantic diff of two master directories: added, changed (field by field), abolished,
    /// restored and removed codes per kind.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        json: bool,
        /// Entries printed per list and kind (new codes, 点数 changes, abolished, …).
        #[arg(long, default_value_t = 10)]
        show: usize,
        /// Print one list whole.
        #[arg(long, value_enum)]
        list: Option<crate::master_view::DiffList>,
    },
    /// Convert a master file to another payer's format, proven by a round trip (nothing is
    /// written when the proof fails; the differences are listed).
    Convert(ConvertArgs),
    /// Staff: the master versions of a payer on a server (table or --json).
    List {
        #[command(flatten)]
        conn: crate::client::Conn,
        #[arg(long)]
        payer: Payer,
        #[arg(long)]
        json: bool,
    },
    /// Staff: one master version — files, state, who proposed and approved it, warnings, and
    /// its report: the diff (codes with names, fields in words, totals), the impact check, the
    /// conversion proof. `--list added|points|abolished|…` prints one list whole.
    Show {
        #[command(flatten)]
        version: VersionArgs,
        /// Entries printed per list and kind.
        #[arg(long, default_value_t = 10)]
        show: usize,
        #[arg(long, value_enum)]
        list: Option<crate::master_view::DiffList>,
    },
    /// Staff: upload files and propose a new master version (full files, or 差分 onto --base).
    Propose {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: crate::client::Conn,
        #[arg(long)]
        payer: Payer,
        /// First 診療年月 (YYYY-MM).
        #[arg(long)]
        from: Option<String>,
        /// Apply the files as 差分 onto this version (apply-diff).
        #[arg(long)]
        base: Option<i64>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Staff: apply 差分 files onto a version, proposing the result (`propose --base`).
    ApplyDiff {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: crate::client::Conn,
        #[arg(long)]
        payer: Payer,
        /// The version the 差分 files apply to.
        #[arg(long)]
        base: i64,
        /// First 診療年月 (YYYY-MM).
        #[arg(long)]
        from: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Staff: approve a proposed version (not your own). A version whose impact check was
    /// flagged needs --accept-impact with a --reason (recorded in the audit log).
    Approve {
        #[command(flatten)]
        version: VersionArgs,
        /// Approve although the impact check flagged this version.
        #[arg(long)]
        accept_impact: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Staff: make an approved version live for its 診療年月, without a restart (`act activate`).
    /// While an acceptance window whose claims it affects is open, a --reason is required.
    Activate {
        #[command(flatten)]
        version: VersionArgs,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Staff: make an earlier version live again, or undo the active one (`act rollback`).
    Rollback {
        #[command(flatten)]
        version: VersionArgs,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Staff: approve, activate, roll back, withdraw, re-check, or convert a version for the
    /// other payer.
    Act {
        #[command(flatten)]
        conn: crate::client::Conn,
        #[arg(long)]
        payer: Payer,
        /// approve | activate | rollback | withdraw | recheck | convert-for-ssk | convert-for-kokuho
        action: String,
        id: i64,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Staff: download a version's file (e.g. a converted one) with its digest.
    Export {
        #[command(flatten)]
        conn: crate::client::Conn,
        #[arg(long)]
        payer: Payer,
        id: i64,
        name: String,
        out: PathBuf,
    },
    /// Impact check: re-check claim files under the old and the new master and report the
    /// findings delta per rule (exit 1 when it exceeds --threshold: an anomaly to look at).
    Impact {
        #[arg(long)]
        old: PathBuf,
        #[arg(long)]
        new: PathBuf,
        /// Claim files (the payer's regression corpus or a sample of submissions).
        #[arg(required = true)]
        claims: Vec<PathBuf>,
        /// Most changed findings before the new master is flagged.
        #[arg(long, default_value_t = 100)]
        threshold: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct VersionArgs {
    #[command(flatten)]
    conn: crate::client::Conn,
    #[arg(long)]
    payer: Payer,
    /// The master version id (`tenken master list`).
    id: i64,
    /// Print the API's JSON instead of the readable report.
    #[arg(long)]
    json: bool,
}

pub fn master(cmd: MasterCommand) -> Result<std::process::ExitCode> {
    let (payer, files, config, force, reason) = match cmd {
        MasterCommand::Import { payer, files, config, force, reason } => (payer, files, config, force, reason),
        MasterCommand::Diff { old, new, json, show, list } => return master_diff(&old, &new, json, show, list),
        MasterCommand::Convert(args) => return master_convert(args),
        MasterCommand::Impact { old, new, claims, threshold, json } => {
            return master_impact(&old, &new, &claims, threshold, json);
        }
        MasterCommand::List { conn, payer, json } => return master_list(&conn, payer, json),
        MasterCommand::Show { version: v, show, list } => {
            let out = http(&v.conn, "GET", &format!("/v1/payers/{}/masters/{}", v.payer, v.id), None, None)?;
            return print_version_or_json(&out, v.json, show, list);
        }
        MasterCommand::Propose { json, conn, payer, from, base, reason, files } => {
            return master_propose(&conn, payer, from, base, &reason, &files, json);
        }
        MasterCommand::ApplyDiff { json, conn, payer, base, from, reason, files } => {
            return master_propose(&conn, payer, from, Some(base), &reason, &files, json);
        }
        MasterCommand::Approve { version: v, accept_impact, reason } => {
            let body = serde_json::json!({ "accept_impact": accept_impact, "reason": reason });
            let path = format!("/v1/payers/{}/masters/{}/approve", v.payer, v.id);
            let out = http(&v.conn, "POST", &path, None, Some(body))?;
            return print_version_or_json(&out, v.json, 10, None);
        }
        MasterCommand::Activate { version: v, reason } => {
            return master_act(&v.conn, v.payer, "activate", v.id, &reason, v.json);
        }
        MasterCommand::Rollback { version: v, reason } => {
            return master_act(&v.conn, v.payer, "rollback", v.id, &reason, v.json);
        }
        MasterCommand::Act { conn, payer, action, id, reason, json } => {
            return master_act(&conn, payer, &action, id, &reason, json);
        }
        MasterCommand::Export { conn, payer, id, name, out } => return master_export(&conn, payer, id, &name, &out),
    };
    let config = config.load()?;
    let dest = tenken_server::masters_dir(&config, payer);
    let mut paths = Vec::new();
    for f in &files {
        if f.is_dir() {
            for e in std::fs::read_dir(f).with_context(|| format!("reading {}", f.display()))? {
                let p = e?.path();
                if p.is_file() {
                    paths.push(p);
                }
            }
        } else {
            paths.push(f.clone());
        }
    }
    let mut loaded = Vec::new();
    for p in &paths {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        loaded.push((name, std::fs::read(p).with_context(|| format!("reading {}", p.display()))?));
    }
    // Validate first (natively): a master that does not load never replaces a working one.
    let set = tenken_master::MasterSet::from_files(&loaded).context("the master files do not load")?;
    anyhow::ensure!(!set.is_empty(), "no master rows in {} file(s)", loaded.len());
    let staging = tempfile_dir(&config.data_dir)?;
    for (name, bytes) in &loaded {
        std::fs::write(staging.join(name), bytes)?;
    }
    // Then install through the converter plugins as the payer's active master version (the
    // operator's route; staff use the master API with approval).
    let store = tenken_server::open_store(&config)?;
    // Only the first master: a master made active here needs no approval, so on a store
    // that has masters already it would bypass the proposal, the impact check and the
    // joint check (issue 11, item 3: the May 2022 path).
    let existing = store.master_versions(payer)?;
    let forced = match existing.first() {
        None => false,
        Some(_) if force => {
            anyhow::ensure!(!reason.trim().is_empty(), "--force needs --reason (it goes into the audit log)");
            true
        }
        Some(newest) => anyhow::bail!(
            "{payer} already has {} master version(s) (newest: {}, {}); `tenken master import` installs only the first one. \
             Send a revision through the server so it is diffed, impact-checked and approved: \
             `tenken master propose --payer {payer} FILES` (or `master apply-diff` onto a version){}. \
             If the server cannot take it, `--force --reason …` stores the files as a proposal (audited) that staff still re-check and approve",
            existing.len(),
            newest.id,
            newest.state,
            if payer == Payer::Kokuho {
                "; masters 支払基金 publishes reach kokuho as a proven conversion (`tenken master act --payer ssk convert-for-kokuho ID`)"
            } else {
                ""
            }
        ),
    };
    let runtime = std::sync::Arc::new(tenken_runtime::Runtime::new(&config.limits, None)?);
    let mut converters = std::collections::HashMap::new();
    for name in ["ssk-csv", "kokuho-fixed"] {
        let c = tenken_runtime::Converter::load(
            &runtime,
            tenken_server::bundled_converter(name).context("bundled converter")?,
        )?;
        converters.insert(name.to_owned(), std::sync::Arc::new(c));
    }
    let dyn_store: std::sync::Arc<dyn Store> = store.clone();
    let loader = tenken_server::master_loader(dyn_store.clone(), std::sync::Arc::new(converters));
    let v = tenken_server::install_masters_dir(
        &*dyn_store,
        &staging,
        payer,
        &loader,
        0,
        &if forced {
            format!("tenken master import --force (operator): {}", reason.trim())
        } else {
            "tenken master import (operator)".into()
        },
        tenken_server::work::now_ms(),
        forced,
    )?;
    let _ = std::fs::remove_dir_all(&staging);
    let _ = dest;
    if forced {
        eprintln!(
            "{payer}: master version {} ({} file(s), digest {}) is PROPOSED, not active: staff re-check it (`tenken master act --payer {payer} recheck {}`), read its diff and impact, approve{} and activate it",
            v.id,
            loaded.len(),
            v.digest,
            v.id,
            if payer == Payer::Kokuho { " (kokuho and ssk staff)" } else { "" }
        );
    } else {
        // On a cluster the install is an audited store change like any other: running nodes
        // hear of it (NOTIFY) and put it in force; one SQLite server reads it at its start.
        let when = if store.backend() == "postgres" {
            "running nodes are notified and put it in force once they have loaded it"
        } else {
            "a running server uses it after its next start"
        };
        eprintln!("{payer}: master version {} ({} file(s), digest {}) is active; {when}", v.id, loaded.len(), v.digest);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn http(
    conn: &crate::client::Conn,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    json: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let a = crate::client::agent();
    let url = format!("{}{path}", conn.server);
    let auth = format!("Bearer {}", conn.token);
    let r = match (method, body, json) {
        ("GET", _, _) => a.get(&url).header("Authorization", &auth).call(),
        (_, Some(b), _) => a.post(&url).header("Authorization", &auth).send(b),
        (_, None, Some(j)) => a.post(&url).header("Authorization", &auth).send_json(j),
        _ => a.post(&url).header("Authorization", &auth).send_empty(),
    };
    let (status, body) = crate::client::call(r)?;
    anyhow::ensure!(status < 400, "{}", crate::client::error_text(status, &body));
    Ok(body)
}

fn master_list(conn: &crate::client::Conn, payer: Payer, json: bool) -> Result<std::process::ExitCode> {
    let v = http(conn, "GET", &format!("/v1/payers/{payer}/masters"), None, None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{:>4}  {:8} {:12} {:8} {:9} {:>9}  REASON", "ID", "FROM", "STATE", "PROVIDED", "APPROVALS", "DIGEST");
        for m in v.as_array().into_iter().flatten() {
            println!(
                "{:>4}  {:8} {:12} {:8} {:9} {:>9}  {}",
                m["id"],
                m["from_month"].as_str().unwrap_or(""),
                m["state"].as_str().unwrap_or(""),
                m["provided_by"].as_str().unwrap_or("-"),
                m["approvals"].as_array().map_or(0, |a| a.len()),
                &m["digest"].as_str().unwrap_or("")[..16.min(m["digest"].as_str().unwrap_or("").len())],
                m["reason"].as_str().unwrap_or("")
            );
        }
        let mut warned = std::collections::BTreeSet::new();
        for w in v.as_array().into_iter().flatten().flat_map(|m| m["warnings"].as_array().into_iter().flatten()) {
            if warned.insert(w.as_str().unwrap_or("").to_owned()) {
                println!("WARNING: {}", w.as_str().unwrap_or(""));
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn master_propose(
    conn: &crate::client::Conn,
    payer: Payer,
    from: Option<String>,
    base: Option<i64>,
    reason: &str,
    files: &[PathBuf],
    json: bool,
) -> Result<std::process::ExitCode> {
    let bar = indicatif::ProgressBar::new(files.len() as u64 + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:20}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut list = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).context("file name")?.to_owned();
        bar.set_message(format!("uploading {name}"));
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let b = http(conn, "POST", &format!("/v1/payers/{payer}/masters/files"), Some(&bytes), None)?;
        list.push(serde_json::json!({"name": name, "blob": b["blob"]}));
        bar.inc(1);
    }
    let job = http(
        conn,
        "POST",
        &format!("/v1/payers/{payer}/masters"),
        None,
        Some(serde_json::json!({"from": from, "base": base, "files": list, "reason": reason})),
    )?;
    bar.set_message("decoding, diffing and impact-checking on the server (files re-checked)");
    let v = crate::client::follow_job(conn, &job, &bar)?;
    bar.finish_and_clear();
    print_version_or_json(&v, json, 10, None)
}

/// A version answer: the readable report, or (`--json`) the API's JSON.
fn print_version_or_json(
    v: &serde_json::Value,
    json: bool,
    show: usize,
    list: Option<crate::master_view::DiffList>,
) -> Result<std::process::ExitCode> {
    if json || v.get("id").is_none() {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        crate::master_view::print_version(v, show, list)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn master_act(
    conn: &crate::client::Conn,
    payer: Payer,
    action: &str,
    id: i64,
    reason: &str,
    json: bool,
) -> Result<std::process::ExitCode> {
    let path = match action {
        "approve" | "activate" | "rollback" | "withdraw" | "recheck" => {
            format!("/v1/payers/{payer}/masters/{id}/{action}")
        }
        "convert-for-ssk" => format!("/v1/payers/{payer}/masters/{id}/convert-for/ssk"),
        "convert-for-kokuho" => format!("/v1/payers/{payer}/masters/{id}/convert-for/kokuho"),
        other => anyhow::bail!(
            "unknown action {other:?}: approve, activate, rollback, withdraw, convert-for-ssk or convert-for-kokuho"
        ),
    };
    let body = (!reason.is_empty()).then(|| serde_json::json!({ "reason": reason }));
    let mut v = http(conn, "POST", &path, None, body)?;
    if action.starts_with("convert-for") || action == "recheck" {
        // A conversion or a re-check is a job: follow it to its result (the version).
        let bar = indicatif::ProgressBar::new(1);
        bar.set_message(if action == "recheck" {
            "diffing and impact-checking on the server"
        } else {
            "converting and proving on the server"
        });
        v = crate::client::follow_job(conn, &v, &bar)?;
        bar.finish_and_clear();
    }
    print_version_or_json(&v, json, 10, None)
}

fn master_export(
    conn: &crate::client::Conn,
    payer: Payer,
    id: i64,
    name: &str,
    out: &std::path::Path,
) -> Result<std::process::ExitCode> {
    let mut r = crate::client::agent()
        .get(format!("{}/v1/payers/{payer}/masters/{id}/files/{name}", conn.server))
        .header("Authorization", format!("Bearer {}", conn.token))
        .call()?;
    anyhow::ensure!(r.status().as_u16() == 200, "the server answered {}", r.status());
    let digest = r.headers().get("x-tenken-digest").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = r.body_mut().with_config().limit(1 << 31).read_to_vec()?;
    anyhow::ensure!(
        tenken_store::digest(&bytes).to_string() == digest,
        "the download does not match its digest {digest}"
    );
    std::fs::write(out, &bytes)?;
    eprintln!("wrote {} ({} bytes, {digest})", out.display(), bytes.len());
    Ok(std::process::ExitCode::SUCCESS)
}

fn tempfile_dir(base: &std::path::Path) -> Result<PathBuf> {
    let d = base.join(format!("import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn load_master_dir(dir: &std::path::Path) -> Result<tenken_master::MasterSet> {
    tenken_master::MasterSet::load_dir(dir).with_context(|| format!("loading masters from {}", dir.display()))
}

/// `tenken master diff OLD NEW`: per kind, new codes, 点数 changes, abolished, restored and
/// removed codes with their names, and changed codes field by field (fields in words).
fn master_diff(
    old: &std::path::Path,
    new: &std::path::Path,
    json: bool,
    show: usize,
    list: Option<crate::master_view::DiffList>,
) -> Result<std::process::ExitCode> {
    let (a, b) = (load_master_dir(old)?, load_master_dir(new)?);
    let diff = tenken_lifecycle::diff_report(&a, &b, tenken_lifecycle::DiffLimits::ALL);
    if json {
        println!("{}", serde_json::to_string_pretty(&diff)?);
    } else {
        crate::master_view::print_diff(&diff, show, list);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn master_impact(
    old: &std::path::Path,
    new: &std::path::Path,
    claims: &[PathBuf],
    threshold: usize,
    json: bool,
) -> Result<std::process::ExitCode> {
    let limits = tenken_limits::Limits::default();
    let runtime = std::sync::Arc::new(tenken_runtime::Runtime::new(&limits, None)?);
    let checker = |dir: &std::path::Path| -> Result<tenken_check::Checker> {
        let engine = tenken_check::Engine::bundled(runtime.clone())?;
        Ok(tenken_check::Checker::new(engine, std::sync::Arc::new(load_master_dir(dir)?), limits.clone()))
    };
    let (a, b) = (checker(old)?, checker(new)?);
    // The server's impact check, on the files given (every changed receipt listed).
    let mut impact = tenken_lifecycle::Impact::new(tenken_lifecycle::ExampleLimits::ALL);
    for path in claims {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let fa = a.check_bytes(&bytes, None)?.findings;
        let fb = b.check_bytes(&bytes, None)?.findings;
        impact.add(path.file_name().and_then(|n| n.to_str()).unwrap_or("?"), &fa, &fb);
    }
    let report = impact.report(claims.len(), 0, 0, threshold);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{:40} {:>6} {:>9}  RECEIPTS", "RULE", "NEW", "VANISHED");
        for r in &report.rules {
            let mut shown: Vec<String> = r.receipts.iter().take(8).cloned().collect();
            if r.receipts.len() > 8 {
                shown.push(format!("… {} more", r.receipts.len() - 8));
            }
            println!("{:40} {:>6} {:>9}  {}", r.rule, r.new, r.vanished, shown.join(", "));
        }
        println!(
            "{} finding(s) changed over {} claim file(s); threshold {threshold}: {}",
            report.changed,
            claims.len(),
            if report.flagged { "FLAGGED — look before approving this master" } else { "within" }
        );
    }
    Ok(if report.flagged { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS })
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The master kind: s, y, t, c, b or z.
    #[arg(long)]
    kind: char,
    /// Source format: a bundled converter (`ssk-csv`, `kokuho-fixed`) or a .wasm path.
    #[arg(long, default_value = "ssk-csv")]
    from: String,
    /// Target format: a bundled converter or a .wasm path.
    #[arg(long, default_value = "kokuho-fixed")]
    to: String,
    input: PathBuf,
    output: PathBuf,
}

fn converter(runtime: &std::sync::Arc<tenken_runtime::Runtime>, name: &str) -> Result<tenken_runtime::Converter> {
    let bytes = match tenken_bundled_converter(name) {
        Some(b) => b.to_vec(),
        None => std::fs::read(name)
            .with_context(|| format!("{name:?} is neither a bundled converter nor a readable .wasm"))?,
    };
    tenken_runtime::Converter::load(runtime, &bytes).with_context(|| format!("loading converter {name}"))
}

fn tenken_bundled_converter(name: &str) -> Option<&'static [u8]> {
    tenken_server::bundled_converter(name)
}

/// `tenken master convert`: decode with one converter, encode with the other, and prove the
/// result by decoding it again and comparing every field with the source rows. Nothing is
/// written unless the proof passes.
fn master_convert(a: ConvertArgs) -> Result<std::process::ExitCode> {
    let kind = tenken_model::MasterKind::ALL
        .into_iter()
        .find(|k| k.letter() == a.kind)
        .with_context(|| format!("--kind {:?}: expected one of s y t c b z", a.kind))?;
    let runtime = std::sync::Arc::new(tenken_runtime::Runtime::new(&tenken_limits::Limits::default(), None)?);
    let (src, dst) = (converter(&runtime, &a.from)?, converter(&runtime, &a.to)?);
    let bar = indicatif::ProgressBar::new(2);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:20}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("decoding with {}", src.info.name));
    let input = std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let rows = src.decode(kind, &input)?;
    bar.inc(1);
    bar.set_message(format!("encoding {} rows with {} and proving the round trip", rows.len(), dst.info.name));
    let proof = tenken_lifecycle::round_trip_through(&dst, kind, &rows, 50)?;
    bar.inc(1);
    bar.finish_and_clear();
    let (report, out) = (&proof.diffs, &proof.encoded);
    if !report.is_empty() {
        eprintln!("conversion NOT proven: {} difference(s) (first {}):", report.len(), report.len().min(50));
        println!("{:14} {:14} {:30} {:30}", "CODE", "FIELD", "EXPECTED", "GOT");
        for d in report {
            println!("{:14} {:14} {:30} {:30}", d.code, d.field, d.expected, d.got);
        }
        return Ok(std::process::ExitCode::from(1));
    }
    std::fs::write(&a.output, out).with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "converted and proven: {} rows, {} → {}, sha256 {}",
        rows.len(),
        src.info.name,
        dst.info.name,
        tenken_store::digest(out)
    );
    Ok(std::process::ExitCode::SUCCESS)
}
