//! Kafka header names shared by producer, router and sinks.
//!
//! The router copies routing metadata into headers of every envelope record so that a sink can
//! filter and label an event without parsing its JSON body.

/// Stable event id: `payload.id` for gateway events, the producer-assigned UUID for lifecycle events.
pub const EVENT_ID: &str = "event_id";
/// `gateway` or `membership`.
pub const APP: &str = "app";
/// Event type: `AUDIT` or a catalogue type such as `stacks.created`.
pub const TYPE: &str = "type";
/// Organisation the event belongs to.
pub const ORGANIZATION_ID: &str = "organization_id";
/// Stack the event belongs to, when it concerns one.
pub const STACK_ID: &str = "stack_id";
/// Event date as decimal milliseconds since the Unix epoch.
pub const DATE_MS: &str = "date_ms";

/// Dead-letter headers: why a record was set aside and where it came from.
pub mod dlq {
    /// Short machine-readable reason, e.g. `undecodable`.
    pub const REASON: &str = "dlq_reason";
    /// Human-readable detail of the reason.
    pub const DETAIL: &str = "dlq_detail";
    /// HTTP status of the last answer, when there was one (sink dead letters).
    pub const STATUS: &str = "dlq_status";
    /// Delivery attempts made before dead-lettering (sink dead letters).
    pub const ATTEMPTS: &str = "dlq_attempts";
    /// Destination that could not deliver the event (sink dead letters).
    pub const DESTINATION: &str = "dlq_destination";
    /// Topic the record was read from.
    pub const SOURCE_TOPIC: &str = "dlq_source_topic";
    /// Partition the record was read from.
    pub const SOURCE_PARTITION: &str = "dlq_source_partition";
    /// Offset the record had in its source partition.
    pub const SOURCE_OFFSET: &str = "dlq_source_offset";
}
