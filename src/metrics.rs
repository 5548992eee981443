//! Process-wide metrics in the Prometheus text format.
//!
//! A small registry (counters, gauges, histograms with labels) behind one
//! mutex: the daemon records a handful of values per job and per HTTP
//! request, so contention is irrelevant. Labels never carry secrets: pair
//! names, outcomes and status codes only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

type Labels = Vec<(&'static str, String)>;

const BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Help texts; every metric name used must be listed here.
const HELP: &[(&str, &str, &str)] = &[
    (
        "meetsync_jobs_total",
        "counter",
        "Sync jobs finished, by pair and result (ok, failed).",
    ),
    (
        "meetsync_job_duration_seconds",
        "histogram",
        "Duration of sync jobs.",
    ),
    (
        "meetsync_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful job of a pair.",
    ),
    (
        "meetsync_items_total",
        "counter",
        "Items written to the store, by action (added, changed, deleted).",
    ),
    (
        "meetsync_conflicts_total",
        "counter",
        "Items not written because the local copy was edited.",
    ),
    (
        "meetsync_errors_total",
        "counter",
        "Errors by kind (pair, organizer, refused, item).",
    ),
    (
        "meetsync_feed_fetches_total",
        "counter",
        "Feed fetches by result (not_modified, unchanged, changed, failed).",
    ),
    (
        "meetsync_feed_not_modified_ratio",
        "gauge",
        "Share of feed fetches answered 304, per pair.",
    ),
    (
        "meetsync_http_requests_total",
        "counter",
        "HTTP requests by pair and status (or error).",
    ),
    ("meetsync_jobs_running", "gauge", "Jobs running now."),
    ("meetsync_pairs", "gauge", "Pairs configured."),
    (
        "meetsync_scheduler_last_tick_timestamp_seconds",
        "gauge",
        "Unix time the scheduler loop last ran.",
    ),
];

pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inc(&self, name: &'static str, l: &[(&'static str, &str)], by: f64) {
        *self.lock().counters.entry((name, labels(l))).or_default() += by;
    }

    pub fn set(&self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.lock().gauges.insert((name, labels(l)), v);
    }

    pub fn add_gauge(&self, name: &'static str, l: &[(&'static str, &str)], by: f64) {
        *self.lock().gauges.entry((name, labels(l))).or_default() += by;
    }

    pub fn counter(&self, name: &'static str, l: &[(&'static str, &str)]) -> f64 {
        self.lock()
            .counters
            .get(&(name, labels(l)))
            .copied()
            .unwrap_or(0.0)
    }

    pub fn observe(&self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        let mut g = self.lock();
        let h = g.histograms.entry((name, labels(l))).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += v;
        h.count += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match *kind {
                "counter" | "gauge" => {
                    let map = if *kind == "counter" {
                        &g.counters
                    } else {
                        &g.gauges
                    };
                    for ((n, l), v) in map.iter() {
                        if n == name {
                            let _ = writeln!(out, "{name}{} {}", fmt_labels(l, None), fmt_num(*v));
                        }
                    }
                }
                _ => {
                    for ((n, l), h) in g.histograms.iter() {
                        if n != name {
                            continue;
                        }
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                fmt_labels(l, Some(&fmt_num(*b))),
                                h.counts[i]
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            fmt_labels(l, Some("+Inf")),
                            h.count
                        );
                        let _ =
                            writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), fmt_num(h.sum));
                        let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
                    }
                }
            }
        }
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn fmt_labels(l: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_histograms() {
        let m = Metrics::default();
        m.inc(
            "meetsync_items_total",
            &[("pair", "w"), ("action", "added")],
            3.0,
        );
        m.set("meetsync_pairs", &[], 2.0);
        m.observe("meetsync_job_duration_seconds", &[("pair", "w")], 0.2);
        let t = m.render();
        assert!(
            t.contains("meetsync_items_total{pair=\"w\",action=\"added\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("meetsync_pairs 2\n"), "{t}");
        assert!(
            t.contains("meetsync_job_duration_seconds_bucket{pair=\"w\",le=\"0.25\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("meetsync_job_duration_seconds_bucket{pair=\"w\",le=\"0.1\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("meetsync_job_duration_seconds_count{pair=\"w\"} 1\n"),
            "{t}"
        );
    }
}
