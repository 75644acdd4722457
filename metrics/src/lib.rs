//! Prometheus metrics of an auditstream process, and the small HTTP server that exposes them.
//!
//! Every long-running process (router, sink worker, lag exporter) creates one [`Metrics`] for its
//! component, registers its own metric families on it, and serves [`serve`]:
//!
//! * `GET /metrics`: the Prometheus text format;
//! * `GET /healthz`: 200 while the process runs (a liveness probe);
//! * `GET /readyz`: 200 once the process reached the broker, 503 before and while it cannot
//!   (a readiness probe, see [`Health`]).
//!
//! Label values are always bounded sets (app, outcome, reason, destination, status class, topic,
//! partition): never an event id, an organisation, a URL or a header value, so that neither the
//! series count nor a secret can leak through the metrics.
#![deny(missing_docs)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for HTTP request durations, in seconds: 5 ms to 30 s.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for end-to-end latencies, in seconds: 10 ms (live traffic) to a day (an outage's
/// backlog drained), so that both show up in percentiles.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
    21600.0, 86400.0,
];

/// The metric registry of one process.
pub struct Metrics {
    registry: Registry,
    /// Names of the registered families, for the check that dashboards and alerts query only
    /// metrics that exist.
    names: Mutex<BTreeSet<String>>,
}

impl Metrics {
    /// A registry for `component` (`router`, `sink`, `lag-exporter`), with `auditstream_build_info`
    /// and, on Linux, the standard `process_*` metrics (memory, CPU, file descriptors).
    pub fn new(component: &str) -> Metrics {
        let metrics = Metrics {
            registry: Registry::new(),
            names: Mutex::new(BTreeSet::new()),
        };
        metrics
            .gauge_vec(
                "auditstream_build_info",
                "Always 1; labels say which component and version run.",
                &["component", "version"],
            )
            .with_label_values(&[component, env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        metrics.add(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        metrics
    }

    /// Registers `collector` and returns it (metric handles are cheap shared references).
    ///
    /// # Panics
    /// When a family of the same name is registered twice: names are fixed in the code, so that
    /// is a programming error caught by every test that builds the component's metrics.
    pub fn register<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        self.add(Box::new(collector.clone()));
        collector
    }

    fn add(&self, collector: Box<dyn Collector>) {
        let mut names = self.names.lock().expect("metric names lock");
        for desc in collector.desc() {
            names.insert(desc.fq_name.clone());
        }
        self.registry
            .register(collector)
            .expect("metric families are registered once");
    }

    /// Registers a counter family with the given labels.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// Registers a counter without labels.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }

    /// Registers a gauge family with the given labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// Registers a gauge without labels.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }

    /// Registers a gauge family of fractional values (seconds) with the given labels.
    pub fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// Registers a gauge of a fractional value without labels.
    pub fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(Gauge::new(name, help).expect("valid metric"))
    }

    /// Registers a histogram family with the given buckets (in seconds) and labels.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels).expect("valid metric"))
    }

    /// Names of every registered family (a histogram by its base name, without `_bucket`).
    pub fn names(&self) -> BTreeSet<String> {
        self.names.lock().expect("metric names lock").clone()
    }

    /// The current values in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Whether the process is ready to do its work; `/readyz` answers from it.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the process ready (it reached the broker) or not (it lost it).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether [`Health::set_ready`] last said ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Parses a `--metrics-listen` value: `host:port`, or `off` for no endpoint.
pub fn parse_listen(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        format!("{value:?} is not an address like 127.0.0.1:9460 or 0.0.0.0:9460, nor \"off\"")
    })
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` on it in a background task, for
/// the life of the process. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .with_state((metrics, health));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

type AppState = (Arc<Metrics>, Arc<Health>);

async fn render_metrics(State((metrics, _)): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn readiness(State((_, health)): State<AppState>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the broker has not been reached yet\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_and_registered_names_are_exported() {
        let metrics = Metrics::new("router");
        let events = metrics.counter_vec("auditstream_test_events_total", "Events.", &["app"]);
        events.with_label_values(&["gateway"]).inc_by(3);
        let text = metrics.render();
        assert!(text.contains(r#"auditstream_build_info{component="router",version=""#));
        assert!(text.contains(r#"auditstream_test_events_total{app="gateway"} 3"#));
        let names = metrics.names();
        assert!(names.contains("auditstream_build_info"));
        assert!(names.contains("auditstream_test_events_total"));
    }

    #[test]
    #[should_panic(expected = "registered once")]
    fn a_name_registered_twice_is_a_bug() {
        let metrics = Metrics::new("router");
        metrics.counter("auditstream_twice_total", "Once.");
        metrics.counter("auditstream_twice_total", "Twice.");
    }

    #[test]
    fn listen_values() {
        assert_eq!(parse_listen("off"), Ok(None));
        assert_eq!(
            parse_listen("127.0.0.1:9460"),
            Ok(Some("127.0.0.1:9460".parse().unwrap()))
        );
        let err = parse_listen("localhost").unwrap_err();
        assert!(err.contains("not an address"), "{err}");
    }

    #[tokio::test]
    async fn endpoint_serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new("sink"));
        let health = Arc::new(Health::default());
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics, Arc::clone(&health))
            .await
            .unwrap();
        let get = |path: &str| reqwest::get(format!("http://{addr}{path}"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        health.set_ready(true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let body = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(body.contains(r#"component="sink""#), "{body}");
    }
}
