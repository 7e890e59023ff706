//! The PostgreSQL store backend: several nodes on one database. A bounded connection pool,
//! schema migrations at start under an advisory lock (nodes may start together), rows and
//! content-addressed blobs both in the database (no shared file system), every aggregate
//! of the store contract, and the change feed (LISTEN/NOTIFY) that wakes other nodes'
//! workers and reloads their registries.
//!
//! Why the synchronous `postgres` client: the store traits are synchronous and are called
//! from the server's blocking pool, as the SQLite backend is.
//!
//! Concurrency, in one place: every write is one transaction at READ COMMITTED. Claims of a
//! payer serialize on that payer's `payer_clock` row (the fair order is one sequence per
//! payer) and take chunk rows `FOR UPDATE SKIP LOCKED`; a chunk's result locks its
//! submission, then its chunk row (the order every writer of both keeps); registry and
//! master changes of a payer serialize on an advisory lock, so the lifecycle rules checked
//! in the transaction cannot be slipped past by a concurrent change on another node. A
//! deadlock or serialization failure the database reports is retried.

#![forbid(unsafe_code)]

mod feed;
mod registry;
mod submissions;

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, GenericClient, NoTls};
use tenken_model::{Digest, Payer, YearMonth};
use tenken_store::{
    AccessStore, Audience, BlobStore, ChangeFeed, Notice, Role, Store, StoreError, TokenInfo, WindowOverride,
};

/// The advisory lock key the migrations run under (`tenken` in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_6e6b_656e;
/// The advisory lock key of the first start's bootstrap (`tenkenb`).
const BOOTSTRAP_LOCK: i64 = 0x7465_6e6b_656e_62;

/// The schema, in order; `schema_version` holds how many have run. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: content-addressed blobs (claim files, plugin components, master files).
    "CREATE TABLE blobs(digest TEXT PRIMARY KEY, bytes BYTEA NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    // 2: access: tokens (only their hashes), acceptance-window overrides, notices.
    r#"
    CREATE TABLE tokens(id BIGSERIAL PRIMARY KEY, hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('institution', 'staff', 'admin')),
        institution TEXT, payer TEXT CHECK (payer IN ('ssk', 'kokuho')), label TEXT NOT NULL,
        created_ms BIGINT NOT NULL, revoked BOOLEAN NOT NULL DEFAULT false);
    CREATE TABLE windows(payer TEXT NOT NULL, billing_month TEXT NOT NULL, opens_ms BIGINT NOT NULL,
        closes_ms BIGINT NOT NULL, updated_by BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
        PRIMARY KEY (payer, billing_month));
    CREATE TABLE notices(id BIGSERIAL PRIMARY KEY, payer TEXT, audience TEXT NOT NULL, message TEXT NOT NULL,
        created_ms BIGINT NOT NULL, created_by BIGINT NOT NULL);
    "#,
    // 3: submissions, claimed chunks (fair order, fencing), results, pins, nodes.
    r#"
    CREATE TABLE submissions(id BIGSERIAL PRIMARY KEY, reception TEXT NOT NULL DEFAULT '',
        payer TEXT NOT NULL CHECK (payer IN ('ssk', 'kokuho')), institution TEXT NOT NULL,
        billing_month TEXT NOT NULL, digest TEXT NOT NULL REFERENCES blobs(digest), bytes BIGINT NOT NULL,
        receipts BIGINT NOT NULL, state TEXT NOT NULL, chunks BIGINT NOT NULL, chunk_receipts BIGINT NOT NULL,
        chunks_done BIGINT NOT NULL DEFAULT 0, n_error BIGINT NOT NULL DEFAULT 0, n_warning BIGINT NOT NULL DEFAULT 0,
        n_info BIGINT NOT NULL DEFAULT 0, findings_dropped BIGINT NOT NULL DEFAULT 0, idempotency_key TEXT,
        token_id BIGINT NOT NULL, accepted_ms BIGINT NOT NULL, checked_ms BIGINT, confirmed_ms BIGINT,
        supersedes BIGINT, superseded_by BIGINT);
    CREATE UNIQUE INDEX submissions_idem ON submissions(token_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX submissions_month ON submissions(payer, institution, billing_month);
    CREATE INDEX submissions_pending ON submissions(state) WHERE state IN ('queued', 'checking');
    CREATE TABLE withdrawn_receipts(submission BIGINT NOT NULL, receipt BIGINT NOT NULL, PRIMARY KEY (submission, receipt));
    CREATE TABLE chunk_results(submission BIGINT NOT NULL, idx BIGINT NOT NULL, owner BIGINT NOT NULL,
        findings JSONB NOT NULL, n_error BIGINT NOT NULL, n_warning BIGINT NOT NULL, n_info BIGINT NOT NULL,
        done_ms BIGINT NOT NULL, decision JSONB NOT NULL, PRIMARY KEY (submission, idx));
    CREATE TABLE final_findings(submission BIGINT PRIMARY KEY, findings JSONB NOT NULL);
    CREATE TABLE check_pins(submission BIGINT PRIMARY KEY, pin JSONB NOT NULL);
    CREATE TABLE nodes(owner BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, started_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL, heartbeat_ms BIGINT NOT NULL, stats JSONB NOT NULL DEFAULT '{}');
    CREATE TABLE chunks(submission BIGINT NOT NULL, idx BIGINT NOT NULL, payer TEXT NOT NULL,
        institution TEXT NOT NULL, cost BIGINT NOT NULL, node BIGINT, fence BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (submission, idx));
    CREATE INDEX chunks_ready ON chunks(payer, institution, submission, idx) WHERE node IS NULL;
    CREATE INDEX chunks_claimed ON chunks(node) WHERE node IS NOT NULL;
    CREATE TABLE tenants(payer TEXT NOT NULL, institution TEXT NOT NULL, served BIGINT NOT NULL DEFAULT 0,
        ready BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (payer, institution));
    CREATE INDEX tenants_ready ON tenants(payer, served, institution) WHERE ready > 0;
    CREATE TABLE payer_clock(payer TEXT PRIMARY KEY, vclock BIGINT NOT NULL);
    INSERT INTO payer_clock VALUES ('ssk', 0), ('kokuho', 0);
    CREATE SEQUENCE fence_seq;
    "#,
    // 4: the registry (plugins, approvals, keys, release sets, audit, regression corpus)
    // and master versions; every audit event notifies the other nodes (a swap).
    r#"
    CREATE TABLE plugins(payer TEXT NOT NULL, digest TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
        contract TEXT NOT NULL, described JSONB NOT NULL, bytes BIGINT NOT NULL, uploaded_by BIGINT NOT NULL,
        uploaded_ms BIGINT NOT NULL, signed_by TEXT, state TEXT NOT NULL, validation JSONB,
        PRIMARY KEY (payer, digest));
    CREATE TABLE plugin_approvals(payer TEXT NOT NULL, digest TEXT NOT NULL, approver BIGINT NOT NULL,
        at_ms BIGINT NOT NULL, PRIMARY KEY (payer, digest, approver));
    CREATE TABLE signing_keys(payer TEXT NOT NULL, key_hex TEXT NOT NULL, added_by BIGINT NOT NULL,
        added_ms BIGINT NOT NULL, PRIMARY KEY (payer, key_hex));
    CREATE TABLE release_sets(id BIGSERIAL PRIMARY KEY, payer TEXT NOT NULL, from_month TEXT NOT NULL,
        plugins TEXT[] NOT NULL, state TEXT NOT NULL, created_by BIGINT NOT NULL, created_ms BIGINT NOT NULL,
        reason TEXT NOT NULL);
    CREATE INDEX release_sets_active ON release_sets(payer, state);
    CREATE TABLE audit(id BIGSERIAL PRIMARY KEY, payer TEXT NOT NULL, actor BIGINT NOT NULL, at_ms BIGINT NOT NULL,
        action TEXT NOT NULL, digest TEXT, release_set BIGINT, reason TEXT NOT NULL);
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE FUNCTION audit_notify() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_notify('tenken_swap',
            NEW.payer || ' ' || COALESCE(current_setting('tenken.origin', true), '')); RETURN NULL; END $$;
    CREATE TRIGGER audit_notify AFTER INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_notify();
    CREATE TABLE regression(id BIGSERIAL PRIMARY KEY, payer TEXT NOT NULL, name TEXT NOT NULL,
        digest TEXT NOT NULL, expected JSONB NOT NULL, added_by BIGINT NOT NULL, added_ms BIGINT NOT NULL);
    CREATE TABLE master_versions(id BIGSERIAL PRIMARY KEY, payer TEXT NOT NULL, from_month TEXT NOT NULL,
        digest TEXT NOT NULL, sources JSONB NOT NULL, state TEXT NOT NULL, provided_by TEXT, report JSONB NOT NULL,
        created_by BIGINT NOT NULL, created_ms BIGINT NOT NULL, reason TEXT NOT NULL);
    CREATE TABLE master_approvals(version BIGINT NOT NULL, approver BIGINT NOT NULL, approver_payer TEXT NOT NULL,
        at_ms BIGINT NOT NULL, PRIMARY KEY (version, approver));
    "#,
];

/// Connection settings and bounds.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections this process holds at most, connections.
    pub connections_max: usize,
    /// Longest wait for a free connection before the store answers busy, milliseconds.
    pub connection_wait_ms_max: u64,
    /// Longest a statement may run (`statement_timeout`), milliseconds.
    pub statement_ms_max: u64,
    /// Longest a session may sit idle inside a transaction before the database ends it
    /// (`idle_in_transaction_session_timeout`), milliseconds: a node frozen (a long GC-like
    /// pause, SIGSTOP) inside a claim would otherwise hold its row locks, and every other
    /// node's claims would wait for it.
    pub transaction_idle_ms_max: u64,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            connections_max: 8,
            connection_wait_ms_max: 2_000,
            statement_ms_max: 30_000,
            transaction_idle_ms_max: 2_000,
        }
    }
}

/// A database error as the store's: a lost connection, a database that is shutting down or
/// starting, or a statement cut by its timeout is `Unavailable` (503 + Retry-After: nothing
/// was written); anything else is a backend error.
fn db(e: postgres::Error) -> StoreError {
    use postgres::error::SqlState;
    let transient = [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::QUERY_CANCELED,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    ];
    match e.code() {
        None => StoreError::Unavailable(e.to_string()),
        Some(c) if transient.contains(c) => StoreError::Unavailable(e.to_string()),
        Some(_) if e.is_closed() => StoreError::Unavailable(e.to_string()),
        Some(_) => StoreError::Backend(e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())),
    }
}

/// What a transaction body fails with: the database's error (retried when the database
/// asks for it) or the store's (a refusal, returned as is).
enum TxError {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> TxError {
        TxError::Pg(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> TxError {
        TxError::Store(e)
    }
}

type TxResult<T> = Result<T, TxError>;

/// Attempts of a transaction the database aborted as a deadlock or serialization failure.
const TX_ATTEMPTS_MAX: u32 = 5;

/// A store's origin: a random id every connection of the store sets as `tenken.origin`,
/// carried in its notifications, so that a node's own feed skips what the node itself
/// changed (it has acted on those already).
fn new_origin() -> String {
    let mut raw = [0u8; 8];
    let _ = getrandom::fill(&mut raw);
    hex::encode(raw)
}

/// Statements kept prepared per connection, at most (the store's SQL is a fixed set of
/// strings, well below this; the bound only guards against a bug that formats values into
/// SQL).
const STATEMENTS_CACHED_MAX: usize = 512;

/// A pooled connection and its prepared statements.
struct Conn {
    client: Client,
    stmts: std::collections::HashMap<String, postgres::Statement>,
}

impl Conn {
    fn db(&mut self) -> Db<'_, Client> {
        Db { c: &mut self.client, stmts: &mut self.stmts }
    }

    fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<postgres::Row>, postgres::Error> {
        self.db().query(sql, params)
    }

    fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<postgres::Row, postgres::Error> {
        self.db().query_one(sql, params)
    }

    fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<postgres::Row>, postgres::Error> {
        self.db().query_opt(sql, params)
    }

    fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        self.db().execute(sql, params)
    }
}

/// A connection, or its open transaction, that runs every statement prepared: parsed and
/// planned once per connection instead of at every call (measured: preparing each
/// statement anew cost PostgreSQL most of its CPU per acceptance, see PERFORMANCE.md).
pub(crate) struct Db<'a, C: GenericClient> {
    c: &'a mut C,
    stmts: &'a mut std::collections::HashMap<String, postgres::Statement>,
}

type Params<'p> = [&'p (dyn postgres::types::ToSql + Sync)];

impl<C: GenericClient> Db<'_, C> {
    fn stmt(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql)?;
        if self.stmts.len() >= STATEMENTS_CACHED_MAX {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<postgres::Row>, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.query(&s, params)
    }

    pub(crate) fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<postgres::Row, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.query_one(&s, params)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<postgres::Row>, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.query_opt(&s, params)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        let s = self.stmt(sql)?;
        self.c.execute(&s, params)
    }
}

/// A bounded pool of connections: a caller waits at most `connection_wait_ms_max` for one,
/// then gets `StoreError::Busy` (never an unbounded wait). A connection that failed is
/// dropped and replaced on the next use, so a database restart heals by itself.
struct Pool {
    url: String,
    options: PgOptions,
    origin: String,
    idle: Mutex<(Vec<Conn>, usize)>,
    freed: Condvar,
}

impl Pool {
    fn connect(&self) -> Result<Client, StoreError> {
        let mut config: postgres::Config = self.url.parse().map_err(db)?;
        config.connect_timeout(Duration::from_millis(self.options.connection_wait_ms_max.max(1)));
        // A database that vanished without closing the connection (a network partition) is
        // noticed by keepalive probes instead of a statement hanging on a dead socket.
        config.keepalives(true).keepalives_idle(Duration::from_secs(5));
        config.options(&format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={} -c synchronous_commit=on -c tenken.origin={}",
            self.options.statement_ms_max, self.options.transaction_idle_ms_max, self.origin
        ));
        config.connect(NoTls).map_err(db)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let deadline = std::time::Instant::now() + Duration::from_millis(self.options.connection_wait_ms_max);
        let taken = {
            let mut g = self.idle.lock().unwrap();
            loop {
                if let Some(c) = g.0.pop() {
                    break Some(c);
                }
                if g.1 < self.options.connections_max {
                    g.1 += 1;
                    break None;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Busy { what: "the database connection pool" });
                }
                g = self.freed.wait_timeout(g, left).unwrap().0;
            }
        };
        let mut client = match taken.filter(|c| !c.client.is_closed()) {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => Conn { client: c, stmts: Default::default() },
                Err(e) => {
                    self.idle.lock().unwrap().1 -= 1;
                    self.freed.notify_one();
                    return Err(e);
                }
            },
        };
        let out = f(&mut client);
        let mut g = self.idle.lock().unwrap();
        if client.client.is_closed() {
            g.1 -= 1;
        } else {
            g.0.push(client);
        }
        drop(g);
        self.freed.notify_one();
        out
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    url: String,
    closed: std::sync::atomic::AtomicBool,
}

impl PgStore {
    /// Connects and brings the schema up to date. Migrations run in one transaction under
    /// an advisory lock: nodes starting together migrate once, the others wait and find the
    /// schema current.
    pub fn open(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let store = PgStore {
            pool: Pool {
                url: url.to_owned(),
                options,
                origin: new_origin(),
                idle: Mutex::new((Vec::new(), 0)),
                freed: Condvar::new(),
            },
            url: url.to_owned(),
            closed: std::sync::atomic::AtomicBool::new(false),
        };
        store.pool.with(|c| migrate(&mut c.client))?;
        Ok(store)
    }

    /// How many migrations the database has run.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.pool.with(|c| {
            let n: i32 = c.client.query_one("SELECT version FROM schema_version", &[]).map_err(db)?.get(0);
            Ok(n as usize)
        })
    }

    /// The migrations this build knows.
    pub fn migrations() -> usize {
        MIGRATIONS.len()
    }

    /// Runs `f` in one transaction on a pooled connection and commits; a deadlock or
    /// serialization failure is retried (up to `TX_ATTEMPTS_MAX` attempts), a refusal is
    /// returned as is and rolls everything back.
    fn tx<T>(&self, f: impl Fn(&mut Db<'_, postgres::Transaction<'_>>) -> TxResult<T>) -> Result<T, StoreError> {
        use postgres::error::SqlState;
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = self.pool.with(|c| {
                let mut run = || -> TxResult<T> {
                    let mut tx = c.client.transaction()?;
                    let v = f(&mut Db { c: &mut tx, stmts: &mut c.stmts })?;
                    tx.commit()?;
                    Ok(v)
                };
                Ok(run())
            })?;
            match out {
                Ok(v) => return Ok(v),
                Err(TxError::Store(e)) => return Err(e),
                Err(TxError::Pg(e))
                    if attempt < TX_ATTEMPTS_MAX
                        && matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                            || *c == SqlState::T_R_SERIALIZATION_FAILURE) =>
                {
                    tracing::debug!(attempt, error = %e, "transaction retried");
                }
                Err(TxError::Pg(e)) => return Err(db(e)),
            }
        }
    }

    /// A read on a pooled connection (no transaction of its own).
    fn read<T>(&self, f: impl FnOnce(&mut Db<'_, Client>) -> TxResult<T>) -> Result<T, StoreError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.pool.with(|c| match f(&mut c.db()) {
            Ok(v) => Ok(v),
            Err(TxError::Store(e)) => Err(e),
            Err(TxError::Pg(e)) => Err(db(e)),
        })
    }
}

impl Store for PgStore {
    fn blobs(&self) -> &dyn BlobStore {
        self
    }

    /// Refuses further calls and closes the idle connections here, on the caller's
    /// (blocking) thread: the synchronous client must not be dropped on an async runtime.
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let idle = std::mem::take(&mut self.pool.idle.lock().unwrap().0);
        drop(idle);
    }

    fn subscribe(&self) -> Result<Option<Box<dyn ChangeFeed>>, StoreError> {
        Ok(Some(Box::new(feed::PgFeed::connect(&self.url, &self.pool.options, &self.pool.origin)?)))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// A session-level advisory lock on a connection of its own: dropping the guard closes
    /// the connection, which releases the lock (so does a node that dies holding it).
    fn bootstrap_lock(&self) -> Result<Option<Box<dyn Send>>, StoreError> {
        let mut client = self.pool.connect()?;
        client.execute("SELECT pg_advisory_lock($1)", &[&BOOTSTRAP_LOCK]).map_err(db)?;
        Ok(Some(Box::new(client)))
    }
}

fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let mut tx = c.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)").map_err(db)?;
    let row = tx.query_opt("SELECT version FROM schema_version", &[]).map_err(db)?;
    let done = match row {
        Some(r) => r.get::<_, i32>(0) as usize,
        None => {
            tx.execute("INSERT INTO schema_version(version) VALUES (0)", &[]).map_err(db)?;
            0
        }
    };
    if done > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database schema is version {done}, newer than this build knows ({}); run the newer tenken",
            MIGRATIONS.len()
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(m).map_err(db)?;
        tracing::info!(migration = i + 1, "database schema migrated");
    }
    tx.execute("UPDATE schema_version SET version = $1", &[&(MIGRATIONS.len() as i32)]).map_err(db)?;
    tx.commit().map_err(db)
}

impl BlobStore for PgStore {
    /// Stores bytes under their digest; storing the same bytes again changes nothing. Durable
    /// when this returns (`synchronous_commit` on).
    fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = tenken_store::digest(bytes);
        let key = digest.to_string();
        self.pool.with(|c| {
            c.execute(
                "INSERT INTO blobs(digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                &[&key, &bytes],
            )
            .map_err(db)?;
            Ok(digest)
        })
    }

    /// The bytes stored under `digest`, checked against it: damaged bytes are an error, never
    /// a wrong file.
    fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let key = digest.to_string();
        let bytes: Vec<u8> = self.pool.with(|c| {
            c.query_opt("SELECT bytes FROM blobs WHERE digest = $1", &[&key])
                .map_err(db)?
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::Blob(format!("{digest} (not in the database)")))
        })?;
        if tenken_store::digest(&bytes) != *digest {
            return Err(StoreError::Blob(format!("{digest} (its bytes no longer match their digest)")));
        }
        Ok(bytes)
    }
}

fn payer_of(s: &str) -> Result<Payer, StoreError> {
    s.parse().map_err(|e: String| StoreError::Corrupt(format!("payer column: {e}")))
}

const TOKEN_COLS: &str = "id, role, institution, payer, label, created_ms, revoked";

fn token_info(r: &postgres::Row) -> Result<TokenInfo, StoreError> {
    let role = match r.get::<_, &str>(1) {
        "institution" => Role::Institution { institution: r.get::<_, Option<String>>(2).unwrap_or_default() },
        "staff" => Role::Staff { payer: payer_of(r.get::<_, Option<&str>>(3).unwrap_or(""))? },
        "admin" => Role::Admin,
        other => return Err(StoreError::Corrupt(format!("unknown role {other}"))),
    };
    Ok(TokenInfo { id: r.get(0), role, label: r.get(4), created_ms: r.get(5), revoked: r.get(6) })
}

impl AccessStore for PgStore {
    fn create_token(&self, role: Role, label: &str, now_ms: i64) -> Result<(i64, String), StoreError> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let secret = format!("tk_{}", hex::encode(raw));
        let hash = tenken_store::token_hash(&secret);
        let (kind, institution, payer) = match &role {
            Role::Institution { institution } => ("institution", Some(institution.clone()), None),
            Role::Staff { payer } => ("staff", None, Some(payer.as_str())),
            Role::Admin => ("admin", None, None),
        };
        let id = self.pool.with(|c| {
            c.query_one(
                "INSERT INTO tokens(hash, role, institution, payer, label, created_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&hash, &kind, &institution, &payer, &label, &now_ms],
            )
            .map(|r| r.get::<_, i64>(0))
            .map_err(db)
        })?;
        Ok((id, secret))
    }

    fn find_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        let hash = tenken_store::token_hash(secret);
        self.pool.with(|c| {
            c.query_opt(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = $1"), &[&hash])
                .map_err(db)?
                .as_ref()
                .map(token_info)
                .transpose()
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.pool.with(|c| {
            c.query(&format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY id"), &[])
                .map_err(db)?
                .iter()
                .map(token_info)
                .collect()
        })
    }

    fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        self.pool.with(|c| Ok(c.execute("UPDATE tokens SET revoked = true WHERE id = $1", &[&id]).map_err(db)? == 1))
    }

    fn window(&self, payer: Payer, billing_month: YearMonth) -> Result<Option<WindowOverride>, StoreError> {
        self.pool.with(|c| {
            Ok(c.query_opt(
                "SELECT opens_ms, closes_ms, updated_by, updated_ms FROM windows WHERE payer = $1 AND billing_month = $2",
                &[&payer.as_str(), &billing_month.to_string()],
            )
            .map_err(db)?
            .map(|r| WindowOverride {
                payer,
                billing_month,
                opens_ms: r.get(0),
                closes_ms: r.get(1),
                updated_by: r.get(2),
                updated_ms: r.get(3),
            }))
        })
    }

    fn set_window(&self, w: WindowOverride) -> Result<(), StoreError> {
        self.pool.with(|c| {
            c.execute(
                "INSERT INTO windows(payer, billing_month, opens_ms, closes_ms, updated_by, updated_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payer, billing_month) DO UPDATE SET \
                 opens_ms = excluded.opens_ms, closes_ms = excluded.closes_ms, \
                 updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
                &[
                    &w.payer.as_str(),
                    &w.billing_month.to_string(),
                    &w.opens_ms,
                    &w.closes_ms,
                    &w.updated_by,
                    &w.updated_ms,
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
        let id = self.pool.with(|c| {
            c.query_one(
                "INSERT INTO notices(payer, audience, message, created_ms, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&payer.map(|p| p.as_str()), &audience.as_str(), &message, &now_ms, &by],
            )
            .map(|r| r.get::<_, i64>(0))
            .map_err(db)
        })?;
        Ok(Notice { id, payer, audience, message: message.to_owned(), created_ms: now_ms, created_by: by })
    }

    fn notices(&self, payer: Option<Payer>, audience: Audience, limit: u32) -> Result<Vec<Notice>, StoreError> {
        let limit = limit.clamp(1, 1000) as i64;
        self.pool.with(|c| {
            c.query(
                "SELECT id, payer, message, created_ms, created_by FROM notices \
                 WHERE ($1::TEXT IS NULL OR payer IS NULL OR payer = $1) AND audience = $2 ORDER BY id DESC LIMIT $3",
                &[&payer.map(|p| p.as_str()), &audience.as_str(), &limit],
            )
            .map_err(db)?
            .iter()
            .map(|r| {
                Ok(Notice {
                    id: r.get(0),
                    payer: r.get::<_, Option<&str>>(1).map(payer_of).transpose()?,
                    audience,
                    message: r.get(2),
                    created_ms: r.get(3),
                    created_by: r.get(4),
                })
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full pool answers Busy after `connection_wait_ms_max`, never an unbounded wait; a
    /// freed connection serves the next caller.
    #[test]
    fn a_full_pool_answers_busy_instead_of_waiting_forever() {
        let Ok(url) = std::env::var("TENKEN_TEST_DATABASE_URL") else {
            assert_ne!(
                std::env::var("TENKEN_REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "TENKEN_TEST_DATABASE_URL is not set"
            );
            return;
        };
        let opts = PgOptions { connections_max: 1, connection_wait_ms_max: 150, ..PgOptions::default() };
        let store = std::sync::Arc::new(PgStore::open(&url, opts).unwrap());
        let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                store
                    .pool
                    .with(|_| {
                        held.wait();
                        release.wait();
                        Ok(())
                    })
                    .unwrap()
            });
            held.wait();
            let t0 = std::time::Instant::now();
            let e = store.pool.with(|_| Ok(())).unwrap_err();
            assert!(matches!(e, StoreError::Busy { .. }), "{e}");
            assert!(t0.elapsed() >= Duration::from_millis(150) && t0.elapsed() < Duration::from_secs(5));
            release.wait();
        });
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len(), "the freed connection serves again");
    }
}
