//! Reading a topic from the beginning to its current end, without a consumer group, for
//! inspection commands: nothing is committed and no pipeline group is disturbed.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
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

/// Calls `visit` for every record of `topic` that exists when the scan starts, partition by
/// partition in offset order (partitions interleaved). `visit` returns `false` to stop early.
/// Returns the number of records visited.
pub async fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> bool,
) -> Result<u64, KafkaError> {
    let fail = |reason: String| KafkaError::Scan {
        topic: topic.to_owned(),
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
    let partitions = partitions_of(&consumer, topic).map_err(fail)?;
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
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(|err| fail(err.to_string()))?;
            ends.insert(partition, high);
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
        let message = tokio::time::timeout(RECEIVE_TIMEOUT, consumer.recv())
            .await
            .map_err(|_| fail(format!("no record arrived for {RECEIVE_TIMEOUT:?}")))?
            .map_err(|err| fail(err.to_string()))?;
        let partition = message.partition();
        if let Some(&end) = ends.get(&partition) {
            visited += 1;
            if !visit(&message) {
                break;
            }
            if message.offset() + 1 >= end {
                ends.remove(&partition);
            }
        }
    }
    Ok(visited)
}
