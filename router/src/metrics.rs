//! The router's metric families.

use auditstream_metrics::Metrics;
use prometheus::{IntCounter, IntCounterVec, IntGauge};

use crate::normalize::{RejectReason, Stream};
use crate::redact::Applied;

/// Counters and gauges of one router process, registered on its [`Metrics`].
#[derive(Clone)]
pub struct RouterMetrics {
    events: IntCounterVec,
    redactions: IntCounterVec,
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
            events: metrics.counter_vec(
                "auditstream_router_events_total",
                "Raw records handled, by app and outcome (routed to an envelope topic or dead-lettered).",
                &["app", "outcome"],
            ),
            redactions: metrics.counter_vec(
                "auditstream_router_redactions_total",
                "Events changed by a redaction rule, by app and rule.",
                &["app", "rule"],
            ),
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
        let outcome = match outcome {
            Outcome::Routed => "routed",
            Outcome::DeadLettered => "dead_lettered",
        };
        self.events
            .with_label_values(&[app_label(stream), outcome])
            .inc();
    }

    pub(crate) fn redacted(&self, stream: Option<Stream>, applied: Applied) {
        for rule in applied.rules() {
            self.redactions
                .with_label_values(&[app_label(stream), rule.as_str()])
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
        for app in ["gateway", "membership"] {
            routed += self.events.with_label_values(&[app, "routed"]).get();
            dead_lettered += self.events.with_label_values(&[app, "dead_lettered"]).get();
        }
        (routed, dead_lettered)
    }
}

/// The envelope app a raw stream becomes; `unknown` for a topic we do not subscribe to.
fn app_label(stream: Option<Stream>) -> &'static str {
    match stream {
        Some(Stream::Gateway) => "gateway",
        Some(Stream::Lifecycle) => "membership",
        None => "unknown",
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
