//! A real `tenken serve` process for tests: port 0 on 127.0.0.1, its own data directory,
//! configuration through `TENKEN_CFG__…` variables, SIGKILL and restart; plus a small HTTP
//! client. No mocks: the tests talk to the binary over TCP.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub starts: u32,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tenken")
}

impl Server {
    /// Starts a server with always-open windows and the shared artifact cache, plus `env`
    /// (`("ADMISSION__RETRY_AFTER_S", "1")` → `TENKEN_CFG__ADMISSION__RETRY_AFTER_S=1`).
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), env)
    }

    /// A node of a cluster on `database_url` named `name`: a data directory of its own
    /// (artifact cache, demo masters), the rows and blobs in PostgreSQL.
    pub fn node(database_url: &str, name: &str, env: &[(&str, &str)]) -> Server {
        let mut all: Vec<(&str, &str)> = vec![("STORE__URL", database_url), ("SCHEDULE__NODE_NAME", name)];
        all.extend_from_slice(env);
        Server::start(&all)
    }

    /// The database the server stores in, when it is PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == "STORE__URL").map(|(_, v)| v.as_str())
    }

    /// `start` on an existing data directory (e.g. one written by an older release).
    ///
    /// With `TENKEN_TEST_BACKEND=postgres` (`.ci/run` runs the server, lifecycle and master
    /// suites once more that way), a server not given a `STORE__URL` gets a fresh database
    /// of the test cluster: the same suites against the PostgreSQL backend.
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut all = vec![
            ("WINDOWS__MODE".to_string(), "always-open".to_string()),
            ("CACHE_DIR".to_string(), format!("{:?}", common::cache_dir().display().to_string())),
            ("SCHEDULE__LEASE_MS".to_string(), "3000".to_string()),
            // The project's demo masters (a server without masters refuses claims).
            ("DEMO_MASTERS".to_string(), "true".to_string()),
        ];
        if std::env::var("TENKEN_TEST_BACKEND").as_deref() == Ok("postgres")
            && !env.iter().any(|(k, _)| *k == "STORE__URL")
        {
            let url = fresh_database().expect("TENKEN_TEST_BACKEND=postgres needs TENKEN_TEST_DATABASE_URL");
            all.push(("STORE__URL".to_string(), url));
        }
        for (k, v) in env {
            all.retain(|(a, _)| a != k);
            all.push((k.to_string(), v.to_string()));
        }
        let mut s = Server { dir, url: String::new(), env: all, child: None, starts: 0 };
        s.spawn();
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("serve-{}.log", self.starts))
    }

    pub fn spawn(&mut self) {
        let addr_file = self.dir.path().join("serve.addr");
        let _ = std::fs::remove_file(&addr_file);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.path())
            .env("TENKEN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(format!("TENKEN_CFG__{k}"), v);
        }
        let mut child = cmd.spawn().expect("spawn tenken serve");
        let t0 = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file)
                && !a.trim().is_empty()
            {
                self.url = format!("http://{}", a.trim());
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("tenken serve exited with {status}:\n{}", self.log_tail());
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "server did not start:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit; returns whether it exited 0.
    pub fn terminate(&mut self, max: Duration) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if t0.elapsed() > max {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(self.log_path()).and_then(|mut f| f.read_to_string(&mut s));
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `tenken token create … --data-dir <dir>` (and `--database-url` on PostgreSQL) → the
    /// secret.
    pub fn token(&self, role: &[&str]) -> String {
        match self.database_url() {
            Some(url) => {
                let mut all = role.to_vec();
                all.extend(["--database-url", url]);
                token_in(self.dir.path(), &all)
            }
            None => token_in(self.dir.path(), role),
        }
    }

    /// SIGSTOP / SIGCONT: the process freezes (a long pause) and resumes.
    pub fn signal(&self, sig: &str) {
        let c = self.child.as_ref().expect("running");
        let ok = Command::new("kill").args([&format!("-{sig}"), &c.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -{sig}");
    }

    /// The whole log of the current run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn institution_token(&self, code: &str) -> String {
        self.token(&["--institution", code])
    }

    /// Polls until the submission is no longer queued/checking.
    pub fn wait_checked(&self, token: &str, id: i64, max: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let (status, s) = get(&self.url, token, &format!("/v1/submissions/{id}"));
            assert_eq!(status, 200, "{s}");
            if !matches!(s["state"].as_str(), Some("queued" | "checking")) {
                return s;
            }
            assert!(t0.elapsed() < max, "submission {id} not checked within {max:?}: {s}\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every finding of a checked submission (all pages).
    pub fn findings(&self, token: &str, id: i64) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let (status, page) =
                get(&self.url, token, &format!("/v1/submissions/{id}/findings?offset={}&limit=1000", out.len()));
            assert_eq!(status, 200, "{page}");
            let list = page["findings"].as_array().unwrap().clone();
            let done = list.is_empty() || out.len() + list.len() >= page["total"].as_u64().unwrap() as usize;
            out.extend(list);
            if done {
                return out;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// A response: status, JSON body (or the text as a JSON string), headers.
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: ureq::http::HeaderMap,
}

fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Resp, ureq::Error> {
    let mut r = r?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.body_mut().with_config().limit(1 << 30).read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Resp { status, body, headers })
}

/// A fresh database on the PostgreSQL test cluster (`TENKEN_TEST_DATABASE_URL`, started
/// by `scripts/pg-test-cluster.sh`): its URL; `None` without a cluster, unless
/// `TENKEN_REQUIRE_POSTGRES=1` (`.ci/run`), which makes that a failure.
pub fn fresh_database() -> Option<String> {
    let Ok(url) = std::env::var("TENKEN_TEST_DATABASE_URL") else {
        assert_ne!(
            std::env::var("TENKEN_REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "TENKEN_REQUIRE_POSTGRES=1 but TENKEN_TEST_DATABASE_URL is not set (scripts/pg-test-cluster.sh start)"
        );
        eprintln!("note: TENKEN_TEST_DATABASE_URL is not set; PostgreSQL test skipped");
        return None;
    };
    Some(create_database(&url))
}

/// Creates a database with a unique name on the cluster of `url`; returns its URL.
pub fn create_database(url: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("t_{}_{n}_{nanos}", std::process::id());
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("the test cluster answers");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Waits until `probe` returns Some (the event a test waits for: a state the server
/// reports), checking every 20 ms for at most `max`; panics naming `what` and the last
/// observation otherwise. Tests wait on what the server says, never on a fixed sleep.
pub fn wait_for<T>(what: &str, max: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let t0 = Instant::now();
    loop {
        let last = match probe() {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(t0.elapsed() < max, "{what}: not within {max:?}; last seen: {last}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A job-starting request's answer (validate, propose, convert-for) followed to the job's
/// end: the status the work answered and its result, or its error as `{"error": …}`. An
/// answer other than 202 (refused before a job started) is returned as it is.
pub fn job(url: &str, token: &str, (status, body): (u16, Value)) -> (u16, Value) {
    if status != 202 {
        return (status, body);
    }
    let path = format!("/v1/payers/{}/jobs/{}", body["payer"].as_str().unwrap(), body["id"]);
    let j = wait_for("the job finishes", Duration::from_secs(300), || {
        let (st, j) = get(url, token, &path);
        assert_eq!(st, 200, "{j}");
        if matches!(j["state"].as_str(), Some("done" | "failed")) { Ok(j) } else { Err(j.to_string()) }
    });
    assert!(j["done"].as_u64() <= j["total"].as_u64(), "progress within its total: {j}");
    let status = j["status"].as_u64().unwrap() as u16;
    match j["state"].as_str() {
        Some("done") => (status, j["result"].clone()),
        _ => (status, serde_json::json!({ "error": j["error"] })),
    }
}

pub fn token_in(dir: &std::path::Path, role: &[&str]) -> String {
    let out = Command::new(bin()).args(["token", "create"]).args(role).arg("--data-dir").arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// POSTs claim bytes; `Err` only for transport errors (connection refused, reset).
pub fn try_submit(url: &str, token: &str, path: &str, bytes: &[u8], key: Option<&str>) -> Result<Resp, ureq::Error> {
    let mut req = agent().post(format!("{url}{path}")).header("Authorization", format!("Bearer {token}"));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    finish(req.send(bytes))
}

pub fn submit(url: &str, token: &str, bytes: &[u8], key: Option<&str>) -> Resp {
    try_submit(url, token, "/v1/submissions", bytes, key).expect("server answers")
}

/// POST raw bytes (a master file, a plugin component) with a bearer token.
pub fn post_bytes(url: &str, token: &str, path: &str, bytes: &[u8]) -> (u16, Value) {
    let mut r =
        agent().post(format!("{url}{path}")).header("Authorization", format!("Bearer {token}")).send(bytes).unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn get(url: &str, token: &str, path: &str) -> (u16, Value) {
    let r = finish(agent().get(format!("{url}{path}")).header("Authorization", format!("Bearer {token}")).call())
        .expect("server answers");
    (r.status, r.body)
}

pub fn get_raw(url: &str, headers: &[(&str, &str)], path: &str) -> Resp {
    let mut req = agent().get(format!("{url}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    finish(req.call()).expect("server answers")
}

pub fn post(url: &str, token: &str, path: &str) -> (u16, Value) {
    let r =
        finish(agent().post(format!("{url}{path}")).header("Authorization", format!("Bearer {token}")).send_empty())
            .expect("server answers");
    (r.status, r.body)
}

pub fn send_json(url: &str, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let a = agent();
    let req = match method {
        "PUT" => a.put(format!("{url}{path}")),
        _ => a.post(format!("{url}{path}")),
    };
    let r = finish(req.header("Authorization", format!("Bearer {token}")).send_json(body)).expect("server answers");
    (r.status, r.body)
}

/// Asserts the error shape and code, returns the message.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) -> String {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(body["error"]["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    let msg = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.len() > 20, "an actionable message: {msg}");
    msg
}

/// The institution code in a claim file's IR record.
pub fn institution_of(bytes: &[u8]) -> String {
    tenken_claim::scan(bytes).header.expect("IR").institution_code
}
