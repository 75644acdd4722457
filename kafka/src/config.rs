use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// The `[kafka]` section: how to reach the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `127.0.0.1:19092`, the port the
    /// local scripts start the broker on. Use `127.0.0.1`, not `localhost`, with nisshi.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Extra librdkafka properties applied to every client, e.g. `security.protocol = "SSL"`.
    /// They override the pipeline's defaults, so use them with care.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How long librdkafka waits before fetching a partition again once its prefetch queue was over
/// `queued.max.messages.kbytes`. Every stage that is slower than the broker fills that queue, and
/// with librdkafka's default of 1,000 ms it then read one queue's worth (16 MiB, about 16,000
/// events) per second whatever its CPU: this capped the router and every sink mode at 18,000 to
/// 25,000 events/s (docs/PERFORMANCE.md). At 10 ms the queue is topped up as it drains, like
/// `fetch.wait.max.ms`; the extra fetch checks cost no measurable CPU per event.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// librdkafka's bound on a consumer's prefetched records, for all its partitions together.
const PREFETCH_KEY: &str = "queued.max.messages.kbytes";

/// How much a stage's consumer prefetches (`queued.max.messages.kbytes`). The queue must cover a
/// fetch's round trip at the stage's rate; past that it only holds memory, since a stage slower
/// than the broker keeps its queue full. Measured side by side in docs/PERFORMANCE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// 16 MiB, for sinks: they read 250,000 envelopes a second and more, and with 4 MiB drained
    /// a backlog 0.83–0.91 times as fast.
    Sink,
    /// 4 MiB, for the router: about 35 ms of its input at 120,000 events/s. Against 16 MiB its
    /// resident memory was 24–30 MiB lower (about 55 MiB instead of 83) at the same speed.
    Router,
}

impl Prefetch {
    fn kbytes(self) -> &'static str {
        match self {
            Prefetch::Sink => "16384",
            Prefetch::Router => "4096",
        }
    }
}

fn default_brokers() -> String {
    "127.0.0.1:19092".to_owned()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Same settings, other brokers.
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            ..KafkaConfig::default()
        }
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "auditstream");
        config
    }

    fn with_overrides(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// A consumer in `group` that never commits or stores offsets by itself: the pipeline stores
    /// them only behind finished work (see [`crate::OffsetTracker`]).
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Latency: the broker answers a fetch as soon as anything is there, or after 10 ms.
            .set("fetch.wait.max.ms", "10")
            // A crashed worker's partitions move on after 10 s rather than 45 s.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Bounds librdkafka's prefetch buffer, which is the unbounded part of a consumer's
            // memory (librdkafka's default is 64 MiB); a stage sets its own (`stage_consumer`).
            .set(PREFETCH_KEY, Prefetch::Sink.kbytes())
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        self.with_overrides(config)
    }

    /// A consumer in `group` for a pipeline stage, with the stage's prefetch bound unless
    /// `[kafka] properties` sets one.
    pub fn stage_consumer(&self, group: &str, prefetch: Prefetch) -> ClientConfig {
        let mut config = self.consumer(group);
        if !self.properties.contains_key(PREFETCH_KEY) {
            config.set(PREFETCH_KEY, prefetch.kbytes());
        }
        config
    }

    /// A consumer that reads without a group (for inspection tools).
    pub fn reader(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", "auditstream.reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        self.with_overrides(config)
    }

    /// An idempotent producer that waits for all in-sync replicas: a record acknowledged by the
    /// broker is durable and written once even when librdkafka retries it.
    pub fn producer(&self) -> ClientConfig {
        self.durable_producer(true)
    }

    /// Creates the producer of [`Self::producer`].
    pub fn future_producer(&self) -> Result<rdkafka::producer::FutureProducer, crate::KafkaError> {
        self.producer()
            .create()
            .map_err(|source| crate::KafkaError::CreateClient {
                kind: "producer",
                brokers: self.brokers.clone(),
                source,
            })
    }

    /// A producer for a stage that forwards records it can read again (the router): durable like
    /// [`Self::producer`] (`acks=all`), but not idempotent.
    ///
    /// librdkafka's idempotent producer kept its broker thread busy polling whenever requests
    /// were waiting for acknowledgement: with it the router used 16 µs of CPU per event at
    /// 65,000 events/s, without it 8.6 µs at 100,000 (docs/PERFORMANCE.md). What idempotence
    /// prevents here is harmless: a retry after a lost acknowledgement may write an envelope
    /// twice, which at-least-once delivery allows and the event id de-duplicates downstream, and
    /// at most 5 requests in flight may be reordered by a retry, while envelope order is not part
    /// of the contract (every envelope carries its date).
    pub fn forwarding_producer(&self) -> ClientConfig {
        self.durable_producer(false)
    }

    /// What both producers share: `acks=all`, a 5 ms linger and at most 5 requests in flight
    /// (idempotence caps it there on its own; without it the cap bounds a retry's reordering).
    fn durable_producer(&self, idempotent: bool) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", idempotent.to_string())
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "5")
            .set("compression.type", "none");
        self.with_overrides(config)
    }

    /// A producer with the given settings and its own context, for a loop that polls its
    /// delivery reports itself.
    pub fn producer_with_context<C>(
        &self,
        config: &ClientConfig,
        context: C,
    ) -> Result<rdkafka::producer::BaseProducer<C>, crate::KafkaError>
    where
        C: rdkafka::producer::ProducerContext,
    {
        config
            .create_with_context(context)
            .map_err(|source| crate::KafkaError::CreateClient {
                kind: "producer",
                brokers: self.brokers.clone(),
                source,
            })
    }

    /// An admin client, for topic creation.
    pub fn admin(&self) -> ClientConfig {
        self.with_overrides(self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_defaults() {
        let mut kafka = KafkaConfig::with_brokers("127.0.0.1:1");
        kafka
            .properties
            .insert("fetch.wait.max.ms".into(), "50".into());
        let config = kafka.consumer("g");
        assert_eq!(config.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("group.id"), Some("g"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:1"));
        // Not librdkafka's 1 s default, which capped every stage at ~23,000 events/s.
        assert_eq!(
            config.get("fetch.queue.backoff.ms"),
            Some(FETCH_QUEUE_BACKOFF_MS)
        );
    }

    #[test]
    fn each_stage_prefetches_its_own_amount_unless_overridden() {
        let mut kafka = KafkaConfig::with_brokers("127.0.0.1:1");
        let prefetch = |kafka: &KafkaConfig, stage| {
            kafka
                .stage_consumer("g", stage)
                .get(PREFETCH_KEY)
                .map(str::to_owned)
        };
        assert_eq!(prefetch(&kafka, Prefetch::Router).as_deref(), Some("4096"));
        assert_eq!(prefetch(&kafka, Prefetch::Sink).as_deref(), Some("16384"));
        kafka.properties.insert(PREFETCH_KEY.into(), "8192".into());
        for stage in [Prefetch::Router, Prefetch::Sink] {
            assert_eq!(prefetch(&kafka, stage).as_deref(), Some("8192"));
        }
    }

    #[test]
    fn both_producers_wait_for_all_replicas_and_only_one_is_idempotent() {
        let mut kafka = KafkaConfig::with_brokers("127.0.0.1:1");
        kafka.properties.insert("linger.ms".into(), "20".into());
        for (config, idempotent) in [
            (kafka.producer(), "true"),
            (kafka.forwarding_producer(), "false"),
        ] {
            assert_eq!(config.get("enable.idempotence"), Some(idempotent));
            assert_eq!(config.get("acks"), Some("all"));
            assert_eq!(
                config.get("max.in.flight.requests.per.connection"),
                Some("5")
            );
            assert_eq!(
                config.get("linger.ms"),
                Some("20"),
                "an override still wins"
            );
        }
    }
}
