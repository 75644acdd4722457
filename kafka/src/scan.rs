//! Reading topics without a consumer group, for inspection commands: partitions are assigned,
//! never subscribed, and nothing is committed, so no pipeline group is joined or disturbed.
//!
//! * [`scan`] and [`scan_window`] read what a topic holds when they start (optionally only the
//!   records written within a time window, found with the broker's offset-for-timestamp lookup)
//!   and stop.
//! * [`follow`] reads records as they arrive until asked to stop.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// A fetch that returns nothing for this long means the broker is gone, not that the topic is slow.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// The partition ids of `topic`, or a message saying that it does not exist.
pub fn partitions_of<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
) -> Result<Vec<i32>, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|err| format!("cannot read the metadata of {topic}: {err}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!(
            "{topic} does not exist; create it with `auditstream topics create`"
        ));
    }
    Ok(partitions)
}

/// Broker record timestamps (milliseconds since the Unix epoch) that bound a [`scan_window`],
/// both ends inclusive. A record's timestamp is when it was produced, which for an envelope is
/// when the router wrote it, not the event's own date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// Start at the first record with this timestamp or a later one; `None`: the oldest record.
    pub from_ms: Option<i64>,
    /// Stop before the first record with a later timestamp; `None`: at the end the partition has
    /// when the scan starts.
    pub to_ms: Option<i64>,
}

/// Calls `visit` for every record of `topic` that exists when the scan starts, partition by
/// partition in offset order (partitions interleaved). `visit` returns `false` to stop early.
/// Returns the number of records visited.
pub async fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    visit: impl FnMut(&BorrowedMessage<'_>) -> bool,
) -> Result<u64, KafkaError> {
    scan_window(kafka, topic, TimeWindow::default(), visit).await
}

/// Like [`scan`], but only the records of each partition whose offsets the broker's
/// offset-for-timestamp lookup places within `window`: reading starts at the first record at or
/// after `from_ms` instead of the oldest one, and each partition stops at the first record after
/// `to_ms` or at the end it had when the scan started, whichever comes first.
///
/// Timestamps are those of the producer's clock and are not strictly ordered within a
/// partition, so the window is a way to skip most of a topic, not an exact filter: callers that
/// need one filter the visited records by their own date.
pub async fn scan_window(
    kafka: &KafkaConfig,
    topic: &str,
    window: TimeWindow,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> bool,
) -> Result<u64, KafkaError> {
    let fail = |reason: String| KafkaError::Scan {
        topic: topic.to_owned(),
        reason,
    };
    let consumer: StreamConsumer = kafka
        .reader()
        // Reports the end of each partition, so a scan also ends where the last offsets are not
        // records (e.g. transaction markers) instead of waiting for one that never comes.
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|source| KafkaError::CreateClient {
            kind: "consumer",
            brokers: kafka.brokers.clone(),
            source,
        })?;
    let partitions = partitions_of(&consumer, topic).map_err(fail)?;
    let starts = match window.from_ms {
        Some(ms) => Some(offsets_at(&consumer, topic, &partitions, ms).map_err(fail)?),
        None => None,
    };
    // The first record after `to_ms` is the first one at or after `to_ms + 1`.
    let stops = match window.to_ms {
        Some(ms) => {
            Some(offsets_at(&consumer, topic, &partitions, ms.saturating_add(1)).map_err(fail)?)
        }
        None => None,
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|err| {
                fail(format!(
                    "cannot read the offsets of partition {partition}: {err}"
                ))
            })?;
        // `None` from the lookup: no record at or after that time in this partition.
        let start = match &starts {
            Some(found) => found[&partition].map_or(high, |offset| offset.max(low)),
            None => low,
        };
        let end = match &stops {
            Some(found) => found[&partition].map_or(high, |offset| offset.min(high)),
            None => high,
        };
        if end > start {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|err| fail(err.to_string()))?;
            ends.insert(partition, end);
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .map_err(|err| fail(err.to_string()))?;
    let mut visited = 0;
    while !ends.is_empty() {
        let received = tokio::time::timeout(RECEIVE_TIMEOUT, consumer.recv())
            .await
            .map_err(|_| fail(format!("no record arrived for {RECEIVE_TIMEOUT:?}")))?;
        let message = match received {
            Ok(message) => message,
            Err(RdKafkaError::PartitionEOF(partition)) => {
                ends.remove(&partition);
                continue;
            }
            Err(err) => return Err(fail(err.to_string())),
        };
        let partition = message.partition();
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        if message.offset() >= end {
            ends.remove(&partition);
            continue;
        }
        visited += 1;
        if !visit(&message) {
            break;
        }
        if message.offset() + 1 >= end {
            ends.remove(&partition);
        }
    }
    Ok(visited)
}

/// For each partition, the offset of the first record whose timestamp is at or after `ms`, or
/// `None` when there is no such record yet.
fn offsets_at<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partitions: &[i32],
    ms: i64,
) -> Result<HashMap<i32, Option<i64>>, String> {
    let mut query = TopicPartitionList::new();
    for &partition in partitions {
        query
            .add_partition_offset(topic, partition, Offset::Offset(ms))
            .map_err(|err| err.to_string())?;
    }
    let found = consumer
        .offsets_for_times(query, METADATA_TIMEOUT)
        .map_err(|err| format!("cannot look up offsets by timestamp: {err}"))?;
    let offsets: HashMap<i32, Option<i64>> = found
        .elements_for_topic(topic)
        .iter()
        .map(|element| {
            element.error().map_err(|err| {
                format!(
                    "cannot look up offsets by timestamp in partition {}: {err}",
                    element.partition()
                )
            })?;
            let offset = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            Ok((element.partition(), offset))
        })
        .collect::<Result<_, String>>()?;
    // Callers index the answer by partition: one missing is an error, not a skipped partition.
    match partitions.iter().find(|p| !offsets.contains_key(p)) {
        Some(partition) => Err(format!(
            "the offset-by-timestamp lookup did not answer for partition {partition}"
        )),
        None => Ok(offsets),
    }
}

/// Reads every partition of `topics` as records arrive, calling `visit` for each, until `stop`
/// resolves or `visit` returns `false`. Starts at the first record written at or after `from_ms`
/// (milliseconds since the Unix epoch), or at the current end of each partition without it: the
/// end offsets are resolved before this logs that it is following, so every record written
/// after that line is visited. Partitions added to a topic later are not read. Returns the
/// number of records visited.
pub async fn follow(
    kafka: &KafkaConfig,
    topics: &[&str],
    from_ms: Option<i64>,
    stop: impl Future<Output = ()>,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> bool,
) -> Result<u64, KafkaError> {
    let names = topics.join(",");
    let fail = |reason: String| KafkaError::Scan {
        topic: names.clone(),
        reason,
    };
    let consumer: StreamConsumer =
        kafka
            .reader()
            .create()
            .map_err(|source| KafkaError::CreateClient {
                kind: "consumer",
                brokers: kafka.brokers.clone(),
                source,
            })?;
    let mut assignment = TopicPartitionList::new();
    for &topic in topics {
        let partitions = partitions_of(&consumer, topic).map_err(&fail)?;
        let starts = match from_ms {
            Some(ms) => Some(offsets_at(&consumer, topic, &partitions, ms).map_err(&fail)?),
            None => None,
        };
        for partition in partitions {
            let start = match starts.as_ref().and_then(|found| found[&partition]) {
                Some(offset) => offset,
                None => {
                    consumer
                        .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                        .map_err(|err| {
                            fail(format!(
                                "cannot read the offsets of {topic}/{partition}: {err}"
                            ))
                        })?
                        .1
                }
            };
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|err| fail(err.to_string()))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|err| fail(err.to_string()))?;
    tracing::info!(
        topics = %names,
        partitions = assignment.count(),
        from = if from_ms.is_some() { "--since" } else { "the end" },
        "following"
    );
    tokio::pin!(stop);
    let mut visited = 0;
    loop {
        tokio::select! {
            () = &mut stop => break,
            received = consumer.recv() => match received {
                Ok(message) => {
                    visited += 1;
                    if !visit(&message) {
                        break;
                    }
                }
                // librdkafka reconnects by itself; an error here (broker unreachable for a
                // while) is worth reporting, not worth giving up on a live view.
                Err(err) => tracing::warn!(error = %err, topics = %names, "cannot read; retrying"),
            },
        }
    }
    Ok(visited)
}
