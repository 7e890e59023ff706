//! Lifecycle work that takes longer than a request should (validating a plugin against the
//! regression corpus, proposing a master version with its impact check, converting a
//! version for the other payer) runs as a job: the request is answered 202 with the job,
//! `GET /v1/payers/{payer}/jobs/{id}` shows its progress and, once done, its result.
//!
//! Why per-payer runner threads: a job re-checks whole claim files; running it inside the
//! request held an HTTP connection and a blocking thread for as long as that took, with no
//! progress to show. Each payer has its own runner (a bulkhead, like its check workers), so
//! one payer's long impact check never delays the other's. The queue is bounded
//! (`schedule.jobs_queued_max`): a full queue is a 503 at once, never a wait. Finished jobs
//! are kept for reading, the newest `schedule.jobs_kept_max` per payer.
//!
//! Jobs live in this process: a restart forgets a job in progress (its request made no
//! change yet; staff send it again). Durable jobs claimed across nodes come with the
//! several-nodes work.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde::Serialize;
use tenken_model::Payer;

use crate::error::ApiError;

pub type JobId = u64;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    /// Finished with a result (`status` is what the request would have answered).
    Done,
    /// Finished with an error (`status` and `error` as the request would have answered).
    Failed,
}

/// What a job is doing, counted in its own units (files re-checked, master files proven).
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn add_total(&self, more: u64) {
        self.total.fetch_add(more, Ordering::Relaxed);
    }

    pub fn step(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// A job's error, as the request would have answered it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// A job as `GET …/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: JobId,
    pub payer: String,
    /// `validate`, `propose` or `convert-for`.
    pub kind: String,
    /// What it works on (a plugin digest, a master version).
    pub subject: String,
    pub state: JobState,
    pub done: u64,
    pub total: u64,
    /// Token id of who asked for it.
    pub requested_by: i64,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// The HTTP status the work answered (201 for a created version, 200, 4xx …).
    pub status: Option<u16>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<JobError>,
}

struct Job {
    view: JobView,
    progress: Arc<Progress>,
}

impl Job {
    fn view(&self) -> JobView {
        let mut v = self.view.clone();
        v.done = self.progress.done.load(Ordering::Relaxed);
        // Not clamped to `done`: work sets its total before it steps, and a test holds it to
        // that (`done ≤ total`), so a miscounted job shows.
        v.total = self.progress.total.load(Ordering::Relaxed);
        v
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// The job table and one runner per payer.
pub struct Jobs {
    next: AtomicU64,
    table: HashMap<Payer, Arc<Mutex<VecDeque<Job>>>>,
    runners: HashMap<Payer, SyncSender<Task>>,
    kept_max: usize,
}

/// What a job's work returns: the status and body its request would have answered.
pub type JobOutcome = Result<(StatusCode, serde_json::Value), ApiError>;

impl Jobs {
    /// Starts one runner thread per payer with a queue of `queued_max` jobs; keeps the
    /// newest `kept_max` jobs per payer (running ones are never dropped).
    pub fn start(queued_max: usize, kept_max: usize) -> std::io::Result<Jobs> {
        let mut table = HashMap::new();
        let mut runners = HashMap::new();
        for payer in Payer::ALL {
            let (tx, rx) = sync_channel::<Task>(queued_max.max(1));
            std::thread::Builder::new().name(format!("tenken-jobs-{payer}")).spawn(move || {
                for task in rx {
                    task();
                }
            })?;
            runners.insert(payer, tx);
            table.insert(payer, Arc::new(Mutex::new(VecDeque::new())));
        }
        Ok(Jobs { next: AtomicU64::new(1), table, runners, kept_max: kept_max.max(1) })
    }

    /// Queues `work` on the payer's runner; answers the queued job at once. A full queue is
    /// 503 `jobs-busy` with Retry-After.
    pub fn submit(
        &self,
        payer: Payer,
        kind: &str,
        subject: String,
        requested_by: i64,
        now_ms: i64,
        retry_after_s: u64,
        work: impl FnOnce(&Progress) -> JobOutcome + Send + 'static,
    ) -> Result<JobView, ApiError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(Progress::default());
        let view = JobView {
            id,
            payer: payer.to_string(),
            kind: kind.to_owned(),
            subject,
            state: JobState::Queued,
            done: 0,
            total: 0,
            requested_by,
            created_ms: now_ms,
            finished_ms: None,
            status: None,
            result: None,
            error: None,
        };
        let table = self.table[&payer].clone();
        let p = progress.clone();
        let task: Task = Box::new(move || {
            set(&table, id, |v| v.state = JobState::Running);
            // A panic in the work is a failed job, not a dead runner.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&p)))
                .unwrap_or_else(|_| Err(ApiError::internal(format!("job {id} panicked"))));
            let finished = crate::clock::system_now_ms();
            set(&table, id, |v| {
                v.finished_ms = Some(finished);
                match outcome {
                    Ok((status, body)) => {
                        v.state = JobState::Done;
                        v.status = Some(status.as_u16());
                        v.result = Some(body);
                    }
                    Err(e) => {
                        v.state = JobState::Failed;
                        v.status = Some(e.status.as_u16());
                        v.error = Some(JobError { code: e.code.to_owned(), message: e.message });
                    }
                }
            });
        });
        {
            let mut jobs = self.table[&payer].lock().unwrap();
            jobs.push_back(Job { view: view.clone(), progress });
            // Keep the newest finished ones; never drop a job still queued or running.
            while jobs.len() > self.kept_max {
                match jobs.iter().position(|j| matches!(j.view.state, JobState::Done | JobState::Failed)) {
                    Some(i) => drop(jobs.remove(i)),
                    None => break,
                }
            }
        }
        match self.runners[&payer].try_send(task) {
            Ok(()) => Ok(view),
            Err(e) => {
                self.table[&payer].lock().unwrap().retain(|j| j.view.id != id);
                let why = match e {
                    TrySendError::Full(_) => "is full",
                    TrySendError::Disconnected(_) => "has stopped",
                };
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "jobs-busy",
                    format!("{payer}'s job queue {why} (schedule.jobs_queued_max); retry after the Retry-After delay"),
                )
                .retry_after(retry_after_s))
            }
        }
    }

    pub fn get(&self, payer: Payer, id: JobId) -> Option<JobView> {
        self.table[&payer].lock().unwrap().iter().find(|j| j.view.id == id).map(Job::view)
    }

    /// The payer's kept jobs, newest first.
    pub fn list(&self, payer: Payer) -> Vec<JobView> {
        self.table[&payer].lock().unwrap().iter().rev().map(Job::view).collect()
    }
}

fn set(table: &Mutex<VecDeque<Job>>, id: JobId, f: impl FnOnce(&mut JobView)) {
    if let Some(j) = table.lock().unwrap().iter_mut().find(|j| j.view.id == id) {
        f(&mut j.view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until the job has finished.
    fn wait_done(jobs: &Jobs, payer: Payer, id: JobId) -> JobView {
        let t0 = std::time::Instant::now();
        loop {
            let v = jobs.get(payer, id).expect("the job is kept");
            if matches!(v.state, JobState::Done | JobState::Failed) {
                return v;
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "job {id} did not finish: {v:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn jobs_report_progress_results_and_errors_and_a_full_queue_is_refused() {
        let jobs = Jobs::start(1, 3).unwrap();
        let ok = jobs
            .submit(Payer::Ssk, "validate", "d".into(), 7, 1, 1, |p| {
                p.set_total(2);
                p.step();
                p.step();
                Ok((StatusCode::CREATED, serde_json::json!({"id": 3})))
            })
            .unwrap();
        assert_eq!(ok.state, JobState::Queued);
        let v = wait_done(&jobs, Payer::Ssk, ok.id);
        assert_eq!((v.state, v.status, v.done, v.total), (JobState::Done, Some(201), 2, 2));
        assert_eq!(v.result.unwrap()["id"], 3);

        let bad = jobs
            .submit(Payer::Ssk, "propose", "m".into(), 7, 1, 1, |_| {
                Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "master-refused", "no rows"))
            })
            .unwrap();
        let v = wait_done(&jobs, Payer::Ssk, bad.id);
        assert_eq!((v.state, v.status), (JobState::Failed, Some(422)));
        assert_eq!(v.error.unwrap().code, "master-refused");

        let panics = jobs.submit(Payer::Ssk, "propose", "m".into(), 7, 1, 1, |_| panic!("boom")).unwrap();
        assert_eq!(wait_done(&jobs, Payer::Ssk, panics.id).state, JobState::Failed);

        // A runner busy with one job and one queued: the next is refused at once.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        jobs.submit(Payer::Kokuho, "validate", "x".into(), 1, 1, 1, move |_| {
            started.send(()).unwrap();
            gate.recv().unwrap();
            Ok((StatusCode::OK, serde_json::Value::Null))
        })
        .unwrap();
        running.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        jobs.submit(Payer::Kokuho, "validate", "y".into(), 1, 1, 1, |_| Ok((StatusCode::OK, serde_json::Value::Null)))
            .unwrap();
        let e = jobs
            .submit(Payer::Kokuho, "validate", "z".into(), 1, 1, 1, |_| Ok((StatusCode::OK, serde_json::Value::Null)))
            .unwrap_err();
        assert_eq!((e.status, e.code, e.retry_after), (StatusCode::SERVICE_UNAVAILABLE, "jobs-busy", Some(1)));
        // The other payer's runner is not affected (bulkhead).
        let other = jobs
            .submit(Payer::Ssk, "validate", "w".into(), 1, 1, 1, |_| Ok((StatusCode::OK, serde_json::Value::Null)))
            .unwrap();
        assert_eq!(wait_done(&jobs, Payer::Ssk, other.id).state, JobState::Done);
        release.send(()).unwrap();
        // Only the newest `kept_max` finished jobs are kept.
        assert!(jobs.list(Payer::Ssk).len() <= 3, "{:?}", jobs.list(Payer::Ssk));
    }
}
