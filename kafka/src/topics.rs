//! The pipeline's topics and their creation.
//!
//! Names are fixed by the product design so that every process, dashboard and runbook agrees on
//! them; partition counts and retention come from the `[topics]` config section.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::{KafkaConfig, KafkaError};

/// Raw lifecycle events, as services publish them.
pub const RAW_LIFECYCLE: &str = "audit.raw.lifecycle";
/// Raw gateway (module HTTP audit) events.
pub const RAW_GATEWAY: &str = "audit.raw.gateway";
/// Normalized, redacted lifecycle envelopes.
pub const LIFECYCLE: &str = "audit.v2.lifecycle";
/// Normalized, redacted module audit envelopes.
pub const MODULE: &str = "audit.v2.module";
/// Raw messages the router could not accept, with the reason in headers.
pub const ROUTER_DLQ: &str = "audit.dlq.router";

/// Dead-letter topic of one destination.
pub fn destination_dlq(destination: &str) -> String {
    format!("audit.dlq.{destination}")
}

/// The `[topics]` section: how topics are created by `auditstream topics create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Partitions of every pipeline topic; the most workers a stage can usefully run. Default 6.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor. Default 1 (a single local broker); use 3 on a production cluster.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// `retention.ms` of raw and envelope topics, e.g. `"7d"`. Default 7 days. Events not
    /// delivered within it are deleted by the broker: the lag exporter warns before that.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// `retention.ms` of dead-letter topics. Default 30 days, so there is time to replay.
    #[serde(default = "default_dlq_retention", with = "humantime_serde")]
    pub dead_letter_retention: Duration,
}

fn default_partitions() -> i32 {
    6
}
fn default_replication() -> i32 {
    1
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_dlq_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            partitions: default_partitions(),
            replication_factor: default_replication(),
            retention: default_retention(),
            dead_letter_retention: default_dlq_retention(),
        }
    }
}

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
    /// `retention.ms`.
    pub retention: Duration,
}

impl TopicsConfig {
    /// Every topic the pipeline needs, given the configured destination names.
    pub fn plan<'a>(&self, destinations: impl IntoIterator<Item = &'a str>) -> Vec<TopicSpec> {
        let data = |name: &str| TopicSpec {
            name: name.to_owned(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            retention: self.retention,
        };
        let dead_letters = |name: String| TopicSpec {
            name,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            retention: self.dead_letter_retention,
        };
        let mut specs = vec![
            data(RAW_LIFECYCLE),
            data(RAW_GATEWAY),
            data(LIFECYCLE),
            data(MODULE),
            dead_letters(ROUTER_DLQ.to_owned()),
        ];
        specs.extend(
            destinations
                .into_iter()
                .map(|d| dead_letters(destination_dlq(d))),
        );
        specs
    }
}

/// What happened to one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The topic was created.
    New,
    /// A topic of that name already existed; it was left as it is.
    Existing,
}

/// Creates the topics, leaving existing ones alone.
pub async fn create(
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
) -> Result<Vec<(String, Created)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka
            .admin()
            .create()
            .map_err(|source| KafkaError::CreateClient {
                kind: "admin client",
                brokers: kafka.brokers.clone(),
                source,
            })?;
    let retentions: Vec<String> = specs
        .iter()
        .map(|s| s.retention.as_millis().to_string())
        .collect();
    let new_topics: Vec<NewTopic> = specs
        .iter()
        .zip(&retentions)
        .map(|(spec, retention)| {
            NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor),
            )
            .set("cleanup.policy", "delete")
            .set("retention.ms", retention)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|err| KafkaError::CreateTopic {
            topic: specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: err.to_string(),
        })?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(name) => Ok((name, Created::New)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((name, Created::Existing)),
            Err((name, code)) => Err(KafkaError::CreateTopic {
                topic: name,
                reason: code.to_string(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_every_stage_and_one_dead_letter_topic_per_destination() {
        let config = TopicsConfig::default();
        let plan = config.plan(["splunk", "datadog"]);
        let names: Vec<&str> = plan.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                RAW_LIFECYCLE,
                RAW_GATEWAY,
                LIFECYCLE,
                MODULE,
                ROUTER_DLQ,
                "audit.dlq.splunk",
                "audit.dlq.datadog"
            ]
        );
        assert_eq!(plan[5].retention, config.dead_letter_retention);
        assert_eq!(plan[0].retention, config.retention);
    }
}
