use std::time::Duration;

use auditstream_kafka::{topics, KafkaConfig, KafkaError};
use auditstream_schemas::raw::{RawGatewayEvent, RawLifecycleEvent};
use auditstream_schemas::{avro, headers, SchemaError};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use thiserror::Error;
use uuid::Uuid;

/// Which raw stream an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Module HTTP audit events, `audit.raw.gateway`.
    Gateway,
    /// Lifecycle events, `audit.raw.lifecycle`.
    Lifecycle,
}

impl Stream {
    /// The raw topic of the stream.
    pub fn raw_topic(self) -> &'static str {
        match self {
            Stream::Gateway => topics::RAW_GATEWAY,
            Stream::Lifecycle => topics::RAW_LIFECYCLE,
        }
    }
}

/// Why an event was not published.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The producer could not be created.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The event does not fit the raw schema.
    #[error("cannot encode event {id}: {source}")]
    Encode {
        /// Event id.
        id: String,
        /// The encoder's error.
        #[source]
        source: SchemaError,
    },
    /// The broker did not acknowledge the event within the delivery timeout.
    #[error("event {id} was not acknowledged by the broker: {source}")]
    Delivery {
        /// Event id.
        id: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// Publishes raw events; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl Publisher {
    /// Creates a publisher. The producer connects lazily: this does not wait for the broker.
    pub fn new(kafka: &KafkaConfig) -> Result<Publisher, PublishError> {
        let producer = kafka
            .producer()
            .create()
            .map_err(|source| KafkaError::CreateClient {
                kind: "producer",
                brokers: kafka.brokers.clone(),
                source,
            })?;
        Ok(Publisher { producer })
    }

    /// Publishes a gateway event keyed by stack. An empty `id` is replaced by a new UUID.
    /// Returns the event id once the broker acknowledged the event.
    pub async fn publish_gateway(
        &self,
        mut event: RawGatewayEvent,
    ) -> Result<String, PublishError> {
        assign_id(&mut event.id);
        let payload = avro::encode_gateway(&event).map_err(|source| PublishError::Encode {
            id: event.id.clone(),
            source,
        })?;
        self.send(Stream::Gateway, &event.stack_id, event.id, &payload)
            .await
    }

    /// Publishes a lifecycle event keyed by organisation. An empty `id` is replaced by a new UUID.
    /// Returns the event id once the broker acknowledged the event.
    pub async fn publish_lifecycle(
        &self,
        mut event: RawLifecycleEvent,
    ) -> Result<String, PublishError> {
        assign_id(&mut event.id);
        let payload = avro::encode_lifecycle(&event).map_err(|source| PublishError::Encode {
            id: event.id.clone(),
            source,
        })?;
        self.send(
            Stream::Lifecycle,
            &event.organization_id,
            event.id,
            &payload,
        )
        .await
    }

    /// Publishes bytes as they are (e.g. a JSON raw event) with an optional event id header. The
    /// router validates them; this is how tools inject JSON or deliberately bad input.
    pub async fn publish_bytes(
        &self,
        stream: Stream,
        key: &str,
        event_id: Option<String>,
        payload: &[u8],
    ) -> Result<Option<String>, PublishError> {
        let id = event_id.clone().unwrap_or_default();
        let mut record = FutureRecord::to(stream.raw_topic())
            .key(key)
            .payload(payload);
        if let Some(event_id) = &event_id {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: headers::EVENT_ID,
                value: Some(event_id),
            }));
        }
        self.producer
            .send(record, Timeout::Never)
            .await
            .map_err(|(source, _)| PublishError::Delivery { id, source })?;
        Ok(event_id)
    }

    async fn send(
        &self,
        stream: Stream,
        key: &str,
        id: String,
        payload: &[u8],
    ) -> Result<String, PublishError> {
        let headers = OwnedHeaders::new().insert(Header {
            key: headers::EVENT_ID,
            value: Some(&id),
        });
        let record = FutureRecord::to(stream.raw_topic())
            .key(key)
            .payload(payload)
            .headers(headers);
        match self.producer.send(record, Timeout::Never).await {
            Ok(_) => Ok(id),
            Err((source, _)) => Err(PublishError::Delivery { id, source }),
        }
    }

    /// Waits until every event handed to the producer is acknowledged, or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

fn assign_id(id: &mut String) {
    if id.is_empty() {
        *id = Uuid::new_v4().to_string();
    }
}
