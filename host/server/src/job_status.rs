//! The job resources (`GET /v1/payers/{payer}/jobs[/{id}]`) and the one shape every
//! job-starting request answers: 202, `Location` of the job, the job itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::error::ApiError;
use crate::extract::StaffOrAdmin;
use crate::jobs::{JobId, JobView};

/// 202 with the job and where to follow it.
pub fn accepted(job: JobView) -> Response {
    let location = format!("/v1/payers/{}/jobs/{}", job.payer, job.id);
    (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)).into_response()
}

pub async fn list_jobs(
    State(app): State<Arc<App>>,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<JobView>>, ApiError> {
    Ok(Json(app.jobs.list(payer)))
}

pub async fn get_job(
    State(app): State<Arc<App>>,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
    Path((_, id)): Path<(String, JobId)>,
) -> Result<Json<JobView>, ApiError> {
    app.jobs.get(payer, id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "{payer} has no job {id} (jobs are kept in memory: the newest schedule.jobs_kept_max, until a restart)"
        ))
    })
}
