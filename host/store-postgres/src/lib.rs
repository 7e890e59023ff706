//! The PostgreSQL store backend, for several nodes on one database (issue 12). Built in
//! steps: this step holds the connection pool, the schema migrations (run at start under an
//! advisory lock, so nodes may start together), the content-addressed blobs, which live
//! in the database so that no shared file system is needed, and the access aggregate
//! (tokens, window overrides, notices). The other aggregates (submissions and claimed
//! chunks, registry, masters) follow on the same pool.
//!
//! Why the synchronous `postgres` client: the store traits are synchronous and are called
//! from the server's blocking pool, as the SQLite backend is.

#![forbid(unsafe_code)]

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls};
use tenken_model::{Digest, Payer, YearMonth};
use tenken_store::{AccessStore, Audience, BlobStore, Notice, Role, StoreError, TokenInfo, WindowOverride};

/// The advisory lock key the migrations run under (`tenken` in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_6e6b_656e;

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
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions { connections_max: 8, connection_wait_ms_max: 2_000, statement_ms_max: 30_000 }
    }
}

fn db(e: postgres::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A bounded pool of connections: a caller waits at most `connection_wait_ms_max` for one,
/// then gets `StoreError::Busy` (never an unbounded wait). A connection that failed is
/// dropped and replaced on the next use, so a database restart heals by itself.
struct Pool {
    url: String,
    options: PgOptions,
    idle: Mutex<(Vec<Client>, usize)>,
    freed: Condvar,
}

impl Pool {
    fn connect(&self) -> Result<Client, StoreError> {
        let mut config: postgres::Config = self.url.parse().map_err(db)?;
        config.connect_timeout(Duration::from_millis(self.options.connection_wait_ms_max.max(1)));
        config.options(&format!("-c statement_timeout={} -c synchronous_commit=on", self.options.statement_ms_max));
        config.connect(NoTls).map_err(db)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
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
        let mut client = match taken.filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.idle.lock().unwrap().1 -= 1;
                    self.freed.notify_one();
                    return Err(e);
                }
            },
        };
        let out = f(&mut client);
        let mut g = self.idle.lock().unwrap();
        if client.is_closed() {
            g.1 -= 1;
        } else {
            g.0.push(client);
        }
        drop(g);
        self.freed.notify_one();
        out
    }
}

/// The PostgreSQL store (so far: migrations and blobs).
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects and brings the schema up to date. Migrations run in one transaction under
    /// an advisory lock: nodes starting together migrate once, the others wait and find the
    /// schema current.
    pub fn open(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let store = PgStore {
            pool: Pool { url: url.to_owned(), options, idle: Mutex::new((Vec::new(), 0)), freed: Condvar::new() },
        };
        store.pool.with(migrate)?;
        Ok(store)
    }

    /// How many migrations the database has run.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.pool.with(|c| {
            let n: i32 = c.query_one("SELECT version FROM schema_version", &[]).map_err(db)?.get(0);
            Ok(n as usize)
        })
    }

    /// The migrations this build knows.
    pub fn migrations() -> usize {
        MIGRATIONS.len()
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
