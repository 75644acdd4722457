use rdkafka::error::KafkaError as RdKafkaError;
use thiserror::Error;

/// Failures of the shared Kafka plumbing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// A client could not be created from the configuration.
    #[error("cannot create Kafka {kind} for brokers {brokers}: {source}")]
    CreateClient {
        /// `consumer`, `producer` or `admin client`.
        kind: &'static str,
        /// The configured bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: RdKafkaError,
    },
    /// Reading a topic for inspection failed.
    #[error("cannot read topic {topic}: {reason}")]
    Scan {
        /// Topic name.
        topic: String,
        /// What went wrong.
        reason: String,
    },
    /// Creating a topic failed for another reason than that it exists.
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic {
        /// Topic name.
        topic: String,
        /// The broker's or client's explanation.
        reason: String,
    },
    /// Measuring consumer lag failed.
    #[error("cannot measure consumer lag: {reason}")]
    Lag {
        /// What went wrong.
        reason: String,
    },
}
