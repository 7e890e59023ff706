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
    /// Data directory (SQLite, blobs, masters).
    #[arg(long, env = "TENKEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    pub fn load(&self) -> Result<Config> {
        let mut c = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
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
    /// `calendar` (5th–10th of the billing month, JST, staff may extend) or `always-open`
    /// (demos and development).
    #[arg(long)]
    windows: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut config = args.config.load()?;
    if let Some(l) = args.listen {
        config.listen = l;
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
    rt.block_on(tenken_server::run(config, |addr| {
        println!("tenken listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }))
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
                (Some(i), _, _) => tenken_server::api::parse_role("institution", Some(i), None).map_err(anyhow::Error::msg)?,
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
    /// Install SSK master files (s_/y_/t_/c_/b_/z_ CSV, full files) for a payer; validated
    /// before they replace the current ones. A running server picks them up at its next start.
    Import {
        #[arg(long)]
        payer: Payer,
        /// Master files, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn master(cmd: MasterCommand) -> Result<()> {
    let MasterCommand::Import { payer, files, config } = cmd;
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
    // Validate first: a master that does not load never replaces a working one.
    let set = tenken_master::MasterSet::from_files(&loaded).context("the master files do not load")?;
    anyhow::ensure!(!set.is_empty(), "no master rows in {} file(s)", loaded.len());
    let staging = dest.with_extension("importing");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for (name, bytes) in &loaded {
        std::fs::write(staging.join(name), bytes)?;
    }
    let old = dest.with_extension("previous");
    let _ = std::fs::remove_dir_all(&old);
    if dest.exists() {
        std::fs::rename(&dest, &old)?;
    }
    std::fs::rename(&staging, &dest)?;
    eprintln!(
        "installed {} master file(s) for {payer} in {} (digest {}); restart the server to use them",
        loaded.len(),
        dest.display(),
        set.digest()
    );
    Ok(())
}
