//! The sink's metric families. Every series carries the `destination` label, so that one
//! Prometheus sees all destinations side by side; nothing event-specific is ever a label.

use std::time::Duration;

use auditstream_metrics::{Metrics, LATENCY_BUCKETS, REQUEST_BUCKETS};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use crate::dlq::Reason;

/// The outcome class of one POST, the `status_class` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
    /// No HTTP answer: connection refused or reset, TLS failure, timeout.
    Error,
}

impl StatusClass {
    pub(crate) fn of_status(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            // reqwest never ends a request on 1xx; nothing else is HTTP.
            _ => StatusClass::Error,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Error => "error",
        }
    }
}

/// The metrics of one destination's worker, labels bound once.
#[derive(Clone)]
pub struct SinkMetrics {
    destination: String,
    delivered: IntCounter,
    requests: IntCounterVec,
    retries: IntCounterVec,
    auth_failures: IntCounter,
    permanent_failures: IntCounter,
    dead_letters: IntCounterVec,
    expired: IntCounter,
    in_flight_events: IntGauge,
    in_flight_bytes: IntGauge,
    request_duration: Histogram,
    delivery_latency: Histogram,
    paused_partitions: IntGauge,
}

impl SinkMetrics {
    /// Registers the sink's families on `metrics`, for `destination`.
    pub fn new(metrics: &Metrics, destination: &str) -> SinkMetrics {
        let one = |name: &str, help: &str| {
            metrics
                .counter_vec(name, help, &["destination"])
                .with_label_values(&[destination])
        };
        let gauge = |name: &str, help: &str| {
            metrics
                .gauge_vec(name, help, &["destination"])
                .with_label_values(&[destination])
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            metrics
                .histogram_vec(name, help, buckets, &["destination"])
                .with_label_values(&[destination])
        };
        let sink = SinkMetrics {
            destination: destination.to_owned(),
            delivered: one(
                "auditstream_sink_delivered_events_total",
                "Events the destination accepted (2xx, or an already-indexed bulk item).",
            ),
            requests: metrics.counter_vec(
                "auditstream_sink_requests_total",
                "POSTs sent, by the class of their outcome (2xx..5xx, or error when no HTTP answer came).",
                &["destination", "status_class"],
            ),
            retries: metrics.counter_vec(
                "auditstream_sink_retries_total",
                "Batches scheduled for another attempt, by the class of the failed attempt.",
                &["destination", "status_class"],
            ),
            auth_failures: one(
                "auditstream_sink_auth_failures_total",
                "401 and 403 answers: the destination refused the credentials; events are retried, never skipped.",
            ),
            permanent_failures: one(
                "auditstream_sink_permanent_failures_total",
                "Events the destination refused permanently (a permanent status or a rejected bulk item).",
            ),
            dead_letters: metrics.counter_vec(
                "auditstream_sink_dead_letters_total",
                "Events written to audit.dlq.<destination>, by reason.",
                &["destination", "reason"],
            ),
            expired: one(
                "auditstream_sink_expired_events_total",
                "Events older than the destination's retention window, dead-lettered undelivered.",
            ),
            in_flight_events: gauge(
                "auditstream_sink_in_flight_events",
                "Events read and not yet delivered or dead-lettered.",
            ),
            in_flight_bytes: gauge(
                "auditstream_sink_in_flight_bytes",
                "Envelope bytes read and not yet delivered or dead-lettered.",
            ),
            request_duration: histogram(
                "auditstream_sink_request_duration_seconds",
                "Duration of one POST, from sending to the end of the answer.",
                REQUEST_BUCKETS,
            ),
            delivery_latency: histogram(
                "auditstream_sink_delivery_latency_seconds",
                "From the event's date to the destination's acceptance.",
                LATENCY_BUCKETS,
            ),
            paused_partitions: gauge(
                "auditstream_sink_paused_partitions",
                "Partitions paused because in-flight bounds stayed reached (destination down or slow).",
            ),
        };
        // Series at 0 from the start, so that the first dead letter of a reason is an increase
        // that rate() and increase() see, not a series appearing at 1.
        for reason in Reason::ALL {
            sink.dead_letters
                .with_label_values(&[destination, reason.as_str()]);
        }
        sink
    }

    pub(crate) fn request(&self, class: StatusClass, duration: Duration) {
        self.requests
            .with_label_values(&[&self.destination, class.as_str()])
            .inc();
        self.request_duration.observe(duration.as_secs_f64());
    }

    pub(crate) fn retry(&self, class: StatusClass) {
        self.retries
            .with_label_values(&[&self.destination, class.as_str()])
            .inc();
    }

    pub(crate) fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// One event accepted; `age` is how long after its date.
    pub(crate) fn delivered(&self, age: Duration) {
        self.delivered.inc();
        self.delivery_latency.observe(age.as_secs_f64());
    }

    pub(crate) fn dead_lettered(&self, reason: Reason) {
        match reason {
            Reason::PermanentStatus | Reason::RejectedItem => self.permanent_failures.inc(),
            Reason::Expired => self.expired.inc(),
            Reason::MissingMetadata => {}
        }
        self.dead_letters
            .with_label_values(&[&self.destination, reason.as_str()])
            .inc();
    }

    pub(crate) fn set_in_flight(&self, events: usize, bytes: usize) {
        self.in_flight_events
            .set(i64::try_from(events).unwrap_or(i64::MAX));
        self.in_flight_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_paused_partitions(&self, partitions: usize) {
        self.paused_partitions
            .set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let cases = [
            (200, "2xx"),
            (204, "2xx"),
            (301, "3xx"),
            (401, "4xx"),
            (429, "4xx"),
            (503, "5xx"),
            (0, "error"),
        ];
        for (status, class) in cases {
            assert_eq!(StatusClass::of_status(status).as_str(), class, "{status}");
        }
    }

    #[test]
    fn every_series_names_the_destination_and_dead_letters_split_by_reason() {
        let registry = Metrics::new("sink");
        let metrics = SinkMetrics::new(&registry, "splunk");
        metrics.request(StatusClass::ServerError, Duration::from_millis(20));
        metrics.retry(StatusClass::ServerError);
        metrics.delivered(Duration::from_millis(40));
        metrics.dead_lettered(Reason::Expired);
        metrics.dead_lettered(Reason::PermanentStatus);
        let text = registry.render();
        for line in [
            r#"auditstream_sink_dead_letters_total{destination="splunk",reason="rejected_item"} 0"#,
            r#"auditstream_sink_requests_total{destination="splunk",status_class="5xx"} 1"#,
            r#"auditstream_sink_retries_total{destination="splunk",status_class="5xx"} 1"#,
            r#"auditstream_sink_delivered_events_total{destination="splunk"} 1"#,
            r#"auditstream_sink_expired_events_total{destination="splunk"} 1"#,
            r#"auditstream_sink_permanent_failures_total{destination="splunk"} 1"#,
            r#"auditstream_sink_dead_letters_total{destination="splunk",reason="expired"} 1"#,
            r#"auditstream_sink_delivery_latency_seconds_bucket{destination="splunk",le="0.05"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
