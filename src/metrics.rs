//! Process-wide metrics, exposed in the Prometheus text format (0.0.4) by
//! the `prometheus-client` crate.
//!
//! One registry with typed families: the daemon records a handful of values
//! per job and per HTTP request. Labels never carry secrets: pair names,
//! outcomes and status codes only.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PairLabel {
    pub pair: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub pair: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub pair: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub pair: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub pair: String,
    pub status: String,
}

type HistogramFamily = Family<PairLabel, Histogram, fn() -> Histogram>;

/// Every metric of the process. Counters are named without `_total`: the
/// encoder appends it (`jobs` is exposed as `meetsync_jobs_total`).
pub struct Metrics {
    registry: Registry,
    pub jobs: Family<ResultLabels, Counter>,
    pub job_duration_seconds: HistogramFamily,
    pub last_success_timestamp_seconds: Family<PairLabel, Gauge>,
    pub items: Family<ActionLabels, Counter>,
    pub conflicts: Family<PairLabel, Counter>,
    pub errors: Family<KindLabels, Counter>,
    pub feed_fetches: Family<ResultLabels, Counter>,
    pub feed_not_modified_ratio: Family<PairLabel, Gauge<f64, AtomicU64>>,
    pub http_requests: Family<StatusLabels, Counter>,
    pub jobs_running: Gauge,
    pub pairs: Gauge,
    pub scheduler_last_tick_timestamp_seconds: Gauge,
}

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("meetsync"),
            jobs: Family::default(),
            job_duration_seconds: Family::new_with_constructor(duration_histogram),
            last_success_timestamp_seconds: Family::default(),
            items: Family::default(),
            conflicts: Family::default(),
            errors: Family::default(),
            feed_fetches: Family::default(),
            feed_not_modified_ratio: Family::default(),
            http_requests: Family::default(),
            jobs_running: Gauge::default(),
            pairs: Gauge::default(),
            scheduler_last_tick_timestamp_seconds: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "jobs",
            "Sync jobs finished, by pair and result (ok, failed)",
            m.jobs.clone(),
        );
        r.register(
            "job_duration_seconds",
            "Duration of sync jobs",
            m.job_duration_seconds.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful job of a pair",
            m.last_success_timestamp_seconds.clone(),
        );
        r.register(
            "items",
            "Items written to the store, by action (added, changed, deleted)",
            m.items.clone(),
        );
        r.register(
            "conflicts",
            "Items not written because the local copy was edited",
            m.conflicts.clone(),
        );
        r.register(
            "errors",
            "Errors by kind (pair, organizer, refused, item)",
            m.errors.clone(),
        );
        r.register(
            "feed_fetches",
            "Feed fetches by result (not_modified, unchanged, changed, refused, failed)",
            m.feed_fetches.clone(),
        );
        r.register(
            "feed_not_modified_ratio",
            "Share of feed fetches answered 304, per pair",
            m.feed_not_modified_ratio.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by pair and status (or error)",
            m.http_requests.clone(),
        );
        r.register("jobs_running", "Jobs running now", m.jobs_running.clone());
        r.register("pairs", "Pairs configured", m.pairs.clone());
        r.register(
            "scheduler_last_tick_timestamp_seconds",
            "Unix time the scheduler loop last ran",
            m.scheduler_last_tick_timestamp_seconds.clone(),
        );
        m
    }
}

pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

pub fn pair(pair: &str) -> PairLabel {
    PairLabel {
        pair: pair.to_string(),
    }
}

pub fn result(pair: &str, result: &str) -> ResultLabels {
    ResultLabels {
        pair: pair.to_string(),
        result: result.to_string(),
    }
}

pub fn action(pair: &str, action: &str) -> ActionLabels {
    ActionLabels {
        pair: pair.to_string(),
        action: action.to_string(),
    }
}

pub fn kind(pair: &str, kind: &str) -> KindLabels {
    KindLabels {
        pair: pair.to_string(),
        kind: kind.to_string(),
    }
}

pub fn status(pair: &str, status: &str) -> StatusLabels {
    StatusLabels {
        pair: pair.to_string(),
        status: status.to_string(),
    }
}

impl Metrics {
    /// The Prometheus text exposition (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_histograms() {
        let m = Metrics::default();
        m.items.get_or_create(&action("w", "added")).inc_by(3);
        m.pairs.set(2);
        m.feed_not_modified_ratio.get_or_create(&pair("w")).set(0.5);
        m.job_duration_seconds
            .get_or_create(&pair("w"))
            .observe(0.2);
        let t = m.render();
        assert!(t.contains("# TYPE meetsync_items_total counter\n"), "{t}");
        assert!(
            t.contains("meetsync_items_total{pair=\"w\",action=\"added\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("meetsync_pairs 2\n"), "{t}");
        assert!(
            t.contains("meetsync_feed_not_modified_ratio{pair=\"w\"} 0.5\n"),
            "{t}"
        );
        assert!(
            t.contains("meetsync_job_duration_seconds_bucket{pair=\"w\",le=\"0.25\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("meetsync_job_duration_seconds_bucket{pair=\"w\",le=\"0.1\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("meetsync_job_duration_seconds_bucket{pair=\"w\",le=\"+Inf\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("meetsync_job_duration_seconds_count{pair=\"w\"} 1\n"),
            "{t}"
        );
        // series appear once recorded, not before
        assert!(!t.contains("meetsync_jobs_total{"), "{t}");
    }
}
