use thiserror::Error;

/// Failures that stop a sink worker. A failing destination never does: its events are retried.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The destination's configuration is wrong; the message names the field.
    #[error("destination {destination}: {message}")]
    Config {
        /// Destination name.
        destination: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The HTTP client could not be built (e.g. an unreadable CA file).
    #[error("destination {destination}: cannot build the HTTP client: {message}")]
    Client {
        /// Destination name.
        destination: String,
        /// The cause.
        message: String,
    },
    /// A Kafka client could not be created.
    #[error(transparent)]
    Kafka(#[from] auditstream_kafka::KafkaError),
    /// Subscribing failed.
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe {
        /// The topics.
        topics: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A replay could not start.
    #[error("replay of destination {destination}: {message}")]
    Replay {
        /// Destination name.
        destination: String,
        /// What went wrong.
        message: String,
    },
    /// The consumer failed in a way librdkafka does not recover from.
    #[error("consumer failed: {0}")]
    Consume(#[source] rdkafka::error::KafkaError),
}
