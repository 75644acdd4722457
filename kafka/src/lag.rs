//! How far behind the pipeline's consumer groups are, read from the broker alone.
//!
//! Nothing here asks a worker: the committed offsets live in the broker, so lag is known exactly
//! when it matters most, while every worker of a destination is down. For each group and
//! partition, [`measure`] reads the committed offset, the watermarks, the topic's `retention.ms`,
//! and the record at the committed position (the oldest undelivered event), whose timestamp
//! gives the lag in seconds and the time left before the broker deletes it.
//!
//! Reading never joins a group and never commits: the per-group clients only fetch offsets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError};

/// How long one broker request may take before the measurement gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the records at the committed positions.
const OLDEST_RECORD_TIMEOUT: Duration = Duration::from_secs(5);

/// A consumer group of the pipeline and the topics it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// Group id, e.g. `auditstream.sink.splunk`.
    pub group: String,
    /// The destination the group delivers to; `None` for the router.
    pub destination: Option<String>,
    /// Topics it consumes.
    pub topics: Vec<String>,
}

/// The position of one group on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// Group id.
    pub group: String,
    /// The destination, for sink groups.
    pub destination: Option<String>,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset (the next record to process), `None` before the first commit.
    pub committed: Option<i64>,
    /// Oldest offset still stored.
    pub low_watermark: i64,
    /// Offset the next produced record gets.
    pub high_watermark: i64,
    /// Records not yet processed by the group: from its position (the committed offset, or the
    /// oldest stored record without one) to the high watermark.
    pub lag_events: i64,
    /// Records the broker deleted (retention) before the group processed them: the committed
    /// offset is below the low watermark. Zero in a healthy pipeline.
    pub deleted_unprocessed: i64,
    /// Timestamp (ms since the epoch) of the oldest unprocessed record, when there is one and it
    /// could be read.
    pub oldest_unprocessed_ms: Option<i64>,
    /// The topic's `retention.ms`, `None` when unlimited or unknown.
    pub retention_ms: Option<i64>,
}

impl PartitionLag {
    /// Age of the oldest unprocessed record, in seconds; 0 without lag.
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        match self.oldest_unprocessed_ms {
            Some(timestamp) if self.lag_events > 0 => millis_to_seconds(now_ms - timestamp),
            _ => 0.0,
        }
    }

    /// Seconds before the broker may delete the oldest unprocessed record (negative: overdue),
    /// `None` without lag or without a retention limit.
    pub fn retention_seconds_left(&self, now_ms: i64) -> Option<f64> {
        let timestamp = self.oldest_unprocessed_ms.filter(|_| self.lag_events > 0)?;
        let retention = self.retention_ms?;
        Some(millis_to_seconds(timestamp + retention - now_ms))
    }
}

fn millis_to_seconds(millis: i64) -> f64 {
    // Precision beyond 2^53 ms (285,000 years) does not matter here.
    #[allow(clippy::cast_precision_loss)]
    let seconds = millis.max(i64::MIN + 1) as f64 / 1000.0;
    seconds
}

/// Measures every partition of every group's topics. Topics that do not exist are skipped (the
/// pipeline has not created them yet); a broker that does not answer is an error.
pub async fn measure(
    kafka: &KafkaConfig,
    groups: &[GroupSpec],
) -> Result<Vec<PartitionLag>, KafkaError> {
    let topics: Vec<String> = groups
        .iter()
        .flat_map(|group| group.topics.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let retention = retention_of(kafka, &topics).await;
    let kafka = kafka.clone();
    let groups = groups.to_vec();
    tokio::task::spawn_blocking(move || measure_blocking(&kafka, &groups, &retention))
        .await
        .map_err(|err| lag_error(format!("lag measurement panicked: {err}")))?
}

fn lag_error(reason: String) -> KafkaError {
    KafkaError::Lag { reason }
}

/// `retention.ms` of each topic that has a finite one. A broker without DescribeConfigs support
/// leaves the map empty: lag is still measured, only the retention countdown is missing.
async fn retention_of(kafka: &KafkaConfig, topics: &[String]) -> HashMap<String, i64> {
    let mut retention = HashMap::new();
    let admin: AdminClient<DefaultClientContext> = match kafka.admin().create() {
        Ok(admin) => admin,
        Err(err) => {
            tracing::warn!(error = %err, "cannot create an admin client; retention is unknown");
            return retention;
        }
    };
    let resources: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    match admin.describe_configs(&resources, &options).await {
        Ok(results) => {
            for (topic, result) in topics.iter().zip(results) {
                let Ok(resource) = result else { continue };
                let value = resource
                    .get("retention.ms")
                    .and_then(|entry| entry.value.as_deref())
                    .and_then(|value| value.parse::<i64>().ok());
                if let Some(ms) = value.filter(|ms| *ms >= 0) {
                    retention.insert(topic.clone(), ms);
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read topic configurations; retention is unknown");
        }
    }
    retention
}

fn measure_blocking(
    kafka: &KafkaConfig,
    groups: &[GroupSpec],
    retention: &HashMap<String, i64>,
) -> Result<Vec<PartitionLag>, KafkaError> {
    let reader: BaseConsumer =
        kafka
            .reader()
            .create()
            .map_err(|source| KafkaError::CreateClient {
                kind: "consumer",
                brokers: kafka.brokers.clone(),
                source,
            })?;
    let metadata = reader
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|err| {
            lag_error(format!(
                "cannot read metadata from {}: {err}",
                kafka.brokers
            ))
        })?;
    let partitions: HashMap<&str, Vec<i32>> = metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none())
        .map(|topic| {
            let ids = topic.partitions().iter().map(|p| p.id()).collect();
            (topic.name(), ids)
        })
        .collect();

    let mut watermarks = BTreeMap::new();
    for topic in groups.iter().flat_map(|group| &group.topics) {
        for &partition in partitions.get(topic.as_str()).into_iter().flatten() {
            if watermarks.contains_key(&(topic.clone(), partition)) {
                continue;
            }
            let marks = reader
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(|err| {
                    lag_error(format!(
                        "cannot read watermarks of {topic}/{partition}: {err}"
                    ))
                })?;
            watermarks.insert((topic.clone(), partition), marks);
        }
    }

    let mut lags = Vec::new();
    for spec in groups {
        let mut assignment = TopicPartitionList::new();
        for topic in &spec.topics {
            for &partition in partitions.get(topic.as_str()).into_iter().flatten() {
                assignment.add_partition(topic, partition);
            }
        }
        if assignment.count() == 0 {
            continue;
        }
        let committed = committed_offsets(kafka, &spec.group, &assignment)?;
        for element in assignment.elements() {
            let key = (element.topic().to_owned(), element.partition());
            let (low, high) = watermarks[&key];
            let committed = committed.get(&key).copied();
            let position = committed.unwrap_or(low).max(low);
            lags.push(PartitionLag {
                group: spec.group.clone(),
                destination: spec.destination.clone(),
                topic: key.0.clone(),
                partition: key.1,
                committed,
                low_watermark: low,
                high_watermark: high,
                lag_events: (high - position).max(0),
                deleted_unprocessed: committed.map_or(0, |offset| (low - offset).max(0)),
                oldest_unprocessed_ms: None,
                retention_ms: retention.get(&key.0).copied(),
            });
        }
    }
    read_oldest_unprocessed(&reader, &mut lags);
    Ok(lags)
}

/// The committed offsets of `group` on `partitions`, by topic and partition; partitions without
/// a commit are absent.
fn committed_offsets(
    kafka: &KafkaConfig,
    group: &str,
    partitions: &TopicPartitionList,
) -> Result<HashMap<(String, i32), i64>, KafkaError> {
    // A consumer configured with the group's id, never subscribed: it only fetches offsets.
    let client: BaseConsumer =
        kafka
            .consumer(group)
            .create()
            .map_err(|source| KafkaError::CreateClient {
                kind: "consumer",
                brokers: kafka.brokers.clone(),
                source,
            })?;
    let committed = client
        .committed_offsets(partitions.clone(), REQUEST_TIMEOUT)
        .map_err(|err| {
            lag_error(format!(
                "cannot read the committed offsets of {group}: {err}"
            ))
        })?;
    Ok(committed
        .elements()
        .into_iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => {
                Some(((element.topic().to_owned(), element.partition()), offset))
            }
            _ => None,
        })
        .collect())
}

/// Fills `oldest_unprocessed_ms` by reading the record at each lagging position. A position is
/// read once even when several groups share it; a record that does not arrive in time leaves the
/// field empty (reported as unknown rather than guessed).
fn read_oldest_unprocessed(reader: &BaseConsumer, lags: &mut [PartitionLag]) {
    let position = |lag: &PartitionLag| {
        (
            lag.topic.clone(),
            lag.partition,
            lag.high_watermark - lag.lag_events,
        )
    };
    let positions: Vec<_> = lags
        .iter()
        .filter(|lag| lag.lag_events > 0)
        .map(position)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let records = records_at(reader, &positions, OLDEST_RECORD_TIMEOUT);
    for lag in lags.iter_mut().filter(|lag| lag.lag_events > 0) {
        lag.oldest_unprocessed_ms = records
            .get(&position(lag))
            .and_then(|record| record.timestamp().to_millis());
    }
}

/// Reads the records at `positions` (topic, partition, offset) with `reader`, waiting at most
/// `timeout` per pass (one pass per distinct offset of a partition). Positions whose record does
/// not arrive in time (deleted meanwhile, broker slow) are absent from the result.
pub fn records_at(
    reader: &BaseConsumer,
    positions: &[(String, i32, i64)],
    timeout: Duration,
) -> HashMap<(String, i32, i64), OwnedMessage> {
    let mut found = HashMap::new();
    let mut remaining: Vec<(String, i32, i64)> = positions.to_vec();
    remaining.sort();
    remaining.dedup();
    while !remaining.is_empty() {
        // An assignment holds one offset per partition.
        let mut this_pass: HashMap<(String, i32), i64> = HashMap::new();
        remaining.retain(|(topic, partition, offset)| {
            let key = (topic.clone(), *partition);
            if this_pass.contains_key(&key) {
                return true;
            }
            this_pass.insert(key, *offset);
            false
        });
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), offset) in &this_pass {
            // Cannot fail: the offset is a plain one.
            let _ = assignment.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        if reader.assign(&assignment).is_err() {
            break;
        }
        let deadline = Instant::now() + timeout;
        while !this_pass.is_empty() && Instant::now() < deadline {
            let Some(Ok(message)) = reader.poll(Duration::from_millis(100)) else {
                continue;
            };
            let key = (message.topic().to_owned(), message.partition());
            if let Some(offset) = this_pass.remove(&key) {
                found.insert((key.0, key.1, offset), message.detach());
            }
        }
    }
    let _ = reader.unassign();
    found
}

/// Tells, across successive measurements, which groups are stalled: lag growing while the
/// committed offsets stand still for at least `after`.
#[derive(Debug)]
pub struct StallDetector {
    after: Duration,
    groups: HashMap<String, GroupProgress>,
}

/// Committed offsets of one group, by topic and partition.
type Positions = BTreeMap<(String, i32), Option<i64>>;

#[derive(Debug)]
struct GroupProgress {
    committed: Positions,
    /// When the committed offsets last moved (or were first seen), and the lag then.
    since: Instant,
    lag_then: i64,
}

impl StallDetector {
    /// A detector that calls a group stalled once its offsets stood still for `after`.
    pub fn new(after: Duration) -> StallDetector {
        StallDetector {
            after,
            groups: HashMap::new(),
        }
    }

    /// Takes a measurement taken at `now`; returns each group with whether it is stalled.
    pub fn observe(&mut self, lags: &[PartitionLag], now: Instant) -> BTreeMap<String, bool> {
        let mut current: BTreeMap<&str, (Positions, i64)> = BTreeMap::new();
        for lag in lags {
            let (committed, total) = current.entry(&lag.group).or_default();
            committed.insert((lag.topic.clone(), lag.partition), lag.committed);
            *total += lag.lag_events;
        }
        let mut stalled = BTreeMap::new();
        for (group, (committed, lag)) in current {
            let progress = self
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| GroupProgress {
                    committed: committed.clone(),
                    since: now,
                    lag_then: lag,
                });
            if progress.committed != committed {
                *progress = GroupProgress {
                    committed,
                    since: now,
                    lag_then: lag,
                };
            }
            let still = now.duration_since(progress.since) >= self.after;
            stalled.insert(group.to_owned(), still && lag > progress.lag_then);
        }
        self.groups.retain(|group, _| stalled.contains_key(group));
        stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(group: &str, committed: Option<i64>, high: i64) -> PartitionLag {
        PartitionLag {
            group: group.to_owned(),
            destination: None,
            topic: "t".to_owned(),
            partition: 0,
            committed,
            low_watermark: 0,
            high_watermark: high,
            lag_events: high - committed.unwrap_or(0),
            deleted_unprocessed: 0,
            oldest_unprocessed_ms: Some(1_000_000),
            retention_ms: Some(3_600_000),
        }
    }

    #[test]
    fn seconds_come_from_the_oldest_unprocessed_record() {
        let behind = lag("g", Some(5), 10);
        assert_eq!(behind.lag_seconds(1_030_000), 30.0);
        assert_eq!(behind.retention_seconds_left(1_030_000), Some(3570.0));
        let caught_up = lag("g", Some(10), 10);
        assert_eq!(caught_up.lag_seconds(1_030_000), 0.0);
        assert_eq!(caught_up.retention_seconds_left(1_030_000), None);
        let unlimited = PartitionLag {
            retention_ms: None,
            ..behind
        };
        assert_eq!(unlimited.retention_seconds_left(1_030_000), None);
    }

    #[test]
    fn a_group_is_stalled_when_lag_grows_behind_offsets_that_stand_still() {
        let mut detector = StallDetector::new(Duration::from_secs(60));
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert!(!detector.observe(&[lag("g", Some(5), 10)], at(0))["g"]);
        // Standing still, lag growing, but not for long enough yet.
        assert!(!detector.observe(&[lag("g", Some(5), 20)], at(30))["g"]);
        assert!(detector.observe(&[lag("g", Some(5), 30)], at(61))["g"]);
        // The offset moves: no longer stalled, and the clock starts again.
        assert!(!detector.observe(&[lag("g", Some(6), 40)], at(62))["g"]);
        assert!(!detector.observe(&[lag("g", Some(6), 50)], at(100))["g"]);
    }

    #[test]
    fn an_idle_group_with_constant_lag_is_not_stalled() {
        let mut detector = StallDetector::new(Duration::from_secs(60));
        let start = Instant::now();
        detector.observe(&[lag("g", Some(5), 10)], start);
        let later = start + Duration::from_secs(600);
        assert!(!detector.observe(&[lag("g", Some(5), 10)], later)["g"]);
    }
}
