//! `GET /v1/cluster`: every node of the cluster with its heartbeat and what it reported
//! (per payer: chunks and receipts checked in the stats window, busy share), and per payer
//! the balance `busy max / mean` over the nodes alive now. One SQLite node shows itself.

use axum::Json;
use axum::extract::State;
use tenken_model::Payer;

use crate::app::AppState;
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiError;

/// How long a dead node stays in the view after its last heartbeat, milliseconds.
const DEAD_NODES_SHOWN_MS: i64 = 3_600_000;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// `sqlite` (one node) or `postgres`.
    pub backend: &'static str,
    /// The node that answered.
    pub answered_by: String,
    pub now_ms: i64,
    pub nodes: Vec<NodeView>,
    pub balance: Vec<PayerBalance>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: i64,
    pub name: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// Its lease is current (a node whose lease lapsed has lost its claims).
    pub alive: bool,
    /// The window the figures cover, ms.
    pub window_ms: i64,
    #[schema(value_type = Vec<Object>)]
    pub payers: Vec<tenken_store::PayerLoad>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PayerBalance {
    #[schema(value_type = String)]
    pub payer: Payer,
    pub alive_nodes: usize,
    pub busy_mean: f64,
    pub busy_max: f64,
    /// `busy_max / busy_mean` over the alive nodes (1.0 is perfect balance; null when no
    /// node was busy).
    pub max_over_mean: Option<f64>,
}

/// Staff of either payer and admins: the cluster serves both payers, and a payer's staff
/// seeing the other side's load is the point (2022-04: the load piled onto one server).
pub async fn cluster(State(app): AppState, who: Principal) -> Result<Json<ClusterView>, ApiError> {
    if who.staff_payer().is_none() && !who.is_admin() {
        return Err(ApiError::forbidden(format!("only staff and admins see the cluster; {} may not", who.describe())));
    }
    let store = app.store.clone();
    let now = app.now_ms();
    let nodes = blocking(move || store.nodes()).await?;
    let nodes: Vec<NodeView> = nodes
        .into_iter()
        .filter(|n| n.expires_ms >= now || now - n.heartbeat_ms <= DEAD_NODES_SHOWN_MS)
        .map(|n| NodeView {
            id: n.id.0,
            alive: n.expires_ms >= now,
            name: n.name,
            started_ms: n.started_ms,
            heartbeat_ms: n.heartbeat_ms,
            window_ms: n.stats.window_ms,
            payers: n.stats.payers,
        })
        .collect();
    let balance = Payer::ALL.into_iter().map(|p| balance(p, &nodes)).collect();
    Ok(Json(ClusterView {
        backend: app.store.backend(),
        answered_by: app.work.options().node_name.clone(),
        now_ms: now,
        nodes,
        balance,
    }))
}

/// `busy max / mean` of one payer over the alive nodes.
pub fn balance(payer: Payer, nodes: &[NodeView]) -> PayerBalance {
    let busy: Vec<f64> = nodes
        .iter()
        .filter(|n| n.alive)
        .map(|n| n.payers.iter().find(|l| l.payer == payer).map_or(0.0, |l| l.busy))
        .collect();
    let mean = if busy.is_empty() { 0.0 } else { busy.iter().sum::<f64>() / busy.len() as f64 };
    let max = busy.iter().copied().fold(0.0, f64::max);
    PayerBalance {
        payer,
        alive_nodes: busy.len(),
        busy_mean: mean,
        busy_max: max,
        max_over_mean: (mean > 0.0).then(|| max / mean),
    }
}
