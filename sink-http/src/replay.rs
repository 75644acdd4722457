//! `auditstream replay`: deliver a destination's dead letters again.
//!
//! Replay reads `audit.dlq.<destination>` from where the previous replay stopped (consumer group
//! `auditstream.replay.<destination>`), or from `--since`, up to the end the topic had when the
//! replay started, and delivers every record through the same pipeline as the live worker: same
//! format, batching, retries and classification. Two differences: events are not expired again
//! (the operator asked for them), and a record that fails permanently again is appended to the
//! dead-letter topic once more, after the replay's end, so one replay never loops on it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditstream_kafka::{topics, KafkaConfig, Prefetch, TrackingConsumer};
use auditstream_metrics::Metrics;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use crate::metrics::SinkMetrics;
use crate::worker::{close, pump, Target, Until};
use crate::{Destination, SinkError};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Replays dead letters of `destination` written at or after `since` (or not replayed yet).
/// Returns how many records were replayed.
pub async fn replay(
    kafka: &KafkaConfig,
    destination: Destination,
    since: Option<SystemTime>,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, SinkError> {
    let name = destination.config.name.clone();
    let topic = topics::destination_dlq(&name);
    let group = format!("auditstream.replay.{name}");
    let fail = |message: String| SinkError::Replay {
        destination: name.clone(),
        message,
    };
    let consumer: TrackingConsumer = kafka.tracking_consumer(&group, Prefetch::Sink)?;
    let partitions = auditstream_kafka::partitions_of(&consumer, &topic).map_err(fail)?;

    let mut starts = TopicPartitionList::new();
    for &partition in &partitions {
        let offset = match since {
            Some(time) => Offset::Offset(
                time.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
            None => Offset::Stored,
        };
        starts
            .add_partition_offset(&topic, partition, offset)
            .map_err(|err| fail(err.to_string()))?;
    }
    let starts = match since {
        // Here the "offsets" are timestamps; the broker answers the first offset at or after each.
        Some(_) => consumer
            .offsets_for_times(starts, METADATA_TIMEOUT)
            .map_err(|err| fail(format!("cannot look up offsets by time: {err}")))?,
        None => consumer
            .committed_offsets(starts, METADATA_TIMEOUT)
            .map_err(|err| fail(format!("cannot read the replay group's offsets: {err}")))?,
    };

    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    let mut total = 0u64;
    for element in starts.elements() {
        let partition = element.partition();
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
            .map_err(|err| {
                fail(format!(
                    "cannot read the offsets of {topic}/{partition}: {err}"
                ))
            })?;
        // A time after the last record, or no committed offset, read as the end or the start.
        let start = match element.offset() {
            Offset::Offset(offset) => offset.max(low),
            Offset::End => high,
            _ => low,
        };
        if start < high {
            assignment
                .add_partition_offset(&topic, partition, Offset::Offset(start))
                .map_err(|err| fail(err.to_string()))?;
            ends.insert(partition, high);
            total += u64::try_from(high - start).unwrap_or(0);
        }
    }
    tracing::info!(destination = %name, records = total, "replaying dead letters");
    if ends.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .map_err(|err| fail(err.to_string()))?;
    // A replay is a short command with no metrics endpoint: its counts go nowhere.
    let metrics = SinkMetrics::new(&Metrics::new("replay"), &name);
    let target = Arc::new(Target::new(kafka, destination, false, metrics)?);
    let pumped = pump(&consumer, target, Until::Ends(ends), shutdown).await;
    close(consumer).await;
    pumped.map(|()| total)
}
