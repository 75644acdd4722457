//! The Grafana dashboard, the alert rules and the README query only metrics the code exports.
//!
//! Metric names are collected from the real registries (router, sink, lag exporter), so that
//! renaming a metric without updating `deploy/` or the README fails here rather than on a blank
//! dashboard panel or an alert that can never fire.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use auditstream_metrics::Metrics;

/// Every family an auditstream process exports.
fn exported_names() -> BTreeSet<String> {
    let router = Metrics::new("router");
    auditstream_router::RouterMetrics::new(&router);
    let sink = Metrics::new("sink");
    auditstream_sink_http::SinkMetrics::new(&sink, "example");
    let exporter = Metrics::new("lag-exporter");
    crate::cmd::lag_exporter::LagGauges::new(&exporter);
    [router.names(), sink.names(), exporter.names()]
        .into_iter()
        .flatten()
        .collect()
}

fn repository_file(path: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    (path, text)
}

/// The `auditstream_*` names a text mentions, histogram series reduced to their family.
fn mentioned_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("auditstream_") {
        let candidate = &rest[at..];
        let end = candidate
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(candidate.len());
        let name = &candidate[..end];
        // A word that merely starts with the prefix inside a longer identifier is not a metric.
        let preceded_by_word = rest[..at].chars().next_back().is_some_and(|c| {
            c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '/'
        });
        if !preceded_by_word {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(family.to_owned());
        }
        rest = &candidate[end..];
    }
    names
}

fn assert_all_exported(file: &str) -> BTreeSet<String> {
    let (path, text) = repository_file(file);
    let exported = exported_names();
    let mentioned = mentioned_names(&text);
    let unknown: Vec<&String> = mentioned.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "{} uses metrics no process exports: {unknown:?}",
        path.display()
    );
    mentioned
}

#[test]
fn the_dashboard_is_well_formed_and_queries_exported_metrics() {
    let (path, text) = repository_file("deploy/grafana/dashboards/auditstream.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let panels = dashboard["panels"].as_array().expect("a panels array");
    let mut queries = 0;
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(panel["gridPos"].is_object(), "{title}: no gridPos");
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            assert!(
                !mentioned_names(expr).is_empty() || expr.contains("process_"),
                "{title}: {expr} queries no auditstream metric"
            );
            queries += 1;
        }
    }
    assert!(queries >= 10, "only {queries} queries");
    let used = assert_all_exported("deploy/grafana/dashboards/auditstream.json");
    for essential in [
        "auditstream_group_lag_events",
        "auditstream_group_lag_seconds",
        "auditstream_sink_delivered_events_total",
        "auditstream_sink_dead_letters_total",
        "auditstream_sink_delivery_latency_seconds",
    ] {
        assert!(
            used.contains(essential),
            "the dashboard shows no {essential}"
        );
    }
}

#[test]
fn alert_rules_and_their_tests_use_exported_metrics() {
    let used = assert_all_exported("deploy/prometheus/alerts.yml");
    assert!(used.contains("auditstream_group_lag_seconds"));
    assert!(used.contains("auditstream_group_stalled"));
    assert!(used.contains("auditstream_group_retention_seconds_left"));
    assert!(used.contains("auditstream_sink_auth_failures_total"));
    assert_all_exported("deploy/prometheus/alerts_test.yml");
}

#[test]
fn the_readme_documents_every_exported_metric() {
    let (_, readme) = repository_file("README.md");
    let documented = mentioned_names(&readme);
    let missing: Vec<String> = exported_names()
        .into_iter()
        .filter(|name| name.starts_with("auditstream_") && !documented.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not document {missing:?}"
    );
    assert_all_exported("README.md");
}

#[test]
fn names_are_found_in_queries() {
    let names = mentioned_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(auditstream_sink_request_duration_seconds_bucket[5m]))) / auditstream_group_lag_events{group="auditstream.sink.x"}"#,
    );
    let expected: BTreeSet<String> = [
        "auditstream_sink_request_duration_seconds",
        "auditstream_group_lag_events",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
}
