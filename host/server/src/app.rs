//! The server's shared state, handed to every handler: configuration, store, work, auth,
//! metrics, admission bounds and the clock. Its own module so that handler modules depend on
//! it and never on each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use axum::extract::State;
use tenken_store::Store;
use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::work::Work;

pub type Limiter = governor::DefaultKeyedRateLimiter<String>;

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub work: Arc<Work>,
    pub auth: Box<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    pub uploads: Arc<Semaphore>,
    pub limiter: Limiter,
    pub ready: AtomicBool,
    /// The bundled master-format converters by format name.
    pub converters: Arc<std::collections::HashMap<String, Arc<tenken_runtime::Converter>>>,
    pub next_request: AtomicU64,
    pub boot: u64,
    /// "Now" for windows, timestamps and leases.
    pub clock: Arc<dyn Clock>,
    /// Lifecycle work run as jobs on each payer's own runner.
    pub jobs: Arc<crate::jobs::Jobs>,
}

impl App {
    /// Retry-After with jitter, so refused clients spread out instead of returning together.
    pub fn retry_after(&self) -> u64 {
        let base = self.config.admission.retry_after_s.max(1);
        base + rand::random_range(0..=base)
    }

    /// Counts a refusal (by its code) and passes it on.
    pub fn refuse(&self, e: ApiError) -> ApiError {
        self.metrics.refused(e.code);
        e
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

pub type AppState = State<Arc<App>>;
