//! Every metric the fleet exports, described once: its name, kind, labels and help text. The
//! recorder is given the help texts at start-up (`# HELP` lines on `/metrics`), the Grafana
//! dashboard and the alert rules in `deploy/` may use only these names (a test reads them), and
//! a test reads the code's `metrics::…!("name")` calls so no metric is exported undescribed.

/// How a metric is exported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Exported as `_bucket`, `_sum` and `_count` series, with these bucket bounds (seconds).
    Histogram {
        buckets: &'static [f64],
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    /// Which role exports it, and what it counts.
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::*;

pub const CATALOG: &[Metric] = &[
    // Providers (worker).
    metric(
        "fitlink_provider_requests_total",
        Counter,
        &["provider", "status"],
        "worker: provider API responses by provider and HTTP status (429: rate limited)",
    ),
    metric(
        "fitlink_token_refresh_failures_total",
        Counter,
        &["provider", "class"],
        "worker: token refreshes the provider refused or that failed (class: revoked, transient, rate_limited, other)",
    ),
    // Worker.
    metric(
        "fitlink_worker_jobs_total",
        Counter,
        &["outcome", "class"],
        "worker: sync jobs by how they ended (completed, continued, touched, retried, rate_limited, failed, dead_lettered)",
    ),
    metric(
        "fitlink_worker_job_seconds",
        Histogram {
            buckets: &[
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ],
        },
        &[],
        "worker: time one sync job took",
    ),
    metric(
        "fitlink_worker_points_total",
        Counter,
        &["family"],
        "worker: intraday points fetched, by family",
    ),
    // Writer.
    metric(
        "fitlink_writer_batches_total",
        Counter,
        &[],
        "writer: transactions committed",
    ),
    metric(
        "fitlink_writer_batch_seconds",
        Histogram {
            buckets: &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        },
        &[],
        "writer: time from a batch's first message to its commit and acks (commit latency)",
    ),
    metric(
        "fitlink_writer_commands_total",
        Counter,
        &["kind"],
        "writer: commands applied, by kind",
    ),
    metric(
        "fitlink_writer_rows_total",
        Counter,
        &["table"],
        "writer: rows written (inserted or changed), by table",
    ),
    metric(
        "fitlink_writer_grants_total",
        Counter,
        &["result"],
        "writer: sync requests, by whether a job was granted",
    ),
    metric(
        "fitlink_writer_dead_lettered_total",
        Counter,
        &[],
        "writer: results it could not apply, sent to results.dead",
    ),
    metric(
        "fitlink_writer_provider_rows_deleted_total",
        Counter,
        &[],
        "writer: rows deleted because the provider deleted them (webhook DELETE)",
    ),
    // Dispatcher.
    metric(
        "fitlink_dispatcher_requests_total",
        Counter,
        &["trigger"],
        "dispatcher: sync requests published, by trigger",
    ),
    metric(
        "fitlink_dispatcher_due_participants",
        Gauge,
        &[],
        "dispatcher: participants due for a sync at the last schedule tick",
    ),
    metric(
        "fitlink_participants",
        Gauge,
        &["state"],
        "dispatcher: participants by state, read at each schedule tick",
    ),
    metric(
        "fitlink_sync_lag_seconds",
        Gauge,
        &["quantile"],
        "dispatcher: latest device sync minus cursor over syncing participants (quantile 0.5, 0.9, 0.99, 1)",
    ),
    metric(
        "fitlink_grants_expiring",
        Gauge,
        &[],
        "dispatcher: linked participants whose grant expires within 48 hours",
    ),
    metric(
        "fitlink_queue_messages",
        Gauge,
        &["queue"],
        "dispatcher: messages in each fleet queue (jobs, results partitions, dead letters)",
    ),
    metric(
        "fitlink_queue_consumers",
        Gauge,
        &["queue"],
        "dispatcher: consumers of each fleet queue (0 on results: no writer)",
    ),
    // Webhooks and the consent portal (dispatcher).
    metric(
        "fitlink_webhook_requests_total",
        Counter,
        &["provider", "outcome"],
        "dispatcher: provider notifications by outcome (accepted, verified, malformed, unknown_user, bad_signature, oversized, busy, …)",
    ),
    metric(
        "fitlink_webhook_sync_requests_total",
        Counter,
        &[],
        "dispatcher: sync requests made from coalesced notifications",
    ),
    metric(
        "fitlink_portal_consent_total",
        Counter,
        &["provider", "outcome"],
        "dispatcher: consent flows by outcome",
    ),
];

/// The metric exported under `series` (a histogram's `_bucket`, `_sum` or `_count` included).
pub fn metric_of_series(series: &str) -> Option<&'static Metric> {
    CATALOG.iter().find(|m| {
        m.name == series
            || (matches!(m.kind, Histogram { .. })
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| series.strip_suffix(s) == Some(m.name)))
    })
}

/// The exporter, with every histogram's buckets (without them a histogram is exported as a
/// summary, which `histogram_quantile` cannot read and which does not aggregate across roles).
pub fn exporter() -> metrics_exporter_prometheus::PrometheusBuilder {
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    for m in CATALOG {
        if let Histogram { buckets } = m.kind {
            builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(m.name.to_owned()),
                    buckets,
                )
                .expect("catalog buckets are not empty");
        }
    }
    builder
}

/// Gives the recorder every metric's help text.
pub fn describe_all() {
    for m in CATALOG {
        match m.kind {
            Counter => metrics::describe_counter!(m.name, m.help),
            Gauge => metrics::describe_gauge!(m.name, m.help),
            Histogram { .. } => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `metrics::counter!("…")`, `gauge!` and `histogram!` in the workspace's code names
    /// a described metric: nothing is exported that the dashboards cannot know of.
    #[test]
    fn every_metric_the_code_exports_is_described() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in [
            "shared/src",
            "dispatcher/src",
            "worker/src",
            "writer/src",
            "src",
        ] {
            collect_rust_files(&root.join(dir), &mut files);
        }
        let mut exported = std::collections::BTreeSet::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for call in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(call) {
                    let rest = text[at + call.len()..].trim_start();
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                        exported.insert(name.to_owned());
                    }
                }
            }
        }
        assert!(
            exported.len() >= 10,
            "the scan found the calls: {exported:?}"
        );
        let undescribed: Vec<_> = exported
            .iter()
            .filter(|n| CATALOG.iter().all(|m| m.name != n.as_str()))
            .collect();
        assert!(undescribed.is_empty(), "not in CATALOG: {undescribed:?}");
        let unused: Vec<_> = CATALOG
            .iter()
            .filter(|m| !exported.contains(m.name))
            .map(|m| m.name)
            .collect();
        assert!(
            unused.is_empty(),
            "described but never exported: {unused:?}"
        );
    }

    fn collect_rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("catalog.rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn histograms_are_exported_with_their_buckets() {
        let recorder = exporter().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("fitlink_writer_batch_seconds").record(0.03);
        });
        let page = handle.render();
        assert!(
            page.contains("fitlink_writer_batch_seconds_bucket{le=\"0.05\"} 1"),
            "{page}"
        );
        assert!(
            page.contains("fitlink_writer_batch_seconds_bucket{le=\"0.025\"} 0"),
            "{page}"
        );
    }

    #[test]
    fn a_histogram_answers_for_its_series() {
        assert_eq!(
            metric_of_series("fitlink_writer_batch_seconds_bucket").map(|m| m.name),
            Some("fitlink_writer_batch_seconds")
        );
        assert!(metric_of_series("fitlink_writer_batches_total_sum").is_none());
        assert!(metric_of_series("up").is_none());
    }
}
