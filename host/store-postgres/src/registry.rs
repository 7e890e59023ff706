//! The registry (plugins, approvals, signing keys, release sets, audit log, regression
//! corpus) and master versions on PostgreSQL. Every change of a payer runs under that
//! payer's advisory lock, so a lifecycle rule checked in the transaction holds at commit
//! whichever node made the change; every audit event notifies the other nodes (a trigger).

use postgres::GenericClient;
use postgres::types::Json;
use tenken_model::{Digest, Finding, Payer, YearMonth};
use tenken_store::*;

use crate::submissions::digest_from_sql;
use crate::{Db, PgStore, TxError, TxResult, payer_of};

/// How "from the beginning" is stored (sorts first), as in the SQLite backend.
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

/// Serializes the registry and master changes of one payer across the cluster.
fn lock_payer(c: &mut Db<'_, impl GenericClient>, payer: Payer) -> TxResult<()> {
    c.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", &[&format!("registry/{}", payer.as_str())])?;
    Ok(())
}

fn refused(r: Refusal) -> TxError {
    TxError::Store(StoreError::Refused(r))
}

const PLUGIN_COLS: &str =
    "payer, digest, name, version, contract, described, bytes, uploaded_by, uploaded_ms, signed_by, state, validation";

fn load_plugins(
    c: &mut Db<'_, impl GenericClient>,
    clause: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> TxResult<Vec<PluginRecord>> {
    let rows = c.query(&format!("SELECT {PLUGIN_COLS} FROM plugins {clause}"), args)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (payer, digest): (&str, &str) = (r.get(0), r.get(1));
        let approvals = c
            .query(
                "SELECT approver FROM plugin_approvals WHERE payer = $1 AND digest = $2 ORDER BY at_ms, approver",
                &[&payer, &digest],
            )?
            .iter()
            .map(|a| a.get(0))
            .collect();
        out.push(PluginRecord {
            payer: payer_of(payer)?,
            digest: digest_from_sql(digest)?,
            name: r.get(2),
            version: r.get(3),
            contract: r.get(4),
            described: r.get::<_, Json<Described>>(5).0,
            bytes: r.get::<_, i64>(6) as u64,
            uploaded_by: r.get(7),
            uploaded_ms: r.get(8),
            signed_by: r.get(9),
            state: PluginState::parse(r.get(10))?,
            validation: r.get::<_, Option<Json<ValidationReport>>>(11).map(|j| j.0),
            approvals,
        });
    }
    Ok(out)
}

fn plugin_opt(c: &mut Db<'_, impl GenericClient>, payer: Payer, digest: &Digest) -> TxResult<Option<PluginRecord>> {
    Ok(load_plugins(c, "WHERE payer = $1 AND digest = $2", &[&payer.as_str(), &digest.to_string()])?.pop())
}

fn must_plugin(c: &mut Db<'_, impl GenericClient>, payer: Payer, digest: &Digest) -> TxResult<PluginRecord> {
    plugin_opt(c, payer, digest)?
        .ok_or_else(|| TxError::Store(StoreError::Missing { what: format!("{payer} plugin {digest}") }))
}

fn audit_tx(c: &mut Db<'_, impl GenericClient>, e: &AuditEvent) -> TxResult<()> {
    c.execute(
        "INSERT INTO audit(payer, actor, at_ms, action, digest, release_set, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&e.payer.as_str(), &e.actor, &e.at_ms, &e.action, &e.digest.map(|d| d.to_string()), &e.release_set, &e.reason],
    )?;
    Ok(())
}

fn load_sets(
    c: &mut Db<'_, impl GenericClient>,
    clause: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> TxResult<Vec<ReleaseSet>> {
    c.query(
        &format!(
            "SELECT id, payer, from_month, plugins, state, created_by, created_ms, reason FROM release_sets {clause}"
        ),
        args,
    )?
    .iter()
    .map(|r| {
        Ok(ReleaseSet {
            id: r.get(0),
            payer: payer_of(r.get(1))?,
            from_month: month_from_sql(r.get(2))?,
            plugins: r.get::<_, Vec<String>>(3).iter().map(|d| digest_from_sql(d)).collect::<Result<_, _>>()?,
            state: ReleaseState::parse(r.get(4))?,
            created_by: r.get(5),
            created_ms: r.get(6),
            reason: r.get(7),
        })
    })
    .collect()
}

fn load_masters(
    c: &mut Db<'_, impl GenericClient>,
    clause: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> TxResult<Vec<MasterVersion>> {
    let rows = c.query(
        &format!(
            "SELECT id, payer, from_month, digest, sources, state, provided_by, report, created_by, created_ms, reason \
             FROM master_versions {clause}"
        ),
        args,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        let approvals = c
            .query(
                "SELECT approver, approver_payer FROM master_approvals WHERE version = $1 ORDER BY at_ms, approver",
                &[&id],
            )?
            .iter()
            .map(|a| Ok((a.get::<_, i64>(0), payer_of(a.get(1))?)))
            .collect::<Result<_, StoreError>>()?;
        let state: &str = r.get(5);
        out.push(MasterVersion {
            id,
            payer: payer_of(r.get(1))?,
            from_month: month_from_sql(r.get(2))?,
            digest: digest_from_sql(r.get(3))?,
            sources: r.get::<_, Json<Vec<MasterSource>>>(4).0,
            state: MasterState::parse(state)
                .ok_or_else(|| StoreError::Corrupt(format!("master version {id}: unknown state {state:?}")))?,
            provided_by: r.get::<_, Option<&str>>(6).map(payer_of).transpose()?,
            report: r.get::<_, Json<MasterReport>>(7).0,
            created_by: r.get(8),
            created_ms: r.get(9),
            reason: r.get(10),
            approvals,
        });
    }
    Ok(out)
}

fn must_master(c: &mut Db<'_, impl GenericClient>, payer: Payer, id: i64) -> TxResult<MasterVersion> {
    load_masters(c, "WHERE id = $1 AND payer = $2", &[&id, &payer.as_str()])?
        .pop()
        .ok_or_else(|| TxError::Store(StoreError::Missing { what: format!("{payer} master version {id}") }))
}

/// Rolls back the active version `v` itself (see `MasterStore::activate_master`).
fn undo_master(
    c: &mut Db<'_, impl GenericClient>,
    payer: Payer,
    v: &MasterVersion,
    actor: i64,
    reason: &str,
    now_ms: i64,
) -> TxResult<MasterVersion> {
    let earlier: Option<i64> = c
        .query_opt(
            "SELECT id FROM master_versions WHERE payer = $1 AND from_month = $2 AND id < $3 \
             AND state IN ('superseded', 'rolled-back') ORDER BY id DESC LIMIT 1",
            &[&payer.as_str(), &month_to_sql(v.from_month), &v.id],
        )?
        .map(|r| r.get(0));
    let others: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM master_versions WHERE payer = $1 AND state = 'active' AND id != $2",
            &[&payer.as_str(), &v.id],
        )?
        .get(0);
    if earlier.is_none() && others == 0 {
        return Err(refused(Refusal::MasterState {
            id: v.id,
            state: v.state,
            action: "rolling it back (no other master version would be in force; activate another first)",
        }));
    }
    c.execute("UPDATE master_versions SET state = 'rolled-back' WHERE id = $1", &[&v.id])?;
    let now_in_force = match earlier {
        Some(e) => {
            c.execute("UPDATE master_versions SET state = 'active' WHERE id = $1", &[&e])?;
            format!("version {e} (same months) is in force again")
        }
        None => format!("{} is covered by the versions of earlier months again", month_to_sql(v.from_month)),
    };
    let what = format!("master version {} rolled back; {now_in_force}: {reason}", v.id);
    audit_tx(c, &AuditEvent::new(payer, actor, now_ms, "master-rollback", None, None, &what))?;
    must_master(c, payer, v.id)
}

impl RegistryStore for PgStore {
    fn put_plugin(&self, p: NewPlugin) -> Result<(PluginRecord, bool), StoreError> {
        if let Some(existing) = self.plugin(p.payer, &p.digest)? {
            return Ok((existing, false));
        }
        let described = Json(&p.described);
        let size = p.bytes.len() as i64;
        self.tx(|tx| {
            lock_payer(tx, p.payer)?;
            tx.execute(
                "INSERT INTO blobs(digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                &[&p.digest.to_string(), &p.bytes],
            )?;
            let n = tx.execute(
                "INSERT INTO plugins(payer, digest, name, version, contract, described, bytes, uploaded_by, \
                 uploaded_ms, signed_by, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT DO NOTHING",
                &[
                    &p.payer.as_str(),
                    &p.digest.to_string(),
                    &p.name,
                    &p.version,
                    &p.contract,
                    &described,
                    &size,
                    &p.uploaded_by,
                    &p.now_ms,
                    &p.signed_by,
                    &p.state.as_str(),
                ],
            )?;
            if n == 1 {
                let why = format!("{} {} ({} bytes)", p.name, p.version, size);
                audit_tx(
                    tx,
                    &AuditEvent::new(p.payer, p.uploaded_by, p.now_ms, "upload", Some(&p.digest), None, &why),
                )?;
            }
            Ok((must_plugin(tx, p.payer, &p.digest)?, n == 1))
        })
    }

    fn plugin(&self, payer: Payer, digest: &Digest) -> Result<Option<PluginRecord>, StoreError> {
        self.read(|c| plugin_opt(c, payer, digest))
    }

    fn plugins(&self, payer: Payer) -> Result<Vec<PluginRecord>, StoreError> {
        self.read(|c| load_plugins(c, "WHERE payer = $1 ORDER BY uploaded_ms DESC, name", &[&payer.as_str()]))
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
        let validation = validation.as_ref().map(Json);
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            must_plugin(tx, payer, digest)?;
            if state == PluginState::Retired {
                let sets: Vec<i64> = load_sets(tx, "WHERE payer = $1 AND state = 'active'", &[&payer.as_str()])?
                    .into_iter()
                    .filter(|s| s.plugins.contains(digest))
                    .map(|s| s.id)
                    .collect();
                if !sets.is_empty() {
                    return Err(refused(Refusal::InUse { digest: digest.to_string(), sets }));
                }
            }
            tx.execute(
                "UPDATE plugins SET state = $3, validation = COALESCE($4, validation) WHERE payer = $1 AND digest = $2",
                &[&payer.as_str(), &digest.to_string(), &state.as_str(), &validation],
            )?;
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, state.as_str(), Some(digest), None, reason))?;
            must_plugin(tx, payer, digest)
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
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let rec = must_plugin(tx, payer, digest)?;
            if approver_payer != payer {
                return Err(refused(Refusal::OtherPayer { approver: approver_payer, payer }));
            }
            if rec.uploaded_by == approver {
                return Err(refused(Refusal::SelfApproval));
            }
            if !matches!(rec.state, PluginState::Validated | PluginState::Approved) {
                return Err(refused(Refusal::NotApprovable {
                    digest: digest.to_string(),
                    state: rec.state.as_str().to_owned(),
                }));
            }
            tx.execute(
                "INSERT INTO plugin_approvals(payer, digest, approver, at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&payer.as_str(), &digest.to_string(), &approver, &now_ms],
            )?;
            audit_tx(tx, &AuditEvent::new(payer, approver, now_ms, "approval", Some(digest), None, ""))?;
            let rec = must_plugin(tx, payer, digest)?;
            if rec.state == PluginState::Validated && rec.approvals.len() >= required.max(1) as usize {
                tx.execute("UPDATE plugins SET state = 'approved' WHERE payer = $1 AND digest = $2", &[
                    &payer.as_str(),
                    &digest.to_string(),
                ])?;
                let why = format!("{} approval(s)", rec.approvals.len());
                audit_tx(tx, &AuditEvent::new(payer, approver, now_ms, "approved", Some(digest), None, &why))?;
                return must_plugin(tx, payer, digest);
            }
            Ok(rec)
        })
    }

    fn add_signing_key(&self, payer: Payer, key_hex: &str, actor: i64, now_ms: i64) -> Result<(), StoreError> {
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            tx.execute(
                "INSERT INTO signing_keys(payer, key_hex, added_by, added_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&payer.as_str(), &key_hex, &actor, &now_ms],
            )?;
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "signing-key", None, None, key_hex))
        })
    }

    fn signing_keys(&self, payer: Payer) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            Ok(c.query(
                "SELECT key_hex FROM signing_keys WHERE payer = $1 ORDER BY added_ms, key_hex",
                &[&payer.as_str()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
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
        let list: Vec<String> = plugins.iter().map(Digest::to_string).collect();
        let from = month_to_sql(from_month);
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            for d in plugins {
                match plugin_opt(tx, payer, d)? {
                    Some(r) if r.state == PluginState::Approved => {}
                    Some(r) => {
                        return Err(refused(Refusal::NotApproved {
                            digest: d.to_string(),
                            state: r.state.as_str().to_owned(),
                        }));
                    }
                    None => return Err(TxError::Store(StoreError::Missing { what: format!("{payer} plugin {d}") })),
                }
            }
            tx.execute(
                "UPDATE release_sets SET state = 'superseded' WHERE payer = $1 AND from_month = $2 AND state = 'active'",
                &[&payer.as_str(), &from],
            )?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO release_sets(payer, from_month, plugins, state, created_by, created_ms, reason) \
                     VALUES ($1, $2, $3, 'active', $4, $5, $6) RETURNING id",
                    &[&payer.as_str(), &from, &list, &actor, &now_ms, &reason],
                )?
                .get(0);
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "activate", None, Some(id), &format!("from {from}: {reason}")))?;
            load_sets(tx, "WHERE id = $1", &[&id])?
                .pop()
                .ok_or(TxError::Store(StoreError::Corrupt("release set vanished".into())))
        })
    }

    fn rollback(&self, payer: Payer, to: i64, actor: i64, reason: &str, now_ms: i64) -> Result<ReleaseSet, StoreError> {
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let target = load_sets(tx, "WHERE id = $1 AND payer = $2", &[&to, &payer.as_str()])?
                .pop()
                .ok_or_else(|| TxError::Store(StoreError::Missing { what: format!("{payer} release set {to}") }))?;
            for d in &target.plugins {
                if let Some(r) = plugin_opt(tx, payer, d)?
                    && r.state != PluginState::Approved
                {
                    return Err(refused(Refusal::NotApproved {
                        digest: d.to_string(),
                        state: r.state.as_str().to_owned(),
                    }));
                }
            }
            tx.execute(
                "UPDATE release_sets SET state = 'rolled-back' WHERE payer = $1 AND from_month = $2 \
                 AND state = 'active' AND id != $3",
                &[&payer.as_str(), &month_to_sql(target.from_month), &to],
            )?;
            tx.execute("UPDATE release_sets SET state = 'active' WHERE id = $1", &[&to])?;
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "rollback", None, Some(to), reason))?;
            load_sets(tx, "WHERE id = $1", &[&to])?
                .pop()
                .ok_or(TxError::Store(StoreError::Corrupt("release set vanished".into())))
        })
    }

    fn release_sets(&self, payer: Payer) -> Result<Vec<ReleaseSet>, StoreError> {
        self.read(|c| load_sets(c, "WHERE payer = $1 ORDER BY id DESC", &[&payer.as_str()]))
    }

    fn release_set(&self, payer: Payer, id: i64) -> Result<Option<ReleaseSet>, StoreError> {
        self.read(|c| Ok(load_sets(c, "WHERE id = $1 AND payer = $2", &[&id, &payer.as_str()])?.pop()))
    }

    fn audit(&self, payer: Payer, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT id, actor, at_ms, action, digest, release_set, reason FROM audit WHERE payer = $1 \
                 ORDER BY id DESC LIMIT $2",
                &[&payer.as_str(), &(limit.clamp(1, 10_000) as i64)],
            )?
            .iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: r.get(0),
                    payer,
                    actor: r.get(1),
                    at_ms: r.get(2),
                    action: r.get(3),
                    digest: r.get::<_, Option<&str>>(4).map(digest_from_sql).transpose()?,
                    release_set: r.get(5),
                    reason: r.get(6),
                })
            })
            .collect()
        })
    }

    fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError> {
        self.tx(|tx| audit_tx(tx, &e))
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
        let json = Json(expected);
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO blobs(digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                &[&digest.to_string(), &bytes],
            )?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO regression(payer, name, digest, expected, added_by, added_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&payer.as_str(), &name, &digest.to_string(), &json, &actor, &now_ms],
                )?
                .get(0);
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "regression-case", None, None, name))?;
            Ok(RegressionCase {
                id,
                payer,
                name: name.to_owned(),
                digest,
                expected: expected.to_vec(),
                added_by: actor,
                added_ms: now_ms,
            })
        })
    }

    fn regression(&self, payer: Payer) -> Result<Vec<RegressionCase>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT id, name, digest, expected, added_by, added_ms FROM regression WHERE payer = $1 ORDER BY id",
                &[&payer.as_str()],
            )?
            .iter()
            .map(|r| {
                Ok(RegressionCase {
                    id: r.get(0),
                    payer,
                    name: r.get(1),
                    digest: digest_from_sql(r.get(2))?,
                    expected: r.get::<_, Json<Vec<Finding>>>(3).0,
                    added_by: r.get(4),
                    added_ms: r.get(5),
                })
            })
            .collect()
        })
    }
}

impl MasterStore for PgStore {
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
        let from = month_to_sql(from_month);
        let (sources, report) = (Json(sources), Json(report));
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO master_versions(payer, from_month, digest, sources, state, provided_by, report, \
                     created_by, created_ms, reason) VALUES ($1, $2, $3, $4, 'proposed', $5, $6, $7, $8, $9) RETURNING id",
                    &[
                        &payer.as_str(),
                        &from,
                        &digest.to_string(),
                        &sources,
                        &provided_by.map(|p| p.as_str()),
                        &report,
                        &actor,
                        &now_ms,
                        &reason,
                    ],
                )?
                .get(0);
            let what = match provided_by {
                Some(p) => format!("master version {id} ({digest}) converted from {p}'s"),
                None => format!("master version {id} ({digest}) from {from}"),
            };
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "master-version", None, None, &what))?;
            must_master(tx, payer, id)
        })
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
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            tx.execute(
                "UPDATE master_versions SET state = 'superseded' WHERE payer = $1 AND from_month = $2 \
                 AND state = 'active' AND id != $3",
                &[&payer.as_str(), &month_to_sql(v.from_month), &v.id],
            )?;
            tx.execute("UPDATE master_versions SET state = 'active' WHERE id = $1", &[&v.id])?;
            let what = format!("master version {}: {reason}", v.id);
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "master-install", None, None, &what))?;
            must_master(tx, payer, v.id)
        })
    }

    fn master_versions(&self, payer: Payer) -> Result<Vec<MasterVersion>, StoreError> {
        self.read(|c| load_masters(c, "WHERE payer = $1 ORDER BY id DESC", &[&payer.as_str()]))
    }

    fn master_version(&self, payer: Payer, id: i64) -> Result<Option<MasterVersion>, StoreError> {
        self.read(|c| Ok(load_masters(c, "WHERE id = $1 AND payer = $2", &[&id, &payer.as_str()])?.pop()))
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
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let v = must_master(tx, payer, id)?;
            if approver_payer != payer && Some(approver_payer) != v.provided_by {
                return Err(refused(Refusal::OtherPayer { approver: approver_payer, payer }));
            }
            if v.state != MasterState::Proposed {
                return Err(refused(Refusal::MasterState { id, state: v.state, action: "approval" }));
            }
            tx.execute(
                "INSERT INTO master_approvals(version, approver, approver_payer, at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&id, &approver, &approver_payer.as_str(), &now_ms],
            )?;
            audit_tx(tx, &AuditEvent::new(payer, approver, now_ms, "master-approval", None, None, &reason))?;
            must_master(tx, payer, id)
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
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let v = must_master(tx, payer, id)?;
            if v.state != MasterState::Proposed {
                return Err(refused(Refusal::MasterState { id, state: v.state, action: "withdrawal" }));
            }
            tx.execute("UPDATE master_versions SET state = 'withdrawn' WHERE id = $1", &[&id])?;
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "master-withdraw", None, None, &reason))?;
            must_master(tx, payer, id)
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
        let json = Json(report);
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let v = must_master(tx, payer, id)?;
            if v.state != MasterState::Proposed {
                return Err(refused(Refusal::MasterState { id, state: v.state, action: "re-checking" }));
            }
            tx.execute("UPDATE master_versions SET report = $2 WHERE id = $1", &[&id, &json])?;
            let why = format!("master version {id}: diff and impact re-checked against the version now in force");
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, "master-recheck", None, None, &why))?;
            must_master(tx, payer, id)
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
        self.tx(|tx| {
            lock_payer(tx, payer)?;
            let v = must_master(tx, payer, id)?;
            if rollback && v.state == MasterState::Active {
                return undo_master(tx, payer, &v, actor, reason, now_ms);
            }
            if rollback {
                if !matches!(v.state, MasterState::Superseded | MasterState::RolledBack) {
                    return Err(refused(Refusal::MasterState { id, state: v.state, action: "rolling back to it" }));
                }
            } else {
                if v.state != MasterState::Proposed {
                    return Err(refused(Refusal::MasterState { id, state: v.state, action: "activation" }));
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
                    return Err(refused(Refusal::MasterNotApproved { id, needed: needed.join(" and ") }));
                }
            }
            tx.execute(
                "UPDATE master_versions SET state = $4 WHERE payer = $1 AND from_month = $2 AND state = 'active' AND id != $3",
                &[
                    &payer.as_str(),
                    &month_to_sql(v.from_month),
                    &id,
                    &if rollback { "rolled-back" } else { "superseded" },
                ],
            )?;
            tx.execute("UPDATE master_versions SET state = 'active' WHERE id = $1", &[&id])?;
            let action = if rollback { "master-rollback" } else { "master-activate" };
            audit_tx(tx, &AuditEvent::new(payer, actor, now_ms, action, None, None, &format!("master version {id}: {reason}")))?;
            must_master(tx, payer, id)
        })
    }
}
