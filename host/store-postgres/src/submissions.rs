//! Submissions on PostgreSQL: acceptance (bytes and row in one transaction), chunks claimed
//! across nodes in the fair order with leases and fencing tokens, results recorded once,
//! finalization, confirmation, withdrawal, check pins and node heartbeats.

use postgres::GenericClient;
use postgres::types::Json;
use tenken_model::{Digest, Finding, Payer};
use tenken_store::*;

use crate::{Db, PgStore, TxError, TxResult, payer_of};

/// How "no 請求年月" is stored (the column is NOT NULL and indexed), as in the SQLite backend.
fn billing_to_sql(m: Option<tenken_model::YearMonth>) -> String {
    m.map(|m| m.to_string()).unwrap_or_default()
}

fn billing_from_sql(s: &str) -> Result<Option<tenken_model::YearMonth>, StoreError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| StoreError::Corrupt(format!("stored billing month: {e}")))
}

pub(crate) fn digest_from_sql(s: &str) -> Result<Digest, StoreError> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("stored digest: {e}")))
}

const SUBMISSION_COLS: &str = "id, reception, payer, institution, billing_month, digest, bytes, receipts, state, chunks, \
    chunk_receipts, chunks_done, n_error, n_warning, n_info, findings_dropped, idempotency_key, token_id, accepted_ms, \
    checked_ms, confirmed_ms, supersedes, superseded_by";

fn submission(c: &mut Db<'_, impl GenericClient>, r: &postgres::Row) -> TxResult<Submission> {
    let id: i64 = r.get(0);
    let withdrawn: Vec<i64> = c
        .query("SELECT receipt FROM withdrawn_receipts WHERE submission = $1 ORDER BY receipt", &[&id])?
        .iter()
        .map(|w| w.get(0))
        .collect();
    Ok(Submission {
        id,
        reception: r.get(1),
        payer: payer_of(r.get(2))?,
        institution: r.get(3),
        billing_month: billing_from_sql(r.get(4))?,
        digest: digest_from_sql(r.get(5))?,
        bytes: r.get::<_, i64>(6) as u64,
        receipts: r.get::<_, i64>(7) as u32,
        state: State::parse(r.get(8))?,
        chunks: r.get::<_, i64>(9) as u32,
        chunk_receipts: r.get::<_, i64>(10) as u32,
        chunks_done: r.get::<_, i64>(11) as u32,
        counts: Counts {
            error: r.get::<_, i64>(12) as u64,
            warning: r.get::<_, i64>(13) as u64,
            info: r.get::<_, i64>(14) as u64,
        },
        findings_dropped: r.get::<_, i64>(15) as u64,
        idempotency_key: r.get(16),
        token_id: r.get(17),
        accepted_ms: r.get(18),
        checked_ms: r.get(19),
        confirmed_ms: r.get(20),
        supersedes: r.get(21),
        superseded_by: r.get(22),
        withdrawn_receipts: withdrawn.into_iter().map(|r| r as u32).collect(),
    })
}

fn load_where(
    c: &mut Db<'_, impl GenericClient>,
    clause: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> TxResult<Vec<Submission>> {
    let rows = c.query(&format!("SELECT {SUBMISSION_COLS} FROM submissions {clause}"), args)?;
    rows.iter().map(|r| submission(c, r)).collect()
}

fn load(c: &mut Db<'_, impl GenericClient>, id: SubmissionId) -> TxResult<Option<Submission>> {
    Ok(load_where(c, "WHERE id = $1", &[&id])?.pop())
}

fn must_load(c: &mut Db<'_, impl GenericClient>, id: SubmissionId) -> TxResult<Submission> {
    load(c, id)?.ok_or(TxError::Store(StoreError::NotFound(id)))
}

/// Locks a submission row for the rest of the transaction (every writer of a submission
/// and its chunks locks the submission first: one lock order, no deadlock between them).
fn lock(c: &mut Db<'_, impl GenericClient>, id: SubmissionId) -> TxResult<Submission> {
    let rows = c.query(&format!("SELECT {SUBMISSION_COLS} FROM submissions WHERE id = $1 FOR UPDATE"), &[&id])?;
    match rows.first() {
        Some(r) => submission(c, r),
        None => Err(TxError::Store(StoreError::NotFound(id))),
    }
}

fn idempotent_match(
    c: &mut Db<'_, impl GenericClient>,
    new: &NewSubmission,
    digest: &Digest,
) -> TxResult<Option<Accepted>> {
    let Some(key) = &new.idempotency_key else { return Ok(None) };
    let found = load_where(c, "WHERE token_id = $1 AND idempotency_key = $2", &[&new.token_id, key])?.pop();
    match found {
        Some(s) if s.digest == *digest => Ok(Some(Accepted { submission: s, replayed: true })),
        Some(s) => Err(TxError::Store(StoreError::IdempotencyConflict { key: key.clone(), reception: s.reception })),
        None => Ok(None),
    }
}

/// Adds `n` claimable chunks to an institution's count; one that had none starts at the
/// payer's virtual clock (no credit for idle time).
fn add_ready(c: &mut Db<'_, impl GenericClient>, payer: Payer, institution: &str, n: i64) -> TxResult<()> {
    c.execute(
        "INSERT INTO tenants(payer, institution, served, ready) \
         VALUES ($1, $2, COALESCE((SELECT vclock FROM payer_clock WHERE payer = $1), 0), $3) \
         ON CONFLICT (payer, institution) DO UPDATE SET \
           served = CASE WHEN tenants.ready > 0 THEN tenants.served \
                         ELSE GREATEST(tenants.served, COALESCE((SELECT vclock FROM payer_clock WHERE payer = $1), 0)) END, \
           ready = tenants.ready + excluded.ready",
        &[&payer.as_str(), &institution, &n],
    )?;
    Ok(())
}

fn add_chunks(c: &mut Db<'_, impl GenericClient>, s: &Submission) -> TxResult<()> {
    // One statement for every chunk of the file (a large file has hundreds).
    let costs: Vec<i64> = (0..s.chunks).map(|i| chunk_cost(i, s.receipts, s.chunks, s.chunk_receipts) as i64).collect();
    c.execute(
        "INSERT INTO chunks(submission, idx, payer, institution, cost) \
         SELECT $1, t.i - 1, $2, $3, t.cost FROM unnest($4::BIGINT[]) WITH ORDINALITY AS t(cost, i)",
        &[&s.id, &s.payer.as_str(), &s.institution, &costs],
    )?;
    add_ready(c, s.payer, &s.institution, s.chunks as i64)?;
    c.execute(
        "SELECT pg_notify('tenken_work', $1 || ' ' || COALESCE(current_setting('tenken.origin', true), ''))",
        &[&s.payer.as_str()],
    )?;
    Ok(())
}

fn drop_chunks(c: &mut Db<'_, impl GenericClient>, s: &Submission) -> TxResult<()> {
    // Counted from the rows the DELETE removed, as it removed them: a count taken by a
    // statement before it could include a chunk a concurrent claim took (and counted off
    // `ready`) in between, and `ready` would drift below the chunks really waiting.
    let unclaimed = c
        .query("DELETE FROM chunks WHERE submission = $1 RETURNING node", &[&s.id])?
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(0).is_none())
        .count() as i64;
    if unclaimed > 0 {
        c.execute(
            "UPDATE tenants SET ready = GREATEST(0, ready - $3) WHERE payer = $1 AND institution = $2",
            &[&s.payer.as_str(), &s.institution, &unclaimed],
        )?;
    }
    Ok(())
}

/// Chunks of `payer` held by nodes whose lease lapsed become claimable again.
fn reclaim_lapsed(c: &mut Db<'_, impl GenericClient>, payer: Payer, now_ms: i64) -> TxResult<()> {
    let lapsed = c.query(
        "SELECT c.submission, c.idx, c.institution FROM chunks c LEFT JOIN nodes n ON n.owner = c.node \
         WHERE c.node IS NOT NULL AND c.payer = $1 AND (n.owner IS NULL OR n.expires_ms < $2) \
         FOR UPDATE OF c SKIP LOCKED",
        &[&payer.as_str(), &now_ms],
    )?;
    for r in lapsed {
        let (submission, idx, institution): (i64, i64, String) = (r.get(0), r.get(1), r.get(2));
        c.execute("UPDATE chunks SET node = NULL WHERE submission = $1 AND idx = $2", &[&submission, &idx])?;
        add_ready(c, payer, &institution, 1)?;
    }
    Ok(())
}

/// Claims up to `n` chunks in the fair order, in the caller's transaction. The payer's
/// clock row is locked first: claims of one payer take turns (the fair order is one
/// sequence), claims of the two payers never wait for each other (the bulkhead).
fn claim_tx(
    c: &mut Db<'_, impl GenericClient>,
    node: NodeId,
    payer: Payer,
    n: u32,
    now_ms: i64,
) -> TxResult<Vec<ChunkClaim>> {
    let lease = c.query_opt("SELECT expires_ms FROM nodes WHERE owner = $1", &[&node.0])?;
    if lease.is_none_or(|r| r.get::<_, i64>(0) < now_ms) {
        return Ok(Vec::new());
    }
    let p = payer.as_str();
    // An idle cluster must not hammer the database: with nothing ready and no lapsed claim
    // to release, answer from two index reads, without the payer's lock or any write.
    let work: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM chunks WHERE payer = $1 AND node IS NULL) \
             OR EXISTS (SELECT 1 FROM chunks c LEFT JOIN nodes n ON n.owner = c.node \
                        WHERE c.node IS NOT NULL AND c.payer = $1 AND (n.owner IS NULL OR n.expires_ms < $2))",
            &[&p, &now_ms],
        )?
        .get(0);
    if !work {
        return Ok(Vec::new());
    }
    let mut vclock: i64 = c.query_one("SELECT vclock FROM payer_clock WHERE payer = $1 FOR UPDATE", &[&p])?.get(0);
    reclaim_lapsed(c, payer, now_ms)?;
    let mut out = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut recounted = false;
    while out.len() < n as usize {
        let next = c.query_opt(
            "SELECT institution, served FROM tenants WHERE payer = $1 AND ready > 0 AND NOT (institution = ANY($2)) \
             ORDER BY served, institution LIMIT 1",
            &[&p, &skipped],
        )?;
        let Some(next) = next else {
            // Nothing ready by the counts, yet unclaimed chunks exist (the pre-check saw
            // work): the counts drifted. Recount from the rows, once, and go on.
            if out.is_empty() && skipped.is_empty() && !recounted {
                recounted = true;
                let fixed = c.execute(
                    "UPDATE tenants t SET ready = (SELECT COUNT(*) FROM chunks k WHERE k.payer = t.payer \
                     AND k.institution = t.institution AND k.node IS NULL) WHERE t.payer = $1 \
                     AND ready != (SELECT COUNT(*) FROM chunks k WHERE k.payer = t.payer \
                     AND k.institution = t.institution AND k.node IS NULL)",
                    &[&p],
                )?;
                if fixed > 0 {
                    tracing::warn!(%payer, institutions = fixed, "claimable chunk counts had drifted; recounted");
                    continue;
                }
            }
            break;
        };
        let (institution, served): (String, i64) = (next.get(0), next.get(1));
        let chunk = c.query_opt(
            "SELECT submission, idx, cost FROM chunks WHERE payer = $1 AND institution = $2 AND node IS NULL \
             ORDER BY submission, idx LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&p, &institution],
        )?;
        let Some(chunk) = chunk else {
            // Every ready chunk of this institution is locked by a transaction that is
            // dropping it (a withdrawal, a supersession) or the count drifted: skip it in
            // this claim; the count is trusted again next time.
            let any: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM chunks WHERE payer = $1 AND institution = $2 AND node IS NULL",
                    &[&p, &institution],
                )?
                .get(0);
            if any == 0 {
                c.execute("UPDATE tenants SET ready = 0 WHERE payer = $1 AND institution = $2", &[&p, &institution])?;
            }
            skipped.push(institution);
            continue;
        };
        let (submission, index, cost): (i64, i64, i64) = (chunk.get(0), chunk.get(1), chunk.get(2));
        let fence: i64 = c.query_one("SELECT nextval('fence_seq')", &[])?.get(0);
        c.execute(
            "UPDATE chunks SET node = $3, fence = $4 WHERE submission = $1 AND idx = $2",
            &[&submission, &index, &node.0, &fence],
        )?;
        let start = served.max(vclock);
        vclock = start;
        c.execute(
            "UPDATE tenants SET ready = ready - 1, served = $3 WHERE payer = $1 AND institution = $2",
            &[&p, &institution, &(start + cost)],
        )?;
        out.push(ChunkClaim { submission, index: index as u32, cost: cost as u32, fence: Fence(fence) });
    }
    c.execute("UPDATE payer_clock SET vclock = $2 WHERE payer = $1", &[&p, &vclock])?;
    Ok(out)
}

impl SubmissionStore for PgStore {
    fn accept_start(&self, new: NewSubmission) -> Result<PendingAccept, StoreError> {
        let digest = tenken_store::digest(&new.bytes);
        let key = digest.to_string();
        let billing = billing_to_sql(new.billing_month);
        let attempt = || {
            self.tx(|tx| {
                if let Some(a) = idempotent_match(tx, &new, &digest)? {
                    return Ok(a);
                }
                // One (payer, institution, billing month) at a time across the cluster: two
                // nodes accepting the same month cannot both supersede the earlier file.
                let month_key = format!("{}/{}/{}", new.payer.as_str(), new.institution, billing);
                tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&month_key])?;
                tx.execute(
                    "INSERT INTO blobs(digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                    &[&key, &new.bytes],
                )?;
                let earlier = if billing.is_empty() {
                    Vec::new()
                } else {
                    load_where(
                        tx,
                        "WHERE payer = $1 AND institution = $2 AND billing_month = $3 \
                         AND state NOT IN ('withdrawn', 'superseded') ORDER BY id FOR UPDATE",
                        &[&new.payer.as_str(), &new.institution, &billing],
                    )?
                };
                if let Some(c) = earlier.iter().find(|s| s.state == State::Confirmed) {
                    return Err(TxError::Store(StoreError::AlreadyConfirmed { reception: c.reception.clone() }));
                }
                let previous = earlier.last().map(|s| s.id);
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO submissions(payer, institution, billing_month, digest, bytes, receipts, state, \
                         chunks, chunk_receipts, idempotency_key, token_id, accepted_ms, supersedes) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $10, $11, $12) RETURNING id",
                        &[
                            &new.payer.as_str(),
                            &new.institution,
                            &billing,
                            &key,
                            &(new.bytes.len() as i64),
                            &(new.receipts as i64),
                            &(new.chunks as i64),
                            &(new.chunk_receipts as i64),
                            &new.idempotency_key,
                            &new.token_id,
                            &new.now_ms,
                            &previous,
                        ],
                    )?
                    .get(0);
                tx.execute(
                    "UPDATE submissions SET reception = $2 WHERE id = $1",
                    &[&id, &tenken_store::reception_number(new.payer, id, new.now_ms)],
                )?;
                for s in &earlier {
                    tx.execute(
                        "UPDATE submissions SET state = 'superseded', superseded_by = $2 WHERE id = $1",
                        &[&s.id, &id],
                    )?;
                    drop_chunks(tx, s)?;
                }
                let submission = must_load(tx, id)?;
                add_chunks(tx, &submission)?;
                Ok(Accepted { submission, replayed: false })
            })
        };
        // Two nodes taking the same Idempotency-Key at once: the second insert violates the
        // unique index; its retry finds the first one's submission.
        let result = match attempt() {
            Err(StoreError::Backend(m)) if m.contains("submissions_idem") => attempt(),
            other => other,
        };
        Ok(PendingAccept::ready(result))
    }

    fn get(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError> {
        self.read(|c| load(c, id))
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| {
            load_where(
                c,
                "WHERE ($1::TEXT IS NULL OR payer = $1) AND ($2::TEXT IS NULL OR institution = $2) \
                 AND ($3::BIGINT IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                &[&f.payer.map(|p| p.as_str()), &f.institution, &f.before, &(f.limit.clamp(1, 1000) as i64)],
            )
        })
    }

    fn history(&self, id: SubmissionId) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| {
            let s = must_load(c, id)?;
            let Some(month) = s.billing_month else { return Ok(vec![s]) };
            load_where(
                c,
                "WHERE payer = $1 AND institution = $2 AND billing_month = $3 ORDER BY id",
                &[&s.payer.as_str(), &s.institution, &month.to_string()],
            )
        })
    }

    fn claim_chunks(&self, node: NodeId, payer: Payer, n: u32, now_ms: i64) -> Result<Vec<ChunkClaim>, StoreError> {
        self.tx(|tx| claim_tx(tx, node, payer, n, now_ms))
    }

    fn release_chunk(
        &self,
        node: NodeId,
        submission: SubmissionId,
        index: u32,
        fence: Fence,
    ) -> Result<bool, StoreError> {
        self.tx(|tx| {
            let held = tx.query_opt(
                "UPDATE chunks SET node = NULL WHERE submission = $1 AND idx = $2 AND node = $3 AND fence = $4 \
                 RETURNING payer, institution",
                &[&submission, &(index as i64), &node.0, &fence.0],
            )?;
            let Some(row) = held else { return Ok(false) };
            let (payer, institution): (&str, &str) = (row.get(0), row.get(1));
            add_ready(tx, payer_of(payer)?, institution, 1)?;
            tx.execute(
                "SELECT pg_notify('tenken_work', $1 || ' ' || COALESCE(current_setting('tenken.origin', true), ''))",
                &[&payer],
            )?;
            Ok(true)
        })
    }

    fn backlog(&self, payer: Payer, _now_ms: i64) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT COALESCE(SUM(ready), 0)::BIGINT FROM tenants WHERE payer = $1 AND ready > 0",
                    &[&payer.as_str()],
                )?
                .get(0);
            Ok(n as u64)
        })
    }

    fn complete_chunk(&self, r: ChunkResult) -> Result<ChunkOutcome, StoreError> {
        let findings = Json(&r.findings);
        let decision = Json(&r.decision);
        self.tx(|tx| {
            let Some(s) = tx.query_opt("SELECT state FROM submissions WHERE id = $1 FOR UPDATE", &[&r.submission])?
            else {
                return Ok(ChunkOutcome::Fenced);
            };
            let _state: &str = s.get(0);
            if let Some(pin) = &r.pin {
                let stored = tx.query_opt("SELECT pin FROM check_pins WHERE submission = $1", &[&r.submission])?;
                let stored: Option<CheckPin> = stored.map(|row| row.get::<_, Json<CheckPin>>(0).0);
                if stored.as_ref() != Some(pin) {
                    return Ok(ChunkOutcome::Fenced);
                }
            }
            let claim = tx.query_opt(
                "SELECT node, fence FROM chunks WHERE submission = $1 AND idx = $2 FOR UPDATE",
                &[&r.submission, &(r.index as i64)],
            )?;
            let Some(claim) = claim else {
                let done = tx.query_opt(
                    "SELECT 1 FROM chunk_results WHERE submission = $1 AND idx = $2",
                    &[&r.submission, &(r.index as i64)],
                )?;
                return Ok(if done.is_some() { ChunkOutcome::Duplicate } else { ChunkOutcome::Fenced });
            };
            let (holder, fence): (Option<i64>, i64) = (claim.get(0), claim.get(1));
            if holder != Some(r.node.0) || fence != r.fence.0 {
                return Ok(ChunkOutcome::Fenced);
            }
            let lease = tx.query_opt("SELECT expires_ms FROM nodes WHERE owner = $1", &[&r.node.0])?;
            if lease.is_none_or(|l| l.get::<_, i64>(0) < r.now_ms) {
                return Ok(ChunkOutcome::Fenced);
            }
            tx.execute(
                "INSERT INTO chunk_results(submission, idx, owner, findings, n_error, n_warning, n_info, done_ms, decision) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &r.submission,
                    &(r.index as i64),
                    &r.node.0,
                    &findings,
                    &(r.counts.error as i64),
                    &(r.counts.warning as i64),
                    &(r.counts.info as i64),
                    &r.now_ms,
                    &decision,
                ],
            )?;
            tx.execute("DELETE FROM chunks WHERE submission = $1 AND idx = $2", &[&r.submission, &(r.index as i64)])?;
            let row = tx.query_one(
                "UPDATE submissions SET chunks_done = chunks_done + 1, state = 'checking' WHERE id = $1 \
                 RETURNING chunks_done, chunks",
                &[&r.submission],
            )?;
            let (done, total): (i64, i64) = (row.get(0), row.get(1));
            Ok(ChunkOutcome::Recorded { all_done: done >= total })
        })
    }

    fn unfinalized(&self) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| load_where(c, "WHERE state IN ('queued', 'checking') AND chunks_done >= chunks ORDER BY id", &[]))
    }

    fn chunk_findings(&self, id: SubmissionId) -> Result<Vec<(u32, Vec<Finding>)>, StoreError> {
        self.read(|c| {
            Ok(c.query("SELECT idx, findings FROM chunk_results WHERE submission = $1 ORDER BY idx", &[&id])?
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, Json<Vec<Finding>>>(1).0))
                .collect())
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
        let json = Json(findings);
        self.tx(|tx| {
            let changed = tx.execute(
                "UPDATE submissions SET state = 'checked', n_error = $2, n_warning = $3, n_info = $4, \
                 findings_dropped = $5, checked_ms = $6 WHERE id = $1 AND state IN ('queued', 'checking') \
                 AND chunks_done >= chunks",
                &[
                    &id,
                    &(counts.error as i64),
                    &(counts.warning as i64),
                    &(counts.info as i64),
                    &(dropped as i64),
                    &now_ms,
                ],
            )?;
            if changed == 1 {
                tx.execute(
                    "INSERT INTO final_findings(submission, findings) VALUES ($1, $2) \
                     ON CONFLICT (submission) DO UPDATE SET findings = excluded.findings",
                    &[&id, &json],
                )?;
            }
            Ok(())
        })
    }

    fn findings(&self, id: SubmissionId) -> Result<Option<Vec<Finding>>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt("SELECT findings FROM final_findings WHERE submission = $1", &[&id])?
                .map(|r| r.get::<_, Json<Vec<Finding>>>(0).0))
        })
    }

    fn confirm(&self, id: SubmissionId, now_ms: i64) -> Result<Submission, StoreError> {
        self.tx(|tx| {
            let s = lock(tx, id)?;
            if s.state != State::Checked {
                return Err(TxError::Store(StoreError::WrongState { id, state: s.state, action: "confirmation" }));
            }
            tx.execute("UPDATE submissions SET state = 'confirmed', confirmed_ms = $2 WHERE id = $1", &[&id, &now_ms])?;
            must_load(tx, id)
        })
    }

    fn withdraw(&self, id: SubmissionId, _now_ms: i64) -> Result<Submission, StoreError> {
        self.tx(|tx| {
            let s = lock(tx, id)?;
            if !matches!(s.state, State::Queued | State::Checking | State::Checked) {
                return Err(TxError::Store(StoreError::WrongState { id, state: s.state, action: "withdrawal" }));
            }
            tx.execute("UPDATE submissions SET state = 'withdrawn' WHERE id = $1", &[&id])?;
            drop_chunks(tx, &s)?;
            must_load(tx, id)
        })
    }

    fn withdraw_receipt(&self, id: SubmissionId, receipt: u32) -> Result<Submission, StoreError> {
        self.tx(|tx| {
            let s = lock(tx, id)?;
            if !matches!(s.state, State::Queued | State::Checking | State::Checked) {
                return Err(TxError::Store(StoreError::WrongState {
                    id,
                    state: s.state,
                    action: "withdrawing a receipt",
                }));
            }
            tx.execute(
                "INSERT INTO withdrawn_receipts(submission, receipt) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, &(receipt as i64)],
            )?;
            must_load(tx, id)
        })
    }

    fn pin_check(&self, id: SubmissionId, pin: &CheckPin) -> Result<CheckPin, StoreError> {
        let json = Json(pin);
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO check_pins(submission, pin) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, &json],
            )?;
            Ok(tx.query_one("SELECT pin FROM check_pins WHERE submission = $1", &[&id])?.get::<_, Json<CheckPin>>(0).0)
        })
    }

    fn check_pin(&self, id: SubmissionId) -> Result<Option<CheckPin>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt("SELECT pin FROM check_pins WHERE submission = $1", &[&id])?
                .map(|r| r.get::<_, Json<CheckPin>>(0).0))
        })
    }

    fn restart_pinned(
        &self,
        payer: Payer,
        set: Option<i64>,
        master: Option<i64>,
    ) -> Result<Vec<SubmissionId>, StoreError> {
        self.tx(|tx| {
            let pinned: Vec<(SubmissionId, CheckPin)> = tx
                .query(
                    "SELECT p.submission, p.pin FROM check_pins p JOIN submissions s ON s.id = p.submission \
                     WHERE s.payer = $1 AND s.state IN ('queued', 'checking') ORDER BY p.submission",
                    &[&payer.as_str()],
                )?
                .iter()
                .map(|r| (r.get(0), r.get::<_, Json<CheckPin>>(1).0))
                .collect();
            let mut out = Vec::new();
            for (id, pin) in pinned {
                let hit = set.is_some_and(|x| pin.sets.iter().any(|p| p.id == x))
                    || master.is_some_and(|x| pin.masters.iter().any(|p| p.id == x));
                if !hit {
                    continue;
                }
                let s = lock(tx, id)?;
                drop_chunks(tx, &s)?;
                tx.execute("DELETE FROM chunk_results WHERE submission = $1", &[&id])?;
                tx.execute("DELETE FROM check_pins WHERE submission = $1", &[&id])?;
                tx.execute("UPDATE submissions SET chunks_done = 0, state = 'queued' WHERE id = $1", &[&id])?;
                add_chunks(tx, &s)?;
                out.push(id);
            }
            Ok(out)
        })
    }

    fn decisions(&self, id: SubmissionId) -> Result<Vec<(u32, DecisionRecord)>, StoreError> {
        self.read(|c| {
            Ok(c.query("SELECT idx, decision FROM chunk_results WHERE submission = $1 ORDER BY idx", &[&id])?
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, Json<DecisionRecord>>(1).0))
                .collect())
        })
    }

    fn register_node(&self, name: &str, now_ms: i64, ttl_ms: i64) -> Result<NodeId, StoreError> {
        self.tx(|tx| {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO nodes(name, started_ms, expires_ms, heartbeat_ms) VALUES ($1, $2, $3, $2) RETURNING owner",
                    &[&name, &now_ms, &(now_ms + ttl_ms)],
                )?
                .get(0);
            Ok(NodeId(id))
        })
    }

    fn renew_node(&self, node: NodeId, now_ms: i64, ttl_ms: i64, stats: &NodeStats) -> Result<bool, StoreError> {
        let json = Json(stats);
        self.tx(|tx| {
            let n = tx.execute(
                "UPDATE nodes SET expires_ms = $2, heartbeat_ms = $3, stats = $4 WHERE owner = $1 AND expires_ms >= $3",
                &[&node.0, &(now_ms + ttl_ms), &now_ms, &json],
            )?;
            Ok(n == 1)
        })
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.read(|c| {
            Ok(c.query(
                "SELECT owner, name, started_ms, expires_ms, heartbeat_ms, stats FROM nodes ORDER BY owner DESC LIMIT 1000",
                &[],
            )?
            .iter()
            .map(|r| NodeInfo {
                id: NodeId(r.get(0)),
                name: r.get(1),
                started_ms: r.get(2),
                expires_ms: r.get(3),
                heartbeat_ms: r.get(4),
                stats: r.get::<_, Json<NodeStats>>(5).0,
            })
            .collect())
        })
    }
}
