use thiserror::Error;

/// Failures that stop the router. Bad input never does: it is dead-lettered.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A Kafka client could not be created.
    #[error(transparent)]
    Kafka(#[from] auditstream_kafka::KafkaError),
    /// Subscribing to the raw topics failed.
    #[error("cannot subscribe to the raw topics: {0}")]
    Subscribe(#[source] rdkafka::error::KafkaError),
    /// The router's thread could not be started.
    #[error("cannot start the router thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The consumer failed in a way librdkafka does not recover from.
    #[error("consumer failed: {0}")]
    Consume(#[source] rdkafka::error::KafkaError),
}
