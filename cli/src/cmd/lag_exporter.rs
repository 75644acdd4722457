//! `auditstream lag-exporter`: the lag of every consumer group of the pipeline, as Prometheus
//! metrics, measured from the broker (see `auditstream_kafka::lag`), so that it keeps reporting
//! while the workers it watches are down.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auditstream_kafka::lag::{self, GroupSpec, PartitionLag, StallDetector};
use auditstream_metrics::Metrics;
use prometheus::{Gauge, GaugeVec, IntCounter, IntGaugeVec};

use crate::config::Config;
use crate::shutdown;
use crate::telemetry::{self, MetricsArgs};

/// Measures the lag of the router's and every destination's consumer group until Ctrl-C or
/// SIGTERM, and serves it on /metrics.
#[derive(clap::Args)]
pub struct Args {
    /// How often to measure, e.g. 15s. Each measurement reads offsets, watermarks and one record
    /// per lagging partition.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// A group is reported stalled (auditstream_group_stalled = 1) when its lag grew while its
    /// committed offsets stood still for this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    stall_after: Duration,
    #[command(flatten)]
    metrics: MetricsArgs,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let registry = telemetry::start(
        "lag-exporter",
        &args.metrics,
        telemetry::LAG_EXPORTER_DEFAULT,
        &config.kafka,
    )
    .await?;
    let gauges = LagGauges::new(&registry);
    let groups = config.pipeline_groups();
    let names: Vec<&str> = groups.iter().map(|group| group.group.as_str()).collect();
    tracing::info!(groups = ?names, interval = ?args.interval, "lag exporter started");
    let mut stalls = StallDetector::new(args.stall_after);
    let mut tick = tokio::time::interval(args.interval);
    let shutdown = shutdown::signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = tick.tick() => measure_once(config, &groups, &gauges, &mut stalls).await,
        }
    }
}

async fn measure_once(
    config: &Config,
    groups: &[GroupSpec],
    gauges: &LagGauges,
    stalls: &mut StallDetector,
) {
    match lag::measure(&config.kafka, groups).await {
        Ok(lags) => {
            let stalled = stalls.observe(&lags, Instant::now());
            gauges.update(groups, &lags, &stalled, now_ms());
        }
        Err(err) => {
            gauges.scrape_errors.inc();
            tracing::warn!(error = %err, "lag measurement failed; the previous values stay exported");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The exporter's metric families.
pub(crate) struct LagGauges {
    committed: IntGaugeVec,
    high_watermark: IntGaugeVec,
    lag_events: IntGaugeVec,
    lag_seconds: GaugeVec,
    retention_left: GaugeVec,
    deleted_unprocessed: IntGaugeVec,
    stalled: IntGaugeVec,
    scrape_errors: IntCounter,
    last_success: Gauge,
}

const PARTITION_LABELS: &[&str] = &["group", "destination", "topic", "partition"];

impl LagGauges {
    /// Registers the exporter's families on `metrics`.
    pub(crate) fn new(metrics: &Metrics) -> LagGauges {
        LagGauges {
            committed: metrics.gauge_vec(
                "auditstream_group_committed_offset",
                "Committed offset of a pipeline consumer group (absent before its first commit).",
                PARTITION_LABELS,
            ),
            high_watermark: metrics.gauge_vec(
                "auditstream_topic_high_watermark",
                "Offset the next record produced to the partition gets.",
                &["topic", "partition"],
            ),
            lag_events: metrics.gauge_vec(
                "auditstream_group_lag_events",
                "Records of the partition the group has not processed yet.",
                PARTITION_LABELS,
            ),
            lag_seconds: metrics.float_gauge_vec(
                "auditstream_group_lag_seconds",
                "Age of the oldest record the group has not processed (0 when caught up).",
                PARTITION_LABELS,
            ),
            retention_left: metrics.float_gauge_vec(
                "auditstream_group_retention_seconds_left",
                "Seconds before the topic's retention may delete the oldest unprocessed record \
                 (present only while the group lags and the topic has a retention limit).",
                PARTITION_LABELS,
            ),
            deleted_unprocessed: metrics.gauge_vec(
                "auditstream_group_deleted_unprocessed_events",
                "Records the broker deleted before the group processed them (committed offset \
                 below the oldest stored one): events lost to retention. 0 in a healthy pipeline.",
                PARTITION_LABELS,
            ),
            stalled: metrics.gauge_vec(
                "auditstream_group_stalled",
                "1 when the group's lag grew while its committed offsets stood still for \
                 --stall-after.",
                &["group", "destination"],
            ),
            scrape_errors: metrics.counter(
                "auditstream_lag_exporter_scrape_errors_total",
                "Measurements that failed (broker unreachable or not answering).",
            ),
            last_success: metrics.float_gauge(
                "auditstream_lag_exporter_last_success_timestamp_seconds",
                "Unix time of the last successful measurement.",
            ),
        }
    }

    fn update(
        &self,
        groups: &[GroupSpec],
        lags: &[PartitionLag],
        stalled: &std::collections::BTreeMap<String, bool>,
        now_ms: i64,
    ) {
        for lag in lags {
            let partition = lag.partition.to_string();
            let labels = [
                lag.group.as_str(),
                lag.destination.as_deref().unwrap_or(""),
                lag.topic.as_str(),
                partition.as_str(),
            ];
            if let Some(committed) = lag.committed {
                self.committed.with_label_values(&labels).set(committed);
            }
            self.high_watermark
                .with_label_values(&[lag.topic.as_str(), partition.as_str()])
                .set(lag.high_watermark);
            self.lag_events
                .with_label_values(&labels)
                .set(lag.lag_events);
            self.lag_seconds
                .with_label_values(&labels)
                .set(lag.lag_seconds(now_ms));
            self.deleted_unprocessed
                .with_label_values(&labels)
                .set(lag.deleted_unprocessed);
            match lag.retention_seconds_left(now_ms) {
                Some(seconds) => self.retention_left.with_label_values(&labels).set(seconds),
                // Caught up: nothing is at risk, so the series goes away (alerts see no value).
                None => {
                    let _ = self.retention_left.remove_label_values(&labels);
                }
            }
        }
        for group in groups {
            let destination = group.destination.as_deref().unwrap_or("");
            let value = stalled.get(&group.group).copied().unwrap_or(false);
            self.stalled
                .with_label_values(&[group.group.as_str(), destination])
                .set(i64::from(value));
        }
        #[allow(clippy::cast_precision_loss)]
        self.last_success.set(now_ms as f64 / 1000.0);
    }
}
