//! Prometheus metrics (`GET /metrics`): acceptance, refusals by reason, queue depth, check
//! latency, receipts checked, per-worker busy time, plugin failures.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PayerLabel {
    pub payer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `accepted`, `replayed`, or the error code of the refusal.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub payer: String,
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub payer: String,
    /// The `plugin.` rule: timeout, trap, memory, ...
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

fn latency() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    pub registry: Registry,
    pub submissions: Family<OutcomeLabel, Counter>,
    pub responses: Family<StatusLabel, Counter>,
    pub queue_chunks: Family<PayerLabel, Gauge>,
    pub check_latency: Family<PayerLabel, Histogram, fn() -> Histogram>,
    pub accept_latency: Histogram,
    pub receipts_checked: Family<PayerLabel, Counter>,
    pub chunks_checked: Family<PayerLabel, Counter>,
    pub worker_busy: Family<WorkerLabel, Counter<f64, AtomicU64>>,
    pub plugin_failures: Family<FailureLabel, Counter>,
    pub first_use_latency: Family<PayerLabel, Histogram, fn() -> Histogram>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::for_node("")
    }

    /// Every series carries `node="<name>"` (several nodes scraped into one Prometheus
    /// stay apart); an empty name adds no label.
    pub fn for_node(node: &str) -> Metrics {
        let labels =
            (!node.is_empty()).then(|| (std::borrow::Cow::Borrowed("node"), std::borrow::Cow::Owned(node.to_owned())));
        let mut registry = Registry::with_prefix_and_labels("tenken", labels.into_iter());
        let m = Metrics {
            submissions: Family::default(),
            responses: Family::default(),
            queue_chunks: Family::default(),
            check_latency: Family::new_with_constructor(latency),
            accept_latency: latency(),
            receipts_checked: Family::default(),
            chunks_checked: Family::default(),
            worker_busy: Family::default(),
            plugin_failures: Family::default(),
            first_use_latency: Family::new_with_constructor(latency),
            registry: Registry::default(),
        };
        registry.register(
            "submissions",
            "Submissions by outcome (accepted, replayed, or refusal code)",
            m.submissions.clone(),
        );
        registry.register("http_responses", "HTTP responses by status", m.responses.clone());
        registry.register("queue_chunks", "Chunks waiting for a worker, per payer", m.queue_chunks.clone());
        registry.register(
            "check_latency_seconds",
            "From acceptance to the last chunk checked, per payer",
            m.check_latency.clone(),
        );
        registry.register("accept_latency_seconds", "Time to store a submission durably", m.accept_latency.clone());
        registry.register(
            "receipts_checked",
            "Receipts checked, per payer (rate() = receipts/s)",
            m.receipts_checked.clone(),
        );
        registry.register("chunks_checked", "Chunks checked, per payer", m.chunks_checked.clone());
        registry.register("worker_busy_seconds", "Time each worker spent checking", m.worker_busy.clone());
        registry.register(
            "release_first_use_seconds",
            "Activation or rollback request to the first chunk checked on the new release table, per payer",
            m.first_use_latency.clone(),
        );
        registry.register(
            "plugin_failures",
            "plugin.* findings (traps, timeouts, ...) per payer",
            m.plugin_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn refused(&self, code: &str) {
        self.submissions.get_or_create(&OutcomeLabel { outcome: code.to_owned() }).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
