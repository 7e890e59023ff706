//! [`Store`] on SQLite (WAL, `synchronous=FULL`) with group commit, plus blob files.
//!
//! Why group commit: `synchronous=FULL` makes every commit an fsync of the WAL. One writer
//! thread takes every write waiting in its queue, runs each in its own savepoint inside one
//! transaction, commits once, and only then answers each caller: many acknowledgements per
//! fsync, and nothing is acknowledged before it is durable. Reads use a small pool of
//! connections (WAL readers never block the writer).

mod blobs;

pub use blobs::FileBlobs;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use rusqlite::{Connection, OptionalExtension, Row, params};
use tenken_model::{Digest, Finding, Payer, YearMonth};
use tenken_store::*;

/// How "from the beginning" is stored: the column predates `Option` and sorts first.
const FROM_THE_BEGINNING: &str = "0000-01";

fn month_to_sql(m: Option<YearMonth>) -> String {
    m.map_or_else(|| FROM_THE_BEGINNING.to_owned(), |m| m.to_string())
}

fn month_from_sql(s: &str) -> Result<Option<YearMonth>, StoreError> {
    if s == FROM_THE_BEGINNING {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| StoreError::Corrupt(format!("stored month: {e}")))
}

/// How "no 請求年月" is stored (the column is NOT NULL and indexed).
fn billing_to_sql(m: Option<YearMonth>) -> String {
    m.map(|m| m.to_string()).unwrap_or_default()
}

fn billing_from_sql(s: &str) -> Result<Option<YearMonth>, StoreError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| StoreError::Corrupt(format!("stored billing month: {e}")))
}

fn digest_from_sql(s: &str) -> Result<Digest, StoreError> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("stored digest: {e}")))
}

/// A document as its column's JSON. The store's documents have string keys only, so
/// serializing cannot fail.
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store documents serialize to JSON")
}

/// A text column parsed strictly (`FromStr`) inside a row mapper; a bad value is a
/// conversion error naming the column.
fn col<T: std::str::FromStr>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(i)?
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// A JSON document column parsed strictly inside a row mapper.
fn json_col<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    serde_json::from_str(&r.get::<_, String>(i)?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// rusqlite's error as the store's backend-neutral one (the orphan rule forbids a `From`).
fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Injected failures, for tests of what a failed group commit leaves behind: each counts
/// down the number of upcoming group commits that fail at that step.
#[derive(Debug, Default)]
pub struct Faults {
    /// Group commits whose blob sync fails.
    pub fail_blob_sync: AtomicU32,
    /// Group commits whose `BEGIN` fails.
    pub fail_begin: AtomicU32,
}

impl Faults {
    fn take(counter: &AtomicU32) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// Tuning of the SQLite store, each bounded.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Writes waiting for the writer thread; beyond it a write is refused at once with
    /// [`StoreError::Busy`] (the server answers 503 + Retry-After), never a wait.
    pub write_queue_max: usize,
    /// Writes committed together in one transaction (one fsync).
    pub group_commit_max: usize,
    /// Read connections kept open.
    pub read_connections_max: usize,
    /// Failure injection (tests only; empty by default).
    pub faults: std::sync::Arc<Faults>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            write_queue_max: 4096,
            group_commit_max: 512,
            read_connections_max: 64,
            faults: Default::default(),
        }
    }
}

/// What the writer does with a queued write once it knows whether it can run.
type Finisher = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A queued write. `run` executes it inside a savepoint and returns whether it succeeded
/// and what to tell its caller once the transaction's fate is known; `abort` tells the
/// caller it never ran (the group could not begin). Why two: a write must never run outside
/// the group's transaction — run in autocommit, a row would become durable while its
/// caller is told it failed.
trait Op: Send {
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finisher);
    fn abort(self: Box<Self>, why: String);
}

struct OpImpl<F, R> {
    f: F,
    reply: R,
}

impl<T, F, R> Op for OpImpl<F, R>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    R: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finisher) {
        let OpImpl { f, reply } = *self;
        let result = f(conn);
        let ok = result.is_ok();
        let fin: Finisher = Box::new(move |committed| {
            reply(match committed {
                Ok(()) => result,
                Err(e) if ok => Err(StoreError::Backend(format!("commit failed: {e}"))),
                Err(_) => result,
            });
        });
        (ok, fin)
    }

    fn abort(self: Box<Self>, why: String) {
        (self.reply)(Err(StoreError::Backend(why)));
    }
}

/// What a write needs of its group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// Durable at commit (the WAL is fsynced).
    Durable,
    /// Durable, and refers to blobs written with `put_unsynced`: the group syncs the blob
    /// file system before it commits.
    DurableWithBlobs,
    /// Losing it in a crash is harmless (a chunk claim: it is claimed again). A group of
    /// only such writes commits without an fsync (`synchronous=NORMAL`); the next durable
    /// commit makes it durable too.
    Volatile,
}

struct WriteOp {
    op: Box<dyn Op>,
    kind: WriteKind,
}

pub struct SqliteStore {
    path: PathBuf,
    blobs: std::sync::Arc<FileBlobs>,
    writer: Mutex<Option<SyncSender<WriteOp>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Idle read connections and how many exist; at most `read_connections_max` exist, and
    /// a reader waits for one rather than opening and closing connections under load
    /// (measured: the open/close churn cost ≈25 % of acceptance CPU).
    readers: Mutex<(Vec<Connection>, usize)>,
    reader_freed: std::sync::Condvar,
    options: StoreOptions,
}

/// One schema step: SQL, or Rust for a change of stored documents SQL cannot express.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Connection) -> Result<(), StoreError>),
}

const MIGRATIONS: &[Migration] = &[
    // 1: the first schema.
    Migration::Sql(
        r#"
    CREATE TABLE submissions(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        reception TEXT NOT NULL DEFAULT '',
        payer TEXT NOT NULL, institution TEXT NOT NULL, billing_month TEXT NOT NULL,
        digest TEXT NOT NULL, bytes INTEGER NOT NULL, receipts INTEGER NOT NULL,
        state TEXT NOT NULL, chunks INTEGER NOT NULL, chunk_receipts INTEGER NOT NULL,
        chunks_done INTEGER NOT NULL DEFAULT 0,
        n_error INTEGER NOT NULL DEFAULT 0, n_warning INTEGER NOT NULL DEFAULT 0, n_info INTEGER NOT NULL DEFAULT 0,
        findings_dropped INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT, token_id INTEGER NOT NULL,
        accepted_ms INTEGER NOT NULL, checked_ms INTEGER, confirmed_ms INTEGER,
        supersedes INTEGER, superseded_by INTEGER);
    CREATE UNIQUE INDEX submissions_idem ON submissions(token_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX submissions_month ON submissions(payer, institution, billing_month);
    CREATE INDEX submissions_pending ON submissions(state) WHERE state IN ('queued', 'checking');
    CREATE TABLE chunk_results(
        submission INTEGER NOT NULL, idx INTEGER NOT NULL, owner INTEGER NOT NULL,
        findings TEXT NOT NULL, n_error INTEGER NOT NULL, n_warning INTEGER NOT NULL, n_info INTEGER NOT NULL,
        done_ms INTEGER NOT NULL,
        PRIMARY KEY(submission, idx)) WITHOUT ROWID;
    CREATE TABLE final_findings(submission INTEGER PRIMARY KEY, findings TEXT NOT NULL);
    CREATE TABLE withdrawn_receipts(submission INTEGER NOT NULL, receipt INTEGER NOT NULL,
        PRIMARY KEY(submission, receipt)) WITHOUT ROWID;
    CREATE TABLE nodes(owner INTEGER PRIMARY KEY AUTOINCREMENT, started_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
    CREATE TABLE tokens(id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        institution TEXT, payer TEXT, label TEXT NOT NULL, created_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE windows(payer TEXT NOT NULL, billing_month TEXT NOT NULL, opens_ms INTEGER NOT NULL,
        closes_ms INTEGER NOT NULL, updated_by INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        PRIMARY KEY(payer, billing_month));
    CREATE TABLE notices(id INTEGER PRIMARY KEY AUTOINCREMENT, payer TEXT, message TEXT NOT NULL,
        created_ms INTEGER NOT NULL, created_by INTEGER NOT NULL);
    "#,
    ),
    // 2: plugin registry, release sets, audit log, regression corpus, decision records.
    Migration::Sql(
        r#"
    CREATE TABLE plugins(payer TEXT NOT NULL, digest TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
        contract TEXT NOT NULL, info_json TEXT NOT NULL, bytes INTEGER NOT NULL, uploaded_by INTEGER NOT NULL,
        uploaded_ms INTEGER NOT NULL, signed_by TEXT, state TEXT NOT NULL, validation TEXT,
        PRIMARY KEY(payer, digest)) WITHOUT ROWID;
    CREATE TABLE plugin_approvals(payer TEXT NOT NULL, digest TEXT NOT NULL, approver INTEGER NOT NULL,
        at_ms INTEGER NOT NULL, PRIMARY KEY(payer, digest, approver)) WITHOUT ROWID;
    CREATE TABLE signing_keys(payer TEXT NOT NULL, key_hex TEXT NOT NULL, added_by INTEGER NOT NULL,
        added_ms INTEGER NOT NULL, PRIMARY KEY(payer, key_hex)) WITHOUT ROWID;
    CREATE TABLE release_sets(id INTEGER PRIMARY KEY AUTOINCREMENT, payer TEXT NOT NULL, from_month TEXT NOT NULL,
        plugins TEXT NOT NULL, state TEXT NOT NULL, created_by INTEGER NOT NULL, created_ms INTEGER NOT NULL,
        reason TEXT NOT NULL);
    CREATE INDEX release_sets_active ON release_sets(payer, state);
    CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, payer TEXT NOT NULL, actor INTEGER NOT NULL,
        at_ms INTEGER NOT NULL, action TEXT NOT NULL, digest TEXT, release_set INTEGER, reason TEXT NOT NULL);
    CREATE TRIGGER audit_append_only_u BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_append_only_d BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TABLE regression(id INTEGER PRIMARY KEY AUTOINCREMENT, payer TEXT NOT NULL, name TEXT NOT NULL,
        digest TEXT NOT NULL, expected TEXT NOT NULL, added_by INTEGER NOT NULL, added_ms INTEGER NOT NULL);
    ALTER TABLE chunk_results ADD COLUMN decision TEXT NOT NULL DEFAULT '';
    "#,
    ),
    // 3: master versions.
    Migration::Sql(
        r#"
    CREATE TABLE master_versions(id INTEGER PRIMARY KEY AUTOINCREMENT, payer TEXT NOT NULL, from_month TEXT NOT NULL,
        digest TEXT NOT NULL, sources TEXT NOT NULL, state TEXT NOT NULL, provided_by TEXT, report TEXT NOT NULL,
        created_by INTEGER NOT NULL, created_ms INTEGER NOT NULL, reason TEXT NOT NULL);
    CREATE TABLE master_approvals(version INTEGER NOT NULL, approver INTEGER NOT NULL, approver_payer TEXT NOT NULL,
        at_ms INTEGER NOT NULL, PRIMARY KEY(version, approver)) WITHOUT ROWID;
    "#,
    ),
    // 4: claimed work (chunks as rows, fair order, fencing), node names, notice audience.
    Migration::Sql(
        r#"
    CREATE TABLE chunks(submission INTEGER NOT NULL, idx INTEGER NOT NULL, payer TEXT NOT NULL,
        institution TEXT NOT NULL, cost INTEGER NOT NULL, node INTEGER, fence INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(submission, idx)) WITHOUT ROWID;
    CREATE INDEX chunks_ready ON chunks(payer, institution, submission, idx) WHERE node IS NULL;
    CREATE INDEX chunks_claimed ON chunks(node) WHERE node IS NOT NULL;
    CREATE TABLE tenants(payer TEXT NOT NULL, institution TEXT NOT NULL, served INTEGER NOT NULL DEFAULT 0,
        ready INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(payer, institution)) WITHOUT ROWID;
    CREATE INDEX tenants_ready ON tenants(payer, served, institution) WHERE ready > 0;
    CREATE TABLE payer_clock(payer TEXT PRIMARY KEY, vclock INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE fence_seq(id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
    INSERT INTO fence_seq VALUES (1, 0);
    ALTER TABLE nodes ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE notices ADD COLUMN audience TEXT NOT NULL DEFAULT 'institutions';
    UPDATE notices SET audience = 'staff' WHERE message LIKE '[staff]%';
    WITH RECURSIVE seq(s, i) AS (
        SELECT id, 0 FROM submissions WHERE state IN ('queued', 'checking')
        UNION ALL SELECT seq.s, seq.i + 1 FROM seq JOIN submissions ON submissions.id = seq.s
        WHERE seq.i + 1 < submissions.chunks)
    INSERT INTO chunks(submission, idx, payer, institution, cost)
        SELECT seq.s, seq.i, sub.payer, sub.institution,
            CASE WHEN seq.i = 0 THEN 1 ELSE MAX(1, MIN(sub.receipts, CASE WHEN seq.i + 1 >= sub.chunks
                THEN sub.receipts ELSE seq.i * sub.chunk_receipts END) - (seq.i - 1) * sub.chunk_receipts) END
        FROM seq JOIN submissions sub ON sub.id = seq.s
        WHERE NOT EXISTS (SELECT 1 FROM chunk_results r WHERE r.submission = seq.s AND r.idx = seq.i);
    INSERT INTO tenants(payer, institution, ready) SELECT payer, institution, COUNT(*) FROM chunks GROUP BY payer, institution;
    "#,
    ),
    // 5: months in one spelling. Earlier releases stored `from` as typed, so `2024-6` and
    // `2024-06` were different months to supersede; normalize, then keep only the newest
    // active set/version per (payer, month).
    Migration::Sql(
        r#"
    UPDATE release_sets SET from_month = printf('%04d-%02d',
        CAST(substr(from_month, 1, instr(from_month, '-') - 1) AS INTEGER),
        CAST(substr(from_month, instr(from_month, '-') + 1) AS INTEGER))
        WHERE from_month != '0000-01' AND instr(from_month, '-') > 0;
    UPDATE master_versions SET from_month = printf('%04d-%02d',
        CAST(substr(from_month, 1, instr(from_month, '-') - 1) AS INTEGER),
        CAST(substr(from_month, instr(from_month, '-') + 1) AS INTEGER))
        WHERE from_month != '0000-01' AND instr(from_month, '-') > 0;
    UPDATE release_sets SET state = 'superseded' WHERE state = 'active' AND EXISTS (
        SELECT 1 FROM release_sets n WHERE n.payer = release_sets.payer AND n.from_month = release_sets.from_month
        AND n.state = 'active' AND n.id > release_sets.id);
    UPDATE master_versions SET state = 'superseded' WHERE state = 'active' AND EXISTS (
        SELECT 1 FROM master_versions n WHERE n.payer = master_versions.payer AND n.from_month = master_versions.from_month
        AND n.state = 'active' AND n.id > master_versions.id);
    "#,
    ),
    // 6: one digest spelling (`sha256:<hex>`; blobs, submissions and the regression corpus
    // stored bare hex) and plugin descriptions that say their kind.
    Migration::Sql(
        r#"
    UPDATE submissions SET digest = 'sha256:' || digest WHERE digest NOT LIKE 'sha256:%';
    UPDATE regression SET digest = 'sha256:' || digest WHERE digest NOT LIKE 'sha256:%';
    "#,
    ),
    Migration::Rust(typed_documents),
    // 8: check pins (what a file is checked with, taken when its checking starts).
    Migration::Sql(
        r#"
    CREATE TABLE IF NOT EXISTS check_pins(submission INTEGER PRIMARY KEY, pin TEXT NOT NULL);
    "#,
    ),
    // 9: node heartbeats with what the node reports (the cluster view).
    Migration::Rust(node_heartbeats),
];

/// Migration 9: `nodes.heartbeat_ms` and `nodes.stats`, added only where missing (SQLite has
/// no `ADD COLUMN IF NOT EXISTS`; a store whose version was set back runs this again).
fn node_heartbeats(conn: &Connection) -> Result<(), StoreError> {
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('nodes')")
        .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
        .map_err(db)?;
    if !cols.iter().any(|c| c == "heartbeat_ms") {
        conn.execute_batch("ALTER TABLE nodes ADD COLUMN heartbeat_ms INTEGER NOT NULL DEFAULT 0").map_err(db)?;
    }
    if !cols.iter().any(|c| c == "stats") {
        conn.execute_batch("ALTER TABLE nodes ADD COLUMN stats TEXT NOT NULL DEFAULT '{}'").map_err(db)?;
    }
    Ok(())
}

/// Migration 7: master sources and conversion proofs name blobs as `sha256:<hex>`; a plugin
/// description without a `kind` is a checker's (converters always wrote theirs).
fn typed_documents(conn: &Connection) -> Result<(), StoreError> {
    fn prefixed(v: &mut serde_json::Value, field: &str) {
        if let Some(serde_json::Value::String(s)) = v.get_mut(field)
            && !s.starts_with(Digest::PREFIX)
        {
            *s = format!("{}{s}", Digest::PREFIX);
        }
    }
    let parse = |s: &str, what: &str| -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
    };
    let rows: Vec<(i64, String, String)> = conn
        .prepare("SELECT id, sources, report FROM master_versions")
        .and_then(|mut q| q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db)?;
    for (id, sources, report) in rows {
        let mut sources = parse(&sources, &format!("master version {id} sources"))?;
        for src in sources.as_array_mut().into_iter().flatten() {
            prefixed(src, "blob");
        }
        let mut report = if report.trim().is_empty() { serde_json::json!({}) } else { parse(&report, "report")? };
        for p in report.get_mut("proof").and_then(|p| p.as_array_mut()).into_iter().flatten() {
            prefixed(p, "blob");
            prefixed(p, "source_blob");
        }
        conn.execute(
            "UPDATE master_versions SET sources = ?2, report = ?3 WHERE id = ?1",
            params![id, sources.to_string(), report.to_string()],
        )
        .map_err(db)?;
    }
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT payer, digest, info_json FROM plugins")
        .and_then(|mut q| q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(db)?;
    for (payer, digest, info) in rows {
        let mut info = parse(&info, &format!("plugin {digest}"))?;
        if let Some(o) = info.as_object_mut() {
            o.entry("kind").or_insert_with(|| "checker".into());
            // Name, version and contract have columns of their own.
            for dup in ["name", "version", "contract"] {
                o.remove(dup);
            }
        }
        conn.execute(
            "UPDATE plugins SET info_json = ?3 WHERE payer = ?1 AND digest = ?2",
            params![payer, digest, info.to_string()],
        )
        .map_err(db)?;
    }
    Ok(())
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
    // Switching a new database to WAL can answer SQLITE_BUSY at once, without calling the
    // busy handler, while another process opens it too (`serve` + `token create` on a new
    // data directory): retried, for as long as the busy timeout would have waited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => break other.map_err(db)?,
        }
    }
    // FULL: the WAL is fsynced at every commit, so a commit that returned survives power loss.
    conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    Ok(conn)
}

/// Runs the migrations not applied yet. Each step reads the schema version inside its own
/// IMMEDIATE transaction: two processes opening a new data directory at once (`tenken serve`
/// and `tenken token create`) take turns, and the second finds the step done instead of
/// running it again ("table submissions already exists").
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)?;
        let Some(step) = MIGRATIONS.get(version as usize) else { return Ok(()) };
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql).map_err(db)?,
            Migration::Rust(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", version + 1).map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = version + 1, "store schema migrated");
    }
}

impl SqliteStore {
    /// Opens (creating, migrating) the store in `dir`: `tenken.db` and `blobs/`.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("tenken.db");
        let mut conn = open_conn(&path)?;
        migrate(&mut conn)?;
        let blobs = std::sync::Arc::new(FileBlobs::open(&dir.join("blobs"))?);
        let (tx, rx) = sync_channel::<WriteOp>(options.write_queue_max.max(1));
        let group = options.group_commit_max.max(1);
        let writer_blobs = blobs.clone();
        let faults = options.faults.clone();
        let handle = std::thread::Builder::new()
            .name("tenken-store-writer".into())
            .spawn(move || writer_loop(conn, rx, group, &writer_blobs, &faults))?;
        Ok(SqliteStore {
            path,
            blobs,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Mutex::new((Vec::new(), 0)),
            reader_freed: std::sync::Condvar::new(),
            options,
        })
    }

    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_op(WriteKind::Durable, f)
    }

    fn write_op<T: Send + 'static>(
        &self,
        kind: WriteKind,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply_tx, reply_rx) = sync_channel::<Result<T, StoreError>>(1);
        self.queue_op(kind, f, move |r| {
            let _ = reply_tx.send(r);
        })?;
        reply_rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Like `write_op` for an acceptance: answers through a [`PendingAccept`] that an async
    /// task can await without holding a thread.
    fn write_accept(
        &self,
        f: impl FnOnce(&Connection) -> Result<Accepted, StoreError> + Send + 'static,
    ) -> Result<PendingAccept, StoreError> {
        let (done, pending) = PendingAccept::channel();
        self.queue_op(WriteKind::DurableWithBlobs, f, move |r| done.complete(r))?;
        Ok(pending)
    }

    /// Queues `f` for the writer thread; `reply` gets its result once the group's commit
    /// has decided it (an `Ok` only after the commit is durable). A full queue is refused at
    /// once with `Busy`.
    fn queue_op<T: Send + 'static>(
        &self,
        kind: WriteKind,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        reply: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let op = WriteOp { op: Box::new(OpImpl { f, reply }), kind };
        let sender = self.writer.lock().unwrap().clone().ok_or(StoreError::Closed)?;
        sender.try_send(op).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy { what: "the store's write queue" },
            TrySendError::Disconnected(_) => StoreError::Closed,
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let max = self.options.read_connections_max.max(1);
        let conn = {
            let mut pool = self.readers.lock().unwrap();
            loop {
                if let Some(c) = pool.0.pop() {
                    break Some(c);
                }
                if pool.1 < max {
                    pool.1 += 1;
                    break None;
                }
                pool = self.reader_freed.wait(pool).unwrap();
            }
        };
        let conn = match conn {
            Some(c) => c,
            None => match open_conn(&self.path) {
                Ok(c) => c,
                Err(e) => {
                    self.readers.lock().unwrap().1 -= 1;
                    self.reader_freed.notify_one();
                    return Err(e);
                }
            },
        };
        let result = f(&conn);
        self.readers.lock().unwrap().0.push(conn);
        self.reader_freed.notify_one();
        result
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        Store::close(self);
    }
}

fn writer_loop(conn: Connection, rx: Receiver<WriteOp>, group_max: usize, blobs: &FileBlobs, faults: &Faults) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < group_max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut finishers = Vec::with_capacity(batch.len());
        // Blobs first: a row that names a blob commits only after the blob is durable.
        let sync = if batch.iter().any(|w| w.kind == WriteKind::DurableWithBlobs) {
            if Faults::take(&faults.fail_blob_sync) {
                Err("syncing blob files failed: injected fault".to_owned())
            } else {
                blobs.sync().map_err(|e| format!("syncing blob files failed: {e}"))
            }
        } else {
            Ok(())
        };
        let volatile = batch.iter().all(|w| w.kind == WriteKind::Volatile);
        if volatile {
            let _ = conn.pragma_update(None, "synchronous", "NORMAL");
        }
        let begin = sync.and_then(|()| {
            if Faults::take(&faults.fail_begin) {
                return Err("BEGIN failed: injected fault".to_owned());
            }
            conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string())
        });
        if let Err(e) = begin {
            if volatile {
                let _ = conn.pragma_update(None, "synchronous", "FULL");
            }
            // Cannot write at all: no write runs (outside a transaction it would autocommit
            // behind its caller's back); every caller gets the error.
            tracing::error!(writes = batch.len(), error = %e, "group commit could not begin");
            for w in batch {
                w.op.abort(e.clone());
            }
            continue;
        }
        for w in batch {
            let _ = conn.execute_batch("SAVEPOINT op");
            let (ok, fin) = w.op.run(&conn);
            let _ =
                if ok { conn.execute_batch("RELEASE op") } else { conn.execute_batch("ROLLBACK TO op; RELEASE op") };
            finishers.push(fin);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        if volatile {
            let _ = conn.pragma_update(None, "synchronous", "FULL");
        }
        tracing::trace!(writes = finishers.len(), volatile, "group commit");
        for fin in finishers {
            fin(committed.clone());
        }
    }
}

const SUBMISSION_COLS: &str = "id, reception, payer, institution, billing_month, digest, bytes, receipts, state, chunks, \
    chunk_receipts, chunks_done, n_error, n_warning, n_info, findings_dropped, idempotency_key, token_id, accepted_ms, \
    checked_ms, confirmed_ms, supersedes, superseded_by";

fn payer_of(s: &str) -> Result<Payer, StoreError> {
    s.parse().map_err(StoreError::Corrupt)
}

fn submission_row(r: &Row<'_>) -> rusqlite::Result<(Submission, String, String)> {
    Ok((
        Submission {
            id: r.get(0)?,
            reception: r.get(1)?,
            payer: Payer::Ssk,
            institution: r.get(3)?,
            billing_month: billing_from_sql(&r.get::<_, String>(4)?)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e)))?,
            digest: col(r, 5)?,
            bytes: r.get::<_, i64>(6)? as u64,
            receipts: r.get(7)?,
            state: State::Queued,
            chunks: r.get(9)?,
            chunk_receipts: r.get(10)?,
            chunks_done: r.get(11)?,
            counts: Counts {
                error: r.get::<_, i64>(12)? as u64,
                warning: r.get::<_, i64>(13)? as u64,
                info: r.get::<_, i64>(14)? as u64,
            },
            findings_dropped: r.get::<_, i64>(15)? as u64,
            idempotency_key: r.get(16)?,
            token_id: r.get(17)?,
            accepted_ms: r.get(18)?,
            checked_ms: r.get(19)?,
            confirmed_ms: r.get(20)?,
            supersedes: r.get(21)?,
            superseded_by: r.get(22)?,
            withdrawn_receipts: Vec::new(),
        },
        r.get(2)?,
        r.get(8)?,
    ))
}

fn load_where(conn: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Vec<Submission>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {SUBMISSION_COLS} FROM submissions {clause}")).map_err(db)?;
    let rows = stmt.query_map(args, submission_row).map_err(db)?.collect::<Result<Vec<_>, _>>().map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for (mut s, payer, state) in rows {
        s.payer = payer_of(&payer)?;
        s.state = State::parse(&state)?;
        let mut w = conn
            .prepare_cached("SELECT receipt FROM withdrawn_receipts WHERE submission = ?1 ORDER BY receipt")
            .map_err(db)?;
        s.withdrawn_receipts = w.query_map([s.id], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?;
        out.push(s);
    }
    Ok(out)
}

fn load(conn: &Connection, id: SubmissionId) -> Result<Option<Submission>, StoreError> {
    Ok(load_where(conn, "WHERE id = ?1", [id])?.pop())
}

fn must_load(conn: &Connection, id: SubmissionId) -> Result<Submission, StoreError> {
    load(conn, id)?.ok_or(StoreError::NotFound(id))
}

fn idempotent_match(conn: &Connection, new: &NewSubmission, digest: &Digest) -> Result<Option<Accepted>, StoreError> {
    let Some(key) = &new.idempotency_key else { return Ok(None) };
    let found = load_where(conn, "WHERE token_id = ?1 AND idempotency_key = ?2", params![new.token_id, key])?.pop();
    match found {
        Some(s) if s.digest == *digest => Ok(Some(Accepted { submission: s, replayed: true })),
        Some(s) => Err(StoreError::IdempotencyConflict { key: key.clone(), reception: s.reception }),
        None => Ok(None),
    }
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<(i64, String, Option<String>, Option<String>, String, i64, bool)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn token_info(
    (id, role, institution, payer, label, created_ms, revoked): (
        i64,
        String,
        Option<String>,
        Option<String>,
        String,
        i64,
        bool,
    ),
) -> Result<TokenInfo, StoreError> {
    let role = match role.as_str() {
        "institution" => Role::Institution { institution: institution.unwrap_or_default() },
        "staff" => Role::Staff { payer: payer_of(payer.as_deref().unwrap_or(""))? },
        "admin" => Role::Admin,
        other => return Err(StoreError::Corrupt(format!("unknown role {other}"))),
    };
    Ok(TokenInfo { id, role, label, created_ms, revoked })
}

const TOKEN_COLS: &str = "id, role, institution, payer, label, created_ms, revoked";

const PLUGIN_COLS: &str =
    "payer, digest, name, version, contract, info_json, bytes, uploaded_by, uploaded_ms, signed_by, state, validation";

/// A `plugins` row as read, before its approvals are attached.
type PluginRow = (
    String,
    Digest,
    String,
    String,
    String,
    Described,
    i64,
    i64,
    i64,
    Option<String>,
    String,
    Option<ValidationReport>,
);

fn load_plugins(conn: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Vec<PluginRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {PLUGIN_COLS} FROM plugins {clause}")).map_err(db)?;
    let rows: Vec<PluginRow> = stmt
        .query_map(args, |r| {
            let validation: Option<String> = r.get(11)?;
            Ok((
                r.get(0)?,
                col(r, 1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                json_col(r, 5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                validation.map(|v| serde_json::from_str(&v)).transpose().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(11, rusqlite::types::Type::Text, Box::new(e))
                })?,
            ))
        })
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut out = Vec::new();
    for (
        payer,
        digest,
        name,
        version,
        contract,
        described,
        bytes,
        uploaded_by,
        uploaded_ms,
        signed_by,
        state,
        validation,
    ) in rows
    {
        let approvals = conn
            .prepare_cached("SELECT approver FROM plugin_approvals WHERE payer = ?1 AND digest = ?2 ORDER BY at_ms")
            .map_err(db)?
            .query_map(params![payer, digest.to_string()], |r| r.get(0))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        out.push(PluginRecord {
            payer: payer_of(&payer)?,
            digest,
            name,
            version,
            contract,
            described,
            bytes: bytes as u64,
            uploaded_by,
            uploaded_ms,
            signed_by,
            state: PluginState::parse(&state)?,
            validation,
            approvals,
        });
    }
    Ok(out)
}

fn must_plugin(conn: &Connection, payer: Payer, digest: &Digest) -> Result<PluginRecord, StoreError> {
    load_plugins(conn, "WHERE payer = ?1 AND digest = ?2", params![payer.as_str(), digest.to_string()])?
        .pop()
        .ok_or_else(|| StoreError::Corrupt(format!("no plugin {digest} for {payer}")))
}

fn audit_tx(conn: &Connection, e: &AuditEvent) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit(payer, actor, at_ms, action, digest, release_set, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    ).map_err(db)?
    .execute(params![e.payer.as_str(), e.actor, e.at_ms, e.action, e.digest.map(|d| d.to_string()), e.release_set, e.reason]).map_err(db)?;
    Ok(())
}

fn load_sets(conn: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Vec<ReleaseSet>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT id, payer, from_month, plugins, state, created_by, created_ms, reason FROM release_sets {clause}"
        ))
        .map_err(db)?;
    let rows: Vec<(i64, String, String, String, String, i64, i64, String)> = stmt
        .query_map(args, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    rows.into_iter()
        .map(|(id, payer, from_month, plugins, state, created_by, created_ms, reason)| {
            Ok(ReleaseSet {
                id,
                payer: payer_of(&payer)?,
                from_month: month_from_sql(&from_month)?,
                plugins: plugins.split(',').filter(|s| !s.is_empty()).map(digest_from_sql).collect::<Result<_, _>>()?,
                state: ReleaseState::parse(&state)?,
                created_by,
                created_ms,
                reason,
            })
        })
        .collect()
}

fn load_masters(
    conn: &Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<MasterVersion>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT id, payer, from_month, digest, sources, state, provided_by, report, created_by, created_ms, reason \
         FROM master_versions {clause}"
        ))
        .map_err(db)?;
    type R = (i64, String, String, Digest, Vec<MasterSource>, String, Option<String>, MasterReport, i64, i64, String);
    let rows: Vec<R> = stmt
        .query_map(args, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                col(r, 3)?,
                json_col(r, 4)?,
                r.get(5)?,
                r.get(6)?,
                json_col(r, 7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut out = Vec::new();
    for (id, payer, from_month, digest, sources, state, provided_by, report, created_by, created_ms, reason) in rows {
        let approvals = conn
            .prepare_cached("SELECT approver, approver_payer FROM master_approvals WHERE version = ?1 ORDER BY at_ms")
            .map_err(db)?
            .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?
            .into_iter()
            .map(|(a, p)| Ok((a, payer_of(&p)?)))
            .collect::<Result<_, StoreError>>()?;
        out.push(MasterVersion {
            id,
            payer: payer_of(&payer)?,
            from_month: month_from_sql(&from_month)?,
            digest,
            sources,
            state: MasterState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("master version {id}: unknown state {state:?}")))?,
            provided_by: provided_by.map(|p| payer_of(&p)).transpose()?,
            report,
            created_by,
            created_ms,
            reason,
            approvals,
        });
    }
    Ok(out)
}

fn must_master(conn: &Connection, payer: Payer, id: i64) -> Result<MasterVersion, StoreError> {
    load_masters(conn, "WHERE id = ?1 AND payer = ?2", params![id, payer.as_str()])?
        .pop()
        .ok_or_else(|| StoreError::Corrupt(format!("{payer} has no master version {id}")))
}

/// Rolls back the active version `v` itself (issue 11, item 2: a revision that starts in a
/// new month has no earlier version of that month to roll back *to*, and rolling back to it
/// used to do nothing): it stops being in force; the newest earlier version of the same
/// month comes back if there is one, otherwise the versions of earlier months cover its
/// months again. Refused when no master would be in force at all.
fn undo_master(
    conn: &Connection,
    payer: Payer,
    v: &MasterVersion,
    actor: i64,
    reason: &str,
    now_ms: i64,
) -> Result<MasterVersion, StoreError> {
    let earlier: Option<i64> = conn
        .query_row(
            "SELECT id FROM master_versions WHERE payer = ?1 AND from_month = ?2 AND id < ?3 \
             AND state IN ('superseded', 'rolled-back') ORDER BY id DESC LIMIT 1",
            params![payer.as_str(), month_to_sql(v.from_month), v.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let others: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM master_versions WHERE payer = ?1 AND state = 'active' AND id != ?2",
            params![payer.as_str(), v.id],
            |r| r.get(0),
        )
        .map_err(db)?;
    if earlier.is_none() && others == 0 {
        return Err(StoreError::Refused(Refusal::MasterState {
            id: v.id,
            state: v.state,
            action: "rolling it back (no other master version would be in force; activate another first)",
        }));
    }
    conn.execute("UPDATE master_versions SET state = 'rolled-back' WHERE id = ?1", [v.id]).map_err(db)?;
    let now_in_force = match earlier {
        Some(e) => {
            conn.execute("UPDATE master_versions SET state = 'active' WHERE id = ?1", [e]).map_err(db)?;
            format!("version {e} (same months) is in force again")
        }
        None => format!("{} is covered by the versions of earlier months again", month_to_sql(v.from_month)),
    };
    let what = format!("master version {} rolled back; {now_in_force}: {reason}", v.id);
    audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "master-rollback", None, None, &what))?;
    must_master(conn, payer, v.id)
}

/// Claims up to `n` chunks in the fair order (see `SubmissionStore::claim_chunks`), in the
/// caller's transaction.
///
/// Why start-time fair queueing over a `tenants` table rather than scanning chunks: the
/// backlog may hold 100,000 chunks, and a claim must cost a few index lookups, not a scan.
/// `served` is an institution's virtual finish time (receipts); the payer's `vclock` is the
/// start time of the last claim, and an institution's next start is `max(served, vclock)`,
/// so one that idled gets no credit for the time it had nothing queued.
fn claim_tx(conn: &Connection, node: NodeId, payer: Payer, n: u32, now_ms: i64) -> Result<Vec<ChunkClaim>, StoreError> {
    let lease: Option<i64> = conn
        .prepare_cached("SELECT expires_ms FROM nodes WHERE owner = ?1")
        .map_err(db)?
        .query_row([node.0], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if lease.is_none_or(|expires| expires < now_ms) {
        // A node whose lease lapsed claims nothing until it registers again.
        return Ok(Vec::new());
    }
    reclaim_lapsed(conn, payer, now_ms)?;
    let p = payer.as_str();
    let mut vclock: i64 = conn
        .prepare_cached("SELECT vclock FROM payer_clock WHERE payer = ?1")
        .map_err(db)?
        .query_row([p], |r| r.get(0))
        .optional()
        .map_err(db)?
        .unwrap_or(0);
    let mut out = Vec::new();
    while out.len() < n as usize {
        let next: Option<(String, i64)> = conn
            .prepare_cached(
                "SELECT institution, served FROM tenants WHERE payer = ?1 AND ready > 0 ORDER BY served, institution LIMIT 1",
            )
            .map_err(db)?
            .query_row([p], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)?;
        let Some((institution, served)) = next else { break };
        let chunk: Option<(i64, u32, u32)> = conn
            .prepare_cached(
                "SELECT submission, idx, cost FROM chunks WHERE payer = ?1 AND institution = ?2 AND node IS NULL \
                 ORDER BY submission, idx LIMIT 1",
            )
            .map_err(db)?
            .query_row(params![p, institution], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(db)?;
        let Some((submission, index, cost)) = chunk else {
            // The count drifted (it never should): trust the rows.
            conn.prepare_cached("UPDATE tenants SET ready = 0 WHERE payer = ?1 AND institution = ?2")
                .map_err(db)?
                .execute(params![p, institution])
                .map_err(db)?;
            continue;
        };
        let fence: i64 = conn
            .prepare_cached("UPDATE fence_seq SET last = last + 1 WHERE id = 1 RETURNING last")
            .map_err(db)?
            .query_row([], |r| r.get(0))
            .map_err(db)?;
        conn.prepare_cached("UPDATE chunks SET node = ?3, fence = ?4 WHERE submission = ?1 AND idx = ?2")
            .map_err(db)?
            .execute(params![submission, index, node.0, fence])
            .map_err(db)?;
        let start = served.max(vclock);
        vclock = start;
        conn.prepare_cached("UPDATE tenants SET ready = ready - 1, served = ?3 WHERE payer = ?1 AND institution = ?2")
            .map_err(db)?
            .execute(params![p, institution, start + cost as i64])
            .map_err(db)?;
        out.push(ChunkClaim { submission, index, cost, fence: Fence(fence) });
    }
    conn.prepare_cached(
        "INSERT INTO payer_clock(payer, vclock) VALUES (?1, ?2) ON CONFLICT(payer) DO UPDATE SET vclock = excluded.vclock",
    )
    .map_err(db)?
    .execute(params![p, vclock])
    .map_err(db)?;
    Ok(out)
}

/// Chunks of `payer` held by nodes whose lease lapsed become claimable again.
fn reclaim_lapsed(conn: &Connection, payer: Payer, now_ms: i64) -> Result<(), StoreError> {
    let lapsed: Vec<(i64, u32, String)> = conn
        .prepare_cached(
            "SELECT c.submission, c.idx, c.institution FROM chunks c LEFT JOIN nodes n ON n.owner = c.node \
             WHERE c.node IS NOT NULL AND c.payer = ?1 AND (n.owner IS NULL OR n.expires_ms < ?2)",
        )
        .map_err(db)?
        .query_map(params![payer.as_str(), now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    for (submission, idx, institution) in lapsed {
        conn.prepare_cached("UPDATE chunks SET node = NULL WHERE submission = ?1 AND idx = ?2")
            .map_err(db)?
            .execute(params![submission, idx])
            .map_err(db)?;
        add_ready(conn, payer, &institution, 1)?;
    }
    Ok(())
}

/// Adds `n` claimable chunks to an institution's count; one that had none starts at the
/// payer's virtual clock (no credit for idle time).
fn add_ready(conn: &Connection, payer: Payer, institution: &str, n: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO tenants(payer, institution, served, ready) \
         VALUES (?1, ?2, COALESCE((SELECT vclock FROM payer_clock WHERE payer = ?1), 0), ?3) \
         ON CONFLICT(payer, institution) DO UPDATE SET \
           served = CASE WHEN ready > 0 THEN served \
                         ELSE MAX(served, COALESCE((SELECT vclock FROM payer_clock WHERE payer = ?1), 0)) END, \
           ready = ready + excluded.ready",
    )
    .map_err(db)?
    .execute(params![payer.as_str(), institution, n])
    .map_err(db)?;
    Ok(())
}

/// Creates the claimable chunk rows of a new submission.
fn add_chunks(conn: &Connection, s: &Submission) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO chunks(submission, idx, payer, institution, cost) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db)?;
    for i in 0..s.chunks {
        let cost = chunk_cost(i, s.receipts, s.chunks, s.chunk_receipts);
        stmt.execute(params![s.id, i, s.payer.as_str(), s.institution, cost]).map_err(db)?;
    }
    add_ready(conn, s.payer, &s.institution, s.chunks as i64)
}

/// Drops the open chunks of a withdrawn or superseded submission (a result for one of them
/// is then fenced).
fn drop_chunks(conn: &Connection, s: &Submission) -> Result<(), StoreError> {
    let unclaimed: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM chunks WHERE submission = ?1 AND node IS NULL")
        .map_err(db)?
        .query_row([s.id], |r| r.get(0))
        .map_err(db)?;
    conn.prepare_cached("DELETE FROM chunks WHERE submission = ?1").map_err(db)?.execute([s.id]).map_err(db)?;
    if unclaimed > 0 {
        conn.prepare_cached("UPDATE tenants SET ready = MAX(0, ready - ?3) WHERE payer = ?1 AND institution = ?2")
            .map_err(db)?
            .execute(params![s.payer.as_str(), s.institution, unclaimed])
            .map_err(db)?;
    }
    Ok(())
}

impl SubmissionStore for SqliteStore {
    fn accept_start(&self, new: NewSubmission) -> Result<PendingAccept, StoreError> {
        let digest = tenken_store::digest(&new.bytes);
        // Fast path for a retried request: no blob write, no queue.
        if new.idempotency_key.is_some()
            && let Some(a) = self.read(|c| idempotent_match(c, &new, &digest))?
        {
            return Ok(PendingAccept::ready(Ok(a)));
        }
        self.blobs.put_unsynced(&digest, &new.bytes)?;
        let billing = billing_to_sql(new.billing_month);
        let bytes_len = new.bytes.len() as i64;
        let mut meta = new;
        meta.bytes = Vec::new();
        let pending = self.write_accept(move |conn| {
            if let Some(a) = idempotent_match(conn, &meta, &digest)? {
                return Ok(a);
            }
            let payer = meta.payer.as_str();
            let earlier = load_where(
                conn,
                "WHERE payer = ?1 AND institution = ?2 AND billing_month = ?3 AND billing_month != '' \
                 AND state NOT IN ('withdrawn', 'superseded') ORDER BY id",
                params![payer, meta.institution, billing],
            )?;
            if let Some(c) = earlier.iter().find(|s| s.state == State::Confirmed) {
                return Err(StoreError::AlreadyConfirmed { reception: c.reception.clone() });
            }
            let previous = earlier.last().map(|s| s.id);
            conn.prepare_cached(
                "INSERT INTO submissions(payer, institution, billing_month, digest, bytes, receipts, state, chunks, \
                 chunk_receipts, idempotency_key, token_id, accepted_ms, supersedes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(db)?
            .execute(params![
                payer,
                meta.institution,
                billing,
                digest.to_string(),
                bytes_len,
                meta.receipts,
                meta.chunks,
                meta.chunk_receipts,
                meta.idempotency_key,
                meta.token_id,
                meta.now_ms,
                previous
            ])
            .map_err(db)?;
            let id = conn.last_insert_rowid();
            conn.prepare_cached("UPDATE submissions SET reception = ?2 WHERE id = ?1")
                .map_err(db)?
                .execute(params![id, tenken_store::reception_number(meta.payer, id, meta.now_ms)])
                .map_err(db)?;
            for s in &earlier {
                conn.prepare_cached("UPDATE submissions SET state = 'superseded', superseded_by = ?2 WHERE id = ?1")
                    .map_err(db)?
                    .execute(params![s.id, id])
                    .map_err(db)?;
                drop_chunks(conn, s)?;
            }
            let submission = must_load(conn, id)?;
            add_chunks(conn, &submission)?;
            Ok(Accepted { submission, replayed: false })
        })?;
        Ok(pending)
    }

    fn get(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError> {
        self.read(|c| load(c, id))
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| {
            load_where(
                c,
                "WHERE (?1 IS NULL OR payer = ?1) AND (?2 IS NULL OR institution = ?2) AND (?3 IS NULL OR id < ?3) \
                 ORDER BY id DESC LIMIT ?4",
                params![f.payer.map(|p| p.as_str()), f.institution, f.before, f.limit.clamp(1, 1000)],
            )
        })
    }

    fn history(&self, id: SubmissionId) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| {
            let s = must_load(c, id)?;
            let Some(month) = s.billing_month else { return Ok(vec![s]) };
            load_where(
                c,
                "WHERE payer = ?1 AND institution = ?2 AND billing_month = ?3 ORDER BY id",
                params![s.payer.as_str(), s.institution, month.to_string()],
            )
        })
    }

    fn claim_chunks(&self, node: NodeId, payer: Payer, n: u32, now_ms: i64) -> Result<Vec<ChunkClaim>, StoreError> {
        // Not durable: a claim lost in a crash only means the chunk is claimed again.
        self.write_op(WriteKind::Volatile, move |conn| claim_tx(conn, node, payer, n, now_ms))
    }

    fn release_chunk(
        &self,
        node: NodeId,
        submission: SubmissionId,
        index: u32,
        fence: Fence,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let held: Option<(String, String)> = conn
                .query_row(
                    "SELECT payer, institution FROM chunks WHERE submission = ?1 AND idx = ?2 AND node = ?3 AND fence = ?4",
                    params![submission, index, node.0, fence.0],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            let Some((payer, institution)) = held else { return Ok(false) };
            conn.execute("UPDATE chunks SET node = NULL WHERE submission = ?1 AND idx = ?2", params![submission, index])
                .map_err(db)?;
            add_ready(conn, payer_of(&payer)?, &institution, 1)?;
            Ok(true)
        })
    }

    fn backlog(&self, payer: Payer, _now_ms: i64) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COALESCE(SUM(ready), 0) FROM tenants WHERE payer = ?1 AND ready > 0")
                .map_err(db)?
                .query_row([payer.as_str()], |r| r.get(0))
                .map_err(db)?;
            Ok(n as u64)
        })
    }

    fn unfinalized(&self) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| load_where(c, "WHERE state IN ('queued', 'checking') AND chunks_done >= chunks ORDER BY id", []))
    }

    fn complete_chunk(&self, r: ChunkResult) -> Result<ChunkOutcome, StoreError> {
        // Serialized here, on the caller's thread: the writer thread only writes.
        let (findings, decision) = (to_json(&r.findings), to_json(&r.decision));
        let pin = r.pin.as_ref().map(to_json);
        self.write(move |conn| {
            // Checked under a pin the file no longer has (a rollback restarted it): refused.
            if let Some(pin) = &pin {
                let stored: Option<String> = conn
                    .prepare_cached("SELECT pin FROM check_pins WHERE submission = ?1")
                    .map_err(db)?
                    .query_row([r.submission], |row| row.get(0))
                    .optional()
                    .map_err(db)?;
                if stored.as_ref() != Some(pin) {
                    return Ok(ChunkOutcome::Fenced);
                }
            }
            let claim: Option<(Option<i64>, i64)> = conn
                .prepare_cached("SELECT node, fence FROM chunks WHERE submission = ?1 AND idx = ?2")
                .map_err(db)?
                .query_row(params![r.submission, r.index], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(db)?;
            let Some((holder, fence)) = claim else {
                // No open chunk: recorded already, or the submission was withdrawn/superseded.
                let done: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM chunk_results WHERE submission = ?1 AND idx = ?2")
                    .map_err(db)?
                    .query_row(params![r.submission, r.index], |row| row.get(0))
                    .optional()
                    .map_err(db)?;
                return Ok(if done.is_some() { ChunkOutcome::Duplicate } else { ChunkOutcome::Fenced });
            };
            if holder != Some(r.node.0) || fence != r.fence.0 {
                return Ok(ChunkOutcome::Fenced);
            }
            let lease: Option<i64> = conn
                .prepare_cached("SELECT expires_ms FROM nodes WHERE owner = ?1")
                .map_err(db)?
                .query_row([r.node.0], |row| row.get(0))
                .optional()
                .map_err(db)?;
            if lease.is_none_or(|expires| expires < r.now_ms) {
                return Ok(ChunkOutcome::Fenced);
            }
            conn.prepare_cached(
                "INSERT INTO chunk_results(submission, idx, owner, findings, n_error, n_warning, n_info, done_ms, decision) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(db)?
            .execute(params![
                r.submission,
                r.index,
                r.node.0,
                findings,
                r.counts.error as i64,
                r.counts.warning as i64,
                r.counts.info as i64,
                r.now_ms,
                decision
            ])
            .map_err(db)?;
            conn.prepare_cached("DELETE FROM chunks WHERE submission = ?1 AND idx = ?2")
                .map_err(db)?
                .execute(params![r.submission, r.index])
                .map_err(db)?;
            let (done, total): (u32, u32) = conn
                .prepare_cached(
                    "UPDATE submissions SET chunks_done = chunks_done + 1, state = 'checking' WHERE id = ?1 \
                     RETURNING chunks_done, chunks",
                )
                .map_err(db)?
                .query_row([r.submission], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(db)?;
            Ok(ChunkOutcome::Recorded { all_done: done >= total })
        })
    }

    fn chunk_findings(&self, id: SubmissionId) -> Result<Vec<(u32, Vec<Finding>)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT idx, findings FROM chunk_results WHERE submission = ?1 ORDER BY idx")
                .map_err(db)?;
            Ok(stmt
                .query_map([id], |r| Ok((r.get(0)?, json_col(r, 1)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?)
        })
    }

    fn finalize(
        &self,
        id: SubmissionId,
        findings: &[Finding],
        counts: Counts,
        dropped: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let findings = to_json(&findings);
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE submissions SET state = 'checked', n_error = ?2, n_warning = ?3, n_info = ?4, \
                     findings_dropped = ?5, checked_ms = ?6 WHERE id = ?1 AND state IN ('queued', 'checking') \
                     AND chunks_done >= chunks",
                )
                .map_err(db)?
                .execute(params![
                    id,
                    counts.error as i64,
                    counts.warning as i64,
                    counts.info as i64,
                    dropped as i64,
                    now_ms
                ])
                .map_err(db)?;
            if changed == 1 {
                conn.prepare_cached("INSERT OR REPLACE INTO final_findings(submission, findings) VALUES (?1, ?2)")
                    .map_err(db)?
                    .execute(params![id, findings])
                    .map_err(db)?;
            }
            Ok(())
        })
    }

    fn findings(&self, id: SubmissionId) -> Result<Option<Vec<Finding>>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT findings FROM final_findings WHERE submission = ?1")
                .map_err(db)?
                .query_row([id], |r| json_col(r, 0))
                .optional()
                .map_err(db)?)
        })
    }

    fn confirm(&self, id: SubmissionId, now_ms: i64) -> Result<Submission, StoreError> {
        self.write(move |conn| {
            let s = must_load(conn, id)?;
            if s.state != State::Checked {
                return Err(StoreError::WrongState { id, state: s.state, action: "confirmation" });
            }
            conn.prepare_cached("UPDATE submissions SET state = 'confirmed', confirmed_ms = ?2 WHERE id = ?1")
                .map_err(db)?
                .execute(params![id, now_ms])
                .map_err(db)?;
            must_load(conn, id)
        })
    }

    fn withdraw(&self, id: SubmissionId, _now_ms: i64) -> Result<Submission, StoreError> {
        self.write(move |conn| {
            let s = must_load(conn, id)?;
            if !matches!(s.state, State::Queued | State::Checking | State::Checked) {
                return Err(StoreError::WrongState { id, state: s.state, action: "withdrawal" });
            }
            conn.prepare_cached("UPDATE submissions SET state = 'withdrawn' WHERE id = ?1")
                .map_err(db)?
                .execute([id])
                .map_err(db)?;
            drop_chunks(conn, &s)?;
            must_load(conn, id)
        })
    }

    fn withdraw_receipt(&self, id: SubmissionId, receipt: u32) -> Result<Submission, StoreError> {
        self.write(move |conn| {
            let s = must_load(conn, id)?;
            if !matches!(s.state, State::Queued | State::Checking | State::Checked) {
                return Err(StoreError::WrongState { id, state: s.state, action: "withdrawing a receipt" });
            }
            conn.prepare_cached("INSERT OR IGNORE INTO withdrawn_receipts(submission, receipt) VALUES (?1, ?2)")
                .map_err(db)?
                .execute(params![id, receipt])
                .map_err(db)?;
            must_load(conn, id)
        })
    }

    fn pin_check(&self, id: SubmissionId, pin: &CheckPin) -> Result<CheckPin, StoreError> {
        let json = to_json(pin);
        self.write(move |conn| {
            conn.execute("INSERT OR IGNORE INTO check_pins(submission, pin) VALUES (?1, ?2)", params![id, json])
                .map_err(db)?;
            conn.query_row("SELECT pin FROM check_pins WHERE submission = ?1", [id], |r| json_col(r, 0)).map_err(db)
        })
    }

    fn check_pin(&self, id: SubmissionId) -> Result<Option<CheckPin>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT pin FROM check_pins WHERE submission = ?1")
                .map_err(db)?
                .query_row([id], |r| json_col(r, 0))
                .optional()
                .map_err(db)
        })
    }

    fn restart_pinned(
        &self,
        payer: Payer,
        set: Option<i64>,
        master: Option<i64>,
    ) -> Result<Vec<SubmissionId>, StoreError> {
        self.write(move |conn| {
            let pinned: Vec<(SubmissionId, CheckPin)> = conn
                .prepare_cached(
                    "SELECT p.submission, p.pin FROM check_pins p JOIN submissions s ON s.id = p.submission \
                     WHERE s.payer = ?1 AND s.state IN ('queued', 'checking')",
                )
                .map_err(db)?
                .query_map([payer.as_str()], |r| Ok((r.get(0)?, json_col(r, 1)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let mut out = Vec::new();
            for (id, pin) in pinned {
                let hit = set.is_some_and(|x| pin.sets.iter().any(|p| p.id == x))
                    || master.is_some_and(|x| pin.masters.iter().any(|p| p.id == x));
                if !hit {
                    continue;
                }
                let s = must_load(conn, id)?;
                drop_chunks(conn, &s)?;
                conn.execute("DELETE FROM chunk_results WHERE submission = ?1", [id]).map_err(db)?;
                conn.execute("DELETE FROM check_pins WHERE submission = ?1", [id]).map_err(db)?;
                conn.execute("UPDATE submissions SET chunks_done = 0, state = 'queued' WHERE id = ?1", [id])
                    .map_err(db)?;
                add_chunks(conn, &s)?;
                out.push(id);
            }
            Ok(out)
        })
    }

    fn decisions(&self, id: SubmissionId) -> Result<Vec<(u32, DecisionRecord)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT idx, decision FROM chunk_results WHERE submission = ?1 ORDER BY idx")
                .map_err(db)?;
            // '' is a chunk recorded before decision records existed: it names nothing.
            Ok(stmt
                .query_map([id], |r| {
                    let empty = r.get_ref(1)?.as_str().is_ok_and(str::is_empty);
                    Ok((r.get(0)?, if empty { DecisionRecord::default() } else { json_col(r, 1)? }))
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?)
        })
    }
    fn register_node(&self, name: &str, now_ms: i64, ttl_ms: i64) -> Result<NodeId, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO nodes(name, started_ms, expires_ms, heartbeat_ms) VALUES (?1, ?2, ?3, ?2)",
                params![name, now_ms, now_ms + ttl_ms],
            )
            .map_err(db)?;
            Ok(NodeId(conn.last_insert_rowid()))
        })
    }

    fn renew_node(&self, node: NodeId, now_ms: i64, ttl_ms: i64, stats: &NodeStats) -> Result<bool, StoreError> {
        let stats = to_json(stats);
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE nodes SET expires_ms = ?2, heartbeat_ms = ?3, stats = ?4 WHERE owner = ?1 AND expires_ms >= ?3",
                    params![node.0, now_ms + ttl_ms, now_ms, stats],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT owner, name, started_ms, expires_ms, heartbeat_ms, stats FROM nodes \
                     ORDER BY owner DESC LIMIT 1000",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(NodeInfo {
                        id: NodeId(r.get(0)?),
                        name: r.get(1)?,
                        started_ms: r.get(2)?,
                        expires_ms: r.get(3)?,
                        heartbeat_ms: r.get(4)?,
                        stats: json_col(r, 5)?,
                    })
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            Ok(rows)
        })
    }
}

impl AccessStore for SqliteStore {
    fn create_token(&self, role: Role, label: &str, now_ms: i64) -> Result<(i64, String), StoreError> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let secret = format!("tk_{}", hex::encode(raw));
        let hash = token_hash(&secret);
        let label = label.to_owned();
        let id = self.write(move |conn| {
            let (kind, institution, payer) = match &role {
                Role::Institution { institution } => ("institution", Some(institution.clone()), None),
                Role::Staff { payer } => ("staff", None, Some(payer.as_str())),
                Role::Admin => ("admin", None, None),
            };
            conn.execute(
                "INSERT INTO tokens(hash, role, institution, payer, label, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![hash, kind, institution, payer, label, now_ms],
            )
            .map_err(db)?;
            Ok(conn.last_insert_rowid())
        })?;
        Ok((id, secret))
    }

    fn find_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let hash = token_hash(secret);
        self.read(|c| {
            let row = c
                .prepare_cached(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = ?1"))
                .map_err(db)?
                .query_row([hash], token_row)
                .optional()
                .map_err(db)?;
            row.map(token_info).transpose()
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(&format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY id"))
                .map_err(db)?
                .query_map([], token_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter().map(token_info).collect()
        })
    }

    fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        self.write(move |conn| Ok(conn.execute("UPDATE tokens SET revoked = 1 WHERE id = ?1", [id]).map_err(db)? == 1))
    }

    fn window(&self, payer: Payer, billing_month: YearMonth) -> Result<Option<WindowOverride>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT opens_ms, closes_ms, updated_by, updated_ms FROM windows WHERE payer = ?1 AND billing_month = ?2",
            ).map_err(db)?
            .query_row(params![payer.as_str(), billing_month.to_string()], |r| {
                Ok(WindowOverride {
                    payer,
                    billing_month,
                    opens_ms: r.get(0)?,
                    closes_ms: r.get(1)?,
                    updated_by: r.get(2)?,
                    updated_ms: r.get(3)?,
                })
            })
            .optional().map_err(db)?)
        })
    }

    fn set_window(&self, w: WindowOverride) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO windows(payer, billing_month, opens_ms, closes_ms, updated_by, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    w.payer.as_str(),
                    w.billing_month.to_string(),
                    w.opens_ms,
                    w.closes_ms,
                    w.updated_by,
                    w.updated_ms
                ],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn add_notice(
        &self,
        payer: Option<Payer>,
        audience: Audience,
        message: &str,
        by: i64,
        now_ms: i64,
    ) -> Result<Notice, StoreError> {
        let message = message.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO notices(payer, audience, message, created_ms, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![payer.map(|p| p.as_str()), audience.as_str(), message, now_ms, by],
            )
            .map_err(db)?;
            Ok(Notice { id: conn.last_insert_rowid(), payer, audience, message, created_ms: now_ms, created_by: by })
        })
    }

    fn notices(&self, payer: Option<Payer>, audience: Audience, limit: u32) -> Result<Vec<Notice>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, payer, message, created_ms, created_by FROM notices \
                 WHERE (?1 IS NULL OR payer IS NULL OR payer = ?1) AND audience = ?2 ORDER BY id DESC LIMIT ?3",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![payer.map(|p| p.as_str()), audience.as_str(), limit.clamp(1, 1000)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, p, message, created_ms, created_by)| {
                    Ok(Notice {
                        id,
                        payer: p.map(|p| payer_of(&p)).transpose()?,
                        audience,
                        message,
                        created_ms,
                        created_by,
                    })
                })
                .collect()
        })
    }
}

impl RegistryStore for SqliteStore {
    fn put_plugin(&self, p: NewPlugin) -> Result<(PluginRecord, bool), StoreError> {
        if let Some(existing) = self.plugin(p.payer, &p.digest)? {
            return Ok((existing, false));
        }
        self.blobs.put_synced(&p.digest, &p.bytes)?;
        let described = to_json(&p.described);
        let size = p.bytes.len() as i64;
        self.write(move |conn| {
            let n = conn.execute(
                "INSERT OR IGNORE INTO plugins(payer, digest, name, version, contract, info_json, bytes, uploaded_by, \
                 uploaded_ms, signed_by, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    p.payer.as_str(),
                    p.digest.to_string(),
                    p.name,
                    p.version,
                    p.contract,
                    described,
                    size,
                    p.uploaded_by,
                    p.now_ms,
                    p.signed_by,
                    p.state.as_str()
                ],
            ).map_err(db)?;
            if n == 1 {
                let why = format!("{} {} ({} bytes)", p.name, p.version, size);
                audit_tx(
                    conn,
                    &AuditEvent::new(p.payer, p.uploaded_by, p.now_ms, "upload", Some(&p.digest), None, &why),
                )?;
            }
            Ok((must_plugin(conn, p.payer, &p.digest)?, n == 1))
        })
    }

    fn plugin(&self, payer: Payer, digest: &Digest) -> Result<Option<PluginRecord>, StoreError> {
        self.read(|c| {
            Ok(load_plugins(c, "WHERE payer = ?1 AND digest = ?2", params![payer.as_str(), digest.to_string()])?.pop())
        })
    }

    fn plugins(&self, payer: Payer) -> Result<Vec<PluginRecord>, StoreError> {
        self.read(|c| load_plugins(c, "WHERE payer = ?1 ORDER BY uploaded_ms DESC, name", params![payer.as_str()]))
    }

    fn set_plugin_state(
        &self,
        payer: Payer,
        digest: &Digest,
        state: PluginState,
        validation: Option<ValidationReport>,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<PluginRecord, StoreError> {
        let (digest, reason) = (*digest, reason.to_owned());
        let validation = validation.as_ref().map(to_json);
        self.write(move |conn| {
            must_plugin(conn, payer, &digest)?;
            if state == PluginState::Retired {
                let sets: Vec<i64> = load_sets(conn, "WHERE payer = ?1 AND state = 'active'", [payer.as_str()])?
                    .into_iter()
                    .filter(|s| s.plugins.contains(&digest))
                    .map(|s| s.id)
                    .collect();
                if !sets.is_empty() {
                    return Err(StoreError::Refused(Refusal::InUse { digest: digest.to_string(), sets }));
                }
            }
            conn.execute(
                "UPDATE plugins SET state = ?3, validation = COALESCE(?4, validation) WHERE payer = ?1 AND digest = ?2",
                params![payer.as_str(), digest.to_string(), state.as_str(), validation],
            )
            .map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, state.as_str(), Some(&digest), None, &reason))?;
            must_plugin(conn, payer, &digest)
        })
    }

    fn approve_plugin(
        &self,
        payer: Payer,
        digest: &Digest,
        approver: i64,
        approver_payer: Payer,
        required: u32,
        now_ms: i64,
    ) -> Result<PluginRecord, StoreError> {
        let digest = *digest;
        self.write(move |conn| {
            let rec = must_plugin(conn, payer, &digest)?;
            if approver_payer != payer {
                return Err(StoreError::Refused(Refusal::OtherPayer { approver: approver_payer, payer }));
            }
            if rec.uploaded_by == approver {
                return Err(StoreError::Refused(Refusal::SelfApproval));
            }
            if !matches!(rec.state, PluginState::Validated | PluginState::Approved) {
                return Err(StoreError::Refused(Refusal::NotApprovable {
                    digest: digest.to_string(),
                    state: rec.state.as_str().to_owned(),
                }));
            }
            conn.execute(
                "INSERT OR IGNORE INTO plugin_approvals(payer, digest, approver, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![payer.as_str(), digest.to_string(), approver, now_ms],
            )
            .map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, approver, now_ms, "approval", Some(&digest), None, ""))?;
            let rec = must_plugin(conn, payer, &digest)?;
            if rec.state == PluginState::Validated && rec.approvals.len() >= required.max(1) as usize {
                conn.execute(
                    "UPDATE plugins SET state = 'approved' WHERE payer = ?1 AND digest = ?2",
                    params![payer.as_str(), digest.to_string()],
                )
                .map_err(db)?;
                let why = format!("{} approval(s)", rec.approvals.len());
                audit_tx(conn, &AuditEvent::new(payer, approver, now_ms, "approved", Some(&digest), None, &why))?;
                return must_plugin(conn, payer, &digest);
            }
            Ok(rec)
        })
    }

    fn add_signing_key(&self, payer: Payer, key_hex: &str, actor: i64, now_ms: i64) -> Result<(), StoreError> {
        let key = key_hex.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO signing_keys(payer, key_hex, added_by, added_ms) VALUES (?1, ?2, ?3, ?4)",
                params![payer.as_str(), key, actor, now_ms],
            )
            .map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "signing-key", None, None, &key))
        })
    }

    fn signing_keys(&self, payer: Payer) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT key_hex FROM signing_keys WHERE payer = ?1 ORDER BY added_ms")
                .map_err(db)?
                .query_map([payer.as_str()], |r| r.get(0))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?)
        })
    }

    fn activate(
        &self,
        payer: Payer,
        from_month: Option<YearMonth>,
        plugins: &[Digest],
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<ReleaseSet, StoreError> {
        let list = plugins.iter().map(Digest::to_string).collect::<Vec<_>>().join(",");
        let (from, reason) = (month_to_sql(from_month), reason.to_owned());
        let digests = plugins.to_vec();
        self.write(move |conn| {
            // In the transaction: a retire racing this activation either commits first (and
            // the activation is refused) or after (and finds the set already active).
            for d in &digests {
                let rec = load_plugins(conn, "WHERE payer = ?1 AND digest = ?2", params![payer.as_str(), d.to_string()])?
                    .pop();
                match rec {
                    Some(r) if r.state == PluginState::Approved => {}
                    Some(r) => {
                        return Err(StoreError::Refused(Refusal::NotApproved {
                            digest: d.to_string(),
                            state: r.state.as_str().to_owned(),
                        }));
                    }
                    None => return Err(StoreError::Missing { what: format!("{payer} plugin {d}") }),
                }
            }
            conn.execute(
                "UPDATE release_sets SET state = 'superseded' WHERE payer = ?1 AND from_month = ?2 AND state = 'active'",
                params![payer.as_str(), from],
            ).map_err(db)?;
            conn.execute(
                "INSERT INTO release_sets(payer, from_month, plugins, state, created_by, created_ms, reason) \
                 VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6)",
                params![payer.as_str(), from, list, actor, now_ms, reason],
            ).map_err(db)?;
            let id = conn.last_insert_rowid();
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "activate", None, Some(id), &format!("from {from}: {reason}")))?;
            load_sets(conn, "WHERE id = ?1", [id])?.pop().ok_or(StoreError::Corrupt("release set vanished".into()))
        })
    }

    fn rollback(&self, payer: Payer, to: i64, actor: i64, reason: &str, now_ms: i64) -> Result<ReleaseSet, StoreError> {
        let reason = reason.to_owned();
        self.write(move |conn| {
            let target = load_sets(conn, "WHERE id = ?1 AND payer = ?2", params![to, payer.as_str()])?
                .pop()
                .ok_or_else(|| StoreError::Corrupt(format!("{payer} has no release set {to}")))?;
            // A plugin retired since the target set was live does not come back with it.
            for d in &target.plugins {
                if let Some(r) =
                    load_plugins(conn, "WHERE payer = ?1 AND digest = ?2", params![payer.as_str(), d.to_string()])?.pop()
                    && r.state != PluginState::Approved
                {
                    return Err(StoreError::Refused(Refusal::NotApproved {
                        digest: d.to_string(),
                        state: r.state.as_str().to_owned(),
                    }));
                }
            }
            conn.execute(
                "UPDATE release_sets SET state = 'rolled-back' WHERE payer = ?1 AND from_month = ?2 AND state = 'active' AND id != ?3",
                params![payer.as_str(), month_to_sql(target.from_month), to],
            ).map_err(db)?;
            conn.execute("UPDATE release_sets SET state = 'active' WHERE id = ?1", [to]).map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "rollback", None, Some(to), &reason))?;
            load_sets(conn, "WHERE id = ?1", [to])?.pop().ok_or(StoreError::Corrupt("release set vanished".into()))
        })
    }

    fn release_sets(&self, payer: Payer) -> Result<Vec<ReleaseSet>, StoreError> {
        self.read(|c| load_sets(c, "WHERE payer = ?1 ORDER BY id DESC", [payer.as_str()]))
    }

    fn audit(&self, payer: Payer, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, actor, at_ms, action, digest, release_set, reason FROM audit WHERE payer = ?1 ORDER BY id DESC LIMIT ?2",
            ).map_err(db)?;
            Ok(stmt
                .query_map(params![payer.as_str(), limit.clamp(1, 10_000)], |r| {
                    Ok(AuditEvent {
                        id: r.get(0)?,
                        payer,
                        actor: r.get(1)?,
                        at_ms: r.get(2)?,
                        action: r.get(3)?,
                        digest: r.get::<_, Option<String>>(4)?.map(|_| col(r, 4)).transpose()?,
                        release_set: r.get(5)?,
                        reason: r.get(6)?,
                    })
                }).map_err(db)?
                .collect::<Result<_, _>>().map_err(db)?)
        })
    }

    fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.write(move |conn| audit_tx(conn, &e))
    }

    fn add_regression(
        &self,
        payer: Payer,
        name: &str,
        bytes: &[u8],
        expected: &[Finding],
        actor: i64,
        now_ms: i64,
    ) -> Result<RegressionCase, StoreError> {
        let digest = tenken_store::digest(bytes);
        self.blobs.put_synced(&digest, bytes)?;
        let (name, json, expected) = (name.to_owned(), to_json(&expected), expected.to_vec());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO regression(payer, name, digest, expected, added_by, added_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![payer.as_str(), name, digest.to_string(), json, actor, now_ms],
            ).map_err(db)?;
            let id = conn.last_insert_rowid();
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "regression-case", None, None, &name))?;
            Ok(RegressionCase { id, payer, name, digest, expected, added_by: actor, added_ms: now_ms })
        })
    }

    fn regression(&self, payer: Payer) -> Result<Vec<RegressionCase>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, name, digest, expected, added_by, added_ms FROM regression WHERE payer = ?1 ORDER BY id",
            ).map_err(db)?;
            Ok(stmt
                .query_map([payer.as_str()], |r| {
                    Ok(RegressionCase {
                        id: r.get(0)?,
                        payer,
                        name: r.get(1)?,
                        digest: col(r, 2)?,
                        expected: json_col(r, 3)?,
                        added_by: r.get(4)?,
                        added_ms: r.get(5)?,
                    })
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?)
        })
    }

    fn release_set(&self, payer: Payer, id: i64) -> Result<Option<ReleaseSet>, StoreError> {
        self.read(|c| Ok(load_sets(c, "WHERE id = ?1 AND payer = ?2", params![id, payer.as_str()])?.pop()))
    }
}

impl MasterStore for SqliteStore {
    fn master_version(&self, payer: Payer, id: i64) -> Result<Option<MasterVersion>, StoreError> {
        self.read(|c| Ok(load_masters(c, "WHERE id = ?1 AND payer = ?2", params![id, payer.as_str()])?.pop()))
    }

    fn install_master(
        &self,
        payer: Payer,
        from_month: Option<YearMonth>,
        digest: &Digest,
        sources: &[MasterSource],
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError> {
        let report = MasterReport::default();
        let v = self.add_master_version(payer, from_month, digest, sources, None, &report, actor, reason, now_ms)?;
        let (id, reason) = (v.id, reason.to_owned());
        self.write(move |conn| {
            let v = must_master(conn, payer, id)?;
            conn.execute(
                "UPDATE master_versions SET state = 'superseded' WHERE payer = ?1 AND from_month = ?2 AND state = 'active' AND id != ?3",
                params![payer.as_str(), month_to_sql(v.from_month), id],
            )
            .map_err(db)?;
            conn.execute("UPDATE master_versions SET state = 'active' WHERE id = ?1", [id]).map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "master-install", None, None, &format!("master version {id}: {reason}")))?;
            must_master(conn, payer, id)
        })
    }

    fn add_master_version(
        &self,
        payer: Payer,
        from_month: Option<YearMonth>,
        digest: &Digest,
        sources: &[MasterSource],
        provided_by: Option<Payer>,
        report: &MasterReport,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError> {
        let (from, digest, sources, report, reason) =
            (month_to_sql(from_month), digest.to_string(), to_json(&sources), to_json(report), reason.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO master_versions(payer, from_month, digest, sources, state, provided_by, report, created_by, \
                 created_ms, reason) VALUES (?1, ?2, ?3, ?4, 'proposed', ?5, ?6, ?7, ?8, ?9)",
                params![payer.as_str(), from, digest, sources, provided_by.map(|p| p.as_str()), report, actor, now_ms, reason],
            ).map_err(db)?;
            let id = conn.last_insert_rowid();
            let what = match provided_by {
                Some(p) => format!("master version {id} ({digest}) converted from {p}'s"),
                None => format!("master version {id} ({digest}) from {from}"),
            };
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "master-version", None, None, &what))?;
            must_master(conn, payer, id)
        })
    }

    fn master_versions(&self, payer: Payer) -> Result<Vec<MasterVersion>, StoreError> {
        self.read(|c| load_masters(c, "WHERE payer = ?1 ORDER BY id DESC", [payer.as_str()]))
    }

    fn approve_master(
        &self,
        payer: Payer,
        id: i64,
        approver: i64,
        approver_payer: Payer,
        note: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError> {
        let reason = match note {
            "" => format!("master version {id} by {approver_payer} staff"),
            n => format!("master version {id} by {approver_payer} staff: {n}"),
        };
        self.write(move |conn| {
            let v = must_master(conn, payer, id)?;
            if approver_payer != payer && Some(approver_payer) != v.provided_by {
                return Err(StoreError::Refused(Refusal::OtherPayer { approver: approver_payer, payer }));
            }
            if v.state != MasterState::Proposed {
                return Err(StoreError::Refused(Refusal::MasterState { id, state: v.state, action: "approval" }));
            }
            conn.execute(
                "INSERT OR IGNORE INTO master_approvals(version, approver, approver_payer, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, approver, approver_payer.as_str(), now_ms],
            ).map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, approver, now_ms, "master-approval", None, None, &reason))?;
            must_master(conn, payer, id)
        })
    }

    fn withdraw_master(
        &self,
        payer: Payer,
        id: i64,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError> {
        let reason = format!("master version {id}: {reason}");
        self.write(move |conn| {
            let v = must_master(conn, payer, id)?;
            if v.state != MasterState::Proposed {
                return Err(StoreError::Refused(Refusal::MasterState { id, state: v.state, action: "withdrawal" }));
            }
            conn.execute("UPDATE master_versions SET state = 'withdrawn' WHERE id = ?1", [id]).map_err(db)?;
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "master-withdraw", None, None, &reason))?;
            must_master(conn, payer, id)
        })
    }

    fn set_master_report(
        &self,
        payer: Payer,
        id: i64,
        report: &MasterReport,
        actor: i64,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError> {
        let json = to_json(report);
        self.write(move |conn| {
            let v = must_master(conn, payer, id)?;
            if v.state != MasterState::Proposed {
                return Err(StoreError::Refused(Refusal::MasterState { id, state: v.state, action: "re-checking" }));
            }
            conn.execute("UPDATE master_versions SET report = ?2 WHERE id = ?1", params![id, json]).map_err(db)?;
            let why = format!("master version {id}: diff and impact re-checked against the version now in force");
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, "master-recheck", None, None, &why))?;
            must_master(conn, payer, id)
        })
    }

    fn activate_master(
        &self,
        payer: Payer,
        id: i64,
        actor: i64,
        rollback: bool,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError> {
        let reason = reason.to_owned();
        self.write(move |conn| {
            let v = must_master(conn, payer, id)?;
            if rollback && v.state == MasterState::Active {
                return undo_master(conn, payer, &v, actor, &reason, now_ms);
            }
            if rollback {
                if !matches!(v.state, MasterState::Superseded | MasterState::RolledBack) {
                    return Err(StoreError::Refused(Refusal::MasterState {
                        id,
                        state: v.state,
                        action: "rolling back to it",
                    }));
                }
            } else {
                if v.state != MasterState::Proposed {
                    return Err(StoreError::Refused(Refusal::MasterState { id, state: v.state, action: "activation" }));
                }
                let by = |p: Payer| v.approvals.iter().any(|(_, q)| *q == p);
                let mut needed = Vec::new();
                if !by(payer) {
                    needed.push(payer.to_string());
                }
                if let Some(q) = v.provided_by.filter(|q| !by(*q)) {
                    needed.push(q.to_string());
                }
                if !needed.is_empty() {
                    return Err(StoreError::Refused(Refusal::MasterNotApproved { id, needed: needed.join(" and ") }));
                }
            }
            conn.execute(
                "UPDATE master_versions SET state = ?4 WHERE payer = ?1 AND from_month = ?2 AND state = 'active' AND id != ?3",
                params![payer.as_str(), month_to_sql(v.from_month), id, if rollback { "rolled-back" } else { "superseded" }],
            ).map_err(db)?;
            conn.execute("UPDATE master_versions SET state = 'active' WHERE id = ?1", [id]).map_err(db)?;
            let action = if rollback { "master-rollback" } else { "master-activate" };
            audit_tx(conn, &AuditEvent::new(payer, actor, now_ms, action, None, None, &format!("master version {id}: {reason}")))?;
            must_master(conn, payer, id)
        })
    }
}

impl Store for SqliteStore {
    fn blobs(&self) -> &dyn BlobStore {
        &*self.blobs
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn close(&self) {
        self.writer.lock().unwrap().take();
        if let Some(h) = self.writer_thread.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}
