//! The router's metric families.

use std::sync::OnceLock;

use auditstream_metrics::Metrics;
use prometheus::{IntCounter, IntCounterVec, IntGauge};

use crate::normalize::{RejectReason, Stream};
use crate::redact::{Applied, Rule};

/// Apps a raw stream can become, in the order of [`app_index`].
const APPS: [&str; 3] = ["gateway", "membership", "unknown"];

/// Series of one counter family, each looked up on first use and kept. `with_label_values`
/// hashes the label values and takes a lock on every call, and the router counts every record;
/// a series still appears only once it is counted, as with plain `with_label_values`.
#[derive(Clone)]
struct Series<const N: usize> {
    family: IntCounterVec,
    handles: [OnceLock<IntCounter>; N],
}

impl<const N: usize> Series<N> {
    fn new(family: IntCounterVec) -> Self {
        Series {
            family,
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn get(&self, index: usize, labels: &[&str]) -> &IntCounter {
        self.handles[index].get_or_init(|| self.family.with_label_values(labels))
    }
}

/// Counters and gauges of one router process, registered on its [`Metrics`].
#[derive(Clone)]
pub struct RouterMetrics {
    /// By app and outcome: index `app * 2 + outcome`.
    events: Series<6>,
    /// By app and rule: index `app * 8 + rule`.
    redactions: Series<{ 3 * Rule::ALL.len() }>,
    dead_letters: IntCounterVec,
    unknown_lifecycle_types: IntCounter,
    in_flight: IntGauge,
}

/// The `outcome` label of `auditstream_router_events_total`.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Routed,
    DeadLettered,
}

impl RouterMetrics {
    /// Registers the router's families on `metrics`.
    pub fn new(metrics: &Metrics) -> RouterMetrics {
        let router = RouterMetrics {
            events: Series::new(metrics.counter_vec(
                "auditstream_router_events_total",
                "Raw records handled, by app and outcome (routed to an envelope topic or dead-lettered).",
                &["app", "outcome"],
            )),
            redactions: Series::new(metrics.counter_vec(
                "auditstream_router_redactions_total",
                "Events changed by a redaction rule, by app and rule.",
                &["app", "rule"],
            )),
            dead_letters: metrics.counter_vec(
                "auditstream_router_dead_letters_total",
                "Raw records written to audit.dlq.router, by reason.",
                &["reason"],
            ),
            unknown_lifecycle_types: metrics.counter(
                "auditstream_router_unknown_lifecycle_types_total",
                "Lifecycle events of a type outside the catalogue (forwarded all the same).",
            ),
            in_flight: metrics.gauge(
                "auditstream_router_in_flight_records",
                "Records read whose output is not yet acknowledged by the broker.",
            ),
        };
        // Series at 0 from the start, so that the first dead letter of a reason is an increase
        // that rate() and increase() see, not a series appearing at 1.
        for reason in RejectReason::ALL {
            router.dead_letters.with_label_values(&[reason.as_str()]);
        }
        router
    }

    pub(crate) fn event(&self, stream: Option<Stream>, outcome: Outcome) {
        self.event_series(app_index(stream), outcome).inc();
    }

    fn event_series(&self, app: usize, outcome: Outcome) -> &IntCounter {
        let (index, label) = match outcome {
            Outcome::Routed => (0, "routed"),
            Outcome::DeadLettered => (1, "dead_lettered"),
        };
        self.events.get(app * 2 + index, &[APPS[app], label])
    }

    pub(crate) fn redacted(&self, stream: Option<Stream>, applied: Applied) {
        let app = app_index(stream);
        for rule in applied.rules() {
            self.redactions
                .get(
                    app * Rule::ALL.len() + rule as usize,
                    &[APPS[app], rule.as_str()],
                )
                .inc();
        }
    }

    pub(crate) fn dead_lettered(&self, reason: RejectReason) {
        self.dead_letters
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub(crate) fn unknown_lifecycle_type(&self) {
        self.unknown_lifecycle_types.inc();
    }

    pub(crate) fn set_in_flight(&self, records: usize) {
        self.in_flight
            .set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    /// Events routed and dead-lettered since start, for the periodic log line.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let mut routed = 0;
        let mut dead_lettered = 0;
        // `unknown` apps cannot occur with the router's subscription; reading them would only
        // create an always-zero series.
        for app in 0..2 {
            routed += self.event_series(app, Outcome::Routed).get();
            dead_lettered += self.event_series(app, Outcome::DeadLettered).get();
        }
        (routed, dead_lettered)
    }
}

/// The envelope app a raw stream becomes, as an index of [`APPS`]; `unknown` for a topic we do
/// not subscribe to.
fn app_index(stream: Option<Stream>) -> usize {
    match stream {
        Some(Stream::Gateway) => 0,
        Some(Stream::Lifecycle) => 1,
        None => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::route;
    use crate::redact::Redaction;

    #[test]
    fn counts_show_up_with_bounded_labels() {
        let registry = Metrics::new("router");
        let metrics = RouterMetrics::new(&registry);
        metrics.event(Some(Stream::Gateway), Outcome::Routed);
        metrics.event(Some(Stream::Lifecycle), Outcome::DeadLettered);
        metrics.dead_lettered(RejectReason::Undecodable);
        let raw = br#"{"id":"550e8400-e29b-41d4-a716-446655440000","trace_id":"t",
          "timestamp":"2026-04-30T09:23:41.123Z","organization_id":"o","stack_id":"s",
          "request":{"method":"POST","path":"/api/auth/oauth/token","host":"h",
            "headers":{"authorization":"Bearer secret"}},
          "response":{"status_code":200,"body":"{\"access_token\":\"t\"}"}}"#;
        let routed = route(Stream::Gateway, raw, None, &Redaction::default()).unwrap();
        metrics.redacted(Some(Stream::Gateway), routed.redactions);

        let text = registry.render();
        for line in [
            r#"auditstream_router_events_total{app="gateway",outcome="routed"} 1"#,
            r#"auditstream_router_events_total{app="membership",outcome="dead_lettered"} 1"#,
            r#"auditstream_router_dead_letters_total{reason="undecodable"} 1"#,
            r#"auditstream_router_dead_letters_total{reason="oversized"} 0"#,
            r#"auditstream_router_redactions_total{app="gateway",rule="authorization_header"} 1"#,
            r#"auditstream_router_redactions_total{app="gateway",rule="oauth_token_body"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("streaming_body"),
            "a rule that changed nothing is not counted"
        );
        assert_eq!(metrics.totals(), (1, 1));
    }
}
