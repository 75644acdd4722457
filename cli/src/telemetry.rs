//! The `--metrics-listen` option of the long-running commands, and what it starts: the
//! `/metrics`, `/healthz` and `/readyz` endpoint and a broker check behind `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auditstream_kafka::KafkaConfig;
use auditstream_metrics::{Health, Metrics};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::UsageError;

/// How often `/readyz` re-checks that the broker answers.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_secs(10);
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a command serves its metrics.
#[derive(clap::Args)]
pub struct MetricsArgs {
    /// Address of the /metrics, /healthz and /readyz endpoint (Prometheus scrapes /metrics), or
    /// "off". Port 0 picks a free port and logs it. [default: 127.0.0.1:9460 for the router,
    /// 127.0.0.1:9461 for a sink, 127.0.0.1:9462 for the lag exporter]
    #[arg(long, env = "AUDITSTREAM_METRICS_LISTEN", value_name = "ADDR|off")]
    metrics_listen: Option<String>,
}

/// Default metrics ports, one per component so that a router, a sink and the lag exporter can run
/// side by side on one host (the local demo does).
pub const ROUTER_DEFAULT: &str = "127.0.0.1:9460";
pub const SINK_DEFAULT: &str = "127.0.0.1:9461";
pub const LAG_EXPORTER_DEFAULT: &str = "127.0.0.1:9462";

/// Creates the component's registry, serves it (unless "off"), and keeps `/readyz` in step with
/// whether the broker answers.
pub async fn start(
    component: &str,
    args: &MetricsArgs,
    default_listen: &str,
    kafka: &KafkaConfig,
) -> anyhow::Result<Arc<Metrics>> {
    let listen = args.metrics_listen.as_deref().unwrap_or(default_listen);
    let address = auditstream_metrics::parse_listen(listen)
        .map_err(|err| UsageError(anyhow::anyhow!("--metrics-listen: {err}")))?;
    let metrics = Arc::new(Metrics::new(component));
    let Some(address) = address else {
        return Ok(metrics);
    };
    let health = Arc::new(Health::default());
    let bound = auditstream_metrics::serve(address, Arc::clone(&metrics), Arc::clone(&health))
        .await
        .with_context(|| {
            format!(
                "cannot serve metrics on {address}; pass --metrics-listen with a free address \
                 (each process on a host needs its own port) or \"off\""
            )
        })?;
    tracing::info!(address = %bound, "metrics on http://{bound}/metrics, probes on /healthz and /readyz");
    let broker: BaseConsumer = kafka
        .admin()
        .create()
        .context("cannot create the Kafka client of the readiness check")?;
    tokio::spawn(watch_broker(Arc::new(broker), health));
    Ok(metrics)
}

async fn watch_broker(broker: Arc<BaseConsumer>, health: Arc<Health>) {
    let mut tick = tokio::time::interval(BROKER_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let client = Arc::clone(&broker);
        let answered = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(None, BROKER_CHECK_TIMEOUT).is_ok()
        })
        .await
        .unwrap_or(false);
        if answered != health.is_ready() {
            tracing::info!(
                ready = answered,
                "readiness changed: the broker {}",
                if answered {
                    "answers"
                } else {
                    "does not answer"
                }
            );
        }
        health.set_ready(answered);
    }
}
