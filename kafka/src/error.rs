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

/// Whether a consumer error only reports a broker outage or a leadership move, which librdkafka
/// recovers from by itself (it reconnects and fetches again). A consumer keeps polling through
/// these instead of exiting: a broker restart must not stop the pipeline.
pub fn is_transient(err: &RdKafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match err {
        RdKafkaError::MessageConsumption(code) => matches!(
            code,
            Code::AllBrokersDown
                | Code::BrokerTransportFailure
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::MessageTimedOut
                | Code::CoordinatorNotAvailable
                | Code::CoordinatorLoadInProgress
                | Code::NotCoordinator
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::Resolve
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn outages_are_transient_and_the_rest_is_not() {
        let cases = [
            (RdKafkaError::MessageConsumption(Code::AllBrokersDown), true),
            (
                RdKafkaError::MessageConsumption(Code::BrokerTransportFailure),
                true,
            ),
            (RdKafkaError::MessageConsumption(Code::NotCoordinator), true),
            (
                RdKafkaError::MessageConsumption(Code::UnknownTopicOrPartition),
                false,
            ),
            (
                RdKafkaError::MessageConsumption(Code::TopicAuthorizationFailed),
                false,
            ),
            (
                RdKafkaError::MessageConsumptionFatal(Code::AllBrokersDown),
                false,
            ),
            (RdKafkaError::NoMessageReceived, false),
        ];
        for (err, transient) in cases {
            assert_eq!(is_transient(&err), transient, "{err}");
        }
    }
}
