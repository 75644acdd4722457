//! The destination's dead-letter topic, `audit.dlq.<destination>`.
//!
//! A dead letter is the envelope exactly as it would have been delivered, with the routing
//! headers it arrived with (so that `auditstream replay` can deliver it again unchanged) plus
//! headers saying why and where from: `dlq_reason`, `dlq_detail`, `dlq_status` (the HTTP status,
//! when there was one), `dlq_attempts`, `dlq_destination` and `dlq_source_topic/partition/offset`.

use auditstream_kafka::{produce_until_acked, topics, KafkaConfig};
use auditstream_schemas::headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureProducer;

use crate::worker::Pending;
use crate::SinkError;

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The destination answered a permanent status.
    PermanentStatus,
    /// A bulk destination rejected this item permanently.
    RejectedItem,
    /// The event outlived the destination's retention window while undeliverable.
    Expired,
    /// The record lacks the routing headers the router writes (not from our router).
    MissingMetadata,
}

impl Reason {
    /// Every reason, so that each counter series exists from the start at 0.
    pub const ALL: [Reason; 4] = [
        Reason::PermanentStatus,
        Reason::RejectedItem,
        Reason::Expired,
        Reason::MissingMetadata,
    ];

    /// Value of the `dlq_reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PermanentStatus => "permanent_status",
            Reason::RejectedItem => "rejected_item",
            Reason::Expired => "expired",
            Reason::MissingMetadata => "missing_metadata",
        }
    }
}

/// Writes dead letters of one destination.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    destination: String,
}

impl DeadLetters {
    /// A writer for `destination`'s dead-letter topic.
    pub fn new(kafka: &KafkaConfig, destination: &str) -> Result<DeadLetters, SinkError> {
        Ok(DeadLetters {
            producer: kafka.future_producer()?,
            topic: topics::destination_dlq(destination),
            destination: destination.to_owned(),
        })
    }

    /// Writes one dead letter and returns once the broker acknowledged it.
    pub async fn write(
        &self,
        pending: &Pending,
        reason: Reason,
        detail: &str,
        status: Option<u16>,
        attempts: u32,
    ) {
        let meta = &pending.event.meta;
        let source = &pending.source;
        let (partition, offset, attempts, date_ms) = (
            source.partition.to_string(),
            source.offset.to_string(),
            attempts.to_string(),
            meta.date_ms.to_string(),
        );
        let status = status.map(|s| s.to_string());
        let mut record_headers = OwnedHeaders::new_with_capacity(14);
        let pairs = [
            (headers::dlq::REASON, Some(reason.as_str())),
            (headers::dlq::DETAIL, Some(detail)),
            (headers::dlq::STATUS, status.as_deref()),
            (headers::dlq::ATTEMPTS, Some(&attempts)),
            (headers::dlq::DESTINATION, Some(&self.destination)),
            (headers::dlq::SOURCE_TOPIC, Some(&source.topic)),
            (headers::dlq::SOURCE_PARTITION, Some(&partition)),
            (headers::dlq::SOURCE_OFFSET, Some(&offset)),
            (
                headers::EVENT_ID,
                Some(meta.event_id()).filter(|id| !id.is_empty()),
            ),
            (headers::APP, Some(meta.app())),
            (headers::TYPE, Some(meta.event_type())),
            (headers::ORGANIZATION_ID, Some(meta.organization_id())),
            (headers::STACK_ID, meta.stack_id()),
            (headers::DATE_MS, Some(&date_ms)),
        ];
        for (key, value) in pairs {
            if let Some(value) = value {
                record_headers = record_headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        produce_until_acked(
            &self.producer,
            &self.topic,
            pending.key.as_deref(),
            &pending.event.envelope,
            &record_headers,
        )
        .await;
        tracing::warn!(
            destination = %self.destination, reason = reason.as_str(), status = ?status, event_id = %meta.event_id(),
            "event dead-lettered; `auditstream dlq inspect --destination {}` shows it, `auditstream replay` resends it",
            self.destination
        );
    }
}
